//! Hostile input for the files the training crate reads back: an app's `app.json`, a
//! tagger's `tagger.json` (and the record it names), a teacher cache's `index.json` and
//! shards, and a checkpoints folder's `latest`, `state.json` and records. Generated inputs
//! (valid files, mutated) must give a typed error or a value that holds the reader's
//! promises, never a panic, with an allocation bounded by the files' size, and a resume must
//! never touch a file outside its folder; the committed corpus in `tests/corpus/` pins the
//! outcome of named cases.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};
use lora_bert_data::LabelVocab;
use lora_bert_encoder::{BertConfig, BertModel, device};
use lora_bert_train::finetune::read_app;
use lora_bert_train::teacher::{
    CacheOptions, TaggerManifest, TeacherCache, WordStates, load_tagger, save_tagger,
};
use lora_bert_train::{Tagger, Teacher, TrainConfig, TrainError, Trainer};
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------------------------
// Counting allocator

/// `System`, counting the bytes live on the heap and the most that were live at once, over
/// every thread (the backends may allocate on rayon's threads).
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let now = LIVE.fetch_add(bytes, Ordering::SeqCst) + bytes;
    PEAK.fetch_max(now, Ordering::SeqCst);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, layout, new_size) };
        if !q.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::SeqCst);
            }
        }
        q
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The counters are process-wide and libtest runs tests on several threads, so every test of
/// this file holds this lock for its whole run: while a call is measured, no other test
/// allocates (libtest's own bookkeeping between tests is a few bytes).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `f` and returns its value and the most bytes it had allocated at once beyond what was
/// live when it started.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let out = f();
    (out, PEAK.load(Ordering::SeqCst).saturating_sub(base))
}

const MIB: usize = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Generators

/// Values that break a field: wrong types, zero, negative, huge, not finite in f32, empty.
fn hostile_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        Just(json!(true)),
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(1)),
        Just(json!(3)),
        Just(json!(u64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(1u64 << 40)),
        Just(json!(1_000_000_000_000u64)),
        Just(json!(1_000_000_000_000_000_000u64)),
        Just(json!(1e308)),
        Just(json!(-1e308)),
        Just(json!(0.5)),
        Just(json!(-0.0)),
        Just(json!(5e-324)),
        Just(json!("")),
        Just(json!("384")),
        Just(json!("gelu")),
        Just(json!("relative_key")),
        Just(json!("\u{0}é\u{202e}")),
        Just(json!([])),
        Just(json!([1, 2])),
        Just(json!({})),
        Just(json!({"a": {"b": [null]}})),
        any::<i64>().prop_map(Value::from),
        any::<u32>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ]
}

/// An edit of a JSON object: a field set to a value, removed, or added under a new name.
#[derive(Debug, Clone)]
enum FieldEdit {
    Set(usize, Value),
    Remove(usize),
    Add(String, Value),
}

fn field_edits() -> impl Strategy<Value = Vec<FieldEdit>> {
    let edit = prop_oneof![
        4 => (any::<usize>(), hostile_value()).prop_map(|(k, v)| FieldEdit::Set(k, v)),
        1 => any::<usize>().prop_map(FieldEdit::Remove),
        1 => ("[a-z_]{1,12}", hostile_value()).prop_map(|(k, v)| FieldEdit::Add(k, v)),
    ];
    prop::collection::vec(edit, 0..4)
}

fn apply_field_edits(object: &mut Map<String, Value>, edits: &[FieldEdit]) {
    for edit in edits {
        let keys: Vec<String> = object.keys().cloned().collect();
        match edit {
            FieldEdit::Set(k, v) if !keys.is_empty() => {
                object.insert(keys[k % keys.len()].clone(), v.clone());
            }
            FieldEdit::Remove(k) if !keys.is_empty() => {
                object.remove(&keys[k % keys.len()]);
            }
            FieldEdit::Add(k, v) => {
                object.insert(k.clone(), v.clone());
            }
            _ => {}
        }
    }
}

/// An edit of a file's bytes after the structured edits: cut it short, overwrite a byte
/// (possibly making it invalid UTF-8), or append garbage.
#[derive(Debug, Clone)]
enum ByteEdit {
    Truncate(usize),
    Xor(usize, u8),
    Append(Vec<u8>),
}

fn byte_edits() -> impl Strategy<Value = Vec<ByteEdit>> {
    let edit = prop_oneof![
        any::<usize>().prop_map(ByteEdit::Truncate),
        (any::<usize>(), 1..=255u8).prop_map(|(i, x)| ByteEdit::Xor(i, x)),
        prop::collection::vec(any::<u8>(), 1..16).prop_map(ByteEdit::Append),
    ];
    // Mostly none: most cases should reach the checks behind the parser.
    prop_oneof![
        3 => Just(Vec::new()),
        1 => prop::collection::vec(edit, 1..3),
    ]
}

fn apply_byte_edits(bytes: &mut Vec<u8>, edits: &[ByteEdit]) {
    for edit in edits {
        match edit {
            ByteEdit::Truncate(at) => bytes.truncate(at % (bytes.len() + 1)),
            ByteEdit::Xor(i, x) if !bytes.is_empty() => {
                let i = i % bytes.len();
                bytes[i] ^= x;
            }
            ByteEdit::Append(extra) => bytes.extend_from_slice(extra),
            _ => {}
        }
    }
}

/// An edit of a safetensors header: a tensor's dtype, shape or offsets replaced, the tensor
/// dropped, renamed or listed twice, or the metadata replaced.
#[derive(Debug, Clone)]
enum HeaderEdit {
    Dtype(usize, Value),
    Shape(usize, Value),
    Offsets(usize, Value),
    Drop(usize),
    Rename(usize, String),
    Twice(usize, String),
    Metadata(Value),
}

