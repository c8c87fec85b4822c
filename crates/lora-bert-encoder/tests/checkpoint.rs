//! Checkpoint loading and saving: round trips, HF name variants, and every kind of bad file.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use lora_bert_encoder::checkpoint::CheckpointError;
use lora_bert_encoder::device::{self, Backend, Device};
use lora_bert_encoder::{BertConfig, BertInput, BertModel, InputError, Route};
use safetensors::{Dtype, SafeTensors};

fn cpu() -> Device {
    device::device(Backend::default_cpu().unwrap()).unwrap()
}

fn tiny_config() -> BertConfig {
    let mut c = BertConfig::new(50, 16, 2, 4, 32);
    c.max_position_embeddings = 24;
    c
}

fn tiny_input(config: &BertConfig, device: &Device) -> BertInput {
    let ids = [2, 7, 9, 11, 3, 2, 5, 3, 0, 0];
    let types = [0, 0, 0, 1, 1, 0, 0, 0, 0, 0];
    let mask = [1, 1, 1, 1, 1, 1, 1, 1, 0, 0];
    BertInput::from_ids(&ids, &types, &mask, [2, 5], config, device).unwrap()
}

fn outputs(model: &BertModel, input: &BertInput) -> Vec<f32> {
    let out = model.forward(input, &Route::Base).unwrap();
    let mut v = out
        .last_hidden_state
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    if let Some(p) = out.pooler_output {
        v.extend(p.into_data().try_into_vec::<f32>().unwrap());
    }
    v
}

type Tensors = BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>;

fn read_tensors(path: &Path) -> Tensors {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(n, v)| (n, (v.dtype(), v.shape().to_vec(), v.data().to_vec())))
        .collect()
}

fn write_tensors(path: &Path, tensors: &Tensors) {
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, (dt, shape, data))| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*dt, shape.clone(), data).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

fn saved_tiny(dir: &Path, pooler: bool) -> (BertModel, BertConfig, std::path::PathBuf) {
    let device = cpu();
    let config = tiny_config();
    let model = BertModel::init(&config, pooler, &device);
    let path = dir.join("model.safetensors");
    model.save_safetensors(&path).unwrap();
    (model, config, path)
}

#[test]
fn save_and_load_round_trip_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let device = cpu();
    let (model, config, path) = saved_tiny(tmp.path(), true);
    let (loaded, report) = BertModel::load_safetensors(&path, &config, &device).unwrap();
    assert_eq!(report, Default::default());
    assert_eq!(model.hf_tensors(), loaded.hf_tensors());
    let input = tiny_input(&config, &device);
    assert_eq!(outputs(&model, &input), outputs(&loaded, &input));

    // The directory form writes config.json too.
    model.save(tmp.path().join("dir")).unwrap();
    let (again, _) = BertModel::load(tmp.path().join("dir"), &device).unwrap();
    assert_eq!(again.config(), model.config());
    assert_eq!(outputs(&again, &input), outputs(&model, &input));
}

#[test]
fn saved_names_and_layouts_are_hugging_faces() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, config, path) = saved_tiny(tmp.path(), true);
    let t = read_tensors(&path);
    assert_eq!(t.len(), 5 + 16 * config.num_hidden_layers + 2);
    let (dt, shape, _) = &t["encoder.layer.1.intermediate.dense.weight"];
    assert_eq!(*dt, Dtype::F32);
    assert_eq!(shape, &vec![32, 16], "HF linear weights are [out, in]");
    assert!(t.contains_key("embeddings.LayerNorm.weight"));
    assert!(t.contains_key("encoder.layer.0.attention.self.query.bias"));
    assert!(t.contains_key("pooler.dense.weight"));
}

