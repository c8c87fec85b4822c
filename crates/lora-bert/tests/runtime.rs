//! The multi-app runtime on a tiny random BERT: a mixed batch gives each row what its app
//! gives alone, apps come and go while other threads serve, memory is reported exactly, and
//! bad input is a typed error.

use std::path::Path;
use std::sync::{Arc, Mutex};

use burn::tensor::Tensor;
use lora_bert::adapters::{AdaptedModel, Ia3, Ia3Config, Layers, Lora, LoraConfig, Targets};
use lora_bert::apps::{AppError, entity_spans};
use lora_bert::data::align::LabelAlignment;
use lora_bert::data::scheme::{Span, encode};
use lora_bert::data::token::{TokenExample, encode_tagged};
use lora_bert::data::{LabelVocab, Scheme, TaggedSentence};
use lora_bert::encoder::tokenizer::{BertTokenizer, LengthPolicy};
use lora_bert::metrics::chunks::chunks_of;
use lora_bert::pipelines::{Aggregation, ClassifierPipeline, NerPipeline};
use lora_bert::runtime::{Logits, Row, Runtime};
use lora_bert::train::finetune::{
    TokenEvalOptions, entity_report, finetune_tokens, predict_token_logits, stitch_word_ids,
    word_tags,
};
use lora_bert::train::{
    AppSetup, FineTuneConfig, FineTuneMode, SequenceClassificationHeadConfig, TextClassifier,
    TokenClassificationHeadConfig, TokenClassifier, TrainConfig,
};
use lora_bert::{Backend, BertConfig, BertInput, BertModel, Device, Error, device};
use safetensors::SafeTensors;
use safetensors::tensor::TensorView;

fn cpu() -> Device {
    device::device(Backend::default_cpu().expect("a CPU backend")).expect("cpu device")
}

fn config(hidden: usize) -> BertConfig {
    serde_json::from_str(&format!(
        r#"{{"vocab_size": 50, "hidden_size": {hidden}, "num_hidden_layers": 2,
            "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 32,
            "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}}"#
    ))
    .expect("tiny config")
}

/// The same random backbone at every call of this process.
///
/// burn draws from one process-wide generator, lazily (on a parameter's first use), and the
/// tests run on parallel threads: seeding before `init` would not give every call the same
/// weights. Clones share their parameters' lazy initialisation, so every caller sees the same
/// values.
fn backbone(hidden: usize, device: &Device) -> BertModel {
    static BACKBONES: Mutex<Vec<(usize, BertModel)>> = Mutex::new(Vec::new());
    let mut cache = BACKBONES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, model)) = cache.iter().find(|(h, _)| *h == hidden) {
        return model.clone();
    }
    device.seed(7);
    let model = BertModel::init(&config(hidden), false, device);
    cache.push((hidden, model.clone()));
    model
}

/// `n` labels; five are a BIO scheme with two types.
fn labels(n: usize) -> LabelVocab {
    let names: Vec<String> = if n == 5 {
        ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
            .map(String::from)
            .to_vec()
    } else {
        (0..n).map(|i| format!("L{i}")).collect()
    };
    LabelVocab::new(names).unwrap()
}

#[derive(Clone, Copy)]
enum Kind {
    Tokens,
    Text,
}

/// Saves an app (LoRA r4 on query/value + head) into `dir`, its adapter weights replaced by
/// seeded values in [-1, 1): a fresh group's B is 0, which would hide a routing mistake, and
/// small values can leave a group's effect on the logits near the comparison tolerance.
fn save_app(
    dir: &Path,
    kind: Kind,
    num_labels: usize,
    seed: u32,
    hidden: usize,
    mode: FineTuneMode,
) {
    let device = cpu();
    let model = AdaptedModel::<Lora>::new(backbone(hidden, &device));
    let lora = LoraConfig::new(4, Targets::new(["query", "value"]).layers(Layers::All));
    let setup = AppSetup::new("task", mode).with_lora(lora);
    device.seed(u64::from(seed));
    match kind {
        Kind::Tokens => TokenClassifier::new(
            model,
            &setup,
            &TokenClassificationHeadConfig::new(hidden, num_labels),
        )
        .unwrap()
        .save(dir, &labels(num_labels))
        .unwrap(),
        Kind::Text => TextClassifier::new(
            model,
            &setup,
            &SequenceClassificationHeadConfig::new(hidden, num_labels),
        )
        .unwrap()
        .save(dir, &labels(num_labels))
        .unwrap(),
    }
    let path = dir.join("adapter_model.safetensors");
    if mode == FineTuneMode::Full {
        return;
    }
    assert!(
        path.is_file(),
        "the app's group is saved as {}",
        path.display()
    );
    let bytes = std::fs::read(&path).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in file.tensors() {
        let n: usize = view.shape().iter().product();
        let values: Vec<u8> = (0..n)
            .flat_map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let v = (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
                (2.0 * v).to_le_bytes()
            })
            .collect();
        tensors.push((name, view.shape().to_vec(), values));
    }
    let views: Vec<(&str, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, s, v)| {
            (
                n.as_str(),
                TensorView::new(safetensors::Dtype::F32, s.clone(), v).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &path).unwrap();
}

