//! Training checkpoints on disk, written atomically as a set.
//!
//! ```text
//! <dir>/
//!   checkpoints/step-000120/   model.bpk (burn ModuleRecord), optim.bpk (OptimizerRecord),
//!                              state.json (TrainerState), sha256.json (the records' sums)
//!   latest                     the name of the newest complete checkpoint
//!   best/                      model.bpk + state.json (+ sha256.json) of the best evaluation
//!   evaluations.jsonl          one line per evaluation
//!   lock                       held (advisory lock) by the run using the folder
//! ```
//!
//! A checkpoint directory is written under a temporary name and renamed into place, and
//! `latest` is replaced by a rename after that, so a run killed at any moment leaves the previous
//! checkpoint intact. `best/` is swapped in three renames (the old one aside, the new one in,
//! then the old one deleted); a run killed between them leaves `best.old`, which the next start
//! puts back or deletes. The next start also deletes the temporary folders of killed runs.
//! `latest` must name a `step-NNNNNN` folder inside `checkpoints/`: any other content (a path,
//! `..`) is refused, so a tampered pointer can never make a save delete a folder elsewhere.
//! One run at a time: the folder's lock is taken when the run starts, and a second run on the
//! same folder gets [`TrainError::Locked`]. Module records keep burn's parameter ids, which the optimizer state is keyed
//! by: resume always goes through these records, never through HF or PEFT exports.
//!
//! burn decodes a record without checking it (a flipped bit in `optim.bpk` can make it panic,
//! or load wrong moments), so each folder keeps the sha256 of its records in `sha256.json`,
//! and a resume checks them before it decodes anything: a damaged record is a
//! [`TrainError::Format`] naming the file. Folders written before the sums existed load
//! unchecked.

use std::fs;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::optim::record::OptimizerRecord;
use burn::store::ModuleRecord;
use serde::{Deserialize, Serialize};

use crate::error::{io_err, write_atomic};
use crate::teacher::cache::sha256_file;
use crate::{Result, TrainConfig, TrainError};

/// One evaluation of the dev metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Optimizer steps taken before the evaluation.
    pub step: usize,
    /// The dev metric (higher is better).
    pub metric: f64,
    /// Mean training loss since the previous evaluation.
    pub train_loss: f64,
    /// The learning rate of the last step (of the parameters in no named group).
    pub lr: f64,
}

/// Where a run stands: everything besides the model and optimizer a resume needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// The configuration of the run (a resume with another one is refused).
    pub config: TrainConfig,
    /// Optimizer steps taken.
    pub step: usize,
    /// Best dev metric so far and the step it was reached at.
    pub best: Option<(f64, usize)>,
    /// Evaluations since the best one (for early stopping).
    pub evaluations_since_best: usize,
    /// Every evaluation so far.
    pub history: Vec<Evaluation>,
    /// Loss of every optimizer step so far.
    pub losses: Vec<f64>,
    /// Data-parallel replicas of the run (a resume on another number is refused).
    #[serde(default = "one")]
    pub replicas: usize,
}

fn one() -> usize {
    1
}

/// The checkpoint folder of a run, locked while this value lives.
#[derive(Debug)]
pub(crate) struct CheckpointDir {
    root: PathBuf,
    /// Holds the advisory lock on `root/lock`; dropping it releases the lock.
    _lock: fs::File,
}

/// Whether `name` is a checkpoint folder name [`CheckpointDir::save`] writes.
fn is_checkpoint_name(name: &str) -> bool {
    name.strip_prefix("step-")
        .is_some_and(|d| d.len() >= 6 && d.bytes().all(|b| b.is_ascii_digit()))
}

