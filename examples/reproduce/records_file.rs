//! A report's records, as committed next to it. `STEM-runs.json` holds every run record
//! without its per-item counts, one record per line: what a reader diffs, and what
//! `scripts/check_results.py` recomputes the tables from. `STEM-items.json.gz` holds the
//! counts the bootstrap intervals are drawn from, gzipped, with each run of counts equal to
//! another seed's written once. Whole test splits hold thousands of items per record: the
//! full run's counts take 9 MB as JSON, about a tenth of that gzipped.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use lora_bert::metrics::bootstrap::Counts;
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::runs::{Protocol, RunRecord, compact_counts, protocol_name, write_bytes};

/// The counts of one record in an items file, under the record's key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordItems {
    pub setting: String,
    pub protocol: Protocol,
    pub arm: String,
    pub task: String,
    pub fraction: f64,
    pub pf_seed: u64,
    pub seed: u64,
    #[serde(
        default,
        with = "compact_counts",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub items: Vec<Counts>,
    /// The counts are those of the entry of seed `k` with the same key otherwise (a probe on
    /// all the training data does not depend on the seed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_seed: Option<u64>,
}

/// Setting, protocol, arm, task, fraction (bits) and pre-finetuning seed: what entries that
/// may share counts have in common.
type Key = (String, &'static str, String, String, u64, u64);

fn key(setting: &str, protocol: Protocol, arm: &str, task: &str, fraction: f64, pf: u64) -> Key {
    (
        setting.to_owned(),
        protocol_name(protocol),
        arm.to_owned(),
        task.to_owned(),
        fraction.to_bits(),
        pf,
    )
}

fn record_key(r: &RunRecord) -> Key {
    key(
        &r.setting, r.protocol, &r.arm, &r.task, r.fraction, r.pf_seed,
    )
}

/// Each record's counts, a run equal to an earlier record's of the same key written as a
/// reference to that record's seed.
pub fn shared_items(records: &[RunRecord]) -> Vec<RecordItems> {
    let mut seen: HashMap<Key, Vec<(u64, &[Counts])>> = HashMap::new();
    records
        .iter()
        .map(|r| {
            let earlier = seen.entry(record_key(r)).or_default();
            let as_seed = earlier
                .iter()
                .find(|(_, items)| !r.items.is_empty() && *items == r.items.as_slice())
                .map(|(seed, _)| *seed);
            if as_seed.is_none() {
                earlier.push((r.seed, &r.items));
            }
            RecordItems {
                setting: r.setting.clone(),
                protocol: r.protocol,
                arm: r.arm.clone(),
                task: r.task.clone(),
                fraction: r.fraction,
                pf_seed: r.pf_seed,
                seed: r.seed,
                items: if as_seed.is_some() {
                    Vec::new()
                } else {
                    r.items.clone()
                },
                as_seed,
            }
        })
        .collect()
}

/// A JSON array with one compact element per line.
fn json_lines<T: Serialize>(values: &[T]) -> Result<Vec<u8>> {
    let mut out = b"[\n".to_vec();
    for (i, v) in values.iter().enumerate() {
        serde_json::to_writer(&mut out, v)?;
        out.extend_from_slice(if i + 1 < values.len() { b",\n" } else { b"\n" });
    }
    out.extend_from_slice(b"]\n");
    Ok(out)
}

/// Writes `records` to `runs` (without their counts) and their counts to `items`, each file
/// atomically.
pub fn write(records: &[RunRecord], runs: &Path, items: &Path) -> Result<()> {
    let bare: Vec<RunRecord> = records
        .iter()
        .map(|r| RunRecord {
            items: Vec::new(),
            ..r.clone()
        })
        .collect();
    write_bytes(runs, &json_lines(&bare)?)?;
    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    gz.write_all(&json_lines(&shared_items(records))?)?;
    write_bytes(items, &gz.finish()?)
}

/// The records of files written by [`write`], with their counts. An error names an entry
/// without a record, a record without an entry, or a reference to a seed without counts.
pub fn read(runs: &Path, items: &Path) -> Result<Vec<RunRecord>> {
    let mut records: Vec<RunRecord> = serde_json::from_slice(&std::fs::read(runs)?)
        .map_err(|e| format!("{}: not a records file: {e}", runs.display()))?;
    let mut json = Vec::new();
    GzDecoder::new(std::fs::File::open(items)?)
        .read_to_end(&mut json)
        .map_err(|e| format!("{}: not gzip: {e}", items.display()))?;
    let entries: Vec<RecordItems> = serde_json::from_slice(&json)
        .map_err(|e| format!("{}: not an items file: {e}", items.display()))?;
    let mut by_key: HashMap<(Key, u64), &RecordItems> = HashMap::new();
    for e in &entries {
        let k = key(
            &e.setting, e.protocol, &e.arm, &e.task, e.fraction, e.pf_seed,
        );
        if by_key.insert((k, e.seed), e).is_some() {
            return Err(format!("{}: two entries for {}", items.display(), name(e)).into());
        }
    }
    if entries.len() != records.len() {
        return Err(format!(
            "{} holds {} entries for the {} records of {}",
            items.display(),
            entries.len(),
            records.len(),
            runs.display()
        )
        .into());
    }
    for r in &mut records {
        let k = record_key(r);
        let Some(mut e) = by_key.get(&(k.clone(), r.seed)).copied() else {
            return Err(format!("{}: no entry for {}", items.display(), record_name(r)).into());
        };
        if let Some(seed) = e.as_seed {
            e = by_key
                .get(&(k, seed))
                .copied()
                .filter(|e| e.as_seed.is_none())
                .ok_or_else(|| {
                    format!(
                        "{}: {} refers to seed {seed}, which has no counts",
                        items.display(),
                        name(e)
                    )
                })?;
        }
        r.items = e.items.clone();
    }
    Ok(records)
}

fn name(e: &RecordItems) -> String {
    format!(
        "{} {} {} {}% pf seed {} seed {}",
        e.setting,
        e.arm,
        e.task,
        (e.fraction * 100.0).round(),
        e.pf_seed,
        e.seed
    )
}

fn record_name(r: &RunRecord) -> String {
    format!(
        "{} {} {} {}% pf seed {} seed {}",
        r.setting,
        r.arm,
        r.task,
        (r.fraction * 100.0).round(),
        r.pf_seed,
        r.seed
    )
}

#[cfg(test)]
mod tests {
    use lora_bert::metrics::bootstrap::Counts;

    use crate::runs::{Protocol, RECORD_VERSION, RunRecord};

    fn record(seed: u64, fraction: f64, right: bool) -> RunRecord {
        RunRecord {
            version: RECORD_VERSION,
            setting: "default".into(),
            arm: "no-pf".into(),
            task: "t".into(),
            family: "TC".into(),
            fraction,
            seed,
            protocol: Protocol::Probe,
            metric: "accuracy".into(),
            test: if right { 1.0 } else { 0.5 },
            dev_best: 0.5,
            best_step: 1,
            steps: 1,
            train_examples: 1,
            dev_examples: 1,
            test_examples: 2,
            seconds: 0.0,
            pf_seed: 0,
            lr: None,
            converged: Some(true),
            items: vec![Counts::unit(right), Counts::unit(true)],
        }
    }

    fn records() -> Vec<RunRecord> {
        vec![
            record(0, 1.0, true),
            record(1, 1.0, true),
            record(2, 1.0, false),
            record(1, 0.1, true),
        ]
    }

    #[test]
    fn equal_items_of_one_arm_task_and_fraction_are_written_once() {
        let records = records();
        let shared = super::shared_items(&records);
        assert_eq!(shared[0].items, records[0].items);
        assert_eq!(shared[1].as_seed, Some(0));
        assert!(shared[1].items.is_empty());
        // Other items, or another fraction, are written out.
        for i in [2, 3] {
            assert_eq!(shared[i].as_seed, None);
            assert_eq!(shared[i].items, records[i].items);
        }
    }

    #[test]
    fn records_round_trip_through_the_two_files() {
        let dir = tempfile::tempdir().unwrap();
        let (runs, items) = (
            dir.path().join("r-runs.json"),
            dir.path().join("r-items.json.gz"),
        );
        let records = records();
        super::write(&records, &runs, &items).unwrap();
        assert_eq!(super::read(&runs, &items).unwrap(), records);
        // The runs file is a record per line, without counts.
        let text = std::fs::read_to_string(&runs).unwrap();
        assert_eq!(text.lines().count(), records.len() + 2);
        assert!(!text.contains("\"items\""));

        // An items file of other records is refused, naming what is missing.
        super::write(&records[..3], &dir.path().join("x.json"), &items).unwrap();
        let err = super::read(&runs, &items).unwrap_err().to_string();
        assert!(err.contains("3 entries for the 4 records"), "{err}");
        // So is one that is not gzip.
        std::fs::write(&items, b"[]").unwrap();
        let err = super::read(&runs, &items).unwrap_err().to_string();
        assert!(err.contains("not gzip"), "{err}");
    }
}
