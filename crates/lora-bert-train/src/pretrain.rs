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

use std::path::{Path, PathBuf};

use std::collections::HashSet;

use burn::module::{Module, ParamId};
use burn::tensor::{Device, Int, Tensor, TensorData};
use lora_bert_adapters::{AdaptedModel, Layers, Lora, LoraConfig, Targets};
use lora_bert_data::TaggedSentence;
use lora_bert_data::batch::{BatchConfig, BatchPlan, EncodedPairs};
use lora_bert_data::sampler::{MultiTaskBatches, MultiTaskSampler, Strategy, TaskBatch};
use lora_bert_data::token::{TokenBatch, TokenExample};
use lora_bert_encoder::{BertModel, CheckpointError, Route};

use crate::groups::{NamedGroups, param_ids};
use crate::heads::{ProjectionHead, ProjectionHeadConfig};
use crate::input::{ToBertInput, pair_inputs};
use crate::loss::{DistillLoss, DistillProjection, distill_states, info_nce, kl_words};
use crate::pooling::{Pooling, WordMap, WordPooling, word_pool};
use crate::teacher::Teacher;
use crate::trainer::{FitReport, TrainConfig, Trainer};
use crate::{Result, TrainError};

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
    pub checkpoints: Option<PathBuf>,
    /// Data-parallel devices ([`Trainer::with_devices`]); empty (default): the model's own.
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

/// The model being pre-finetuned: the encoder (with MTPF-TPL's groups) and the two
/// objectives' trainable heads, which are dropped after PF.
#[derive(Module, Debug)]
pub struct PfModel {
    /// The encoder, with the family groups under MTPF-TPL.
    pub model: AdaptedModel<Lora>,
    /// Student hidden → teacher hidden, for distillation.
    pub distill: DistillProjection,
    /// Sentence embeddings for the contrastive objective.
    pub projection: ProjectionHead,
}

impl PfModel {
    /// The parameter groups of the training loop's learning rates: [`ADAPTERS_LR_GROUP`]
    /// (every adapter group's parameters; absent when the model has none) at
    /// [`PfConfig::adapter_lr`] and [`HEADS_LR_GROUP`] (the distillation and contrastive
    /// projections) at [`PfConfig::head_lr`]; the backbone is in no group and trains at the
    /// training configuration's `learning_rate`.
    pub fn param_groups(&self) -> NamedGroups {
        let backbone: HashSet<ParamId> = param_ids(&self.model.clone().into_backbone())
            .into_iter()
            .collect();
        let adapters: Vec<ParamId> = param_ids(&self.model)
            .into_iter()
            .filter(|id| !backbone.contains(id))
            .collect();
        let mut heads = param_ids(&self.distill);
        heads.extend(param_ids(&self.projection));
        let mut groups = vec![(HEADS_LR_GROUP.to_owned(), heads)];
        if !adapters.is_empty() {
            groups.push((ADAPTERS_LR_GROUP.to_owned(), adapters));
        }
        groups
    }

    /// The NER-family loss of `examples[indices]` through `route`: word distillation onto
    /// `teacher`.
    ///
    /// # Errors
    ///
    /// [`TrainError::InvalidArgument`] for an example whose sentence is not in `set` or whose
    /// words go past it; [`TrainError::Shape`] when the teacher's width is not the
    /// projection's; errors of the teacher, the batch and the model.
    pub fn ner_loss(
        &self,
        set: NerSet<'_>,
        teacher: &dyn Teacher,
        indices: &[usize],
        route: &Route,
        config: &PfConfig,
    ) -> Result<Tensor<1>> {
        let device = self.model.device();
        let batch = TokenBatch::collate(set.examples, indices, config.pad_id)?;
        let input = batch.to_input(self.model.config(), &device)?;
        let hidden = self.model.forward(&input, route)?.last_hidden_state;
        let rows: Vec<&TokenExample> = indices.iter().map(|&i| &set.examples[i]).collect();
        let map = WordMap::from_examples(&rows, batch.seq_len)?;
        let pooled = word_pool(hidden, &map, config.word_pooling)?;
        let student = self.distill.forward(pooled.states)?;
        let (teacher_words, mask) = teacher_words(set, teacher, &rows, &map, &device)?;
        let th = teacher.hidden_size();
        let sd = student.dims();
        if sd[2] != th {
            return Err(TrainError::Shape {
                what: "teacher hidden size vs distillation projection output".into(),
                expected: vec![sd[2]],
                found: vec![th],
            });
        }
        let mask = pooled.mask.mul(mask);
        match config.soft_labels {
            Some(SoftLabels {
                temperature,
                hard_weight,
            }) => kl_words(student, teacher_words, mask, temperature, hard_weight),
            None => distill_states(student, teacher_words, mask, config.distill_loss),
        }
    }

