//! CoNLL-style column files: one token per line, sentences separated by blank lines.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use super::open::{Decoding, Lines, open};
use crate::{Result, TaggedSentence};

/// How the columns of a line are separated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Separator {
    /// Any run of spaces and tabs (CoNLL-2003).
    #[default]
    Whitespace,
    /// Exactly one tab; columns may then hold spaces (WNUT-16).
    Tab,
}

/// The layout of a CoNLL-style file.
///
/// A line holding only spaces and tabs (or nothing) ends a sentence; so does a `-DOCSTART-`
/// line when [`docstart`](Self::docstart) is set, which is then skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConllFormat {
    /// Column of the word (0-based). Default 0.
    pub token_column: usize,
    /// Column of the tag (0-based); `None`, the default, takes the last column.
    pub tag_column: Option<usize>,
    /// Column separator. Default [`Separator::Whitespace`].
    pub separator: Separator,
    /// Skip lines starting with `-DOCSTART-` (and break the sentence there). Default `true`.
    pub docstart: bool,
}

impl Default for ConllFormat {
    fn default() -> Self {
        Self {
            token_column: 0,
            tag_column: None,
            separator: Separator::Whitespace,
            docstart: true,
        }
    }
}

impl ConllFormat {
    /// Tab-separated `token<TAB>tag` lines, as in WNUT-16.
    pub fn tab() -> Self {
        Self {
            separator: Separator::Tab,
            ..Self::default()
        }
    }
}

/// Streams the sentences of a CoNLL-style file.
///
/// ```
/// use lora_bert_data::read::{ConllFormat, ConllReader};
///
/// let text = "-DOCSTART- -X- O\n\nEU B-ORG\nrejects O\n\t\nPeter B-PER\n";
/// let sentences = ConllReader::new(text.as_bytes(), "inline", ConllFormat::default())
///     .collect::<Result<Vec<_>, _>>()?;
/// assert_eq!(sentences.len(), 2);
/// assert_eq!(sentences[0].tokens, ["EU", "rejects"]);
/// assert_eq!(sentences[1].tags, ["B-PER"]);
/// # Ok::<(), lora_bert_data::DataError>(())
/// ```
pub struct ConllReader<R> {
    lines: Lines<R>,
    format: ConllFormat,
}

impl<R: BufRead> ConllReader<R> {
    /// Reads `reader`; errors name `origin` (a path, or any name for in-memory input).
    pub fn new(reader: R, origin: impl Into<PathBuf>, format: ConllFormat) -> Self {
        Self {
            lines: Lines::new(reader, origin.into()),
            format,
        }
    }

    /// Sets how non-UTF-8 bytes are handled (default [`Decoding::Strict`]).
    pub fn decoding(mut self, decoding: Decoding) -> Self {
        self.lines.set_decoding(decoding);
        self
    }

    fn parse(&self, line: usize, text: &str) -> Result<(String, String)> {
        let columns: Vec<&str> = match self.format.separator {
            Separator::Whitespace => text.split_whitespace().collect(),
            Separator::Tab => text.split('\t').collect(),
        };
        let tag_column = self
            .format
            .tag_column
            .unwrap_or_else(|| columns.len().saturating_sub(1));
        let needed = self.format.token_column.max(tag_column) + 1;
        if columns.len() < needed.max(2) {
            return Err(self.lines.error(
                line,
                format!(
                    "expected at least {} columns, found {}",
                    needed.max(2),
                    columns.len()
                ),
            ));
        }
        let (token, tag) = (columns[self.format.token_column], columns[tag_column]);
        if token.is_empty() || tag.is_empty() {
            return Err(self.lines.error(line, "empty token or tag column"));
        }
        Ok((token.to_owned(), tag.to_owned()))
    }
}

impl<R: BufRead> Iterator for ConllReader<R> {
    type Item = Result<TaggedSentence>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut sentence = TaggedSentence {
            tokens: Vec::new(),
            tags: Vec::new(),
        };
        loop {
            let (number, line) = match self.lines.next() {
                Some(Ok(line)) => line,
                Some(Err(e)) => return Some(Err(e)),
                None => break,
            };
            let is_break =
                line.trim().is_empty() || (self.format.docstart && line.starts_with("-DOCSTART-"));
            if is_break {
                if sentence.is_empty() {
                    continue;
                }
                break;
            }
            match self.parse(number, &line) {
                Ok((token, tag)) => {
                    sentence.tokens.push(token);
                    sentence.tags.push(tag);
                }
                Err(e) => return Some(Err(e)),
            }
        }
        (!sentence.is_empty()).then_some(Ok(sentence))
    }
}

/// Reads every sentence of a CoNLL-style file (compressed or not, see [`open`]).
///
/// # Errors
///
/// [`DataError::Io`](crate::DataError::Io) if the file cannot be read,
/// [`DataError::Parse`](crate::DataError::Parse) naming the file and line for a line with too
/// few columns, an empty column or invalid UTF-8.
pub fn read_conll(path: &Path, format: &ConllFormat) -> Result<Vec<TaggedSentence>> {
    ConllReader::new(open(path)?, path, format.clone()).collect()
}
