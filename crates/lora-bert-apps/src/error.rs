//! The apps crate's error.

use std::io;
use std::path::{Path, PathBuf};

use lora_bert_data::DataError;
use lora_bert_encoder::checkpoint::{CheckpointError, write_atomically};
use lora_bert_metrics::MetricsError;

/// An error of the apps crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// A file could not be read or written.
    #[error("cannot access {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A saved file (a head, an app manifest) is malformed or does not fit.
    #[error("{}: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// Tensor shapes that do not fit together (states vs a head's width, ...).
    #[error("shape mismatch in {what}: expected {expected:?}, found {found:?}")]
    Shape {
        /// What was being matched.
        what: String,
        /// The expected shape.
        expected: Vec<usize>,
        /// The shape found.
        found: Vec<usize>,
    },
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

/// `map_err` helper for I/O errors on `path`.
pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> AppError + '_ {
    move |source| AppError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` atomically (a temporary file in the same folder, synced, then
/// renamed).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomically(path, bytes).map_err(|e| match e {
        CheckpointError::Io { path, source } => AppError::Io { path, source },
        other => AppError::Format {
            path: path.to_path_buf(),
            message: other.to_string(),
        },
    })
}
