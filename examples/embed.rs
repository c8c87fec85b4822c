//! Embeds texts and prints, per text, one JSON object on its own line:
//! `{"text", "tokens", "input_ids", "last_hidden_state" (every token, every dim), "mean_pooled"}`.
//!
//! ```text
//! cargo run --release --example embed -- [--model DIR] [--adapter DIR] [--backend ndarray|flex|wgpu] --json TEXT...
//! ```
//!
//! Without `--model` it uses all-MiniLM-L6-v2 from the asset cache (fetched on first use).
//! `--adapter DIR` applies a LoRA adapter saved in PEFT's layout (`adapter_config.json`,
//! `adapter_model.safetensors`) on top of the model; the output format does not change.
//! The texts run as one padded batch. Texts longer than the model's maximum (512 tokens with
//! specials) and empty texts are refused with an error. This output is an interface that
//! outside checks rely on: keep it stable.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use lora_bert::{Backend, Embedder, device};
use serde_json::json;

/// Embeds texts and prints, per text, one JSON object on its own line: `text`, `tokens`,
/// `input_ids`, `last_hidden_state` (every token, every dim), `mean_pooled`.
///
/// The texts run as one padded batch; texts longer than the model's maximum and empty texts
/// are refused with an error.
#[derive(Parser)]
#[command(name = "embed", args_override_self = true)]
struct Cli {
    /// A model directory (default: all-MiniLM-L6-v2 from the asset cache, fetched on first use)
    #[arg(long, allow_hyphen_values = true, value_name = "DIR")]
    model: Option<PathBuf>,
    /// A LoRA adapter saved in PEFT's layout (`adapter_config.json`,
    /// `adapter_model.safetensors`), applied on top of the model
    #[arg(long, allow_hyphen_values = true, value_name = "DIR")]
    adapter: Option<PathBuf>,
    /// ndarray, flex or wgpu (default: flex, or ndarray when flex is not compiled in)
    #[arg(long, allow_hyphen_values = true, value_name = "NAME")]
    backend: Option<Backend>,
    /// JSON lines on stdout (required: the only output format)
    #[arg(long, required = true)]
    json: bool,
    /// The texts (after `--`, texts may start with `-`)
    #[arg(value_name = "TEXT", required = true)]
    texts: Vec<String>,
}

struct Args {
    model: Option<PathBuf>,
    adapter: Option<PathBuf>,
    backend: Backend,
    texts: Vec<String>,
}

fn run(args: Args) -> Result<(), lora_bert::Error> {
    let device = device::device(args.backend)?;
    let mut embedder = match &args.model {
        Some(dir) => Embedder::from_dir(dir, &device)?.0,
        None => Embedder::all_minilm_l6_v2(&device)?,
    };
    if let Some(dir) = &args.adapter {
        embedder.load_adapter("adapter", dir)?;
    }
    let texts: Vec<&str> = args.texts.iter().map(String::as_str).collect();
    let out = embedder.embed(&texts)?;
    for (i, text) in texts.iter().enumerate() {
        let enc = &out.batch.encodings[i];
        let hidden: Vec<&[f32]> = out.token_states(i).collect();
        let line = json!({
            "text": text,
            "tokens": enc.tokens,
            "input_ids": enc.ids,
            "last_hidden_state": hidden,
            "mean_pooled": out.pooled(i),
        });
        println!("{line}");
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let args = match Backend::default_cpu() {
        Ok(default) => Args {
            model: cli.model,
            adapter: cli.adapter,
            backend: cli.backend.unwrap_or(default),
            texts: cli.texts,
        },
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
