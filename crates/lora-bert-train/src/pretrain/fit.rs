//! The pre-finetuning run: the families' batches, the dev metric, and the fit.

use burn::tensor::Tensor;
use lora_bert_adapters::{AdaptedModel, Lora};
use lora_bert_data::batch::{BatchConfig, BatchPlan};
use lora_bert_data::sampler::{MultiTaskBatches, MultiTaskSampler, TaskBatch};
use lora_bert_data::token::TokenExample;

use super::{
    ADAPTERS_LR_GROUP, Family, HEADS_LR_GROUP, NerData, PfConfig, PfModel, TcData, Variant,
};
use crate::trainer::{FitReport, Trainer};
use crate::{Result, TrainError};

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
/// [`Variant::route`]. The dev metric is as in the [module docs](super).
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
/// Returns the best model by the dev metric (see the [module docs](super)) and the report.
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
