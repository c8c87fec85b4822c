//! Int8 weights for serving: [`BertModel::quantize_int8`].
//!
//! Post-training, weight-only, symmetric int8 (values in ±127):
//!
//! - every projection (attention, feed-forward, pooler) is `W ≈ diag(r)·Q·diag(c)`, one scale
//!   per input row and one per output column: the base map becomes `((x⊙r)·Q)⊙c + b`;
//! - the word-embedding table keeps one scale per row (per token).
//!
//! The int8 values are burn quantized tensors (`QuantValue::Q8S`, stored one byte per value,
//! with a per-tensor scale of 1); the row and column scales are plain `f32` vectors next to
//! them. Position and token-type embeddings, LayerNorms and biases stay `f32`: they are 1% of
//! all-MiniLM-L6-v2's parameters.
//!
//! Why this scheme, measured on all-MiniLM-L6-v2 (cosine of the token states of 4 sentences
//! against the float model's; int8 projections, float word embeddings):
//!
//! - burn's block scales (32 values per scale) are as accurate (cosine 0.99984), but burn's CPU
//!   backends dequantize a blocked weight element by element through its block index: a
//!   1 × 128 forward pass took 466 ms instead of 22 ms. A per-tensor weight is dequantized with
//!   one multiplication per value, and the row and column scales cost two broadcasts.
//! - one scale per output column alone: cosine 0.9952 (BERT has input dimensions with weights
//!   far larger than the rest, and they set every column's scale); per input row alone: 0.9990;
//!   both, rows evened out first by the square root of their largest magnitude: 0.99972.
//! - int8 word embeddings with a scale per row, float projections: 0.99997.
//!
//! Saved ([`BertModel::save`]), an int8 model keeps Hugging Face's names and layout; an int8
//! weight `W` is stored as `I8` values under `W`'s name with its scales beside it:
//!
//! - projection `X.weight`: `X.weight` (`I8`, `[d_out, d_in]`), `X.weight_scale` (`F32`,
//!   `[d_out]`, per output column), `X.weight_input_scale` (`F32`, `[d_in]`, per input row);
//! - `embeddings.word_embeddings.weight` (`I8`, `[vocab, hidden]`) and
//!   `embeddings.word_embeddings.weight_scale` (`F32`, `[vocab]`).
//!
//! [`BertModel::load`] reads such a file back int8 (all-MiniLM-L6-v2: a 23.7 MB file instead of
//! 90.9 MB), so a served backbone never needs its float weights.
//!
//! Int8 models serve: they run the forward pass, adapters and heads on top of them; they are
//! not trained, and an adapter group cannot be merged into their weights.
//!
//! ```no_run
//! use lora_bert_encoder::{BertModel, device};
//!
//! let device = device::device(device::Backend::Flex)?;
//! let (model, _report) = BertModel::load("all-MiniLM-L6-v2", &device)?;
//! let f32_bytes = model.param_bytes();
//! let model = model.quantize_int8()?;
//! assert!(model.param_bytes() * 3 < f32_bytes);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::quantization::{
    QuantScheme, QuantStore, QuantValue, ScaleDtype, quantized_data_len,
};
use burn::tensor::{DType, Device, Tensor, TensorData};

use crate::kernels::host_inference;
use crate::{BertModel, NoAdapter, ProjectionAdapter};

/// Why a model could not be quantized.
#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    /// Int8 weights run on the CPU backends without autodiff.
    #[error("int8 weights run on a CPU device without autodiff (flex or ndarray), not on {device}")]
    Device {
        /// The model's device.
        device: String,
    },
    /// The model is already int8.
    #[error("`{name}` is already int8")]
    AlreadyQuantized {
        /// The Hugging Face name of the weight.
        name: String,
    },
    /// A weight holds NaN or an infinity.
    #[error("`{name}` holds a value that is not finite")]
    NonFinite {
        /// The Hugging Face name of the weight.
        name: String,
    },
    /// A weight could not be read back from the device.
    #[error("`{name}` could not be read: {message}")]
    Read {
        /// The Hugging Face name of the weight.
        name: String,
        /// What went wrong.
        message: String,
    },
}

/// The scheme of the int8 values: symmetric int8, one byte per value, per-tensor scale 1.
fn int8_scheme() -> QuantScheme {
    QuantScheme::default()
        .with_value(QuantValue::Q8S)
        .with_store(QuantStore::Native)
        .per_tensor(ScaleDtype::F32)
}

/// Symmetric int8 values of a row-major `[rows, cols]` matrix and their scales: one per column
/// (`per_column`) or one per row. A group of zeros gets scale 1.
pub fn quantize_symmetric(
    values: &[f32],
    rows: usize,
    cols: usize,
    per_column: bool,
) -> (Vec<i8>, Vec<f32>) {
    debug_assert_eq!(values.len(), rows * cols);
    let groups = if per_column { cols } else { rows };
    let group = |i: usize| if per_column { i % cols } else { i / cols };
    let mut peak = vec![0f32; groups];
    for (i, v) in values.iter().enumerate() {
        let p = &mut peak[group(i)];
        *p = p.max(v.abs());
    }
    let scales: Vec<f32> = peak
        .iter()
        .map(|&p| if p > 0.0 { p / 127.0 } else { 1.0 })
        .collect();
    let q = values
        .iter()
        .enumerate()
        .map(|(i, v)| (v / scales[group(i)]).round().clamp(-127.0, 127.0) as i8)
        .collect();
    (q, scales)
}

