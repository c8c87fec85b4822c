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

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use lora_bert_adapters::{AdaptedModel, Lora};
use lora_bert_data::batch::EncodedRows;
use lora_bert_data::token::{TokenBatch, TokenExample};
use lora_bert_encoder::Route;

use crate::finetune::host_values;
use crate::input::ToBertInput;
use crate::pooling::Pooling;
use crate::{Result, TrainError};

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

/// The probe's problem on standardised features: the rows, their labels, and the
/// per-feature mean and scale that map raw features onto them.
struct Standardised<'a> {
    x: Tensor<2>,
    index: Tensor<2, Int>,
    onehot: Tensor<2>,
    labels: &'a [u32],
    mean: Vec<f64>,
    scale: Vec<f64>,
    dim: usize,
    classes: usize,
    device: &'a Device,
}

impl<'a> Standardised<'a> {
    fn new(
        features: &[f32],
        dim: usize,
        labels: &'a [u32],
        classes: usize,
        device: &'a Device,
    ) -> Self {
        let (mean, scale) = standardisation(features, dim);
        let standard: Vec<f32> = features
            .chunks_exact(dim)
            .flat_map(|row| {
                row.iter()
                    .zip(mean.iter().zip(&scale))
                    .map(|(&v, (&m, &s))| ((f64::from(v) - m) / s) as f32)
            })
            .collect();
        let n = labels.len();
        let mut onehot = vec![0.0f32; n * classes];
        for (i, &l) in labels.iter().enumerate() {
            onehot[i * classes + l as usize] = 1.0;
        }
        let index: Vec<i64> = labels.iter().map(|&l| i64::from(l)).collect();
        Self {
            x: Tensor::<2>::from_data(TensorData::new(standard, [n, dim]), device),
            index: Tensor::from_data(TensorData::new(index, [n, 1]), device),
            onehot: Tensor::from_data(TensorData::new(onehot, [n, classes]), device),
            labels,
            mean,
            scale,
            dim,
            classes,
            device,
        }
    }

    /// Minimises the loss with L2 strength `l2` from `theta`.
    fn solve(
        &self,
        l2: f64,
        theta: Vec<f64>,
        config: &ProbeConfig,
    ) -> Result<(Vec<f64>, ProbeFit)> {
        let objective = Objective { problem: self, l2 };
        lbfgs(&objective, theta, config)
    }

    /// `θ` on raw features: the standardisation folded into the weights,
    /// `x·W' + b' = ((x − μ)/σ)·W + b`.
    fn raw(&self, theta: &[f64]) -> Vec<f64> {
        let (dim, classes) = (self.dim, self.classes);
        let mut out = theta.to_vec();
        let (w, b) = out.split_at_mut(dim * classes);
        for d in 0..dim {
            for c in 0..classes {
                w[d * classes + c] /= self.scale[d];
                b[c] -= self.mean[d] * w[d * classes + c];
            }
        }
        out
    }

    /// The inverse of [`raw`](Self::raw): raw-feature weights in this standardisation.
    fn standardised(&self, raw: &[f64]) -> Vec<f64> {
        let (dim, classes) = (self.dim, self.classes);
        let mut out = raw.to_vec();
        let (w, b) = out.split_at_mut(dim * classes);
        for d in 0..dim {
            for c in 0..classes {
                b[c] += self.mean[d] * w[d * classes + c];
                w[d * classes + c] *= self.scale[d];
            }
        }
        out
    }

    /// The probe on raw features (see [`raw`](Self::raw)).
    fn probe(&self, theta: &[f64]) -> LinearProbe {
        let (dim, classes) = (self.dim, self.classes);
        let raw = self.raw(theta);
        let (w, b) = raw.split_at(dim * classes);
        let weight: Vec<f32> = w.iter().map(|&v| v as f32).collect();
        let bias: Vec<f32> = b.iter().map(|&v| v as f32).collect();
        LinearProbe {
            weight: Tensor::from_data(TensorData::new(weight, [dim, classes]), self.device),
            bias: Tensor::from_data(TensorData::new(bias, [classes]), self.device),
            dim,
            classes,
        }
    }
}

