//! Reproduces the paper's comparison on real data: does MTPF-TPL keep both families' gains?
//!
//! ```text
//! cargo run --release --example reproduce                      # quick profile, minutes
//! cargo run --release --example reproduce -- --profile full \
//!     --report docs/results.md                                 # the full run, hours
//! cargo run --release --example reproduce -- --profile full --tasks wnut16,vader-tweets \
//!     --seeds 0 --sweep rank=4,16 --report docs/results.md     # an ablation sweep
//! ```
//!
//! 1. Trains the NER family's teacher (all-mpnet-base-v2 with a token-classification head,
//!    fine-tuned on CoNLL-2003; `--teacher` takes a saved one or the earlier states objective)
//!    and annotates the pre-finetuning sentences with it once.
//! 2. Pre-finetunes all-MiniLM-L6-v2 under each variant: NER PF (the teacher's word label
//!    distributions on Brown sentences, learned by KL through a token head), TC PF
//!    (contrastive on text pairs), naive multi-task PF (both objectives, one backbone) and
//!    MTPF-TPL (both, each family through its own LoRA group). `data.rs` says how this data is
//!    kept apart from downstream data.
//! 3. Fine-tunes every downstream task (3 token-level, 7 sentence-level) from the plain
//!    backbone and from each pre-finetuned model, with 100% and 10% of its training data,
//!    for each seed, and scores the best dev checkpoint on test.
//! 4. Writes each run as JSON under `OUT/runs`, all of them next to the report
//!    (`FILE-runs.json`, their per-item test counts in `FILE-items.json.gz`), and the
//!    Markdown report with a chart (`FILE.png`).
//!
//! Every stage resumes: a finished pre-finetuning or run is read back, an interrupted
//! pre-finetuning continues from its checkpoint, the teacher cache keeps its finished shards.
//! `OUT/plan.json` pins the pre-finetuning of a folder and `OUT/plan-PROTOCOL.json` each
//! protocol's sizes, so both protocols share one pre-finetuning; a rerun that changes them is
//! refused (use another `--out`).

#[path = "../common/args.rs"]
mod args;

mod cli;
mod data;
mod feature_cache;
mod layers;
mod pf;
mod pilot;
mod plan;
mod probes;
mod records_file;
mod report;
mod runs;

use std::collections::BTreeMap;
use std::error::Error;
use std::time::Instant;

use lora_bert::adapters::{AdaptedModel, Lora};
use lora_bert::assets::{self, AssetCache};
use lora_bert::device;
use lora_bert::encoder::BertModel;
use lora_bert::encoder::tokenizer::{BertTokenizer, LengthPolicy};
use lora_bert::train::load_pf;
use serde::{Deserialize, Serialize};

use crate::plan::{Arm, Plan, TeacherChoice};

pub type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// What `OUT/plan.json` and `OUT/plan-PROTOCOL.json` pin: everything that changes a run's
/// result but not its key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Pinned {
    profile: String,
    protocol: String,
    max_len: usize,
    pf_steps: usize,
    pf_batch: usize,
    pf_lr: f64,
    pf_sentences: usize,
    pf_pairs: usize,
    pf_dev: usize,
    /// The NER family's teacher.
    teacher: String,
    /// Fine-tuning learning rates chosen from on dev (empty: `lr` alone).
    #[serde(default)]
    lr_grid: Vec<f64>,
    /// The grid's rate chosen once per arm (on the first seed) rather than per run.
    #[serde(default)]
    lr_per_arm: bool,
    /// The probe protocol's training cap (0 in folders made before it existed).
    #[serde(default)]
    probe_train: usize,
    /// The probe protocol's dev and test caps (absent in folders made before they existed,
    /// whose probes used `dev` and `test`).
    #[serde(default)]
    probe_dev: Option<usize>,
    #[serde(default)]
    probe_test: Option<usize>,
    token_steps: usize,
    text_steps: usize,
    batch: usize,
    lr: f64,
    evals: usize,
    dev: usize,
    test: usize,
    /// How dev and test examples are sampled.
    eval_sample: String,
}

