//! Downstream fine-tuning on a tiny BERT with the real all-MiniLM-L6-v2 tokenizer: what each
//! mode trains (and what stays bit for bit), the loss going down on toy token and text tasks,
//! dev metrics against an independent computation, app directories round-tripping, and tasks
//! starting from a copy of a family group.

use std::sync::{Mutex, OnceLock};

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Distribution, Tensor};
use lora_bert_adapters::{AdaptedModel, Layers, Lora, LoraConfig, Targets};
use lora_bert_data::LabelVocab;
use lora_bert_data::LabeledText;
use lora_bert_data::TaggedSentence;
use lora_bert_data::align::LabelAlignment;
use lora_bert_data::batch::{EncodedTexts, TextEncoder};
use lora_bert_data::token::{TokenBatch, TokenExample, encode_tagged};
use lora_bert_encoder::tokenizer::BertTokenizer;
use lora_bert_encoder::{BertConfig, BertModel, device};
use lora_bert_metrics::{ClassificationReport, Mode, NerReport};
use lora_bert_train::finetune::{
    AppSetup, FineTuneConfig, FineTuneMode, TextClassifier, TextMetric, TokenClassifier,
    TokenEvalOptions, evaluate_tokens, finetune_texts, finetune_tokens, predict_texts,
    predict_token_logits,
};
use lora_bert_train::input::ToBertInput;
use lora_bert_train::{TrainConfig, TrainError};

/// The CPU backends draw dropout masks and initial values from one process-wide generator:
/// tests that train run one at a time.
static BACKEND_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    BACKEND_RNG.lock().unwrap_or_else(|e| e.into_inner())
}

fn tokenizer() -> &'static BertTokenizer {
    static TOK: OnceLock<BertTokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        let cache = lora_bert_assets::AssetCache::from_env().expect("asset cache");
        let files = lora_bert_assets::all_minilm_l6_v2(&cache).expect("all-MiniLM-L6-v2");
        BertTokenizer::from_file(files.tokenizer).expect("tokenizer")
    })
}

fn cpu() -> Device {
    device::autodiff(device::device(device::Backend::NdArray).unwrap())
}

/// A tiny random BERT with MiniLM's vocabulary and two groups a task must not touch:
/// `other` (every layer) and the family group `ner` (last layer), both with non-zero `B`.
///
/// burn draws from one process-wide generator, lazily (on a parameter's first use), and tests
/// run on parallel threads, so seeding before `init` does not give every call the same weights;
/// the first model is kept and cloned (clones share their parameters' initialisation).
fn base(device: &Device) -> AdaptedModel<Lora> {
    static MADE: Mutex<Vec<(String, AdaptedModel<Lora>)>> = Mutex::new(Vec::new());
    let key = format!("{device:?}");
    let mut made = MADE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, model)) = made.iter().find(|(k, _)| *k == key) {
        return model.clone();
    }
    let model = seeded_base(device);
    made.push((key, model.clone()));
    model
}

fn seeded_base(device: &Device) -> AdaptedModel<Lora> {
    device.seed(5);
    let config = BertConfig::new(30522, 16, 2, 2, 32);
    let mut model = AdaptedModel::<Lora>::new(BertModel::init(&config, false, device));
    model
        .add_group(
            "other",
            LoraConfig::new(4, Targets::new(["query", "value"])),
        )
        .unwrap();
    model
        .add_group(
            "ner",
            LoraConfig::new(2, Targets::new(["query", "value"]).layers(Layers::Last(1))).alpha(4.0),
        )
        .unwrap();
    for name in ["other", "ner"] {
        let id = model.group_id(name).unwrap();
        for (_, projection) in model.model.projections_mut() {
            if let Some(lora) = projection.adapter.set(id, None) {
                let [r, d_out] = lora.b.dims();
                let b = Tensor::random([r, d_out], Distribution::Normal(0.0, 0.5), device);
                let lora = Lora {
                    b: Param::from_tensor(b),
                    ..lora
                };
                projection.adapter.set(id, Some(lora));
            }
        }
    }
    model
}

// ---------------------------------------------------------------------------------------------
// Snapshots

struct Values(Vec<Vec<f32>>);

impl ModuleVisitor for Values {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0
            .push(param.val().into_data().try_into_vec::<f32>().unwrap());
    }
}

fn values<M: Module>(m: &M) -> Vec<Vec<f32>> {
    let mut v = Values(Vec::new());
    m.visit(&mut v);
    v.0
}

fn backbone(model: &AdaptedModel<Lora>) -> Vec<Vec<f32>> {
    values(&model.clone().into_backbone())
}

