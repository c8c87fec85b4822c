//! The error type of this crate.

use std::io;
use std::path::{Path, PathBuf};

use lora_bert_adapters::AdapterError;
use lora_bert_data::DataError;
use lora_bert_encoder::InputError;
use lora_bert_encoder::checkpoint::{CheckpointError, write_atomically};
use lora_bert_encoder::tokenizer::TokenizerError;
use lora_bert_metrics::MetricsError;

/// Everything that can go wrong while building heads, computing objectives, running teachers
/// or training.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// A file could not be read or written.
    #[error("cannot access {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A saved file (head, teacher cache, checkpoint) is malformed or does not fit.
    #[error("{}: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// Another run holds the checkpoints folder (its advisory lock on `<folder>/lock`).
    #[error(
        "{} is in use by another run (its lock file `lock` is held); wait for it to finish or \
         give this run another checkpoints folder",
        path.display()
    )]
    Locked {
        /// The checkpoints folder.
        path: PathBuf,
    },
    /// Tensor shapes that do not fit together (logits vs targets, student vs teacher, ...).
    #[error("shape mismatch in {what}: expected {expected:?}, found {found:?}")]
    Shape {
        /// What was being matched.
        what: String,
        /// The expected shape.
        expected: Vec<usize>,
        /// The shape found.
        found: Vec<usize>,
    },
    /// A parameter that cannot work (a temperature <= 0, a smoothing outside [0, 1), ...).
    #[error("invalid {what}: {message}")]
    InvalidArgument {
        /// The parameter.
        what: &'static str,
        /// Why it is refused.
        message: String,
    },
    /// Parameter groups that do not fit the model or the configuration: a learning-rate group
    /// of the configuration that no parameter belongs to, a parameter in two groups, a group
    /// holding ids the model does not have (see
    /// [`Trainer::with_param_groups`](crate::Trainer::with_param_groups)).
    #[error("parameter group {group:?}: {message}")]
    ParamGroup {
        /// The group's name.
        group: String,
        /// What is wrong with it.
        message: String,
    },
    /// A loss became NaN or infinite.
    #[error("non-finite loss {value} at step {step}")]
    NonFiniteLoss {
        /// The optimizer step.
        step: usize,
        /// The loss value.
        value: f64,
    },
    /// Data error (reading, alignment, batching).
    #[error(transparent)]
    Data(#[from] DataError),
    /// Adapter error (groups, PEFT files).
    #[error(transparent)]
    Adapter(#[from] AdapterError),
    /// Tokenizer error.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// A batch the encoder refuses (empty, too long, id outside the vocabulary, ...).
    #[error(transparent)]
    Input(#[from] InputError),
    /// A sentence has no entry in a teacher cache: the cache was built for another corpus.
    #[error("{}: the teacher cache holds no sentence {sentence} (sentence {index} of the request)", path.display())]
    NotInCache {
        /// The cache directory.
        path: PathBuf,
        /// Index of the sentence in the request.
        index: usize,
        /// The sentence's first words and length.
        sentence: String,
    },
    /// A chart could not be drawn or written.
    #[error("cannot draw {}: {message}", path.display())]
    Plot {
        /// The image file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Scoring predictions failed (gold and predicted sequences that do not match up).
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// An error of the apps crate that has no counterpart here.
    #[error(transparent)]
    App(lora_bert_apps::AppError),
}

impl From<lora_bert_apps::AppError> for TrainError {
    /// The apps crate's errors (heads, pooling, decoding) as the variants of this crate that
    /// say the same, so that a caller matches one `TrainError::Format` whichever crate read
    /// the file.
    fn from(e: lora_bert_apps::AppError) -> Self {
        use lora_bert_apps::AppError as A;
        match e {
            A::Io { path, source } => TrainError::Io { path, source },
            A::Format { path, message } => TrainError::Format { path, message },
            A::Shape {
                what,
                expected,
                found,
            } => TrainError::Shape {
                what,
                expected,
                found,
            },
            A::InvalidArgument { what, message } => TrainError::InvalidArgument { what, message },
            A::Data(e) => TrainError::Data(e),
            A::Metrics(e) => TrainError::Metrics(e),
            other => TrainError::App(other),
        }
    }
}

/// `map_err` helper for I/O errors on `path`.
pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` atomically (a temporary file in the same folder, synced, then
/// renamed), as every file this crate saves is written.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    write_atomically(path, bytes).map_err(|e| match e {
        CheckpointError::Io { path, source } => TrainError::Io { path, source },
        other => TrainError::Format {
            path: path.to_path_buf(),
            message: other.to_string(),
        },
    })
}
