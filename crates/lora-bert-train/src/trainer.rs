//! The training loop every regime runs on: AdamW, warm-up then decay, global-norm clipping,
//! gradient accumulation, evaluation every N steps, early stopping on the dev metric, the best
//! model kept, seeded dropout, and checkpoints a killed run resumes from exactly; parameter
//! groups with their own learning rates ([`crate::groups`]) and no weight decay on 1-D
//! parameters.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, CheckpointDir, Evaluation, TrainerState};
use crate::clip::clip_global_norm;
use crate::groups::{GroupParams, GroupPlan, NamedGroups, NoParamGroups};
use crate::progress::StepProgress;
use crate::schedule::{Decay, LrSchedule};
use crate::{Result, TrainError};

/// Hyper-parameters of a run. The defaults follow the usual BERT fine-tuning recipe.
///
/// A checkpoint remembers the configuration of its run, and a resume with another one is
/// refused, naming the settings that differ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Optimizer steps of the run.
    pub max_steps: usize,
    /// Peak learning rate of the parameters in no group of
    /// [`group_learning_rates`](Self::group_learning_rates) (default 5e-5).
    pub learning_rate: f64,
    /// Peak learning rate of each named parameter group (default none). The trainer's group
    /// function ([`Trainer::with_param_groups`]) says which parameters a name stands for;
    /// every group named here must exist and hold parameters. The warm-up and decay apply to
    /// each peak: at step `s` a group trains at `peak × factor(s)`
    /// ([`LrSchedule::factor`]). See [`crate::groups`].
    #[serde(default)]
    pub group_learning_rates: BTreeMap<String, f64>,
    /// AdamW decoupled weight decay (default 0.01).
    pub weight_decay: f64,
    /// No weight decay on 1-D parameters: biases, LayerNorm gamma and beta (default `true`, the
    /// BERT recipe's rule). Runs before this option decayed every parameter, so the default
    /// changes their updates; a checkpoint written before it reads back as `false`, and a
    /// resume of it with the default is refused.
    #[serde(default)]
    pub no_decay_1d: bool,
    /// AdamW `beta_1`, `beta_2`, `epsilon` (default 0.9, 0.999, 1e-8, PyTorch's).
    pub adam: (f32, f32, f32),
    /// Steps of linear warm-up (default 0).
    pub warmup_steps: usize,
    /// Decay after warm-up (default linear).
    pub decay: Decay,
    /// Global gradient-norm clipping (default `Some(1.0)`).
    pub max_grad_norm: Option<f64>,
    /// Micro-batches per optimizer step and device; their losses are averaged (default 1).
    pub accumulation: usize,
    /// Evaluate every this many steps (and at the end); `None`: only at the end.
    pub eval_every: Option<usize>,
    /// Stop after this many evaluations without a better dev metric; `None`: never.
    pub patience: Option<usize>,
    /// Checkpoint every this many steps when a checkpoint folder is set; `None`: at every
    /// evaluation.
    pub checkpoint_every: Option<usize>,
    /// Seed of dropout (the device is reseeded at every micro-batch from it).
    pub seed: u64,
    /// Show progress (0: never): a bar with loss, throughput and ETA when standard error is
    /// a terminal, otherwise a line every this many steps.
    pub log_every: usize,
}

impl TrainConfig {
    /// A configuration of `max_steps` steps with the defaults.
    pub fn new(max_steps: usize) -> Self {
        Self {
            max_steps,
            learning_rate: 5e-5,
            group_learning_rates: BTreeMap::new(),
            weight_decay: 0.01,
            no_decay_1d: true,
            adam: (0.9, 0.999, 1e-8),
            warmup_steps: 0,
            decay: Decay::Linear,
            max_grad_norm: Some(1.0),
            accumulation: 1,
            eval_every: None,
            patience: None,
            checkpoint_every: None,
            seed: 0,
            log_every: 0,
        }
    }

