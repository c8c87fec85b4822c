//! Hostile input for the PEFT loaders: `adapter_config.json` and `adapter_model.safetensors`
//! of LoRA and IA³ groups. Generated inputs (valid folders, mutated) must give a typed error
//! that leaves the model as it was, or a group that fits the model, never a panic, with an
//! allocation bounded by the files' size; merging what loaded gives finite weights or a typed
//! error. The committed corpus in `tests/corpus/peft/` pins the outcome of named cases.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::Tensor;
use lora_bert_adapters::{
    AdaptedModel, Adapter, AdapterConfig, AdapterError, Ia3, Ia3Config, Lora, LoraConfig,
    ModuleSelector, Targets,
};
use lora_bert_encoder::device::{self, Backend, Device};
use lora_bert_encoder::{BertConfig, BertModel};
use lora_bert_testkit::alloc::{Counting, MIB, peak_of, serial};
use lora_bert_testkit::corpus::assert_every_file_has_a_case;
use lora_bert_testkit::mutate::{
    ByteEdit, FieldEdit, HeaderEdit, Prefix, apply_byte_edits, apply_field_edits, byte_edits,
    field_edits, header_edits, hostile_value, mutate_safetensors, prefix,
};
use proptest::prelude::*;
use serde_json::{Value, json};

// The counting allocator bounds what each call allocates (see lora_bert_testkit::alloc).
#[global_allocator]
static ALLOCATOR: Counting = Counting;

// ---------------------------------------------------------------------------------------------
// Fixtures

fn cpu() -> Device {
    device::device(Backend::default_cpu().unwrap()).unwrap()
}

/// Hidden size 8, 2 layers, feed-forward 16: the model the corpus was written for.
fn tiny_config() -> BertConfig {
    let mut c = BertConfig::new(12, 8, 2, 2, 16);
    c.max_position_embeddings = 8;
    c
}

/// One backbone for the whole file (its values do not matter, only its shapes).
fn backbone() -> BertModel {
    static MODEL: OnceLock<Mutex<BertModel>> = OnceLock::new();
    MODEL
        .get_or_init(|| Mutex::new(BertModel::init(&tiny_config(), true, &cpu())))
        .lock()
        .unwrap()
        .clone()
}

/// A group's two files as `save_group` writes them: config text and weights.
#[derive(Debug, Clone)]
struct Files {
    config: Vec<u8>,
    weights: Vec<u8>,
}

/// Sets every parameter to one value.
struct Fill(f32);

impl ModuleMapper for Fill {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let scale = self.0;
        param.map(|t| t.ones_like() * scale)
    }
}

fn saved<S: Adapter>(config: S::Config, scale: f32) -> Files {
    let mut model = AdaptedModel::<S>::new(backbone());
    model.add_group("g", config).unwrap();
    // Non-zero weights everywhere (LoRA's B starts at zero); the backbone's do not matter.
    let model = model.map(&mut Fill(scale));
    let dir = tempfile::tempdir().unwrap();
    model.save_group("g", dir.path()).unwrap();
    Files {
        config: std::fs::read(dir.path().join("adapter_config.json")).unwrap(),
        weights: std::fs::read(dir.path().join("adapter_model.safetensors")).unwrap(),
    }
}

fn lora_files() -> &'static Files {
    static FILES: OnceLock<Files> = OnceLock::new();
    FILES.get_or_init(|| {
        let config = LoraConfig::new(2, Targets::new(["query", "value", "dense"])).alpha(4.0);
        saved::<Lora>(config, 0.25)
    })
}

fn ia3_files() -> &'static Files {
    static FILES: OnceLock<Files> = OnceLock::new();
    FILES.get_or_init(|| {
        let config = Ia3Config::new(Targets::new(["key", "value", "output.dense"]))
            .feedforward(ModuleSelector::names(["output.dense"]));
        saved::<Ia3>(config, 1.5)
    })
}

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus/peft")
        .join(name)
}

