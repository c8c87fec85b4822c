//! The server under load, against the offline runtime: 8 apps (4 entity taggers, 4
//! classifiers) on all-MiniLM-L6-v2, one text per request, at several concurrencies, on short
//! (10-40 words) and long (100-300 words) texts; texts/s and latency percentiles, the
//! offline `Runtime` on the same rows in batches of 32, and the cost of mixing 8 apps against
//! one (the same classifier requests spread over 8 apps or sent to one).
//!
//! ```text
//! cargo run --release -p lora-bert-server --example load -- --texts 128 --concurrency 1,8,32
//! ```
//!
//! Prints a Markdown table (docs/benchmarks.md keeps one). Apps have random LoRA weights and
//! fresh heads: what they answer is arbitrary, what it costs is not.

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use lora_bert::pipelines::{ClassifierPipeline, NerPipeline};
use lora_bert::runtime::{Logits, Row, Runtime};
use lora_bert_server::ServerConfig;
use lora_bert_server::client;
use serde_json::json;

/// Drives a server on 127.0.0.1 with 8 apps and prints texts/s and latency per setting.
#[derive(Parser)]
#[command(name = "load")]
struct Cli {
    /// Texts (= requests) per setting
    #[arg(long, default_value_t = 128)]
    texts: usize,
    /// Client concurrencies to run
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    concurrency: Vec<usize>,
    /// Longest time one setting may run, in seconds (the rest of its texts are skipped)
    #[arg(long, default_value_t = 120)]
    seconds: u64,
    /// Padded tokens per forward pass
    #[arg(long, default_value_t = ServerConfig::default().max_batch_tokens)]
    max_batch_tokens: usize,
    /// Batch wait, in milliseconds
    #[arg(long, default_value_t = 2.0)]
    max_wait_ms: f64,
}

