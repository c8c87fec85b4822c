//! Fine-tunes all-MiniLM-L6-v2 (or a pre-finetuned model) on one registry dataset, on the CPU,
//! and reports its test metrics.
//!
//! ```text
//! cargo run --release -p lora-bert-train --example finetune -- \
//!     --task wnut16 --out runs/wnut16 [--fraction 0.1] [--init runs/pf] [--mode head|lora|full] \
//!     [--steps 1000] [--batch-size 16] [--seed 0] [--lr LR] [--max-train N] [--max-eval N] \
//!     [--metric accuracy|macro-f1] [--max-length 128] [--eval-every N] [--log-every 10] \
//!     [--checkpoints DIR] [--backend flex|ndarray]
//! ```
//!
//! - `--task` is any dataset of `lora_bert_data::registry` (`wnut16`, `brown-pos`, `bbc-news`,
//!   `spam-assassin`, ...). Training uses its train split (a stratified `--fraction` of it,
//!   then at most `--max-train` examples), model selection its dev split, and the reported
//!   metrics its **test** split (each at most `--max-eval` examples).
//! - **Metrics.** NER (`wnut16`): entity micro-F1, seqeval's default mode, on word-level tags
//!   (dev metric and test), plus per-type scores and the word accuracy. POS (`brown-pos`):
//!   entity F1 means nothing for POS tags, so the dev metric and the test score are the
//!   **word accuracy** (`NerReport::accuracy`: the share of words whose predicted tag, read
//!   from their first piece, is the gold tag). Text datasets: accuracy (or macro-F1 with
//!   `--metric macro-f1`) on dev; accuracy, macro-F1 and per-class scores on test.
//! - **Subsets.** Text datasets: `lora_bert_data::split::stratified_subset` of the train
//!   labels. Token datasets: a seeded random subset of the train sentences (the same function
//!   with one label for all).
//! - `--init DIR`: a directory written by `pre_finetune`. Its backbone is loaded; if it has the
//!   task's family group (`ner` for token tasks, `tc` for text tasks, i.e. a `mtpf-tpl` run),
//!   the task starts from a copy of it (`AppSetup::with_init_group`); otherwise from the
//!   backbone alone.
//! - `--mode`: `head` (head only), `lora` (the task's LoRA group and the head; the default),
//!   `full` (everything). Default learning rates: 1e-3, 5e-4 and 5e-5 (10% warm-up, linear
//!   decay).
//! - The app is saved into `--out` (`TokenClassifier::save` / `TextClassifier::save`).

mod common;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use common::{CliError, Flags};
use lora_bert_adapters::{AdaptedModel, Lora};
use lora_bert_data::align::LabelAlignment;
use lora_bert_data::batch::TextEncoder;
use lora_bert_data::registry::{self, Dataset, DatasetId};
use lora_bert_data::split::{Splits, stratified_subset};
use lora_bert_data::token::encode_tagged;
use lora_bert_data::{LabelVocab, LabeledText, TaggedSentence};
use lora_bert_encoder::device::Backend;
use lora_bert_metrics::{ClassificationReport, NerReport};
use lora_bert_train::finetune::{TokenEvalOptions, evaluate_texts, evaluate_tokens};
use lora_bert_train::pretrain::{NER_GROUP, TC_GROUP};
use lora_bert_train::{
    AppSetup, FineTuneConfig, FineTuneMode, FitReport, TextMetric, TokenMetric, TrainConfig,
    finetune_texts, finetune_tokens, load_pf,
};

const USAGE: &str = "\
usage: finetune --task NAME --out DIR [options]

Fine-tunes all-MiniLM-L6-v2 (or a pre-finetuned model, --init) on a registry dataset on the CPU,
selects the best step on dev, reports TEST metrics and saves the app into DIR.

options:
  --task NAME          a registry dataset: wnut16, brown-pos, bbc-news, spam-assassin, ... (required)
  --out DIR            where the app is saved (required)
  --force              overwrite a finished result in --out
  --fraction F         stratified share of the train split, in (0, 1] (default 1)
  --init DIR           start from a pre_finetune output (backbone + the ner/tc group if present)
  --mode M             head | lora | full (default lora)
  --steps N            optimizer steps (default 1000)
  --batch-size B       examples per batch (default 16)
  --seed S             seed of the subset, batches, dropout and new weights (default 0)
  --lr LR              peak learning rate (default: head 1e-3, lora 5e-4, full 5e-5)
  --max-train N        at most N training examples (after --fraction)
  --max-eval N         at most N dev and N test examples
  --metric M           text tasks' dev metric: accuracy | macro-f1 (default accuracy)
  --max-length L       tokens per row, specials included (default 128; longer sentences are
                       windowed, longer texts truncated)
  --eval-every N       dev evaluation every N steps (default steps/4; always at the end)
  --log-every N        progress line every N steps (default 10; 0: none)
  --checkpoints DIR    keep checkpoints there and resume from them
  --backend NAME       flex | ndarray (default flex)
  -h, --help           this text";

