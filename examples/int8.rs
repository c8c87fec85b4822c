//! What an int8 backbone costs and changes: the quickstart's two apps evaluated on their whole
//! test sets on the float backbone and on the same backbone made int8
//! ([`BertModel::quantize_int8`], saved to `DIR/pf-int8` and loaded back from there), with the
//! backbone's bytes in memory and on disk and the encoder's speed.
//!
//! ```text
//! cargo run --release --example quickstart     # makes runs/quickstart/{pf,apps/*}
//! cargo run --release --example int8 [-- --run runs/quickstart --backend flex]
//! ```
//!
//! Scores: WNUT-16 entity F1 (seqeval's strict IOB2 matching, as the quickstart reports it)
//! and VADER movie-review accuracy, over every test example. Speed: the median of 10 forward
//! passes over 1 × 128 and 32 × 128 tokens of real text, after 2 untimed ones.

#[path = "common/args.rs"]
mod args;

use std::error::Error;
use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use lora_bert::adapters::{AdaptedModel, Lora};
use lora_bert::assets::{self, AssetCache};
use lora_bert::data::LabelVocab;
use lora_bert::data::align::LabelAlignment;
use lora_bert::data::batch::TextEncoder;
use lora_bert::data::registry::{self, Dataset, DatasetId};
use lora_bert::data::token::encode_tagged;
use lora_bert::encoder::tokenizer::{BertTokenizer, LengthPolicy};
use lora_bert::encoder::{BertModel, Device};
use lora_bert::train::finetune::{TokenEvalOptions, evaluate_texts, evaluate_tokens};
use lora_bert::train::{TextClassifier, TokenClassifier};
use lora_bert::{Backend, BertInput, Route, device};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// What an int8 backbone costs and changes: evaluates the quickstart's apps (DIR/apps/wnut16,
/// DIR/apps/vader-movies, on the backbone DIR/pf) on a float and an int8 backbone.
#[derive(Parser)]
// An option's value is the word after it, even when that word starts with `-`.
#[command(name = "int8", args_override_self = true, allow_hyphen_values = true)]
struct Cli {
    /// The quickstart's output folder
    #[arg(long, value_name = "DIR", default_value = "runs/quickstart")]
    run: PathBuf,
    /// CPU backend: flex or ndarray (default: flex, or ndarray when flex is not compiled in)
    #[arg(long, value_name = "NAME")]
    backend: Option<Backend>,
}

/// The text of the speed measurement (the benches' text).
const TEXT: &str = "When the small research team finally gathered in the crowded laboratory late \
    on Friday evening, the senior scientist carefully explained why the unexpected measurements \
    from the northern observatory could not be dismissed as a simple calibration error. ";

fn main() -> std::process::ExitCode {
    args::exit(run(Cli::parse()))
}

