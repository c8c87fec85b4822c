//! MPNet (as in sentence-transformers' all-mpnet-base-v2), matching Hugging Face's
//! `transformers.models.mpnet.modeling_mpnet.MPNetModel`.
//!
//! MPNet differs from BERT in four places, all reproduced here:
//!
//! - no token-type embeddings; position ids count the non-padding tokens starting at
//!   `padding_idx + 1` (HF `create_position_ids_from_input_ids`), so padding tokens sit at
//!   position `padding_idx`;
//! - a relative position bias (`encoder.relative_attention_bias`, one scalar per bucket and
//!   head) computed once per forward pass from [`relative_position_bucket`] and added to the
//!   attention scores of every layer;
//! - attention projections named `attention.attn.{q,k,v,o}`, with the attention LayerNorm at
//!   `attention.LayerNorm`;
//! - LayerNorm epsilon 1e-5 in all-mpnet-base-v2 (read from the config).
//!
//! It is meant as a frozen teacher: projections are plain linears (no adapters).
//!
//! ```no_run
//! use lora_bert_encoder::{BertTokenizer, MpnetModel, device, mean_pool};
//!
//! let device = device::device(device::Backend::Flex)?;
//! let (model, _report) = MpnetModel::load("all-mpnet-base-v2", &device)?;
//! let tokenizer = BertTokenizer::from_file("all-mpnet-base-v2/tokenizer.json")?
//!     .with_max_length(model.config().max_sequence_length());
//! let batch = tokenizer.encode_batch(&["A man is eating food.", "The market fell."])?;
//! let input = model.input(&batch, &device)?;
//! let output = model.forward(&input)?;
//! let sentence_embeddings = mean_pool(output.last_hidden_state, input.attention_mask);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::Path;

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::activation::{gelu_approximate, relu, softmax, tanh};
use burn::tensor::module::{attention, embedding};
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::build::{WeightSource, dense, layer_norm, param};
use crate::checkpoint::{CheckpointError, LoadReport, ModelDir, load_checkpoint, read_bytes};
use crate::config::{Activation, ConfigError};
use crate::model::{BertInput, InputError, InputLimits, LayerNorm};
use crate::projection::Projection;
use crate::tokenizer::Batch;

/// The padding index transformers' MPNet hard-codes (`MPNetEmbeddings.padding_idx = 1`).
const PADDING_IDX: u32 = 1;
/// The number of buckets transformers' MPNet uses whatever the config says
/// (`compute_position_bias(..., num_buckets=32)`).
const NUM_BUCKETS: usize = 32;
/// The distance from which all buckets are the same (transformers' default).
const MAX_DISTANCE: usize = 128;

/// Hyper-parameters of an MPNet encoder, field for field as in Hugging Face's `MPNetConfig`.
///
/// Unknown fields of `config.json` (`architectures`, `bos_token_id`, ...) are ignored; values
/// transformers' MPNet would not honour either (a padding id other than 1, a bucket count
/// other than 32) are rejected by [`validate`](Self::validate) with a
/// [`ConfigError::Invalid`] naming the field.
///
/// ```
/// use lora_bert_encoder::MpnetConfig;
///
/// let config = MpnetConfig::from_json_str(
///     r#"{"vocab_size": 30527, "hidden_size": 768, "num_hidden_layers": 12,
///         "num_attention_heads": 12, "intermediate_size": 3072,
///         "max_position_embeddings": 514, "layer_norm_eps": 1e-5, "model_type": "mpnet"}"#,
/// )?;
/// assert_eq!(config.head_dim(), 64);
/// assert_eq!(config.max_sequence_length(), 512);
/// # Ok::<(), lora_bert_encoder::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MpnetConfig {
    /// Size of the vocabulary.
    pub vocab_size: usize,
    /// Width of every hidden state.
    pub hidden_size: usize,
    /// Number of transformer layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer; must divide `hidden_size`.
    pub num_attention_heads: usize,
    /// Width of the feed-forward block.
    pub intermediate_size: usize,
    /// Activation of the feed-forward block (`"gelu"`: exact, with erf).
    #[serde(default = "default_act")]
    pub hidden_act: Activation,
    /// Dropout on embeddings and on each sub-layer output (training only).
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f64,
    /// Dropout on attention probabilities (training only).
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f64,
    /// Rows of the position table; the first `pad_token_id + 1` are never used by real
    /// tokens, see [`max_sequence_length`](Self::max_sequence_length).
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    /// Standard deviation of the normal initialisation (kept for round trips).
    #[serde(default = "default_init_range")]
    pub initializer_range: f64,
    /// Epsilon of every LayerNorm.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Id of the padding token, also the padding index of the position table; must be 1.
    #[serde(default = "default_pad")]
    pub pad_token_id: u32,
    /// Rows of `encoder.relative_attention_bias`; must be 32.
    #[serde(default = "default_buckets")]
    pub relative_attention_num_buckets: usize,
    /// `model_type` as written in the file, if any (`"mpnet"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_type: Option<String>,
}

