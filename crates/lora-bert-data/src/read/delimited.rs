//! CSV and TSV files (with quoting) of labelled texts.

use std::io::Read;
use std::path::{Path, PathBuf};

use csv::{ByteRecord, ReaderBuilder};

use super::open::{Decoding, open, read_error};
use crate::error::parse_err;
use crate::{DataError, LabeledText, Result};

/// A column, by header name or by 0-based index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Column {
    /// The column whose header is this name (needs [`DelimitedFormat::has_header`]).
    Name(String),
    /// The column at this 0-based index.
    Index(usize),
}

impl From<&str> for Column {
    fn from(name: &str) -> Self {
        Column::Name(name.to_owned())
    }
}

impl From<usize> for Column {
    fn from(index: usize) -> Self {
        Column::Index(index)
    }
}

/// The layout of a delimited file of labelled texts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelimitedFormat {
    /// Field delimiter. Default `b','`.
    pub delimiter: u8,
    /// The first record is a header. Default `true`.
    pub has_header: bool,
    /// Fields may be quoted with `"` (RFC 4180). Default `true`.
    pub quoting: bool,
    /// The text column. Default `Name("text")`.
    pub text: Column,
    /// The label column. Default `Name("label")`.
    pub label: Column,
    /// How non-UTF-8 bytes are handled. Default [`Decoding::Strict`].
    pub decoding: Decoding,
}

impl Default for DelimitedFormat {
    fn default() -> Self {
        Self {
            delimiter: b',',
            has_header: true,
            quoting: true,
            text: Column::Name("text".into()),
            label: Column::Name("label".into()),
            decoding: Decoding::Strict,
        }
    }
}

impl DelimitedFormat {
    /// Tab-separated values with a header and no quoting.
    pub fn tsv() -> Self {
        Self {
            delimiter: b'\t',
            quoting: false,
            ..Self::default()
        }
    }

    /// Sets the text and label columns.
    pub fn columns(mut self, text: impl Into<Column>, label: impl Into<Column>) -> Self {
        self.text = text.into();
        self.label = label.into();
        self
    }
}

/// Streams the labelled texts of a delimited file. Errors carry the line a record starts on
/// (a quoted field may span lines).
///
/// ```
/// use lora_bert_data::read::{DelimitedFormat, DelimitedReader};
///
/// let csv = "category,text\nfresh,\"Warm, funny\"\nrotten,Dull\n";
/// let format = DelimitedFormat::default().columns("text", "category");
/// let texts = DelimitedReader::new(csv.as_bytes(), "inline", &format)?
///     .collect::<Result<Vec<_>, _>>()?;
/// assert_eq!(texts[0].text, "Warm, funny");
/// assert_eq!(texts[1].label, "rotten");
/// # Ok::<(), lora_bert_data::DataError>(())
/// ```
pub struct DelimitedReader<R> {
    reader: csv::Reader<R>,
    origin: PathBuf,
    text: usize,
    label: usize,
    decoding: Decoding,
    record: ByteRecord,
    failed: bool,
}

impl<R: Read> DelimitedReader<R> {
    /// Reads `reader` (and its header, to resolve column names); errors name `origin`.
    ///
    /// # Errors
    ///
    /// [`DataError::Parse`] at line 1 for a column name missing from the header (or an
    /// unreadable header), [`DataError::InvalidArgument`] for a column name without a header.
    pub fn new(reader: R, origin: impl Into<PathBuf>, format: &DelimitedFormat) -> Result<Self> {
        let origin = origin.into();
        let mut reader = ReaderBuilder::new()
            .delimiter(format.delimiter)
            .has_headers(format.has_header)
            .quoting(format.quoting)
            .flexible(true)
            .from_reader(reader);
        let header: Vec<String> = if format.has_header {
            let header = reader
                .byte_headers()
                .map_err(|e| csv_error(&origin, 1, e))?;
            header
                .iter()
                .map(|field| format.decoding.decode(field.to_vec()))
                .collect::<std::result::Result<_, _>>()
                .map_err(|message| parse_err(&origin, 1, message))?
        } else {
            Vec::new()
        };
        let resolve = |column: &Column| match column {
            Column::Index(i) => Ok(*i),
            Column::Name(name) if !format.has_header => Err(DataError::InvalidArgument {
                what: "column",
                message: format!("`{name}` is a name but the format has no header"),
            }),
            Column::Name(name) => header.iter().position(|h| h == name).ok_or_else(|| {
                parse_err(
                    &origin,
                    1,
                    format!("no column `{name}` in the header ({})", header.join(", ")),
                )
            }),
        };
        Ok(Self {
            text: resolve(&format.text)?,
            label: resolve(&format.label)?,
            reader,
            origin,
            decoding: format.decoding,
            record: ByteRecord::new(),
            failed: false,
        })
    }

    fn field(&self, index: usize, line: usize) -> Result<String> {
        let bytes = self.record.get(index).ok_or_else(|| {
            parse_err(
                &self.origin,
                line,
                format!(
                    "expected at least {} fields, found {}",
                    index.saturating_add(1),
                    self.record.len()
                ),
            )
        })?;
        self.decoding
            .decode(bytes.to_vec())
            .map_err(|message| parse_err(&self.origin, line, message))
    }
}

impl<R: Read> Iterator for DelimitedReader<R> {
    type Item = Result<LabeledText>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.reader.read_byte_record(&mut self.record) {
            Ok(false) => None,
            Ok(true) => {
                let line = self.record.position().map_or(0, |p| p.line() as usize);
                Some(self.field(self.text, line).and_then(|text| {
                    Ok(LabeledText {
                        text,
                        label: self.field(self.label, line)?,
                    })
                }))
            }
            Err(e) => {
                self.failed = true;
                let line = self.reader.position().line() as usize;
                Some(Err(csv_error(&self.origin, line, e)))
            }
        }
    }
}

/// A csv error as a [`DataError`], at the line it names (else `line`).
fn csv_error(origin: &Path, line: usize, e: csv::Error) -> DataError {
    let line = e.position().map_or(line, |p| p.line() as usize);
    let message = e.to_string();
    match e.into_kind() {
        csv::ErrorKind::Io(e) => read_error(origin, line, e),
        _ => parse_err(origin, line, message),
    }
}

/// Reads every labelled text of a delimited file (compressed or not, see [`open`]).
///
/// # Errors
///
/// [`DataError::Io`] if the file cannot be read, [`DataError::Parse`] naming the file and line
/// for an unknown column name, a record with too few fields or invalid UTF-8.
pub fn read_delimited(path: &Path, format: &DelimitedFormat) -> Result<Vec<LabeledText>> {
    DelimitedReader::new(open(path)?, path, format)?.collect()
}
