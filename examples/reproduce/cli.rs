//! The command line: the comparison's flags, read into a [`Plan`], and the subcommands
//! `reproduce layers` and `reproduce pilot`.

use std::path::PathBuf;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{ArgAction, Parser, Subcommand};
use lora_bert::Backend;

use crate::Result;
use crate::plan::{Arm, Plan, Profile, Setting, TaskDef, TeacherChoice, task};
use crate::runs::Protocol;

/// Pre-finetunes all-MiniLM-L6-v2 under each variant (NER PF, TC PF, naive multi-task PF,
/// MTPF-TPL), fine-tunes every downstream task from each of them and from the plain backbone,
/// with 100% and 10% of the training data and several seeds, and writes every run as JSON and
/// a Markdown report with means, standard deviations, family averages, deltas against no PF
/// and a chart. Finished runs are kept: rerunning the same command resumes.
#[derive(Parser)]
// An option's value is the word after it, even when that word starts with `-` (in the
// subcommands too).
#[command(
    name = "reproduce",
    args_override_self = true,
    allow_hyphen_values = true,
    args_conflicts_with_subcommands = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub plan: PlanArgs,
}

#[derive(Subcommand)]
pub enum Command {
    /// A linear probe on each layer of the plain backbone (the comparison's probe, whole dev
    /// and test splits): how much of a task each layer holds
    #[command(allow_hyphen_values = true)]
    Layers(crate::layers::Cli),
    /// The pilot that decides before a full run: every arm pre-finetuned briefly, then linear
    /// probes on frozen features scored on dev sets, with PASS/FAIL lines
    #[command(allow_hyphen_values = true)]
    Pilot(crate::pilot::Cli),
}

