//! Linear probes on frozen features: what a backbone (through a route) knows, measured
//! without the noise of fine-tuning.
//!
//! Features are computed once ([`token_states`]: every token's last hidden state;
//! [`text_states`]: mean-pooled sentence embeddings) with the model frozen, then a
//! multinomial logistic regression with L2 ([`LinearProbe::fit`]) is fitted on them,
//! full-batch, until the loss stops moving. For token tasks the probe is applied to every
//! token's state and the predictions are read back to words by the same path fine-tuning's
//! evaluation uses ([`stitch_word_ids`](crate::finetune::stitch_word_ids)), so a probe's
//! entity F1 is computed exactly like an app's.
//!
//! Each feature is standardised on the training rows (centred, divided by its standard
//! deviation) before the fit, so the L2 strength means the same whatever the features'
//! scale: a pre-finetuned backbone whose states grew or shrank is probed with the same
//! effective regularisation as the plain one. The standardisation is folded back into the
//! probe's weights, so [`LinearProbe::logits`] takes raw features.
//!
//! The fit is full-batch L-BFGS (ten correction pairs, backtracking Armijo line search): the
//! products `XW` and `Xᵀ(P − Y)` and the softmax run on the device's kernels; the loss and
//! the gradient are accumulated in f64 on the host, where the L-BFGS vectors live. It stops
//! when the largest gradient entry falls below [`ProbeConfig::tolerance`]. The problem is strictly convex (L2 > 0), so the result
//! depends on the data and `l2` only, up to that tolerance.

use burn::tensor::{Device, Tensor, TensorData};

use crate::finetune::host_values;
use crate::{Result, TrainError};

mod features;
mod lbfgs;
mod problem;

pub use features::{
    Layer, labelled_tokens, text_states, text_states_at, token_states, token_states_at,
};
use problem::Standardised;

/// How [`LinearProbe::fit`] runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeConfig {
    /// Most L-BFGS iterations (default 1000).
    pub max_steps: usize,
    /// L2 strength `λ` on the weights of the standardised features, not the bias (default
    /// 1e-4): the objective is `mean cross-entropy + λ/2 ‖W‖²`.
    pub l2: f64,
    /// Converged when no gradient entry exceeds this (default 1e-5).
    pub tolerance: f64,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            max_steps: 1000,
            l2: 1e-4,
            tolerance: 1e-5,
        }
    }
}

/// How a fit ended.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProbeFit {
    /// Steps taken.
    pub steps: usize,
    /// The regularised training loss at the end.
    pub loss: f64,
    /// The largest gradient entry at the end.
    pub gradient: f64,
    /// `true` when the gradient fell below the tolerance.
    pub converged: bool,
}

/// The L2 strengths a pilot or evaluation tries with [`LinearProbe::fit_selected`].
pub const L2_GRID: [f64; 9] = [1.0, 3e-1, 1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4];

/// One candidate L2 strength scored on held-out rows.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct L2Trial {
    /// The strength.
    pub l2: f64,
    /// Mean cross-entropy of the held-out rows.
    pub held_out_loss: f64,
    /// Share of held-out rows predicted right.
    pub held_out_accuracy: f64,
    /// How the fit on the other rows ended.
    pub fit: ProbeFit,
}

/// How [`LinearProbe::fit_selected`] chose its L2 strength.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct L2Selection {
    /// The strength chosen (the lowest held-out loss).
    pub l2: f64,
    /// Rows held out to choose it.
    pub held_out_rows: usize,
    /// Every candidate tried, strongest first.
    pub trials: Vec<L2Trial>,
}

/// A linear classifier `x·W + b` over `dim`-wide features.
#[derive(Debug, Clone)]
pub struct LinearProbe {
    weight: Tensor<2>,
    bias: Tensor<1>,
    dim: usize,
    classes: usize,
}

fn invalid(message: String) -> TrainError {
    TrainError::InvalidArgument {
        what: "linear probe",
        message,
    }
}

impl LinearProbe {
    /// Fits a probe on `features` (row-major `[n, dim]`) and their `labels` (each below
    /// `classes`), on `device` (an inference device).
    ///
    /// # Errors
    ///
    /// [`TrainError::InvalidArgument`] for no row, a zero width, features that are not
    /// `n × dim` values, a label not below `classes`, a non-finite feature or setting, or a
    /// loss that stops being finite. A fit that reaches `max_steps`, or whose line search
    /// can make no more progress, is returned with `converged: false`.
    pub fn fit(
        features: &[f32],
        dim: usize,
        labels: &[u32],
        classes: usize,
        config: &ProbeConfig,
        device: &Device,
    ) -> Result<(Self, ProbeFit)> {
        validate(features, dim, labels, classes, config)?;
        let problem = Standardised::new(features, dim, labels, classes, device);
        let (theta, fit) = problem.solve(config.l2, vec![0.0; (dim + 1) * classes], config)?;
        Ok((problem.probe(&theta), fit))
    }

