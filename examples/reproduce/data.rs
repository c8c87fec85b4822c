//! The data of the comparison, and how pre-finetuning data is kept apart from downstream data.
//!
//! * The Brown corpus is split by document ([`registry::brown_documents`]: 10% of each
//!   genre's files to dev, 10% to test). Its **train** documents are halved, per genre, by
//!   their position in file-name order: even positions are the **pre-finetuning half**, odd
//!   positions the **downstream half**. Pre-finetuning reads sentences (NER family, words
//!   only) and neighbouring-sentence pairs (TC family) of the pre-finetuning half only; the
//!   Brown downstream tasks train on the downstream half and are scored on the dev/test
//!   documents, which pre-finetuning never reads.
//! * The TC family's other pairs come from the train splits of SpamAssassin (subject ↔ body)
//!   and BBC News (headline ↔ first paragraph), which are not downstream tasks here.
//! * WNUT-16, Rotten Tomatoes, VADER, Reuters and 20 Newsgroups never reach pre-finetuning.

use std::collections::BTreeMap;

use lora_bert::assets::AssetCache;
use lora_bert::data::registry::{
    self, BrownDocument, BrownTags, PairSource, Splits, simplify_brown_tag,
};
use lora_bert::data::split::stratified_subset;
use lora_bert::data::{LabeledText, TaggedSentence, TextPair};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::Result;
use crate::plan::{Kind, TaskDef};

/// Seed of the shuffles of pre-finetuning data.
const PF_SEED: u64 = 7;

/// A downstream task's splits.
pub enum TaskData {
    Tokens(Splits<TaggedSentence>),
    Texts(Splits<LabeledText>),
}

impl TaskData {
    pub fn sizes(&self) -> [usize; 3] {
        match self {
            TaskData::Tokens(s) => s.sizes(),
            TaskData::Texts(s) => s.sizes(),
        }
    }
}

/// The Brown documents, halved as the module docs say.
pub struct Brown {
    pub pf: Vec<BrownDocument>,
    pub downstream: Splits<BrownDocument>,
}

impl Brown {
    pub fn load(cache: &AssetCache) -> Result<Brown> {
        let docs = registry::brown_documents(cache)?;
        let mut by_genre: BTreeMap<String, Vec<BrownDocument>> = BTreeMap::new();
        for doc in docs.train {
            by_genre.entry(doc.genre.clone()).or_default().push(doc);
        }
        let (mut pf, mut downstream) = (Vec::new(), Vec::new());
        for (_, mut genre) in by_genre {
            genre.sort_by(|a, b| a.id.cmp(&b.id));
            for (i, doc) in genre.into_iter().enumerate() {
                if i.is_multiple_of(2) {
                    pf.push(doc);
                } else {
                    downstream.push(doc);
                }
            }
        }
        Ok(Brown {
            pf,
            downstream: Splits {
                train: downstream,
                dev: docs.dev,
                test: docs.test,
            },
        })
    }
}

fn sentences(docs: &[BrownDocument]) -> impl Iterator<Item = &TaggedSentence> {
    docs.iter().flat_map(|d| d.paragraphs.iter().flatten())
}

/// Runs of proper-noun tags (`np`, `np$`, `nps`, `np-tl`, ...) as one `NAME` entity, in BIO.
fn brown_names(docs: &[BrownDocument]) -> Vec<TaggedSentence> {
    sentences(docs)
        .map(|s| {
            let mut inside = false;
            let tags = s
                .tags
                .iter()
                .map(|t| {
                    let name = simplify_brown_tag(t).starts_with("np");
                    let tag = match (name, inside) {
                        (false, _) => "O",
                        (true, false) => "B-NAME",
                        (true, true) => "I-NAME",
                    };
                    inside = name;
                    tag.to_owned()
                })
                .collect();
            TaggedSentence {
                tokens: s.tokens.clone(),
                tags,
            }
        })
        .collect()
}

