//! Training objectives: cross-entropy with an ignore index and label smoothing, in-batch
//! contrastive InfoNCE, and word-level / logit distillation.
//!
//! Every loss returns a one-element `Tensor<1>` that autodiff flows through, and checks its
//! inputs (shapes, temperatures, class ids) with typed errors before computing anything.
//! Teacher inputs of the distillation losses are targets: they are detached.
//!
//! ```
//! use burn::tensor::{Int, Tensor, TensorData};
//! use lora_bert_encoder::device;
//! use lora_bert_train::loss::{CrossEntropy, check_finite, cross_entropy};
//!
//! let cpu = device::device(device::Backend::default_cpu()?)?;
//! let logits = Tensor::<2>::from_data(TensorData::new(vec![0.0f32, 0.0, 5.0, -5.0], [2, 2]), &cpu);
//! let targets = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64, -100], [2]), &cpu);
//! let loss = cross_entropy(logits, targets, &CrossEntropy::default())?;
//! // Only row 0 counts: -ln(1/2).
//! assert!((check_finite(&loss, 0)? - std::f64::consts::LN_2).abs() < 1e-6);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use burn::module::Module;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::heads::Dense;
use crate::{Result, TrainError};

/// Options of [`cross_entropy`], with PyTorch's meaning (`nn.CrossEntropyLoss`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CrossEntropy {
    /// Targets equal to this value contribute nothing and are not counted in the mean
    /// (default `Some(-100)`, [`IGNORE_INDEX`](lora_bert_data::align::IGNORE_INDEX)).
    pub ignore_index: Option<i64>,
    /// `ε` in `[0, 1]`: the loss of a row is `(1 - ε)·(-log p_target) + ε·mean_c(-log p_c)`
    /// (default 0).
    pub label_smoothing: f32,
}

impl Default for CrossEntropy {
    fn default() -> Self {
        Self {
            ignore_index: Some(lora_bert_data::align::IGNORE_INDEX),
            label_smoothing: 0.0,
        }
    }
}

impl CrossEntropy {
    /// Sets the label smoothing `ε`.
    pub fn with_label_smoothing(mut self, epsilon: f32) -> Self {
        self.label_smoothing = epsilon;
        self
    }

    /// Sets the ignore index (`None`: every target counts).
    pub fn with_ignore_index(mut self, ignore_index: Option<i64>) -> Self {
        self.ignore_index = ignore_index;
        self
    }
}

/// Cross-entropy of `logits` `[N, C]` against class ids `targets` `[N]`, averaged over the
/// targets that are not ignored (PyTorch's `reduction = "mean"` with `ignore_index`, label
/// smoothing included: the smoothing term is averaged over the same rows).
///
/// When **every** target is ignored the loss is `0` (with zero gradients), so that a batch
/// without a labelled token is harmless; PyTorch returns NaN there (0 / 0).
///
/// The targets are read back to the host to be checked.
///
/// # Errors
///
/// [`TrainError::Shape`] when `targets` is not `[N]` or there is no row or class;
/// [`TrainError::InvalidArgument`] for a target outside `0..C` that is not the ignore index,
/// or a label smoothing outside `[0, 1]`.
pub fn cross_entropy(
    logits: Tensor<2>,
    targets: Tensor<1, Int>,
    options: &CrossEntropy,
) -> Result<Tensor<1>> {
    let [n, classes] = logits.dims();
    let [t] = targets.dims();
    if t != n || n == 0 || classes == 0 {
        return Err(TrainError::Shape {
            what: format!("targets [N] vs logits [N, C] = [{n}, {classes}] (cross-entropy)"),
            expected: vec![n],
            found: vec![t],
        });
    }
    let eps = options.label_smoothing;
    if !eps.is_finite() || !(0.0..=1.0).contains(&eps) {
        return Err(TrainError::InvalidArgument {
            what: "label_smoothing",
            message: format!("must be in [0, 1], got {eps}"),
        });
    }
    let values = targets
        .try_into_vec_as::<i64>()
        .map_err(|e| TrainError::InvalidArgument {
            what: "targets",
            message: format!("cannot read the targets: {e:?}"),
        })?;
    let mut safe = Vec::with_capacity(n);
    let mut counted = Vec::with_capacity(n);
    for (row, &v) in values.iter().enumerate() {
        if options.ignore_index == Some(v) {
            safe.push(0i64);
            counted.push(false);
        } else if (0..classes as i64).contains(&v) {
            safe.push(v);
            counted.push(true);
        } else {
            return Err(TrainError::InvalidArgument {
                what: "targets",
                message: format!(
                    "target {v} at row {row} is outside 0..{classes} and is not the ignore \
                     index ({:?})",
                    options.ignore_index
                ),
            });
        }
    }
    let count = counted.iter().filter(|&&c| c).count();
    let share = if count == 0 { 0.0 } else { 1.0 / count as f32 };
    let weights: Vec<f32> = counted
        .iter()
        .map(|&c| if c { share } else { 0.0 })
        .collect();
    let device = logits.device();
    let safe = Tensor::<1, Int>::from_data(TensorData::new(safe, [n]), &device);
    let weights = Tensor::<1>::from_data(TensorData::new(weights, [n]), &device);
    Ok(weighted_cross_entropy(logits, safe, weights, eps))
}

