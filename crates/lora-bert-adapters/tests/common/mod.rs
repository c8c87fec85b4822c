//! Shared helpers of the adapter tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use burn::tensor::{Int, Tensor, TensorData};
use lora_bert_encoder::device::{self, Backend, Device};
use lora_bert_encoder::{BertConfig, BertInput, BertModel, BertOutput};
use serde_json::Value;

/// all-MiniLM-L6-v2 from the asset cache (fetched on first use).
pub fn minilm_dir() -> PathBuf {
    let cache = lora_bert_assets::AssetCache::from_env().expect("asset cache");
    lora_bert_assets::all_minilm_l6_v2(&cache)
        .expect("fetch all-MiniLM-L6-v2")
        .dir
}

pub fn cpu() -> Device {
    device::device(Backend::default_cpu().expect("a CPU backend")).expect("cpu device")
}

pub fn minilm(device: &Device) -> BertModel {
    BertModel::load(minilm_dir(), device)
        .expect("load all-MiniLM-L6-v2")
        .0
}

/// The PEFT fixture directory `name`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/peft")
        .join(name)
}

/// A fixture's `expected.json`.
pub fn expected(name: &str) -> Value {
    let path = fixture(name).join("expected.json");
    serde_json::from_str(&std::fs::read_to_string(&path).expect("expected.json")).expect("json")
}

fn ids(v: &Value) -> (Vec<i64>, [usize; 2]) {
    let rows = v.as_array().expect("rows");
    let cols = rows[0].as_array().expect("row").len();
    let flat: Vec<i64> = rows
        .iter()
        .flat_map(|r| {
            r.as_array()
                .expect("row")
                .iter()
                .map(|x| x.as_i64().expect("int"))
        })
        .collect();
    (flat, [rows.len(), cols])
}

/// The fixture's padded batch as model input.
pub fn fixture_input(expected: &Value, config: &BertConfig, device: &Device) -> BertInput {
    let tensor = |key: &str| {
        let (flat, shape) = ids(&expected[key]);
        Tensor::<2, Int>::from_data(TensorData::new(flat, shape), device)
    };
    let _ = config;
    BertInput {
        input_ids: tensor("input_ids"),
        token_type_ids: tensor("token_type_ids"),
        attention_mask: tensor("attention_mask"),
    }
}

/// Flattens nested JSON arrays of numbers.
pub fn flat(v: &Value) -> Vec<f32> {
    match v {
        Value::Array(items) => items.iter().flat_map(flat).collect(),
        Value::Number(n) => vec![n.as_f64().expect("number") as f32],
        other => panic!("not a number: {other}"),
    }
}

pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().expect("f32 data")
}

/// Largest |a - b| over the positions where `mask` (one entry per `width` values) is 1.
pub fn masked_max_diff(a: &[f32], b: &[f32], mask: &[i64], width: usize) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    assert_eq!(a.len(), mask.len() * width, "mask length");
    a.chunks(width)
        .zip(b.chunks(width))
        .zip(mask)
        .filter(|(_, m)| **m == 1)
        .flat_map(|((x, y), _)| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
        .fold(0.0, f32::max)
}

pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The fixture's attention mask, flattened.
pub fn mask(expected: &Value) -> Vec<i64> {
    ids(&expected["attention_mask"]).0
}

pub fn last_hidden(out: &BertOutput) -> Vec<f32> {
    values(out.last_hidden_state.clone())
}

/// A small random BERT for fast tests.
pub fn tiny_config() -> BertConfig {
    serde_json::from_str(
        r#"{"vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 3,
            "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 32,
            "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}"#,
    )
    .expect("tiny config")
}

/// A `[batch, seq]` input of ids `1 + (i * 7 + j * 3) % 40`, with the last `pad` positions of
/// the second example padded.
pub fn tiny_input(batch: usize, seq: usize, pad: usize, device: &Device) -> BertInput {
    let mut ids = Vec::new();
    let mut mask = Vec::new();
    for i in 0..batch {
        for j in 0..seq {
            let padded = i == 1 && j >= seq - pad;
            ids.push(if padded {
                0
            } else {
                1 + ((i * 7 + j * 3) % 40) as i64
            });
            mask.push(if padded { 0 } else { 1 });
        }
    }
    BertInput {
        input_ids: Tensor::from_data(TensorData::new(ids, [batch, seq]), device),
        token_type_ids: Tensor::zeros([batch, seq], device),
        attention_mask: Tensor::from_data(TensorData::new(mask, [batch, seq]), device),
    }
}

/// Gives every module of group `name` non-trivial weights: `B` (and IA³ vectors) start at
/// the identity, which would make routing tests vacuous. Values follow `sin`, so runs repeat.
pub fn perturb_lora(
    model: &mut lora_bert_adapters::AdaptedModel<lora_bert_adapters::Lora>,
    name: &str,
    amplitude: f32,
) {
    use burn::module::Param;
    let id = model.group_id(name).expect("group");
    let device = model.device();
    for (n, (_, projection)) in model.model.projections_mut().enumerate() {
        if let Some(slot) = projection
            .adapter
            .slots
            .get_mut(id)
            .and_then(Option::as_mut)
        {
            let [r, d_out] = slot.b.dims();
            let [d_in, _] = slot.a.dims();
            let wave = |len: usize, phase: f32| -> Vec<f32> {
                (0..len)
                    .map(|i| {
                        amplitude * (0.37 * i as f32 + phase + id as f32 * 1.7 + n as f32).sin()
                    })
                    .collect()
            };
            slot.a = Param::from_tensor(Tensor::from_data(
                TensorData::new(wave(d_in * r, 0.3), [d_in, r]),
                &device,
            ));
            slot.b = Param::from_tensor(Tensor::from_data(
                TensorData::new(wave(r * d_out, 1.1), [r, d_out]),
                &device,
            ));
        }
    }
}
