//! Text pairs for contrastive training: `anchor<TAB>positive` lines or JSON Lines.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use super::jsonl::{JsonlReader, string_field};
use super::open::{Decoding, Lines, open};
use crate::{Result, TextPair};

/// Field names of a text pair in JSON Lines: `{"anchor": "..", "positive": ".."}` by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairFields {
    /// The anchor (query side).
    pub anchor: String,
    /// The positive.
    pub positive: String,
}

impl Default for PairFields {
    fn default() -> Self {
        Self {
            anchor: "anchor".into(),
            positive: "positive".into(),
        }
    }
}

impl<R: BufRead> Iterator for JsonlReader<R, PairFields> {
    type Item = Result<TextPair>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_with(|fields, object| {
            Ok(TextPair {
                anchor: string_field(object, &fields.anchor)?,
                positive: string_field(object, &fields.positive)?,
            })
        })
    }
}

/// Streams `anchor<TAB>positive` lines (blank lines skipped; neither side may be empty or hold
/// a tab).
///
/// ```
/// use lora_bert_data::read::PairTsvReader;
///
/// let tsv = "cheap meds\tBuy now!\n\nmeeting moved\tIt is at 3 now.\n";
/// let pairs = PairTsvReader::new(tsv.as_bytes(), "inline").collect::<Result<Vec<_>, _>>()?;
/// assert_eq!(pairs[1].anchor, "meeting moved");
/// assert_eq!(pairs[1].positive, "It is at 3 now.");
/// # Ok::<(), lora_bert_data::DataError>(())
/// ```
pub struct PairTsvReader<R> {
    lines: Lines<R>,
}

impl<R: BufRead> PairTsvReader<R> {
    /// Reads `reader`; errors name `origin` (a path, or any name for in-memory input).
    pub fn new(reader: R, origin: impl Into<PathBuf>) -> Self {
        Self {
            lines: Lines::new(reader, origin.into()),
        }
    }

    /// Sets how non-UTF-8 bytes are handled (default [`Decoding::Strict`]).
    pub fn decoding(mut self, decoding: Decoding) -> Self {
        self.lines.set_decoding(decoding);
        self
    }
}

impl<R: BufRead> Iterator for PairTsvReader<R> {
    type Item = Result<TextPair>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (number, line) = match self.lines.next()? {
                Ok(line) => line,
                Err(e) => return Some(Err(e)),
            };
            if line.trim().is_empty() {
                continue;
            }
            let columns: Vec<&str> = line.split('\t').collect();
            return Some(match columns[..] {
                [anchor, positive] if !anchor.trim().is_empty() && !positive.trim().is_empty() => {
                    Ok(TextPair {
                        anchor: anchor.to_owned(),
                        positive: positive.to_owned(),
                    })
                }
                [_, _] => Err(self.lines.error(number, "empty anchor or positive")),
                _ => Err(self.lines.error(
                    number,
                    format!("expected 2 tab-separated columns, found {}", columns.len()),
                )),
            });
        }
    }
}

/// Reads every pair of an `anchor<TAB>positive` file (compressed or not, see [`open`]).
///
/// # Errors
///
/// [`DataError::Io`](crate::DataError::Io) if the file cannot be read,
/// [`DataError::Parse`](crate::DataError::Parse) naming the file and line for a line without
/// exactly two non-empty columns, or invalid UTF-8.
pub fn read_pairs_tsv(path: &Path) -> Result<Vec<TextPair>> {
    PairTsvReader::new(open(path)?, path).collect()
}

/// Reads every pair of a JSON Lines file (compressed or not, see [`open`]).
///
/// # Errors
///
/// As [`read_jsonl_tagged`](super::read_jsonl_tagged), for missing or non-string fields.
pub fn read_pairs_jsonl(path: &Path, fields: &PairFields) -> Result<Vec<TextPair>> {
    JsonlReader::new(open(path)?, path, fields.clone()).collect()
}
