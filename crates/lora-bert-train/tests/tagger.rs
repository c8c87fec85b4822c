//! The tagger teacher: it learns a tagging task, a teacher over it gives each word's
//! first-piece logits, and a saved tagger loads back exactly (and refuses other weights).

use burn::module::Module;
use lora_bert_data::align::LabelAlignment;
use lora_bert_data::token::encode_tagged;
use lora_bert_data::{LabelVocab, TaggedSentence};
use lora_bert_encoder::device::{self, Backend, Device};
use lora_bert_encoder::tokenizer::{BertTokenizer, LengthPolicy};
use lora_bert_encoder::{BertConfig, BertModel};
use lora_bert_train::TrainConfig;
use lora_bert_train::TrainError;
use lora_bert_train::finetune::TokenEvalOptions;
use lora_bert_train::teacher::{
    EncoderTeacher, TAGGER_REPORT, TAGGER_WEIGHTS, Tagger, TaggerConfig, TaggerData, Teacher,
    WordPooling, evaluate_tagger, load_tagger, save_tagger, tagger_logits, train_and_save_tagger,
    train_tagger,
};

/// The backend's random generator is global: tests that seed it and then draw from it run one
/// at a time, or a test running beside them draws in between.
static BACKEND_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    BACKEND_RNG.lock().unwrap_or_else(|e| e.into_inner())
}

fn cpu() -> Device {
    device::device(Backend::default_cpu().expect("a CPU backend")).expect("cpu device")
}

fn tokenizer() -> BertTokenizer {
    let cache = lora_bert_assets::AssetCache::from_env().expect("asset cache");
    let files = lora_bert_assets::all_minilm_l6_v2(&cache).expect("all-MiniLM-L6-v2");
    BertTokenizer::from_file(files.tokenizer)
        .expect("tokenizer")
        .with_max_length(12)
        .with_length_policy(LengthPolicy::Window { stride: 2 })
}

/// A tiny random BERT with MiniLM's vocabulary.
fn tiny(device: &Device, seed: u64) -> BertModel {
    device.seed(seed);
    BertModel::init(&BertConfig::new(30522, 32, 2, 2, 64), false, device)
}

const CITIES: [&str; 4] = ["paris", "london", "berlin", "madrid"];
const FILLER: [&str; 8] = ["we", "went", "to", "and", "then", "saw", "the", "sea"];

/// Sentences of 3–14 words (some longer than one window) where the cities are `B-LOC`.
fn sentences(n: usize, seed: u64) -> Vec<TaggedSentence> {
    let mut z = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move |m: usize| {
        z ^= z << 13;
        z ^= z >> 7;
        z ^= z << 17;
        (z % m as u64) as usize
    };
    (0..n)
        .map(|_| {
            let len = 3 + next(12);
            let mut tokens = Vec::new();
            let mut tags = Vec::new();
            for _ in 0..len {
                if next(3) == 0 {
                    tokens.push(CITIES[next(CITIES.len())].to_string());
                    tags.push("B-LOC".to_string());
                } else {
                    tokens.push(FILLER[next(FILLER.len())].to_string());
                    tags.push("O".to_string());
                }
            }
            TaggedSentence { tokens, tags }
        })
        .collect()
}

fn vocab() -> LabelVocab {
    LabelVocab::from_tags(["O", "B-LOC"]).unwrap()
}

fn train_config(steps: usize) -> TaggerConfig {
    let mut train = TrainConfig::new(steps);
    train.learning_rate = 3e-3;
    train.eval_every = Some(steps);
    let mut config = TaggerConfig::new(train, 0);
    config.batch_size = 8;
    config.bucket = None;
    config
}

