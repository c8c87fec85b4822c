//! Parameter groups: named sets of a model's parameters that train at their own learning
//! rates, and the relative update of each group over a run.
//!
//! # Groups in the training loop
//!
//! A [`Trainer`](crate::Trainer) learns a model's groups from a function of the model,
//! `Fn(&M) -> NamedGroups`, given with
//! [`Trainer::with_param_groups`](crate::Trainer::with_param_groups); the peak learning rate of
//! each group is in [`TrainConfig::group_learning_rates`](crate::TrainConfig::group_learning_rates).
//! At step `s` a parameter of group `g` trains at `peak_g × factor(s)`, the factor of the run's
//! warm-up and decay ([`LrSchedule::factor`](crate::schedule::LrSchedule::factor)); a parameter
//! of no group the configuration names trains at
//! [`TrainConfig::learning_rate`](crate::TrainConfig::learning_rate)` × factor(s)`.
//!
//! The function is called once per [`fit`](crate::Trainer::fit), on the model `fit` trains:
//! after a checkpoint is resumed, whose module record brings its own parameter ids. Ids
//! gathered from a model before `fit` therefore do not do: the function must read them off the
//! model it is given ([`param_ids`], [`param_ids_where`]).
//!
//! `fit` refuses ([`TrainError::ParamGroup`]):
//! - a group the configuration names that the function does not return, or returns empty;
//! - a parameter in two groups;
//! - a group with an id the model does not have (ids gathered from another model);
//! - two groups of one name.
//!
//! Groups the function returns but the configuration does not name train at the run's
//! `learning_rate`; they still count for the overlap check, and [`relative_updates`] reports
//! them like any group.
//!
//! ```
//! use burn::module::{Module, Param};
//! use burn::tensor::Tensor;
//! use lora_bert_train::groups::{NamedGroups, param_ids, param_ids_where};
//! use lora_bert_train::{TrainConfig, Trainer};
//!
//! #[derive(Module, Debug)]
//! struct Net {
//!     body: Param<Tensor<2>>,
//!     adapter: Param<Tensor<2>>,
//!     head: Param<Tensor<2>>,
//! }
//!
//! fn groups(net: &Net) -> NamedGroups {
//!     vec![
//!         ("backbone".into(), param_ids(&net.body)),
//!         // The same by path (burn's field names joined with dots):
//!         ("adapters".into(), param_ids_where(net, |path| path.starts_with("adapter"))),
//!         ("heads".into(), param_ids(&net.head)),
//!     ]
//! }
//!
//! let config = TrainConfig::new(100)
//!     .with_group_lr("backbone", 2e-5)
//!     .with_group_lr("adapters", 1e-3)
//!     .with_group_lr("heads", 1e-3);
//! let trainer = Trainer::new(config).with_param_groups(groups);
//! # let _ = trainer;
//! ```

use std::collections::{HashMap, HashSet};

use burn::lr_scheduler::module_lr_scheduler::{ModuleLearningRate, ModuleLrScheduler};
use burn::module::{Module, ModuleVisitor, Param, ParamGroup, ParamId};
use burn::optim::ModuleOptimizer;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::{Result, TrainConfig, TrainError};

/// Named groups of parameter ids, what a group function returns
/// ([`Trainer::with_param_groups`](crate::Trainer::with_param_groups)).
pub type NamedGroups = Vec<(String, Vec<ParamId>)>;

/// What splits a model's parameters into named groups when
/// [`Trainer::fit`](crate::Trainer::fit) starts. Implemented by [`NoParamGroups`] (no group)
/// and by every `Fn(&M) -> NamedGroups`; see the [module docs](self).
pub trait GroupParams<M> {
    /// The groups of `model`'s parameters.
    fn param_groups(&self, model: &M) -> NamedGroups;
}

/// The grouping of a [`Trainer`](crate::Trainer) built without
/// [`with_param_groups`](crate::Trainer::with_param_groups): no group, every parameter at
/// [`TrainConfig::learning_rate`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoParamGroups;

impl<M> GroupParams<M> for NoParamGroups {
    fn param_groups(&self, _model: &M) -> NamedGroups {
        Vec::new()
    }
}

impl<M, F> GroupParams<M> for F
where
    F: Fn(&M) -> NamedGroups,
{
    fn param_groups(&self, model: &M) -> NamedGroups {
        self(model)
    }
}

/// The ids of every float parameter of `module` (frozen ones included), in visiting order.
pub fn param_ids<M: Module>(module: &M) -> Vec<ParamId> {
    param_ids_where(module, |_| true)
}

/// The ids of the float parameters of `module` whose path `keep` accepts.
///
/// A path is the field names from `module` down to the parameter joined with dots
/// (`bert.encoder.layers.0.attention.query.weight`; a `Vec` element is its index), the path
/// burn's optimizer and [`ParamGroup`]'s path matchers see; a parameter that is `module`
/// itself has the empty path.
pub fn param_ids_where<M: Module>(module: &M, mut keep: impl FnMut(&str) -> bool) -> Vec<ParamId> {
    float_params(module)
        .into_iter()
        .filter(|p| keep(&p.path))
        .map(|p| p.id)
        .collect()
}

