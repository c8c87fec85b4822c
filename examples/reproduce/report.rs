//! The Markdown report: per-task means and standard deviations, family averages, deltas
//! against no PF (paired by seed), the paper's claims checked against them, the ablation, the
//! pre-finetuning runs, and a chart.
//!
//! [`write`] reads what ran from the records and writes the sections in order: the opening
//! and setup ([`setup`]), the score tables and the chart ([`tables`]), the paper's claims and
//! what limits the numbers ([`claims`]), the ablation and the pre-finetuning runs
//! ([`ablation`]); [`stats`] holds the statistics they read, [`format`] how numbers are
//! written.

mod ablation;
mod claims;
mod format;
mod setup;
mod stats;
mod tables;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::Result;
use crate::pf::PfRecord;
use crate::plan::{Arm, Plan, TASKS};
use crate::runs::RunRecord;

use stats::{Scores, index, is_damage_check, pct};

/// What the report needs besides the records.
pub struct Context<'a> {
    pub plan: &'a Plan,
    /// Every pre-finetuning record in the output folder.
    pub pf: Vec<PfRecord>,
    pub teacher_seconds: Option<f64>,
    /// Runs of this invocation's plan not finished yet.
    pub unfinished: usize,
    /// Every command that wrote into the output folder, in order.
    pub commands: Vec<String>,
    /// Sizes of each task as used: train (100%), dev, test.
    pub sizes: BTreeMap<String, [usize; 3]>,
    pub pf_sources: Vec<(String, usize)>,
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map_or(String::new(), |n| n.to_string_lossy().into_owned())
}

/// What every section reads: the plan and context, and what ran, read from the records (not
/// from this invocation's flags).
struct Ran<'a> {
    plan: &'a Plan,
    ctx: &'a Context<'a>,
    /// The records of the plan's protocol.
    records: Vec<RunRecord>,
    scores: Scores,
    /// In percent, largest first.
    fractions: Vec<u32>,
    seeds: BTreeSet<u64>,
    pf_seeds: BTreeSet<u64>,
    tasks: Vec<&'static str>,
    damage_checks: Vec<&'static str>,
    arms: Vec<Arm>,
}

impl Ran<'_> {
    /// The endpoints' families: the NER family's entity-F1 tasks (tag accuracy is not entity
    /// F1: Brown POS is a damage check of its own) and the text tasks.
    fn family_tasks(&self, family: &str) -> Vec<&'static str> {
        TASKS
            .iter()
            .filter(|t| {
                crate::plan::family_name(t.family) == family && self.tasks.contains(&t.name)
            })
            .filter(|t| !is_damage_check(t))
            .map(|t| t.name)
            .collect()
    }
}

