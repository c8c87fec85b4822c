//! The adapter trait: what an adapter scheme provides.
//!
//! A scheme (LoRA, IA³, your own) is two types: a per-group configuration implementing
//! [`AdapterConfig`], and the module one group places at one projection, implementing
//! [`Adapter`]. The rest (groups, routing, freezing, merging, PEFT-layout files) is generic and
//! lives in [`AdaptedModel`](crate::AdaptedModel).
//!
//! # A worked example: a per-output-channel bias
//!
//! ```
//! use burn::module::{Module, Param};
//! use burn::tensor::{Device, Tensor};
//! use lora_bert_adapters::{
//!     Adapter, AdapterConfig, AdapterError, AdaptedModel, PeftFields, TensorFile, Targets,
//! };
//! use lora_bert_encoder::{BaseLinear, BertConfig, BertModel, ProjectionSite};
//!
//! /// Adds a learned bias to the output of the targeted projections.
//! #[derive(Module, Debug)]
//! struct ExtraBias {
//!     bias: Param<Tensor<1>>,
//! }
//!
//! #[derive(Debug, Clone)]
//! struct ExtraBiasConfig {
//!     targets: Targets,
//! }
//!
//! impl AdapterConfig for ExtraBiasConfig {
//!     const PEFT_TYPE: &'static str = "EXTRA_BIAS";
//!     fn targets(&self) -> &Targets { &self.targets }
//!     fn with_targets(&self, targets: Targets) -> Self { Self { targets } }
//!     fn validate(&self) -> Result<(), String> { Ok(()) }
//!     fn to_peft_fields(&self) -> serde_json::Map<String, serde_json::Value> {
//!         serde_json::Map::new()
//!     }
//!     fn from_peft_fields(fields: &mut PeftFields) -> Result<Self, AdapterError> {
//!         Ok(Self { targets: fields.targets()? })
//!     }
//! }
//!
//! impl Adapter for ExtraBias {
//!     type Config = ExtraBiasConfig;
//!
//!     fn init(_: &ExtraBiasConfig, _: ProjectionSite, _d_in: usize, d_out: usize, device: &Device) -> Self {
//!         Self { bias: Param::from_tensor(Tensor::zeros([d_out], device)) }
//!     }
//!
//!     fn forward(&self, _input: Tensor<3>, base_output: Tensor<3>, _base: BaseLinear<'_>) -> Tensor<3> {
//!         base_output + self.bias.val().unsqueeze::<3>()
//!     }
//!
//!     fn merge(&self, weight: Tensor<2>, bias: Option<Tensor<1>>, unmerge: bool)
//!         -> Option<(Tensor<2>, Option<Tensor<1>>)> {
//!         let sign = if unmerge { -1.0 } else { 1.0 };
//!         Some((weight, Some(bias? + self.bias.val() * sign)))
//!     }
//!
//!     fn tensors(&self) -> Vec<(String, Tensor<2>)> {
//!         vec![("extra_bias".into(), self.bias.val().unsqueeze::<2>())]
//!     }
//!
//!     fn load(_: &ExtraBiasConfig, _: ProjectionSite, _d_in: usize, d_out: usize,
//!             file: &mut TensorFile, module: &str, device: &Device) -> Result<Self, AdapterError> {
//!         let bias = file.take(&format!("{module}.extra_bias"), [1, d_out], device)?;
//!         Ok(Self { bias: Param::from_tensor(bias.reshape([d_out])) })
//!     }
//! }
//!
//! let device = lora_bert_encoder::device::device(lora_bert_encoder::Backend::default_cpu()?)?;
//! let config: BertConfig = serde_json::from_str(r#"{"vocab_size": 30, "hidden_size": 8,
//!     "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 16}"#)?;
//! let mut model = AdaptedModel::<ExtraBias>::new(BertModel::init(&config, false, &device));
//! model.add_group("app", ExtraBiasConfig { targets: Targets::new(["value"]) })?;
//! assert_eq!(model.sites("app")?.len(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # From a scheme to a served app
//!
//! Nothing above this crate names LoRA except as a default, so these two impls are all a
//! scheme's author writes. With them, the layers above take the scheme as a type parameter:
//!
//! - fine-tuning (`lora_bert_train::finetune`): an `AdaptedModel::<ExtraBias>` and
//!   `AppSetup::new(task, FineTuneMode::LoraHead).with_adapter(ExtraBiasConfig { .. })`, given
//!   to `finetune_tokens` or `finetune_texts`, train the group and the head; `save` writes the
//!   app directory (the group in PEFT's layout, under `PEFT_TYPE`);
//! - pre-finetuned family groups are copied per task by
//!   [`AdaptedModel::copy_group`](crate::AdaptedModel::copy_group), whatever
//!   the scheme;
//! - serving (`lora_bert::runtime`): `Runtime::<ExtraBias>::from_backbone(backbone)` registers
//!   such apps, and the NER and classifier pipelines take that runtime. One runtime serves one
//!   scheme: rows of one forward pass go through groups of one scheme, and an app of another
//!   scheme is refused at registration (its `adapter_config.json` names another `peft_type`).
//!   The facade's `tests/runtime.rs` fine-tunes and serves an IA³ app beside LoRA apps so.