impl CheckpointDir {
    /// Opens (creating) the folder, takes its lock and tidies what a killed run left.
    pub(crate) fn new(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        fs::create_dir_all(root.join("checkpoints")).map_err(io_err(&root))?;
        let lock_path = root.join("lock");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(TrainError::Locked { path: root }),
            Err(fs::TryLockError::Error(e)) => return Err(io_err(&lock_path)(e)),
        }
        let dir = Self { root, _lock: lock };
        dir.recover()?;
        Ok(dir)
    }

    /// Finishes or undoes an interrupted `best/` swap and deletes temporary folders. Only
    /// called with the lock held, so no live run owns what it deletes.
    fn recover(&self) -> Result<()> {
        let best = self.root.join("best");
        let old = self.root.join("best.old");
        if old.exists() {
            if best.exists() {
                fs::remove_dir_all(&old).map_err(io_err(&old))?;
            } else {
                fs::rename(&old, &best).map_err(io_err(&best))?;
            }
        }
        for parent in [self.root.clone(), self.root.join("checkpoints")] {
            let entries = fs::read_dir(&parent).map_err(io_err(&parent))?;
            for entry in entries {
                let entry = entry.map_err(io_err(&parent))?;
                let name = entry.file_name();
                let name = name.to_string_lossy();
                let ours = name.starts_with("best.tmp-") || name.starts_with("step-");
                if ours && name.contains(".tmp-") && entry.path().is_dir() {
                    let path = entry.path();
                    fs::remove_dir_all(&path).map_err(io_err(&path))?;
                }
            }
        }
        Ok(())
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// The newest complete checkpoint, if any.
    pub(crate) fn latest(&self) -> Result<Option<PathBuf>> {
        let pointer = self.root.join("latest");
        match fs::read_to_string(&pointer) {
            Ok(name) => {
                let name = name.trim();
                if !is_checkpoint_name(name) {
                    return Err(format_err(
                        &pointer,
                        format!(
                            "names `{name}`, not a checkpoint of this folder (expected \
                             step-NNNNNN, a folder inside checkpoints/)"
                        ),
                    ));
                }
                let dir = self.root.join("checkpoints").join(name);
                if !dir.join("state.json").is_file() {
                    return Err(format_err(
                        &pointer,
                        "names a checkpoint that does not exist",
                    ));
                }
                Ok(Some(dir))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&pointer)(e)),
        }
    }

    /// Writes a checkpoint of `step` and points `latest` at it; removes the previous one.
    pub(crate) fn save<M: Module + Clone>(
        &self,
        model: &M,
        optim: &ModuleOptimizer,
        state: &TrainerState,
    ) -> Result<()> {
        let name = format!("step-{:06}", state.step);
        let dir = self.root.join("checkpoints").join(&name);
        let previous = self.latest()?;
        write_dir(&dir, |tmp| {
            save_record(model.clone().into_record(), &tmp.join("model.bpk"))?;
            let path = tmp.join("optim.bpk");
            optim
                .save(&path)
                .map_err(|e| format_err(&path, format!("cannot write optimizer state: {e}")))?;
            write_json(&tmp.join("state.json"), state)?;
            write_sums(tmp, &["model.bpk", "optim.bpk"])
        })?;
        write_atomic(&self.root.join("latest"), name.as_bytes())?;
        if let Some(prev) = previous.filter(|p| *p != dir) {
            fs::remove_dir_all(&prev).map_err(io_err(&prev))?;
        }
        Ok(())
    }

    /// Writes the best model so far.
    pub(crate) fn save_best<M: Module + Clone>(
        &self,
        model: &M,
        state: &TrainerState,
    ) -> Result<()> {
        let best = self.root.join("best");
        let tmp = self.root.join(format!("best.tmp-{}", std::process::id()));
        fill_dir(&tmp, |tmp| {
            save_record(model.clone().into_record(), &tmp.join("model.bpk"))?;
            write_json(&tmp.join("state.json"), state)?;
            write_sums(tmp, &["model.bpk"])
        })?;
        // Never a moment without a complete `best` or `best.old` (see `recover`).
        let old = self.root.join("best.old");
        if best.exists() {
            fs::rename(&best, &old).map_err(io_err(&old))?;
        }
        fs::rename(&tmp, &best).map_err(io_err(&best))?;
        if old.exists() {
            fs::remove_dir_all(&old).map_err(io_err(&old))?;
        }
        Ok(())
    }

    /// Appends one evaluation to `evaluations.jsonl`.
    pub(crate) fn log(&self, evaluation: &Evaluation) -> Result<()> {
        use std::io::Write;
        let path = self.root.join("evaluations.jsonl");
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let line =
            serde_json::to_string(evaluation).map_err(|e| format_err(&path, e.to_string()))?;
        writeln!(file, "{line}").map_err(io_err(&path))
    }
}

/// The trainer state of a checkpoint written by [`CheckpointDir::save`].
///
/// A resume reads it first (to check the configuration), then the model
/// ([`load_model`] of `model.bpk`), then the optimizer ([`load_optimizer`]), which has to be
/// built for the loaded model's parameter ids: its groups are the record's ids.
pub(crate) fn load_state(dir: &Path) -> Result<TrainerState> {
    let path = dir.join("state.json");
    let text = fs::read_to_string(&path).map_err(io_err(&path))?;
    let state: TrainerState =
        serde_json::from_str(&text).map_err(|e| format_err(&path, e.to_string()))?;
    state
        .check()
        .map_err(|message| format_err(&path, message))?;
    Ok(state)
}