    /// The TC-family loss of `pairs[indices]` through `route`: InfoNCE with in-batch
    /// negatives.
    ///
    /// # Errors
    ///
    /// Errors of the batch, the model and [`info_nce`].
    pub fn tc_loss(
        &self,
        pairs: &EncodedPairs,
        indices: &[usize],
        route: &Route,
        config: &PfConfig,
    ) -> Result<Tensor<1>> {
        let device = self.model.device();
        let batch = pairs.batch(indices)?;
        let (anchor, positive) = pair_inputs(&batch, self.model.config(), &device)?;
        let a = self.model.forward(&anchor, route)?.last_hidden_state;
        let p = self.model.forward(&positive, route)?.last_hidden_state;
        let a = self.projection.forward(a, anchor.attention_mask.clone())?;
        let p = self
            .projection
            .forward(p, positive.attention_mask.clone())?;
        info_nce(a, p, config.temperature, config.symmetric)
    }
}

/// The teacher's states for the word columns of `map`, `[B, W, H_t]`, and the mask of the
/// words the teacher saw (`[B, W]`, 1 where present).
fn teacher_words(
    set: NerSet<'_>,
    teacher: &dyn Teacher,
    rows: &[&TokenExample],
    map: &WordMap,
    device: &Device,
) -> Result<(Tensor<3>, Tensor<2, Int>)> {
    let [b, w] = map.shape();
    let h = teacher.hidden_size();
    let mut sentences = Vec::with_capacity(rows.len());
    for (r, e) in rows.iter().enumerate() {
        let s = set
            .sentences
            .get(e.sentence)
            .ok_or_else(|| TrainError::InvalidArgument {
                what: "NER pre-finetuning data",
                message: format!(
                    "row {r} is an example of sentence {} of {} sentences",
                    e.sentence,
                    set.sentences.len()
                ),
            })?;
        sentences.push(s.tokens.as_slice());
    }
    let states = teacher.word_states(&sentences)?;
    if states.len() != rows.len() {
        return Err(TrainError::Shape {
            what: "teacher word states, one per sentence".into(),
            expected: vec![rows.len()],
            found: vec![states.len()],
        });
    }
    let mut data = vec![0.0f32; b * w * h];
    let mut present = vec![0i64; b * w];
    for (r, ws) in states.iter().enumerate() {
        ws.check()?;
        if ws.hidden != h {
            return Err(TrainError::Shape {
                what: format!("teacher word states of row {r} [words, hidden]"),
                expected: vec![ws.num_words, h],
                found: vec![ws.num_words, ws.hidden],
            });
        }
        let first = map.first_word()[r];
        let n = map.num_words()[r];
        if n > 0 && first + n > ws.num_words {
            return Err(TrainError::InvalidArgument {
                what: "NER pre-finetuning data",
                message: format!(
                    "row {r} covers words {first}..{} but the teacher gave {} words for its sentence",
                    first + n,
                    ws.num_words
                ),
            });
        }
        for j in 0..n {
            let word = first + j;
            if ws.present[word] {
                present[r * w + j] = 1;
                data[(r * w + j) * h..(r * w + j + 1) * h].copy_from_slice(ws.row(word));
            }
        }
    }
    Ok((
        Tensor::from_data(TensorData::new(data, [b, w, h]), device),
        Tensor::from_data(TensorData::new(present, [b, w]), device),
    ))
}

/// A family and its fixed dev batches.
type DevBatches = (Family, Vec<Vec<usize>>);

/// Everything the loss and the dev metric need.
struct Job<'a> {
    variant: Variant,
    ner: Option<NerData<'a>>,
    tc: Option<TcData<'a>>,
    config: &'a PfConfig,
    /// Per family of the variant: its fixed dev batches.
    dev: Vec<DevBatches>,
}

