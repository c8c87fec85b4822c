//! Batch plans, padding and text batches with the real all-MiniLM-L6-v2 tokenizer.

use std::collections::HashSet;
use std::sync::OnceLock;

use lora_bert_data::batch::{BatchConfig, BatchPlan, TextEncoder, attention_mask, pad_rows};
use lora_bert_data::{DataError, LabeledText, TextPair};
use lora_bert_encoder::tokenizer::{BertTokenizer, LengthPolicy, TokenizerError};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn tokenizer() -> &'static BertTokenizer {
    static TOK: OnceLock<BertTokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        let cache = lora_bert_assets::AssetCache::from_env().expect("asset cache");
        let model = lora_bert_assets::all_minilm_l6_v2(&cache).expect("all-MiniLM-L6-v2");
        BertTokenizer::from_file(model.tokenizer).expect("tokenizer.json")
    })
}

fn label_id(label: &str) -> lora_bert_data::Result<u32> {
    match label {
        "neg" => Ok(0),
        "pos" => Ok(1),
        other => Err(DataError::UnknownLabel {
            label: other.into(),
            context: None,
        }),
    }
}

fn texts() -> Vec<LabeledText> {
    let base = [
        ("A gripping, beautifully shot film.", "pos"),
        ("Dull.", "neg"),
        (
            "The plot meanders and the dialogue is wooden, but the lead actor does what he can.",
            "neg",
        ),
        ("Hello, world!", "pos"),
        ("Ünïcödé façades and naïve cafés – résumé.", "pos"),
        (
            "It's not great, it's not terrible; it's simply forgettable entertainment.",
            "neg",
        ),
    ];
    (0..60)
        .map(|i| {
            let (t, l) = base[i % base.len()];
            LabeledText {
                text: format!("{t} #{i}"),
                label: l.into(),
            }
        })
        .collect()
}

/// Example lengths shaped like tokenized sentences: mostly short, a long tail.
fn skewed_lengths(n: usize, seed: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let (a, b): (f64, f64) = (rng.random(), rng.random());
            3 + (a * b * 120.0) as usize
        })
        .collect()
}

#[test]
fn invalid_plans_are_refused() {
    assert!(matches!(
        BatchPlan::new(vec![3, 4], BatchConfig::new(0)),
        Err(DataError::InvalidArgument {
            what: "batch_size",
            ..
        })
    ));
    assert!(matches!(
        BatchPlan::new(vec![3, 4], BatchConfig::new(2).bucketed(0)),
        Err(DataError::InvalidArgument { what: "bucket", .. })
    ));
    assert!(matches!(
        BatchPlan::new(vec![], BatchConfig::new(2)),
        Err(DataError::Empty(_))
    ));
}

