//! The layers of an MPNet encoder, named as in transformers' `modeling_mpnet.py`.

use burn::module::{Module, Param};
use burn::nn::Dropout;
use burn::tensor::activation::{gelu_approximate, relu, softmax, tanh};
use burn::tensor::module::{attention, embedding};
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Int, Tensor};

use super::position_ids;
use crate::config::Activation;
use crate::model::LayerNorm;
use crate::projection::Projection;

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
    ///
    /// [`MpnetModel::attention_bias`]: super::MpnetModel::attention_bias
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
