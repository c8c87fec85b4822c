//! The BERT encoder: embeddings, self-attention, feed-forward, post-LayerNorm, pooler.
//!
//! Module and field names mirror Hugging Face's `modeling_bert.py` (`embeddings`,
//! `encoder.layer.N.attention.self.query`, ...; HF's `self` is `self_attention` here because
//! `self` is a Rust keyword), so checkpoint names map one to one.

use burn::module::{Module, Param};
use burn::nn::Dropout;
use burn::tensor::activation::{gelu_approximate, relu, softmax, tanh};
use burn::tensor::module::{attention, embedding};
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

use crate::build::{RandomInit, build};
use crate::config::{Activation, BertConfig};
use crate::projection::{
    NoAdapter, Projection, ProjectionAdapter, ProjectionKind, ProjectionSite, Route,
};
use crate::tokenizer::Batch;

/// Why a forward pass refused its input.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InputError {
    /// The batch has no example or no token.
    #[error("empty input: batch {batch} x sequence {seq_len}")]
    Empty {
        /// Number of examples.
        batch: usize,
        /// Tokens per example.
        seq_len: usize,
    },
    /// The sequence is longer than the model's position table.
    #[error(
        "sequence of {seq_len} tokens exceeds the model maximum of {max} \
         (truncate or window the input)"
    )]
    TooLong {
        /// Tokens per example.
        seq_len: usize,
        /// `max_position_embeddings`.
        max: usize,
    },
    /// A token id is outside the vocabulary.
    #[error(
        "token id {id} at example {example}, position {position} is outside the vocabulary of {vocab_size}"
    )]
    TokenOutOfVocab {
        /// The id.
        id: u32,
        /// Example index.
        example: usize,
        /// Token position.
        position: usize,
        /// `vocab_size`.
        vocab_size: usize,
    },
    /// A token type id is outside the token type table.
    #[error(
        "token type id {id} at example {example}, position {position} exceeds type_vocab_size {type_vocab_size}"
    )]
    TokenTypeOutOfRange {
        /// The id.
        id: u32,
        /// Example index.
        example: usize,
        /// Token position.
        position: usize,
        /// `type_vocab_size`.
        type_vocab_size: usize,
    },
    /// Tensors of the input disagree in shape.
    #[error("input shapes disagree: {0}")]
    Shape(String),
    /// A hidden layer the model does not have.
    #[error("hidden layer {layer}: {message}")]
    Layer {
        /// The layer asked for.
        layer: usize,
        /// Which layers the model gives.
        message: String,
    },
    /// A route the model cannot take.
    #[error("route refused: {0}")]
    Route(String),
    /// A per-example route does not have one entry per example.
    #[error("route has {route} entries for a batch of {batch}")]
    RouteLength {
        /// Entries in the route.
        route: usize,
        /// Examples in the batch.
        batch: usize,
    },
}

/// A tokenised batch on a device: ids, token types and attention mask, `[batch, seq]`.
#[derive(Debug, Clone)]
pub struct BertInput {
    /// Word-piece ids.
    pub input_ids: Tensor<2, Int>,
    /// Segment ids (0 for the first sentence, 1 for the second).
    pub token_type_ids: Tensor<2, Int>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Tensor<2, Int>,
}

impl BertInput {
    /// Moves a tokenised [`Batch`] to `device`, checking every id against `config`.
    pub fn from_batch(
        batch: &Batch,
        config: &BertConfig,
        device: &Device,
    ) -> Result<Self, InputError> {
        let [n, seq_len] = batch.shape();
        Self::from_ids(
            &batch.input_ids,
            &batch.type_ids,
            &batch.attention_mask,
            [n, seq_len],
            config,
            device,
        )
    }

