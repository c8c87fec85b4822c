//! Training semantics: what a step routed to one group updates, and what it leaves alone
//! (bit for bit, under AdamW with weight decay).

mod common;

use std::collections::BTreeMap;

use burn::optim::{AdamWConfig, GradientsParams};
use common::*;
use lora_bert_adapters::{AdaptedModel, Layers, Lora, LoraConfig, Targets};
use lora_bert_encoder::{BertModel, Route, device};

type Snapshot = BTreeMap<String, Vec<f32>>;

fn group_values(model: &AdaptedModel<Lora>, name: &str) -> Snapshot {
    let id = model.group_id(name).unwrap();
    let mut out = BTreeMap::new();
    for (site, projection) in model.model.projections() {
        if let Some(m) = projection.adapter.get(id) {
            out.insert(format!("{site}.a"), values(m.a.val()));
            out.insert(format!("{site}.b"), values(m.b.val()));
        }
    }
    assert!(!out.is_empty());
    out
}

fn backbone_values(model: &AdaptedModel<Lora>) -> Snapshot {
    model
        .model
        .hf_tensors()
        .into_iter()
        .map(|(name, (_, v))| (name, v))
        .collect()
}

fn setup() -> AdaptedModel<Lora> {
    let device = device::autodiff(cpu());
    let mut model = AdaptedModel::<Lora>::new(BertModel::init(&tiny_config(), true, &device));
    let targets = Targets::new(["query", "value"]).layers(Layers::Last(2));
    model
        .add_group("ner", LoraConfig::new(4, targets.clone()))
        .unwrap();
    model.add_group("tc", LoraConfig::new(4, targets)).unwrap();
    perturb_lora(&mut model, "ner", 0.1);
    perturb_lora(&mut model, "tc", 0.1);
    model
}

/// Three AdamW steps (weight decay 0.1) of a squared-output loss under `route`.
fn train(
    mut model: AdaptedModel<Lora>,
    route: impl Fn(&AdaptedModel<Lora>) -> Route,
) -> AdaptedModel<Lora> {
    let device = model.device();
    let mut optim = AdamWConfig::new().with_weight_decay(0.1).init();
    for _ in 0..3 {
        let input = tiny_input(2, 6, 2, &device);
        let out = model.forward(&input, &route(&model)).unwrap();
        let loss = out.last_hidden_state.powi_scalar(2).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-2, model, grads);
    }
    model
}

#[test]
fn a_group_not_routed_receives_no_update() {
    let model = setup();
    let (ner0, tc0, base0) = (
        group_values(&model, "ner"),
        group_values(&model, "tc"),
        backbone_values(&model),
    );
    let model = train(model, |m| m.route("ner").unwrap());
    assert_eq!(
        group_values(&model, "tc"),
        tc0,
        "the tc group changed without being routed"
    );
    assert_ne!(
        group_values(&model, "ner"),
        ner0,
        "the routed group did not train"
    );
    assert_ne!(
        backbone_values(&model),
        base0,
        "MTPF-TPL trains the backbone with the group"
    );
}

#[test]
fn a_mixed_batch_updates_the_groups_it_routes() {
    let model = setup();
    let (ner0, tc0) = (group_values(&model, "ner"), group_values(&model, "tc"));
    let model = train(model, |m| m.route_per_example(&[None, Some("tc")]).unwrap());
    assert_eq!(group_values(&model, "ner"), ner0);
    assert_ne!(group_values(&model, "tc"), tc0);
}

#[test]
fn a_frozen_backbone_stays_bit_for_bit() {
    let model = setup().with_backbone_trainable(false);
    assert!(!model.backbone_trainable());
    let (ner0, base0) = (group_values(&model, "ner"), backbone_values(&model));
    let model = train(model, |m| m.route("ner").unwrap());
    assert_eq!(backbone_values(&model), base0, "the frozen backbone moved");
    assert_ne!(group_values(&model, "ner"), ner0, "the group did not train");

    // Unfreezing gives the backbone its gradients back.
    let model = model.with_backbone_trainable(true);
    let base1 = backbone_values(&model);
    let model = train(model, |m| m.route("ner").unwrap());
    assert_ne!(backbone_values(&model), base1);
}

#[test]
fn a_frozen_group_stays_bit_for_bit_while_routed() {
    let mut model = setup();
    model.set_group_trainable("ner", false).unwrap();
    let (ner0, base0) = (group_values(&model, "ner"), backbone_values(&model));
    let model = train(model, |m| m.route("ner").unwrap());
    assert_eq!(group_values(&model, "ner"), ner0);
    assert_ne!(backbone_values(&model), base0);
}

#[test]
fn parameter_counts_per_group() {
    let mut model = setup();
    let c = tiny_config();
    let h = c.hidden_size;
    // query and value of two layers, rank 4: A [h, 4] + B [4, h] each.
    let group = 2 * 2 * (h * 4 + 4 * h);
    let counts = model.parameter_counts("ner").unwrap();
    assert_eq!(counts.group, group);
    let plain = burn::module::Module::num_params(&BertModel::init(&c, true, &cpu()));
    assert_eq!(counts.backbone, plain);
    assert_eq!(counts.trainable, group + plain);
    assert_eq!(counts.total(), group + plain);
    let model2 = {
        model.set_group_trainable("tc", false).unwrap();
        model.with_backbone_trainable(false)
    };
    assert_eq!(model2.parameter_counts("ner").unwrap().trainable, group);
    assert_eq!(model2.parameter_counts("tc").unwrap().trainable, 0);
}

#[test]
fn lora_dropout_acts_in_training_only() {
    let device = device::autodiff(cpu());
    let mut model = AdaptedModel::<Lora>::new(BertModel::init(&tiny_config(), false, &device));
    model
        .add_group(
            "g",
            LoraConfig::new(4, Targets::new(["query", "value"])).dropout(0.5),
        )
        .unwrap();
    perturb_lora(&mut model, "g", 0.3);
    let input = tiny_input(2, 6, 0, &device);
    let route = model.route("g").unwrap();
    let run = |m: &AdaptedModel<Lora>| values(m.forward(&input, &route).unwrap().last_hidden_state);
    assert_ne!(
        run(&model),
        run(&model),
        "dropout should be active while training"
    );
    let eval = burn::module::Module::valid(&model);
    assert_eq!(run(&eval), run(&eval), "no dropout in evaluation");
    assert!(
        max_diff(
            &run(&eval),
            &values(
                eval.forward(&input, &Route::Base)
                    .unwrap()
                    .last_hidden_state
            )
        ) > 1e-3,
        "the group still applies in evaluation"
    );
}
