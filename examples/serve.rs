//! Serves several apps from one backbone: loads the backbone once, registers each app, runs
//! every text through every app (NER apps give entities, classifiers a label), and prints
//! what each app costs in memory next to the backbone.
//!
//! ```text
//! cargo run --release --example quickstart          # makes runs/quickstart/{pf,apps/*}
//! cargo run --release --example serve -- --backbone runs/quickstart/pf \
//!     --app ner=runs/quickstart/apps/wnut16 --app sentiment=runs/quickstart/apps/vader-movies \
//!     "Going to see Coldplay in London tonight !" "A gripping, beautifully shot film."
//! ```
//!
//! Without `--backbone` it serves on all-MiniLM-L6-v2 (fetched into the asset cache); an app
//! must run on the backbone it was fine-tuned from.

#[path = "common/args.rs"]
mod args;

use std::error::Error;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use lora_bert::assets::{self, AssetCache};
use lora_bert::encoder::tokenizer::BertTokenizer;
use lora_bert::pipelines::{ClassifierPipeline, NerPipeline};
use lora_bert::runtime::Runtime;
use lora_bert::train::AppKind;
use lora_bert::{Backend, device};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// One backbone, many apps: loads the backbone once (default all-MiniLM-L6-v2), registers
/// each app directory (written by the quickstart, the finetune example or
/// TokenClassifier/TextClassifier::save), and runs every TEXT through every app.
///
/// An app must run on the backbone it was fine-tuned from.
#[derive(Parser)]
#[command(name = "serve", args_override_self = true)]
struct Cli {
    /// The backbone's model directory (default: all-MiniLM-L6-v2 from the asset cache)
    #[arg(long, allow_hyphen_values = true, value_name = "DIR")]
    backbone: Option<PathBuf>,
    /// An app to register under NAME from its directory (repeat for more apps; at least one)
    #[arg(long = "app", allow_hyphen_values = true, value_name = "NAME=DIR", required = true, value_parser = app)]
    apps: Vec<(String, PathBuf)>,
    /// CPU backend: flex or ndarray (default: flex, or ndarray when flex is not compiled in)
    #[arg(long, allow_hyphen_values = true, value_name = "NAME")]
    backend: Option<Backend>,
    /// The texts every app runs on (at least one; after `--`, texts may start with `-`)
    #[arg(value_name = "TEXT", required = true)]
    texts: Vec<String>,
}

/// `--app NAME=DIR`.
fn app(value: &str) -> std::result::Result<(String, PathBuf), String> {
    let (name, dir) = value.split_once('=').ok_or("--app takes NAME=DIR")?;
    Ok((name.to_owned(), dir.into()))
}

fn main() -> std::process::ExitCode {
    args::exit(run(Cli::parse()))
}

fn run(cli: Cli) -> Result<()> {
    // Faster CPU passes: see lora_bert::malloc.
    lora_bert::malloc::keep_freed_memory();
    let Cli {
        backbone,
        apps,
        backend,
        texts,
    } = cli;
    let backend = backend.map_or_else(Backend::default_cpu, Ok)?;
    let device = device::device(backend)?;
    // The apps' backbone may be a pre-finetuned copy without a tokenizer: all-MiniLM-L6-v2's
    // tokenizer fits every backbone made from it.
    let files = assets::all_minilm_l6_v2(&AssetCache::from_env()?)?;
    let tokenizer = BertTokenizer::from_file(&files.tokenizer)?.with_max_length(128);
    let runtime = Arc::new(Runtime::load(
        backbone.as_ref().unwrap_or(&files.dir),
        &device,
    )?);
    for (name, dir) in &apps {
        let info = runtime.register(name, dir)?;
        println!(
            "registered `{name}` ({:?}, {} labels) from {}",
            info.kind,
            info.labels.len(),
            dir.display()
        );
    }
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    for info in runtime.apps() {
        println!("\n== {} ==", info.name);
        match info.kind {
            AppKind::TokenClassification => {
                let ner = NerPipeline::new(runtime.clone(), &info.name, tokenizer.clone())?;
                for (text, entities) in texts.iter().zip(ner.predict(&texts)?) {
                    println!("{text}");
                    for e in entities {
                        println!(
                            "  {:<12} {:<24} {:.2}  [{}, {})",
                            e.label, e.text, e.score, e.start, e.end
                        );
                    }
                }
            }
            AppKind::SequenceClassification => {
                let clf = ClassifierPipeline::new(runtime.clone(), &info.name, tokenizer.clone())?;
                for (text, c) in texts.iter().zip(clf.predict(&texts)?) {
                    println!("{:<12} {:.2}  {text}", c.label, c.score);
                }
            }
        }
    }
    let memory = runtime.memory();
    println!(
        "\nbackbone {:>10.2} MB (loaded once)",
        memory.backbone_bytes as f64 / 1e6
    );
    for (name, bytes) in &memory.apps {
        println!(
            "{name:<8} {:>10.3} MB ({:.2}% of the backbone)",
            *bytes as f64 / 1e6,
            100.0 * memory.share(name).unwrap_or(0.0)
        );
    }
    Ok(())
}