impl Job<'_> {
    fn loss(
        &self,
        model: &PfModel,
        family: Family,
        indices: &[usize],
        dev: bool,
    ) -> Result<Tensor<1>> {
        let route = self.variant.route(&model.model, family)?;
        match family {
            Family::Ner => {
                let ner = self.ner.expect("checked: NER data present");
                let set = if dev {
                    ner.dev.unwrap_or(ner.train)
                } else {
                    ner.train
                };
                model.ner_loss(set, ner.teacher, indices, &route, self.config)
            }
            Family::Tc => {
                let tc = self.tc.expect("checked: TC data present");
                let pairs = if dev {
                    tc.dev.unwrap_or(tc.train)
                } else {
                    tc.train
                };
                model.tc_loss(pairs, indices, &route, self.config)
            }
        }
    }

    fn dev_metric(&self, model: &PfModel) -> Result<f64> {
        let mut total = 0.0;
        for (family, batches) in &self.dev {
            let mut sum = 0.0;
            for indices in batches {
                let v: f32 = self.loss(model, *family, indices, true)?.into_scalar();
                sum += f64::from(v);
            }
            total += sum / batches.len() as f64;
        }
        Ok(-total / self.dev.len() as f64)
    }
}

/// The first `n` batches of an unshuffled plan over `lengths`.
fn fixed_batches(lengths: Vec<usize>, batch_size: usize, n: usize) -> Result<Vec<Vec<usize>>> {
    let plan = BatchPlan::new(lengths, BatchConfig::new(batch_size))?;
    Ok(plan.epoch(0).into_iter().take(n).collect())
}

/// What [`pre_finetune`] reports: the trainer's report and the family of every micro-batch
/// trained in this run (after a resume, from the resumed step on), in order.
#[derive(Debug, Clone)]
pub struct PfReport {
    /// The trainer's report (steps, losses per step, evaluations, best step).
    pub fit: FitReport,
    /// The family of each micro-batch trained, in order (`fit.losses[s]` is the loss of
    /// micro-batches `s·accumulation .. (s+1)·accumulation`).
    pub families: Vec<Family>,
}

impl PfReport {
    /// Micro-batches trained on `family`.
    pub fn steps_of(&self, family: Family) -> usize {
        self.families.iter().filter(|&&f| f == family).count()
    }
}

impl PfModel {
    /// The model [`pre_finetune`] starts from: `model` with its backbone trainable, MTPF-TPL's
    /// groups added ([`PfConfig::lora`]), a fresh [`DistillProjection`] (student hidden →
    /// `teacher_hidden`, the student's own width when `None`) and a mean-pooling
    /// [`ProjectionHead`] ([`PfConfig::projection_dim`]). The device is seeded with
    /// `config.train.seed` first, so the fresh weights are the same for the same seed.
    ///
    /// # Errors
    ///
    /// [`TrainError::Adapter`] when the model already has a group of that name (or the LoRA
    /// configuration does not fit it); [`TrainError::InvalidArgument`] for a zero width.
    pub fn init(
        variant: Variant,
        model: AdaptedModel<Lora>,
        teacher_hidden: Option<usize>,
        config: &PfConfig,
    ) -> Result<Self> {
        config.validate()?;
        let device = model.device();
        device.seed(config.train.seed);
        let mut adapted = model.with_backbone_trainable(true);
        if variant.uses_groups() {
            for family in variant.families() {
                adapted.add_group(family.group(), config.lora())?;
            }
        }
        let hidden = adapted.config().hidden_size;
        let mut projection = ProjectionHeadConfig::new(hidden).with_pooling(Pooling::Mean);
        if let Some(dim) = config.projection_dim {
            projection = projection.with_dim(dim);
        }
        Ok(PfModel {
            model: adapted,
            distill: DistillProjection::init(hidden, teacher_hidden.unwrap_or(hidden), &device)?,
            projection: projection.init(&device)?,
        })
    }
}

