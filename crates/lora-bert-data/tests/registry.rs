//! The registry on the real packages (all cached on the development machine; CI fetches them
//! with pip and npm). Expected sizes were counted independently of this crate (Python over the
//! unpacked packages) or are the published figures.

use std::collections::{BTreeMap, HashSet};

use lora_bert_assets::AssetCache;
use lora_bert_data::registry::{
    self, BrownTags, Dataset, DatasetId, PairSource, Splits, VaderSource, bbc_news, bbc_pairs,
    brown_documents, brown_pairs, brown_pos, conll2003, conll2003_documents, spam_assassin,
    spam_pairs,
};
use lora_bert_data::scheme::{entities, validate};
use lora_bert_data::{DataError, LabeledText, Scheme};

fn cache() -> AssetCache {
    AssetCache::from_env().expect("asset cache")
}

fn label_counts(splits: &Splits<LabeledText>) -> BTreeMap<&str, usize> {
    let mut counts = BTreeMap::new();
    for x in splits.iter() {
        *counts.entry(x.label.as_str()).or_default() += 1;
    }
    counts
}

/// Texts of a split as a set.
fn texts(split: &[LabeledText]) -> HashSet<&str> {
    split.iter().map(|x| x.text.as_str()).collect()
}

#[track_caller]
fn assert_disjoint(a: &[LabeledText], b: &[LabeledText], what: &str) {
    let a = texts(a);
    let shared = b.iter().filter(|x| a.contains(x.text.as_str())).count();
    assert_eq!(shared, 0, "{what}: {shared} texts on both sides");
}

#[test]
fn every_dataset_loads_with_its_documented_size_and_labels() {
    let cache = cache();
    // (dataset, examples, number of labels)
    let expected = [
        (DatasetId::Wnut16, 2_394, 21),
        (DatasetId::Conll2003, 14_041 + 3_250 + 3_453, 9),
        (DatasetId::BrownPos, 57_340, 472),
        (DatasetId::BrownGenre, 15_667, 15),
        (DatasetId::RottenTomatoes, 12_808, 2),
        (DatasetId::VaderMovieReviews, 10_605 - 37, 2),
        (DatasetId::VaderTweets, 4_200 - 4, 2),
        (DatasetId::VaderNytEditorials, 5_190 - 244, 2),
        (DatasetId::VaderAmazonReviews, 3_708 - 98, 2),
        (DatasetId::Newsgroups20, 11_293 + 7_528, 20),
        (DatasetId::ReutersR8, 5_485 + 2_189, 8),
        (DatasetId::ReutersR52, 6_532 + 2_568, 52),
        (DatasetId::BbcNews, 2_225, 5),
        (DatasetId::SpamAssassin, 6_046 - 20, 2),
    ];
    assert_eq!(expected.len(), DatasetId::ALL.len());
    for (id, examples, labels) in expected {
        let data = registry::load(id, &cache).unwrap();
        let [train, dev, test] = data.sizes();
        assert_eq!(train + dev + test, examples, "{id}");
        assert_eq!(id.info().examples, examples, "{id}");
        assert_eq!(data.labels().len(), labels, "{id}");
        assert_eq!(data.task(), id.info().task, "{id}");
        // Every split is used and train is the largest.
        assert!(
            dev > 0 && test > 0 && train > dev.max(test),
            "{id}: {:?}",
            data.sizes()
        );
        assert_eq!(DatasetId::from_name(id.info().name), Some(id));
    }
}

