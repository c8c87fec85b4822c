//! Shared helpers of the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

use lora_bert_encoder::device::{self, Backend, Device};
use serde_json::Value;

/// all-MiniLM-L6-v2 from the asset cache (fetched on first use).
pub fn minilm_dir() -> PathBuf {
    let cache = lora_bert_assets::AssetCache::from_env().expect("asset cache");
    lora_bert_assets::all_minilm_l6_v2(&cache)
        .expect("fetch all-MiniLM-L6-v2")
        .dir
}

/// The transformers reference outputs.
pub fn golden() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/all-minilm-l6-v2.golden.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("golden fixture")).expect("json")
}

/// Every compiled backend. wgpu is included when compiled: a machine built with the `wgpu`
/// feature must provide an adapter (lavapipe on CPU-only Linux), otherwise the test fails.
pub fn devices() -> Vec<(Backend, Device)> {
    Backend::compiled()
        .into_iter()
        .map(|b| {
            let d = device::device(b).unwrap_or_else(|e| panic!("{b}: {e}"));
            (b, d)
        })
        .collect()
}

pub fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

pub fn u32s(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("integer") as u32)
        .collect()
}

/// Largest absolute difference; panics on length mismatch.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
