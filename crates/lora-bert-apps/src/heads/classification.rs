//! The classifier heads: per-token ([`TokenClassificationHead`]) and per-sequence
//! ([`SequenceClassificationHead`]), each dropout then a linear classifier, saved with labels.

use std::path::Path;

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::{Device, Int, Tensor};
use lora_bert_data::LabelVocab;
use lora_bert_encoder::kernels;
use serde::{Deserialize, Serialize};

use super::file::{HeadFile, format_err, load_head, load_labels, save_head, wrong_kind};
use super::{
    CONFIG_FILE, Dense, check_common, check_init_range, check_labels, check_width, default_dropout,
    default_initializer_range,
};
use crate::Result;
use crate::pooling::Pooling;

// What the two heads share: dropout then a linear classifier, saved with labels.

/// A classifier head's configuration, as the shared init, save and load see it.
pub(super) trait ClassifierConfig: Clone + Sized {
    /// The head kind's name in `head_config.json`.
    const KIND: &'static str;
    /// `(hidden_size, num_labels, dropout, initializer_range)`.
    fn parts(&self) -> (usize, usize, f64, f64);
    fn into_file(self) -> HeadFile;
    fn from_file(file: HeadFile) -> std::result::Result<Self, HeadFile>;

    fn validate(&self) -> Result<()> {
        let (hidden, labels, dropout, init_range) = self.parts();
        check_common(hidden, dropout)?;
        check_labels(labels)?;
        check_init_range(init_range)
    }
}

impl ClassifierConfig for TokenClassificationHeadConfig {
    const KIND: &'static str = "token_classification";

    fn parts(&self) -> (usize, usize, f64, f64) {
        let c = self;
        (c.hidden_size, c.num_labels, c.dropout, c.initializer_range)
    }

    fn into_file(self) -> HeadFile {
        HeadFile::TokenClassification(self)
    }

    fn from_file(file: HeadFile) -> std::result::Result<Self, HeadFile> {
        match file {
            HeadFile::TokenClassification(c) => Ok(c),
            other => Err(other),
        }
    }
}

impl ClassifierConfig for SequenceClassificationHeadConfig {
    const KIND: &'static str = "sequence_classification";

    fn parts(&self) -> (usize, usize, f64, f64) {
        let c = self;
        (c.hidden_size, c.num_labels, c.dropout, c.initializer_range)
    }

    fn into_file(self) -> HeadFile {
        HeadFile::SequenceClassification(self)
    }

    fn from_file(file: HeadFile) -> std::result::Result<Self, HeadFile> {
        match file {
            HeadFile::SequenceClassification(c) => Ok(c),
            other => Err(other),
        }
    }
}

/// A fresh head's dropout and classifier, after checking `config`.
fn init_classifier(config: &impl ClassifierConfig, device: &Device) -> Result<(Dropout, Dense)> {
    config.validate()?;
    let (hidden, labels, dropout, init_range) = config.parts();
    Ok((
        DropoutConfig::new(dropout).init(),
        Dense::init(hidden, labels, init_range, device),
    ))
}

fn save_classifier<C: ClassifierConfig>(
    dir: &Path,
    config: &C,
    classifier: &Dense,
    labels: &LabelVocab,
) -> Result<()> {
    let (_, num_labels, _, _) = config.parts();
    save_head(
        dir,
        &config.clone().into_file(),
        classifier.tensors("classifier")?,
        Some((labels, num_labels)),
    )
}

fn load_classifier<C: ClassifierConfig>(
    dir: &Path,
    device: &Device,
) -> Result<(C, Dropout, Dense, LabelVocab)> {
    let (file, mut tensors) = load_head(dir)?;
    let config = C::from_file(file).map_err(|file| wrong_kind(dir, &file, C::KIND))?;
    config
        .validate()
        .map_err(|e| format_err(&dir.join(CONFIG_FILE), e))?;
    let (hidden, num_labels, dropout, _) = config.parts();
    let classifier = Dense::load(&mut tensors, "classifier", hidden, num_labels, device)?;
    tensors.finish()?;
    let labels = load_labels(dir, num_labels)?;
    Ok((
        config,
        DropoutConfig::new(dropout).init(),
        classifier,
        labels,
    ))
}

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

    /// A fresh head on `device`.
    ///
    /// # Errors
    ///
    /// [`AppError::InvalidArgument`](crate::AppError::InvalidArgument) for a zero width or class count, a dropout outside
    /// `[0, 1)` or a negative initializer range.
    pub fn init(&self, device: &Device) -> Result<TokenClassificationHead> {
        let (dropout, classifier) = init_classifier(self, device)?;
        Ok(TokenClassificationHead {
            dropout,
            classifier,
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
    /// [`AppError::Shape`](crate::AppError::Shape) when the hidden width is not the head's.
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
    /// [`AppError::InvalidArgument`](crate::AppError::InvalidArgument) when `labels` does not have `num_labels` labels;
    /// [`AppError::Io`](crate::AppError::Io) or [`AppError::Data`](crate::AppError::Data) when a file cannot be written.
    pub fn save(&self, dir: impl AsRef<Path>, labels: &LabelVocab) -> Result<()> {
        save_classifier(dir.as_ref(), &self.config, &self.classifier, labels)
    }

    /// Loads a head saved by [`save`](Self::save), with its labels.
    ///
    /// # Errors
    ///
    /// [`AppError::Io`](crate::AppError::Io) for a missing or unreadable file; [`AppError::Format`](crate::AppError::Format) for a
    /// malformed config, a config of another kind of head, a corrupt weights file, a missing,
    /// extra or non-finite tensor, or a label count other than `num_labels`;
    /// [`AppError::Shape`](crate::AppError::Shape) naming the tensor whose shape does not fit the config;
    /// [`AppError::Data`](crate::AppError::Data) for a malformed `labels.json`.
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<(Self, LabelVocab)> {
        let (config, dropout, classifier, labels) = load_classifier(dir.as_ref(), device)?;
        let head = Self {
            dropout,
            classifier,
            config,
        };
        Ok((head, labels))
    }
}

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

    /// A fresh head on `device`.
    ///
    /// # Errors
    ///
    /// As [`TokenClassificationHeadConfig::init`].
    pub fn init(&self, device: &Device) -> Result<SequenceClassificationHead> {
        let (dropout, classifier) = init_classifier(self, device)?;
        Ok(SequenceClassificationHead {
            dropout,
            classifier,
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
    /// [`AppError::Shape`](crate::AppError::Shape) when the hidden width is not the head's or the mask does not fit.
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
        save_classifier(dir.as_ref(), &self.config, &self.classifier, labels)
    }

    /// Loads a head saved by [`save`](Self::save), with its labels.
    ///
    /// # Errors
    ///
    /// As [`TokenClassificationHead::load`].
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<(Self, LabelVocab)> {
        let (config, dropout, classifier, labels) = load_classifier(dir.as_ref(), device)?;
        let head = Self {
            dropout,
            classifier,
            config,
        };
        Ok((head, labels))
    }
}
