//! IA³ (Liu et al., 2022) as PEFT implements it: a learned vector rescales a projection's
//! output, or, for the projections listed as feed-forward, its input.
//!
//! The second scheme on the [`Adapter`] trait: multiplicative rather than additive, with its own
//! merge rule (scale the weight's columns or rows, and the bias for output scaling) and PEFT's
//! tensor names (`...attention.self.key.ia3_l`, `[d_out, 1]`; feed-forward `[1, d_in]`).

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor};
use lora_bert_encoder::{BaseLinear, ProjectionSite};
use serde_json::{Map, Value};

use crate::error::AdapterError;
use crate::peft::{PeftFields, TensorFile};
use crate::scheme::{Adapter, AdapterConfig};
use crate::targets::{Layers, ModuleSelector, Targets};

/// The configuration of one IA³ group (PEFT's `IA3Config`).
///
/// ```
/// use lora_bert_adapters::{Ia3Config, ModuleSelector, Targets};
///
/// // PEFT's default for BERT: key, value and the feed-forward output, the last scaled on its input.
/// let config = Ia3Config::new(Targets::new(["key", "value", "output.dense"]))
///     .feedforward(ModuleSelector::names(["output.dense"]));
/// # let _ = config;
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Ia3Config {
    /// Target modules.
    pub targets: Targets,
    /// `feedforward_modules`: targets whose input, not output, is scaled.
    pub feedforward: ModuleSelector,
}

impl Ia3Config {
    /// Output scaling on `targets`, no feed-forward modules.
    pub fn new(targets: Targets) -> Self {
        Self {
            targets,
            feedforward: ModuleSelector::Names(Vec::new()),
        }
    }

    /// Sets `feedforward_modules`.
    pub fn feedforward(mut self, modules: ModuleSelector) -> Self {
        self.feedforward = modules;
        self
    }

    /// PEFT's `_check_target_module_feedforward`: a plain string suffix for names (no dot
    /// boundary, unlike `target_modules`), a whole-path match for a regular expression.
    fn is_feedforward(&self, site: ProjectionSite) -> bool {
        let path = site.hf_path();
        match &self.feedforward {
            ModuleSelector::Names(names) => names.iter().any(|n| path.ends_with(n.as_str())),
            ModuleSelector::AllLinear => true,
            regex => regex.matches(&path).unwrap_or(false),
        }
    }
}

impl AdapterConfig for Ia3Config {
    const PEFT_TYPE: &'static str = "IA3";

    fn targets(&self) -> &Targets {
        &self.targets
    }

    fn with_targets(&self, targets: Targets) -> Self {
        Self {
            targets,
            ..self.clone()
        }
    }

    fn validate(&self) -> Result<(), String> {
        if self.targets.layers != Layers::All {
            return Err(
                "PEFT's IA3Config has no `layers_to_transform`: select layers with a regular \
                 expression or full module paths"
                    .into(),
            );
        }
        if let ModuleSelector::Regex(re) = &self.feedforward {
            crate::targets::compile(re)
                .map_err(|e| format!("`feedforward_modules` {re:?}: {e}"))?;
        }
        Ok(())
    }

    fn to_peft_fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("feedforward_modules".into(), self.feedforward.to_json());
        m.insert("fan_in_fan_out".into(), Value::Bool(false));
        m.insert("init_ia3_weights".into(), Value::Bool(true));
        m
    }

    fn from_peft_fields(fields: &mut PeftFields) -> Result<Self, AdapterError> {
        let targets = fields.targets()?;
        let feedforward = fields
            .selector("feedforward_modules")?
            .unwrap_or(ModuleSelector::Names(Vec::new()));
        fields.take("init_ia3_weights");
        fields.expect_one_of(
            "fan_in_fan_out",
            &[],
            "BERT's linears are not Conv1D layers",
        )?;
        fields.expect_one_of(
            "modules_to_save",
            &[],
            "extra trainable modules (heads) are saved by the trainer, not in the adapter",
        )?;
        Ok(Self {
            targets,
            feedforward,
        })
    }
}

/// One IA³ vector.
#[derive(Module, Debug)]
pub struct Ia3 {
    /// The scaling vector: `[d_out]`, or `[d_in]` for a feed-forward projection.
    pub scale: Param<Tensor<1>>,
    /// Whether the input (rather than the output) is scaled.
    pub feedforward: bool,
}

impl Adapter for Ia3 {
    type Config = Ia3Config;

    fn init(
        config: &Ia3Config,
        site: ProjectionSite,
        d_in: usize,
        d_out: usize,
        device: &Device,
    ) -> Self {
        let feedforward = config.is_feedforward(site);
        let width = if feedforward { d_in } else { d_out };
        Self {
            scale: Param::from_tensor(Tensor::ones([width], device)),
            feedforward,
        }
    }

    fn forward(&self, input: Tensor<3>, base_output: Tensor<3>, base: BaseLinear<'_>) -> Tensor<3> {
        let scale = self.scale.val().unsqueeze::<3>();
        if self.feedforward {
            // W·(x ⊙ l) + b = (x·W + b) + W·(x ⊙ (l − 1)): reuses the base output.
            base_output + base.forward_no_bias(input * (scale - 1.0))
        } else {
            base_output * scale
        }
    }

    fn merge(
        &self,
        weight: Tensor<2>,
        bias: Option<Tensor<1>>,
        unmerge: bool,
    ) -> Option<(Tensor<2>, Option<Tensor<1>>)> {
        let l = self.scale.val();
        let [d_in, d_out] = weight.dims();
        let apply = |t: Tensor<2>, l: Tensor<2>| if unmerge { t / l } else { t * l };
        Some(if self.feedforward {
            (apply(weight, l.reshape([d_in, 1])), bias)
        } else {
            let bias = bias.map(|b| apply(b.unsqueeze::<2>(), l.clone().unsqueeze::<2>()));
            (
                apply(weight, l.reshape([1, d_out])),
                bias.map(|b| b.reshape([d_out])),
            )
        })
    }

    fn tensors(&self) -> Vec<(String, Tensor<2>)> {
        let l = self.scale.val();
        let width = l.dims()[0];
        let shape = if self.feedforward {
            [1, width]
        } else {
            [width, 1]
        };
        vec![("ia3_l".into(), l.reshape(shape))]
    }

    fn load(
        config: &Ia3Config,
        site: ProjectionSite,
        d_in: usize,
        d_out: usize,
        file: &mut TensorFile,
        module: &str,
        device: &Device,
    ) -> Result<Self, AdapterError> {
        let feedforward = config.is_feedforward(site);
        let (shape, width) = if feedforward {
            ([1, d_in], d_in)
        } else {
            ([d_out, 1], d_out)
        };
        let l = file.take(&format!("{module}.ia3_l"), shape, device)?;
        Ok(Self {
            scale: Param::from_tensor(l.reshape([width])),
            feedforward,
        })
    }
}
