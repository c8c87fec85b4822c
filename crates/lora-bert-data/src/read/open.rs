//! Opening files (compressed or not) and reading them line by line with file:line errors.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use bzip2::bufread::MultiBzDecoder;
use flate2::bufread::MultiGzDecoder;

use crate::error::{io_err, parse_err};
use crate::{DataError, Result};

/// How bytes that are not valid UTF-8 are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Decoding {
    /// Invalid UTF-8 is a [`DataError::Parse`] naming the line.
    #[default]
    Strict,
    /// Invalid sequences become U+FFFD (for raw e-mail and other mixed-charset text).
    Lossy,
    /// A line (or file, for [`read_text`]) that is not valid UTF-8 is read as Latin-1
    /// (ISO 8859-1: each byte is the code point of the same value), which recovers `£` and
    /// accented letters of 8-bit Western text exactly.
    Latin1Fallback,
}

impl Decoding {
    /// Decodes `bytes`; `Err` with a message when [`Decoding::Strict`] meets invalid UTF-8.
    pub(crate) fn decode(self, bytes: Vec<u8>) -> std::result::Result<String, String> {
        match String::from_utf8(bytes) {
            Ok(s) => Ok(s),
            Err(e) => match self {
                Decoding::Strict => Err(format!("invalid UTF-8: {}", e.utf8_error())),
                Decoding::Lossy => Ok(String::from_utf8_lossy(e.as_bytes()).into_owned()),
                Decoding::Latin1Fallback => Ok(e.as_bytes().iter().map(|&b| b as char).collect()),
            },
        }
    }
}

/// Opens `path` for buffered reading, decompressing bzip2 (`BZh`) and gzip (`1f 8b`) input
/// transparently. The format is recognised by its magic bytes, whatever the file is called;
/// concatenated (multi-stream) archives are read to the end.
///
/// # Errors
///
/// [`DataError::Io`] if the file cannot be opened or its first bytes cannot be read.
pub fn open(path: &Path) -> Result<Box<dyn BufRead + Send>> {
    let file = File::open(path).map_err(io_err(path))?;
    decompress(BufReader::new(file)).map_err(io_err(path))
}

/// Wraps `reader` in a bzip2 or gzip decoder when its first bytes are that format's magic,
/// otherwise returns it as it is.
///
/// # Errors
///
/// The I/O error of peeking at the first bytes.
pub fn decompress<R: BufRead + Send + 'static>(
    mut reader: R,
) -> io::Result<Box<dyn BufRead + Send>> {
    let head = loop {
        match reader.fill_buf() {
            Ok(buf) => break buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    };
    Ok(if head.starts_with(b"BZh") {
        Box::new(BufReader::new(MultiBzDecoder::new(reader)))
    } else if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(BufReader::new(MultiGzDecoder::new(reader)))
    } else {
        Box::new(reader)
    })
}

/// Reads a whole file (decompressing it if needed) into a string.
///
/// # Errors
///
/// [`DataError::Io`] if it cannot be read, [`DataError::Parse`] (with the line of the first
/// invalid byte) if it is not UTF-8 and `decoding` is [`Decoding::Strict`].
pub fn read_text(path: &Path, decoding: Decoding) -> Result<String> {
    let mut bytes = Vec::new();
    open(path)?
        .read_to_end(&mut bytes)
        .map_err(|e| read_error(path, 1, e))?;
    match String::from_utf8(bytes) {
        Ok(s) => Ok(s),
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let line = 1 + e.as_bytes()[..valid]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            let bytes = e.into_bytes();
            decoding
                .decode(bytes)
                .map_err(|message| parse_err(path, line, message))
        }
    }
}

/// An I/O error met while reading line `line`: corrupt or truncated input (what decompressors
/// report as `InvalidData` or `UnexpectedEof`; bzip2 reports corrupt data as `InvalidInput`)
/// is a [`DataError::Parse`] at that line, anything else a [`DataError::Io`].
pub(crate) fn read_error(path: &Path, line: usize, e: io::Error) -> DataError {
    match e.kind() {
        io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidInput => {
            parse_err(path, line, format!("corrupt or truncated input: {e}"))
        }
        _ => io_err(path)(e),
    }
}

/// Lines of a reader without their `\n` / `\r\n`, numbered from 1, decoded as asked.
pub(crate) struct Lines<R> {
    reader: R,
    origin: PathBuf,
    decoding: Decoding,
    line: usize,
    buf: Vec<u8>,
    failed: bool,
}

impl<R: BufRead> Lines<R> {
    pub(crate) fn new(reader: R, origin: PathBuf) -> Self {
        Self {
            reader,
            origin,
            decoding: Decoding::Strict,
            line: 0,
            buf: Vec::new(),
            failed: false,
        }
    }

    pub(crate) fn set_decoding(&mut self, decoding: Decoding) {
        self.decoding = decoding;
    }

    /// The file (or origin name) errors name.
    pub(crate) fn origin(&self) -> &Path {
        &self.origin
    }

    /// A [`DataError::Parse`] at `line` of this input.
    pub(crate) fn error(&self, line: usize, message: impl Into<String>) -> DataError {
        parse_err(&self.origin, line, message)
    }
}

impl<R: BufRead> Iterator for Lines<R> {
    /// The 1-based line number and the line.
    type Item = Result<(usize, String)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        self.buf.clear();
        self.line += 1;
        match self.reader.read_until(b'\n', &mut self.buf) {
            Ok(0) => None,
            Ok(_) => {
                if self.buf.last() == Some(&b'\n') {
                    self.buf.pop();
                    if self.buf.last() == Some(&b'\r') {
                        self.buf.pop();
                    }
                }
                let bytes = std::mem::take(&mut self.buf);
                Some(match self.decoding.decode(bytes) {
                    Ok(text) => Ok((self.line, text)),
                    Err(message) => {
                        self.failed = true;
                        Err(self.error(self.line, message))
                    }
                })
            }
            Err(e) => {
                self.failed = true;
                Some(Err(read_error(&self.origin, self.line, e)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_strip_line_ends_and_count_from_one() {
        let lines: Vec<_> = Lines::new(&b"a\r\nb\n\nc"[..], "x".into())
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(
            lines,
            [
                (1, "a".into()),
                (2, "b".into()),
                (3, String::new()),
                (4, "c".into())
            ]
        );
    }

    #[test]
    fn decodings() {
        let bytes = b"\xa315".to_vec();
        assert!(Decoding::Strict.decode(bytes.clone()).is_err());
        assert_eq!(Decoding::Lossy.decode(bytes.clone()).unwrap(), "\u{fffd}15");
        assert_eq!(Decoding::Latin1Fallback.decode(bytes).unwrap(), "£15");
        assert_eq!(Decoding::Latin1Fallback.decode("é".into()).unwrap(), "é");
    }
}