#[test]
fn token_datasets_have_the_published_token_counts_and_tags() {
    let cache = cache();
    let wnut = registry::wnut16(&cache).unwrap();
    assert_eq!(wnut.iter().map(|s| s.len()).sum::<usize>(), 46_469);
    let Dataset::Tokens(ref splits) = registry::load(DatasetId::Wnut16, &cache).unwrap() else {
        panic!("tokens");
    };
    assert_eq!(splits, &wnut);
    let types = [
        "person",
        "geo-loc",
        "other",
        "company",
        "facility",
        "product",
        "musicartist",
        "sportsteam",
        "tvshow",
        "movie",
    ];
    let tags: HashSet<&str> = wnut
        .iter()
        .flat_map(|s| s.tags.iter().map(String::as_str))
        .collect();
    for t in types {
        assert!(
            tags.contains(format!("B-{t}").as_str()) && tags.contains(format!("I-{t}").as_str())
        );
    }
    // 80/10/10 of 2,394 tweets (grouped duplicates can move a few).
    assert!(
        (1_900..=1_930).contains(&wnut.train.len()),
        "{:?}",
        wnut.sizes()
    );
    let train: HashSet<_> = wnut.train.iter().map(|s| &s.tokens).collect();
    assert!(
        wnut.dev
            .iter()
            .chain(&wnut.test)
            .all(|s| !train.contains(&s.tokens))
    );

    let brown = brown_pos(&cache, BrownTags::Raw).unwrap();
    assert_eq!(brown.iter().map(|s| s.len()).sum::<usize>(), 1_161_192);
    let simple = brown_pos(&cache, BrownTags::Simplified).unwrap();
    assert_eq!(simple.sizes(), brown.sizes());
    let simple_tags: HashSet<&str> = simple
        .iter()
        .flat_map(|s| s.tags.iter().map(String::as_str))
        .collect();
    assert_eq!(simple_tags.len(), 190);
    assert!(
        simple_tags
            .iter()
            .all(|t| !t.ends_with("-tl") && !t.starts_with("fw-"))
    );
}

#[test]
fn conll2003_has_the_published_documents_sentences_tokens_and_entities() {
    let cache = cache();
    let documents = conll2003_documents(&cache).unwrap();
    assert_eq!(documents.sizes(), [946, 216, 231]);
    let sentences = conll2003(&cache).unwrap();
    assert_eq!(sentences.sizes(), [14_041, 3_250, 3_453]);
    let Dataset::Tokens(ref loaded) = registry::load(DatasetId::Conll2003, &cache).unwrap() else {
        panic!("tokens");
    };
    assert_eq!(loaded, &sentences);
    // Per split: tokens and entities of each type (the shared task's published table).
    let expected = [
        (
            203_621,
            [
                ("LOC", 7_140),
                ("MISC", 3_438),
                ("ORG", 6_321),
                ("PER", 6_600),
            ],
        ),
        (
            51_362,
            [
                ("LOC", 1_837),
                ("MISC", 922),
                ("ORG", 1_341),
                ("PER", 1_842),
            ],
        ),
        (
            46_435,
            [
                ("LOC", 1_668),
                ("MISC", 702),
                ("ORG", 1_661),
                ("PER", 1_617),
            ],
        ),
    ];
    let splits = [&documents.train, &documents.dev, &documents.test];
    for (split, (tokens, kinds)) in splits.into_iter().zip(expected) {
        let mut counts = BTreeMap::new();
        let mut words = 0;
        for s in split.iter().flat_map(|d| &d.sentences) {
            // Every sentence is valid IOB2, with its POS and chunk columns.
            validate(&s.tags, Scheme::Iob2).unwrap();
            assert_eq!(s.extra.len(), 2);
            assert!(s.extra.iter().all(|column| column.len() == s.len()));
            words += s.len();
            for span in entities(&s.tags, Scheme::Iob2).unwrap() {
                *counts.entry(span.kind).or_insert(0usize) += 1;
            }
        }
        assert_eq!(words, tokens);
        let kinds: BTreeMap<String, usize> =
            kinds.iter().map(|&(k, n)| (k.to_owned(), n)).collect();
        assert_eq!(counts, kinds);
    }
    // Sentences are the documents' in file order.
    let flat: Vec<_> = documents
        .train
        .iter()
        .flat_map(|d| d.sentences.iter().map(|s| s.tagged()))
        .collect();
    assert_eq!(flat, sentences.train);
    let first = &documents.train[0];
    assert_eq!(first.line, 1);
    let eu = &first.sentences[0];
    assert_eq!(
        eu.tokens.join(" "),
        "EU rejects German call to boycott British lamb ."
    );
    assert_eq!(eu.tags[..3], ["B-ORG", "O", "B-MISC"]);
    assert_eq!(eu.extra[0][..3], ["NNP", "VBZ", "JJ"]);
    assert_eq!(eu.extra[1][..3], ["B-NP", "B-VP", "B-NP"]);
}