/// xorshift64: a seeded, portable stream.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// `n` texts of `lo..=hi` words, drawn from the test sentences.
fn texts(n: usize, lo: usize, hi: usize, seed: u64) -> Vec<String> {
    let words: Vec<&str> = common::SHORT
        .iter()
        .flat_map(|s| s.split_whitespace())
        .collect();
    let mut rng = Rng(seed);
    (0..n)
        .map(|_| {
            let len = lo + rng.below(hi - lo + 1);
            let start = rng.below(words.len());
            (0..len)
                .map(|k| words[(start + k) % words.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

struct Run {
    /// Rows per forward pass, on average.
    rows_per_pass: f64,
    texts_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    done: usize,
}

/// Sends `requests` (app, text) one text per request from `concurrency` clients.
fn drive(
    addr: SocketAddr,
    requests: &[(String, String)],
    concurrency: usize,
    limit: Duration,
) -> Run {
    let passes = |addr| {
        let m = client::get(addr, "/metrics").expect("metrics").text();
        let v = |name: &str| -> f64 {
            m.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
                .unwrap_or(0.0)
        };
        (
            v("lora_bert_batch_rows_count"),
            v("lora_bert_batch_rows_sum"),
        )
    };
    let before = passes(addr);
    let next = Arc::new(Mutex::new(0usize));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let requests = Arc::new(requests.to_vec());
    let started = Instant::now();
    let handles: Vec<_> = (0..concurrency)
        .map(|_| {
            let (next, latencies, requests) = (next.clone(), latencies.clone(), requests.clone());
            std::thread::spawn(move || {
                loop {
                    let i = {
                        let mut n = next.lock().unwrap();
                        if *n >= requests.len() || started.elapsed() > limit {
                            return;
                        }
                        *n += 1;
                        *n - 1
                    };
                    let (app, text) = &requests[i];
                    let route = if app.starts_with("ner") {
                        "/ner"
                    } else {
                        "/predict"
                    };
                    let t = Instant::now();
                    let r = client::post_json(addr, route, &json!({"app": app, "inputs": text}))
                        .expect("a response");
                    assert_eq!(r.status, 200, "{}", r.text());
                    latencies.lock().unwrap().push(t.elapsed().as_secs_f64());
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("a client");
    }
    let wall = started.elapsed().as_secs_f64();
    let mut l = latencies.lock().unwrap().clone();
    l.sort_by(f64::total_cmp);
    let pct = |p: f64| l[((l.len() as f64 - 1.0) * p).round() as usize] * 1e3;
    let after = passes(addr);
    Run {
        rows_per_pass: (after.1 - before.1) / (after.0 - before.0).max(1.0),
        texts_per_s: l.len() as f64 / wall,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        done: l.len(),
    }
}

/// The same requests through the runtime directly: every text encoded by its app's
/// pipeline, the rows run in request order in batches of 32 (mixed apps), decoded.
fn offline(runtime: &Arc<Runtime>, requests: &[(String, String)]) -> f64 {
    let tokenizer = common::tokenizer().with_max_length(128);
    let mut ners = std::collections::BTreeMap::new();
    let mut clfs = std::collections::BTreeMap::new();
    for (app, _) in requests {
        if app.starts_with("ner") {
            ners.entry(app.clone()).or_insert_with(|| {
                NerPipeline::new(runtime.clone(), app, tokenizer.clone()).expect("pipeline")
            });
        } else {
            clfs.entry(app.clone()).or_insert_with(|| {
                ClassifierPipeline::new(runtime.clone(), app, tokenizer.clone()).expect("pipeline")
            });
        }
    }
    let started = Instant::now();
    // Per request: its app and, for a tagger, its encoded input.
    let mut inputs = Vec::new();
    let mut rows: Vec<(&str, Vec<u32>)> = Vec::new();
    for (app, text) in requests {
        if let Some(ner) = ners.get(app) {
            let input = ner.encode(&[text]).expect("encode");
            rows.extend(input.ids().map(|ids| (app.as_str(), ids.to_vec())));
            let n = input.ids().len();
            inputs.push((app, n, Some(input)));
        } else {
            let input = clfs[app].encode(&[text]).expect("encode");
            rows.extend(input.ids().map(|ids| (app.as_str(), ids.to_vec())));
            inputs.push((app, 1, None));
        }
    }
    let mut logits: Vec<Logits> = Vec::new();
    for chunk in rows.chunks(32) {
        let batch: Vec<Row<'_>> = chunk.iter().map(|(app, ids)| Row { app, ids }).collect();
        logits.extend(runtime.logits(&batch).expect("logits"));
    }
    let mut rest = logits.into_iter();
    for (app, n, input) in inputs {
        let mine: Vec<Logits> = rest.by_ref().take(n).collect();
        match input {
            Some(input) => drop(ners[app].decode(&input, mine).expect("decode")),
            None => drop(clfs[app].decode(mine).expect("decode")),
        }
    }
    requests.len() as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    lora_bert::malloc::keep_freed_memory();
    let cli = Cli::parse();
    let dir = tempfile::tempdir().expect("tempdir");
    eprintln!("making 12 apps (4 taggers, 8 classifiers) ...");
    let apps = common::make_apps(dir.path(), 4, 8);
    let config = ServerConfig {
        max_batch_tokens: cli.max_batch_tokens,
        max_wait: Duration::from_secs_f64(cli.max_wait_ms / 1e3),
        ..ServerConfig::default()
    };
    let (runtime, server) = common::start(&apps, config);
    let addr = server.addr();
    let limit = Duration::from_secs(cli.seconds);
    let eight: Vec<&str> = [
        "ner0", "clf0", "ner1", "clf1", "ner2", "clf2", "ner3", "clf3",
    ]
    .to_vec();
    let clfs: Vec<String> = (0..8).map(|i| format!("clf{i}")).collect();

    println!(
        "| texts | setting | concurrency | texts/s | p50 ms | p99 ms | rows/pass | vs one at a time | vs offline |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (label, lo, hi, seed) in [
        ("short (10-40 words)", 10, 40, 1),
        ("long (100-300 words)", 100, 300, 2),
    ] {
        let texts = texts(cli.texts, lo, hi, seed);
        let mixed: Vec<(String, String)> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| (eight[i % 8].to_owned(), t.clone()))
            .collect();
        // Warm-up: allocator, thread pools, every app's group.
        drive(addr, &mixed[..16.min(mixed.len())], 8, limit);
        let base = offline(&runtime, &mixed);
        println!(
            "| {label} | offline Runtime, batches of 32 | - | {base:.1} | - | - | 32 | - | 1.00 |"
        );
        let mut one = None;
        for &c in &cli.concurrency {
            let run = drive(addr, &mixed, c, limit);
            let single = *one.get_or_insert(run.texts_per_s);
            println!(
                "| {label} | server, 8 apps{} | {c} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2}x | {:.2} |",
                if run.done < mixed.len() {
                    format!(" ({} of {} texts in time)", run.done, mixed.len())
                } else {
                    String::new()
                },
                run.texts_per_s,
                run.p50_ms,
                run.p99_ms,
                run.rows_per_pass,
                run.texts_per_s / single,
                run.texts_per_s / base
            );
        }
        // The cost of mixing: the same classifier requests over 8 apps or to one.
        let c = cli.concurrency.iter().copied().max().unwrap_or(32);
        let spread: Vec<(String, String)> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| (clfs[i % 8].clone(), t.clone()))
            .collect();
        let alone: Vec<(String, String)> = texts
            .iter()
            .map(|t| ("clf0".to_owned(), t.clone()))
            .collect();
        for (setting, requests) in [("8 classifiers", &spread), ("1 classifier", &alone)] {
            let run = drive(addr, requests, c, limit);
            println!(
                "| {label} | server, {setting} | {c} | {:.1} | {:.1} | {:.1} | {:.1} | - | - |",
                run.texts_per_s, run.p50_ms, run.p99_ms, run.rows_per_pass
            );
        }
    }
    let metrics = client::get(addr, "/metrics").expect("metrics").text();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(f64::NAN)
    };
    eprintln!(
        "{} forward passes, {:.1} rows and {:.0} padded tokens each on average",
        value("lora_bert_batch_rows_count"),
        value("lora_bert_batch_rows_sum") / value("lora_bert_batch_rows_count"),
        value("lora_bert_batch_tokens_sum") / value("lora_bert_batch_tokens_count"),
    );
    server.shutdown().expect("shutdown");
}