impl TrainerState {
    /// Checks that the counters agree with each other and with the configuration, as every
    /// state a run writes does: a resume trusts them to skip batches and to stop.
    fn check(&self) -> std::result::Result<(), String> {
        let step = self.step;
        if step > self.config.max_steps {
            return Err(format!(
                "step {step} is beyond the configuration's max_steps {}",
                self.config.max_steps
            ));
        }
        if self.losses.len() != step {
            return Err(format!(
                "{} losses for step {step}: one per step expected",
                self.losses.len()
            ));
        }
        if self.replicas == 0 {
            return Err("replicas is 0".into());
        }
        let mut last = 0;
        for e in &self.history {
            if e.step <= last || e.step > step {
                return Err(format!(
                    "the evaluation at step {} is out of order or after step {step}",
                    e.step
                ));
            }
            last = e.step;
        }
        if let Some((metric, at)) = self.best
            && !self
                .history
                .iter()
                .any(|e| e.step == at && e.metric == metric)
        {
            return Err(format!(
                "the best metric {metric} at step {at} is not one of the evaluations"
            ));
        }
        if self.evaluations_since_best > self.history.len() {
            return Err(format!(
                "{} evaluations since the best of {}",
                self.evaluations_since_best,
                self.history.len()
            ));
        }
        Ok(())
    }
}

/// Loads the optimizer state of a checkpoint written by [`CheckpointDir::save`] into `optim`.
/// Each parameter's state goes to the group of `optim` its id belongs to.
pub(crate) fn load_optimizer(dir: &Path, optim: ModuleOptimizer) -> Result<ModuleOptimizer> {
    let path = dir.join("optim.bpk");
    check_sum(&path)?;
    let record = OptimizerRecord::load(&path)
        .map_err(|e| format_err(&path, format!("cannot read optimizer state: {e}")))?;
    // burn panics on a record whose tensors lack a parameter id; the sums keep damaged files
    // away, this keeps a well-summed but foreign one from taking the process down.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| optim.load_record(record)))
        .map_err(|_| format_err(&path, "the optimizer state is not one this library wrote"))
}

/// Loads a module record into `model`.
pub(crate) fn load_model<M: Module>(path: &Path, model: M) -> Result<M> {
    check_sum(path)?;
    let record = ModuleRecord::load(path)
        .map_err(|e| format_err(path, format!("cannot read module record: {e}")))?;
    model
        .try_load_record(record)
        .map_err(|e| format_err(path, format!("does not fit the model: {e}")))
}

fn save_record(record: ModuleRecord, path: &Path) -> Result<()> {
    record
        .save(path)
        .map_err(|e| format_err(path, format!("cannot write module record: {e}")))
}

/// The file of a checkpoint folder that holds the sha256 of its records.
const SUMS: &str = "sha256.json";

/// Writes the sha256 of the `files` of `dir` into its [`SUMS`] file.
fn write_sums(dir: &Path, files: &[&str]) -> Result<()> {
    let mut sums = std::collections::BTreeMap::new();
    for file in files {
        sums.insert(*file, sha256_file(&dir.join(file))?);
    }
    write_json(&dir.join(SUMS), &sums)
}

/// Checks `path` against the sum its folder's [`SUMS`] file holds for it; a folder without
/// the file (written before the sums existed) is not checked.
fn check_sum(path: &Path) -> Result<()> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Ok(());
    };
    let sums_path = dir.join(SUMS);
    let text = match fs::read_to_string(&sums_path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(&sums_path)(e)),
    };
    let sums: std::collections::BTreeMap<String, String> =
        serde_json::from_str(&text).map_err(|e| format_err(&sums_path, e.to_string()))?;
    let expected = sums
        .get(name)
        .ok_or_else(|| format_err(&sums_path, format!("no sha256 for {name}")))?;
    let found = sha256_file(path)?;
    if found != *expected {
        return Err(format_err(
            path,
            format!("damaged: its sha256 is {found}, {SUMS} says {expected}"),
        ));
    }
    Ok(())
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| format_err(path, e.to_string()))?;
    fs::write(path, text).map_err(io_err(path))
}

/// Creates `tmp` afresh and fills it with `fill`.
fn fill_dir(tmp: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    if tmp.exists() {
        fs::remove_dir_all(tmp).map_err(io_err(tmp))?;
    }
    fs::create_dir_all(tmp).map_err(io_err(tmp))?;
    fill(tmp)
}

/// Fills a temporary sibling of `dir` with `fill`, then renames it to `dir` (a new
/// checkpoint step: `dir` exists only if a killed run wrote the same step, and is replaced).
fn write_dir(dir: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = dir.with_extension(format!("tmp-{}", std::process::id()));
    fill_dir(&tmp, fill)?;
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(io_err(dir))?;
    }
    fs::rename(&tmp, dir).map_err(io_err(dir))
}

fn format_err(path: &Path, message: impl Into<String>) -> TrainError {
    TrainError::Format {
        path: path.to_path_buf(),
        message: message.into(),
    }
}