#[test]
fn accepts_bert_prefix_gamma_beta_and_position_ids_and_reports_extras() {
    let tmp = tempfile::tempdir().unwrap();
    let device = cpu();
    let (model, config, path) = saved_tiny(tmp.path(), false);
    let mut renamed: Tensors = read_tensors(&path)
        .into_iter()
        .map(|(n, v)| {
            let n = n
                .replace("LayerNorm.weight", "LayerNorm.gamma")
                .replace("LayerNorm.bias", "LayerNorm.beta");
            (format!("bert.{n}"), v)
        })
        .collect();
    let ids: Vec<u8> = (0..24i64).flat_map(|i| i.to_le_bytes()).collect();
    renamed.insert(
        "bert.embeddings.position_ids".into(),
        (Dtype::I64, vec![1, 24], ids),
    );
    renamed.insert(
        "classifier.weight".into(),
        (Dtype::F32, vec![2, 16], vec![0; 128]),
    );
    let prefixed = tmp.path().join("prefixed.safetensors");
    write_tensors(&prefixed, &renamed);

    let (loaded, report) = BertModel::load_safetensors(&prefixed, &config, &device).unwrap();
    assert!(report.bert_prefix);
    assert_eq!(report.unexpected, vec!["classifier.weight".to_string()]);
    assert_eq!(
        report.missing,
        vec!["bert.pooler.dense.weight", "bert.pooler.dense.bias"]
    );
    let input = tiny_input(&config, &device);
    assert_eq!(outputs(&model, &input), outputs(&loaded, &input));
}

#[test]
fn half_precision_weights_load_as_f32() {
    let tmp = tempfile::tempdir().unwrap();
    let device = cpu();
    let (model, config, path) = saved_tiny(tmp.path(), true);
    let halved: Tensors = read_tensors(&path)
        .into_iter()
        .map(|(n, (_, shape, data))| {
            let data = data
                .chunks_exact(4)
                .flat_map(|b| {
                    half::f16::from_f32(f32::from_le_bytes(b.try_into().unwrap())).to_le_bytes()
                })
                .collect();
            (n, (Dtype::F16, shape, data))
        })
        .collect();
    let f16_path = tmp.path().join("f16.safetensors");
    write_tensors(&f16_path, &halved);
    let (loaded, _) = BertModel::load_safetensors(&f16_path, &config, &device).unwrap();
    let input = tiny_input(&config, &device);
    let d = common::max_abs_diff(&outputs(&model, &input), &outputs(&loaded, &input));
    assert!(
        d > 0.0 && d < 1e-2,
        "f16 rounding should change outputs a little: {d}"
    );
}

#[test]
fn missing_tensors_are_all_named() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, config, path) = saved_tiny(tmp.path(), true);
    let mut t = read_tensors(&path);
    t.remove("encoder.layer.1.attention.self.key.weight");
    t.remove("embeddings.LayerNorm.bias");
    t.remove("pooler.dense.bias");
    write_tensors(&path, &t);
    match BertModel::load_safetensors(&path, &config, &cpu()) {
        Err(CheckpointError::Missing { names, path: p }) => {
            assert_eq!(p, path);
            assert_eq!(
                names,
                vec![
                    "embeddings.LayerNorm.bias",
                    "encoder.layer.1.attention.self.key.weight",
                    "pooler.dense.bias"
                ]
            );
        }
        other => panic!("expected Missing, got {other:?}"),
    }
}

#[test]
fn shape_mismatch_names_tensor_and_both_shapes() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, mut config, path) = saved_tiny(tmp.path(), true);
    config.intermediate_size = 48;
    match BertModel::load_safetensors(&path, &config, &cpu()) {
        Err(e @ CheckpointError::Shape { .. }) => {
            let CheckpointError::Shape {
                name,
                expected,
                actual,
                ..
            } = &e
            else {
                unreachable!()
            };
            assert_eq!(name, "encoder.layer.0.intermediate.dense.weight");
            assert_eq!(expected, &vec![48, 16]);
            assert_eq!(actual, &vec![32, 16]);
            let msg = e.to_string();
            assert!(
                msg.contains("model.safetensors") && msg.contains("[48, 16]"),
                "{msg}"
            );
        }
        other => panic!("expected Shape, got {other:?}"),
    }
}

#[test]
fn real_weights_against_a_wrong_config_fail_on_the_first_tensor() {
    let dir = common::minilm_dir();
    let mut config = BertConfig::from_file(dir.join("config.json")).unwrap();
    config.hidden_size = 768;
    match BertModel::load_safetensors(dir.join("model.safetensors"), &config, &cpu()) {
        Err(CheckpointError::Shape {
            name,
            expected,
            actual,
            ..
        }) => {
            assert_eq!(name, "embeddings.word_embeddings.weight");
            assert_eq!(expected, vec![30522, 768]);
            assert_eq!(actual, vec![30522, 384]);
        }
        other => panic!("expected Shape, got {other:?}"),
    }
}

