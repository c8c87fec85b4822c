//! Data for lora-bert: readers for real formats, tag schemes, label vocabularies, alignment of
//! word labels to word pieces and back, batching, multi-task sampling, splits, and a registry
//! of the real datasets lora-bert trains and evaluates on.
#![warn(missing_docs)]

pub mod align;
pub mod batch;
mod error;
mod example;
pub mod read;
pub mod registry;
pub mod sampler;
pub mod scheme;
pub mod split;
pub mod token;
mod vocab;
pub mod window;

pub use error::DataError;
pub use example::{LabeledText, TaggedSentence, TextPair};
pub use lora_bert_metrics::Scheme;
pub use vocab::LabelVocab;

/// The result type of this crate.
pub type Result<T, E = DataError> = std::result::Result<T, E>;
