//! A backbone with named adapter groups: routing, training state, merging and files.

use std::fmt;
use std::path::Path;

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Device, Tensor};
use lora_bert_encoder::{BertInput, BertModel, BertOutput, NoAdapter, ProjectionSite, Route};

use crate::error::AdapterError;
use crate::groups::SiteGroups;
use crate::peft::{self, CONFIG_FILE, PEFT_PREFIX, TensorFile, WEIGHTS_FILE};
use crate::scheme::{Adapter, AdapterConfig};

/// A registered group.
#[derive(Debug, Clone)]
pub struct GroupInfo<C> {
    /// The group's name (`"ner"`, `"tc"`, an app's name).
    pub name: String,
    /// Its configuration, with layer selections resolved against the model.
    pub config: C,
    /// The projections it covers, in forward order.
    pub sites: Vec<ProjectionSite>,
    /// Whether its parameters receive gradients.
    pub trainable: bool,
}

/// The group table, kept beside the modules.
#[derive(Debug, Clone)]
pub struct GroupTable<C> {
    /// Slot `g` describes group id `g` (`None`: removed).
    groups: Vec<Option<GroupInfo<C>>>,
    /// The group merged into the base weights, if any.
    merged: Option<usize>,
    /// Whether the backbone's parameters receive gradients.
    backbone_trainable: bool,
    /// Written as `base_model_name_or_path` when saving groups.
    base_model: Option<String>,
}

impl<C> Default for GroupTable<C> {
    fn default() -> Self {
        Self {
            groups: Vec::new(),
            merged: None,
            backbone_trainable: true,
            base_model: None,
        }
    }
}

/// Parameter counts of one group, the backbone, and what trains when the group is routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParameterCounts {
    /// The group's own parameters.
    pub group: usize,
    /// The backbone's parameters (without any group).
    pub backbone: usize,
    /// Parameters updated by a step routed to this group: the group's if trainable, plus the
    /// backbone's if trainable.
    pub trainable: usize,
}

impl ParameterCounts {
    /// Backbone plus group.
    pub fn total(&self) -> usize {
        self.group + self.backbone
    }
}

impl fmt::Display for ParameterCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} trainable of {} ({} in the group, {:.3}% of the backbone)",
            self.trainable,
            self.total(),
            self.group,
            100.0 * self.group as f64 / self.backbone.max(1) as f64
        )
    }
}

/// A BERT backbone with named adapter groups of scheme `S` (for example [`Lora`](crate::Lora)).
///
/// Groups are added in code ([`add_group`](Self::add_group)) or from PEFT-layout directories
/// ([`load_group`](Self::load_group)); neither touches the backbone's weights. A forward pass
/// takes a [`Route`] built from group names: [`route`](Self::route) for a whole batch,
/// [`route_per_example`](Self::route_per_example) for a batch that mixes groups (one forward
/// pass), or [`Route::Base`] for the plain backbone.
///
/// It is a burn [`Module`]: put it inside your training module and the optimizer sees the
/// backbone and every group. A group that a step does not route receives no gradient and is
/// left exactly as it was.
///
/// ```no_run
/// use lora_bert_adapters::{AdaptedModel, Layers, Lora, LoraConfig, Targets};
/// use lora_bert_encoder::{BertInput, BertModel, BertTokenizer, device};
///
/// let device = device::device(device::Backend::Flex)?;
/// let (backbone, _) = BertModel::load("all-MiniLM-L6-v2", &device)?;
/// let mut model = AdaptedModel::<Lora>::new(backbone);
/// let targets = Targets::new(["query", "value"]).layers(Layers::Last(2));
/// model.add_group("ner", LoraConfig::new(8, targets.clone()))?;
/// model.add_group("tc", LoraConfig::new(8, targets))?;
///
/// let tokenizer = BertTokenizer::from_file("all-MiniLM-L6-v2/tokenizer.json")?;
/// let batch = tokenizer.encode_batch(&["Paris is in France.", "Great movie!"])?;
/// let input = BertInput::from_batch(&batch, model.config(), &device)?;
/// let route = model.route_per_example(&[Some("ner"), Some("tc")])?;
/// let output = model.forward(&input, &route)?;
/// # let _ = output;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Module, Debug)]
pub struct AdaptedModel<S: Adapter<Config = C>, C: AdapterConfig = <S as Adapter>::Config> {
    /// The backbone, with this scheme's groups at every projection.
    pub model: BertModel<SiteGroups<S>>,
    #[module(skip)]
    table: GroupTable<C>,
}