fn brown_task(
    brown: &Brown,
    f: impl Fn(&[BrownDocument]) -> Vec<TaggedSentence>,
) -> Splits<TaggedSentence> {
    Splits {
        train: f(&brown.downstream.train),
        dev: f(&brown.downstream.dev),
        test: f(&brown.downstream.test),
    }
}

/// Loads a downstream task.
pub fn load_task(task: &TaskDef, cache: &AssetCache, brown: &Brown) -> Result<TaskData> {
    Ok(match task.name {
        "brown-pos" => TaskData::Tokens(brown_task(brown, |d| {
            registry::pos_sentences(d, BrownTags::Simplified)
        })),
        "brown-names" => TaskData::Tokens(brown_task(brown, brown_names)),
        "brown-genre" => TaskData::Texts(Splits {
            train: registry::genre_paragraphs(&brown.downstream.train),
            dev: registry::genre_paragraphs(&brown.downstream.dev),
            test: registry::genre_paragraphs(&brown.downstream.test),
        }),
        name => {
            let id: registry::DatasetId = name.parse()?;
            match (registry::load(id, cache)?, task.kind) {
                (registry::Dataset::Tokens(s), Kind::Token(_)) => TaskData::Tokens(s),
                (registry::Dataset::Texts(s), Kind::Text) => TaskData::Texts(s),
                _ => return Err(format!("task `{name}`: dataset of the wrong kind").into()),
            }
        }
    })
}

