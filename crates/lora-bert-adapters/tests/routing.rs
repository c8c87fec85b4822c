//! Task-primary routing on the real all-MiniLM-L6-v2: one forward pass over a batch that mixes
//! groups equals the per-group forward passes.

mod common;

use common::*;
use lora_bert_adapters::{
    AdaptedModel, AdapterError, Ia3, Ia3Config, Layers, Lora, LoraConfig, ModuleSelector, Targets,
};
use lora_bert_encoder::{BertInput, BertTokenizer, Route};

const TEXTS: [&str; 5] = [
    "EU rejects German call to boycott British lamb.",
    "A gripping, beautifully acted film.",
    "Peter Blackburn",
    "The market fell sharply after the announcement on Tuesday.",
    "Paris",
];

fn batch(
    model_config: &lora_bert_encoder::BertConfig,
    device: &lora_bert_encoder::Device,
) -> BertInput {
    let tokenizer = BertTokenizer::from_file(minilm_dir().join("tokenizer.json")).unwrap();
    let batch = tokenizer.encode_batch(&TEXTS).unwrap();
    BertInput::from_batch(&batch, model_config, device).unwrap()
}

/// Example `i` of a batch, alone.
fn row(input: &BertInput, i: usize) -> BertInput {
    BertInput {
        input_ids: input.input_ids.clone().narrow(0, i, 1),
        token_type_ids: input.token_type_ids.clone().narrow(0, i, 1),
        attention_mask: input.attention_mask.clone().narrow(0, i, 1),
    }
}

#[test]
fn a_mixed_batch_equals_the_per_group_forwards() {
    let device = cpu();
    let mut model = AdaptedModel::<Lora>::new(minilm(&device));
    let last2 = Targets::new(["query", "value"]).layers(Layers::Last(2));
    model
        .add_group("ner", LoraConfig::new(8, last2.clone()).alpha(16.0))
        .unwrap();
    model
        .add_group("tc", LoraConfig::new(4, Targets::new(["dense"])))
        .unwrap();
    model
        .add_group(
            "app",
            LoraConfig::new(2, Targets::new(["key"]).layers(Layers::Only(vec![0]))),
        )
        .unwrap();
    for g in ["ner", "tc", "app"] {
        perturb_lora(&mut model, g, 0.05);
    }
    let input = batch(model.config(), &device);
    let names = [Some("ner"), Some("tc"), None, Some("app"), Some("ner")];
    let mixed = model
        .forward(&input, &model.route_per_example(&names).unwrap())
        .unwrap();
    let mixed_hidden = last_hidden(&mixed);
    let mixed_pooled = values(mixed.pooler_output.clone().unwrap());
    let [_, seq, width] = mixed.last_hidden_state.dims();
    for (i, name) in names.iter().enumerate() {
        let route = match name {
            Some(n) => model.route(n).unwrap(),
            None => Route::Base,
        };
        let alone = model.forward(&input, &route).unwrap();
        let want = &last_hidden(&alone)[i * seq * width..(i + 1) * seq * width];
        let got = &mixed_hidden[i * seq * width..(i + 1) * seq * width];
        let diff = max_diff(got, want);
        assert!(
            diff < 1e-5,
            "example {i} ({name:?}): mixed vs whole-batch route: {diff}"
        );
        let pooled = values(alone.pooler_output.unwrap());
        let diff = max_diff(
            &mixed_pooled[i * width..(i + 1) * width],
            &pooled[i * width..(i + 1) * width],
        );
        assert!(diff < 1e-5, "example {i}: pooler {diff}");

        // And the same example run alone (no padding to the batch's length).
        let single = model.forward(&row(&input, i), &route).unwrap();
        let len = single.last_hidden_state.dims()[1];
        let single = last_hidden(&single);
        let mask: Vec<i64> = values_i(input.attention_mask.clone().narrow(0, i, 1));
        let real = mask.iter().filter(|m| **m == 1).count();
        assert_eq!(len, seq);
        let diff = max_diff(&got[..real * width], &single[..real * width]);
        assert!(diff < 1e-4, "example {i} alone: {diff}");
    }
    // The groups really differ from one another and from the base.
    let base = last_hidden(&model.forward(&input, &Route::Base).unwrap());
    let tc = last_hidden(&model.forward(&input, &model.route("tc").unwrap()).unwrap());
    assert!(max_diff(&base[..seq * width], &mixed_hidden[..seq * width]) > 1e-2);
    assert!(max_diff(&tc[..seq * width], &mixed_hidden[..seq * width]) > 1e-2);
}

