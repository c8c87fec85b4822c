//! One measurement per process, for the side-by-side comparison with PyTorch and onnxruntime
//! (`scripts/bench_side_by_side.sh` runs it next to `scripts/bench_reference.py`).
//!
//! ```text
//! cargo run --release --example bench_compare -- --mode infer --batch 32 [--backend flex] [--int8]
//! cargo run --release --example bench_compare -- --mode train --batch 16
//! cargo run --release --example bench_compare -- --model-dir   # where all-MiniLM-L6-v2 is
//! ```
//!
//! `infer`: the encoder forward pass of all-MiniLM-L6-v2 on `batch` rows of exactly `--seq`
//! tokens (real text, truncated, no padding), the last hidden state read back to the host;
//! `--int8` runs the int8 backbone (`BertModel::quantize_int8`); `--ragged` gives the rows
//! lengths spread evenly up to `--seq` (row i keeps the first (i + 1) / batch of the words),
//! padded to the longest, as a batch of real requests is.
//! `train`: one LoRA fine-tuning step of a text classifier (LoRA r8, alpha 16 on query/value of
//! every layer, mean pooling, a linear head over 2 classes, cross-entropy, AdamW at 3e-3,
//! dropout 0.1 as in the model's config, gradient clipping at 1), through the library's own
//! trainer: a step's time is the time between two consecutive steps.
//!
//! Prints one JSON line: the median and every time in seconds after `--warmup` untimed
//! iterations, and the process's peak resident memory (VmHWM) in bytes. The process first calls
//! `lora_bert::malloc::keep_freed_memory` (as the other examples do); `--system-malloc` leaves
//! glibc's malloc as it is.

#[path = "common/args.rs"]
mod args;

use std::error::Error;
use std::sync::Mutex;
use std::time::Instant;

use burn::tensor::{Int, Tensor, TensorData};
use clap::Parser;
use lora_bert::adapters::{LoraConfig, Targets};
use lora_bert::encoder::tokenizer::LengthPolicy;
use lora_bert::train::loss::cross_entropy;
use lora_bert::train::{
    AppSetup, CrossEntropy, FineTuneMode, SequenceClassificationHeadConfig, TextClassifier,
    TrainConfig, Trainer,
};
use lora_bert::{Backend, BertInput, Embedder, Route, device};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// The text of the criterion benches and of `scripts/bench_reference.py`.
const TEXT: &str = "When the small research team finally gathered in the crowded laboratory late \
    on Friday evening, the senior scientist carefully explained why the unexpected measurements \
    from the northern observatory could not be dismissed as a simple calibration error. ";

/// One measurement per process, for the side-by-side comparison with PyTorch and
/// onnxruntime: prints one JSON line with the median and every time in seconds and the
/// process's peak resident memory.
#[derive(Parser)]
// An option's value is the word after it, even when that word starts with `-`.
#[command(
    name = "bench_compare",
    args_override_self = true,
    allow_hyphen_values = true
)]
struct Cli {
    /// infer: the encoder forward pass of all-MiniLM-L6-v2; train: one LoRA fine-tuning step
    /// of a text classifier
    #[arg(long, value_name = "MODE", default_value = "infer", value_parser = ["infer", "train"])]
    mode: String,
    /// Rows per batch (at least 1)
    #[arg(long, value_name = "N", default_value_t = 32)]
    batch: usize,
    /// Tokens per row (at least 2)
    #[arg(long, value_name = "N", default_value_t = 128)]
    seq: usize,
    /// CPU backend: flex or ndarray (default: flex, or ndarray when flex is not compiled in)
    #[arg(long, value_name = "NAME")]
    backend: Option<Backend>,
    /// Untimed iterations first
    #[arg(long, value_name = "N", default_value_t = 2)]
    warmup: usize,
    /// Timed iterations (at least 1)
    #[arg(long, value_name = "N", default_value_t = 10)]
    iters: usize,
    /// infer: run the int8 backbone (`BertModel::quantize_int8`)
    #[arg(long)]
    int8: bool,
    /// Leave glibc's malloc as it is (no `lora_bert::malloc::keep_freed_memory`)
    #[arg(long)]
    system_malloc: bool,
    /// infer: rows of lengths spread evenly up to --seq, padded to the longest
    #[arg(long)]
    ragged: bool,
    /// Print where all-MiniLM-L6-v2 is (fetched on first use) and exit
    #[arg(long)]
    model_dir: bool,
}

struct Args {
    mode: String,
    batch: usize,
    seq: usize,
    backend: Backend,
    warmup: usize,
    iters: usize,
    int8: bool,
    /// Leave glibc's malloc thresholds as they are (no `malloc::keep_freed_memory`).
    system_malloc: bool,
    /// Rows of spread-out lengths, padded to the longest (`--seq`).
    ragged: bool,
}

fn main() -> std::process::ExitCode {
    args::exit(run(Cli::parse()))
}

