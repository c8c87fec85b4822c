//! Downstream fine-tuning (loop (a) of the method): a task head on an [`AdaptedModel`], trained
//! with [`Trainer::fit`] in one of three [`FineTuneMode`]s, evaluated on a dev set, and saved
//! as a small *app* directory.
//!
//! # What trains
//!
//! | mode | backbone | the task's group | head |
//! |---|---|---|---|
//! | [`FineTuneMode::HeadOnly`] | frozen | frozen (only with `init_group`) | trained |
//! | [`FineTuneMode::LoraHead`] | frozen | trained | trained |
//! | [`FineTuneMode::Full`] | trained | trained (only with `init_group`) | trained |
//!
//! **The task's group** is a LoRA group named after the task ([`AppSetup::task`]). With
//! [`AppSetup::init_group`] set (downstream fine-tuning after pre-finetuning "starts from the
//! backbone + the task's family group"), the family group (`"ner"`, `"tc"`) is **copied** under
//! the task's name, weights and configuration as they are, and the task routes through the
//! copy in every mode; the family group itself is never routed and stays exactly as it was, so
//! one pre-finetuned model serves many apps. Without `init_group`, `LoraHead` adds a fresh
//! group with [`AppSetup::lora`] (default [`default_lora`]: `r = 8`, `lora_alpha = 16`, no
//! dropout, on `query` and `value` of every layer), and the other two modes route through the
//! plain backbone ([`Route::Base`]) with no group.
//!
//! Every other group of the model is left alone: it is not routed, receives no gradient and
//! keeps its weights bit for bit (its trainable flag is not touched).
//!
//! # Batches, loss, evaluation
//!
//! Training batches are index lists from a [`BatchPlan`] (shuffled with
//! [`FineTuneConfig::seed`], optionally length-bucketed), epoch after epoch without end; the
//! trainer stops at `max_steps` (or early). The loss is [`token_cross_entropy`] (labels
//! [`IGNORE_INDEX`](lora_bert_data::align::IGNORE_INDEX) ignored) for tokens and
//! [`cross_entropy`] for texts. The dev metric is the entity micro-F1 of seqeval's default
//! mode ([`entity_report`]: BILOU's `L-`/`U-` read as `E-`/`S-`) on **word-level** tags for
//! tokens, read from the logits through the path serving uses
//! ([`TokenDecoder`](lora_bert_apps::TokenDecoder): each word's tag read from its pieces with
//! [`Aggregation`], by default the first piece; windows of long sentences stitched; a word
//! with no token tagged `O`), and accuracy or
//! macro-F1 ([`TextMetric`], [`ClassificationReport`]) for texts.
//!
//! # App directories
//!
//! [`TokenClassifier::save`] / [`TextClassifier::save`] write into one directory:
//!
//! * `app.json`: the kind of app, its task, mode, group name (if any) and whether the backbone
//!   is saved;
//! * `adapter_config.json`, `adapter_model.safetensors`: the task's group in PEFT's layout
//!   (when the app has a group), loadable by Python PEFT;
//! * `head_config.json`, `head.safetensors`, `labels.json`: the head and its labels
//!   ([`heads`](crate::heads));
//! * `backbone/config.json`, `backbone/model.safetensors`: the backbone as Hugging Face
//!   safetensors, only for [`FineTuneMode::Full`] (the other modes leave it untouched, so the
//!   app is a few hundred kilobytes and loads onto the same base backbone).
//!
//! `app.json` is written last: a directory that has it has the other files.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use lora_bert_adapters::{AdaptedModel, Adapter, Layers, Lora, LoraConfig, Targets};
use lora_bert_apps::TokenDecoder;
pub use lora_bert_apps::manifest::{
    APP_FILE, AppInfo, AppKind, AppManifest, BACKBONE_DIR, FineTuneMode, WordDecoding, read_app,
    write_app,
};
use lora_bert_data::align::{Aggregation, LabelAlignment};
use lora_bert_data::batch::{BatchConfig, BatchPlan, EncodedRows, EncodedTexts};
use lora_bert_data::token::{TokenBatch, TokenExample};
use lora_bert_data::{LabelVocab, TaggedSentence};
use lora_bert_encoder::{BertInput, BertModel, Route};
use lora_bert_metrics::{ClassificationReport, NerReport};
use serde::{Deserialize, Serialize};