/// The data of the families of `variant`, checked, with their fixed dev batches.
fn check_data<'a>(
    variant: Variant,
    ner: Option<NerData<'a>>,
    tc: Option<TcData<'a>>,
    config: &PfConfig,
) -> Result<(Vec<BatchPlan>, Vec<DevBatches>)> {
    config.validate()?;
    let missing = |what: &str| TrainError::InvalidArgument {
        what: "pre-finetuning data",
        message: format!("{variant:?} needs {what}"),
    };
    let mut plans = Vec::new();
    let mut dev = Vec::new();
    for (t, family) in variant.families().iter().enumerate() {
        let seed = config.train.seed.wrapping_add(t as u64);
        let (lengths, dev_lengths, drop_last) = match family {
            Family::Ner => {
                let ner = ner.ok_or_else(|| missing("NER data"))?;
                let lengths: Vec<usize> =
                    ner.train.examples.iter().map(TokenExample::len).collect();
                let dev_lengths = ner
                    .dev
                    .map(|d| d.examples.iter().map(TokenExample::len).collect())
                    .unwrap_or_else(|| lengths.clone());
                (lengths, dev_lengths, false)
            }
            Family::Tc => {
                let tc = tc.ok_or_else(|| missing("TC pairs"))?;
                let lengths = tc.train.lengths();
                let dev_lengths = tc
                    .dev
                    .map(|d| d.lengths())
                    .unwrap_or_else(|| lengths.clone());
                let drop_last = lengths.len() >= config.batch_size;
                (lengths, dev_lengths, drop_last)
            }
        };
        if lengths.is_empty() || dev_lengths.is_empty() {
            return Err(missing(&format!(
                "non-empty {family:?} data (train and dev)"
            )));
        }
        let batch_config = BatchConfig::new(config.batch_size)
            .shuffled(seed)
            .drop_last(drop_last);
        plans.push(BatchPlan::new(lengths, batch_config)?);
        dev.push((
            *family,
            fixed_batches(dev_lengths, config.batch_size, config.dev_batches)?,
        ));
    }
    Ok((plans, dev))
}

/// The endless, deterministic stream of training batches of `variant`: one [`BatchPlan`] per
/// family of [`Variant::families`] (shuffled with `train.seed + family index`; contrastive
/// batches drop a last partial batch when there is a full one, since InfoNCE needs in-batch
/// negatives) mixed by a [`MultiTaskSampler`] with [`PfConfig::strategy`] seeded with
/// `train.seed`. [`TaskBatch::task`] indexes [`Variant::families`].
///
/// # Errors
///
/// As [`pre_finetune`] for the data.
pub fn pf_batches(
    variant: Variant,
    ner: Option<NerData<'_>>,
    tc: Option<TcData<'_>>,
    config: &PfConfig,
) -> Result<MultiTaskBatches> {
    let (plans, _) = check_data(variant, ner, tc, config)?;
    let sampler = MultiTaskSampler::for_plans(&plans, config.strategy, config.train.seed)?;
    Ok(sampler.batches(plans)?)
}

/// Trains `pf` (from [`PfModel::init`] with the same `variant`) on `batches` (normally
/// [`pf_batches`]): each batch's loss is its family's objective through
/// [`Variant::route`]. The dev metric is as in the [module docs](self).
///
/// # Errors
///
/// As [`pre_finetune`]; [`TrainError::InvalidArgument`] for a batch whose task is not a
/// family of `variant`.
pub fn fit_pf(
    variant: Variant,
    pf: PfModel,
    ner: Option<NerData<'_>>,
    tc: Option<TcData<'_>>,
    config: &PfConfig,
    batches: impl IntoIterator<Item = TaskBatch>,
) -> Result<(PfModel, PfReport)> {
    let (_, dev) = check_data(variant, ner, tc, config)?;
    let families = variant.families();
    let job = Job {
        variant,
        ner,
        tc,
        config,
        dev,
    };
    let mut train = config
        .train
        .clone()
        .with_group_lr(HEADS_LR_GROUP, config.head_lr);
    if pf
        .param_groups()
        .iter()
        .any(|(name, _)| name == ADAPTERS_LR_GROUP)
    {
        train = train.with_group_lr(ADAPTERS_LR_GROUP, config.adapter_lr);
    }
    let mut trainer = Trainer::new(train)
        .with_devices(config.devices.clone())
        .with_param_groups(PfModel::param_groups);
    if let Some(dir) = &config.checkpoints {
        trainer = trainer.with_checkpoints(dir.clone());
    }
    // The family of every micro-batch handed out, in order (the ones a resume skips and a
    // last incomplete step are cut below).
    let mut seen = Vec::new();
    let batches = batches
        .into_iter()
        .inspect(|b: &TaskBatch| seen.push(b.task));
    let (model, fit) = trainer.fit(
        pf,
        batches,
        |m: &PfModel, b: TaskBatch| {
            let family = *families
                .get(b.task)
                .ok_or_else(|| TrainError::InvalidArgument {
                    what: "task batch",
                    message: format!("task {} of {variant:?}'s {families:?}", b.task),
                })?;
            job.loss(m, family, &b.indices, false)
        },
        |m: &PfModel| job.dev_metric(m),
    )?;
    let per_step = config.train.accumulation * trainer.devices().len().max(1);
    let skipped = fit.resumed_from.unwrap_or(0) * per_step;
    let trained = (fit.steps - fit.resumed_from.unwrap_or(0)) * per_step;
    let families = seen
        .into_iter()
        .skip(skipped)
        .take(trained)
        .map(|t| families[t])
        .collect();
    Ok((model, PfReport { fit, families }))
}

