//! Pre-finetunes all-MiniLM-L6-v2 on the real NER- and TC-family data, on the CPU.
//!
//! ```text
//! cargo run --release -p lora-bert-train --example pre_finetune -- \
//!     --variant mtpf-tpl --out runs/pf [--steps 1000] [--batch-size 32] [--k 2] [--rank 8] \
//!     [--seed 0] [--max-sentences N] [--max-pairs N] [--lr 5e-5] [--max-length 128] \
//!     [--eval-every N] [--log-every 10] [--backend flex|ndarray]
//! ```
//!
//! - **NER family** (variants `ner`, `naive`, `mtpf-tpl`): unlabelled sentences, the words of
//!   the WNUT-16 train split and of the Brown train split (their tags are not used), taken in
//!   turn (so `--max-sentences N` keeps about N/2 of each). Long sentences are windowed.
//! - **TC family** (variants `tc`, `naive`, `mtpf-tpl`): positive text pairs of
//!   `registry::pairs` (SpamAssassin subject/body, BBC headline/first paragraph, neighbouring
//!   Brown sentences; train splits only), taken in turn (`--max-pairs N`), truncated to
//!   `--max-length` tokens.
//! - **Teacher** (`--teacher`): all-mpnet-base-v2 (`mpnet`, the default; 768-wide states,
//!   its own tokenizer, words aligned by byte offsets) or the initial all-MiniLM-L6-v2 itself
//!   (`self`, self-distillation, a quick baseline), run once over the NER sentences into a
//!   teacher cache in `OUT/teacher-cache-NAME` (resumed if interrupted).
//! - **Checkpoints** go to `OUT/checkpoints`: rerun the same command to resume.
//! - **Output**: `OUT/config.json`, `OUT/model.safetensors` (the backbone), `OUT/tokenizer.json`
//!   and, for `mtpf-tpl`, the `ner` and `tc` groups under `OUT/groups/` in PEFT's layout: what
//!   `finetune --init OUT` starts from.
//!
//! The dev metric the trainer keeps the best model by is minus the mean loss over fixed
//! batches of the training data of each family (there is no held-out PF data here).

mod common;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use common::CliError;
use lora_bert_adapters::AdaptedModel;
use lora_bert_data::align::LabelAlignment;
use lora_bert_data::batch::TextEncoder;
use lora_bert_data::registry::{self, BrownTags, PairSource};
use lora_bert_data::token::encode_tagged;
use lora_bert_data::{LabelVocab, TaggedSentence, TextPair};
use lora_bert_encoder::MpnetModel;
use lora_bert_encoder::device::Backend;
use lora_bert_encoder::tokenizer::{BertTokenizer, LengthPolicy};
use lora_bert_train::teacher::CacheOptions;
use lora_bert_train::{
    EncoderTeacher, Family, NerData, NerSet, PfConfig, PfReport, TcData, TeacherCache, TrainConfig,
    Variant, pre_finetune, save_pf,
};

/// Pre-finetunes all-MiniLM-L6-v2 on the NER family (WNUT-16 + Brown train sentences,
/// word-level distillation) and/or the TC family (spam/BBC/Brown train text pairs,
/// contrastive), on the CPU.
///
/// The NER teacher is all-mpnet-base-v2 (or, with --teacher self, the initial model itself).
/// Rerun the same command to resume from DIR/checkpoints.
#[derive(Parser)]
// An option's value is the word after it, even when that word starts with `-`.
#[command(
    name = "pre_finetune",
    args_override_self = true,
    allow_hyphen_values = true
)]
struct Cli {
    /// ner, tc, naive or mtpf-tpl
    #[arg(
        long,
        value_name = "V",
        required = true,
        value_parser = PossibleValuesParser::new(["ner", "tc", "naive", "mtpf-tpl"])
            .map(|v| variant(&v))
    )]
    variant: Variant,
    /// Output directory; also holds teacher-cache-*/ and checkpoints/
    #[arg(long, value_name = "DIR", required = true)]
    out: PathBuf,
    /// Overwrite a finished result in --out
    #[arg(long)]
    force: bool,
    /// Optimizer steps
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = common::positive)]
    steps: usize,
    /// Rows per batch, both families
    #[arg(long, value_name = "B", default_value_t = 32, value_parser = common::positive)]
    batch_size: usize,
    /// mtpf-tpl: LoRA on the last K layers
    #[arg(long, value_name = "K", default_value_t = 2, value_parser = common::positive)]
    k: usize,
    /// mtpf-tpl: LoRA rank (alpha = 2R)
    #[arg(long, value_name = "R", default_value_t = 8, value_parser = common::positive)]
    rank: usize,
    /// Seed of batches, sampler, dropout and new weights
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
    /// At most N NER sentences (default: all)
    #[arg(long, value_name = "N", value_parser = common::positive)]
    max_sentences: Option<usize>,
    /// At most N text pairs (default: all)
    #[arg(long, value_name = "N", value_parser = common::positive)]
    max_pairs: Option<usize>,
    /// Peak learning rate (10% linear warm-up, linear decay)
    #[arg(long, value_name = "LR", default_value = "5e-5")]
    lr: f64,
    /// Tokens per row, specials included
    #[arg(long, value_name = "L", default_value_t = 128)]
    max_length: usize,
    /// mpnet (all-mpnet-base-v2, a 440 MB download) or self (the initial model)
    #[arg(
        long,
        value_name = "T",
        default_value = "mpnet",
        value_parser = PossibleValuesParser::new(["mpnet", "self"]).map(|t| teacher(&t))
    )]
    teacher: TeacherChoice,
    /// Dev metric every N steps (default steps/4; always at the end)
    #[arg(long, value_name = "N", value_parser = common::positive)]
    eval_every: Option<usize>,
    /// Progress line every N steps (0: none)
    #[arg(long, value_name = "N", default_value_t = 10)]
    log_every: usize,
    /// flex or ndarray (default: flex, or ndarray when flex is not compiled in)
    #[arg(long, value_name = "NAME")]
    backend: Option<Backend>,
}

