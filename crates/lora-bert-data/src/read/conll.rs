//! CoNLL-style column files: one token per line, sentences separated by blank lines,
//! documents by `-DOCSTART-` lines.

use std::fmt::Write as _;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use super::open::{Decoding, Lines, open};
use crate::scheme::{self, Tag};
use crate::{DataError, Result, Scheme, TaggedSentence};

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
/// line when [`docstart`](Self::docstart) is set, which then also starts a document
/// ([`ConllReader::documents`]).
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
    /// The number of columns every word line must have; a line with another number is a
    /// [`DataError::Parse`]. With it set, the columns other than word and tag are kept
    /// ([`ConllSentence::extra`]). `None`, the default, accepts any number of columns that
    /// holds the word and tag columns (at least two) and keeps no other column.
    pub columns: Option<usize>,
    /// The tag column holds entity tags (NER, chunks): every tag must be `O` or one of the
    /// prefixes `B I E S L U`, `-` and a non-empty type, else [`DataError::UnknownTag`].
    /// Default `false`: any non-empty tag (POS tags, say).
    pub entity_tags: bool,
}

impl Default for ConllFormat {
    fn default() -> Self {
        Self {
            token_column: 0,
            tag_column: None,
            separator: Separator::Whitespace,
            docstart: true,
            columns: None,
            entity_tags: false,
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

    /// The CoNLL-2003 layout: exactly four whitespace-separated columns `word POS chunk NER`,
    /// the NER tag (column 3) as the tag, POS and chunk kept as [`ConllSentence::extra`]
    /// `[0]` and `[1]`, `-DOCSTART- -X- -X- O` lines between documents, entity tags checked.
    pub fn conll2003() -> Self {
        Self {
            token_column: 0,
            tag_column: Some(3),
            separator: Separator::Whitespace,
            docstart: true,
            columns: Some(4),
            entity_tags: true,
        }
    }
}

/// A sentence of a CoNLL-style file with every column the format keeps and where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConllSentence {
    /// The words.
    pub tokens: Vec<String>,
    /// One tag per word (the tag column).
    pub tags: Vec<String>,
    /// The columns other than word and tag, left to right, each with one entry per word
    /// (CoNLL-2003: `[POS, chunk]`). Empty unless [`ConllFormat::columns`] is set.
    pub extra: Vec<Vec<String>>,
    /// 1-based line of the first word; word `i` is on line `line + i`.
    pub line: usize,
}

impl ConllSentence {
    /// Number of words.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// `true` when the sentence has no word (never the case for one a reader returns).
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The words and tags, without the other columns.
    pub fn tagged(&self) -> TaggedSentence {
        TaggedSentence {
            tokens: self.tokens.clone(),
            tags: self.tags.clone(),
        }
    }

    /// The words and tags, without the other columns.
    pub fn into_tagged(self) -> TaggedSentence {
        TaggedSentence {
            tokens: self.tokens,
            tags: self.tags,
        }
    }
}

/// A document of a CoNLL-style file: the sentences after one `-DOCSTART-` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConllDocument {
    /// 1-based line of its `-DOCSTART-` line; for sentences before the first such line (a
    /// file without any is one document), the line of the first word.
    pub line: usize,
    /// Its sentences, in file order; never empty.
    pub sentences: Vec<ConllSentence>,
}

/// What [`ConllReader`] meets next: a sentence or a `-DOCSTART-` line.
enum Record {
    /// A `-DOCSTART-` line (its line number).
    DocStart(usize),
    Sentence(ConllSentence),
}

/// Streams the sentences (or, with [`documents`](Self::documents), the documents) of a
/// CoNLL-style file.
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
    /// A `-DOCSTART-` line that ended the sentence returned last, not yet reported.
    pending_docstart: Option<usize>,
}

impl<R: BufRead> ConllReader<R> {
    /// Reads `reader`; errors name `origin` (a path, or any name for in-memory input).
    pub fn new(reader: R, origin: impl Into<PathBuf>, format: ConllFormat) -> Self {
        Self {
            lines: Lines::new(reader, origin.into()),
            format,
            pending_docstart: None,
        }
    }

    /// Sets how non-UTF-8 bytes are handled (default [`Decoding::Strict`]).
    pub fn decoding(mut self, decoding: Decoding) -> Self {
        self.lines.set_decoding(decoding);
        self
    }