    /// This configuration with peak learning rate `lr` for the parameter group `name`
    /// ([`group_learning_rates`](Self::group_learning_rates)); replaces an earlier rate of
    /// that group.
    ///
    /// ```
    /// # use lora_bert_train::TrainConfig;
    /// let config = TrainConfig::new(100).with_group_lr("backbone", 2e-5).with_group_lr("heads", 1e-3);
    /// assert_eq!(config.group_learning_rates["heads"], 1e-3);
    /// ```
    pub fn with_group_lr(mut self, name: impl Into<String>, lr: f64) -> Self {
        self.group_learning_rates.insert(name.into(), lr);
        self
    }

    /// The learning-rate schedule of the parameters in no named group; a group's schedule is
    /// the same with its own peak.
    pub fn schedule(&self) -> LrSchedule {
        LrSchedule {
            peak: self.learning_rate,
            warmup_steps: self.warmup_steps,
            total_steps: self.max_steps,
            decay: self.decay,
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |what, message: &str| {
            Err(TrainError::InvalidArgument {
                what,
                message: message.to_owned(),
            })
        };
        if self.max_steps == 0 {
            return bad("max_steps", "must be at least 1");
        }
        if self.accumulation == 0 {
            return bad("accumulation", "must be at least 1");
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad("learning_rate", "must be finite and > 0");
        }
        for (name, lr) in &self.group_learning_rates {
            if name.is_empty() {
                return bad("group_learning_rates", "a group name is empty");
            }
            if !(lr.is_finite() && *lr > 0.0) {
                return bad(
                    "group_learning_rates",
                    &format!("the rate of group {name:?} is {lr}; it must be finite and > 0"),
                );
            }
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad("weight_decay", "must be finite and >= 0");
        }
        if self
            .max_grad_norm
            .is_some_and(|n| !(n.is_finite() && n > 0.0))
        {
            return bad("max_grad_norm", "must be finite and > 0");
        }
        if self.eval_every == Some(0) || self.checkpoint_every == Some(0) {
            return bad("eval_every/checkpoint_every", "must be at least 1");
        }
        Ok(())
    }

    /// AdamW with this configuration's moments and `weight_decay`.
    pub(crate) fn adamw(&self, weight_decay: f64) -> AdamWConfig {
        AdamWConfig::new()
            .with_beta_1(self.adam.0)
            .with_beta_2(self.adam.1)
            .with_epsilon(self.adam.2)
            .with_weight_decay(weight_decay as f32)
    }

    /// Every setting where `self` and `other` differ: its name (`name.key` inside maps such as
    /// the group learning rates), `self`'s value and `other`'s as JSON (`none` for a missing
    /// key).
    pub(crate) fn differences(&self, other: &Self) -> Vec<(String, String, String)> {
        fn walk(
            path: String,
            a: Option<&serde_json::Value>,
            b: Option<&serde_json::Value>,
            out: &mut Vec<(String, String, String)>,
        ) {
            use serde_json::Value;
            match (a, b) {
                (Some(Value::Object(x)), Some(Value::Object(y))) => {
                    let keys: std::collections::BTreeSet<&String> =
                        x.keys().chain(y.keys()).collect();
                    for key in keys {
                        let sub = if path.is_empty() {
                            key.clone()
                        } else {
                            format!("{path}.{key}")
                        };
                        walk(sub, x.get(key), y.get(key), out);
                    }
                }
                (a, b) if a != b => {
                    let show = |v: Option<&Value>| v.map_or("none".to_owned(), Value::to_string);
                    out.push((path, show(a), show(b)));
                }
                _ => {}
            }
        }
        let (a, b) = (serde_json::to_value(self), serde_json::to_value(other));
        let mut out = Vec::new();
        if let (Ok(a), Ok(b)) = (a, b) {
            walk(String::new(), Some(&a), Some(&b), &mut out);
        }
        out
    }
}

/// What [`Trainer::fit`] returns besides the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitReport {
    /// Optimizer steps taken in all (resumed runs included).
    pub steps: usize,
    /// The step a checkpoint was resumed from, if any.
    pub resumed_from: Option<usize>,
    /// Best dev metric and its step (when evaluations ran).
    pub best: Option<(f64, usize)>,
    /// `true` when early stopping ended the run before `max_steps`.
    pub stopped_early: bool,
    /// Every evaluation.
    pub history: Vec<Evaluation>,
    /// Loss of every optimizer step.
    pub losses: Vec<f64>,
}