    /// Builds an input from row-major `[batch, seq]` id arrays, checking them against `config`.
    pub fn from_ids(
        input_ids: &[u32],
        type_ids: &[u32],
        attention_mask: &[u32],
        shape: [usize; 2],
        config: &BertConfig,
        device: &Device,
    ) -> Result<Self, InputError> {
        Self::checked(
            input_ids,
            type_ids,
            attention_mask,
            shape,
            InputLimits {
                vocab_size: config.vocab_size,
                type_vocab_size: config.type_vocab_size,
                max_len: config.max_position_embeddings,
            },
            device,
        )
    }

    /// [`from_ids`](Self::from_ids) against explicit limits (shared with other encoders).
    pub(crate) fn checked(
        input_ids: &[u32],
        type_ids: &[u32],
        attention_mask: &[u32],
        shape: [usize; 2],
        limits: InputLimits,
        device: &Device,
    ) -> Result<Self, InputError> {
        let InputLimits {
            vocab_size,
            type_vocab_size,
            max_len,
        } = limits;
        let [batch, seq_len] = shape;
        if batch == 0 || seq_len == 0 {
            return Err(InputError::Empty { batch, seq_len });
        }
        if seq_len > max_len {
            return Err(InputError::TooLong {
                seq_len,
                max: max_len,
            });
        }
        let n = batch * seq_len;
        if input_ids.len() != n || type_ids.len() != n || attention_mask.len() != n {
            return Err(InputError::Shape(format!(
                "expected {n} = {batch} x {seq_len} entries, got ids {}, types {}, mask {}",
                input_ids.len(),
                type_ids.len(),
                attention_mask.len()
            )));
        }
        for (i, (&id, &ty)) in input_ids.iter().zip(type_ids).enumerate() {
            if id as usize >= vocab_size {
                return Err(InputError::TokenOutOfVocab {
                    id,
                    example: i / seq_len,
                    position: i % seq_len,
                    vocab_size,
                });
            }
            if ty as usize >= type_vocab_size {
                return Err(InputError::TokenTypeOutOfRange {
                    id: ty,
                    example: i / seq_len,
                    position: i % seq_len,
                    type_vocab_size,
                });
            }
        }
        let tensor = |values: &[u32]| {
            let values: Vec<i64> = values.iter().map(|&v| i64::from(v)).collect();
            Tensor::<2, Int>::from_data(TensorData::new(values, [batch, seq_len]), device)
        };
        Ok(Self {
            input_ids: tensor(input_ids),
            token_type_ids: tensor(type_ids),
            attention_mask: tensor(attention_mask),
        })
    }

    /// `[batch, seq]`.
    pub fn shape(&self) -> [usize; 2] {
        self.input_ids.dims()
    }
}

/// The bounds [`BertInput::checked`] enforces.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InputLimits {
    pub(crate) vocab_size: usize,
    pub(crate) type_vocab_size: usize,
    /// Longest sequence, special tokens included.
    pub(crate) max_len: usize,
}

/// What a forward pass returns.
#[derive(Debug, Clone)]
pub struct BertOutput {
    /// Hidden state of the last layer, `[batch, seq, hidden]`.
    pub last_hidden_state: Tensor<3>,
    /// The embedding output followed by every layer's output (`num_hidden_layers + 1` tensors),
    /// when asked for with [`BertModel::forward_all`]; empty otherwise.
    pub hidden_states: Vec<Tensor<3>>,
    /// `tanh(dense([CLS]))`, `[batch, hidden]`, when the model has a pooler.
    pub pooler_output: Option<Tensor<2>>,
}

/// LayerNorm with Hugging Face's parameter names (`weight`, `bias`).
#[derive(Module, Debug)]
pub struct LayerNorm {
    /// Scale, `[hidden]`.
    pub weight: Param<Tensor<1>>,
    /// Shift, `[hidden]`.
    pub bias: Param<Tensor<1>>,
    /// Epsilon added to the variance.
    pub eps: f64,
}

impl LayerNorm {
    /// Normalises the last dimension.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        crate::kernels::layer_norm(x, self.weight.val(), self.bias.val(), self.eps)
    }
}

