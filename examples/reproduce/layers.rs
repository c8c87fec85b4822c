//! `reproduce layers`: how well a linear probe reads a task from each layer of the plain
//! backbone, and how that changes with the probe's training examples. It measures why a
//! probe on the last layer of all-MiniLM-L6-v2 falls short on Brown POS (issue 17).
//!
//! ```text
//! cargo run --release --example reproduce -- layers --out runs/layers \
//!     --task brown-pos --layers 2,3,4,5,6 --train 1000,5000
//! ```
//!
//! The probes are the comparison's (`probes.rs`, full profile: whole dev and test splits, L2
//! chosen on dev along the same path), on the no-PF arm. Each measurement is kept as
//! `OUT/layers/TASK/train-N/layer-K.json`; a rerun skips the finished ones, and `OUT/layers.md`
//! is rendered from every record in the folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lora_bert::adapters::AdaptedModel;
use lora_bert::assets::{self, AssetCache};
use lora_bert::device::{self, Backend};
use lora_bert::encoder::tokenizer::{BertTokenizer, LengthPolicy};
use lora_bert::encoder::{BertModel, Route};
use lora_bert::train::probe::Layer;
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::feature_cache::{self, FeatureCache};
use crate::probes::{self, StateSource};
use crate::runs::{Task, json_files, write_json};
use crate::{data, plan};

/// One measurement.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerRecord {
    pub task: String,
    pub metric: String,
    /// `hidden_states` index: 0 the embeddings, 6 the last layer of all-MiniLM-L6-v2.
    pub layer: usize,
    pub train_cap: usize,
    pub train_examples: usize,
    pub dev_examples: usize,
    pub test_examples: usize,
    pub l2: f64,
    pub steps: usize,
    pub dev: f64,
    pub test: f64,
    pub encode_seconds: f64,
    pub fit_seconds: f64,
    pub backbone: String,
}

/// `reproduce layers`: a linear probe on each layer of the plain backbone (the comparison's
/// probe, full profile: whole dev and test splits, L2 chosen on dev), for each training cap;
/// each measurement is kept under OUT/layers, OUT/layers.md is rendered from all of them.
#[derive(clap::Args)]
pub struct Cli {
    /// Records, the feature cache and layers.md (a comparison's folder: its report renders the
    /// table)
    #[arg(long, value_name = "DIR", default_value = "runs/layers")]
    out: PathBuf,
    /// The downstream task
    #[arg(long, value_name = "NAME", default_value = "brown-pos")]
    task: String,
    /// `hidden_states` indices: 0 the embeddings, 6 the last layer
    #[arg(long, value_name = "K,..", default_value = "2,3,4,5,6", value_parser = numbers)]
    layers: std::vec::Vec<usize>,
    /// The probe's training examples (at least 1 each), one measurement per cap
    #[arg(long, value_name = "N,..", default_value = "5000", value_parser = numbers)]
    train: std::vec::Vec<usize>,
    /// CPU backend: flex or ndarray (default: flex, or ndarray when flex is not compiled in)
    #[arg(long, value_name = "B")]
    backend: Option<Backend>,
}

struct Args {
    out: PathBuf,
    task: String,
    layers: Vec<usize>,
    train: Vec<usize>,
    backend: Backend,
}

/// A comma-separated list of counts.
fn numbers(v: &str) -> std::result::Result<Vec<usize>, String> {
    let list = v
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| format!("{v}: {e}"))?;
    if list.is_empty() {
        return Err("an empty list".into());
    }
    Ok(list)
}

impl Cli {
    fn into_args(self) -> Result<Args> {
        if self.train.contains(&0) {
            return Err("--train: at least 1 example".into());
        }
        Ok(Args {
            out: self.out,
            task: self.task,
            layers: self.layers,
            train: self.train,
            backend: self.backend.map_or_else(Backend::default_cpu, Ok)?,
        })
    }
}

