//! Scores a tagged file as conlleval and seqeval do.
//!
//! ```text
//! cargo run --release --example conlleval -- FILE [--scheme iob1|iob2|ioe1|ioe2|iobes|bilou] [--mode default|strict] [--json]
//! ```
//!
//! FILE has one token per line, whitespace-separated columns ending in `gold pred` (the first
//! column is the token), and a blank line between sentences. `--mode default` (the default)
//! is seqeval's conlleval-compatible chunking, which ignores `--scheme`; `--mode strict` reads
//! entities by the scheme's rules (IOB2 unless `--scheme` says otherwise). Without `--json` it
//! prints conlleval's summary and per-type table; with `--json`, one object:
//! `{"micro": {"precision", "recall", "f1", "support"}, "macro": {...}, "weighted": {...},
//! "per_type": {"PER": {...}, ...}}` (NaN as `null`). This output is an interface that outside
//! checks rely on: keep it stable.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{ArgAction, Parser};
use lora_bert_metrics::{Mode, NerReport, Scheme};

/// Scores a tagged file as conlleval and seqeval do: conlleval's summary and per-type table,
/// or one JSON object.
///
/// FILE has one token per line, whitespace-separated columns ending in `gold pred` (the first
/// column is the token), and a blank line between sentences.
#[derive(Parser)]
#[command(name = "conlleval", args_override_self = true)]
struct Cli {
    /// The tagged file
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// The tag scheme strict mode reads entities by (default iob2)
    #[arg(long, allow_hyphen_values = true, value_name = "NAME")]
    scheme: Option<Scheme>,
    /// default: seqeval's conlleval-compatible chunking, which ignores --scheme; strict:
    /// entities by the scheme's rules
    #[arg(
        long,
        allow_hyphen_values = true,
        value_name = "MODE",
        default_value = "default",
        action = ArgAction::Set,
        value_parser = PossibleValuesParser::new(["default", "strict"]).map(|m| m == "strict")
    )]
    mode: bool,
    /// One JSON object: {"micro": {"precision", "recall", "f1", "support"}, "macro",
    /// "weighted", "per_type": {"PER": {...}, ...}} (NaN as null)
    #[arg(long)]
    json: bool,
}

struct Args {
    file: PathBuf,
    scheme: Option<Scheme>,
    strict: bool,
    json: bool,
}

impl From<Cli> for Args {
    fn from(cli: Cli) -> Args {
        Args {
            file: cli.file,
            scheme: cli.scheme,
            strict: cli.mode,
            json: cli.json,
        }
    }
}

type Sentences = Vec<Vec<String>>;

/// Reads gold and predicted tags; an error names the file and line.
fn read(path: &PathBuf) -> Result<(Sentences, Sentences), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (mut gold, mut pred) = (vec![Vec::new()], vec![Vec::new()]);
    for (n, line) in text.lines().enumerate() {
        let columns: Vec<&str> = line.split_whitespace().collect();
        match columns.len() {
            0 => {
                if !gold.last().is_some_and(Vec::is_empty) {
                    gold.push(Vec::new());
                    pred.push(Vec::new());
                }
            }
            1 | 2 => {
                return Err(format!(
                    "{}:{}: expected `token gold pred`, found {} column(s): {line:?}",
                    path.display(),
                    n + 1,
                    columns.len()
                ));
            }
            k => {
                gold.last_mut()
                    .expect("one")
                    .push(columns[k - 2].to_owned());
                pred.last_mut()
                    .expect("one")
                    .push(columns[k - 1].to_owned());
            }
        }
    }
    if gold.last().is_some_and(Vec::is_empty) {
        gold.pop();
        pred.pop();
    }
    if gold.is_empty() {
        return Err(format!("{}: no tokens", path.display()));
    }
    Ok((gold, pred))
}

fn percent(x: f64) -> String {
    format!("{:6.2}", 100.0 * x)
}

fn main() -> ExitCode {
    let args = Args::from(Cli::parse());
    let result = read(&args.file).and_then(|(gold, pred)| {
        let mode = if args.strict {
            Mode::Strict(args.scheme.unwrap_or(Scheme::Iob2))
        } else {
            Mode::Default
        };
        let report = NerReport::new(&gold, &pred, mode)
            .map_err(|e| format!("{}: {e}", args.file.display()))?;
        Ok((gold, pred, report))
    });
    let (gold, _pred, report) = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.json {
        let line = serde_json::json!({
            "micro": report.averages.micro_avg,
            "macro": report.averages.macro_avg,
            "weighted": report.averages.weighted_avg,
            "per_type": report.per_type,
        });
        println!("{line}");
        return ExitCode::SUCCESS;
    }
    let tokens: usize = gold.iter().map(Vec::len).sum();
    let micro = report.averages.micro_avg;
    println!(
        "processed {tokens} tokens with {} phrases; found: {} phrases; correct: {}.",
        micro.support, report.found, report.correct
    );
    println!(
        "accuracy: {}%; precision: {}%; recall: {}%; FB1: {}",
        percent(report.accuracy),
        percent(micro.precision),
        percent(micro.recall),
        percent(micro.f1)
    );
    for (kind, p) in &report.per_type {
        println!(
            "{kind:>17}: precision: {}%; recall: {}%; FB1: {}  {}",
            percent(p.precision),
            percent(p.recall),
            percent(p.f1),
            p.support
        );
    }
    ExitCode::SUCCESS
}
