//! MPNet against Hugging Face transformers.
//!
//! `tests/fixtures/mpnet-tiny/` is a tiny random `MPNetModel` (2 layers, hidden 32, 4 heads,
//! 32 relative-position buckets) with what transformers 5.24 computes for a padded batch of
//! three sequences (40, 23 and 7 tokens, so relative distances reach the log-spaced buckets);
//! `tests/fixtures/all-mpnet-base-v2.golden.json` holds a few numbers of the real model. Both
//! come from `scripts/mpnet_fixture.py` (references in float64, so a correct float32 encoder
//! lands within about 1e-6).

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::{Int, Tensor, TensorData};
use common::{devices, f32s, max_abs_diff, u32s};
use lora_bert_encoder::mpnet::{position_ids, relative_position_bucket};
use lora_bert_encoder::{
    BertTokenizer, CheckpointError, Device, LengthPolicy, MpnetConfig, MpnetModel, mean_pool,
};
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

const ATOL: f32 = 1e-4;

fn tiny_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mpnet-tiny")
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn expected() -> Value {
    read_json(&tiny_dir().join("expected.json"))
}

/// Nested JSON arrays of numbers, flattened.
fn flat(v: &Value) -> Vec<f32> {
    match v {
        Value::Array(items) => items.iter().flat_map(flat).collect(),
        x => vec![x.as_f64().expect("number") as f32],
    }
}

fn rows(v: &Value) -> Vec<Vec<u32>> {
    v.as_array().unwrap().iter().map(u32s).collect()
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().unwrap()
}

#[test]
fn tiny_model_matches_transformers_on_a_padded_batch() {
    let e = expected();
    let ids = rows(&e["input_ids"]);
    let mask = rows(&e["attention_mask"]);
    let shape = [ids.len(), ids[0].len()];
    let ids: Vec<u32> = ids.concat();
    let mask: Vec<u32> = mask.concat();
    for (backend, device) in devices() {
        let (model, report) = MpnetModel::load(tiny_dir(), &device).unwrap();
        assert!(
            report.missing.is_empty() && report.unexpected.is_empty(),
            "{report:?}"
        );
        assert!(!report.bert_prefix);
        let input = model.input_from_ids(&ids, &mask, shape, &device).unwrap();
        let out = model.forward_all(&input).unwrap();
        let last = max_abs_diff(
            &to_vec(out.last_hidden_state.clone()),
            &flat(&e["last_hidden_state"]),
        );
        let pooled = max_abs_diff(
            &to_vec(out.pooler_output.clone().unwrap()),
            &flat(&e["pooler_output"]),
        );
        assert_eq!(out.hidden_states.len(), 3);
        let mut states = 0f32;
        for (i, reference) in e["hidden_states"].as_array().unwrap().iter().enumerate() {
            states = states.max(max_abs_diff(
                &to_vec(out.hidden_states[i].clone()),
                &flat(reference),
            ));
        }
        let same_last = max_abs_diff(
            &to_vec(out.hidden_states[2].clone()),
            &to_vec(out.last_hidden_state.clone()),
        );
        eprintln!(
            "{backend}: max |diff| last_hidden_state {last:.3e}, pooler_output {pooled:.3e}, \
             hidden_states {states:.3e}"
        );
        assert!(last <= ATOL, "{backend}: last_hidden_state off by {last}");
        assert!(pooled <= ATOL, "{backend}: pooler_output off by {pooled}");
        assert!(states <= ATOL, "{backend}: hidden_states off by {states}");
        assert_eq!(same_last, 0.0);

        // forward (without hidden states) agrees, and padding does not leak: the shortest
        // sequence alone gives its rows of the padded batch.
        let plain = model.forward(&input).unwrap();
        assert!(plain.hidden_states.is_empty());
        assert_eq!(
            to_vec(plain.last_hidden_state.clone()),
            to_vec(out.last_hidden_state.clone())
        );
        let [batch, seq] = shape;
        let n = mask[(batch - 1) * seq..]
            .iter()
            .filter(|&&m| m == 1)
            .count();
        let alone_ids = &ids[(batch - 1) * seq..(batch - 1) * seq + n];
        let alone = model
            .input_from_ids(alone_ids, &vec![1; n], [1, n], &device)
            .unwrap();
        let alone = to_vec(model.forward(&alone).unwrap().last_hidden_state);
        let hidden = to_vec(out.last_hidden_state);
        let width = model.config().hidden_size;
        let start = (batch - 1) * seq * width;
        let padded_rows = &hidden[start..start + n * width];
        let leak = max_abs_diff(&alone, padded_rows);
        assert!(
            leak <= 1e-5,
            "{backend}: padding changes real tokens by {leak}"
        );
    }
}

