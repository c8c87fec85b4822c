//! Multi-task sampling: which task the next (task-homogeneous) batch comes from.
//!
//! A [`MultiTaskSampler`] draws a task per training step from task sizes and a [`Strategy`]
//! (proportional to size, temperature-scaled, or round-robin), deterministically for a seed.
//! [`MultiTaskSampler::batches`] combines it with one [`BatchPlan`] per task into an endless
//! stream of [`TaskBatch`]es; each task walks through the epochs of its own plan, starting the
//! next epoch when one is used up, independently of the other tasks.
//!
//! ```
//! use lora_bert_data::batch::{BatchConfig, BatchPlan};
//! use lora_bert_data::sampler::{MultiTaskSampler, Strategy};
//!
//! let plans = vec![
//!     BatchPlan::new(vec![8; 900], BatchConfig::new(32).shuffled(1))?, // task 0: 900 examples
//!     BatchPlan::new(vec![8; 100], BatchConfig::new(32).shuffled(2))?, // task 1: 100 examples
//! ];
//! let sampler = MultiTaskSampler::for_plans(&plans, Strategy::Temperature(2.0), 7)?;
//! // p ∝ n^(1/T): 30 : 10
//! assert!((sampler.probabilities()[0] - 0.75).abs() < 1e-12);
//!
//! let mut batches = sampler.batches(plans)?;
//! assert_eq!(batches.steps_per_epoch(), 29 + 4);
//! let step = batches.next().unwrap();
//! assert!(step.task < 2 && !step.indices.is_empty());
//! # Ok::<(), lora_bert_data::DataError>(())
//! ```

use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::batch::BatchPlan;
use crate::{DataError, Result};

/// How the task of each step is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Strategy {
    /// Task `i` with probability `n_i / Σ n_j`: every example is seen about equally often.
    Proportional,
    /// Task `i` with probability `∝ n_i^(1/T)`: `T = 1` is proportional, a larger `T` moves
    /// towards uniform (the limit `T → ∞`), giving small tasks more steps. `T` must be finite
    /// and > 0.
    Temperature(f64),
    /// Tasks in turn, `0, 1, …, k-1, 0, 1, …`: exactly equal counts; [`MultiTaskSampler::probabilities`]
    /// reports the uniform long-run frequencies.
    RoundRobin,
}

/// Chooses the task of every step; see the [module docs](self).
///
/// Task sizes must all be at least 1: an empty task is refused rather than silently given
/// probability 0, since it almost always means a dataset failed to load or filter.
#[derive(Debug, Clone, PartialEq)]
pub struct MultiTaskSampler {
    sizes: Vec<usize>,
    strategy: Strategy,
    seed: u64,
    probabilities: Vec<f64>,
    cumulative: Arc<[f64]>,
}

impl MultiTaskSampler {
    /// A sampler over tasks of the given sizes (usually their numbers of examples).
    ///
    /// # Errors
    ///
    /// [`DataError::Empty`] for no task or a task of size 0; [`DataError::InvalidArgument`]
    /// for a temperature that is not finite and > 0.
    pub fn new(task_sizes: &[usize], strategy: Strategy, seed: u64) -> Result<Self> {
        if task_sizes.is_empty() {
            return Err(DataError::Empty("task list".into()));
        }
        if let Some(i) = task_sizes.iter().position(|&n| n == 0) {
            return Err(DataError::Empty(format!("task {i}")));
        }
        let weights: Vec<f64> = match strategy {
            Strategy::Proportional => task_sizes.iter().map(|&n| n as f64).collect(),
            Strategy::Temperature(t) => {
                if !(t.is_finite() && t > 0.0) {
                    return Err(DataError::InvalidArgument {
                        what: "temperature",
                        message: format!("{t} is not finite and > 0"),
                    });
                }
                // n_i^(1/T) relative to the largest task, in log space: no overflow.
                let max = task_sizes.iter().copied().max().unwrap_or(1) as f64;
                task_sizes
                    .iter()
                    .map(|&n| (((n as f64).ln() - max.ln()) / t).exp())
                    .collect()
            }
            Strategy::RoundRobin => vec![1.0; task_sizes.len()],
        };
        let total: f64 = weights.iter().sum();
        let probabilities: Vec<f64> = weights.iter().map(|w| w / total).collect();
        let cumulative = probabilities
            .iter()
            .scan(0.0, |acc, p| {
                *acc += p;
                Some(*acc)
            })
            .collect();
        Ok(Self {
            sizes: task_sizes.to_vec(),
            strategy,
            seed,
            probabilities,
            cumulative,
        })
    }

    /// A sampler whose task sizes are the numbers of examples of `plans`.
    ///
    /// # Errors
    ///
    /// As [`MultiTaskSampler::new`].
    pub fn for_plans(plans: &[BatchPlan], strategy: Strategy, seed: u64) -> Result<Self> {
        let sizes: Vec<usize> = plans.iter().map(BatchPlan::len).collect();
        Self::new(&sizes, strategy, seed)
    }

    /// Number of tasks.
    pub fn num_tasks(&self) -> usize {
        self.sizes.len()
    }

