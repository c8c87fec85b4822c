//! Saving a pre-finetuned encoder as a Hugging Face model directory with PEFT groups, and
//! loading it back.

use std::path::Path;

use burn::tensor::Device;
use lora_bert_adapters::{AdaptedModel, Lora};
use lora_bert_encoder::{BertModel, CheckpointError};

use super::{GROUPS_DIR, PfModel};
use crate::{Result, TrainError};

fn checkpoint_err(dir: &Path) -> impl FnOnce(CheckpointError) -> TrainError + '_ {
    move |e| match e {
        CheckpointError::Io { path, source } => TrainError::Io { path, source },
        other => TrainError::Format {
            path: dir.to_path_buf(),
            message: other.to_string(),
        },
    }
}

/// Saves the pre-finetuned encoder into `dir` (created if needed): the backbone as a Hugging
/// Face model directory (`config.json`, `model.safetensors`) and every group in PEFT's layout
/// under `dir/groups/<name>`. The objectives' heads are not saved.
///
/// # Errors
///
/// I/O and format errors of the files.
pub fn save_pf(pf: &PfModel, dir: impl AsRef<Path>) -> Result<()> {
    let dir = dir.as_ref();
    let names: Vec<String> = pf.model.group_names().map(str::to_owned).collect();
    for name in &names {
        pf.model.save_group(name, dir.join(GROUPS_DIR).join(name))?;
    }
    pf.model
        .clone()
        .into_backbone()
        .save(dir)
        .map_err(checkpoint_err(dir))
}

/// Loads what [`save_pf`] wrote: the backbone with every group of `dir/groups` (in name
/// order), on `device`. Each group keeps its name, so `model.route("ner")` works as after
/// training.
///
/// # Errors
///
/// I/O and format errors of the files, [`TrainError::Adapter`] for a group that does not fit
/// the backbone.
pub fn load_pf(dir: impl AsRef<Path>, device: &Device) -> Result<AdaptedModel<Lora>> {
    let dir = dir.as_ref();
    let (backbone, _report) = BertModel::load(dir, device).map_err(checkpoint_err(dir))?;
    let mut model = AdaptedModel::<Lora>::new(backbone);
    let groups = dir.join(GROUPS_DIR);
    if groups.is_dir() {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&groups).map_err(crate::error::io_err(&groups))? {
            let entry = entry.map_err(crate::error::io_err(&groups))?;
            if entry.path().is_dir() {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        names.sort();
        for name in names {
            model.load_group(&name, groups.join(&name))?;
        }
    }
    Ok(model)
}
