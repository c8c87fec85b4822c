//! PEFT compatibility on the real all-MiniLM-L6-v2: adapters Python PEFT saved load and
//! reproduce PEFT's outputs; adapters lora-bert saves are what PEFT loads (see
//! `scripts/peft_fixtures.py`, which made every fixture here).

mod common;

use common::*;
use lora_bert_adapters::{
    AdaptedModel, AdapterConfig, AdapterError, Layers, Lora, LoraConfig, ModuleSelector, Targets,
    TensorFile,
};
use lora_bert_encoder::Route;

const LORA_FIXTURES: [&str; 3] = ["key-dense-r2", "qv-last2-rslora", "regex-r2"];

#[test]
fn peft_saved_lora_adapters_reproduce_peft_outputs() {
    let device = cpu();
    for name in LORA_FIXTURES {
        let expected = expected(name);
        let mut model = AdaptedModel::<Lora>::new(minilm(&device));
        model.load_group(name, fixture(name)).expect(name);
        let input = fixture_input(&expected, model.config(), &device);
        let mask = mask(&expected);
        let want = flat(&expected["last_hidden_state"]);

        let out = model.forward(&input, &model.route(name).unwrap()).unwrap();
        let diff = masked_max_diff(&last_hidden(&out), &want, &mask, 384);
        assert!(diff < 1e-4, "{name}: max |lora-bert - PEFT| = {diff}");
        let pooled = values(out.pooler_output.expect("pooler"));
        let diff = max_diff(&pooled, &flat(&expected["pooler_output"]));
        assert!(diff < 1e-4, "{name}: pooler differs from PEFT by {diff}");

        // The adapter matters: the base route is far from PEFT's adapted output.
        let base = model.forward(&input, &Route::Base).unwrap();
        let moved = masked_max_diff(&last_hidden(&base), &want, &mask, 384);
        assert!(
            moved > 0.05,
            "{name}: the adapter moves outputs by only {moved}"
        );
    }
}

#[test]
fn peft_targets_resolve_to_the_modules_peft_adapted() {
    let device = cpu();
    let mut model = AdaptedModel::<Lora>::new(minilm(&device));
    for name in LORA_FIXTURES {
        model.load_group(name, fixture(name)).unwrap();
    }
    // "dense" covers the three dense layers of every layer and PEFT's pooler.dense.
    let sites = model.sites("key-dense-r2").unwrap();
    assert_eq!(sites.len(), 6 * 4 + 1);
    assert_eq!(sites.last().unwrap().hf_path(), "pooler.dense");
    let sites: Vec<String> = model
        .sites("qv-last2-rslora")
        .unwrap()
        .iter()
        .map(|s| s.hf_path())
        .collect();
    assert_eq!(
        sites,
        [
            "encoder.layer.4.attention.self.query",
            "encoder.layer.4.attention.self.value",
            "encoder.layer.5.attention.self.query",
            "encoder.layer.5.attention.self.value",
        ]
    );
    let group = model.group("qv-last2-rslora").unwrap();
    assert_eq!(group.config.r, 4);
    assert!(group.config.use_rslora);
    assert_eq!(group.config.scaling(), 8.0 / 2.0);
    assert!(matches!(
        model.group("regex-r2").unwrap().config.targets.modules,
        ModuleSelector::Regex(_)
    ));
}

/// Saving a loaded PEFT adapter writes PEFT's tensors back bit for bit, and a config that
/// reads back into the same configuration.
#[test]
fn saving_a_peft_adapter_round_trips_exactly() {
    let device = cpu();
    let mut model = AdaptedModel::<Lora>::new(minilm(&device));
    let tmp = tempfile::tempdir().unwrap();
    for name in LORA_FIXTURES {
        model.load_group(name, fixture(name)).unwrap();
        let out = tmp.path().join(name);
        model.save_group(name, &out).unwrap();
        let theirs = std::fs::read(fixture(name).join("adapter_model.safetensors")).unwrap();
        let ours = std::fs::read(out.join("adapter_model.safetensors")).unwrap();
        let theirs = safetensors::SafeTensors::deserialize(&theirs).unwrap();
        let ours = safetensors::SafeTensors::deserialize(&ours).unwrap();
        let mut names = ours.names();
        names.sort();
        let mut expected_names = theirs.names();
        expected_names.sort();
        assert_eq!(names, expected_names, "{name}: tensor names");
        for n in names {
            let (a, b) = (ours.tensor(n).unwrap(), theirs.tensor(n).unwrap());
            assert_eq!(a.shape(), b.shape(), "{n}");
            assert_eq!(a.data(), b.data(), "{n}: values differ");
        }
        let mut again = AdaptedModel::<Lora>::new(minilm(&device));
        again.load_group(name, &out).unwrap();
        assert_eq!(
            again.group(name).unwrap().config,
            model.group(name).unwrap().config,
            "{name}: config"
        );
    }
}