struct Args {
    task: DatasetId,
    out: PathBuf,
    force: bool,
    fraction: f64,
    init: Option<PathBuf>,
    mode: FineTuneMode,
    steps: usize,
    batch_size: usize,
    seed: u64,
    lr: Option<f64>,
    max_train: Option<usize>,
    max_eval: Option<usize>,
    metric: TextMetric,
    max_length: usize,
    eval_every: Option<usize>,
    log_every: usize,
    checkpoints: Option<PathBuf>,
    backend: Backend,
}

fn parse_args() -> Result<Args, CliError> {
    let mut flags = Flags::from_env()?;
    let mut task = None;
    let mut out = None;
    let mut args = Args {
        task: DatasetId::Wnut16,
        out: PathBuf::new(),
        force: false,
        fraction: 1.0,
        init: None,
        mode: FineTuneMode::LoraHead,
        steps: 1000,
        batch_size: 16,
        seed: 0,
        lr: None,
        max_train: None,
        max_eval: None,
        metric: TextMetric::Accuracy,
        max_length: 128,
        eval_every: None,
        log_every: 10,
        checkpoints: None,
        backend: common::default_backend()?,
    };
    while let Some(flag) = flags.next_flag() {
        match flag.as_str() {
            "--task" => task = Some(flags.value::<DatasetId>(&flag)?),
            "--out" => out = Some(flags.value::<PathBuf>(&flag)?),
            "--force" => args.force = true,
            "--fraction" => args.fraction = flags.value(&flag)?,
            "--init" => args.init = Some(flags.value(&flag)?),
            "--mode" => {
                args.mode = match flags.value::<String>(&flag)?.as_str() {
                    "head" => FineTuneMode::HeadOnly,
                    "lora" => FineTuneMode::LoraHead,
                    "full" => FineTuneMode::Full,
                    other => {
                        return Err(CliError::Usage(format!(
                            "--mode `{other}`: expected head, lora or full"
                        )));
                    }
                }
            }
            "--steps" => args.steps = common::positive(flags.value(&flag)?, &flag)?,
            "--batch-size" => args.batch_size = common::positive(flags.value(&flag)?, &flag)?,
            "--seed" => args.seed = flags.value(&flag)?,
            "--lr" => args.lr = Some(flags.value(&flag)?),
            "--max-train" => args.max_train = Some(common::positive(flags.value(&flag)?, &flag)?),
            "--max-eval" => args.max_eval = Some(common::positive(flags.value(&flag)?, &flag)?),
            "--metric" => {
                args.metric = match flags.value::<String>(&flag)?.as_str() {
                    "accuracy" => TextMetric::Accuracy,
                    "macro-f1" => TextMetric::MacroF1,
                    other => {
                        return Err(CliError::Usage(format!(
                            "--metric `{other}`: expected accuracy or macro-f1"
                        )));
                    }
                }
            }
            "--max-length" => args.max_length = flags.value(&flag)?,
            "--eval-every" => args.eval_every = Some(common::positive(flags.value(&flag)?, &flag)?),
            "--log-every" => args.log_every = flags.value(&flag)?,
            "--checkpoints" => args.checkpoints = Some(flags.value(&flag)?),
            "--backend" => args.backend = common::backend(&flags.value::<String>(&flag)?)?,
            "-h" | "--help" => return Err(CliError::Help),
            other => return Err(common::unknown(other)),
        }
    }
    args.task = common::required(task, "--task")?;
    args.out = common::required(out, "--out")?;
    common::output_dir(
        &args.out,
        &[lora_bert_train::finetune::APP_FILE],
        args.force,
    )?;
    if !(args.fraction > 0.0 && args.fraction <= 1.0) {
        return Err(CliError::Usage(format!(
            "--fraction {}: must be in (0, 1]",
            args.fraction
        )));
    }
    if let Some(lr) = args.lr
        && !(lr.is_finite() && lr > 0.0)
    {
        return Err(CliError::Usage(format!(
            "--lr {lr}: must be finite and > 0"
        )));
    }
    Ok(args)
}

/// The train examples kept: a stratified `fraction` of `labels`' items (sorted indices), then
/// at most `max` of them.
fn subset<L: std::hash::Hash + Eq>(
    labels: &[L],
    fraction: f64,
    seed: u64,
    max: Option<usize>,
) -> Result<Vec<usize>, CliError> {
    let mut keep = if fraction < 1.0 {
        stratified_subset(labels, fraction, seed)?
    } else {
        (0..labels.len()).collect()
    };
    if let Some(max) = max {
        keep.truncate(max);
    }
    Ok(keep)
}

