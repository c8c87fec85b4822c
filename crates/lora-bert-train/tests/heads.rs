//! Heads (shapes, save/load, error paths, a tiny training run), pooling and the batch
//! conversions, checked against values computed by hand.

use std::path::Path;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use lora_bert_apps::AppError;
use lora_bert_data::LabelVocab;
use lora_bert_data::batch::{InputBatch, PairBatch, TextBatch};
use lora_bert_data::token::{TokenBatch, TokenExample};
use lora_bert_encoder::device::{self, Backend};
use lora_bert_encoder::{BertConfig, BertInput, BertModel, Route};
use lora_bert_train::heads::{CONFIG_FILE, LABELS_FILE, WEIGHTS_FILE};
use lora_bert_train::input::{class_labels, labels_2d, pair_inputs, token_labels};
use lora_bert_train::loss::{CrossEntropy, check_finite, cross_entropy};
use lora_bert_train::pooling::word_pool;
use lora_bert_train::{
    Pooling, ProjectionHead, ProjectionHeadConfig, SequenceClassificationHead,
    SequenceClassificationHeadConfig, ToBertInput, TokenClassificationHead,
    TokenClassificationHeadConfig, TrainError, WordMap, WordPooling,
};
use safetensors::SafeTensors;

// ---------------------------------------------------------------------------------------------
// Helpers

fn cpu() -> Device {
    device::device(Backend::default_cpu().expect("a CPU backend")).expect("cpu device")
}

fn tiny_config() -> BertConfig {
    serde_json::from_str(
        r#"{"vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 2,
            "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 32,
            "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}"#,
    )
    .expect("tiny config")
}

fn f32s<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().expect("f32")
}

fn i64s<const D: usize>(t: Tensor<D, Int>) -> Vec<i64> {
    t.into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .expect("i64")
}

/// `[B, S, H]` states with value `100·b + 10·s + h` (every entry distinct and readable).
fn readable_states(b: usize, s: usize, h: usize, device: &Device) -> (Vec<f32>, Tensor<3>) {
    let v: Vec<f32> = (0..b * s * h)
        .map(|i| {
            let (bi, si, hi) = (i / (s * h), (i / h) % s, i % h);
            (100 * bi + 10 * si + hi) as f32
        })
        .collect();
    let t = Tensor::from_data(TensorData::new(v.clone(), [b, s, h]), device);
    (v, t)
}

fn mask(values: &[i64], shape: [usize; 2], device: &Device) -> Tensor<2, Int> {
    Tensor::from_data(TensorData::new(values.to_vec(), shape), device)
}

fn random_hidden(shape: [usize; 3], seed: u64, device: &Device) -> Tensor<3> {
    let n = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|i| ((i as f64 * 0.731 + seed as f64 * 1.37).sin() * 2.0) as f32)
        .collect();
    Tensor::from_data(TensorData::new(v, shape), device)
}

// ---------------------------------------------------------------------------------------------
// Pooling

#[test]
fn mean_pooling_averages_real_tokens_only() {
    let dev = cpu();
    let (v, hidden) = readable_states(2, 4, 3, &dev);
    let m = [1, 1, 1, 0, 1, 1, 0, 0];
    let pooled = f32s(
        Pooling::Mean
            .pool(hidden.clone(), mask(&m, [2, 4], &dev))
            .unwrap(),
    );
    let mut expected = Vec::new();
    for b in 0..2 {
        for h in 0..3 {
            let real: Vec<f32> = (0..4)
                .filter(|&s| m[b * 4 + s] == 1)
                .map(|s| v[(b * 4 + s) * 3 + h])
                .collect();
            expected.push(real.iter().sum::<f32>() / real.len() as f32);
        }
    }
    assert_eq!(pooled, expected);
    // By hand: row 0 averages positions 0..3: 10·(0+1+2)/3 + h = 10 + h.
    assert_eq!(&pooled[..3], [10.0, 11.0, 12.0]);

    let cls = f32s(
        Pooling::Cls
            .pool(hidden.clone(), mask(&m, [2, 4], &dev))
            .unwrap(),
    );
    assert_eq!(cls, [0.0, 1.0, 2.0, 100.0, 101.0, 102.0]);

    let err = Pooling::Mean
        .pool(hidden, mask(&[1; 6], [2, 3], &dev))
        .unwrap_err();
    match err {
        AppError::Shape {
            expected, found, ..
        } => {
            assert_eq!((expected, found), (vec![2, 4], vec![2, 3]));
        }
        other => panic!("{other}"),
    }
}

