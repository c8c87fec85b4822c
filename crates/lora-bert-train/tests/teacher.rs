//! Teachers: word states against a hand computation from the encoder's own hidden states,
//! batching and padding invariance, windows, and the on-disk cache.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use lora_bert_data::align::token_words;
use lora_bert_encoder::device::{self, Backend, Device};
use lora_bert_encoder::tokenizer::{BertTokenizer, LengthPolicy, TokenizerError};
use lora_bert_encoder::{
    BertConfig, BertInput, BertModel, HiddenLayer, InputError, MpnetModel, Route,
};
use lora_bert_train::teacher::{
    BuildProgress, CacheDtype, CacheOptions, EncoderTeacher, Teacher, TeacherCache, WordPooling,
    WordStates,
};
use lora_bert_train::{Result, TrainError};
use proptest::prelude::*;

fn cpu() -> Device {
    device::device(Backend::default_cpu().expect("a CPU backend")).expect("cpu device")
}

fn minilm() -> lora_bert_assets::ModelFiles {
    let cache = lora_bert_assets::AssetCache::from_env().expect("asset cache");
    lora_bert_assets::all_minilm_l6_v2(&cache).expect("all-MiniLM-L6-v2")
}

fn tokenizer() -> BertTokenizer {
    BertTokenizer::from_file(minilm().tokenizer).expect("tokenizer")
}

/// A tiny random BERT with MiniLM's vocabulary.
fn tiny_model(device: &Device) -> BertModel {
    let config = BertConfig::new(30522, 16, 2, 2, 32);
    BertModel::init(&config, false, device)
}

fn teacher(batch: usize) -> EncoderTeacher {
    let device = cpu();
    EncoderTeacher::new(tiny_model(&device), tokenizer(), &device)
        .expect("teacher")
        .with_batch_size(batch)
        .expect("batch size")
}

fn words(s: &str) -> Vec<String> {
    s.split(' ').map(str::to_string).collect()
}

fn corpus() -> Vec<Vec<String>> {
    let mut c: Vec<Vec<String>> = [
        "Atlanta's weather was unbelievably humid .",
        "EU rejects German call to boycott British lamb .",
        "Peter Blackburn",
        "don't stop",
        "a",
        "The quick brown fox jumps over the lazy dog near the riverbank .",
    ]
    .iter()
    .map(|s| words(s))
    .collect();
    // A word that gives no token, inside a sentence and alone.
    c.push(vec!["zero".into(), "\u{200b}".into(), "width".into()]);
    c.push(vec!["\u{200b}".into()]);
    c
}

fn refs(c: &[Vec<String>]) -> Vec<&[String]> {
    c.iter().map(Vec::as_slice).collect()
}

fn values(t: burn::tensor::Tensor<3>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().expect("f32")
}

/// The hand computation: encode the sentence alone, run the model on it alone, map tokens to
/// words by byte offset, pool each word's pieces in f64. Rows of words with no piece are
/// `None`.
fn reference(
    model: &BertModel,
    tok: &BertTokenizer,
    device: &Device,
    words: &[String],
    pooling: WordPooling,
) -> Vec<Option<Vec<f64>>> {
    reference_with(tok, words, pooling, |batch| {
        let input = BertInput::from_batch(batch, model.config(), device).expect("input");
        let out = model.forward(&input, &Route::Base).expect("forward");
        (values(out.last_hidden_state), model.config().hidden_size)
    })
}

/// [`reference`] for any encoder: `run` gives the last hidden state of a one-row batch and
/// its width.
fn reference_with(
    tok: &BertTokenizer,
    words: &[String],
    pooling: WordPooling,
    run: impl FnOnce(&lora_bert_encoder::tokenizer::Batch) -> (Vec<f32>, usize),
) -> Vec<Option<Vec<f64>>> {
    let text = words.join(" ");
    let mut spans = Vec::new();
    let mut at = 0;
    for w in words {
        spans.push((at, at + w.len()));
        at += w.len() + 1;
    }
    let tok = tok.clone().allow_empty(true);
    let batch = tok.encode_batch(&[text.as_str()]).expect("encode");
    assert_eq!(batch.len(), 1, "reference sentences fit one window");
    let (states, hidden) = run(&batch);
    let map = token_words(&batch.encodings[0], &spans).expect("token words");
    (0..words.len())
        .map(|w| {
            let mut pieces: Vec<usize> = (0..map.len()).filter(|&t| map[t] == Some(w)).collect();
            if pieces.is_empty() {
                return None;
            }
            if pooling == WordPooling::First {
                pieces.truncate(1);
            }
            let mut row = vec![0f64; hidden];
            for &t in &pieces {
                for (r, s) in row.iter_mut().zip(&states[t * hidden..(t + 1) * hidden]) {
                    *r += f64::from(*s);
                }
            }
            row.iter_mut().for_each(|r| *r /= pieces.len() as f64);
            Some(row)
        })
        .collect()
}