/// Per-feature mean and standard deviation over the rows (a constant feature gets scale 1).
fn standardisation(features: &[f32], dim: usize) -> (Vec<f64>, Vec<f64>) {
    let n = (features.len() / dim) as f64;
    let mut mean = vec![0.0f64; dim];
    for row in features.chunks_exact(dim) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += f64::from(v);
        }
    }
    mean.iter_mut().for_each(|m| *m /= n);
    let mut var = vec![0.0f64; dim];
    for row in features.chunks_exact(dim) {
        for ((s, &v), m) in var.iter_mut().zip(row).zip(&mean) {
            *s += (f64::from(v) - m).powi(2);
        }
    }
    let scale = var
        .into_iter()
        .map(|s| {
            let sd = (s / n).sqrt();
            if sd > 1e-12 { sd } else { 1.0 }
        })
        .collect();
    (mean, scale)
}

/// The regularised softmax-regression loss of a [`Standardised`] problem at L2 strength
/// `l2`, as a function of `θ = [W (dim × classes, row-major), b (classes)]`.
struct Objective<'p, 'a> {
    problem: &'p Standardised<'a>,
    l2: f64,
}

impl Objective<'_, '_> {
    /// The loss and its gradient at `theta`.
    fn eval(&self, theta: &[f64]) -> Result<(f64, Vec<f64>)> {
        let p = self.problem;
        let (dim, classes) = (p.dim, p.classes);
        let n = p.labels.len();
        let (w, b) = theta.split_at(dim * classes);
        let to_f32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        let wt = Tensor::<2>::from_data(TensorData::new(to_f32(w), [dim, classes]), p.device);
        let bt = Tensor::<1>::from_data(TensorData::new(to_f32(b), [classes]), p.device);
        // Softmax and residual on the device (its kernels are parallel); only the n picked
        // log-probabilities, the bias gradient and `Xᵀ R` come back, summed in f64.
        let log_p = log_softmax(p.x.clone().matmul(wt) + bt.unsqueeze_dim(0), 1);
        let picked = host_values(log_p.clone().gather(1, p.index.clone()), "probe loss")?;
        let inv_n = 1.0 / n as f64;
        let mut loss = -picked.iter().map(|&v| f64::from(v)).sum::<f64>() * inv_n;
        let residual = (log_p.exp() - p.onehot.clone()).mul_scalar(inv_n);
        let gb = host_values(residual.clone().sum_dim(0), "probe bias gradient")?;
        let gw = host_values(p.x.clone().transpose().matmul(residual), "probe gradient")?;
        let mut grad = vec![0.0f64; theta.len()];
        for (g, &v) in grad[dim * classes..].iter_mut().zip(&gb) {
            *g = f64::from(v);
        }
        let mut penalty = 0.0f64;
        for ((g, &x), &wv) in grad.iter_mut().zip(&gw).zip(w) {
            *g = f64::from(x) + self.l2 * wv;
            penalty += wv * wv;
        }
        loss += 0.5 * self.l2 * penalty;
        if !loss.is_finite() {
            return Err(invalid(format!("the probe's loss is {loss}")));
        }
        Ok((loss, grad))
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0f64, |a, x| a.max(x.abs()))
}

