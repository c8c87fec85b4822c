//! `lora-bert-server`: serves many apps on one backbone over HTTP.
//!
//! ```text
//! cargo run --release -p lora-bert-server -- \
//!     --app ner=runs/quickstart/apps/wnut16 --app sentiment=runs/quickstart/apps/vader-movies \
//!     --backbone runs/quickstart/pf
//! curl -s localhost:8080/ner -H 'Content-Type: application/json' \
//!     -d '{"app": "ner", "inputs": "Going to see Coldplay in London tonight"}'
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use lora_bert::assets::{self, AssetCache};
use lora_bert::encoder::tokenizer::BertTokenizer;
use lora_bert::runtime::Runtime;
use lora_bert::{Backend, device};
use lora_bert_server::{Server, ServerConfig};

/// Serves apps (LoRA groups and heads saved by lora-bert's fine-tuning) on one backbone, with
/// the requests of all apps batched together.
#[derive(Parser, Debug)]
#[command(name = "lora-bert-server", version)]
struct Cli {
    /// The backbone's model directory (default: all-MiniLM-L6-v2, fetched into the asset
    /// cache)
    #[arg(long, value_name = "DIR")]
    backbone: Option<PathBuf>,
    /// An app to register under NAME from its directory (repeatable)
    #[arg(long = "app", value_name = "NAME=DIR", value_parser = app)]
    apps: Vec<(String, PathBuf)>,
    /// The address to listen on
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: std::net::SocketAddr,
    /// CPU backend: flex or ndarray (default: flex)
    #[arg(long, value_name = "NAME")]
    backend: Option<Backend>,
    /// Hold the backbone in int8 (about a quarter of the memory)
    #[arg(long)]
    int8: bool,
    /// Padded tokens per forward pass at most (rows x longest row)
    #[arg(long, default_value_t = ServerConfig::default().max_batch_tokens)]
    max_batch_tokens: usize,
    /// How long the batcher may wait for the queue to refill to its last batch's rows, in
    /// milliseconds
    #[arg(long, default_value_t = ServerConfig::default().max_wait.as_secs_f64() * 1e3)]
    max_wait_ms: f64,
    /// Requests waiting for the model at most (more: 503 with Retry-After)
    #[arg(long, default_value_t = ServerConfig::default().max_queue)]
    max_queue: usize,
    /// Texts per request at most (more: 413)
    #[arg(long, default_value_t = ServerConfig::default().max_texts)]
    max_texts: usize,
    /// Characters per text at most (more: 413)
    #[arg(long, default_value_t = ServerConfig::default().max_chars)]
    max_chars: usize,
    /// Bytes per request body at most (more: 413)
    #[arg(long, default_value_t = ServerConfig::default().max_body_bytes)]
    max_body_bytes: usize,
    /// Tokens per row: /ner's window and /predict's truncation
    #[arg(long, default_value_t = ServerConfig::default().max_length)]
    max_length: usize,
    /// Tokens per text of /embed (default: sentence_bert_config.json's max_seq_length, else
    /// the model's positions)
    #[arg(long)]
    embed_max_length: Option<usize>,
    /// A file holding the bearer token of the management routes (default: the
    /// LORA_BERT_SERVER_TOKEN environment variable; none: management only on loopback)
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Serve no management routes (/apps)
    #[arg(long)]
    no_management: bool,
}

/// `--app NAME=DIR`.
fn app(value: &str) -> std::result::Result<(String, PathBuf), String> {
    let (name, dir) = value.split_once('=').ok_or("--app takes NAME=DIR")?;
    Ok((name.to_owned(), dir.into()))
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `max_seq_length` of a sentence-transformers model directory, when it has one.
fn sentence_max_length(dir: &std::path::Path) -> Result<Option<usize>> {
    let path = dir.join("sentence_bert_config.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(value
        .get("max_seq_length")
        .and_then(serde_json::Value::as_u64)
        .map(|n| n as usize))
}

fn token(cli: &Cli) -> Result<Option<String>> {
    let token = match &cli.token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| format!("{}: {e}", path.display()))?
                .trim()
                .to_owned(),
        ),
        None => std::env::var("LORA_BERT_SERVER_TOKEN").ok(),
    };
    match token {
        Some(t) if t.is_empty() => Err("the management token is empty".into()),
        t => Ok(t),
    }
}

fn run(cli: Cli) -> Result<()> {
    lora_bert::malloc::keep_freed_memory();
    let backend = cli.backend.map_or_else(Backend::default_cpu, Ok)?;
    let device = device::device(backend)?;
    let files = assets::all_minilm_l6_v2(&AssetCache::from_env()?)?;
    let backbone = cli.backbone.clone().unwrap_or_else(|| files.dir.clone());
    // A pre-finetuned copy may hold no tokenizer: all-MiniLM-L6-v2's fits every backbone
    // made from it.
    let tokenizer_file = [backbone.join("tokenizer.json"), files.tokenizer.clone()]
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| files.tokenizer.clone());
    let tokenizer = BertTokenizer::from_file(&tokenizer_file)?;
    let embed_max_length = match cli.embed_max_length {
        Some(n) => Some(n),
        None => sentence_max_length(&backbone)?,
    };
    let config = ServerConfig {
        max_batch_tokens: cli.max_batch_tokens,
        max_wait: Duration::from_secs_f64(cli.max_wait_ms.max(0.0) / 1e3),
        max_queue: cli.max_queue,
        max_texts: cli.max_texts,
        max_chars: cli.max_chars,
        max_body_bytes: cli.max_body_bytes,
        max_length: cli.max_length,
        embed_max_length,
        token: token(&cli)?,
        management: !cli.no_management,
        ..ServerConfig::default()
    };
    let runtime = if cli.int8 {
        Runtime::load_int8(&backbone, &device)?
    } else {
        Runtime::load(&backbone, &device)?
    };
    let model_id = if cli.backbone.is_some() {
        backbone.display().to_string()
    } else {
        "sentence-transformers/all-MiniLM-L6-v2".to_owned()
    };
    let server = Server::new(Arc::new(runtime), tokenizer, config, model_id)?;
    for (name, dir) in &cli.apps {
        let app = server.register(name, dir)?;
        eprintln!(
            "registered `{name}` ({}, {} labels, {:.2} MB) from {}",
            app.route,
            app.labels.len(),
            app.bytes as f64 / 1e6,
            dir.display()
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(cli.addr)
            .await
            .map_err(|e| format!("binding {}: {e}", cli.addr))?;
        eprintln!("serving on http://{}", listener.local_addr()?);
        server.serve(listener, shutdown_signal()).await?;
        eprintln!("stopped: every accepted request was answered");
        Ok(())
    })
}

/// Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    eprintln!("shutting down: answering the queued requests");
}
