//! What the `pre_finetune` and `finetune` examples share: their error type, flag parsing, and
//! loading all-MiniLM-L6-v2 and its tokenizer.

// Each example uses part of this module.
#![allow(dead_code)]

use std::fmt::Display;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;

use lora_bert_assets::{AssetCache, AssetError, ModelFiles};
use lora_bert_data::DataError;
use lora_bert_encoder::device::{self, Backend, Device, DeviceError};
use lora_bert_encoder::tokenizer::{BertTokenizer, LengthPolicy};
use lora_bert_encoder::{BertModel, CheckpointError, TokenizerError};
use lora_bert_train::TrainError;

/// Everything that can end an example early.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A bad command line (reported with the usage, exit code 2).
    #[error("{0}")]
    Usage(String),
    /// `--help`: the usage on stdout, exit code 0.
    #[error("help")]
    Help,
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

/// Runs `body`, reports its error and turns it into an exit code: 0 on success (and for
/// `--help`, which prints `usage` on stdout), 2 for a bad command line (message and the first
/// line of `usage` on stderr), 1 for any other error.
pub fn exit(usage: &str, body: impl FnOnce() -> Result<(), CliError>) -> ExitCode {
    match body() {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Help) => {
            // A closed pipe (`--help | head`) is not an error worth a panic.
            let _ = writeln!(std::io::stdout(), "{usage}");
            ExitCode::SUCCESS
        }
        Err(CliError::Usage(message)) => {
            let first = usage.lines().next().unwrap_or_default();
            eprintln!("error: {message}\n{first}\n(--help lists the options)");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The command line's flags, taken one by one.
pub struct Flags {
    args: std::vec::IntoIter<String>,
}

impl Flags {
    /// The process's arguments (without the program name).
    ///
    /// # Errors
    ///
    /// [`CliError::Usage`] for an argument that is not valid UTF-8.
    pub fn from_env() -> Result<Self, CliError> {
        let args = std::env::args_os()
            .skip(1)
            .map(|a| {
                a.into_string().map_err(|a| {
                    CliError::Usage(format!(
                        "argument `{}` is not valid UTF-8",
                        a.to_string_lossy()
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            args: args.into_iter(),
        })
    }

    /// The next flag, if any.
    pub fn next_flag(&mut self) -> Option<String> {
        self.args.next()
    }

    /// The value of `flag`, parsed.
    pub fn value<T>(&mut self, flag: &str) -> Result<T, CliError>
    where
        T: FromStr,
        T::Err: Display,
    {
        let raw = self
            .args
            .next()
            .ok_or_else(|| CliError::Usage(format!("{flag} needs a value")))?;
        raw.parse()
            .map_err(|e| CliError::Usage(format!("{flag} `{raw}`: {e}")))
    }
}

/// An unknown flag.
pub fn unknown(flag: &str) -> CliError {
    CliError::Usage(format!("unknown argument `{flag}`"))
}

/// A flag the command needs.
pub fn required<T>(value: Option<T>, flag: &str) -> Result<T, CliError> {
    value.ok_or_else(|| CliError::Usage(format!("{flag} is required")))
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

/// A flag that must be at least 1.
pub fn positive(value: usize, flag: &str) -> Result<usize, CliError> {
    if value == 0 {
        return Err(CliError::Usage(format!("{flag} must be at least 1")));
    }
    Ok(value)
}

/// Parses `--backend`.
pub fn backend(name: &str) -> Result<Backend, CliError> {
    name.parse::<Backend>()
        .map_err(|e| CliError::Usage(format!("--backend: {e}")))
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