fn assert_matches_reference(got: &WordStates, want: &[Option<Vec<f64>>], tol: f64) {
    assert_eq!(got.num_words, want.len());
    for (w, r) in want.iter().enumerate() {
        match r {
            None => {
                assert!(!got.present[w], "word {w} has no token");
                assert!(got.row(w).iter().all(|&x| x == 0.0), "word {w} row is zero");
            }
            Some(r) => {
                assert!(got.present[w], "word {w} is present");
                let diff = got
                    .row(w)
                    .iter()
                    .zip(r)
                    .map(|(a, b)| (f64::from(*a) - b).abs())
                    .fold(0.0, f64::max);
                assert!(diff < tol, "word {w}: max diff {diff}");
            }
        }
    }
}

fn max_diff(a: &[WordStates], b: &[WordStates]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            assert_eq!((x.num_words, x.hidden), (y.num_words, y.hidden));
            assert_eq!(x.present, y.present);
            x.data
                .iter()
                .zip(&y.data)
                .map(|(p, q)| (p - q).abs())
                .fold(0.0, f32::max)
        })
        .fold(0.0, f32::max)
}

#[test]
fn word_states_are_pooled_pieces_of_the_encoder_output() {
    let device = cpu();
    let tok = tokenizer();
    let c = corpus();
    for pooling in [WordPooling::Mean, WordPooling::First] {
        let t = EncoderTeacher::new(tiny_model(&device), tok.clone(), &device)
            .unwrap()
            .with_pooling(pooling)
            .with_batch_size(8)
            .unwrap();
        let got = t.word_states(&refs(&c)).unwrap();
        assert_eq!(got.len(), c.len());
        for (s, g) in c.iter().zip(&got) {
            assert_eq!(g.hidden, 16);
            assert_matches_reference(g, &reference(t.model(), &tok, &device, s, pooling), 1e-5);
        }
    }
}

#[test]
fn a_word_of_several_pieces_is_their_mean() {
    // "Atlanta's" is `atlanta ' s` (tokens 1..4), "humid" one piece: checked by hand on the
    // encoder's own output.
    let device = cpu();
    let t = teacher(1);
    let s = words("Atlanta's humid");
    let enc = t.tokenizer().encode("Atlanta's humid").unwrap();
    assert_eq!(
        enc[0].tokens,
        ["[CLS]", "atlanta", "'", "s", "humid", "[SEP]"]
    );
    let batch = t.tokenizer().encode_batch(&["Atlanta's humid"]).unwrap();
    let input = BertInput::from_batch(&batch, t.model().config(), &device).unwrap();
    let h = values(
        t.model()
            .forward(&input, &Route::Base)
            .unwrap()
            .last_hidden_state,
    );
    let got = &t.word_states(&[&s]).unwrap()[0];
    for d in 0..16 {
        let mean = (h[16 + d] + h[32 + d] + h[48 + d]) / 3.0;
        assert!((got.row(0)[d] - mean).abs() < 1e-6);
        assert_eq!(got.row(1)[d], h[64 + d]);
    }
    assert_eq!(got.present, [true, true]);
}

#[test]
fn a_word_with_no_token_is_zero_and_absent() {
    let t = teacher(4);
    let c = [
        vec!["zero".to_string(), "\u{200b}".into(), "width".into()],
        vec!["\u{200b}".into(), "\u{0}".into()],
        vec![],
    ];
    let got = t.word_states(&refs(&c)).unwrap();
    assert_eq!(got[0].present, [true, false, true]);
    assert!(got[0].row(1).iter().all(|&x| x == 0.0));
    assert!(got[0].row(0).iter().any(|&x| x != 0.0));
    assert_eq!(got[0].num_present(), 2);
    assert_eq!(got[1].present, [false, false]);
    assert!(got[1].data.iter().all(|&x| x == 0.0));
    assert_eq!((got[2].num_words, got[2].data.len()), (0, 0));
}

#[test]
fn batch_size_does_not_change_results() {
    let device = cpu();
    let model = tiny_model(&device);
    let c = corpus();
    let t1 = EncoderTeacher::new(model, tokenizer(), &device)
        .unwrap()
        .with_batch_size(1)
        .unwrap();
    let one = t1.word_states(&refs(&c)).unwrap();
    let model = t1.model().clone();
    for batch in [3, 8] {
        let t = EncoderTeacher::new(model.clone(), tokenizer(), &device)
            .unwrap()
            .with_batch_size(batch)
            .unwrap();
        let d = max_diff(&one, &t.word_states(&refs(&c)).unwrap());
        assert!(d < 1e-5, "batch {batch}: max diff {d}");
    }
}