#[test]
fn truncated_and_garbage_files_are_corrupt_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, config, path) = saved_tiny(tmp.path(), true);
    let bytes = std::fs::read(&path).unwrap();
    for (name, data) in [
        ("truncated.safetensors", bytes[..bytes.len() - 100].to_vec()),
        ("header-only.safetensors", bytes[..20].to_vec()),
        (
            "garbage.safetensors",
            b"definitely not a safetensors file".to_vec(),
        ),
        ("empty.safetensors", Vec::new()),
    ] {
        let p = tmp.path().join(name);
        std::fs::write(&p, data).unwrap();
        match BertModel::load_safetensors(&p, &config, &cpu()) {
            Err(e @ CheckpointError::Corrupt { .. }) => {
                assert!(e.to_string().contains(name), "{e}")
            }
            other => panic!("{name}: expected Corrupt, got {other:?}"),
        }
    }
}

#[test]
fn non_finite_and_integer_weights_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, config, path) = saved_tiny(tmp.path(), true);
    let mut t = read_tensors(&path);
    t.get_mut("encoder.layer.0.output.dense.bias").unwrap().2[0..4]
        .copy_from_slice(&f32::NAN.to_le_bytes());
    write_tensors(&path, &t);
    assert!(matches!(
        BertModel::load_safetensors(&path, &config, &cpu()),
        Err(CheckpointError::NonFinite { name, .. }) if name == "encoder.layer.0.output.dense.bias"
    ));
    let mut t = read_tensors(&path);
    t.insert(
        "pooler.dense.bias".into(),
        (Dtype::I32, vec![16], vec![0; 64]),
    );
    write_tensors(&path, &t);
    assert!(matches!(
        BertModel::load_safetensors(&path, &config, &cpu()),
        Err(CheckpointError::Dtype { .. }) | Err(CheckpointError::NonFinite { .. })
    ));
}

#[test]
fn missing_files_name_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let err = BertModel::load(tmp.path(), &cpu()).unwrap_err();
    assert!(err.to_string().contains("config.json"), "{err}");
    std::fs::write(
        tmp.path().join("config.json"),
        tiny_config().to_json_string(),
    )
    .unwrap();
    let err = BertModel::load(tmp.path(), &cpu()).unwrap_err();
    assert!(matches!(err, CheckpointError::Io { .. }));
    assert!(err.to_string().contains("model.safetensors"), "{err}");
    std::fs::write(tmp.path().join("config.json"), "{\"hidden_size\": 16,}").unwrap();
    let err = BertModel::load(tmp.path(), &cpu()).unwrap_err();
    assert!(err.to_string().contains("config.json"), "{err}");
}

#[test]
fn bad_inputs_are_typed_errors() {
    let device = cpu();
    let config = tiny_config();
    let model = BertModel::init(&config, false, &device);
    let ok = |ids: &[u32], types: &[u32], shape| {
        let mask = vec![1; ids.len()];
        BertInput::from_ids(ids, types, &mask, shape, &config, &device)
    };
    assert_eq!(
        ok(&[], &[], [0, 0]).unwrap_err(),
        InputError::Empty {
            batch: 0,
            seq_len: 0
        }
    );
    let long = vec![1; 25];
    assert_eq!(
        ok(&long, &[0; 25], [1, 25]).unwrap_err(),
        InputError::TooLong {
            seq_len: 25,
            max: 24
        }
    );
    assert!(matches!(
        ok(&[1, 50], &[0, 0], [1, 2]).unwrap_err(),
        InputError::TokenOutOfVocab {
            id: 50,
            example: 0,
            position: 1,
            ..
        }
    ));
    assert!(matches!(
        ok(&[1, 2], &[0, 2], [1, 2]).unwrap_err(),
        InputError::TokenTypeOutOfRange { id: 2, .. }
    ));
    assert!(matches!(
        ok(&[1, 2, 3], &[0, 0, 0], [2, 2]).unwrap_err(),
        InputError::Shape(_)
    ));
    let input = tiny_input(&config, &device);
    assert_eq!(
        model
            .forward(&input, &Route::per_example([Some(0)]))
            .unwrap_err(),
        InputError::RouteLength { route: 1, batch: 2 }
    );
}