impl Pinned {
    /// Sets `plan`'s profile, sizes and teacher to these (the teacher's own training sizes
    /// stay the flags': the report reads the teacher's files).
    fn apply(&self, plan: &mut Plan) -> std::result::Result<(), String> {
        plan.profile = match self.profile.as_str() {
            "quick" => plan::Profile::Quick,
            "full" => plan::Profile::Full,
            other => return Err(format!("unknown profile `{other}`")),
        };
        plan.teacher = TeacherChoice::from_pinned(&self.teacher)
            .ok_or_else(|| format!("unknown teacher `{}`", self.teacher))?;
        let s = &mut plan.sizes;
        s.max_len = self.max_len;
        s.pf_steps = self.pf_steps;
        s.pf_batch = self.pf_batch;
        s.pf_lr = self.pf_lr;
        s.pf_sentences = self.pf_sentences;
        s.pf_pairs = self.pf_pairs;
        s.pf_dev = self.pf_dev;
        s.token_steps = self.token_steps;
        s.text_steps = self.text_steps;
        s.batch = self.batch;
        s.lr = self.lr;
        s.evals = self.evals;
        s.dev = self.dev;
        s.test = self.test;
        plan.lr_grid = self.lr_grid.clone();
        plan.lr_per_arm = self.lr_per_arm;
        if self.probe_train > 0 {
            s.probe_train = self.probe_train;
        }
        s.probe_dev = self.probe_dev.unwrap_or(self.dev);
        s.probe_test = self.probe_test.unwrap_or(self.test);
        Ok(())
    }

    fn of(plan: &Plan) -> Pinned {
        let s = &plan.sizes;
        Pinned {
            profile: plan.profile.name().into(),
            protocol: runs::protocol_name(plan.protocol).into(),
            max_len: s.max_len,
            pf_steps: s.pf_steps,
            pf_batch: s.pf_batch,
            pf_lr: s.pf_lr,
            pf_sentences: s.pf_sentences,
            pf_pairs: s.pf_pairs,
            pf_dev: s.pf_dev,
            teacher: plan.teacher.describe(s),
            probe_train: s.probe_train,
            probe_dev: Some(s.probe_dev),
            probe_test: Some(s.probe_test),
            lr_grid: plan.lr_grid.clone(),
            lr_per_arm: plan.lr_per_arm,
            token_steps: s.token_steps,
            text_steps: s.text_steps,
            batch: s.batch,
            lr: s.lr,
            evals: s.evals,
            dev: s.dev,
            test: s.test,
            eval_sample: format!("stratified, seed {}", runs::EVAL_SEED),
        }
    }
}

/// Adds this command line to `OUT/commands.json` (once) and returns every command that wrote
/// into the folder, in order.
fn remember_command(plan: &Plan) -> Result<Vec<String>> {
    let path = plan.out.join("commands.json");
    let mut commands: Vec<String> = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    if !plan.report_only && !commands.contains(&plan.command) {
        commands.push(plan.command.clone());
        runs::write_json(&path, &commands)?;
    }
    Ok(commands)
}

impl Pinned {
    /// Whether `self` and `other` agree on what every protocol shares: the profile, the
    /// pre-finetuning and its teacher, the rows' length and how dev and test are sampled.
    fn same_shared(&self, other: &Pinned) -> bool {
        self.profile == other.profile
            && self.max_len == other.max_len
            && self.pf_steps == other.pf_steps
            && self.pf_batch == other.pf_batch
            && self.pf_lr == other.pf_lr
            && self.pf_sentences == other.pf_sentences
            && self.pf_pairs == other.pf_pairs
            && self.pf_dev == other.pf_dev
            && self.teacher == other.teacher
            && self.eval_sample == other.eval_sample
    }

