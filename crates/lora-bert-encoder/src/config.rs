//! The BERT configuration, read from a Hugging Face `config.json`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Errors raised while reading or validating a [`BertConfig`].
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid JSON, or a field has the wrong type.
    #[error("{path}: invalid config.json at line {line}, column {column}: {message}")]
    Json {
        /// The file (`<memory>` when parsed from a string).
        path: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What serde reported.
        message: String,
    },
    /// A field holds a value this encoder does not support or that is inconsistent.
    #[error("{path}: field `{field}`: {message}")]
    Invalid {
        /// The file (`<memory>` when parsed from a string).
        path: PathBuf,
        /// The offending field.
        field: &'static str,
        /// Why it was rejected.
        message: String,
    },
}

/// The activation of the feed-forward block (`hidden_act`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// Exact GELU with the error function (`"gelu"`).
    Gelu,
    /// The tanh approximation of GELU (`"gelu_new"`, also written `"gelu_pytorch_tanh"`).
    #[serde(alias = "gelu_pytorch_tanh")]
    GeluNew,
    /// `max(0, x)` (`"relu"`).
    Relu,
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Activation::Gelu => "gelu",
            Activation::GeluNew => "gelu_new",
            Activation::Relu => "relu",
        })
    }
}

/// Hyper-parameters of a BERT encoder, field for field as in Hugging Face's `BertConfig`.
///
/// Unknown fields of `config.json` (`architectures`, `transformers_version`, ...) are ignored;
/// fields this encoder cannot honour (another `position_embedding_type`, an unsupported
/// `hidden_act`, heads that do not divide the hidden size) are rejected by [`validate`](Self::validate).
///
/// ```
/// use lora_bert_encoder::BertConfig;
///
/// let config = BertConfig::from_json_str(
///     r#"{"vocab_size": 30522, "hidden_size": 384, "num_hidden_layers": 6,
///         "num_attention_heads": 12, "intermediate_size": 1536}"#,
/// )?;
/// assert_eq!(config.head_dim(), 32);
/// assert_eq!(config.max_position_embeddings, 512);
/// # Ok::<(), lora_bert_encoder::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    /// Size of the word-piece vocabulary.
    pub vocab_size: usize,
    /// Width of every hidden state.
    pub hidden_size: usize,
    /// Number of transformer layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer; must divide `hidden_size`.
    pub num_attention_heads: usize,
    /// Width of the feed-forward block.
    pub intermediate_size: usize,
    /// Activation of the feed-forward block.
    #[serde(default = "default_act")]
    pub hidden_act: Activation,
    /// Dropout on embeddings and on each sub-layer output (training only).
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f64,
    /// Dropout on attention probabilities (training only).
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f64,
    /// Longest input in tokens, special tokens included.
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    /// Number of segment (token type) ids.
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    /// Standard deviation of the normal initialisation of fresh weights (finite, at least 0).
    #[serde(default = "default_init_range")]
    pub initializer_range: f64,
    /// Epsilon of every LayerNorm.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Id of the padding token.
    #[serde(default)]
    pub pad_token_id: u32,
    /// Only `"absolute"` is supported.
    #[serde(default = "default_position_type")]
    pub position_embedding_type: String,
    /// `model_type` as written in the file, if any (`"bert"` for BERT checkpoints).
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
fn default_type_vocab() -> usize {
    2
}
fn default_init_range() -> f64 {
    0.02
}
fn default_eps() -> f64 {
    1e-12
}
fn default_position_type() -> String {
    "absolute".to_owned()
}

const IN_MEMORY: &str = "<memory>";

/// The largest encoder a config may describe, in parameters (2³², 16 GiB in f32): far above
/// any BERT-family encoder (BERT-large has 0.34 billion), low enough that a config.json with
/// absurd sizes is refused before anything is allocated.
pub const MAX_PARAMETERS: u128 = 1 << 32;