/// The comparison's flags. A flag left out takes the profile's value.
#[derive(clap::Args)]
pub struct PlanArgs {
    /// quick (3 tasks, 1 seed, a 100-step teacher, tiny pre-finetuning; about 25 minutes on 2
    /// cores) or full (9 tasks, 3 seeds; hours)
    #[arg(
        long,
        value_name = "P",
        default_value = "quick",
        value_parser = PossibleValuesParser::new(["quick", "full"]).map(|p| profile(&p))
    )]
    profile: Profile,
    /// Models, runs and report (default runs/reproduce-PROFILE)
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// The Markdown report (default OUT/results.md); the chart is written next to it as
    /// FILE-stem.png
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// no-pf,ner-pf,tc-pf,naive,mtpf-tpl (default all)
    #[arg(long, value_name = "LIST", value_parser = arms)]
    arms: Option<std::vec::Vec<Arm>>,
    /// Downstream tasks (default the profile's; all: wnut16, brown-names, brown-pos,
    /// rotten-tomatoes, vader-tweets, vader-nyt, vader-amazon, reuters-r8, 20newsgroups,
    /// brown-genre)
    #[arg(long, value_name = "LIST", value_parser = tasks)]
    tasks: Option<std::vec::Vec<&'static TaskDef>>,
    /// Shares of each task's training data, each in (0, 1]
    #[arg(long, value_name = "LIST", default_value = "1,0.1", value_parser = fractions)]
    fractions: std::vec::Vec<f64>,
    /// Fine-tuning seeds (default: quick 0, full 0,1,2)
    #[arg(long, value_name = "LIST", value_parser = seeds)]
    seeds: Option<std::vec::Vec<u64>>,
    /// Pre-finetuning seeds: each arm that pre-finetunes does so once per seed, and every
    /// downstream run is repeated on each
    #[arg(long, value_name = "LIST", default_value = "0", value_parser = seeds)]
    pf_seeds: std::vec::Vec<u64>,
    /// lora-head: a LoRA group shaped like the PF groups + a linear head, the backbone frozen;
    /// head-only: the head alone (MTPF-TPL keeps its family group, frozen); probe: a linear
    /// probe on the frozen features, fitted to convergence, L2 chosen on dev (issue 17's
    /// primary protocol)
    #[arg(
        long,
        value_name = "P",
        default_value = "lora-head",
        value_parser = PossibleValuesParser::new(["lora-head", "head-only", "probe"])
            .map(|p| protocol(&p))
    )]
    protocol: Protocol,
    /// The probe protocol's training examples at 100% (quick 1000, full 5000; a fixed
    /// shuffle's first ones when the split is larger)
    #[arg(long, value_name = "N", value_parser = positive)]
    probe_train: Option<usize>,
    /// Pre-finetuning steps (quick 24, full 300)
    #[arg(long, value_name = "N", value_parser = positive)]
    pf_steps: Option<usize>,
    /// The NER family's teacher: tagger (all-mpnet-base-v2 with a token head, trained here on
    /// CoNLL-2003 into OUT/teacher; the student learns its word label distributions), DIR (a
    /// tagger saved by the ner_teacher example) or mpnet-states (all-mpnet-base-v2's word
    /// states, the earlier objective)
    #[arg(long, value_name = "T", default_value = "tagger", value_parser = teacher)]
    teacher: TeacherChoice,
    /// The tagger's training steps (quick 100, full 600: about 55 minutes on 2 cores)
    #[arg(long, value_name = "N", value_parser = positive)]
    teacher_steps: Option<usize>,
    /// Fine-tuning steps of a token task, twice that for wnut16 (quick 40, full 100)
    #[arg(long, value_name = "N", value_parser = positive)]
    token_steps: Option<usize>,
    /// Fine-tuning steps of a text task (quick 30, full 60)
    #[arg(long, value_name = "N", value_parser = positive)]
    text_steps: Option<usize>,
    /// Dev evaluations per fine-tuning run, evenly spaced, the best kept (quick and full 2;
    /// issue 17's secondary protocol asks for 5)
    #[arg(long, value_name = "N", value_parser = positive)]
    evals: Option<usize>,
    /// Fine-tuning peak learning rate (default 3e-3)
    #[arg(long, value_name = "X")]
    lr: Option<f64>,
    /// Fine-tune at each of these rates and keep the one with the best dev score (default:
    /// --lr alone)
    #[arg(long, value_name = "LIST", value_parser = lr_grid)]
    lr_grid: Option<std::vec::Vec<f64>>,
    /// With --lr-grid: choose the rate per run (run), or once per arm, task and fraction on
    /// the first seed's run, the other seeds reusing it (arm; a seed whose first-seed run
    /// failed, or is another shard's and not finished, chooses for itself; its record keeps
    /// the rate either way)
    #[arg(
        long,
        value_name = "arm|run",
        default_value = "run",
        action = ArgAction::Set,
        value_parser = PossibleValuesParser::new(["arm", "run"]).map(|p| p == "arm")
    )]
    lr_per: bool,
    /// MTPF-TPL's LoRA rank (default 8)
    #[arg(long, value_name = "N", value_parser = knob("rank"))]
    rank: Option<String>,
    /// MTPF-TPL's LoRA on the last K layers (default 2)
    #[arg(long, value_name = "K", value_parser = knob("k"))]
    k: Option<String>,
    /// MTPF-TPL's adapted projections (default query+value)
    #[arg(long, value_name = "M+M", value_parser = knob("targets"))]
    targets: Option<String>,
    /// The multi-task sampler: the family drawn with probability ∝ n^(1/T) (default:
    /// round-robin)
    #[arg(long, value_name = "T", value_parser = knob("temperature"))]
    temperature: Option<String>,
    /// With --teacher mpnet-states, the NER family's distillation loss for the main comparison
    /// (default cosine)
    #[arg(long, value_name = "mse|cosine", value_parser = knob("distill"))]
    distill: Option<String>,
    /// Ablation: MTPF-TPL pre-finetuned and fine-tuned again for each value of one knob (rank,
    /// k, targets, temperature, distill), e.g. --sweep rank=4,16
    #[arg(long, value_name = "KNOB=V1,V2,..", value_parser = sweep)]
    sweep: Option<(String, std::vec::Vec<String>)>,
    /// Rewrite the report from the finished runs, train nothing
    #[arg(long)]
    report_only: bool,
    /// Run every N-th downstream run, from the I-th: start N processes (I = 0..N-1,
    /// RAYON_NUM_THREADS=1 each) to use more cores than one process does; shard 0
    /// pre-finetunes, the others run what needs no model of it meanwhile; only shard 0 writes
    /// the report (rerun with --report-only when all are done)
    #[arg(long, value_name = "I/N", value_parser = shard)]
    shard: Option<(usize, usize)>,
    /// CPU backend: flex or ndarray (default: flex, or ndarray when flex is not compiled in)
    #[arg(long, value_name = "NAME")]
    backend: Option<Backend>,
}