#[test]
fn word_pooling_on_a_hand_made_map() {
    let dev = device::autodiff(cpu());
    // Row 0: [CLS] w0 w1 w1 w2 [SEP] (6 tokens).
    // Row 1, a window of a longer sentence: [CLS] w5 w5 w7 [SEP] pad (word 6 has no token
    // here).
    let rows = vec![
        vec![None, Some(0), Some(1), Some(1), Some(2), None],
        vec![None, Some(5), Some(5), Some(7), None],
    ];
    let map = WordMap::new(&rows, 6).unwrap();
    assert_eq!(map.shape(), [2, 3]);
    assert_eq!(map.first_word(), [0, 5]);
    assert_eq!(map.num_words(), [3, 3]);
    assert_eq!(map.mask_values(), [1, 1, 1, 1, 0, 1]);

    let (v, states) = readable_states(2, 6, 2, &dev);
    let states = states.require_grad();
    let at = |b: usize, s: usize, h: usize| v[(b * 6 + s) * 2 + h];
    let mean = |b: usize, ss: &[usize], h: usize| {
        ss.iter().map(|&s| at(b, s, h)).sum::<f32>() / ss.len() as f32
    };

    let first = word_pool(states.clone(), &map, WordPooling::First).unwrap();
    assert_eq!(i64s(first.mask), [1, 1, 1, 1, 0, 1]);
    let mut expected = Vec::new();
    for (b, words) in [
        (0, [Some(1), Some(2), Some(4)]),
        (1, [Some(1), None, Some(3)]),
    ] {
        for w in words {
            for h in 0..2 {
                expected.push(w.map_or(0.0, |s| at(b, s, h)));
            }
        }
    }
    assert_eq!(f32s(first.states), expected);

    let pooled = word_pool(states.clone(), &map, WordPooling::Mean).unwrap();
    let mut expected = Vec::new();
    for (b, words) in [
        (0, vec![vec![1], vec![2, 3], vec![4]]),
        (1, vec![vec![1, 2], vec![], vec![3]]),
    ] {
        for w in &words {
            for h in 0..2 {
                expected.push(if w.is_empty() { 0.0 } else { mean(b, w, h) });
            }
        }
    }
    assert_eq!(f32s(pooled.states.clone()), expected);
    // By hand: row 0, word 1 = mean of positions 2 and 3 = 25 + h.
    assert_eq!(expected[2..4], [25.0, 26.0]);

    // Gradients: d Σ(word states) / d token state = the token's share of its word.
    let grads = pooled.states.sum().backward();
    let g = f32s(states.grad(&grads).expect("gradient"));
    let per_token: Vec<f32> = g.chunks(2).map(|c| c[0]).collect();
    assert_eq!(
        per_token,
        [0.0, 1.0, 0.5, 0.5, 1.0, 0.0, 0.0, 0.5, 0.5, 1.0, 0.0, 0.0]
    );
}

#[test]
fn word_map_errors_and_examples() {
    let dev = cpu();
    assert!(matches!(
        WordMap::new(&[vec![None, Some(0), None]], 2),
        Err(AppError::Shape { .. })
    ));
    assert!(matches!(
        WordMap::new::<Vec<Option<usize>>>(&[], 4),
        Err(AppError::InvalidArgument { .. })
    ));
    // A broken map (words 0 and 1000 in a row of 2 tokens) is refused, not allocated.
    assert!(matches!(
        WordMap::new(&[vec![Some(0), Some(1000)]], 4),
        Err(AppError::InvalidArgument {
            what: "word map",
            ..
        })
    ));
    // A row without words pools to a fully masked row.
    let map = WordMap::new(&[vec![None, None], vec![None, Some(0)]], 2).unwrap();
    assert_eq!(map.shape(), [2, 1]);
    assert_eq!(map.mask_values(), [0, 1]);
    // States that do not fit the map.
    let err = word_pool(Tensor::zeros([2, 3, 4], &dev), &map, WordPooling::Mean).unwrap_err();
    match err {
        AppError::Shape {
            expected, found, ..
        } => {
            assert_eq!((expected, found), (vec![2, 2], vec![2, 3]));
        }
        other => panic!("{other}"),
    }
    let example = TokenExample {
        input_ids: vec![101, 7, 8, 102],
        type_ids: vec![0; 4],
        labels: vec![-100, 1, -100, -100],
        token_word: vec![None, Some(0), Some(0), None],
        sentence: 0,
        num_words: 1,
        window: 0,
        num_windows: 1,
        token_start: 0,
    };
    let map = WordMap::from_examples(&[&example], 5).unwrap();
    assert_eq!(map.shape(), [1, 1]);
    assert_eq!(map.weights(WordPooling::Mean), [0.0, 0.5, 0.5, 0.0, 0.0]);
}