fn default_act() -> Activation {
    Activation::Gelu
}
fn default_dropout() -> f64 {
    0.1
}
fn default_max_positions() -> usize {
    512
}
fn default_init_range() -> f64 {
    0.02
}
fn default_eps() -> f64 {
    1e-12
}
fn default_pad() -> u32 {
    PADDING_IDX
}
fn default_buckets() -> usize {
    NUM_BUCKETS
}

const IN_MEMORY: &str = "<memory>";

impl MpnetConfig {
    /// Reads and validates a Hugging Face `config.json`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Io`], [`ConfigError::Json`] or [`ConfigError::Invalid`], naming the file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates the JSON text of a `config.json`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Json`] or [`ConfigError::Invalid`].
    pub fn from_json_str(json: &str) -> Result<Self, ConfigError> {
        Self::parse(json, Path::new(IN_MEMORY))
    }

    fn parse(json: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: Self = serde_json::from_str(json).map_err(|e| ConfigError::Json {
            path: path.to_owned(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
        config.validate_at(path)?;
        Ok(config)
    }

    /// Checks that this encoder can run the configuration as transformers does.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the first offending field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_at(Path::new(IN_MEMORY))
    }

    fn validate_at(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |field: &'static str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            field,
            message,
        };
        for (field, value) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
        ] {
            if value == 0 {
                return Err(invalid(field, "must be greater than 0".into()));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(invalid(
                "num_attention_heads",
                format!(
                    "hidden_size {} is not divisible by {} heads",
                    self.hidden_size, self.num_attention_heads
                ),
            ));
        }
        for (field, p) in [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                self.attention_probs_dropout_prob,
            ),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(invalid(field, format!("{p} is not in [0, 1)")));
            }
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps.is_finite()) {
            return Err(invalid(
                "layer_norm_eps",
                format!("{} is not a positive number", self.layer_norm_eps),
            ));
        }
        // The standard deviation of fresh weights: a negative one makes initialisation panic.
        if !(self.initializer_range >= 0.0 && self.initializer_range.is_finite()) {
            return Err(invalid(
                "initializer_range",
                format!("{} is not a finite number >= 0", self.initializer_range),
            ));
        }
        if self.pad_token_id != PADDING_IDX {
            return Err(invalid(
                "pad_token_id",
                format!(
                    "{} is not supported: transformers' MPNet hard-codes padding index \
                     {PADDING_IDX} for its embeddings and position ids",
                    self.pad_token_id
                ),
            ));
        }
        if self.pad_token_id as usize >= self.vocab_size {
            return Err(invalid(
                "pad_token_id",
                format!(
                    "{} is outside the vocabulary of {}",
                    self.pad_token_id, self.vocab_size
                ),
            ));
        }
        if self.max_position_embeddings <= self.pad_token_id as usize + 1 {
            return Err(invalid(
                "max_position_embeddings",
                format!(
                    "{} leaves no position for a token (positions start at pad_token_id + 1 = {})",
                    self.max_position_embeddings,
                    self.pad_token_id + 1
                ),
            ));
        }
        if self.relative_attention_num_buckets != NUM_BUCKETS {
            return Err(invalid(
                "relative_attention_num_buckets",
                format!(
                    "{} is not supported: transformers' MPNet buckets relative positions into \
                     {NUM_BUCKETS} whatever the config says",
                    self.relative_attention_num_buckets
                ),
            ));
        }
        if let Some(model_type) = &self.model_type
            && model_type != "mpnet"
        {
            return Err(invalid(
                "model_type",
                format!("`{model_type}` is not an MPNet model"),
            ));
        }
        crate::config::check_size(
            path,
            &[
                ("vocab_size", self.vocab_size),
                ("max_position_embeddings", self.max_position_embeddings),
            ],
            self.hidden_size,
            self.intermediate_size,
            self.num_hidden_layers,
        )
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Longest input in tokens, special tokens included: `max_position_embeddings -
    /// pad_token_id - 1` (512 for all-mpnet-base-v2), since positions start at
    /// `pad_token_id + 1`.
    pub fn max_sequence_length(&self) -> usize {
        self.max_position_embeddings
            .saturating_sub(self.pad_token_id as usize + 1)
    }