/// Token-level [`cross_entropy`]: logits `[B, S, C]` against labels `[B, S]`, averaged over
/// every labelled token of the batch (padding and special tokens carry the ignore index).
///
/// # Errors
///
/// As [`cross_entropy`]; the shape error names both shapes.
pub fn token_cross_entropy(
    logits: Tensor<3>,
    labels: Tensor<2, Int>,
    options: &CrossEntropy,
) -> Result<Tensor<1>> {
    let [b, s, c] = logits.dims();
    let found = labels.dims();
    if found != [b, s] {
        return Err(TrainError::Shape {
            what: format!("labels [B, S] vs logits [B, S, C] = [{b}, {s}, {c}] (token loss)"),
            expected: vec![b, s],
            found: found.to_vec(),
        });
    }
    cross_entropy(logits.reshape([b * s, c]), labels.reshape([b * s]), options)
}

/// `Σ_n w_n·((1-ε)·(-log p_{n,t_n}) + ε·mean_c(-log p_{n,c}))`, as a `[1]` tensor.
fn weighted_cross_entropy(
    logits: Tensor<2>,
    targets: Tensor<1, Int>,
    weights: Tensor<1>,
    eps: f32,
) -> Tensor<1> {
    let [n, _] = logits.dims();
    let log_p = log_softmax(logits, 1);
    let nll = log_p
        .clone()
        .gather(1, targets.reshape([n, 1]))
        .reshape([n])
        .neg();
    let per_row = if eps > 0.0 {
        let smooth = log_p.mean_dim(1).reshape([n]).neg();
        nll * (1.0 - eps) + smooth * eps
    } else {
        nll
    };
    (per_row * weights).sum()
}

/// Rows divided by their L2 norm, `x / max(‖x‖, 1e-12)` (PyTorch's `F.normalize`), with a
/// gradient that stays finite on zero rows.
fn normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).clamp_min(1e-24).sqrt();
    x / norm
}

fn check_temperature(temperature: f64) -> Result<()> {
    if !temperature.is_finite() || temperature <= 0.0 {
        return Err(TrainError::InvalidArgument {
            what: "temperature",
            message: format!("must be finite and > 0, got {temperature}"),
        });
    }
    Ok(())
}

/// InfoNCE with in-batch negatives (sentence-transformers' `MultipleNegativesRankingLoss`,
/// CLIP's loss when `symmetric`).
///
/// Rows are L2-normalised, `logits = anchor·positiveᵀ / τ` (`[B, B]` cosine similarities over
/// the temperature; `τ = 0.05` is sentence-transformers' scale of 20), and row `i`'s target is
/// column `i`: every other positive is a negative. With `symmetric`, the loss is the mean of
/// the anchor→positive and positive→anchor directions.
///
/// # Errors
///
/// [`TrainError::Shape`] when the shapes differ or the batch is empty;
/// [`TrainError::InvalidArgument`] for a temperature `<= 0` or not finite.
pub fn info_nce(
    anchor: Tensor<2>,
    positive: Tensor<2>,
    temperature: f64,
    symmetric: bool,
) -> Result<Tensor<1>> {
    let (a, p) = (anchor.dims(), positive.dims());
    if a != p || a[0] == 0 || a[1] == 0 {
        return Err(TrainError::Shape {
            what: "positive vs anchor embeddings [B, D] (InfoNCE)".into(),
            expected: a.to_vec(),
            found: p.to_vec(),
        });
    }
    check_temperature(temperature)?;
    let batch = a[0];
    let device = anchor.device();
    let logits = normalize(anchor).matmul(normalize(positive).transpose()) / temperature;
    let targets = Tensor::<1, Int>::arange(0..batch as i64, &device);
    let weights = Tensor::<1>::full([batch], 1.0 / batch as f32, &device);
    let forward = weighted_cross_entropy(logits.clone(), targets.clone(), weights.clone(), 0.0);
    Ok(if symmetric {
        let backward = weighted_cross_entropy(logits.transpose(), targets, weights, 0.0);
        (forward + backward) / 2.0
    } else {
        forward
    })
}