fn values_i(t: burn::tensor::Tensor<2, burn::tensor::Int>) -> Vec<i64> {
    t.into_data().try_into_vec_as::<i64>().unwrap()
}

#[test]
fn routes_name_registered_groups_only() {
    let device = cpu();
    let mut model = AdaptedModel::<Lora>::new(minilm(&device));
    model
        .add_group("ner", LoraConfig::new(2, Targets::new(["query"])))
        .unwrap();
    let err = model.route("tc").unwrap_err();
    assert!(
        matches!(&err, AdapterError::UnknownGroup { name, known } if name == "tc" && known == "ner"),
        "{err}"
    );
    let input = batch(model.config(), &device);
    let err = model.forward(&input, &Route::Group(7)).unwrap_err();
    assert!(
        matches!(err, AdapterError::UnknownGroupId { id: 7 }),
        "{err}"
    );
    let stale = model.route("ner").unwrap();
    model.remove_group("ner").unwrap();
    assert!(matches!(
        model.forward(&input, &stale),
        Err(AdapterError::UnknownGroupId { id: 0 })
    ));
    // A removed group's id is not reused.
    model
        .add_group("ner", LoraConfig::new(2, Targets::new(["query"])))
        .unwrap();
    assert_eq!(model.route("ner").unwrap(), Route::Group(1));
    let err = model
        .forward(&input, &Route::per_example([Some(1), None]))
        .unwrap_err();
    assert!(matches!(err, AdapterError::Input(_)), "route length: {err}");
    let err = model
        .add_group("ner", LoraConfig::new(2, Targets::new(["query"])))
        .unwrap_err();
    assert!(matches!(err, AdapterError::DuplicateGroup { .. }), "{err}");
    let err = model
        .add_group("x", LoraConfig::new(2, Targets::new(["qery"])))
        .unwrap_err();
    assert!(matches!(err, AdapterError::NoTargets { .. }), "{err}");
    let err = model
        .add_group(
            "x",
            LoraConfig::new(2, Targets::new(["query"]).layers(Layers::Only(vec![6]))),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            AdapterError::LayerOutOfRange {
                layer: 6,
                layers: 6,
                ..
            }
        ),
        "{err}"
    );
    let err = model
        .add_group("x", LoraConfig::new(0, Targets::new(["query"])))
        .unwrap_err();
    assert!(matches!(err, AdapterError::InvalidConfig { .. }), "{err}");
    let err = model
        .add_group(
            "x",
            LoraConfig::new(2, Targets::from_selector(ModuleSelector::Regex("(".into()))),
        )
        .unwrap_err();
    assert!(matches!(err, AdapterError::InvalidConfig { .. }), "{err}");
    // A rank above the matrix's is refused before anything is allocated (this one would
    // need about 15 GB per projection), naming the field.
    let err = model
        .add_group("x", LoraConfig::new(100_000_000, Targets::new(["query"])))
        .unwrap_err();
    assert!(
        matches!(&err, AdapterError::InvalidConfig { message, .. } if message.contains("`r` 100000000 exceeds")),
        "{err}"
    );
    assert!(model.group_names().all(|g| g != "x"));
}

#[test]
fn ia3_groups_route_like_lora_groups() {
    let device = cpu();
    let mut model = AdaptedModel::<Ia3>::new(minilm(&device));
    let config = Ia3Config::new(Targets::new(["key", "value", "output.dense"]))
        .feedforward(ModuleSelector::names(["output.dense"]));
    model.add_group("a", config.clone()).unwrap();
    model
        .add_group(
            "b",
            config
                .clone()
                .feedforward(ModuleSelector::names(["intermediate.dense"])),
        )
        .unwrap();
    let input = batch(model.config(), &device);
    // Fresh IA³ vectors are ones: the identity.
    let base = last_hidden(&model.forward(&input, &Route::Base).unwrap());
    let fresh = last_hidden(&model.forward(&input, &model.route("a").unwrap()).unwrap());
    assert!(max_diff(&base, &fresh) < 1e-5);
    for (n, (_, projection)) in model.model.projections_mut().enumerate() {
        for (g, slot) in projection.adapter.slots.iter_mut().enumerate() {
            if let Some(m) = slot {
                let width = m.scale.dims()[0];
                let v: Vec<f32> = (0..width)
                    .map(|i| 1.0 + 0.2 * (0.3 * i as f32 + n as f32 + g as f32).sin())
                    .collect();
                m.scale = burn::module::Param::from_tensor(burn::tensor::Tensor::from_data(
                    burn::tensor::TensorData::new(v, [width]),
                    &device,
                ));
            }
        }
    }
    let names = [Some("b"), None, Some("a"), Some("a"), Some("b")];
    let mixed = last_hidden(
        &model
            .forward(&input, &model.route_per_example(&names).unwrap())
            .unwrap(),
    );
    let per = |route: Route| last_hidden(&model.forward(&input, &route).unwrap());
    let (a, b, base) = (
        per(model.route("a").unwrap()),
        per(model.route("b").unwrap()),
        per(Route::Base),
    );
    let step = mixed.len() / names.len();
    for (i, name) in names.iter().enumerate() {
        let want = match name {
            Some("a") => &a,
            Some("b") => &b,
            _ => &base,
        };
        let d = max_diff(
            &mixed[i * step..(i + 1) * step],
            &want[i * step..(i + 1) * step],
        );
        assert!(d < 1e-5, "example {i}: {d}");
    }
    assert!(max_diff(&a, &base) > 1e-2 && max_diff(&a, &b) > 1e-2);
}

