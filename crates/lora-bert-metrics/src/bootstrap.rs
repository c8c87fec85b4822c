//! Paired bootstrap confidence intervals for the difference between two systems scored on the
//! same test items, over test items and seeds at once.
//!
//! A score here is a micro average of per-item [`Counts`]: entity F1 is
//! `2·Σtp / (Σpredicted + Σgold)`, and accuracy (of texts, or of tokens) is the same formula
//! with `predicted = gold` = the number of units. So a run is kept as one [`Counts`] per test
//! item, and any resample of the items is scored exactly as the full set is.
//!
//! [`paired_bootstrap`] compares arm A with arm B on one or more tasks (a family average is
//! the mean of the tasks' scores). Each arm has runs on a grid of **groups** (say,
//! pre-finetuning seeds; one group for an arm that does not pre-finetune) × **seeds** (say,
//! fine-tuning seeds, which draw the same data subset for both arms). One bootstrap replicate
//!
//! - draws each task's test items with replacement, the same items for both arms (paired);
//! - draws the seeds with replacement, the same seeds for both arms and every task (paired);
//! - draws each arm's groups with replacement, independently for A and B, the same for every
//!   task (one group is one backbone, used by every task);
//!
//! and scores each arm as the mean over the drawn groups × seeds of the runs' scores on the
//! drawn items. The interval is the percentile interval of the replicates' differences. So
//! test-set sampling error, seed-to-seed variance and group-to-group (pre-finetuning) variance
//! all widen it.
//!
//! ```
//! use lora_bert_metrics::bootstrap::{BootstrapOptions, Counts, Run, TaskPair, paired_bootstrap};
//!
//! // Two classifiers on the same 200 texts, one seed each: A is right on 160, B on 140.
//! let a: Vec<Counts> = (0..200).map(|i| Counts::unit(i % 5 != 0)).collect();
//! let b: Vec<Counts> = (0..200).map(|i| Counts::unit(i % 10 < 7)).collect();
//! let (a, b) = ([Run::new(0, 0, a)], [Run::new(0, 0, b)]);
//! let delta = paired_bootstrap(&[TaskPair::new(&a, &b)], &BootstrapOptions::default())?;
//! assert!((delta.estimate - 0.10).abs() < 1e-12);
//! assert!(delta.low > 0.0 && delta.high < 0.2); // A is better: the interval excludes 0
//! # Ok::<(), lora_bert_metrics::MetricsError>(())
//! ```

use std::collections::BTreeSet;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::MetricsError;

/// What one test item contributes to a micro-averaged score.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Counts {
    /// Units right: true-positive entities, correctly tagged tokens, or 1 for a text
    /// classified correctly.
    pub correct: u32,
    /// Units predicted: entities predicted, or the units scored for accuracy.
    pub predicted: u32,
    /// Gold units: gold entities, or the units scored for accuracy.
    pub gold: u32,
}

impl Counts {
    /// One text classified: right or wrong.
    pub fn unit(correct: bool) -> Self {
        Counts::tokens(usize::from(correct), 1)
    }

    /// `correct` of `total` units right (token accuracy of one sentence).
    ///
    /// # Panics
    ///
    /// If `correct > total` or `total` exceeds `u32::MAX`.
    pub fn tokens(correct: usize, total: usize) -> Self {
        assert!(correct <= total, "{correct} right of {total}");
        let total = u32::try_from(total).expect("units fit in u32");
        Counts {
            correct: correct as u32,
            predicted: total,
            gold: total,
        }
    }

    /// Entities of one sentence: `true_positive` of `predicted` predicted, `gold` in the gold
    /// annotation.
    pub fn entities(true_positive: u32, predicted: u32, gold: u32) -> Self {
        Counts {
            correct: true_positive,
            predicted,
            gold,
        }
    }

    /// The score of these counts: `2·correct / (predicted + gold)`, entity micro-F1 (seqeval's)
    /// or accuracy; 0 when there is nothing predicted and nothing gold.
    pub fn score(self) -> f64 {
        Counts::sum([&self]).score()
    }

    /// The sum of `items`' counts (in `u64` terms: no overflow for any test set).
    pub fn sum<'a>(items: impl IntoIterator<Item = &'a Counts>) -> Summed {
        let mut s = Summed::default();
        for c in items {
            s.add(*c);
        }
        s
    }
}

/// Counts summed over many items.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summed {
    /// Σ correct.
    pub correct: u64,
    /// Σ predicted.
    pub predicted: u64,
    /// Σ gold.
    pub gold: u64,
}

impl Summed {
    fn add(&mut self, c: Counts) {
        self.correct += u64::from(c.correct);
        self.predicted += u64::from(c.predicted);
        self.gold += u64::from(c.gold);
    }

