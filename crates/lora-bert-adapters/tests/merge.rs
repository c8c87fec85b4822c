//! Merging a group into the base weights and taking it back out, on the real model.

mod common;

use common::*;
use lora_bert_adapters::{AdaptedModel, AdapterError, Ia3, Lora};
use lora_bert_encoder::Route;

#[test]
fn merging_lora_keeps_outputs_and_unmerging_restores_the_base() {
    let device = cpu();
    let mut model = AdaptedModel::<Lora>::new(minilm(&device));
    model.load_group("kd", fixture("key-dense-r2")).unwrap();
    model.load_group("qv", fixture("qv-last2-rslora")).unwrap();
    let expected = expected("key-dense-r2");
    let input = fixture_input(&expected, model.config(), &device);
    let mask = mask(&expected);
    let route = model.route("kd").unwrap();
    let unmerged = model.forward(&input, &route).unwrap();
    let base_weights = model.model.hf_tensors();

    model.merge("kd").unwrap();
    assert_eq!(model.merged(), Some("kd"));
    let merged = model.forward(&input, &route).unwrap();
    let diff = masked_max_diff(&last_hidden(&merged), &last_hidden(&unmerged), &mask, 384);
    assert!(diff < 1e-5, "merged vs unmerged: {diff}");
    let diff = max_diff(
        &values(merged.pooler_output.clone().unwrap()),
        &values(unmerged.pooler_output.clone().unwrap()),
    );
    assert!(diff < 1e-5, "pooler merged vs unmerged: {diff}");
    let diff = masked_max_diff(
        &last_hidden(&merged),
        &flat(&expected["last_hidden_state"]),
        &mask,
        384,
    );
    assert!(diff < 1e-4, "merged vs PEFT: {diff}");

    // While merged, the base and other groups are not reachable.
    for route in [
        Route::Base,
        model.route("qv").unwrap(),
        model
            .route_per_example(&[Some("kd"), None, Some("kd")])
            .unwrap(),
    ] {
        let err = model.forward(&input, &route).unwrap_err();
        assert!(
            matches!(&err, AdapterError::Merged { merged, .. } if merged == "kd"),
            "{err}"
        );
    }
    assert!(matches!(
        model.merge("qv"),
        Err(AdapterError::Merged { .. })
    ));
    assert!(matches!(
        model.remove_group("kd"),
        Err(AdapterError::Merged { .. })
    ));

    model.unmerge().unwrap();
    assert_eq!(model.merged(), None);
    assert!(matches!(model.unmerge(), Err(AdapterError::NotMerged)));
    let restored = model.model.hf_tensors();
    let mut worst = 0f32;
    for (name, (_, before)) in &base_weights {
        worst = worst.max(max_diff(&restored[name].1, before));
    }
    assert!(worst < 1e-6, "unmerge left the base off by {worst}");
    let again = model.forward(&input, &route).unwrap();
    let diff = masked_max_diff(&last_hidden(&again), &last_hidden(&unmerged), &mask, 384);
    assert!(diff < 1e-5, "after unmerge: {diff}");
}

#[test]
fn merging_ia3_keeps_outputs_and_unmerging_restores_the_base() {
    let device = cpu();
    let mut model = AdaptedModel::<Ia3>::new(minilm(&device));
    model.load_group("ia3", fixture("ia3-kv-ff")).unwrap();
    let expected = expected("ia3-kv-ff");
    let input = fixture_input(&expected, model.config(), &device);
    let mask = mask(&expected);
    let route = model.route("ia3").unwrap();
    let unmerged = model.forward(&input, &route).unwrap();
    let diff = masked_max_diff(
        &last_hidden(&unmerged),
        &flat(&expected["last_hidden_state"]),
        &mask,
        384,
    );
    assert!(diff < 1e-4, "IA³ vs PEFT: {diff}");
    let base_weights = model.model.hf_tensors();
    model.merge("ia3").unwrap();
    let merged = model.forward(&input, &route).unwrap();
    let diff = masked_max_diff(&last_hidden(&merged), &last_hidden(&unmerged), &mask, 384);
    assert!(diff < 1e-5, "merged vs unmerged: {diff}");
    model.unmerge().unwrap();
    let restored = model.model.hf_tensors();
    let mut worst = 0f32;
    for (name, (_, before)) in &base_weights {
        let scale = before.iter().fold(1f32, |m, v| m.max(v.abs()));
        worst = worst.max(max_diff(&restored[name].1, before) / scale);
    }
    assert!(
        worst < 1e-6,
        "unmerge left the base off by {worst} (relative)"
    );
}

#[test]
fn a_group_is_not_merged_into_int8_weights() {
    let device = cpu();
    let mut model = AdaptedModel::<Lora>::new(minilm(&device).quantize_int8().unwrap());
    model.load_group("kd", fixture("key-dense-r2")).unwrap();
    let expected = expected("key-dense-r2");
    let input = fixture_input(&expected, model.config(), &device);
    let route = model.route("kd").unwrap();
    let before = last_hidden(&model.forward(&input, &route).unwrap());
    match model.merge("kd") {
        Err(AdapterError::QuantizedBase { group, site }) => {
            assert_eq!(group, "kd");
            assert!(site.starts_with("encoder.layer."), "{site}");
        }
        other => panic!("expected QuantizedBase, got {other:?}"),
    }
    // Nothing changed: the group still routes, the base weights are untouched.
    assert_eq!(model.merged(), None);
    let after = last_hidden(&model.forward(&input, &route).unwrap());
    assert_eq!(before, after);
}