#[test]
fn brown_is_split_by_document_within_each_genre() {
    let docs = brown_documents(&cache()).unwrap();
    assert_eq!(docs.len(), 500);
    let ids =
        |v: &[registry::BrownDocument]| v.iter().map(|d| d.id.clone()).collect::<HashSet<_>>();
    let (train, dev, test) = (ids(&docs.train), ids(&docs.dev), ids(&docs.test));
    assert!(train.is_disjoint(&dev) && train.is_disjoint(&test) && dev.is_disjoint(&test));
    // round(10%) of each genre's files (learned 80 -> 8, belles_lettres 75 -> 8, lore 48 -> 5,
    // news 44 and hobbies 36 -> 4, five genres of 24-30 -> 3, mystery 24 -> 2, reviews and
    // religion 17 -> 2, humor 9 and science_fiction 6 -> 1) = 52 test and 52 dev documents.
    assert_eq!(docs.sizes(), [396, 52, 52]);
    let genres =
        |v: &[registry::BrownDocument]| v.iter().map(|d| d.genre.clone()).collect::<HashSet<_>>();
    assert_eq!(genres(&docs.test).len(), 15);
    assert_eq!(genres(&docs.dev).len(), 15);
    let sentences: usize = docs.iter().flat_map(|d| &d.paragraphs).map(Vec::len).sum();
    assert_eq!(sentences, 57_340);
    let news = docs.iter().filter(|d| d.genre == "news").count();
    assert_eq!(news, 44);
}

#[test]
fn text_datasets_have_the_expected_labels_and_disjoint_splits() {
    let cache = cache();
    let rt = registry::rotten_tomatoes(&cache).unwrap();
    assert_eq!(
        label_counts(&rt),
        BTreeMap::from([("fresh", 7_403), ("rotten", 5_405)])
    );
    for (source, positive, negative) in [
        (VaderSource::MovieReviews, 5_242, 5_326),
        (VaderSource::Tweets, 2_897, 1_299),
        (VaderSource::NytEditorials, 2_204, 2_742),
        (VaderSource::AmazonReviews, 2_128, 1_482),
    ] {
        let data = registry::vader(&cache, source).unwrap();
        assert_eq!(
            label_counts(&data),
            BTreeMap::from([("negative", negative), ("positive", positive)]),
            "{source:?}"
        );
        assert_disjoint(&data.train, &data.test, "vader");
    }
    for (splits, train, test) in [
        (registry::newsgroups20(&cache).unwrap(), 11_293, 7_528),
        (registry::reuters_r8(&cache).unwrap(), 5_485, 2_189),
        (registry::reuters_r52(&cache).unwrap(), 6_532, 2_568),
    ] {
        assert_eq!(splits.train.len() + splits.dev.len(), train);
        assert_eq!(splits.test.len(), test);
        assert_disjoint(&splits.train, &splits.dev, "standard train/dev");
        // Dev is 10% of train per label.
        assert!(
            splits.dev.len().abs_diff(train / 10) <= 30,
            "{:?}",
            splits.sizes()
        );
    }
    let bbc = bbc_news(&cache).unwrap();
    assert_eq!(
        label_counts(&bbc),
        BTreeMap::from([
            ("business", 510),
            ("entertainment", 386),
            ("politics", 417),
            ("sports", 511),
            ("tech", 401)
        ])
    );
    // The one Latin-1 file keeps its pound sign.
    assert!(bbc.iter().any(|x| x.text.contains("£15.8m signing")));
    let spam = spam_assassin(&cache).unwrap();
    // All 20 refused e-mails are spam: 2,500 + 1,400 + 250 ham, 500 + 1,396 - 20 spam.
    assert_eq!(
        label_counts(&spam),
        BTreeMap::from([("ham", 4_150), ("spam", 1_876)])
    );
    for (name, splits) in [("rt", &rt), ("bbc", &bbc), ("spam", &spam)] {
        assert_disjoint(&splits.train, &splits.dev, name);
        assert_disjoint(&splits.train, &splits.test, name);
        assert_disjoint(&splits.dev, &splits.test, name);
        // Stratified: each label's share of test is within two points of its share overall.
        let all = label_counts(splits);
        let mut test = BTreeMap::new();
        for x in &splits.test {
            *test.entry(x.label.as_str()).or_insert(0usize) += 1;
        }
        for (label, n) in all {
            let share = |k: usize, total: usize| k as f64 / total as f64;
            let diff = share(test[label], splits.test.len()) - share(n, splits.len());
            assert!(diff.abs() < 0.02, "{name} {label}: {diff}");
        }
    }
    // Headers are gone: spam-2/00001 (`Subject: [ILUG] STOP THE MLM INSANITY`, `Message-Id:
    // <1028311679.886@0.57.142>`) keeps its subject, not its headers.
    assert!(
        spam.iter()
            .all(|x| !x.text.trim().is_empty() && !x.text.starts_with("Return-Path:"))
    );
    let stop: Vec<_> = spam
        .iter()
        .filter(|x| x.text.starts_with("[ILUG] STOP THE MLM INSANITY\n\n"))
        .collect();
    assert!(!stop.is_empty());
    assert!(
        stop.iter()
            .all(|x| x.label == "spam" && !x.text.contains("1028311679.886@0.57.142"))
    );
}

