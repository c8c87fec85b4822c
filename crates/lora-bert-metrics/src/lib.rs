//! Evaluation metrics for lora-bert, identical to the Python references outside checks use.
//!
//! - [`NerReport`]: entity-level precision, recall and F1 per type with micro, macro and
//!   weighted averages, and token accuracy, as Python `seqeval` computes them, in its default
//!   (conlleval-compatible) [`Mode::Default`] or its [`Mode::Strict`] mode for every [`Scheme`].
//! - [`ClassificationReport`]: accuracy, per-class scores, macro and weighted averages and the
//!   confusion matrix, as scikit-learn computes them.
//! - [`bootstrap`]: paired bootstrap intervals for a difference between two systems over test
//!   items, seeds and pre-finetuning seeds, with the TOST equivalence check.
//!
//! Both are checked against the Python libraries on fixtures made by
//! `scripts/metrics_fixtures.py`.
#![warn(missing_docs)]

pub mod bootstrap;
pub mod chunks;
mod classification;
mod error;
mod ner;
mod prf;
pub mod scheme;
mod span;

pub use classification::ClassificationReport;
pub use error::MetricsError;
pub use ner::{Mode, NerReport, SentenceCounts};
pub use prf::{Averages, Prf};
pub use scheme::{Scheme, UnknownScheme};
pub use span::Span;