/// Word, position and token-type embeddings, summed and normalised.
#[derive(Module, Debug)]
pub struct BertEmbeddings {
    /// `[vocab_size, hidden]` (int8 values when `word_embeddings_scale` is set).
    pub word_embeddings: Param<Tensor<2>>,
    /// Per-row scale of int8 `word_embeddings`, `[vocab_size]`; `None` for float ones.
    pub word_embeddings_scale: Option<Param<Tensor<1>>>,
    /// `[max_position_embeddings, hidden]`.
    pub position_embeddings: Param<Tensor<2>>,
    /// `[type_vocab_size, hidden]`.
    pub token_type_embeddings: Param<Tensor<2>>,
    /// HF `LayerNorm`.
    pub layer_norm: LayerNorm,
    /// Active only in training on an autodiff device.
    pub dropout: Dropout,
}

impl BertEmbeddings {
    fn hidden_size(&self) -> usize {
        self.word_embeddings.shape().dims::<2>()[1]
    }

    /// The word embedding table as floats, `[vocab_size, hidden]` (int8 tables dequantized).
    pub fn word_embeddings_f32(&self) -> Tensor<2> {
        match &self.word_embeddings_scale {
            None => self.word_embeddings.val(),
            Some(scale) => {
                self.word_embeddings.val().dequantize() * scale.val().unsqueeze_dim::<2>(1)
            }
        }
    }

    /// Embeds `[batch, seq]` ids into `[batch, seq, hidden]`.
    pub fn forward(&self, input_ids: Tensor<2, Int>, token_type_ids: Tensor<2, Int>) -> Tensor<3> {
        let [_, seq_len] = input_ids.dims();
        let device = input_ids.device();
        let words = match &self.word_embeddings_scale {
            None => embedding(self.word_embeddings.val(), input_ids),
            Some(scale) => {
                // Gathers int8 rows (never the whole table) and scales each row.
                let [batch, seq] = input_ids.dims();
                let ids = input_ids.reshape([batch * seq]);
                let rows = self
                    .word_embeddings
                    .val()
                    .select(0, ids.clone())
                    .dequantize();
                let scales = scale.val().select(0, ids).unsqueeze_dim::<2>(1);
                (rows * scales).reshape([batch, seq, self.hidden_size()])
            }
        };
        let types = embedding(self.token_type_embeddings.val(), token_type_ids);
        let positions = Tensor::<1, Int>::arange(0..seq_len as i64, &device).unsqueeze::<2>();
        let positions = embedding(self.position_embeddings.val(), positions);
        let x = words + types + positions;
        crate::kernels::dropout(&self.dropout, self.layer_norm.forward(x))
    }
}

/// Multi-head self-attention (HF `attention.self`).
#[derive(Module, Debug)]
pub struct BertSelfAttention<A: ProjectionAdapter = NoAdapter> {
    /// `query`.
    pub query: Projection<A>,
    /// `key`.
    pub key: Projection<A>,
    /// `value`.
    pub value: Projection<A>,
    /// Dropout on the attention probabilities.
    pub dropout: Dropout,
    /// Number of heads.
    pub num_heads: usize,
}

