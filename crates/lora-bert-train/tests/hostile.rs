//! Hostile input for the files the training crate reads back: an app's `app.json`, a
//! tagger's `tagger.json` (and the record it names), a teacher cache's `index.json` and
//! shards, and a checkpoints folder's `latest`, `state.json` and records. Generated inputs
//! (valid files, mutated) must give a typed error or a value that holds the reader's
//! promises, never a panic, with an allocation bounded by the files' size, and a resume must
//! never touch a file outside its folder; the committed corpus in `tests/corpus/` pins the
//! outcome of named cases.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};
use lora_bert_apps::AppError;
use lora_bert_data::LabelVocab;
use lora_bert_encoder::{BertConfig, BertModel, device};
use lora_bert_testkit::alloc::{Counting, MIB, peak_of, serial};
use lora_bert_testkit::corpus::assert_every_file_has_a_case;
use lora_bert_testkit::mutate::{
    ByteEdit, FieldEdit, apply_byte_edits, apply_field_edits, byte_edits, field_edits,
    header_edits, mutate_safetensors, prefix,
};
use lora_bert_train::finetune::read_app;
use lora_bert_train::teacher::{
    CacheOptions, TaggerManifest, TeacherCache, WordStates, load_tagger, save_tagger,
};
use lora_bert_train::{Tagger, Teacher, TrainConfig, TrainError, Trainer};
use proptest::prelude::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

// The counting allocator bounds what each call allocates (see lora_bert_testkit::alloc).
#[global_allocator]
static ALLOCATOR: Counting = Counting;

// ---------------------------------------------------------------------------------------------
// Fixtures

fn cpu() -> Device {
    device::device(device::Backend::NdArray).unwrap()
}

fn corpus(parts: &[&str]) -> PathBuf {
    let mut path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    for p in parts {
        path.push(p);
    }
    path
}

/// Copies the files of `from` (two levels deep at most) into `to`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn edited_json(bytes: &[u8], edits: &[FieldEdit], byte_edits: &[ByteEdit]) -> Vec<u8> {
    let Value::Object(mut object) = serde_json::from_slice(bytes).unwrap() else {
        unreachable!()
    };
    apply_field_edits(&mut object, edits);
    let mut text = Value::Object(object).to_string().into_bytes();
    apply_byte_edits(&mut text, byte_edits);
    text
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn tiny_bert() -> BertModel {
    static MODEL: OnceLock<Mutex<BertModel>> = OnceLock::new();
    let mut c = BertConfig::new(12, 8, 1, 2, 16);
    c.max_position_embeddings = 8;
    MODEL
        .get_or_init(|| Mutex::new(BertModel::init(&c, false, &cpu())))
        .lock()
        .unwrap()
        .clone()
}

/// A tagger of three labels over [`tiny_bert`], saved once: the folder's files.
fn tagger_files() -> &'static (Vec<u8>, Vec<u8>) {
    static FILES: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    FILES.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let tagger = Tagger::new(tiny_bert(), 3, 0.0, &cpu()).unwrap();
        let vocab = LabelVocab::new(vec!["O".into(), "B-X".into(), "I-X".into()]).unwrap();
        save_tagger(&tagger, dir.path(), "tiny", &vocab, json!({"steps": 0})).unwrap();
        (
            std::fs::read(dir.path().join("tagger.json")).unwrap(),
            std::fs::read(dir.path().join("tagger.bpk")).unwrap(),
        )
    })
}

/// A teacher whose states are a function of the words: no model needed.
struct Fake;

impl Teacher for Fake {
    fn hidden_size(&self) -> usize {
        3
    }

    fn description(&self) -> String {
        "fake teacher".into()
    }

    fn word_states(&self, sentences: &[&[String]]) -> lora_bert_train::Result<Vec<WordStates>> {
        sentences
            .iter()
            .map(|words| {
                let data = words
                    .iter()
                    .flat_map(|w| [w.len() as f32, 1.0, -0.5])
                    .collect();
                let present = words.iter().map(|w| w != "gap").collect();
                WordStates::new(data, words.len(), 3, present)
            })
            .collect()
    }
}

