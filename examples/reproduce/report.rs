//! The Markdown report: per-task means and standard deviations, family averages, deltas
//! against no PF (paired by seed), the paper's claims checked against them, the ablation, the
//! pre-finetuning runs, and a chart.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use lora_bert::metrics::bootstrap::{BootstrapOptions, Interval, Run, TaskPair, paired_bootstrap};
use lora_bert::train::plot::{Bar, BarSeries, grouped_bars};

use crate::Result;
use crate::pf::PfRecord;
use crate::plan::{Arm, Plan, Setting, TASKS};
use crate::runs::{RunRecord, protocol_name};

/// Mean and sample standard deviation (n − 1; 0 for one value).
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    (mean, var.sqrt())
}

/// Scores by (setting, arm, task, fraction in percent) → seed → test score.
type Scores = BTreeMap<(String, String, String, u32), BTreeMap<u64, f64>>;

fn pct(fraction: f64) -> u32 {
    (fraction * 100.0).round() as u32
}

/// A seed's score is the mean over the pre-finetuning seeds it ran under.
fn index(records: &[RunRecord]) -> Scores {
    type Key = (String, String, String, u32);
    let mut all: BTreeMap<Key, BTreeMap<u64, Vec<f64>>> = BTreeMap::new();
    for r in records {
        all.entry((
            r.setting.clone(),
            r.arm.clone(),
            r.task.clone(),
            pct(r.fraction),
        ))
        .or_default()
        .entry(r.seed)
        .or_default()
        .push(r.test);
    }
    all.into_iter()
        .map(|(key, by_seed)| {
            let means = by_seed
                .into_iter()
                .map(|(seed, v)| (seed, v.iter().sum::<f64>() / v.len() as f64))
                .collect();
            (key, means)
        })
        .collect()
}

/// The family average of `arm` minus no PF's (default setting's), per seed present for every
/// task of the family in both: the mean and standard deviation over those seeds, and the
/// number of seeds. `None` when no seed is complete.
fn family_delta(
    scores: &Scores,
    setting: &str,
    arm: &str,
    family_tasks: &[&str],
    fraction: u32,
) -> Option<((f64, f64), usize)> {
    family_delta_over(scores, setting, arm, family_tasks, fraction, None)
}

/// [`family_delta`] over the seeds in `only` (all seeds when `None`).
fn family_delta_over(
    scores: &Scores,
    setting: &str,
    arm: &str,
    family_tasks: &[&str],
    fraction: u32,
    only: Option<&BTreeSet<u64>>,
) -> Option<((f64, f64), usize)> {
    let get = |setting: &str, arm: &str, task: &str| {
        scores.get(&(
            setting.to_owned(),
            arm.to_owned(),
            task.to_owned(),
            fraction,
        ))
    };
    let mut per_seed = Vec::new();
    let seeds: BTreeSet<u64> = family_tasks
        .iter()
        .filter_map(|t| get(setting, arm, t))
        .flat_map(|m| m.keys().copied())
        .filter(|seed| only.is_none_or(|only| only.contains(seed)))
        .collect();
    for seed in seeds {
        let deltas: Option<Vec<f64>> = family_tasks
            .iter()
            .map(|t| {
                let a = get(setting, arm, t)?.get(&seed)?;
                let b = get("default", Arm::NoPf.name(), t)?.get(&seed)?;
                Some(a - b)
            })
            .collect();
        if let Some(d) = deltas {
            per_seed.push(d.iter().sum::<f64>() / d.len() as f64);
        }
    }
    (!per_seed.is_empty()).then(|| (mean_std(&per_seed), per_seed.len()))
}

/// The paired bootstrap interval (over test items, seeds and each arm's pre-finetuning seeds)
/// of the family average of `a` minus that of `b`, each a (setting, arm), over the seeds (of
/// `only`, or all) where every task of the family finished in both, under every pre-finetuning
/// seed of each, with its per-item counts recorded. `None` when there is no such seed (records
/// written before the counts were kept) or the runs of a task were scored on different test
/// items.
fn family_interval(
    records: &[RunRecord],
    a: (&str, &str),
    b: (&str, &str),
    family_tasks: &[&str],
    fraction: u32,
    only: Option<&BTreeSet<u64>>,
    confidence: f64,
) -> Option<Interval> {
    // (pre-finetuning seed, seed) → record.
    type BySeed<'r> = BTreeMap<(u64, u64), &'r RunRecord>;
    let runs = |(setting, arm): (&str, &str), task: &str| -> BySeed {
        records
            .iter()
            .filter(|r| {
                r.setting == setting
                    && only.is_none_or(|only| only.contains(&r.seed))
                    && r.arm == arm
                    && r.task == task
                    && pct(r.fraction) == fraction
                    && !r.items.is_empty()
            })
            .map(|r| ((r.pf_seed, r.seed), r))
            .collect()
    };
    let per_task: Vec<(BySeed, BySeed)> = family_tasks
        .iter()
        .map(|t| (runs(a, t), runs(b, t)))
        .collect();
    let groups = |m: &BySeed| m.keys().map(|k| k.0).collect::<BTreeSet<u64>>();
    let (first_a, first_b) = per_task.first()?;
    let (groups_a, groups_b) = (groups(first_a), groups(first_b));
    let seeds: BTreeSet<u64> = first_a
        .keys()
        .map(|k| k.1)
        .filter(|seed| {
            per_task.iter().all(|(x, y)| {
                groups_a.iter().all(|&g| x.contains_key(&(g, *seed)))
                    && groups_b.iter().all(|&g| y.contains_key(&(g, *seed)))
            })
        })
        .collect();
    if seeds.is_empty() {
        return None;
    }
    let keep = |m: &BySeed, groups: &BTreeSet<u64>| -> Vec<Run> {
        groups
            .iter()
            .flat_map(|&g| seeds.iter().map(move |&seed| (g, seed)))
            .map(|(g, seed)| Run::new(g, seed, m[&(g, seed)].items.clone()))
            .collect()
    };
    let kept: Vec<(Vec<Run>, Vec<Run>)> = per_task
        .iter()
        .map(|(x, y)| (keep(x, &groups_a), keep(y, &groups_b)))
        .collect();
    let pairs: Vec<TaskPair<'_>> = kept.iter().map(|(x, y)| TaskPair::new(x, y)).collect();
    let options = BootstrapOptions {
        confidence,
        ..BootstrapOptions::default()
    };
    paired_bootstrap(&pairs, &options).ok()
}