/// `A` and `B` of every module of group `name`, in site order.
fn group(model: &AdaptedModel<Lora>, name: &str) -> Vec<Vec<f32>> {
    let id = model.group_id(name).unwrap();
    let mut out = Vec::new();
    for (_, projection) in model.model.projections() {
        if let Some(lora) = projection.adapter.get(id) {
            out.extend(values(lora));
        }
    }
    assert!(!out.is_empty());
    out
}

// ---------------------------------------------------------------------------------------------
// Toy tasks

const NAMES: [&str; 4] = ["alice", "bob", "carol", "dave"];
const CITIES: [&str; 4] = ["paris", "london", "berlin", "madrid"];
const FILLER: [&str; 8] = [
    "the",
    "met",
    "in",
    "yesterday",
    "unbelievably",
    "visited",
    "and",
    "quietly",
];

/// Sentences of filler words with people (`B-PER`) and cities (`B-LOC`, `new york`:
/// `B-LOC I-LOC`); the tag is a function of the word.
fn sentences(n: usize, offset: usize) -> Vec<TaggedSentence> {
    (0..n)
        .map(|i| {
            let k = i + offset;
            let mut tokens = Vec::new();
            let mut tags = Vec::new();
            for j in 0..(4 + k % 4) {
                let pick = (k * 7 + j * 3) % 11;
                if pick < 2 {
                    tokens.push(NAMES[(k + j) % 4].to_owned());
                    tags.push("B-PER".to_owned());
                } else if pick < 4 {
                    tokens.push(CITIES[(k * 3 + j) % 4].to_owned());
                    tags.push("B-LOC".to_owned());
                } else if pick == 4 {
                    tokens.extend(["new".to_owned(), "york".to_owned()]);
                    tags.extend(["B-LOC".to_owned(), "I-LOC".to_owned()]);
                } else {
                    tokens.push(FILLER[(k * 5 + j) % 8].to_owned());
                    tags.push("O".to_owned());
                }
            }
            TaggedSentence { tokens, tags }
        })
        .collect()
}

fn tags() -> LabelVocab {
    LabelVocab::from_tags(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]).unwrap()
}

fn token_data(n: usize, offset: usize) -> (Vec<TaggedSentence>, Vec<TokenExample>) {
    let s = sentences(n, offset);
    let examples = encode_tagged(tokenizer(), &s, &tags(), LabelAlignment::FirstSubword).unwrap();
    (s, examples)
}

const GOOD: [&str; 4] = ["great", "excellent", "wonderful", "good"];
const BAD: [&str; 4] = ["awful", "terrible", "boring", "bad"];

/// "positive" when the text holds a good word, "negative" when it holds a bad one.
fn texts(n: usize, offset: usize) -> Vec<LabeledText> {
    (0..n)
        .map(|i| {
            let k = i + offset;
            let positive = k.is_multiple_of(2);
            let word = if positive { GOOD } else { BAD }[(k / 2) % 4];
            let filler: Vec<&str> = (0..(k % 3 + 1)).map(|j| FILLER[(k + j) % 8]).collect();
            LabeledText {
                text: format!("{} film was {word} {}", filler.join(" "), FILLER[k % 8]),
                label: if positive { "positive" } else { "negative" }.to_owned(),
            }
        })
        .collect()
}

fn classes() -> LabelVocab {
    LabelVocab::from_labels(["negative", "positive"]).unwrap()
}

fn text_data(n: usize, offset: usize) -> EncodedTexts {
    let vocab = classes();
    TextEncoder::new(tokenizer())
        .encode_texts(&texts(n, offset), |l| vocab.id(l))
        .unwrap()
}