impl<A: ProjectionAdapter> BertSelfAttention<A> {
    /// `x`: `[batch, seq, hidden]`; `mask`: `[batch, heads, seq, seq]`, true where a query
    /// must not attend (padding keys), as made by [`attention_mask`].
    pub fn forward(&self, x: Tensor<3>, mask: &Tensor<4, Bool>, route: &Route) -> Tensor<3> {
        let [batch, seq_len, hidden] = x.dims();
        let heads = self.num_heads;
        let head_dim = hidden / heads;
        let q = self.query.forward(x.clone(), route);
        let k = self.key.forward(x.clone(), route);
        let v = self.value.forward(x, route);
        #[cfg(feature = "flex")]
        let [q, k, v] = match crate::kernels::attention(q, k, v, mask, heads) {
            Ok(context) => return context,
            Err(qkv) => *qkv,
        };
        #[cfg(feature = "flex")]
        let [q, k, v] =
            match crate::kernels::attention_recorded(q, k, v, mask, heads, &self.dropout) {
                Ok(context) => return context,
                Err(qkv) => *qkv,
            };
        let split = |t: Tensor<3>| t.reshape([batch, seq_len, heads, head_dim]).swap_dims(1, 2);
        let (q, k, v) = (split(q), split(k), split(v));
        let mask = mask.clone();
        let context = if self.dropout_active(&q) {
            // Training. Scaling `q` (head_dim values per row) costs a fraction of scaling the
            // scores (seq_len per row), and an additive mask (Hugging Face's: the float minimum
            // on padding keys) passes the gradient through where `mask_fill` needs a pass.
            // On ndarray (flex took `attention_recorded` above), softmax and dropout are one
            // recorded affine map of the scores (`kernels::attention_probs`).
            let scale = (head_dim as f64).sqrt().recip();
            let scores = (q * scale).matmul(k.swap_dims(2, 3));
            let probs = match crate::kernels::attention_probs(scores, &mask, &self.dropout) {
                Ok(probs) => probs,
                Err(scores) => {
                    let padding = mask.slice([0..batch, 0..1, 0..1, 0..seq_len]).float() * f32::MIN;
                    crate::kernels::dropout(&self.dropout, softmax(*scores + padding, 3))
                }
            };
            probs.matmul(v)
        } else {
            attention(q, k, v, Some(mask), None, AttentionModuleOptions::default())
        };
        context.swap_dims(1, 2).reshape([batch, seq_len, hidden])
    }

    fn dropout_active(&self, x: &Tensor<4>) -> bool {
        self.dropout.prob > 0.0 && self.dropout.training.is_enabled() && x.device().is_autodiff()
    }
}

/// Attention output: dense, dropout, residual, LayerNorm (HF `attention.output`).
#[derive(Module, Debug)]
pub struct BertSelfOutput<A: ProjectionAdapter = NoAdapter> {
    /// `dense`.
    pub dense: Projection<A>,
    /// HF `LayerNorm`.
    pub layer_norm: LayerNorm,
    /// Dropout before the residual.
    pub dropout: Dropout,
}

/// Self-attention plus its output block (HF `attention`).
#[derive(Module, Debug)]
pub struct BertAttention<A: ProjectionAdapter = NoAdapter> {
    /// HF `self`.
    pub self_attention: BertSelfAttention<A>,
    /// HF `output`.
    pub output: BertSelfOutput<A>,
}

/// Feed-forward expansion (HF `intermediate`).
#[derive(Module, Debug)]
pub struct BertIntermediate<A: ProjectionAdapter = NoAdapter> {
    /// `dense`.
    pub dense: Projection<A>,
    /// The activation.
    #[module(skip)]
    pub activation: Activation,
}

/// Feed-forward contraction, residual and LayerNorm (HF `output`).
#[derive(Module, Debug)]
pub struct BertFfnOutput<A: ProjectionAdapter = NoAdapter> {
    /// `dense`.
    pub dense: Projection<A>,
    /// HF `LayerNorm`.
    pub layer_norm: LayerNorm,
    /// Dropout before the residual.
    pub dropout: Dropout,
}

/// One transformer layer (HF `encoder.layer.N`).
#[derive(Module, Debug)]
pub struct BertLayer<A: ProjectionAdapter = NoAdapter> {
    /// HF `attention`.
    pub attention: BertAttention<A>,
    /// HF `intermediate`.
    pub intermediate: BertIntermediate<A>,
    /// HF `output`.
    pub output: BertFfnOutput<A>,
}

