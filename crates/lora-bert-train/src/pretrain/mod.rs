//! Pre-finetuning (PF): training the encoder on task *families* before any downstream task.
//!
//! Two families, two objectives:
//!
//! - **NER family** ([`Family::Ner`]): word-level distillation. Sentences from unlabelled
//!   text, encoded as [`TokenExample`]s; the student's last hidden states are pooled per word
//!   ([`word_pool`]) and mapped to the teacher's width ([`DistillProjection`]). With
//!   [`PfConfig::soft_labels`] the teacher is a tagger whose word vectors are label logits
//!   (a [`Tagger`](crate::teacher::Tagger) trained on labelled NER data, NuNER-style) and the
//!   projection is a token head that learns the teacher's label distribution per word
//!   ([`kl_words`]); otherwise the projection regresses the teacher's word states
//!   ([`distill_states`], MSE or cosine). Words the teacher saw no token of
//!   (`present == false`) are skipped.
//! - **TC family** ([`Family::Tc`]): contrastive learning on text pairs ([`EncodedPairs`]):
//!   mean-pooled sentence embeddings through a [`ProjectionHead`], [`info_nce`] with in-batch
//!   negatives (temperature 0.05 and symmetric by default).
//!
//! Four regimes ([`Variant`]), all running on [`Trainer::fit`]:
//!
//! | variant | objectives | groups | route | trains |
//! |---|---|---|---|---|
//! | [`Variant::Ner`] | NER family only | none | base | backbone |
//! | [`Variant::Tc`] | TC family only | none | base | backbone |
//! | [`Variant::Naive`] | both, mixed by the sampler | none | base | backbone |
//! | [`Variant::MtpfTpl`] | both, mixed by the sampler | `ner`, `tc` | the batch's family group | backbone + that group |
//!
//! Batches are task-homogeneous: a [`MultiTaskSampler`] (default [`Strategy::Temperature`]
//! with `T = 2`, our choice) picks the family of every step and that family's
//! [`BatchPlan`] gives the indices; a [`TaskBatch`] is the cheap batch description handed to
//! the trainer. Under MTPF-TPL a batch only goes through its family's LoRA group, so the other
//! group gets no gradient and AdamW leaves it bit-for-bit as it was; the backbone gets the
//! gradient of every batch.
//!
//! **Learning rates.** The backbone trains at the training configuration's `learning_rate`;
//! the family groups and the objectives' heads are parameter groups of their own
//! ([`PfModel::param_groups`], [`PfConfig::adapter_lr`], [`PfConfig::head_lr`], 1e-3 each by
//! default), so that the groups (whose `B` starts at zero) and the fresh heads move within a
//! few hundred steps while the backbone moves little.
//!
//! **Group defaults are our choice** (the method's paper does not give them): LoRA on the
//! `query` and `value` projections of the last `K = 2` layers, rank 8, `alpha = 16`, no LoRA
//! dropout. All of them are fields of [`PfConfig`].
//!
//! **Dev metric** (what [`Trainer::fit`] maximises and early-stops on): minus the mean dev
//! loss, where the dev loss of a family is the mean of its objective over the first
//! [`PfConfig::dev_batches`] batches of an unshuffled plan over its dev set (or, without a
//! dev set, over its training set), and the families active in the variant count equally.
//! The batches are fixed, so evaluations are comparable across steps.
//!
//! [`save_pf`] writes the result as a Hugging Face model directory (the backbone's
//! `config.json` + `model.safetensors`) with every group in PEFT's layout under
//! `groups/<name>`; [`load_pf`] gives back an [`AdaptedModel`] with the groups, the starting
//! point of downstream fine-tuning (backbone + the family's group).
//!
//! [`BatchPlan`]: lora_bert_data::batch::BatchPlan
//! [`DistillProjection`]: crate::loss::DistillProjection
//! [`MultiTaskSampler`]: lora_bert_data::sampler::MultiTaskSampler
//! [`ProjectionHead`]: crate::heads::ProjectionHead
//! [`TaskBatch`]: lora_bert_data::sampler::TaskBatch
//! [`Trainer::fit`]: crate::Trainer::fit
//! [`distill_states`]: crate::loss::distill_states
//! [`info_nce`]: crate::loss::info_nce
//! [`kl_words`]: crate::loss::kl_words
//! [`word_pool`]: crate::pooling::word_pool

use std::path::PathBuf;

use burn::tensor::Device;
use lora_bert_adapters::{AdaptedModel, Layers, Lora, LoraConfig, Targets};
use lora_bert_data::TaggedSentence;
use lora_bert_data::batch::EncodedPairs;
use lora_bert_data::sampler::Strategy;
use lora_bert_data::token::TokenExample;
use lora_bert_encoder::Route;

use crate::loss::DistillLoss;
use crate::pooling::WordPooling;
use crate::teacher::Teacher;
use crate::trainer::TrainConfig;
use crate::{Result, TrainError};

mod fit;
mod model;
mod save;

pub use fit::{PfReport, fit_pf, pf_batches, pre_finetune};
pub use model::PfModel;
pub use save::{load_pf, save_pf};