#[test]
fn padding_does_not_leak_into_real_tokens() {
    let device = cpu();
    let config = tiny_config();
    let model = BertModel::init(&config, false, &device);
    let short =
        BertInput::from_ids(&[2, 7, 3], &[0; 3], &[1; 3], [1, 3], &config, &device).unwrap();
    let padded = BertInput::from_ids(
        &[2, 7, 3, 9, 9],
        &[0; 5],
        &[1, 1, 1, 0, 0],
        [1, 5],
        &config,
        &device,
    )
    .unwrap();
    let a = model
        .forward(&short, &Route::Base)
        .unwrap()
        .last_hidden_state;
    let b = model
        .forward(&padded, &Route::Base)
        .unwrap()
        .last_hidden_state
        .narrow(1, 0, 3);
    let d = common::max_abs_diff(
        &a.into_data().try_into_vec::<f32>().unwrap(),
        &b.into_data().try_into_vec::<f32>().unwrap(),
    );
    assert!(d < 1e-5, "padding changed real tokens by {d}");
}

#[test]
fn concurrent_saves_leave_one_complete_file() {
    let tmp = tempfile::tempdir().unwrap();
    let device = cpu();
    let config = tiny_config();
    let path = tmp.path().join("model.safetensors");
    let models: Vec<BertModel> = (0..4)
        .map(|_| BertModel::init(&config, true, &device))
        .collect();
    std::thread::scope(|s| {
        for m in &models {
            let path = &path;
            s.spawn(move || m.save_safetensors(path).unwrap());
        }
    });
    let (loaded, _) = BertModel::load_safetensors(&path, &config, &device).unwrap();
    assert!(models.iter().any(|m| m.hf_tensors() == loaded.hf_tensors()));
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers,
        vec![std::ffi::OsString::from("model.safetensors")]
    );
}

/// A config asking for far more layers than the file holds stops after a bounded list of
/// missing tensors, without building (or allocating) the layers it lacks.
#[test]
fn a_config_with_absurd_layer_counts_fails_fast_and_small() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, mut config, path) = saved_tiny(tmp.path(), true);
    config.num_hidden_layers = 100_000;
    let started = std::time::Instant::now();
    match BertModel::load_safetensors(&path, &config, &cpu()) {
        Err(CheckpointError::Missing { names, .. }) => {
            assert_eq!(names.len(), 33, "{names:?}");
            assert_eq!(names[0], "encoder.layer.2.attention.self.query.weight");
            assert!(names[32].contains("listing stopped"), "{names:?}");
        }
        other => panic!("expected Missing, got {other:?}"),
    }
    assert!(started.elapsed().as_secs() < 5, "{:?}", started.elapsed());
}

/// Sizes whose model could not fit in memory (or whose count overflows) are refused by the
/// config check, naming the field, before any allocation.
#[test]
fn configs_beyond_the_parameter_limit_are_refused() {
    for (field, edit) in [
        (
            "num_hidden_layers",
            Box::new(|c: &mut BertConfig| c.num_hidden_layers = 1_000_000_000_000_000_000)
                as Box<dyn Fn(&mut BertConfig)>,
        ),
        (
            "vocab_size",
            Box::new(|c: &mut BertConfig| c.vocab_size = 1_000_000_000_000),
        ),
        (
            "num_hidden_layers",
            Box::new(|c: &mut BertConfig| {
                c.hidden_size = 1 << 20;
                c.num_attention_heads = 1;
            }),
        ),
        // Products that overflow even u128 arithmetic saturate instead of wrapping.
        (
            "num_hidden_layers",
            Box::new(|c: &mut BertConfig| {
                c.hidden_size = usize::MAX;
                c.intermediate_size = usize::MAX;
                c.num_attention_heads = 1;
            }),
        ),
    ] {
        let mut config = tiny_config();
        edit(&mut config);
        let err = config.validate().unwrap_err();
        assert!(
            matches!(&err, lora_bert_encoder::ConfigError::Invalid { field: f, message, .. }
                if *f == field && message.contains("parameters")),
            "{field}: {err:?}"
        );
        // Loading goes through the same check: no allocation, a typed error.
        let tmp = tempfile::tempdir().unwrap();
        let (_, _, path) = saved_tiny(tmp.path(), true);
        assert!(matches!(
            BertModel::load_safetensors(&path, &config, &cpu()),
            Err(CheckpointError::Config(_))
        ));
    }
    // all-MiniLM-L6-v2's and BERT-large's sizes pass.
    let mut large = BertConfig::new(30522, 1024, 24, 16, 4096);
    large.max_position_embeddings = 512;
    large.validate().unwrap();
}
