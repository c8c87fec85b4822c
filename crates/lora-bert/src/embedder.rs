//! Text in, token states and sentence embeddings out.

use std::path::Path;

use lora_bert_adapters::{AdaptedModel, Lora};
use lora_bert_encoder::tokenizer::{Batch, BertTokenizer};
use lora_bert_encoder::{BertInput, BertModel, Device, LoadReport, Route, mean_pool};

use crate::Error;

/// A BERT model and its tokenizer, run as sentence-transformers runs all-MiniLM-L6-v2:
/// one padded batch, mean pooling over real tokens. LoRA adapters in PEFT's layout can be
/// loaded on top ([`load_adapter`](Self::load_adapter)) and switched per call
/// ([`use_adapter`](Self::use_adapter)) without reloading the model.
#[derive(Debug)]
pub struct Embedder {
    model: AdaptedModel<Lora>,
    tokenizer: BertTokenizer,
    device: Device,
    route: Route,
}

/// The output of [`Embedder::embed`], copied to the host.
///
/// Row `i` is `batch.encodings[i]`; with the tokenizer's `Window` policy one text can give
/// several rows (see `Encoding::source`).
#[derive(Debug, Clone)]
pub struct Embeddings {
    /// The tokenised batch: tokens, ids, offsets, word ids per row.
    pub batch: Batch,
    /// Width of every vector.
    pub hidden_size: usize,
    hidden: Vec<f32>,
    pooled: Vec<f32>,
}

impl Embeddings {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.batch.len()
    }

    /// Whether there is no row.
    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }

    /// Last hidden state of every real (non-padding) token of row `i`.
    pub fn token_states(&self, i: usize) -> impl Iterator<Item = &[f32]> {
        let seq = self.batch.seq_len;
        let real = self.batch.encodings[i].ids.len();
        let start = i * seq * self.hidden_size;
        self.hidden[start..start + real * self.hidden_size].chunks_exact(self.hidden_size)
    }

    /// Mean-pooled embedding of row `i`.
    pub fn pooled(&self, i: usize) -> &[f32] {
        &self.pooled[i * self.hidden_size..(i + 1) * self.hidden_size]
    }

    /// Cosine similarity of the pooled embeddings of rows `i` and `j`.
    pub fn cosine(&self, i: usize, j: usize) -> f32 {
        let (a, b) = (self.pooled(i), self.pooled(j));
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        dot / (norm(a) * norm(b)).max(f32::MIN_POSITIVE)
    }
}

impl Embedder {
    /// Loads a Hugging Face model directory (`config.json`, `model.safetensors`,
    /// `tokenizer.json`). The tokenizer's maximum length is the model's
    /// `max_position_embeddings`; longer texts are an error unless the tokenizer policy is
    /// changed with [`with_tokenizer`](Self::with_tokenizer).
    ///
    /// # Errors
    ///
    /// [`Error::Checkpoint`] and [`Error::Tokenizer`] for files that do not load;
    /// [`Error::UnusedTensors`] when the checkpoint holds encoder tensors its config.json does
    /// not describe (the report lists any other unused tensor, such as a task head).
    pub fn from_dir(dir: impl AsRef<Path>, device: &Device) -> Result<(Self, LoadReport), Error> {
        let dir = dir.as_ref();
        let (model, report) = BertModel::load(dir, device)?;
        crate::whole_backbone(dir, &report)?;
        let tokenizer = BertTokenizer::from_file(dir.join("tokenizer.json"))?
            .with_max_length(model.config().max_position_embeddings);
        Ok((
            Self {
                model: AdaptedModel::new(model),
                tokenizer,
                device: device.clone(),
                route: Route::Base,
            },
            report,
        ))
    }

    /// all-MiniLM-L6-v2 from the asset cache, fetched on first use.
    pub fn all_minilm_l6_v2(device: &Device) -> Result<Self, Error> {
        let files = lora_bert_assets::all_minilm_l6_v2(&lora_bert_assets::AssetCache::from_env()?)?;
        Ok(Self::from_dir(&files.dir, device)?.0)
    }

    /// Replaces the tokenizer (e.g. to truncate or window long texts).
    pub fn with_tokenizer(mut self, tokenizer: BertTokenizer) -> Self {
        self.tokenizer = tokenizer;
        self
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &BertTokenizer {
        &self.tokenizer
    }

    /// The model with its adapter groups.
    pub fn model(&self) -> &AdaptedModel<Lora> {
        &self.model
    }

    /// Loads a LoRA adapter saved in PEFT's layout (`adapter_config.json`,
    /// `adapter_model.safetensors`, as `PeftModel.save_pretrained` writes them) as group
    /// `name`, and uses it from now on.
    ///
    /// ```no_run
    /// use lora_bert::{Embedder, device};
    ///
    /// let device = device::device(device::Backend::Flex)?;
    /// let mut embedder = Embedder::all_minilm_l6_v2(&device)?;
    /// embedder.load_adapter("support", "adapters/support")?;
    /// let tuned = embedder.embed(&["Where is my parcel?"])?;
    /// embedder.use_adapter(None)?; // back to the plain model
    /// # Ok::<(), lora_bert::Error>(())
    /// ```
    pub fn load_adapter(&mut self, name: &str, dir: impl AsRef<Path>) -> Result<(), Error> {
        self.model.load_group(name, dir)?;
        self.use_adapter(Some(name))
    }

    /// Selects the adapter group for the next calls (`None`: the plain model).
    pub fn use_adapter(&mut self, name: Option<&str>) -> Result<(), Error> {
        self.route = match name {
            Some(name) => self.model.route(name)?,
            None => Route::Base,
        };
        Ok(())
    }

    /// Consumes the embedder, returning the backbone without its adapters.
    pub fn into_backbone(self) -> BertModel {
        self.model.into_backbone()
    }

    /// Runs `texts` as one padded batch.
    pub fn embed(&self, texts: &[&str]) -> Result<Embeddings, Error> {
        let batch = self.tokenizer.encode_batch(texts)?;
        self.embed_batch(batch)
    }

    /// Runs an already tokenised batch.
    pub fn embed_batch(&self, batch: Batch) -> Result<Embeddings, Error> {
        let input = BertInput::from_batch(&batch, self.model.config(), &self.device)?;
        let output = self.model.forward(&input, &self.route)?;
        let pooled = mean_pool(output.last_hidden_state.clone(), input.attention_mask);
        let to_vec = |data: burn::tensor::TensorData, what: &str| {
            let values = data
                .try_into_vec_as::<f32>()
                .map_err(|e| Error::Internal(format!("{what} could not be read: {e:?}")))?;
            if values.iter().all(|v| v.is_finite()) {
                Ok(values)
            } else {
                Err(Error::NonFinite { what: what.into() })
            }
        };
        Ok(Embeddings {
            hidden_size: self.model.config().hidden_size,
            hidden: to_vec(output.last_hidden_state.into_data(), "the token states")?,
            pooled: to_vec(pooled.into_data(), "the pooled embeddings")?,
            batch,
        })
    }
}
