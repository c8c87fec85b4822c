//! The pilot that decides before a full run (issue 16, item 6): every arm pre-finetuned for a
//! few hundred steps per family, then **linear probes on frozen features** scored on the
//! **dev** sets of Brown POS, Brown names, WNUT-16 and two text tasks, with PASS/FAIL lines.
//!
//! ```text
//! cargo run --release --example reproduce -- pilot --teacher runs/ner-teacher --out runs/pilot
//! ```
//!
//! - The NER family learns the soft labels of a tagger teacher (`--teacher`, made by
//!   `cargo run --release -p lora-bert-train --example ner_teacher`), annotated once on the
//!   pre-finetuning sentences into `OUT/teacher-labels`. The TC family is contrastive
//!   learning on the text pairs, as in the comparison.
//! - Arms: no PF, NER PF, TC PF, naive multi-task PF, MTPF-TPL, and a negative control: NER PF
//!   with the teacher's word distributions shuffled across the words of the corpus (any gain
//!   it shows cannot come from what the teacher knows).
//! - **Equal budgets**: a multi-task arm runs each family for as many steps as its individual
//!   PF (`--steps` per family, round-robin), and the record says how many each family got.
//! - **Learning rates by parameter group**: backbone, adapter groups, and the objectives'
//!   heads (`--lr-backbone`, `--lr-groups`, `--lr-heads`).
//! - MTPF-TPL's group check: for each family, the dev loss through its own group against the
//!   same batches through the bare backbone, and `‖ΔW‖/‖W‖` of the group's effective update
//!   (the merged weights against the base) and of the backbone's.
//! - Probes: [`lora_bert::train::probe`] on the last hidden state, through the arm's family
//!   group for MTPF-TPL, the plain route otherwise; the probe's L2 strength is fixed, so
//!   every arm gets the same probe. One pre-finetuning seed: it is a pilot.
//!
//! Everything is kept under `OUT`: a finished arm is read back, so a rerun resumes.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use lora_bert::adapters::{AdaptedModel, Lora};
use lora_bert::assets::{self, AssetCache};
use lora_bert::data::align::LabelAlignment;
use lora_bert::data::batch::TextEncoder;
use lora_bert::data::sampler::Strategy;
use lora_bert::data::token::{TokenExample, encode_tagged};
use lora_bert::data::{LabelVocab, LabeledText, TaggedSentence};
use lora_bert::device::{self, Backend};
use lora_bert::encoder::tokenizer::{BertTokenizer, LengthPolicy};
use lora_bert::encoder::{BertModel, Device, Route};
use lora_bert::train::finetune::{TokenEvalOptions, entity_report, stitch_word_ids, word_tags};
use lora_bert::train::probe::{
    L2_GRID, L2Selection, LinearProbe, ProbeConfig, ProbeFit, labelled_tokens, text_states,
    token_states,
};
use lora_bert::train::teacher::{Teacher, WordStates, words_of};
use lora_bert::train::{
    Family, FitReport, NerData, NerSet, PfConfig, PfModel, SoftLabels, TcData, TrainConfig,
    Variant, load_pf, pre_finetune, save_pf,
};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::{self, Brown, PfData, TaskData};
use crate::plan::{self, Kind};
use crate::runs::write_json;
use crate::{Result, pf};

/// `reproduce pilot`: pre-finetunes every arm briefly and scores linear probes on frozen
/// features on the DEV sets of brown-pos, brown-names, wnut16, rotten-tomatoes and reuters-r8;
/// prints PASS/FAIL lines.
#[derive(clap::Args)]
pub struct Cli {
    /// A tagger saved by the ner_teacher example
    #[arg(long, value_name = "DIR", required = true)]
    teacher: PathBuf,
    /// Everything the pilot writes
    #[arg(long, value_name = "DIR", default_value = "runs/pilot")]
    out: PathBuf,
    /// Pre-finetuning steps per family
    #[arg(long, value_name = "N", default_value_t = 300)]
    steps: usize,
    /// Pre-finetuning batch size
    #[arg(long, value_name = "N", default_value_t = 32)]
    batch: usize,
    /// Pre-finetuning sentences
    #[arg(long, value_name = "N", default_value_t = 6000)]
    sentences: usize,
    /// Pre-finetuning text pairs
    #[arg(long, value_name = "N", default_value_t = 3000)]
    pairs: usize,
    /// Backbone learning rate
    #[arg(long, value_name = "X", default_value = "2e-5")]
    lr_backbone: f64,
    /// Adapter groups' learning rate
    #[arg(long, value_name = "X", default_value = "1e-3")]
    lr_groups: f64,
    /// The objectives' heads and projections
    #[arg(long, value_name = "X", default_value = "1e-3")]
    lr_heads: f64,
    /// Soft-label temperature
    #[arg(long, value_name = "T", default_value = "2")]
    temperature: f64,
    /// Weight of the cross-entropy on the teacher's argmax
    #[arg(long, value_name = "W", default_value = "0")]
    hard_weight: f64,
    /// Probe training examples per task
    #[arg(long, value_name = "N", default_value_t = 2000)]
    probe_train: usize,
    /// Probe dev examples per task
    #[arg(long, value_name = "N", default_value_t = 1000)]
    probe_dev: usize,
    /// no-pf,ner-pf,tc-pf,naive,mtpf-tpl,ner-pf-shuffled (default all)
    #[arg(long, value_name = "LIST", value_parser = pilot_arms)]
    arms: Option<std::vec::Vec<PilotArm>>,
    /// CPU backend: flex or ndarray (default: flex, or ndarray when flex is not compiled in)
    #[arg(long, value_name = "NAME")]
    backend: Option<Backend>,
}