/// Pre-finetunes `model` (a plain backbone, on an autodiff device) under `variant`:
/// [`PfModel::init`], then [`fit_pf`] on [`pf_batches`].
///
/// `ner` is required by [`Variant::Ner`], [`Variant::Naive`] and [`Variant::MtpfTpl`], `tc` by
/// [`Variant::Tc`], [`Variant::Naive`] and [`Variant::MtpfTpl`]; a variant ignores the other.
///
/// Returns the best model by the dev metric (see the [module docs](self)) and the report.
///
/// # Errors
///
/// [`TrainError::InvalidArgument`] for a bad configuration, missing or empty data of a
/// family the variant needs; [`TrainError::Adapter`] when the model already has a group of
/// that name; errors of the data, the teacher, the model and [`Trainer::fit`].
pub fn pre_finetune(
    variant: Variant,
    model: AdaptedModel<Lora>,
    ner: Option<NerData<'_>>,
    tc: Option<TcData<'_>>,
    config: &PfConfig,
) -> Result<(PfModel, PfReport)> {
    let batches = pf_batches(variant, ner, tc, config)?;
    let teacher_hidden = ner
        .filter(|_| variant.families().contains(&Family::Ner))
        .map(|n| n.teacher.hidden_size());
    let pf = PfModel::init(variant, model, teacher_hidden, config)?;
    fit_pf(variant, pf, ner, tc, config, batches)
}

fn checkpoint_err(dir: &Path) -> impl FnOnce(CheckpointError) -> TrainError + '_ {
    move |e| match e {
        CheckpointError::Io { path, source } => TrainError::Io { path, source },
        other => TrainError::Format {
            path: dir.to_path_buf(),
            message: other.to_string(),
        },
    }
}

/// Saves the pre-finetuned encoder into `dir` (created if needed): the backbone as a Hugging
/// Face model directory (`config.json`, `model.safetensors`) and every group in PEFT's layout
/// under `dir/groups/<name>`. The objectives' heads are not saved.
///
/// # Errors
///
/// I/O and format errors of the files.
pub fn save_pf(pf: &PfModel, dir: impl AsRef<Path>) -> Result<()> {
    let dir = dir.as_ref();
    let names: Vec<String> = pf.model.group_names().map(str::to_owned).collect();
    for name in &names {
        pf.model.save_group(name, dir.join(GROUPS_DIR).join(name))?;
    }
    pf.model
        .clone()
        .into_backbone()
        .save(dir)
        .map_err(checkpoint_err(dir))
}

/// Loads what [`save_pf`] wrote: the backbone with every group of `dir/groups` (in name
/// order), on `device`. Each group keeps its name, so `model.route("ner")` works as after
/// training.
///
/// # Errors
///
/// I/O and format errors of the files, [`TrainError::Adapter`] for a group that does not fit
/// the backbone.
pub fn load_pf(dir: impl AsRef<Path>, device: &Device) -> Result<AdaptedModel<Lora>> {
    let dir = dir.as_ref();
    let (backbone, _report) = BertModel::load(dir, device).map_err(checkpoint_err(dir))?;
    let mut model = AdaptedModel::<Lora>::new(backbone);
    let groups = dir.join(GROUPS_DIR);
    if groups.is_dir() {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&groups).map_err(crate::error::io_err(&groups))? {
            let entry = entry.map_err(crate::error::io_err(&groups))?;
            if entry.path().is_dir() {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        names.sort();
        for name in names {
            model.load_group(&name, groups.join(&name))?;
        }
    }
    Ok(model)
}
