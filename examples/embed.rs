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

#[path = "common/args.rs"]
mod args;

use std::path::PathBuf;
use std::process::ExitCode;

use lora_bert::{Backend, Embedder, device};
use serde_json::json;

const USAGE: &str =
    "usage: embed [--model DIR] [--adapter DIR] [--backend ndarray|flex|wgpu] --json TEXT...";

struct Args {
    model: Option<PathBuf>,
    adapter: Option<PathBuf>,
    backend: Backend,
    texts: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = args::utf8_args()?.into_iter();
    let mut model = None;
    let mut adapter = None;
    let mut backend = Backend::default_cpu().map_err(|e| e.to_string())?;
    let mut json_mode = false;
    let mut texts = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--model" => {
                model = Some(PathBuf::from(
                    args.next().ok_or("--model needs a directory")?,
                ))
            }
            "--adapter" => {
                adapter = Some(PathBuf::from(
                    args.next().ok_or("--adapter needs a directory")?,
                ))
            }
            "--backend" => {
                backend = args
                    .next()
                    .ok_or("--backend needs a name")?
                    .parse()
                    .map_err(|e: lora_bert::encoder::DeviceError| e.to_string())?
            }
            "--json" => json_mode = true,
            "-h" | "--help" => return Err(USAGE.into()),
            "--" => texts.extend(args.by_ref()),
            flag if flag.starts_with("--") => return Err(format!("unknown flag {flag}\n{USAGE}")),
            _ => texts.push(arg),
        }
    }
    if !json_mode {
        return Err(format!(
            "--json is required (the only output format)\n{USAGE}"
        ));
    }
    if texts.is_empty() {
        return Err(format!("no text given\n{USAGE}"));
    }
    Ok(Args {
        model,
        adapter,
        backend,
        texts,
    })
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
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
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