impl<A: ProjectionAdapter> BertLayer<A> {
    /// Runs the layer on `[batch, seq, hidden]`.
    /// `mask`: see [`BertSelfAttention::forward`].
    pub fn forward(&self, x: Tensor<3>, mask: &Tensor<4, Bool>, route: &Route) -> Tensor<3> {
        let attn = self
            .attention
            .self_attention
            .forward(x.clone(), mask, route);
        let out = &self.attention.output;
        let h = out
            .layer_norm
            .forward(crate::kernels::dropout(&out.dropout, out.dense.forward(attn, route)) + x);
        let inner = self.intermediate.dense.forward(h.clone(), route);
        let inner = match self.intermediate.activation {
            Activation::Gelu => crate::kernels::gelu(inner),
            Activation::GeluNew => gelu_approximate(inner),
            Activation::Relu => relu(inner),
        };
        let out = &self.output;
        out.layer_norm
            .forward(crate::kernels::dropout(&out.dropout, out.dense.forward(inner, route)) + h)
    }

    fn map_projections<B: ProjectionAdapter>(
        self,
        layer: usize,
        f: &mut impl FnMut(ProjectionSite, Projection<A>) -> Projection<B>,
    ) -> BertLayer<B> {
        let mut at = |kind, p| f(ProjectionSite { layer, kind }, p);
        let BertLayer {
            attention,
            intermediate,
            output,
        } = self;
        let BertAttention {
            self_attention: sa,
            output: so,
        } = attention;
        BertLayer {
            attention: BertAttention {
                self_attention: BertSelfAttention {
                    query: at(ProjectionKind::Query, sa.query),
                    key: at(ProjectionKind::Key, sa.key),
                    value: at(ProjectionKind::Value, sa.value),
                    dropout: sa.dropout,
                    num_heads: sa.num_heads,
                },
                output: BertSelfOutput {
                    dense: at(ProjectionKind::AttentionOutput, so.dense),
                    layer_norm: so.layer_norm,
                    dropout: so.dropout,
                },
            },
            intermediate: BertIntermediate {
                dense: at(ProjectionKind::Intermediate, intermediate.dense),
                activation: intermediate.activation,
            },
            output: BertFfnOutput {
                dense: at(ProjectionKind::Output, output.dense),
                layer_norm: output.layer_norm,
                dropout: output.dropout,
            },
        }
    }

    /// The layer's projections with their kinds, mutably, in forward order.
    pub fn projections_mut(&mut self) -> [(ProjectionKind, &mut Projection<A>); 6] {
        let BertLayer {
            attention,
            intermediate,
            output,
        } = self;
        let BertAttention {
            self_attention,
            output: attention_output,
        } = attention;
        [
            (ProjectionKind::Query, &mut self_attention.query),
            (ProjectionKind::Key, &mut self_attention.key),
            (ProjectionKind::Value, &mut self_attention.value),
            (ProjectionKind::AttentionOutput, &mut attention_output.dense),
            (ProjectionKind::Intermediate, &mut intermediate.dense),
            (ProjectionKind::Output, &mut output.dense),
        ]
    }

    /// The layer's projections with their kinds, in forward order.
    pub fn projections(&self) -> [(ProjectionKind, &Projection<A>); 6] {
        [
            (ProjectionKind::Query, &self.attention.self_attention.query),
            (ProjectionKind::Key, &self.attention.self_attention.key),
            (ProjectionKind::Value, &self.attention.self_attention.value),
            (
                ProjectionKind::AttentionOutput,
                &self.attention.output.dense,
            ),
            (ProjectionKind::Intermediate, &self.intermediate.dense),
            (ProjectionKind::Output, &self.output.dense),
        ]
    }
}

/// The stack of layers (HF `encoder`).
#[derive(Module, Debug)]
pub struct BertEncoder<A: ProjectionAdapter = NoAdapter> {
    /// HF `layer`.
    pub layer: Vec<BertLayer<A>>,
}

/// `tanh(dense(h[CLS]))` (HF `pooler`).
#[derive(Module, Debug)]
pub struct BertPooler<A: ProjectionAdapter = NoAdapter> {
    /// `dense`.
    pub dense: Projection<A>,
}