fn run(cli: Cli) -> Result<()> {
    if cli.model_dir {
        let cache = lora_bert::assets::AssetCache::from_env()?;
        println!(
            "{}",
            lora_bert::assets::all_minilm_l6_v2(&cache)?.dir.display()
        );
        return Ok(());
    }
    let a = Args {
        mode: cli.mode,
        batch: cli.batch,
        seq: cli.seq,
        backend: cli.backend.map_or_else(Backend::default_cpu, Ok)?,
        warmup: cli.warmup,
        iters: cli.iters,
        int8: cli.int8,
        system_malloc: cli.system_malloc,
        ragged: cli.ragged,
    };
    if a.batch == 0 || a.seq < 2 || a.iters == 0 {
        return Err("--batch, --iters must be positive and --seq at least 2".into());
    }
    let malloc = if a.system_malloc {
        "system".to_string()
    } else {
        lora_bert::malloc::keep_freed_memory().to_string()
    };
    let times = match a.mode.as_str() {
        "infer" => infer(&a)?,
        "train" => train(&a)?,
        other => return Err(format!("unknown mode {other}").into()),
    };
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    let median = if sorted.len() % 2 == 0 {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    };
    println!(
        "{}",
        serde_json::json!({
            "impl": format!(
                "lora-bert ({}{}{})",
                a.backend.name(),
                if a.int8 { ", int8" } else { "" },
                if a.system_malloc { ", system malloc" } else { "" }
            ),
            "mode": a.mode,
            "batch": a.batch,
            "seq": a.seq,
            "malloc": malloc,
            "ragged": a.ragged,
            "median_s": median,
            "times_s": times,
            "peak_rss_bytes": peak_rss_bytes()?,
        })
    );
    Ok(())
}

/// `batch` rows of exactly `seq` tokens of real text.
fn input(embedder: &Embedder, a: &Args) -> Result<BertInput> {
    let tokenizer = embedder
        .tokenizer()
        .clone()
        .with_max_length(a.seq)
        .with_length_policy(LengthPolicy::Truncate);
    let text = TEXT.repeat(a.seq / 16 + 1);
    let texts: Vec<String> = if a.ragged {
        // Row i keeps the first (i + 1) / batch of the words (the last row all of them, so
        // the batch is still --seq tokens wide once padded to its longest row).
        let words: Vec<&str> = text.split_whitespace().collect();
        (0..a.batch)
            .map(|i| words[..(words.len() * (i + 1)).div_ceil(a.batch)].join(" "))
            .collect()
    } else {
        vec![text; a.batch]
    };
    let batch = tokenizer.encode_batch(&texts.iter().map(String::as_str).collect::<Vec<_>>())?;
    if batch.shape() != [a.batch, a.seq] {
        return Err(format!("the text gives {:?} tokens, not {}", batch.shape(), a.seq).into());
    }
    let device = embedder.model().device();
    Ok(BertInput::from_batch(
        &batch,
        embedder.model().config(),
        &device,
    )?)
}

fn infer(a: &Args) -> Result<Vec<f64>> {
    let device = device::device(a.backend)?;
    let embedder = Embedder::all_minilm_l6_v2(&device)?;
    let input = input(&embedder, a)?;
    let model = embedder.into_backbone();
    let model = if a.int8 {
        model.quantize_int8()?
    } else {
        model
    };
    let mut times = Vec::with_capacity(a.iters);
    for i in 0..a.warmup + a.iters {
        let start = Instant::now();
        let out = model.forward(&input, &Route::Base)?;
        // Reading the data back forces the whole computation.
        std::hint::black_box(out.last_hidden_state.into_data());
        if i >= a.warmup {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    Ok(times)
}

fn train(a: &Args) -> Result<Vec<f64>> {
    let device = device::autodiff(device::device(a.backend)?);
    let embedder = Embedder::all_minilm_l6_v2(&device)?;
    let input = input(&embedder, a)?;
    let labels: Vec<i64> = (0..a.batch as i64).map(|i| i % 2).collect();
    let labels = Tensor::<1, Int>::from_data(TensorData::new(labels, [a.batch]), &device);
    let lora = LoraConfig::new(8, Targets::new(["query", "value"])).alpha(16.0);
    let setup = AppSetup::new("bench", FineTuneMode::LoraHead).with_lora(lora);
    let head = SequenceClassificationHeadConfig::new(embedder.model().config().hidden_size, 2)
        .with_dropout(0.1);
    let classifier = TextClassifier::new(embedder.model().clone(), &setup, &head)?;
    let route = classifier.route()?;
    let steps = a.warmup + a.iters;
    let mut config = TrainConfig::new(steps);
    config.learning_rate = 3e-3;
    let starts = Mutex::new(Vec::with_capacity(steps + 1));
    let ce = CrossEntropy::default();
    Trainer::new(config).fit(
        classifier,
        std::iter::repeat_n((), steps),
        |m: &TextClassifier, ()| {
            starts.lock().expect("timer").push(Instant::now());
            cross_entropy(m.forward(&input, &route)?, labels.clone(), &ce)
        },
        |_| Ok(0.0),
    )?;
    let mut starts = starts.into_inner().expect("timer");
    starts.push(Instant::now());
    Ok(starts
        .windows(2)
        .skip(a.warmup)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect())
}

/// The process's peak resident set size (VmHWM), in bytes.
fn peak_rss_bytes() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .ok_or("no VmHWM in /proc/self/status")?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()?;
    Ok(kb * 1024)
}