    /// Writes the configuration as `config.json` text.
    pub fn to_json_string(&self) -> String {
        serde_json::to_string_pretty(self).expect("MpnetConfig serialises to JSON")
    }
}

/// The bucket of a relative position `memory - context` (key index minus query index), as
/// transformers' `MPNetEncoder.relative_position_bucket`: half of the buckets for each sign
/// (keys before the query get the upper half), the distances below `num_buckets / 4`
/// exactly, larger ones log-spaced up to `max_distance`, beyond which all share the last
/// bucket of their half.
///
/// The log-spaced branch is computed in `f32`, as transformers does, so bucket edges agree.
///
/// ```
/// use lora_bert_encoder::mpnet::relative_position_bucket;
///
/// assert_eq!(relative_position_bucket(0, 32, 128), 0);
/// assert_eq!(relative_position_bucket(-3, 32, 128), 3);
/// assert_eq!(relative_position_bucket(3, 32, 128), 19);
/// assert_eq!(relative_position_bucket(-1000, 32, 128), 15);
/// assert_eq!(relative_position_bucket(1000, 32, 128), 31);
/// ```
pub fn relative_position_bucket(
    relative_position: i64,
    num_buckets: usize,
    max_distance: usize,
) -> usize {
    let half = num_buckets / 2;
    let n = -relative_position;
    let mut ret = if n < 0 { half } else { 0 };
    let n = n.unsigned_abs() as usize;
    let max_exact = half / 2;
    if n < max_exact {
        ret += n;
    } else {
        let ratio = (n as f32 / max_exact as f32).ln();
        let scale = (max_distance as f64 / max_exact as f64).ln() as f32;
        let large = max_exact + (ratio / scale * (half - max_exact) as f32) as usize;
        ret += large.min(half.saturating_sub(1));
    }
    ret
}

/// Word and position embeddings, summed and normalised (HF `embeddings`; MPNet has no token
/// types).
#[derive(Module, Debug)]
pub struct MpnetEmbeddings {
    /// `[vocab_size, hidden]`.
    pub word_embeddings: Param<Tensor<2>>,
    /// `[max_position_embeddings, hidden]`.
    pub position_embeddings: Param<Tensor<2>>,
    /// HF `LayerNorm`.
    pub layer_norm: LayerNorm,
    /// Active only in training on an autodiff device.
    pub dropout: Dropout,
    /// The padding index (1): padding sits at this position, real tokens after it.
    pub padding_idx: u32,
}

impl MpnetEmbeddings {
    /// Embeds `[batch, seq]` ids into `[batch, seq, hidden]`.
    pub fn forward(&self, input_ids: Tensor<2, Int>) -> Tensor<3> {
        let positions = position_ids(input_ids.clone(), self.padding_idx);
        let words = embedding(self.word_embeddings.val(), input_ids);
        let positions = embedding(self.position_embeddings.val(), positions);
        self.dropout
            .forward(self.layer_norm.forward(words + positions))
    }
}

