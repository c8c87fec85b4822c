//! The apps crate's error.

use lora_bert_data::DataError;
use lora_bert_metrics::MetricsError;

/// An error of the apps crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// Bad data: a window out of order, a score that is not finite, a tag that is not a tag.
    #[error(transparent)]
    Data(#[from] DataError),
    /// Gold and predicted tags that cannot be scored against each other.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// An argument outside what the function accepts.
    #[error("invalid {what}: {message}")]
    InvalidArgument {
        /// The argument.
        what: &'static str,
        /// What is wrong with it.
        message: String,
    },
}

/// The apps crate's result.
pub type Result<T, E = AppError> = std::result::Result<T, E>;
