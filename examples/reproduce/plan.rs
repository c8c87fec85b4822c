//! What a run of the harness does: the arms (pre-finetuning variants), the downstream tasks,
//! the profiles' sizes, the ablation settings, and the command line.

use std::fmt;
use std::path::PathBuf;

use lora_bert::Backend;
use lora_bert::data::sampler::Strategy;
use lora_bert::train::{DistillLoss, Family, PfConfig, TokenMetric, TrainConfig, Variant};

use crate::Result;
use crate::pf::TeacherSizes;

/// One arm of the comparison: the plain backbone or one pre-finetuning variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Arm {
    NoPf,
    NerPf,
    TcPf,
    Naive,
    MtpfTpl,
}

impl Arm {
    pub const ALL: [Arm; 5] = [Arm::NoPf, Arm::NerPf, Arm::TcPf, Arm::Naive, Arm::MtpfTpl];

    /// Short name (folders, JSON, `--arms`).
    pub fn name(self) -> &'static str {
        match self {
            Arm::NoPf => "no-pf",
            Arm::NerPf => "ner-pf",
            Arm::TcPf => "tc-pf",
            Arm::Naive => "naive",
            Arm::MtpfTpl => "mtpf-tpl",
        }
    }

    /// Name in tables.
    pub fn label(self) -> &'static str {
        match self {
            Arm::NoPf => "no PF",
            Arm::NerPf => "NER PF",
            Arm::TcPf => "TC PF",
            Arm::Naive => "naive MTL PF",
            Arm::MtpfTpl => "MTPF-TPL",
        }
    }

    /// The pre-finetuning variant, `None` for the plain backbone.
    pub fn variant(self) -> Option<Variant> {
        match self {
            Arm::NoPf => None,
            Arm::NerPf => Some(Variant::Ner),
            Arm::TcPf => Some(Variant::Tc),
            Arm::Naive => Some(Variant::Naive),
            Arm::MtpfTpl => Some(Variant::MtpfTpl),
        }
    }

    pub fn from_name(name: &str) -> Option<Arm> {
        Arm::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// How a downstream task is scored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// Word-level tags, scored by entity F1 or tag accuracy.
    Token(TokenMetric),
    /// One label per text, scored by accuracy.
    Text,
}

/// A downstream task of the comparison.
#[derive(Debug)]
pub struct TaskDef {
    pub name: &'static str,
    pub family: Family,
    pub kind: Kind,
    /// Multiplies the profile's steps (WNUT-16's entity F1 stays 0 for the first ~150 steps).
    pub step_scale: usize,
    /// What the data is and where it comes from.
    pub about: &'static str,
}

impl TaskDef {
    pub fn metric(&self) -> &'static str {
        match self.kind {
            Kind::Token(TokenMetric::EntityF1) => "entity F1",
            Kind::Token(TokenMetric::Accuracy) => "tag accuracy",
            Kind::Text => "accuracy",
        }
    }
}

pub fn family_name(family: Family) -> &'static str {
    match family {
        Family::Ner => "NER",
        Family::Tc => "TC",
    }
}