fn dim() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(2),
        Just(4),
        Just(8),
        Just(12),
        Just(1 << 20),
        Just(1 << 32),
        Just(u64::MAX),
        any::<u64>(),
    ]
}

fn header_edits() -> impl Strategy<Value = Vec<HeaderEdit>> {
    let dtype = prop_oneof![
        Just(json!("F32")),
        Just(json!("F16")),
        Just(json!("BF16")),
        Just(json!("F64")),
        Just(json!("I8")),
        Just(json!("I32")),
        Just(json!("U8")),
        Just(json!("BOOL")),
        Just(json!("F8_E4M3")),
        Just(json!("F4")),
        Just(json!("XX")),
        Just(json!(7)),
    ];
    let shape = prop_oneof![
        3 => prop::collection::vec(dim(), 0..4).prop_map(|d| json!(d)),
        1 => hostile_value(),
    ];
    let offsets = prop_oneof![
        3 => (dim(), dim()).prop_map(|(a, b)| json!([a, b])),
        1 => hostile_value(),
    ];
    let name = prop_oneof![
        Just("bert.".to_owned()),
        Just("".to_owned()),
        Just("embeddings.position_ids".to_owned()),
        "[a-z.]{0,12}",
    ];
    let edit = prop_oneof![
        (any::<usize>(), dtype).prop_map(|(k, v)| HeaderEdit::Dtype(k, v)),
        (any::<usize>(), shape).prop_map(|(k, v)| HeaderEdit::Shape(k, v)),
        (any::<usize>(), offsets).prop_map(|(k, v)| HeaderEdit::Offsets(k, v)),
        any::<usize>().prop_map(HeaderEdit::Drop),
        (any::<usize>(), name.clone()).prop_map(|(k, n)| HeaderEdit::Rename(k, n)),
        (any::<usize>(), name).prop_map(|(k, n)| HeaderEdit::Twice(k, n)),
        hostile_value().prop_map(HeaderEdit::Metadata),
    ];
    prop::collection::vec(edit, 0..3)
}

/// The length prefix: kept, set, or moved by a few bytes.
#[derive(Debug, Clone)]
enum Prefix {
    Keep,
    Set(u64),
    Shift(i64),
}

fn prefix() -> impl Strategy<Value = Prefix> {
    prop_oneof![
        6 => Just(Prefix::Keep),
        1 => prop_oneof![Just(0u64), Just(u64::MAX), Just(100_000_001), any::<u64>()]
            .prop_map(Prefix::Set),
        1 => (-9i64..9).prop_map(Prefix::Shift),
    ]
}

/// `from` with `to` put in front, after PEFT's `base_model.model.` when it starts with it.
fn renamed(from: &str, to: &str) -> String {
    match from.strip_prefix("base_model.model.") {
        Some(rest) => format!("base_model.model.{to}{rest}"),
        None => format!("{to}{from}"),
    }
}

/// `bytes` (a valid safetensors file) with its header, prefix and bytes edited.
fn mutate_safetensors(
    bytes: &[u8],
    header_edits: &[HeaderEdit],
    prefix: &Prefix,
    edits: &[ByteEdit],
) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: Map<String, Value> = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    for edit in header_edits {
        let names: Vec<String> = header
            .keys()
            .filter(|k| *k != "__metadata__")
            .cloned()
            .collect();
        let pick = |k: usize| names[k % names.len()].clone();
        if names.is_empty() {
            break;
        }
        match edit {
            HeaderEdit::Dtype(k, v) => header[&pick(*k)]["dtype"] = v.clone(),
            HeaderEdit::Shape(k, v) => header[&pick(*k)]["shape"] = v.clone(),
            HeaderEdit::Offsets(k, v) => header[&pick(*k)]["data_offsets"] = v.clone(),
            HeaderEdit::Drop(k) => {
                header.remove(&pick(*k));
            }
            HeaderEdit::Rename(k, to) => {
                let from = pick(*k);
                let info = header.remove(&from).unwrap();
                header.insert(renamed(&from, to), info);
            }
            HeaderEdit::Twice(k, to) => {
                let from = pick(*k);
                let info = header[&from].clone();
                header.insert(renamed(&from, to), info);
            }
            HeaderEdit::Metadata(v) => {
                header.insert("__metadata__".into(), v.clone());
            }
        }
    }
    let header = serde_json::to_vec(&header).unwrap();
    let len = match prefix {
        Prefix::Keep => header.len() as u64,
        Prefix::Set(n) => *n,
        Prefix::Shift(d) => (header.len() as u64).wrapping_add_signed(*d),
    };
    let mut out = len.to_le_bytes().to_vec();
    out.extend_from_slice(&header);
    out.extend_from_slice(data);
    apply_byte_edits(&mut out, edits);
    out
}

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
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

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
            Err(e) => prop_assert!(matches!(e, TrainError::Format { .. } | TrainError::Io { .. }), "{e:?}"),
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
    let mut listed: Vec<&str> = cases.iter().map(|c| c.0).collect();
    listed.sort_unstable();
    let mut present: Vec<String> = std::fs::read_dir(corpus(&["checkpoints"]))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    present.sort_unstable();
    assert_eq!(listed, present, "every corpus folder has a case");
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
    let mut present: Vec<String> = std::fs::read_dir(corpus(&["cache"]))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    present.sort_unstable();
    let mut listed = cases.to_vec();
    listed.sort_unstable();
    assert_eq!(listed, present, "every corpus file has a case");
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
            matches!(&err, TrainError::Format { path, .. } if path.ends_with("app.json")),
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