/// Name of the NER family's LoRA group under [`Variant::MtpfTpl`].
pub const NER_GROUP: &str = "ner";
/// Name of the TC family's LoRA group under [`Variant::MtpfTpl`].
pub const TC_GROUP: &str = "tc";
/// The learning-rate group of MTPF-TPL's family groups ([`PfModel::param_groups`]).
pub const ADAPTERS_LR_GROUP: &str = "adapters";
/// The learning-rate group of the objectives' heads and projections
/// ([`PfModel::param_groups`]).
pub const HEADS_LR_GROUP: &str = "heads";
/// Folder of the groups inside a directory written by [`save_pf`].
pub const GROUPS_DIR: &str = "groups";

/// A task family of pre-finetuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// Named-entity recognition: word-level distillation.
    Ner,
    /// Text classification: contrastive learning on pairs.
    Tc,
}

impl Family {
    /// The family's LoRA group name under [`Variant::MtpfTpl`] ([`NER_GROUP`], [`TC_GROUP`]).
    pub fn group(self) -> &'static str {
        match self {
            Family::Ner => NER_GROUP,
            Family::Tc => TC_GROUP,
        }
    }
}

/// The pre-finetuning regime; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// Individual PF on the NER family (distillation only), plain backbone.
    Ner,
    /// Individual PF on the TC family (contrastive only), plain backbone.
    Tc,
    /// Naive multi-task PF: both objectives on the plain backbone, no group.
    Naive,
    /// MTPF-TPL: LoRA groups `ner` and `tc`, each batch routed to its family's group; the
    /// backbone and the active group train.
    MtpfTpl,
}

impl Variant {
    /// The families the variant trains on, in task order of its sampler.
    pub fn families(self) -> &'static [Family] {
        match self {
            Variant::Ner => &[Family::Ner],
            Variant::Tc => &[Family::Tc],
            Variant::Naive | Variant::MtpfTpl => &[Family::Ner, Family::Tc],
        }
    }

    /// Whether the variant adds a LoRA group per family.
    pub fn uses_groups(self) -> bool {
        self == Variant::MtpfTpl
    }

    /// The route of a `family` batch through `model`: the family's group under MTPF-TPL, the
    /// plain backbone otherwise.
    ///
    /// # Errors
    ///
    /// [`TrainError::Adapter`] when MTPF-TPL's group is not in the model.
    pub fn route(self, model: &AdaptedModel<Lora>, family: Family) -> Result<Route> {
        if self.uses_groups() {
            Ok(model.route(family.group())?)
        } else {
            Ok(Route::Base)
        }
    }
}

/// Hyper-parameters of [`pre_finetune`].
#[derive(Debug, Clone)]
pub struct PfConfig {
    /// The training loop (steps, learning rate, schedule, evaluation, seed, ...).
    pub train: TrainConfig,
    /// Rows per batch, for both families.
    pub batch_size: usize,
    /// InfoNCE temperature (default 0.05, sentence-transformers' scale 20).
    pub temperature: f64,
    /// Symmetric InfoNCE (both directions; default `true`).
    pub symmetric: bool,
    /// How the family of each step is drawn (default [`Strategy::Temperature`]`(2.0)`, our
    /// choice: between proportional and uniform). Seeded with `train.seed`.
    pub strategy: Strategy,
    /// MTPF-TPL: LoRA on the last `k` layers (default 2).
    pub k: usize,
    /// MTPF-TPL: LoRA rank (default 8).
    pub rank: usize,
    /// MTPF-TPL: `lora_alpha` (default 16).
    pub alpha: f64,
    /// MTPF-TPL: LoRA dropout (default 0).
    pub lora_dropout: f64,
    /// MTPF-TPL: target projections (default `query`, `value`).
    pub targets: Vec<String>,
    /// Distillation loss (default cosine). MSE towards all-mpnet-base-v2's states shrank
    /// all-MiniLM-L6-v2's last hidden states about 3.5 times in 300 steps (mean norm 4.26 to
    /// 1.21), after which downstream heads barely learned at the usual learning rates (WNUT-16
    /// entity F1 0 after 200 steps against 0.34 from the plain model); cosine leaves the
    /// scale alone (0.37 in the same run; `examples/reproduce`).
    pub distill_loss: DistillLoss,
    /// Learn a tagger teacher's word label distribution instead of regressing states
    /// (default `None`: states). With a teacher whose word vectors are label logits (an
    /// [`EncoderTeacher`](crate::teacher::EncoderTeacher) over a
    /// [`Tagger`](crate::teacher::Tagger), or a cache of one), the distillation projection is
    /// the pre-finetuning token head (student hidden → labels) and the loss is
    /// [`kl_words`]; `distill_loss` is then unused.
    ///
    /// [`kl_words`]: crate::loss::kl_words
    pub soft_labels: Option<SoftLabels>,
    /// How the student's pieces become word states (default mean; use the teacher's).
    pub word_pooling: WordPooling,
    /// Width of the contrastive projection; `None` (default): mean pooling only, so the
    /// contrastive signal shapes the encoder's own embedding space.
    pub projection_dim: Option<usize>,
    /// Peak learning rate of MTPF-TPL's family groups (the [`ADAPTERS_LR_GROUP`] parameter
    /// group; default 1e-3). LoRA's `B` starts at zero: at the backbone's rate (`train`'s
    /// `learning_rate`, 2e-5 to 5e-5) a few hundred steps leave the groups where they started.
    pub adapter_lr: f64,
    /// Peak learning rate of the objectives' heads, the distillation projection and the
    /// contrastive projection (the [`HEADS_LR_GROUP`] parameter group; default 1e-3): they
    /// start from random values and are dropped after pre-finetuning.
    pub head_lr: f64,
    /// Padding id of the student's tokenizer, for NER batches (default 0, BERT's `[PAD]`).
    pub pad_id: u32,
    /// Fixed dev batches per family for the dev metric (default 4).
    pub dev_batches: usize,
    /// Checkpoint folder for [`Trainer::with_checkpoints`] (resume included); none by default.
    ///
    /// [`Trainer::with_checkpoints`]: crate::Trainer::with_checkpoints
    pub checkpoints: Option<PathBuf>,
    /// Data-parallel devices ([`Trainer::with_devices`]); empty (default): the model's own.
    ///
    /// [`Trainer::with_devices`]: crate::Trainer::with_devices
    pub devices: Vec<Device>,
}