/// The pilot's settings, recorded in `OUT/pilot.json` (a rerun with others is refused).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub teacher: String,
    pub steps: usize,
    pub batch: usize,
    pub sentences: usize,
    pub pairs: usize,
    pub pf_dev: usize,
    pub lr_backbone: f64,
    pub lr_groups: f64,
    pub lr_heads: f64,
    pub temperature: f64,
    pub hard_weight: f64,
    pub probe_train: usize,
    pub probe_dev: usize,
    /// L2 strengths tried per arm and task; the last fifth of the probe's training
    /// examples chooses.
    pub probe_l2: Vec<f64>,
    pub max_len: usize,
}

struct Args {
    out: PathBuf,
    settings: Settings,
    arms: Vec<PilotArm>,
    backend: Backend,
}

/// An arm of the pilot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PilotArm {
    NoPf,
    NerPf,
    TcPf,
    Naive,
    MtpfTpl,
    NerShuffled,
}

impl PilotArm {
    const ALL: [PilotArm; 6] = [
        PilotArm::NoPf,
        PilotArm::NerPf,
        PilotArm::TcPf,
        PilotArm::Naive,
        PilotArm::MtpfTpl,
        PilotArm::NerShuffled,
    ];

    fn name(self) -> &'static str {
        match self {
            PilotArm::NoPf => "no-pf",
            PilotArm::NerPf => "ner-pf",
            PilotArm::TcPf => "tc-pf",
            PilotArm::Naive => "naive",
            PilotArm::MtpfTpl => "mtpf-tpl",
            PilotArm::NerShuffled => "ner-pf-shuffled",
        }
    }

    fn label(self) -> &'static str {
        match self {
            PilotArm::NoPf => "no PF",
            PilotArm::NerPf => "NER PF",
            PilotArm::TcPf => "TC PF",
            PilotArm::Naive => "naive MTL PF",
            PilotArm::MtpfTpl => "MTPF-TPL",
            PilotArm::NerShuffled => "NER PF, shuffled teacher",
        }
    }

    fn variant(self) -> Option<Variant> {
        match self {
            PilotArm::NoPf => None,
            PilotArm::NerPf | PilotArm::NerShuffled => Some(Variant::Ner),
            PilotArm::TcPf => Some(Variant::Tc),
            PilotArm::Naive => Some(Variant::Naive),
            PilotArm::MtpfTpl => Some(Variant::MtpfTpl),
        }
    }
}

fn pilot_arms(value: &str) -> std::result::Result<Vec<PilotArm>, String> {
    value
        .split(',')
        .map(|a| {
            PilotArm::ALL
                .into_iter()
                .find(|x| x.name() == a)
                .ok_or_else(|| format!("unknown arm `{a}`"))
        })
        .collect()
}

impl Cli {
    fn into_args(self) -> Result<Args> {
        let s = Settings {
            teacher: self.teacher.display().to_string(),
            steps: self.steps,
            batch: self.batch,
            sentences: self.sentences,
            pairs: self.pairs,
            pf_dev: 128,
            lr_backbone: self.lr_backbone,
            lr_groups: self.lr_groups,
            lr_heads: self.lr_heads,
            temperature: self.temperature,
            hard_weight: self.hard_weight,
            probe_train: self.probe_train,
            probe_dev: self.probe_dev,
            probe_l2: L2_GRID.to_vec(),
            max_len: 64,
        };
        if s.steps == 0 || s.batch == 0 || s.probe_train == 0 || s.probe_dev == 0 {
            return Err(
                "--steps, --batch, --probe-train and --probe-dev must be at least 1".into(),
            );
        }
        Ok(Args {
            out: self.out,
            settings: s,
            arms: self.arms.unwrap_or_else(|| PilotArm::ALL.to_vec()),
            backend: self.backend.map_or_else(Backend::default_cpu, Ok)?,
        })
    }
}

