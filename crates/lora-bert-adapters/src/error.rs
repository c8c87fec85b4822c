//! The errors of the adapters crate.

use std::path::PathBuf;

use lora_bert_encoder::{CheckpointError, InputError};

/// Why an adapter operation failed. Every variant names the group, file, field or tensor at
/// fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdapterError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `adapter_config.json` is not valid JSON or a field has the wrong type.
    #[error("{path}: {message}")]
    ConfigSyntax {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column for JSON syntax errors.
        message: String,
    },
    /// The adapter file is for another scheme (`peft_type`).
    #[error("{path}: `peft_type` is {found:?}, this loader reads {expected:?}")]
    PeftType {
        /// The file.
        path: PathBuf,
        /// The scheme being loaded.
        expected: &'static str,
        /// The file's `peft_type`.
        found: String,
    },
    /// A configuration field asks for a feature lora-bert does not implement (DoRA, rank
    /// patterns, LoftQ, ...), or a field lora-bert does not know holds a value.
    #[error("{path}: field `{field}` = {value} is not supported: {reason}")]
    Unsupported {
        /// The file (empty for configs built in code).
        path: PathBuf,
        /// The field.
        field: String,
        /// Its value, as JSON.
        value: String,
        /// Why it cannot be honoured.
        reason: String,
    },
    /// A configuration value is out of range (rank 0, dropout outside `[0, 1)`, ...).
    #[error("adapter group `{group}`: invalid config: {message}")]
    InvalidConfig {
        /// The group.
        group: String,
        /// What is wrong.
        message: String,
    },
    /// The target modules (and layers) select no projection of the model.
    #[error("adapter group `{group}`: target modules {targets} match no projection of the model")]
    NoTargets {
        /// The group.
        group: String,
        /// The targets, as configured.
        targets: String,
    },
    /// `layers_to_transform` names a layer the model does not have.
    #[error(
        "adapter group `{group}`: layer {layer} is out of range (the model has {layers} layers)"
    )]
    LayerOutOfRange {
        /// The group.
        group: String,
        /// The layer asked for.
        layer: usize,
        /// The model's number of layers.
        layers: usize,
    },
    /// No group has this name.
    #[error("no adapter group named `{name}` (groups: {known})")]
    UnknownGroup {
        /// The name asked for.
        name: String,
        /// The registered names, comma-separated.
        known: String,
    },
    /// A route names a group id that is not registered (never added, or removed).
    #[error("route names adapter group id {id}, which is not registered")]
    UnknownGroupId {
        /// The id.
        id: usize,
    },
    /// A group with this name already exists.
    #[error("an adapter group named `{name}` already exists")]
    DuplicateGroup {
        /// The name.
        name: String,
    },
    /// The adapter weights file is not valid safetensors.
    #[error("{path}: corrupt safetensors: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A tensor the configuration requires is absent from the weights file.
    #[error("{path}: missing tensor `{name}`")]
    MissingTensor {
        /// The file.
        path: PathBuf,
        /// The tensor name, as PEFT writes it.
        name: String,
    },
    /// Two tensors of the weights file name the same module tensor (say
    /// `base_model.model.encoder...` and `base_model.model.bert.encoder...`).
    #[error("{path}: tensors `{first}` and `{second}` are both `{name}`")]
    DuplicateTensor {
        /// The file.
        path: PathBuf,
        /// The tensor name, as PEFT writes it.
        name: String,
        /// One stored name (the smaller).
        first: String,
        /// The other.
        second: String,
    },
    /// The weights file holds tensors the configuration does not account for.
    #[error("{path}: tensors not used by the configuration: {}", names.join(", "))]
    UnexpectedTensors {
        /// The file.
        path: PathBuf,
        /// The unused tensor names.
        names: Vec<String>,
    },
    /// A tensor's shape does not fit the model (an adapter for another backbone, or for another
    /// rank than the configuration says).
    #[error("{path}: tensor `{name}` has shape {actual:?}, the model needs {expected:?}")]
    Shape {
        /// The file.
        path: PathBuf,
        /// The tensor name.
        name: String,
        /// The shape that fits the model and configuration.
        expected: Vec<usize>,
        /// The stored shape.
        actual: Vec<usize>,
    },
    /// A tensor has a dtype that is not a float type.
    #[error("{path}: tensor `{name}` has unsupported dtype {dtype}")]
    Dtype {
        /// The file.
        path: PathBuf,
        /// The tensor name.
        name: String,
        /// The stored dtype.
        dtype: String,
    },
    /// A tensor holds NaN or infinite values.
    #[error("{path}: tensor `{name}` holds NaN or infinite values")]
    NonFinite {
        /// The file.
        path: PathBuf,
        /// The tensor name.
        name: String,
    },
    /// The operation needs the group unmerged, or another group is merged.
    #[error("adapter group `{merged}` is merged into the base weights: {message}")]
    Merged {
        /// The merged group.
        merged: String,
        /// What could not be done.
        message: String,
    },
    /// `unmerge` was called with no group merged.
    #[error("no adapter group is merged")]
    NotMerged,
    /// The scheme cannot merge into a base linear.
    #[error("adapter group `{group}` cannot be merged at {site}")]
    NotMergeable {
        /// The group.
        group: String,
        /// The projection.
        site: String,
    },
    /// Merging (or unmerging) the group would give NaN or infinite weights at `site`: a LoRA
    /// update that overflows f32, or a merge that could not be taken back out (an IA³ scale of
    /// zero merges to zeros, which unmerge to NaN). The model is left as it was.
    #[error(
        "adapter group `{group}` cannot be {} at {site}: NaN or infinite weights would result",
        if *unmerge { "unmerged" } else { "merged" }
    )]
    NonFiniteMerge {
        /// The group.
        group: String,
        /// The projection.
        site: String,
        /// Whether it was the unmerge that failed.
        unmerge: bool,
    },
    /// The base weight at `site` is int8: a group is not merged into it.
    #[error("adapter group `{group}` cannot be merged at {site}: its base weight is int8")]
    QuantizedBase {
        /// The group.
        group: String,
        /// The projection.
        site: String,
    },
    /// The forward pass refused its input.
    #[error(transparent)]
    Input(#[from] InputError),
    /// Writing a file atomically failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}