impl<S: Adapter<Config = C>, C: AdapterConfig> AdaptedModel<S, C> {
    /// Wraps a backbone; it starts with no group. The weights move, nothing is copied.
    pub fn new(backbone: BertModel<NoAdapter>) -> Self {
        Self {
            model: backbone.map_projections(|_, p| p.with_adapter(SiteGroups::default())),
            table: GroupTable::default(),
        }
    }

    /// Removes every group and returns the backbone (with a merged group still merged).
    pub fn into_backbone(self) -> BertModel<NoAdapter> {
        self.model.map_projections(|_, p| p.into_parts().0)
    }

    /// The backbone's configuration.
    pub fn config(&self) -> &lora_bert_encoder::BertConfig {
        self.model.config()
    }

    /// The device the backbone lives on.
    pub fn device(&self) -> Device {
        self.model.embeddings.word_embeddings.val().device()
    }

    /// Sets `base_model_name_or_path` for saved groups (e.g.
    /// `sentence-transformers/all-MiniLM-L6-v2`). Unless set, the first loaded adapter file's
    /// value is used; without either it is written as `null`.
    pub fn set_base_model_name(&mut self, name: impl Into<String>) {
        self.table.base_model = Some(name.into());
    }

    /// The names of the registered groups, by id.
    pub fn group_names(&self) -> impl Iterator<Item = &str> {
        self.table.groups.iter().flatten().map(|g| g.name.as_str())
    }

    /// The id of group `name`.
    pub fn group_id(&self, name: &str) -> Result<usize, AdapterError> {
        self.table
            .groups
            .iter()
            .position(|g| g.as_ref().is_some_and(|g| g.name == name))
            .ok_or_else(|| AdapterError::UnknownGroup {
                name: name.to_owned(),
                known: self.group_names().collect::<Vec<_>>().join(", "),
            })
    }

    /// The description of group `name`.
    pub fn group(&self, name: &str) -> Result<&GroupInfo<C>, AdapterError> {
        let id = self.group_id(name)?;
        Ok(self.table.groups[id].as_ref().expect("registered id"))
    }

    /// The projections group `name` covers.
    pub fn sites(&self, name: &str) -> Result<&[ProjectionSite], AdapterError> {
        Ok(&self.group(name)?.sites)
    }

    /// Adds group `name` with freshly initialised modules (LoRA: `B = 0`, so outputs are
    /// unchanged until it trains). The backbone is neither copied nor reloaded.
    pub fn add_group(&mut self, name: &str, config: C) -> Result<usize, AdapterError> {
        let (id, config, sites) = self.prepare(name, &config)?;
        let device = self.device();
        for (site, projection) in self.model.projections_mut() {
            if sites.contains(&site) {
                let module = S::init(
                    &config,
                    site,
                    projection.d_in(),
                    projection.d_out(),
                    &device,
                );
                projection.adapter.set(id, Some(module));
            }
        }
        self.register(id, name, config, sites);
        Ok(id)
    }

    /// Adds group `to` as a copy of group `from`: the same configuration, sites and weights in
    /// new parameters (training one leaves the other as it is), trainable. A task's group
    /// starts this way from its family's group.
    ///
    /// # Errors
    ///
    /// [`AdapterError::UnknownGroup`] for `from`, [`AdapterError::DuplicateGroup`] for `to`,
    /// [`AdapterError::Merged`] while a group is merged.
    pub fn copy_group(&mut self, from: &str, to: &str) -> Result<usize, AdapterError> {
        let source = self.group_id(from)?;
        let info = self.group(from)?;
        let (config, sites) = (info.config.clone(), info.sites.clone());
        let (id, _, _) = self.prepare(to, &config)?;
        for (site, projection) in self.model.projections_mut() {
            if sites.contains(&site)
                && let Some(module) = projection.adapter.get(source).cloned()
            {
                projection
                    .adapter
                    .set(id, Some(module.map(&mut FreshParams)));
            }
        }
        self.register(id, to, config, sites);
        Ok(id)
    }

    /// Loads group `name` from a PEFT-layout directory (`adapter_config.json`,
    /// `adapter_model.safetensors`). Every tensor must fit the model and be used.
    pub fn load_group(&mut self, name: &str, dir: impl AsRef<Path>) -> Result<usize, AdapterError> {
        let dir = dir.as_ref();
        let config_path = dir.join(CONFIG_FILE);
        let (mut fields, base) = peft::read_config(&config_path, C::PEFT_TYPE)?;
        let config = C::from_peft_fields(&mut fields)?;
        fields.finish()?;
        let file = TensorFile::read(&dir.join(WEIGHTS_FILE))?;
        let id = self.load_group_from(name, config, file)?;
        // Groups saved later name the same base model unless the caller set another.
        if self.table.base_model.is_none() {
            self.table.base_model = base;
        }
        Ok(id)
    }