#[test]
fn padding_does_not_leak() {
    let t = teacher(8);
    let short = words("Peter Blackburn");
    let long =
        words("a much longer sentence that pads the short one to many more positions than it has");
    let alone = t.word_states(&[&short]).unwrap();
    let together = t.word_states(&[&short, &long]).unwrap();
    let d = max_diff(&alone, &together[..1]);
    assert!(d < 1e-5, "max diff {d}");
}

#[test]
fn layer_choice() {
    let device = cpu();
    let model = tiny_model(&device);
    let c = corpus();
    let last = EncoderTeacher::new(model.clone(), tokenizer(), &device).unwrap();
    let hidden2 = EncoderTeacher::new(model.clone(), tokenizer(), &device)
        .unwrap()
        .with_layer(HiddenLayer::Hidden(2))
        .unwrap();
    let d = max_diff(
        &last.word_states(&refs(&c)).unwrap(),
        &hidden2.word_states(&refs(&c)).unwrap(),
    );
    assert!(d < 1e-6, "Hidden(num_layers) is the last layer: {d}");

    // Hidden(0) is the embedding output.
    let emb = EncoderTeacher::new(model.clone(), tokenizer(), &device)
        .unwrap()
        .with_layer(HiddenLayer::Hidden(0))
        .unwrap();
    let s = words("Atlanta's humid");
    let batch = emb.tokenizer().encode_batch(&["Atlanta's humid"]).unwrap();
    let input = BertInput::from_batch(&batch, model.config(), &device).unwrap();
    let h = values(
        model
            .forward_all(&input, &Route::Base)
            .unwrap()
            .hidden_states
            .remove(0),
    );
    let got = &emb.word_states(&[&s]).unwrap()[0];
    for d in 0..16 {
        assert!((got.row(1)[d] - h[64 + d]).abs() < 1e-6);
    }

    let err = EncoderTeacher::new(model, tokenizer(), &device)
        .unwrap()
        .with_layer(HiddenLayer::Hidden(3))
        .unwrap_err();
    assert!(matches!(err, TrainError::InvalidArgument { .. }), "{err}");
}

#[test]
fn refused_settings() {
    let device = cpu();
    let truncate = tokenizer().with_length_policy(LengthPolicy::Truncate);
    let err = EncoderTeacher::new(tiny_model(&device), truncate, &device).unwrap_err();
    assert!(matches!(err, TrainError::InvalidArgument { .. }), "{err}");

    let ad = device::autodiff(device.clone());
    let err = EncoderTeacher::new(tiny_model(&ad), tokenizer(), &ad).unwrap_err();
    assert!(matches!(err, TrainError::InvalidArgument { .. }), "{err}");

    let mut config = BertConfig::new(30522, 16, 1, 2, 32);
    config.max_position_embeddings = 64;
    let err = EncoderTeacher::new(
        BertModel::init(&config, false, &device),
        tokenizer(),
        &device,
    )
    .unwrap_err();
    assert!(err.to_string().contains("longest input 64"), "{err}");

    let small_vocab = BertModel::init(&BertConfig::new(100, 16, 1, 2, 32), false, &device);
    assert!(EncoderTeacher::new(small_vocab, tokenizer(), &device).is_err());

    let t = teacher(1);
    assert!(t.with_batch_size(0).is_err());
    let t = teacher(1);
    assert!(t.with_route(Route::per_example([None])).is_err());
}

#[test]
fn long_sentence_refused_under_the_error_policy() {
    let device = cpu();
    let tok = tokenizer().with_max_length(8);
    let t = EncoderTeacher::new(tiny_model(&device), tok, &device).unwrap();
    let c = [
        words("short one"),
        words("one two three four five six seven eight"),
    ];
    let err = t.word_states(&refs(&c)).unwrap_err();
    assert!(
        matches!(
            err,
            TrainError::Tokenizer(TokenizerError::TooLong {
                index: 1,
                tokens: 10,
                max: 8
            })
        ),
        "{err}"
    );
}

