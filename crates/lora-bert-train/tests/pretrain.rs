//! Pre-finetuning on a tiny BERT with a tiny WordPiece vocabulary: every batch goes through
//! its family's group (the other group stays bit-for-bit, the backbone moves on both kinds),
//! naive and individual variants add no group and touch one objective each, the losses go
//! down, the sampler's task mix is what the trainer sees, and save → load gives the same
//! outputs on every route.

use std::sync::Mutex;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};
use lora_bert_adapters::{AdaptedModel, Lora};
use lora_bert_data::batch::{EncodedPairs, TextEncoder};
use lora_bert_data::sampler::{MultiTaskSampler, Strategy};
use lora_bert_data::token::{TokenExample, encode_tagged};
use lora_bert_data::{LabelVocab, TaggedSentence, TextPair};
use lora_bert_encoder::tokenizer::BertTokenizer;
use lora_bert_encoder::{BertConfig, BertInput, BertModel, Route, device};
use lora_bert_train::pretrain::{
    Family, NerData, NerSet, PfConfig, PfModel, TcData, Variant, fit_pf, load_pf, pf_batches,
    pre_finetune, save_pf,
};
use lora_bert_train::schedule::Decay;
use lora_bert_train::teacher::{Teacher, WordStates};
use lora_bert_train::{TrainConfig, TrainError};

/// The CPU backends draw dropout masks and initial values from one process-wide generator:
/// tests that train run one at a time.
static BACKEND_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    BACKEND_RNG.lock().unwrap_or_else(|e| e.into_inner())
}

const WORDS: usize = 30;
const TEACHER_HIDDEN: usize = 12;

fn cpu() -> Device {
    device::autodiff(device::device(device::Backend::NdArray).unwrap())
}

/// Vocabulary: the specials, words `w00..w29` and the piece `##s` (so `w07s` is two pieces).
fn tokenizer(dir: &std::path::Path) -> BertTokenizer {
    let mut vocab = vec!["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "##s"]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    vocab.extend((0..WORDS).map(|i| format!("w{i:02}")));
    let path = dir.join("vocab.txt");
    std::fs::write(&path, vocab.join("\n")).unwrap();
    BertTokenizer::from_vocab(&path, true).unwrap()
}

fn tiny_config() -> BertConfig {
    serde_json::from_str(
        r#"{"vocab_size": 40, "hidden_size": 16, "num_hidden_layers": 2,
            "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 32,
            "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}"#,
    )
    .unwrap()
}

/// The same tiny backbone at every call of this process.
///
/// burn draws from one process-wide generator, lazily (on a parameter's first use), and tests
/// run on parallel threads, so seeding before `init` does not give every call the same weights;
/// the first model is kept and cloned (clones share their parameters' initialisation).
fn backbone(device: &Device) -> AdaptedModel<Lora> {
    static MADE: Mutex<Vec<(String, AdaptedModel<Lora>)>> = Mutex::new(Vec::new());
    let key = format!("{device:?}");
    let mut made = MADE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, model)) = made.iter().find(|(k, _)| *k == key) {
        return model.clone();
    }
    device.seed(5);
    let model = AdaptedModel::new(BertModel::init(&tiny_config(), false, device));
    made.push((key, model.clone()));
    model
}