/// Regular expressions and module names that select oddly, or compile to huge automata.
fn selector_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!("(a+)+$")),
        Just(json!(".*")),
        Just(json!("all-linear")),
        Just(json!("(query|value){1000}{1000}")),
        Just(json!("[")),
        Just(json!(r"encoder\.layer\.0\..*")),
        Just(json!(["query", "", "pooler.dense", "layer.9.output.dense"])),
        Just(json!([1, null])),
        Just(json!([7])),
        Just(json!([0, 1, 1, 0])),
        Just(json!([-1])),
        Just(json!([u64::MAX])),
        hostile_value(),
    ]
}

/// Edits of the fields the schemes read, besides the random ones.
fn peft_edits() -> impl Strategy<Value = Vec<(&'static str, Value)>> {
    let field = prop_oneof![
        Just("r"),
        Just("lora_alpha"),
        Just("lora_dropout"),
        Just("use_rslora"),
        Just("target_modules"),
        Just("exclude_modules"),
        Just("layers_to_transform"),
        Just("layers_pattern"),
        Just("feedforward_modules"),
        Just("peft_type"),
        Just("init_lora_weights"),
    ];
    prop::collection::vec((field, selector_value()), 0..3)
}

/// The folder of `files` with its config's fields edited and both files' bytes edited.
fn write_mutated(
    dir: &Path,
    files: &Files,
    fields: &[(&'static str, Value)],
    edits: &[FieldEdit],
    config_bytes: &[ByteEdit],
    weights: (&[HeaderEdit], &Prefix, &[ByteEdit]),
) -> usize {
    let Value::Object(mut object) = serde_json::from_slice(&files.config).unwrap() else {
        unreachable!()
    };
    for (field, value) in fields {
        object.insert((*field).to_owned(), value.clone());
    }
    apply_field_edits(&mut object, edits);
    let mut config = Value::Object(object).to_string().into_bytes();
    apply_byte_edits(&mut config, config_bytes);
    let (header, prefix, bytes) = weights;
    let weights = mutate_safetensors(&files.weights, header, prefix, bytes);
    std::fs::write(dir.join("adapter_config.json"), &config).unwrap();
    std::fs::write(dir.join("adapter_model.safetensors"), &weights).unwrap();
    config.len() + weights.len()
}

/// Loads the folder as group `g` into a fresh model, with the invariants of every outcome:
/// a failed load leaves no group behind; a loaded group covers sites of the model, merges
/// to finite weights (or refuses to, typed) and unmerges back.
fn load_and_check<S: Adapter>(
    dir: &Path,
    size: usize,
) -> Result<Result<(), AdapterError>, TestCaseError>
where
    S::Config: AdapterConfig,
{
    let mut model = AdaptedModel::<S>::new(backbone());
    let (loaded, peak) = peak_of(|| model.load_group("g", dir));
    prop_assert!(
        peak < 2 * MIB + 16 * size,
        "{peak} bytes for {size} bytes of files"
    );
    let names: Vec<&str> = model.group_names().collect();
    match loaded {
        Err(e) => {
            prop_assert!(names.is_empty(), "a failed load left {names:?}");
            // Io only for a file that is not UTF-8 (both files exist).
            let io_ok = matches!(&e, AdapterError::Io { source, .. }
                if source.kind() == std::io::ErrorKind::InvalidData);
            prop_assert!(
                io_ok
                    || !matches!(
                        e,
                        AdapterError::Io { .. } | AdapterError::NonFiniteMerge { .. }
                    ),
                "{e}"
            );
            Ok(Err(e))
        }
        Ok(_) => {
            prop_assert_eq!(names, ["g"]);
            prop_assert!(!model.sites("g").unwrap().is_empty());
            let before = model.model.hf_tensors();
            match model.merge("g") {
                Ok(()) => {
                    for (name, (_, values)) in model.model.hf_tensors() {
                        prop_assert!(values.iter().all(|v| v.is_finite()), "{name}");
                    }
                    model.unmerge().unwrap();
                    for (name, (_, values)) in model.model.hf_tensors() {
                        prop_assert!(values.iter().all(|v| v.is_finite()), "{name}");
                    }
                }
                Err(e) => {
                    prop_assert!(matches!(e, AdapterError::NonFiniteMerge { .. }), "{e}");
                    prop_assert_eq!(model.merged(), None);
                    prop_assert!(
                        model.model.hf_tensors() == before,
                        "a refused merge changed weights"
                    );
                }
            }
            Ok(Ok(()))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(ProptestConfig { cases: lora_bert_testkit::cases(128), ..ProptestConfig::default() })]

    /// A LoRA folder with its config mutated (fields the scheme reads and random ones, bytes).
    #[test]
    fn lora_adapter_config(
        fields in peft_edits(),
        edits in field_edits(),
        bytes in byte_edits(),
    ) {
        let _serial = serial();
        let dir = tempfile::tempdir().unwrap();
        let size = write_mutated(dir.path(), lora_files(), &fields, &edits, &bytes, (&[], &Prefix::Keep, &[]));
        load_and_check::<Lora>(dir.path(), size)?.ok();
    }

    /// A LoRA folder with its weights mutated (header, length prefix, bytes).
    #[test]
    fn lora_adapter_weights(
        header in header_edits(),
        prefix in prefix(),
        bytes in byte_edits(),
    ) {
        let _serial = serial();
        let dir = tempfile::tempdir().unwrap();
        let size = write_mutated(dir.path(), lora_files(), &[], &[], &[], (&header, &prefix, &bytes));
        load_and_check::<Lora>(dir.path(), size)?.ok();
    }

    /// An IA³ folder with both files mutated.
    #[test]
    fn ia3_adapter(
        fields in peft_edits(),
        edits in field_edits(),
        header in header_edits(),
        prefix in prefix(),
        bytes in byte_edits(),
    ) {
        let _serial = serial();
        let dir = tempfile::tempdir().unwrap();
        let size = write_mutated(dir.path(), ia3_files(), &fields, &edits, &[], (&header, &prefix, &bytes));
        load_and_check::<Ia3>(dir.path(), size)?.ok();
    }
}

// ---------------------------------------------------------------------------------------------
// Corpus

/// Loads corpus folder `name` as a LoRA or IA³ group into a fresh model.
fn load_corpus(name: &str) -> Result<(), AdapterError> {
    let (result, peak) = if name.starts_with("ia3") {
        let mut model = AdaptedModel::<Ia3>::new(backbone());
        peak_of(|| model.load_group("g", corpus(name)).map(drop))
    } else {
        let mut model = AdaptedModel::<Lora>::new(backbone());
        peak_of(|| model.load_group("g", corpus(name)).map(drop))
    };
    assert!(peak < 2 * MIB, "{name}: {peak} bytes");
    result
}

/// Every folder of `tests/corpus/peft` with the outcome it must have.
#[test]
fn corpus_peft_folders() {
    let _serial = serial();
    type Check = fn(&AdapterError) -> bool;
    let cases: Vec<(&str, Option<Check>)> = vec![
        ("lora-valid", None),
        ("lora-alpha-1e308", None),
        ("lora-f16", None),
        ("ia3-valid", None),
        ("ia3-zero-scale", None),
        (
            "lora-r-huge",
            Some(
                |e| matches!(e, AdapterError::InvalidConfig { message, .. } if message.contains("exceeds")),
            ),
        ),
        (
            "lora-r-negative",
            Some(
                |e| matches!(e, AdapterError::ConfigSyntax { message, .. } if message.contains("`r`")),
            ),
        ),
        (
            "lora-r-zero",
            Some(|e| matches!(e, AdapterError::InvalidConfig { .. })),
        ),
        (
            "lora-alpha-negative",
            Some(|e| matches!(e, AdapterError::InvalidConfig { .. })),
        ),
        (
            "lora-dropout-one",
            Some(|e| matches!(e, AdapterError::InvalidConfig { .. })),
        ),
        (
            "lora-use-dora",
            Some(|e| matches!(e, AdapterError::Unsupported { field, .. } if field == "use_dora")),
        ),
        (
            "lora-unknown-field",
            Some(
                |e| matches!(e, AdapterError::Unsupported { field, .. } if field == "megabytes_of_fun"),
            ),
        ),
        (
            "lora-layers-out-of-range",
            Some(|e| matches!(e, AdapterError::LayerOutOfRange { layer: 7, .. })),
        ),
        (
            "lora-regex-too-big",
            Some(|e| matches!(e, AdapterError::InvalidConfig { .. })),
        ),
        (
            "lora-regex-invalid",
            Some(|e| matches!(e, AdapterError::InvalidConfig { .. })),
        ),
        (
            "lora-peft-type-ia3",
            Some(|e| matches!(e, AdapterError::PeftType { .. })),
        ),
        (
            "lora-config-not-object",
            Some(|e| matches!(e, AdapterError::ConfigSyntax { .. })),
        ),
        (
            "lora-config-truncated",
            Some(|e| matches!(e, AdapterError::ConfigSyntax { .. })),
        ),
        (
            "lora-duplicate-tensor",
            Some(|e| {
                matches!(e, AdapterError::DuplicateTensor { name, .. }
                if name == "base_model.model.encoder.layer.0.attention.self.query.lora_A.weight")
            }),
        ),
        (
            "lora-missing-tensor",
            Some(
                |e| matches!(e, AdapterError::MissingTensor { name, .. } if name.ends_with("query.lora_A.weight")),
            ),
        ),
        (
            "lora-extra-tensor",
            Some(
                |e| matches!(e, AdapterError::UnexpectedTensors { names, .. } if names.len() == 1),
            ),
        ),
        (
            "lora-shape-swapped",
            Some(|e| matches!(e, AdapterError::Shape { .. })),
        ),
        (
            "lora-inf-value",
            Some(|e| matches!(e, AdapterError::NonFinite { .. })),
        ),
        (
            "lora-i64",
            Some(|e| matches!(e, AdapterError::Dtype { .. })),
        ),
        (
            "lora-weights-truncated",
            Some(|e| matches!(e, AdapterError::Corrupt { .. })),
        ),
        (
            "ia3-layers-to-transform",
            Some(|e| matches!(e, AdapterError::InvalidConfig { .. })),
        ),
        (
            "ia3-wide-scale",
            Some(|e| matches!(e, AdapterError::Shape { .. })),
        ),
    ];
    assert_every_file_has_a_case(&corpus(""), cases.iter().map(|c| c.0));
    for (name, check) in cases {
        match (load_corpus(name), check) {
            (Ok(()), None) => {}
            (Err(e), Some(check)) => {
                assert!(check(&e), "{name}: {e:?}");
                assert!(!e.to_string().is_empty());
            }
            (result, _) => panic!("{name}: {result:?}"),
        }
    }
}

/// A LoRA update that overflows f32 (lora_alpha 1e308, finite in the file) is refused by
/// merge with a typed error, and the model keeps its weights and stays unmerged.
#[test]
fn merging_an_overflowing_lora_is_refused_and_changes_nothing() {
    let _serial = serial();
    let mut model = AdaptedModel::<Lora>::new(backbone());
    model.load_group("g", corpus("lora-alpha-1e308")).unwrap();
    let before = model.model.hf_tensors();
    let err = model.merge("g").unwrap_err();
    assert!(
        matches!(&err, AdapterError::NonFiniteMerge { group, unmerge: false, .. } if group == "g"),
        "{err:?}"
    );
    assert_eq!(model.merged(), None);
    assert!(model.model.hf_tensors() == before, "weights changed");
    assert!(matches!(model.unmerge(), Err(AdapterError::NotMerged)));
}

/// An IA³ scale of zero would merge to zero weights that no unmerge can restore (it divides
/// by the scale): the merge is refused, typed, and the model is untouched. A non-zero scale
/// merges and unmerges back.
#[test]
fn merging_a_zero_ia3_scale_is_refused_and_changes_nothing() {
    let _serial = serial();
    let mut model = AdaptedModel::<Ia3>::new(backbone());
    model.load_group("zero", corpus("ia3-zero-scale")).unwrap();
    model.load_group("ok", corpus("ia3-valid")).unwrap();
    let before = model.model.hf_tensors();
    let err = model.merge("zero").unwrap_err();
    assert!(
        matches!(&err, AdapterError::NonFiniteMerge { group, unmerge: false, site }
            if group == "zero" && site.ends_with("attention.self.key")),
        "{err:?}"
    );
    assert_eq!(model.merged(), None);
    assert!(model.model.hf_tensors() == before, "weights changed");

    model.merge("ok").unwrap();
    model.unmerge().unwrap();
    for (name, (_, values)) in model.model.hf_tensors() {
        let worst = values
            .iter()
            .zip(&before[&name].1)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-6, "{name}: off by {worst}");
    }
}