impl<A: ProjectionAdapter> BertPooler<A> {
    /// Pools `[batch, seq, hidden]` into `[batch, hidden]` from the first token.
    pub fn forward(&self, hidden: Tensor<3>, route: &Route) -> Tensor<2> {
        let [batch, _, width] = hidden.dims();
        let cls = hidden.narrow(1, 0, 1);
        tanh(self.dense.forward(cls, route)).reshape([batch, width])
    }
}

/// A BERT encoder whose projections carry adapters of type `A`.
///
/// Build one with [`BertModel::load`](crate::BertModel::load) from a Hugging Face checkpoint,
/// or with [`BertModel::init`] for fresh weights. Dropout is active only in training mode on
/// an autodiff device; call [`Module::valid`] (or load on a plain device) for inference.
#[derive(Module, Debug)]
pub struct BertModel<A: ProjectionAdapter = NoAdapter> {
    /// HF `embeddings`.
    pub embeddings: BertEmbeddings,
    /// HF `encoder`.
    pub encoder: BertEncoder<A>,
    /// HF `pooler`, present when the checkpoint has its weights.
    pub pooler: Option<BertPooler<A>>,
    /// The configuration the model was built from.
    #[module(skip)]
    pub config: BertConfig,
}

impl BertModel<NoAdapter> {
    /// A model with fresh weights, initialised as Hugging Face does (normal with
    /// `initializer_range`, zero biases, LayerNorm at identity, zero padding embedding).
    pub fn init(config: &BertConfig, with_pooler: bool, device: &Device) -> Self {
        let mut source = RandomInit { config, device };
        let Ok(model) = build(config, with_pooler, &mut source);
        model
    }
}

impl<A: ProjectionAdapter> BertModel<A> {
    /// Runs the encoder; `route` selects the adapter group(s).
    pub fn forward(&self, input: &BertInput, route: &Route) -> Result<BertOutput, InputError> {
        self.run(input, route, false)
    }

    /// Like [`forward`](Self::forward), also returning every layer's hidden state.
    pub fn forward_all(&self, input: &BertInput, route: &Route) -> Result<BertOutput, InputError> {
        self.run(input, route, true)
    }

    fn run(&self, input: &BertInput, route: &Route, all: bool) -> Result<BertOutput, InputError> {
        let [batch, seq_len] = input.shape();
        if batch == 0 || seq_len == 0 {
            return Err(InputError::Empty { batch, seq_len });
        }
        if seq_len > self.config.max_position_embeddings {
            return Err(InputError::TooLong {
                seq_len,
                max: self.config.max_position_embeddings,
            });
        }
        for (name, dims) in [
            ("token_type_ids", input.token_type_ids.dims()),
            ("attention_mask", input.attention_mask.dims()),
        ] {
            if dims != [batch, seq_len] {
                return Err(InputError::Shape(format!(
                    "{name} is {dims:?}, input_ids is {:?}",
                    [batch, seq_len]
                )));
            }
        }
        if let Some(route_len) = route.batch_len()
            && route_len != batch
        {
            return Err(InputError::RouteLength {
                route: route_len,
                batch,
            });
        }
        let route = if route.is_base() { &Route::Base } else { route };
        let mask = attention_mask(&input.attention_mask, self.config.num_attention_heads);
        let mut hidden = self
            .embeddings
            .forward(input.input_ids.clone(), input.token_type_ids.clone());
        let mut hidden_states = Vec::new();
        for layer in &self.encoder.layer {
            if all {
                hidden_states.push(hidden.clone());
            }
            hidden = layer.forward(hidden, &mask, route);
        }
        if all {
            hidden_states.push(hidden.clone());
        }
        let pooler_output = self
            .pooler
            .as_ref()
            .map(|p| p.forward(hidden.clone(), route));
        Ok(BertOutput {
            last_hidden_state: hidden,
            hidden_states,
            pooler_output,
        })
    }