/// Runs training loops; see [`Trainer::fit`].
///
/// `G` is how the model's parameters split into learning-rate groups:
/// [`NoParamGroups`] unless [`with_param_groups`](Self::with_param_groups) sets a function.
#[derive(Clone)]
pub struct Trainer<G = NoParamGroups> {
    config: TrainConfig,
    checkpoints: Option<PathBuf>,
    devices: Vec<Device>,
    groups: G,
}

impl<G> fmt::Debug for Trainer<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trainer")
            .field("config", &self.config)
            .field("checkpoints", &self.checkpoints)
            .field("devices", &self.devices)
            .field("groups", &std::any::type_name::<G>())
            .finish()
    }
}

impl Trainer {
    /// A trainer with `config`, without parameter groups.
    pub fn new(config: TrainConfig) -> Self {
        Self {
            config,
            checkpoints: None,
            devices: Vec::new(),
            groups: NoParamGroups,
        }
    }
}

impl<G> Trainer<G> {
    /// Splits the model's parameters into named groups with `groups`, for the learning rates
    /// of [`TrainConfig::group_learning_rates`] (see [`crate::groups`] for the rules).
    ///
    /// [`fit`](Self::fit) calls `groups` once, on the model it trains, after resuming a
    /// checkpoint (whose module record brings its own parameter ids): `groups` must read the
    /// ids off the model it is given, with [`param_ids`](crate::groups::param_ids) or
    /// [`param_ids_where`](crate::groups::param_ids_where), not return ids gathered earlier.
    /// Groups the configuration does not name train at [`TrainConfig::learning_rate`].
    ///
    /// ```
    /// use burn::module::{Module, Param};
    /// use burn::tensor::Tensor;
    /// use lora_bert_train::groups::param_ids;
    /// use lora_bert_train::{TrainConfig, Trainer};
    ///
    /// #[derive(Module, Debug)]
    /// struct Net {
    ///     body: Param<Tensor<2>>,
    ///     head: Param<Tensor<2>>,
    /// }
    ///
    /// // The body at 5e-5 (the run's `learning_rate`), the head at 1e-3.
    /// let trainer = Trainer::new(TrainConfig::new(100).with_group_lr("heads", 1e-3))
    ///     .with_param_groups(|net: &Net| vec![("heads".to_owned(), param_ids(&net.head))]);
    /// # let _ = trainer;
    /// ```
    pub fn with_param_groups<M, F>(self, groups: F) -> Trainer<F>
    where
        F: Fn(&M) -> NamedGroups,
    {
        Trainer {
            config: self.config,
            checkpoints: self.checkpoints,
            devices: self.devices,
            groups,
        }
    }

    /// Trains data-parallel on `devices` (made autodiff devices if they are not), burn's
    /// multi-device scheme with the optimizer on the model's device: every step, the model
    /// is forked onto each device, each device runs `accumulation` micro-batches of the step
    /// in its own thread (micro-batch `i` of the step on device `i mod n`), the gradients
    /// are moved to the model's device ([`GradientsParams::to_device`]) and summed
    /// ([`GradientsAccumulator`]), then clipped and applied once. A step thus consumes
    /// `accumulation × n` micro-batches and equals a one-device step with `n` times the
    /// accumulation (up to float summation order).
    ///
    /// The model's device may be one of `devices`; the same device twice runs two threads
    /// on it. Dropout is reseeded per micro-batch as on one device, but the CPU backends
    /// share one random generator, so with dropout on CPU the run is not reproducible;
    /// each GPU has its own. On several GPUs use one device per GPU
    /// (`Device::cuda(i)`-style devices of the same backend); burn's collective
    /// all-reduce (DDP) needs CUDA/NCCL, and this scheme does not.
    ///
    /// ```
    /// # use lora_bert_train::{TrainConfig, Trainer};
    /// # use burn::tensor::Device;
    /// let trainer = Trainer::new(TrainConfig::new(100)).with_devices([Device::default(), Device::default()]);
    /// assert_eq!(trainer.devices().len(), 2);
    /// ```
    pub fn with_devices(mut self, devices: impl IntoIterator<Item = Device>) -> Self {
        self.devices = devices
            .into_iter()
            .map(|d| if d.is_autodiff() { d } else { d.autodiff() })
            .collect();
        self
    }