struct Args {
    variant: Variant,
    out: PathBuf,
    force: bool,
    steps: usize,
    batch_size: usize,
    k: usize,
    rank: usize,
    seed: u64,
    max_sentences: Option<usize>,
    max_pairs: Option<usize>,
    lr: f64,
    max_length: usize,
    teacher: TeacherChoice,
    eval_every: Option<usize>,
    log_every: usize,
    backend: Backend,
}

/// The NER family's teacher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TeacherChoice {
    /// all-mpnet-base-v2.
    Mpnet,
    /// The initial student (a baseline without a stronger teacher).
    SelfDistillation,
}

impl TeacherChoice {
    fn name(self) -> &'static str {
        match self {
            TeacherChoice::Mpnet => "mpnet",
            TeacherChoice::SelfDistillation => "self",
        }
    }
}

fn variant(name: &str) -> Variant {
    match name {
        "ner" => Variant::Ner,
        "tc" => Variant::Tc,
        "naive" => Variant::Naive,
        _ => Variant::MtpfTpl,
    }
}

fn teacher(name: &str) -> TeacherChoice {
    match name {
        "self" => TeacherChoice::SelfDistillation,
        _ => TeacherChoice::Mpnet,
    }
}

impl Cli {
    /// The flags, checked beyond what clap checks; `--out` is made (see
    /// [`common::output_dir`]).
    fn into_args(self) -> Result<Args, CliError> {
        let args = Args {
            variant: self.variant,
            out: self.out,
            force: self.force,
            steps: self.steps,
            batch_size: self.batch_size,
            k: self.k,
            rank: self.rank,
            seed: self.seed,
            max_sentences: self.max_sentences,
            max_pairs: self.max_pairs,
            lr: self.lr,
            max_length: self.max_length,
            teacher: self.teacher,
            eval_every: self.eval_every,
            log_every: self.log_every,
            backend: self.backend.map_or_else(common::default_backend, Ok)?,
        };
        common::output_dir(&args.out, &["config.json", "model.safetensors"], args.force)?;
        if !(args.lr.is_finite() && args.lr > 0.0) {
            return Err(CliError::Usage(format!(
                "--lr {}: must be finite and > 0",
                args.lr
            )));
        }
        Ok(args)
    }
}

/// Unlabelled NER-family sentences: WNUT-16 train and Brown train, in turn, tagged `O`. Words
/// that the tokenizer turns into nothing leave a sentence with no token: such sentences are
/// dropped (the student could not see them).
fn ner_sentences(
    cache: &lora_bert_assets::AssetCache,
    tokenizer: &BertTokenizer,
    max: Option<usize>,
) -> Result<Vec<TaggedSentence>, CliError> {
    let untag = |sentences: Vec<TaggedSentence>| -> Vec<TaggedSentence> {
        sentences
            .into_iter()
            .filter(|s| !s.is_empty())
            .map(|s| TaggedSentence {
                tags: vec!["O".to_owned(); s.tokens.len()],
                tokens: s.tokens,
            })
            .collect()
    };
    let wnut = untag(registry::wnut16(cache)?.train);
    let brown = untag(registry::brown_pos(cache, BrownTags::Raw)?.train);
    println!(
        "NER family: {} WNUT-16 + {} Brown train sentences available",
        wnut.len(),
        brown.len()
    );
    let mut sentences = common::interleave(vec![wnut, brown], max);
    let before = sentences.len();
    sentences.retain(|s| {
        let (text, _) = s.text_and_spans();
        tokenizer
            .encode(&text)
            .is_ok_and(|e| e.iter().any(|e| e.ids.len() > 2))
    });
    if sentences.len() < before {
        println!(
            "  dropped {} sentences that give no token",
            before - sentences.len()
        );
    }
    Ok(sentences)
}