/// Writes the report, its chart, the JSON of every run and their per-item counts
/// ([`crate::records_file`]).
pub fn write(ctx: &Context, records: &[RunRecord]) -> Result<()> {
    let plan = ctx.plan;
    let records: Vec<RunRecord> = records
        .iter()
        .filter(|r| r.protocol == plan.protocol)
        .cloned()
        .collect();
    let scores = index(&records);
    let report = &plan.report;
    if let Some(parent) = report.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let stem = report
        .file_stem()
        .map_or("results".into(), |s| s.to_string_lossy().into_owned());
    let chart = report.with_file_name(format!("{stem}.png"));
    let runs_json = report.with_file_name(format!("{stem}-runs.json"));
    let items_gz = report.with_file_name(format!("{stem}-items.json.gz"));
    crate::records_file::write(&records, &runs_json, &items_gz)?;
    if crate::records_file::read(&runs_json, &items_gz)? != records {
        return Err(format!(
            "{} and {} do not read back to the records written",
            runs_json.display(),
            items_gz.display()
        )
        .into());
    }

    // What ran, read from the records (not from this invocation's flags).
    let fractions: Vec<u32> = {
        let set: BTreeSet<u32> = records.iter().map(|r| pct(r.fraction)).collect();
        set.into_iter().rev().collect()
    };
    let seeds: BTreeSet<u64> = records.iter().map(|r| r.seed).collect();
    let pf_seeds: BTreeSet<u64> = records
        .iter()
        .filter(|r| r.arm != Arm::NoPf.name())
        .map(|r| r.pf_seed)
        .collect();
    let tasks: Vec<&str> = TASKS
        .iter()
        .filter(|t| records.iter().any(|r| r.task == t.name))
        .map(|t| t.name)
        .collect();
    let damage_checks: Vec<&str> = TASKS
        .iter()
        .filter(|t| is_damage_check(t) && tasks.contains(&t.name))
        .map(|t| t.name)
        .collect();
    let arms: Vec<Arm> = Arm::ALL
        .into_iter()
        .filter(|a| {
            records
                .iter()
                .any(|r| r.setting == "default" && r.arm == a.name())
        })
        .collect();
    let ran = Ran {
        plan,
        ctx,
        records,
        scores,
        fractions,
        seeds,
        pf_seeds,
        tasks,
        damage_checks,
        arms,
    };

    let mut md = String::new();
    let w = &mut md;
    setup::header(w, &ran, &runs_json, &items_gz)?;
    setup::endpoints(w, &ran)?;
    setup::setup(w, &ran)?;
    tables::score_tables(w, &ran)?;
    tables::chart(w, &ran, &chart)?;
    claims::claims(w, &ran)?;
    claims::limits(w, &ran)?;
    ablation::ablation(w, &ran)?;
    ablation::pf_runs(w, &ran)?;
    std::fs::write(report.with_extension("md.partial"), &md)?;
    std::fs::rename(report.with_extension("md.partial"), report)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use lora_bert::metrics::bootstrap::{Counts, Interval};

    use super::format::today;
    use super::stats::*;

    use super::*;

    #[test]
    fn mean_std_is_the_sample_standard_deviation() {
        let (m, s) = mean_std(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(m, 2.5);
        assert!((s - 1.290_994_448_735_805_6).abs() < 1e-12);
        assert_eq!(mean_std(&[7.0]), (7.0, 0.0));
        assert!(mean_std(&[]).0.is_nan());
    }

    fn record(arm: &str, task: &str, seed: u64, test: f64) -> RunRecord {
        RunRecord {
            version: crate::runs::RECORD_VERSION,
            setting: "default".into(),
            arm: arm.into(),
            task: task.into(),
            family: "TC".into(),
            fraction: 1.0,
            seed,
            protocol: crate::runs::Protocol::LoraHead,
            metric: "accuracy".into(),
            test,
            dev_best: test,
            best_step: 1,
            steps: 1,
            train_examples: 1,
            dev_examples: 1,
            test_examples: 1,
            seconds: 1.0,
            pf_seed: 0,
            lr: None,
            converged: None,
            items: Vec::new(),
        }
    }

    /// A record whose test score is the accuracy of `right` (one text per entry).
    fn with_items(arm: &str, task: &str, seed: u64, right: &[bool]) -> RunRecord {
        let items: Vec<Counts> = right.iter().map(|&r| Counts::unit(r)).collect();
        let test = Counts::sum(&items).score();
        RunRecord {
            items,
            ..record(arm, task, seed, test)
        }
    }

    #[test]
    fn family_intervals_pair_items_and_seeds_and_decide_claims() {
        assert_eq!(NO_PF, ("default", Arm::NoPf.name()));
        // Task a: tc-pf right on 3 more of 4 texts under both seeds; task b: the same.
        let (good, bad) = ([true, true, true, true], [true, false, false, false]);
        let mut records = Vec::new();
        for seed in [0, 1] {
            for task in ["a", "b"] {
                records.push(with_items("tc-pf", task, seed, &good));
                records.push(with_items("no-pf", task, seed, &bad));
            }
        }
        let i = family_interval(
            &records,
            ("default", "tc-pf"),
            NO_PF,
            &["a", "b"],
            100,
            None,
            0.95,
        )
        .unwrap();
        assert!((i.estimate - 0.75).abs() < 1e-12, "{i:?}");
        // By hand: a replicate's Δ is (X + Y) / 8 with X, Y ~ Binomial(4, 3/4) the drawn texts
        // other than the one both arms get right (seeds change nothing here). P(X + Y = 8) =
        // 0.75⁸ = 0.10, so the upper end is 1; P(X + Y ≤ 2) = 0.004 and P(X + Y ≤ 3) = 0.027,
        // so the 2.5% point is 2/8 or 3/8 in a finite sample. The gain holds.
        assert_eq!(i.high, 1.0, "{i:?}");
        assert!((0.25..=0.375).contains(&i.low), "{i:?}");
        assert_eq!(verdict_of(Some(&i), true), "holds");
        // Seed 1 of task b missing for no-pf: only seed 0 is paired, still an interval.
        records.retain(|r| !(r.arm == "no-pf" && r.task == "b" && r.seed == 1));
        assert!(
            family_interval(
                &records,
                ("default", "tc-pf"),
                NO_PF,
                &["a", "b"],
                100,
                None,
                0.95
            )
            .is_some()
        );
        // Records without per-item counts: no interval, and the verdict says why.
        let old = [record("tc-pf", "a", 0, 0.9), record("no-pf", "a", 0, 0.1)];
        assert!(
            family_interval(&old, ("default", "tc-pf"), NO_PF, &["a"], 100, None, 0.95).is_none()
        );
        assert!(verdict_of(None, true).starts_with("undecided (no per-item"));
        // Clear intervals decide both ways.
        let clear = |low, high| Interval {
            estimate: (low + high) / 2.0,
            low,
            high,
            confidence: 0.95,
            resamples: 10,
        };
        assert_eq!(verdict_of(Some(&clear(0.01, 0.03)), true), "holds");
        assert_eq!(verdict_of(Some(&clear(0.01, 0.03)), false), "does not hold");
        assert_eq!(verdict_of(Some(&clear(-0.03, -0.01)), false), "holds");
    }

    #[test]
    fn family_deltas_are_paired_by_seed_and_need_every_task() {
        let records = [
            record("no-pf", "a", 0, 0.50),
            record("no-pf", "b", 0, 0.70),
            record("tc-pf", "a", 0, 0.60),
            record("tc-pf", "b", 0, 0.70),
            record("no-pf", "a", 1, 0.40),
            record("no-pf", "b", 1, 0.80),
            record("tc-pf", "a", 1, 0.44),
            record("tc-pf", "b", 1, 0.84),
            // Seed 2 lacks task b for tc-pf: it does not count.
            record("no-pf", "a", 2, 0.10),
            record("no-pf", "b", 2, 0.10),
            record("tc-pf", "a", 2, 0.90),
        ];
        let scores = index(&records);
        let ((mean, sd), n) = family_delta(&scores, "default", "tc-pf", &["a", "b"], 100).unwrap();
        // Seed 0: (0.10 + 0.00) / 2 = 0.05; seed 1: (0.04 + 0.04) / 2 = 0.04.
        assert_eq!(n, 2);
        assert!((mean - 0.045).abs() < 1e-12);
        assert!((sd - (0.005f64 * 0.005 * 2.0).sqrt()).abs() < 1e-12);
        assert!(family_delta(&scores, "default", "naive", &["a", "b"], 100).is_none());
        assert!(family_delta(&scores, "default", "tc-pf", &["a", "b"], 10).is_none());
        // Restricted to seed 1 (as the ablation rows are to the sweep's seeds).
        let only: BTreeSet<u64> = [1].into();
        let ((mean, _), n) =
            family_delta_over(&scores, "default", "tc-pf", &["a", "b"], 100, Some(&only)).unwrap();
        assert_eq!(n, 1);
        assert!((mean - 0.04).abs() < 1e-12);
    }

    #[test]
    fn pre_finetuning_seeds_are_the_groups_of_the_interval() {
        // One text, one seed: tc-pf's backbone of pre-finetuning seed 0 gets it right, that of
        // seed 1 wrong; no PF wrong. Drawing tc-pf's two backbones gives Δ = 1, 1/2, 1/2, 0.
        let mut records = vec![
            with_items("tc-pf", "a", 0, &[true]),
            with_items("tc-pf", "a", 0, &[false]),
            with_items("no-pf", "a", 0, &[false]),
        ];
        records[1].pf_seed = 1;
        let at = |confidence| {
            family_interval(
                &records,
                ("default", "tc-pf"),
                NO_PF,
                &["a"],
                100,
                None,
                confidence,
            )
            .unwrap()
        };
        let (wide, narrow) = (at(0.6), at(0.4));
        assert_eq!((wide.estimate, wide.low, wide.high), (0.5, 0.0, 1.0));
        assert_eq!((narrow.low, narrow.high), (0.5, 0.5));
        // The tables average the two backbones per seed.
        let scores = index(&records);
        let key = (
            "default".to_owned(),
            "tc-pf".to_owned(),
            "a".to_owned(),
            100,
        );
        assert_eq!(scores[&key][&0], 0.5);
        // A backbone missing the seed leaves no complete grid: no interval.
        records[1].seed = 7;
        assert!(
            family_interval(
                &records,
                ("default", "tc-pf"),
                NO_PF,
                &["a"],
                100,
                None,
                0.95
            )
            .is_none()
        );
    }

    /// The report `plan` writes from `records`, read back.
    fn rendered(plan: &Plan, records: &[RunRecord]) -> String {
        let ctx = Context {
            plan,
            pf: Vec::new(),
            teacher_seconds: None,
            unfinished: 0,
            commands: vec!["the command that ran".into()],
            sizes: BTreeMap::new(),
            pf_sources: Vec::new(),
        };
        write(&ctx, records).unwrap();
        std::fs::read_to_string(&plan.report).unwrap()
    }

    /// The report describes the records, not the invocation: seeds, fractions and sizes that
    /// differ from the flags are the records'.
    #[test]
    fn the_report_is_rendered_from_the_records_not_the_flags() {
        let out = std::env::temp_dir().join(format!("reproduce-report-{}", std::process::id()));
        let report = out.join("r.md");
        let args = [
            "--report-only",
            "--out",
            out.to_str().unwrap(),
            "--seeds",
            "0",
            "--report",
            report.to_str().unwrap(),
        ];
        let plan = crate::cli::parse_plan(&args).unwrap();
        // Runs of seeds 3 and 5 at 50% of the data on one task, none at the flags' fractions.
        let mut records = Vec::new();
        for seed in [3, 5] {
            for (arm, right) in [("no-pf", false), ("tc-pf", true)] {
                let mut r = with_items(arm, "reuters-r8", seed, &[right, true, true]);
                r.fraction = 0.5;
                r.train_examples = 2467;
                r.dev_examples = 321;
                r.test_examples = 3;
                r.steps = 40;
                records.push(r);
            }
        }
        let md = rendered(&plan, &records);
        std::fs::remove_dir_all(&out).unwrap();
        assert!(md.contains("Seeds in the records: {3, 5}"), "{md}");
        assert!(
            md.contains("## Test scores, 50% of the training data"),
            "{md}"
        );
        assert!(!md.contains("100% of the training data"), "{md}");
        // 40 steps × batch 16 / 2467 examples.
        assert!(md.contains("| 2467 | 0.3 |"), "{md}");
        assert!(md.contains("| 321 | 3 | 40 |"), "{md}");
        assert!(
            md.contains("Rendered from the records by `cargo run"),
            "{md}"
        );
        assert!(!md.contains("wall time"), "{md}");
    }

    /// Brown POS (tag accuracy) stays out of the NER family's average and gets a damage-check
    /// row of its own; the endpoints are stated before the tables.
    #[test]
    fn brown_pos_is_a_damage_check_outside_the_ner_average() {
        let out = std::env::temp_dir().join(format!("reproduce-damage-{}", std::process::id()));
        let report = out.join("r.md");
        let args = ["--report-only", "--out", out.to_str().unwrap(), "--report"];
        let args: Vec<&str> = args.into_iter().chain([report.to_str().unwrap()]).collect();
        let plan = crate::cli::parse_plan(&args).unwrap();
        let mut records = Vec::new();
        for seed in [0, 1] {
            // NER PF: brown-names unchanged, brown-pos much worse.
            for (arm, pos) in [
                ("no-pf", [true; 4]),
                ("ner-pf", [false, false, false, true]),
            ] {
                let mut r = with_items(arm, "brown-names", seed, &[true, false, true, true]);
                r.family = "NER".into();
                records.push(r);
                let mut r = with_items(arm, "brown-pos", seed, &pos);
                r.family = "NER".into();
                records.push(r);
            }
        }
        let md = rendered(&plan, &records);
        std::fs::remove_dir_all(&out).unwrap();
        let endpoints = md.find("## Primary endpoints").expect("endpoints");
        assert!(endpoints < md.find("## Test scores").unwrap(), "{md}");
        assert!(md.contains("entity-F1 tasks (brown-names)"), "{md}");
        // The NER average is brown-names' alone: no change.
        assert!(
            md.contains("| NER Δ vs no PF | | +0.00 ± 0.00 | +0.00 [+0.00, +0.00] |"),
            "{md}"
        );
        // Brown POS lost 75 points under NER PF, reported on its own.
        assert!(
            md.contains("| brown-pos Δ vs no PF (damage check) | | – | -75.00 ["),
            "{md}"
        );
    }

    #[test]
    fn civil_date_is_sane() {
        let d = today();
        assert_eq!(d.len(), 10);
        assert!(d.starts_with("20"));
    }
}