    /// Loads group `name` with `config` from already parsed tensors (see
    /// [`load_group`](Self::load_group)).
    pub fn load_group_from(
        &mut self,
        name: &str,
        config: C,
        mut file: TensorFile,
    ) -> Result<usize, AdapterError> {
        let (id, config, sites) = self.prepare(name, &config)?;
        let device = self.device();
        let mut modules = Vec::with_capacity(sites.len());
        for (site, projection) in self.model.projections() {
            if sites.contains(&site) {
                let path = format!("{PEFT_PREFIX}{}", site.hf_path());
                let module = S::load(
                    &config,
                    site,
                    projection.d_in(),
                    projection.d_out(),
                    &mut file,
                    &path,
                    &device,
                )?;
                modules.push((site, module));
            }
        }
        file.finish()?;
        let mut modules = modules.into_iter();
        let mut next = modules.next();
        for (site, projection) in self.model.projections_mut() {
            if next.as_ref().is_some_and(|(s, _)| *s == site) {
                let (_, module) = next.take().expect("checked");
                projection.adapter.set(id, Some(module));
                next = modules.next();
            }
        }
        self.register(id, name, config, sites);
        Ok(id)
    }

    fn prepare(
        &self,
        name: &str,
        config: &C,
    ) -> Result<(usize, C, Vec<ProjectionSite>), AdapterError> {
        if self.group_id(name).is_ok() {
            return Err(AdapterError::DuplicateGroup {
                name: name.to_owned(),
            });
        }
        if let Some(merged) = self.table.merged {
            return Err(self.merged_error(merged, "unmerge it before adding groups"));
        }
        config
            .validate()
            .map_err(|message| AdapterError::InvalidConfig {
                group: name.to_owned(),
                message,
            })?;
        let num_layers = self.model.encoder.layer.len();
        let targets = config.targets().resolve(name, num_layers)?;
        let mut sites = Vec::new();
        for (site, projection) in self.model.projections() {
            if !targets.covers(site, num_layers) {
                continue;
            }
            let [d_in, d_out] = projection.weight.dims();
            config
                .validate_site(d_in, d_out)
                .map_err(|message| AdapterError::InvalidConfig {
                    group: name.to_owned(),
                    message: format!("{site}: {message}"),
                })?;
            sites.push(site);
        }
        if sites.is_empty() {
            return Err(AdapterError::NoTargets {
                group: name.to_owned(),
                targets: config.targets().to_string(),
            });
        }
        Ok((self.table.groups.len(), config.with_targets(targets), sites))
    }

    fn register(&mut self, id: usize, name: &str, config: C, sites: Vec<ProjectionSite>) {
        debug_assert_eq!(id, self.table.groups.len());
        self.table.groups.push(Some(GroupInfo {
            name: name.to_owned(),
            config,
            sites,
            trainable: true,
        }));
    }

    /// Removes group `name` and frees its modules. Its id is never reused, so a stale route
    /// to it is an error rather than a route to another group.
    pub fn remove_group(&mut self, name: &str) -> Result<(), AdapterError> {
        let id = self.group_id(name)?;
        if self.table.merged == Some(id) {
            return Err(self.merged_error(id, "unmerge it before removing it"));
        }
        for (_, projection) in self.model.projections_mut() {
            projection.adapter.set(id, None);
        }
        self.table.groups[id] = None;
        Ok(())
    }

    /// The route that sends a whole batch through group `name`.
    pub fn route(&self, name: &str) -> Result<Route, AdapterError> {
        Ok(Route::Group(self.group_id(name)?))
    }