/// Every downstream task; none of their data reaches pre-finetuning (see `data.rs`).
pub const TASKS: &[TaskDef] = &[
    TaskDef {
        name: "wnut16",
        family: Family::Ner,
        kind: Kind::Token(TokenMetric::EntityF1),
        step_scale: 2,
        about: "WNUT-16 Twitter NER, 10 entity types (BIO)",
    },
    TaskDef {
        name: "brown-names",
        family: Family::Ner,
        kind: Kind::Token(TokenMetric::EntityF1),
        step_scale: 1,
        about: "proper-name spans of the Brown corpus (runs of `np*` tags as one NAME entity, BIO), downstream half of the Brown documents",
    },
    TaskDef {
        name: "brown-pos",
        family: Family::Ner,
        kind: Kind::Token(TokenMetric::Accuracy),
        step_scale: 1,
        about: "Brown part-of-speech tags (simplified: no -tl/-hl/-nc/fw- markers), downstream half of the Brown documents",
    },
    TaskDef {
        name: "rotten-tomatoes",
        family: Family::Tc,
        kind: Kind::Text,
        step_scale: 1,
        about: "Rotten Tomatoes critics' snippets, fresh vs rotten",
    },
    TaskDef {
        name: "vader-tweets",
        family: Family::Tc,
        kind: Kind::Text,
        step_scale: 1,
        about: "VADER tweets, positive vs negative human valence",
    },
    TaskDef {
        name: "vader-nyt",
        family: Family::Tc,
        kind: Kind::Text,
        step_scale: 1,
        about: "VADER NYT editorial sentences, positive vs negative",
    },
    TaskDef {
        name: "vader-amazon",
        family: Family::Tc,
        kind: Kind::Text,
        step_scale: 1,
        about: "VADER Amazon review sentences, positive vs negative",
    },
    TaskDef {
        name: "reuters-r8",
        family: Family::Tc,
        kind: Kind::Text,
        step_scale: 1,
        about: "Reuters-21578 R8 topics (8 classes), standard split",
    },
    TaskDef {
        name: "20newsgroups",
        family: Family::Tc,
        kind: Kind::Text,
        step_scale: 1,
        about: "20 Newsgroups (20 classes), standard split",
    },
    TaskDef {
        name: "brown-genre",
        family: Family::Tc,
        kind: Kind::Text,
        step_scale: 1,
        about: "genre (15 classes) of a Brown paragraph, downstream half of the Brown documents",
    },
];

pub fn task(name: &str) -> Option<&'static TaskDef> {
    TASKS.iter().find(|t| t.name == name)
}

/// The ablation knobs of MTPF-TPL's groups and sampler. A setting other than the default
/// pre-finetunes its own models; its name keys its folders and records.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    pub rank: usize,
    pub k: usize,
    pub targets: Vec<String>,
    /// How a multi-task arm draws each step's family: `None` (default) round-robin, so each
    /// family gets exactly as many steps as its individual pre-finetuning (equal budgets);
    /// `Some(T)`: with probability ∝ `n_i^(1/T)` (the temperature ablation).
    pub temperature: Option<f64>,
    /// The NER family's distillation loss (the library's default, cosine: see
    /// `PfConfig::distill_loss` for what MSE did).
    pub distill: DistillLoss,
}

impl Default for Setting {
    fn default() -> Self {
        let pf = PfConfig::new(TrainConfig::new(1));
        Setting {
            rank: pf.rank,
            k: pf.k,
            targets: pf.targets,
            temperature: None,
            distill: pf.distill_loss,
        }
    }
}

impl Setting {
    /// `default`, or the knobs that differ from it (`rank=4`, `k=1,targets=query+value`).
    pub fn name(&self) -> String {
        let base = Setting::default();
        let mut parts = Vec::new();
        if self.rank != base.rank {
            parts.push(format!("rank={}", self.rank));
        }
        if self.k != base.k {
            parts.push(format!("k={}", self.k));
        }
        if self.targets != base.targets {
            parts.push(format!("targets={}", self.targets.join("+")));
        }
        if let Some(t) = self.temperature
            && self.temperature != base.temperature
        {
            parts.push(format!("temperature={t}"));
        }
        if self.distill != base.distill {
            parts.push(format!("distill={}", distill_name(self.distill)));
        }
        if parts.is_empty() {
            "default".into()
        } else {
            parts.join(",")
        }
    }

    /// Sets knob `key` (`rank`, `k`, `targets`, `temperature`) from its text.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        match key {
            "rank" => self.rank = positive(key, value)?,
            "k" => self.k = positive(key, value)?,
            "targets" => {
                self.targets = value
                    .split(['+', ','])
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned)
                    .collect();
                if self.targets.is_empty() {
                    return Err("targets: at least one module name".into());
                }
            }
            "temperature" => {
                let t: f64 = value.parse()?;
                if !(t.is_finite() && t > 0.0) {
                    return Err(format!("temperature {value}: must be finite and > 0").into());
                }
                self.temperature = Some(t);
            }
            "distill" => {
                self.distill = match value {
                    "mse" => DistillLoss::Mse,
                    "cosine" => DistillLoss::Cosine,
                    _ => return Err(format!("distill {value}: mse or cosine").into()),
                }
            }
            other => {
                return Err(format!(
                    "unknown ablation knob `{other}` (rank, k, targets, temperature, distill)"
                )
                .into());
            }
        }
        Ok(())
    }
}

