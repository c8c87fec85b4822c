//! **lora-bert**: lightweight BERT encoders with task-routed LoRA adapters, on
//! [burn](https://burn.dev).
//!
//! This facade re-exports the workspace crates and adds ready-made pipelines:
//!
//! - [`encoder`]: the BERT encoder, Hugging Face checkpoint loading, the tokenizer wrapper and
//!   the [`device`] module (the one place a backend is named).
//! - [`adapters`]: task-routed adapter groups (LoRA, IA³) on one backbone, merge/unmerge,
//!   PEFT-layout files.
//! - [`data`]: readers for real formats, tag schemes, label alignment to word pieces,
//!   batching, multi-task sampling and a registry of the real datasets.
//! - [`apps`]: the one path from a token classifier's logits to word labels to entities,
//!   shared by fine-tuning's evaluation and the [`pipelines`].
//! - [`metrics`]: seqeval-exact entity scores and scikit-learn-exact classification scores.
//! - [`train`]: heads, objectives, teachers, the trainer (checkpoints, exact resume,
//!   data-parallel devices), fine-tuning and the pre-finetuning regimes (MTPF-TPL).
//! - [`assets`]: fetches the pinned, sha256-checked real weights and data into a local cache.
//! - [`Embedder`]: text in, token states and mean-pooled sentence embeddings out.
//! - [`malloc`]: one call at the start of `main` that keeps glibc from handing every freed
//!   tensor buffer back to the kernel (a fifth less time per CPU pass at 32 × 128 here).
//!
//! ```no_run
//! use lora_bert::{Embedder, device};
//!
//! let device = device::device(device::Backend::Flex)?;
//! let embedder = Embedder::all_minilm_l6_v2(&device)?; // fetched into the cache on first use
//! let e = embedder.embed(&["A man is eating food.", "A man is eating a piece of bread."])?;
//! println!("cosine = {:.3}", e.cosine(0, 1));
//! # Ok::<(), lora_bert::Error>(())
//! ```
#![warn(missing_docs)]

pub use lora_bert_adapters as adapters;
pub use lora_bert_apps as apps;
pub use lora_bert_assets as assets;
pub use lora_bert_data as data;
pub use lora_bert_encoder as encoder;
pub use lora_bert_encoder::{
    Backend, BertConfig, BertInput, BertModel, BertOutput, BertTokenizer, Device, LoadReport,
    NoAdapter, Projection, ProjectionAdapter, ProjectionKind, ProjectionSite, Route, device,
    l2_normalize, mean_pool,
};
pub use lora_bert_metrics as metrics;
#[cfg(feature = "train")]
pub use lora_bert_train as train;

mod embedder;
pub mod malloc;
pub mod pipelines;
pub mod runtime;

pub use embedder::{Embedder, Embeddings};

/// Every error the facade's pipelines can return.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Fetching an asset failed.
    #[error(transparent)]
    Asset(#[from] lora_bert_assets::AssetError),
    /// A checkpoint or config could not be loaded.
    #[error(transparent)]
    Checkpoint(#[from] lora_bert_encoder::CheckpointError),
    /// The backbone could not be made int8.
    #[error(transparent)]
    Quantize(#[from] lora_bert_encoder::QuantizeError),
    /// The tokenizer failed or refused the text.
    #[error(transparent)]
    Tokenizer(#[from] lora_bert_encoder::tokenizer::TokenizerError),
    /// The encoder refused its input.
    #[error(transparent)]
    Input(#[from] lora_bert_encoder::InputError),
    /// The device could not be built.
    #[error(transparent)]
    Device(#[from] lora_bert_encoder::DeviceError),
    /// An adapter could not be loaded or routed.
    #[error(transparent)]
    Adapter(#[from] lora_bert_adapters::AdapterError),
    /// An app's files (manifest, head, labels) could not be loaded, or logits could not be
    /// read back to words and entities.
    #[error(transparent)]
    App(#[from] lora_bert_apps::AppError),
    /// Data error (word spans, encoding).
    #[error(transparent)]
    Data(#[from] lora_bert_data::DataError),
    /// Training or fine-tuning failed (the `train` feature).
    #[error(transparent)]
    #[cfg(feature = "train")]
    Train(#[from] lora_bert_train::TrainError),
    /// No app of that name is registered.
    #[error("no app `{0}` is registered")]
    UnknownApp(String),
    /// An app of that name is registered already.
    #[error("an app `{0}` is registered already")]
    AppExists(String),
    /// The app was fine-tuned in full and brings its own backbone, which a runtime serving
    /// apps on one shared backbone cannot use.
    #[error(
        "app `{name}` ({}) brings its own backbone (fine-tuned in full); the runtime serves \
         apps on its shared backbone",
        path.display()
    )]
    OwnBackbone {
        /// The name it was to be registered under.
        name: String,
        /// Its directory.
        path: std::path::PathBuf,
    },
    /// The app's head was made for an encoder of another hidden size.
    #[error("app `{name}`: its head takes {found}-wide states, the backbone gives {expected}")]
    HeadWidth {
        /// The app.
        name: String,
        /// The head's input width.
        found: usize,
        /// The backbone's hidden size.
        expected: usize,
    },
    /// The checkpoint holds encoder tensors its config.json does not use (more layers than
    /// the config names, say): the model built from it would not be the one that was saved.
    #[error(
        "{}: the checkpoint has encoder tensors its config.json does not use ({}{}): the \
         config describes a smaller model than the file holds",
        path.display(),
        names.iter().take(4).cloned().collect::<Vec<_>>().join(", "),
        if names.len() > 4 { format!(" and {} more", names.len() - 4) } else { String::new() }
    )]
    UnusedTensors {
        /// The model directory.
        path: std::path::PathBuf,
        /// The unused tensors, as stored.
        names: Vec<String>,
    },
    /// The model computed a value that is not finite (NaN or infinite): weights or an adapter
    /// scaling so large that f32 overflows. Refused rather than answered.
    #[error(
        "the model computed a non-finite value in {what}: its weights or adapter scaling \
         overflow f32 (check the backbone's and the adapter's values, e.g. `lora_alpha`)"
    )]
    NonFinite {
        /// Which output (an app's logits, the embeddings).
        what: String,
    },
    /// A request the pipeline cannot run (no row, an empty row, ...).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A bug: something the runtime should have ruled out.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Refuses a backbone whose checkpoint holds encoder tensors the config does not use
/// ([`LoadReport::unused_encoder_tensors`](lora_bert_encoder::LoadReport::unused_encoder_tensors)).
pub(crate) fn whole_backbone(
    dir: &std::path::Path,
    report: &lora_bert_encoder::LoadReport,
) -> Result<(), Error> {
    let names = report.unused_encoder_tensors();
    if names.is_empty() {
        Ok(())
    } else {
        Err(Error::UnusedTensors {
            path: dir.to_owned(),
            names: names.into_iter().map(str::to_owned).collect(),
        })
    }
}