/// A task outside the family averages: a token task scored by tag accuracy (Brown POS), which
/// the NER family's entity-F1 endpoint does not average in; reported as a damage check.
fn is_damage_check(task: &crate::plan::TaskDef) -> bool {
    task.kind == crate::plan::Kind::Token(lora_bert::train::TokenMetric::Accuracy)
}

/// The arm every Δ is taken against: no PF in the default setting.
const NO_PF: (&str, &str) = ("default", "no-pf");

/// `+1.23 [−0.45, +2.91]`: a difference and its interval, in points.
fn with_interval(i: &Interval) -> String {
    format!(
        "{} [{}, {}]",
        signed(i.estimate),
        signed(i.low),
        signed(i.high)
    )
}

/// What a 95% interval says of a claim that the difference is positive (`want_positive`) or
/// negative.
fn verdict_of(interval: Option<&Interval>, want_positive: bool) -> &'static str {
    match interval {
        None => "undecided (no per-item records to put an interval on it)",
        Some(i) if want_positive && i.above_zero() || !want_positive && i.below_zero() => "holds",
        Some(i) if want_positive && i.below_zero() || !want_positive && i.above_zero() => {
            "does not hold"
        }
        Some(_) => "undecided (the 95% interval includes 0)",
    }
}

/// The time a pre-finetuning took in all: its record's time, which for a run resumed from a
/// checkpoint covers the steps after the resume only, scaled to all its steps.
fn pf_seconds(p: &PfRecord) -> f64 {
    match p.fit.resumed_from {
        Some(from) if p.fit.steps > from => {
            p.seconds * p.fit.steps as f64 / (p.fit.steps - from) as f64
        }
        _ => p.seconds,
    }
}