/// How student word states are compared with the teacher's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DistillLoss {
    /// Mean squared error over the hidden dimension, per word.
    #[default]
    Mse,
    /// `1 - cos(student, teacher)`, per word.
    Cosine,
}

/// The learned map from the student's hidden width to the teacher's, applied to student word
/// states before [`distill_states`] (train it with the student).
#[derive(Module, Debug)]
pub struct DistillProjection {
    /// `student_hidden → teacher_hidden`.
    pub dense: Dense,
}

impl DistillProjection {
    /// A fresh projection, weights `N(0, 0.02²)`, zero bias.
    ///
    /// # Errors
    ///
    /// [`TrainError::InvalidArgument`] for a zero width.
    pub fn init(student_hidden: usize, teacher_hidden: usize, device: &Device) -> Result<Self> {
        if student_hidden == 0 || teacher_hidden == 0 {
            return Err(TrainError::InvalidArgument {
                what: "distillation projection",
                message: format!("widths {student_hidden} → {teacher_hidden}"),
            });
        }
        Ok(Self {
            dense: Dense::init(student_hidden, teacher_hidden, 0.02, device),
        })
    }

    /// Projects student states `[B, W, H_s]` to `[B, W, H_t]`.
    ///
    /// # Errors
    ///
    /// [`TrainError::Shape`] when the width is not `H_s`.
    pub fn forward(&self, student: Tensor<3>) -> Result<Tensor<3>> {
        let dims = student.dims();
        if dims[2] != self.dense.d_in() {
            return Err(TrainError::Shape {
                what: "student states [B, W, H_s] (distillation projection)".into(),
                expected: vec![dims[0], dims[1], self.dense.d_in()],
                found: dims.to_vec(),
            });
        }
        Ok(self.dense.forward(student))
    }
}

/// Word-level state distillation: the student's word states (already projected to the
/// teacher's width, see [`DistillProjection`]) against the teacher's, `[B, W, H_t]` each,
/// averaged over the real words of `word_mask` `[B, W]` (1 word, 0 padding). The teacher is
/// detached. No real word gives a loss of `0`.
///
/// # Errors
///
/// [`TrainError::Shape`] naming the tensors when the shapes differ.
pub fn distill_states(
    student_words: Tensor<3>,
    teacher_words: Tensor<3>,
    word_mask: Tensor<2, Int>,
    loss: DistillLoss,
) -> Result<Tensor<1>> {
    let (s, t) = (student_words.dims(), teacher_words.dims());
    if s != t {
        return Err(TrainError::Shape {
            what: "teacher word states vs student word states [B, W, H] (distillation)".into(),
            expected: s.to_vec(),
            found: t.to_vec(),
        });
    }
    let [b, w, _] = s;
    let m = word_mask.dims();
    if m != [b, w] {
        return Err(TrainError::Shape {
            what: "word mask [B, W] vs word states (distillation)".into(),
            expected: vec![b, w],
            found: m.to_vec(),
        });
    }
    let teacher = teacher_words.detach();
    let per_word: Tensor<2> = match loss {
        DistillLoss::Mse => (student_words - teacher)
            .powi_scalar(2)
            .mean_dim(2)
            .reshape([b, w]),
        DistillLoss::Cosine => {
            let dot = (student_words.clone() * teacher.clone()).sum_dim(2);
            let ns = student_words.powi_scalar(2).sum_dim(2);
            let nt = teacher.powi_scalar(2).sum_dim(2);
            // cos = dot / max(|s|·|t|, 1e-8); clamping before the square root keeps the
            // gradient finite on the all-zero states of masked columns.
            let cos = dot / (ns * nt).clamp_min(1e-16).sqrt();
            cos.reshape([b, w]).neg() + 1.0
        }
    };
    let mask = word_mask.float();
    let count = mask.clone().sum().clamp_min(1.0);
    Ok((per_word * mask).sum() / count)
}

/// Logit distillation (Hinton et al., 2015): `T²·KL(softmax(t/T) ‖ softmax(s/T))`, summed
/// over classes and averaged over rows, for student and teacher logits `[N, C]`. The teacher
/// is detached.
///
/// # Errors
///
/// [`TrainError::Shape`] when the shapes differ or are empty; [`TrainError::InvalidArgument`]
/// for a temperature `<= 0` or not finite.
pub fn kl_logits(
    student_logits: Tensor<2>,
    teacher_logits: Tensor<2>,
    temperature: f64,
) -> Result<Tensor<1>> {
    let (s, t) = (student_logits.dims(), teacher_logits.dims());
    if s != t || s[0] == 0 || s[1] == 0 {
        return Err(TrainError::Shape {
            what: "teacher logits vs student logits [N, C] (KL distillation)".into(),
            expected: s.to_vec(),
            found: t.to_vec(),
        });
    }
    check_temperature(temperature)?;
    let log_s = log_softmax(student_logits / temperature, 1);
    let log_t = log_softmax(teacher_logits.detach() / temperature, 1);
    let p_t = log_t.clone().exp();
    let kl = (p_t * (log_t - log_s)).sum_dim(1);
    Ok(kl.mean().reshape([1]) * (temperature * temperature))
}

