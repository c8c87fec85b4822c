//! Which projections an adapter group covers, decided exactly as PEFT decides it.
//!
//! PEFT matches `target_modules` against each module's path in the base model
//! (`encoder.layer.3.attention.self.query`, `pooler.dense`):
//!
//! - a list matches a path equal to an entry, or ending in `.` + an entry; so `dense` covers
//!   `attention.output.dense`, `intermediate.dense`, `output.dense` *and* `pooler.dense`;
//! - a single string is a regular expression that must match the whole path;
//! - `all-linear` is every linear layer of a BERT encoder (`query`, `key`, `value`, `dense`).
//!
//! `layers_to_transform` then keeps, for list targets matched by suffix, the modules of the listed
//! layers only (the pooler has no layer and drops out). `exclude_modules` removes paths the same
//! way targets add them.

use std::collections::BTreeSet;
use std::fmt;

use lora_bert_encoder::{ProjectionKind, ProjectionSite};
use regex::Regex;

use crate::error::AdapterError;

/// The most memory a module-selecting regular expression may compile to. PEFT's are a few
/// dozen characters; `(query|value){1000}{1000}` in an adapter_config.json would otherwise
/// take the regex crate's default of 10 MiB (and twice that while compiling) for 30 bytes.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Compiles a module-selecting regular expression within [`REGEX_SIZE_LIMIT`].
pub(crate) fn compile(re: &str) -> Result<Regex, regex::Error> {
    regex::RegexBuilder::new(re)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
}

/// PEFT's `target_modules` (or `exclude_modules`, or IA³'s `feedforward_modules`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleSelector {
    /// Module names: a path matches if it equals an entry or ends in `.entry`.
    Names(Vec<String>),
    /// A regular expression the whole path must match.
    Regex(String),
    /// PEFT's `all-linear`: every linear layer of the encoder.
    AllLinear,
}

impl ModuleSelector {
    /// A list of module names (`["query", "value"]`, `["dense"]`, or full paths). PEFT holds
    /// them as a set: they are kept sorted and without repeats.
    pub fn names<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Self {
        let set: BTreeSet<String> = names.into_iter().map(Into::into).collect();
        ModuleSelector::Names(set.into_iter().collect())
    }

    /// Whether this selector picks the module at `path`; `Err` if the regular expression does not
    /// compile.
    pub fn matches(&self, path: &str) -> Result<bool, regex::Error> {
        Ok(match self {
            ModuleSelector::Names(names) => names.iter().any(|n| suffix_match(path, n)),
            ModuleSelector::Regex(re) => compile(&format!("^(?:{re})$"))?.is_match(path),
            ModuleSelector::AllLinear => true,
        })
    }

    /// Whether `path` matches an entry exactly (PEFT then ignores `layers_to_transform`).
    fn exact(&self, path: &str) -> bool {
        matches!(self, ModuleSelector::Names(names) if names.iter().any(|n| n == path))
    }

    /// The JSON value PEFT writes for this selector.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            ModuleSelector::Names(names) => {
                // PEFT stores a set; a sorted list keeps the file deterministic.
                let set: BTreeSet<&String> = names.iter().collect();
                serde_json::Value::from(set.into_iter().cloned().collect::<Vec<_>>())
            }
            ModuleSelector::Regex(re) => serde_json::Value::from(re.as_str()),
            ModuleSelector::AllLinear => serde_json::Value::from("all-linear"),
        }
    }

    /// Reads PEFT's JSON: a list of names, a regular expression, or `"all-linear"`.
    pub fn from_json(value: &serde_json::Value) -> Option<Self> {
        match value {
            serde_json::Value::String(s) if s == "all-linear" => Some(ModuleSelector::AllLinear),
            serde_json::Value::String(s) => Some(ModuleSelector::Regex(s.clone())),
            serde_json::Value::Array(items) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .map(ModuleSelector::names),
            _ => None,
        }
    }
}

impl fmt::Display for ModuleSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_json())
    }
}

fn suffix_match(path: &str, name: &str) -> bool {
    path == name
        || path
            .strip_suffix(name)
            .is_some_and(|head| head.ends_with('.'))
}