    /// Fills what a folder made before a field existed could not record.
    fn upgrade(mut self, mine: &Pinned) -> Pinned {
        if self.probe_train == 0 {
            // Made before the probe protocol: no probe runs to disagree with.
            self.probe_train = mine.probe_train;
        }
        if self.probe_dev.is_none() && self.protocol != "probe" {
            // Made before the probe caps, by fine-tuning only: nothing to disagree with.
            self.probe_dev = mine.probe_dev;
            self.probe_test = mine.probe_test;
        }
        self
    }
}

/// Records the plan's sizes, or checks them against an earlier command's. `OUT/plan.json`
/// pins what every protocol shares (the pre-finetuning, so that both protocols use the same
/// pre-finetuned models); `OUT/plan-PROTOCOL.json` pins the sizes of one protocol's runs
/// (a folder made before it has only `plan.json`, which then pins its own protocol's too). A
/// `--report-only` invocation takes the folder's pins instead: its report describes what
/// ran, whatever its own flags say.
fn pin(plan: &mut Plan) -> Result<()> {
    let mine = Pinned::of(plan);
    let base = plan.out.join("plan.json");
    let own = plan.out.join(format!("plan-{}.json", mine.protocol));
    let read = |path: &std::path::Path| -> Result<Option<Pinned>> {
        match std::fs::read(path) {
            Ok(bytes) => Ok(Some(
                serde_json::from_slice::<Pinned>(&bytes)
                    .map_err(|e| format!("{}: {e}", path.display()))?
                    .upgrade(&mine),
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display()).into()),
        }
    };
    let shared = read(&base)?;
    let theirs = match read(&own)? {
        Some(p) => Some(p),
        None => shared
            .as_ref()
            .filter(|s| s.protocol == mine.protocol)
            .cloned(),
    };
    if plan.report_only {
        if let Some(pinned) = theirs.as_ref().or(shared.as_ref()) {
            pinned
                .apply(plan)
                .map_err(|e| format!("{}: {e}", plan.out.display()))?;
        }
        return Ok(());
    }
    if let Some(s) = &shared
        && !s.same_shared(&mine)
    {
        return Err(format!(
            "{} was made with another pre-finetuning or profile ({s:?}); use another --out or \
             the same flags",
            base.display()
        )
        .into());
    }
    if let Some(t) = &theirs
        && t != &mine
    {
        return Err(format!(
            "{} was made with other {} sizes ({t:?}); use another --out or the same flags",
            if own.is_file() { &own } else { &base }.display(),
            mine.protocol
        )
        .into());
    }
    if shared.is_none() {
        runs::write_json(&base, &mine)?;
    }
    if !own.is_file() {
        runs::write_json(&own, &mine)?;
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    args::exit(run())
}

fn run() -> Result<()> {
    // Faster CPU passes: see lora_bert::malloc.
    lora_bert::malloc::keep_freed_memory();
    let cli = <cli::Cli as clap::Parser>::parse();
    let mut plan = match cli.command {
        Some(cli::Command::Pilot(args)) => return pilot::run(args),
        Some(cli::Command::Layers(args)) => return layers::run(args),
        None => {
            let args: Vec<String> = std::env::args_os()
                .skip(1)
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            cli.plan.into_plan(cli::command_line(&args))?
        }
    };
    let started = Instant::now();
    std::fs::create_dir_all(&plan.out)?;
    pin(&mut plan)?;
    let plan = plan;
    // Records of another version are refused now, not after hours of runs.
    runs::read_records(&plan.out)?;
    let cache = AssetCache::from_env()?;
    let inference = device::device(plan.backend)?;
    let training = device::autodiff(inference.clone());
    let files = assets::all_minilm_l6_v2(&cache)?;
    let tokenizer = BertTokenizer::from_file(&files.tokenizer)?
        .with_max_length(plan.sizes.max_len)
        .with_length_policy(LengthPolicy::Window {
            stride: plan.sizes.max_len / 4,
        });
    // Pre-finetuning rows are shorter: its sentences have at most 40 words, and its pairs
    // (e-mail bodies, news paragraphs) are cut, which halves the cost of a contrastive step.
    let pf_tokenizer = tokenizer
        .clone()
        .with_max_length(plan.sizes.max_len.min(pf::MAX_LEN));
    let settings = plan.settings()?;
    let commands = remember_command(&plan)?;
    println!(
        "reproduce, profile {}: {} arms x {} tasks x {} fractions x {} seeds{}, protocol {}, \
         backend {}; outputs in {}",
        plan.profile,
        plan.arms.len(),
        plan.tasks.len(),
        plan.fractions.len(),
        plan.seeds.len(),
        if settings.len() > 1 {
            format!(" (+ {} ablation settings)", settings.len() - 1)
        } else {
            String::new()
        },
        runs::protocol_name(plan.protocol),
        plan.backend,
        plan.out.display()
    );

    // Data: the Brown halves, the pre-finetuning corpora and the downstream tasks.
    let brown = data::Brown::load(&cache)?;
    let s = &plan.sizes;
    let pf_data = data::pf_data(&cache, &brown, s.pf_sentences, s.pf_pairs, s.pf_dev)?;
    let mut tasks = Vec::new();
    let mut sizes = BTreeMap::new();
    for def in &plan.tasks {
        let task = runs::Task::new(def, data::load_task(def, &cache, &brown)?)?;
        sizes.insert(def.name.to_owned(), task.data.sizes());
        tasks.push(task);
    }
    let record = |setting, arm, task: &runs::Task, fraction, seed, pf_seed| {
        runs::record_path(
            &plan.out,
            plan.protocol,
            setting,
            arm,
            task.def,
            fraction,
            seed,
            pf_seed,
        )
    };
    // Runs of this command not finished yet (none for a report: it runs nothing).
    let unfinished = || {
        if plan.report_only {
            return 0;
        }
        let mut n = 0;
        for (setting, arms) in &settings {
            for &arm in arms {
                for task in &tasks {
                    for &fraction in &plan.fractions {
                        for &seed in &plan.seeds {
                            for &pf_seed in plan.pf_seeds_of(arm) {
                                let path = record(setting, arm, task, fraction, seed, pf_seed);
                                n += usize::from(!path.is_file());
                            }
                        }
                    }
                }
            }
        }
        n
    };

    // Pre-finetuning.
    let teacher_seconds_path = plan.out.join("pf").join("teacher.json");
    let mut teacher_seconds: Option<f64> = std::fs::read(&teacher_seconds_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    if !plan.report_only {
        let needs_teacher = settings.iter().any(|(setting, arms)| {
            arms.iter().any(|&a| {
                matches!(a, Arm::NerPf | Arm::Naive | Arm::MtpfTpl)
                    && plan
                        .pf_seeds_of(a)
                        .iter()
                        .any(|&k| pf::read_record(&plan.out, setting, a, k).is_none())
            })
        });
        let teacher = if needs_teacher && plan.shard.0 == 0 {
            let t = Instant::now();
            let cache = match plan.teacher.tagger_dir(&plan.out) {
                Some(dir) => {
                    if plan.teacher == TeacherChoice::Train {
                        pf::ensure_teacher(&cache, &dir, plan.sizes.teacher, &training)?;
                    }
                    let folder = plan.out.join("pf").join("teacher-labels");
                    pf::tagger_labels(&cache, &dir, &pf_data, &folder, &inference)?
                }
                None => pf::teacher_cache(&cache, &pf_data, &plan.out, &inference)?,
            };
            if teacher_seconds.is_none() {
                let secs = t.elapsed().as_secs_f64();
                runs::write_json(&teacher_seconds_path, &secs)?;
                teacher_seconds = Some(secs);
            }
            Some(cache)
        } else {
            None
        };
        for (setting, arms) in &settings {
            for &arm in arms.iter().filter(|a| **a != Arm::NoPf) {
                for &pf_seed in plan.pf_seeds_of(arm) {
                    if plan.shard.0 == 0 {
                        pf::ensure(
                            &plan,
                            setting,
                            arm,
                            &files,
                            &pf_tokenizer,
                            &pf_data,
                            teacher.as_ref(),
                            &training,
                            pf_seed,
                        )?;
                    }
                }
            }
        }
    }

    // The report's pre-finetuning rows: every record in the folder, whichever command (and
    // selection flags) wrote it.
    let pf_all = pf::read_all_records(&plan.out)?;
    let context = || report::Context {
        plan: &plan,
        pf: pf_all.clone(),
        teacher_seconds,
        unfinished: unfinished(),
        commands: commands.clone(),
        sizes: sizes.clone(),
        pf_sources: pf_data
            .pair_sources
            .iter()
            .map(|(n, c)| ((*n).to_owned(), *c))
            .collect(),
    };

    // The probe protocol: arm by arm, each task encoded once (or read from the feature cache),
    // then a probe per fraction and seed.
    if !plan.report_only && plan.protocol == runs::Protocol::Probe {
        let features = feature_cache::FeatureCache::new(plan.out.join("features"));
        let (shard, shards) = plan.shard;
        let (mut unit, mut done, mut failed) = (0usize, 0usize, 0usize);
        for (setting, arms) in &settings {
            for &arm in arms {
                for &pf_seed in plan.pf_seeds_of(arm) {
                    let mut todo = Vec::new();
                    for task in &tasks {
                        unit += 1;
                        if (unit - 1) % shards != shard {
                            continue;
                        }
                        let mut jobs = Vec::new();
                        for &fraction in &plan.fractions {
                            for &seed in &plan.seeds {
                                let path = record(setting, arm, task, fraction, seed, pf_seed);
                                if !path.is_file() {
                                    jobs.push(probes::Job {
                                        fraction,
                                        seed,
                                        path,
                                    });
                                }
                            }
                        }
                        if !jobs.is_empty() {
                            todo.push((task, jobs));
                        }
                    }
                    if todo.is_empty() {
                        continue;
                    }
                    let (model, dir): (AdaptedModel<Lora>, _) = match arm {
                        Arm::NoPf => (
                            AdaptedModel::new(BertModel::load(&files.dir, &inference)?.0),
                            files.dir.clone(),
                        ),
                        _ => {
                            let dir = pf::model_dir(&plan.out, setting, arm, pf_seed);
                            if !dir.join("config.json").is_file() {
                                eprintln!(
                                    "{}: not pre-finetuned yet (shard 0 does it); rerun later",
                                    runs::arm_folder(arm, pf_seed)
                                );
                                failed += todo.iter().map(|t| t.1.len()).sum::<usize>();
                                continue;
                            }
                            (load_pf(&dir, &inference)?, dir)
                        }
                    };
                    let backbone = feature_cache::backbone_id(&dir)?;
                    for (task, jobs) in todo {
                        match probes::run_task(
                            &plan, setting, arm, pf_seed, task, &model, &backbone, &features,
                            &tokenizer, &jobs,
                        ) {
                            Ok(records) => {
                                for r in records {
                                    done += 1;
                                    println!(
                                        "[probe {done}] {:<16} {:<16} {:>3}% seed {} {}: test {} \
                                         {:.4} (dev {:.4}, {} L-BFGS steps) {:.0}s",
                                        runs::arm_folder(arm, pf_seed),
                                        r.task,
                                        (r.fraction * 100.0).round(),
                                        r.seed,
                                        setting.name(),
                                        r.metric,
                                        r.test,
                                        r.dev_best,
                                        r.steps,
                                        r.seconds
                                    );
                                }
                            }
                            Err(e) => {
                                eprintln!(
                                    "probes of {} on {} ({}) failed: {e}",
                                    runs::arm_folder(arm, pf_seed),
                                    task.def.name,
                                    setting.name()
                                );
                                failed += jobs.len();
                            }
                        }
                    }
                    if shard == 0 {
                        report::write(&context(), &runs::read_records(&plan.out)?)?;
                    }
                }
            }
        }
        if failed > 0 {
            eprintln!("{failed} probe runs failed or waited (see above); rerun the command");
        }
    }

    // Downstream runs: seed by seed, so a partial run covers every task and arm.
    if !plan.report_only && plan.protocol != runs::Protocol::Probe {
        let (shard, shards) = plan.shard;
        let mut jobs = std::collections::VecDeque::new();
        let mut index = 0usize;
        for &seed in &plan.seeds {
            for &fraction in &plan.fractions {
                for task in &tasks {
                    for (setting, arms) in &settings {
                        for &arm in arms {
                            for &pf_seed in plan.pf_seeds_of(arm) {
                                index += 1;
                                let path = record(setting, arm, task, fraction, seed, pf_seed);
                                if (index - 1) % shards == shard && !path.is_file() {
                                    jobs.push_back((
                                        seed, pf_seed, fraction, task, setting, arm, path,
                                    ));
                                }
                            }
                        }
                    }
                }
            }
        }
        let total = jobs.len();
        let (mut trained, mut run_seconds, mut waiting) = (0usize, 0.0, false);
        let mut failed = 0usize;
        // Shard 0 pre-finetuned every model above; the other shards run what they can and
        // come back to runs whose model shard 0 has not finished yet.
        let ready = |setting: &plan::Setting, arm: Arm, pf_seed: u64| {
            arm == Arm::NoPf
                || pf::model_dir(&plan.out, setting, arm, pf_seed)
                    .join("config.json")
                    .is_file()
        };
        while let Some(job) = jobs.pop_front() {
            let (seed, pf_seed, fraction, task, setting, arm, path) = job;
            if !ready(setting, arm, pf_seed) {
                jobs.push_back((seed, pf_seed, fraction, task, setting, arm, path));
                if jobs.iter().all(|j| !ready(j.4, j.5, j.1)) {
                    if !waiting {
                        println!("waiting for shard 0's pre-finetuned models");
                        waiting = true;
                    }
                    std::thread::sleep(std::time::Duration::from_secs(20));
                }
                continue;
            }
            waiting = false;
            let model: AdaptedModel<Lora> = match arm {
                Arm::NoPf => AdaptedModel::new(BertModel::load(&files.dir, &training)?.0),
                _ => load_pf(pf::model_dir(&plan.out, setting, arm, pf_seed), &training)?,
            };
            // One failed run (a non-finite loss, say) must not end hours of others: it is
            // reported, left without a record (a rerun tries it again) and the rest go on.
            // With the rate chosen once per arm, later seeds reuse the first seed's.
            let first = plan.seeds[0];
            let chosen = (plan.lr_per_arm && seed != first)
                .then(|| runs::read_record(&record(setting, arm, task, fraction, first, pf_seed)))
                .flatten()
                .and_then(|r| r.lr);
            let first_pending = jobs.iter().any(|j| {
                j.0 == first
                    && j.1 == pf_seed
                    && j.2 == fraction
                    && std::ptr::eq(j.3, task)
                    && j.4 == setting
                    && j.5 == arm
            });
            if plan.lr_per_arm && seed != first && chosen.is_none() && first_pending {
                // The first seed's run is still queued here: after it.
                jobs.push_back((seed, pf_seed, fraction, task, setting, arm, path));
                continue;
            }
            let lrs = chosen.map_or_else(|| plan.learning_rates(), |lr| vec![lr]);
            let record = match runs::run(
                &plan, setting, arm, task, fraction, seed, pf_seed, model, &tokenizer, &lrs,
            ) {
                Ok(record) => record,
                Err(e) => {
                    eprintln!(
                        "run {} {} {}% seed {seed} ({}) failed: {e}",
                        runs::arm_folder(arm, pf_seed),
                        task.def.name,
                        (fraction * 100.0).round(),
                        setting.name()
                    );
                    failed += 1;
                    continue;
                }
            };
            runs::write_json(&path, &record)?;
            trained += 1;
            run_seconds += record.seconds;
            println!(
                "[{trained}/{total}] {:<9} {:<16} {:>3}% seed {seed} {}: test {} {:.4} (dev \
                 {:.4} at step {}) {:.0}s, about {:.0} min left",
                runs::arm_folder(arm, pf_seed),
                task.def.name,
                (fraction * 100.0).round(),
                setting.name(),
                record.metric,
                record.test,
                record.dev_best,
                record.best_step,
                record.seconds,
                (total - trained) as f64 * run_seconds / trained as f64 / 60.0
            );
            // The report follows the runs, so an interrupted run leaves one.
            if trained.is_multiple_of(10) && shard == 0 {
                report::write(&context(), &runs::read_records(&plan.out)?)?;
            }
        }
        if failed > 0 {
            eprintln!("{failed} runs failed (see above); rerun the command to try them again");
        }
    }
    if plan.shard.0 != 0 {
        println!(
            "\nshard {}/{} done in {:.0}s; the report is shard 0's (or --report-only)",
            plan.shard.0,
            plan.shard.1,
            started.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    report::write(&context(), &runs::read_records(&plan.out)?)?;
    println!(
        "\nreport: {} (wall time {:.0}s)",
        plan.report.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(out: &std::path::Path, extra: &[&str]) -> Plan {
        let mut args = vec!["--out".to_owned(), out.display().to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        cli::parse_plan(&args).unwrap()
    }

    /// Both protocols share one folder's pre-finetuning with sizes of their own; a change to
    /// the shared part or to a protocol's own sizes is refused; a report takes the folder's.
    #[test]
    fn protocols_share_the_pre_finetuning_and_pin_their_own_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        pin(&mut plan(out, &["--token-steps", "7"])).unwrap();
        // The probe protocol with its own sizes, the fine-tuning sizes left at the defaults.
        pin(&mut plan(
            out,
            &["--protocol", "probe", "--probe-train", "30"],
        ))
        .unwrap();
        assert!(out.join("plan-lora-head.json").is_file());
        assert!(out.join("plan-probe.json").is_file());
        // Again, the same: fine.
        pin(&mut plan(out, &["--token-steps", "7"])).unwrap();
        pin(&mut plan(
            out,
            &["--protocol", "probe", "--probe-train", "30"],
        ))
        .unwrap();
        // Another size of a protocol's own, or of the shared pre-finetuning: refused.
        let err = pin(&mut plan(out, &["--token-steps", "8"])).unwrap_err();
        assert!(err.to_string().contains("lora-head sizes"), "{err}");
        let err = pin(&mut plan(
            out,
            &["--protocol", "probe", "--probe-train", "31"],
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("probe sizes"), "{err}");
        let err = pin(&mut plan(
            out,
            &[
                "--protocol",
                "probe",
                "--probe-train",
                "30",
                "--pf-steps",
                "9",
            ],
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("another pre-finetuning"), "{err}");
        // A report takes each protocol's pins, whatever its flags.
        let mut report = plan(
            out,
            &[
                "--report-only",
                "--probe-train",
                "99",
                "--protocol",
                "probe",
            ],
        );
        pin(&mut report).unwrap();
        assert_eq!(report.sizes.probe_train, 30);
        let mut report = plan(out, &["--report-only", "--token-steps", "99"]);
        pin(&mut report).unwrap();
        assert_eq!(report.sizes.token_steps, 7);
    }
}
