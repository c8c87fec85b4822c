//! The pipelines on the real all-MiniLM-L6-v2 and its tokenizer: character offsets through
//! multi-byte text, a 10,000-character input windowed and stitched, several apps on one
//! backbone with each app's memory a small share of it; the NER pipeline serving, on WNUT-16's
//! test set, the entities fine-tuning's evaluation scores.

use std::sync::Arc;

use lora_bert::adapters::{AdaptedModel, Lora};
use lora_bert::apps::entity_spans;
use lora_bert::assets::{self, AssetCache};
use lora_bert::data::LabelVocab;
use lora_bert::data::align::LabelAlignment;
use lora_bert::data::registry;
use lora_bert::data::token::encode_tagged;
use lora_bert::encoder::tokenizer::{BertTokenizer, LengthPolicy};
use lora_bert::pipelines::{ClassifierPipeline, NerPipeline};
use lora_bert::runtime::Runtime;
use lora_bert::train::finetune::{TokenEvalOptions, evaluate_tokens, predict_word_tags};
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

/// What is served is what was scored, on real data: for a saved app, the entities the NER
/// pipeline returns for every WNUT-16 test sentence are the entities fine-tuning's evaluation
/// scored (read from the same app loaded for evaluation, with windows of 32 tokens).
#[test]
fn wnut16_test_entities_served_are_the_ones_evaluation_scores() {
    let device = device::device(Backend::default_cpu().unwrap()).unwrap();
    let cache = AssetCache::from_env().unwrap();
    let files = assets::all_minilm_l6_v2(&cache).unwrap();
    let wnut = registry::wnut16(&cache).unwrap();
    let vocab = LabelVocab::from_tags(
        [&wnut.train, &wnut.dev, &wnut.test]
            .into_iter()
            .flatten()
            .flat_map(|s| s.tags.iter()),
    )
    .unwrap();
    let backbone = || AdaptedModel::<Lora>::new(BertModel::load(&files.dir, &device).unwrap().0);
    // An untrained app: a fresh head tags many words as entities, which is what is compared.
    let dir = tempfile::tempdir().unwrap();
    device.seed(5);
    TokenClassifier::new(
        backbone(),
        &AppSetup::new("wnut16", FineTuneMode::LoraHead),
        &TokenClassificationHeadConfig::new(384, vocab.len()),
    )
    .unwrap()
    .save(dir.path(), &vocab)
    .unwrap();
    let tokenizer = BertTokenizer::from_file(&files.tokenizer)
        .unwrap()
        .with_max_length(32)
        .with_length_policy(LengthPolicy::Window { stride: 8 });
    let test = &wnut.test;

    // Evaluation: the app loaded as fine-tuning loads it, its word tags and entity scores.
    let (clf, labels) = TokenClassifier::load(dir.path(), backbone()).unwrap();
    let examples = encode_tagged(&tokenizer, test, &labels, LabelAlignment::FirstSubword).unwrap();
    assert!(
        examples.len() > test.len(),
        "some test sentences are windowed"
    );
    let options = TokenEvalOptions::new(tokenizer.pad_id());
    let scored = predict_word_tags(&clf, &examples, test.len(), &labels, &options).unwrap();
    let report = evaluate_tokens(&clf, &examples, test, &labels, &options).unwrap();

    // Serving: the runtime and the NER pipeline on the same sentences.
    let runtime = Arc::new(Runtime::new(
        BertModel::load(&files.dir, &device).unwrap().0,
    ));
    runtime.register("wnut16", dir.path()).unwrap();
    let words: Vec<Vec<&str>> = test
        .iter()
        .map(|s| s.tokens.iter().map(String::as_str).collect())
        .collect();
    let served = NerPipeline::new(runtime, "wnut16", tokenizer)
        .unwrap()
        .predict_words(&words)
        .unwrap();

    let mut total = 0;
    for (s, (tags, entities)) in scored.iter().zip(&served).enumerate() {
        let want: Vec<(String, std::ops::Range<usize>)> = entity_spans(tags)
            .unwrap()
            .into_iter()
            .map(|e| (e.kind, e.start..e.end))
            .collect();
        let got: Vec<(String, std::ops::Range<usize>)> = entities
            .iter()
            .map(|e| (e.label.clone(), e.words.clone()))
            .collect();
        assert_eq!(got, want, "test sentence {s}: {:?}", test[s].tokens);
        total += got.len();
    }
    assert_eq!(report.found, total, "the entities evaluation counted");
    assert!(
        total > 100,
        "only {total} entities in {} sentences",
        test.len()
    );
}