#[test]
fn bucket_table_matches_transformers() {
    let e = expected();
    let table = &e["relative_position_bucket"];
    let num = table["num_buckets"].as_u64().unwrap() as usize;
    let max = table["max_distance"].as_u64().unwrap() as usize;
    let positions: Vec<i64> = table["relative_positions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    let buckets = u32s(&table["buckets"]);
    assert_eq!(positions.len(), 401);
    for (p, b) in positions.iter().zip(buckets) {
        assert_eq!(
            relative_position_bucket(*p, num, max),
            b as usize,
            "relative position {p}"
        );
    }
}

#[test]
fn position_ids_start_after_the_padding_index() {
    let device = Device::flex();
    let ids = Tensor::<2, Int>::from_data(
        TensorData::new(vec![0i64, 7, 9, 2, 1, 1, 0, 2, 1, 1, 1, 1], [2, 6]),
        &device,
    );
    let positions = position_ids(ids, 1).into_data().convert::<i64>();
    assert_eq!(
        positions.try_to_vec::<i64>().unwrap(),
        vec![2, 3, 4, 5, 1, 1, 2, 3, 1, 1, 1, 1]
    );
}

#[test]
fn refuses_inputs_longer_than_the_position_table_allows() {
    let device = Device::flex();
    let (model, _) = MpnetModel::load(tiny_dir(), &device).unwrap();
    assert_eq!(model.config().max_sequence_length(), 62);
    let n = 63;
    let err = model
        .input_from_ids(&vec![5; n], &vec![1; n], [1, n], &device)
        .unwrap_err();
    assert!(err.to_string().contains("62"), "{err}");
    let err = model
        .input_from_ids(&[5, 500], &[1, 1], [1, 2], &device)
        .unwrap_err();
    assert!(err.to_string().contains("500"), "{err}");
}

/// The fixture's tensors as (name -> (dtype, shape, bytes)).
fn tensors() -> HashMap<String, (Dtype, Vec<usize>, Vec<u8>)> {
    let bytes = std::fs::read(tiny_dir().join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            (
                name,
                (view.dtype(), view.shape().to_vec(), view.data().to_vec()),
            )
        })
        .collect()
}

/// Writes `tensors` plus the fixture's config into a fresh model directory.
fn write_model(dir: &Path, tensors: &HashMap<String, (Dtype, Vec<usize>, Vec<u8>)>) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(tiny_dir().join("config.json"), dir.join("config.json")).unwrap();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(name, (dtype, shape, data))| {
            (
                name.clone(),
                safetensors::tensor::TensorView::new(*dtype, shape.clone(), data).unwrap(),
            )
        })
        .collect();
    let path = dir.join("model.safetensors");
    safetensors::serialize_to_file(views, None, &path).unwrap();
    path
}