/// The command line as the report shows it: `args` are the words after the program name.
pub fn command_line<S: AsRef<str>>(args: &[S]) -> String {
    std::iter::once("cargo run --release --example reproduce --")
        .chain(args.iter().map(AsRef::as_ref))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The plan of `reproduce ARGS` (`args` without the program name; no subcommand).
pub fn parse_plan<S: AsRef<str>>(args: &[S]) -> Result<Plan> {
    let cli =
        Cli::try_parse_from(std::iter::once("reproduce").chain(args.iter().map(AsRef::as_ref)))?;
    if cli.command.is_some() {
        return Err("a subcommand, not the comparison's flags".into());
    }
    cli.plan.into_plan(command_line(args))
}

impl PlanArgs {
    /// The plan these flags ask for; `command` is the command line, for the report.
    pub fn into_plan(self, command: String) -> Result<Plan> {
        let profile = self.profile;
        let defaults = profile.sizes();
        let mut sizes = defaults.clone();
        sizes.pf_steps = self.pf_steps.unwrap_or(defaults.pf_steps);
        sizes.probe_train = self.probe_train.unwrap_or(defaults.probe_train);
        sizes.teacher.steps = self.teacher_steps.unwrap_or(defaults.teacher.steps);
        sizes.token_steps = self.token_steps.unwrap_or(defaults.token_steps);
        sizes.text_steps = self.text_steps.unwrap_or(defaults.text_steps);
        sizes.evals = self.evals.unwrap_or(defaults.evals);
        sizes.lr = self.lr.unwrap_or(defaults.lr);
        let mut setting = Setting::default();
        for (key, value) in [
            ("rank", &self.rank),
            ("k", &self.k),
            ("targets", &self.targets),
            ("temperature", &self.temperature),
            ("distill", &self.distill),
        ] {
            if let Some(value) = value {
                setting.set(key, value)?;
            }
        }
        let out = self
            .out
            .unwrap_or_else(|| PathBuf::from(format!("runs/reproduce-{}", profile.name())));
        let plan = Plan {
            profile,
            report: self.report.unwrap_or_else(|| out.join("results.md")),
            out,
            arms: self.arms.unwrap_or_else(|| Arm::ALL.to_vec()),
            tasks: self.tasks.unwrap_or_else(|| profile.tasks()),
            fractions: self.fractions,
            seeds: self.seeds.unwrap_or_else(|| profile.seeds()),
            pf_seeds: self.pf_seeds,
            lr_grid: self.lr_grid.unwrap_or_default(),
            lr_per_arm: self.lr_per,
            protocol: self.protocol,
            sizes,
            setting,
            teacher: self.teacher,
            sweep: self.sweep,
            backend: self.backend.map_or_else(Backend::default_cpu, Ok)?,
            report_only: self.report_only,
            shard: self.shard.unwrap_or((0, 1)),
            command,
        };
        let sweeps_distill = plan.sweep.as_ref().is_some_and(|(key, _)| key == "distill");
        if plan.teacher != TeacherChoice::MpnetStates
            && (sweeps_distill || plan.setting.distill != Setting::default().distill)
        {
            return Err(
                "the distillation loss applies to --teacher mpnet-states only: a tagger \
                        teacher's labels are learned by KL"
                    .into(),
            );
        }
        if let TeacherChoice::Dir(dir) = &plan.teacher
            && !dir
                .join(lora_bert::train::teacher::TAGGER_MANIFEST)
                .is_file()
        {
            return Err(format!(
                "--teacher {}: not a tagger folder (no {}); use tagger, mpnet-states or a \
                 ner_teacher output",
                dir.display(),
                lora_bert::train::teacher::TAGGER_MANIFEST
            )
            .into());
        }
        Ok(plan)
    }
}

/// A comma-separated list, empty items skipped, each parsed by `item`; an empty list is an
/// error.
pub fn list<T>(
    value: &str,
    item: impl Fn(&str) -> std::result::Result<T, String>,
) -> std::result::Result<Vec<T>, String> {
    let items = value
        .split(',')
        .filter(|s| !s.is_empty())
        .map(item)
        .collect::<std::result::Result<Vec<T>, String>>()?;
    if items.is_empty() {
        return Err(format!("empty list `{value}`"));
    }
    Ok(items)
}

fn profile(name: &str) -> Profile {
    match name {
        "full" => Profile::Full,
        _ => Profile::Quick,
    }
}

fn protocol(name: &str) -> Protocol {
    match name {
        "head-only" => Protocol::HeadOnly,
        "probe" => Protocol::Probe,
        _ => Protocol::LoraHead,
    }
}

fn arms(value: &str) -> std::result::Result<Vec<Arm>, String> {
    list(value, |a| {
        Arm::from_name(a).ok_or_else(|| format!("unknown arm `{a}`"))
    })
}

fn tasks(value: &str) -> std::result::Result<Vec<&'static TaskDef>, String> {
    list(value, |t| {
        task(t).ok_or_else(|| format!("unknown task `{t}`"))
    })
}

