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

use common::{CliError, Flags};
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

const USAGE: &str = "\
usage: pre_finetune --variant ner|tc|naive|mtpf-tpl --out DIR [options]

Pre-finetunes all-MiniLM-L6-v2 on the NER family (WNUT-16 + Brown train sentences, word-level
distillation) and/or the TC family (spam/BBC/Brown train text pairs, contrastive), on the CPU.
The NER teacher is all-mpnet-base-v2 (or, with --teacher self, the initial model itself).
Rerun the same command to resume from DIR/checkpoints.

options:
  --variant V          ner | tc | naive | mtpf-tpl (required)
  --out DIR            output directory (required); also holds teacher-cache-*/ and checkpoints/
  --force              overwrite a finished result in --out
  --steps N            optimizer steps (default 1000)
  --batch-size B       rows per batch, both families (default 32)
  --k K                mtpf-tpl: LoRA on the last K layers (default 2)
  --rank R             mtpf-tpl: LoRA rank (default 8; alpha = 2R)
  --seed S             seed of batches, sampler, dropout and new weights (default 0)
  --max-sentences N    at most N NER sentences (default: all)
  --max-pairs N        at most N text pairs (default: all)
  --lr LR              peak learning rate (default 5e-5; 10% linear warm-up, linear decay)
  --max-length L       tokens per row, specials included (default 128)
  --teacher T          mpnet | self (default mpnet: all-mpnet-base-v2, a 440 MB download)
  --eval-every N       dev metric every N steps (default steps/4; always at the end)
  --log-every N        progress line every N steps (default 10; 0: none)
  --backend NAME       flex | ndarray (default flex)
  -h, --help           this text";

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

fn parse_variant(name: &str) -> Result<Variant, CliError> {
    Ok(match name {
        "ner" => Variant::Ner,
        "tc" => Variant::Tc,
        "naive" => Variant::Naive,
        "mtpf-tpl" => Variant::MtpfTpl,
        other => {
            return Err(CliError::Usage(format!(
                "--variant `{other}`: expected ner, tc, naive or mtpf-tpl"
            )));
        }
    })
}

fn parse_args() -> Result<Args, CliError> {
    let mut flags = Flags::from_env()?;
    let mut variant = None;
    let mut out = None;
    let mut args = Args {
        variant: Variant::MtpfTpl,
        out: PathBuf::new(),
        force: false,
        steps: 1000,
        batch_size: 32,
        k: 2,
        rank: 8,
        seed: 0,
        max_sentences: None,
        max_pairs: None,
        lr: 5e-5,
        max_length: 128,
        teacher: TeacherChoice::Mpnet,
        eval_every: None,
        log_every: 10,
        backend: common::default_backend()?,
    };
    while let Some(flag) = flags.next_flag() {
        match flag.as_str() {
            "--variant" => variant = Some(parse_variant(&flags.value::<String>(&flag)?)?),
            "--out" => out = Some(flags.value::<PathBuf>(&flag)?),
            "--force" => args.force = true,
            "--steps" => args.steps = common::positive(flags.value(&flag)?, &flag)?,
            "--batch-size" => args.batch_size = common::positive(flags.value(&flag)?, &flag)?,
            "--k" => args.k = common::positive(flags.value(&flag)?, &flag)?,
            "--rank" => args.rank = common::positive(flags.value(&flag)?, &flag)?,
            "--seed" => args.seed = flags.value(&flag)?,
            "--max-sentences" => {
                args.max_sentences = Some(common::positive(flags.value(&flag)?, &flag)?)
            }
            "--max-pairs" => args.max_pairs = Some(common::positive(flags.value(&flag)?, &flag)?),
            "--lr" => args.lr = flags.value(&flag)?,
            "--max-length" => args.max_length = flags.value(&flag)?,
            "--teacher" => {
                args.teacher = match flags.value::<String>(&flag)?.as_str() {
                    "mpnet" => TeacherChoice::Mpnet,
                    "self" => TeacherChoice::SelfDistillation,
                    other => {
                        return Err(CliError::Usage(format!(
                            "--teacher `{other}`: expected mpnet or self"
                        )));
                    }
                }
            }
            "--eval-every" => args.eval_every = Some(common::positive(flags.value(&flag)?, &flag)?),
            "--log-every" => args.log_every = flags.value(&flag)?,
            "--backend" => args.backend = common::backend(&flags.value::<String>(&flag)?)?,
            "-h" | "--help" => return Err(CliError::Help),
            other => return Err(common::unknown(other)),
        }
    }
    args.variant = common::required(variant, "--variant")?;
    args.out = common::required(out, "--out")?;
    common::output_dir(&args.out, &["config.json", "model.safetensors"], args.force)?;
    if !(args.lr.is_finite() && args.lr > 0.0) {
        return Err(CliError::Usage(format!(
            "--lr {}: must be finite and > 0",
            args.lr
        )));
    }
    Ok(args)
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
    common::exit(USAGE, || run(parse_args()?))
}