/// The adapter that lora-bert wrote for `scripts/peft_fixtures.py check`: deterministic
/// weights on query/value/output.dense of the last two layers.
fn lora_bert_made(model: &mut AdaptedModel<Lora>) {
    let targets = Targets::new(["query", "value", "output.dense"]).layers(Layers::Last(2));
    let config = LoraConfig::new(3, targets).alpha(6.0).dropout(0.05);
    model.add_group("made", config).unwrap();
    perturb_lora(model, "made", 0.08);
    model.set_base_model_name("sentence-transformers/all-MiniLM-L6-v2");
}

/// lora-bert's own adapter loads in PEFT with the same outputs: the committed fixture is
/// what this code writes (byte for byte), and PEFT's outputs for it (recorded by
/// `peft_fixtures.py check`) match lora-bert's. Set `LORA_BERT_WRITE_FIXTURES=1` to rewrite
/// the adapter files after a deliberate change, then rerun the script's `check`.
#[test]
fn lora_bert_saved_adapter_matches_peft_outputs() {
    let device = cpu();
    let mut model = AdaptedModel::<Lora>::new(minilm(&device));
    lora_bert_made(&mut model);
    let dir = fixture("lora-bert-made");
    if std::env::var_os("LORA_BERT_WRITE_FIXTURES").is_some() {
        model.save_group("made", &dir).unwrap();
    }
    let tmp = tempfile::tempdir().unwrap();
    model.save_group("made", tmp.path()).unwrap();
    for file in ["adapter_model.safetensors", "adapter_config.json"] {
        assert!(
            std::fs::read(tmp.path().join(file)).unwrap() == std::fs::read(dir.join(file)).unwrap(),
            "{file} differs from the committed fixture"
        );
    }
    let expected = expected("lora-bert-made");
    let input = fixture_input(&expected, model.config(), &device);
    let out = model
        .forward(&input, &model.route("made").unwrap())
        .unwrap();
    let diff = masked_max_diff(
        &last_hidden(&out),
        &flat(&expected["last_hidden_state"]),
        &mask(&expected),
        384,
    );
    assert!(diff < 1e-4, "max |lora-bert - PEFT| = {diff}");
    assert!(expected["base_max_abs_diff"].as_f64().unwrap() > 0.05);
}

#[test]
fn an_adapter_for_another_backbone_is_a_shape_error() {
    let device = cpu();
    let tiny = lora_bert_encoder::BertModel::init(&tiny_config(), true, &device);
    let mut model = AdaptedModel::<Lora>::new(tiny);
    let err = model
        .load_group("g", fixture("qv-last2-rslora"))
        .unwrap_err();
    // The tiny model has 3 layers; layers_to_transform names 4 and 5.
    assert!(
        matches!(
            err,
            AdapterError::LayerOutOfRange {
                layer: 4,
                layers: 3,
                ..
            }
        ),
        "{err}"
    );
    let err = model.load_group("g", fixture("key-dense-r2")).unwrap_err();
    match err {
        AdapterError::Shape {
            name,
            expected,
            actual,
            ..
        } => {
            assert_eq!(
                name,
                "base_model.model.encoder.layer.0.attention.self.key.lora_A.weight"
            );
            assert_eq!(expected, [2, 16]);
            assert_eq!(actual, [2, 384]);
        }
        other => panic!("expected a shape error, got {other}"),
    }
    assert_eq!(
        model.group_names().count(),
        0,
        "a failed load registers nothing"
    );
}