/// `7`, or `5–9` when the values differ, `–` for none.
fn span(values: impl Iterator<Item = usize>) -> String {
    let (mut lo, mut hi) = (usize::MAX, 0);
    for v in values {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    match (lo, hi) {
        (usize::MAX, _) => "–".into(),
        (lo, hi) if lo == hi => lo.to_string(),
        (lo, hi) => format!("{lo}–{hi}"),
    }
}

/// `12.34 ± 0.56` in points (scores × 100).
fn cell(values: &[f64]) -> String {
    if values.is_empty() {
        return "–".into();
    }
    let (m, s) = mean_std(values);
    if values.len() == 1 {
        format!("{:.2}", 100.0 * m)
    } else {
        format!("{:.2} ± {:.2}", 100.0 * m, 100.0 * s)
    }
}

fn signed(v: f64) -> String {
    format!("{:+.2}", 100.0 * v)
}

/// The machine, as far as the program can tell.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let threads = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{cpu}, {threads} hardware threads, {} {}",
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

/// Today's date (UTC) from the system clock.
fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    // Howard Hinnant's days-to-civil.
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

fn hours(seconds: f64) -> String {
    if seconds >= 3600.0 {
        format!("{:.1} h", seconds / 3600.0)
    } else {
        format!("{:.1} min", seconds / 60.0)
    }
}

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
    // The endpoints' families: the NER family's entity-F1 tasks (tag accuracy is not entity
    // F1: Brown POS is a damage check of its own) and the text tasks.
    let family_tasks = |family: &str| -> Vec<&str> {
        TASKS
            .iter()
            .filter(|t| crate::plan::family_name(t.family) == family && tasks.contains(&t.name))
            .filter(|t| !is_damage_check(t))
            .map(|t| t.name)
            .collect()
    };
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
    let s = &plan.sizes;
    let pf_default = PfDefaults::of(plan);
    let compute: f64 = records.iter().map(|r| r.seconds).sum::<f64>()
        + ctx.pf.iter().map(pf_seconds).sum::<f64>()
        + ctx.teacher_seconds.unwrap_or(0.0);
    let resumed_pf = ctx.pf.iter().any(|p| p.fit.resumed_from.is_some());

    let mut md = String::new();
    let w = &mut md;
    writeln!(w, "# Results: does MTPF-TPL keep both families' gains?\n")?;
    writeln!(
        w,
        "Written by the `reproduce` example on {} from {} finished runs{}. The commands that \
         made them (rerunning one resumes it: finished runs are kept):\n",
        today(),
        records.len(),
        if ctx.unfinished > 0 {
            format!(
                "; **partial: {} runs of the last command are not finished, the tables cover \
                 the finished ones only**",
                ctx.unfinished
            )
        } else {
            String::new()
        }
    )?;
    writeln!(w, "```text\n{}\n```\n", ctx.commands.join("\n"))?;
    if plan.report_only {
        writeln!(
            w,
            "Rendered from the records by `{}`: a report-only command runs nothing, and its \
             sizes are the folder's pins (`plan.json`, `plan-PROTOCOL.json`), not its flags.\n",
            plan.command
        )?;
    }
    writeln!(w, "- machine: {}; backend {}", machine(), plan.backend)?;
    writeln!(
        w,
        "- compute: {} in all (pre-finetuning, teacher and every finished run, summed over the \
         sessions that ran them{})",
        hours(compute),
        if resumed_pf {
            "; a pre-finetuning resumed from a checkpoint counts its timed steps' rate over all \
             its steps"
        } else {
            ""
        }
    )?;
    writeln!(
        w,
        "- every run: [`{runs}`]({runs}) (one record per line, per arm × task × fraction × \
         seed); the per-item test counts the intervals are drawn from: [`{items}`]({items})\n",
        runs = file_name(&runs_json),
        items = file_name(&items_gz),
    )?;

    writeln!(w, "## Primary endpoints\n")?;
    let listed = |family: &str| {
        let ft = family_tasks(family);
        if ft.is_empty() {
            "none in these records".to_owned()
        } else {
            ft.join(", ")
        }
    };
    writeln!(
        w,
        "Stated before any table: the family averages (means over tasks of the per-task mean \
         test scores) of the NER family's entity-F1 tasks ({}) and of the text tasks ({}), at \
         100% and at 10% of the training data, under the {} protocol; each arm against no PF, \
         and MTPF-TPL against each individual pre-finetuning and naive multi-task \
         pre-finetuning, with 95% paired bootstrap intervals. {}\n",
        listed("NER"),
        listed("TC"),
        crate::runs::protocol_name(plan.protocol),
        if damage_checks.is_empty() {
            String::new()
        } else {
            format!(
                "{} (tag accuracy, not entity F1) is reported on its own as a damage check, \
                 outside the NER average.",
                damage_checks.join(", ")
            )
        }
    )?;

    writeln!(w, "## Setup\n")?;
    writeln!(
        w,
        "- **Backbone**: all-MiniLM-L6-v2 (6 layers, hidden 384, 22.7M parameters), {} tokens \
         per row (longer sentences windowed, longer texts truncated).",
        s.max_len
    )?;
    let pf_defaults = lora_bert::train::PfConfig::new(lora_bert::train::TrainConfig::new(1));
    let ner_objective = match plan.teacher.tagger_dir(&plan.out) {
        Some(_) => format!(
            "the tagger teacher's word label distributions (first piece of each word, cached \
             once; see the teacher below), learned by KL at temperature {} (weight of the \
             cross-entropy on its argmax {}) through a token head that is dropped after \
             pre-finetuning",
            crate::pf::SOFT_LABELS.temperature,
            crate::pf::SOFT_LABELS.hard_weight
        ),
        None => format!(
            "word-level {} distillation of all-mpnet-base-v2's last hidden layer (mean of each \
             word's pieces, cached once)",
            match plan.setting.distill {
                lora_bert::train::DistillLoss::Mse => "MSE",
                lora_bert::train::DistillLoss::Cosine => "cosine (1 − cos per word)",
            }
        ),
    };
    writeln!(
        w,
        "- **Pre-finetuning** (`{}` setting): {} steps of {} rows of at most {} tokens, AdamW \
         lr {} (10% warm-up, linear decay), every parameter of the backbone trained; the family \
         groups at lr {} and the objectives' heads at lr {} (parameter groups of their own); \
         no weight decay on biases and LayerNorm. NER family: {} on {} Brown sentences; TC family: symmetric InfoNCE (temperature 0.05, \
         in-batch negatives, mean pooling) on {} text pairs ({}). A further {} sentences and \
         {} pairs are held out as the pre-finetuning dev set (best checkpoint by dev loss). \
         Multi-task arms run twice the steps (each family as many as its individual \
         pre-finetuning) and {}; their records count the steps of each family. \
         MTPF-TPL: LoRA groups `ner` and `tc` (r = {}, alpha = 2r, on {} of the last {} \
         layers), each batch through its family's group.",
        plan.setting.name(),
        s.pf_steps,
        s.pf_batch,
        s.max_len.min(crate::pf::MAX_LEN),
        s.pf_lr,
        pf_defaults.adapter_lr,
        pf_defaults.head_lr,
        ner_objective,
        s.pf_sentences,
        s.pf_pairs,
        ctx.pf_sources
            .iter()
            .map(|(n, c)| format!("{c} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        s.pf_dev,
        s.pf_dev,
        match pf_default.temperature {
            None => "alternate the families step by step (equal budgets)".to_owned(),
            Some(t) => format!(
                "draw each step's family with probability ∝ n^(1/T), T = {t} (equal budgets in \
                 expectation)"
            ),
        },
        pf_default.rank,
        pf_default.targets,
        pf_default.k,
    )?;
    if let Some(dir) = plan.teacher.tagger_dir(&plan.out) {
        // Read from the teacher's own files, whichever command trained it.
        match crate::pf::teacher_section(&dir) {
            Ok(section) => writeln!(w, "\n{section}")?,
            Err(e) => writeln!(w, "\nTeacher: not finished ({e}).\n")?,
        }
    }
    writeln!(
        w,
        "- **Kept apart**: the Brown corpus is split by document (10% of each genre's files to \
         dev, 10% to test); its train documents are halved per genre (alternating in file-name \
         order). Pre-finetuning reads only the first half (sentences and neighbouring-sentence \
         pairs) and the train splits of SpamAssassin and BBC News, which are not downstream \
         tasks; the Brown downstream tasks train on the second half and are scored on the \
         dev/test documents. The other downstream datasets never reach pre-finetuning."
    )?;
    if plan.protocol == crate::runs::Protocol::Probe {
        writeln!(
            w,
            "- **Downstream protocol**: `probe`: a linear probe on the frozen last hidden state \
             (mean-pooled for texts; MTPF-TPL through its family's group), multinomial logistic \
             regression on standardised features fitted by full-batch L-BFGS along an L2 grid \
             (strongest first, each fit warm-started from the last and stopped after at most {} \
             steps, the path ending once the dev score has fallen twice); the strength with the \
             best dev score is then fitted on to convergence (largest gradient entry below \
             {:e}, at most {} steps) and scored on test. Converged: {} of the {} probe fits in \
             the records{}. Dev and test are fixed samples, stratified by label and the same \
             for every arm and seed, or the whole splits (the table below gives their sizes). \
             \"100%\" is the training split or its first examples of a fixed shuffle (the table \
             gives how many; the step counts are L-BFGS iterations of the fit kept); with all \
             of them the fit does not depend on the seed and is recorded under each. Token \
             tasks are scored on words (first piece); texts by accuracy. Seeds in the records: \
             {:?} (the seed draws the 10% subset).",
            crate::probes::PATH_STEPS,
            lora_bert::train::probe::ProbeConfig::default().tolerance,
            lora_bert::train::probe::ProbeConfig::default().max_steps,
            records.iter().filter(|r| r.converged == Some(true)).count(),
            records.len(),
            match records.iter().filter(|r| r.converged.is_none()).count() {
                0 => String::new(),
                n => format!(" ({n} recorded before convergence was kept)"),
            },
            seeds,
        )?;
    } else {
        let lr = match plan.lr_grid.as_slice() {
            [] => format!("lr {}", s.lr),
            grid => {
                let mut kept: BTreeMap<String, usize> = BTreeMap::new();
                for r in &records {
                    if let Some(lr) = r.lr {
                        *kept.entry(format!("{lr}")).or_default() += 1;
                    }
                }
                let kept: Vec<String> = kept.iter().map(|(lr, n)| format!("{lr} in {n}")).collect();
                format!(
                    "lr chosen {} by the best dev score from {grid:?} (kept: {})",
                    if plan.lr_per_arm {
                        "once per arm, task and fraction (on the first seed's run; the other \
                         seeds reuse it)"
                    } else {
                        "per run"
                    },
                    kept.join(", ")
                )
            }
        };
        writeln!(
            w,
            "- **Downstream protocol**: `{}`{}; {} steps for token tasks, {} for text tasks, \
             batch {}, AdamW {lr} (10% warm-up, linear decay), {} dev evaluations per run ({} \
             dev examples), the best dev checkpoint scored on {} test examples (both fixed \
             samples, stratified by label, the same for every arm and seed); \
             WNUT-16 runs twice the steps (its entity F1 stays 0 for about 150 steps). \
             Token tasks are scored on words (first piece); texts by accuracy. The table below \
             gives, from the run records, the examples each run trained on and was scored on \
             and the epochs its steps make. Seeds in the records: {:?} (the seed draws the 10% \
             subset, the head's initial weights and the batch order).",
            protocol_name(plan.protocol),
            match plan.protocol {
                crate::runs::Protocol::HeadOnly =>
                    ": the linear head alone; MTPF-TPL routes through its family's group, frozen",
                _ =>
                    ": a LoRA group shaped like the pre-finetuning groups plus a linear head, the \
                     backbone frozen; MTPF-TPL starts from a copy of its family's group, the \
                     other arms from a fresh group (B = 0)",
            },
            s.token_steps,
            s.text_steps,
            s.batch,
            s.evals,
            s.dev,
            s.test,
            seeds,
        )?;
    }
    write!(w, "\n| task | family | metric | train set |")?;
    for &fraction in &fractions {
        write!(w, " trained on ({fraction}%) | epochs ({fraction}%) |")?;
    }
    writeln!(w, " dev | test | steps | data |")?;
    write!(w, "|---|---|---|---:|")?;
    for _ in &fractions {
        write!(w, "---:|---:|")?;
    }
    writeln!(w, "---:|---:|---:|---|")?;
    for t in TASKS.iter().filter(|t| tasks.contains(&t.name)) {
        let of = |fraction: Option<u32>, f: &dyn Fn(&RunRecord) -> usize| -> String {
            span(
                records
                    .iter()
                    .filter(|r| r.task == t.name && fraction.is_none_or(|p| pct(r.fraction) == p))
                    .map(f),
            )
        };
        let full = ctx
            .sizes
            .get(t.name)
            .map_or("–".into(), |[n, ..]| n.to_string());
        write!(
            w,
            "| {} | {} | {} | {full} |",
            t.name,
            crate::plan::family_name(t.family),
            t.metric(),
        )?;
        for &fraction in &fractions {
            let epochs: Vec<f64> = records
                .iter()
                .filter(|r| r.task == t.name && pct(r.fraction) == fraction)
                .filter(|r| r.train_examples > 0)
                .map(|r| (r.steps * s.batch) as f64 / r.train_examples as f64)
                .collect();
            let epochs = match (
                epochs.iter().copied().reduce(f64::min),
                epochs.iter().copied().reduce(f64::max),
            ) {
                // A probe's steps are L-BFGS iterations over all its rows, not batches.
                _ if plan.protocol == crate::runs::Protocol::Probe => "–".into(),
                (Some(lo), Some(hi)) if (hi - lo).abs() < 0.05 => format!("{lo:.1}"),
                (Some(lo), Some(hi)) => format!("{lo:.1}–{hi:.1}"),
                _ => "–".into(),
            };
            write!(
                w,
                " {} | {epochs} |",
                of(Some(fraction), &|r| r.train_examples)
            )?;
        }
        writeln!(
            w,
            " {} | {} | {} | {} |",
            of(None, &|r| r.dev_examples),
            of(None, &|r| r.test_examples),
            of(None, &|r| r.steps),
            t.about
        )?;
    }
    writeln!(
        w,
        "\nTrain set: the task's training split as loaded; the other columns are read from the \
         run records (a range when runs differ, for instance when early stopping cut some \
         short); epochs = steps × batch {} / examples trained on.",
        s.batch
    )?;

    // Per-task tables.
    for &fraction in &fractions {
        writeln!(
            w,
            "\n## Test scores, {fraction}% of the training data\n\nMean ± standard deviation \
             over seeds, in points (score × 100){}.\n",
            if pf_seeds.len() > 1 {
                "; a seed's score is the mean over the pre-finetuning seeds"
            } else {
                ""
            }
        )?;
        write!(w, "| task | metric |")?;
        for arm in &arms {
            write!(w, " {} |", arm.label())?;
        }
        write!(w, "\n|---|---|")?;
        for _ in &arms {
            write!(w, "---:|")?;
        }
        writeln!(w)?;
        for t in TASKS.iter().filter(|t| tasks.contains(&t.name)) {
            write!(w, "| {} | {} |", t.name, t.metric())?;
            for arm in &arms {
                let values: Vec<f64> = scores
                    .get(&("default".into(), arm.name().into(), t.name.into(), fraction))
                    .map(|m| m.values().copied().collect())
                    .unwrap_or_default();
                write!(w, " {} |", cell(&values))?;
            }
            writeln!(w)?;
        }
        for family in ["NER", "TC"] {
            let ft = family_tasks(family);
            if ft.is_empty() {
                continue;
            }
            write!(w, "| **{family} average** | |")?;
            for arm in &arms {
                let means: Option<Vec<f64>> = ft
                    .iter()
                    .map(|t| {
                        let m = scores.get(&(
                            "default".into(),
                            arm.name().into(),
                            (*t).into(),
                            fraction,
                        ))?;
                        Some(m.values().sum::<f64>() / m.len() as f64)
                    })
                    .collect();
                match means {
                    Some(m) => write!(
                        w,
                        " **{:.2}** |",
                        100.0 * m.iter().sum::<f64>() / m.len() as f64
                    )?,
                    None => write!(w, " – |")?,
                }
            }
            writeln!(w)?;
            write!(w, "| {family} Δ vs no PF | |")?;
            for arm in &arms {
                let interval = (*arm != Arm::NoPf)
                    .then(|| {
                        family_interval(
                            &records,
                            ("default", arm.name()),
                            NO_PF,
                            &ft,
                            fraction,
                            None,
                            0.95,
                        )
                    })
                    .flatten();
                match (
                    interval,
                    family_delta(&scores, "default", arm.name(), &ft, fraction),
                ) {
                    (Some(i), _) => write!(w, " {} |", with_interval(&i))?,
                    (None, Some(((m, sd), n))) if n > 1 => {
                        write!(w, " {} ± {:.2} |", signed(m), 100.0 * sd)?
                    }
                    (None, Some(((m, _), _))) => write!(w, " {} |", signed(m))?,
                    (None, None) => write!(w, " – |")?,
                }
            }
            writeln!(w)?;
        }
        for task in &damage_checks {
            write!(w, "| {task} Δ vs no PF (damage check) | |")?;
            for arm in &arms {
                let interval = (*arm != Arm::NoPf)
                    .then(|| {
                        family_interval(
                            &records,
                            ("default", arm.name()),
                            NO_PF,
                            &[task],
                            fraction,
                            None,
                            0.95,
                        )
                    })
                    .flatten();
                match interval {
                    Some(i) => write!(w, " {} |", with_interval(&i))?,
                    None => write!(w, " – |")?,
                }
            }
            writeln!(w)?;
        }
    }
    writeln!(
        w,
        "\nFamily averages are means over the family's tasks of the per-task means. Δ is the \
         family average minus no PF's, paired by seed, shown only for seeds where every task of \
         the family finished in both arms, with its 95% paired bootstrap interval in brackets \
         (2000 resamples of the test items of every task and of the seeds, the same draws for \
         both arms{}). Runs recorded without their per-item counts show mean ± standard \
         deviation over seeds instead.",
        if pf_seeds.len() > 1 {
            format!(
                ", and of each arm's pre-finetuning seeds {pf_seeds:?}, drawn per arm: \
                 pre-finetuning's run-to-run variance is in the interval"
            )
        } else {
            ". Each arm was pre-finetuned once, so pre-finetuning's run-to-run variance is not \
             in the interval"
                .to_owned()
        }
    )?;

    // Chart and paper comparison.
    let mut categories = Vec::new();
    let mut series: Vec<BarSeries> = arms
        .iter()
        .filter(|a| **a != Arm::NoPf)
        .map(|a| BarSeries {
            name: a.label().into(),
            values: Vec::new(),
        })
        .collect();
    for family in ["NER", "TC"] {
        let ft = family_tasks(family);
        if ft.is_empty() {
            continue;
        }
        for &fraction in &fractions {
            categories.push(format!("{family} {fraction}%"));
            for (arm, bars) in arms.iter().filter(|a| **a != Arm::NoPf).zip(&mut series) {
                let interval = family_interval(
                    &records,
                    ("default", arm.name()),
                    NO_PF,
                    &ft,
                    fraction,
                    None,
                    0.95,
                );
                let bar = match interval {
                    Some(i) => Bar::with_range(100.0 * i.estimate, 100.0 * i.low, 100.0 * i.high),
                    None => family_delta(&scores, "default", arm.name(), &ft, fraction)
                        .map_or(Bar::with_error(f64::NAN, 0.0), |((m, sd), _)| {
                            Bar::with_error(100.0 * m, 100.0 * sd)
                        }),
                };
                bars.values.push(bar);
            }
        }
    }
    if !categories.is_empty() && !series.is_empty() {
        let cats: Vec<&str> = categories.iter().map(String::as_str).collect();
        grouped_bars(
            &chart,
            "Family average minus no PF (95% paired bootstrap intervals)",
            "points",
            &cats,
            &series,
        )?;
        writeln!(
            w,
            "\n![family-average deltas against no PF]({})\n",
            chart
                .file_name()
                .map_or(String::new(), |n| n.to_string_lossy().into_owned())
        )?;
    }

    writeln!(w, "## Against the paper's claims\n")?;
    writeln!(
        w,
        "The paper reports, over 21 tasks, MTPF-TPL's average gain over the plain backbone: \
         +0.8 F1 on NER, +8.8 accuracy on text classification, and +8.4 F1 on NER with 10% of \
         the data. Its NER tasks are entity F1 only, and so is our NER family's average (Brown \
         POS, tag accuracy, is the damage check above).\n"
    )?;
    writeln!(
        w,
        "| family | data | paper (MTPF-TPL) | MTPF-TPL | NER PF | TC PF | naive MTL PF |"
    )?;
    writeln!(w, "|---|---:|---:|---:|---:|---:|---:|")?;
    let delta = |arm: Arm, family: &str, fraction: u32| {
        family_delta(
            &scores,
            "default",
            arm.name(),
            &family_tasks(family),
            fraction,
        )
        .map(|((m, _), _)| m)
    };
    // Arm a minus arm b on a family's average, with its interval at `confidence`.
    let interval = |a: Arm, b: Arm, family: &str, fraction: u32, confidence: f64| {
        family_interval(
            &records,
            ("default", a.name()),
            ("default", b.name()),
            &family_tasks(family),
            fraction,
            None,
            confidence,
        )
    };
    let show = |arm: Arm, family: &str, fraction: u32| match interval(
        arm,
        Arm::NoPf,
        family,
        fraction,
        0.95,
    ) {
        Some(i) => with_interval(&i),
        None => delta(arm, family, fraction).map_or("–".to_owned(), signed),
    };
    for family in ["NER", "TC"] {
        for &fraction in &fractions {
            let paper = match (family, fraction) {
                ("NER", 100) => "+0.8",
                ("TC", 100) => "+8.8",
                ("NER", 10) => "+8.4",
                _ => "not reported",
            };
            writeln!(
                w,
                "| {family} | {fraction}% | {paper} | {} | {} | {} | {} |",
                show(Arm::MtpfTpl, family, fraction),
                show(Arm::NerPf, family, fraction),
                show(Arm::TcPf, family, fraction),
                show(Arm::Naive, family, fraction),
            )?;
        }
    }
    writeln!(
        w,
        "\nThe claims, read off 95% paired bootstrap intervals (Δ in points): a claim holds only \
         when its interval excludes 0 in the claimed direction, and does not hold when it \
         excludes 0 in the other; \"MTPF-TPL keeps the individual gains\" is an equivalence test \
         (two one-sided tests at α = 0.05, a 90% interval inside ±1 point).\n"
    )?;
    // Several verdicts at once: holds if all hold, does not hold if any fails.
    let all = |verdicts: &[&'static str]| -> &'static str {
        if verdicts.iter().all(|v| *v == "holds") {
            "holds"
        } else if verdicts.contains(&"does not hold") {
            "does not hold"
        } else {
            verdicts
                .iter()
                .find(|v| v.starts_with("undecided"))
                .copied()
                .unwrap_or("undecided")
        }
    };
    let text = |i: Option<&Interval>| i.map_or("–".to_owned(), with_interval);
    for &fraction in &fractions {
        let ner = interval(Arm::NerPf, Arm::NoPf, "NER", fraction, 0.95);
        let tc = interval(Arm::TcPf, Arm::NoPf, "TC", fraction, 0.95);
        if ner.is_some() || tc.is_some() {
            writeln!(
                w,
                "- {fraction}%: each family's own PF helps it (NER PF on NER {}, TC PF on TC \
                 {}): {}.",
                text(ner.as_ref()),
                text(tc.as_ref()),
                all(&[
                    verdict_of(ner.as_ref(), true),
                    verdict_of(tc.as_ref(), true)
                ])
            )?;
        }
        let naive_ner = interval(Arm::Naive, Arm::NerPf, "NER", fraction, 0.95);
        let naive_tc = interval(Arm::Naive, Arm::TcPf, "TC", fraction, 0.95);
        if naive_ner.is_some() || naive_tc.is_some() {
            writeln!(
                w,
                "- {fraction}%: naive multi-task PF loses part of the individual gains (naive \
                 minus NER PF on NER {}, minus TC PF on TC {}): {}.",
                text(naive_ner.as_ref()),
                text(naive_tc.as_ref()),
                all(&[
                    verdict_of(naive_ner.as_ref(), false),
                    verdict_of(naive_tc.as_ref(), false)
                ])
            )?;
        }
        let keeps = [
            interval(Arm::MtpfTpl, Arm::NerPf, "NER", fraction, 0.90),
            interval(Arm::MtpfTpl, Arm::TcPf, "TC", fraction, 0.90),
        ];
        if keeps.iter().any(Option::is_some) {
            let equivalent = match &keeps {
                [Some(n), Some(t)] if n.within(0.01) && t.within(0.01) => "holds",
                [Some(_), Some(_)] => "not shown (a 90% interval reaches past ±1 point)",
                _ => "undecided (no per-item records for one family)",
            };
            let [n, t] = &keeps;
            writeln!(
                w,
                "- {fraction}%: MTPF-TPL keeps the individual gains (MTPF-TPL minus NER PF on \
                 NER {}, minus TC PF on TC {}, 90% intervals): {equivalent}.",
                text(n.as_ref()),
                text(t.as_ref()),
            )?;
        }
        let over_naive = [
            interval(Arm::MtpfTpl, Arm::Naive, "NER", fraction, 0.95),
            interval(Arm::MtpfTpl, Arm::Naive, "TC", fraction, 0.95),
        ];
        if over_naive.iter().any(Option::is_some) {
            let [n, t] = &over_naive;
            writeln!(
                w,
                "- {fraction}%: MTPF-TPL beats naive multi-task PF (NER {}, TC {}): {}.",
                text(n.as_ref()),
                text(t.as_ref()),
                all(&[verdict_of(n.as_ref(), true), verdict_of(t.as_ref(), true)])
            )?;
        }
    }
    if let (Some(full), Some(low)) = (
        interval(Arm::MtpfTpl, Arm::NoPf, "NER", 100, 0.95),
        interval(Arm::MtpfTpl, Arm::NoPf, "NER", 10, 0.95),
    ) {
        // The two differences come from different runs: only intervals that do not overlap
        // decide.
        writeln!(
            w,
            "- MTPF-TPL's NER gain is larger with 10% of the data ({} vs {} with all): {}.",
            with_interval(&low),
            with_interval(&full),
            if low.low > full.high {
                "holds"
            } else if low.high < full.low {
                "does not hold"
            } else {
                "undecided (the intervals overlap)"
            }
        )?;
    }

    writeln!(w, "\n## What limits these numbers\n")?;
    writeln!(
        w,
        "- **Pre-finetuning is small.** {} steps of {} rows per family ({} examples per family) \
         on a 2-core CPU, where the paper pre-finetunes on \
         large weakly supervised corpora. A gain that needs a long pre-finetuning cannot show \
         here; a loss from a short one can.",
        s.pf_steps,
        s.pf_batch,
        s.pf_steps * s.pf_batch
    )?;
    if plan.protocol == crate::runs::Protocol::Probe {
        // Brown POS against the bar a linear probe on a BERT-class encoder usually clears.
        let pos: Vec<f64> = records
            .iter()
            .filter(|r| {
                r.arm == Arm::NoPf.name()
                    && r.task == "brown-pos"
                    && r.setting == "default"
                    && pct(r.fraction) == 100
            })
            .map(|r| r.test)
            .collect();
        let layers = crate::layers::read_records(&plan.out)?;
        if let Some(&last) = pos.first() {
            write!(
                w,
                "- **Brown POS from the last layer.** The plain backbone's probe reaches {:.2}% \
                 tag accuracy on Brown POS at 100% of the data, where a linear probe on a \
                 BERT-base-class encoder usually exceeds 90% on English POS. ",
                100.0 * last
            )?;
            let best = layers
                .iter()
                .filter(|l| l.task == "brown-pos")
                .max_by(|a, b| a.test.total_cmp(&b.test));
            match best {
                Some(b) => {
                    let why = if b.layer < 6 {
                        "all-MiniLM-L6-v2's last layer was trained for mean-pooled sentence \
                         embeddings and keeps less word-class information than the earlier layers"
                    } else {
                        "the last layer is the best of those measured, so the shortfall is the \
                         encoder's own"
                    };
                    writeln!(
                        w,
                        "The same probe on each layer (`reproduce layers`, the records under \
                         `layers/`) reads it best from layer {} ({:.2}% with {} training \
                         sentences): {why}; it is also 6 layers of width 384, not BERT-base's \
                         12 of 768. The comparison keeps the last layer, the one deployed \
                         heads read.\n\n{}",
                        b.layer,
                        100.0 * b.test,
                        b.train_examples,
                        crate::layers::render(&layers)
                    )?
                }
                None => writeln!(
                    w,
                    "No per-layer measurement is in this folder (`reproduce layers --out` it \
                     to add one)."
                )?,
            }
        }
    } else {
        let last = records.iter().filter(|r| r.best_step >= r.steps).count();
        writeln!(
            w,
            "- **Fine-tuning is short.** {} / {} steps per run (token / text; WNUT-16 twice); \
             in {last} of {} runs the best dev evaluation was the last one, so longer runs \
             would likely score higher and could narrow differences that come from a better \
             starting point.",
            s.token_steps,
            s.text_steps,
            records.len()
        )?;
    }
    if plan.teacher == crate::plan::TeacherChoice::MpnetStates {
        writeln!(
            w,
            "- **Distillation loss.** With MSE (the library's default until this comparison) the \
         NER-family pre-finetuning shrank the student's last hidden states about 3.5 times (mean norm \
         4.26 → 1.21 after 300 steps; naive and MTPF-TPL about halved them) and the downstream \
         heads then barely moved at the same learning rate (WNUT-16 entity F1 0 after 200 \
         steps, against 0.34 from the plain model); the comparison therefore uses cosine \
         distillation (`--distill mse` or `--sweep distill=mse` reruns the MSE variant)."
        )?;
    }
    writeln!(
        w,
        "- **Data.** The NER family here is WNUT-16 (train split only, split here), Brown \
         proper-name spans and Brown POS; CoNLL-2003, the other reachable English NER set, \
         trained the teacher and stays out of the downstream comparison. The paper's NER tasks \
         and text-classification tasks are not reachable from this machine."
    )?;

    // Ablation.
    let settings: BTreeSet<&str> = records
        .iter()
        .filter(|r| r.arm == Arm::MtpfTpl.name())
        .map(|r| r.setting.as_str())
        .collect();
    if settings.len() > 1 {
        let swept = |r: &&RunRecord| r.setting != "default" && r.arm == Arm::MtpfTpl.name();
        let sweep_seeds: BTreeSet<u64> = records.iter().filter(swept).map(|r| r.seed).collect();
        let sweep_task_set: BTreeSet<&str> = records
            .iter()
            .filter(swept)
            .map(|r| r.task.as_str())
            .collect();
        writeln!(w, "\n## Ablation: MTPF-TPL's knobs\n")?;
        writeln!(
            w,
            "MTPF-TPL pre-finetuned and fine-tuned again with one knob changed (the rest as in \
             the main setting); Δ against the main setting's no PF, paired by seed, with its \
             95% paired bootstrap interval, on the tasks and seeds the changed settings ran \
             ({}; seeds {}). The `default` row is the \
             main setting's MTPF-TPL on those same tasks and seeds, so the rows compare; the \
             main table above averages all tasks and seeds.\n",
            sweep_tasks(&records),
            sweep_seeds
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )?;
        write!(w, "| setting |")?;
        for family in ["NER", "TC"] {
            for &fraction in &fractions {
                write!(w, " {family} {fraction}% Δ |")?;
            }
        }
        write!(w, " PF time |\n|---|")?;
        for _ in 0..2 * fractions.len() {
            write!(w, "---:|")?;
        }
        writeln!(w, "---:|")?;
        for setting in settings {
            write!(w, "| `{setting}` |")?;
            for family in ["NER", "TC"] {
                let ft: Vec<&str> = family_tasks(family)
                    .into_iter()
                    .filter(|t| {
                        sweep_task_set.contains(t)
                            && records.iter().any(|r| {
                                r.setting == setting && r.arm == "mtpf-tpl" && r.task == *t
                            })
                    })
                    .collect();
                for &fraction in &fractions {
                    let d = (!ft.is_empty())
                        .then(|| {
                            family_delta_over(
                                &scores,
                                setting,
                                "mtpf-tpl",
                                &ft,
                                fraction,
                                Some(&sweep_seeds),
                            )
                        })
                        .flatten();
                    let interval = (!ft.is_empty())
                        .then(|| {
                            family_interval(
                                &records,
                                (setting, "mtpf-tpl"),
                                NO_PF,
                                &ft,
                                fraction,
                                Some(&sweep_seeds),
                                0.95,
                            )
                        })
                        .flatten();
                    match (interval, d) {
                        (Some(i), _) => write!(w, " {} |", with_interval(&i))?,
                        (None, Some(((m, sd), n))) if n > 1 => {
                            write!(w, " {} ± {:.2} |", signed(m), 100.0 * sd)?
                        }
                        (None, Some(((m, _), _))) => write!(w, " {} |", signed(m))?,
                        (None, None) => write!(w, " – |")?,
                    }
                }
            }
            let seconds = ctx
                .pf
                .iter()
                .find(|p| p.setting == setting && p.arm == "mtpf-tpl")
                .map_or("–".into(), |p| hours(p.seconds));
            writeln!(w, " {seconds} |")?;
        }
    }

    // Pre-finetuning runs.
    if !ctx.pf.is_empty() {
        writeln!(w, "\n## Pre-finetuning runs\n")?;
        writeln!(
            w,
            "| arm | setting | NER steps | TC steps | best dev metric (− loss) at step | time |"
        )?;
        writeln!(w, "|---|---|---:|---:|---:|---:|")?;
        for p in &ctx.pf {
            writeln!(
                w,
                "| {} | `{}` | {} | {} | {} | {} |",
                match (
                    Arm::from_name(&p.arm).map_or(p.arm.as_str(), |a| a.label()),
                    p.pf_seed
                ) {
                    (label, 0) => label.to_owned(),
                    (label, k) => format!("{label} (seed {k})"),
                },
                p.setting,
                p.ner_steps,
                p.tc_steps,
                p.fit
                    .best
                    .map_or("–".into(), |(m, s)| format!("{m:.4} at {s}")),
                match p.fit.resumed_from {
                    // The step counts and time cover the steps after the resume only.
                    Some(step) => format!(
                        "{} for the steps after a resume at step {step}; about {} for all {} \
                         at that rate",
                        hours(p.seconds),
                        hours(pf_seconds(p)),
                        p.fit.steps
                    ),
                    None => hours(p.seconds),
                }
            )?;
        }
        if let Some(t) = ctx.teacher_seconds {
            writeln!(
                w,
                "\nTeacher (training, when this folder trained it, and its pass over the \
                 sentences): {}.",
                hours(t)
            )?;
        }
        writeln!(
            w,
            "\nThe dev metric is minus the mean loss of the held-out batches; for the multi-task \
             arms it adds both families' losses, so it compares checkpoints of one arm only."
        )?;
    }
    std::fs::write(report.with_extension("md.partial"), &md)?;
    std::fs::rename(report.with_extension("md.partial"), report)?;
    Ok(())
}

fn sweep_tasks(records: &[RunRecord]) -> String {
    let tasks: BTreeSet<&str> = records
        .iter()
        .filter(|r| r.setting != "default")
        .map(|r| r.task.as_str())
        .collect();
    tasks.into_iter().collect::<Vec<_>>().join(", ")
}

/// The main setting's knobs, as the report prints them.
struct PfDefaults {
    rank: usize,
    k: usize,
    targets: String,
    temperature: Option<f64>,
}

impl PfDefaults {
    fn of(plan: &Plan) -> PfDefaults {
        let Setting {
            rank,
            k,
            targets,
            temperature,
            ..
        } = plan.setting.clone();
        PfDefaults {
            rank,
            k,
            targets: targets.join("/"),
            temperature,
        }
    }
}

#[cfg(test)]
mod tests {
    use lora_bert::metrics::bootstrap::Counts;

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