fn input(ids: &[u32], device: &Device) -> BertInput {
    let n = ids.len();
    BertInput::from_ids(ids, &vec![0; n], &vec![1; n], [1, n], &config(16), device).unwrap()
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// What the app in `dir` gives for `ids` alone, loaded the usual way.
fn alone(dir: &Path, kind: Kind, ids: &[u32]) -> Vec<f32> {
    let device = cpu();
    let model = AdaptedModel::<Lora>::new(backbone(16, &device));
    let input = input(ids, &device);
    match kind {
        Kind::Tokens => {
            let (app, _) = TokenClassifier::load(dir, model).unwrap();
            values(app.forward(&input, &app.route().unwrap()).unwrap())
        }
        Kind::Text => {
            let (app, _) = TextClassifier::load(dir, model).unwrap();
            values(app.forward(&input, &app.route().unwrap()).unwrap())
        }
    }
}

fn flat(logits: &Logits) -> Vec<f32> {
    match logits {
        Logits::Sequence(v) => v.clone(),
        Logits::Tokens(t) => t.iter().flatten().copied().collect(),
    }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let d = (x - y).abs();
            // A NaN on either side is as far apart as it gets.
            if d.is_nan() { f32::INFINITY } else { d }
        })
        .fold(0.0, f32::max)
}

struct Fixture {
    _dir: tempfile::TempDir,
    ner: std::path::PathBuf,
    pos: std::path::PathBuf,
    topic: std::path::PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (ner, pos, topic) = (
        dir.path().join("ner"),
        dir.path().join("pos"),
        dir.path().join("topic"),
    );
    save_app(&ner, Kind::Tokens, 5, 1, 16, FineTuneMode::LoraHead);
    save_app(&pos, Kind::Tokens, 7, 2, 16, FineTuneMode::LoraHead);
    save_app(&topic, Kind::Text, 3, 3, 16, FineTuneMode::LoraHead);
    Fixture {
        _dir: dir,
        ner,
        pos,
        topic,
    }
}

const A: &[u32] = &[2, 11, 12, 13, 3];
const B: &[u32] = &[2, 21, 22, 3];
const C: &[u32] = &[2, 31, 32, 33, 34, 35, 36, 3];

#[test]
fn a_mixed_batch_gives_each_row_what_its_app_gives_alone() {
    let f = fixture();
    let runtime = Runtime::new(backbone(16, &cpu()));
    runtime.register("ner", &f.ner).unwrap();
    runtime.register("pos", &f.pos).unwrap();
    runtime.register("topic", &f.topic).unwrap();
    let rows = [
        Row { app: "ner", ids: A },
        Row {
            app: "topic",
            ids: C,
        },
        Row { app: "pos", ids: B },
        Row { app: "ner", ids: C },
        Row {
            app: "topic",
            ids: B,
        },
    ];
    let out = runtime.logits(&rows).unwrap();
    let expected = [
        alone(&f.ner, Kind::Tokens, A),
        alone(&f.topic, Kind::Text, C),
        alone(&f.pos, Kind::Tokens, B),
        alone(&f.ner, Kind::Tokens, C),
        alone(&f.topic, Kind::Text, B),
    ];
    for (i, (got, want)) in out.iter().zip(&expected).enumerate() {
        let d = max_diff(&flat(got), want);
        assert!(d < 1e-4, "row {i}: max |diff| {d}");
    }
    // Token apps give one vector per token of their row, text apps one per row.
    assert!(matches!(&out[0], Logits::Tokens(t) if t.len() == A.len() && t[0].len() == 5));
    assert!(matches!(&out[1], Logits::Sequence(v) if v.len() == 3));
    // The groups matter: without its group, the app's head gives something else.
    let plain = {
        let device = cpu();
        let model = AdaptedModel::<Lora>::new(backbone(16, &device));
        let (app, _) = TokenClassifier::load(&f.ner, model).unwrap();
        values(
            app.forward(&input(A, &device), &lora_bert::Route::Base)
                .unwrap(),
        )
    };
    let d = max_diff(&flat(&out[0]), &plain);
    assert!(
        d > 1e-3,
        "with and without the group: {d}: {:?} vs {plain:?}",
        flat(&out[0])
    );
    // The two token apps differ on the same row.
    let (ner_c, pos_c) = (
        runtime.logits(&[Row { app: "ner", ids: C }]).unwrap(),
        runtime.logits(&[Row { app: "pos", ids: C }]).unwrap(),
    );
    assert_ne!(flat(&ner_c[0])[..5], flat(&pos_c[0])[..5]);
}

