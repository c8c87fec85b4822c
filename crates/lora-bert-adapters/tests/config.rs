//! `adapter_config.json` and weight files that lora-bert must refuse, each with the name at
//! fault.

mod common;

use std::path::Path;

use common::*;
use lora_bert_adapters::{AdaptedModel, AdapterError, Ia3, Lora};
use serde_json::{Value, json};

/// A copy of fixture `name` in a temporary directory, with its config edited by `edit`.
fn edited(name: &str, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixture(name);
    std::fs::copy(
        src.join("adapter_model.safetensors"),
        tmp.path().join("adapter_model.safetensors"),
    )
    .unwrap();
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("adapter_config.json")).unwrap())
            .unwrap();
    edit(config.as_object_mut().unwrap());
    std::fs::write(
        tmp.path().join("adapter_config.json"),
        serde_json::to_string_pretty(&config).unwrap(),
    )
    .unwrap();
    tmp
}

fn load(dir: &Path) -> Result<usize, AdapterError> {
    let mut model = AdaptedModel::<Lora>::new(
        lora_bert_encoder::BertModel::load(minilm_dir(), &cpu())
            .unwrap()
            .0,
    );
    model.load_group("g", dir)
}

fn unsupported_field(err: AdapterError) -> String {
    match err {
        AdapterError::Unsupported { field, .. } => field,
        other => panic!("expected Unsupported, got {other}"),
    }
}

#[test]
fn features_lora_bert_does_not_implement_are_refused_by_name() {
    let cases: Vec<(&str, Value)> = vec![
        ("use_dora", json!(true)),
        ("rank_pattern", json!({"query": 8})),
        ("alpha_pattern", json!({"value": 32})),
        ("lora_bias", json!(true)),
        ("bias", json!("all")),
        ("fan_in_fan_out", json!(true)),
        ("modules_to_save", json!(["classifier"])),
        ("init_lora_weights", json!("pissa")),
        ("layers_pattern", json!("h")),
        ("use_qalora", json!(true)),
        ("layer_replication", json!([[0, 4], [2, 5]])),
        ("some_future_option", json!({"enabled": 1})),
    ];
    for (field, value) in cases {
        let dir = edited("qv-last2-rslora", |c| {
            c.insert(field.to_owned(), value.clone());
        });
        let err = load(dir.path()).unwrap_err();
        let msg = err.to_string();
        assert_eq!(unsupported_field(err), field, "{msg}");
        assert!(
            msg.contains("adapter_config.json"),
            "the file is named: {msg}"
        );
    }
    // Unknown fields that mean "off" pass, as do informational ones.
    let dir = edited("qv-last2-rslora", |c| {
        c.insert("some_future_option".into(), Value::Null);
        c.insert("another_one".into(), json!(false));
        c.insert("task_type".into(), json!("FEATURE_EXTRACTION"));
    });
    load(dir.path()).unwrap();
}

#[test]
fn malformed_configs_are_syntax_errors() {
    let dir = edited("qv-last2-rslora", |c| {
        c.insert("r".into(), json!("four"));
    });
    let err = load(dir.path()).unwrap_err();
    assert!(
        matches!(&err, AdapterError::ConfigSyntax { message, .. } if message.contains("`r`")),
        "{err}"
    );
    let dir = edited("qv-last2-rslora", |c| {
        c.remove("target_modules");
    });
    assert!(matches!(
        load(dir.path()),
        Err(AdapterError::ConfigSyntax { .. })
    ));
    std::fs::write(
        dir.path().join("adapter_config.json"),
        "{\n  \"r\": 4,\n  oops\n}",
    )
    .unwrap();
    let err = load(dir.path()).unwrap_err();
    assert!(
        matches!(&err, AdapterError::ConfigSyntax { message, .. } if message.contains("line 3")),
        "{err}"
    );
    // A regular expression cannot be combined with layers_to_transform (PEFT refuses it too).
    let dir = edited("regex-r2", |c| {
        c.insert("layers_to_transform".into(), json!([1]));
    });
    assert_eq!(
        unsupported_field(load(dir.path()).unwrap_err()),
        "layers_to_transform"
    );
    // A LoRA loader does not read an IA³ file, nor the reverse.
    let err = load(&fixture("ia3-kv-ff")).unwrap_err();
    assert!(
        matches!(&err, AdapterError::PeftType { found, .. } if found == "IA3"),
        "{err}"
    );
    let mut ia3 = AdaptedModel::<Ia3>::new(
        lora_bert_encoder::BertModel::load(minilm_dir(), &cpu())
            .unwrap()
            .0,
    );
    assert!(matches!(
        ia3.load_group("g", fixture("key-dense-r2")),
        Err(AdapterError::PeftType { .. })
    ));
    // Missing files name the file.
    let err = load(Path::new("/nonexistent/adapter")).unwrap_err();
    assert!(
        matches!(&err, AdapterError::Io { path, .. } if path.ends_with("adapter_config.json")),
        "{err}"
    );
}

#[test]
fn bad_weights_are_typed_errors() {
    let dir = edited("qv-last2-rslora", |_| {});
    let weights = dir.path().join("adapter_model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..100]).unwrap();
    let err = load(dir.path()).unwrap_err();
    assert!(
        matches!(&err, AdapterError::Corrupt { path, .. } if path == &weights),
        "{err}"
    );

    // A NaN in a tensor.
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = file
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.shape().to_vec(), v.data().to_vec()))
        .collect();
    tensors[0].2[..4].copy_from_slice(&f32::NAN.to_le_bytes());
    let poisoned = tensors[0].0.clone();
    let views = tensors.iter().map(|(n, s, d)| {
        (
            n.clone(),
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d).unwrap(),
        )
    });
    std::fs::write(&weights, safetensors::serialize(views, None).unwrap()).unwrap();
    let err = load(dir.path()).unwrap_err();
    assert!(
        matches!(&err, AdapterError::NonFinite { name, .. } if *name == poisoned),
        "{err}"
    );
}