#[test]
fn loading_twice_gives_identical_splits() {
    let cache = cache();
    for id in [
        DatasetId::Wnut16,
        DatasetId::Conll2003,
        DatasetId::BrownGenre,
        DatasetId::RottenTomatoes,
        DatasetId::VaderTweets,
        DatasetId::ReutersR8,
        DatasetId::BbcNews,
        DatasetId::SpamAssassin,
    ] {
        assert_eq!(
            registry::load(id, &cache).unwrap(),
            registry::load(id, &cache).unwrap(),
            "{id}"
        );
    }
    for source in PairSource::ALL {
        assert_eq!(
            registry::pairs(source, &cache).unwrap(),
            registry::pairs(source, &cache).unwrap()
        );
    }
}

#[test]
fn pairs_come_only_from_train_documents() {
    let cache = cache();
    let bbc = bbc_news(&cache).unwrap();
    let pairs = bbc_pairs(&cache).unwrap();
    assert_eq!(pairs.len(), bbc.train.len());
    for pair in &pairs {
        let prefix = format!("{}\n\n{}", pair.anchor, pair.positive);
        assert!(bbc.train.iter().any(|x| x.text.starts_with(&prefix)));
        assert!(
            !bbc.dev
                .iter()
                .chain(&bbc.test)
                .any(|x| x.text.starts_with(&prefix))
        );
    }

    let spam = spam_assassin(&cache).unwrap();
    let pairs = spam_pairs(&cache).unwrap();
    let train = texts(&spam.train);
    let held_out: HashSet<&str> = texts(&spam.dev)
        .union(&texts(&spam.test))
        .copied()
        .collect();
    for pair in &pairs {
        let text = format!("{}\n\n{}", pair.anchor, pair.positive);
        assert!(train.contains(text.as_str()) && !held_out.contains(text.as_str()));
    }
    // Every train e-mail with a subject gives one pair (the subject line has no blank line).
    let with_subject = spam
        .train
        .iter()
        .filter(|x| x.text.contains("\n\n"))
        .count();
    assert!(pairs.len() <= with_subject && pairs.len() + 50 > with_subject);
    assert!(pairs.len() > 4_500, "{}", pairs.len());

    let docs = brown_documents(&cache).unwrap();
    let pairs = brown_pairs(&cache).unwrap();
    let expected: usize = docs
        .train
        .iter()
        .flat_map(|d| &d.paragraphs)
        .map(|p| p.len() - 1)
        .sum();
    assert_eq!(pairs.len(), expected);
    assert!(expected > 30_000);
    let held_out: HashSet<String> = docs
        .dev
        .iter()
        .chain(&docs.test)
        .flat_map(|d| d.paragraphs.iter().flatten())
        .map(|s| s.tokens.join(" "))
        .collect();
    let leaked = pairs
        .iter()
        .filter(|p| held_out.contains(&p.anchor) && held_out.contains(&p.positive))
        .count();
    // Only trivially short sentences (e.g. "Yes ." and "No .") recur across documents.
    assert!(leaked < 10, "{leaked}");
}

#[test]
fn unknown_dataset_names_are_refused() {
    let err = "ontonotes".parse::<DatasetId>().unwrap_err();
    match err {
        DataError::InvalidArgument { what, message } => {
            assert_eq!(what, "dataset");
            assert!(
                message.contains("wnut16")
                    && message.contains("conll2003")
                    && message.contains("bbc-news"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        "reuters-r52".parse::<DatasetId>().unwrap(),
        DatasetId::ReutersR52
    );
}