#[test]
fn bad_checkpoints_give_typed_errors_naming_tensor_and_file() {
    let device = Device::flex();
    let tmp = tempfile::tempdir().unwrap();

    // Missing tensor.
    let mut t = tensors();
    t.remove("encoder.relative_attention_bias.weight").unwrap();
    t.remove("encoder.layer.1.attention.attn.k.bias").unwrap();
    let path = write_model(&tmp.path().join("missing"), &t);
    match MpnetModel::load(tmp.path().join("missing"), &device) {
        Err(CheckpointError::Missing { path: p, names }) => {
            assert_eq!(p, path);
            assert_eq!(
                names,
                [
                    "encoder.layer.1.attention.attn.k.bias",
                    "encoder.relative_attention_bias.weight"
                ]
            );
        }
        other => panic!("{:?}", other.map(|_| ())),
    }

    // Wrong shape.
    let mut t = tensors();
    let (dtype, _, data) = t.remove("encoder.relative_attention_bias.weight").unwrap();
    t.insert(
        "encoder.relative_attention_bias.weight".into(),
        (dtype, vec![4, 32], data),
    );
    let path = write_model(&tmp.path().join("shape"), &t);
    match MpnetModel::load(tmp.path().join("shape"), &device) {
        Err(CheckpointError::Shape {
            path: p,
            name,
            expected,
            actual,
        }) => {
            assert_eq!(p, path);
            assert_eq!(name, "encoder.relative_attention_bias.weight");
            assert_eq!(expected, [32, 4]);
            assert_eq!(actual, [4, 32]);
        }
        other => panic!("{:?}", other.map(|_| ())),
    }

    // Non-finite values.
    let mut t = tensors();
    let entry = t.get_mut("encoder.layer.0.output.dense.weight").unwrap();
    entry.2[..4].copy_from_slice(&f32::NAN.to_le_bytes());
    write_model(&tmp.path().join("nan"), &t);
    let err = MpnetModel::load(tmp.path().join("nan"), &device).unwrap_err();
    assert!(
        matches!(&err, CheckpointError::NonFinite { name, .. } if name == "encoder.layer.0.output.dense.weight"),
        "{err:?}"
    );

    // Corrupt (truncated) file.
    let dir = tmp.path().join("corrupt");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(tiny_dir().join("config.json"), dir.join("config.json")).unwrap();
    let bytes = std::fs::read(tiny_dir().join("model.safetensors")).unwrap();
    let path = dir.join("model.safetensors");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    match MpnetModel::load(&dir, &device) {
        Err(err @ CheckpointError::Corrupt { .. }) => {
            assert!(
                err.to_string().contains(&path.display().to_string()),
                "{err}"
            );
        }
        other => panic!("{:?}", other.map(|_| ())),
    }

    // No weights file at all.
    std::fs::remove_file(&path).unwrap();
    let err = MpnetModel::load(&dir, &device).unwrap_err();
    assert!(
        matches!(&err, CheckpointError::Io { path: p, .. } if *p == path),
        "{err:?}"
    );

    // A BERT config is refused, naming the field and the file.
    let bert = tmp.path().join("bert");
    std::fs::create_dir_all(&bert).unwrap();
    let config = std::fs::read_to_string(tiny_dir().join("config.json"))
        .unwrap()
        .replace("\"mpnet\"", "\"bert\"");
    std::fs::write(bert.join("config.json"), config).unwrap();
    let err = MpnetModel::load(&bert, &device).unwrap_err();
    assert!(err.to_string().contains("model_type"), "{err}");
    assert!(err.to_string().contains("config.json"), "{err}");
}

#[test]
fn accepts_the_mpnet_prefix_and_reports_extras_and_a_missing_pooler() {
    let device = Device::flex();
    let tmp = tempfile::tempdir().unwrap();
    let mut t: HashMap<_, _> = tensors()
        .into_iter()
        .filter(|(name, _)| !name.starts_with("pooler."))
        .map(|(name, v)| (format!("mpnet.{name}"), v))
        .collect();
    t.insert(
        "lm_head.bias".into(),
        (
            Dtype::F32,
            vec![2],
            [0f32, 1.0].iter().flat_map(|v| v.to_le_bytes()).collect(),
        ),
    );
    t.insert(
        "mpnet.embeddings.position_ids".into(),
        (
            Dtype::I64,
            vec![2],
            [0i64, 1].iter().flat_map(|v| v.to_le_bytes()).collect(),
        ),
    );
    write_model(tmp.path(), &t);
    let (model, report) = MpnetModel::load(tmp.path(), &device).unwrap();
    assert!(report.bert_prefix);
    assert_eq!(report.unexpected, ["lm_head.bias"]);
    assert_eq!(
        report.missing,
        ["mpnet.pooler.dense.weight", "mpnet.pooler.dense.bias"]
    );
    assert!(model.pooler.is_none());

    // Same encoder output as the unprefixed fixture.
    let (reference, _) = MpnetModel::load(tiny_dir(), &device).unwrap();
    let input = model
        .input_from_ids(&[0, 5, 6, 2], &[1, 1, 1, 1], [1, 4], &device)
        .unwrap();
    let a = to_vec(model.forward(&input).unwrap().last_hidden_state);
    let b = to_vec(reference.forward(&input).unwrap().last_hidden_state);
    assert_eq!(a, b);
}

