//! PEFT's file layout: `adapter_config.json` and `adapter_model.safetensors`.
//!
//! A group is saved as PEFT saves one adapter of a `PeftModel` wrapping a transformers
//! `BertModel`: tensor names `base_model.model.<module path>.<scheme tensor>` (for LoRA
//! `...attention.self.query.lora_A.weight`, `[r, in]`, and `lora_B.weight`, `[out, r]`), and
//! a config with PEFT's field names. Files saved from a model with a task head
//! (`base_model.model.bert.encoder...`) load too.
//!
//! Reading is strict: a field lora-bert does not implement is an error unless its value means
//! "off" in PEFT (null, false, an empty object or list), so an adapter never loads silently
//! wrong.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use lora_bert_encoder::CheckpointError;
use lora_bert_encoder::tensor_file::{self, StoredTensor, write_atomically};
use serde_json::{Map, Value};

use crate::error::AdapterError;
use crate::targets::{Layers, ModuleSelector, Targets};

/// File name of the configuration.
pub const CONFIG_FILE: &str = "adapter_config.json";
/// File name of the weights.
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// The prefix PEFT puts before module paths.
pub const PEFT_PREFIX: &str = "base_model.model.";

/// Fields PEFT writes that carry no meaning for inference or that describe the file itself.
const INFORMATIONAL: &[&str] = &[
    "auto_mapping",
    "base_model_name_or_path",
    "inference_mode",
    "megatron_core",
    "peft_version",
    "revision",
    "task_type",
];

/// The fields of an `adapter_config.json` not yet taken by a reader.
///
/// A scheme's [`AdapterConfig::from_peft_fields`](crate::AdapterConfig::from_peft_fields)
/// takes what it understands; [`PeftFields::finish`] then rejects whatever is left with a
/// value that means "on".
#[derive(Debug)]
pub struct PeftFields {
    path: PathBuf,
    fields: Map<String, Value>,
}

impl PeftFields {
    /// Wraps the parsed JSON object of `path`.
    pub fn new(path: impl Into<PathBuf>, fields: Map<String, Value>) -> Self {
        Self {
            path: path.into(),
            fields,
        }
    }

    /// The file the fields come from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes and returns a field (`None` if absent or null).
    pub fn take(&mut self, name: &str) -> Option<Value> {
        self.fields.remove(name).filter(|v| !v.is_null())
    }

    fn wrong_type(&self, name: &str, value: &Value, expected: &str) -> AdapterError {
        AdapterError::ConfigSyntax {
            path: self.path.clone(),
            message: format!("field `{name}` = {value} should be {expected}"),
        }
    }

    /// A non-negative integer field.
    pub fn usize(&mut self, name: &str) -> Result<Option<usize>, AdapterError> {
        match self.take(name) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) => Ok(Some(n as usize)),
                None => Err(self.wrong_type(name, &v, "a non-negative integer")),
            },
        }
    }

    /// A number field.
    pub fn f64(&mut self, name: &str) -> Result<Option<f64>, AdapterError> {
        match self.take(name) {
            None => Ok(None),
            Some(v) => match v.as_f64() {
                Some(n) => Ok(Some(n)),
                None => Err(self.wrong_type(name, &v, "a number")),
            },
        }
    }

    /// A boolean field.
    pub fn bool(&mut self, name: &str) -> Result<Option<bool>, AdapterError> {
        match self.take(name) {
            None => Ok(None),
            Some(v) => match v.as_bool() {
                Some(b) => Ok(Some(b)),
                None => Err(self.wrong_type(name, &v, "true or false")),
            },
        }
    }

    /// A module selector field (a list of names, a regular expression, or `all-linear`).
    pub fn selector(&mut self, name: &str) -> Result<Option<ModuleSelector>, AdapterError> {
        match self.take(name) {
            None => Ok(None),
            Some(v) => match ModuleSelector::from_json(&v) {
                Some(s) => Ok(Some(s)),
                None => Err(self.wrong_type(name, &v, "a list of module names or a string")),
            },
        }
    }

    /// The error for a field whose value lora-bert does not implement.
    pub fn unsupported(&self, field: &str, value: &Value, reason: &str) -> AdapterError {
        AdapterError::Unsupported {
            path: self.path.clone(),
            field: field.to_owned(),
            value: value.to_string(),
            reason: reason.to_owned(),
        }
    }

    /// Takes `field` and requires it to be absent or one of `allowed`.
    pub fn expect_one_of(
        &mut self,
        field: &str,
        allowed: &[Value],
        reason: &str,
    ) -> Result<(), AdapterError> {
        match self.take(field) {
            Some(v) if !allowed.contains(&v) && !is_off(&v) => {
                Err(self.unsupported(field, &v, reason))
            }
            _ => Ok(()),
        }
    }

    /// `target_modules`, `exclude_modules`, `layers_to_transform` and `layers_pattern`, the
    /// fields every scheme shares.
    pub fn targets(&mut self) -> Result<Targets, AdapterError> {
        let Some(modules) = self.selector("target_modules")? else {
            return Err(AdapterError::ConfigSyntax {
                path: self.path.clone(),
                message: "field `target_modules` is missing".into(),
            });
        };
        let exclude = self.selector("exclude_modules")?;
        let layers = match self.take("layers_to_transform") {
            None => Layers::All,
            Some(Value::Array(a)) if a.is_empty() => Layers::All,
            Some(v) => {
                let list = match &v {
                    Value::Number(n) => n.as_u64().map(|n| vec![n as usize]),
                    Value::Array(items) => items
                        .iter()
                        .map(|x| x.as_u64().map(|n| n as usize))
                        .collect(),
                    _ => None,
                };
                match list {
                    Some(list) => Layers::Only(list),
                    None => {
                        return Err(self.wrong_type("layers_to_transform", &v, "layer indices"));
                    }
                }
            }
        };
        if let Some(pattern) = self.take("layers_pattern") {
            let ok = match &pattern {
                Value::String(s) => s.is_empty() || s == "layer",
                Value::Array(items) => items.iter().all(|p| p == "layer"),
                _ => false,
            };
            if !ok {
                return Err(self.unsupported(
                    "layers_pattern",
                    &pattern,
                    "a BERT encoder's layers are `encoder.layer.N`",
                ));
            }
        }
        if matches!(modules, ModuleSelector::Regex(_)) && !matches!(layers, Layers::All) {
            return Err(self.unsupported(
                "layers_to_transform",
                &Value::from(format!("{layers:?}")),
                "PEFT refuses layers_to_transform with a regular expression as target_modules",
            ));
        }
        Ok(Targets {
            modules,
            exclude,
            layers,
        })
    }

    /// Rejects every field left that holds a value meaning "on"; informational fields pass.
    pub fn finish(mut self) -> Result<(), AdapterError> {
        for name in INFORMATIONAL {
            self.fields.remove(*name);
        }
        match self.fields.iter().find(|(_, v)| !is_off(v)) {
            None => Ok(()),
            Some((field, value)) => Err(self.unsupported(
                field,
                value,
                "lora-bert does not implement this option (fields it does not know are only \
                 accepted when null, false or empty)",
            )),
        }
    }
}