fn record_path(out: &Path, task: &str, train: usize, layer: usize) -> PathBuf {
    out.join("layers")
        .join(task)
        .join(format!("train-{train}"))
        .join(format!("layer-{layer}.json"))
}

pub fn run(cli: Cli) -> Result<()> {
    let args = cli.into_args()?;
    let def = plan::task(&args.task).ok_or_else(|| format!("unknown task `{}`", args.task))?;
    let cache = AssetCache::from_env()?;
    let inference = device::device(args.backend)?;
    let files = assets::all_minilm_l6_v2(&cache)?;
    let model = AdaptedModel::new(BertModel::load(&files.dir, &inference)?.0);
    let layers = model.config().num_hidden_layers;
    if let Some(bad) = args.layers.iter().find(|&&k| k > layers) {
        return Err(format!("--layers {bad}: the model has hidden states 0..={layers}").into());
    }
    let backbone = feature_cache::backbone_id(&files.dir)?;
    let brown = data::Brown::load(&cache)?;
    let task = Task::new(def, data::load_task(def, &cache, &brown)?)?;
    let features = FeatureCache::new(args.out.join("features"));
    for &train in &args.train {
        // The comparison's full-profile probe sizes, with this training cap.
        let plan = crate::cli::parse_plan(&[
            "--profile",
            "full",
            "--protocol",
            "probe",
            "--probe-train",
            &train.to_string(),
        ])?;
        let tokenizer = BertTokenizer::from_file(&files.tokenizer)?
            .with_max_length(plan.sizes.max_len)
            .with_length_policy(LengthPolicy::Window {
                stride: plan.sizes.max_len / 4,
            });
        for &layer in &args.layers {
            let path = record_path(&args.out, def.name, train, layer);
            if path.is_file() {
                continue;
            }
            println!(
                "{} with at most {train} training examples, layer {layer}",
                def.name
            );
            let source = StateSource {
                model: &model,
                route: Route::Base,
                route_name: "base".into(),
                backbone: backbone.clone(),
                cache: &features,
                pad: tokenizer.pad_id(),
                layer: Layer::Hidden(layer),
            };
            let started = std::time::Instant::now();
            let (outcome, encode_seconds) = probes::probe_all(&plan, &task, &source, &tokenizer)?;
            let record = LayerRecord {
                task: def.name.into(),
                metric: def.metric().into(),
                layer,
                train_cap: train,
                train_examples: outcome.train_examples,
                dev_examples: outcome.dev_examples,
                test_examples: outcome.test_examples,
                l2: outcome.l2,
                steps: outcome.steps,
                dev: outcome.dev,
                test: outcome.test,
                encode_seconds,
                fit_seconds: started.elapsed().as_secs_f64() - encode_seconds,
                backbone: backbone.clone(),
            };
            println!(
                "  layer {layer}: dev {:.4}, test {:.4} (L2 {:e}, {} train / {} dev / {} test, \
                 encoded in {encode_seconds:.0}s, fitted in {:.0}s)",
                record.dev,
                record.test,
                record.l2,
                record.train_examples,
                record.dev_examples,
                record.test_examples,
                record.fit_seconds
            );
            write_json(&path, &record)?;
        }
    }
    let report = render(&read_records(&args.out)?);
    std::fs::write(args.out.join("layers.md"), &report)?;
    println!("\n{report}");
    Ok(())
}

/// Every record under `OUT/layers`.
pub fn read_records(out: &Path) -> Result<Vec<LayerRecord>> {
    json_files(&out.join("layers"))?
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path)?;
            serde_json::from_slice(&bytes)
                .map_err(|e| format!("{}: not a layer record: {e}", path.display()).into())
        })
        .collect()
}