/// The window rule written again: among the windows holding the word's first piece, prefer
/// one with all its pieces, then the largest distance to the nearer window edge, then the
/// earliest.
#[test]
fn long_sentences_take_each_word_from_its_most_central_window() {
    let device = cpu();
    let tok = tokenizer()
        .with_max_length(10)
        .with_length_policy(LengthPolicy::Window { stride: 4 });
    let t = EncoderTeacher::new(tiny_model(&device), tok.clone(), &device)
        .unwrap()
        .with_batch_size(3)
        .unwrap();
    let s = words(
        "Atlanta's weather was unbelievably humid , said the forecaster on Tuesday in Georgia",
    );
    let text = s.join(" ");
    let mut spans = Vec::new();
    let mut at = 0;
    for w in &s {
        spans.push((at, at + w.len()));
        at += w.len() + 1;
    }
    let windows = tok.encode(&text).unwrap();
    assert!(windows.len() >= 3, "{} windows", windows.len());
    // Per window: its hidden states run alone, and per word (global first piece, local pieces).
    let mut per_window = Vec::new();
    for e in &windows {
        let input = BertInput::from_ids(
            &e.ids,
            &e.type_ids,
            &vec![1; e.len()],
            [1, e.len()],
            t.model().config(),
            &device,
        )
        .unwrap();
        let h = values(
            t.model()
                .forward(&input, &Route::Base)
                .unwrap()
                .last_hidden_state,
        );
        let map = token_words(e, &spans).unwrap();
        per_window.push((h, map));
    }
    let got = &t.word_states(&[&s]).unwrap()[0];
    let mut chosen = Vec::new();
    for w in 0..s.len() {
        // Global positions of each piece: window token t is content token t - 1.
        let mut all = std::collections::BTreeSet::new();
        for (e, (_, map)) in windows.iter().zip(&per_window) {
            for (t, m) in map.iter().enumerate() {
                if *m == Some(w) {
                    all.insert(e.token_start + t - 1);
                }
            }
        }
        let first = *all.iter().next().unwrap();
        let mut best: Option<((bool, usize), usize)> = None;
        for (k, (e, (_, map))) in windows.iter().zip(&per_window).enumerate() {
            let pieces: Vec<usize> = (0..map.len()).filter(|&t| map[t] == Some(w)).collect();
            if pieces.is_empty() || e.token_start + pieces[0] - 1 != first {
                continue;
            }
            let content = e.len() - 2;
            let before = pieces[0] - 1;
            let after = content - pieces[pieces.len() - 1];
            let key = (pieces.len() == all.len(), before.min(after));
            if best.is_none_or(|(b, _)| key > b) {
                best = Some((key, k));
            }
        }
        let k = best.unwrap().1;
        chosen.push(k);
        let (h, map) = &per_window[k];
        let pieces: Vec<usize> = (0..map.len()).filter(|&t| map[t] == Some(w)).collect();
        for d in 0..16 {
            let mean: f64 = pieces
                .iter()
                .map(|&t| f64::from(h[t * 16 + d]))
                .sum::<f64>()
                / pieces.len() as f64;
            assert!(
                (f64::from(got.row(w)[d]) - mean).abs() < 1e-5,
                "word {w} from window {k}"
            );
        }
    }
    assert!(got.present.iter().all(|&p| p));
    assert!(chosen.windows(2).all(|c| c[0] <= c[1]), "{chosen:?}");
    assert!(
        chosen.iter().any(|&k| k > 0) && chosen.contains(&0),
        "{chosen:?}"
    );
}

/// all-MiniLM-L6-v2 itself as the teacher.
#[test]
fn real_minilm_teacher_matches_the_hand_computation() {
    let device = cpu();
    let files = minilm();
    let (model, _) = BertModel::load(&files.dir, &device).unwrap();
    let tok = BertTokenizer::from_file(&files.tokenizer).unwrap();
    let t = EncoderTeacher::new(model, tok.clone(), &device)
        .unwrap()
        .with_description("all-MiniLM-L6-v2");
    assert_eq!(t.hidden_size(), 384);
    assert!(t.description().starts_with("all-MiniLM-L6-v2"));
    let c = corpus();
    let got = t.word_states(&refs(&c[..3])).unwrap();
    for (s, g) in c.iter().zip(&got) {
        assert_matches_reference(
            g,
            &reference(t.model(), &tok, &device, s, WordPooling::Mean),
            1e-4,
        );
    }
}