    /// The sentences with all the columns the format keeps and their line numbers.
    pub fn sentences(self) -> ConllSentences<R> {
        ConllSentences { reader: self }
    }

    /// The documents: the sentences between `-DOCSTART-` lines (see [`ConllDocument`]).
    ///
    /// A `-DOCSTART-` followed by another one, or by the end of the input, with no sentence
    /// in between is a [`DataError::EmptyDocument`]. The iterator ends after the first error.
    ///
    /// ```
    /// use lora_bert_data::read::{ConllFormat, ConllReader};
    ///
    /// let text = "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\n\n\
    ///             -DOCSTART- -X- -X- O\n\nPeter NNP B-NP B-PER\nspoke VBD B-VP O\n";
    /// let documents = ConllReader::new(text.as_bytes(), "inline", ConllFormat::conll2003())
    ///     .documents()
    ///     .collect::<Result<Vec<_>, _>>()?;
    /// assert_eq!(documents.len(), 2);
    /// assert_eq!(documents[1].line, 5);
    /// let peter = &documents[1].sentences[0];
    /// assert_eq!((peter.line, peter.tags[0].as_str()), (7, "B-PER"));
    /// assert_eq!(peter.extra, [["NNP", "VBD"], ["B-NP", "B-VP"]]);
    /// # Ok::<(), lora_bert_data::DataError>(())
    /// ```
    pub fn documents(self) -> ConllDocuments<R> {
        ConllDocuments {
            reader: self,
            current: None,
            done: false,
        }
    }

    fn parse(&self, line: usize, text: &str, sentence: &mut ConllSentence) -> Result<()> {
        let columns: Vec<&str> = match self.format.separator {
            Separator::Whitespace => text.split_whitespace().collect(),
            Separator::Tab => text.split('\t').collect(),
        };
        let tag_column = self
            .format
            .tag_column
            .or_else(|| self.format.columns.map(|n| n.saturating_sub(1)))
            .unwrap_or_else(|| columns.len().saturating_sub(1));
        let needed = (self.format.token_column.max(tag_column) + 1).max(2);
        match self.format.columns {
            Some(n) if columns.len() != n => {
                return Err(self.lines.error(
                    line,
                    format!("expected {n} columns, found {}", columns.len()),
                ));
            }
            _ if columns.len() < needed => {
                return Err(self.lines.error(
                    line,
                    format!(
                        "expected at least {needed} columns, found {}",
                        columns.len()
                    ),
                ));
            }
            _ => {}
        }
        let (token, tag) = (columns[self.format.token_column], columns[tag_column]);
        if token.is_empty() || tag.is_empty() {
            return Err(self.lines.error(line, "empty token or tag column"));
        }
        if self.format.entity_tags && Tag::parse(tag).is_none() {
            return Err(DataError::UnknownTag {
                path: self.lines.origin().to_path_buf(),
                line,
                tag: tag.to_owned(),
            });
        }
        if sentence.is_empty() {
            sentence.line = line;
        }
        sentence.tokens.push(token.to_owned());
        sentence.tags.push(tag.to_owned());
        if self.format.columns.is_some() {
            let extra = columns
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != self.format.token_column && i != tag_column)
                .map(|(_, c)| *c);
            if sentence.extra.is_empty() {
                sentence.extra = extra.map(|c| vec![c.to_owned()]).collect();
            } else {
                for (column, c) in sentence.extra.iter_mut().zip(extra) {
                    column.push(c.to_owned());
                }
            }
        }
        Ok(())
    }

    /// The next sentence or `-DOCSTART-` line.
    fn next_record(&mut self) -> Option<Result<Record>> {
        if let Some(line) = self.pending_docstart.take() {
            return Some(Ok(Record::DocStart(line)));
        }
        let mut sentence = ConllSentence {
            tokens: Vec::new(),
            tags: Vec::new(),
            extra: Vec::new(),
            line: 0,
        };
        loop {
            let (number, line) = match self.lines.next() {
                Some(Ok(line)) => line,
                Some(Err(e)) => return Some(Err(e)),
                None => break,
            };
            if self.format.docstart && line.starts_with("-DOCSTART-") {
                if sentence.is_empty() {
                    return Some(Ok(Record::DocStart(number)));
                }
                self.pending_docstart = Some(number);
                break;
            }
            if line.trim().is_empty() {
                if sentence.is_empty() {
                    continue;
                }
                break;
            }
            if let Err(e) = self.parse(number, &line, &mut sentence) {
                return Some(Err(e));
            }
        }
        (!sentence.is_empty()).then_some(Ok(Record::Sentence(sentence)))
    }

    fn next_sentence(&mut self) -> Option<Result<ConllSentence>> {
        loop {
            match self.next_record()? {
                Ok(Record::DocStart(_)) => {}
                Ok(Record::Sentence(s)) => return Some(Ok(s)),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

impl<R: BufRead> Iterator for ConllReader<R> {
    type Item = Result<TaggedSentence>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_sentence()
            .map(|s| s.map(ConllSentence::into_tagged))
    }
}

/// The sentences of a [`ConllReader`] with all their columns ([`ConllReader::sentences`]).
pub struct ConllSentences<R> {
    reader: ConllReader<R>,
}

impl<R: BufRead> Iterator for ConllSentences<R> {
    type Item = Result<ConllSentence>;

    fn next(&mut self) -> Option<Self::Item> {
        self.reader.next_sentence()
    }
}

/// The documents of a [`ConllReader`] ([`ConllReader::documents`]).
pub struct ConllDocuments<R> {
    reader: ConllReader<R>,
    /// The document being filled.
    current: Option<ConllDocument>,
    done: bool,
}

impl<R: BufRead> ConllDocuments<R> {
    /// `document` if it has a sentence, else the [`DataError::EmptyDocument`] it is.
    fn finish(&mut self, document: ConllDocument, next: Option<usize>) -> Result<ConllDocument> {
        if document.sentences.is_empty() {
            self.done = true;
            return Err(DataError::EmptyDocument {
                path: self.reader.lines.origin().to_path_buf(),
                line: document.line,
                next,
            });
        }
        Ok(document)
    }
}

impl<R: BufRead> Iterator for ConllDocuments<R> {
    type Item = Result<ConllDocument>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            match self.reader.next_record() {
                None => {
                    self.done = true;
                    let last = self.current.take()?;
                    return Some(self.finish(last, None));
                }
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(e));
                }
                Some(Ok(Record::DocStart(line))) => {
                    let started = ConllDocument {
                        line,
                        sentences: Vec::new(),
                    };
                    if let Some(previous) = self.current.replace(started) {
                        return Some(self.finish(previous, Some(line)));
                    }
                }
                Some(Ok(Record::Sentence(s))) => self
                    .current
                    .get_or_insert_with(|| ConllDocument {
                        line: s.line,
                        sentences: Vec::new(),
                    })
                    .sentences
                    .push(s),
            }
        }
        None
    }
}