/// What a pre-finetuned arm records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArmRecord {
    pub arm: PilotArm,
    pub ner_steps: usize,
    pub tc_steps: usize,
    pub seconds: f64,
    pub fit: FitReport,
    /// `‖ΔW‖/‖W‖` of the backbone against the plain one.
    pub backbone_update: f64,
    /// MTPF-TPL: per family, the group check.
    pub groups: Vec<GroupCheck>,
}

/// Item 4's check of one family group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupCheck {
    pub family: String,
    /// `‖W_merged − W‖/‖W‖` over the projections the group adapts.
    pub relative_update: f64,
    /// Mean dev loss of the family's objective through its group, and through the bare
    /// backbone, on the same fixed batches.
    pub dev_loss_group: f64,
    pub dev_loss_base: f64,
}

impl GroupCheck {
    fn passes(&self) -> bool {
        self.dev_loss_group < self.dev_loss_base && self.relative_update > 0.0
    }
}

/// One probe score.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeRecord {
    pub arm: PilotArm,
    pub task: String,
    pub metric: String,
    pub score: f64,
    pub train_rows: usize,
    pub dev_items: usize,
    pub fit: ProbeFit,
    pub selection: L2Selection,
}

/// A teacher whose word distributions are those of other words of the corpus: the negative
/// control. Every present word row of the corpus is gathered, shuffled with a fixed seed and
/// dealt back in corpus order.
struct ShuffledTeacher {
    map: HashMap<Vec<String>, WordStates>,
    hidden: usize,
    description: String,
}

impl ShuffledTeacher {
    fn new(inner: &dyn Teacher, corpus: &[&[String]], seed: u64) -> Result<Self> {
        let states = inner.word_states(corpus)?;
        let hidden = inner.hidden_size();
        let mut rows: Vec<Vec<f32>> = Vec::new();
        for s in &states {
            for w in 0..s.num_words {
                if s.present[w] {
                    rows.push(s.row(w).to_vec());
                }
            }
        }
        rows.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        let mut rows = rows.into_iter();
        let mut map = HashMap::new();
        for (words, s) in corpus.iter().zip(states) {
            let mut data = vec![0.0f32; s.num_words * hidden];
            for w in 0..s.num_words {
                if s.present[w] {
                    let row = rows.next().expect("as many rows as present words");
                    data[w * hidden..(w + 1) * hidden].copy_from_slice(&row);
                }
            }
            let shuffled = WordStates::new(data, s.num_words, hidden, s.present)?;
            map.insert(words.to_vec(), shuffled);
        }
        Ok(ShuffledTeacher {
            map,
            hidden,
            description: format!("{} (word rows shuffled, seed {seed})", inner.description()),
        })
    }
}

impl Teacher for ShuffledTeacher {
    fn hidden_size(&self) -> usize {
        self.hidden
    }

    fn description(&self) -> String {
        self.description.clone()
    }

    fn word_states(&self, sentences: &[&[String]]) -> lora_bert::train::Result<Vec<WordStates>> {
        sentences
            .iter()
            .map(|s| {
                self.map.get(*s).cloned().ok_or_else(|| {
                    lora_bert::train::TrainError::InvalidArgument {
                        what: "shuffled teacher",
                        message: format!("a sentence outside its corpus: {:?}", s.join(" ")),
                    }
                })
            })
            .collect()
    }
}

fn pf_config(s: &Settings, variant: Variant, pad_id: u32) -> PfConfig {
    let families = variant.families().len();
    let steps = s.steps * families;
    let mut train = TrainConfig::new(steps);
    train.learning_rate = s.lr_backbone;
    train.warmup_steps = steps / 10;
    train.eval_every = Some((steps / 4).max(1));
    train.log_every = 25;
    let mut config = PfConfig::new(train);
    config.batch_size = s.batch;
    config.adapter_lr = s.lr_groups;
    config.head_lr = s.lr_heads;
    config.dev_batches = (s.pf_dev / s.batch).max(1);
    config.pad_id = pad_id;
    // Equal budgets: every family of a multi-task arm gets `steps` batches.
    config.strategy = Strategy::RoundRobin;
    config.soft_labels = Some(SoftLabels {
        temperature: s.temperature,
        hard_weight: s.hard_weight,
    });
    config
}

