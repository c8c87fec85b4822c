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
//! **The task's group** is an adapter group (LoRA unless [`AppSetup::with_adapter`] names
//! another scheme) named after the task ([`AppSetup::task`]). With
//! [`AppSetup::init_group`] set (downstream fine-tuning after pre-finetuning "starts from the
//! backbone + the task's family group"), the family group (`"ner"`, `"tc"`) is **copied** under
//! the task's name, weights and configuration as they are, and the task routes through the
//! copy in every mode; the family group itself is never routed and stays exactly as it was, so
//! one pre-finetuned model serves many apps. Without `init_group`, `LoraHead` adds a fresh
//! group with [`AppSetup::adapter`] (default [`default_lora`]: `r = 8`, `lora_alpha = 16`, no
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
//! trainer stops at `max_steps` (or early). The loss is [`token_cross_entropy`](crate::loss::token_cross_entropy) (labels
//! [`IGNORE_INDEX`](lora_bert_data::align::IGNORE_INDEX) ignored) for tokens and
//! [`cross_entropy`](crate::loss::cross_entropy) for texts. The dev metric is the entity micro-F1 of seqeval's default
//! mode ([`entity_report`]: BILOU's `L-`/`U-` read as `E-`/`S-`) on **word-level** tags for
//! tokens, read from the logits through the path serving uses
//! ([`TokenDecoder`](lora_bert_apps::TokenDecoder): each word's tag read from its pieces with
//! [`Aggregation`], by default the first piece; windows of long sentences stitched; a word
//! with no token tagged `O`), and accuracy or
//! macro-F1 ([`TextMetric`], [`ClassificationReport`](lora_bert_metrics::ClassificationReport)) for texts.
//!
//! The module holds the setup (here), the classifiers and their app directories
//! (`classifiers`), prediction and evaluation (`evaluate`) and the loops (`loops`).
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

use std::path::PathBuf;

use burn::tensor::Device;
use lora_bert_adapters::{AdaptedModel, Adapter, Layers, LoraConfig, Targets};
pub use lora_bert_apps::manifest::{
    APP_FILE, AppInfo, AppKind, AppManifest, BACKBONE_DIR, FineTuneMode, WordDecoding, read_app,
    write_app,
};
use lora_bert_data::align::{Aggregation, LabelAlignment};
use lora_bert_data::batch::{BatchConfig, BatchPlan};
use lora_bert_encoder::Route;
use serde::{Deserialize, Serialize};

use crate::loss::CrossEntropy;
use crate::pooling::Pooling;
use crate::{Result, TrainConfig, TrainError, Trainer};

mod classifiers;
mod evaluate;
mod loops;

pub(crate) use classifiers::host_values;
pub use classifiers::{Classifier, ClassifierHead, TextClassifier, TokenClassifier};
pub use evaluate::{
    TokenEvalOptions, entity_report, evaluate_texts, evaluate_tokens, predict_texts,
    predict_token_logits, predict_word_ids, predict_word_tags, stitch_word_ids, word_tags,
};
pub use loops::{finetune_texts, finetune_tokens};

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
pub(super) fn prepare<S: Adapter>(
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

pub(super) fn route_of<S: Adapter>(model: &AdaptedModel<S>, app: &AppInfo) -> Result<Route> {
    Ok(match &app.group {
        Some(g) => model.route(g)?,
        None => Route::Base,
    })
}
