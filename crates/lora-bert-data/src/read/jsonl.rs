//! JSON Lines: one JSON object per line.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::open::{Decoding, Lines, open};
use crate::{LabeledText, Result, TaggedSentence};

/// Field names of a tagged sentence: `{"tokens": [..], "tags": [..]}` by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaggedFields {
    /// The array of words.
    pub tokens: String,
    /// The array of tags, one per word.
    pub tags: String,
}

impl Default for TaggedFields {
    fn default() -> Self {
        Self {
            tokens: "tokens".into(),
            tags: "tags".into(),
        }
    }
}

/// Field names of a labelled text: `{"text": "..", "label": ..}` by default. The label may be
/// a string or an integer (read as its decimal digits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextFields {
    /// The text.
    pub text: String,
    /// The label.
    pub label: String,
}

impl Default for TextFields {
    fn default() -> Self {
        Self {
            text: "text".into(),
            label: "label".into(),
        }
    }
}

/// Streams a JSON Lines file, one example per non-blank line. What an example is depends on
/// the field set `F`: [`TaggedFields`] gives [`TaggedSentence`]s, [`TextFields`]
/// [`LabeledText`]s and [`PairFields`](super::PairFields) [`TextPair`](crate::TextPair)s.
///
/// ```
/// use lora_bert_data::read::{JsonlReader, TextFields};
///
/// let text = "{\"text\": \"great film\", \"label\": 1}\n\n{\"text\": \"dull\", \"label\": \"neg\"}\n";
/// let texts = JsonlReader::new(text.as_bytes(), "inline", TextFields::default())
///     .collect::<Result<Vec<_>, _>>()?;
/// assert_eq!(texts[0].label, "1");
/// assert_eq!(texts[1].label, "neg");
/// # Ok::<(), lora_bert_data::DataError>(())
/// ```
pub struct JsonlReader<R, F> {
    lines: Lines<R>,
    fields: F,
}

impl<R: BufRead, F> JsonlReader<R, F> {
    /// Reads `reader`; errors name `origin` (a path, or any name for in-memory input).
    pub fn new(reader: R, origin: impl Into<PathBuf>, fields: F) -> Self {
        Self {
            lines: Lines::new(reader, origin.into()),
            fields,
        }
    }

    /// Sets how non-UTF-8 bytes are handled (default [`Decoding::Strict`]).
    pub fn decoding(mut self, decoding: Decoding) -> Self {
        self.lines.set_decoding(decoding);
        self
    }

    /// The next non-blank line as a JSON object, and its line number.
    fn next_object(&mut self) -> Option<Result<(usize, Map<String, Value>)>> {
        loop {
            let (number, line) = match self.lines.next()? {
                Ok(line) => line,
                Err(e) => return Some(Err(e)),
            };
            if line.trim().is_empty() {
                continue;
            }
            return Some(match serde_json::from_str::<Value>(&line) {
                Ok(Value::Object(object)) => Ok((number, object)),
                Ok(_) => Err(self.lines.error(number, "expected a JSON object")),
                Err(e) => Err(self.lines.error(number, format!("invalid JSON: {e}"))),
            });
        }
    }

    /// Maps the next object through `convert`, whose error message gets the line.
    pub(crate) fn next_with<T>(
        &mut self,
        convert: impl FnOnce(&F, &Map<String, Value>) -> std::result::Result<T, String>,
    ) -> Option<Result<T>> {
        Some(self.next_object()?.and_then(|(number, object)| {
            convert(&self.fields, &object).map_err(|message| self.lines.error(number, message))
        }))
    }
}

/// The string field `name` of `object`.
pub(crate) fn string_field(
    object: &Map<String, Value>,
    name: &str,
) -> std::result::Result<String, String> {
    match object.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("field `{name}` is not a string")),
        None => Err(format!("missing field `{name}`")),
    }
}

fn string_array(
    object: &Map<String, Value>,
    name: &str,
) -> std::result::Result<Vec<String>, String> {
    let Some(Value::Array(items)) = object.get(name) else {
        return Err(match object.get(name) {
            None => format!("missing field `{name}`"),
            Some(_) => format!("field `{name}` is not an array"),
        });
    };
    items
        .iter()
        .map(|item| match item {
            Value::String(s) => Ok(s.clone()),
            _ => Err(format!("field `{name}` holds a non-string item `{item}`")),
        })
        .collect()
}

impl<R: BufRead> Iterator for JsonlReader<R, TaggedFields> {
    type Item = Result<TaggedSentence>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_with(|fields, object| {
            let tokens = string_array(object, &fields.tokens)?;
            let tags = string_array(object, &fields.tags)?;
            if tokens.len() != tags.len() {
                return Err(format!(
                    "{} {} but {} {}",
                    tokens.len(),
                    fields.tokens,
                    tags.len(),
                    fields.tags
                ));
            }
            Ok(TaggedSentence { tokens, tags })
        })
    }
}

impl<R: BufRead> Iterator for JsonlReader<R, TextFields> {
    type Item = Result<LabeledText>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_with(|fields, object| {
            let text = string_field(object, &fields.text)?;
            let label = match object.get(&fields.label) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
                Some(other) => {
                    return Err(format!(
                        "field `{}` must be a string or an integer, found `{other}`",
                        fields.label
                    ));
                }
                None => return Err(format!("missing field `{}`", fields.label)),
            };
            Ok(LabeledText { text, label })
        })
    }
}

/// Reads every tagged sentence of a JSON Lines file (compressed or not, see [`open`]).
///
/// # Errors
///
/// [`DataError::Io`](crate::DataError::Io) if the file cannot be read,
/// [`DataError::Parse`](crate::DataError::Parse) naming the file and line for invalid JSON, a
/// missing or mistyped field, or token and tag arrays of different lengths.
pub fn read_jsonl_tagged(path: &Path, fields: &TaggedFields) -> Result<Vec<TaggedSentence>> {
    JsonlReader::new(open(path)?, path, fields.clone()).collect()
}

/// Reads every labelled text of a JSON Lines file (compressed or not, see [`open`]).
///
/// # Errors
///
/// As [`read_jsonl_tagged`]; a label that is neither a string nor an integer is a
/// [`DataError::Parse`](crate::DataError::Parse).
pub fn read_jsonl_texts(path: &Path, fields: &TextFields) -> Result<Vec<LabeledText>> {
    JsonlReader::new(open(path)?, path, fields.clone()).collect()
}
