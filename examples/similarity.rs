//! Sentence similarity: load all-MiniLM-L6-v2 (fetched into the asset cache on first run), embed a few
//! sentences in one padded batch and print their cosine-similarity matrix.
//!
//! ```text
//! cargo run --release --example similarity [-- --backend ndarray|flex|wgpu]
//! ```

#[path = "common/args.rs"]
mod args;

use std::time::Instant;

use clap::Parser;
use lora_bert::{Backend, Embedder, device};

const SENTENCES: [&str; 6] = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A woman is holding an infant.",
    "The stock market fell sharply today.",
    "Shares dropped steeply on Wall Street this afternoon.",
];

/// Sentence similarity: embeds six sentences with all-MiniLM-L6-v2 (fetched into the asset
/// cache on first run) in one padded batch and prints their cosine-similarity matrix.
#[derive(Parser)]
// An option's value is the word after it, even when that word starts with `-`.
#[command(
    name = "similarity",
    args_override_self = true,
    allow_hyphen_values = true
)]
struct Cli {
    /// ndarray, flex or wgpu (default: flex, or ndarray when flex is not compiled in)
    #[arg(long, value_name = "NAME")]
    backend: Option<Backend>,
}

fn main() -> std::process::ExitCode {
    args::exit(run(Cli::parse()))
}

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let backend = cli.backend.map_or_else(Backend::default_cpu, Ok)?;
    let device = device::device(backend)?;
    let start = Instant::now();
    let embedder = Embedder::all_minilm_l6_v2(&device)?;
    eprintln!(
        "loaded all-MiniLM-L6-v2 on {backend} in {:.2?}",
        start.elapsed()
    );

    let start = Instant::now();
    let out = embedder.embed(&SENTENCES)?;
    eprintln!(
        "embedded {} sentences ({} tokens padded) in {:.2?}\n",
        out.len(),
        out.batch.seq_len,
        start.elapsed()
    );

    println!("cosine similarity of mean-pooled embeddings:\n");
    print!("{:>4}", "");
    for j in 0..SENTENCES.len() {
        print!("{j:>7}");
    }
    println!();
    for i in 0..SENTENCES.len() {
        print!("{i:>4}");
        for j in 0..SENTENCES.len() {
            print!("{:>7.3}", out.cosine(i, j));
        }
        println!();
    }
    println!();
    for (i, s) in SENTENCES.iter().enumerate() {
        println!("{i:>4}  {s}");
    }
    Ok(())
}
