//! Apps of lora-bert: what fine-tuning scores and what serving answers, in one place.
//!
//! - [`heads`]: the task heads on the encoder's states (token and sequence classification,
//!   and the projection of contrastive training) and their files; [`pooling`]: how states
//!   become one vector per text or per word.
//! - [`manifest`]: an app directory's `app.json` (kind, task, mode, group, how words were
//!   read), versioned.
//! - [`decode`]: the one path from a token classifier's logits to word labels to entities
//!   with character offsets ([`TokenDecoder`]), and the entity scores of evaluation read the
//!   same way ([`entity_report`]). Fine-tuning's evaluation and the facade's `NerPipeline`
//!   both call it, so what is served is what was scored.
//!
//! The crate depends on the encoder, data and metrics crates only: a program that serves
//! apps does not compile the training crate.
#![warn(missing_docs)]

pub mod decode;
mod error;
pub mod heads;
pub mod manifest;
pub mod pooling;

pub use decode::{Entity, TokenDecoder, entity_report, entity_spans, is_entity_tag};
pub use error::{AppError, Result};
pub use lora_bert_data::align::{Aggregation, LabelAlignment, WordPrediction};
