//! The JSON bodies of the routes. Requests follow text-embeddings-inference where it has the
//! route (`inputs` is one text or a list; unknown fields are ignored), plus the `app` each
//! request names.

use serde::{Deserialize, Serialize};

/// One text or a list of texts. An answer mirrors it: one text gets one answer, a list a list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Inputs {
    /// `"inputs": "a text"`.
    One(String),
    /// `"inputs": ["a text", "another"]`.
    Many(Vec<String>),
}

impl Inputs {
    /// The texts, in order.
    pub fn texts(&self) -> Vec<&str> {
        match self {
            Inputs::One(t) => vec![t.as_str()],
            Inputs::Many(ts) => ts.iter().map(String::as_str).collect(),
        }
    }

    /// Whether it was one text (the answer is then not wrapped in a list).
    pub fn is_one(&self) -> bool {
        matches!(self, Inputs::One(_))
    }
}

fn yes() -> bool {
    true
}

/// `POST /embed`.
#[derive(Debug, Clone, Deserialize)]
pub struct EmbedRequest {
    /// The texts.
    pub inputs: Inputs,
    /// Run through this app's LoRA group (default: the backbone alone).
    #[serde(default)]
    pub app: Option<String>,
    /// Scale each embedding to unit length (default true, as text-embeddings-inference).
    #[serde(default = "yes")]
    pub normalize: bool,
    /// Cut texts longer than the embedding length (default true, as sentence-transformers);
    /// `false`: such a text is refused (413).
    #[serde(default = "yes")]
    pub truncate: bool,
}

/// `POST /predict`: text classification.
#[derive(Debug, Clone, Deserialize)]
pub struct PredictRequest {
    /// The texts.
    pub inputs: Inputs,
    /// A text-classification app.
    pub app: String,
    /// Cut texts longer than the model's length (default true); `false`: refuse them (413).
    #[serde(default = "yes")]
    pub truncate: bool,
}

/// `POST /ner`: entities with character offsets.
#[derive(Debug, Clone, Deserialize)]
pub struct NerRequest {
    /// The texts (long ones are windowed).
    pub inputs: Inputs,
    /// An entity-tagging app.
    pub app: String,
}

/// `POST /apps`: register an app directory (on the server's disk).
#[derive(Debug, Clone, Deserialize)]
pub struct RegisterRequest {
    /// The name requests will use.
    pub name: String,
    /// The app's directory, as `TokenClassifier::save`/`TextClassifier::save` wrote it.
    pub dir: String,
}

/// A label and its probability (`/predict`; best first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// The label.
    pub label: String,
    /// Its probability.
    pub score: f32,
}

/// An entity (`/ner`), as Hugging Face's token-classification pipeline with aggregation
/// writes one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityOut {
    /// Its type (`PER`, ...).
    pub entity_group: String,
    /// The mean probability of its words' labels.
    pub score: f32,
    /// Its text.
    pub word: String,
    /// Character (Unicode scalar) offset of its first character.
    pub start: usize,
    /// Character offset one past its last.
    pub end: usize,
}

/// An app as `/apps` and `/info` list it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppOut {
    /// Its name.
    pub name: String,
    /// `token_classification` or `sequence_classification`.
    pub kind: String,
    /// The route that serves it (`/ner` or `/predict`).
    pub route: String,
    /// Its labels.
    pub labels: Vec<String>,
    /// Bytes of its own parameters (LoRA group and head, f32).
    pub bytes: usize,
    /// Its directory.
    pub dir: String,
}

/// `GET /apps`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppsOut {
    /// Bytes of the shared backbone.
    pub backbone_bytes: usize,
    /// The apps, by name.
    pub apps: Vec<AppOut>,
}

/// `GET /info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Info {
    /// What the backbone is (its directory, or the name it was given).
    pub model_id: String,
    /// This crate's version.
    pub version: String,
    /// The backbone's hidden size (the embeddings' width).
    pub hidden_size: usize,
    /// Tokens per row of `/ner` (its window) and `/predict` (its truncation).
    pub max_input_length: usize,
    /// Tokens per text of `/embed`.
    pub max_embed_length: usize,
    /// The batcher's token budget per forward pass.
    pub max_batch_tokens: usize,
    /// The batcher's longest wait for a batch to fill, in milliseconds.
    pub max_wait_ms: f64,
    /// Requests the queue holds at most.
    pub max_concurrent_requests: usize,
    /// Texts per request at most.
    pub max_client_batch_size: usize,
    /// Characters per text at most.
    pub max_chars: usize,
    /// Bytes per request body at most.
    pub max_body_bytes: usize,
    /// Whether `/apps` is served.
    pub management: bool,
    /// The apps.
    pub apps: Vec<AppOut>,
}
