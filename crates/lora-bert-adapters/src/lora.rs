//! LoRA (Hu et al., 2021) as PEFT implements it: `y = x·W + b + dropout(x)·A·B · s`, with
//! `s = lora_alpha / r` (or `lora_alpha / √r` with rsLoRA).

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::{Device, Distribution, Tensor};
use lora_bert_encoder::projection::linear;
use lora_bert_encoder::{BaseLinear, ProjectionSite};
use serde_json::{Map, Value};

use crate::error::AdapterError;
use crate::peft::{PeftFields, TensorFile};
use crate::scheme::{Adapter, AdapterConfig};
use crate::targets::Targets;

/// How `A` is initialised (`B` always starts at zero, so a new group changes nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoraInit {
    /// PEFT's default (`init_lora_weights = true`): Kaiming-uniform with `a = √5`, that is
    /// uniform in `±1/√d_in`.
    #[default]
    KaimingUniform,
    /// PEFT's `init_lora_weights = "gaussian"`: normal with standard deviation `1/r`.
    Gaussian,
}

/// The configuration of one LoRA group (PEFT's `LoraConfig`).
///
/// ```
/// use lora_bert_adapters::{Layers, LoraConfig, Targets};
///
/// let config = LoraConfig::new(8, Targets::new(["query", "value"]).layers(Layers::Last(2)))
///     .alpha(16.0)
///     .dropout(0.1);
/// assert_eq!(config.scaling(), 2.0);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct LoraConfig {
    /// The rank `r`.
    pub r: usize,
    /// `lora_alpha`.
    pub alpha: f64,
    /// `lora_dropout`: dropout on the adapter's input, active in training only.
    pub dropout: f64,
    /// `use_rslora`: scale by `alpha / √r` instead of `alpha / r`.
    pub use_rslora: bool,
    /// Initialisation of `A`.
    pub init: LoraInit,
    /// Target modules and layers.
    pub targets: Targets,
}

impl LoraConfig {
    /// Rank `r` on `targets`, with PEFT's defaults: `lora_alpha = 8`, no dropout, no rsLoRA,
    /// Kaiming-uniform `A`.
    pub fn new(r: usize, targets: Targets) -> Self {
        Self {
            r,
            alpha: 8.0,
            dropout: 0.0,
            use_rslora: false,
            init: LoraInit::KaimingUniform,
            targets,
        }
    }

    /// Sets `lora_alpha`.
    pub fn alpha(mut self, alpha: f64) -> Self {
        self.alpha = alpha;
        self
    }

    /// Sets `lora_dropout`.
    pub fn dropout(mut self, p: f64) -> Self {
        self.dropout = p;
        self
    }

    /// Sets `use_rslora`.
    pub fn rslora(mut self, on: bool) -> Self {
        self.use_rslora = on;
        self
    }

    /// Sets the initialisation of `A`.
    pub fn init(mut self, init: LoraInit) -> Self {
        self.init = init;
        self
    }

    /// The factor `s` applied to `x·A·B`.
    pub fn scaling(&self) -> f64 {
        if self.use_rslora {
            self.alpha / (self.r as f64).sqrt()
        } else {
            self.alpha / self.r as f64
        }
    }
}

impl AdapterConfig for LoraConfig {
    const PEFT_TYPE: &'static str = "LORA";

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
        if self.r == 0 {
            return Err("`r` must be at least 1".into());
        }
        if !self.alpha.is_finite() || self.alpha <= 0.0 {
            return Err(format!("`lora_alpha` must be positive, got {}", self.alpha));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!(
                "`lora_dropout` must be in [0, 1), got {}",
                self.dropout
            ));
        }
        Ok(())
    }

    fn validate_site(&self, d_in: usize, d_out: usize) -> Result<(), String> {
        let most = d_in.min(d_out);
        if self.r > most {
            return Err(format!(
                "`r` {} exceeds min(d_in, d_out) = {most} of a {d_in} → {d_out} projection: \
                 a LoRA update cannot have a higher rank than the matrix it updates",
                self.r
            ));
        }
        Ok(())
    }

    fn to_peft_fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("r".into(), Value::from(self.r));
        m.insert("lora_alpha".into(), number(self.alpha));
        m.insert("lora_dropout".into(), number(self.dropout));
        m.insert("use_rslora".into(), Value::Bool(self.use_rslora));
        m.insert(
            "init_lora_weights".into(),
            match self.init {
                LoraInit::KaimingUniform => Value::Bool(true),
                LoraInit::Gaussian => Value::from("gaussian"),
            },
        );
        m.insert("bias".into(), Value::from("none"));
        m.insert("fan_in_fan_out".into(), Value::Bool(false));
        m.insert("use_dora".into(), Value::Bool(false));
        m.insert("lora_bias".into(), Value::Bool(false));
        m.insert("layers_to_transform".into(), self.targets.layers_json());
        m.insert("layers_pattern".into(), Value::Null);
        m.insert("rank_pattern".into(), Value::Object(Map::new()));
        m.insert("alpha_pattern".into(), Value::Object(Map::new()));
        m
    }

    fn from_peft_fields(fields: &mut PeftFields) -> Result<Self, AdapterError> {
        let targets = fields.targets()?;
        let r = fields.usize("r")?.unwrap_or(8);
        let alpha = fields.f64("lora_alpha")?.unwrap_or(8.0);
        let dropout = fields.f64("lora_dropout")?.unwrap_or(0.0);
        let use_rslora = fields.bool("use_rslora")?.unwrap_or(false);
        let init = match fields.take("init_lora_weights") {
            None | Some(Value::Bool(_)) => LoraInit::KaimingUniform,
            Some(Value::String(s)) if s == "gaussian" => LoraInit::Gaussian,
            Some(other) => {
                return Err(fields.unsupported(
                    "init_lora_weights",
                    &other,
                    "initialisations that rewrite the base weights (PiSSA, OLoRA, LoftQ, ...) \
                     need the converted base model",
                ));
            }
        };
        fields.expect_one_of(
            "bias",
            &[Value::from("none")],
            "LoRA bias training is not implemented",
        )?;
        fields.expect_one_of(
            "fan_in_fan_out",
            &[],
            "BERT's linears are not Conv1D layers",
        )?;
        fields.expect_one_of("use_dora", &[], "DoRA is not implemented")?;
        fields.expect_one_of("lora_bias", &[], "LoRA bias is not implemented")?;
        fields.expect_one_of("rank_pattern", &[], "per-module ranks are not implemented")?;
        fields.expect_one_of(
            "alpha_pattern",
            &[],
            "per-module alphas are not implemented",
        )?;
        fields.expect_one_of(
            "modules_to_save",
            &[],
            "extra trainable modules (heads) are saved by the trainer, not in the adapter",
        )?;
        // Only meaningful with `use_qalora`, which `finish` rejects when true.
        fields.take("qalora_group_size");
        Ok(Self {
            r,
            alpha,
            dropout,
            use_rslora,
            init,
            targets,
        })
    }
}