/// HF `create_position_ids_from_input_ids`: `cumsum(ids != pad) * (ids != pad) + pad`, so
/// real tokens count from `pad + 1` and padding tokens sit at `pad`.
pub fn position_ids(input_ids: Tensor<2, Int>, padding_idx: u32) -> Tensor<2, Int> {
    let real = input_ids
        .equal_elem(i64::from(padding_idx))
        .bool_not()
        .int();
    (real.clone().cumsum(1) * real).add_scalar(i64::from(padding_idx))
}

/// Multi-head self-attention with its output projection (HF `attention.attn`).
#[derive(Module, Debug)]
pub struct MpnetSelfAttention {
    /// `q`.
    pub q: Projection,
    /// `k`.
    pub k: Projection,
    /// `v`.
    pub v: Projection,
    /// `o`.
    pub o: Projection,
    /// Dropout on the attention probabilities.
    pub dropout: Dropout,
    /// Number of heads.
    pub num_heads: usize,
}

impl MpnetSelfAttention {
    /// `x`: `[batch, seq, hidden]`; `bias`: `[batch, heads, seq, seq]`, the relative position
    /// bias plus the padding mask, as made by [`MpnetModel::attention_bias`].
    pub fn forward(&self, x: Tensor<3>, bias: &Tensor<4>) -> Tensor<3> {
        let [batch, seq_len, hidden] = x.dims();
        let heads = self.num_heads;
        let head_dim = hidden / heads;
        let split = |t: Tensor<3>| t.reshape([batch, seq_len, heads, head_dim]).swap_dims(1, 2);
        let q = split(self.q.forward_base(x.clone()));
        let k = split(self.k.forward_base(x.clone()));
        let v = split(self.v.forward_base(x));
        let dropout_active = self.dropout.prob > 0.0
            && self.dropout.training.is_enabled()
            && q.device().is_autodiff();
        let context = if dropout_active {
            let scale = (head_dim as f64).sqrt().recip();
            let scores = q.matmul(k.swap_dims(2, 3)) * scale + bias.clone();
            crate::kernels::dropout(&self.dropout, softmax(scores, 3)).matmul(v)
        } else {
            attention(
                q,
                k,
                v,
                None,
                Some(bias.clone()),
                AttentionModuleOptions::default(),
            )
        };
        let context = context.swap_dims(1, 2).reshape([batch, seq_len, hidden]);
        self.o.forward_base(context)
    }
}

/// Self-attention, dropout, residual and LayerNorm (HF `attention`).
#[derive(Module, Debug)]
pub struct MpnetAttention {
    /// HF `attn`.
    pub attn: MpnetSelfAttention,
    /// HF `LayerNorm`.
    pub layer_norm: LayerNorm,
    /// Dropout before the residual.
    pub dropout: Dropout,
}

/// Feed-forward expansion (HF `intermediate`).
#[derive(Module, Debug)]
pub struct MpnetIntermediate {
    /// `dense`.
    pub dense: Projection,
    /// The activation.
    #[module(skip)]
    pub activation: Activation,
}

/// Feed-forward contraction, residual and LayerNorm (HF `output`).
#[derive(Module, Debug)]
pub struct MpnetOutputBlock {
    /// `dense`.
    pub dense: Projection,
    /// HF `LayerNorm`.
    pub layer_norm: LayerNorm,
    /// Dropout before the residual.
    pub dropout: Dropout,
}

/// One transformer layer (HF `encoder.layer.N`).
#[derive(Module, Debug)]
pub struct MpnetLayer {
    /// HF `attention`.
    pub attention: MpnetAttention,
    /// HF `intermediate`.
    pub intermediate: MpnetIntermediate,
    /// HF `output`.
    pub output: MpnetOutputBlock,
}