/// Minimises `objective` from `theta` with L-BFGS (memory 10) and a backtracking Armijo line
/// search.
fn lbfgs(
    objective: &Objective<'_, '_>,
    mut theta: Vec<f64>,
    config: &ProbeConfig,
) -> Result<(Vec<f64>, ProbeFit)> {
    const MEMORY: usize = 10;
    let (mut loss, mut grad) = objective.eval(&theta)?;
    let mut pairs: std::collections::VecDeque<(Vec<f64>, Vec<f64>, f64)> =
        std::collections::VecDeque::with_capacity(MEMORY);
    let mut fit = ProbeFit {
        steps: 0,
        loss,
        gradient: max_abs(&grad),
        converged: fit_done(&grad, config),
    };
    while !fit.converged && fit.steps < config.max_steps {
        // Two-loop recursion: d = −H·g.
        let mut q = grad.clone();
        let mut alphas = Vec::with_capacity(pairs.len());
        for (s, y, rho) in pairs.iter().rev() {
            let a = rho * dot(s, &q);
            q.iter_mut().zip(y).for_each(|(q, y)| *q -= a * y);
            alphas.push(a);
        }
        if let Some((s, y, _)) = pairs.back() {
            let gamma = dot(s, y) / dot(y, y);
            q.iter_mut().for_each(|q| *q *= gamma);
        } else {
            // First step: a unit-length move along −g.
            let norm = dot(&grad, &grad).sqrt().max(1e-12);
            q.iter_mut().for_each(|q| *q /= norm);
        }
        for ((s, y, rho), a) in pairs.iter().zip(alphas.iter().rev()) {
            let b = rho * dot(y, &q);
            q.iter_mut().zip(s).for_each(|(q, s)| *q += (a - b) * s);
        }
        let mut direction: Vec<f64> = q.into_iter().map(|v| -v).collect();
        let mut slope = dot(&grad, &direction);
        if slope >= 0.0 {
            // Not a descent direction (curvature lost to rounding): restart from −g.
            pairs.clear();
            direction = grad.iter().map(|g| -g).collect();
            slope = -dot(&grad, &grad);
        }
        let mut step = 1.0f64;
        let mut accepted = None;
        for _ in 0..40 {
            let trial: Vec<f64> = theta
                .iter()
                .zip(&direction)
                .map(|(t, d)| t + step * d)
                .collect();
            let (trial_loss, trial_grad) = objective.eval(&trial)?;
            if trial_loss <= loss + 1e-4 * step * slope {
                accepted = Some((trial, trial_loss, trial_grad));
                break;
            }
            step *= 0.5;
        }
        let Some((next, next_loss, next_grad)) = accepted else {
            // The line search found no decrease: the loss is flat to rounding here.
            break;
        };
        let s: Vec<f64> = next.iter().zip(&theta).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = next_grad.iter().zip(&grad).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &y);
        if sy > 1e-12 * dot(&y, &y).max(1e-300) {
            if pairs.len() == MEMORY {
                pairs.pop_front();
            }
            pairs.push_back((s, y, 1.0 / sy));
        }
        (theta, loss, grad) = (next, next_loss, next_grad);
        fit = ProbeFit {
            steps: fit.steps + 1,
            loss,
            gradient: max_abs(&grad),
            converged: fit_done(&grad, config),
        };
    }
    Ok((theta, fit))
}

fn fit_done(grad: &[f64], config: &ProbeConfig) -> bool {
    max_abs(grad) <= config.tolerance
}

fn check_inference(model: &AdaptedModel<Lora>, batch_size: usize) -> Result<()> {
    if model.device().is_autodiff() {
        return Err(invalid(
            "features are computed without autodiff: pass the model on an inference device (`.valid()`)"
                .into(),
        ));
    }
    if batch_size == 0 {
        return Err(invalid("batch size 0".into()));
    }
    Ok(())
}

/// Which hidden state features are read from.
///
/// BERT's top layers specialise in the pre-training (or sentence-embedding) objective; word
/// classes are often read more easily from a middle layer, which is what
/// [`Layer::Hidden`] measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layer {
    /// The last layer's output (`last_hidden_state`).
    #[default]
    Last,
    /// `hidden_states[i]` as transformers numbers them: 0 is the embeddings' output, `i` the
    /// output of layer `i`, `num_hidden_layers` the last one's.
    Hidden(usize),
}

impl Layer {
    fn check(self, model: &AdaptedModel<Lora>) -> Result<()> {
        match self {
            Layer::Hidden(i) if i > model.config().num_hidden_layers => Err(invalid(format!(
                "layer {i}: the model has {} layers (hidden states 0..={})",
                model.config().num_hidden_layers,
                model.config().num_hidden_layers
            ))),
            _ => Ok(()),
        }
    }

    fn states(
        self,
        model: &AdaptedModel<Lora>,
        input: &lora_bert_encoder::BertInput,
        route: &Route,
    ) -> Result<Tensor<3>> {
        Ok(match self {
            Layer::Last => model.forward(input, route)?.last_hidden_state,
            Layer::Hidden(i) => model
                .forward_all(input, route)?
                .hidden_states
                .swap_remove(i),
        })
    }
}

/// Indices `0..lengths.len()` in batches of at most `batch_size`, longest rows first, so a
/// batch pads to little more than its own rows' length.
fn length_batches(lengths: &[usize], batch_size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    order.chunks(batch_size).map(<[usize]>::to_vec).collect()
}

/// The last hidden state of every token of every example through `route`, row-major
/// `[len, hidden]` per example (padding cut off), in batches of `batch_size`.
///
/// # Errors
///
/// [`TrainError::InvalidArgument`] for a model on an autodiff device or a zero batch size;
/// errors of collation and of the forward pass.
pub fn token_states(
    model: &AdaptedModel<Lora>,
    route: &Route,
    examples: &[TokenExample],
    batch_size: usize,
    pad_id: u32,
) -> Result<Vec<Vec<f32>>> {
    token_states_at(model, route, examples, batch_size, pad_id, Layer::Last)
}