use crate::error::io_err;
use crate::heads::{
    SequenceClassificationHead, SequenceClassificationHeadConfig, TokenClassificationHead,
    TokenClassificationHeadConfig,
};
use crate::input::{ToBertInput, class_labels, token_labels};
use crate::loss::{CrossEntropy, cross_entropy, token_cross_entropy};
use crate::pooling::Pooling;
use crate::{FitReport, Result, TrainConfig, TrainError, Trainer};

/// The LoRA group [`FineTuneMode::LoraHead`] adds when none is given: `r = 8`,
/// `lora_alpha = 16` (scaling 2), no dropout, on `query` and `value` of every layer.
pub fn default_lora() -> LoraConfig {
    LoraConfig::new(8, Targets::new(["query", "value"]).layers(Layers::All)).alpha(16.0)
}

/// How an app sits on a model: its task name, mode and group. `C` is the configuration of the
/// group [`FineTuneMode::LoraHead`] adds: a [`LoraConfig`] unless
/// [`with_adapter`](Self::with_adapter) names another scheme's (an
/// [`Ia3Config`](lora_bert_adapters::Ia3Config), say).
#[derive(Debug, Clone, PartialEq)]
pub struct AppSetup<C = LoraConfig> {
    /// The task's name: the name of its group (when it has one) and of the app.
    pub task: String,
    /// What trains.
    pub mode: FineTuneMode,
    /// The group [`FineTuneMode::LoraHead`] adds when `init_group` is `None` (default
    /// [`default_lora`]).
    pub adapter: C,
    /// A (pre-finetuned family) group of the model whose copy, under the task's name, the
    /// task starts from (see the [module docs](self)).
    pub init_group: Option<String>,
}

impl AppSetup {
    /// Task `task` in `mode`, with [`default_lora`] and no initial group.
    pub fn new(task: impl Into<String>, mode: FineTuneMode) -> Self {
        Self {
            task: task.into(),
            mode,
            adapter: default_lora(),
            init_group: None,
        }
    }

    /// Sets the LoRA group [`FineTuneMode::LoraHead`] adds.
    pub fn with_lora(mut self, lora: LoraConfig) -> Self {
        self.adapter = lora;
        self
    }
}

impl<C> AppSetup<C> {
    /// The same setup with `adapter`, a group of any scheme, as the group
    /// [`FineTuneMode::LoraHead`] adds; the model it sets up must be of that scheme.
    pub fn with_adapter<D>(self, adapter: D) -> AppSetup<D> {
        AppSetup {
            task: self.task,
            mode: self.mode,
            adapter,
            init_group: self.init_group,
        }
    }

    /// Starts the task from a copy of group `group`.
    pub fn with_init_group(mut self, group: impl Into<String>) -> Self {
        self.init_group = Some(group.into());
        self
    }
}

/// The dev metric of text classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextMetric {
    /// Fraction of texts classified right.
    #[default]
    Accuracy,
    /// Unweighted mean of the per-class F1 scores (scikit-learn's `f1_score(average="macro")`).
    MacroF1,
}

/// The dev metric of token classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenMetric {
    /// Entity-level micro-F1 (seqeval's default mode), for entity tags (NER, chunking).
    #[default]
    EntityF1,
    /// Fraction of words tagged right, for tags without entity structure (part of speech).
    Accuracy,
}

/// Everything [`finetune_tokens`] and [`finetune_texts`] need besides the model and data.
#[derive(Debug, Clone, PartialEq)]
pub struct FineTuneConfig<C = LoraConfig> {
    /// Task, mode and group.
    pub app: AppSetup<C>,
    /// The training loop's hyper-parameters.
    pub train: TrainConfig,
    /// Training examples per batch (default 16).
    pub batch_size: usize,
    /// Examples per batch when predicting (default 64).
    pub eval_batch_size: usize,
    /// Seed of the batch shuffles and of the new head's and group's initial values
    /// (default 0).
    pub seed: u64,
    /// Length bucketing of the training batches, batches per bucket (default `None`).
    pub bucket: Option<usize>,
    /// The loss's options (default: ignore `-100`, no label smoothing).
    pub cross_entropy: CrossEntropy,
    /// Dropout of the head (default 0.1).
    pub head_dropout: f64,
    /// Pooling of the text head (default mean).
    pub pooling: Pooling,
    /// How word tags are read from piece predictions (default first piece).
    pub aggregation: Aggregation,
    /// How the examples' labels were aligned ([`encode_tagged`]'s choice; only matters for
    /// [`Aggregation::Majority`] and [`Aggregation::Average`]; default first sub-word).
    ///
    /// [`encode_tagged`]: lora_bert_data::token::encode_tagged
    pub alignment: LabelAlignment,
    /// The dev metric of text classification (default accuracy).
    pub text_metric: TextMetric,
    /// The dev metric of token classification (default entity micro-F1).
    pub token_metric: TokenMetric,
    /// Keep checkpoints (and resume) in this folder (default `None`).
    pub checkpoints: Option<PathBuf>,
    /// Data-parallel devices ([`Trainer::with_devices`]); empty (default): the model's own.
    pub devices: Vec<Device>,
}