pub fn distill_name(loss: DistillLoss) -> &'static str {
    match loss {
        DistillLoss::Mse => "mse",
        DistillLoss::Cosine => "cosine",
    }
}

fn positive(key: &str, value: &str) -> Result<usize> {
    match value.parse::<usize>()? {
        0 => Err(format!("{key} must be at least 1").into()),
        n => Ok(n),
    }
}

/// The NER family's teacher.
#[derive(Debug, Clone, PartialEq)]
pub enum TeacherChoice {
    /// A tagger the harness trains into `OUT/teacher` (all-mpnet-base-v2 + a token head on
    /// CoNLL-2003, `Sizes::teacher`); the student learns its word label distributions.
    Train,
    /// A tagger saved by the `ner_teacher` example; the student learns its labels.
    Dir(PathBuf),
    /// all-mpnet-base-v2's last-layer word states through a projection (the earlier
    /// objective; `Setting::distill` chooses its loss).
    MpnetStates,
}

impl TeacherChoice {
    /// The folder of the tagger, `None` for the states teacher.
    pub fn tagger_dir(&self, out: &std::path::Path) -> Option<PathBuf> {
        match self {
            TeacherChoice::Train => Some(out.join("teacher")),
            TeacherChoice::Dir(dir) => Some(dir.clone()),
            TeacherChoice::MpnetStates => None,
        }
    }

    /// The teacher a [`TeacherChoice::describe`] string names.
    pub fn from_pinned(pinned: &str) -> Option<TeacherChoice> {
        if pinned.starts_with("tagger trained here") {
            Some(TeacherChoice::Train)
        } else if pinned == "all-mpnet-base-v2 states" {
            Some(TeacherChoice::MpnetStates)
        } else {
            pinned
                .strip_prefix("tagger ")
                .map(|dir| TeacherChoice::Dir(PathBuf::from(dir)))
        }
    }

    /// What `OUT/plan.json` pins.
    pub fn describe(&self, sizes: &Sizes) -> String {
        match self {
            TeacherChoice::Train => {
                let t = &sizes.teacher;
                let at_most = |n: usize| match n {
                    usize::MAX => "all".to_owned(),
                    n => format!("at most {n}"),
                };
                format!(
                    "tagger trained here: {} steps, lr {} (head {}), valid {}, test {}",
                    t.steps,
                    t.lr,
                    t.head_lr.unwrap_or(t.lr),
                    at_most(t.dev),
                    at_most(t.test)
                )
            }
            TeacherChoice::Dir(dir) => format!("tagger {}", dir.display()),
            TeacherChoice::MpnetStates => "all-mpnet-base-v2 states".into(),
        }
    }
}