/// The layers an adapter group covers (PEFT's `layers_to_transform`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layers {
    /// Every layer (and the pooler, if targeted).
    All,
    /// The listed layer indices.
    Only(Vec<usize>),
    /// The last `k` layers, resolved against the model when the group is added.
    Last(usize),
}

/// Where an adapter group goes: target modules, excluded modules and layers.
///
/// ```
/// use lora_bert_adapters::{Layers, Targets};
///
/// // LoRA on query and value of the last two layers, as MTPF-TPL's task-primary groups.
/// let targets = Targets::new(["query", "value"]).layers(Layers::Last(2));
/// # let _ = targets;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Targets {
    /// PEFT's `target_modules`.
    pub modules: ModuleSelector,
    /// PEFT's `exclude_modules`.
    pub exclude: Option<ModuleSelector>,
    /// PEFT's `layers_to_transform`.
    pub layers: Layers,
}

impl Targets {
    /// Targets by module name, on every layer.
    pub fn new<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Self {
        Self::from_selector(ModuleSelector::names(names))
    }

    /// Targets from any selector, on every layer.
    pub fn from_selector(modules: ModuleSelector) -> Self {
        Self {
            modules,
            exclude: None,
            layers: Layers::All,
        }
    }

    /// Restricts the targets to some layers.
    pub fn layers(mut self, layers: Layers) -> Self {
        self.layers = layers;
        self
    }

    /// Excludes modules.
    pub fn exclude(mut self, exclude: ModuleSelector) -> Self {
        self.exclude = Some(exclude);
        self
    }

    /// Resolves [`Layers::Last`] into explicit indices and checks the indices against the
    /// model's `num_layers`.
    pub(crate) fn resolve(&self, group: &str, num_layers: usize) -> Result<Targets, AdapterError> {
        let layers = match &self.layers {
            Layers::All => Layers::All,
            Layers::Last(k) => {
                if *k == 0 || *k > num_layers {
                    return Err(AdapterError::InvalidConfig {
                        group: group.to_owned(),
                        message: format!(
                            "the last {k} layers were asked for; the model has {num_layers}"
                        ),
                    });
                }
                Layers::Only((num_layers - k..num_layers).collect())
            }
            Layers::Only(list) => {
                if let Some(&layer) = list.iter().find(|&&l| l >= num_layers) {
                    return Err(AdapterError::LayerOutOfRange {
                        group: group.to_owned(),
                        layer,
                        layers: num_layers,
                    });
                }
                Layers::Only(list.clone())
            }
        };
        for selector in std::iter::once(&self.modules).chain(&self.exclude) {
            if let ModuleSelector::Regex(re) = selector {
                compile(re).map_err(|e| AdapterError::InvalidConfig {
                    group: group.to_owned(),
                    message: format!("target regular expression {re:?}: {e}"),
                })?;
            }
        }
        Ok(Targets {
            modules: self.modules.clone(),
            exclude: self.exclude.clone(),
            layers,
        })
    }

    /// Whether the projection at `site` of a model with `num_layers` layers is covered, as
    /// PEFT's `check_target_module_exists` decides it. An invalid regular expression covers
    /// nothing ([`AdaptedModel::add_group`](crate::AdaptedModel::add_group) reports it).
    pub fn covers(&self, site: ProjectionSite, num_layers: usize) -> bool {
        let path = site.hf_path();
        let is = |s: &ModuleSelector| s.matches(&path).unwrap_or(false);
        if self.exclude.as_ref().is_some_and(is) {
            return false;
        }
        let modules = match &self.modules {
            ModuleSelector::AllLinear => ModuleSelector::names(["query", "key", "value", "dense"]),
            other => other.clone(),
        };
        match &modules {
            ModuleSelector::Regex(_) => is(&modules),
            ModuleSelector::Names(_) if modules.exact(&path) => true,
            ModuleSelector::Names(_) | ModuleSelector::AllLinear => {
                if !is(&modules) {
                    return false;
                }
                match (&self.layers, site.layer_index()) {
                    (Layers::All, _) => true,
                    (_, None) => false,
                    (Layers::Only(list), Some(layer)) => list.contains(&layer),
                    (Layers::Last(k), Some(layer)) => layer + k >= num_layers,
                }
            }
        }
    }