fn cache_corpus() -> Vec<Vec<String>> {
    let s = |w: &str| w.split(' ').map(str::to_owned).collect::<Vec<_>>();
    vec![s("a b"), s("c"), s("gap d e"), s("a b"), s("f")]
}

/// The files of a cache of [`cache_corpus`] by [`Fake`], two sentences a shard.
fn cache_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let corpus = cache_corpus();
        let words: Vec<&[String]> = corpus.iter().map(Vec::as_slice).collect();
        let options = CacheOptions {
            shard_size: 2,
            ..CacheOptions::default()
        };
        TeacherCache::build(&Fake, &words, dir.path(), &options, |_| {}).unwrap();
        dir
    })
    .path()
}

/// The module a checkpoint test trains: one vector.
#[derive(Module, Debug)]
struct Tiny {
    w: Param<Tensor<1>>,
}

fn tiny() -> Tiny {
    let device = device::autodiff(cpu());
    Tiny {
        w: Param::from_tensor(Tensor::from_data(
            TensorData::new(vec![1.0f32, -2.0, 0.5], [3]),
            &device,
        )),
    }
}

fn tiny_loss(m: &Tiny, k: usize) -> lora_bert_train::Result<Tensor<1>> {
    let target = (k % 3) as f32;
    Ok((m.w.val() - target).powi_scalar(2).sum())
}

fn train_config(steps: usize) -> TrainConfig {
    TrainConfig {
        accumulation: 2,
        eval_every: Some(1),
        ..TrainConfig::new(steps)
    }
}

/// A run of 4 steps killed after 2, with checkpoints: the template every case copies.
fn run_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        // The configuration of the resumes, stopped half-way by running out of batches.
        let (_, report) = Trainer::new(train_config(4))
            .with_checkpoints(dir.path())
            .fit(tiny(), 0..4, tiny_loss, |_| Ok(0.0))
            .unwrap();
        assert_eq!(report.steps, 2);
        dir
    })
    .path()
}

/// Every file under `dir` with its contents, sorted.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(snapshot(&path));
        } else {
            let bytes = std::fs::read(&path).unwrap();
            out.push((path, bytes));
        }
    }
    out.sort();
    out
}

