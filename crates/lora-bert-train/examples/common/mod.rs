//! What the `pre_finetune`, `finetune` and `ner_teacher` examples share: their error type and
//! exit status, the checks of their flags that clap does not make, and loading
//! all-MiniLM-L6-v2 and its tokenizer.

// Each example uses part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap::error::ErrorKind;

use lora_bert_assets::{AssetCache, AssetError, ModelFiles};
use lora_bert_data::DataError;
use lora_bert_encoder::device::{self, Backend, Device, DeviceError};
use lora_bert_encoder::tokenizer::{BertTokenizer, LengthPolicy};
use lora_bert_encoder::{BertModel, CheckpointError, TokenizerError};
use lora_bert_train::TrainError;

/// Everything that can end an example early.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A bad command line that clap's parsing let through (reported as clap reports its own
    /// errors, with the usage, exit code 2).
    #[error("{0}")]
    Usage(String),
    /// Training, teacher, fine-tuning or app errors.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// Reading or encoding a dataset.
    #[error(transparent)]
    Data(#[from] DataError),
    /// Fetching the model or a dataset package.
    #[error(transparent)]
    Asset(#[from] AssetError),
    /// Building the device.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// Loading the tokenizer.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// Loading a model directory.
    #[error("cannot load the model in {path}: {source}")]
    Model {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: CheckpointError,
    },
    /// A file that cannot be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Runs `body`, reports its error and turns it into an exit code: 0 on success, 2 for a bad
/// command line (the message and `C`'s usage on stderr, as clap reports a bad value), 1 for
/// any other error (printed with `Display`).
pub fn exit<C: CommandFactory>(body: impl FnOnce() -> Result<(), CliError>) -> ExitCode {
    match body() {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Usage(message)) => {
            let _ = C::command()
                .error(ErrorKind::ValueValidation, message)
                .print();
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A count that must be at least 1 (clap's `value_parser`).
pub fn positive(value: &str) -> Result<usize, String> {
    match value.parse::<usize>().map_err(|e| e.to_string())? {
        0 => Err("must be at least 1".into()),
        n => Ok(n),
    }
}

/// Checks an output folder before any work starts: it must be a folder (or not exist yet), be
/// writable, and hold none of `results` (the files a finished run writes there) unless
/// `force`. What a resumable run keeps there (checkpoints, caches) is allowed.
pub fn output_dir(dir: &Path, results: &[&str], force: bool) -> Result<(), CliError> {
    if dir.exists() && !dir.is_dir() {
        return Err(CliError::Usage(format!(
            "--out {}: exists and is not a folder",
            dir.display()
        )));
    }
    if !force && let Some(found) = results.iter().find(|f| dir.join(f).exists()) {
        return Err(CliError::Usage(format!(
            "--out {} already holds a finished result ({found}); pass --force to overwrite it, \
             or choose another folder",
            dir.display()
        )));
    }
    let io = |source| CliError::Io {
        path: dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let probe = dir.join(format!(".write-test-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(io)?;
    std::fs::remove_file(&probe).map_err(io)
}

/// The default CPU backend of this build (flex).
pub fn default_backend() -> Result<Backend, CliError> {
    Ok(Backend::default_cpu()?)
}

/// The inference device of `backend` and its autodiff twin.
pub fn devices(backend: Backend) -> Result<(Device, Device), CliError> {
    let inner = device::device(backend)?;
    let training = device::autodiff(inner.clone());
    Ok((inner, training))
}

/// The asset cache and all-MiniLM-L6-v2's files (fetched on first use).
pub fn minilm() -> Result<(AssetCache, ModelFiles), CliError> {
    let cache = AssetCache::from_env()?;
    let files = lora_bert_assets::all_minilm_l6_v2(&cache)?;
    Ok((cache, files))
}

/// all-MiniLM-L6-v2's tokenizer with at most `max_length` tokens per encoding, windowing
/// longer sentences (a quarter of a window overlaps the next one).
pub fn tokenizer(files: &ModelFiles, max_length: usize) -> Result<BertTokenizer, CliError> {
    if !(16..=512).contains(&max_length) {
        return Err(CliError::Usage(format!(
            "--max-length {max_length}: must be between 16 and 512"
        )));
    }
    let stride = (max_length - 2) / 4;
    Ok(BertTokenizer::from_file(&files.tokenizer)?
        .with_max_length(max_length)
        .with_length_policy(LengthPolicy::Window { stride }))
}

/// The backbone in the Hugging Face model directory `dir`, on `device`.
pub fn load_backbone(dir: &Path, device: &Device) -> Result<BertModel, CliError> {
    BertModel::load(dir, device)
        .map(|(model, _report)| model)
        .map_err(|source| CliError::Model {
            path: dir.to_path_buf(),
            source,
        })
}

/// Items of the `sources` in turn (one of each, then the next of each, ...), at most `max`:
/// every source gets an equal share of a cap as far as it has items.
pub fn interleave<T>(sources: Vec<Vec<T>>, max: Option<usize>) -> Vec<T> {
    let total: usize = sources.iter().map(Vec::len).sum();
    let cap = max.unwrap_or(total).min(total);
    let mut iters: Vec<_> = sources.into_iter().map(Vec::into_iter).collect();
    let mut out = Vec::with_capacity(cap);
    while out.len() < cap {
        for it in &mut iters {
            if out.len() == cap {
                break;
            }
            if let Some(x) = it.next() {
                out.push(x);
            }
        }
    }
    out
}

/// Seconds since `start`, for summaries.
pub fn secs(start: std::time::Instant) -> f64 {
    start.elapsed().as_secs_f64()
}
