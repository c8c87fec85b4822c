//! A head's files: `head_config.json`, `head.safetensors` and `labels.json`.

use std::path::{Path, PathBuf};

use burn::tensor::Tensor;
use lora_bert_data::LabelVocab;
use lora_bert_encoder::CheckpointError;
use lora_bert_encoder::tensor_file::{self, StoredTensor, write_safetensors};
use serde::{Deserialize, Serialize};

use super::classification::ClassifierConfig;
use super::{
    CONFIG_FILE, LABELS_FILE, ProjectionHeadConfig, SequenceClassificationHeadConfig,
    TokenClassificationHeadConfig, WEIGHTS_FILE,
};
use crate::error::{io_err, write_atomic};
use crate::{AppError, Result};

/// `head_config.json`: the config tagged with the kind of head.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "head", rename_all = "snake_case")]
pub(super) enum HeadFile {
    TokenClassification(TokenClassificationHeadConfig),
    SequenceClassification(SequenceClassificationHeadConfig),
    Projection(ProjectionHeadConfig),
}

impl HeadFile {
    fn kind(&self) -> &'static str {
        match self {
            HeadFile::TokenClassification(_) => TokenClassificationHeadConfig::KIND,
            HeadFile::SequenceClassification(_) => SequenceClassificationHeadConfig::KIND,
            HeadFile::Projection(_) => "projection",
        }
    }
}

pub(super) fn wrong_kind(dir: &Path, file: &HeadFile, expected: &str) -> AppError {
    AppError::Format {
        path: dir.join(CONFIG_FILE),
        message: format!("holds a {} head, not a {expected} head", file.kind()),
    }
}

pub(super) fn format_err(path: &Path, e: AppError) -> AppError {
    AppError::Format {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// A tensor as saved: its name and its stored form.
pub(super) type NamedTensor = (String, StoredTensor);

pub(super) fn named<const D: usize>(name: String, tensor: Tensor<D>) -> Result<NamedTensor> {
    let shape = tensor.dims().to_vec();
    let values = tensor
        .try_into_vec_as::<f32>()
        .map_err(|e| AppError::InvalidArgument {
            what: "head weights",
            message: format!("cannot read `{name}` as f32: {e:?}"),
        })?;
    Ok((name, StoredTensor::f32(shape, &values)))
}

pub(super) fn save_head(
    dir: &Path,
    file: &HeadFile,
    tensors: Vec<NamedTensor>,
    labels: Option<(&LabelVocab, usize)>,
) -> Result<()> {
    if let Some((vocab, n)) = labels
        && vocab.len() != n
    {
        return Err(AppError::InvalidArgument {
            what: "labels",
            message: format!("{} labels for a head of {n} classes", vocab.len()),
        });
    }
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let weights_path = dir.join(WEIGHTS_FILE);
    write_safetensors(&weights_path, tensors.iter().map(|(n, t)| (n, t)), None)
        .map_err(|e| file_error(e, &weights_path))?;
    if let Some((vocab, _)) = labels {
        vocab.save(dir.join(LABELS_FILE))?;
    }
    let mut json = serde_json::to_vec_pretty(file).map_err(|e| invalid("head config", e))?;
    json.push(b'\n');
    write_atomic(&dir.join(CONFIG_FILE), &json)
}

fn invalid(what: &'static str, e: impl std::fmt::Display) -> AppError {
    AppError::InvalidArgument {
        what,
        message: e.to_string(),
    }
}

pub(super) fn load_head(dir: &Path) -> Result<(HeadFile, TensorFile)> {
    let config_path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&config_path).map_err(io_err(&config_path))?;
    let file: HeadFile = serde_json::from_str(&text).map_err(|e| AppError::Format {
        path: config_path.clone(),
        message: e.to_string(),
    })?;
    let weights_path = dir.join(WEIGHTS_FILE);
    let bytes = std::fs::read(&weights_path).map_err(io_err(&weights_path))?;
    Ok((file, TensorFile::parse(&bytes, weights_path)?))
}

pub(super) fn load_labels(dir: &Path, num_labels: usize) -> Result<LabelVocab> {
    let path = dir.join(LABELS_FILE);
    let vocab = LabelVocab::load(&path)?;
    if vocab.len() != num_labels {
        return Err(AppError::Format {
            path,
            message: format!(
                "{} labels, but the head has num_labels = {num_labels}",
                vocab.len()
            ),
        });
    }
    Ok(vocab)
}

/// The tensors of a head's weights file, taken one by one (the encoder crate's reader, its
/// errors in this crate's terms).
pub(super) struct TensorFile(tensor_file::TensorFile);

impl TensorFile {
    pub(super) fn parse(bytes: &[u8], path: PathBuf) -> Result<Self> {
        tensor_file::TensorFile::parse(path.clone(), bytes)
            .map(Self)
            .map_err(|e| file_error(e, &path))
    }

    /// The values of tensor `name`, which must have shape `shape` (and, as every tensor the
    /// reader accepts, finite values).
    pub(super) fn take(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        self.0
            .take(name, shape)
            .map_err(|e| file_error(e, self.0.path()))
    }

    /// Fails when a tensor was not taken.
    pub(super) fn finish(self) -> Result<()> {
        let path = self.0.path().to_owned();
        self.0.finish().map_err(|e| file_error(e, &path))
    }
}

/// A weights file's error as this crate reports it: [`AppError::Format`] naming the file
/// (with the tensor in the message), [`AppError::Shape`] for a tensor of another shape.
fn file_error(e: CheckpointError, file: &Path) -> AppError {
    let format = |message: String| AppError::Format {
        path: file.to_owned(),
        message,
    };
    match e {
        CheckpointError::Io { path, source } => AppError::Io { path, source },
        CheckpointError::Shape {
            path,
            name,
            expected,
            actual,
        } => AppError::Shape {
            what: format!("tensor `{name}` in {}", path.display()),
            expected,
            found: actual,
        },
        CheckpointError::Corrupt { message, .. } => {
            format(format!("not a valid safetensors file: {message}"))
        }
        CheckpointError::Missing { names, .. } => {
            format(format!("missing tensor `{}`", names.join("`, `")))
        }
        CheckpointError::Unexpected { names, .. } => {
            format(format!("unexpected tensors: {}", names.join(", ")))
        }
        CheckpointError::Dtype { name, dtype, .. } => format(format!(
            "tensor `{name}` has dtype {dtype}, expected a float dtype"
        )),
        CheckpointError::NonFinite { name, .. } => {
            format(format!("tensor `{name}` has non-finite values"))
        }
        other => format(other.to_string()),
    }
}