/// Deterministic pseudo-random numbers (SplitMix64).
fn rand(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `n` sentences of 3..=6 words; every 4th word has the `s` suffix (two pieces); sentence 3
/// holds the word `zz` (the student's `[UNK]`, absent for the teacher).
fn sentences(n: usize, seed: u64) -> Vec<TaggedSentence> {
    (0..n)
        .map(|i| {
            let len = 3 + rand(seed * 1000 + i as u64) as usize % 4;
            let tokens: Vec<String> = (0..len)
                .map(|j| {
                    let w = rand(seed * 7919 + (i * 31 + j) as u64) as usize % WORDS;
                    if i == 3 && j == 1 {
                        "zz".to_string()
                    } else if (i + j) % 4 == 0 {
                        format!("w{w:02}s")
                    } else {
                        format!("w{w:02}")
                    }
                })
                .collect();
            TaggedSentence {
                tags: vec!["O".into(); tokens.len()],
                tokens,
            }
        })
        .collect()
}

/// A fixed random projection of the words: the state of word `wNN` is a pseudo-random vector
/// of its number (plus an offset for the `s` suffix); `zz` is absent.
struct HashTeacher;

impl Teacher for HashTeacher {
    fn hidden_size(&self) -> usize {
        TEACHER_HIDDEN
    }
    fn description(&self) -> String {
        "hash teacher".into()
    }
    fn word_states(&self, sentences: &[&[String]]) -> lora_bert_train::Result<Vec<WordStates>> {
        Ok(sentences
            .iter()
            .map(|words| {
                let mut data = Vec::new();
                let mut present = Vec::new();
                for w in words.iter() {
                    let id = w
                        .trim_start_matches('w')
                        .trim_end_matches('s')
                        .parse::<u64>();
                    present.push(id.is_ok());
                    let id = id.unwrap_or(0) + if w.ends_with('s') { 100 } else { 0 };
                    for k in 0..TEACHER_HIDDEN as u64 {
                        let v = if present[present.len() - 1] {
                            (rand(id * 64 + k) % 2001) as f32 / 1000.0 - 1.0
                        } else {
                            0.0
                        };
                        data.push(v);
                    }
                }
                WordStates::new(data, words.len(), TEACHER_HIDDEN, present).unwrap()
            })
            .collect())
    }
}

struct Data {
    sentences: Vec<TaggedSentence>,
    examples: Vec<TokenExample>,
    pairs: EncodedPairs,
    teacher: HashTeacher,
}

impl Data {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let tok = tokenizer(dir.path());
        let sentences = sentences(24, 1);
        let vocab = LabelVocab::from_tags(["O"]).unwrap();
        let examples = encode_tagged(&tok, &sentences, &vocab, Default::default()).unwrap();
        // Positive: the same words reversed, without the last one.
        let pairs: Vec<TextPair> = self::sentences(20, 2)
            .iter()
            .map(|s| {
                let mut rev: Vec<&str> = s.tokens.iter().map(String::as_str).collect();
                rev.reverse();
                rev.pop();
                TextPair {
                    anchor: s.tokens.join(" "),
                    positive: rev.join(" "),
                }
            })
            .collect();
        let pairs = TextEncoder::new(&tok).encode_pairs(&pairs).unwrap();
        Data {
            sentences,
            examples,
            pairs,
            teacher: HashTeacher,
        }
    }

    fn ner(&self) -> NerData<'_> {
        NerData {
            train: NerSet {
                sentences: &self.sentences,
                examples: &self.examples,
            },
            dev: None,
            teacher: &self.teacher,
        }
    }

    fn tc(&self) -> TcData<'_> {
        TcData {
            train: &self.pairs,
            dev: None,
        }
    }
}

fn config(steps: usize, strategy: Strategy) -> PfConfig {
    PfConfig {
        batch_size: 4,
        strategy,
        projection_dim: Some(8),
        dev_batches: 2,
        ..PfConfig::new(TrainConfig {
            learning_rate: 3e-3,
            warmup_steps: 0,
            decay: Decay::Constant,
            seed: 9,
            log_every: 0,
            ..TrainConfig::new(steps)
        })
    }
}

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

/// The values of group `name`'s modules, site by site.
fn group_values(model: &AdaptedModel<Lora>, name: &str) -> Vec<Vec<f32>> {
    let id = model.group_id(name).unwrap();
    let mut out = Vec::new();
    for (_, projection) in model.model.projections() {
        if let Some(lora) = projection.adapter.get(id) {
            out.extend(values(lora));
        }
    }
    assert!(!out.is_empty(), "group {name} has modules");
    out
}

fn backbone_values(model: &AdaptedModel<Lora>) -> Vec<Vec<f32>> {
    values(&model.clone().into_backbone())
}

fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
        .fold(0.0, f32::max)
}

