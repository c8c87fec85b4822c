//! The pipelines on the real all-MiniLM-L6-v2 and its tokenizer: character offsets through
//! multi-byte text, a 10,000-character input windowed and stitched, several apps on one
//! backbone with each app's memory a small share of it.

use std::sync::Arc;

use lora_bert::adapters::{AdaptedModel, Lora};
use lora_bert::assets::{self, AssetCache};
use lora_bert::data::LabelVocab;
use lora_bert::encoder::tokenizer::BertTokenizer;
use lora_bert::pipelines::{ClassifierPipeline, NerPipeline};
use lora_bert::runtime::Runtime;
use lora_bert::train::{
    AppSetup, FineTuneMode, SequenceClassificationHeadConfig, TextClassifier,
    TokenClassificationHeadConfig, TokenClassifier,
};
use lora_bert::{Backend, BertModel, device};

#[test]
fn real_model_pipelines_keep_offsets_exact_over_windows_and_apps_small() {
    let device = device::device(Backend::default_cpu().unwrap()).unwrap();
    let files = assets::all_minilm_l6_v2(&AssetCache::from_env().unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let backbone = || AdaptedModel::<Lora>::new(BertModel::load(&files.dir, &device).unwrap().0);
    let runtime = Arc::new(Runtime::new(
        BertModel::load(&files.dir, &device).unwrap().0,
    ));

    // Untrained apps (LoRA + head with fresh weights): what they predict is arbitrary, the
    // plumbing around it is not.
    let bio = LabelVocab::new(
        ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
            .map(String::from)
            .to_vec(),
    )
    .unwrap();
    let two = LabelVocab::new(vec!["negative".into(), "positive".into()]).unwrap();
    for i in 0..4 {
        device.seed(i);
        let setup = AppSetup::new(format!("ner{i}"), FineTuneMode::LoraHead);
        let path = dir.path().join(format!("ner{i}"));
        TokenClassifier::new(
            backbone(),
            &setup,
            &TokenClassificationHeadConfig::new(384, 5),
        )
        .unwrap()
        .save(&path, &bio)
        .unwrap();
        runtime.register(&format!("ner{i}"), &path).unwrap();
        let setup = AppSetup::new(format!("clf{i}"), FineTuneMode::LoraHead);
        let path = dir.path().join(format!("clf{i}"));
        TextClassifier::new(
            backbone(),
            &setup,
            &SequenceClassificationHeadConfig::new(384, 2),
        )
        .unwrap()
        .save(&path, &two)
        .unwrap();
        runtime.register(&format!("clf{i}"), &path).unwrap();
    }
    let memory = runtime.memory();
    assert_eq!(memory.apps.len(), 8);
    for (name, _) in &memory.apps {
        let share = memory.share(name).unwrap();
        assert!(share < 0.02, "{name}: {:.4} of the backbone", share);
    }

    let tokenizer = BertTokenizer::from_file(&files.tokenizer)
        .unwrap()
        .with_max_length(128);
    let ner = NerPipeline::new(runtime.clone(), "ner0", tokenizer.clone()).unwrap();
    let sentence =
        "Zoë and José flew from Zürich to São Paulo 🙂 — then met Anna Müller in New York. ";
    let long = sentence.repeat(10_000 / sentence.chars().count() + 1);
    assert!(long.chars().count() >= 10_000);
    let out = ner.predict(&[sentence, &long]).unwrap();
    for (text, entities) in [sentence, long.as_str()].iter().zip(&out) {
        let chars: Vec<char> = text.chars().collect();
        for e in entities {
            assert_eq!(chars[e.start..e.end].iter().collect::<String>(), e.text);
            assert!(!e.text.starts_with(' ') && !e.text.ends_with(' '), "{e:?}");
        }
        for pair in entities.windows(2) {
            assert!(pair[0].end <= pair[1].start, "{pair:?}");
        }
    }
    // The long text is covered to its end.
    assert!(
        !out[0].is_empty(),
        "an untrained head tags something in 17 words"
    );
    let last = out[1].last().unwrap();
    assert!(last.start > 9_000, "the windows reach the end ({last:?})");

    let clf = ClassifierPipeline::new(runtime.clone(), "clf3", tokenizer).unwrap();
    let got = clf.predict(&[sentence, &long]).unwrap();
    for c in &got {
        assert!((c.scores.iter().map(|s| s.1).sum::<f32>() - 1.0).abs() < 1e-5);
    }
    // Removing apps leaves the others serving.
    runtime.remove("ner1").unwrap();
    runtime.remove("clf2").unwrap();
    assert_eq!(clf.predict(&[sentence]).unwrap()[0], got[0]);
}