/// A copied group computes what its source computes, in parameters of its own: changing the
/// copy's weights leaves the source as it was. For LoRA and IA³ alike.
#[test]
fn a_copied_group_routes_like_its_source_in_its_own_parameters() {
    use burn::module::{Module, ModuleVisitor, Param, ParamId};
    use burn::tensor::Tensor;

    #[derive(Default)]
    struct Ids(Vec<ParamId>);
    impl ModuleVisitor for Ids {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push(param.id);
        }
    }
    fn ids<M: Module>(m: &M) -> Vec<ParamId> {
        let mut v = Ids::default();
        m.visit(&mut v);
        v.0
    }

    let device = cpu();
    let mut lora = AdaptedModel::<Lora>::new(minilm(&device));
    let input = batch(lora.config(), &device);
    lora.add_group(
        "family",
        LoraConfig::new(
            4,
            Targets::new(["query", "value"]).layers(Layers::Only(vec![4, 5])),
        ),
    )
    .unwrap();
    // A fresh LoRA group is the identity (B = 0): give B values so the copy has something to
    // carry.
    for (_, projection) in lora.model.projections_mut() {
        if let Some(m) = projection.adapter.slots.get_mut(0).and_then(Option::as_mut) {
            let b = m.b.val();
            m.b = Param::from_tensor(b.ones_like() * 0.05);
        }
    }
    let copy = lora.copy_group("family", "task").unwrap();
    assert_eq!(
        lora.group("task").unwrap().sites,
        lora.group("family").unwrap().sites
    );
    let out = |m: &AdaptedModel<Lora>, g: &str| {
        last_hidden(&m.forward(&input, &m.route(g).unwrap()).unwrap())
    };
    let (family, task) = (out(&lora, "family"), out(&lora, "task"));
    assert!(max_diff(&family, &task) < 1e-6);
    assert!(
        max_diff(
            &family,
            &last_hidden(&lora.forward(&input, &Route::Base).unwrap())
        ) > 1e-3
    );
    for (_, projection) in lora.model.projections() {
        if let (Some(a), Some(b)) = (projection.adapter.get(0), projection.adapter.get(copy)) {
            let (a, b) = (ids(a), ids(b));
            assert!(
                a.iter().all(|id| !b.contains(id)),
                "the copy shares a parameter"
            );
        }
    }
    // Changing the copy leaves the source as it was.
    for (_, projection) in lora.model.projections_mut() {
        if let Some(m) = projection
            .adapter
            .slots
            .get_mut(copy)
            .and_then(Option::as_mut)
        {
            m.b = Param::from_tensor(m.b.val() * 3.0);
        }
    }
    assert!(max_diff(&family, &out(&lora, "family")) < 1e-6);
    assert!(max_diff(&family, &out(&lora, "task")) > 1e-3);

    // IA³, and the errors.
    let mut ia3 = AdaptedModel::<Ia3>::new(minilm(&device));
    ia3.add_group("family", Ia3Config::new(Targets::new(["key", "value"])))
        .unwrap();
    ia3.copy_group("family", "task").unwrap();
    assert_eq!(
        ia3.group("task").unwrap().config,
        ia3.group("family").unwrap().config
    );
    assert!(matches!(
        ia3.copy_group("nope", "x"),
        Err(AdapterError::UnknownGroup { .. })
    ));
    assert!(matches!(
        ia3.copy_group("family", "task"),
        Err(AdapterError::DuplicateGroup { .. })
    ));
}
