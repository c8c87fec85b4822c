//! Task heads on top of the encoder's hidden states: token classification (NER, POS),
//! sequence classification, and a projection for contrastive training.
//!
//! Every head has a serde `*Config` with an `init`, and saves into a directory of three files:
//!
//! * `head_config.json`: the config, tagged with the kind of head (`"head": "token_classification"`);
//! * `head.safetensors`: the weights with Hugging Face names and layouts (`classifier.weight`
//!   `[out, in]`, `classifier.bias` `[out]`), F32, readable by `safetensors.torch.load_file`;
//! * `labels.json`: the [`LabelVocab`] (classification heads), one label per class, in order.
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

use std::path::{Path, PathBuf};

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::module::linear;
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use lora_bert_data::LabelVocab;
use lora_bert_encoder::CheckpointError;
use lora_bert_encoder::kernels;
use lora_bert_encoder::tensor_file::{self, StoredTensor, write_safetensors};
use serde::{Deserialize, Serialize};

use crate::error::{io_err, write_atomic};
use crate::pooling::Pooling;
use crate::{AppError, Result};

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

// ---------------------------------------------------------------------------------------------
// Token classification

/// The configuration of a [`TokenClassificationHead`] (Hugging Face's
/// `BertForTokenClassification` head: dropout, then a linear classifier on every token).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenClassificationHeadConfig {
    /// Width of the encoder's hidden states.
    pub hidden_size: usize,
    /// Number of classes.
    pub num_labels: usize,
    /// Dropout on the hidden states before the classifier (default 0.1), training only.
    #[serde(default = "default_dropout")]
    pub dropout: f64,
    /// Standard deviation of the classifier's initial weights (default 0.02).
    #[serde(default = "default_initializer_range")]
    pub initializer_range: f64,
}

impl TokenClassificationHeadConfig {
    /// `hidden_size → num_labels` with dropout 0.1 and initializer range 0.02.
    pub fn new(hidden_size: usize, num_labels: usize) -> Self {
        Self {
            hidden_size,
            num_labels,
            dropout: default_dropout(),
            initializer_range: default_initializer_range(),
        }
    }

    /// Sets the dropout probability.
    pub fn with_dropout(mut self, p: f64) -> Self {
        self.dropout = p;
        self
    }

    fn validate(&self) -> Result<()> {
        check_common(self.hidden_size, self.dropout)?;
        check_labels(self.num_labels)?;
        check_init_range(self.initializer_range)
    }

    /// A fresh head on `device`.
    ///
    /// # Errors
    ///
    /// [`AppError::InvalidArgument`] for a zero width or class count, a dropout outside
    /// `[0, 1)` or a negative initializer range.
    pub fn init(&self, device: &Device) -> Result<TokenClassificationHead> {
        self.validate()?;
        Ok(TokenClassificationHead {
            dropout: DropoutConfig::new(self.dropout).init(),
            classifier: Dense::init(
                self.hidden_size,
                self.num_labels,
                self.initializer_range,
                device,
            ),
            config: self.clone(),
        })
    }
}

/// Per-token logits: `classifier(dropout(hidden))`, `[B, S, H] → [B, S, C]`.
#[derive(Module, Debug)]
pub struct TokenClassificationHead {
    /// Dropout on the hidden states.
    pub dropout: Dropout,
    /// `hidden_size → num_labels`.
    pub classifier: Dense,
    /// The configuration.
    #[module(skip)]
    pub config: TokenClassificationHeadConfig,
}

impl TokenClassificationHead {
    /// Logits `[B, S, num_labels]` of hidden states `[B, S, hidden_size]`.
    ///
    /// # Errors
    ///
    /// [`AppError::Shape`] when the hidden width is not the head's.
    pub fn forward(&self, hidden: Tensor<3>) -> Result<Tensor<3>> {
        check_width(
            "hidden states [B, S, H] (token classification head)",
            &hidden.dims(),
            self.config.hidden_size,
        )?;
        Ok(self
            .classifier
            .forward(kernels::dropout(&self.dropout, hidden)))
    }

    /// The configuration.
    pub fn config(&self) -> &TokenClassificationHeadConfig {
        &self.config
    }