impl MpnetLayer {
    /// Runs the layer on `[batch, seq, hidden]`; `bias`: see [`MpnetSelfAttention::forward`].
    pub fn forward(&self, x: Tensor<3>, bias: &Tensor<4>) -> Tensor<3> {
        let a = &self.attention;
        let attn = a.attn.forward(x.clone(), bias);
        let h = a
            .layer_norm
            .forward(crate::kernels::dropout(&a.dropout, attn) + x);
        let inner = self.intermediate.dense.forward_base(h.clone());
        let inner = match self.intermediate.activation {
            Activation::Gelu => crate::kernels::gelu(inner),
            Activation::GeluNew => gelu_approximate(inner),
            Activation::Relu => relu(inner),
        };
        let out = &self.output;
        out.layer_norm
            .forward(crate::kernels::dropout(&out.dropout, out.dense.forward_base(inner)) + h)
    }
}

/// The stack of layers and the shared relative position bias (HF `encoder`).
#[derive(Module, Debug)]
pub struct MpnetEncoder {
    /// HF `layer`.
    pub layer: Vec<MpnetLayer>,
    /// HF `relative_attention_bias`, `[num_buckets, heads]`.
    pub relative_attention_bias: Param<Tensor<2>>,
}

/// `tanh(dense(h[<s>]))` (HF `pooler`).
#[derive(Module, Debug)]
pub struct MpnetPooler {
    /// `dense`.
    pub dense: Projection,
}

impl MpnetPooler {
    /// Pools `[batch, seq, hidden]` into `[batch, hidden]` from the first token.
    pub fn forward(&self, hidden: Tensor<3>) -> Tensor<2> {
        let [batch, _, width] = hidden.dims();
        tanh(self.dense.forward_base(hidden.narrow(1, 0, 1))).reshape([batch, width])
    }
}

/// What [`MpnetModel::forward`] returns.
#[derive(Debug, Clone)]
pub struct MpnetOutput {
    /// Hidden state of the last layer, `[batch, seq, hidden]`.
    pub last_hidden_state: Tensor<3>,
    /// The embedding output followed by every layer's output (`num_hidden_layers + 1`
    /// tensors, as transformers' `hidden_states`), when asked for with
    /// [`MpnetModel::forward_all`]; empty otherwise.
    pub hidden_states: Vec<Tensor<3>>,
    /// `tanh(dense(<s>))`, `[batch, hidden]`, when the checkpoint has a pooler.
    pub pooler_output: Option<Tensor<2>>,
}

/// An MPNet encoder (HF `MPNetModel`).
///
/// Load one with [`MpnetModel::load`]. Dropout is active only in training mode on an
/// autodiff device.
#[derive(Module, Debug)]
pub struct MpnetModel {
    /// HF `embeddings`.
    pub embeddings: MpnetEmbeddings,
    /// HF `encoder`.
    pub encoder: MpnetEncoder,
    /// HF `pooler`, present when the checkpoint has its weights.
    pub pooler: Option<MpnetPooler>,
    /// The configuration the model was built from.
    #[module(skip)]
    pub config: MpnetConfig,
}