#[test]
fn mtpf_tpl_each_batch_hits_its_group_and_the_backbone() {
    let _rng = serial();
    let device = cpu();
    let data = Data::new();
    let cfg = config(1, Strategy::RoundRobin);
    let (ner, tc) = (Some(data.ner()), Some(data.tc()));
    let pf = PfModel::init(
        Variant::MtpfTpl,
        backbone(&device),
        Some(TEACHER_HIDDEN),
        &cfg,
    )
    .unwrap();
    let names: Vec<&str> = pf.model.group_names().collect();
    assert_eq!(names, ["ner", "tc"]);
    // Round robin: batch 0 is NER, batch 1 is TC.
    let batches: Vec<_> = pf_batches(Variant::MtpfTpl, ner, tc, &cfg)
        .unwrap()
        .take(2)
        .collect();
    assert_eq!((batches[0].task, batches[1].task), (0, 1));

    let before = (
        group_values(&pf.model, "ner"),
        group_values(&pf.model, "tc"),
        backbone_values(&pf.model),
    );
    let (pf, report) = fit_pf(Variant::MtpfTpl, pf, ner, tc, &cfg, [batches[0].clone()]).unwrap();
    assert_eq!(report.families, [Family::Ner]);
    let after_ner = (
        group_values(&pf.model, "ner"),
        group_values(&pf.model, "tc"),
        backbone_values(&pf.model),
    );
    assert_eq!(
        max_diff(&before.1, &after_ner.1),
        0.0,
        "tc untouched by a ner step"
    );
    assert!(max_diff(&before.0, &after_ner.0) > 0.0, "ner group trained");
    assert!(max_diff(&before.2, &after_ner.2) > 0.0, "backbone trained");

    let (pf, report) = fit_pf(Variant::MtpfTpl, pf, ner, tc, &cfg, [batches[1].clone()]).unwrap();
    assert_eq!(report.families, [Family::Tc]);
    let after_tc = (
        group_values(&pf.model, "ner"),
        group_values(&pf.model, "tc"),
        backbone_values(&pf.model),
    );
    assert_eq!(
        max_diff(&after_ner.0, &after_tc.0),
        0.0,
        "ner untouched by a tc step"
    );
    assert!(
        max_diff(&after_ner.1, &after_tc.1) > 0.0,
        "tc group trained"
    );
    assert!(
        max_diff(&after_ner.2, &after_tc.2) > 0.0,
        "backbone trained"
    );
}

#[test]
fn naive_and_individual_variants_add_no_group_and_touch_their_objectives() {
    let _rng = serial();
    let device = cpu();
    let data = Data::new();
    let cfg = config(4, Strategy::RoundRobin);

    let (pf, report) = pre_finetune(
        Variant::Naive,
        backbone(&device),
        Some(data.ner()),
        Some(data.tc()),
        &cfg,
    )
    .unwrap();
    assert_eq!(pf.model.group_names().count(), 0);
    assert_eq!(
        (report.steps_of(Family::Ner), report.steps_of(Family::Tc)),
        (2, 2)
    );

    for (variant, family) in [(Variant::Ner, Family::Ner), (Variant::Tc, Family::Tc)] {
        let teacher_hidden = (family == Family::Ner).then_some(TEACHER_HIDDEN);
        let init = PfModel::init(variant, backbone(&device), teacher_hidden, &cfg).unwrap();
        let (distill0, projection0) = (values(&init.distill), values(&init.projection));
        // Only the variant's own data is needed.
        let (ner, tc) = match family {
            Family::Ner => (Some(data.ner()), None),
            Family::Tc => (None, Some(data.tc())),
        };
        let batches = pf_batches(variant, ner, tc, &cfg).unwrap();
        let (pf, report) = fit_pf(variant, init, ner, tc, &cfg, batches).unwrap();
        assert_eq!(pf.model.group_names().count(), 0);
        assert_eq!(report.families, [family; 4], "{variant:?}");
        let (d, p) = (
            max_diff(&distill0, &values(&pf.distill)),
            max_diff(&projection0, &values(&pf.projection)),
        );
        match family {
            Family::Ner => assert!(
                d > 0.0 && p == 0.0,
                "{variant:?}: distill {d}, projection {p}"
            ),
            Family::Tc => assert!(
                d == 0.0 && p > 0.0,
                "{variant:?}: distill {d}, projection {p}"
            ),
        }
    }

    // A variant without its data is refused.
    let err = pre_finetune(
        Variant::Naive,
        backbone(&device),
        Some(data.ner()),
        None,
        &cfg,
    )
    .err()
    .unwrap();
    assert!(matches!(err, TrainError::InvalidArgument { .. }), "{err}");
}