/// Sizes of one profile.
#[derive(Debug, Clone)]
pub struct Sizes {
    /// Pre-finetuning: optimizer steps, batch size, peak learning rate.
    pub pf_steps: usize,
    pub pf_batch: usize,
    pub pf_lr: f64,
    /// Pre-finetuning data: Brown sentences (NER family) and text pairs (TC family), each
    /// plus `pf_dev` held out for the dev metric.
    pub pf_sentences: usize,
    pub pf_pairs: usize,
    pub pf_dev: usize,
    /// Downstream: steps per run, batch size, peak learning rate, evaluations per run.
    pub token_steps: usize,
    pub text_steps: usize,
    pub batch: usize,
    pub lr: f64,
    pub evals: usize,
    /// Downstream dev and test examples (the first ones of the fixed splits).
    pub dev: usize,
    pub test: usize,
    /// Tokens per row (special tokens included); longer sentences are windowed, longer
    /// texts truncated.
    pub max_len: usize,
    /// The tagger teacher's training (`TeacherChoice::Train`).
    pub teacher: TeacherSizes,
    /// The probe protocol's "100%": at most this many training sentences or texts (a fixed
    /// shuffle's first ones).
    pub probe_train: usize,
    /// The probe protocol's dev and test examples (`usize::MAX`: every one of the splits).
    pub probe_dev: usize,
    pub probe_test: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Quick,
    Full,
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::Quick => "quick",
            Profile::Full => "full",
        }
    }

    pub fn sizes(self) -> Sizes {
        match self {
            Profile::Quick => Sizes {
                pf_steps: 24,
                pf_batch: 16,
                pf_lr: 2e-5,
                pf_sentences: 256,
                pf_pairs: 256,
                pf_dev: 32,
                token_steps: 40,
                text_steps: 30,
                batch: 16,
                lr: 3e-3,
                evals: 2,
                dev: 100,
                test: 200,
                max_len: 64,
                probe_train: 1000,
                probe_dev: 100,
                probe_test: 200,
                // 50 steps at 5e-5 tagged every word `O` (valid F1 0), with the head at 5e-5 or
                // 1e-3; these 100 steps reached CoNLL-2003 test F1 0.23 (500 sentences) in 7 min
                // on 2 cores: enough to run the harness end to end, not a good teacher.
                teacher: TeacherSizes {
                    steps: 100,
                    lr: 1e-4,
                    head_lr: Some(1e-3),
                    dev: 300,
                    test: 500,
                },
            },
            Profile::Full => Sizes {
                pf_steps: 300,
                pf_batch: 16,
                pf_lr: 2e-5,
                pf_sentences: 3000,
                pf_pairs: 3000,
                pf_dev: 64,
                token_steps: 100,
                text_steps: 60,
                batch: 16,
                lr: 3e-3,
                evals: 2,
                dev: 200,
                test: 500,
                max_len: 64,
                probe_train: 5000,
                // Every dev and test example: the L2 path scores dev once per strength, and a
                // probe's test pass is a product, so the whole splits cost little next to
                // encoding them once.
                probe_dev: usize::MAX,
                probe_test: usize::MAX,
                // The teacher of docs/results.md's pilot: 600 steps reached CoNLL-2003 test
                // entity F1 88.0 in 55 minutes on 2 cores.
                teacher: TeacherSizes {
                    steps: 600,
                    lr: 5e-5,
                    head_lr: None,
                    dev: 1000,
                    test: usize::MAX,
                },
            },
        }
    }

    pub fn tasks(self) -> Vec<&'static TaskDef> {
        match self {
            // WNUT-16's entity F1 stays 0 within a quick run's steps: brown-names instead.
            Profile::Quick => ["brown-names", "vader-tweets", "reuters-r8"]
                .into_iter()
                .filter_map(task)
                .collect(),
            // brown-genre stays out of the default: it reads the same documents as the Brown
            // token tasks, and 3 + 6 tasks keep the full run to a few hours.
            Profile::Full => TASKS.iter().filter(|t| t.name != "brown-genre").collect(),
        }
    }

    pub fn seeds(self) -> Vec<u64> {
        match self {
            Profile::Quick => vec![0],
            Profile::Full => vec![0, 1, 2],
        }
    }
}

/// Everything one invocation does.
#[derive(Debug, Clone)]
pub struct Plan {
    pub profile: Profile,
    pub out: PathBuf,
    pub report: PathBuf,
    pub arms: Vec<Arm>,
    pub tasks: Vec<&'static TaskDef>,
    pub fractions: Vec<f64>,
    pub seeds: Vec<u64>,
    /// Pre-finetuning seeds: each arm that pre-finetunes does so once per seed (data order,
    /// fresh weights, dropout), and is fine-tuned from each.
    pub pf_seeds: Vec<u64>,
    /// Fine-tuning learning rates to choose from on dev, per run (empty: `sizes.lr` alone).
    pub lr_grid: Vec<f64>,
    /// With a grid: `false` chooses the rate per run; `true` once per arm, task and fraction,
    /// on the first seed's run, which the other seeds reuse.
    pub lr_per_arm: bool,
    pub protocol: crate::runs::Protocol,
    pub sizes: Sizes,
    /// The setting of the main comparison.
    pub setting: Setting,
    /// The NER family's teacher.
    pub teacher: TeacherChoice,
    /// Ablation: knob and values; each value fine-tunes MTPF-TPL under its own setting.
    pub sweep: Option<(String, Vec<String>)>,
    pub backend: Backend,
    pub report_only: bool,
    /// `(i, n)`: this process runs the downstream runs whose index is `i` mod `n`; only shard
    /// 0 pre-finetunes (the others put off runs whose model is not ready) and writes the
    /// report.
    pub shard: (usize, usize),
    /// The command line, for the report.
    pub command: String,
}