/// All float parameter values of a module, in visiting order.
fn param_values<M: burn::module::Module>(m: &M) -> Vec<Vec<f32>> {
    struct Collect(Vec<Vec<f32>>);
    impl burn::module::ModuleVisitor for Collect {
        fn visit_float<const D: usize>(
            &mut self,
            p: &burn::module::Param<burn::tensor::Tensor<D>>,
        ) {
            self.0.push(
                p.val()
                    .into_data()
                    .convert::<f32>()
                    .try_to_vec::<f32>()
                    .unwrap_or_default(),
            );
        }
    }
    let mut c = Collect(Vec::new());
    m.visit(&mut c);
    c.0
}

/// `‖a − b‖/‖b‖` over the parameters that differ (all of them when `all`).
fn relative_update(a: &[Vec<f32>], b: &[Vec<f32>], all: bool) -> f64 {
    let (mut diff, mut norm) = (0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        if x.len() != y.len() {
            continue;
        }
        let d: f64 = x.iter().zip(y).map(|(p, q)| f64::from(p - q).powi(2)).sum();
        if all || d > 0.0 {
            diff += d;
            norm += y.iter().map(|q| f64::from(*q).powi(2)).sum::<f64>();
        }
    }
    if norm > 0.0 {
        (diff / norm).sqrt()
    } else {
        0.0
    }
}

struct Encoded<'a> {
    data: &'a PfData,
    examples: Vec<TokenExample>,
    dev_examples: Vec<TokenExample>,
    pairs: lora_bert::data::batch::EncodedPairs,
    dev_pairs: lora_bert::data::batch::EncodedPairs,
}

/// Mean loss of `family`'s objective over the fixed dev batches through `route`.
fn dev_loss(
    pf: &PfModel,
    family: Family,
    route: &Route,
    enc: &Encoded<'_>,
    teacher: &dyn Teacher,
    config: &PfConfig,
) -> Result<f64> {
    let (n, batch) = match family {
        Family::Ner => (enc.dev_examples.len(), config.batch_size),
        Family::Tc => (enc.dev_pairs.len(), config.batch_size),
    };
    let mut total = 0.0;
    let mut count = 0;
    for start in (0..n).step_by(batch).take(config.dev_batches.max(1)) {
        let indices: Vec<usize> = (start..(start + batch).min(n)).collect();
        let loss = match family {
            Family::Ner => pf.ner_loss(
                NerSet {
                    sentences: &enc.data.dev_sentences,
                    examples: &enc.dev_examples,
                },
                teacher,
                &indices,
                route,
                config,
            )?,
            Family::Tc => pf.tc_loss(&enc.dev_pairs, &indices, route, config)?,
        };
        let v: f32 = loss.into_scalar();
        total += f64::from(v);
        count += 1;
    }
    Ok(total / count.max(1) as f64)
}

#[allow(clippy::too_many_arguments)]
fn pre_finetune_arm(
    arm: PilotArm,
    args: &Args,
    files: &assets::ModelFiles,
    enc: &Encoded<'_>,
    teacher: &dyn Teacher,
    pad_id: u32,
    training: &Device,
    inference: &Device,
) -> Result<ArmRecord> {
    let dir = args.out.join("arms").join(arm.name());
    let record_path = dir.join("record.json");
    if let Ok(bytes) = std::fs::read(&record_path)
        && dir.join("model").join("config.json").is_file()
    {
        return Ok(serde_json::from_slice(&bytes)?);
    }
    let variant = arm
        .variant()
        .ok_or("the plain backbone is not pre-finetuned")?;
    println!("\n== pilot: pre-finetuning {} ==", arm.label());
    let mut config = pf_config(&args.settings, variant, pad_id);
    config.checkpoints = Some(dir.join("checkpoints"));
    let ner = NerData {
        train: NerSet {
            sentences: &enc.data.sentences,
            examples: &enc.examples,
        },
        dev: Some(NerSet {
            sentences: &enc.data.dev_sentences,
            examples: &enc.dev_examples,
        }),
        teacher,
    };
    let tc = TcData {
        train: &enc.pairs,
        dev: Some(&enc.dev_pairs),
    };
    let plain = BertModel::load(&files.dir, inference)?.0;
    let model = AdaptedModel::new(BertModel::load(&files.dir, training)?.0);
    let started = Instant::now();
    let (pf, report) = pre_finetune(variant, model, Some(ner), Some(tc), &config)?;
    let seconds = started.elapsed().as_secs_f64();
    let pf = pf.valid();
    let backbone_update = relative_update(
        &param_values(&pf.model.clone().into_backbone()),
        &param_values(&plain),
        true,
    );
    let mut groups = Vec::new();
    if variant.uses_groups() {
        let base = param_values(&pf.model.clone().into_backbone());
        for &family in variant.families() {
            let mut merged = pf.model.clone();
            merged.merge(family.group())?;
            let relative = relative_update(&param_values(&merged.into_backbone()), &base, false);
            let route = pf.model.route(family.group())?;
            groups.push(GroupCheck {
                family: plan::family_name(family).into(),
                relative_update: relative,
                dev_loss_group: dev_loss(&pf, family, &route, enc, teacher, &config)?,
                dev_loss_base: dev_loss(&pf, family, &Route::Base, enc, teacher, &config)?,
            });
        }
    }
    let partial = dir.join("model.partial");
    if partial.exists() {
        std::fs::remove_dir_all(&partial)?;
    }
    save_pf(&pf, &partial)?;
    let model_dir = dir.join("model");
    if model_dir.exists() {
        std::fs::remove_dir_all(&model_dir)?;
    }
    std::fs::rename(&partial, &model_dir)?;
    let record = ArmRecord {
        arm,
        ner_steps: report.steps_of(Family::Ner),
        tc_steps: report.steps_of(Family::Tc),
        seconds,
        fit: report.fit,
        backbone_update,
        groups,
    };
    write_json(&record_path, &record)?;
    println!(
        "{}: {} NER and {} TC steps in {:.0}s; backbone ‖ΔW‖/‖W‖ {:.2e}",
        arm.label(),
        record.ner_steps,
        record.tc_steps,
        seconds,
        backbone_update
    );
    Ok(record)
}