/// Mean of the first and last `n` losses of `family`'s steps.
fn first_last(
    report: &lora_bert_train::pretrain::PfReport,
    family: Family,
    n: usize,
) -> (f64, f64) {
    let losses: Vec<f64> = report
        .families
        .iter()
        .zip(&report.fit.losses)
        .filter(|(f, _)| **f == family)
        .map(|(_, l)| *l)
        .collect();
    assert!(losses.len() >= 2 * n, "{family:?}: {} steps", losses.len());
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    (mean(&losses[..n]), mean(&losses[losses.len() - n..]))
}

/// Over three seeds: with batches of 4 and 15 steps per family, one run's contrastive loss is
/// too noisy to fall reliably (one seed in ten does not), their mean is not.
#[test]
fn mtpf_tpl_losses_go_down() {
    let _rng = serial();
    let device = cpu();
    let data = Data::new();
    let seeds = [9, 10, 11];
    let mut sums = [(0.0, 0.0); 2];
    for seed in seeds {
        let mut cfg = config(30, Strategy::RoundRobin);
        cfg.train.seed = seed;
        cfg.train.eval_every = Some(10);
        let (_, report) = pre_finetune(
            Variant::MtpfTpl,
            backbone(&device),
            Some(data.ner()),
            Some(data.tc()),
            &cfg,
        )
        .unwrap();
        assert_eq!(report.fit.steps, 30);
        for (sum, family) in sums.iter_mut().zip([Family::Ner, Family::Tc]) {
            let (first, last) = first_last(&report, family, 4);
            eprintln!("seed {seed}, {family:?}: first {first:.4}, last {last:.4}");
            sum.0 += first;
            sum.1 += last;
        }
        // The dev metric (minus the mean dev loss) improves too.
        let h = &report.fit.history;
        assert_eq!(h.len(), 3);
        assert!(h[2].metric > h[0].metric, "seed {seed}: {h:?}");
    }
    for ((first, last), family) in sums.into_iter().zip([Family::Ner, Family::Tc]) {
        assert!(
            last < 0.8 * first,
            "{family:?}: {first} → {last} (sums over seeds {seeds:?})"
        );
    }
}

#[test]
fn the_trainer_sees_the_samplers_task_mix() {
    let _rng = serial();
    let device = cpu();
    let data = Data::new();
    let cfg = config(40, Strategy::Temperature(2.0));
    let (_, report) = pre_finetune(
        Variant::Naive,
        backbone(&device),
        Some(data.ner()),
        Some(data.tc()),
        &cfg,
    )
    .unwrap();
    // Independently: the sampler over the two tasks' sizes with the run's seed.
    let sampler = MultiTaskSampler::new(
        &[data.examples.len(), data.pairs.len()],
        Strategy::Temperature(2.0),
        cfg.train.seed,
    )
    .unwrap();
    let expected: Vec<Family> = sampler
        .tasks()
        .take(40)
        .map(|t| [Family::Ner, Family::Tc][t])
        .collect();
    assert_eq!(report.families, expected);
    // p ∝ √n: 24 and 20 examples → 0.523 / 0.477; both families get steps.
    let p = sampler.probabilities();
    let by_hand = 24f64.sqrt() / (24f64.sqrt() + 20f64.sqrt());
    assert!((p[0] - by_hand).abs() < 1e-12, "{p:?}");
    let ner = report.steps_of(Family::Ner);
    assert!((8..=32).contains(&ner), "{ner} NER steps of 40");
}