#[test]
fn apps_come_and_go_and_errors_leave_the_runtime_serving() {
    let f = fixture();
    let runtime = Runtime::new(backbone(16, &cpu()));
    let info = runtime.register("ner", &f.ner).unwrap();
    assert_eq!(info.labels.len(), 5);
    assert!(matches!(
        runtime.register("ner", &f.pos),
        Err(Error::AppExists(name)) if name == "ner"
    ));
    assert!(matches!(
        runtime.logits(&[Row { app: "pos", ids: A }]),
        Err(Error::UnknownApp(name)) if name == "pos"
    ));
    runtime.register("pos", &f.pos).unwrap();
    let before = runtime.logits(&[Row { app: "ner", ids: A }]).unwrap();
    runtime.remove("pos").unwrap();
    assert!(matches!(runtime.remove("pos"), Err(Error::UnknownApp(_))));
    assert_eq!(
        runtime
            .apps()
            .iter()
            .map(|a| a.name.as_str())
            .collect::<Vec<_>>(),
        ["ner"]
    );
    // Registered again, it is the same app.
    runtime.register("pos", &f.pos).unwrap();
    let d = max_diff(
        &flat(&runtime.logits(&[Row { app: "pos", ids: B }]).unwrap()[0]),
        &alone(&f.pos, Kind::Tokens, B),
    );
    assert!(d < 1e-4, "{d}");
    assert_eq!(
        runtime.logits(&[Row { app: "ner", ids: A }]).unwrap(),
        before
    );
}

#[test]
fn an_int8_backbone_serves_the_same_apps_in_under_half_the_bytes() {
    let f = fixture();
    let device = cpu();
    let float = Runtime::new(backbone(16, &device));
    let int8 = Runtime::new(backbone(16, &device).quantize_int8().unwrap());
    for runtime in [&float, &int8] {
        runtime.register("ner", &f.ner).unwrap();
        runtime.register("topic", &f.topic).unwrap();
    }
    let rows = [
        Row { app: "ner", ids: C },
        Row {
            app: "topic",
            ids: A,
        },
    ];
    let (a, b) = (float.logits(&rows).unwrap(), int8.logits(&rows).unwrap());
    for (i, (a, b)) in a.iter().zip(&b).enumerate() {
        let (a, b) = (flat(a), flat(b));
        let scale = a.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = max_diff(&a, &b);
        assert!(
            d < 0.03 * scale,
            "row {i}: int8 moved logits by {d} (largest {scale})"
        );
        assert!(d > 0.0, "row {i}: int8 changed nothing");
    }
    // Int8: one byte per projection and word-embedding value, plus each tensor's scale (4),
    // per-column and per-row scales (f32); biases, LayerNorms, position and type embeddings
    // stay f32.
    let int8_dense = |d_in: usize, d_out: usize| d_in * d_out + 4 + 4 * (d_in + d_out + d_out);
    let layer = 4 * int8_dense(16, 16) + int8_dense(16, 32) + int8_dense(32, 16) + 4 * 2 * 32;
    let embeddings = 50 * 16 + 4 + 4 * 50 + 4 * ((32 + 2) * 16 + 32);
    assert_eq!(int8.memory().backbone_bytes, embeddings + 2 * layer);
    assert!(int8.memory().backbone_bytes * 2 < float.memory().backbone_bytes);
    // Apps cost the same on either backbone.
    assert_eq!(int8.memory().apps, float.memory().apps);
    // A saved int8 backbone loads as int8 and serves the same logits.
    let dir = tempfile::tempdir().unwrap();
    backbone(16, &device)
        .quantize_int8()
        .unwrap()
        .save(dir.path())
        .unwrap();
    let loaded = Runtime::load(dir.path(), &device).unwrap();
    loaded.register("ner", &f.ner).unwrap();
    loaded.register("topic", &f.topic).unwrap();
    assert_eq!(loaded.memory(), int8.memory());
    assert_eq!(loaded.logits(&rows).unwrap(), b);
}

#[test]
fn memory_is_the_backbone_once_and_each_app_s_own_parameters() {
    let f = fixture();
    let runtime = Runtime::new(backbone(16, &cpu()));
    runtime.register("ner", &f.ner).unwrap();
    runtime.register("topic", &f.topic).unwrap();
    let memory = runtime.memory();
    // Tiny BERT: embeddings (50 + 32 + 2) x 16 + LayerNorm 32; per layer 4 x (16x16 + 16),
    // LayerNorm 32, FFN 16x32 + 32 + 32x16 + 16, LayerNorm 32.
    let layer = 4 * (16 * 16 + 16) + 32 + (16 * 32 + 32) + (32 * 16 + 16) + 32;
    let backbone = (50 + 32 + 2) * 16 + 32 + 2 * layer;
    assert_eq!(memory.backbone_bytes, 4 * backbone);
    // LoRA r4 on query and value of 2 layers: A [4,16] and B [16,4] each.
    let group = 2 * 2 * (4 * 16 + 16 * 4);
    assert_eq!(
        memory.apps,
        [
            ("ner".to_owned(), 4 * (group + 16 * 5 + 5)),
            ("topic".to_owned(), 4 * (group + 16 * 3 + 3)),
        ]
    );
    assert!(memory.share("ner").unwrap() > 0.0);
}