    /// The `layers_to_transform` JSON value (`null` for every layer; resolve
    /// [`Layers::Last`] first).
    pub fn layers_json(&self) -> serde_json::Value {
        match &self.layers {
            Layers::All | Layers::Last(_) => serde_json::Value::Null,
            Layers::Only(list) => serde_json::Value::from(list.clone()),
        }
    }
}

impl fmt::Display for Targets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.modules)?;
        match &self.layers {
            Layers::All => Ok(()),
            Layers::Only(list) => write!(f, " on layers {list:?}"),
            Layers::Last(k) => write!(f, " on the last {k} layers"),
        }?;
        if let Some(ex) = &self.exclude {
            write!(f, " excluding {ex}")?;
        }
        Ok(())
    }
}

/// The projection sites of a BERT model with `num_layers` layers (and a pooler if
/// `with_pooler`), in forward order.
pub fn sites(num_layers: usize, with_pooler: bool) -> Vec<ProjectionSite> {
    let mut out: Vec<ProjectionSite> = (0..num_layers)
        .flat_map(|layer| {
            ProjectionKind::ALL
                .into_iter()
                .map(move |kind| ProjectionSite { layer, kind })
        })
        .collect();
    if with_pooler {
        out.push(ProjectionSite {
            layer: num_layers,
            kind: ProjectionKind::Pooler,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn covered(t: &Targets) -> Vec<String> {
        let t = t.resolve("g", 6).unwrap();
        sites(6, true)
            .into_iter()
            .filter(|s| t.covers(*s, 6))
            .map(|s| s.hf_path())
            .collect()
    }

    #[test]
    fn dense_suffix_matches_three_layer_denses_and_the_pooler() {
        let c = covered(&Targets::new(["dense"]).layers(Layers::All));
        assert_eq!(c.len(), 6 * 3 + 1);
        assert!(c.contains(&"pooler.dense".to_owned()));
        assert!(c.contains(&"encoder.layer.0.intermediate.dense".to_owned()));
    }

    #[test]
    fn layers_to_transform_drops_the_pooler() {
        let c = covered(&Targets::new(["dense"]).layers(Layers::Last(2)));
        assert_eq!(c.len(), 6);
        assert!(
            c.iter()
                .all(|p| p.starts_with("encoder.layer.4.") || p.starts_with("encoder.layer.5."))
        );
    }

    #[test]
    fn full_suffix_and_regex() {
        let c = covered(&Targets::new(["attention.output.dense", "query"]));
        assert_eq!(c.len(), 12);
        let c = covered(&Targets::from_selector(ModuleSelector::Regex(
            r".*layer\.[02]\..*(query|intermediate\.dense)".into(),
        )));
        assert_eq!(
            c,
            [
                "encoder.layer.0.attention.self.query",
                "encoder.layer.0.intermediate.dense",
                "encoder.layer.2.attention.self.query",
                "encoder.layer.2.intermediate.dense"
            ]
        );
    }

    #[test]
    fn suffix_needs_a_dot_boundary() {
        assert!(!Targets::new(["ery"]).covers(sites(1, false)[0], 1));
        let c = covered(&Targets::new(["value"]).exclude(ModuleSelector::names([
            "encoder.layer.1.attention.self.value",
        ])));
        assert_eq!(c.len(), 5);
    }

    #[test]
    fn out_of_range_layers_are_errors() {
        let err = Targets::new(["query"])
            .layers(Layers::Only(vec![6]))
            .resolve("g", 6)
            .unwrap_err();
        assert!(matches!(
            err,
            AdapterError::LayerOutOfRange { layer: 6, .. }
        ));
        assert!(
            Targets::new(["query"])
                .layers(Layers::Last(7))
                .resolve("g", 6)
                .is_err()
        );
    }
}