impl Plan {
    /// The settings to run: the main one, then each sweep value.
    pub fn settings(&self) -> Result<Vec<(Setting, Vec<Arm>)>> {
        let mut out = vec![(self.setting.clone(), self.arms.clone())];
        if let Some((key, values)) = &self.sweep {
            for value in values {
                let mut setting = self.setting.clone();
                setting.set(key, value)?;
                if setting == self.setting {
                    if !self.arms.contains(&Arm::MtpfTpl) {
                        out[0].1.push(Arm::MtpfTpl);
                    }
                } else {
                    out.push((setting, vec![Arm::MtpfTpl]));
                }
            }
        }
        Ok(out)
    }

    /// The downstream steps of `task`.
    pub fn steps(&self, task: &TaskDef) -> usize {
        task.step_scale
            * match task.kind {
                Kind::Token(_) => self.sizes.token_steps,
                Kind::Text => self.sizes.text_steps,
            }
    }

    /// Pre-finetuning's configuration of `variant` under `setting` (checkpoints set by the
    /// caller). Equal budgets: a multi-task variant runs `pf_steps` per family, so each family
    /// gets as many steps as its individual pre-finetuning (exactly under the default
    /// round-robin sampler, in expectation under a temperature; the record of each run counts
    /// them).
    /// The fine-tuning learning rates a run chooses from on dev.
    pub fn learning_rates(&self) -> Vec<f64> {
        if self.lr_grid.is_empty() {
            vec![self.sizes.lr]
        } else {
            self.lr_grid.clone()
        }
    }

    /// The pre-finetuning seeds of `arm`: none but 0 for the plain backbone.
    pub fn pf_seeds_of(&self, arm: Arm) -> &[u64] {
        if arm == Arm::NoPf {
            &[0]
        } else {
            &self.pf_seeds
        }
    }

