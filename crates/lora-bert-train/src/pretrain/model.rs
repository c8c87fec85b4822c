//! The model being pre-finetuned, and the two families' objectives on it.

use std::collections::HashSet;

use burn::module::{Module, ParamId};
use burn::tensor::{Device, Int, Tensor, TensorData};
use lora_bert_adapters::{AdaptedModel, Lora};
use lora_bert_data::batch::EncodedPairs;
use lora_bert_data::token::{TokenBatch, TokenExample};
use lora_bert_encoder::Route;

use super::{ADAPTERS_LR_GROUP, HEADS_LR_GROUP, NerSet, PfConfig, SoftLabels, Variant};
use crate::groups::{NamedGroups, param_ids};
use crate::heads::{ProjectionHead, ProjectionHeadConfig};
use crate::input::{ToBertInput, pair_inputs};
use crate::loss::{DistillProjection, distill_states, info_nce, kl_words};
use crate::pooling::{Pooling, WordMap, word_pool};
use crate::teacher::Teacher;
use crate::{Result, TrainError};

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
    ///
    /// [`pre_finetune`]: super::pre_finetune
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