    /// Saves the head and its labels into `dir` (created if needed).
    ///
    /// # Errors
    ///
    /// [`AppError::InvalidArgument`] when `labels` does not have `num_labels` labels;
    /// [`AppError::Io`] or [`AppError::Data`] when a file cannot be written.
    pub fn save(&self, dir: impl AsRef<Path>, labels: &LabelVocab) -> Result<()> {
        save_head(
            dir.as_ref(),
            &HeadFile::TokenClassification(self.config.clone()),
            self.classifier.tensors("classifier")?,
            Some((labels, self.config.num_labels)),
        )
    }

    /// Loads a head saved by [`save`](Self::save), with its labels.
    ///
    /// # Errors
    ///
    /// [`AppError::Io`] for a missing or unreadable file; [`AppError::Format`] for a
    /// malformed config, a config of another kind of head, a corrupt weights file, a missing,
    /// extra or non-finite tensor, or a label count other than `num_labels`;
    /// [`AppError::Shape`] naming the tensor whose shape does not fit the config;
    /// [`AppError::Data`] for a malformed `labels.json`.
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<(Self, LabelVocab)> {
        let dir = dir.as_ref();
        let (file, mut tensors) = load_head(dir)?;
        let HeadFile::TokenClassification(config) = file else {
            return Err(wrong_kind(dir, &file, "token_classification"));
        };
        config
            .validate()
            .map_err(|e| format_err(&dir.join(CONFIG_FILE), e))?;
        let classifier = Dense::load(
            &mut tensors,
            "classifier",
            config.hidden_size,
            config.num_labels,
            device,
        )?;
        tensors.finish()?;
        let labels = load_labels(dir, config.num_labels)?;
        Ok((
            Self {
                dropout: DropoutConfig::new(config.dropout).init(),
                classifier,
                config,
            },
            labels,
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Sequence classification

/// The configuration of a [`SequenceClassificationHead`]: pooling, dropout, linear classifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SequenceClassificationHeadConfig {
    /// Width of the encoder's hidden states.
    pub hidden_size: usize,
    /// Number of classes.
    pub num_labels: usize,
    /// How the sequence is pooled (default: mean over real tokens).
    #[serde(default)]
    pub pooling: Pooling,
    /// Dropout on the pooled vector before the classifier (default 0.1), training only.
    #[serde(default = "default_dropout")]
    pub dropout: f64,
    /// Standard deviation of the classifier's initial weights (default 0.02).
    #[serde(default = "default_initializer_range")]
    pub initializer_range: f64,
}

impl SequenceClassificationHeadConfig {
    /// `hidden_size → num_labels` with mean pooling, dropout 0.1 and initializer range 0.02.
    pub fn new(hidden_size: usize, num_labels: usize) -> Self {
        Self {
            hidden_size,
            num_labels,
            pooling: Pooling::default(),
            dropout: default_dropout(),
            initializer_range: default_initializer_range(),
        }
    }

    /// Sets the pooling.
    pub fn with_pooling(mut self, pooling: Pooling) -> Self {
        self.pooling = pooling;
        self
    }

    /// Sets the dropout probability.
    pub fn with_dropout(mut self, p: f64) -> Self {
        self.dropout = p;
        self
    }

    fn validate(&self) -> Result<()> {
        check_common(self.hidden_size, self.dropout)?;
        check_labels(self.num_labels)?;
        check_init_range(self.initializer_range)
    }

    /// A fresh head on `device`.
    ///
    /// # Errors
    ///
    /// As [`TokenClassificationHeadConfig::init`].
    pub fn init(&self, device: &Device) -> Result<SequenceClassificationHead> {
        self.validate()?;
        Ok(SequenceClassificationHead {
            dropout: DropoutConfig::new(self.dropout).init(),
            classifier: Dense::init(
                self.hidden_size,
                self.num_labels,
                self.initializer_range,
                device,
            ),
            config: self.clone(),
        })
    }
}

/// Per-sequence logits: `classifier(dropout(pool(hidden)))`, `[B, S, H] → [B, C]`.
#[derive(Module, Debug)]
pub struct SequenceClassificationHead {
    /// Dropout on the pooled vector.
    pub dropout: Dropout,
    /// `hidden_size → num_labels`.
    pub classifier: Dense,
    /// The configuration.
    #[module(skip)]
    pub config: SequenceClassificationHeadConfig,
}

impl SequenceClassificationHead {
    /// Logits `[B, num_labels]` of hidden states `[B, S, hidden_size]` under their attention
    /// mask `[B, S]`.
    ///
    /// # Errors
    ///
    /// [`AppError::Shape`] when the hidden width is not the head's or the mask does not fit.
    pub fn forward(&self, hidden: Tensor<3>, attention_mask: Tensor<2, Int>) -> Result<Tensor<2>> {
        check_width(
            "hidden states [B, S, H] (sequence classification head)",
            &hidden.dims(),
            self.config.hidden_size,
        )?;
        let pooled = self.config.pooling.pool(hidden, attention_mask)?;
        Ok(self
            .classifier
            .forward(kernels::dropout(&self.dropout, pooled)))
    }

    /// The configuration.
    pub fn config(&self) -> &SequenceClassificationHeadConfig {
        &self.config
    }

    /// Saves the head and its labels into `dir`; see [`TokenClassificationHead::save`].
    ///
    /// # Errors
    ///
    /// As [`TokenClassificationHead::save`].
    pub fn save(&self, dir: impl AsRef<Path>, labels: &LabelVocab) -> Result<()> {
        save_head(
            dir.as_ref(),
            &HeadFile::SequenceClassification(self.config.clone()),
            self.classifier.tensors("classifier")?,
            Some((labels, self.config.num_labels)),
        )
    }

    /// Loads a head saved by [`save`](Self::save), with its labels.
    ///
    /// # Errors
    ///
    /// As [`TokenClassificationHead::load`].
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<(Self, LabelVocab)> {
        let dir = dir.as_ref();
        let (file, mut tensors) = load_head(dir)?;
        let HeadFile::SequenceClassification(config) = file else {
            return Err(wrong_kind(dir, &file, "sequence_classification"));
        };
        config
            .validate()
            .map_err(|e| format_err(&dir.join(CONFIG_FILE), e))?;
        let classifier = Dense::load(
            &mut tensors,
            "classifier",
            config.hidden_size,
            config.num_labels,
            device,
        )?;
        tensors.finish()?;
        let labels = load_labels(dir, config.num_labels)?;
        Ok((
            Self {
                dropout: DropoutConfig::new(config.dropout).init(),
                classifier,
                config,
            },
            labels,
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Projection (contrastive)

/// The configuration of a [`ProjectionHead`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectionHeadConfig {
    /// Width of the encoder's hidden states.
    pub hidden_size: usize,
    /// Width of the embeddings; `None` keeps the pooled vector as it is (identity, as
    /// sentence-transformers trains without a projection).
    #[serde(default)]
    pub dim: Option<usize>,
    /// How the sequence is pooled (default: mean over real tokens).
    #[serde(default)]
    pub pooling: Pooling,
    /// Standard deviation of the projection's initial weights (default 0.02).
    #[serde(default = "default_initializer_range")]
    pub initializer_range: f64,
}

impl ProjectionHeadConfig {
    /// Mean pooling and no projection: embeddings of width `hidden_size`.
    pub fn new(hidden_size: usize) -> Self {
        Self {
            hidden_size,
            dim: None,
            pooling: Pooling::default(),
            initializer_range: default_initializer_range(),
        }
    }

    /// Projects to `dim` with a learned dense layer.
    pub fn with_dim(mut self, dim: usize) -> Self {
        self.dim = Some(dim);
        self
    }

    /// Sets the pooling.
    pub fn with_pooling(mut self, pooling: Pooling) -> Self {
        self.pooling = pooling;
        self
    }

    /// The embedding width: `dim`, or `hidden_size` without a projection.
    pub fn out_dim(&self) -> usize {
        self.dim.unwrap_or(self.hidden_size)
    }

    fn validate(&self) -> Result<()> {
        check_common(self.hidden_size, 0.0)?;
        if self.dim == Some(0) {
            return Err(AppError::InvalidArgument {
                what: "dim",
                message: "must be at least 1".into(),
            });
        }
        check_init_range(self.initializer_range)
    }

    /// A fresh head on `device`.
    ///
    /// # Errors
    ///
    /// [`AppError::InvalidArgument`] for a zero width or `dim`, or a negative initializer
    /// range.
    pub fn init(&self, device: &Device) -> Result<ProjectionHead> {
        self.validate()?;
        Ok(ProjectionHead {
            dense: self
                .dim
                .map(|d| Dense::init(self.hidden_size, d, self.initializer_range, device)),
            config: self.clone(),
        })
    }
}

/// Sentence embeddings for contrastive training: `dense(pool(hidden))`, or `pool(hidden)`
/// without a projection, `[B, S, H] → [B, D]`. Not normalised: the contrastive loss
/// normalises (`lora_bert_train::loss::info_nce`).
#[derive(Module, Debug)]
pub struct ProjectionHead {
    /// `hidden_size → dim`, when the config asks for one (saved as `dense.*`).
    pub dense: Option<Dense>,
    /// The configuration.
    #[module(skip)]
    pub config: ProjectionHeadConfig,
}

impl ProjectionHead {
    /// Embeddings `[B, D]` of hidden states `[B, S, hidden_size]` under their mask `[B, S]`.
    ///
    /// # Errors
    ///
    /// [`AppError::Shape`] when the hidden width is not the head's or the mask does not fit.
    pub fn forward(&self, hidden: Tensor<3>, attention_mask: Tensor<2, Int>) -> Result<Tensor<2>> {
        check_width(
            "hidden states [B, S, H] (projection head)",
            &hidden.dims(),
            self.config.hidden_size,
        )?;
        let pooled = self.config.pooling.pool(hidden, attention_mask)?;
        self.project(pooled)
    }

    /// Projects already pooled vectors `[B, hidden_size]` to `[B, D]`.
    ///
    /// # Errors
    ///
    /// [`AppError::Shape`] when the width is not the head's.
    pub fn project(&self, pooled: Tensor<2>) -> Result<Tensor<2>> {
        check_width(
            "pooled vectors [B, H] (projection head)",
            &pooled.dims(),
            self.config.hidden_size,
        )?;
        Ok(match &self.dense {
            Some(dense) => dense.forward(pooled),
            None => pooled,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ProjectionHeadConfig {
        &self.config
    }

    /// Saves the head into `dir` (no labels). Without a projection the weights file holds no
    /// tensor.
    ///
    /// # Errors
    ///
    /// [`AppError::Io`] when a file cannot be written.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let tensors = match &self.dense {
            Some(dense) => dense.tensors("dense")?,
            None => Vec::new(),
        };
        save_head(
            dir.as_ref(),
            &HeadFile::Projection(self.config.clone()),
            tensors,
            None,
        )
    }

    /// Loads a head saved by [`save`](Self::save).
    ///
    /// # Errors
    ///
    /// As [`TokenClassificationHead::load`], labels aside.
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let (file, mut tensors) = load_head(dir)?;
        let HeadFile::Projection(config) = file else {
            return Err(wrong_kind(dir, &file, "projection"));
        };
        config
            .validate()
            .map_err(|e| format_err(&dir.join(CONFIG_FILE), e))?;
        let dense = match config.dim {
            Some(d) => Some(Dense::load(
                &mut tensors,
                "dense",
                config.hidden_size,
                d,
                device,
            )?),
            None => None,
        };
        tensors.finish()?;
        Ok(Self { dense, config })
    }
}

// ---------------------------------------------------------------------------------------------
// Files

/// `head_config.json`: the config tagged with the kind of head.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "head", rename_all = "snake_case")]
enum HeadFile {
    TokenClassification(TokenClassificationHeadConfig),
    SequenceClassification(SequenceClassificationHeadConfig),
    Projection(ProjectionHeadConfig),
}

impl HeadFile {
    fn kind(&self) -> &'static str {
        match self {
            HeadFile::TokenClassification(_) => "token_classification",
            HeadFile::SequenceClassification(_) => "sequence_classification",
            HeadFile::Projection(_) => "projection",
        }
    }
}

fn wrong_kind(dir: &Path, file: &HeadFile, expected: &str) -> AppError {
    AppError::Format {
        path: dir.join(CONFIG_FILE),
        message: format!("holds a {} head, not a {expected} head", file.kind()),
    }
}

fn format_err(path: &Path, e: AppError) -> AppError {
    AppError::Format {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// A tensor as saved: name, shape, row-major values.
type NamedTensor = (String, Vec<usize>, Vec<f32>);

fn named<const D: usize>(name: String, tensor: Tensor<D>) -> Result<NamedTensor> {
    let shape = tensor.dims().to_vec();
    let values = tensor
        .try_into_vec_as::<f32>()
        .map_err(|e| AppError::InvalidArgument {
            what: "head weights",
            message: format!("cannot read `{name}` as f32: {e:?}"),
        })?;
    Ok((name, shape, values))
}

fn save_head(
    dir: &Path,
    file: &HeadFile,
    tensors: Vec<NamedTensor>,
    labels: Option<(&LabelVocab, usize)>,
) -> Result<()> {
    if let Some((vocab, n)) = labels
        && vocab.len() != n
    {
        return Err(AppError::InvalidArgument {
            what: "labels",
            message: format!("{} labels for a head of {n} classes", vocab.len()),
        });
    }
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let weights_path = dir.join(WEIGHTS_FILE);
    let stored = tensors
        .iter()
        .map(|(name, shape, values)| (name, StoredTensor::f32(shape.clone(), values)))
        .collect::<Vec<_>>();
    write_safetensors(&weights_path, stored.iter().map(|(n, t)| (*n, t)), [])
        .map_err(|e| file_error(e, &weights_path))?;
    if let Some((vocab, _)) = labels {
        vocab.save(dir.join(LABELS_FILE))?;
    }
    let mut json = serde_json::to_vec_pretty(file).map_err(|e| invalid("head config", e))?;
    json.push(b'\n');
    write_atomic(&dir.join(CONFIG_FILE), &json)
}

fn invalid(what: &'static str, e: impl std::fmt::Display) -> AppError {
    AppError::InvalidArgument {
        what,
        message: e.to_string(),
    }
}

fn load_head(dir: &Path) -> Result<(HeadFile, TensorFile)> {
    let config_path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&config_path).map_err(io_err(&config_path))?;
    let file: HeadFile = serde_json::from_str(&text).map_err(|e| AppError::Format {
        path: config_path.clone(),
        message: e.to_string(),
    })?;
    let weights_path = dir.join(WEIGHTS_FILE);
    let bytes = std::fs::read(&weights_path).map_err(io_err(&weights_path))?;
    Ok((file, TensorFile::parse(&bytes, weights_path)?))
}

fn load_labels(dir: &Path, num_labels: usize) -> Result<LabelVocab> {
    let path = dir.join(LABELS_FILE);
    let vocab = LabelVocab::load(&path)?;
    if vocab.len() != num_labels {
        return Err(AppError::Format {
            path,
            message: format!(
                "{} labels, but the head has num_labels = {num_labels}",
                vocab.len()
            ),
        });
    }
    Ok(vocab)
}

/// The tensors of a head's weights file, taken one by one (the encoder crate's reader, its
/// errors in this crate's terms).
struct TensorFile(tensor_file::TensorFile);

impl TensorFile {
    fn parse(bytes: &[u8], path: PathBuf) -> Result<Self> {
        tensor_file::TensorFile::parse(path.clone(), bytes)
            .map(Self)
            .map_err(|e| file_error(e, &path))
    }

    /// The values of tensor `name`, which must have shape `shape` (and, as every tensor the
    /// reader accepts, finite values).
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        self.0
            .take(name, shape)
            .map_err(|e| file_error(e, self.0.path()))
    }

    /// Fails when a tensor was not taken.
    fn finish(self) -> Result<()> {
        let path = self.0.path().to_owned();
        self.0.finish().map_err(|e| file_error(e, &path))
    }
}

/// A weights file's error as this crate reports it: [`AppError::Format`] naming the file
/// (with the tensor in the message), [`AppError::Shape`] for a tensor of another shape.
fn file_error(e: CheckpointError, file: &Path) -> AppError {
    let format = |message: String| AppError::Format {
        path: file.to_owned(),
        message,
    };
    match e {
        CheckpointError::Io { path, source } => AppError::Io { path, source },
        CheckpointError::Shape {
            path,
            name,
            expected,
            actual,
        } => AppError::Shape {
            what: format!("tensor `{name}` in {}", path.display()),
            expected,
            found: actual,
        },
        CheckpointError::Corrupt { message, .. } => {
            format(format!("not a valid safetensors file: {message}"))
        }
        CheckpointError::Missing { names, .. } => {
            format(format!("missing tensor `{}`", names.join("`, `")))
        }
        CheckpointError::Unexpected { names, .. } => {
            format(format!("unexpected tensors: {}", names.join(", ")))
        }
        CheckpointError::Dtype { name, dtype, .. } => format(format!(
            "tensor `{name}` has dtype {dtype}, expected a float dtype"
        )),
        CheckpointError::NonFinite { name, .. } => {
            format(format!("tensor `{name}` has non-finite values"))
        }
        other => format(other.to_string()),
    }
}