#[test]
fn config_round_trips_and_names_the_file() {
    let config = MpnetConfig::from_file(tiny_dir().join("config.json")).unwrap();
    assert_eq!(config.hidden_size, 32);
    assert_eq!(config.layer_norm_eps, 1e-5);
    assert_eq!(
        MpnetConfig::from_json_str(&config.to_json_string()).unwrap(),
        config
    );
    let err = MpnetConfig::from_file(tiny_dir().join("nope.json")).unwrap_err();
    assert!(err.to_string().contains("nope.json"), "{err}");
}

/// The real all-mpnet-base-v2 (fetched into the asset cache on first use, about 440 MB):
/// tokenizer ids, mean-pooled sentence embeddings and cosines against transformers.
#[test]
fn all_mpnet_base_v2_matches_transformers() {
    let golden = read_json(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/all-mpnet-base-v2.golden.json"),
    );
    let cache = lora_bert_assets::AssetCache::from_env().unwrap();
    let files = lora_bert_assets::all_mpnet_base_v2(&cache).unwrap();

    let tokenizer = BertTokenizer::from_file(&files.tokenizer).unwrap();
    assert_eq!(tokenizer.pad_id(), 1);
    assert_eq!(tokenizer.token_to_id("<s>"), Some(0));
    assert_eq!(tokenizer.token_to_id("</s>"), Some(2));
    let sentences: Vec<&str> = golden["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let batch = tokenizer.encode_batch(&sentences).unwrap();
    let expected_ids = rows(&golden["input_ids"]);
    for (e, ids) in batch.encodings.iter().zip(&expected_ids) {
        assert_eq!(&e.ids, ids);
    }

    // Windows of a long text carry MPNet's own specials.
    let long = sentences.join(" ").repeat(4);
    let windowed = BertTokenizer::from_file(&files.tokenizer)
        .unwrap()
        .with_max_length(16)
        .with_length_policy(LengthPolicy::Window { stride: 2 })
        .encode(&long)
        .unwrap();
    assert!(windowed.len() > 2);
    for w in &windowed {
        assert!(w.len() <= 16);
        assert_eq!((w.ids[0], w.ids[w.len() - 1]), (0, 2), "{:?}", w.tokens);
    }

    let device = Device::flex();
    let (model, report) = MpnetModel::load(&files.dir, &device).unwrap();
    assert!(report.unexpected.is_empty(), "{report:?}");
    assert_eq!(model.config().layer_norm_eps, 1e-5);
    let input = model.input(&batch, &device).unwrap();
    let out = model.forward(&input).unwrap();
    let pooled = mean_pool(out.last_hidden_state, input.attention_mask.clone());
    let pooled = to_vec(pooled);
    let width = model.config().hidden_size;
    let first8: Vec<f32> = (0..sentences.len())
        .flat_map(|i| pooled[i * width..i * width + 8].to_vec())
        .collect();
    let diff = max_abs_diff(&first8, &flat(&golden["mean_pooled_first8"]));
    let norms: Vec<f32> = pooled
        .chunks(width)
        .map(|r| r.iter().map(|v| v * v).sum::<f32>().sqrt())
        .collect();
    let norm_diff = max_abs_diff(&norms, &f32s(&golden["mean_pooled_l2norm"]));
    let cos = |a: usize, b: usize| {
        let (x, y) = (
            &pooled[a * width..(a + 1) * width],
            &pooled[b * width..(b + 1) * width],
        );
        x.iter().zip(y).map(|(p, q)| p * q).sum::<f32>() / (norms[a] * norms[b])
    };
    let cos_diff = (cos(0, 1) - golden["cosine_0_1"].as_f64().unwrap() as f32)
        .abs()
        .max((cos(0, 2) - golden["cosine_0_2"].as_f64().unwrap() as f32).abs());
    eprintln!(
        "all-mpnet-base-v2 (flex): max |diff| mean-pooled first8 {diff:.3e}, norms {norm_diff:.3e}, \
         cosines {cos_diff:.3e} (cos 0-1 {:.4}, 0-2 {:.4})",
        cos(0, 1),
        cos(0, 2)
    );
    assert!(diff <= ATOL, "mean-pooled embeddings off by {diff}");
    assert!(norm_diff <= ATOL, "norms off by {norm_diff}");
    assert!(cos_diff <= ATOL, "cosines off by {cos_diff}");
}