/// One float parameter of a module.
struct ParamInfo {
    id: ParamId,
    path: String,
    rank: usize,
}

fn float_params<M: Module>(module: &M) -> Vec<ParamInfo> {
    #[derive(Default)]
    struct Collect {
        path: Vec<String>,
        found: Vec<ParamInfo>,
    }
    impl ModuleVisitor for Collect {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_owned());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.found.push(ParamInfo {
                id: param.id,
                path: self.path.join("."),
                rank: D,
            });
        }
    }
    let mut collect = Collect::default();
    module.visit(&mut collect);
    collect.found
}

/// How much one group of parameters moved over a run; see [`relative_updates`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupUpdate {
    /// The group's name.
    pub name: String,
    /// Parameter tensors in the group.
    pub params: usize,
    /// `‖W_before‖_F`, over the group's parameters concatenated.
    pub before_norm: f64,
    /// `‖W_after − W_before‖_F`, over the group's parameters concatenated.
    pub delta_norm: f64,
    /// `delta_norm / before_norm`; `None` when the group starts at zero (a LoRA `B`), whose
    /// update is `delta_norm` itself.
    pub relative: Option<f64>,
}

/// The relative update `‖ΔW‖_F / ‖W_before‖_F` of every group, each group's parameters taken
/// together as one vector, with `‖ΔW‖_F` itself (the measure of a group that starts at zero,
/// such as LoRA's `B` matrices). Sums are in `f64`.
///
/// `before` and `after` are two snapshots of one model: a clone taken before
/// [`Trainer::fit`](crate::Trainer::fit) and the model it returns keep their parameter ids.
/// `groups` is typically what the group function returns for `before`.
///
/// ```
/// use burn::module::{Param, ParamId};
/// use burn::tensor::{Device, Tensor, TensorData};
/// use lora_bert_train::groups::{param_ids, relative_updates};
///
/// let device = Device::default();
/// let id = ParamId::new();
/// let w = |v: Vec<f32>| Param::initialized(id, Tensor::<1>::from_data(TensorData::new(v, [2]), &device));
/// let (before, after) = (w(vec![3.0, 4.0]), w(vec![3.0, 4.5]));
/// let updates = relative_updates(&before, &after, &[("w".into(), param_ids(&before))]).unwrap();
/// assert_eq!(updates[0].delta_norm, 0.5);
/// assert_eq!(updates[0].relative, Some(0.1));
/// ```
///
/// # Errors
///
/// [`TrainError::ParamGroup`] for an id that is not a float parameter of both snapshots;
/// [`TrainError::Shape`] for a parameter whose shape differs between them.
pub fn relative_updates<M: Module>(
    before: &M,
    after: &M,
    groups: &[(String, Vec<ParamId>)],
) -> Result<Vec<GroupUpdate>> {
    let wanted: HashSet<ParamId> = groups
        .iter()
        .flat_map(|(_, ids)| ids.iter().copied())
        .collect();
    let mut handles = Handles {
        wanted: &wanted,
        found: HashMap::new(),
    };
    before.visit(&mut handles);
    let mut sums = Sums {
        before: handles.found,
        found: HashMap::new(),
        error: None,
    };
    after.visit(&mut sums);
    if let Some(e) = sums.error {
        return Err(e);
    }
    groups
        .iter()
        .map(|(name, ids)| {
            let mut seen = HashSet::new();
            let (mut before_sq, mut delta_sq) = (0.0, 0.0);
            for id in ids.iter().filter(|id| seen.insert(**id)) {
                let &(b, d) = sums.found.get(id).ok_or_else(|| {
                    let side = if sums.before.contains_key(id) {
                        "the second snapshot (after)"
                    } else {
                        "the first snapshot (before)"
                    };
                    TrainError::ParamGroup {
                        group: name.clone(),
                        message: format!(
                            "parameter id {} is no float parameter of {side}",
                            id.val()
                        ),
                    }
                })?;
                before_sq += b;
                delta_sq += d;
            }
            let (before_norm, delta_norm) = (before_sq.sqrt(), delta_sq.sqrt());
            Ok(GroupUpdate {
                name: name.clone(),
                params: seen.len(),
                before_norm,
                delta_norm,
                relative: (before_norm > 0.0).then(|| delta_norm / before_norm),
            })
        })
        .collect()
}

/// Flattened handles (no copy) and shapes of the wanted parameters of a snapshot.
struct Handles<'a> {
    wanted: &'a HashSet<ParamId>,
    found: HashMap<ParamId, (Vec<usize>, Tensor<1>)>,
}

impl ModuleVisitor for Handles<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if self.wanted.contains(&param.id) {
            let value = param.val().detach();
            let dims = value.dims().to_vec();
            let flat = value.reshape([dims.iter().product::<usize>()]);
            self.found.insert(param.id, (dims, flat));
        }
    }
}

/// `(‖W_before‖², ‖W_after − W_before‖²)` of every parameter of `before` met in the second
/// snapshot, one parameter's values on the host at a time.
struct Sums {
    before: HashMap<ParamId, (Vec<usize>, Tensor<1>)>,
    found: HashMap<ParamId, (f64, f64)>,
    error: Option<TrainError>,
}