/// Reads every sentence of a CoNLL-style file (compressed or not, see [`open`]).
///
/// # Errors
///
/// [`DataError::Io`](crate::DataError::Io) if the file cannot be read,
/// [`DataError::Parse`](crate::DataError::Parse) naming the file and line for a line with the
/// wrong number of columns, an empty column or invalid UTF-8;
/// [`DataError::UnknownTag`](crate::DataError::UnknownTag) for a malformed tag when the format
/// has [`entity_tags`](ConllFormat::entity_tags).
pub fn read_conll(path: &Path, format: &ConllFormat) -> Result<Vec<TaggedSentence>> {
    ConllReader::new(open(path)?, path, format.clone()).collect()
}

/// Reads every document of a CoNLL-style file (compressed or not, see [`open`]), with the
/// columns the format keeps.
///
/// # Errors
///
/// As [`read_conll`], and [`DataError::EmptyDocument`] for a `-DOCSTART-` with no sentence
/// before the next one or the end of the file.
pub fn read_conll_documents(path: &Path, format: &ConllFormat) -> Result<Vec<ConllDocument>> {
    ConllReader::new(open(path)?, path, format.clone())
        .documents()
        .collect()
}

/// The order in which [`detect_scheme`] prefers schemes when several fit. Several fit only
/// when every tag is `O` (all do), or when every entity tag is `I-` (IOB1 and IOE1); the
/// schemes that fit then read the same entities.
pub const SCHEME_PREFERENCE: [Scheme; 6] = [
    Scheme::Iob2,
    Scheme::Iob1,
    Scheme::Iobes,
    Scheme::Bilou,
    Scheme::Ioe2,
    Scheme::Ioe1,
];

