//! Task heads on top of the encoder's hidden states: token classification (NER, POS),
//! sequence classification, and a projection for contrastive training.
//!
//! Every head has a serde `*Config` with an `init`, and saves into a directory of three files:
//!
//! * `head_config.json`: the config, tagged with the kind of head (`"head": "token_classification"`);
//! * `head.safetensors`: the weights with Hugging Face names and layouts (`classifier.weight`
//!   `[out, in]`, `classifier.bias` `[out]`), F32, readable by `safetensors.torch.load_file`;
//! * `labels.json`: the [`LabelVocab`](lora_bert_data::LabelVocab) (classification heads), one label per class, in order.
//!
//! Each file is written atomically (temporary file, then rename); the config is written last,
//! so a directory with a `head_config.json` has its other files. Loading checks everything:
//! a missing file, a tensor missing, extra or of the wrong shape, a non-finite weight, or a
//! label count that differs from the head's classes are typed errors.
//!
//! ```
//! use burn::tensor::Tensor;
//! use lora_bert_data::LabelVocab;
//! use lora_bert_encoder::device;
//! use lora_bert_apps::heads::{TokenClassificationHead, TokenClassificationHeadConfig};
//!
//! let cpu = device::device(device::Backend::default_cpu()?)?;
//! let vocab = LabelVocab::from_tags(["O", "B-PER", "I-PER"])?;
//! let head = TokenClassificationHeadConfig::new(8, vocab.len()).init(&cpu)?;
//! let logits = head.forward(Tensor::<3>::zeros([2, 5, 8], &cpu))?;
//! assert_eq!(logits.dims(), [2, 5, 3]);
//!
//! let dir = tempfile::tempdir()?;
//! head.save(dir.path(), &vocab)?;
//! let (loaded, labels) = TokenClassificationHead::load(dir.path(), &cpu)?;
//! assert_eq!(labels, vocab);
//! assert_eq!(loaded.config(), head.config());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use burn::module::{Module, Param};
use burn::tensor::module::linear;
use burn::tensor::{Device, Distribution, Tensor, TensorData};

use crate::{AppError, Result};
use file::{NamedTensor, TensorFile, named};

/// The config file of a saved head.
pub const CONFIG_FILE: &str = "head_config.json";
/// The weights file of a saved head.
pub const WEIGHTS_FILE: &str = "head.safetensors";
/// The label vocabulary of a saved classification head.
pub const LABELS_FILE: &str = "labels.json";

fn default_dropout() -> f64 {
    0.1
}

fn default_initializer_range() -> f64 {
    0.02
}

/// A dense layer `y = x·W + b` over the last dimension.
///
/// `weight` is stored `[d_in, d_out]` (burn's layout) and saved `[d_out, d_in]` (PyTorch's
/// `nn.Linear` layout).
#[derive(Module, Debug)]
pub struct Dense {
    /// `W`, `[d_in, d_out]`.
    pub weight: Param<Tensor<2>>,
    /// `b`, `[d_out]`.
    pub bias: Param<Tensor<1>>,
}

impl Dense {
    /// A layer with weights drawn from `N(0, std²)` and a zero bias (BERT's initialisation of
    /// its heads, `std = initializer_range`).
    pub fn init(d_in: usize, d_out: usize, std: f64, device: &Device) -> Self {
        Self {
            weight: Param::from_tensor(Tensor::random(
                [d_in, d_out],
                Distribution::Normal(0.0, std),
                device,
            )),
            bias: Param::from_tensor(Tensor::zeros([d_out], device)),
        }
    }

    /// Input width.
    pub fn d_in(&self) -> usize {
        self.weight.dims()[0]
    }

    /// Output width.
    pub fn d_out(&self) -> usize {
        self.weight.dims()[1]
    }

    /// `x·W + b` over the last dimension of `x`. The caller checks the width (see the heads).
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        linear(x, self.weight.val(), Some(self.bias.val()))
    }

    /// `(name.weight [out, in], name.bias [out])` as saved.
    fn tensors(&self, name: &str) -> Result<Vec<NamedTensor>> {
        Ok(vec![
            named(format!("{name}.weight"), self.weight.val().transpose())?,
            named(format!("{name}.bias"), self.bias.val())?,
        ])
    }

    /// Takes `name.weight` and `name.bias` of a `d_in → d_out` layer from `file`.
    fn load(
        file: &mut TensorFile,
        name: &str,
        d_in: usize,
        d_out: usize,
        device: &Device,
    ) -> Result<Self> {
        let weight = file.take(&format!("{name}.weight"), &[d_out, d_in])?;
        let bias = file.take(&format!("{name}.bias"), &[d_out])?;
        // Transposed on the host, so the parameter is a contiguous `[d_in, d_out]` tensor
        // exactly like a fresh one (a strided view could change the matmul's summation order
        // and the outputs' last bits).
        let mut w = vec![0.0f32; d_in * d_out];
        for (o, row) in weight.chunks_exact(d_in).enumerate() {
            for (i, &v) in row.iter().enumerate() {
                w[i * d_out + o] = v;
            }
        }
        let weight = Tensor::<2>::from_data(TensorData::new(w, [d_in, d_out]), device);
        Ok(Self {
            weight: Param::from_tensor(weight),
            bias: Param::from_tensor(Tensor::from_data(TensorData::new(bias, [d_out]), device)),
        })
    }
}

/// Checks that `hidden`'s last dimension is `expected`.
fn check_width(what: &str, dims: &[usize], expected: usize) -> Result<()> {
    if dims.last() != Some(&expected) {
        let mut want = dims.to_vec();
        if let Some(last) = want.last_mut() {
            *last = expected;
        }
        return Err(AppError::Shape {
            what: what.into(),
            expected: want,
            found: dims.to_vec(),
        });
    }
    Ok(())
}

fn check_common(hidden_size: usize, dropout: f64) -> Result<()> {
    if hidden_size == 0 {
        return Err(AppError::InvalidArgument {
            what: "hidden_size",
            message: "must be at least 1".into(),
        });
    }
    if !dropout.is_finite() || !(0.0..1.0).contains(&dropout) {
        return Err(AppError::InvalidArgument {
            what: "dropout",
            message: format!("must be in [0, 1), got {dropout}"),
        });
    }
    Ok(())
}

fn check_labels(num_labels: usize) -> Result<()> {
    if num_labels == 0 {
        return Err(AppError::InvalidArgument {
            what: "num_labels",
            message: "must be at least 1".into(),
        });
    }
    Ok(())
}

fn check_init_range(std: f64) -> Result<()> {
    if !std.is_finite() || std < 0.0 {
        return Err(AppError::InvalidArgument {
            what: "initializer_range",
            message: format!("must be finite and >= 0, got {std}"),
        });
    }
    Ok(())
}

mod classification;
mod file;
mod projection;

pub use classification::{
    SequenceClassificationHead, SequenceClassificationHeadConfig, TokenClassificationHead,
    TokenClassificationHeadConfig,
};
pub use projection::{ProjectionHead, ProjectionHeadConfig};
