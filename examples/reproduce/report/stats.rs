//! The statistics the report's tables and claims read: scores indexed by arm, task, fraction
//! and seed, family-average deltas against no PF paired by seed, and their paired bootstrap
//! intervals.

use std::collections::{BTreeMap, BTreeSet};

use lora_bert::metrics::bootstrap::{BootstrapOptions, Interval, Run, TaskPair, paired_bootstrap};

use crate::plan::Arm;
use crate::runs::RunRecord;

/// Mean and sample standard deviation (n − 1; 0 for one value).
pub(super) fn mean_std(values: &[f64]) -> (f64, f64) {
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
pub(super) type Scores = BTreeMap<(String, String, String, u32), BTreeMap<u64, f64>>;

pub(super) fn pct(fraction: f64) -> u32 {
    (fraction * 100.0).round() as u32
}

/// A seed's score is the mean over the pre-finetuning seeds it ran under.
pub(super) fn index(records: &[RunRecord]) -> Scores {
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
pub(super) fn family_delta(
    scores: &Scores,
    setting: &str,
    arm: &str,
    family_tasks: &[&str],
    fraction: u32,
) -> Option<((f64, f64), usize)> {
    family_delta_over(scores, setting, arm, family_tasks, fraction, None)
}

/// [`family_delta`] over the seeds in `only` (all seeds when `None`).
pub(super) fn family_delta_over(
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
pub(super) fn family_interval(
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
pub(super) fn is_damage_check(task: &crate::plan::TaskDef) -> bool {
    task.kind == crate::plan::Kind::Token(lora_bert::train::TokenMetric::Accuracy)
}

/// The arm every Δ is taken against: no PF in the default setting.
pub(super) const NO_PF: (&str, &str) = ("default", "no-pf");

/// What a 95% interval says of a claim that the difference is positive (`want_positive`) or
/// negative.
pub(super) fn verdict_of(interval: Option<&Interval>, want_positive: bool) -> &'static str {
    match interval {
        None => "undecided (no per-item records to put an interval on it)",
        Some(i) if want_positive && i.above_zero() || !want_positive && i.below_zero() => "holds",
        Some(i) if want_positive && i.below_zero() || !want_positive && i.above_zero() => {
            "does not hold"
        }
        Some(_) => "undecided (the 95% interval includes 0)",
    }
}