    /// Fits a probe whose L2 strength is chosen on held-out rows: candidates from `grid`
    /// (tried strongest first, each fit warm-started from the previous one, to ten times
    /// `config.tolerance`) are fitted on rows `..split` and scored by the mean cross-entropy
    /// of rows `split..`; the path stops once that loss has risen twice in a row. The probe returned is refitted on all rows
    /// with the chosen strength, warm-started from the chosen fit. `config.l2` is not used.
    ///
    /// For token tasks, put whole sentences on each side of `split`, so that no sentence
    /// is both fitted and scored.
    ///
    /// # Errors
    ///
    /// As [`fit`](Self::fit); also for an empty grid, a non-positive candidate, or a
    /// `split` that leaves no row on one side.
    #[allow(clippy::too_many_arguments)]
    pub fn fit_selected(
        features: &[f32],
        dim: usize,
        labels: &[u32],
        classes: usize,
        split: usize,
        grid: &[f64],
        config: &ProbeConfig,
        device: &Device,
    ) -> Result<(Self, ProbeFit, L2Selection)> {
        validate(features, dim, labels, classes, config)?;
        if grid.is_empty() || grid.iter().any(|l| !(l.is_finite() && *l > 0.0)) {
            return Err(invalid(format!(
                "L2 candidates {grid:?}: need at least one, each positive and finite"
            )));
        }
        if split == 0 || split >= labels.len() {
            return Err(invalid(format!(
                "split at row {split} of {}: both sides need rows",
                labels.len()
            )));
        }
        let mut order = grid.to_vec();
        order.sort_by(|a, b| b.total_cmp(a));
        let (fit_x, held_x) = features.split_at(split * dim);
        let (fit_y, held_y) = labels.split_at(split);
        let problem = Standardised::new(fit_x, dim, fit_y, classes, device);
        let mut theta = vec![0.0; (dim + 1) * classes];
        let mut trials: Vec<L2Trial> = Vec::new();
        // The raw-feature solution at each strength, to warm-start the final fit.
        let mut solutions: Vec<Vec<f64>> = Vec::new();
        let mut rises = 0;
        // The path only ranks strengths: a tenth of the final fit's precision is plenty.
        let path_config = ProbeConfig {
            tolerance: config.tolerance * 10.0,
            ..*config
        };
        for l2 in order {
            let (next, fit) = problem.solve(l2, theta, &path_config)?;
            theta = next;
            solutions.push(problem.raw(&theta));
            let (loss, accuracy) = cross_entropy(&problem.probe(&theta).logits(held_x)?, held_y)?;
            if trials.last().is_some_and(|t| loss > t.held_out_loss) {
                rises += 1;
            } else {
                rises = 0;
            }
            trials.push(L2Trial {
                l2,
                held_out_loss: loss,
                held_out_accuracy: accuracy,
                fit,
            });
            if rises == 2 {
                break;
            }
        }
        let (best, start) = trials
            .iter()
            .zip(&solutions)
            .min_by(|a, b| a.0.held_out_loss.total_cmp(&b.0.held_out_loss))
            .map(|(t, raw)| (t.l2, raw))
            .ok_or_else(|| invalid("no L2 candidate was fitted".into()))?;
        // All rows, warm-started from the chosen fit (re-expressed in their standardisation).
        let all = Standardised::new(features, dim, labels, classes, device);
        let (theta, fit) = all.solve(best, all.standardised(start), config)?;
        Ok((
            all.probe(&theta),
            fit,
            L2Selection {
                l2: best,
                held_out_rows: labels.len() - split,
                trials,
            },
        ))
    }

    /// Fits a probe on all of `features` for each strength of `grid`, strongest first, each
    /// fit warm-started from the previous one (the regularisation path: far fewer steps than
    /// fitting each strength from zero), and hands each to `visit` with its strength and how
    /// its fit ended; stops when `visit` returns `false`. `config.l2` is not used. The caller
    /// scores each probe on its own held-out data (a dev set) and keeps the one it wants.
    ///
    /// # Errors
    ///
    /// As [`fit`](Self::fit); also for an empty grid or a non-positive candidate; an error
    /// `visit` returns.
    #[allow(clippy::too_many_arguments)]
    pub fn fit_path(
        features: &[f32],
        dim: usize,
        labels: &[u32],
        classes: usize,
        grid: &[f64],
        config: &ProbeConfig,
        device: &Device,
        mut visit: impl FnMut(f64, &LinearProbe, &ProbeFit) -> Result<bool>,
    ) -> Result<()> {
        validate(features, dim, labels, classes, config)?;
        if grid.is_empty() || grid.iter().any(|l| !(l.is_finite() && *l > 0.0)) {
            return Err(invalid(format!(
                "L2 candidates {grid:?}: need at least one, each positive and finite"
            )));
        }
        let mut order = grid.to_vec();
        order.sort_by(|a, b| b.total_cmp(a));
        let problem = Standardised::new(features, dim, labels, classes, device);
        let mut theta = vec![0.0; (dim + 1) * classes];
        for l2 in order {
            let (next, fit) = problem.solve(l2, theta, config)?;
            theta = next;
            if !visit(l2, &problem.probe(&theta), &fit)? {
                break;
            }
        }
        Ok(())
    }