#[test]
fn bad_input_is_a_typed_error() {
    let f = fixture();
    let runtime = Runtime::new(backbone(16, &cpu()));
    runtime.register("ner", &f.ner).unwrap();
    assert!(matches!(runtime.logits(&[]), Err(Error::InvalidInput(_))));
    assert!(matches!(
        runtime.logits(&[Row { app: "ner", ids: A }, Row { app: "ner", ids: &[] }]),
        Err(Error::InvalidInput(m)) if m.contains("row 1")
    ));
    // An id outside the vocabulary, a row longer than the positions.
    assert!(matches!(
        runtime.logits(&[Row {
            app: "ner",
            ids: &[2, 50, 3]
        }]),
        Err(Error::Input(_))
    ));
    let long: Vec<u32> = (0..40).map(|i| 4 + i % 40).collect();
    assert!(matches!(
        runtime.logits(&[Row {
            app: "ner",
            ids: &long
        }]),
        Err(Error::Input(_))
    ));
    assert!(matches!(
        runtime.register("", &f.ner),
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        runtime.register("missing", f.ner.join("nowhere")),
        Err(Error::App(AppError::Io { .. }))
    ));
    // Damaged copies of the NER app: each refused with an error naming the file at fault.
    let damaged = |name: &str, file: &str, edit: &dyn Fn(Vec<u8>) -> Vec<u8>| {
        let dir = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(&f.ner).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
        let target = dir.path().join(file);
        std::fs::write(&target, edit(std::fs::read(&target).unwrap())).unwrap();
        match runtime.register(name, dir.path()) {
            Err(Error::App(AppError::Format { path, .. })) => assert!(path.ends_with(file)),
            other => panic!("{name}: {other:?}"),
        }
    };
    damaged("later-format", "app.json", &|bytes| {
        let text = String::from_utf8(bytes).unwrap();
        text.replacen("\"version\": 1", "\"version\": 9", 1)
            .into_bytes()
    });
    damaged("truncated-head", "head.safetensors", &|bytes| {
        bytes[..bytes.len() / 2].to_vec()
    });
    damaged("fewer-labels", "labels.json", &|_| {
        serde_json::to_vec(&LabelVocab::new(vec!["O".into(), "B-PER".into()]).unwrap()).unwrap()
    });

    let dir = tempfile::tempdir().unwrap();
    // An app fine-tuned in full brings its own backbone.
    let full = dir.path().join("full");
    save_app(&full, Kind::Text, 2, 4, 16, FineTuneMode::Full);
    assert!(matches!(
        runtime.register("full", &full),
        Err(Error::OwnBackbone { name, .. }) if name == "full"
    ));
    // An app made for an encoder of another width.
    let narrow = dir.path().join("narrow");
    save_app(&narrow, Kind::Tokens, 3, 5, 8, FineTuneMode::LoraHead);
    assert!(matches!(
        runtime.register("narrow", &narrow),
        Err(Error::HeadWidth {
            found: 8,
            expected: 16,
            ..
        })
    ));
    // After all that, the runtime serves as before.
    assert_eq!(runtime.apps().len(), 1);
    let d = max_diff(
        &flat(&runtime.logits(&[Row { app: "ner", ids: A }]).unwrap()[0]),
        &alone(&f.ner, Kind::Tokens, A),
    );
    assert!(d < 1e-4, "{d}");
}

/// An app whose `lora_alpha` is finite in f64 but overflows f32 (PEFT stores it as JSON) is
/// refused with a typed error at the first request, never answered with NaN logits; the
/// runtime keeps serving its other apps.
#[test]
fn an_app_whose_values_overflow_gets_an_error_not_nan_logits() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let loud = dir.path().join("loud");
    save_app(&loud, Kind::Tokens, 5, 1, 16, FineTuneMode::LoraHead);
    let config_path = loud.join("adapter_config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    config["lora_alpha"] = serde_json::json!(1e308);
    std::fs::write(&config_path, config.to_string()).unwrap();
    let runtime = Runtime::new(backbone(16, &cpu()));
    runtime.register("loud", &loud).unwrap();
    runtime.register("ner", &f.ner).unwrap();
    let err = runtime
        .logits(&[Row {
            app: "loud",
            ids: A,
        }])
        .unwrap_err();
    assert!(
        matches!(&err, Error::NonFinite { what } if what.contains("`loud`")),
        "{err:?}"
    );
    let rows = runtime.logits(&[Row { app: "ner", ids: A }]).unwrap();
    assert!(flat(&rows[0]).iter().all(|v| v.is_finite()));
}

