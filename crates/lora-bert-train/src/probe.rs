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
//! The fit runs on burn tensors (the products on the device's matrix kernels) with the
//! gradient written out by hand: `∇W = Xᵀ(P − Y)/n + λW`, `∇b = Σ(P − Y)/n`, with Adam steps.
//! The problem is convex, so the result depends on the data and `l2` only, up to the
//! tolerance.

use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Tensor, TensorData};
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
    /// Most full-batch steps (default 1000).
    pub max_steps: usize,
    /// Adam's step size (default 0.01).
    pub learning_rate: f64,
    /// L2 strength `λ` on the weights, not the bias (default 1e-4).
    pub l2: f64,
    /// Stop when the loss fell by less than this share over the last 25 steps (default 1e-5).
    pub tolerance: f64,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            max_steps: 1000,
            learning_rate: 0.01,
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
    /// `true` when the tolerance stopped the fit before `max_steps`.
    pub converged: bool,
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
    /// loss that stops being finite.
    pub fn fit(
        features: &[f32],
        dim: usize,
        labels: &[u32],
        classes: usize,
        config: &ProbeConfig,
        device: &Device,
    ) -> Result<(Self, ProbeFit)> {
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
        let sane = config.learning_rate.is_finite()
            && config.learning_rate > 0.0
            && config.l2.is_finite()
            && config.l2 >= 0.0
            && config.tolerance.is_finite()
            && config.tolerance >= 0.0
            && config.max_steps > 0;
        if !sane {
            return Err(invalid(format!("bad configuration {config:?}")));
        }
        let x = Tensor::<2>::from_data(TensorData::new(features.to_vec(), [n, dim]), device);
        let xt = x.clone().transpose();
        let mut onehot = vec![0.0f32; n * classes];
        for (i, &l) in labels.iter().enumerate() {
            onehot[i * classes + l as usize] = 1.0;
        }
        let y = Tensor::<2>::from_data(TensorData::new(onehot, [n, classes]), device);
        let mut w = Tensor::<2>::zeros([dim, classes], device);
        let mut b = Tensor::<1>::zeros([classes], device);
        let (mut mw, mut vw) = (w.clone(), w.clone());
        let (mut mb, mut vb) = (b.clone(), b.clone());
        let (beta1, beta2, eps) = (0.9f64, 0.999f64, 1e-8);
        let inv_n = 1.0 / n as f64;
        let mut history: Vec<f64> = Vec::new();
        let mut fit = ProbeFit {
            steps: 0,
            loss: f64::NAN,
            converged: false,
        };
        for step in 1..=config.max_steps {
            let logits = x.clone().matmul(w.clone()) + b.clone().unsqueeze_dim(0);
            let loss: f32 = (log_softmax(logits.clone(), 1) * y.clone())
                .sum()
                .neg()
                .mul_scalar(inv_n)
                .add(w.clone().powi_scalar(2).sum().mul_scalar(0.5 * config.l2))
                .into_scalar();
            let loss = f64::from(loss);
            if !loss.is_finite() {
                return Err(invalid(format!("the loss is {loss} at step {step}")));
            }
            fit = ProbeFit {
                steps: step,
                loss,
                converged: false,
            };
            history.push(loss);
            if history.len() > 25 {
                let old = history[history.len() - 26];
                if old - loss <= config.tolerance * old.abs().max(1e-12) {
                    fit.converged = true;
                    break;
                }
            }
            let g = softmax(logits, 1) - y.clone();
            let gw =
                xt.clone().matmul(g.clone()).mul_scalar(inv_n) + w.clone().mul_scalar(config.l2);
            let gb = g.sum_dim(0).reshape([classes]).mul_scalar(inv_n);
            let lr = config.learning_rate * (1.0 - beta2.powi(step as i32)).sqrt()
                / (1.0 - beta1.powi(step as i32));
            mw = mw.mul_scalar(beta1) + gw.clone().mul_scalar(1.0 - beta1);
            vw = vw.mul_scalar(beta2) + gw.powi_scalar(2).mul_scalar(1.0 - beta2);
            mb = mb.mul_scalar(beta1) + gb.clone().mul_scalar(1.0 - beta1);
            vb = vb.mul_scalar(beta2) + gb.powi_scalar(2).mul_scalar(1.0 - beta2);
            w = w - (mw.clone() / (vw.clone().sqrt() + eps)).mul_scalar(lr);
            b = b - (mb.clone() / (vb.clone().sqrt() + eps)).mul_scalar(lr);
        }
        Ok((
            LinearProbe {
                weight: w,
                bias: b,
                dim,
                classes,
            },
            fit,
        ))
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
    check_inference(model, batch_size)?;
    let device = model.device();
    let hidden = model.config().hidden_size;
    let all: Vec<usize> = (0..examples.len()).collect();
    let mut out = Vec::with_capacity(examples.len());
    for indices in all.chunks(batch_size) {
        let batch = TokenBatch::collate(examples, indices, pad_id)?;
        let input = batch.to_input(model.config(), &device)?;
        let states = model.forward(&input, route)?.last_hidden_state;
        let values = host_values(states, "token states")?;
        let row = batch.seq_len * hidden;
        for (k, &i) in indices.iter().enumerate() {
            out.push(values[k * row..k * row + examples[i].len() * hidden].to_vec());
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
    check_inference(model, batch_size)?;
    let device = model.device();
    let all: Vec<usize> = (0..rows.len()).collect();
    let mut out = Vec::with_capacity(rows.len() * model.config().hidden_size);
    for indices in all.chunks(batch_size) {
        let batch = rows.batch(indices)?;
        let input = batch.to_input(model.config(), &device)?;
        let states = model.forward(&input, route)?.last_hidden_state;
        let pooled = Pooling::Mean.pool(states, input.attention_mask.clone())?;
        out.extend(host_values(pooled, "pooled states")?);
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