/// A JSON number that is an integer when the value is one (PEFT writes `lora_alpha: 16`).
fn number(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        Value::from(x as i64)
    } else {
        Value::from(x)
    }
}

/// One LoRA module: `dropout(x)·A·B · scaling`, `A: [d_in, r]`, `B: [r, d_out]`.
#[derive(Module, Debug)]
pub struct Lora {
    /// `A`, `[d_in, r]` (PEFT's `lora_A.weight` transposed).
    pub a: Param<Tensor<2>>,
    /// `B`, `[r, d_out]` (PEFT's `lora_B.weight` transposed).
    pub b: Param<Tensor<2>>,
    /// Dropout on the input of `A`.
    pub dropout: Dropout,
    /// `lora_alpha / r` (or `/ √r`).
    pub scaling: f64,
}

impl Lora {
    /// The low-rank update `A·B·scaling`, `[d_in, d_out]`.
    pub fn delta_weight(&self) -> Tensor<2> {
        self.a.val().matmul(self.b.val()) * self.scaling
    }
}

impl Adapter for Lora {
    type Config = LoraConfig;

    fn init(
        config: &LoraConfig,
        _site: ProjectionSite,
        d_in: usize,
        d_out: usize,
        device: &Device,
    ) -> Self {
        let r = config.r;
        let a = match config.init {
            LoraInit::KaimingUniform => {
                let bound = 1.0 / (d_in as f64).sqrt();
                Tensor::random([d_in, r], Distribution::Uniform(-bound, bound), device)
            }
            LoraInit::Gaussian => {
                Tensor::random([d_in, r], Distribution::Normal(0.0, 1.0 / r as f64), device)
            }
        };
        Self {
            a: Param::from_tensor(a),
            b: Param::from_tensor(Tensor::zeros([r, d_out], device)),
            dropout: DropoutConfig::new(config.dropout).init(),
            scaling: config.scaling(),
        }
    }

    fn forward(
        &self,
        input: Tensor<3>,
        base_output: Tensor<3>,
        _base: BaseLinear<'_>,
    ) -> Tensor<3> {
        let x = lora_bert_encoder::kernels::dropout(&self.dropout, input);
        // Scaling the rank-r activations costs d_out / r times less than scaling the output.
        let low = linear(x, self.a.val(), None) * self.scaling;
        base_output + linear(low, self.b.val(), None)
    }

    fn merge(
        &self,
        weight: Tensor<2>,
        bias: Option<Tensor<1>>,
        unmerge: bool,
    ) -> Option<(Tensor<2>, Option<Tensor<1>>)> {
        let delta = self.delta_weight();
        Some((
            if unmerge {
                weight - delta
            } else {
                weight + delta
            },
            bias,
        ))
    }

    fn tensors(&self) -> Vec<(String, Tensor<2>)> {
        vec![
            ("lora_A.weight".into(), self.a.val().transpose()),
            ("lora_B.weight".into(), self.b.val().transpose()),
        ]
    }

    fn load(
        config: &LoraConfig,
        _site: ProjectionSite,
        d_in: usize,
        d_out: usize,
        file: &mut TensorFile,
        module: &str,
        device: &Device,
    ) -> Result<Self, AdapterError> {
        let r = config.r;
        let a = file.take(&format!("{module}.lora_A.weight"), [r, d_in], device)?;
        let b = file.take(&format!("{module}.lora_B.weight"), [d_out, r], device)?;
        Ok(Self {
            a: Param::from_tensor(a.transpose()),
            b: Param::from_tensor(b.transpose()),
            dropout: DropoutConfig::new(config.dropout).init(),
            scaling: config.scaling(),
        })
    }
}