#[test]
fn threads_share_one_runtime_while_apps_are_added_and_removed() {
    let f = fixture();
    let runtime = Arc::new(Runtime::new(backbone(16, &cpu())));
    runtime.register("ner", &f.ner).unwrap();
    let want = alone(&f.ner, Kind::Tokens, A);
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let runtime = Arc::clone(&runtime);
            let want = want.clone();
            std::thread::spawn(move || {
                for _ in 0..10 {
                    let got = runtime.logits(&[Row { app: "ner", ids: A }]).unwrap();
                    assert!(max_diff(&flat(&got[0]), &want) < 1e-4);
                }
            })
        })
        .collect();
    for _ in 0..5 {
        runtime.register("topic", &f.topic).unwrap();
        runtime.remove("topic").unwrap();
    }
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(runtime.apps().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Pipelines

const VOCAB: &[&str] = &[
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "new", "york",
    "is", "big", "anna", "met", "bob", "in", "paris", "##s", "##ing", "run", ".", ",",
];

/// A word-piece tokenizer over [`VOCAB`] (ids below the tiny model's 50).
fn tokenizer(dir: &Path, max_length: usize) -> BertTokenizer {
    let path = dir.join("vocab.txt");
    std::fs::write(&path, VOCAB.join("\n")).unwrap();
    BertTokenizer::from_vocab(&path, true)
        .unwrap()
        .with_max_length(max_length)
}

fn served(f: &Fixture) -> Arc<Runtime> {
    let runtime = Arc::new(Runtime::new(backbone(16, &cpu())));
    runtime.register("ner", &f.ner).unwrap();
    runtime.register("topic", &f.topic).unwrap();
    runtime
}

#[test]
fn ner_entities_are_the_word_labels_read_as_seqeval_does_with_character_offsets() {
    let f = fixture();
    let runtime = served(&f);
    let tok = tokenizer(f._dir.path(), 32);
    let ner = NerPipeline::new(runtime.clone(), "ner", tok.clone()).unwrap();
    // Multi-byte characters before the words, and a word of two pieces (`cats`).
    let text = "Zoë ✓ Anna met Bob in Paris , the cats sat on the big mat .";
    let got = ner.predict(&[text]).unwrap().remove(0);

    // By hand: the first piece of each word, its best label, seqeval's chunks.
    let enc = tok.encode(text).unwrap().remove(0);
    let logits = match runtime
        .logits(&[Row {
            app: "ner",
            ids: &enc.ids,
        }])
        .unwrap()
        .remove(0)
    {
        Logits::Tokens(t) => t,
        Logits::Sequence(_) => unreachable!(),
    };
    let names = labels(5);
    let mut words: Vec<(usize, usize, &str)> = Vec::new(); // byte span, tag
    for (t, l) in logits.iter().enumerate() {
        let Some(w) = enc.word_ids[t] else { continue };
        let (s, e) = enc.offsets[t];
        if words.len() == w as usize {
            let best = (0..l.len()).max_by(|&a, &b| l[a].total_cmp(&l[b])).unwrap();
            words.push((s, e, names.labels()[best].as_str()));
        } else {
            words[w as usize].1 = e;
        }
    }
    let tags: Vec<&str> = words.iter().map(|w| w.2).collect();
    let want: Vec<(String, String)> = chunks_of(&tags)
        .into_iter()
        .map(|c| {
            (
                c.kind,
                text[words[c.start].0..words[c.end - 1].1].to_owned(),
            )
        })
        .collect();
    let have: Vec<(String, String)> = got
        .iter()
        .map(|e| (e.label.clone(), e.text.clone()))
        .collect();
    assert_eq!(have, want);
    assert!(!got.is_empty(), "a random head tags something in 14 words");
    let chars: Vec<char> = text.chars().collect();
    for e in &got {
        assert_eq!(chars[e.start..e.end].iter().collect::<String>(), e.text);
        assert!(e.score > 0.0 && e.score <= 1.0);
    }
    // Other aggregations run and keep the offsets exact.
    for aggregation in [Aggregation::Average, Aggregation::Max] {
        let ner = ner.clone().with_aggregation(aggregation);
        for e in ner.predict(&[text]).unwrap().remove(0) {
            assert_eq!(chars[e.start..e.end].iter().collect::<String>(), e.text);
        }
    }
}

/// Saves a token app for `vocab`'s labels: a random head over a random LoRA group.
fn save_tagger(dir: &Path, vocab: &LabelVocab, seed: u64) {
    let device = cpu();
    let model = AdaptedModel::<Lora>::new(backbone(16, &device));
    let lora = LoraConfig::new(4, Targets::new(["query", "value"]).layers(Layers::All));
    let setup = AppSetup::new("task", FineTuneMode::LoraHead).with_lora(lora);
    device.seed(seed);
    TokenClassifier::new(
        model,
        &setup,
        &TokenClassificationHeadConfig::new(16, vocab.len()),
    )
    .unwrap()
    .save(dir, vocab)
    .unwrap();
}

/// Whether a window edge cuts a word: a word with pieces in one window and later pieces only
/// in the next.
fn a_window_cuts_a_word(examples: &[TokenExample]) -> bool {
    examples.windows(2).any(|pair| {
        let (a, b) = (&pair[0], &pair[1]);
        let content = a.token_word.iter().flatten().count();
        let (Some(&last), true) = (
            a.token_word.iter().flatten().last(),
            a.sentence == b.sentence,
        ) else {
            return false;
        };
        let a_end = a.token_start + content;
        b.token_word
            .iter()
            .flatten()
            .enumerate()
            .any(|(pos, &w)| w == last && b.token_start + pos >= a_end)
    })
}

/// What is served is what was scored: the runtime's logits for the same sentences, read by
/// the NER pipeline and by fine-tuning's evaluation, give the same entities in every tag
/// scheme, with windows that cut words.
#[test]
fn the_ner_pipeline_serves_the_entities_evaluation_scores_in_every_scheme() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer(dir.path(), 8).with_length_policy(LengthPolicy::Window { stride: 2 });
    let sentences: Vec<Vec<&str>> = vec![
        "anna met bob in paris , the cats sat on the big mat ."
            .split(' ')
            .collect(),
        "new york is big , running cats sat on mats in paris"
            .split(' ')
            .collect(),
        "cats running mats sating cats running mats"
            .split(' ')
            .collect(),
        vec!["bob"],
    ];
    let gold: Vec<TaggedSentence> = sentences
        .iter()
        .map(|w| TaggedSentence {
            tokens: w.iter().map(|s| s.to_string()).collect(),
            tags: vec!["O".into(); w.len()],
        })
        .collect();
    let mut total = 0;
    for (k, scheme) in Scheme::ALL.into_iter().enumerate() {
        let vocab = LabelVocab::for_scheme(&["PER", "LOC"], scheme).unwrap();
        let app = dir.path().join(scheme.to_string());
        save_tagger(&app, &vocab, 40 + k as u64);
        let runtime = Arc::new(Runtime::new(backbone(16, &cpu())));
        runtime.register("ner", &app).unwrap();
        let served = NerPipeline::new(runtime.clone(), "ner", tok.clone())
            .unwrap()
            .predict_words(&sentences)
            .unwrap();

        // Evaluation: the sentences encoded as fine-tuning encodes them, the same logits,
        // read back to word tags by fine-tuning's evaluation.
        let examples = encode_tagged(&tok, &gold, &vocab, LabelAlignment::FirstSubword).unwrap();
        assert!(a_window_cuts_a_word(&examples), "{scheme}: no word is cut");
        let rows: Vec<Row<'_>> = examples
            .iter()
            .map(|e| Row {
                app: "ner",
                ids: &e.input_ids,
            })
            .collect();
        let logits: Vec<Vec<f32>> = runtime
            .logits(&rows)
            .unwrap()
            .into_iter()
            .map(|l| match l {
                Logits::Tokens(t) => t.concat(),
                Logits::Sequence(_) => unreachable!(),
            })
            .collect();
        let options = TokenEvalOptions::new(0);
        let ids = stitch_word_ids(&examples, &logits, gold.len(), &vocab, &options).unwrap();
        let scored = word_tags(ids, &vocab);
        for (tags, entities) in scored.iter().zip(&served) {
            let want: Vec<(String, std::ops::Range<usize>)> = entity_spans(tags)
                .unwrap()
                .into_iter()
                .map(|s| (s.kind, s.start..s.end))
                .collect();
            let got: Vec<(String, std::ops::Range<usize>)> = entities
                .iter()
                .map(|e| (e.label.clone(), e.words.clone()))
                .collect();
            assert_eq!(got, want, "{scheme}: {tags:?}");
            total += want.len();
        }
        // And evaluation counts exactly those: the served entities, written as gold tags,
        // score a perfect match against the evaluated tags.
        let served_tags: Vec<Vec<String>> = served
            .iter()
            .zip(&sentences)
            .map(|(entities, words)| {
                let spans: Vec<Span> = entities
                    .iter()
                    .map(|e| Span::new(e.label.clone(), e.words.start, e.words.end))
                    .collect();
                encode(&spans, words.len(), Scheme::Iobes).unwrap()
            })
            .collect();
        let report = entity_report(
            &gold
                .iter()
                .zip(served_tags)
                .map(|(g, tags)| TaggedSentence {
                    tokens: g.tokens.clone(),
                    tags,
                })
                .collect::<Vec<_>>(),
            &scored,
        )
        .unwrap();
        let n: usize = served.iter().map(Vec::len).sum();
        assert_eq!((report.found, report.correct), (n, n), "{scheme}");
    }
    assert!(total > 10, "random taggers found only {total} entities");
}