impl ModuleVisitor for Sums {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let Some((dims, before)) = self.before.get(&param.id) else {
            return;
        };
        if self.error.is_some() || self.found.contains_key(&param.id) {
            return;
        }
        let after = param.val().detach();
        if after.dims().as_slice() != dims.as_slice() {
            self.error = Some(TrainError::Shape {
                what: format!("parameter {} before and after", param.id.val()),
                expected: dims.clone(),
                found: after.dims().to_vec(),
            });
            return;
        }
        let b = before.clone().into_data();
        let a = after.into_data();
        let (mut before_sq, mut delta_sq) = (0.0, 0.0);
        for (x, y) in b.iter::<f64>().zip(a.iter::<f64>()) {
            before_sq += x * x;
            delta_sq += (y - x) * (y - x);
        }
        self.found.insert(param.id, (before_sq, delta_sq));
    }
}

/// The groups of a run as the optimizer uses them: the learning-rate groups the configuration
/// names, and the 1-D parameters spared weight decay.
#[derive(Debug, Clone)]
pub(crate) struct GroupPlan {
    /// Every learning-rate group of the configuration with its peak, in name order.
    rates: Vec<(ParamGroup, f64)>,
    /// Parameters that train without weight decay.
    no_decay: Vec<ParamId>,
}

impl GroupPlan {
    /// Checks `groups` against `model` and `config` and plans the optimizer.
    pub(crate) fn new<M: Module>(
        config: &TrainConfig,
        model: &M,
        groups: NamedGroups,
    ) -> Result<Self> {
        let params = float_params(model);
        let path_of: HashMap<ParamId, &str> =
            params.iter().map(|p| (p.id, p.path.as_str())).collect();
        let mut owner: HashMap<ParamId, &str> = HashMap::new();
        let mut members: HashMap<&str, Vec<ParamId>> = HashMap::new();
        for (name, ids) in &groups {
            let err = |message: String| TrainError::ParamGroup {
                group: name.clone(),
                message,
            };
            if members.contains_key(name.as_str()) {
                return Err(err(
                    "the group function returns two groups of this name".into()
                ));
            }
            let unknown = ids.iter().filter(|id| !path_of.contains_key(id)).count();
            if unknown > 0 {
                return Err(err(format!(
                    "{unknown} of its {} parameter ids are no float parameter of the model \
                     (ids gathered from another model, or before a resume? the group function \
                     must read them off the model it is given)",
                    ids.len()
                )));
            }
            let mut kept = Vec::with_capacity(ids.len());
            for &id in ids {
                match owner.get(&id) {
                    Some(other) if *other == name.as_str() => {}
                    Some(other) => {
                        return Err(err(format!(
                            "parameter `{}` is also in group {other:?}",
                            path_of[&id]
                        )));
                    }
                    None => {
                        owner.insert(id, name.as_str());
                        kept.push(id);
                    }
                }
            }
            members.insert(name.as_str(), kept);
        }
        let mut rates = Vec::with_capacity(config.group_learning_rates.len());
        for (name, &peak) in &config.group_learning_rates {
            match members.get(name.as_str()) {
                Some(ids) if !ids.is_empty() => {
                    rates.push((ParamGroup::from_ids(ids.clone()), peak));
                }
                found => {
                    let mut known: Vec<&str> = members.keys().copied().collect();
                    known.sort_unstable();
                    return Err(TrainError::ParamGroup {
                        group: name.clone(),
                        message: format!(
                            "the configuration sets its learning rate, but {} (the groups of the \
                             model: {known:?})",
                            if found.is_some() {
                                "the group has no parameter"
                            } else {
                                "there is no such group"
                            }
                        ),
                    });
                }
            }
        }
        let no_decay = if config.no_decay_1d && config.weight_decay > 0.0 {
            params
                .iter()
                .filter(|p| p.rank == 1)
                .map(|p| p.id)
                .collect()
        } else {
            Vec::new()
        };
        Ok(Self { rates, no_decay })
    }

    /// The learning rate of every parameter at a step of schedule factor `factor`: a group's
    /// peak × `factor`, `base` (the run's rate at that step) outside the groups.
    pub(crate) fn learning_rates(&self, base: f64, factor: f64) -> ModuleLearningRate {
        if self.rates.is_empty() {
            return base.into();
        }
        let mut scheduler = ModuleLrScheduler::new(base);
        for (group, peak) in &self.rates {
            scheduler = scheduler.with_group(group.clone(), peak * factor);
        }
        scheduler.step()
    }

    /// AdamW with the configuration's decay, and without it on the no-decay parameters.
    pub(crate) fn optimizer(&self, config: &TrainConfig) -> ModuleOptimizer {
        let optim = config.adamw(config.weight_decay).init();
        if self.no_decay.is_empty() {
            return optim;
        }
        optim.with_group(
            ParamGroup::from_ids(self.no_decay.clone()),
            config.adamw(0.0).build(),
            None,
        )
    }
}