/// Whether a JSON value means "feature not used" in PEFT's configs.
fn is_off(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::Bool(true) => false,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::String(s) => s.is_empty(),
        Value::Number(_) => false,
    }
}

/// Reads `adapter_config.json`: checks `peft_type` and returns the fields (without it) and
/// `base_model_name_or_path`.
pub(crate) fn read_config(
    path: &Path,
    peft_type: &'static str,
) -> Result<(PeftFields, Option<String>), AdapterError> {
    let text = std::fs::read_to_string(path).map_err(|source| AdapterError::Io {
        path: path.to_owned(),
        source,
    })?;
    let value: Value = serde_json::from_str(&text).map_err(|e| AdapterError::ConfigSyntax {
        path: path.to_owned(),
        message: format!("{e}"),
    })?;
    let Value::Object(mut map) = value else {
        return Err(AdapterError::ConfigSyntax {
            path: path.to_owned(),
            message: "the configuration is not a JSON object".into(),
        });
    };
    let found = map
        .remove("peft_type")
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    if found != peft_type {
        return Err(AdapterError::PeftType {
            path: path.to_owned(),
            expected: peft_type,
            found,
        });
    }
    let base = map
        .get("base_model_name_or_path")
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    Ok((PeftFields::new(path, map), base))
}

/// Builds the JSON of `adapter_config.json`: the fields every PEFT config has, then the
/// scheme's (which include `layers_to_transform` where the scheme has it), keys sorted as PEFT
/// writes them.
pub(crate) fn config_json(
    peft_type: &str,
    base_model: Option<&str>,
    targets: &Targets,
    scheme_fields: Map<String, Value>,
) -> String {
    let mut map: BTreeMap<String, Value> = scheme_fields.into_iter().collect();
    map.insert("peft_type".into(), Value::from(peft_type));
    map.insert(
        "base_model_name_or_path".into(),
        base_model.map_or(Value::Null, Value::from),
    );
    map.insert("target_modules".into(), targets.modules.to_json());
    map.insert(
        "exclude_modules".into(),
        targets
            .exclude
            .as_ref()
            .map_or(Value::Null, ModuleSelector::to_json),
    );
    map.insert("inference_mode".into(), Value::Bool(true));
    map.insert("task_type".into(), Value::Null);
    map.insert("revision".into(), Value::Null);
    map.insert("modules_to_save".into(), Value::Null);
    let object: Map<String, Value> = map.into_iter().collect();
    let mut text = serde_json::to_string_pretty(&Value::Object(object)).expect("JSON");
    text.push('\n');
    text
}