fn cap<T: Clone>(items: &[T], max: Option<usize>) -> Vec<T> {
    items[..max.unwrap_or(items.len()).min(items.len())].to_vec()
}

fn pick<T: Clone>(items: &[T], indices: &[usize]) -> Vec<T> {
    indices.iter().map(|&i| items[i].clone()).collect()
}

fn run(args: Args) -> Result<(), CliError> {
    let start = Instant::now();
    let (_cpu, training) = common::devices(args.backend)?;
    let (cache, files) = common::minilm()?;
    let tokenizer = common::tokenizer(&files, args.max_length)?;
    let info = args.task.info();
    let dataset = registry::load(args.task, &cache)?;
    let [n_train, n_dev, n_test] = dataset.sizes();
    println!(
        "{} ({}): {n_train} train, {n_dev} dev, {n_test} test",
        info.name, info.task
    );

    let family_group = match dataset {
        Dataset::Tokens(_) => NER_GROUP,
        Dataset::Texts(_) => TC_GROUP,
    };
    let mut setup = AppSetup::new(info.name, args.mode);
    let model: AdaptedModel<Lora> = match &args.init {
        Some(dir) => {
            let model = load_pf(dir, &training)?;
            if model.group_names().any(|g| g == family_group) {
                println!(
                    "starting from {}: its backbone and a copy of its `{family_group}` group",
                    dir.display()
                );
                setup = setup.with_init_group(family_group);
            } else {
                println!(
                    "starting from {}: its backbone (it has no `{family_group}` group)",
                    dir.display()
                );
            }
            model
        }
        None => {
            println!("starting from all-MiniLM-L6-v2 ({})", files.dir.display());
            AdaptedModel::new(common::load_backbone(&files.dir, &training)?)
        }
    };

    let lr = args.lr.unwrap_or(match args.mode {
        FineTuneMode::HeadOnly => 1e-3,
        FineTuneMode::LoraHead => 5e-4,
        FineTuneMode::Full => 5e-5,
    });
    let mut train = TrainConfig::new(args.steps);
    train.learning_rate = lr;
    train.warmup_steps = args.steps / 10;
    train.eval_every = Some(args.eval_every.unwrap_or((args.steps / 4).max(1)));
    train.seed = args.seed;
    train.log_every = args.log_every;
    let mut config = FineTuneConfig::new(setup, train);
    config.batch_size = args.batch_size;
    config.seed = args.seed;
    config.text_metric = args.metric;
    config.checkpoints = args.checkpoints.clone();
    println!(
        "mode {:?}, {} steps, batch {}, lr {lr:.1e}",
        args.mode, args.steps, args.batch_size
    );

    match dataset {
        Dataset::Tokens(splits) => run_tokens(&args, model, splits, &config, &tokenizer)?,
        Dataset::Texts(splits) => run_texts(&args, model, splits, &config, &tokenizer)?,
    }
    println!("wall time {:.1}s", common::secs(start));
    println!("app saved to {}", args.out.display());
    Ok(())
}

fn run_tokens(
    args: &Args,
    model: AdaptedModel<Lora>,
    splits: Splits<TaggedSentence>,
    config: &FineTuneConfig,
    tokenizer: &lora_bert_encoder::BertTokenizer,
) -> Result<(), CliError> {
    let vocab = LabelVocab::from_tags(splits.iter().flat_map(|s| s.tags.iter()))?;
    let one_label = vec![(); splits.train.len()];
    let keep = subset(&one_label, args.fraction, args.seed, args.max_train)?;
    let train = pick(&splits.train, &keep);
    let dev = cap(&splits.dev, args.max_eval);
    let test = cap(&splits.test, args.max_eval);
    let encode =
        |s: &[TaggedSentence]| encode_tagged(tokenizer, s, &vocab, LabelAlignment::FirstSubword);
    let (train_ex, dev_ex, test_ex) = (encode(&train)?, encode(&dev)?, encode(&test)?);
    println!(
        "{} labels; sentences (windows): train {} ({}), dev {} ({}), test {} ({})",
        vocab.len(),
        train.len(),
        train_ex.len(),
        dev.len(),
        dev_ex.len(),
        test.len(),
        test_ex.len()
    );
    let pad_id = tokenizer.pad_id();
    let pos = args.task == DatasetId::BrownPos;
    let mut config = config.clone();
    if pos {
        println!("dev metric: word accuracy (POS tags)");
        config.token_metric = TokenMetric::Accuracy;
    } else {
        println!("dev metric: entity micro-F1 (seqeval default mode)");
    }
    let (classifier, fit) =
        finetune_tokens(model, &train_ex, (&dev_ex, &dev), &vocab, &config, pad_id)?;
    print_fit(&fit, if pos { "word accuracy" } else { "entity F1" });
    let options = TokenEvalOptions::new(pad_id);
    let report = evaluate_tokens(&classifier, &test_ex, &test, &vocab, &options)?;
    if pos {
        println!(
            "\nTEST ({} sentences): word accuracy {:.4}",
            test.len(),
            report.accuracy
        );
    } else {
        print_ner(&report, test.len());
    }
    classifier.save(&args.out, &vocab)?;
    Ok(())
}

