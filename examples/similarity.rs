//! Sentence similarity: load all-MiniLM-L6-v2 (fetched into the asset cache on first run), embed a few
//! sentences in one padded batch and print their cosine-similarity matrix.
//!
//! ```text
//! cargo run --release --example similarity [-- --backend ndarray|flex|wgpu]
//! ```

#[path = "common/args.rs"]
mod args;

use std::time::Instant;

use lora_bert::{Backend, Embedder, device};

const SENTENCES: [&str; 6] = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A woman is holding an infant.",
    "The stock market fell sharply today.",
    "Shares dropped steeply on Wall Street this afternoon.",
];

fn main() -> std::process::ExitCode {
    args::exit(run())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut backend = Backend::default_cpu()?;
    let mut args = args::utf8_args()?.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--backend" => {
                let name = args.next().ok_or("--backend needs a name")?;
                backend = crate::args::parse(&arg, &name)?
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
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
