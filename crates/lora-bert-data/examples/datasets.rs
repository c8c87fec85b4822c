//! Lists the registered datasets and pair sources: task, split sizes, labels (and the entity
//! types of NER sets), licence and a sample of each.
//!
//! ```text
//! cargo run -p lora-bert-data --example datasets
//! cargo run -p lora-bert-data --example datasets -- --dataset conll2003
//! ```

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use lora_bert_assets::AssetCache;
use lora_bert_data::registry::{self, Dataset, DatasetId, PairSource};

/// The entity types of a tag set when every tag is `O` or a one-letter scheme prefix, `-` and a
/// type (NER); `None` for other tags (POS).
fn entity_types<'a>(tags: impl IntoIterator<Item = &'a str>) -> Option<BTreeSet<&'a str>> {
    tags.into_iter()
        .filter(|&t| t != "O")
        .map(|t| {
            t.split_once('-')
                .filter(|(p, k)| matches!(*p, "B" | "I" | "E" | "S" | "L" | "U") && !k.is_empty())
                .map(|(_, k)| k)
        })
        .collect()
}

/// `text` on one line, cut to `max` characters.
fn short(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &flat[..end]),
        None => flat,
    }
}

/// Lists the registered datasets and pair sources: task, split sizes, labels (and the entity
/// types of NER sets), licence and a sample of each (fetched on first use).
#[derive(Parser)]
// An option's value is the word after it, even when that word starts with `-`.
#[command(
    name = "datasets",
    args_override_self = true,
    allow_hyphen_values = true
)]
struct Cli {
    /// Only this dataset or pair source
    #[arg(long, value_name = "NAME")]
    dataset: Option<String>,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let only = cli.dataset.as_deref();
    let cache = AssetCache::from_env()?;
    let ids: Vec<DatasetId> = match only {
        Some(name) => match name.parse::<DatasetId>() {
            Ok(id) => vec![id],
            Err(_) if PairSource::ALL.iter().any(|s| s.name() == name) => vec![],
            Err(e) => return Err(e.into()),
        },
        None => DatasetId::ALL.to_vec(),
    };
    for id in &ids {
        let info = id.info();
        let start = Instant::now();
        let data = registry::load(*id, &cache)?;
        let [train, dev, test] = data.sizes();
        println!("{} ({})", info.name, info.task);
        println!(
            "  train {train} / dev {dev} / test {test}   {} labels   loaded in {:.1?}",
            data.labels().len(),
            start.elapsed()
        );
        if let Dataset::Tokens(_) = &data
            && let Some(types) = entity_types(data.labels())
        {
            let types: Vec<&str> = types.into_iter().collect();
            println!("  {} entity types: {}", types.len(), types.join(", "));
        }
        println!("  {}", info.description);
        println!("  splits: {}", info.splits);
        println!("  licence: {}", info.licence);
        match &data {
            Dataset::Tokens(s) => {
                let Some(sample) = s.train.first() else {
                    println!("  sample: none (the train split is empty)\n");
                    continue;
                };
                let tagged: Vec<String> = sample
                    .tokens
                    .iter()
                    .zip(&sample.tags)
                    .map(|(w, t)| format!("{w}/{t}"))
                    .collect();
                println!("  sample: {}", short(&tagged.join(" "), 100));
            }
            Dataset::Texts(s) => {
                let Some(sample) = s.train.first() else {
                    println!("  sample: none (the train split is empty)\n");
                    continue;
                };
                println!("  sample: [{}] {}", sample.label, short(&sample.text, 100));
            }
        }
        println!();
    }
    let sources: Vec<PairSource> = PairSource::ALL
        .into_iter()
        .filter(|s| only.is_none_or(|name| name == s.name() || name == s.dataset().info().name))
        .collect();
    if !sources.is_empty() {
        println!("text pairs (train splits only)");
    }
    for source in sources {
        let pairs = registry::pairs(source, &cache)?;
        println!(
            "  {} (from {} train): {} pairs",
            source.name(),
            source.dataset(),
            pairs.len()
        );
        if let Some(pair) = pairs.first() {
            println!("    anchor:   {}", short(&pair.anchor, 90));
            println!("    positive: {}", short(&pair.positive, 90));
        }
    }
    Ok(())
}