    /// A route with one group (or `None`: the plain backbone) per example.
    pub fn route_per_example(&self, names: &[Option<&str>]) -> Result<Route, AdapterError> {
        let ids = names
            .iter()
            .map(|n| n.map(|n| self.group_id(n)).transpose())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Route::per_example(ids))
    }

    /// Runs the backbone with the groups `route` selects.
    ///
    /// While a group is merged, only routes to that group are accepted (they run on the merged
    /// weights at the plain backbone's cost).
    pub fn forward(&self, input: &BertInput, route: &Route) -> Result<BertOutput, AdapterError> {
        let route = self.check_route(route)?;
        Ok(self.model.forward(input, &route)?)
    }

    /// Like [`forward`](Self::forward), with every layer's hidden state.
    pub fn forward_all(
        &self,
        input: &BertInput,
        route: &Route,
    ) -> Result<BertOutput, AdapterError> {
        let route = self.check_route(route)?;
        Ok(self.model.forward_all(input, &route)?)
    }

    fn check_route(&self, route: &Route) -> Result<Route, AdapterError> {
        let ids: Vec<Option<usize>> = match route {
            Route::Base => vec![None],
            Route::Group(g) => vec![Some(*g)],
            Route::PerExample(groups) => groups.to_vec(),
        };
        for id in ids.iter().flatten() {
            if !matches!(self.table.groups.get(*id), Some(Some(_))) {
                return Err(AdapterError::UnknownGroupId { id: *id });
            }
        }
        match self.table.merged {
            None => Ok(route.clone()),
            Some(m) if ids.iter().all(|id| *id == Some(m)) => Ok(Route::Base),
            Some(m) => Err(self.merged_error(
                m,
                "only routes to the merged group can run; unmerge to route elsewhere",
            )),
        }
    }

    fn merged_error(&self, id: usize, message: &str) -> AdapterError {
        AdapterError::Merged {
            merged: self.name_of(id),
            message: message.to_owned(),
        }
    }

    fn name_of(&self, id: usize) -> String {
        self.table
            .groups
            .get(id)
            .and_then(Option::as_ref)
            .map_or_else(|| format!("#{id}"), |g| g.name.clone())
    }

    /// Merges group `name` into the base weights: routes to it then run at the plain
    /// backbone's speed. [`unmerge`](Self::unmerge) restores the base weights.
    pub fn merge(&mut self, name: &str) -> Result<(), AdapterError> {
        let id = self.group_id(name)?;
        if let Some(m) = self.table.merged {
            return Err(self.merged_error(m, "unmerge it before merging another group"));
        }
        self.apply_merge(id, false)?;
        self.table.merged = Some(id);
        Ok(())
    }

    /// Takes the merged group back out of the base weights.
    pub fn unmerge(&mut self) -> Result<(), AdapterError> {
        let id = self.table.merged.ok_or(AdapterError::NotMerged)?;
        self.apply_merge(id, true)?;
        self.table.merged = None;
        Ok(())
    }

    /// The merged group, if any.
    pub fn merged(&self) -> Option<&str> {
        let id = self.table.merged?;
        self.table.groups[id].as_ref().map(|g| g.name.as_str())
    }

    fn apply_merge(&mut self, id: usize, unmerge: bool) -> Result<(), AdapterError> {
        let mut updates = Vec::new();
        for (site, projection) in self.model.projections() {
            let Some(adapter) = projection.adapter.get(id) else {
                continue;
            };
            if projection.is_quantized() {
                return Err(AdapterError::QuantizedBase {
                    group: self.name_of(id),
                    site: site.hf_path(),
                });
            }
            let weight = projection.weight.val().detach();
            let bias = projection.bias.as_ref().map(|b| b.val().detach());
            let not_mergeable = || AdapterError::NotMergeable {
                group: self.name_of(id),
                site: site.hf_path(),
            };
            let merged = adapter
                .merge(weight, bias, unmerge)
                .ok_or_else(not_mergeable)?;
            // Nothing is committed unless every site's weights stay finite, and a merge only
            // if it can be taken back out (IA³ divides by its scale: a zero scale merges to
            // finite zeros that unmerge to NaN).
            let finite = |(w, b): &(Tensor<2>, Option<Tensor<1>>)| {
                all_finite(w.clone()) && b.clone().is_none_or(all_finite)
            };
            let reversible = || {
                adapter
                    .merge(merged.0.clone(), merged.1.clone(), true)
                    .is_some_and(|back| finite(&back))
            };
            if !finite(&merged) || (!unmerge && !reversible()) {
                return Err(AdapterError::NonFiniteMerge {
                    group: self.name_of(id),
                    site: site.hf_path(),
                    unmerge,
                });
            }
            updates.push((site, merged));
        }
        let mut updates = updates.into_iter().peekable();
        for (site, projection) in self.model.projections_mut() {
            if updates.peek().is_some_and(|(s, _)| *s == site) {
                let (_, (weight, bias)) = updates.next().expect("peeked");
                replace_value(&mut projection.weight, weight);
                if let (Some(param), Some(bias)) = (projection.bias.as_mut(), bias) {
                    replace_value(param, bias);
                }
            }
        }
        Ok(())
    }

    /// Saves group `name` in PEFT's layout into `dir`: `adapter_config.json` and
    /// `adapter_model.safetensors`, each written atomically. Python PEFT loads it with
    /// `PeftModel.from_pretrained(AutoModel.from_pretrained(base), dir)`.
    pub fn save_group(&self, name: &str, dir: impl AsRef<Path>) -> Result<(), AdapterError> {
        let id = self.group_id(name)?;
        let info = self.table.groups[id].as_ref().expect("registered id");
        let mut tensors = Vec::new();
        for (site, projection) in self.model.projections() {
            if let Some(adapter) = projection.adapter.get(id) {
                let path = format!("{PEFT_PREFIX}{}", site.hf_path());
                for (suffix, tensor) in adapter.tensors() {
                    tensors.push((format!("{path}.{suffix}"), tensor));
                }
            }
        }
        let weights = peft::safetensors_bytes(tensors)?;
        let config = peft::config_json(
            C::PEFT_TYPE,
            self.table.base_model.as_deref(),
            info.config.targets(),
            info.config.to_peft_fields(),
        );
        peft::write_files(dir.as_ref(), &config, &weights)
    }

    /// Freezes (`false`) or unfreezes the backbone: embeddings, projections' base weights,
    /// LayerNorms, pooler. Groups keep their own setting.
    pub fn with_backbone_trainable(mut self, trainable: bool) -> Self {
        let mut mapper = RequireGrad {
            value: trainable,
            inside_adapter: 0,
        };
        self.model = self.model.map(&mut mapper);
        self.table.backbone_trainable = trainable;
        self
    }

    /// Freezes (`false`) or unfreezes group `name`.
    pub fn set_group_trainable(&mut self, name: &str, trainable: bool) -> Result<(), AdapterError> {
        let id = self.group_id(name)?;
        for (_, projection) in self.model.projections_mut() {
            if let Some(module) = projection.adapter.set(id, None) {
                let module = if trainable {
                    module.map(&mut RequireGrad {
                        value: true,
                        inside_adapter: 0,
                    })
                } else {
                    module.no_grad()
                };
                projection.adapter.set(id, Some(module));
            }
        }
        self.table.groups[id]
            .as_mut()
            .expect("registered")
            .trainable = trainable;
        Ok(())
    }

    /// Whether the backbone trains.
    pub fn backbone_trainable(&self) -> bool {
        self.table.backbone_trainable
    }

    /// Parameter counts of group `name` and the backbone.
    pub fn parameter_counts(&self, name: &str) -> Result<ParameterCounts, AdapterError> {
        let id = self.group_id(name)?;
        let trainable_group = self.table.groups[id]
            .as_ref()
            .expect("registered")
            .trainable;
        let mut group = 0;
        let mut adapters = 0;
        for (_, projection) in self.model.projections() {
            for (g, slot) in projection.adapter.slots.iter().enumerate() {
                let n = slot.as_ref().map_or(0, Module::num_params);
                adapters += n;
                if g == id {
                    group += n;
                }
            }
        }
        let backbone = self.model.num_params() - adapters;
        Ok(ParameterCounts {
            group,
            backbone,
            trainable: if trainable_group { group } else { 0 }
                + if self.table.backbone_trainable {
                    backbone
                } else {
                    0
                },
        })
    }
}