fn config(app: AppSetup, steps: usize) -> FineTuneConfig {
    FineTuneConfig {
        batch_size: 8,
        seed: 1,
        ..FineTuneConfig::new(
            app,
            TrainConfig {
                learning_rate: 1e-2,
                warmup_steps: 2,
                weight_decay: 0.0,
                seed: 2,
                ..TrainConfig::new(steps)
            },
        )
    }
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn each_mode_trains_exactly_its_parameters() {
    let _rng = serial();
    let device = cpu();
    let (dev_gold, dev) = token_data(4, 100);
    let (_, train) = token_data(16, 0);
    let pad = tokenizer().pad_id();
    let reference = base(&device);
    let backbone0 = backbone(&reference);
    let other0 = group(&reference, "other");
    let ner0 = group(&reference, "ner");

    for (mode, init) in [
        (FineTuneMode::HeadOnly, None),
        (FineTuneMode::HeadOnly, Some("ner")),
        (FineTuneMode::LoraHead, None),
        (FineTuneMode::LoraHead, Some("ner")),
        (FineTuneMode::Full, None),
        (FineTuneMode::Full, Some("ner")),
    ] {
        let mut app = AppSetup::new("wnut", mode);
        if let Some(g) = init {
            app = app.with_init_group(g);
        }
        let cfg = config(app.clone(), 3);
        // The head as it starts: the same seed makes the same head.
        let model = base(&device);
        device.seed(cfg.seed);
        let head0 = values(
            &TokenClassifier::new(
                model,
                &app,
                &lora_bert_train::TokenClassificationHeadConfig::new(16, 5).with_dropout(0.1),
            )
            .unwrap()
            .head,
        );
        let (clf, report) =
            finetune_tokens(base(&device), &train, (&dev, &dev_gold), &tags(), &cfg, pad).unwrap();
        assert_eq!(report.steps, 3);
        let what = format!("{mode:?} from {init:?}");
        assert_eq!(group(&clf.model, "other"), other0, "{what}: `other` moved");
        assert_eq!(group(&clf.model, "ner"), ner0, "{what}: `ner` moved");
        assert_ne!(values(&clf.head), head0, "{what}: the head did not train");
        let backbone_now = backbone(&clf.model);
        if mode == FineTuneMode::Full {
            assert_ne!(
                backbone_now, backbone0,
                "{what}: the backbone did not train"
            );
        } else {
            assert_eq!(backbone_now, backbone0, "{what}: a frozen backbone moved");
        }
        let has_group = mode == FineTuneMode::LoraHead || init.is_some();
        assert_eq!(clf.app.group.is_some(), has_group, "{what}");
        assert_eq!(clf.model.group_id("wnut").is_ok(), has_group, "{what}");
        if has_group {
            let start = match init {
                Some(g) => group(&reference, g),
                None => Vec::new(),
            };
            let now = group(&clf.model, "wnut");
            match (mode, init) {
                (FineTuneMode::HeadOnly, _) => assert_eq!(now, start, "{what}: group moved"),
                (_, Some(_)) => assert_ne!(now, start, "{what}: group did not train"),
                _ => {
                    // A fresh group: B started at zero.
                    let b_moved = now
                        .iter()
                        .skip(1)
                        .step_by(2)
                        .any(|b| b.iter().any(|&v| v != 0.0));
                    assert!(b_moved, "{what}: group did not train");
                }
            }
        }
    }
}

#[test]
fn tokens_loss_goes_down_and_the_dev_metric_is_entity_micro_f1() {
    let _rng = serial();
    let device = cpu();
    let (_, train) = token_data(48, 0);
    let (dev_gold, dev) = token_data(12, 500);
    let pad = tokenizer().pad_id();
    let steps = 200;
    let mut cfg = config(AppSetup::new("wnut", FineTuneMode::LoraHead), steps);
    cfg.train.learning_rate = 3e-2;
    let (clf, report) =
        finetune_tokens(base(&device), &train, (&dev, &dev_gold), &tags(), &cfg, pad).unwrap();
    let (first, last) = (
        mean(&report.losses[..10]),
        mean(&report.losses[steps - 10..]),
    );
    assert!(last < 0.5 * first, "loss {first:.4} -> {last:.4}");

    // Independently: one sentence per forward pass, each word's first piece's argmax.
    let vocab = tags();
    let model = clf.valid();
    let route = model.route().unwrap();
    let mut pred = Vec::new();
    for ex in &dev {
        assert_eq!(ex.num_windows, 1);
        let batch = TokenBatch::collate(std::slice::from_ref(ex), &[0], pad).unwrap();
        let input = batch
            .to_input(model.model.config(), &model.model.device())
            .unwrap();
        let logits: Vec<f32> = model
            .forward(&input, &route)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let mut tags = vec![None; ex.num_words];
        for (t, w) in ex.token_word.iter().enumerate() {
            if let Some(w) = *w
                && tags[w].is_none()
            {
                let row = &logits[t * 5..(t + 1) * 5];
                let best = (0..5).fold(0, |b, c| if row[c] > row[b] { c } else { b });
                tags[w] = Some(vocab.label(best as u32).unwrap().to_owned());
            }
        }
        pred.push(tags.into_iter().map(Option::unwrap).collect::<Vec<_>>());
    }
    let gold: Vec<Vec<String>> = dev_gold.iter().map(|s| s.tags.clone()).collect();
    let expected = NerReport::new(&gold, &pred, Mode::Default).unwrap();
    let f1 = expected.averages.micro_avg.f1;
    assert!(f1 > 0.3, "the toy task is learnt: micro-F1 {f1}");
    // Evaluated once, at the end: the best model is the last one.
    assert_eq!(report.best, Some((f1, steps)));
    let again =
        evaluate_tokens(&clf, &dev, &dev_gold, &vocab, &TokenEvalOptions::new(pad)).unwrap();
    assert_eq!(again, expected);
}

#[test]
fn texts_loss_goes_down_and_the_dev_metric_is_accuracy_or_macro_f1() {
    let _rng = serial();
    let device = cpu();
    let train = text_data(64, 0);
    let dev = text_data(16, 300);
    let steps = 200;
    for metric in [TextMetric::Accuracy, TextMetric::MacroF1] {
        let cfg = FineTuneConfig {
            text_metric: metric,
            ..config(AppSetup::new("sst", FineTuneMode::LoraHead), steps)
        };
        let (clf, report) = finetune_texts(base(&device), &train, &dev, &classes(), &cfg).unwrap();
        let (first, last) = (
            mean(&report.losses[..10]),
            mean(&report.losses[steps - 10..]),
        );
        assert!(last < 0.5 * first, "loss {first:.4} -> {last:.4}");

        // Independently: one text at a time, argmax by hand.
        let model = clf.valid();
        let route = model.route().unwrap();
        let vocab = classes();
        let mut pred = Vec::new();
        for i in 0..dev.len() {
            let batch = dev.batch(&[i]).unwrap();
            let input = batch
                .to_input(model.model.config(), &model.model.device())
                .unwrap();
            let logits: Vec<f32> = model
                .forward(&input, &route)
                .unwrap()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            pred.push(vocab.label(u32::from(logits[1] > logits[0])).unwrap());
        }
        let gold: Vec<&str> = dev
            .labels()
            .iter()
            .map(|&l| vocab.label(l).unwrap())
            .collect();
        let expected = ClassificationReport::new(&gold, &pred).unwrap();
        let value = match metric {
            TextMetric::Accuracy => expected.accuracy,
            TextMetric::MacroF1 => expected.macro_f1(),
        };
        assert!(
            expected.accuracy > 0.8,
            "the toy task is learnt: {}",
            expected.accuracy
        );
        assert_eq!(report.best, Some((value, steps)), "{metric:?}");
    }
}

#[test]
fn apps_save_and_load_back_with_the_same_predictions() {
    let _rng = serial();
    let device = cpu();
    let pad = tokenizer().pad_id();
    let (_, train) = token_data(16, 0);
    let (dev_gold, dev) = token_data(6, 100);
    let train_texts = text_data(16, 0);
    let dev_texts = text_data(8, 300);

    for (mode, init) in [
        (FineTuneMode::LoraHead, None),
        (FineTuneMode::HeadOnly, None),
        (FineTuneMode::HeadOnly, Some("ner")),
        (FineTuneMode::Full, None),
    ] {
        let mut app = AppSetup::new("task", mode);
        if let Some(g) = init {
            app = app.with_init_group(g);
        }
        let cfg = config(app, 4);
        let what = format!("{mode:?} from {init:?}");

        let (clf, _) =
            finetune_tokens(base(&device), &train, (&dev, &dev_gold), &tags(), &cfg, pad).unwrap();
        let dir = tempfile::tempdir().unwrap();
        clf.save(dir.path(), &tags()).unwrap();
        assert_eq!(
            dir.path().join("adapter_model.safetensors").exists(),
            clf.app.group.is_some(),
            "{what}"
        );
        assert_eq!(
            dir.path().join("backbone/model.safetensors").exists(),
            mode == FineTuneMode::Full,
            "{what}"
        );
        // A fresh base model (another process would rebuild it the same way).
        let (loaded, labels) = TokenClassifier::load(dir.path(), base(&device)).unwrap();
        assert_eq!(labels, tags());
        assert_eq!(loaded.app, clf.app);
        assert_eq!(
            predict_token_logits(&loaded, &dev, 4, pad).unwrap(),
            predict_token_logits(&clf, &dev, 4, pad).unwrap(),
            "{what}"
        );

        let (clf, _) =
            finetune_texts(base(&device), &train_texts, &dev_texts, &classes(), &cfg).unwrap();
        let dir = tempfile::tempdir().unwrap();
        clf.save(dir.path(), &classes()).unwrap();
        let (loaded, labels) = TextClassifier::load(dir.path(), base(&device)).unwrap();
        assert_eq!(labels, classes());
        let route = clf.route().unwrap();
        let batch = dev_texts
            .batch(&(0..dev_texts.len()).collect::<Vec<_>>())
            .unwrap();
        let input = batch.to_input(clf.model.config(), &device).unwrap();
        let logits = |m: &TextClassifier| -> Vec<f32> {
            m.valid()
                .forward(&input, &route)
                .unwrap()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        };
        assert_eq!(logits(&loaded), logits(&clf), "{what}");
        assert_eq!(
            predict_texts(&loaded, dev_texts.rows(), 3).unwrap(),
            predict_texts(&clf, dev_texts.rows(), 3).unwrap()
        );
        // A token app is not a text app.
        let err = TokenClassifier::load(dir.path(), base(&device)).unwrap_err();
        assert!(matches!(err, TrainError::Format { .. }), "{err:?}");
    }
}

#[test]
fn a_task_starts_from_a_copy_of_its_family_group() {
    let _rng = serial();
    let device = cpu();
    let model = base(&device);
    let ner = group(&model, "ner");
    let ner_config = model.group("ner").unwrap().config.clone();
    let app = AppSetup::new("wnut", FineTuneMode::LoraHead).with_init_group("ner");
    let head = lora_bert_train::TokenClassificationHeadConfig::new(16, 5);
    let clf = TokenClassifier::new(model, &app, &head).unwrap();
    assert_eq!(group(&clf.model, "wnut"), ner);
    assert_eq!(clf.model.group("wnut").unwrap().config, ner_config);
    assert_eq!(
        clf.model.sites("wnut").unwrap(),
        clf.model.sites("ner").unwrap()
    );
    assert!(clf.model.group("wnut").unwrap().trainable);
    // Routing through the copy is routing through the family group.
    let enc = TextEncoder::new(tokenizer())
        .encode_rows(&["alice met bob in paris"])
        .unwrap();
    let input = enc
        .batch(&[0])
        .unwrap()
        .to_input(clf.model.config(), &device)
        .unwrap();
    let out = |route| -> Vec<f32> {
        clf.model
            .valid()
            .forward(&input, &route)
            .unwrap()
            .last_hidden_state
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
    };
    let via_copy = out(clf.model.route("wnut").unwrap());
    assert_eq!(via_copy, out(clf.model.route("ner").unwrap()));
    assert_ne!(via_copy, out(lora_bert_encoder::Route::Base));
}

#[test]
fn bad_setups_are_refused() {
    let _rng = serial();
    let device = cpu();
    let head = lora_bert_train::TokenClassificationHeadConfig::new(16, 5);
    let refuse = |app: AppSetup, head: &lora_bert_train::TokenClassificationHeadConfig| {
        TokenClassifier::new(base(&device), &app, head).unwrap_err()
    };
    let err = refuse(
        AppSetup::new("wnut", FineTuneMode::LoraHead).with_init_group("nope"),
        &head,
    );
    assert!(matches!(err, TrainError::Adapter(_)), "{err:?}");
    let err = refuse(AppSetup::new("other", FineTuneMode::LoraHead), &head);
    assert!(matches!(err, TrainError::Adapter(_)), "{err:?}");
    let err = refuse(AppSetup::new("", FineTuneMode::Full), &head);
    assert!(matches!(err, TrainError::InvalidArgument { .. }), "{err:?}");
    let err = refuse(
        AppSetup::new("wnut", FineTuneMode::Full),
        &lora_bert_train::TokenClassificationHeadConfig::new(8, 5),
    );
    assert!(matches!(err, TrainError::Shape { .. }), "{err:?}");

    // Labels outside the head's vocabulary, a zero batch size.
    let (gold, examples) = token_data(4, 0);
    let pad = tokenizer().pad_id();
    let small = LabelVocab::from_tags(["O", "B-PER", "I-PER"]).unwrap();
    let cfg = config(AppSetup::new("wnut", FineTuneMode::HeadOnly), 2);
    let err = finetune_tokens(
        base(&device),
        &examples,
        (&examples, &gold),
        &small,
        &cfg,
        pad,
    )
    .unwrap_err();
    assert!(matches!(err, TrainError::InvalidArgument { .. }), "{err:?}");
    let cfg = FineTuneConfig {
        batch_size: 0,
        ..cfg
    };
    let err = finetune_tokens(
        base(&device),
        &examples,
        (&examples, &gold),
        &tags(),
        &cfg,
        pad,
    )
    .unwrap_err();
    assert!(matches!(err, TrainError::InvalidArgument { .. }), "{err:?}");
}