/// all-mpnet-base-v2, the distillation teacher: its own tokenizer (`<s> … </s>`, pad 1),
/// 768-wide states, an MPNet forward pass.
#[test]
fn real_mpnet_teacher_matches_the_hand_computation() {
    let device = cpu();
    let cache = lora_bert_assets::AssetCache::from_env().expect("cache");
    let files = lora_bert_assets::all_mpnet_base_v2(&cache).expect("all-mpnet-base-v2");
    let (model, _) = MpnetModel::load(&files.dir, &device).unwrap();
    let tok = BertTokenizer::from_file(&files.tokenizer)
        .unwrap()
        .with_max_length(128);
    let t = EncoderTeacher::new(model, tok.clone(), &device)
        .unwrap()
        .with_description("all-mpnet-base-v2");
    assert_eq!(t.hidden_size(), 768);
    assert!(t.description().starts_with("all-mpnet-base-v2"));
    let c = corpus();
    let got = t.word_states(&refs(&c[..3])).unwrap();
    for (s, g) in c.iter().zip(&got) {
        let want = reference_with(&tok, s, WordPooling::Mean, |batch| {
            let input = t.model().input(batch, &device).expect("input");
            let out = t.model().forward(&input).expect("forward");
            (values(out.last_hidden_state), 768)
        });
        assert_matches_reference(g, &want, 1e-4);
    }
    // An adapted route means nothing to MPNet.
    let err = t
        .with_route(Route::Group(0))
        .and_then(|t| t.word_states(&refs(&c[..1])))
        .unwrap_err();
    assert!(
        matches!(err, TrainError::Input(InputError::Route(_))),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------
// The cache.

/// Counts the calls to the teacher; fails from call `fail_at` on.
struct Counting<'a> {
    inner: &'a dyn Teacher,
    calls: AtomicUsize,
    fail_at: usize,
}

impl<'a> Counting<'a> {
    fn new(inner: &'a dyn Teacher) -> Self {
        Counting {
            inner,
            calls: AtomicUsize::new(0),
            fail_at: usize::MAX,
        }
    }
}

impl Teacher for Counting<'_> {
    fn hidden_size(&self) -> usize {
        self.inner.hidden_size()
    }
    fn description(&self) -> String {
        self.inner.description()
    }
    fn word_states(&self, sentences: &[&[String]]) -> Result<Vec<WordStates>> {
        let calls = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        if calls > self.fail_at {
            return Err(TrainError::InvalidArgument {
                what: "test",
                message: "interrupted".into(),
            });
        }
        self.inner.word_states(sentences)
    }
}

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

/// Flips a byte of the `states` data of a shard file (found through its header).
fn corrupt_states(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let start = header["states"]["data_offsets"][0].as_u64().unwrap() as usize;
    bytes[8 + n + start + 5] ^= 0x55;
    std::fs::write(path, &bytes).unwrap();
}

fn opts(shard_size: usize, dtype: CacheDtype) -> CacheOptions {
    CacheOptions { shard_size, dtype }
}

/// The corpus with a duplicate sentence.
fn cache_corpus() -> Vec<Vec<String>> {
    let mut c = corpus();
    c.push(c[2].clone());
    c
}

#[test]
fn cache_round_trip_f32_is_exact() {
    // Batch size 1: every row runs alone, so the cache's per-shard calls and the direct call
    // compute bit-identical values.
    let t = teacher(1);
    let c = cache_corpus();
    let dir = tempfile::tempdir().unwrap();
    let mut seen = Vec::new();
    let cache = TeacherCache::build(&t, &refs(&c), dir.path(), &opts(3, CacheDtype::F32), |p| {
        seen.push(*p)
    })
    .unwrap();
    assert_eq!(seen.len(), 3);
    assert_eq!(
        seen[2],
        BuildProgress {
            shard: 2,
            num_shards: 3,
            sentences_done: 9,
            num_sentences: 9,
            reused: false
        }
    );
    assert_eq!(cache.num_shards(), 3);
    assert_eq!(cache.num_sentences(), 9);
    assert_eq!(cache.num_words(), c.iter().map(Vec::len).sum::<usize>());
    assert_eq!(cache.hidden_size(), 16);
    assert_eq!(cache.description(), t.description());
    let direct = t.word_states(&refs(&c)).unwrap();
    // Any order, any subset.
    let mut order: Vec<&[String]> = refs(&c);
    order.reverse();
    let mut from_cache = cache.word_states(&order).unwrap();
    from_cache.reverse();
    assert_eq!(from_cache, direct);
    let reopened = TeacherCache::open(dir.path()).unwrap();
    assert_eq!(reopened.word_states(&refs(&c)).unwrap(), direct);
    reopened.verify().unwrap();
    assert!(reopened.contains(&c[0]) && !reopened.contains(&words("never seen")));
    assert_eq!(
        files(dir.path()).keys().cloned().collect::<Vec<_>>(),
        [
            "index.json",
            "shard-00000.safetensors",
            "shard-00001.safetensors",
            "shard-00002.safetensors"
        ]
    );
}