/// [`token_states`] read from `layer`.
///
/// Examples are batched by length (longest first) and returned in their own order.
///
/// # Errors
///
/// As [`token_states`], and [`TrainError::InvalidArgument`] for a layer the model does not
/// have.
pub fn token_states_at(
    model: &AdaptedModel<Lora>,
    route: &Route,
    examples: &[TokenExample],
    batch_size: usize,
    pad_id: u32,
    layer: Layer,
) -> Result<Vec<Vec<f32>>> {
    check_inference(model, batch_size)?;
    layer.check(model)?;
    let device = model.device();
    let hidden = model.config().hidden_size;
    let lengths: Vec<usize> = examples.iter().map(TokenExample::len).collect();
    let mut out = vec![Vec::new(); examples.len()];
    for indices in length_batches(&lengths, batch_size) {
        let batch = TokenBatch::collate(examples, &indices, pad_id)?;
        let input = batch.to_input(model.config(), &device)?;
        let values = host_values(layer.states(model, &input, route)?, "token states")?;
        let row = batch.seq_len * hidden;
        for (k, &i) in indices.iter().enumerate() {
            out[i] = values[k * row..k * row + lengths[i] * hidden].to_vec();
        }
    }
    Ok(out)
}

/// The mean-pooled last hidden state of every row through `route`, row-major
/// `[rows, hidden]`, in batches of `batch_size`.
///
/// # Errors
///
/// As [`token_states`].
pub fn text_states(
    model: &AdaptedModel<Lora>,
    route: &Route,
    rows: &EncodedRows,
    batch_size: usize,
) -> Result<Vec<f32>> {
    text_states_at(model, route, rows, batch_size, Layer::Last)
}

/// [`text_states`] pooled from `layer`.
///
/// Rows are batched by length (longest first) and returned in their own order.
///
/// # Errors
///
/// As [`token_states_at`].
pub fn text_states_at(
    model: &AdaptedModel<Lora>,
    route: &Route,
    rows: &EncodedRows,
    batch_size: usize,
    layer: Layer,
) -> Result<Vec<f32>> {
    check_inference(model, batch_size)?;
    layer.check(model)?;
    let device = model.device();
    let hidden = model.config().hidden_size;
    let mut out = vec![0f32; rows.len() * hidden];
    for indices in length_batches(&rows.lengths(), batch_size) {
        let batch = rows.batch(&indices)?;
        let input = batch.to_input(model.config(), &device)?;
        let states = layer.states(model, &input, route)?;
        let pooled = Pooling::Mean.pool(states, input.attention_mask.clone())?;
        let values = host_values(pooled, "pooled states")?;
        for (k, &i) in indices.iter().enumerate() {
            out[i * hidden..(i + 1) * hidden]
                .copy_from_slice(&values[k * hidden..(k + 1) * hidden]);
        }
    }
    Ok(out)
}

/// The labelled token rows of `examples` as probe training data: the states of every token
/// whose label is not ignored (with first-sub-word alignment, each word's first piece) and
/// its label, `(features [n, hidden], labels)`.
///
/// # Errors
///
/// [`TrainError::Shape`] when `states` does not have one entry of `len × hidden` values per
/// example.
pub fn labelled_tokens(
    examples: &[TokenExample],
    states: &[Vec<f32>],
    hidden: usize,
) -> Result<(Vec<f32>, Vec<u32>)> {
    if states.len() != examples.len() {
        return Err(TrainError::Shape {
            what: "token states, one entry per example".into(),
            expected: vec![examples.len()],
            found: vec![states.len()],
        });
    }
    let mut features = Vec::new();
    let mut labels = Vec::new();
    for (i, (e, s)) in examples.iter().zip(states).enumerate() {
        if s.len() != e.len() * hidden {
            return Err(TrainError::Shape {
                what: format!("token states of example {i} [len, hidden]"),
                expected: vec![e.len(), hidden],
                found: vec![s.len()],
            });
        }
        for (t, &label) in e.labels.iter().enumerate() {
            if label >= 0 {
                features.extend_from_slice(&s[t * hidden..(t + 1) * hidden]);
                labels.push(label as u32);
            }
        }
    }
    Ok((features, labels))
}
