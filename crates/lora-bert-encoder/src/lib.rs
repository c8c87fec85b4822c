//! A BERT encoder on [burn](https://burn.dev) that loads Hugging Face checkpoints and matches
//! `transformers` numerically, with a pluggable projection for task-routed adapters.
//!
//! - [`BertConfig`]: Hugging Face `config.json`, validated.
//! - [`BertModel`]: embeddings, self-attention with a padding mask, feed-forward, post-LN,
//!   optional pooler; [`mean_pool`] as sentence-transformers pools.
//! - [`MpnetModel`]: MPNet (all-mpnet-base-v2), the distillation teacher: relative position
//!   bias, positions after the padding index; loads HF checkpoints through the same
//!   [`checkpoint`] machinery.
//! - [`checkpoint`]: safetensors loading (with a [`LoadReport`]) and HF-named saving.
//! - [`projection`]: the extension point adapters plug into ([`Projection`],
//!   [`ProjectionAdapter`], [`Route`]).
//! - [`tokenizer`]: a [`BertTokenizer`] with an explicit padding, truncation and windowing policy.
//! - [`device`]: the only place a backend is named.
//!
//! ```no_run
//! use lora_bert_encoder::{BertModel, BertTokenizer, BertInput, Route, mean_pool, device};
//!
//! let device = device::device(device::Backend::Flex)?;
//! let (model, _report) = BertModel::load("all-MiniLM-L6-v2", &device)?;
//! let tokenizer = BertTokenizer::from_file("all-MiniLM-L6-v2/tokenizer.json")?;
//! let batch = tokenizer.encode_batch(&["A man is eating food.", "The market fell."])?;
//! let input = BertInput::from_batch(&batch, model.config(), &device)?;
//! let output = model.forward(&input, &Route::Base)?;
//! let sentence_embeddings = mean_pool(output.last_hidden_state, input.attention_mask);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

mod build;
pub mod checkpoint;
pub mod config;
pub mod device;
pub mod kernels;
pub mod model;
pub mod mpnet;
pub mod padding;
pub mod projection;
pub mod quantize;
pub mod states;
pub mod tensor_file;
pub mod tokenizer;

pub use checkpoint::{CheckpointError, LoadReport, ModelDir};
pub use config::{Activation, BertConfig, ConfigError, MAX_PARAMETERS};
pub use device::{Backend, Device, DeviceError};
pub use model::{BertInput, BertModel, BertOutput, InputError, l2_normalize, mean_pool};
pub use mpnet::{MpnetConfig, MpnetModel, MpnetOutput};
pub use projection::{
    BaseLinear, NoAdapter, Projection, ProjectionAdapter, ProjectionKind, ProjectionSite, Route,
};
pub use quantize::QuantizeError;
pub use states::{Encoder, HiddenLayer, PaddedRows};
pub use tokenizer::{Batch, BertTokenizer, Encoding, LengthPolicy, TokenizerError};