    /// As [`Counts::score`].
    pub fn score(self) -> f64 {
        let denominator = self.predicted as f64 + self.gold as f64;
        if denominator == 0.0 {
            0.0
        } else {
            2.0 * self.correct as f64 / denominator
        }
    }
}

/// One scored run: the per-item counts of one group × seed on a task's test set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// The group the run belongs to (a pre-finetuning seed; any constant for an arm without).
    pub group: u64,
    /// The pairing seed: a run of A is paired with B's runs of the same seed.
    pub seed: u64,
    /// One entry per test item, in the task's item order (the same order in every run).
    pub items: Vec<Counts>,
}

impl Run {
    /// A run of `group` and `seed` with per-item `items`.
    pub fn new(group: u64, seed: u64, items: Vec<Counts>) -> Self {
        Run { group, seed, items }
    }

    /// The run's score on all its items.
    pub fn score(&self) -> f64 {
        Counts::sum(&self.items).score()
    }
}

/// Arm A's and arm B's runs on one task.
#[derive(Debug, Clone, Copy)]
pub struct TaskPair<'a> {
    /// The runs of the arm the difference is taken from (A − B).
    pub a: &'a [Run],
    /// The runs of the arm compared against.
    pub b: &'a [Run],
}

impl<'a> TaskPair<'a> {
    /// The runs of A and B on one task.
    pub fn new(a: &'a [Run], b: &'a [Run]) -> Self {
        TaskPair { a, b }
    }
}

/// How many replicates, at which confidence, from which random seed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BootstrapOptions {
    /// Replicates (default 2000).
    pub resamples: usize,
    /// Two-sided confidence of the interval (default 0.95). For a TOST equivalence test at
    /// level α, use `1 − 2α` (0.90 for α = 0.05) and [`Interval::within`].
    pub confidence: f64,
    /// Seed of the resampling (default 0): the same inputs and options give the same interval.
    pub seed: u64,
}

impl Default for BootstrapOptions {
    fn default() -> Self {
        BootstrapOptions {
            resamples: 2000,
            confidence: 0.95,
            seed: 0,
        }
    }
}

/// A difference A − B with its bootstrap percentile interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// The difference on the data as it is: mean over tasks of (mean run score of A − of B).
    pub estimate: f64,
    /// Lower end of the interval.
    pub low: f64,
    /// Upper end of the interval.
    pub high: f64,
    /// Its two-sided confidence.
    pub confidence: f64,
    /// Replicates it was computed from.
    pub resamples: usize,
}

impl Interval {
    /// Whether the whole interval is above 0 (A better than B at this confidence).
    pub fn above_zero(&self) -> bool {
        self.low > 0.0
    }

    /// Whether the whole interval is below 0.
    pub fn below_zero(&self) -> bool {
        self.high < 0.0
    }

    /// Whether the whole interval lies strictly inside `(−margin, margin)`: with a `1 − 2α`
    /// interval, the two one-sided tests (TOST) declare A and B equivalent within `margin` at
    /// level α.
    pub fn within(&self, margin: f64) -> bool {
        -margin < self.low && self.high < margin
    }
}

/// One arm's runs on one task, as a groups × seeds grid.
struct Grid<'a> {
    /// `runs[g][s]`: the run of the arm's `g`-th group and the `s`-th common seed.
    runs: Vec<Vec<&'a Run>>,
}

fn unpaired(message: String) -> MetricsError {
    MetricsError::Unpaired { message }
}

impl<'a> Grid<'a> {
    fn new(runs: &'a [Run], seeds: &[u64], what: &str) -> Result<Self, MetricsError> {
        let groups: BTreeSet<u64> = runs.iter().map(|r| r.group).collect();
        let mut grid = Vec::with_capacity(groups.len());
        for &g in &groups {
            let mut row = Vec::with_capacity(seeds.len());
            for &s in seeds {
                let mut found = runs.iter().filter(|r| r.group == g && r.seed == s);
                match (found.next(), found.next()) {
                    (Some(run), None) => row.push(run),
                    (None, _) => {
                        return Err(unpaired(format!(
                            "{what} has no run of group {g}, seed {s}"
                        )));
                    }
                    (Some(_), Some(_)) => {
                        return Err(unpaired(format!(
                            "{what} has two runs of group {g}, seed {s}"
                        )));
                    }
                }
            }
            grid.push(row);
        }
        Ok(Grid { runs: grid })
    }

    fn groups(&self) -> usize {
        self.runs.len()
    }

    /// Mean over the drawn groups × seeds of the runs' scores on the drawn items.
    fn score(&self, groups: &[usize], seeds: &[usize], items: &[usize]) -> f64 {
        let mut total = 0.0;
        for &g in groups {
            for &s in seeds {
                let run = &self.runs[g][s];
                total += Counts::sum(items.iter().map(|&i| &run.items[i])).score();
            }
        }
        total / (groups.len() * seeds.len()) as f64
    }