#[test]
fn unshuffled_plan_is_dataset_order() {
    let plan = BatchPlan::new(vec![1; 7], BatchConfig::new(3)).unwrap();
    assert_eq!(plan.epoch(0), vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
    assert_eq!(plan.epoch(5), plan.epoch(0));
    assert_eq!(plan.num_batches(), 3);
}

#[test]
fn same_seed_same_plan_other_epoch_or_seed_other_order() {
    let lengths = skewed_lengths(200, 1);
    for config in [
        BatchConfig::new(16).shuffled(7),
        BatchConfig::new(16).shuffled(7).bucketed(4),
    ] {
        let plan = BatchPlan::new(lengths.clone(), config).unwrap();
        let again = BatchPlan::new(lengths.clone(), config).unwrap();
        assert_eq!(plan.epoch(3), again.epoch(3));
        assert_ne!(plan.epoch(0), plan.epoch(1));
        let other = BatchPlan::new(lengths.clone(), BatchConfig { seed: 8, ..config }).unwrap();
        assert_ne!(plan.epoch(0), other.epoch(0));
    }
}

#[test]
fn bucketing_cuts_padding() {
    let lengths = skewed_lengths(2000, 3);
    let plain = BatchPlan::new(lengths.clone(), BatchConfig::new(32).shuffled(11)).unwrap();
    let bucketed = BatchPlan::new(lengths, BatchConfig::new(32).shuffled(11).bucketed(8)).unwrap();
    for epoch in 0..3 {
        let (p, b) = (
            plain.padding(&plain.epoch(epoch)),
            bucketed.padding(&bucketed.epoch(epoch)),
        );
        assert!(b < p, "epoch {epoch}: bucketed padding {b} not below {p}");
        // Batches of a bucket hold similar lengths, so most padding goes away.
        assert!(
            2 * b < p,
            "epoch {epoch}: bucketed padding {b} not under half of {p}"
        );
    }
}

#[test]
fn bucketed_batches_are_sorted_runs_of_similar_length() {
    let lengths = skewed_lengths(256, 4);
    let plan = BatchPlan::new(
        lengths.clone(),
        BatchConfig::new(8).shuffled(5).bucketed(32),
    )
    .unwrap();
    // One bucket holds the whole dataset: batches are consecutive runs of the sorted lengths.
    let mut batches = plan.epoch(0);
    batches.sort_by_key(|b| (lengths[b[0]], lengths[b[b.len() - 1]]));
    assert!(batches.iter().all(|b| b.len() == 8));
    let flat: Vec<usize> = batches.concat().iter().map(|&i| lengths[i]).collect();
    let mut sorted = flat.clone();
    sorted.sort_unstable();
    assert_eq!(flat, sorted);
}

proptest! {
    #[test]
    fn plans_cover_every_index_once(
        lengths in prop::collection::vec(1usize..100, 1..200),
        batch_size in 1usize..20,
        bucket in prop::option::of(1usize..5),
        shuffle in any::<bool>(),
        drop_last in any::<bool>(),
        seed in any::<u64>(),
        epoch in 0u64..4,
    ) {
        let n = lengths.len();
        let config = BatchConfig { batch_size, shuffle, seed, bucket, drop_last };
        let plan = BatchPlan::new(lengths, config).unwrap();
        let batches = plan.epoch(epoch);
        prop_assert_eq!(batches.len(), plan.num_batches());
        let kept = if drop_last { n - n % batch_size } else { n };
        let all: Vec<usize> = batches.concat();
        prop_assert_eq!(all.len(), kept);
        let unique: HashSet<usize> = all.iter().copied().collect();
        prop_assert_eq!(unique.len(), kept);
        prop_assert!(all.iter().all(|&i| i < n));
        let short: Vec<usize> = batches.iter().map(Vec::len).filter(|&l| l != batch_size).collect();
        if drop_last {
            prop_assert!(short.is_empty());
        } else {
            prop_assert!(short.len() <= 1);
            prop_assert!(short.iter().all(|&l| l == n % batch_size && l > 0));
        }
        prop_assert_eq!(plan.epoch(epoch), batches);
    }
}

#[test]
fn pad_rows_and_mask_by_hand() {
    let (ids, seq_len) = pad_rows(&[&[1_u32, 2][..], &[3, 4, 5, 6], &[7]], 0);
    assert_eq!(seq_len, 4);
    assert_eq!(ids, [1, 2, 0, 0, 3, 4, 5, 6, 7, 0, 0, 0]);
    assert_eq!(
        attention_mask(&[2, 4, 1], 4),
        [1, 1, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0]
    );
    let (labels, seq_len) = pad_rows(&[&[-100_i64, 4][..], &[]], -100);
    assert_eq!((labels, seq_len), (vec![-100, 4, -100, -100], 2));
    let (none, seq_len) = pad_rows::<u32>(&[], 0);
    assert!(none.is_empty() && seq_len == 0);
}

#[test]
fn text_batch_matches_the_tokenizer() {
    let tok = tokenizer();
    let data = texts();
    let encoder = TextEncoder::new(tok);
    let encoded = encoder.encode_texts(&data, label_id).unwrap();
    assert_eq!(encoded.len(), data.len());
    let plan = BatchPlan::new(
        encoded.lengths(),
        BatchConfig::new(7).shuffled(3).bucketed(2),
    )
    .unwrap();
    for indices in plan.epoch(1) {
        let batch = encoded.batch(&indices).unwrap();
        let rows: Vec<Vec<u32>> = indices
            .iter()
            .map(|&i| tok.encode(&data[i].text).unwrap()[0].ids.clone())
            .collect();
        let seq_len = rows.iter().map(Vec::len).max().unwrap();
        assert_eq!(batch.shape(), [indices.len(), seq_len]);
        for (r, ids) in rows.iter().enumerate() {
            let row = &batch.input_ids[r * seq_len..(r + 1) * seq_len];
            assert_eq!(&row[..ids.len()], &ids[..]);
            assert!(row[ids.len()..].iter().all(|&id| id == tok.pad_id()));
            let mask = &batch.attention_mask[r * seq_len..(r + 1) * seq_len];
            assert_eq!(mask.iter().filter(|&&m| m == 1).count(), ids.len());
            assert!(mask[..ids.len()].iter().all(|&m| m == 1));
            assert!(
                batch.type_ids[r * seq_len..(r + 1) * seq_len]
                    .iter()
                    .all(|&t| t == 0)
            );
        }
        let labels: Vec<u32> = indices
            .iter()
            .map(|&i| if data[i].label == "pos" { 1 } else { 0 })
            .collect();
        assert_eq!(batch.labels, labels);
    }
    // The whole dataset as one batch equals the tokenizer's own padded batch.
    let all = encoder.text_batch(&data, label_id).unwrap();
    let strs: Vec<&str> = data.iter().map(|t| t.text.as_str()).collect();
    let reference = tok.encode_batch(&strs).unwrap();
    assert_eq!(all.input_ids, reference.input_ids);
    assert_eq!(all.type_ids, reference.type_ids);
    assert_eq!(all.attention_mask, reference.attention_mask);
    assert_eq!(all.seq_len, reference.seq_len);
}

#[test]
fn parallel_encoding_equals_sequential() {
    let data = texts();
    let encoder = TextEncoder::new(tokenizer());
    let pool = |n| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap()
    };
    let one = pool(1)
        .install(|| encoder.encode_texts(&data, label_id))
        .unwrap();
    let four = pool(4)
        .install(|| encoder.encode_texts(&data, label_id))
        .unwrap();
    assert_eq!(one, four);
    for (i, t) in data.iter().enumerate() {
        assert_eq!(
            four.rows().ids(i).unwrap(),
            &tokenizer().encode(&t.text).unwrap()[0].ids[..]
        );
    }
}