/// The values of a float matrix on the host, refused if not finite.
fn host_values(name: &str, weight: Tensor<2>) -> Result<Vec<f32>, QuantizeError> {
    let values = weight
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| QuantizeError::Read {
            name: name.to_owned(),
            message: format!("{e:?}"),
        })?;
    if values.iter().any(|v| !v.is_finite()) {
        return Err(QuantizeError::NonFinite {
            name: name.to_owned(),
        });
    }
    Ok(values)
}

pub(crate) fn int8_tensor(q: Vec<i8>, shape: [usize; 2], device: &Device) -> Tensor<2> {
    Tensor::from_data(
        TensorData::quantized(q, shape, int8_scheme(), &[1.0], None),
        device,
    )
}

fn vector(values: Vec<f32>, device: &Device) -> Tensor<1> {
    let n = values.len();
    Tensor::from_data(TensorData::new(values, [n]), device)
}

/// An int8 projection weight `[d_in, d_out]`: `W ≈ diag(r)·Q·diag(c)`. `r` is the square root
/// of each input row's largest magnitude: it evens out rows of very different sizes (BERT's
/// outlier dimensions) before each column gets its scale `c`. Returns `(Q, c, r)`.
fn quantize_projection(
    name: &str,
    weight: Tensor<2>,
    device: &Device,
) -> Result<(Tensor<2>, Tensor<1>, Tensor<1>), QuantizeError> {
    let [d_in, d_out] = weight.dims();
    let mut values = host_values(name, weight)?;
    let rows: Vec<f32> = values
        .chunks_exact(d_out)
        .map(|row| {
            let peak = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            if peak > 0.0 { peak.sqrt() } else { 1.0 }
        })
        .collect();
    for (row, r) in values.chunks_exact_mut(d_out).zip(&rows) {
        row.iter_mut().for_each(|v| *v /= r);
    }
    let (q, cols) = quantize_symmetric(&values, d_in, d_out, true);
    Ok((
        int8_tensor(q, [d_in, d_out], device),
        vector(cols, device),
        vector(rows, device),
    ))
}

impl BertModel<NoAdapter> {
    /// The model with int8 projections and word embeddings (see the [module docs](self)):
    /// all-MiniLM-L6-v2 goes from 90.9 MB to 23.7 MB. Install adapters afterwards.
    ///
    /// # Errors
    ///
    /// [`QuantizeError::Device`] on an autodiff or GPU device;
    /// [`QuantizeError::AlreadyQuantized`]; [`QuantizeError::NonFinite`] for a weight holding
    /// NaN or an infinity.
    pub fn quantize_int8(mut self) -> Result<Self, QuantizeError> {
        let device = self.embeddings.word_embeddings.val().device();
        if !host_inference(&device) {
            return Err(QuantizeError::Device {
                device: format!("{device:?}"),
            });
        }
        let name = "embeddings.word_embeddings.weight";
        if self.embeddings.word_embeddings_scale.is_some() {
            return Err(QuantizeError::AlreadyQuantized { name: name.into() });
        }
        let mut projections = Vec::new();
        for (site, p) in self.projections() {
            let name = format!("{}.weight", site.hf_path());
            if p.is_quantized() {
                return Err(QuantizeError::AlreadyQuantized { name });
            }
            projections.push(quantize_projection(&name, p.weight.val(), &device)?);
        }
        let table = self.embeddings.word_embeddings.val();
        let [vocab, hidden] = table.dims();
        let (q, table_scale) = quantize_symmetric(&host_values(name, table)?, vocab, hidden, false);
        // Every weight is quantized before the model changes: an error leaves it whole.
        self.embeddings.word_embeddings =
            Param::from_tensor(int8_tensor(q, [vocab, hidden], &device));
        self.embeddings.word_embeddings_scale =
            Some(Param::from_tensor(vector(table_scale, &device)));
        for ((_, p), (weight, cols, rows)) in self.projections_mut().zip(projections) {
            p.weight = Param::from_tensor(weight);
            p.weight_scale = Some(Param::from_tensor(cols));
            p.input_scale = Some(Param::from_tensor(rows));
        }
        Ok(self)
    }
}

impl<A: ProjectionAdapter> BertModel<A> {
    /// Bytes of the model's parameters as stored: 4 per `f32` value, 1 per int8 value (plus its
    /// tensor's scale), adapters included.
    pub fn param_bytes(&self) -> usize {
        param_bytes(self)
    }

    /// Whether the model holds int8 weights ([`quantize_int8`](BertModel::quantize_int8)).
    pub fn is_quantized(&self) -> bool {
        self.embeddings.word_embeddings_scale.is_some()
            || self.projections().any(|(_, p)| p.is_quantized())
    }
}

/// Bytes of a module's parameters as stored (int8 tensors at their quantized size).
pub fn param_bytes<M: Module>(module: &M) -> usize {
    struct Bytes(usize);
    impl ModuleVisitor for Bytes {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let tensor = param.val();
            let shape = tensor.shape();
            self.0 += match tensor.dtype() {
                DType::QFloat(scheme) => quantized_data_len(&scheme, &shape),
                dtype => shape.num_elements() * dtype.size(),
            };
        }
    }
    let mut bytes = Bytes(0);
    module.visit(&mut bytes);
    bytes.0
}
