//! MPNet's hyper-parameters: Hugging Face's `MPNetConfig`, read and validated.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{NUM_BUCKETS, PADDING_IDX};
use crate::config::{Activation, ConfigError};

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
}
