//! NLTK tagged text (`word/tag word/tag ...`), the format of the Brown corpus.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use super::open::{Decoding, Lines, open};
use crate::{Result, TaggedSentence};

/// Splits one line of `word/tag` tokens into a sentence. The tag is what follows the **last**
/// `/`, so `1/2/cd` is the word `1/2` tagged `cd`.
///
/// ```
/// let s = lora_bert_data::read::parse_tagged_line("The/at 1/2/cd ./.").unwrap();
/// assert_eq!(s.tokens, ["The", "1/2", "."]);
/// assert_eq!(s.tags, ["at", "cd", "."]);
/// ```
///
/// # Errors
///
/// A message naming the token when one has no `/`, or an empty word or tag.
pub fn parse_tagged_line(line: &str) -> std::result::Result<TaggedSentence, String> {
    let mut sentence = TaggedSentence {
        tokens: Vec::new(),
        tags: Vec::new(),
    };
    for token in line.split_whitespace() {
        let Some((word, tag)) = token.rsplit_once('/') else {
            return Err(format!("token `{token}` has no `/tag`"));
        };
        if word.is_empty() || tag.is_empty() {
            return Err(format!("token `{token}` has an empty word or tag"));
        }
        sentence.tokens.push(word.to_owned());
        sentence.tags.push(tag.to_owned());
    }
    Ok(sentence)
}

/// Streams an NLTK tagged-text file: every non-blank line is a sentence; blank lines separate
/// paragraphs (see [`paragraphs`](Self::paragraphs)).
///
/// ```
/// use lora_bert_data::read::NltkReader;
///
/// let text = "\n\tThe/at jury/nn ./.\nIt/pps did/dod ./.\n\n\tYes/rb ./.\n";
/// let sentences = NltkReader::new(text.as_bytes(), "inline").collect::<Result<Vec<_>, _>>()?;
/// assert_eq!(sentences.len(), 3);
/// let paragraphs = NltkReader::new(text.as_bytes(), "inline")
///     .paragraphs()
///     .collect::<Result<Vec<_>, _>>()?;
/// assert_eq!(paragraphs.iter().map(Vec::len).collect::<Vec<_>>(), [2, 1]);
/// # Ok::<(), lora_bert_data::DataError>(())
/// ```
pub struct NltkReader<R> {
    lines: Lines<R>,
}

impl<R: BufRead> NltkReader<R> {
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

    /// Groups the sentences into paragraphs: runs of non-blank lines between blank lines.
    pub fn paragraphs(self) -> NltkParagraphs<R> {
        NltkParagraphs { reader: self }
    }

    /// The next line as a sentence, with `Ok(None)` for a blank line; `None` at the end.
    fn next_line(&mut self) -> Option<Result<Option<TaggedSentence>>> {
        let (number, line) = match self.lines.next()? {
            Ok(line) => line,
            Err(e) => return Some(Err(e)),
        };
        if line.trim().is_empty() {
            return Some(Ok(None));
        }
        Some(
            parse_tagged_line(&line)
                .map(Some)
                .map_err(|message| self.lines.error(number, message)),
        )
    }
}

impl<R: BufRead> Iterator for NltkReader<R> {
    type Item = Result<TaggedSentence>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.next_line()? {
                Ok(None) => continue,
                Ok(Some(sentence)) => return Some(Ok(sentence)),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// The paragraphs of an [`NltkReader`]: each item holds one or more sentences.
pub struct NltkParagraphs<R> {
    reader: NltkReader<R>,
}

impl<R: BufRead> Iterator for NltkParagraphs<R> {
    type Item = Result<Vec<TaggedSentence>>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut paragraph = Vec::new();
        while let Some(line) = self.reader.next_line() {
            match line {
                Ok(Some(sentence)) => paragraph.push(sentence),
                Ok(None) if paragraph.is_empty() => {}
                Ok(None) => break,
                Err(e) => return Some(Err(e)),
            }
        }
        (!paragraph.is_empty()).then_some(Ok(paragraph))
    }
}

/// Reads every sentence of an NLTK tagged-text file (compressed or not, see [`open`]).
///
/// # Errors
///
/// [`DataError::Io`](crate::DataError::Io) if the file cannot be read,
/// [`DataError::Parse`](crate::DataError::Parse) naming the file and line for a token without
/// `/`, with an empty word or tag, or invalid UTF-8.
pub fn read_nltk(path: &Path) -> Result<Vec<TaggedSentence>> {
    NltkReader::new(open(path)?, path).collect()
}

/// Reads an NLTK tagged-text file as paragraphs of sentences.
///
/// # Errors
///
/// As [`read_nltk`].
pub fn read_nltk_paragraphs(path: &Path) -> Result<Vec<Vec<TaggedSentence>>> {
    NltkReader::new(open(path)?, path).paragraphs().collect()
}