#[test]
fn ner_windows_long_texts_and_batches_many() {
    let f = fixture();
    let runtime = served(&f);
    let ner = NerPipeline::new(runtime, "ner", tokenizer(f._dir.path(), 16))
        .unwrap()
        .with_batch_size(7);
    // About 10,000 characters: hundreds of 16-token windows.
    let sentence = "anna met bob in new york , the cats sat on the big mat . ";
    let long = sentence.repeat(10_000 / sentence.len() + 1);
    assert!(long.len() >= 10_000);
    let short = "anna met bob in paris .";
    let out = ner.predict(&[short, "", &long, "   "]).unwrap();
    assert_eq!(out.len(), 4);
    assert!(out[1].is_empty() && out[3].is_empty());
    let chars: Vec<char> = long.chars().collect();
    for e in &out[2] {
        assert_eq!(chars[e.start..e.end].iter().collect::<String>(), e.text);
    }
    // Entities come in text order and do not overlap.
    for pair in out[2].windows(2) {
        assert!(pair[0].end <= pair[1].start, "{pair:?}");
    }
    // The short text alone gives what it gives in the batch.
    assert_eq!(ner.predict(&[short]).unwrap()[0], out[0]);
    assert!(matches!(ner.predict(&[]), Err(Error::InvalidInput(_))));
}