    /// The data-parallel devices ([`with_devices`](Self::with_devices)); empty: the model's
    /// own device only.
    pub fn devices(&self) -> &[Device] {
        &self.devices
    }

    /// Model replicas per step: the number of data-parallel devices, at least 1.
    fn replicas(&self) -> usize {
        self.devices.len().max(1)
    }

    /// Keeps checkpoints, the best model and an evaluation log in `dir`, and resumes from the
    /// latest checkpoint found there.
    pub fn with_checkpoints(mut self, dir: impl Into<PathBuf>) -> Self {
        self.checkpoints = Some(dir.into());
        self
    }

    /// The configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// Trains `model` (its parameters on an autodiff device; frozen ones stay frozen).
    ///
    /// - `batches` yields micro-batches in order: step `s` consumes items
    ///   `s·k .. (s+1)·k` with `k = accumulation × devices` (one device unless
    ///   [`with_devices`](Self::with_devices)). They should be cheap descriptions (indices,
    ///   task ids); `loss` turns one into a scalar loss on the model it is given, on that
    ///   model's device (a replica's, when data-parallel; `loss` may run on several threads at
    ///   once then). When resuming at step `s` the first `s·k` items are skipped, so a
    ///   deterministic iterator (a
    ///   [`BatchPlan`](lora_bert_data::batch::BatchPlan) epoch sequence, the
    ///   [`MultiTaskSampler`](lora_bert_data::sampler::MultiTaskSampler)'s batches) replays
    ///   exactly. The run ends early if it runs out.
    /// - `evaluate` returns the dev metric (higher is better) of a model in validation mode.
    ///
    /// Returns the best model when evaluations ran (the last one otherwise) and the report.
    ///
    /// The optimizer is AdamW at the schedule's rate, per parameter group when
    /// [`with_param_groups`](Self::with_param_groups) set groups, without weight decay on 1-D
    /// parameters when [`TrainConfig::no_decay_1d`] is set.
    ///
    /// Dropout is reseeded from `(seed, step, micro-batch)` before every micro-batch, which
    /// is what makes a resumed run exact. The CPU backends keep one random generator per
    /// process: exactness holds when nothing else draws from it while `fit` runs (one
    /// training loop per process, or tests that train one at a time).
    ///
    /// # Errors
    ///
    /// [`TrainError::NonFiniteLoss`] when a loss is NaN or infinite (nothing is written for
    /// that step; the latest checkpoint stays as it was), errors of `loss` and `evaluate`,
    /// [`TrainError::InvalidArgument`] for a bad configuration or a checkpoint of another
    /// configuration (the message names the settings that differ) or device count,
    /// [`TrainError::ParamGroup`] for parameter groups that do not fit the model or the
    /// configuration, checkpoint I/O errors.
    pub fn fit<M, B>(
        &self,
        model: M,
        batches: impl IntoIterator<Item = B>,
        loss: impl Fn(&M, B) -> Result<Tensor<1>> + Sync,
        mut evaluate: impl FnMut(&M) -> Result<f64>,
    ) -> Result<(M, FitReport)>
    where
        M: Module + Clone,
        B: Send,
        G: GroupParams<M>,
    {
        let config = &self.config;
        config.validate()?;
        let replicas = self.replicas();
        let per_step = config.accumulation * replicas;
        let schedule = config.schedule();
        let dir = self
            .checkpoints
            .as_ref()
            .map(CheckpointDir::new)
            .transpose()?;

        let mut model = model;
        let mut state = TrainerState {
            config: config.clone(),
            step: 0,
            best: None,
            evaluations_since_best: 0,
            history: Vec::new(),
            losses: Vec::new(),
            replicas,
        };
        let mut best_model: Option<M> = None;
        let mut resumed_from = None;
        let mut resume = None;
        if let Some(dir) = &dir
            && let Some(latest) = dir.latest()?
        {
            let s = checkpoint::load_state(&latest)?;
            if s.config != *config {
                return Err(another_configuration(&latest, &s.config, config));
            }
            if s.replicas != replicas {
                return Err(TrainError::InvalidArgument {
                    what: "checkpoint",
                    message: format!(
                        "{} was written by a run on {} device(s), this one has {replicas}",
                        latest.display(),
                        s.replicas
                    ),
                });
            }
            model = checkpoint::load_model(&latest.join("model.bpk"), model)?;
            state = s;
            if state.best.is_some() {
                let path = dir.root().join("best").join("model.bpk");
                best_model = Some(checkpoint::load_model(&path, model.clone())?);
            }
            resumed_from = Some(state.step);
            resume = Some(latest);
        }
        // The groups of the model as it trains: a resumed model carries the record's ids.
        let plan = GroupPlan::new(config, &model, self.groups.param_groups(&model))?;
        let mut optim = plan.optimizer(config);
        if let Some(latest) = &resume {
            optim = checkpoint::load_optimizer(latest, optim)?;
        }

        let mut batches = batches.into_iter().skip(state.step * per_step);
        let mut progress = StepProgress::new(config.log_every, state.step, config.max_steps);
        let mut since_eval = Vec::new();
        let mut stopped_early = false;
        while state.step < config.max_steps {
            let step = state.step;
            let lr = schedule.lr(step);
            let lrs = plan.learning_rates(lr, schedule.factor(step));
            let items: Vec<B> = batches.by_ref().take(per_step).collect();
            if items.len() < per_step {
                break; // out of batches
            }
            let (mut grads, step_loss) = if self.devices.is_empty() {
                self.step_here(&model, items, &loss, step)?
            } else {
                self.step_parallel(&model, items, &loss, step)?
            };
            if let Some(max_norm) = config.max_grad_norm {
                clip_global_norm(&model, &mut grads, max_norm);
            }
            model = optim.step(lrs, model, grads);
            state.step += 1;
            state.losses.push(step_loss);
            since_eval.push(step_loss);
            progress.step(state.step, step_loss, lr);

            let last = state.step == config.max_steps;
            let eval_now = last
                || config
                    .eval_every
                    .is_some_and(|n| state.step.is_multiple_of(n));
            if eval_now {
                let metric = evaluate(&model.valid())?;
                let evaluation = Evaluation {
                    step: state.step,
                    metric,
                    train_loss: since_eval.iter().sum::<f64>() / since_eval.len().max(1) as f64,
                    lr,
                };
                since_eval.clear();
                if let Some(dir) = &dir {
                    dir.log(&evaluation)?;
                }
                progress.evaluation(state.step, metric);
                state.history.push(evaluation);
                if state.best.is_none_or(|(b, _)| metric > b) {
                    state.best = Some((metric, state.step));
                    state.evaluations_since_best = 0;
                    best_model = Some(model.clone());
                    if let Some(dir) = &dir {
                        dir.save_best(&model, &state)?;
                    }
                } else {
                    state.evaluations_since_best += 1;
                }
                stopped_early = config
                    .patience
                    .is_some_and(|p| state.evaluations_since_best >= p)
                    && !last;
            }
            let checkpoint_now = match config.checkpoint_every {
                Some(n) => state.step.is_multiple_of(n),
                None => eval_now,
            };
            if let Some(dir) = &dir
                && (checkpoint_now || last || stopped_early)
            {
                dir.save(&model, &optim, &state)?;
            }
            if stopped_early {
                break;
            }
        }
        progress.finish(state.step);
        let report = FitReport {
            steps: state.step,
            resumed_from,
            best: state.best,
            stopped_early,
            history: state.history,
            losses: state.losses,
        };
        Ok((best_model.unwrap_or(model), report))
    }
}