impl<C> FineTuneConfig<C> {
    /// Fine-tunes `app` with `train` and the defaults.
    pub fn new(app: AppSetup<C>, train: TrainConfig) -> Self {
        Self {
            app,
            train,
            batch_size: 16,
            eval_batch_size: 64,
            seed: 0,
            bucket: None,
            cross_entropy: CrossEntropy::default(),
            head_dropout: 0.1,
            pooling: Pooling::default(),
            aggregation: Aggregation::First,
            alignment: LabelAlignment::FirstSubword,
            text_metric: TextMetric::Accuracy,
            token_metric: TokenMetric::EntityF1,
            checkpoints: None,
            devices: Vec::new(),
        }
    }

    fn trainer(&self) -> Trainer {
        let trainer = Trainer::new(self.train.clone()).with_devices(self.devices.clone());
        match &self.checkpoints {
            Some(dir) => trainer.with_checkpoints(dir),
            None => trainer,
        }
    }

    fn token_options(&self, pad_id: u32) -> TokenEvalOptions {
        TokenEvalOptions {
            batch_size: self.eval_batch_size,
            pad_id,
            aggregation: self.aggregation,
            alignment: self.alignment,
        }
    }

    /// An endless sequence of training batches: the epochs of a plan over `lengths`.
    fn batches(&self, lengths: Vec<usize>) -> Result<impl Iterator<Item = Vec<usize>> + use<C>> {
        let mut batch = BatchConfig::new(self.batch_size).shuffled(self.seed);
        batch.bucket = self.bucket;
        let plan = BatchPlan::new(lengths, batch)?;
        Ok((0u64..).flat_map(move |e| plan.epoch(e)))
    }
}

// ---------------------------------------------------------------------------------------------
// Setting the model up

/// Sets `model` up for `setup` (see the [module docs](self)): adds or copies the task's group
/// and freezes what the mode does not train.
fn prepare<S: Adapter>(
    mut model: AdaptedModel<S>,
    setup: &AppSetup<S::Config>,
) -> Result<(AdaptedModel<S>, AppInfo)> {
    if setup.task.is_empty() {
        return Err(TrainError::InvalidArgument {
            what: "task",
            message: "the task needs a name".into(),
        });
    }
    if let Some(merged) = model.merged() {
        return Err(TrainError::InvalidArgument {
            what: "model",
            message: format!("group `{merged}` is merged into the backbone; unmerge it first"),
        });
    }
    let task = setup.task.as_str();
    let group = match (&setup.init_group, setup.mode) {
        (Some(family), mode) => {
            model.copy_group(family, task)?;
            model.set_group_trainable(task, mode != FineTuneMode::HeadOnly)?;
            Some(task.to_owned())
        }
        (None, FineTuneMode::LoraHead) => {
            model.add_group(task, setup.adapter.clone())?;
            Some(task.to_owned())
        }
        (None, _) => None,
    };
    let model = model.with_backbone_trainable(setup.mode == FineTuneMode::Full);
    Ok((model, AppInfo::new(task, setup.mode, group)))
}

fn route_of<S: Adapter>(model: &AdaptedModel<S>, app: &AppInfo) -> Result<Route> {
    Ok(match &app.group {
        Some(g) => model.route(g)?,
        None => Route::Base,
    })
}

// ---------------------------------------------------------------------------------------------
// Models

/// Token classification (NER, POS): the adapted encoder and a [`TokenClassificationHead`].
#[derive(Module, Debug)]
pub struct TokenClassifier<S: Adapter = Lora> {
    /// The encoder with its groups.
    pub model: AdaptedModel<S>,
    /// The head.
    pub head: TokenClassificationHead,
    /// The app's task, mode and group.
    #[module(skip)]
    pub app: AppInfo,
}

