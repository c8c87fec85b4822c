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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use lora_bert::assets::{self, AssetCache};
use lora_bert::data::align::LabelAlignment;
use lora_bert::data::batch::TextEncoder;
use lora_bert::data::token::encode_tagged;
use lora_bert::data::{LabelVocab, TaggedSentence};
use lora_bert::device::{self, Backend};
use lora_bert::encoder::tokenizer::{BertTokenizer, LengthPolicy};
use lora_bert::train::probe::{L2_GRID, L2Selection, ProbeFit};
use lora_bert::train::teacher::{Teacher, words_of};
use lora_bert::train::{Family, FitReport, Variant};
use serde::{Deserialize, Serialize};

use crate::data::{self, Brown};
use crate::plan;
use crate::runs::write_json;
use crate::{Result, pf};

mod acceptance;
mod arms;
mod probing;

use acceptance::render;
use arms::{Encoded, NoTeacher, ShuffledTeacher, pre_finetune_arm};
use probing::{PROBE_TASKS, probe_arm};

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