/// The error of a resume whose checkpoint was written with `theirs`, naming every setting
/// that differs from `ours`.
fn another_configuration(
    latest: &std::path::Path,
    theirs: &TrainConfig,
    ours: &TrainConfig,
) -> TrainError {
    let differences: Vec<String> = theirs
        .differences(ours)
        .into_iter()
        .map(|(name, there, here)| format!("{name}: {there} in the checkpoint, {here} in this run"))
        .collect();
    let differences = if differences.is_empty() {
        String::new()
    } else {
        format!(" ({})", differences.join(", "))
    };
    TrainError::InvalidArgument {
        what: "checkpoint",
        message: format!(
            "{} was written with another configuration{differences}; use a new folder or the same configuration",
            latest.display()
        ),
    }
}

impl<G> Trainer<G> {
    /// The gradients and loss of one step on the model's own device, micro-batch by
    /// micro-batch.
    fn step_here<M: Module, B>(
        &self,
        model: &M,
        items: Vec<B>,
        loss: &impl Fn(&M, B) -> Result<Tensor<1>>,
        step: usize,
    ) -> Result<(GradientsParams, f64)> {
        let device = model.devices().into_iter().next();
        let mut accumulator = GradientsAccumulator::<M>::new();
        let scale = items.len();
        let mut total = 0.0;
        for (micro, batch) in items.into_iter().enumerate() {
            if let Some(device) = &device {
                device.seed(mix(self.config.seed, step as u64, micro as u64));
            }
            let (grads, value) = micro_step(model, batch, loss, step, scale)?;
            total += value;
            accumulator.accumulate(model, grads);
        }
        Ok((accumulator.grads(), total))
    }