/// What a resume must not break: a typed error, or a report of a run that stayed within its
/// configuration.
fn check_fit(
    result: lora_bert_train::Result<(Tiny, lora_bert_train::FitReport)>,
    max_steps: usize,
) -> Result<(), TestCaseError> {
    match result {
        Ok((_, report)) => {
            prop_assert!(report.steps <= max_steps, "{report:?}");
            prop_assert_eq!(report.losses.len(), report.steps);
            prop_assert!(report.resumed_from.is_none_or(|s| s <= report.steps));
            prop_assert!(report.history.iter().all(|e| e.step <= report.steps));
            prop_assert!(report.best.is_none_or(|(_, s)| s <= report.steps));
        }
        Err(e) => prop_assert!(
            matches!(
                e,
                TrainError::Format { .. }
                    | TrainError::InvalidArgument { .. }
                    | TrainError::Io { .. }
            ),
            "{e:?}"
        ),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Properties

/// What a checkpoints folder is damaged with.
#[derive(Debug, Clone)]
enum Damage {
    Latest(Vec<u8>),
    State(Vec<FieldEdit>, Vec<ByteEdit>),
    Record(&'static str, Vec<ByteEdit>),
    Evaluations(Vec<u8>),
}

fn damage() -> impl Strategy<Value = Damage> {
    let pointer = prop_oneof![
        Just(b"step-000002".to_vec()),
        Just(b"step-000002\n".to_vec()),
        Just(b"../../elsewhere/step-000002".to_vec()),
        Just(b"step-000002/../../../elsewhere/step-000002".to_vec()),
        Just(b"/tmp/step-000002".to_vec()),
        Just(b"step-000002\0".to_vec()),
        Just(b"step-\0\0\0\0\0\0".to_vec()),
        Just(format!("step-{}", "9".repeat(5000)).into_bytes()),
        Just("step-00000\u{663}".as_bytes().to_vec()),
        Just(b"step-000001".to_vec()),
        Just(b"".to_vec()),
        Just(b"\xff\xfe".to_vec()),
        "\\PC{0,20}".prop_map(String::into_bytes),
    ];
    let record = prop_oneof![
        Just("checkpoints/step-000002/model.bpk"),
        Just("checkpoints/step-000002/optim.bpk"),
        Just("best/model.bpk"),
    ];
    prop_oneof![
        2 => pointer.prop_map(Damage::Latest),
        3 => (field_edits(), byte_edits()).prop_map(|(f, b)| Damage::State(f, b)),
        2 => (record, prop::collection::vec(
            prop_oneof![
                any::<usize>().prop_map(ByteEdit::Truncate),
                (any::<usize>(), 1..=255u8).prop_map(|(i, x)| ByteEdit::Xor(i, x)),
            ],
            1..3,
        )).prop_map(|(r, b)| Damage::Record(r, b)),
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(Damage::Evaluations),
    ]
}

/// State edits that keep the configuration, aimed at the counters a resume trusts.
fn state_fields() -> impl Strategy<Value = Vec<(&'static str, Value)>> {
    let field = prop_oneof![
        Just("step"),
        Just("best"),
        Just("evaluations_since_best"),
        Just("history"),
        Just("losses"),
        Just("replicas"),
    ];
    let value = prop_oneof![
        Just(json!(0)),
        Just(json!(1)),
        Just(json!(3)),
        Just(json!(9)),
        Just(json!(u64::MAX)),
        Just(json!(u64::MAX / 2 + 1)),
        Just(json!([0.5, 7])),
        Just(json!([0.5, 99])),
        Just(json!([1.0, 2.0, 3.0])),
        Just(json!([])),
        Just(json!([{"step": 99, "metric": 0.0, "train_loss": 0.0, "lr": 0.0}])),
        Just(Value::Null),
    ];
    prop::collection::vec((field, value), 0..3)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: lora_bert_testkit::cases(96), ..ProptestConfig::default() })]

    /// A damaged checkpoints folder: the resume is a typed error or a run within its
    /// configuration, and a file outside the folder is never touched.
    #[test]
    fn checkpoint_resume(damage in damage(), fields in state_fields()) {
        let _serial = serial();
        let root = tempfile::tempdir().unwrap();
        let run = root.path().join("run");
        copy_dir(run_dir(), &run);
        let elsewhere = root.path().join("elsewhere/step-000002");
        copy_dir(&run.join("checkpoints/step-000002"), &elsewhere);
        std::fs::write(elsewhere.join("notes.txt"), "mine").unwrap();
        let outside = snapshot(&root.path().join("elsewhere"));
        let mut size = 0;
        match &damage {
            Damage::Latest(bytes) => std::fs::write(run.join("latest"), bytes).unwrap(),
            Damage::State(edits, bytes) => {
                let path = run.join("checkpoints/step-000002/state.json");
                let Value::Object(mut state) = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap() else {
                    unreachable!()
                };
                for (field, value) in &fields {
                    state.insert((*field).to_owned(), value.clone());
                }
                let text = Value::Object(state).to_string().into_bytes();
                let text = edited_json(&text, edits, bytes);
                size = text.len();
                std::fs::write(path, text).unwrap();
            }
            Damage::Record(file, edits) => {
                let path = run.join(file);
                let mut bytes = std::fs::read(&path).unwrap();
                apply_byte_edits(&mut bytes, edits);
                size = bytes.len();
                std::fs::write(path, bytes).unwrap();
            }
            Damage::Evaluations(bytes) => {
                std::fs::write(run.join("evaluations.jsonl"), bytes).unwrap();
            }
        }
        let (result, peak) = peak_of(|| {
            Trainer::new(train_config(4))
                .with_checkpoints(&run)
                .fit(tiny(), 0.., tiny_loss, |_| Ok(0.0))
        });
        prop_assert!(peak < 16 * MIB + 64 * size, "{peak} bytes");
        check_fit(result, 4)?;
        prop_assert!(snapshot(&root.path().join("elsewhere")) == outside, "a file outside the run changed");
        let mut names: Vec<_> = std::fs::read_dir(root.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        prop_assert_eq!(names, ["elsewhere", "run"]);
    }

    /// A mutated teacher cache (index.json, a shard's header, prefix or bytes) opens to a
    /// cache that answers for the corpus, or is a typed error; building again over it
    /// repairs it or refuses it, typed.
    #[test]
    fn teacher_cache(
        index_edits in field_edits(),
        shard_edits in field_edits(),
        shard in 0..3usize,
        header in header_edits(),
        prefix in prefix(),
        bytes in byte_edits(),
    ) {
        let _serial = serial();
        let dir = tempfile::tempdir().unwrap();
        copy_dir(cache_dir(), dir.path());
        let index_path = dir.path().join("index.json");
        let Value::Object(mut index) = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap() else {
            unreachable!()
        };
        if let Some(Value::Object(entry)) = index.get_mut("shards").and_then(|s| s.get_mut(shard)) {
            apply_field_edits(entry, &shard_edits);
        }
        apply_field_edits(&mut index, &index_edits);
        std::fs::write(&index_path, Value::Object(index).to_string()).unwrap();
        let shard_path = dir.path().join(format!("shard-{shard:05}.safetensors"));
        let original = std::fs::read(&shard_path).unwrap();
        std::fs::write(&shard_path, mutate_safetensors(&original, &header, &prefix, &bytes)).unwrap();
        let size: usize = snapshot(dir.path()).iter().map(|(_, b)| b.len()).sum();

        let corpus = cache_corpus();
        let words: Vec<&[String]> = corpus.iter().map(Vec::as_slice).collect();
        let (opened, peak) = peak_of(|| TeacherCache::open(dir.path()));
        prop_assert!(peak < 4 * MIB + 16 * size, "{peak} bytes for {size}");
        match opened {
            Ok(cache) => match cache.word_states(&words) {
                Ok(states) => {
                    for (s, w) in states.iter().zip(&words) {
                        prop_assert_eq!(s.num_words, w.len());
                        prop_assert_eq!(s.data.len(), w.len() * cache.hidden_size());
                    }
                }
                Err(e) => prop_assert!(
                    matches!(e, TrainError::NotInCache { .. } | TrainError::Format { .. } | TrainError::Io { .. }),
                    "{e:?}"
                ),
            },
            Err(e) => prop_assert!(matches!(e, TrainError::Format { .. } | TrainError::Io { .. }), "{e:?}"),
        }
        let options = CacheOptions { shard_size: 2, ..CacheOptions::default() };
        match TeacherCache::build(&Fake, &words, dir.path(), &options, |_| {}) {
            Ok(cache) => {
                let states = cache.word_states(&words).unwrap();
                prop_assert_eq!(&states, &Fake.word_states(&words).unwrap());
            }
            Err(e) => prop_assert!(matches!(e, TrainError::Format { .. }), "{e:?}"),
        }
    }

    /// A mutated `tagger.json` (and weights that still match the checksum it names) loads
    /// a tagger whose labels are the manifest's, or is a typed error.
    #[test]
    fn tagger_manifest(
        edits in field_edits(),
        bytes in byte_edits(),
        labels in prop::option::of(prop::collection::vec(prop_oneof![Just("O"), Just("B-X"), Just("é"), Just("")], 0..5)),
        weights in prop::collection::vec(
            prop_oneof![
                any::<usize>().prop_map(ByteEdit::Truncate),
                (any::<usize>(), 1..=255u8).prop_map(|(i, x)| ByteEdit::Xor(i, x)),
            ],
            0..2,
        ),
    ) {
        let _serial = serial();
        let (manifest, record) = tagger_files();
        let mut record = record.clone();
        apply_byte_edits(&mut record, &weights);
        let Value::Object(mut object) = serde_json::from_slice(manifest).unwrap() else {
            unreachable!()
        };
        object.insert("weights_sha256".into(), json!(sha256_hex(&record)));
        if let Some(labels) = labels {
            object.insert("labels".into(), json!(labels));
        }
        let text = edited_json(&Value::Object(object).to_string().into_bytes(), &edits, &bytes);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tagger.json"), &text).unwrap();
        std::fs::write(dir.path().join("tagger.bpk"), &record).unwrap();
        let (loaded, peak) = peak_of(|| load_tagger(dir.path(), tiny_bert()));
        prop_assert!(peak < 16 * MIB + 16 * (text.len() + record.len()), "{peak} bytes");
        match loaded {
            Ok((tagger, vocab, manifest)) => {
                prop_assert_eq!(tagger.num_labels(), vocab.len());
                prop_assert_eq!(vocab.labels(), &manifest.labels[..]);
                prop_assert!(!manifest.description().is_empty());
            }
            Err(e) => prop_assert!(
                matches!(e, TrainError::Format { .. } | TrainError::Io { .. } | TrainError::InvalidArgument { .. }),
                "{e:?}"
            ),
        }
        // Whatever the manifest holds, describing it never panics.
        if let Ok(manifest) = serde_json::from_slice::<TaggerManifest>(&text) {
            let _ = manifest.description();
        }
    }

    /// A mutated `app.json`: a manifest of the fields an app has, or a typed error.
    #[test]
    fn app_manifest(edits in field_edits(), bytes in byte_edits(), extra in prop::option::of("[a-z_]{1,8}")) {
        let _serial = serial();
        let valid = br#"{"kind": "token_classification", "task": "ner", "mode": "lora_head", "group": "app:ner", "backbone": false}"#;
        let Value::Object(mut object) = serde_json::from_slice(valid).unwrap() else {
            unreachable!()
        };
        if let Some(key) = extra {
            object.insert(key, json!(1));
        }
        let text = edited_json(&Value::Object(object).to_string().into_bytes(), &edits, &bytes);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("app.json"), &text).unwrap();
        let (read, peak) = peak_of(|| read_app(dir.path()));
        prop_assert!(peak < 64 * 1024 + 64 * text.len());
        match read {
            Ok(app) => {
                // Only the fields an app has: an unknown one is refused, not ignored.
                let Value::Object(fields) = serde_json::from_slice::<Value>(&text).unwrap() else {
                    panic!("an app.json that is not an object was read");
                };
                for key in fields.keys() {
                    prop_assert!(["kind", "task", "mode", "group", "backbone"].contains(&key.as_str()), "`{key}` accepted");
                }
                let again: lora_bert_train::finetune::AppManifest =
                    serde_json::from_str(&serde_json::to_string(&app).unwrap()).unwrap();
                prop_assert_eq!(again, app);
            }
            Err(e) => prop_assert!(matches!(e, AppError::Format { .. } | AppError::Io { .. }), "{e:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Corpus

/// `original` (a JSON object) with the top-level fields of the corpus file `patch` put in,
/// or the corpus file as it is when it is not an object.
fn patched(original: &[u8], patch: &Path) -> Vec<u8> {
    let bytes = std::fs::read(patch).unwrap();
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(&bytes) else {
        return bytes;
    };
    let Value::Object(mut object) = serde_json::from_slice(original).unwrap() else {
        unreachable!()
    };
    object.extend(fields);
    Value::Object(object).to_string().into_bytes()
}

/// Named damages of a checkpoints folder (a `latest` pointer, or fields put into the
/// checkpoint's `state.json`): the resume's error.
#[test]
fn corpus_checkpoints() {
    let _serial = serial();
    let cases = [
        ("latest-dotdot", "not a checkpoint of this folder"),
        ("latest-absolute", "not a checkpoint of this folder"),
        ("latest-nul", "not a checkpoint of this folder"),
        ("latest-missing-step", "does not exist"),
        ("state-step-beyond-max", "step"),
        ("state-step-overflows", "step"),
        ("state-losses-short", "losses"),
        ("state-best-in-the-future", "best"),
    ];
    assert_every_file_has_a_case(&corpus(&["checkpoints"]), cases.iter().map(|c| c.0));
    for (name, message) in cases {
        let root = tempfile::tempdir().unwrap();
        let run = root.path().join("run");
        copy_dir(run_dir(), &run);
        let damage = corpus(&["checkpoints", name]);
        for entry in std::fs::read_dir(&damage).unwrap() {
            let entry = entry.unwrap();
            match entry.file_name().to_str().unwrap() {
                "state.json" => {
                    let path = run.join("checkpoints/step-000002/state.json");
                    let text = patched(&std::fs::read(&path).unwrap(), &entry.path());
                    std::fs::write(path, text).unwrap();
                }
                other => {
                    std::fs::copy(entry.path(), run.join(other)).unwrap();
                }
            }
        }
        let before = snapshot(&run);
        let err = Trainer::new(train_config(4))
            .with_checkpoints(&run)
            .fit(tiny(), 0.., tiny_loss, |_| Ok(0.0))
            .unwrap_err();
        assert!(
            matches!(&err, TrainError::Format { message: m, .. } if m.contains(message)),
            "{name}: {err:?}"
        );
        assert!(
            snapshot(&run) == before,
            "{name}: the refused resume changed the folder"
        );
    }
}

/// Named teacher-cache indexes (fields put into a valid `index.json`, or a whole file): each
/// is refused, typed and small.
#[test]
fn corpus_cache_indexes() {
    let _serial = serial();
    let cases = [
        "num-sentences-1e15.json",
        "num-sentences-u64-max.json",
        "shard-file-dotdot.json",
        "shard-sentences-u64-max.json",
        "version-2.json",
        "not-an-object.json",
    ];
    assert_every_file_has_a_case(&corpus(&["cache"]), cases);
    for name in cases {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(cache_dir(), dir.path());
        let index = dir.path().join("index.json");
        let text = patched(&std::fs::read(&index).unwrap(), &corpus(&["cache", name]));
        std::fs::write(&index, text).unwrap();
        let (opened, peak) = peak_of(|| TeacherCache::open(dir.path()));
        assert!(peak < MIB, "{name}: {peak} bytes");
        assert!(
            matches!(&opened, Err(TrainError::Format { .. })),
            "{name}: {opened:?}"
        );
    }
}

/// Named app.json files: each is a `Format` error naming the file.
#[test]
fn corpus_app_manifests() {
    let _serial = serial();
    for name in [
        "unknown-kind",
        "unknown-field",
        "mode-number",
        "not-an-object",
        "truncated",
    ] {
        let err = read_app(corpus(&["app", name])).unwrap_err();
        assert!(
            matches!(&err, AppError::Format { path, .. } if path.ends_with("app.json")),
            "{name}: {err:?}"
        );
    }
}

/// A tagger manifest whose checksum field is not hex (multi-byte characters) is described
/// without a panic.
#[test]
fn a_tagger_manifest_with_a_non_hex_checksum_is_described() {
    let text = std::fs::read_to_string(corpus(&["tagger", "sha-multibyte.json"])).unwrap();
    let manifest: TaggerManifest = serde_json::from_str(&text).unwrap();
    let description = manifest.description();
    assert!(
        description.contains("weights sha256 aéééééé"),
        "{description}"
    );
}