/// The tensors of `adapter_model.safetensors`, taken one by one by the scheme's loader.
///
/// Names are normalised on reading: `base_model.model.` and a task model's `bert.` are
/// accepted in front of the module path; [`TensorFile::take`] is called with the canonical
/// name (`base_model.model.encoder.layer.0.attention.self.query.lora_A.weight`).
#[derive(Debug)]
pub struct TensorFile(lora_bert_encoder::tensor_file::TensorFile);

impl TensorFile {
    /// Parses safetensors bytes read from `path`.
    ///
    /// # Errors
    ///
    /// [`AdapterError::Corrupt`], [`AdapterError::Dtype`], [`AdapterError::NonFinite`] or
    /// [`AdapterError::DuplicateTensor`] (two stored names for one canonical name), naming the
    /// file and the tensor.
    pub fn parse(path: impl Into<PathBuf>, bytes: &[u8]) -> Result<Self, AdapterError> {
        lora_bert_encoder::tensor_file::TensorFile::parse_renamed(path, bytes, canonical_name)
            .map(Self)
            .map_err(file_error)
    }

    /// Reads and parses `path`.
    ///
    /// # Errors
    ///
    /// [`AdapterError::Io`]; as [`parse`](Self::parse).
    pub fn read(path: &Path) -> Result<Self, AdapterError> {
        let bytes = std::fs::read(path).map_err(|source| AdapterError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &bytes)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// Removes the tensor `name`, checks its shape and puts it on `device`.
    ///
    /// # Errors
    ///
    /// [`AdapterError::MissingTensor`]; [`AdapterError::Shape`].
    pub fn take(
        &mut self,
        name: &str,
        shape: [usize; 2],
        device: &Device,
    ) -> Result<Tensor<2>, AdapterError> {
        let values = self.0.take(name, &shape).map_err(file_error)?;
        Ok(Tensor::from_data(TensorData::new(values, shape), device))
    }

    /// Errors if tensors are left that no module took.
    ///
    /// # Errors
    ///
    /// [`AdapterError::UnexpectedTensors`].
    pub fn finish(self) -> Result<(), AdapterError> {
        self.0.finish().map_err(file_error)
    }
}

/// The adapter crate's name for an error of the shared safetensors reader and writer.
fn file_error(e: CheckpointError) -> AdapterError {
    match e {
        CheckpointError::Io { path, source } => AdapterError::Io { path, source },
        CheckpointError::Corrupt { path, message } | CheckpointError::Write { path, message } => {
            AdapterError::Corrupt { path, message }
        }
        CheckpointError::Missing { path, names } => AdapterError::MissingTensor {
            path,
            name: names.join(", "),
        },
        CheckpointError::Duplicate {
            path,
            first,
            second,
        } => AdapterError::DuplicateTensor {
            path,
            name: canonical_name(&first),
            first,
            second,
        },
        CheckpointError::Unexpected { path, names } => {
            AdapterError::UnexpectedTensors { path, names }
        }
        CheckpointError::Shape {
            path,
            name,
            expected,
            actual,
        } => AdapterError::Shape {
            path,
            name,
            expected,
            actual,
        },
        CheckpointError::Dtype { path, name, dtype } => AdapterError::Dtype { path, name, dtype },
        CheckpointError::NonFinite { path, name } => AdapterError::NonFinite { path, name },
        other => AdapterError::Checkpoint(other),
    }
}

fn canonical_name(name: &str) -> String {
    let rest = name.strip_prefix(PEFT_PREFIX).unwrap_or(name);
    let rest = rest.strip_prefix("bert.").unwrap_or(rest);
    format!("{PEFT_PREFIX}{rest}")
}

/// Serialises F32 tensors to safetensors bytes (names sorted).
pub(crate) fn safetensors_bytes(
    tensors: Vec<(String, Tensor<2>)>,
) -> Result<Vec<u8>, AdapterError> {
    let mut stored = BTreeMap::new();
    for (name, tensor) in tensors {
        let shape = tensor.dims().to_vec();
        let values =
            tensor
                .into_data()
                .try_into_vec_as::<f32>()
                .map_err(|e| AdapterError::Corrupt {
                    path: PathBuf::from(&name),
                    message: format!("{e:?}"),
                })?;
        stored.insert(name, StoredTensor::f32(shape, &values));
    }
    tensor_file::safetensors_bytes(Path::new(WEIGHTS_FILE), &stored, None).map_err(file_error)
}

/// Writes a group's two files into `dir` (created if needed), each atomically.
pub(crate) fn write_files(dir: &Path, config: &str, weights: &[u8]) -> Result<(), AdapterError> {
    std::fs::create_dir_all(dir).map_err(|source| AdapterError::Io {
        path: dir.to_owned(),
        source,
    })?;
    write_atomically(&dir.join(WEIGHTS_FILE), weights)?;
    write_atomically(&dir.join(CONFIG_FILE), config.as_bytes())?;
    Ok(())
}
