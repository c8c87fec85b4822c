//! Loading MPNet checkpoints: the model built from Hugging Face-named weights.

use std::path::Path;

use burn::nn::DropoutConfig;
use burn::tensor::Device;

use super::{
    MpnetAttention, MpnetConfig, MpnetEmbeddings, MpnetEncoder, MpnetIntermediate, MpnetLayer,
    MpnetModel, MpnetOutputBlock, MpnetPooler, MpnetSelfAttention,
};
use crate::build::{WeightSource, dense, layer_norm, param};
use crate::checkpoint::{CheckpointError, LoadReport, ModelDir, load_checkpoint, read_bytes};

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
}