#[test]
fn a_tagger_learns_to_tag_and_its_teacher_gives_first_piece_logits() {
    let _rng = serial();
    let device = cpu();
    let training = device::autodiff(device.clone());
    let tok = tokenizer();
    let vocab = vocab();
    let (train, dev) = (sentences(96, 1), sentences(24, 2));
    let encode = |s: &[TaggedSentence]| {
        encode_tagged(&tok, s, &vocab, LabelAlignment::FirstSubword).unwrap()
    };
    let (train_x, dev_x) = (encode(&train), encode(&dev));
    assert!(
        dev_x.iter().any(|e| e.num_windows > 1),
        "some sentence is windowed"
    );

    let options = TokenEvalOptions::new(0);
    let untrained = Tagger::new(tiny(&device, 7), 2, 0.1, &device).unwrap();
    let before = evaluate_tagger(&untrained, &dev_x, &dev, &vocab, &options).unwrap();

    let (tagger, fit) = train_tagger(
        tiny(&training, 7),
        &train_x,
        (&dev_x, &dev),
        &vocab,
        &train_config(80),
    )
    .unwrap();
    let tagger = tagger.valid();
    let after = evaluate_tagger(&tagger, &dev_x, &dev, &vocab, &options).unwrap();
    let f1 = after.averages.micro_avg.f1;
    assert!(
        f1 > 0.95 && f1 > before.averages.micro_avg.f1 + 0.3,
        "dev entity F1 {:.3} → {f1:.3}",
        before.averages.micro_avg.f1
    );
    assert_eq!(
        fit.best.map(|b| b.0),
        Some(f1),
        "the best step's F1 is the model's"
    );
    let losses = &fit.losses;
    assert!(losses[losses.len() - 1] < losses[0] * 0.5, "{losses:?}");

    // An encoder teacher over the tagger gives each word its first piece's logits.
    let teacher = EncoderTeacher::new(tagger.clone(), tokenizer(), &device)
        .unwrap()
        .with_pooling(WordPooling::First);
    assert_eq!(teacher.hidden_size(), 2);
    let words: Vec<&[String]> = dev.iter().map(|s| s.tokens.as_slice()).collect();
    let states = teacher.word_states(&words).unwrap();
    let logits = tagger_logits(&tagger, &dev_x, &options).unwrap();
    let mut checked = 0;
    // Sentences in one window (how overlapping windows are joined is the teacher's own
    // business, tested with the encoder teacher).
    for (e, rows) in dev_x
        .iter()
        .zip(&logits)
        .filter(|(e, _)| e.num_windows == 1)
    {
        for (t, w) in e.token_word.iter().enumerate() {
            let Some(w) = *w else { continue };
            if e.token_word[..t].contains(&Some(w)) {
                continue; // not the word's first piece
            }
            let got = states[e.sentence].row(w);
            let want = &rows[t * 2..t * 2 + 2];
            let diff = got
                .iter()
                .zip(want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(
                diff < 1e-4,
                "sentence {} word {w}: {got:?} vs {want:?}",
                e.sentence
            );
            checked += 1;
        }
    }
    assert!(checked > 40, "{checked} words checked");
}

#[test]
fn a_saved_tagger_loads_back_exactly_and_refuses_other_weights() {
    let _rng = serial();
    let device = cpu();
    let tok = tokenizer();
    let vocab = vocab();
    let dev = sentences(8, 3);
    let dev_x = encode_tagged(&tok, &dev, &vocab, LabelAlignment::FirstSubword).unwrap();
    let options = TokenEvalOptions::new(0);
    let tagger = Tagger::new(tiny(&device, 11), 2, 0.0, &device).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let notes = serde_json::json!({"test": true});
    let manifest = save_tagger(&tagger, dir.path(), "tiny", &vocab, notes).unwrap();
    assert_eq!(manifest.labels, ["O", "B-LOC"]);
    assert!(manifest.description().contains("labels [O B-LOC]"));

    // Onto a model with other random weights: the saved ones replace them.
    let (loaded, labels, again) = load_tagger(dir.path(), tiny(&device, 12)).unwrap();
    assert_eq!(labels.labels(), vocab.labels());
    assert_eq!(again, manifest);
    let a = tagger_logits(&tagger, &dev_x, &options).unwrap();
    let b = tagger_logits(&loaded, &dev_x, &options).unwrap();
    assert_eq!(a, b);

    // Labels that do not fit the head are refused before anything is written.
    let three = LabelVocab::from_tags(["O", "B-LOC", "I-LOC"]).unwrap();
    let other = tempfile::tempdir().unwrap();
    let err = save_tagger(
        &tagger,
        other.path(),
        "tiny",
        &three,
        serde_json::Value::Null,
    );
    assert!(
        matches!(err, Err(TrainError::InvalidArgument { .. })),
        "{err:?}"
    );
    assert!(!other.path().join(TAGGER_WEIGHTS).exists());

    // Weights that are not the manifest's (a retrained or damaged file) are refused.
    let weights = dir.path().join(TAGGER_WEIGHTS);
    let mut bytes = std::fs::read(&weights).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&weights, bytes).unwrap();
    match load_tagger(dir.path(), tiny(&device, 12)) {
        Err(TrainError::Format { path, message }) => {
            assert_eq!(path, weights);
            assert!(message.contains("sha256"), "{message}");
        }
        other => panic!("expected a format error, got {:?}", other.map(|_| ())),
    }
}

