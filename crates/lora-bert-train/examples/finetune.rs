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

use clap::Parser;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use common::CliError;
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

/// Fine-tunes all-MiniLM-L6-v2 (or a pre-finetuned model, --init) on a registry dataset on the
/// CPU, selects the best step on dev, reports TEST metrics and saves the app into DIR.
#[derive(Parser)]
// An option's value is the word after it, even when that word starts with `-`.
#[command(
    name = "finetune",
    args_override_self = true,
    allow_hyphen_values = true
)]
struct Cli {
    /// A registry dataset: wnut16, brown-pos, bbc-news, spam-assassin, ...
    #[arg(long, value_name = "NAME", required = true)]
    task: DatasetId,
    /// Where the app is saved
    #[arg(long, value_name = "DIR", required = true)]
    out: PathBuf,
    /// Overwrite a finished result in --out
    #[arg(long)]
    force: bool,
    /// Stratified share of the train split, in (0, 1]
    #[arg(long, value_name = "F", default_value = "1")]
    fraction: f64,
    /// Start from a pre_finetune output (backbone + the ner/tc group if present)
    #[arg(long, value_name = "DIR")]
    init: Option<PathBuf>,
    /// head (head only), lora (the task's LoRA group and the head) or full (everything)
    #[arg(
        long,
        value_name = "M",
        default_value = "lora",
        value_parser = PossibleValuesParser::new(["head", "lora", "full"]).map(|m| mode(&m))
    )]
    mode: FineTuneMode,
    /// Optimizer steps
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = common::positive)]
    steps: usize,
    /// Examples per batch
    #[arg(long, value_name = "B", default_value_t = 16, value_parser = common::positive)]
    batch_size: usize,
    /// Seed of the subset, batches, dropout and new weights
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
    /// Peak learning rate (default: head 1e-3, lora 5e-4, full 5e-5)
    #[arg(long, value_name = "LR")]
    lr: Option<f64>,
    /// At most N training examples (after --fraction)
    #[arg(long, value_name = "N", value_parser = common::positive)]
    max_train: Option<usize>,
    /// At most N dev and N test examples
    #[arg(long, value_name = "N", value_parser = common::positive)]
    max_eval: Option<usize>,
    /// Text tasks' dev metric: accuracy or macro-f1
    #[arg(
        long,
        value_name = "M",
        default_value = "accuracy",
        value_parser = PossibleValuesParser::new(["accuracy", "macro-f1"]).map(|m| metric(&m))
    )]
    metric: TextMetric,
    /// Tokens per row, specials included (longer sentences are windowed, longer texts
    /// truncated)
    #[arg(long, value_name = "L", default_value_t = 128)]
    max_length: usize,
    /// Dev evaluation every N steps (default steps/4; always at the end)
    #[arg(long, value_name = "N", value_parser = common::positive)]
    eval_every: Option<usize>,
    /// Progress line every N steps (0: none)
    #[arg(long, value_name = "N", default_value_t = 10)]
    log_every: usize,
    /// Keep checkpoints there and resume from them
    #[arg(long, value_name = "DIR")]
    checkpoints: Option<PathBuf>,
    /// flex or ndarray (default: flex, or ndarray when flex is not compiled in)
    #[arg(long, value_name = "NAME")]
    backend: Option<Backend>,
}

fn mode(name: &str) -> FineTuneMode {
    match name {
        "head" => FineTuneMode::HeadOnly,
        "full" => FineTuneMode::Full,
        _ => FineTuneMode::LoraHead,
    }
}

fn metric(name: &str) -> TextMetric {
    match name {
        "macro-f1" => TextMetric::MacroF1,
        _ => TextMetric::Accuracy,
    }
}

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

impl Cli {
    /// The flags, checked beyond what clap checks; `--out` is made (see
    /// [`common::output_dir`]).
    fn into_args(self) -> Result<Args, CliError> {
        let args = Args {
            task: self.task,
            out: self.out,
            force: self.force,
            fraction: self.fraction,
            init: self.init,
            mode: self.mode,
            steps: self.steps,
            batch_size: self.batch_size,
            seed: self.seed,
            lr: self.lr,
            max_train: self.max_train,
            max_eval: self.max_eval,
            metric: self.metric,
            max_length: self.max_length,
            eval_every: self.eval_every,
            log_every: self.log_every,
            checkpoints: self.checkpoints,
            backend: self.backend.map_or_else(common::default_backend, Ok)?,
        };
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
    common::exit::<Cli>(|| run(Cli::parse().into_args()?))
}