impl<S: Adapter> TokenClassifier<S> {
    /// Sets `model` up for `setup` (adding or copying the task's group, freezing what the mode
    /// does not train) and puts a fresh head from `head` on it.
    ///
    /// # Errors
    ///
    /// [`TrainError::Adapter`] for an unknown `init_group` or a task name a group already
    /// has; [`TrainError::Shape`] when the head's width is not the model's hidden size;
    /// [`TrainError::InvalidArgument`] for an empty task name, a merged model or a bad head
    /// configuration.
    pub fn new(
        model: AdaptedModel<S>,
        setup: &AppSetup<S::Config>,
        head: &TokenClassificationHeadConfig,
    ) -> Result<Self> {
        check_hidden(&model, head.hidden_size)?;
        let head = head.init(&model.device())?;
        let (model, app) = prepare(model, setup)?;
        Ok(Self { model, head, app })
    }

    /// The route of the app: its group, or [`Route::Base`].
    ///
    /// # Errors
    ///
    /// [`TrainError::Adapter`] when the group was removed.
    pub fn route(&self) -> Result<Route> {
        route_of(&self.model, &self.app)
    }

    /// Logits `[B, S, num_labels]` of `input` run through `route`.
    ///
    /// # Errors
    ///
    /// [`TrainError::Adapter`] for a route to an unknown group or a bad input.
    pub fn forward(&self, input: &BertInput, route: &Route) -> Result<Tensor<3>> {
        let out = self.model.forward(input, route)?;
        Ok(self.head.forward(out.last_hidden_state)?)
    }

    /// Saves the app into `dir` (see the [module docs](self)).
    ///
    /// # Errors
    ///
    /// [`TrainError::InvalidArgument`] when `labels` does not fit the head;
    /// [`TrainError::Adapter`], [`TrainError::Io`] or [`TrainError::Format`] when a file
    /// cannot be written.
    pub fn save(&self, dir: impl AsRef<Path>, labels: &LabelVocab) -> Result<()> {
        let dir = dir.as_ref();
        save_parts(dir, &self.model, &self.app, || {
            Ok(self.head.save(dir, labels)?)
        })?;
        Ok(write_app(dir, AppKind::TokenClassification, &self.app)?)
    }

    /// Loads an app saved by [`save`](Self::save) onto `model`, the base model the app was
    /// trained from (a [`FineTuneMode::Full`] app brings its backbone: `model` then only
    /// gives the device, and its groups are dropped). `model` must not hold a group of the
    /// app's name.
    ///
    /// # Errors
    ///
    /// [`TrainError::Io`] or [`TrainError::Format`] for a missing or malformed file or an app
    /// of another kind; errors of [`AdaptedModel::load_group`] and
    /// [`TokenClassificationHead::load`].
    pub fn load(dir: impl AsRef<Path>, model: AdaptedModel<S>) -> Result<(Self, LabelVocab)> {
        let dir = dir.as_ref();
        let (app, model) = load_parts(dir, model, AppKind::TokenClassification)?;
        let (head, labels) = TokenClassificationHead::load(dir, &model.device())?;
        check_hidden(&model, head.config().hidden_size)?;
        Ok((Self { model, head, app }, labels))
    }
}

/// Text classification: the adapted encoder and a [`SequenceClassificationHead`].
#[derive(Module, Debug)]
pub struct TextClassifier<S: Adapter = Lora> {
    /// The encoder with its groups.
    pub model: AdaptedModel<S>,
    /// The head.
    pub head: SequenceClassificationHead,
    /// The app's task, mode and group.
    #[module(skip)]
    pub app: AppInfo,
}

impl<S: Adapter> TextClassifier<S> {
    /// Sets `model` up for `setup` and puts a fresh head from `head` on it; see
    /// [`TokenClassifier::new`].
    ///
    /// # Errors
    ///
    /// As [`TokenClassifier::new`].
    pub fn new(
        model: AdaptedModel<S>,
        setup: &AppSetup<S::Config>,
        head: &SequenceClassificationHeadConfig,
    ) -> Result<Self> {
        check_hidden(&model, head.hidden_size)?;
        let head = head.init(&model.device())?;
        let (model, app) = prepare(model, setup)?;
        Ok(Self { model, head, app })
    }

    /// The route of the app: its group, or [`Route::Base`].
    ///
    /// # Errors
    ///
    /// [`TrainError::Adapter`] when the group was removed.
    pub fn route(&self) -> Result<Route> {
        route_of(&self.model, &self.app)
    }

    /// Logits `[B, num_labels]` of `input` run through `route`.
    ///
    /// # Errors
    ///
    /// [`TrainError::Adapter`] for a route to an unknown group or a bad input.
    pub fn forward(&self, input: &BertInput, route: &Route) -> Result<Tensor<2>> {
        let out = self.model.forward(input, route)?;
        Ok(self
            .head
            .forward(out.last_hidden_state, input.attention_mask.clone())?)
    }

