//! Builds a [`BertModel`] from a source of weights, so fresh initialisation and checkpoint
//! loading share one description of the model's structure and its Hugging Face names.

use std::convert::Infallible;

use burn::module::Param;
use burn::nn::DropoutConfig;
use burn::tensor::{Device, Distribution, Tensor};

use crate::config::BertConfig;
use crate::model::{
    BertAttention, BertEmbeddings, BertEncoder, BertFfnOutput, BertIntermediate, BertLayer,
    BertModel, BertPooler, BertSelfAttention, BertSelfOutput, LayerNorm,
};
use crate::projection::{Projection, ProjectionKind};

/// Where weights come from while a model is built.
pub(crate) trait WeightSource {
    type Error;

    /// A tensor stored under the Hugging Face `name` with `shape`.
    fn tensor<const D: usize>(
        &mut self,
        name: &str,
        shape: [usize; D],
    ) -> Result<Tensor<D>, Self::Error>;

    /// A linear weight stored under `name` as HF's `[d_out, d_in]`, returned as `[d_in, d_out]`.
    fn linear_weight(
        &mut self,
        name: &str,
        d_in: usize,
        d_out: usize,
    ) -> Result<Tensor<2>, Self::Error>;

    /// When `weight` is stored as int8, its scale stored as `{weight}_{kind}` (`len` values);
    /// `None` for a float weight. See [`crate::quantize`] for the kinds.
    fn int8_scale(
        &mut self,
        _weight: &str,
        _kind: &str,
        _len: usize,
    ) -> Result<Option<Tensor<1>>, Self::Error> {
        Ok(None)
    }
}

/// Hugging Face's initialisation: normal(0, `initializer_range`) weights, zero biases, LayerNorm
/// at identity, a zero embedding for the padding token.
pub(crate) struct RandomInit<'a> {
    pub config: &'a BertConfig,
    pub device: &'a Device,
}

impl WeightSource for RandomInit<'_> {
    type Error = Infallible;

    fn tensor<const D: usize>(
        &mut self,
        name: &str,
        shape: [usize; D],
    ) -> Result<Tensor<D>, Infallible> {
        let device = self.device;
        Ok(if name.ends_with("LayerNorm.weight") {
            Tensor::ones(shape, device)
        } else if name.ends_with(".bias") {
            Tensor::zeros(shape, device)
        } else {
            let t = Tensor::random(
                shape,
                Distribution::Normal(0.0, self.config.initializer_range),
                device,
            );
            if name == "embeddings.word_embeddings.weight" {
                let pad = self.config.pad_token_id as usize;
                let mut ranges = shape.map(|d| 0..d);
                ranges[0] = pad..pad + 1;
                let mut zero_shape = shape;
                zero_shape[0] = 1;
                t.slice_assign(ranges, Tensor::zeros(zero_shape, device))
            } else {
                t
            }
        })
    }

    fn linear_weight(
        &mut self,
        name: &str,
        d_in: usize,
        d_out: usize,
    ) -> Result<Tensor<2>, Infallible> {
        self.tensor(name, [d_in, d_out])
    }
}

pub(crate) fn param<S: WeightSource, const D: usize>(
    source: &mut S,
    name: &str,
    shape: [usize; D],
) -> Result<Param<Tensor<D>>, S::Error> {
    source.tensor(name, shape).map(Param::from_tensor)
}

pub(crate) fn dense<S: WeightSource>(
    source: &mut S,
    name: &str,
    d_in: usize,
    d_out: usize,
) -> Result<Projection, S::Error> {
    let weight_name = format!("{name}.weight");
    let weight = source.linear_weight(&weight_name, d_in, d_out)?;
    let weight_scale = source.int8_scale(&weight_name, "scale", d_out)?;
    let input_scale = source.int8_scale(&weight_name, "input_scale", d_in)?;
    let bias = source.tensor(&format!("{name}.bias"), [d_out])?;
    let mut projection = Projection::new(weight, Some(bias));
    projection.weight_scale = weight_scale.map(Param::from_tensor);
    projection.input_scale = input_scale.map(Param::from_tensor);
    Ok(projection)
}

pub(crate) fn layer_norm<S: WeightSource>(
    source: &mut S,
    module: &str,
    size: usize,
    eps: f64,
) -> Result<LayerNorm, S::Error> {
    Ok(LayerNorm {
        weight: param(source, &format!("{module}.LayerNorm.weight"), [size])?,
        bias: param(source, &format!("{module}.LayerNorm.bias"), [size])?,
        eps,
    })
}

/// The model of `config`, every weight taken from `source` under its Hugging Face name.
pub(crate) fn build<S: WeightSource>(
    config: &BertConfig,
    with_pooler: bool,
    source: &mut S,
) -> Result<BertModel, S::Error> {
    let h = config.hidden_size;
    let ff = config.intermediate_size;
    let eps = config.layer_norm_eps;
    let hidden_dropout = || DropoutConfig::new(config.hidden_dropout_prob).init();

    let embeddings = BertEmbeddings {
        word_embeddings: param(
            source,
            "embeddings.word_embeddings.weight",
            [config.vocab_size, h],
        )?,
        word_embeddings_scale: source
            .int8_scale(
                "embeddings.word_embeddings.weight",
                "scale",
                config.vocab_size,
            )?
            .map(Param::from_tensor),
        position_embeddings: param(
            source,
            "embeddings.position_embeddings.weight",
            [config.max_position_embeddings, h],
        )?,
        token_type_embeddings: param(
            source,
            "embeddings.token_type_embeddings.weight",
            [config.type_vocab_size, h],
        )?,
        layer_norm: layer_norm(source, "embeddings", h, eps)?,
        dropout: hidden_dropout(),
    };
    // Bounded by the config's size check; the cap keeps a huge count from reserving first.
    let mut layers = Vec::with_capacity(config.num_hidden_layers.min(1024));
    for i in 0..config.num_hidden_layers {
        let p = |kind: ProjectionKind| format!("encoder.layer.{i}.{}", kind.hf_name());
        layers.push(BertLayer {
            attention: BertAttention {
                self_attention: BertSelfAttention {
                    query: dense(source, &p(ProjectionKind::Query), h, h)?,
                    key: dense(source, &p(ProjectionKind::Key), h, h)?,
                    value: dense(source, &p(ProjectionKind::Value), h, h)?,
                    dropout: DropoutConfig::new(config.attention_probs_dropout_prob).init(),
                    num_heads: config.num_attention_heads,
                },
                output: BertSelfOutput {
                    dense: dense(source, &p(ProjectionKind::AttentionOutput), h, h)?,
                    layer_norm: layer_norm(
                        source,
                        &format!("encoder.layer.{i}.attention.output"),
                        h,
                        eps,
                    )?,
                    dropout: hidden_dropout(),
                },
            },
            intermediate: BertIntermediate {
                dense: dense(source, &p(ProjectionKind::Intermediate), h, ff)?,
                activation: config.hidden_act,
            },
            output: BertFfnOutput {
                dense: dense(source, &p(ProjectionKind::Output), ff, h)?,
                layer_norm: layer_norm(source, &format!("encoder.layer.{i}.output"), h, eps)?,
                dropout: hidden_dropout(),
            },
        });
    }
    let pooler = if with_pooler {
        Some(BertPooler {
            dense: dense(source, "pooler.dense", h, h)?,
        })
    } else {
        None
    };
    Ok(BertModel {
        embeddings,
        encoder: BertEncoder { layer: layers },
        pooler,
        config: config.clone(),
    })
}