    pub fn pf_config(
        &self,
        setting: &Setting,
        variant: Variant,
        pad_id: u32,
        pf_seed: u64,
    ) -> PfConfig {
        let s = &self.sizes;
        let steps = s.pf_steps * variant.families().len();
        let mut train = TrainConfig::new(steps);
        train.seed = pf_seed;
        train.learning_rate = s.pf_lr;
        train.warmup_steps = steps / 10;
        train.eval_every = Some((steps / 5).max(1));
        train.log_every = 20;
        let mut config = PfConfig::new(train);
        config.batch_size = s.pf_batch;
        config.dev_batches = (s.pf_dev / s.pf_batch).max(1);
        config.pad_id = pad_id;
        config.rank = setting.rank;
        config.alpha = 2.0 * setting.rank as f64;
        config.k = setting.k;
        config.targets = setting.targets.clone();
        config.strategy = setting
            .temperature
            .map_or(Strategy::RoundRobin, Strategy::Temperature);
        config.distill_loss = setting.distill;
        if self.teacher != TeacherChoice::MpnetStates {
            config.soft_labels = Some(crate::pf::SOFT_LABELS);
        }
        config
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(args: &[&str]) -> Result<Plan> {
        crate::cli::parse_plan(args)
    }

    #[test]
    fn the_tagger_teacher_is_the_default_and_its_labels_are_learned_by_kl() {
        let p = plan(&[]).unwrap();
        assert_eq!(p.teacher, TeacherChoice::Train);
        assert_eq!(
            p.teacher.tagger_dir(&p.out),
            Some(p.out.join("teacher")),
            "trained into the output folder"
        );
        let config = p.pf_config(&p.setting, Variant::Ner, 0, 0);
        assert_eq!(config.soft_labels, Some(crate::pf::SOFT_LABELS));

        let states = plan(&["--teacher", "mpnet-states", "--distill", "mse"]).unwrap();
        assert_eq!(states.teacher.tagger_dir(&states.out), None);
        let config = states.pf_config(&states.setting, Variant::Ner, 0, 0);
        assert_eq!(config.soft_labels, None);
        assert_eq!(config.distill_loss, DistillLoss::Mse);
    }

    #[test]
    fn pre_finetuning_seeds_seed_the_pre_finetuning_and_not_the_plain_backbone() {
        let p = plan(&["--pf-seeds", "0,4"]).unwrap();
        assert_eq!(p.pf_seeds_of(Arm::MtpfTpl), [0, 4]);
        assert_eq!(p.pf_seeds_of(Arm::NoPf), [0]);
        assert_eq!(p.pf_config(&p.setting, Variant::Naive, 0, 4).train.seed, 4);
        assert_eq!(plan(&[]).unwrap().pf_seeds, [0]);
        // Seed 0 keeps the folders of runs made before there were several.
        assert_eq!(crate::runs::arm_folder(Arm::Naive, 0), "naive");
        assert_eq!(crate::runs::arm_folder(Arm::Naive, 4), "naive@seed-4");
    }

    #[test]
    fn a_learning_rate_grid_is_parsed_and_checked() {
        assert_eq!(plan(&[]).unwrap().learning_rates(), [3e-3]);
        assert_eq!(plan(&["--lr", "1e-3"]).unwrap().learning_rates(), [1e-3]);
        assert!(!plan(&[]).unwrap().lr_per_arm);
        assert!(plan(&["--lr-per", "arm"]).unwrap().lr_per_arm);
        assert!(plan(&["--lr-per", "seed"]).is_err());
        assert_eq!(plan(&["--evals", "5"]).unwrap().sizes.evals, 5);
        assert!(plan(&["--evals", "0"]).is_err());
        let p = plan(&["--lr-grid", "1e-3,3e-3,1e-2"]).unwrap();
        assert_eq!(p.learning_rates(), [1e-3, 3e-3, 1e-2]);
        for bad in ["0", "-1e-3", "inf", "x", ""] {
            assert!(plan(&["--lr-grid", bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_pinned_teacher_reads_back() {
        let sizes = Profile::Quick.sizes();
        for teacher in [
            TeacherChoice::Train,
            TeacherChoice::MpnetStates,
            TeacherChoice::Dir(PathBuf::from("runs/ner teacher")),
        ] {
            let pinned = teacher.describe(&sizes);
            assert_eq!(
                TeacherChoice::from_pinned(&pinned),
                Some(teacher),
                "{pinned}"
            );
        }
        assert_eq!(TeacherChoice::from_pinned("something else"), None);
    }

    #[test]
    fn teacher_settings_that_cannot_apply_are_refused_before_any_work() {
        let err = plan(&["--distill", "mse"]).unwrap_err().to_string();
        assert!(err.contains("mpnet-states"), "{err}");
        let err = plan(&["--sweep", "distill=mse,cosine"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("mpnet-states"), "{err}");
        let empty = std::env::temp_dir().join("reproduce-plan-test-no-tagger");
        let err = plan(&["--teacher", empty.to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a tagger folder"), "{err}");
        assert!(plan(&["--teacher-steps", "0"]).is_err());
    }

    #[test]
    fn the_pinned_teacher_changes_with_its_sizes() {
        let quick = plan(&[]).unwrap();
        let short = plan(&["--teacher-steps", "2"]).unwrap();
        let full = plan(&["--profile", "full"]).unwrap();
        let describe = |p: &Plan| p.teacher.describe(&p.sizes);
        assert_ne!(describe(&quick), describe(&short));
        assert_ne!(describe(&quick), describe(&full));
        assert!(describe(&full).contains("test all"), "{}", describe(&full));
    }
}