fn run_texts(
    args: &Args,
    model: AdaptedModel<Lora>,
    splits: Splits<LabeledText>,
    config: &FineTuneConfig,
    tokenizer: &lora_bert_encoder::BertTokenizer,
) -> Result<(), CliError> {
    let vocab = LabelVocab::from_labels(splits.iter().map(|t| t.label.as_str()))?;
    let labels: Vec<&str> = splits.train.iter().map(|t| t.label.as_str()).collect();
    let keep = subset(&labels, args.fraction, args.seed, args.max_train)?;
    let train = pick(&splits.train, &keep);
    let dev = cap(&splits.dev, args.max_eval);
    let test = cap(&splits.test, args.max_eval);
    let encoder = TextEncoder::new(tokenizer);
    let encode = |t: &[LabeledText]| encoder.encode_texts(t, |l| vocab.id(l));
    let (train_enc, dev_enc, test_enc) = (encode(&train)?, encode(&dev)?, encode(&test)?);
    println!(
        "{} labels; texts (truncated to {} tokens): train {}, dev {}, test {}",
        vocab.len(),
        args.max_length,
        train.len(),
        dev.len(),
        test.len()
    );
    let metric = match args.metric {
        TextMetric::Accuracy => "accuracy",
        TextMetric::MacroF1 => "macro-F1",
    };
    println!("dev metric: {metric}");
    let (classifier, fit) = finetune_texts(model, &train_enc, &dev_enc, &vocab, config)?;
    print_fit(&fit, metric);
    let report = evaluate_texts(&classifier, &test_enc, &vocab, config.eval_batch_size)?;
    print_classification(&report, test.len());
    classifier.save(&args.out, &vocab)?;
    Ok(())
}

fn print_fit(fit: &FitReport, metric: &str) {
    println!("\n== training ==");
    if let Some(step) = fit.resumed_from {
        println!("resumed from step {step}");
    }
    let first = fit.losses.first().copied().unwrap_or(f64::NAN);
    let last = fit.losses.last().copied().unwrap_or(f64::NAN);
    println!(
        "steps {}{}, loss {first:.4} (first) -> {last:.4} (last)",
        fit.steps,
        if fit.stopped_early {
            " (stopped early)"
        } else {
            ""
        }
    );
    for e in &fit.history {
        println!(
            "dev {metric} at step {:>5}: {:.4} (train loss {:.4})",
            e.step, e.metric, e.train_loss
        );
    }
    if let Some((best, step)) = fit.best {
        println!("best dev {metric} {best:.4} at step {step} (the model kept)");
    }
}

fn print_ner(report: &NerReport, sentences: usize) {
    println!("\nTEST ({sentences} sentences), entity scores, seqeval default mode:");
    println!(
        "{:<16} {:>9} {:>9} {:>9} {:>8}",
        "type", "precision", "recall", "f1", "support"
    );
    for (kind, s) in &report.per_type {
        println!(
            "{kind:<16} {:>9.4} {:>9.4} {:>9.4} {:>8}",
            s.precision, s.recall, s.f1, s.support
        );
    }
    for (name, s) in [
        ("micro avg", &report.averages.micro_avg),
        ("macro avg", &report.averages.macro_avg),
    ] {
        println!(
            "{name:<16} {:>9.4} {:>9.4} {:>9.4} {:>8}",
            s.precision, s.recall, s.f1, s.support
        );
    }
    println!(
        "entities found {}, correct {}; word accuracy {:.4}",
        report.found, report.correct, report.accuracy
    );
}

fn print_classification(report: &ClassificationReport, texts: usize) {
    println!("\nTEST ({texts} texts):");
    println!(
        "{:<16} {:>9} {:>9} {:>9} {:>8}",
        "class", "precision", "recall", "f1", "support"
    );
    for (class, s) in &report.per_class {
        println!(
            "{class:<16} {:>9.4} {:>9.4} {:>9.4} {:>8}",
            s.precision, s.recall, s.f1, s.support
        );
    }
    println!(
        "accuracy {:.4}, macro-F1 {:.4}",
        report.accuracy,
        report.macro_f1()
    );
}

fn main() -> ExitCode {
    common::exit(USAGE, || run(parse_args()?))
}