#[test]
fn cache_round_trip_f16_within_its_bound() {
    let t = teacher(8);
    let c = cache_corpus();
    let dir = tempfile::tempdir().unwrap();
    let cache =
        TeacherCache::build(&t, &refs(&c), dir.path(), &opts(4, CacheDtype::F16), |_| {}).unwrap();
    assert_eq!(cache.dtype(), CacheDtype::F16);
    let direct = t.word_states(&refs(&c)).unwrap();
    let got = cache.word_states(&refs(&c)).unwrap();
    let mut max_rel = 0f32;
    for (a, b) in direct.iter().zip(&got) {
        assert_eq!(a.present, b.present);
        for (x, y) in a.data.iter().zip(&b.data) {
            // The documented bound, plus the batch-size noise of the teacher itself (1e-5).
            let bound = (x.abs() * 2f32.powi(-11)).max(2f32.powi(-25)) + 1e-5;
            assert!((x - y).abs() <= bound, "{x} came back as {y}");
            if x.abs() > 1e-3 {
                max_rel = max_rel.max(((x - y) / x).abs());
            }
        }
    }
    assert!(max_rel > 0.0, "f16 does round");
    // F16 states take half the bytes of F32 ones.
    let dir32 = tempfile::tempdir().unwrap();
    TeacherCache::build(
        &t,
        &refs(&c),
        dir32.path(),
        &opts(4, CacheDtype::F32),
        |_| {},
    )
    .unwrap();
    let size = |d: &Path| {
        let f = files(d);
        f.get("shard-00000.safetensors").unwrap().len()
    };
    // Two bytes less per value (headers differ by a few bytes at most).
    let values = c[..4].iter().map(Vec::len).sum::<usize>() * 16;
    let saved = size(dir32.path()) - size(dir.path());
    assert!(
        saved.abs_diff(2 * values) <= 16,
        "{saved} bytes saved for {values} values"
    );
}

#[test]
fn build_resumes_and_keeps_complete_shards() {
    let t = teacher(2);
    let c = cache_corpus();
    let dir = tempfile::tempdir().unwrap();
    let o = opts(4, CacheDtype::F32);
    TeacherCache::build(&t, &refs(&c), dir.path(), &o, |_| {}).unwrap();
    let before = files(dir.path());

    // Complete: nothing recomputed.
    let counting = Counting::new(&t);
    let mut reused = Vec::new();
    TeacherCache::build(&counting, &refs(&c), dir.path(), &o, |p| {
        reused.push(p.reused)
    })
    .unwrap();
    assert_eq!(counting.calls.load(Ordering::Relaxed), 0);
    assert_eq!(reused, [true, true, true]);
    assert_eq!(files(dir.path()), before);

    // One shard deleted: only it is recomputed, and the files are identical.
    std::fs::remove_file(dir.path().join("shard-00001.safetensors")).unwrap();
    let counting = Counting::new(&t);
    let mut reused = Vec::new();
    TeacherCache::build(&counting, &refs(&c), dir.path(), &o, |p| {
        reused.push(p.reused)
    })
    .unwrap();
    assert_eq!(counting.calls.load(Ordering::Relaxed), 1);
    assert_eq!(reused, [true, false, true]);
    assert_eq!(files(dir.path()), before);

    // A corrupted shard (states bytes changed) is caught by its checksum and rewritten.
    corrupt_states(&dir.path().join("shard-00002.safetensors"));
    let counting = Counting::new(&t);
    TeacherCache::build(&counting, &refs(&c), dir.path(), &o, |_| {}).unwrap();
    assert_eq!(counting.calls.load(Ordering::Relaxed), 1);
    assert_eq!(files(dir.path()), before);
}

#[test]
fn an_interrupted_build_has_no_index_and_resumes() {
    let t = teacher(2);
    let c = cache_corpus();
    let full = tempfile::tempdir().unwrap();
    let o = opts(3, CacheDtype::F32);
    TeacherCache::build(&t, &refs(&c), full.path(), &o, |_| {}).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut failing = Counting::new(&t);
    failing.fail_at = 1;
    let err = TeacherCache::build(&failing, &refs(&c), dir.path(), &o, |_| {}).unwrap_err();
    assert!(err.to_string().contains("interrupted"), "{err}");
    let left = files(dir.path());
    assert_eq!(left.keys().collect::<Vec<_>>(), ["shard-00000.safetensors"]);
    let err = TeacherCache::open(dir.path()).unwrap_err();
    match &err {
        TrainError::Format { path, .. } => assert!(path.ends_with("index.json"), "{err}"),
        other => panic!("{other}"),
    }

    let counting = Counting::new(&t);
    TeacherCache::build(&counting, &refs(&c), dir.path(), &o, |_| {}).unwrap();
    assert_eq!(counting.calls.load(Ordering::Relaxed), 2);
    assert_eq!(files(dir.path()), files(full.path()));
}