use std::fmt::Debug;

use burn::module::{Module, ModuleDisplay};
use burn::tensor::{Device, Tensor};
use lora_bert_encoder::{BaseLinear, ProjectionSite};

use crate::error::AdapterError;
use crate::peft::{PeftFields, TensorFile};
use crate::targets::Targets;

/// The configuration of one adapter group of a scheme; written as (part of) PEFT's
/// `adapter_config.json`.
pub trait AdapterConfig: Clone + Debug + Send + Sync + 'static {
    /// PEFT's `peft_type` (`"LORA"`, `"IA3"`, ...).
    const PEFT_TYPE: &'static str;

    /// Which projections the group covers.
    fn targets(&self) -> &Targets;

    /// The same configuration with other targets (used to store resolved layer lists).
    fn with_targets(&self, targets: Targets) -> Self;

    /// Checks value ranges; the message names the field at fault.
    fn validate(&self) -> Result<(), String>;

    /// Checks the configuration against one projection it adapts, `d_in → d_out`, before
    /// anything is allocated for it; the message names the field at fault. The default
    /// accepts every size ([`LoraConfig`](crate::LoraConfig) refuses a rank above
    /// `min(d_in, d_out)`).
    fn validate_site(&self, _d_in: usize, _d_out: usize) -> Result<(), String> {
        Ok(())
    }

    /// The scheme's own fields of `adapter_config.json`: everything but `peft_type`,
    /// `base_model_name_or_path`, `target_modules` and `exclude_modules`, which the caller
    /// writes. A scheme whose PEFT config has `layers_to_transform` writes it here
    /// ([`Targets::layers_json`](crate::Targets::layers_json)).
    fn to_peft_fields(&self) -> serde_json::Map<String, serde_json::Value>;

    /// Reads the scheme's fields. Take every field you understand from `fields`; whatever is
    /// left is checked by the caller (unknown fields with a value are an error).
    fn from_peft_fields(fields: &mut PeftFields) -> Result<Self, AdapterError>;
}

/// The module one adapter group places at one projection.
///
/// Implementations are burn [`Module`]s, so their parameters train, save and move between
/// devices like any other; [`Module::num_params`] is the group's parameter count at that site.
pub trait Adapter: Module + ModuleDisplay {
    /// The group configuration this scheme reads and writes.
    type Config: AdapterConfig;

    /// A freshly initialised module for a projection `d_in → d_out` at `site`.
    fn init(
        config: &Self::Config,
        site: ProjectionSite,
        d_in: usize,
        d_out: usize,
        device: &Device,
    ) -> Self;

    /// The adapted output of the examples routed to this group: `input` is `[n, seq, d_in]`,
    /// `base_output` is `base.forward(input)` (already computed), the result is
    /// `[n, seq, d_out]`.
    fn forward(&self, input: Tensor<3>, base_output: Tensor<3>, base: BaseLinear<'_>) -> Tensor<3>;

    /// The base weight `[d_in, d_out]` and bias with this adapter merged in (`unmerge`: taken
    /// back out), or `None` if the scheme cannot merge.
    fn merge(
        &self,
        weight: Tensor<2>,
        bias: Option<Tensor<1>>,
        unmerge: bool,
    ) -> Option<(Tensor<2>, Option<Tensor<1>>)>;

    /// The tensors to save, named relative to the projection's module path
    /// (`lora_A.weight`), in the file's layout.
    fn tensors(&self) -> Vec<(String, Tensor<2>)>;

    /// Loads the module of `site` from `file`; `module` is the projection's path as the file
    /// names it (`base_model.model.encoder.layer.0.attention.self.query`).
    fn load(
        config: &Self::Config,
        site: ProjectionSite,
        d_in: usize,
        d_out: usize,
        file: &mut TensorFile,
        module: &str,
        device: &Device,
    ) -> Result<Self, AdapterError>;
}