#[test]
fn classifier_labels_are_the_app_s_best_logit_and_bad_input_is_an_error() {
    let f = fixture();
    let runtime = served(&f);
    let tok = tokenizer(f._dir.path(), 32);
    let clf = ClassifierPipeline::new(runtime.clone(), "topic", tok.clone()).unwrap();
    let texts = ["the cat sat on the mat .", "anna met bob in paris", "big"];
    let out = clf.predict(&texts).unwrap();
    for (text, got) in texts.iter().zip(&out) {
        let ids = tok.encode(text).unwrap().remove(0).ids;
        let Logits::Sequence(l) = runtime
            .logits(&[Row {
                app: "topic",
                ids: &ids,
            }])
            .unwrap()
            .remove(0)
        else {
            unreachable!()
        };
        let best = (0..l.len()).max_by(|&a, &b| l[a].total_cmp(&l[b])).unwrap();
        assert_eq!(got.label, format!("L{best}"));
        assert_eq!(got.scores.len(), 3);
        assert!((got.scores.iter().map(|s| s.1).sum::<f32>() - 1.0).abs() < 1e-5);
        assert_eq!(got.score, got.scores[best].1);
    }
    // Batches of 2 over texts in no order of length (the pipeline runs them sorted by
    // length): every text gets what it gets alone, in the order given.
    let mixed = [
        "anna met bob in paris",
        "big",
        "the cat sat on the mat . the big cat sat .",
        "bob",
        "the mat is big",
    ];
    let batched = clf.clone().with_batch_size(2).predict(&mixed).unwrap();
    assert_eq!(batched.len(), mixed.len());
    for (text, got) in mixed.iter().zip(&batched) {
        let alone = clf.predict(&[text]).unwrap().remove(0);
        assert_eq!(got.label, alone.label, "{text}");
        assert!(
            (got.score - alone.score).abs() < 1e-5,
            "{text}: {got:?} vs {alone:?}"
        );
    }
    // A text longer than the model is truncated, not refused.
    let long = "the cat sat on the mat . ".repeat(400);
    assert_eq!(clf.predict(&[&long]).unwrap().len(), 1);
    assert!(matches!(
        clf.predict(&["fine", ""]),
        Err(Error::Tokenizer(_))
    ));
    assert!(matches!(clf.predict(&[]), Err(Error::InvalidInput(_))));
    // Pipelines check the app's kind and existence.
    assert!(matches!(
        ClassifierPipeline::new(runtime.clone(), "ner", tok.clone()),
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        NerPipeline::new(
            runtime.clone(),
            "topic",
            tok.clone().with_length_policy(LengthPolicy::Truncate)
        ),
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        NerPipeline::new(runtime, "nope", tok),
        Err(Error::UnknownApp(_))
    ));
}

/// The runtime and the pipelines on every compiled backend give what they give on the CPU.
/// Built with the `wgpu` feature, the machine must provide an adapter (lavapipe will do):
/// `cargo test --workspace --features lora-bert/wgpu --test runtime` (CI runs it on lavapipe).
#[test]
fn every_compiled_backend_serves_what_the_cpu_serves() {
    use burn::module::Module;

    let f = fixture();
    let reference = served(&f);
    let rows = [
        Row { app: "ner", ids: A },
        Row {
            app: "topic",
            ids: C,
        },
        Row { app: "ner", ids: B },
    ];
    let want = reference.logits(&rows).unwrap();
    let tok = tokenizer(f._dir.path(), 16);
    let text = "anna met bob in new york , the cats sat on the big mat . bob is big .";
    let want_entities = NerPipeline::new(reference.clone(), "ner", tok.clone())
        .unwrap()
        .predict(&[text])
        .unwrap();
    let want_labels = ClassifierPipeline::new(reference, "topic", tok.clone())
        .unwrap()
        .predict(&[text])
        .unwrap();
    for backend in Backend::compiled() {
        let device = device::device(backend).unwrap_or_else(|e| panic!("{backend}: {e}"));
        let runtime = Arc::new(Runtime::new(backbone(16, &cpu()).to_device(&device)));
        runtime.register("ner", &f.ner).unwrap();
        runtime.register("topic", &f.topic).unwrap();
        assert_eq!(runtime.device(), device);
        let got = runtime.logits(&rows).unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let d = max_diff(&flat(g), &flat(w));
            assert!(d < 1e-4, "{backend}, row {i}: max |diff| {d}");
        }
        let entities = NerPipeline::new(runtime.clone(), "ner", tok.clone())
            .unwrap()
            .predict(&[text])
            .unwrap();
        assert_eq!(entities[0].len(), want_entities[0].len(), "{backend}");
        for (g, w) in entities[0].iter().zip(&want_entities[0]) {
            assert_eq!(
                (&g.label, &g.text, g.start, g.end),
                (&w.label, &w.text, w.start, w.end)
            );
            assert!(
                (g.score - w.score).abs() < 1e-4,
                "{backend}: {g:?} vs {w:?}"
            );
        }
        let labels = ClassifierPipeline::new(runtime, "topic", tok.clone())
            .unwrap()
            .predict(&[text])
            .unwrap();
        assert_eq!(labels[0].label, want_labels[0].label, "{backend}");
        assert!((labels[0].score - want_labels[0].score).abs() < 1e-4);
    }
}

/// The NER pipeline takes only apps whose labels are entity tags: a part-of-speech style
/// label set (here `L0`…`L6`) is refused instead of read as made-up entities.
#[test]
fn the_ner_pipeline_refuses_an_app_whose_labels_are_not_entity_tags() {
    let f = fixture();
    let runtime = served(&f);
    runtime.register("pos", &f.pos).unwrap();
    let tok = tokenizer(f._dir.path(), 32);
    let err = NerPipeline::new(runtime.clone(), "pos", tok.clone()).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput(m) if m.contains("not an entity tagger") && m.contains("L0")),
        "{err:?}"
    );
    assert!(NerPipeline::new(runtime, "ner", tok).is_ok());
}