#[test]
fn a_cache_for_another_corpus_or_teacher_is_refused() {
    let t = teacher(4);
    let c = cache_corpus();
    let dir = tempfile::tempdir().unwrap();
    let o = opts(4, CacheDtype::F32);
    let cache = TeacherCache::build(&t, &refs(&c), dir.path(), &o, |_| {}).unwrap();

    // A sentence it does not hold (one word changed), named with its index.
    let mut other = c[1].clone();
    other[0] = "UN".into();
    let err = cache.word_states(&[&c[0], &other]).unwrap_err();
    match &err {
        TrainError::NotInCache {
            index,
            sentence,
            path,
        } => {
            assert_eq!(*index, 1);
            assert!(sentence.contains("UN rejects"), "{sentence}");
            assert_eq!(path, dir.path());
        }
        e => panic!("{e}"),
    }

    // Building another corpus, another teacher or another layout into the directory.
    let index_err = |err: TrainError, what: &str| match err {
        TrainError::Format { path, message } => {
            assert!(path.ends_with("index.json"));
            assert!(message.contains(what), "{message}");
        }
        e => panic!("{e}"),
    };
    let mut c2 = c.clone();
    c2[3] = words("do stop");
    index_err(
        TeacherCache::build(&t, &refs(&c2), dir.path(), &o, |_| {}).unwrap_err(),
        "corpus",
    );
    index_err(
        TeacherCache::build(&t, &refs(&c[..5]), dir.path(), &o, |_| {}).unwrap_err(),
        "corpus",
    );
    let renamed = teacher(4).with_description("another teacher");
    index_err(
        TeacherCache::build(&renamed, &refs(&c), dir.path(), &o, |_| {}).unwrap_err(),
        "teacher",
    );
    index_err(
        TeacherCache::build(&t, &refs(&c), dir.path(), &opts(4, CacheDtype::F16), |_| {})
            .unwrap_err(),
        "dtype",
    );
    // The cache is still intact.
    TeacherCache::open(dir.path()).unwrap().verify().unwrap();
}

fn format_path(err: TrainError) -> PathBuf {
    match err {
        TrainError::Format { path, .. } => path,
        e => panic!("expected a format error, got {e}"),
    }
}

#[test]
fn corrupt_or_missing_files_are_typed_errors_naming_the_file() {
    let t = teacher(4);
    let c = cache_corpus();
    let o = opts(4, CacheDtype::F32);
    let fresh = || {
        let dir = tempfile::tempdir().unwrap();
        TeacherCache::build(&t, &refs(&c), dir.path(), &o, |_| {}).unwrap();
        dir
    };
    let shard = |d: &Path, k: usize| d.join(format!("shard-{k:05}.safetensors"));

    // Missing index.
    let dir = fresh();
    std::fs::remove_file(dir.path().join("index.json")).unwrap();
    assert!(format_path(TeacherCache::open(dir.path()).unwrap_err()).ends_with("index.json"));

    // Malformed index.
    let dir = fresh();
    std::fs::write(dir.path().join("index.json"), "{ not json").unwrap();
    assert!(format_path(TeacherCache::open(dir.path()).unwrap_err()).ends_with("index.json"));

    // Truncated shard.
    let dir = fresh();
    let bytes = std::fs::read(shard(dir.path(), 1)).unwrap();
    std::fs::write(shard(dir.path(), 1), &bytes[..bytes.len() - 7]).unwrap();
    assert_eq!(
        format_path(TeacherCache::open(dir.path()).unwrap_err()),
        shard(dir.path(), 1)
    );

    // Garbage header.
    let dir = fresh();
    let mut bytes = std::fs::read(shard(dir.path(), 0)).unwrap();
    bytes[8..20].copy_from_slice(b"garbage!!!!!");
    std::fs::write(shard(dir.path(), 0), &bytes).unwrap();
    assert_eq!(
        format_path(TeacherCache::open(dir.path()).unwrap_err()),
        shard(dir.path(), 0)
    );

    // Not even a header.
    let dir = fresh();
    std::fs::write(shard(dir.path(), 2), b"abc").unwrap();
    assert_eq!(
        format_path(TeacherCache::open(dir.path()).unwrap_err()),
        shard(dir.path(), 2)
    );

    // Corrupted states: open does not read them, verify catches the checksum.
    let dir = fresh();
    corrupt_states(&shard(dir.path(), 0));
    let cache = TeacherCache::open(dir.path()).unwrap();
    assert_eq!(
        format_path(cache.verify().unwrap_err()),
        shard(dir.path(), 0)
    );

    // Missing shard: an I/O error naming it.
    let dir = fresh();
    std::fs::remove_file(shard(dir.path(), 1)).unwrap();
    match TeacherCache::open(dir.path()).unwrap_err() {
        TrainError::Io { path, .. } => assert_eq!(path, shard(dir.path(), 1)),
        e => panic!("{e}"),
    }

    // Wrong hidden size: the index says 17, the shards hold 16.
    let dir = fresh();
    let index = dir.path().join("index.json");
    let text = std::fs::read_to_string(&index).unwrap();
    std::fs::write(
        &index,
        text.replace("\"hidden_size\": 16", "\"hidden_size\": 17"),
    )
    .unwrap();
    let err = TeacherCache::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("hidden size"), "{err}");
    assert_eq!(format_path(err), shard(dir.path(), 0));

    // A shard of another cache swapped in (other sentences).
    let dir = fresh();
    std::fs::copy(shard(dir.path(), 0), shard(dir.path(), 1)).unwrap();
    assert_eq!(
        format_path(TeacherCache::open(dir.path()).unwrap_err()),
        shard(dir.path(), 1)
    );
}

