//! Task-routed adapters for [lora-bert](https://docs.rs/lora-bert) encoders.
//!
//! One shared backbone, several named adapter groups (MTPF-TPL's task-primary LoRAs, or one
//! group per app), selected per batch or per example in a single forward pass:
//!
//! - [`Adapter`] / [`AdapterConfig`]: what a scheme provides (its forward for routed rows, its
//!   parameters as a burn module, its merge rule, its file tensors). [`Lora`] and [`Ia3`] are
//!   the two built in; the trait's documentation adds a third in a few lines.
//! - [`Targets`]: PEFT's `target_modules` / `exclude_modules` / `layers_to_transform`, matched
//!   exactly as PEFT matches them.
//! - [`AdaptedModel`]: the backbone with its groups: add, load, save (PEFT's layout), remove,
//!   route, freeze, count, merge and unmerge.
//!
//! ```no_run
//! use lora_bert_adapters::{AdaptedModel, Lora};
//! use lora_bert_encoder::{BertModel, device};
//!
//! let device = device::device(device::Backend::Flex)?;
//! let (backbone, _) = BertModel::load("all-MiniLM-L6-v2", &device)?;
//! let mut model = AdaptedModel::<Lora>::new(backbone);
//! // A LoRA adapter that Python PEFT saved for all-MiniLM-L6-v2.
//! model.load_group("sentiment", "adapters/sentiment")?;
//! model.merge("sentiment")?; // plain-backbone speed for a single-app deployment
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

mod adapted;
mod error;
mod groups;
pub mod ia3;
pub mod lora;
pub mod peft;
mod scheme;
pub mod targets;

pub use adapted::{AdaptedModel, GroupInfo, GroupTable, ParameterCounts};
pub use error::AdapterError;
pub use groups::SiteGroups;
pub use ia3::{Ia3, Ia3Config};
pub use lora::{Lora, LoraConfig, LoraInit};
pub use peft::{PeftFields, TensorFile};
pub use scheme::{Adapter, AdapterConfig};
pub use targets::{Layers, ModuleSelector, Targets};