/// Sets `require_grad` on every float parameter outside the projections' adapters.
struct RequireGrad {
    value: bool,
    /// Depth inside an `adapter` field (0: outside).
    inside_adapter: usize,
}

impl ModuleMapper for RequireGrad {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        if self.inside_adapter > 0 || name == "adapter" {
            self.inside_adapter += 1;
        }
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.inside_adapter = self.inside_adapter.saturating_sub(1);
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if self.inside_adapter > 0 {
            param
        } else {
            param.set_require_grad(self.value)
        }
    }
}

/// Gives every float parameter a new id (and so its own optimizer state and gradients),
/// keeping its value, trainable.
struct FreshParams;

impl ModuleMapper for FreshParams {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        Param::from_tensor(param.val().detach())
    }
}

/// Whether every value of `t` is finite (checked on its device).
fn all_finite<const D: usize>(t: Tensor<D>) -> bool {
    t.is_finite().all().into_scalar::<bool>()
}

/// Replaces a parameter's value, keeping its id and gradient setting.
fn replace_value<const D: usize>(param: &mut Param<Tensor<D>>, value: Tensor<D>) {
    let placeholder = Param::initialized(param.id, value.clone());
    let old = std::mem::replace(param, placeholder);
    *param = old.map(|current| {
        let require_grad = current.is_require_grad();
        value.set_require_grad(require_grad)
    });
}