/// The model of `config`, every weight taken from `source` under its Hugging Face name.
fn build<S: WeightSource>(
    config: &MpnetConfig,
    with_pooler: bool,
    source: &mut S,
) -> Result<MpnetModel, S::Error> {
    let h = config.hidden_size;
    let ff = config.intermediate_size;
    let eps = config.layer_norm_eps;
    let hidden_dropout = || DropoutConfig::new(config.hidden_dropout_prob).init();
    let embeddings = MpnetEmbeddings {
        word_embeddings: param(
            source,
            "embeddings.word_embeddings.weight",
            [config.vocab_size, h],
        )?,
        position_embeddings: param(
            source,
            "embeddings.position_embeddings.weight",
            [config.max_position_embeddings, h],
        )?,
        layer_norm: layer_norm(source, "embeddings", h, eps)?,
        dropout: hidden_dropout(),
        padding_idx: config.pad_token_id,
    };
    // Bounded by the config's size check; the cap keeps a huge count from reserving first.
    let mut layers = Vec::with_capacity(config.num_hidden_layers.min(1024));
    for i in 0..config.num_hidden_layers {
        let at = |name: &str| format!("encoder.layer.{i}.{name}");
        layers.push(MpnetLayer {
            attention: MpnetAttention {
                attn: MpnetSelfAttention {
                    q: dense(source, &at("attention.attn.q"), h, h)?,
                    k: dense(source, &at("attention.attn.k"), h, h)?,
                    v: dense(source, &at("attention.attn.v"), h, h)?,
                    o: dense(source, &at("attention.attn.o"), h, h)?,
                    dropout: DropoutConfig::new(config.attention_probs_dropout_prob).init(),
                    num_heads: config.num_attention_heads,
                },
                layer_norm: layer_norm(source, &at("attention"), h, eps)?,
                dropout: hidden_dropout(),
            },
            intermediate: MpnetIntermediate {
                dense: dense(source, &at("intermediate.dense"), h, ff)?,
                activation: config.hidden_act,
            },
            output: MpnetOutputBlock {
                dense: dense(source, &at("output.dense"), ff, h)?,
                layer_norm: layer_norm(source, &at("output"), h, eps)?,
                dropout: hidden_dropout(),
            },
        });
    }
    let relative_attention_bias = param(
        source,
        "encoder.relative_attention_bias.weight",
        [
            config.relative_attention_num_buckets,
            config.num_attention_heads,
        ],
    )?;
    let pooler = if with_pooler {
        Some(MpnetPooler {
            dense: dense(source, "pooler.dense", h, h)?,
        })
    } else {
        None
    };
    Ok(MpnetModel {
        embeddings,
        encoder: MpnetEncoder {
            layer: layers,
            relative_attention_bias,
        },
        pooler,
        config: config.clone(),
    })
}

impl MpnetModel {
    /// Loads `config.json` and `model.safetensors` from a Hugging Face model directory.
    ///
    /// Tensor names are accepted with or without the `mpnet.` prefix of `MPNetFor*`
    /// checkpoints; the `embeddings.position_ids` buffer is skipped; tensors the model does
    /// not use (an LM head, say) are listed in [`LoadReport::unexpected`]; a missing pooler is
    /// listed in [`LoadReport::missing`] and the model is built without one.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::Config`] for an invalid `config.json`; [`CheckpointError::Io`],
    /// [`CheckpointError::Corrupt`], [`CheckpointError::Missing`], [`CheckpointError::Shape`],
    /// [`CheckpointError::Dtype`] or [`CheckpointError::NonFinite`] naming the file (and the
    /// tensor).
    pub fn load(
        dir: impl AsRef<Path>,
        device: &Device,
    ) -> Result<(Self, LoadReport), CheckpointError> {
        let files = ModelDir::new(dir);
        let config = MpnetConfig::from_file(&files.config)?;
        Self::load_safetensors(&files.weights, &config, device)
    }

    /// Loads HF-named weights from a safetensors file into a model of `config`.
    ///
    /// # Errors
    ///
    /// As [`load`](Self::load).
    pub fn load_safetensors(
        path: impl AsRef<Path>,
        config: &MpnetConfig,
        device: &Device,
    ) -> Result<(Self, LoadReport), CheckpointError> {
        let path = path.as_ref();
        let bytes = read_bytes(path)?;
        Self::load_safetensors_bytes(&bytes, path, config, device)
    }

    /// Loads from safetensors bytes already in memory; `path` is only used in messages.
    ///
    /// # Errors
    ///
    /// As [`load`](Self::load), less the I/O errors.
    pub fn load_safetensors_bytes(
        bytes: &[u8],
        path: &Path,
        config: &MpnetConfig,
        device: &Device,
    ) -> Result<(Self, LoadReport), CheckpointError> {
        config.validate()?;
        load_checkpoint(bytes, path, "mpnet.", device, |source, has_pooler| {
            build(config, has_pooler, source)
        })
    }

    /// The configuration.
    pub fn config(&self) -> &MpnetConfig {
        &self.config
    }

