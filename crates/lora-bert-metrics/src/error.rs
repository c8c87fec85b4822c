//! The errors of the metrics crate.

/// Why a score could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// Gold and predictions differ in length.
    #[error("{what}: {gold} gold against {pred} predicted")]
    LengthMismatch {
        /// What differs (`labels`, `sentences`, `tags of sentence 3`).
        what: String,
        /// Gold length.
        gold: usize,
        /// Prediction length.
        pred: usize,
    },
    /// Runs of two arms that cannot be paired for a bootstrap (seeds or items that differ).
    #[error("cannot pair the runs: {message}")]
    Unpaired {
        /// What differs.
        message: String,
    },
    /// An argument out of its range.
    #[error("invalid argument: {message}")]
    InvalidArgument {
        /// What is wrong.
        message: String,
    },
    /// Nothing to score.
    #[error("nothing to score: no examples")]
    Empty,
    /// A tag is not valid in the scheme (strict mode), e.g. `E-PER` under IOB2.
    #[error("sentence {sentence}, token {token}: tag `{tag}` is not valid in {scheme}")]
    InvalidTag {
        /// Sentence index.
        sentence: usize,
        /// Token index in the sentence.
        token: usize,
        /// The tag.
        tag: String,
        /// The scheme.
        scheme: String,
    },
}