    /// Mean run score on all items.
    fn mean(&self) -> f64 {
        let n = self.runs.iter().map(Vec::len).sum::<usize>();
        self.runs.iter().flatten().map(|r| r.score()).sum::<f64>() / n as f64
    }
}

/// The paired bootstrap interval of A − B, averaged over `tasks` (see the [module](self)
/// docs for what one replicate draws).
///
/// # Errors
///
/// [`MetricsError::Empty`] for no tasks, a task without runs or without items, or no
/// replicates; [`MetricsError::Unpaired`] when the runs cannot be paired: seeds that differ
/// between the arms or the tasks, a group missing a seed or holding one twice, runs of one task
/// with different item counts, an arm with different groups on different tasks;
/// [`MetricsError::InvalidArgument`] for a confidence outside (0, 1).
pub fn paired_bootstrap(
    tasks: &[TaskPair<'_>],
    options: &BootstrapOptions,
) -> Result<Interval, MetricsError> {
    let confidence = options.confidence;
    if !(confidence > 0.0 && confidence < 1.0) {
        return Err(MetricsError::InvalidArgument {
            message: format!("confidence {confidence} is not in (0, 1)"),
        });
    }
    if tasks.is_empty() || options.resamples == 0 {
        return Err(MetricsError::Empty);
    }
    let seeds_of = |runs: &[Run]| runs.iter().map(|r| r.seed).collect::<BTreeSet<u64>>();
    let seeds: Vec<u64> = seeds_of(tasks[0].a).into_iter().collect();
    let mut grids = Vec::with_capacity(tasks.len());
    let mut sizes = Vec::with_capacity(tasks.len());
    for (t, task) in tasks.iter().enumerate() {
        if task.a.is_empty() || task.b.is_empty() {
            return Err(MetricsError::Empty);
        }
        for (side, runs) in [("A", task.a), ("B", task.b)] {
            let own: Vec<u64> = seeds_of(runs).into_iter().collect();
            if own != seeds {
                return Err(unpaired(format!(
                    "task {t}: arm {side} has seeds {own:?}, task 0's arm A has {seeds:?}"
                )));
            }
        }
        let n = task.a[0].items.len();
        if n == 0 {
            return Err(MetricsError::Empty);
        }
        if let Some(r) = task.a.iter().chain(task.b).find(|r| r.items.len() != n) {
            return Err(unpaired(format!(
                "task {t}: a run of group {}, seed {} has {} items, another {n}",
                r.group,
                r.seed,
                r.items.len()
            )));
        }
        let a = Grid::new(task.a, &seeds, &format!("task {t}, arm A"))?;
        let b = Grid::new(task.b, &seeds, &format!("task {t}, arm B"))?;
        if let Some((first_a, first_b)) = grids.first().map(|(a, b): &(Grid, Grid)| (a, b))
            && (a.groups() != first_a.groups() || b.groups() != first_b.groups())
        {
            return Err(unpaired(format!(
                "task {t}: {} × {} groups, task 0 has {} × {}",
                a.groups(),
                b.groups(),
                first_a.groups(),
                first_b.groups()
            )));
        }
        grids.push((a, b));
        sizes.push(n);
    }

    let estimate = grids.iter().map(|(a, b)| a.mean() - b.mean()).sum::<f64>() / tasks.len() as f64;

    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let (groups_a, groups_b) = (grids[0].0.groups(), grids[0].1.groups());
    let draw = |n: usize, rng: &mut ChaCha8Rng| -> Vec<usize> {
        (0..n).map(|_| rng.random_range(0..n)).collect()
    };
    let mut replicates = Vec::with_capacity(options.resamples);
    for _ in 0..options.resamples {
        let seeds_drawn = draw(seeds.len(), &mut rng);
        let drawn_a = draw(groups_a, &mut rng);
        let drawn_b = draw(groups_b, &mut rng);
        let mut delta = 0.0;
        for ((a, b), &n) in grids.iter().zip(&sizes) {
            let items = draw(n, &mut rng);
            delta +=
                a.score(&drawn_a, &seeds_drawn, &items) - b.score(&drawn_b, &seeds_drawn, &items);
        }
        replicates.push(delta / tasks.len() as f64);
    }
    replicates.sort_by(f64::total_cmp);
    let tail = (1.0 - confidence) / 2.0;
    Ok(Interval {
        estimate,
        low: quantile(&replicates, tail),
        high: quantile(&replicates, 1.0 - tail),
        confidence,
        resamples: options.resamples,
    })
}

/// The `q` quantile of `sorted` (linear interpolation between order statistics: R's type 7,
/// numpy's default).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    let Some(&last) = sorted.last() else {
        return f64::NAN;
    };
    let at = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (below, frac) = (at.floor() as usize, at.fract());
    match sorted.get(below + 1) {
        Some(&next) => sorted[below] + frac * (next - sorted[below]),
        None => last,
    }
}
