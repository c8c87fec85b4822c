//! Int8 backbones: `BertModel::quantize_int8` on all-MiniLM-L6-v2 against the float model and
//! transformers' reference, the scheme's rounding bound, and its errors.

mod common;

use burn::module::Module;
use common::{devices, f32s, golden, minilm_dir, u32s};
use lora_bert_encoder::device::{self, Backend};
use lora_bert_encoder::quantize::quantize_symmetric;
use lora_bert_encoder::{
    BertConfig, BertInput, BertModel, Device, QuantizeError, Route, mean_pool,
};
use proptest::prelude::*;

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

fn pooled(model: &BertModel, ids: &[u32], device: &Device) -> Vec<f32> {
    let input = BertInput::from_ids(
        ids,
        &vec![0; ids.len()],
        &vec![1; ids.len()],
        [1, ids.len()],
        model.config(),
        device,
    )
    .unwrap();
    let hidden = model
        .forward(&input, &Route::Base)
        .unwrap()
        .last_hidden_state;
    mean_pool(hidden, input.attention_mask)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap()
}

#[test]
fn int8_minilm_is_a_quarter_of_the_bytes_and_keeps_the_embeddings() {
    let golden = golden();
    for (backend, device) in devices() {
        if backend == Backend::Wgpu {
            continue; // int8 runs on the CPU backends only (`QuantizeError::Device` elsewhere).
        }
        let (model, _) = BertModel::load(minilm_dir(), &device).unwrap();
        let float_bytes = model.param_bytes();
        assert_eq!(float_bytes, model.num_params() * 4);
        let int8 = model.clone().quantize_int8().unwrap();
        assert!(int8.is_quantized() && !model.is_quantized());
        let bytes = int8.param_bytes();
        assert!(
            bytes * 100 < float_bytes * 27,
            "{backend}: {bytes} int8 bytes vs {float_bytes} f32 bytes"
        );
        for sentence in golden["sentences"].as_array().unwrap() {
            let ids = u32s(&sentence["input_ids"]);
            let (f, q) = (pooled(&model, &ids, &device), pooled(&int8, &ids, &device));
            let c = cosine(&f, &q);
            assert!(c > 0.999, "{backend}: pooled cosine {c}");
            assert!(c < 1.0 - 1e-7, "{backend}: int8 changed nothing ({c})");
            // Against transformers' own numbers, not only against our float model.
            let reference = f32s(&sentence["mean_pooled_first16"]);
            let d = reference
                .iter()
                .zip(&q)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(d < 0.03, "{backend}: first 16 pooled values off by {d}");
        }
    }
}

#[test]
fn a_saved_int8_model_is_its_dequantized_weights() {
    let device = device::device(Backend::default_cpu().unwrap()).unwrap();
    let config: BertConfig = serde_json::from_str(
        r#"{"vocab_size": 40, "hidden_size": 16, "num_hidden_layers": 2,
            "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 16}"#,
    )
    .unwrap();
    let int8 = BertModel::init(&config, true, &device)
        .quantize_int8()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    int8.save(dir.path()).unwrap();
    let (back, _) = BertModel::load(dir.path(), &device).unwrap();
    assert!(!back.is_quantized());
    let ids = [2, 7, 39, 0, 5, 3];
    let (a, b) = (pooled(&int8, &ids, &device), pooled(&back, &ids, &device));
    let d = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(d < 1e-5, "int8 vs its f32 save: {d}");
}

#[test]
fn refusals_are_typed() {
    let device = device::device(Backend::default_cpu().unwrap()).unwrap();
    let config: BertConfig = serde_json::from_str(
        r#"{"vocab_size": 40, "hidden_size": 16, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 16}"#,
    )
    .unwrap();
    let model = BertModel::init(&config, false, &device);
    let twice = model.clone().quantize_int8().unwrap().quantize_int8();
    assert!(matches!(twice, Err(QuantizeError::AlreadyQuantized { .. })));

    let training = device::autodiff(device.clone());
    let on_autodiff = BertModel::init(&config, false, &training).quantize_int8();
    assert!(matches!(on_autodiff, Err(QuantizeError::Device { .. })));

    let mut broken = model;
    let w = broken.encoder.layer[0].intermediate.dense.weight.val();
    let nan = w.clone().mul_scalar(f32::NAN).slice([0..1, 0..1]);
    broken.encoder.layer[0].intermediate.dense.weight =
        burn::module::Param::from_tensor(w.slice_assign([0..1, 0..1], nan));
    match broken.quantize_int8() {
        Err(QuantizeError::NonFinite { name }) => {
            assert_eq!(name, "encoder.layer.0.intermediate.dense.weight")
        }
        other => panic!("expected NonFinite, got {other:?}"),
    }
}

proptest! {
    /// Every value comes back within half a step of its group's scale, and the largest
    /// magnitude of a group is ±127 steps.
    #[test]
    fn int8_rounding_is_within_half_a_step(
        values in proptest::collection::vec(-50.0f32..50.0, 1..60),
        cols in 1usize..6,
        per_column: bool,
    ) {
        let rows = values.len() / cols;
        prop_assume!(rows > 0);
        let values = &values[..rows * cols];
        let (q, scales) = quantize_symmetric(values, rows, cols, per_column);
        prop_assert_eq!(scales.len(), if per_column { cols } else { rows });
        let mut peak = vec![(0i8, 0f32); scales.len()];
        for (i, (v, q)) in values.iter().zip(&q).enumerate() {
            let g = if per_column { i % cols } else { i / cols };
            let back = *q as f32 * scales[g];
            prop_assert!((back - v).abs() <= scales[g] * 0.5 + 1e-6, "{v} -> {back}");
            peak[g] = (peak[g].0.max(q.abs()), peak[g].1.max(v.abs()));
        }
        for (q, v) in peak {
            if v > 0.0 {
                prop_assert_eq!(q, 127);
            }
        }
    }
}