impl PfConfig {
    /// The defaults above with `train`.
    pub fn new(train: TrainConfig) -> Self {
        Self {
            train,
            batch_size: 32,
            temperature: 0.05,
            symmetric: true,
            strategy: Strategy::Temperature(2.0),
            k: 2,
            rank: 8,
            alpha: 16.0,
            lora_dropout: 0.0,
            targets: vec!["query".into(), "value".into()],
            distill_loss: DistillLoss::Cosine,
            soft_labels: None,
            word_pooling: WordPooling::Mean,
            projection_dim: None,
            adapter_lr: 1e-3,
            head_lr: 1e-3,
            pad_id: 0,
            dev_batches: 4,
            checkpoints: None,
            devices: Vec::new(),
        }
    }

    /// The LoRA configuration of a family group.
    pub fn lora(&self) -> LoraConfig {
        let targets = Targets::new(self.targets.iter().cloned()).layers(Layers::Last(self.k));
        LoraConfig::new(self.rank, targets)
            .alpha(self.alpha)
            .dropout(self.lora_dropout)
    }

    fn validate(&self) -> Result<()> {
        let bad = |what, message: String| Err(TrainError::InvalidArgument { what, message });
        if self.batch_size == 0 {
            return bad("batch size", "0".into());
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return bad(
                "temperature",
                format!("{} (must be finite and > 0)", self.temperature),
            );
        }
        for (what, lr) in [("adapter_lr", self.adapter_lr), ("head_lr", self.head_lr)] {
            if !(lr.is_finite() && lr > 0.0) {
                return bad(what, format!("{lr} (must be finite and > 0)"));
            }
        }
        if self.dev_batches == 0 {
            return bad(
                "dev batches",
                "0 (the dev metric needs at least one)".into(),
            );
        }
        Ok(())
    }
}

/// The soft-label NER objective of [`PfConfig::soft_labels`]: [`kl_words`] with these
/// settings.
///
/// [`kl_words`]: crate::loss::kl_words
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SoftLabels {
    /// Temperature of the KL term (default 2, Hinton et al.'s usual choice; tune on dev).
    pub temperature: f64,
    /// Weight of the cross-entropy on the teacher's argmax label (default 0).
    pub hard_weight: f64,
}

impl Default for SoftLabels {
    fn default() -> Self {
        Self {
            temperature: 2.0,
            hard_weight: 0.0,
        }
    }
}

/// Sentences and their encoded examples (`examples[i].sentence` indexes `sentences`).
#[derive(Debug, Clone, Copy)]
pub struct NerSet<'a> {
    /// The sentences, whose words the teacher is asked about.
    pub sentences: &'a [TaggedSentence],
    /// The examples (windows) of the sentences, as
    /// [`encode_tagged`](lora_bert_data::token::encode_tagged) makes them; labels unused.
    pub examples: &'a [TokenExample],
}

/// The NER family's data.
#[derive(Clone, Copy)]
pub struct NerData<'a> {
    /// Training sentences.
    pub train: NerSet<'a>,
    /// Dev sentences for the dev metric; `None`: fixed batches of the training set.
    pub dev: Option<NerSet<'a>>,
    /// The teacher (typically a [`TeacherCache`](crate::teacher::TeacherCache)).
    pub teacher: &'a dyn Teacher,
}

impl std::fmt::Debug for NerData<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NerData")
            .field("train", &self.train.examples.len())
            .field("dev", &self.dev.map(|d| d.examples.len()))
            .field("teacher", &self.teacher.description())
            .finish()
    }
}

/// The TC family's data.
#[derive(Debug, Clone, Copy)]
pub struct TcData<'a> {
    /// Training pairs.
    pub train: &'a EncodedPairs,
    /// Dev pairs for the dev metric; `None`: fixed batches of the training set.
    pub dev: Option<&'a EncodedPairs>,
}