fn fractions(value: &str) -> std::result::Result<Vec<f64>, String> {
    list(value, |f| {
        let f: f64 = f.parse().map_err(|e| format!("{f}: {e}"))?;
        if f > 0.0 && f <= 1.0 {
            Ok(f)
        } else {
            Err(format!("fraction {f} is not in (0, 1]"))
        }
    })
}

fn seeds(value: &str) -> std::result::Result<Vec<u64>, String> {
    list(value, |s| s.parse().map_err(|e| format!("{s}: {e}")))
}

fn lr_grid(value: &str) -> std::result::Result<Vec<f64>, String> {
    list(value, |s| {
        let lr: f64 = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
        if !(lr.is_finite() && lr > 0.0) {
            return Err(format!("{lr} is not a positive rate"));
        }
        Ok(lr)
    })
}

fn positive(value: &str) -> std::result::Result<usize, String> {
    match value.parse::<usize>().map_err(|e| e.to_string())? {
        0 => Err("must be at least 1".into()),
        n => Ok(n),
    }
}

fn teacher(value: &str) -> std::result::Result<TeacherChoice, String> {
    Ok(match value {
        "tagger" => TeacherChoice::Train,
        "mpnet-states" => TeacherChoice::MpnetStates,
        dir => TeacherChoice::Dir(dir.into()),
    })
}

/// The value of ablation knob `key`, checked now rather than after hours of training.
fn knob(
    key: &'static str,
) -> impl Fn(&str) -> std::result::Result<String, String> + Clone + Send + Sync + 'static {
    move |value| {
        Setting::default()
            .set(key, value)
            .map_err(|e| e.to_string())?;
        Ok(value.to_owned())
    }
}

fn sweep(value: &str) -> std::result::Result<(String, Vec<String>), String> {
    let (key, values) = value
        .split_once('=')
        .ok_or("--sweep takes KNOB=V1,V2,.. (e.g. rank=4,8,16)")?;
    let values: Vec<String> = values
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    // Check every value now rather than after hours of training.
    for value in &values {
        Setting::default()
            .set(key, value)
            .map_err(|e| e.to_string())?;
    }
    Ok((key.to_owned(), values))
}