/// The tagging scheme every sentence of one file follows ([`scheme::validate`]), the first
/// of [`SCHEME_PREFERENCE`] that fits them all. `origin` is the file the errors name.
///
/// The sentences are checked in order against the schemes still possible; the first one
/// that fits none of them is an error at the line of the tag where the last of them broke.
///
/// ```
/// use lora_bert_data::Scheme;
/// use lora_bert_data::read::{ConllFormat, ConllReader, detect_scheme};
///
/// let iob1 = "EU I-ORG\nrejects O\n\nthe O\nPeter I-PER\nPaul B-PER\n";
/// let sentences = ConllReader::new(iob1.as_bytes(), "inline", ConllFormat::default())
///     .sentences()
///     .collect::<Result<Vec<_>, _>>()?;
/// assert_eq!(detect_scheme(&sentences, "inline".as_ref())?, Scheme::Iob1);
/// # Ok::<(), lora_bert_data::DataError>(())
/// ```
///
/// # Errors
///
/// [`DataError::MixedSchemes`] naming `origin` and the line.
pub fn detect_scheme<'a>(
    sentences: impl IntoIterator<Item = &'a ConllSentence>,
    origin: &Path,
) -> Result<Scheme> {
    // The schemes still possible, and for each one ruled out: where and why.
    let mut candidates = SCHEME_PREFERENCE.to_vec();
    let mut ruled_out: Vec<(Scheme, usize, String)> = Vec::new();
    for sentence in sentences {
        let mut broken = Vec::new();
        candidates.retain(|&scheme| match scheme::validate(&sentence.tags, scheme) {
            Ok(()) => true,
            Err(e) => {
                let (position, why) = match e {
                    DataError::InvalidTag {
                        position,
                        tag,
                        reason,
                        ..
                    } => (position, format!("`{tag}`: {reason}")),
                    other => (0, other.to_string()),
                };
                broken.push((scheme, sentence.line + position, why));
                false
            }
        });
        if candidates.is_empty() {
            let line = broken.iter().map(|b| b.1).max().unwrap_or(sentence.line);
            // The schemes this sentence fits that earlier lines ruled out.
            let fits: Vec<&(Scheme, usize, String)> = ruled_out
                .iter()
                .filter(|(scheme, ..)| scheme::validate(&sentence.tags, *scheme).is_ok())
                .collect();
            let mut message = String::new();
            if fits.is_empty() {
                message.push_str("the sentence fits no scheme: ");
            }
            for (i, (scheme, at, why)) in broken.iter().enumerate() {
                let sep = if i == 0 { "" } else { "; " };
                let _ = write!(message, "{sep}not {scheme} (line {at}, {why})");
            }
            for (scheme, at, why) in fits {
                let _ = write!(
                    message,
                    "; the sentence is {scheme}, which line {at} above is not ({why})"
                );
            }
            return Err(DataError::MixedSchemes {
                path: origin.to_path_buf(),
                line,
                message,
            });
        }
        ruled_out.extend(broken);
    }
    Ok(candidates[0])
}

/// Detects the scheme of `sentences` (all of one file, see [`detect_scheme`]) and rewrites
/// their tags in `to` ([`scheme::convert`]); returns the scheme detected. Sentences already
/// in `to` are left as they are.
///
/// ```
/// use lora_bert_data::Scheme;
/// use lora_bert_data::read::{ConllFormat, ConllReader, normalise_scheme};
///
/// let iob1 = "the O\nPeter I-PER\nPaul B-PER\n";
/// let mut sentences = ConllReader::new(iob1.as_bytes(), "inline", ConllFormat::default())
///     .sentences()
///     .collect::<Result<Vec<_>, _>>()?;
/// let found = normalise_scheme(&mut sentences, "inline".as_ref(), Scheme::Iob2)?;
/// assert_eq!(found, Scheme::Iob1);
/// assert_eq!(sentences[0].tags, ["O", "B-PER", "B-PER"]);
/// # Ok::<(), lora_bert_data::DataError>(())
/// ```
///
/// # Errors
///
/// As [`detect_scheme`].
pub fn normalise_scheme<'a>(
    sentences: impl IntoIterator<Item = &'a mut ConllSentence>,
    origin: &Path,
    to: Scheme,
) -> Result<Scheme> {
    let mut sentences: Vec<&mut ConllSentence> = sentences.into_iter().collect();
    let from = detect_scheme(sentences.iter().map(|s| &**s), origin)?;
    if from != to {
        for sentence in &mut sentences {
            sentence.tags = scheme::convert(&sentence.tags, from, to)?;
        }
    }
    Ok(from)
}
