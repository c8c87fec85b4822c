//! Training checkpoints on disk, written atomically as a set.
//!
//! ```text
//! <dir>/
//!   checkpoints/step-000120/   model.bpk (burn ModuleRecord), optim.bpk (OptimizerRecord),
//!                              state.json (TrainerState)
//!   latest                     the name of the newest complete checkpoint
//!   best/                      model.bpk + state.json of the best evaluation so far
//!   evaluations.jsonl          one line per evaluation
//! ```
//!
//! A checkpoint directory is written under a temporary name and renamed into place, and
//! `latest` is replaced by a rename after that, so a run killed at any moment leaves the previous
//! checkpoint intact. Module records keep burn's parameter ids, which the optimizer state is keyed
//! by: resume always goes through these records, never through HF or PEFT exports.

use std::fs;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::optim::record::OptimizerRecord;
use burn::store::ModuleRecord;
use serde::{Deserialize, Serialize};

use crate::error::{io_err, write_atomic};
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

/// The checkpoint folder of a run.
#[derive(Debug, Clone)]
pub(crate) struct CheckpointDir {
    root: PathBuf,
}

impl CheckpointDir {
    pub(crate) fn new(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        fs::create_dir_all(root.join("checkpoints")).map_err(io_err(&root))?;
        Ok(Self { root })
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// The newest complete checkpoint, if any.
    pub(crate) fn latest(&self) -> Result<Option<PathBuf>> {
        let pointer = self.root.join("latest");
        match fs::read_to_string(&pointer) {
            Ok(name) => {
                let dir = self.root.join("checkpoints").join(name.trim());
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
            write_json(&tmp.join("state.json"), state)
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
        write_dir(&self.root.join("best"), |tmp| {
            save_record(model.clone().into_record(), &tmp.join("model.bpk"))?;
            write_json(&tmp.join("state.json"), state)
        })
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
    serde_json::from_str(&text).map_err(|e| format_err(&path, e.to_string()))
}

/// Loads the optimizer state of a checkpoint written by [`CheckpointDir::save`] into `optim`.
/// Each parameter's state goes to the group of `optim` its id belongs to.
pub(crate) fn load_optimizer(dir: &Path, optim: ModuleOptimizer) -> Result<ModuleOptimizer> {
    let path = dir.join("optim.bpk");
    let record = OptimizerRecord::load(&path)
        .map_err(|e| format_err(&path, format!("cannot read optimizer state: {e}")))?;
    Ok(optim.load_record(record))
}

/// Loads a module record into `model`.
pub(crate) fn load_model<M: Module>(path: &Path, model: M) -> Result<M> {
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

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| format_err(path, e.to_string()))?;
    fs::write(path, text).map_err(io_err(path))
}

/// Fills a temporary sibling of `dir` with `fill`, then replaces `dir` by it.
fn write_dir(dir: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = dir.with_extension(format!("tmp-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    }
    fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
    fill(&tmp)?;
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
