//! Pre-finetuning the pilot's arms: their configuration, the teachers (the shuffled-teacher
//! control, none for TC PF), and MTPF-TPL's group check.

use std::collections::HashMap;
use std::time::Instant;

use burn::module::Module;
use lora_bert::adapters::AdaptedModel;
use lora_bert::assets;
use lora_bert::data::sampler::Strategy;
use lora_bert::data::token::TokenExample;
use lora_bert::encoder::{BertModel, Device, Route};
use lora_bert::train::teacher::{Teacher, WordStates};
use lora_bert::train::{
    Family, NerData, NerSet, PfConfig, PfModel, SoftLabels, TcData, TrainConfig, Variant,
    pre_finetune, save_pf,
};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::Result;
use crate::data::PfData;
use crate::plan;
use crate::runs::write_json;

use super::{Args, ArmRecord, GroupCheck, PilotArm, Settings};

/// A teacher whose word distributions are those of other words of the corpus: the negative
/// control. Every present word row of the corpus is gathered, shuffled with a fixed seed and
/// dealt back in corpus order.
pub(super) struct ShuffledTeacher {
    map: HashMap<Vec<String>, WordStates>,
    hidden: usize,
    description: String,
}

impl ShuffledTeacher {
    pub(super) fn new(inner: &dyn Teacher, corpus: &[&[String]], seed: u64) -> Result<Self> {
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

pub(super) struct Encoded<'a> {
    pub(super) data: &'a PfData,
    pub(super) examples: Vec<TokenExample>,
    pub(super) dev_examples: Vec<TokenExample>,
    pub(super) pairs: lora_bert::data::batch::EncodedPairs,
    pub(super) dev_pairs: lora_bert::data::batch::EncodedPairs,
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
pub(super) fn pre_finetune_arm(
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

/// A teacher for arms that never call the NER objective.
pub(super) struct NoTeacher;

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
