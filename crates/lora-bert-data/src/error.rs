//! The error type of this crate.

use std::io;
use std::path::{Path, PathBuf};

use lora_bert_assets::AssetError;
use lora_bert_encoder::tokenizer::TokenizerError;
use lora_bert_metrics::Scheme;

/// Everything that can go wrong while reading, converting, aligning, batching or sampling data.
///
/// Errors about input data name the file (or the `origin` a reader was given) and the 1-based
/// line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// A file could not be opened or read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A line of an input file does not have the expected format.
    #[error("{}:{line}: {message}", path.display())]
    Parse {
        /// The file (or the origin name given to the reader).
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the line.
        message: String,
    },
    /// A tag in a file read as entity tags that is neither `O` nor a scheme prefix
    /// (`B I E S L U`), `-` and an entity type.
    #[error("{}:{line}: unknown tag `{tag}`: expected `O` or a B, I, E, S, L or U prefix, `-` and an entity type without whitespace", path.display())]
    UnknownTag {
        /// The file (or the origin name given to the reader).
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The tag.
        tag: String,
    },
    /// The tags of one file do not follow one tagging scheme: a sentence breaks every scheme
    /// the sentences above it follow (the file mixes schemes, say IOB1 and IOB2), or breaks
    /// all of them.
    #[error("{}:{line}: tags do not follow one scheme: {message}", path.display())]
    MixedSchemes {
        /// The file (or the origin name given to the reader).
        path: PathBuf,
        /// 1-based line of the tag where no scheme fits any more.
        line: usize,
        /// Which schemes it breaks, and where the others were ruled out.
        message: String,
    },
    /// A `-DOCSTART-` line followed by another one, or by the end of the input, with no
    /// sentence in between.
    #[error(
        "{}:{line}: empty document: no sentence between this -DOCSTART- and {}",
        path.display(),
        next.map_or_else(|| "the end of the input".to_owned(), |n| format!("the next one at line {n}"))
    )]
    EmptyDocument {
        /// The file (or the origin name given to the reader).
        path: PathBuf,
        /// 1-based line of the empty document's `-DOCSTART-`.
        line: usize,
        /// 1-based line of the next `-DOCSTART-`; `None` at the end of the input.
        next: Option<usize>,
    },
    /// A label that is not in the label vocabulary.
    #[error("unknown label `{label}`{}", context.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    UnknownLabel {
        /// The label.
        label: String,
        /// Where it came from (file and line, or the vocabulary's name), when known.
        context: Option<String>,
    },
    /// A tag sequence that breaks the rules of a tagging scheme.
    #[error("tag {position} `{tag}` is not valid {scheme}: {reason}")]
    InvalidTag {
        /// Index of the tag in its sequence.
        position: usize,
        /// The tag.
        tag: String,
        /// The scheme it was checked against.
        scheme: Scheme,
        /// Which rule it breaks.
        reason: String,
    },
    /// Two sequences that must have one entry each per item differ in length.
    #[error("{what}: expected {expected} entries, found {found}")]
    LengthMismatch {
        /// What was being matched.
        what: String,
        /// The expected length.
        expected: usize,
        /// The length found.
        found: usize,
    },
    /// A parameter that cannot work (a zero batch size, a fraction outside (0, 1], ...).
    #[error("invalid {what}: {message}")]
    InvalidArgument {
        /// The parameter.
        what: &'static str,
        /// Why it is refused.
        message: String,
    },
    /// There is nothing to work on (an empty dataset, an empty batch, no task).
    #[error("{0} is empty")]
    Empty(String),
    /// Tokenization failed.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// Fetching a dataset's package failed.
    #[error(transparent)]
    Asset(#[from] AssetError),
}

/// `map_err` helper for I/O errors on `path`.
pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> DataError + '_ {
    move |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A [`DataError::Parse`] at `path:line`.
pub(crate) fn parse_err(path: &Path, line: usize, message: impl Into<String>) -> DataError {
    DataError::Parse {
        path: path.to_path_buf(),
        line,
        message: message.into(),
    }
}