    /// The gradients and loss of one step spread over the data-parallel devices: one
    /// replica and one thread per device, gradients summed on the model's device.
    fn step_parallel<M: Module, B: Send>(
        &self,
        model: &M,
        items: Vec<B>,
        loss: &(impl Fn(&M, B) -> Result<Tensor<1>> + Sync),
        step: usize,
    ) -> Result<(GradientsParams, f64)> {
        let n = self.devices.len();
        let scale = items.len();
        let mut shares: Vec<Vec<(usize, B)>> = (0..n).map(|_| Vec::new()).collect();
        for (micro, batch) in items.into_iter().enumerate() {
            shares[micro % n].push((micro, batch));
        }
        let seed = self.config.seed;
        let results: Vec<Result<(GradientsParams, f64)>> = std::thread::scope(|scope| {
            let workers: Vec<_> = self
                .devices
                .iter()
                .zip(shares)
                .map(|(device, share)| {
                    let replica = model.clone().fork(device);
                    scope.spawn(move || {
                        let mut accumulator = GradientsAccumulator::<M>::new();
                        let mut total = 0.0;
                        for (micro, batch) in share {
                            device.seed(mix(seed, step as u64, micro as u64));
                            let (grads, value) = micro_step(&replica, batch, loss, step, scale)?;
                            total += value;
                            accumulator.accumulate(&replica, grads);
                        }
                        Ok((accumulator.grads(), total))
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        let main = model.devices().into_iter().next();
        let mut accumulator = GradientsAccumulator::<M>::new();
        let mut total = 0.0;
        for result in results {
            let (grads, value) = result?;
            let grads = match &main {
                Some(device) => grads.to_device(device, model),
                None => grads,
            };
            accumulator.accumulate(model, grads);
            total += value;
        }
        Ok((accumulator.grads(), total))
    }
}

/// The gradients and scaled loss (`loss / scale`) of one micro-batch; a NaN or infinite loss
/// is an error before anything is applied.
fn micro_step<M: Module, B>(
    model: &M,
    batch: B,
    loss: &impl Fn(&M, B) -> Result<Tensor<1>>,
    step: usize,
    scale: usize,
) -> Result<(GradientsParams, f64)> {
    let value = loss(model, batch)?.div_scalar(scale as f64);
    let scalar: f32 = value.clone().into_scalar();
    if !scalar.is_finite() {
        return Err(TrainError::NonFiniteLoss {
            step,
            value: f64::from(scalar) * scale as f64,
        });
    }
    let grads = GradientsParams::from_grads(value.backward(), model);
    Ok((grads, f64::from(scalar)))
}

/// SplitMix64 of the run seed, step and micro-batch: the dropout seed of one micro-batch.
fn mix(seed: u64, step: u64, micro: u64) -> u64 {
    let mut z =
        seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ micro.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