/// The probe tasks, their family and metric.
const PROBE_TASKS: [&str; 5] = [
    "brown-pos",
    "brown-names",
    "wnut16",
    "rotten-tomatoes",
    "reuters-r8",
];

fn head<T: Clone>(v: &[T], n: usize) -> Vec<T> {
    v[..n.min(v.len())].to_vec()
}

#[allow(clippy::too_many_arguments)]
fn probe_arm(
    arm: PilotArm,
    args: &Args,
    files: &assets::ModelFiles,
    tokenizer: &BertTokenizer,
    tasks: &[(&'static plan::TaskDef, TaskData)],
    inference: &Device,
) -> Result<Vec<ProbeRecord>> {
    let path = args.out.join("arms").join(arm.name()).join("probes.json");
    if let Ok(bytes) = std::fs::read(&path) {
        return Ok(serde_json::from_slice(&bytes)?);
    }
    let model = match arm {
        PilotArm::NoPf => AdaptedModel::<Lora>::new(BertModel::load(&files.dir, inference)?.0),
        _ => load_pf(
            args.out.join("arms").join(arm.name()).join("model"),
            inference,
        )?,
    };
    let hidden = model.config().hidden_size;
    let s = &args.settings;
    let probe_config = ProbeConfig::default();
    // The last fifth of the probe's training examples (whole sentences or texts) chooses L2.
    let fit_part = |n: usize| n - (n / 5).max(1);
    let mut out = Vec::new();
    for (def, data) in tasks {
        let route = if arm == PilotArm::MtpfTpl {
            model.route(def.family.group())?
        } else {
            Route::Base
        };
        let started = Instant::now();
        let record = match data {
            TaskData::Tokens(splits) => {
                let train = head(&splits.train, s.probe_train);
                let dev = head(&splits.dev, s.probe_dev);
                let vocab =
                    LabelVocab::from_tags(train.iter().chain(&dev).flat_map(|s| s.tags.iter()))?;
                let encode = |x: &[TaggedSentence]| {
                    encode_tagged(tokenizer, x, &vocab, LabelAlignment::FirstSubword)
                };
                let (train_x, dev_x) = (encode(&train)?, encode(&dev)?);
                let pad = tokenizer.pad_id();
                let states = token_states(&model, &route, &train_x, 64, pad)?;
                let (features, labels) = labelled_tokens(&train_x, &states, hidden)?;
                let split = train_x[..fit_part(train_x.len())]
                    .iter()
                    .map(|e| e.labels.iter().filter(|&&l| l >= 0).count())
                    .sum();
                let (probe, fit, selection) = LinearProbe::fit_selected(
                    &features,
                    hidden,
                    &labels,
                    vocab.len(),
                    split,
                    &s.probe_l2,
                    &probe_config,
                    inference,
                )?;
                let dev_states = token_states(&model, &route, &dev_x, 64, pad)?;
                let logits = dev_states
                    .iter()
                    .map(|s| probe.logits(s))
                    .collect::<lora_bert::train::Result<Vec<_>>>()?;
                let options = TokenEvalOptions::new(pad);
                let ids = stitch_word_ids(&dev_x, &logits, dev.len(), &vocab, &options)?;
                let report = entity_report(&dev, &word_tags(ids, &vocab))?;
                let (metric, score) = match def.kind {
                    Kind::Token(lora_bert::train::TokenMetric::Accuracy) => {
                        ("tag accuracy", report.accuracy)
                    }
                    _ => ("entity F1", report.averages.micro_avg.f1),
                };
                ProbeRecord {
                    arm,
                    task: def.name.into(),
                    metric: metric.into(),
                    score,
                    train_rows: labels.len(),
                    dev_items: dev.len(),
                    fit,
                    selection,
                }
            }
            TaskData::Texts(splits) => {
                let train = head(&splits.train, s.probe_train);
                let dev = head(&splits.dev, s.probe_dev);
                let vocab = LabelVocab::from_labels(
                    train
                        .iter()
                        .chain(&dev)
                        .map(|t: &LabeledText| t.label.as_str()),
                )?;
                let encoder = TextEncoder::new(tokenizer);
                let id = |l: &str| {
                    vocab
                        .get(l)
                        .ok_or_else(|| lora_bert::data::DataError::UnknownLabel {
                            label: l.into(),
                            context: None,
                        })
                };
                let (train_x, dev_x) = (
                    encoder.encode_texts(&train, id)?,
                    encoder.encode_texts(&dev, id)?,
                );
                let features = text_states(&model, &route, train_x.rows(), 64)?;
                let (probe, fit, selection) = LinearProbe::fit_selected(
                    &features,
                    hidden,
                    train_x.labels(),
                    vocab.len(),
                    fit_part(train_x.len()),
                    &s.probe_l2,
                    &probe_config,
                    inference,
                )?;
                let predicted = probe.predict(&text_states(&model, &route, dev_x.rows(), 64)?)?;
                let correct = predicted
                    .iter()
                    .zip(dev_x.labels())
                    .filter(|(p, g)| p == g)
                    .count();
                ProbeRecord {
                    arm,
                    task: def.name.into(),
                    metric: "accuracy".into(),
                    score: correct as f64 / dev_x.len() as f64,
                    train_rows: train_x.len(),
                    dev_items: dev_x.len(),
                    fit,
                    selection,
                }
            }
        };
        println!(
            "  {:<16} {:<16} {} {:.4} (probe: {} rows, L2 {:e} of {} tried, {} L-BFGS steps, max |gradient| {:.1e}{}; {:.0}s)",
            arm.name(),
            record.task,
            record.metric,
            record.score,
            record.train_rows,
            record.selection.l2,
            record.selection.trials.len(),
            record.fit.steps,
            record.fit.gradient,
            if record.fit.converged {
                ", converged"
            } else {
                ", NOT converged"
            },
            started.elapsed().as_secs_f64()
        );
        out.push(record);
    }
    write_json(&path, &out)?;
    Ok(out)
}

/// Runs the pilot.
pub fn run(cli: Cli) -> Result<()> {
    let args = cli.into_args()?;
    let started = Instant::now();
    std::fs::create_dir_all(&args.out)?;
    let settings_path = args.out.join("pilot.json");
    match std::fs::read(&settings_path) {
        Ok(bytes) => {
            let theirs: Settings = serde_json::from_slice(&bytes)?;
            if theirs != args.settings {
                return Err(format!(
                    "{} was made with other settings ({theirs:?}); use another --out",
                    settings_path.display()
                )
                .into());
            }
        }
        Err(_) => write_json(&settings_path, &args.settings)?,
    }
    let s = &args.settings;
    let cache = AssetCache::from_env()?;
    let inference = device::device(args.backend)?;
    let training = device::autodiff(inference.clone());
    let files = assets::all_minilm_l6_v2(&cache)?;
    let tokenizer = BertTokenizer::from_file(&files.tokenizer)?
        .with_max_length(s.max_len)
        .with_length_policy(LengthPolicy::Window {
            stride: s.max_len / 4,
        });
    let pf_tokenizer = tokenizer
        .clone()
        .with_max_length(s.max_len.min(pf::MAX_LEN));
    let brown = Brown::load(&cache)?;
    let pf_data = data::pf_data(&cache, &brown, s.sentences, s.pairs, s.pf_dev)?;
    let o_vocab = LabelVocab::new(vec!["O".to_owned()])?;
    let encode = |x: &[TaggedSentence]| {
        encode_tagged(&pf_tokenizer, x, &o_vocab, LabelAlignment::FirstSubword)
    };
    let text = TextEncoder::new(&pf_tokenizer);
    let enc = Encoded {
        data: &pf_data,
        examples: encode(&pf_data.sentences)?,
        dev_examples: encode(&pf_data.dev_sentences)?,
        pairs: text.encode_pairs(&pf_data.pairs)?,
        dev_pairs: text.encode_pairs(&pf_data.dev_pairs)?,
    };

    let needs_teacher = args.arms.iter().any(|a| {
        a.variant()
            .is_some_and(|v| v.families().contains(&Family::Ner))
    });
    let labels = if needs_teacher {
        Some(pf::tagger_labels(
            &cache,
            Path::new(&s.teacher),
            &pf_data,
            &args.out.join("teacher-labels"),
            &inference,
        )?)
    } else {
        None
    };
    let shuffled = match (&labels, args.arms.contains(&PilotArm::NerShuffled)) {
        (Some(cache), true) => {
            let all: Vec<TaggedSentence> = pf_data
                .sentences
                .iter()
                .chain(&pf_data.dev_sentences)
                .cloned()
                .collect();
            Some(ShuffledTeacher::new(cache, &words_of(&all), 16)?)
        }
        _ => None,
    };

    let mut records = BTreeMap::new();
    for &arm in &args.arms {
        if arm == PilotArm::NoPf {
            continue;
        }
        let teacher: &dyn Teacher = match (arm, &labels, &shuffled) {
            (PilotArm::NerShuffled, _, Some(t)) => t,
            (_, Some(t), _) => t,
            // TC PF needs no teacher; the NER objective is never called.
            _ => &NoTeacher,
        };
        let record = pre_finetune_arm(
            arm,
            &args,
            &files,
            &enc,
            teacher,
            tokenizer.pad_id(),
            &training,
            &inference,
        )?;
        records.insert(arm, record);
    }

    let brown_tasks = Brown::load(&cache)?;
    let mut tasks = Vec::new();
    for name in PROBE_TASKS {
        let def = plan::task(name).ok_or_else(|| format!("no task `{name}`"))?;
        tasks.push((def, data::load_task(def, &cache, &brown_tasks)?));
    }
    let mut probes = Vec::new();
    println!("\n== pilot: linear probes on frozen features (dev sets) ==");
    for &arm in &args.arms {
        probes.extend(probe_arm(
            arm, &args, &files, &tokenizer, &tasks, &inference,
        )?);
    }
    let table = format!(
        "{}\n{}",
        pf::teacher_section(Path::new(&s.teacher))?,
        render(&args, &records, &probes)
    );
    println!("\n{table}");
    std::fs::write(args.out.join("pilot.md"), &table)?;
    write_json(&args.out.join("probes.json"), &probes)?;
    println!(
        "pilot written to {} ({:.1} min)",
        args.out.join("pilot.md").display(),
        started.elapsed().as_secs_f64() / 60.0
    );
    Ok(())
}

/// A teacher for arms that never call the NER objective.
struct NoTeacher;

impl Teacher for NoTeacher {
    fn hidden_size(&self) -> usize {
        1
    }
    fn description(&self) -> String {
        "none".into()
    }
    fn word_states(&self, _: &[&[String]]) -> lora_bert::train::Result<Vec<WordStates>> {
        Err(lora_bert::train::TrainError::InvalidArgument {
            what: "teacher",
            message: "this arm has no NER teacher".into(),
        })
    }
}

fn score(probes: &[ProbeRecord], arm: PilotArm, task: &str) -> Option<f64> {
    probes
        .iter()
        .find(|p| p.arm == arm && p.task == task)
        .map(|p| p.score)
}

/// The pilot's Markdown: settings, the probe table with deltas against no PF, the group
/// checks, and the acceptance lines.
fn render(args: &Args, records: &BTreeMap<PilotArm, ArmRecord>, probes: &[ProbeRecord]) -> String {
    use std::fmt::Write;
    let s = &args.settings;
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Pre-finetuning: {} steps per family (multi-task arms: round-robin, the same steps per \
         family), batch {}, {} Brown sentences and {} text pairs ({} of each held out); \
         learning rates backbone {:e}, groups {:e}, heads {:e}; soft labels at T = {}, hard \
         weight {}. Probes: multinomial logistic regression on standardised features, fitted by \
         full-batch L-BFGS to a largest gradient entry of {:e}, on at most {} training and {} \
         dev examples per task; L2 chosen per arm and task from {:?} by the held-out \
         cross-entropy of the last fifth of the training examples, then refitted on all of \
         them; one pre-finetuning seed. Probes converged: {} of {}.\n",
        s.steps,
        s.batch,
        s.sentences,
        s.pairs,
        s.pf_dev,
        s.lr_backbone,
        s.lr_groups,
        s.lr_heads,
        s.temperature,
        s.hard_weight,
        ProbeConfig::default().tolerance,
        s.probe_train,
        s.probe_dev,
        s.probe_l2,
        probes.iter().filter(|p| p.fit.converged).count(),
        probes.len()
    );
    let _ = write!(md, "| arm |");
    for t in PROBE_TASKS {
        let metric = probes
            .iter()
            .find(|p| p.task == t)
            .map(|p| p.metric.as_str())
            .unwrap_or("");
        let _ = write!(md, " {t} ({metric}) |");
    }
    let _ = writeln!(md, " NER / TC steps | backbone ‖ΔW‖/‖W‖ |");
    let _ = writeln!(md, "|---|{}---|---|", "---|".repeat(PROBE_TASKS.len()));
    for &arm in &args.arms {
        let _ = write!(md, "| {} |", arm.label());
        for t in PROBE_TASKS {
            match (score(probes, arm, t), score(probes, PilotArm::NoPf, t)) {
                (Some(v), Some(base)) if arm != PilotArm::NoPf => {
                    let _ = write!(md, " {:.2} ({:+.2}) |", 100.0 * v, 100.0 * (v - base));
                }
                (Some(v), _) => {
                    let _ = write!(md, " {:.2} |", 100.0 * v);
                }
                _ => {
                    let _ = write!(md, " – |");
                }
            }
        }
        match records.get(&arm) {
            Some(r) => {
                let _ = writeln!(
                    md,
                    " {} / {} | {:.2e} |",
                    r.ner_steps, r.tc_steps, r.backbone_update
                );
            }
            None => {
                let _ = writeln!(md, " – | – |");
            }
        }
    }
    if let Some(r) = records.get(&PilotArm::MtpfTpl) {
        let _ = writeln!(
            md,
            "\nMTPF-TPL's groups (dev loss of the family's objective on the same fixed batches):\n\n\
             | group | ‖ΔW‖/‖W‖ (merged vs base) | dev loss through the group | through the bare backbone |\n|---|---|---|---|"
        );
        for g in &r.groups {
            let _ = writeln!(
                md,
                "| {} | {:.2e} | {:.4} | {:.4} |",
                g.family, g.relative_update, g.dev_loss_group, g.dev_loss_base
            );
        }
    }
    let _ = writeln!(md, "\nAcceptance (dev sets, points):\n");
    let delta = |arm, task| -> Option<f64> {
        Some(100.0 * (score(probes, arm, task)? - score(probes, PilotArm::NoPf, task)?))
    };
    let verdict = |ok: Option<bool>| match ok {
        Some(true) => "PASS",
        Some(false) => "FAIL",
        None => "NOT RUN",
    };
    let mut lines = Vec::new();
    for (arm, name) in [
        (PilotArm::NerPf, "NER PF"),
        (PilotArm::NerShuffled, "NER PF, shuffled teacher (control)"),
    ] {
        let ok = (|| {
            let w = delta(arm, "wnut16")?;
            let n = delta(arm, "brown-names")?;
            let p = delta(arm, "brown-pos")?;
            Some((w > 0.0 && n > 0.0 && p >= -0.5, w, n, p))
        })();
        lines.push(match ok {
            Some((pass, w, n, p)) => format!(
                "{}: {name} raises WNUT-16 ({w:+.2}) and Brown names ({n:+.2}), Brown POS {p:+.2} (≥ −0.5)",
                verdict(Some(pass))
            ),
            None => format!("NOT RUN: {name}"),
        });
    }
    let tc = (|| {
        let r = delta(PilotArm::TcPf, "rotten-tomatoes")?;
        let t = delta(PilotArm::TcPf, "reuters-r8")?;
        Some((r >= -0.5 && t >= -0.5, r, t))
    })();
    lines.push(match tc {
        Some((pass, r, t)) => format!(
            "{}: TC PF lowers no text task by more than 0.5 (rotten-tomatoes {r:+.2}, reuters-r8 {t:+.2})",
            verdict(Some(pass))
        ),
        None => "NOT RUN: TC PF".into(),
    });
    let groups = records
        .get(&PilotArm::MtpfTpl)
        .map(|r| !r.groups.is_empty() && r.groups.iter().all(GroupCheck::passes));
    lines.push(format!(
        "{}: MTPF-TPL's family groups move (‖ΔW‖ > 0) and lower their family's dev loss",
        verdict(groups)
    ));
    for line in lines {
        let _ = writeln!(md, "- {line}");
    }
    // What the teacher's knowledge adds beyond token-level training itself.
    let share: Vec<String> = PROBE_TASKS
        .iter()
        .filter_map(|&t| {
            let d = 100.0
                * (score(probes, PilotArm::NerPf, t)? - score(probes, PilotArm::NerShuffled, t)?);
            Some(format!("{t} {d:+.2}"))
        })
        .collect();
    if !share.is_empty() {
        let _ = writeln!(
            md,
            "\nThe teacher's share (NER PF minus the shuffled-teacher control, points): {}.",
            share.join(", ")
        );
    }
    md
}