    /// Saves the app into `dir`; see [`TokenClassifier::save`].
    ///
    /// # Errors
    ///
    /// As [`TokenClassifier::save`].
    pub fn save(&self, dir: impl AsRef<Path>, labels: &LabelVocab) -> Result<()> {
        let dir = dir.as_ref();
        save_parts(dir, &self.model, &self.app, || {
            Ok(self.head.save(dir, labels)?)
        })?;
        Ok(write_app(dir, AppKind::SequenceClassification, &self.app)?)
    }

    /// Loads an app saved by [`save`](Self::save); see [`TokenClassifier::load`].
    ///
    /// # Errors
    ///
    /// As [`TokenClassifier::load`].
    pub fn load(dir: impl AsRef<Path>, model: AdaptedModel<S>) -> Result<(Self, LabelVocab)> {
        let dir = dir.as_ref();
        let (app, model) = load_parts(dir, model, AppKind::SequenceClassification)?;
        let (head, labels) = SequenceClassificationHead::load(dir, &model.device())?;
        check_hidden(&model, head.config().hidden_size)?;
        Ok((Self { model, head, app }, labels))
    }
}

fn check_hidden<S: Adapter>(model: &AdaptedModel<S>, head_width: usize) -> Result<()> {
    let hidden = model.config().hidden_size;
    if head_width != hidden {
        return Err(TrainError::Shape {
            what: "head width vs the encoder's hidden size".into(),
            expected: vec![hidden],
            found: vec![head_width],
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// App files

fn save_parts<S: Adapter>(
    dir: &Path,
    model: &AdaptedModel<S>,
    app: &AppInfo,
    save_head: impl FnOnce() -> Result<()>,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    if let Some(group) = &app.group {
        model.save_group(group, dir)?;
    }
    if app.mode == FineTuneMode::Full {
        let path = dir.join(BACKBONE_DIR);
        model
            .model
            .save(&path)
            .map_err(|e| format_error(&path, e))?;
    }
    save_head()
}

fn load_parts<S: Adapter>(
    dir: &Path,
    model: AdaptedModel<S>,
    kind: AppKind,
) -> Result<(AppInfo, AdaptedModel<S>)> {
    let file = read_app(dir)?;
    if file.kind != kind {
        return Err(TrainError::Format {
            path: dir.join(APP_FILE),
            message: format!("holds a {:?} app, not a {kind:?} app", file.kind),
        });
    }
    let mut model = if file.backbone {
        let backbone_dir = dir.join(BACKBONE_DIR);
        let (backbone, _) = BertModel::load(&backbone_dir, &model.device())
            .map_err(|e| format_error(&backbone_dir, e))?;
        AdaptedModel::new(backbone)
    } else {
        model
    };
    if let Some(group) = &file.app.group {
        model.load_group(group, dir)?;
    }
    Ok((file.app, model))
}

fn format_error(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Format {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// A tensor's values read back to the host as `f32`; `what` names it in the error.
pub(crate) fn host_values<const D: usize>(
    tensor: Tensor<D>,
    what: &'static str,
) -> Result<Vec<f32>> {
    tensor
        .try_into_vec_as::<f32>()
        .map_err(|e| TrainError::InvalidArgument {
            what,
            message: format!("cannot read back as f32: {e:?}"),
        })
}

// ---------------------------------------------------------------------------------------------
// Prediction and evaluation

/// How token predictions are made and read back to words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenEvalOptions {
    /// Examples per forward pass.
    pub batch_size: usize,
    /// The tokenizer's padding id.
    pub pad_id: u32,
    /// How a word's tag is read from its pieces.
    pub aggregation: Aggregation,
    /// How the labels were aligned to pieces.
    pub alignment: LabelAlignment,
}

impl TokenEvalOptions {
    /// Batches of 64, first-piece aggregation.
    pub fn new(pad_id: u32) -> Self {
        Self {
            batch_size: 64,
            pad_id,
            aggregation: Aggregation::First,
            alignment: LabelAlignment::FirstSubword,
        }
    }

    /// Sets the examples per forward pass.
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }
}

fn check_batch_size(batch_size: usize) -> Result<()> {
    if batch_size == 0 {
        return Err(TrainError::InvalidArgument {
            what: "batch_size",
            message: "must be at least 1".into(),
        });
    }
    Ok(())
}

/// The logits of every example, row-major `[len, num_labels]` (padding cut off), computed in
/// batches of `batch_size` with the model in validation mode through the app's route.
///
/// # Errors
///
/// [`TrainError::InvalidArgument`] for a zero batch size; errors of collation and of the
/// forward pass.
pub fn predict_token_logits<S: Adapter>(
    classifier: &TokenClassifier<S>,
    examples: &[TokenExample],
    batch_size: usize,
    pad_id: u32,
) -> Result<Vec<Vec<f32>>> {
    check_batch_size(batch_size)?;
    let model = classifier.valid();
    let route = model.route()?;
    let device = model.model.device();
    let classes = model.head.config().num_labels;
    let all: Vec<usize> = (0..examples.len()).collect();
    let mut out = Vec::with_capacity(examples.len());
    for indices in all.chunks(batch_size) {
        let batch = TokenBatch::collate(examples, indices, pad_id)?;
        let input = batch.to_input(model.model.config(), &device)?;
        let logits = host_values(model.forward(&input, &route)?, "logits")?;
        let row = batch.seq_len * classes;
        for (k, &i) in indices.iter().enumerate() {
            let len = examples[i].len() * classes;
            out.push(logits[k * row..k * row + len].to_vec());
        }
    }
    Ok(out)
}

/// One predicted label id per word of every sentence the examples come from (`None` for a
/// word with no token), indexed by [`TokenExample::sentence`]: `num_sentences` entries.
/// Read as [`stitch_word_ids`] reads them; `vocab` (the head's labels) gives the
/// continuation labels the majority and average aggregations read.
///
/// # Errors
///
/// [`TrainError::InvalidArgument`] when `vocab` does not have one label per class of the
/// head; errors of [`predict_token_logits`] and [`stitch_word_ids`].
pub fn predict_word_ids<S: Adapter>(
    classifier: &TokenClassifier<S>,
    examples: &[TokenExample],
    num_sentences: usize,
    vocab: &LabelVocab,
    options: &TokenEvalOptions,
) -> Result<Vec<Vec<Option<u32>>>> {
    let num_labels = classifier.head.config().num_labels;
    check_vocab(vocab, num_labels)?;
    let logits = predict_token_logits(classifier, examples, options.batch_size, options.pad_id)?;
    stitch_word_ids(examples, &logits, num_sentences, vocab, options)
}

/// One label id per word of every sentence (`None` for a word with no token) from the
/// row-major `[len, vocab.len()]` token `logits` of every example (as
/// [`predict_token_logits`] gives them), through the path serving uses
/// ([`TokenDecoder::sentences`]): the windows of each sentence are stitched and each word's
/// label read with `options.aggregation` from the tokens' probabilities. This is the part of
/// [`predict_word_ids`] after the forward pass, for models other than a [`TokenClassifier`]
/// (a [`Tagger`](crate::teacher::Tagger), say).
///
/// # Errors
///
/// [`TrainError::App`] when `logits` has not one row per example, an example's sentence is
/// not below `num_sentences`, a sentence has no example, a sentence's windows are not
/// consecutive, or a row does not fit its window.
pub fn stitch_word_ids(
    examples: &[TokenExample],
    logits: &[Vec<f32>],
    num_sentences: usize,
    vocab: &LabelVocab,
    options: &TokenEvalOptions,
) -> Result<Vec<Vec<Option<u32>>>> {
    let decoder = TokenDecoder::new(vocab.clone(), options.alignment, options.aggregation);
    Ok(decoder
        .sentences(examples, logits, num_sentences)?
        .into_iter()
        .map(|words| words.into_iter().map(|w| w.map(|w| w.label)).collect())
        .collect())
}

/// Word tags of every sentence (see [`predict_word_ids`]), named with `vocab`; a word with no
/// token is tagged `O`.
///
/// # Errors
///
/// As [`predict_word_ids`]; [`TrainError::InvalidArgument`] when `vocab` does not have one
/// label per class of the head.
pub fn predict_word_tags<S: Adapter>(
    classifier: &TokenClassifier<S>,
    examples: &[TokenExample],
    num_sentences: usize,
    vocab: &LabelVocab,
    options: &TokenEvalOptions,
) -> Result<Vec<Vec<String>>> {
    let ids = predict_word_ids(classifier, examples, num_sentences, vocab, options)?;
    Ok(word_tags(ids, vocab))
}

/// Word label ids named with `vocab`; a word with no token (`None`) is tagged `O`.
pub fn word_tags(ids: Vec<Vec<Option<u32>>>, vocab: &LabelVocab) -> Vec<Vec<String>> {
    ids.into_iter()
        .map(|words| {
            words
                .into_iter()
                .map(|id| id.and_then(|id| vocab.label(id)).unwrap_or("O").to_owned())
                .collect()
        })
        .collect()
}

fn check_vocab(vocab: &LabelVocab, num_labels: usize) -> Result<()> {
    if vocab.len() != num_labels {
        return Err(TrainError::InvalidArgument {
            what: "labels",
            message: format!("{} labels for a head of {num_labels} classes", vocab.len()),
        });
    }
    Ok(())
}

/// Entity scores ([`entity_report`]) of the word tags predicted for `examples` against
/// the `gold` sentences they were encoded from.
///
/// # Errors
///
/// As [`predict_word_tags`]; [`TrainError::Shape`] when a sentence's predicted words are not
/// its gold words in number; [`TrainError::InvalidArgument`] when there is no sentence.
pub fn evaluate_tokens<S: Adapter>(
    classifier: &TokenClassifier<S>,
    examples: &[TokenExample],
    gold: &[TaggedSentence],
    vocab: &LabelVocab,
    options: &TokenEvalOptions,
) -> Result<NerReport> {
    let pred = predict_word_tags(classifier, examples, gold.len(), vocab, options)?;
    entity_report(gold, &pred)
}

/// Entity scores of predicted word tags against the `gold` sentences, sentence by sentence,
/// with entities read as serving reads them ([`lora_bert_apps::entity_report`]: seqeval's
/// default mode, BILOU's `L-`/`U-` as `E-`/`S-`).
///
/// # Errors
///
/// [`TrainError::Shape`] when the sentences or a sentence's words differ in number;
/// [`TrainError::InvalidArgument`] when there is no sentence.
pub fn entity_report(gold: &[TaggedSentence], pred: &[Vec<String>]) -> Result<NerReport> {
    if gold.len() != pred.len() {
        return Err(TrainError::Shape {
            what: "sentences (gold vs predicted)".into(),
            expected: vec![gold.len()],
            found: vec![pred.len()],
        });
    }
    let gold: Vec<&Vec<String>> = gold.iter().map(|s| &s.tags).collect();
    for (s, (g, p)) in gold.iter().zip(pred).enumerate() {
        if g.len() != p.len() {
            return Err(TrainError::Shape {
                what: format!("words of sentence {s} (gold tags vs the examples' words)"),
                expected: vec![g.len()],
                found: vec![p.len()],
            });
        }
    }
    let gold: Vec<Vec<String>> = gold.into_iter().cloned().collect();
    Ok(lora_bert_apps::entity_report(&gold, pred)?)
}

/// The predicted class of every row, in batches of `batch_size`, with the model in validation
/// mode through the app's route (ties: the lowest class id).
///
/// # Errors
///
/// [`TrainError::InvalidArgument`] for a zero batch size; errors of collation and of the
/// forward pass.
pub fn predict_texts<S: Adapter>(
    classifier: &TextClassifier<S>,
    rows: &EncodedRows,
    batch_size: usize,
) -> Result<Vec<u32>> {
    check_batch_size(batch_size)?;
    let model = classifier.valid();
    let route = model.route()?;
    let device = model.model.device();
    let classes = model.head.config().num_labels;
    let all: Vec<usize> = (0..rows.len()).collect();
    let mut out = Vec::with_capacity(rows.len());
    for indices in all.chunks(batch_size) {
        let batch = rows.batch(indices)?;
        let input = batch.to_input(model.model.config(), &device)?;
        let logits = host_values(model.forward(&input, &route)?, "logits")?;
        out.extend(logits.chunks_exact(classes).map(argmax));
    }
    Ok(out)
}

/// The index of the largest value (the first one on ties).
fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best as u32
}

/// Accuracy, per-class scores and averages (scikit-learn's) of the classes predicted for
/// `texts` against their labels, named with `vocab`.
///
/// # Errors
///
/// As [`predict_texts`]; [`TrainError::InvalidArgument`] when `vocab` does not fit the head
/// or a label is outside it.
pub fn evaluate_texts<S: Adapter>(
    classifier: &TextClassifier<S>,
    texts: &EncodedTexts,
    vocab: &LabelVocab,
    batch_size: usize,
) -> Result<ClassificationReport> {
    check_vocab(vocab, classifier.head.config().num_labels)?;
    let pred = predict_texts(classifier, texts.rows(), batch_size)?;
    let name = |id: u32| {
        vocab.label(id).ok_or_else(|| TrainError::InvalidArgument {
            what: "labels",
            message: format!("class {id} is outside the {} labels", vocab.len()),
        })
    };
    let gold = texts
        .labels()
        .iter()
        .map(|&id| name(id))
        .collect::<Result<Vec<_>>>()?;
    let pred = pred.into_iter().map(name).collect::<Result<Vec<_>>>()?;
    Ok(ClassificationReport::new(&gold, &pred)?)
}

// ---------------------------------------------------------------------------------------------
// The loops

/// Fine-tunes token classification on `train`, evaluated by
/// [`FineTuneConfig::token_metric`] (entity micro-F1 by default) on `dev`: the
/// examples and the gold sentences they were encoded from (in the order of
/// [`TokenExample::sentence`]). `vocab` names the head's classes; `pad_id` is the tokenizer's.
///
/// Returns the best classifier (by the dev metric) and the trainer's report.
///
/// # Errors
///
/// [`TrainError::InvalidArgument`] for no training example, a zero batch size or a bad
/// setup; errors of [`TokenClassifier::new`], of the loss (a label outside `vocab`), of the
/// evaluation and of [`Trainer::fit`].
pub fn finetune_tokens<S: Adapter>(
    model: AdaptedModel<S>,
    train: &[TokenExample],
    dev: (&[TokenExample], &[TaggedSentence]),
    vocab: &LabelVocab,
    config: &FineTuneConfig<S::Config>,
    pad_id: u32,
) -> Result<(TokenClassifier<S>, FitReport)> {
    check_batch_size(config.batch_size)?;
    check_batch_size(config.eval_batch_size)?;
    let device = model.device();
    device.seed(config.seed);
    let head = TokenClassificationHeadConfig::new(model.config().hidden_size, vocab.len())
        .with_dropout(config.head_dropout);
    let mut classifier = TokenClassifier::new(model, &config.app, &head)?;
    // Saved with the app, so that serving reads words as this evaluation does.
    classifier.app.decoding = Some(WordDecoding {
        alignment: config.alignment,
        aggregation: config.aggregation,
    });
    let route = classifier.route()?;
    let batches = config.batches(train.iter().map(TokenExample::len).collect())?;
    let options = config.token_options(pad_id);
    let (dev_examples, dev_gold) = dev;
    config.trainer().fit(
        classifier,
        batches,
        |m: &TokenClassifier<S>, indices: Vec<usize>| {
            let device = m.model.device();
            let batch = TokenBatch::collate(train, &indices, pad_id)?;
            let input = batch.to_input(m.model.config(), &device)?;
            let labels = token_labels(&batch, &device)?;
            token_cross_entropy(m.forward(&input, &route)?, labels, &config.cross_entropy)
        },
        |m: &TokenClassifier<S>| {
            let report = evaluate_tokens(m, dev_examples, dev_gold, vocab, &options)?;
            Ok(match config.token_metric {
                TokenMetric::EntityF1 => report.averages.micro_avg.f1,
                TokenMetric::Accuracy => report.accuracy,
            })
        },
    )
}

/// Fine-tunes text classification on `train`, evaluated on `dev` by
/// [`FineTuneConfig::text_metric`]. `vocab` names the classes.
///
/// Returns the best classifier (by the dev metric) and the trainer's report.
///
/// # Errors
///
/// As [`finetune_tokens`].
pub fn finetune_texts<S: Adapter>(
    model: AdaptedModel<S>,
    train: &EncodedTexts,
    dev: &EncodedTexts,
    vocab: &LabelVocab,
    config: &FineTuneConfig<S::Config>,
) -> Result<(TextClassifier<S>, FitReport)> {
    check_batch_size(config.batch_size)?;
    check_batch_size(config.eval_batch_size)?;
    let device = model.device();
    device.seed(config.seed);
    let head = SequenceClassificationHeadConfig::new(model.config().hidden_size, vocab.len())
        .with_pooling(config.pooling)
        .with_dropout(config.head_dropout);
    let classifier = TextClassifier::new(model, &config.app, &head)?;
    let route = classifier.route()?;
    let batches = config.batches(train.lengths())?;
    config.trainer().fit(
        classifier,
        batches,
        |m: &TextClassifier<S>, indices: Vec<usize>| {
            let device = m.model.device();
            let batch = train.batch(&indices)?;
            let input = batch.to_input(m.model.config(), &device)?;
            let labels = class_labels(&batch, &device)?;
            cross_entropy(m.forward(&input, &route)?, labels, &config.cross_entropy)
        },
        |m: &TextClassifier<S>| {
            let report = evaluate_texts(m, dev, vocab, config.eval_batch_size)?;
            Ok(match config.text_metric {
                TextMetric::Accuracy => report.accuracy,
                TextMetric::MacroF1 => report.macro_f1(),
            })
        },
    )
}