/// A teacher cache records the tagger it was made by (labels and weights): building it again
/// with another tagger is refused, never silently reused.
#[test]
fn a_cache_made_by_another_tagger_is_refused() {
    let _rng = serial();
    use lora_bert_train::teacher::{CacheOptions, TeacherCache};

    let device = cpu();
    let corpus = sentences(6, 4);
    let words: Vec<&[String]> = corpus.iter().map(|s| s.tokens.as_slice()).collect();
    let cache_dir = tempfile::tempdir().unwrap();
    let save = |seed: u64, labels: &[&str]| {
        let vocab = LabelVocab::from_tags(labels.iter().copied()).unwrap();
        let tagger = Tagger::new(tiny(&device, seed), vocab.len(), 0.0, &device).unwrap();
        let dir = tempfile::tempdir().unwrap();
        save_tagger(&tagger, dir.path(), "tiny", &vocab, serde_json::Value::Null).unwrap();
        dir
    };
    // A saved tagger, loaded as a teacher would be, builds (or reuses) the cache.
    let build = |dir: &std::path::Path| {
        let (tagger, _, manifest) = load_tagger(dir, tiny(&device, 99)).unwrap();
        let teacher = EncoderTeacher::new(tagger, tokenizer(), &device)
            .unwrap()
            .with_pooling(WordPooling::First)
            .with_description(manifest.description());
        TeacherCache::build(
            &teacher,
            &words,
            cache_dir.path(),
            &CacheOptions::default(),
            |_| {},
        )
    };
    let first = save(21, &["O", "B-LOC"]);
    let cache = build(first.path()).unwrap();
    assert_eq!(cache.num_sentences(), 6);
    // The same tagger again: the cache is reused.
    build(first.path()).unwrap();
    // Other labels, or the same labels with other weights: refused.
    for other in [save(21, &["O", "B-PER"]), save(22, &["O", "B-LOC"])] {
        match build(other.path()) {
            Err(TrainError::Format { message, .. }) => {
                assert!(message.contains("teacher"), "{message}");
            }
            other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
        }
    }
}