// ---------------------------------------------------------------------------------------------
// Batch conversions

#[test]
fn host_batches_become_model_inputs() {
    let dev = cpu();
    let config = tiny_config();
    let tokens = TokenBatch {
        input_ids: vec![2, 7, 3, 2, 3, 0],
        type_ids: vec![0, 0, 0, 0, 0, 0],
        attention_mask: vec![1, 1, 1, 1, 1, 0],
        labels: vec![-100, 4, -100, -100, -100, -100],
        seq_len: 3,
    };
    let input = tokens.to_input(&config, &dev).unwrap();
    assert_eq!(i64s(input.input_ids), [2, 7, 3, 2, 3, 0]);
    assert_eq!(i64s(input.attention_mask), [1, 1, 1, 1, 1, 0]);
    assert_eq!(
        i64s(token_labels(&tokens, &dev).unwrap()),
        [-100, 4, -100, -100, -100, -100]
    );

    let text = TextBatch {
        input_ids: vec![2, 9, 3, 2, 3, 0],
        type_ids: vec![0; 6],
        attention_mask: vec![1, 1, 1, 1, 1, 0],
        labels: vec![1, 0],
        seq_len: 3,
    };
    assert_eq!(text.to_input(&config, &dev).unwrap().shape(), [2, 3]);
    assert_eq!(i64s(class_labels(&text, &dev).unwrap()), [1, 0]);

    let side = |ids: Vec<u32>, seq_len| InputBatch {
        type_ids: vec![0; ids.len()],
        attention_mask: vec![1; ids.len()],
        input_ids: ids,
        seq_len,
    };
    let pair = PairBatch {
        anchor: side(vec![2, 5, 3, 2, 6, 3], 3),
        positive: side(vec![2, 5, 5, 3, 2, 6, 6, 3], 4),
    };
    let (a, p) = pair_inputs(&pair, &config, &dev).unwrap();
    assert_eq!((a.shape(), p.shape()), ([2, 3], [2, 4]));
}