    /// Rebuilds the model with every projection passed through `f`, in layer order and, within
    /// a layer, in [`ProjectionKind::ALL`] order, then the pooler's (if any). Base weights
    /// move; nothing is copied.
    ///
    /// This is how an adapter scheme is installed (or removed: map back to
    /// [`NoAdapter`] with [`Projection::into_parts`]).
    pub fn map_projections<B: ProjectionAdapter>(
        self,
        mut f: impl FnMut(ProjectionSite, Projection<A>) -> Projection<B>,
    ) -> BertModel<B> {
        let pooler_site = self.pooler_site();
        BertModel {
            embeddings: self.embeddings,
            encoder: BertEncoder {
                layer: self
                    .encoder
                    .layer
                    .into_iter()
                    .enumerate()
                    .map(|(i, layer)| layer.map_projections(i, &mut f))
                    .collect(),
            },
            pooler: self.pooler.map(|p| BertPooler {
                dense: f(pooler_site, p.dense),
            }),
            config: self.config,
        }
    }

    /// Every projection with its site, in forward order (the pooler's last).
    pub fn projections(&self) -> impl Iterator<Item = (ProjectionSite, &Projection<A>)> {
        let pooler_site = self.pooler_site();
        self.encoder
            .layer
            .iter()
            .enumerate()
            .flat_map(|(layer, l)| {
                l.projections()
                    .into_iter()
                    .map(move |(kind, p)| (ProjectionSite { layer, kind }, p))
            })
            .chain(self.pooler.iter().map(move |p| (pooler_site, &p.dense)))
    }

    /// Every projection with its site, mutably, in forward order (the pooler's last). Use it to
    /// edit adapters or base weights in place; [`map_projections`](Self::map_projections)
    /// changes the adapter type.
    pub fn projections_mut(
        &mut self,
    ) -> impl Iterator<Item = (ProjectionSite, &mut Projection<A>)> {
        let pooler_site = self.pooler_site();
        self.encoder
            .layer
            .iter_mut()
            .enumerate()
            .flat_map(|(layer, l)| {
                l.projections_mut()
                    .into_iter()
                    .map(move |(kind, p)| (ProjectionSite { layer, kind }, p))
            })
            .chain(
                self.pooler
                    .iter_mut()
                    .map(move |p| (pooler_site, &mut p.dense)),
            )
    }

    /// The site of the pooler's projection (whether or not the model has a pooler).
    pub fn pooler_site(&self) -> ProjectionSite {
        ProjectionSite {
            layer: self.encoder.layer.len(),
            kind: ProjectionKind::Pooler,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &BertConfig {
        &self.config
    }
}

/// The boolean attention mask of a `[batch, seq]` 1/0 padding mask: `[batch, heads, seq, seq]`,
/// true where the key is padding. Built once per forward pass and shared by every layer.
pub fn attention_mask(padding_mask: &Tensor<2, Int>, heads: usize) -> Tensor<4, Bool> {
    let [batch, seq_len] = padding_mask.dims();
    padding_mask
        .clone()
        .equal_elem(0)
        .unsqueeze_dims::<4>(&[1, 2])
        .expand([batch, heads, seq_len, seq_len])
}

/// Mean of the hidden states over real tokens (attention mask 1), `[batch, hidden]`, as
/// sentence-transformers pools: `[CLS]` and `[SEP]` included, padding excluded.
pub fn mean_pool(hidden: Tensor<3>, attention_mask: Tensor<2, Int>) -> Tensor<2> {
    let [batch, _, width] = hidden.dims();
    let mask = attention_mask.float().unsqueeze_dim::<3>(2);
    let summed = (hidden * mask.clone()).sum_dim(1).reshape([batch, width]);
    let counts = mask.sum_dim(1).reshape([batch, 1]).clamp_min(1e-9);
    summed / counts
}

/// Divides each row by its L2 norm (rows of norm 0 stay 0).
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}
