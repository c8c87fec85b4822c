//! Int8 backbones: `BertModel::quantize_int8` on all-MiniLM-L6-v2 against the float model and
//! transformers' reference, the scheme's rounding bound, and its errors.

mod common;

use burn::module::Module;
use common::{devices, f32s, golden, max_abs_diff, minilm_dir, u32s};
use lora_bert_encoder::device::{self, Backend};
use lora_bert_encoder::quantize::quantize_symmetric;
use lora_bert_encoder::{
    BertConfig, BertInput, BertModel, CheckpointError, Device, QuantizeError, Route, mean_pool,
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
            let d = max_abs_diff(&reference, &q[..reference.len()]);
            assert!(d < 0.03, "{backend}: first 16 pooled values off by {d}");
        }
    }
    // Saved, the int8 model is a quarter of the float file.
    let device = device::device(Backend::default_cpu().unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (model, _) = BertModel::load(minilm_dir(), &device).unwrap();
    model.quantize_int8().unwrap().save(dir.path()).unwrap();
    let size = |dir: &std::path::Path| {
        std::fs::metadata(dir.join("model.safetensors"))
            .unwrap()
            .len()
    };
    let (float, int8) = (size(&minilm_dir()), size(dir.path()));
    assert!(int8 * 100 < float * 27, "{int8} vs {float} bytes");
}

fn tiny_config() -> BertConfig {
    serde_json::from_str(
        r#"{"vocab_size": 40, "hidden_size": 16, "num_hidden_layers": 2,
            "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 16}"#,
    )
    .unwrap()
}

#[test]
fn a_saved_int8_model_loads_back_int8_and_exact() {
    let device = device::device(Backend::default_cpu().unwrap()).unwrap();
    let int8 = BertModel::init(&tiny_config(), true, &device)
        .quantize_int8()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    int8.save(dir.path()).unwrap();
    let (back, report) = BertModel::load(dir.path(), &device).unwrap();
    assert!(report.unexpected.is_empty(), "{:?}", report.unexpected);
    assert!(back.is_quantized());
    assert_eq!(back.param_bytes(), int8.param_bytes());
    let ids = [2, 7, 39, 0, 5, 3];
    assert_eq!(pooled(&int8, &ids, &device), pooled(&back, &ids, &device));
    // The file keeps HF's names and layout: int8 values, their scales beside them.
    let bytes = std::fs::read(dir.path().join("model.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let q = file
        .tensor("encoder.layer.1.intermediate.dense.weight")
        .unwrap();
    assert_eq!(
        (q.dtype(), q.shape()),
        (safetensors::Dtype::I8, &[32, 16][..])
    );
    let c = file
        .tensor("encoder.layer.1.intermediate.dense.weight_scale")
        .unwrap();
    let r = file
        .tensor("encoder.layer.1.intermediate.dense.weight_input_scale")
        .unwrap();
    assert_eq!((c.shape(), r.shape()), (&[32][..], &[16][..]));
    // Dequantized from the file by hand, the weight is what the model computes with.
    let (c, r): (Vec<f32>, Vec<f32>) = (
        c.data()
            .chunks(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect(),
        r.data()
            .chunks(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect(),
    );
    let by_hand: Vec<f32> = (0..16 * 32)
        .map(|k| {
            let (i, o) = (k / 32, k % 32); // [d_in, d_out]
            q.data()[o * 16 + i] as i8 as f32 * c[o] * r[i]
        })
        .collect();
    let held = back.encoder.layer[1].intermediate.dense.weight_f32();
    let held = held.into_data().try_to_vec::<f32>().unwrap();
    let d = max_abs_diff(&by_hand, &held);
    assert!(d < 1e-6, "file vs model: {d}");
}

#[test]
fn int8_files_are_checked_like_float_ones() {
    let device = device::device(Backend::default_cpu().unwrap()).unwrap();
    let int8 = BertModel::init(&tiny_config(), false, &device)
        .quantize_int8()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    int8.save(dir.path()).unwrap();
    let path = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    // Rewrite the file without one tensor.
    let without = |drop: &str| {
        let kept: Vec<(String, safetensors::tensor::TensorView<'_>)> = file
            .tensors()
            .into_iter()
            .filter(|(name, _)| name != drop)
            .collect();
        std::fs::write(&path, safetensors::serialize(kept, None).unwrap()).unwrap();
    };
    without("encoder.layer.0.attention.self.query.weight_input_scale");
    match BertModel::load(dir.path(), &device) {
        Err(CheckpointError::Missing { names, .. }) => assert_eq!(
            names,
            ["encoder.layer.0.attention.self.query.weight_input_scale"]
        ),
        other => panic!("expected Missing, got {:?}", other.map(|_| ())),
    }
    // Only projections and word embeddings may be int8: any other I8 tensor is refused.
    let zeros = vec![0u8; 16 * 16];
    let tensors: Vec<(String, safetensors::tensor::TensorView<'_>)> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            if name == "embeddings.position_embeddings.weight" {
                let view = safetensors::tensor::TensorView::new(
                    safetensors::Dtype::I8,
                    vec![16, 16],
                    &zeros,
                )
                .unwrap();
                (name, view)
            } else {
                (name, view)
            }
        })
        .collect();
    std::fs::write(&path, safetensors::serialize(tensors, None).unwrap()).unwrap();
    match BertModel::load(dir.path(), &device) {
        Err(CheckpointError::Dtype { name, .. }) => {
            assert_eq!(name, "embeddings.position_embeddings.weight")
        }
        other => panic!("expected Dtype, got {:?}", other.map(|_| ())),
    }
    std::fs::write(&path, &bytes).unwrap();
    // Int8 weights do not load onto a training device.
    let training = device::autodiff(device.clone());
    assert!(matches!(
        BertModel::load(dir.path(), &training),
        Err(CheckpointError::Int8Device { .. })
    ));
}

#[test]
fn refusals_are_typed() {
    let device = device::device(Backend::default_cpu().unwrap()).unwrap();
    let config = tiny_config();
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