#[test]
fn save_then_load_gives_the_same_outputs_on_every_route() {
    let _rng = serial();
    let device = cpu();
    let data = Data::new();
    let cfg = config(4, Strategy::RoundRobin);
    let (pf, _) = pre_finetune(
        Variant::MtpfTpl,
        backbone(&device),
        Some(data.ner()),
        Some(data.tc()),
        &cfg,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    save_pf(&pf, dir.path()).unwrap();
    assert!(dir.path().join("model.safetensors").is_file());
    assert!(dir.path().join("config.json").is_file());
    assert!(
        dir.path()
            .join("groups/ner/adapter_model.safetensors")
            .is_file()
    );
    assert!(dir.path().join("groups/tc/adapter_config.json").is_file());

    let loaded = load_pf(dir.path(), &device).unwrap();
    assert_eq!(loaded.group_names().collect::<Vec<_>>(), ["ner", "tc"]);
    let trained = pf.model.valid();
    let loaded = loaded.valid();
    let ids: Vec<u32> = vec![2, 7, 12, 5, 3, 2, 9, 30, 3, 0];
    let input = BertInput::from_ids(
        &ids,
        &[0; 10],
        &[1, 1, 1, 1, 1, 1, 1, 1, 1, 0],
        [2, 5],
        trained.config(),
        &trained.device(),
    )
    .unwrap();
    for name in [None, Some("ner"), Some("tc")] {
        let (ra, rb) = match name {
            None => (Route::Base, Route::Base),
            Some(n) => (trained.route(n).unwrap(), loaded.route(n).unwrap()),
        };
        let a = trained.forward(&input, &ra).unwrap().last_hidden_state;
        let b = loaded.forward(&input, &rb).unwrap().last_hidden_state;
        let a = a.into_data().try_into_vec::<f32>().unwrap();
        let b = b.into_data().try_into_vec::<f32>().unwrap();
        let d = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(d <= 1e-6, "{name:?}: max |diff| {d}");
    }
    // The groups were trained: their routes differ from the base.
    let base = trained
        .forward(&input, &Route::Base)
        .unwrap()
        .last_hidden_state;
    let ner = trained
        .forward(&input, &trained.route("ner").unwrap())
        .unwrap()
        .last_hidden_state;
    let d: f32 = (base - ner).abs().max().into_scalar();
    assert!(d > 0.0);
}

/// The NER objective against a plain-Rust computation on windows of long sentences: word
/// states from the model's token states (mean of the pieces in the row), the projection by
/// hand, the teacher's rows taken from each window's first word, absent words skipped.
#[test]
fn the_ner_loss_matches_a_hand_computation_on_windows() {
    use lora_bert_encoder::tokenizer::LengthPolicy;
    use lora_bert_train::input::ToBertInput;

    let _rng = serial();
    let device = cpu();
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer(dir.path())
        .with_max_length(7)
        .with_length_policy(LengthPolicy::Window { stride: 1 });
    let sentences = sentences(6, 3);
    let vocab = LabelVocab::from_tags(["O"]).unwrap();
    let examples = encode_tagged(&tok, &sentences, &vocab, Default::default()).unwrap();
    let indices: Vec<usize> = (0..examples.len()).collect();
    assert!(
        examples.iter().any(|e| e.window > 0),
        "some sentence is windowed"
    );
    assert!(
        examples.iter().any(|e| e.sentence == 3),
        "the `zz` sentence"
    );

    // The hand computation below is the MSE form (the default is cosine).
    let mut cfg = config(1, Strategy::RoundRobin);
    cfg.distill_loss = lora_bert_train::DistillLoss::Mse;
    let pf = PfModel::init(Variant::Ner, backbone(&device), Some(TEACHER_HIDDEN), &cfg).unwrap();
    let pf = pf.valid();
    let set = NerSet {
        sentences: &sentences,
        examples: &examples,
    };
    let got: f32 = pf
        .ner_loss(set, &HashTeacher, &indices, &Route::Base, &cfg)
        .unwrap()
        .into_scalar();

    // By hand.
    let batch = lora_bert_data::token::TokenBatch::collate(&examples, &indices, 0).unwrap();
    let input = batch
        .to_input(pf.model.config(), &pf.model.device())
        .unwrap();
    let hidden = pf
        .model
        .forward(&input, &Route::Base)
        .unwrap()
        .last_hidden_state;
    let [_, s, h] = hidden.dims();
    let hidden = hidden.into_data().try_into_vec::<f32>().unwrap();
    let w = pf
        .distill
        .dense
        .weight
        .val()
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    let bias = pf
        .distill
        .dense
        .bias
        .val()
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    let (mut total, mut count) = (0.0f64, 0usize);
    for (b, e) in examples.iter().enumerate() {
        let teacher = &HashTeacher
            .word_states(&[sentences[e.sentence].tokens.as_slice()])
            .unwrap()[0];
        let words: std::collections::BTreeSet<usize> =
            e.token_word.iter().flatten().copied().collect();
        for word in words {
            if !teacher.present[word] {
                continue;
            }
            let pieces: Vec<usize> = (0..e.len())
                .filter(|&t| e.token_word[t] == Some(word))
                .collect();
            let mut x = vec![0.0f64; h];
            for &t in &pieces {
                for k in 0..h {
                    x[k] += f64::from(hidden[(b * s + t) * h + k]) / pieces.len() as f64;
                }
            }
            let mut se = 0.0;
            for o in 0..TEACHER_HIDDEN {
                let y: f64 = f64::from(bias[o])
                    + (0..h)
                        .map(|k| x[k] * f64::from(w[k * TEACHER_HIDDEN + o]))
                        .sum::<f64>();
                se += (y - f64::from(teacher.row(word)[o])).powi(2);
            }
            total += se / TEACHER_HIDDEN as f64;
            count += 1;
        }
    }
    let expected = total / count as f64;
    assert!(
        (f64::from(got) - expected).abs() < 1e-5 * expected.max(1.0),
        "{got} vs {expected}"
    );
}

/// The soft-label objective: the hash teacher's word vectors read as logits over
/// `TEACHER_HIDDEN` labels; the student's KL to them falls.
#[test]
fn soft_label_ner_pf_learns_the_teachers_distributions() {
    use lora_bert_train::SoftLabels;

    let _rng = serial();
    let device = cpu();
    let data = Data::new();
    let mut cfg = config(48, Strategy::RoundRobin);
    cfg.soft_labels = Some(SoftLabels {
        temperature: 1.0,
        hard_weight: 0.0,
    });
    cfg.train.eval_every = Some(24);
    let (_, report) = pre_finetune(
        Variant::Ner,
        backbone(&device),
        Some(data.ner()),
        None,
        &cfg,
    )
    .unwrap();
    let (first, last) = first_last(&report, Family::Ner, 4);
    eprintln!("soft labels: {first} → {last}");
    assert!(last < 0.6 * first, "{first} → {last}");
    let h = &report.fit.history;
    assert!(h[1].metric > h[0].metric, "{h:?}");
}

/// MTPF-TPL's groups and heads train at their own rates: with the backbone's rate at
/// 1e-12 the backbone stays put while the groups move at `adapter_lr`.
#[test]
fn pf_parameter_groups_train_at_their_own_rates() {
    let _rng = serial();
    let device = cpu();
    let data = Data::new();
    let mut cfg = config(4, Strategy::RoundRobin);
    cfg.train.learning_rate = 1e-12;
    cfg.train.weight_decay = 0.0;
    cfg.adapter_lr = 1e-2;
    cfg.head_lr = 1e-2;
    let start = backbone(&device);
    let before = backbone_values(&start);
    let (pf, _) = pre_finetune(
        Variant::MtpfTpl,
        start,
        Some(data.ner()),
        Some(data.tc()),
        &cfg,
    )
    .unwrap();
    let groups = pf.param_groups();
    let names: Vec<&str> = groups.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["heads", "adapters"]);
    let moved = max_diff(&backbone_values(&pf.model), &before);
    assert!(moved < 1e-6, "the backbone moved by {moved}");
    for name in ["ner", "tc"] {
        let b = group_values(&pf.model, name);
        let largest = b.iter().flatten().fold(0.0f32, |m, v| m.max(v.abs()));
        // B starts at zero; Adam's first steps move it by about the rate each.
        assert!(largest > 5e-3, "group {name}: largest value {largest}");
    }
}

/// A resumed pre-finetuning with other learning-rate groups or another budget is refused,
/// naming the setting.
#[test]
fn a_pf_resume_with_other_rates_or_budget_is_refused() {
    let _rng = serial();
    let device = cpu();
    let data = Data::new();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(2, Strategy::RoundRobin);
    cfg.checkpoints = Some(dir.path().to_path_buf());
    let run = |cfg: &PfConfig| {
        pre_finetune(
            Variant::MtpfTpl,
            backbone(&device),
            Some(data.ner()),
            Some(data.tc()),
            cfg,
        )
        .map(|_| ())
    };
    run(&cfg).unwrap();
    let mut other = cfg.clone();
    other.adapter_lr = 5e-4;
    let err = run(&other).unwrap_err().to_string();
    assert!(err.contains("adapters"), "{err}");
    let mut longer = cfg.clone();
    longer.train.max_steps = 3;
    let err = run(&longer).unwrap_err().to_string();
    assert!(err.contains("max_steps"), "{err}");
    // The same configuration resumes (nothing left to do).
    run(&cfg).unwrap();
}