/// Refuses a transformer encoder whose parameter count (embedding tables of `rows` × `hidden`,
/// `layers` blocks of attention and feed-forward) exceeds [`MAX_PARAMETERS`], computed without
/// overflow.
pub(crate) fn check_size(
    path: &Path,
    rows: &[(&'static str, usize)],
    hidden: usize,
    intermediate: usize,
    layers: usize,
) -> Result<(), ConfigError> {
    // Saturating: sizes near usize::MAX must not wrap (u128 holds any usize product once).
    let (h, ff) = (hidden as u128, intermediate as u128);
    let embeddings = rows
        .iter()
        .fold(0u128, |sum, &(_, r)| sum.saturating_add(r as u128 * h));
    let per_layer = (h * h + h)
        .saturating_mul(4)
        .saturating_add((h * ff).saturating_mul(2))
        .saturating_add(ff)
        .saturating_add(h.saturating_mul(5));
    let layers_total = (layers as u128).saturating_mul(per_layer);
    let total = embeddings.saturating_add(layers_total);
    if total <= MAX_PARAMETERS {
        return Ok(());
    }
    let (field, size) = if layers_total >= embeddings {
        ("num_hidden_layers", layers)
    } else {
        rows.iter()
            .copied()
            .max_by_key(|&(_, r)| r)
            .unwrap_or(("hidden_size", hidden))
    };
    Err(ConfigError::Invalid {
        path: path.to_owned(),
        field,
        message: format!(
            "{size} makes a model of {total} parameters (hidden_size {hidden}, \
             intermediate_size {intermediate}, {layers} layers), more than the {MAX_PARAMETERS} \
             this library loads"
        ),
    })
}

impl BertConfig {
    /// A configuration with BERT's defaults for everything but the sizes.
    pub fn new(
        vocab_size: usize,
        hidden_size: usize,
        num_hidden_layers: usize,
        num_attention_heads: usize,
        intermediate_size: usize,
    ) -> Self {
        Self {
            vocab_size,
            hidden_size,
            num_hidden_layers,
            num_attention_heads,
            intermediate_size,
            hidden_act: default_act(),
            hidden_dropout_prob: default_dropout(),
            attention_probs_dropout_prob: default_dropout(),
            max_position_embeddings: default_max_positions(),
            type_vocab_size: default_type_vocab(),
            initializer_range: default_init_range(),
            layer_norm_eps: default_eps(),
            pad_token_id: 0,
            position_embedding_type: default_position_type(),
            model_type: Some("bert".to_owned()),
        }
    }

    /// Reads and validates a Hugging Face `config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates the JSON text of a `config.json`.
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

    /// Checks that this encoder can run the configuration.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_at(Path::new(IN_MEMORY))
    }

    fn validate_at(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |field: &'static str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            field,
            message,
        };
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ];
        for (field, value) in positive {
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
        if self.position_embedding_type != "absolute" {
            return Err(invalid(
                "position_embedding_type",
                format!(
                    "`{}` is not supported (only `absolute`)",
                    self.position_embedding_type
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
        if self.pad_token_id as usize >= self.vocab_size {
            return Err(invalid(
                "pad_token_id",
                format!(
                    "{} is outside the vocabulary of {}",
                    self.pad_token_id, self.vocab_size
                ),
            ));
        }
        if let Some(model_type) = &self.model_type
            && model_type != "bert"
        {
            return Err(invalid(
                "model_type",
                format!("`{model_type}` is not a BERT model"),
            ));
        }
        check_size(
            path,
            &[
                ("vocab_size", self.vocab_size),
                ("max_position_embeddings", self.max_position_embeddings),
                ("type_vocab_size", self.type_vocab_size),
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

    /// Writes the configuration as `config.json` text.
    pub fn to_json_string(&self) -> String {
        serde_json::to_string_pretty(self).expect("BertConfig serialises to JSON")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINILM: &str = r#"{
      "_name_or_path": "nreimers/MiniLM-L6-H384-uncased",
      "architectures": ["BertModel"],
      "attention_probs_dropout_prob": 0.1,
      "gradient_checkpointing": false,
      "hidden_act": "gelu",
      "hidden_dropout_prob": 0.1,
      "hidden_size": 384,
      "initializer_range": 0.02,
      "intermediate_size": 1536,
      "layer_norm_eps": 1e-12,
      "max_position_embeddings": 512,
      "model_type": "bert",
      "num_attention_heads": 12,
      "num_hidden_layers": 6,
      "pad_token_id": 0,
      "position_embedding_type": "absolute",
      "transformers_version": "4.8.2",
      "type_vocab_size": 2,
      "use_cache": true,
      "vocab_size": 30522
    }"#;

    #[test]
    fn parses_minilm_config() {
        let c = BertConfig::from_json_str(MINILM).unwrap();
        assert_eq!(c.hidden_size, 384);
        assert_eq!(c.num_hidden_layers, 6);
        assert_eq!(c.hidden_act, Activation::Gelu);
        assert_eq!(c.head_dim(), 32);
        assert_eq!(c.layer_norm_eps, 1e-12);
    }

    #[test]
    fn round_trips_through_json() {
        let c = BertConfig::from_json_str(MINILM).unwrap();
        let again = BertConfig::from_json_str(&c.to_json_string()).unwrap();
        assert_eq!(c, again);
    }

    fn field_of(err: ConfigError) -> &'static str {
        match err {
            ConfigError::Invalid { field, .. } => field,
            other => panic!("expected Invalid, got {other}"),
        }
    }

    #[test]
    fn rejects_heads_that_do_not_divide_hidden() {
        let json = MINILM.replace("\"num_attention_heads\": 12", "\"num_attention_heads\": 7");
        let err = BertConfig::from_json_str(&json).unwrap_err();
        assert!(err.to_string().contains("not divisible"), "{err}");
        assert_eq!(field_of(err), "num_attention_heads");
    }

    #[test]
    fn rejects_unsupported_activation_with_position() {
        let json = MINILM.replace("\"hidden_act\": \"gelu\"", "\"hidden_act\": \"swish\"");
        match BertConfig::from_json_str(&json).unwrap_err() {
            ConfigError::Json { line, message, .. } => {
                assert_eq!(line, 6);
                assert!(message.contains("swish"), "{message}");
            }
            other => panic!("expected Json error, got {other}"),
        }
    }

    #[test]
    fn accepts_gelu_new_and_relu() {
        for (name, act) in [
            ("gelu_new", Activation::GeluNew),
            ("gelu_pytorch_tanh", Activation::GeluNew),
            ("relu", Activation::Relu),
        ] {
            let json = MINILM.replace("\"gelu\"", &format!("\"{name}\""));
            assert_eq!(BertConfig::from_json_str(&json).unwrap().hidden_act, act);
        }
    }

    #[test]
    fn rejects_relative_positions() {
        let json = MINILM.replace("\"absolute\"", "\"relative_key\"");
        assert_eq!(
            field_of(BertConfig::from_json_str(&json).unwrap_err()),
            "position_embedding_type"
        );
    }

    #[test]
    fn rejects_wrong_types_and_missing_sizes() {
        let json = MINILM.replace("\"hidden_size\": 384", "\"hidden_size\": \"384\"");
        assert!(matches!(
            BertConfig::from_json_str(&json).unwrap_err(),
            ConfigError::Json { .. }
        ));
        let json = MINILM.replace("\"vocab_size\": 30522", "\"vocab\": 30522");
        let err = BertConfig::from_json_str(&json).unwrap_err();
        assert!(err.to_string().contains("vocab_size"), "{err}");
    }

    #[test]
    fn rejects_other_model_types_and_bad_numbers() {
        let json = MINILM.replace("\"model_type\": \"bert\"", "\"model_type\": \"mpnet\"");
        assert_eq!(
            field_of(BertConfig::from_json_str(&json).unwrap_err()),
            "model_type"
        );
        let json = MINILM.replace(
            "\"hidden_dropout_prob\": 0.1",
            "\"hidden_dropout_prob\": 1.5",
        );
        assert_eq!(
            field_of(BertConfig::from_json_str(&json).unwrap_err()),
            "hidden_dropout_prob"
        );
        let json = MINILM.replace("\"num_hidden_layers\": 6", "\"num_hidden_layers\": -1");
        assert!(BertConfig::from_json_str(&json).is_err());
    }

    #[test]
    fn io_error_names_the_file() {
        let err = BertConfig::from_file("/nonexistent/config.json").unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/config.json"),
            "{err}"
        );
    }
}