/// TC-family pairs of every source, in turn.
fn tc_pairs(
    cache: &lora_bert_assets::AssetCache,
    max: Option<usize>,
) -> Result<Vec<TextPair>, CliError> {
    let mut sources = Vec::new();
    for source in PairSource::ALL {
        let pairs: Vec<TextPair> = registry::pairs(source, cache)?
            .into_iter()
            .filter(|p| !p.anchor.trim().is_empty() && !p.positive.trim().is_empty())
            .collect();
        println!(
            "TC family: {} {} pairs available",
            pairs.len(),
            source.name()
        );
        sources.push(pairs);
    }
    Ok(common::interleave(sources, max))
}

fn summary(report: &PfReport, wall: f64) {
    let fit = &report.fit;
    let start = fit.resumed_from.unwrap_or(0);
    println!("\n== pre-finetuning summary ==");
    if let Some(step) = fit.resumed_from {
        println!("resumed from step {step}");
    }
    println!(
        "steps: {} in all, {} in this run{}",
        fit.steps,
        fit.steps - start,
        if fit.stopped_early {
            " (stopped early)"
        } else {
            ""
        }
    );
    let losses = fit.losses.get(start..).unwrap_or(&[]);
    println!("family  steps  first-loss  last-loss  mean-loss");
    for family in [Family::Ner, Family::Tc] {
        let mine: Vec<f64> = report
            .families
            .iter()
            .zip(losses)
            .filter(|(f, _)| **f == family)
            .map(|(_, &l)| l)
            .collect();
        if mine.is_empty() {
            continue;
        }
        let mean = mine.iter().sum::<f64>() / mine.len() as f64;
        println!(
            "{:<6}  {:>5}  {:>10.4}  {:>9.4}  {:>9.4}",
            format!("{family:?}").to_lowercase(),
            report.steps_of(family),
            mine[0],
            mine[mine.len() - 1],
            mean
        );
    }
    for e in &fit.history {
        println!(
            "eval at step {:>5}: dev metric (minus mean dev loss) {:.4}, train loss {:.4}",
            e.step, e.metric, e.train_loss
        );
    }
    if let Some((metric, step)) = fit.best {
        println!("best dev metric {metric:.4} at step {step} (the model saved)");
    }
    println!("wall time {wall:.1}s");
}

fn run(args: Args) -> Result<(), CliError> {
    let start = Instant::now();
    let (cpu, training) = common::devices(args.backend)?;
    let (cache, files) = common::minilm()?;
    let tokenizer = common::tokenizer(&files, args.max_length)?;
    println!(
        "pre-finetuning all-MiniLM-L6-v2 ({}), variant {:?}, backend {}",
        files.dir.display(),
        args.variant,
        args.backend.name()
    );
    let families = args.variant.families();
    let needs_ner = families.contains(&Family::Ner);
    let needs_tc = families.contains(&Family::Tc);

    // NER family: sentences, examples, teacher cache.
    let sentences = if needs_ner {
        ner_sentences(&cache, &tokenizer, args.max_sentences)?
    } else {
        Vec::new()
    };
    let o_vocab = LabelVocab::new(vec!["O".to_owned()])?;
    let examples = if needs_ner {
        encode_tagged(
            &tokenizer,
            &sentences,
            &o_vocab,
            LabelAlignment::FirstSubword,
        )?
    } else {
        Vec::new()
    };
    let teacher_cache = if needs_ner {
        println!(
            "NER family: {} sentences, {} windows of at most {} tokens",
            sentences.len(),
            examples.len(),
            args.max_length
        );
        Some(build_teacher(
            args.teacher,
            &cache,
            &files.dir,
            &tokenizer,
            &cpu,
            &sentences,
            &args.out,
        )?)
    } else {
        None
    };

    // TC family.
    let pairs = if needs_tc {
        let pairs = tc_pairs(&cache, args.max_pairs)?;
        println!(
            "TC family: {} pairs, truncated to {} tokens",
            pairs.len(),
            args.max_length
        );
        Some(TextEncoder::new(&tokenizer).encode_pairs(&pairs)?)
    } else {
        None
    };

    let mut train = TrainConfig::new(args.steps);
    train.learning_rate = args.lr;
    train.warmup_steps = args.steps / 10;
    train.eval_every = Some(args.eval_every.unwrap_or((args.steps / 4).max(1)));
    train.seed = args.seed;
    train.log_every = args.log_every;
    let mut config = PfConfig::new(train);
    config.batch_size = args.batch_size;
    config.k = args.k;
    config.rank = args.rank;
    config.alpha = 2.0 * args.rank as f64;
    config.pad_id = tokenizer.pad_id();
    config.checkpoints = Some(args.out.join("checkpoints"));

    let ner = teacher_cache.as_ref().map(|teacher| NerData {
        train: NerSet {
            sentences: &sentences,
            examples: &examples,
        },
        dev: None,
        teacher,
    });
    let tc = pairs.as_ref().map(|train| TcData { train, dev: None });
    let model = AdaptedModel::new(common::load_backbone(&files.dir, &training)?);
    println!(
        "training {} steps, batch {}, lr {:.1e}{}",
        args.steps,
        args.batch_size,
        args.lr,
        if args.variant.uses_groups() {
            format!(
                ", groups `ner` and `tc`: LoRA r={} alpha={} on query/value of the last {} layers",
                args.rank, config.alpha, args.k
            )
        } else {
            String::new()
        }
    );
    let (pf, report) = pre_finetune(args.variant, model, ner, tc, &config)?;
    save_pf(&pf, &args.out)?;
    let tokenizer_out = args.out.join("tokenizer.json");
    std::fs::copy(&files.tokenizer, &tokenizer_out).map_err(|source| CliError::Io {
        path: tokenizer_out,
        source,
    })?;
    summary(&report, common::secs(start));
    println!("saved to {}", args.out.display());
    Ok(())
}