/// A table per task: a row per training cap, a column per layer, test (dev) scores in points.
pub fn render(records: &[LayerRecord]) -> String {
    let mut by_task: BTreeMap<&str, Vec<&LayerRecord>> = BTreeMap::new();
    for r in records {
        by_task.entry(&r.task).or_default().push(r);
    }
    let mut md = String::new();
    for (task, rs) in by_task {
        let layers: std::collections::BTreeSet<usize> = rs.iter().map(|r| r.layer).collect();
        let caps: std::collections::BTreeSet<usize> = rs.iter().map(|r| r.train_cap).collect();
        md.push_str(&format!(
            "#### {task}: linear probe per layer of the plain backbone ({}, test; dev in brackets)\n\n",
            rs[0].metric
        ));
        md.push_str("| training examples |");
        for l in &layers {
            md.push_str(&format!(" layer {l} |"));
        }
        md.push_str("\n|---|");
        md.push_str(&"---:|".repeat(layers.len()));
        md.push('\n');
        for cap in &caps {
            let row: Vec<&&LayerRecord> = rs.iter().filter(|r| r.train_cap == *cap).collect();
            let n = row.first().map_or(0, |r| r.train_examples);
            md.push_str(&format!("| {n} |"));
            for l in &layers {
                match row.iter().find(|r| r.layer == *l) {
                    Some(r) => {
                        md.push_str(&format!(" {:.2} ({:.2}) |", 100.0 * r.test, 100.0 * r.dev))
                    }
                    None => md.push_str(" – |"),
                }
            }
            md.push('\n');
        }
        let first = rs[0];
        md.push_str(&format!(
            "\nDev {} and test {} examples; L2 chosen on dev per cell (from {:e} to {:e}).\n\n",
            first.dev_examples,
            first.test_examples,
            rs.iter().map(|r| r.l2).fold(f64::INFINITY, f64::min),
            rs.iter().map(|r| r.l2).fold(0.0, f64::max),
        ));
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(layer: usize, cap: usize, test: f64) -> LayerRecord {
        LayerRecord {
            task: "brown-pos".into(),
            metric: "tag accuracy".into(),
            layer,
            train_cap: cap,
            train_examples: cap,
            dev_examples: 10,
            test_examples: 20,
            l2: 1e-4,
            steps: 5,
            dev: test - 0.01,
            test,
            encode_seconds: 1.0,
            fit_seconds: 1.0,
            backbone: "aa".into(),
        }
    }

    #[test]
    fn the_table_has_a_cell_per_record_and_a_dash_for_a_missing_one() {
        let md = render(&[
            record(6, 1000, 0.8),
            record(3, 1000, 0.9),
            record(6, 5000, 0.85),
        ]);
        assert!(
            md.contains("| training examples | layer 3 | layer 6 |"),
            "{md}"
        );
        assert!(
            md.contains("| 1000 | 90.00 (89.00) | 80.00 (79.00) |"),
            "{md}"
        );
        assert!(md.contains("| 5000 | – | 85.00 (84.00) |"), "{md}");
    }

    #[test]
    fn bad_flags_are_refused() {
        let args = |a: &[&str]| -> Result<Args> {
            let cli = <crate::cli::Cli as clap::Parser>::try_parse_from(
                ["reproduce", "layers"].iter().chain(a),
            )?;
            match cli.command {
                Some(crate::cli::Command::Layers(cli)) => cli.into_args(),
                _ => Err("not `layers`".into()),
            }
        };
        assert!(args(&["--train", "0"]).is_err());
        assert!(args(&["--layers", "x"]).is_err());
        assert!(args(&["--layers"]).is_err());
        assert!(args(&["--nope", "1"]).is_err());
        let ok = args(&["--layers", "1,3", "--train", "200"]).unwrap();
        assert_eq!((ok.layers, ok.train), (vec![1, 3], vec![200]));
        let defaults = args(&[]).unwrap();
        assert_eq!(defaults.out, PathBuf::from("runs/layers"));
        assert_eq!(defaults.task, "brown-pos");
        assert_eq!(
            (defaults.layers, defaults.train),
            (vec![2, 3, 4, 5, 6], vec![5000])
        );
    }
}