/// Pre-finetuning data: train and held-out dev parts of each family.
pub struct PfData {
    pub sentences: Vec<TaggedSentence>,
    pub dev_sentences: Vec<TaggedSentence>,
    pub pairs: Vec<TextPair>,
    pub dev_pairs: Vec<TextPair>,
    /// Where the pairs came from (source, count).
    pub pair_sources: Vec<(&'static str, usize)>,
}

/// `n + dev` Brown sentences of 4 to 40 words from the pre-finetuning half (tags replaced by
/// `O`: only the words are used), and `n + dev` pairs drawn evenly from the three sources,
/// shuffled with a fixed seed.
pub fn pf_data(
    cache: &AssetCache,
    brown: &Brown,
    n_sentences: usize,
    n_pairs: usize,
    dev: usize,
) -> Result<PfData> {
    let mut rng = ChaCha8Rng::seed_from_u64(PF_SEED);
    let mut pool: Vec<TaggedSentence> = sentences(&brown.pf)
        .filter(|s| (4..=40).contains(&s.len()))
        .map(|s| TaggedSentence {
            tokens: s.tokens.clone(),
            tags: vec!["O".to_owned(); s.len()],
        })
        .collect();
    pool.shuffle(&mut rng);
    if pool.len() < n_sentences + dev {
        return Err(format!(
            "{} pre-finetuning sentences asked for, the Brown half has {}",
            n_sentences + dev,
            pool.len()
        )
        .into());
    }
    pool.truncate(n_sentences + dev);
    let dev_sentences = pool.split_off(n_sentences);

    // Neighbouring sentences of a paragraph, pre-finetuning half only.
    let brown_pairs = registry::neighbour_pairs(&brown.pf);
    let mut sources: Vec<(&'static str, Vec<TextPair>)> = vec![
        (
            PairSource::SpamSubjectBody.name(),
            registry::pairs(PairSource::SpamSubjectBody, cache)?,
        ),
        (
            PairSource::BbcHeadlineParagraph.name(),
            registry::pairs(PairSource::BbcHeadlineParagraph, cache)?,
        ),
        ("brown-neighbours (pre-finetuning half)", brown_pairs),
    ];
    // An even share of each source, the small ones topped up by the large ones.
    let want = n_pairs + dev;
    for (_, pairs) in &mut sources {
        pairs.shuffle(&mut rng);
    }
    let mut take = vec![0usize; sources.len()];
    let mut left = want;
    while left > 0 {
        let open: Vec<usize> = (0..sources.len())
            .filter(|&i| take[i] < sources[i].1.len())
            .collect();
        if open.is_empty() {
            return Err(format!("{want} pre-finetuning pairs asked for, fewer exist").into());
        }
        let share = (left / open.len()).max(1);
        for i in open {
            let more = share.min(sources[i].1.len() - take[i]).min(left);
            take[i] += more;
            left -= more;
        }
    }
    let mut pairs: Vec<TextPair> = Vec::with_capacity(want);
    let mut pair_sources = Vec::new();
    for ((name, all), n) in sources.into_iter().zip(take) {
        pair_sources.push((name, n));
        pairs.extend(all.into_iter().take(n));
    }
    pairs.shuffle(&mut rng);
    let dev_pairs = pairs.split_off(n_pairs);
    Ok(PfData {
        sentences: pool,
        dev_sentences,
        pairs,
        dev_pairs,
        pair_sources,
    })
}

/// Indices of the training items of one run: all of them, or a `fraction` drawn with `seed`
/// (stratified by label for texts, uniformly for sentences).
pub fn train_subset(data: &TaskData, fraction: f64, seed: u64) -> Result<Vec<usize>> {
    let n = data.sizes()[0];
    if fraction >= 1.0 {
        return Ok((0..n).collect());
    }
    Ok(match data {
        TaskData::Tokens(_) => stratified_subset(&vec![0u8; n], fraction, seed)?,
        TaskData::Texts(s) => {
            let labels: Vec<&str> = s.train.iter().map(|t| t.label.as_str()).collect();
            stratified_subset(&labels, fraction, seed)?
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(tags: &[&str]) -> BrownDocument {
        BrownDocument {
            id: "ca01".into(),
            genre: "news".into(),
            paragraphs: vec![vec![TaggedSentence {
                tokens: tags.iter().map(|t| format!("w-{t}")).collect(),
                tags: tags.iter().map(|t| t.to_string()).collect(),
            }]],
        }
    }

    #[test]
    fn proper_noun_runs_become_one_entity() {
        let s = &brown_names(&[doc(&["at", "np-tl", "np", "vbd", "np$", "nn"])])[0];
        assert_eq!(s.tags, ["O", "B-NAME", "I-NAME", "O", "B-NAME", "O"]);
    }
}

/// The separation the module docs promise, on the real corpus (fetched into the asset cache).
#[cfg(test)]
mod separation {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn pre_finetuning_reads_no_downstream_brown_document() {
        let cache = AssetCache::from_env().unwrap();
        let brown = Brown::load(&cache).unwrap();
        let pf: HashSet<&str> = brown.pf.iter().map(|d| d.id.as_str()).collect();
        let downstream: Vec<&str> = brown.downstream.iter().map(|d| d.id.as_str()).collect();
        assert!(downstream.iter().all(|id| !pf.contains(id)));
        // All 500 documents are used, each once.
        assert_eq!(pf.len() + downstream.len(), 500);
        // Every genre is in both halves.
        let genres = |docs: &mut dyn Iterator<Item = &BrownDocument>| -> HashSet<String> {
            docs.map(|d| d.genre.clone()).collect()
        };
        assert_eq!(
            genres(&mut brown.pf.iter()),
            genres(&mut brown.downstream.train.iter())
        );

        // The pre-finetuning sentences and Brown pairs come from the first half only.
        let words = |s: &TaggedSentence| s.tokens.join(" ");
        let pf_sentences: HashSet<String> = sentences(&brown.pf).map(words).collect();
        let data = pf_data(&cache, &brown, 500, 500, 50).unwrap();
        for s in data.sentences.iter().chain(&data.dev_sentences) {
            assert!(pf_sentences.contains(&words(s)), "{:?}", s.tokens);
        }
        assert_eq!(data.sentences.len(), 500);
        assert_eq!(data.pairs.len() + data.dev_pairs.len(), 550);
        let brown_pairs: HashSet<(String, String)> = registry::neighbour_pairs(&brown.pf)
            .into_iter()
            .map(|p| (p.anchor, p.positive))
            .collect();
        let from_brown = data
            .pairs
            .iter()
            .filter(|p| brown_pairs.contains(&(p.anchor.clone(), p.positive.clone())))
            .count();
        assert!(from_brown > 0);
    }
}