    /// Continues fitting this probe on `features` and `labels` at `config.l2`, from its own
    /// weights (a warm start): finishes a fit that [`fit_path`](Self::fit_path) stopped at
    /// its step limit, say. The problem is strictly convex, so the result is the fit from
    /// zero's, up to the tolerance.
    ///
    /// # Errors
    ///
    /// As [`fit`](Self::fit), for features or labels that do not match this probe's width
    /// and classes.
    pub fn refine(
        &self,
        features: &[f32],
        labels: &[u32],
        config: &ProbeConfig,
        device: &Device,
    ) -> Result<(Self, ProbeFit)> {
        validate(features, self.dim, labels, self.classes, config)?;
        let problem = Standardised::new(features, self.dim, labels, self.classes, device);
        let mut raw: Vec<f64> = host_values(self.weight.clone(), "probe weight")?
            .into_iter()
            .map(f64::from)
            .collect();
        raw.extend(
            host_values(self.bias.clone(), "probe bias")?
                .into_iter()
                .map(f64::from),
        );
        let (theta, fit) = problem.solve(config.l2, problem.standardised(&raw), config)?;
        Ok((problem.probe(&theta), fit))
    }

    /// Width of the features.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Logits, row-major `[n, classes]`, of `features` (row-major `[n, dim]`).
    ///
    /// # Errors
    ///
    /// [`TrainError::InvalidArgument`] when `features` is not a whole number of rows.
    pub fn logits(&self, features: &[f32]) -> Result<Vec<f32>> {
        if features.is_empty() {
            return Ok(Vec::new());
        }
        if !features.len().is_multiple_of(self.dim) {
            return Err(invalid(format!(
                "{} feature values are not rows of width {}",
                features.len(),
                self.dim
            )));
        }
        let n = features.len() / self.dim;
        let device = self.weight.device();
        let x = Tensor::<2>::from_data(TensorData::new(features.to_vec(), [n, self.dim]), &device);
        host_values(
            x.matmul(self.weight.clone()) + self.bias.clone().unsqueeze_dim(0),
            "probe logits",
        )
    }

    /// The predicted class of each row (the first on ties).
    ///
    /// # Errors
    ///
    /// As [`logits`](Self::logits).
    pub fn predict(&self, features: &[f32]) -> Result<Vec<u32>> {
        Ok(self
            .logits(features)?
            .chunks_exact(self.classes)
            .map(|row| {
                let mut best = 0;
                for (i, &v) in row.iter().enumerate() {
                    if v > row[best] {
                        best = i;
                    }
                }
                best as u32
            })
            .collect())
    }
}

fn validate(
    features: &[f32],
    dim: usize,
    labels: &[u32],
    classes: usize,
    config: &ProbeConfig,
) -> Result<()> {
    let n = labels.len();
    if n == 0 || dim == 0 || classes < 2 || features.len() != n * dim {
        return Err(invalid(format!(
            "{} feature values for {n} rows of width {dim}, {classes} classes \
             (need rows, a width, two classes and n × dim values)",
            features.len()
        )));
    }
    if let Some(&bad) = labels.iter().find(|&&l| l as usize >= classes) {
        return Err(invalid(format!("label {bad} of {classes} classes")));
    }
    if features.iter().any(|v| !v.is_finite()) {
        return Err(invalid("a feature is not finite".into()));
    }
    let sane = config.l2.is_finite()
        && config.l2 > 0.0
        && config.tolerance.is_finite()
        && config.tolerance >= 0.0
        && config.max_steps > 0;
    if !sane {
        return Err(invalid(format!(
            "bad configuration {config:?} (l2 must be positive and finite)"
        )));
    }
    Ok(())
}

/// Mean cross-entropy and accuracy of row-major `logits` against `labels`, in f64.
fn cross_entropy(logits: &[f32], labels: &[u32]) -> Result<(f64, f64)> {
    let classes = logits.len() / labels.len().max(1);
    let mut loss = 0.0f64;
    let mut correct = 0usize;
    for (row, &label) in logits.chunks_exact(classes).zip(labels) {
        let max = row.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
        let z: f64 = row.iter().map(|&v| f64::from(v - max).exp()).sum();
        loss += z.ln() - f64::from(row[label as usize] - max);
        let best = row
            .iter()
            .enumerate()
            .fold(0, |b, (i, &v)| if v > row[b] { i } else { b });
        correct += usize::from(best == label as usize);
    }
    let n = labels.len() as f64;
    let loss = loss / n;
    if !loss.is_finite() {
        return Err(invalid(format!("the held-out loss is {loss}")));
    }
    Ok((loss, correct as f64 / n))
}