/// A backbone directory whose config.json names fewer layers than its checkpoint holds is
/// refused by `Runtime::load` (and the embedder), naming the unused tensors, instead of
/// serving a truncated model.
#[test]
fn a_backbone_with_more_layers_than_its_config_is_refused() {
    let device = cpu();
    let dir = tempfile::tempdir().unwrap();
    let mut three = config(16);
    three.num_hidden_layers = 3;
    BertModel::init(&three, false, &device)
        .save(dir.path())
        .unwrap();
    assert!(Runtime::load(dir.path(), &device).is_ok());
    let config_path = dir.path().join("config.json");
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    json["num_hidden_layers"] = serde_json::json!(2);
    std::fs::write(&config_path, json.to_string()).unwrap();
    for result in [
        Runtime::load(dir.path(), &device).map(|_| ()),
        Runtime::load_int8(dir.path(), &device).map(|_| ()),
    ] {
        let err = result.unwrap_err();
        assert!(
            matches!(&err, Error::UnusedTensors { names, .. }
                if names.len() == 16 && names.iter().all(|n| n.starts_with("encoder.layer.2."))),
            "{err:?}"
        );
    }
}

/// Any adapter scheme end to end: an IA³ token app is fine-tuned, saved, and served by a
/// runtime of IA³ apps with the logits the trained classifier gives, beside a runtime of LoRA
/// apps on the same backbone weights; each runtime refuses the other scheme's app.
#[test]
fn an_ia3_app_is_fine_tuned_and_served_beside_lora_apps() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer(dir.path(), 32);
    let vocab = LabelVocab::from_tags(["O", "B-PER", "B-LOC"]).unwrap();
    let sentences: Vec<TaggedSentence> = (0..24)
        .map(|i| {
            let words = ["anna", "met", "bob", "in", "paris", "the", "cat", "sat"];
            let tokens: Vec<String> = (0..5).map(|j| words[(i * 3 + j * 5) % 8].into()).collect();
            let tags = tokens
                .iter()
                .map(|w| match w.as_str() {
                    "anna" | "bob" => "B-PER",
                    "paris" => "B-LOC",
                    _ => "O",
                })
                .map(String::from)
                .collect();
            TaggedSentence { tokens, tags }
        })
        .collect();
    let examples = encode_tagged(&tok, &sentences, &vocab, LabelAlignment::FirstSubword).unwrap();

    // One backbone on disk, loaded for training and for serving.
    let backbone_dir = dir.path().join("backbone");
    backbone(16, &cpu()).save(&backbone_dir).unwrap();
    let serving = || BertModel::load(&backbone_dir, &cpu()).unwrap().0;
    let training = device::autodiff(cpu());
    let model = AdaptedModel::<Ia3>::new(BertModel::load(&backbone_dir, &training).unwrap().0);
    let setup = AppSetup::new("ia3", FineTuneMode::LoraHead)
        .with_adapter(Ia3Config::new(Targets::new(["key", "value"])));
    let config = FineTuneConfig {
        batch_size: 8,
        ..FineTuneConfig::new(
            setup,
            TrainConfig {
                learning_rate: 1e-2,
                warmup_steps: 0,
                ..TrainConfig::new(12)
            },
        )
    };
    let (clf, _) = finetune_tokens(
        model,
        &examples,
        (&examples, &sentences),
        &vocab,
        &config,
        tok.pad_id(),
    )
    .unwrap();
    assert!(clf.model.group("ia3").is_ok(), "the app has its IA³ group");
    let app = dir.path().join("ia3");
    clf.save(&app, &vocab).unwrap();
    // What the trained classifier gives, to compare the served logits with.
    let want = predict_token_logits(&clf, &examples[..1], 1, tok.pad_id()).unwrap();

    let ia3 = Arc::new(Runtime::<Ia3>::from_backbone(serving()));
    ia3.register("ia3", &app).unwrap();
    let lora = Arc::new(Runtime::new(serving()));
    lora.register("ner", &f.ner).unwrap();
    assert!(matches!(
        ia3.register("ner", &f.ner),
        Err(Error::Adapter(_))
    ));
    assert!(matches!(lora.register("ia3", &app), Err(Error::Adapter(_))));
    let got = ia3
        .logits(&[Row {
            app: "ia3",
            ids: &examples[0].input_ids,
        }])
        .unwrap();
    let d = max_diff(&flat(&got[0]), &want[0]);
    assert!(
        d < 1e-4,
        "served IA³ logits differ from the trained app's by {d}"
    );
    // Both runtimes answer through the same pipelines.
    let words: Vec<Vec<&str>> = vec![vec!["anna", "met", "bob", "in", "paris"]];
    let a = NerPipeline::new(ia3, "ia3", tok.clone())
        .unwrap()
        .predict_words(&words)
        .unwrap();
    let b = NerPipeline::new(lora, "ner", tok)
        .unwrap()
        .predict_words(&words)
        .unwrap();
    assert_eq!((a.len(), b.len()), (1, 1));
}