fn shard(value: &str) -> std::result::Result<(usize, usize), String> {
    value
        .split_once('/')
        .and_then(|(i, n)| Some((i.parse().ok()?, n.parse().ok()?)))
        .filter(|&(i, n): &(usize, usize)| i < n)
        .ok_or_else(|| format!("--shard I/N with I < N, not `{value}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What every flag left out gives: the plan before any flag but `--profile` is applied.
    fn defaults(profile: Profile, args: &[&str]) -> Plan {
        let out = PathBuf::from(format!("runs/reproduce-{}", profile.name()));
        Plan {
            profile,
            report: out.join("results.md"),
            out,
            arms: Arm::ALL.to_vec(),
            tasks: profile.tasks(),
            fractions: vec![1.0, 0.1],
            seeds: profile.seeds(),
            pf_seeds: vec![0],
            lr_grid: Vec::new(),
            lr_per_arm: false,
            protocol: Protocol::LoraHead,
            sizes: profile.sizes(),
            setting: Setting::default(),
            teacher: TeacherChoice::Train,
            sweep: None,
            backend: Backend::default_cpu().unwrap(),
            report_only: false,
            shard: (0, 1),
            command: command_line(args),
        }
    }

    /// `Plan` has no `PartialEq`: its `Debug` text shows every field.
    fn assert_plan(args: &[&str], expected: Plan) {
        let parsed = parse_plan(args).unwrap();
        assert_eq!(format!("{parsed:?}"), format!("{expected:?}"), "{args:?}");
    }

    #[test]
    fn no_flag_is_the_quick_profile() {
        assert_plan(&[], defaults(Profile::Quick, &[]));
        let full = ["--profile", "full"];
        assert_plan(&full, defaults(Profile::Full, &full));
    }

    #[test]
    fn the_full_runs_command_lines_parse_into_their_plans() {
        let seeds = "0,1,2,3,4,5,6,7,8,9";
        let probe = [
            "--profile",
            "full",
            "--protocol",
            "probe",
            "--pf-seeds",
            "0,1",
            "--seeds",
            seeds,
            "--out",
            "runs/full17",
            "--report",
            "runs/full17/results.md",
        ];
        let mut expected = defaults(Profile::Full, &probe);
        expected.protocol = Protocol::Probe;
        expected.pf_seeds = vec![0, 1];
        expected.seeds = (0..10).collect();
        expected.out = "runs/full17".into();
        expected.report = "runs/full17/results.md".into();
        assert_plan(&probe, expected.clone());

        let report_only: Vec<&str> = probe.iter().copied().chain(["--report-only"]).collect();
        expected.report_only = true;
        expected.command = command_line(&report_only);
        assert_plan(&report_only, expected);

        let lora_head = [
            "--profile",
            "full",
            "--out",
            "runs/full17",
            "--protocol",
            "lora-head",
            "--tasks",
            "wnut16,vader-tweets",
            "--fractions",
            "1",
            "--seeds",
            "0,1,2",
            "--pf-seeds",
            "0,1",
            "--token-steps",
            "300",
            "--text-steps",
            "300",
            "--evals",
            "5",
            "--lr-grid",
            "1e-3,3e-3,1e-2",
            "--lr-per",
            "arm",
        ];
        let mut expected = defaults(Profile::Full, &lora_head);
        expected.out = "runs/full17".into();
        expected.report = "runs/full17/results.md".into();
        expected.tasks = vec![task("wnut16").unwrap(), task("vader-tweets").unwrap()];
        expected.fractions = vec![1.0];
        expected.seeds = vec![0, 1, 2];
        expected.pf_seeds = vec![0, 1];
        expected.sizes.token_steps = 300;
        expected.sizes.text_steps = 300;
        expected.sizes.evals = 5;
        expected.lr_grid = vec![1e-3, 3e-3, 1e-2];
        expected.lr_per_arm = true;
        assert_plan(&lora_head, expected);
    }

    #[test]
    fn the_ci_command_lines_parse_into_their_plans() {
        let tiny = [
            "--teacher-steps",
            "2",
            "--pf-steps",
            "2",
            "--token-steps",
            "2",
            "--text-steps",
            "2",
            "--probe-train",
            "50",
            "--out",
            "target/reproduce-ci",
        ];
        let mut expected = defaults(Profile::Quick, &tiny);
        expected.sizes.teacher.steps = 2;
        expected.sizes.pf_steps = 2;
        expected.sizes.token_steps = 2;
        expected.sizes.text_steps = 2;
        expected.sizes.probe_train = 50;
        expected.out = "target/reproduce-ci".into();
        expected.report = "target/reproduce-ci/results.md".into();
        assert_plan(&tiny, expected.clone());

        let probe: Vec<&str> = tiny
            .iter()
            .copied()
            .chain([
                "--protocol",
                "probe",
                "--report",
                "target/reproduce-ci/probe.md",
            ])
            .collect();
        expected.protocol = Protocol::Probe;
        expected.report = "target/reproduce-ci/probe.md".into();
        expected.command = command_line(&probe);
        assert_plan(&probe, expected);

        let again = [
            "--out",
            "target/reproduce-ci",
            "--protocol",
            "probe",
            "--report-only",
            "--report",
            "target/reproduce-ci/probe-again.md",
        ];
        let mut expected = defaults(Profile::Quick, &again);
        expected.out = "target/reproduce-ci".into();
        expected.protocol = Protocol::Probe;
        expected.report_only = true;
        expected.report = "target/reproduce-ci/probe-again.md".into();
        assert_plan(&again, expected);
    }

    #[test]
    fn every_other_flag_sets_its_field() {
        let args = [
            "--arms",
            "no-pf,mtpf-tpl",
            "--rank",
            "4",
            "--k",
            "1",
            "--targets",
            "query+value+dense",
            "--temperature",
            "2",
            "--sweep",
            "rank=4,16",
            "--shard",
            "1/3",
            "--lr",
            "1e-3",
            "--backend",
            "ndarray",
        ];
        let mut expected = defaults(Profile::Quick, &args);
        expected.arms = vec![Arm::NoPf, Arm::MtpfTpl];
        expected.setting.rank = 4;
        expected.setting.k = 1;
        expected.setting.targets = vec!["query".into(), "value".into(), "dense".into()];
        expected.setting.temperature = Some(2.0);
        expected.sweep = Some(("rank".into(), vec!["4".into(), "16".into()]));
        expected.shard = (1, 3);
        expected.sizes.lr = 1e-3;
        expected.backend = Backend::NdArray;
        assert_plan(&args, expected);

        let states = ["--teacher", "mpnet-states", "--distill", "mse"];
        let mut expected = defaults(Profile::Quick, &states);
        expected.teacher = TeacherChoice::MpnetStates;
        expected.setting.distill = lora_bert::train::DistillLoss::Mse;
        assert_plan(&states, expected);
    }

    #[test]
    fn an_option_takes_the_next_word_even_when_it_starts_with_a_hyphen() {
        let p = parse_plan(&["--lr", "-1e-3", "--out", "-o"]).unwrap();
        assert_eq!(p.sizes.lr, -1e-3);
        assert_eq!(p.out, PathBuf::from("-o"));
        assert!(parse_plan(&["--lr-grid", "-1e-3"]).is_err());
        assert!(parse_plan(&["-x"]).is_err());
        let pilot = Cli::try_parse_from([
            "reproduce",
            "pilot",
            "--teacher",
            "-t",
            "--hard-weight",
            "-1",
        ]);
        assert!(matches!(pilot.unwrap().command, Some(Command::Pilot(_))));
    }

    #[test]
    fn lists_skip_empty_items_and_a_repeated_flag_takes_its_last_value() {
        let p = parse_plan(&["--seeds", "0,,1,", "--lr", "1e-3", "--lr", "2e-3"]).unwrap();
        assert_eq!(p.seeds, [0, 1]);
        assert_eq!(p.sizes.lr, 2e-3);
    }

    #[test]
    fn bad_values_are_refused() {
        for bad in [
            &["--profile", "medium"][..],
            &["--protocol", "x"],
            &["--arms", "x"],
            &["--arms", ","],
            &["--tasks", "x"],
            &["--fractions", "0"],
            &["--fractions", "1.5"],
            &["--seeds", ""],
            &["--seeds", "x"],
            &["--pf-seeds", "-1"],
            &["--pf-steps", "0"],
            &["--probe-train", "0"],
            &["--token-steps", "0"],
            &["--text-steps", "0"],
            &["--lr", "x"],
            &["--rank", "0"],
            &["--k", "x"],
            &["--targets", "+"],
            &["--temperature", "0"],
            &["--distill", "l1"],
            &["--sweep", "rank"],
            &["--sweep", "rank=4,0"],
            &["--sweep", "depth=1"],
            &["--shard", "2/2"],
            &["--shard", "1"],
            &["--backend", "tpu"],
            &["--nope"],
            &["--out"],
        ] {
            assert!(parse_plan(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_subcommands_take_their_own_flags() {
        let parse = |args: &[&str]| Cli::try_parse_from(["reproduce"].iter().chain(args));
        assert!(matches!(
            parse(&["layers", "--task", "brown-names", "--layers", "6"])
                .unwrap()
                .command,
            Some(Command::Layers(_))
        ));
        assert!(matches!(
            parse(&["pilot", "--teacher", "runs/ner-teacher", "--steps", "10"])
                .unwrap()
                .command,
            Some(Command::Pilot(_))
        ));
        // The pilot needs its teacher; the comparison's flags are not the subcommands'.
        assert!(parse(&["pilot"]).is_err());
        assert!(parse(&["layers", "--profile", "full"]).is_err());
        assert!(parse(&["--profile", "full", "layers"]).is_err());
    }
}