/// The teacher, run once over `sentences` into `out/teacher-cache-NAME`: all-mpnet-base-v2
/// with its own tokenizer (windows of 256 tokens), or the initial student itself.
fn build_teacher(
    choice: TeacherChoice,
    cache: &lora_bert_assets::AssetCache,
    student_dir: &Path,
    student_tokenizer: &BertTokenizer,
    cpu: &lora_bert_encoder::Device,
    sentences: &[TaggedSentence],
    out: &Path,
) -> Result<TeacherCache, CliError> {
    let corpus = lora_bert_train::teacher::words_of(sentences);
    let dir = out.join(format!("teacher-cache-{}", choice.name()));
    match choice {
        TeacherChoice::Mpnet => {
            let files = lora_bert_assets::all_mpnet_base_v2(cache)?;
            println!(
                "TEACHER: all-mpnet-base-v2 ({}), last hidden state, mean over pieces",
                files.dir.display()
            );
            let (model, _) =
                MpnetModel::load(&files.dir, cpu).map_err(|source| CliError::Model {
                    path: files.dir.clone(),
                    source,
                })?;
            let tokenizer = BertTokenizer::from_file(&files.tokenizer)?
                .with_max_length(256)
                .with_length_policy(LengthPolicy::Window { stride: 64 });
            let teacher = EncoderTeacher::new(model, tokenizer, cpu)?
                .with_description("all-mpnet-base-v2, last layer, mean");
            cache_teacher(&teacher, &corpus, &dir)
        }
        TeacherChoice::SelfDistillation => {
            println!(
                "TEACHER: self-distillation: the initial all-MiniLM-L6-v2 teaches itself (last \
                 hidden state, mean over pieces)"
            );
            let teacher = EncoderTeacher::new(
                common::load_backbone(student_dir, cpu)?,
                student_tokenizer.clone(),
                cpu,
            )?
            .with_description("all-MiniLM-L6-v2 (self-distillation), last layer, mean");
            cache_teacher(&teacher, &corpus, &dir)
        }
    }
}

/// Runs `teacher` over `corpus` into the cache `dir` (resumed if interrupted), with a bar.
fn cache_teacher(
    teacher: &dyn lora_bert_train::Teacher,
    corpus: &[&[String]],
    dir: &Path,
) -> Result<TeacherCache, CliError> {
    let started = Instant::now();
    let options = CacheOptions {
        shard_size: 256,
        ..CacheOptions::default()
    };
    let bar = lora_bert_train::progress::bar(corpus.len() as u64, "teacher", "sentences");
    let cache = TeacherCache::build(teacher, corpus, dir, &options, |p| {
        bar.set_position(p.sentences_done as u64);
    })?;
    bar.finish_and_clear();
    println!(
        "teacher cache ready in {:.1}s: {} sentences, {} words, {}",
        common::secs(started),
        cache.num_sentences(),
        cache.num_words(),
        dir.display()
    );
    Ok(cache)
}

fn main() -> ExitCode {
    common::exit::<Cli>(|| run(Cli::parse().into_args()?))
}