    /// Moves a tokenised [`Batch`] to `device` as a [`BertInput`] (token types all 0, unused),
    /// checking ids and length against the config.
    ///
    /// # Errors
    ///
    /// [`InputError::Empty`], [`InputError::TooLong`] (longer than
    /// [`MpnetConfig::max_sequence_length`]) or [`InputError::TokenOutOfVocab`].
    pub fn input(&self, batch: &Batch, device: &Device) -> Result<BertInput, InputError> {
        self.input_from_ids(
            &batch.input_ids,
            &batch.attention_mask,
            batch.shape(),
            device,
        )
    }

    /// Builds an input from row-major `[batch, seq]` ids and attention mask (1 real, 0
    /// padding), checking them against the config. Pad with `pad_token_id` (1): positions
    /// are derived from the ids, as in transformers.
    ///
    /// # Errors
    ///
    /// As [`input`](Self::input), plus [`InputError::Shape`] if the arrays do not hold
    /// `batch * seq` entries.
    pub fn input_from_ids(
        &self,
        input_ids: &[u32],
        attention_mask: &[u32],
        shape: [usize; 2],
        device: &Device,
    ) -> Result<BertInput, InputError> {
        let types = vec![0; input_ids.len()];
        BertInput::checked(
            input_ids,
            &types,
            attention_mask,
            shape,
            InputLimits {
                vocab_size: self.config.vocab_size,
                type_vocab_size: 1,
                max_len: self.config.max_sequence_length(),
            },
            device,
        )
    }

    /// Runs the encoder (token types are ignored).
    ///
    /// # Errors
    ///
    /// [`InputError::Empty`], [`InputError::TooLong`] or [`InputError::Shape`].
    pub fn forward(&self, input: &BertInput) -> Result<MpnetOutput, InputError> {
        self.run(input, false)
    }

    /// Like [`forward`](Self::forward), also returning the embedding output and every layer's
    /// hidden state.
    ///
    /// # Errors
    ///
    /// As [`forward`](Self::forward).
    pub fn forward_all(&self, input: &BertInput) -> Result<MpnetOutput, InputError> {
        self.run(input, true)
    }

    fn run(&self, input: &BertInput, all: bool) -> Result<MpnetOutput, InputError> {
        let [batch, seq_len] = input.shape();
        if batch == 0 || seq_len == 0 {
            return Err(InputError::Empty { batch, seq_len });
        }
        let max = self.config.max_sequence_length();
        if seq_len > max {
            return Err(InputError::TooLong { seq_len, max });
        }
        let mask_dims = input.attention_mask.dims();
        if mask_dims != [batch, seq_len] {
            return Err(InputError::Shape(format!(
                "attention_mask is {mask_dims:?}, input_ids is {:?}",
                [batch, seq_len]
            )));
        }
        let bias = self.attention_bias(&input.attention_mask);
        let mut hidden = self.embeddings.forward(input.input_ids.clone());
        let mut hidden_states = Vec::new();
        for layer in &self.encoder.layer {
            if all {
                hidden_states.push(hidden.clone());
            }
            hidden = layer.forward(hidden, &bias);
        }
        if all {
            hidden_states.push(hidden.clone());
        }
        let pooler_output = self.pooler.as_ref().map(|p| p.forward(hidden.clone()));
        Ok(MpnetOutput {
            last_hidden_state: hidden,
            hidden_states,
            pooler_output,
        })
    }