#[test]
fn train_and_save_records_the_test_score_of_the_tagger_it_saves() {
    let _rng = serial();
    let device = cpu();
    let training = device::autodiff(device.clone());
    let tok = tokenizer();
    let (train, dev, test) = (sentences(48, 11), sentences(12, 12), sentences(16, 13));
    let dir = tempfile::tempdir().unwrap();
    let data = TaggerData {
        train: &train,
        dev: &dev,
        test: &test,
        about: "cities",
    };
    let run = train_and_save_tagger(
        tiny(&training, 5),
        "tiny",
        &tok,
        data,
        &train_config(6),
        dir.path(),
    )
    .unwrap();
    assert_eq!(run.fit.steps, 6);
    assert_eq!(run.manifest.labels, vocab().labels());
    let notes = &run.manifest.notes;
    assert_eq!(notes["test_sentences"], 16);
    assert_eq!(notes["steps"], 6);
    assert_eq!(notes["data"], "cities");
    assert_eq!(
        notes["test_entity_f1"].as_f64().unwrap(),
        run.report.averages.micro_avg.f1
    );
    // The report on disk is the one returned, and it scores the saved weights: a tagger loaded
    // back from the folder gets the same test report.
    let on_disk: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(TAGGER_REPORT)).unwrap()).unwrap();
    assert_eq!(on_disk, serde_json::to_value(&run.report).unwrap());
    let (tagger, labels, _) = load_tagger(dir.path(), tiny(&device, 99)).unwrap();
    let encode = |s: &[TaggedSentence]| {
        encode_tagged(&tok, s, &labels, LabelAlignment::FirstSubword).unwrap()
    };
    let again = evaluate_tagger(
        &tagger,
        &encode(&test),
        &test,
        &labels,
        &TokenEvalOptions::new(0).with_batch_size(64),
    )
    .unwrap();
    assert_eq!(again, run.report);
}

#[test]
fn a_tag_only_the_test_split_has_is_a_label_and_its_entity_is_missed() {
    let _rng = serial();
    let training = device::autodiff(cpu());
    let train = sentences(8, 1);
    let mut test = sentences(2, 2);
    test[0].tags[0] = "B-PER".into();
    let dir = tempfile::tempdir().unwrap();
    let data = TaggerData {
        train: &train,
        dev: &train,
        test: &test,
        about: "cities",
    };
    let run = train_and_save_tagger(
        tiny(&training, 5),
        "tiny",
        &tokenizer(),
        data,
        &train_config(1),
        dir.path(),
    )
    .unwrap();
    assert_eq!(run.manifest.labels, ["O", "B-LOC", "B-PER"]);
    let per = &run.report.per_type["PER"];
    assert_eq!((per.support, per.recall), (1, 0.0), "{per:?}");
}

fn host(t: burn::tensor::Tensor<2>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The head trains at `head_lr`, the encoder at the run's rate: with the encoder at 1e-12 the
/// encoder stays put, and the head moves only when its own rate is set.
#[test]
fn a_tagger_head_trains_at_its_own_rate() {
    let _rng = serial();
    let training = device::autodiff(cpu());
    let tok = tokenizer();
    let vocab = vocab();
    let train = sentences(32, 3);
    let x = encode_tagged(&tok, &train, &vocab, LabelAlignment::FirstSubword).unwrap();
    let run = |head_lr: Option<f64>| {
        let mut config = train_config(4);
        config.train.learning_rate = 1e-12;
        config.train.weight_decay = 0.0;
        config.train.eval_every = None;
        config.head_lr = head_lr;
        let model = tiny(&training, 7);
        let start = host(model.embeddings.word_embeddings.val());
        let (tagger, _) = train_tagger(model, &x, (&x, &train), &vocab, &config).unwrap();
        let encoder = host(tagger.encoder.embeddings.word_embeddings.val());
        (
            max_diff(&start, &encoder),
            host(tagger.head.classifier.weight.val()),
        )
    };
    let (encoder_moved, slow_head) = run(None);
    let (encoder_moved_too, fast_head) = run(Some(1e-2));
    assert!(encoder_moved < 1e-6, "the encoder moved by {encoder_moved}");
    assert!(
        encoder_moved_too < 1e-6,
        "the encoder moved by {encoder_moved_too}"
    );
    // Both heads start from the same seeded values; 4 Adam steps at 1e-2 move an entry by up
    // to 4e-2, at 1e-12 by nothing measurable.
    let apart = max_diff(&slow_head, &fast_head);
    assert!(
        apart > 5e-3,
        "the head at 1e-2 is only {apart} from the head at 1e-12"
    );
}