    /// The task sizes.
    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }

    /// The strategy.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// Probability of each task at every step (sums to 1); for [`Strategy::RoundRobin`] the
    /// long-run frequency `1 / k`.
    pub fn probabilities(&self) -> &[f64] {
        &self.probabilities
    }

    /// The endless sequence of task indices, the same for the same seed.
    pub fn tasks(&self) -> TaskSequence {
        TaskSequence {
            rng: ChaCha8Rng::seed_from_u64(self.seed),
            cumulative: Arc::clone(&self.cumulative),
            round_robin: self.strategy == Strategy::RoundRobin,
            step: 0,
        }
    }

    /// The endless stream of task-homogeneous batches: at each step the task from
    /// [`MultiTaskSampler::tasks`] and that task's next batch from its plan (`plans[i]` for task
    /// `i`). A task that has used up the batches of epoch `e` of its plan goes on with epoch
    /// `e + 1`.
    ///
    /// # Errors
    ///
    /// [`DataError::LengthMismatch`] if there is not one plan per task;
    /// [`DataError::InvalidArgument`] for a plan with no batch (`drop_last` with fewer examples
    /// than the batch size).
    pub fn batches(&self, plans: Vec<BatchPlan>) -> Result<MultiTaskBatches> {
        if plans.len() != self.num_tasks() {
            return Err(DataError::LengthMismatch {
                what: "batch plans, one per task".into(),
                expected: self.num_tasks(),
                found: plans.len(),
            });
        }
        if let Some(i) = plans.iter().position(|p| p.num_batches() == 0) {
            return Err(DataError::InvalidArgument {
                what: "batch plan",
                message: format!(
                    "task {i} has no batch: drop_last with fewer examples than the batch size"
                ),
            });
        }
        Ok(MultiTaskBatches {
            tasks: self.tasks(),
            cursors: plans
                .into_iter()
                .map(|plan| Cursor {
                    batches: plan.epoch(0),
                    plan,
                    epoch: 0,
                    next: 0,
                })
                .collect(),
        })
    }
}

/// Endless iterator of task indices; see [`MultiTaskSampler::tasks`].
#[derive(Debug, Clone)]
pub struct TaskSequence {
    rng: ChaCha8Rng,
    cumulative: Arc<[f64]>,
    round_robin: bool,
    step: usize,
}

impl Iterator for TaskSequence {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let k = self.cumulative.len();
        let task = if self.round_robin {
            self.step % k
        } else {
            let u: f64 = self.rng.random();
            // First task whose cumulative probability exceeds u; `min` guards rounding in the
            // last cumulative value.
            self.cumulative.partition_point(|&c| c <= u).min(k - 1)
        };
        self.step += 1;
        Some(task)
    }
}

/// One step of multi-task training: a batch of one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskBatch {
    /// The task.
    pub task: usize,
    /// The epoch of the task's plan the batch belongs to.
    pub epoch: u64,
    /// Indices of the examples in the task's dataset.
    pub indices: Vec<usize>,
}

#[derive(Debug, Clone)]
struct Cursor {
    plan: BatchPlan,
    epoch: u64,
    batches: Vec<Vec<usize>>,
    next: usize,
}

impl Cursor {
    fn next_batch(&mut self) -> (u64, Vec<usize>) {
        if self.next == self.batches.len() {
            self.epoch += 1;
            self.batches = self.plan.epoch(self.epoch);
            self.next = 0;
        }
        self.next += 1;
        (self.epoch, std::mem::take(&mut self.batches[self.next - 1]))
    }
}

/// Endless iterator of [`TaskBatch`]es; see [`MultiTaskSampler::batches`].
#[derive(Debug, Clone)]
pub struct MultiTaskBatches {
    tasks: TaskSequence,
    cursors: Vec<Cursor>,
}

impl MultiTaskBatches {
    /// Steps in one multi-task epoch, by convention the number of batches of one epoch of all
    /// the plans together, `Σ_i num_batches_i`, whatever the strategy: under
    /// [`Strategy::Proportional`] (with sizes = examples and equal batch sizes) every batch is
    /// then seen once in expectation; other strategies see small tasks more often and large
    /// ones less in the same number of steps. Use `iter.by_ref().take(steps_per_epoch)`.
    pub fn steps_per_epoch(&self) -> usize {
        self.cursors.iter().map(|c| c.plan.num_batches()).sum()
    }
}

impl Iterator for MultiTaskBatches {
    type Item = TaskBatch;

    fn next(&mut self) -> Option<TaskBatch> {
        let task = self.tasks.next()?;
        let (epoch, indices) = self.cursors[task].next_batch();
        Some(TaskBatch {
            task,
            epoch,
            indices,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temperature_probabilities_by_hand() {
        // sizes 1, 4, 16 with T = 2: weights 1, 2, 4 -> 1/7, 2/7, 4/7.
        let s = MultiTaskSampler::new(&[1, 4, 16], Strategy::Temperature(2.0), 0).unwrap();
        for (p, e) in s
            .probabilities()
            .iter()
            .zip([1.0 / 7.0, 2.0 / 7.0, 4.0 / 7.0])
        {
            assert!((p - e).abs() < 1e-12, "{p} vs {e}");
        }
        let p = MultiTaskSampler::new(&[1, 3], Strategy::Proportional, 0).unwrap();
        assert_eq!(p.probabilities(), [0.25, 0.75]);
    }

    #[test]
    fn cursor_moves_to_the_next_epoch() {
        let plan = BatchPlan::new(vec![1; 3], crate::batch::BatchConfig::new(2)).unwrap();
        let mut c = Cursor {
            batches: plan.epoch(0),
            plan,
            epoch: 0,
            next: 0,
        };
        assert_eq!(c.next_batch(), (0, vec![0, 1]));
        assert_eq!(c.next_batch(), (0, vec![2]));
        assert_eq!(c.next_batch(), (1, vec![0, 1]));
    }
}