/// A teacher that returns whatever it was given.
struct Fixed(Vec<WordStates>, usize);

impl Teacher for Fixed {
    fn hidden_size(&self) -> usize {
        self.1
    }
    fn description(&self) -> String {
        "fixed".into()
    }
    fn word_states(&self, _: &[&[String]]) -> Result<Vec<WordStates>> {
        Ok(self.0.clone())
    }
}

#[test]
fn bad_teacher_output_is_refused() {
    let s = words("a b");
    let dir = tempfile::tempdir().unwrap();
    let build = |t: &Fixed, dtype| {
        TeacherCache::build(t, &[&s], dir.path(), &opts(2, dtype), |_| {}).unwrap_err()
    };
    // Wrong hidden size.
    let err = build(&Fixed(vec![WordStates::zeros(2, 3)], 4), CacheDtype::F32);
    assert!(matches!(err, TrainError::Shape { .. }), "{err}");
    // Wrong number of words.
    let err = build(&Fixed(vec![WordStates::zeros(3, 4)], 4), CacheDtype::F32);
    assert!(matches!(err, TrainError::Shape { .. }), "{err}");
    // Wrong number of sentences.
    let err = build(&Fixed(vec![], 4), CacheDtype::F32);
    assert!(matches!(err, TrainError::Shape { .. }), "{err}");
    // Non-finite, and beyond f16.
    let mut nan = WordStates::zeros(2, 1);
    nan.data[1] = f32::NAN;
    let err = build(&Fixed(vec![nan], 1), CacheDtype::F32);
    assert!(matches!(err, TrainError::InvalidArgument { .. }), "{err}");
    let mut big = WordStates::zeros(2, 1);
    big.data[0] = 1e6;
    let err = build(&Fixed(vec![big.clone()], 1), CacheDtype::F16);
    assert!(err.to_string().contains("f16"), "{err}");
    // ... which F32 stores.
    let cache = TeacherCache::build(
        &Fixed(vec![big.clone()], 1),
        &[&s],
        dir.path(),
        &opts(2, CacheDtype::F32),
        |_| {},
    )
    .unwrap();
    assert_eq!(cache.word_states(&[&s]).unwrap(), [big]);
    let err = TeacherCache::build(
        &Fixed(vec![], 1),
        &[&s],
        dir.path(),
        &opts(0, CacheDtype::F32),
        |_| {},
    )
    .unwrap_err();
    assert!(matches!(err, TrainError::InvalidArgument { .. }), "{err}");
}

#[test]
fn an_empty_corpus_is_an_empty_cache() {
    let t = teacher(1);
    let dir = tempfile::tempdir().unwrap();
    let cache = TeacherCache::build(&t, &[], dir.path(), &CacheOptions::default(), |_| {}).unwrap();
    assert_eq!((cache.num_sentences(), cache.num_shards()), (0, 0));
    assert!(matches!(
        cache.word_states(&[&words("x")]).unwrap_err(),
        TrainError::NotInCache { .. }
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Whatever the words, one state per word, and a word is present exactly when the
    /// tokenizer gives it a token on its own (BERT splits at whitespace and punctuation,
    /// so a word's pieces do not depend on its neighbours).
    #[test]
    fn one_state_per_word_and_presence_follows_the_tokenizer(
        sentences in prop::collection::vec(
            prop::collection::vec(
                prop::sample::select(vec![
                    "the", "Atlanta's", "x", "\u{200b}", "!!", "naïve", "\u{301}", "data-set", "42", "🙂",
                ]),
                0..8,
            ),
            1..4,
        )
    ) {
        let t = teacher(3);
        let c: Vec<Vec<String>> = sentences
            .iter()
            .map(|s| s.iter().map(|w| w.to_string()).collect())
            .collect();
        let got = t.word_states(&refs(&c)).unwrap();
        let tok = t.tokenizer();
        for (s, g) in c.iter().zip(&got) {
            g.check().unwrap();
            prop_assert_eq!(g.num_words, s.len());
            for (w, word) in s.iter().enumerate() {
                let alone = tok.encode(word).unwrap()[0].len() > 2;
                prop_assert_eq!(g.present[w], alone, "word {:?}", word);
                prop_assert_eq!(g.row(w).iter().any(|&x| x != 0.0), alone);
            }
        }
    }
}
