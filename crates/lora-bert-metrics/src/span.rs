//! [`Span`]: an entity as every crate of the workspace names it, a type over a range of
//! words (or tokens), end exclusive.

use serde::{Deserialize, Serialize};

/// An entity: its type and the word (or token) range `start..end`, end exclusive.
///
/// The chunker of seqeval's default mode ([`chunks`](crate::chunks::chunks)), its strict
/// reading ([`strict_entities`](crate::scheme::strict_entities)) and the data crate's scheme
/// conversions all give spans of this one type.
///
/// ```
/// use lora_bert_metrics::{Span, chunks::chunks_of};
///
/// // seqeval's get_entities gives ('PER', 0, 1), ('LOC', 3, 3), ends inclusive.
/// let found = chunks_of(&["B-PER", "I-PER", "O", "B-LOC"]);
/// assert_eq!(found, [Span::new("PER", 0, 2), Span::new("LOC", 3, 4)]);
/// assert_eq!(found[0].len(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Span {
    /// The entity type (`PER`, `geo-loc`; `_` for a bare prefix in seqeval's default mode).
    pub kind: String,
    /// First word.
    pub start: usize,
    /// One past the last word.
    pub end: usize,
}

impl Span {
    /// A span of type `kind` over the words `start..end`.
    pub fn new(kind: impl Into<String>, start: usize, end: usize) -> Self {
        Span {
            kind: kind.into(),
            start,
            end,
        }
    }

    /// Words covered.
    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start)
    }

    /// `true` for a span of no word (never one the chunkers give).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