    /// The additive attention bias every layer shares, `[batch, heads, seq, seq]`: the
    /// relative position bias of `key - query` ([`relative_position_bucket`] into
    /// `encoder.relative_attention_bias`), plus `f32::MIN` on padding keys (transformers adds
    /// `finfo(float32).min`), so padded batches give the same results as transformers.
    pub fn attention_bias(&self, attention_mask: &Tensor<2, Int>) -> Tensor<4> {
        let [batch, seq_len] = attention_mask.dims();
        let heads = self.config.num_attention_heads;
        let device = attention_mask.device();
        let buckets: Vec<i64> = (0..seq_len as i64)
            .flat_map(|query| {
                (0..seq_len as i64).map(move |key| {
                    relative_position_bucket(key - query, NUM_BUCKETS, MAX_DISTANCE) as i64
                })
            })
            .collect();
        let buckets =
            Tensor::<2, Int>::from_data(TensorData::new(buckets, [seq_len, seq_len]), &device);
        // [seq, seq, heads] -> [1, heads, seq, seq]
        let position = embedding(self.encoder.relative_attention_bias.val(), buckets)
            .permute([2, 0, 1])
            .unsqueeze_dim::<4>(0)
            .expand([batch, heads, seq_len, seq_len]);
        let padding = attention_mask
            .clone()
            .equal_elem(0)
            .float()
            .mul_scalar(f32::MIN)
            .reshape([batch, 1, 1, seq_len])
            .expand([batch, heads, seq_len, seq_len]);
        position + padding
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_MPNET: &str = r#"{
      "_name_or_path": "microsoft/mpnet-base",
      "architectures": ["MPNetForMaskedLM"],
      "attention_probs_dropout_prob": 0.1,
      "bos_token_id": 0,
      "eos_token_id": 2,
      "hidden_act": "gelu",
      "hidden_dropout_prob": 0.1,
      "hidden_size": 768,
      "initializer_range": 0.02,
      "intermediate_size": 3072,
      "layer_norm_eps": 1e-05,
      "max_position_embeddings": 514,
      "model_type": "mpnet",
      "num_attention_heads": 12,
      "num_hidden_layers": 12,
      "pad_token_id": 1,
      "relative_attention_num_buckets": 32,
      "transformers_version": "4.8.2",
      "vocab_size": 30527
    }"#;

    #[test]
    fn reads_the_all_mpnet_base_v2_config() {
        let c = MpnetConfig::from_json_str(ALL_MPNET).unwrap();
        assert_eq!(c.hidden_size, 768);
        assert_eq!(c.layer_norm_eps, 1e-5);
        assert_eq!(c.max_sequence_length(), 512);
        assert_eq!(c.hidden_act, Activation::Gelu);
        let again = MpnetConfig::from_json_str(&c.to_json_string()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn refuses_what_transformers_would_not_honour() {
        for (from, to, field) in [
            ("\"pad_token_id\": 1", "\"pad_token_id\": 0", "pad_token_id"),
            (
                "\"relative_attention_num_buckets\": 32",
                "\"relative_attention_num_buckets\": 64",
                "relative_attention_num_buckets",
            ),
            (
                "\"model_type\": \"mpnet\"",
                "\"model_type\": \"bert\"",
                "model_type",
            ),
            (
                "\"num_attention_heads\": 12",
                "\"num_attention_heads\": 7",
                "num_attention_heads",
            ),
            (
                "\"layer_norm_eps\": 1e-05",
                "\"layer_norm_eps\": 0",
                "layer_norm_eps",
            ),
            (
                "\"max_position_embeddings\": 514",
                "\"max_position_embeddings\": 2",
                "max_position_embeddings",
            ),
        ] {
            let json = ALL_MPNET.replace(from, to);
            assert_ne!(json, ALL_MPNET);
            match MpnetConfig::from_json_str(&json) {
                Err(ConfigError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{to}: {other:?}"),
            }
        }
        let json = ALL_MPNET.replace("\"hidden_act\": \"gelu\"", "\"hidden_act\": \"swish\"");
        assert!(matches!(
            MpnetConfig::from_json_str(&json),
            Err(ConfigError::Json { .. })
        ));
    }

    #[test]
    fn buckets_are_symmetric_in_shape_and_saturate() {
        for d in 0..8 {
            assert_eq!(relative_position_bucket(-d, 32, 128), d as usize);
        }
        for d in 1..8 {
            assert_eq!(relative_position_bucket(d, 32, 128), 16 + d as usize);
        }
        let mut last = 0;
        for d in 0..300 {
            let b = relative_position_bucket(-d, 32, 128);
            assert!(b >= last && b < 16, "{d}: {b}");
            last = b;
        }
        assert_eq!(relative_position_bucket(-127, 32, 128), 15);
        assert_eq!(relative_position_bucket(400, 32, 128), 31);
    }
}