#[test]
fn tensor_files_check_every_tensor() {
    let device = cpu();
    let dir = fixture("qv-last2-rslora");
    let bytes = std::fs::read(dir.join("adapter_model.safetensors")).unwrap();
    let config = LoraConfig::new(
        4,
        Targets::new(["query", "value"]).layers(Layers::Only(vec![4, 5])),
    )
    .alpha(8.0)
    .rslora(true);

    // One module fewer than the file holds: the leftovers are named.
    let mut model = AdaptedModel::<Lora>::new(minilm(&device));
    let narrow = config.with_targets(Targets::new(["query"]).layers(Layers::Only(vec![4, 5])));
    let err = model
        .load_group_from(
            "g",
            narrow,
            TensorFile::parse("x.safetensors", &bytes).unwrap(),
        )
        .unwrap_err();
    match err {
        AdapterError::UnexpectedTensors { names, .. } => assert_eq!(names.len(), 4, "{names:?}"),
        other => panic!("{other}"),
    }
    // A module more than the file holds: the missing tensor is named.
    let wide =
        config.with_targets(Targets::new(["query", "value"]).layers(Layers::Only(vec![3, 4, 5])));
    let err = model
        .load_group_from(
            "g",
            wide,
            TensorFile::parse("x.safetensors", &bytes).unwrap(),
        )
        .unwrap_err();
    assert!(
        matches!(&err, AdapterError::MissingTensor { name, .. }
            if name == "base_model.model.encoder.layer.3.attention.self.query.lora_A.weight"),
        "{err}"
    );
    // The wrong rank.
    let mut wrong_rank = config.clone();
    wrong_rank.r = 8;
    let err = model
        .load_group_from(
            "g",
            wrong_rank,
            TensorFile::parse("x.safetensors", &bytes).unwrap(),
        )
        .unwrap_err();
    assert!(matches!(err, AdapterError::Shape { .. }), "{err}");
    // Truncated bytes.
    let err = TensorFile::parse("x.safetensors", &bytes[..bytes.len() / 2]).unwrap_err();
    assert!(matches!(err, AdapterError::Corrupt { .. }), "{err}");
    model
        .load_group_from(
            "g",
            config,
            TensorFile::parse("x.safetensors", &bytes).unwrap(),
        )
        .unwrap();
}

/// The IA³ adapter PEFT saved loads, reproduces PEFT's outputs and saves back bit for bit.
#[test]
fn peft_saved_ia3_adapter_round_trips() {
    use lora_bert_adapters::{Ia3, Ia3Config};
    let device = cpu();
    let mut model = AdaptedModel::<Ia3>::new(minilm(&device));
    model.load_group("ia3", fixture("ia3-kv-ff")).unwrap();
    let feedforward: Vec<String> = model
        .model
        .projections()
        .filter_map(|(site, p)| {
            p.adapter
                .get(0)
                .filter(|m| m.feedforward)
                .map(|_| site.hf_path())
        })
        .collect();
    assert_eq!(
        feedforward.len(),
        12,
        "attention.output.dense and output.dense of 6 layers"
    );
    assert!(feedforward.iter().all(|p| p.ends_with("output.dense")));
    let tmp = tempfile::tempdir().unwrap();
    model.save_group("ia3", tmp.path()).unwrap();
    let ours = std::fs::read(tmp.path().join("adapter_model.safetensors")).unwrap();
    let theirs = std::fs::read(fixture("ia3-kv-ff").join("adapter_model.safetensors")).unwrap();
    let (ours, theirs) = (
        safetensors::SafeTensors::deserialize(&ours).unwrap(),
        safetensors::SafeTensors::deserialize(&theirs).unwrap(),
    );
    assert_eq!(ours.len(), theirs.len());
    for (name, view) in theirs.tensors() {
        let mine = ours.tensor(&name).unwrap();
        assert_eq!(
            (mine.shape(), mine.data()),
            (view.shape(), view.data()),
            "{name}"
        );
    }
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["peft_type"], "IA3");
    assert_eq!(
        config["base_model_name_or_path"],
        "sentence-transformers/all-MiniLM-L6-v2"
    );
    assert!(
        config.get("layers_to_transform").is_none(),
        "IA3Config has no such field"
    );
    // PEFT's IA³ cannot restrict layers by index.
    let err = model
        .add_group(
            "x",
            Ia3Config::new(Targets::new(["key"]).layers(Layers::Last(2))),
        )
        .unwrap_err();
    assert!(matches!(err, AdapterError::InvalidConfig { .. }), "{err}");
}