fn run(cli: Cli) -> Result<()> {
    // Faster CPU passes: see lora_bert::malloc.
    lora_bert::malloc::keep_freed_memory();
    let run = cli.run;
    let backend = cli.backend.map_or_else(Backend::default_cpu, Ok)?;
    let (pf, ner_app, tc_app) = (
        run.join("pf"),
        run.join("apps/wnut16"),
        run.join("apps/vader-movies"),
    );
    for dir in [&pf, &ner_app, &tc_app] {
        if !dir.is_dir() {
            return Err(format!(
                "{} is missing: run `cargo run --release --example quickstart` first (--run DIR \
                 names its output folder)",
                dir.display()
            )
            .into());
        }
    }
    let pf_int8 = run.join("pf-int8");
    let device = device::device(backend)?;
    let cache = AssetCache::from_env()?;
    let files = assets::all_minilm_l6_v2(&cache)?;
    let tokenizer = BertTokenizer::from_file(files.dir.join("tokenizer.json"))?
        .with_max_length(128)
        .with_length_policy(LengthPolicy::Truncate);

    let wnut = registry::wnut16(&cache)?;
    let vader = match registry::load(DatasetId::VaderMovieReviews, &cache)? {
        Dataset::Texts(splits) => splits,
        Dataset::Tokens(_) => return Err("VADER movie reviews is a text dataset".into()),
    };
    let ner_vocab = LabelVocab::load(ner_app.join("labels.json"))?;
    let tc_vocab = LabelVocab::load(tc_app.join("labels.json"))?;
    let ner_test = encode_tagged(
        &tokenizer,
        &wnut.test,
        &ner_vocab,
        LabelAlignment::FirstSubword,
    )?;
    let tc_test = TextEncoder::new(&tokenizer).encode_texts(&vader.test, |l| tc_vocab.id(l))?;

    println!(
        "{:<6} {:>10} {:>12} {:>14} {:>10} {:>11}",
        "weights", "MB", "WNUT-16 F1", "VADER acc.", "1x128 ms", "32x128 s"
    );
    let mut scores = Vec::new();
    for int8 in [false, true] {
        let backbone = BertModel::load(&pf, &device)?.0;
        let backbone = if int8 {
            // Saved and loaded back, as a served int8 backbone would be.
            backbone.quantize_int8()?.save(&pf_int8)?;
            BertModel::load(&pf_int8, &device)?.0
        } else {
            backbone
        };
        let bytes = backbone.param_bytes();
        let (one, many) = (
            speed(&backbone, &tokenizer, 1, &device)?,
            speed(&backbone, &tokenizer, 32, &device)?,
        );
        let (ner, _) =
            TokenClassifier::load(&ner_app, AdaptedModel::<Lora>::new(backbone.clone()))?;
        let f1 = evaluate_tokens(
            &ner,
            &ner_test,
            &wnut.test,
            &ner_vocab,
            &TokenEvalOptions::new(tokenizer.pad_id()),
        )?
        .averages
        .micro_avg
        .f1;
        let (tc, _) = TextClassifier::load(&tc_app, AdaptedModel::<Lora>::new(backbone))?;
        let accuracy = evaluate_texts(&tc, &tc_test, &tc_vocab, 64)?.accuracy;
        println!(
            "{:<6} {:>10.2} {:>12.4} {:>14.4} {:>10.1} {:>11.3}",
            if int8 { "int8" } else { "f32" },
            bytes as f64 / 1e6,
            f1,
            accuracy,
            one * 1e3,
            many
        );
        scores.push((f1, accuracy));
    }
    let file = |dir: &std::path::Path| -> Result<f64> {
        Ok(std::fs::metadata(dir.join("model.safetensors"))?.len() as f64 / 1e6)
    };
    println!(
        "model.safetensors: {:.2} MB ({}), int8 {:.2} MB ({})",
        file(&pf)?,
        pf.display(),
        file(&pf_int8)?,
        pf_int8.display()
    );
    println!(
        "change: WNUT-16 F1 {:+.4}, VADER accuracy {:+.4} ({} and {} test examples)",
        scores[1].0 - scores[0].0,
        scores[1].1 - scores[0].1,
        wnut.test.len(),
        vader.test.len()
    );
    Ok(())
}

/// The median seconds of a forward pass over `batch` rows of 128 tokens.
fn speed(
    model: &BertModel,
    tokenizer: &BertTokenizer,
    batch: usize,
    device: &Device,
) -> Result<f64> {
    let text = TEXT.repeat(10);
    let encoded = tokenizer.encode_batch(&vec![text.as_str(); batch])?;
    let input = BertInput::from_batch(&encoded, model.config(), device)?;
    let mut times = Vec::new();
    for i in 0..12 {
        let start = Instant::now();
        std::hint::black_box(
            model
                .forward(&input, &Route::Base)?
                .last_hidden_state
                .into_data(),
        );
        if i >= 2 {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    Ok((times[4] + times[5]) / 2.0)
}