/// Word-level soft-label distillation: the student's word logits `[B, W, C]` learn the
/// teacher's word logits `[B, W, C]` (a [`Tagger`](crate::teacher::Tagger)'s, say) with
/// `T²·KL(softmax(t/T) ‖ softmax(s/T))` per word, plus `hard_weight` times the cross-entropy of
/// the student's (unscaled) logits against the teacher's argmax label, averaged over the words
/// where `mask` (`[B, W]`) is 1 (0 when there is none). The teacher is detached.
///
/// ```
/// use burn::tensor::{Device, Int, Tensor, TensorData};
/// use lora_bert_train::loss::kl_words;
///
/// let device = Device::default();
/// let t = Tensor::<3>::from_data(TensorData::new(vec![2.0f32, 0.0], [1, 1, 2]), &device);
/// let mask = Tensor::<2, Int>::from_data(TensorData::new(vec![1i64], [1, 1]), &device);
/// // A student that already agrees with the teacher has no KL to learn.
/// let loss: f32 = kl_words(t.clone(), t, mask, 2.0, 0.0)?.into_scalar();
/// assert!(loss.abs() < 1e-6);
/// # Ok::<(), lora_bert_train::TrainError>(())
/// ```
///
/// # Errors
///
/// [`TrainError::Shape`] when the shapes differ or the mask is not `[B, W]`;
/// [`TrainError::InvalidArgument`] for a temperature `<= 0` or not finite, or a negative or
/// non-finite `hard_weight`.
pub fn kl_words(
    student: Tensor<3>,
    teacher: Tensor<3>,
    mask: Tensor<2, Int>,
    temperature: f64,
    hard_weight: f64,
) -> Result<Tensor<1>> {
    let (s, t) = (student.dims(), teacher.dims());
    if s != t || s[2] == 0 {
        return Err(TrainError::Shape {
            what: "teacher word logits vs student word logits [B, W, C] (soft labels)".into(),
            expected: s.to_vec(),
            found: t.to_vec(),
        });
    }
    let [b, w, _] = s;
    if mask.dims() != [b, w] {
        return Err(TrainError::Shape {
            what: "word mask [B, W] (soft labels)".into(),
            expected: vec![b, w],
            found: mask.dims().to_vec(),
        });
    }
    check_temperature(temperature)?;
    if !(hard_weight.is_finite() && hard_weight >= 0.0) {
        return Err(TrainError::InvalidArgument {
            what: "hard_weight",
            message: format!("must be finite and >= 0, got {hard_weight}"),
        });
    }
    let teacher = teacher.detach();
    let log_s = log_softmax(student.clone() / temperature, 2);
    let log_t = log_softmax(teacher.clone() / temperature, 2);
    let p_t = log_t.clone().exp();
    let mut per_word =
        (p_t * (log_t - log_s)).sum_dim(2).reshape([b, w]) * (temperature * temperature);
    if hard_weight > 0.0 {
        let target = teacher.argmax(2);
        let nll = log_softmax(student, 2)
            .gather(2, target)
            .reshape([b, w])
            .neg();
        per_word = per_word + nll * hard_weight;
    }
    let mask = mask.float();
    let count = mask.clone().sum().clamp_min(1.0);
    Ok((per_word * mask).sum() / count)
}

/// The value of a one-element loss, or [`TrainError::NonFiniteLoss`] at `step` when it is NaN
/// or infinite. Reads the loss back to the host.
///
/// # Errors
///
/// [`TrainError::NonFiniteLoss`]; [`TrainError::Shape`] when `loss` has more than one element.
pub fn check_finite(loss: &Tensor<1>, step: usize) -> Result<f64> {
    let dims = loss.dims();
    if dims != [1] {
        return Err(TrainError::Shape {
            what: "loss (one element)".into(),
            expected: vec![1],
            found: dims.to_vec(),
        });
    }
    let value = loss
        .clone()
        .try_into_scalar::<f64>()
        .map_err(|e| TrainError::InvalidArgument {
            what: "loss",
            message: format!("cannot read the loss: {e:?}"),
        })?;
    if value.is_finite() {
        Ok(value)
    } else {
        Err(TrainError::NonFiniteLoss { step, value })
    }
}
