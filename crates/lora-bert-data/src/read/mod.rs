//! Streaming readers for the formats labelled data comes in: CoNLL-style columns, NLTK
//! `word/tag` text, JSON Lines, CSV/TSV and text pairs.
//!
//! Every reader takes any [`BufRead`](std::io::BufRead) (or [`Read`](std::io::Read) for
//! CSV) and an `origin` — the path, or any name for in-memory input — that its errors name
//! together with the 1-based line. The `read_*` functions open a path with [`open`], which
//! decompresses `.bz2` and `.gz` input transparently (recognised by magic bytes). Invalid
//! UTF-8 is a [`DataError::Parse`](crate::DataError::Parse) unless a reader is given another
//! [`Decoding`]; a truncated or corrupt compressed stream is a `Parse` error at the line where
//! reading stopped.

mod conll;
mod delimited;
mod jsonl;
mod nltk;
mod open;
mod pairs;

pub use conll::{
    ConllDocument, ConllDocuments, ConllFormat, ConllReader, ConllSentence, ConllSentences,
    SCHEME_PREFERENCE, Separator, detect_scheme, normalise_scheme, read_conll,
    read_conll_documents,
};
pub use delimited::{Column, DelimitedFormat, DelimitedReader, read_delimited};
pub use jsonl::{JsonlReader, TaggedFields, TextFields, read_jsonl_tagged, read_jsonl_texts};
pub use nltk::{NltkParagraphs, NltkReader, parse_tagged_line, read_nltk, read_nltk_paragraphs};
pub(crate) use open::Lines;
pub use open::{Decoding, decompress, open, read_text};
pub use pairs::{PairFields, PairTsvReader, read_pairs_jsonl, read_pairs_tsv};