#[test]
fn long_texts_truncate_by_default_and_error_on_request() {
    let tok = tokenizer().clone().with_max_length(8);
    let data = vec![
        LabeledText {
            text: "short one".into(),
            label: "pos".into(),
        },
        LabeledText {
            text: "this sentence is certainly longer than eight word pieces".into(),
            label: "neg".into(),
        },
    ];
    let batch = TextEncoder::new(&tok).text_batch(&data, label_id).unwrap();
    assert_eq!(batch.seq_len, 8);
    let full = tokenizer().encode(&data[1].text).unwrap()[0].ids.clone();
    let row = &batch.input_ids[8..];
    assert_eq!(&row[..7], &full[..7]); // [CLS] and the first six pieces
    assert_eq!(row[7], tok.token_to_id("[SEP]").unwrap());

    let strict = TextEncoder::with_policy_of(&tok).unwrap();
    match strict.encode_texts(&data, label_id) {
        Err(DataError::Tokenizer(TokenizerError::TooLong { index, max, .. })) => {
            assert_eq!((index, max), (1, 8));
        }
        other => panic!("expected TooLong for text 1, got {other:?}"),
    }
    let windowed = tok.with_length_policy(LengthPolicy::Window { stride: 2 });
    assert!(matches!(
        TextEncoder::with_policy_of(&windowed),
        Err(DataError::InvalidArgument { .. })
    ));
}

#[test]
fn bad_input_is_reported() {
    let encoder = TextEncoder::new(tokenizer());
    let mut data = texts();
    data[3].text = "   ".into();
    match encoder.encode_texts(&data, label_id) {
        Err(DataError::Tokenizer(TokenizerError::EmptyText { index })) => assert_eq!(index, 3),
        other => panic!("expected EmptyText at 3, got {other:?}"),
    }
    data[5].label = "neutral".into();
    match encoder.encode_texts(&data, label_id) {
        Err(DataError::UnknownLabel { label, .. }) => assert_eq!(label, "neutral"),
        other => panic!("expected UnknownLabel, got {other:?}"),
    }
    assert!(matches!(
        encoder.encode_texts(&[], label_id),
        Err(DataError::Empty(_))
    ));
    let encoded = encoder.encode_texts(&texts(), label_id).unwrap();
    assert!(matches!(encoded.batch(&[]), Err(DataError::Empty(_))));
    assert!(matches!(
        encoded.batch(&[0, 60]),
        Err(DataError::InvalidArgument { .. })
    ));
}

#[test]
fn pair_batch_pads_each_side_on_its_own() {
    let tok = tokenizer();
    let pairs = vec![
        TextPair {
            anchor: "cheap flights".into(),
            positive: "Book low-cost air travel to Europe today.".into(),
        },
        TextPair {
            anchor: "how do magnets work at the atomic level".into(),
            positive: "Spin.".into(),
        },
        TextPair {
            anchor: "rust borrow checker".into(),
            positive: "Ownership rules in Rust.".into(),
        },
    ];
    let batch = TextEncoder::new(tok).pair_batch(&pairs).unwrap();
    assert_eq!(batch.len(), 3);
    let anchors: Vec<&str> = pairs.iter().map(|p| p.anchor.as_str()).collect();
    let positives: Vec<&str> = pairs.iter().map(|p| p.positive.as_str()).collect();
    for (side, texts) in [(&batch.anchor, anchors), (&batch.positive, positives)] {
        let reference = tok.encode_batch(&texts).unwrap();
        assert_eq!(side.shape(), reference.shape());
        assert_eq!(side.input_ids, reference.input_ids);
        assert_eq!(side.type_ids, reference.type_ids);
        assert_eq!(side.attention_mask, reference.attention_mask);
    }
    assert_ne!(batch.anchor.seq_len, batch.positive.seq_len);
}