#[test]
fn inconsistent_batches_are_typed_errors() {
    let dev = cpu();
    let config = tiny_config();
    // Mask shorter than the ids.
    let bad = InputBatch {
        input_ids: vec![2, 7, 3, 2],
        type_ids: vec![0; 4],
        attention_mask: vec![1, 1, 1],
        seq_len: 2,
    };
    assert!(matches!(
        bad.to_input(&config, &dev),
        Err(TrainError::Input(_))
    ));
    // An id outside the vocabulary of 50.
    let bad = InputBatch {
        input_ids: vec![2, 70],
        type_ids: vec![0; 2],
        attention_mask: vec![1; 2],
        seq_len: 2,
    };
    assert!(matches!(
        bad.to_input(&config, &dev),
        Err(TrainError::Input(
            lora_bert_encoder::InputError::TokenOutOfVocab { id: 70, .. }
        ))
    ));
    // A text batch with a label too many.
    let text = TextBatch {
        input_ids: vec![2, 3],
        type_ids: vec![0; 2],
        attention_mask: vec![1; 2],
        labels: vec![0, 1],
        seq_len: 2,
    };
    match class_labels(&text, &dev) {
        Err(TrainError::Shape {
            expected, found, ..
        }) => {
            assert_eq!((expected, found), (vec![1], vec![2]));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        labels_2d(&[0, 1, 2], [2, 2], &dev),
        Err(TrainError::Shape { .. })
    ));
    let pair = PairBatch {
        anchor: InputBatch {
            input_ids: vec![2, 3],
            type_ids: vec![0; 2],
            attention_mask: vec![1; 2],
            seq_len: 2,
        },
        positive: InputBatch {
            input_ids: vec![2, 3, 2, 3],
            type_ids: vec![0; 4],
            attention_mask: vec![1; 4],
            seq_len: 2,
        },
    };
    assert!(matches!(
        pair_inputs(&pair, &config, &dev),
        Err(TrainError::Shape { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Heads

fn ner_vocab() -> LabelVocab {
    LabelVocab::from_tags(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]).unwrap()
}

#[test]
fn heads_have_the_right_shapes() {
    let dev = cpu();
    let hidden = random_hidden([3, 5, 16], 1, &dev);
    let m = mask(&[1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0], [3, 5], &dev);

    let token = TokenClassificationHeadConfig::new(16, 5)
        .init(&dev)
        .unwrap();
    assert_eq!(token.forward(hidden.clone()).unwrap().dims(), [3, 5, 5]);

    let seq = SequenceClassificationHeadConfig::new(16, 3)
        .with_pooling(Pooling::Cls)
        .init(&dev)
        .unwrap();
    assert_eq!(
        seq.forward(hidden.clone(), m.clone()).unwrap().dims(),
        [3, 3]
    );

    let proj = ProjectionHeadConfig::new(16)
        .with_dim(8)
        .init(&dev)
        .unwrap();
    assert_eq!(
        proj.forward(hidden.clone(), m.clone()).unwrap().dims(),
        [3, 8]
    );

    // Identity projection: the mean-pooled states as they are.
    let identity = ProjectionHeadConfig::new(16).init(&dev).unwrap();
    assert!(identity.dense.is_none());
    assert_eq!(
        f32s(identity.forward(hidden.clone(), m.clone()).unwrap()),
        f32s(Pooling::Mean.pool(hidden.clone(), m.clone()).unwrap())
    );

    // The token head is W·x + b on every token: check one logit by hand.
    let logits = f32s(token.forward(hidden.clone()).unwrap());
    let w = f32s(token.classifier.weight.val()); // [16, 5]
    let b = f32s(token.classifier.bias.val());
    let x = f32s(hidden.clone());
    let (row, pos, class) = (2, 3, 4);
    let by_hand: f32 = b[class]
        + (0..16)
            .map(|h| x[(row * 5 + pos) * 16 + h] * w[h * 5 + class])
            .sum::<f32>();
    assert!((logits[(row * 5 + pos) * 5 + class] - by_hand).abs() < 1e-5);

    // Wrong widths.
    let narrow = random_hidden([3, 5, 8], 2, &dev);
    match token.forward(narrow.clone()).unwrap_err() {
        AppError::Shape {
            expected, found, ..
        } => {
            assert_eq!((expected, found), (vec![3, 5, 16], vec![3, 5, 8]));
        }
        other => panic!("{other}"),
    }
    assert!(seq.forward(narrow.clone(), m.clone()).is_err());
    assert!(proj.forward(narrow, m).is_err());
}

#[test]
fn bad_configs_are_refused() {
    let dev = cpu();
    let refused = |r: Result<_, AppError>, name: &str| match r {
        Err(AppError::InvalidArgument { what, .. }) => assert_eq!(what, name),
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("accepted a bad {name}"),
    };
    refused(
        TokenClassificationHeadConfig::new(0, 3)
            .init(&dev)
            .map(|_| ()),
        "hidden_size",
    );
    refused(
        TokenClassificationHeadConfig::new(8, 0)
            .init(&dev)
            .map(|_| ()),
        "num_labels",
    );
    refused(
        SequenceClassificationHeadConfig::new(8, 2)
            .with_dropout(1.0)
            .init(&dev)
            .map(|_| ()),
        "dropout",
    );
    refused(
        ProjectionHeadConfig::new(8)
            .with_dim(0)
            .init(&dev)
            .map(|_| ()),
        "dim",
    );
}

fn token_head_saved(dir: &Path) -> (TokenClassificationHead, LabelVocab) {
    let dev = cpu();
    let vocab = ner_vocab();
    let head = TokenClassificationHeadConfig::new(16, vocab.len())
        .init(&dev)
        .unwrap();
    head.save(dir, &vocab).unwrap();
    (head, vocab)
}

#[test]
fn save_load_round_trips_bit_for_bit() {
    let dev = cpu();
    let hidden = random_hidden([2, 4, 16], 3, &dev);
    let m = mask(&[1, 1, 1, 0, 1, 1, 1, 1], [2, 4], &dev);

    let dir = tempfile::tempdir().unwrap();
    let (head, vocab) = token_head_saved(dir.path());
    let (loaded, labels) = TokenClassificationHead::load(dir.path(), &dev).unwrap();
    assert_eq!(labels, vocab);
    assert_eq!(loaded.config(), head.config());
    assert_eq!(
        f32s(loaded.forward(hidden.clone()).unwrap()),
        f32s(head.forward(hidden.clone()).unwrap())
    );

    let dir = tempfile::tempdir().unwrap();
    let vocab = LabelVocab::from_labels(["neg", "neu", "pos"]).unwrap();
    let head = SequenceClassificationHeadConfig::new(16, 3)
        .with_pooling(Pooling::Cls)
        .with_dropout(0.2)
        .init(&dev)
        .unwrap();
    head.save(dir.path(), &vocab).unwrap();
    let (loaded, labels) = SequenceClassificationHead::load(dir.path(), &dev).unwrap();
    assert_eq!(labels, vocab);
    assert_eq!(loaded.config(), head.config());
    assert_eq!(loaded.config().pooling, Pooling::Cls);
    assert_eq!(
        f32s(loaded.forward(hidden.clone(), m.clone()).unwrap()),
        f32s(head.forward(hidden.clone(), m.clone()).unwrap())
    );

    for config in [
        ProjectionHeadConfig::new(16).with_dim(6),
        ProjectionHeadConfig::new(16),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let head = config.init(&dev).unwrap();
        head.save(dir.path()).unwrap();
        let loaded = ProjectionHead::load(dir.path(), &dev).unwrap();
        assert_eq!(loaded.config(), head.config());
        assert_eq!(
            f32s(loaded.forward(hidden.clone(), m.clone()).unwrap()),
            f32s(head.forward(hidden.clone(), m.clone()).unwrap())
        );
    }
}

#[test]
fn saved_files_use_hugging_face_names_and_layout() {
    let dir = tempfile::tempdir().unwrap();
    let (head, vocab) = token_head_saved(dir.path());
    let bytes = std::fs::read(dir.path().join(WEIGHTS_FILE)).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut names = file.names();
    names.sort();
    assert_eq!(names, ["classifier.bias", "classifier.weight"]);
    let weight = file.tensor("classifier.weight").unwrap();
    assert_eq!(weight.shape(), [5, 16]); // [out, in]
    let stored: Vec<f32> = weight
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let w = f32s(head.classifier.weight.val()); // [in, out]
    for o in 0..5 {
        for i in 0..16 {
            assert_eq!(stored[o * 16 + i], w[i * 5 + o]);
        }
    }
    assert_eq!(file.tensor("classifier.bias").unwrap().shape(), [5]);

    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join(CONFIG_FILE)).unwrap())
            .unwrap();
    assert_eq!(config["head"], "token_classification");
    assert_eq!(config["num_labels"], 5);
    assert_eq!(
        LabelVocab::load(dir.path().join(LABELS_FILE)).unwrap(),
        vocab
    );
    // No temporary file left behind.
    let mut files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, [WEIGHTS_FILE, CONFIG_FILE, LABELS_FILE]);
}

/// Rewrites `head.safetensors` in `dir` with `tensors` (name, shape, values).
fn write_weights(dir: &Path, tensors: &[(&str, Vec<usize>, Vec<f32>)]) {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, s, v)| {
            (
                n.to_string(),
                s.clone(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views = bytes.iter().map(|(n, s, d)| {
        (
            n.as_str(),
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d).unwrap(),
        )
    });
    let out = safetensors::serialize(views, None).unwrap();
    std::fs::write(dir.join(WEIGHTS_FILE), out).unwrap();
}

#[test]
fn load_reports_what_is_wrong() {
    let dev = cpu();
    let load = |dir: &Path| TokenClassificationHead::load(dir, &dev).map(|_| ());

    // Shape mismatch: the config says 16 → 5, the file holds 16 → 4.
    let dir = tempfile::tempdir().unwrap();
    token_head_saved(dir.path());
    write_weights(
        dir.path(),
        &[
            ("classifier.weight", vec![4, 16], vec![0.0; 64]),
            ("classifier.bias", vec![4], vec![0.0; 4]),
        ],
    );
    match load(dir.path()).unwrap_err() {
        AppError::Shape {
            what,
            expected,
            found,
        } => {
            assert!(what.contains("classifier.weight"), "{what}");
            assert_eq!((expected, found), (vec![5, 16], vec![4, 16]));
        }
        other => panic!("{other}"),
    }

    // Non-finite weights.
    let mut w = vec![0.0; 80];
    w[17] = f32::NAN;
    write_weights(
        dir.path(),
        &[
            ("classifier.weight", vec![5, 16], w),
            ("classifier.bias", vec![5], vec![0.0; 5]),
        ],
    );
    match load(dir.path()).unwrap_err() {
        AppError::Format { path, message } => {
            assert!(path.ends_with(WEIGHTS_FILE));
            assert!(message.contains("non-finite") && message.contains("classifier.weight"));
        }
        other => panic!("{other}"),
    }

    // Missing and extra tensors.
    write_weights(
        dir.path(),
        &[("classifier.weight", vec![5, 16], vec![0.0; 80])],
    );
    assert!(
        matches!(load(dir.path()), Err(AppError::Format { message, .. }) if message.contains("missing tensor `classifier.bias`"))
    );
    write_weights(
        dir.path(),
        &[
            ("classifier.weight", vec![5, 16], vec![0.0; 80]),
            ("classifier.bias", vec![5], vec![0.0; 5]),
            ("pooler.dense.bias", vec![16], vec![0.0; 16]),
        ],
    );
    assert!(
        matches!(load(dir.path()), Err(AppError::Format { message, .. }) if message.contains("pooler.dense.bias"))
    );

    // Corrupt weights file.
    std::fs::write(dir.path().join(WEIGHTS_FILE), b"\x08\0\0\0\0\0\0\0not json").unwrap();
    assert!(matches!(
        load(dir.path()),
        Err(AppError::Format { message, .. }) if message.contains("safetensors")
    ));

    // Label count != num_labels.
    let dir = tempfile::tempdir().unwrap();
    token_head_saved(dir.path());
    LabelVocab::from_tags(["O", "B-PER", "I-PER"])
        .unwrap()
        .save(dir.path().join(LABELS_FILE))
        .unwrap();
    match load(dir.path()).unwrap_err() {
        AppError::Format { path, message } => {
            assert!(path.ends_with(LABELS_FILE));
            assert!(
                message.contains("3 labels") && message.contains("5"),
                "{message}"
            );
        }
        other => panic!("{other}"),
    }

    // Missing files.
    let dir = tempfile::tempdir().unwrap();
    token_head_saved(dir.path());
    std::fs::remove_file(dir.path().join(WEIGHTS_FILE)).unwrap();
    assert!(
        matches!(load(dir.path()), Err(AppError::Io { path, .. }) if path.ends_with(WEIGHTS_FILE))
    );
    assert!(matches!(
        load(&dir.path().join("nowhere")),
        Err(AppError::Io { .. })
    ));

    // Corrupt config, and a config of another kind of head.
    let dir = tempfile::tempdir().unwrap();
    token_head_saved(dir.path());
    std::fs::write(
        dir.path().join(CONFIG_FILE),
        "{\"head\": \"token_classification\"",
    )
    .unwrap();
    assert!(matches!(load(dir.path()), Err(AppError::Format { .. })));
    let dir = tempfile::tempdir().unwrap();
    ProjectionHeadConfig::new(16)
        .init(&dev)
        .unwrap()
        .save(dir.path())
        .unwrap();
    assert!(
        matches!(load(dir.path()), Err(AppError::Format { message, .. }) if message.contains("projection"))
    );

    // Saving with a vocabulary that does not fit.
    let head = TokenClassificationHeadConfig::new(16, 5)
        .init(&dev)
        .unwrap();
    let vocab = LabelVocab::from_labels(["a", "b"]).unwrap();
    assert!(matches!(
        head.save(tempfile::tempdir().unwrap().path(), &vocab),
        Err(AppError::InvalidArgument { what: "labels", .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Training

/// Sequences of ids from `1..20` (class 0) or `20..40` (class 1), 8 tokens, some padded.
fn toy_batch(n: usize, device: &Device) -> (BertInput, Vec<u32>) {
    let seq = 8;
    let mut ids = Vec::new();
    let mut mask_v = Vec::new();
    let mut labels = Vec::new();
    for i in 0..n {
        let class = (i % 2) as u32;
        let len = 5 + i % 4;
        for j in 0..seq {
            let real = j < len;
            let id = if real {
                1 + 20 * class + ((i * 7 + j * 3) % 19) as u32
            } else {
                0
            };
            ids.push(id);
            mask_v.push(u32::from(real));
        }
        labels.push(class);
    }
    let input = BertInput::from_ids(
        &ids,
        &vec![0; n * seq],
        &mask_v,
        [n, seq],
        &tiny_config(),
        device,
    )
    .unwrap();
    (input, labels)
}

#[test]
fn a_sequence_head_learns_a_separable_task_on_a_frozen_encoder() {
    let dev = device::autodiff(cpu());
    dev.seed(7); // the encoder and the head start from the same values on every run
    let model = BertModel::init(&tiny_config(), false, &dev).no_grad();
    let (input, labels) = toy_batch(16, &dev);
    let hidden = model
        .forward(&input, &Route::Base)
        .unwrap()
        .last_hidden_state
        .detach();
    let targets = lora_bert_train::input::labels_1d(&labels, &dev).unwrap();

    let mut head = SequenceClassificationHeadConfig::new(16, 2)
        .with_dropout(0.0)
        .init(&dev)
        .unwrap();
    let mut optim = AdamWConfig::new().with_weight_decay(0.01).init();
    let mut losses = Vec::new();
    for step in 0..100 {
        let logits = head
            .forward(hidden.clone(), input.attention_mask.clone())
            .unwrap();
        let loss = cross_entropy(logits, targets.clone(), &CrossEntropy::default()).unwrap();
        losses.push(check_finite(&loss, step).unwrap());
        let grads = GradientsParams::from_grads(loss.backward(), &head);
        head = optim.step(5e-2, head, grads);
    }
    let (first, last) = (losses[0], *losses.last().unwrap());
    assert!((first - 2f64.ln()).abs() < 0.1, "initial loss {first}");
    assert!(
        last < 0.25 * first,
        "loss went {first} → {last}: {losses:?}"
    );

    let logits = f32s(
        head.valid()
            .forward(hidden, input.attention_mask.clone())
            .unwrap(),
    );
    let predicted: Vec<u32> = logits.chunks(2).map(|l| u32::from(l[1] > l[0])).collect();
    let correct = predicted
        .iter()
        .zip(&labels)
        .filter(|(p, l)| p == l)
        .count();
    // A frozen random encoder: its pooled features need not separate every row linearly.
    assert!(correct >= 15, "{correct}/16 correct: {predicted:?}");
}

// ---------------------------------------------------------------------------------------------
// Invariants

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// For any token→word map: a word column with tokens has Mean weights summing to 1
        /// over exactly its tokens and one First weight on its first token; every other
        /// column is all zero and masked.
        #[test]
        fn word_pooling_weights_follow_the_map(
            rows in proptest::collection::vec(
                proptest::collection::vec(proptest::option::of(0usize..6), 0..8),
                1..4,
            ),
            extra in 0usize..3,
        ) {
            let seq_len = rows.iter().map(Vec::len).max().unwrap_or(0) + extra + 1;
            let map = WordMap::new(&rows, seq_len).unwrap();
            let [b, w] = map.shape();
            prop_assert_eq!(b, rows.len());
            let mean = map.weights(WordPooling::Mean);
            let first = map.weights(WordPooling::First);
            let mask = map.mask_values();
            for (r, row) in rows.iter().enumerate() {
                for j in 0..w {
                    let word = map.first_word()[r] + j;
                    let tokens: Vec<usize> = (0..row.len())
                        .filter(|&s| j < map.num_words()[r] && row[s] == Some(word))
                        .collect();
                    let at = |v: &[f32], s: usize| v[(r * w + j) * seq_len + s];
                    prop_assert_eq!(mask[r * w + j], i64::from(!tokens.is_empty()));
                    for s in 0..seq_len {
                        let share = if tokens.contains(&s) { 1.0 / tokens.len() as f32 } else { 0.0 };
                        prop_assert_eq!(at(&mean, s), share);
                        let one = if tokens.first() == Some(&s) { 1.0 } else { 0.0 };
                        prop_assert_eq!(at(&first, s), one);
                    }
                }
            }
        }
    }
}
