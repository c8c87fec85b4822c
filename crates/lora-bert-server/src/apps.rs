//! The served apps: each registered app's pipeline, which encodes its requests and reads its
//! logits back (the one path the library's pipelines and fine-tuning's evaluation share).

use lora_bert::pipelines::{ClassifierPipeline, NerPipeline};

/// How an app's requests are encoded and answered.
#[derive(Debug, Clone)]
pub(crate) enum Pipeline {
    /// An entity tagger (`/ner`).
    Ner(NerPipeline),
    /// A text classifier (`/predict`).
    Classifier(ClassifierPipeline),
}

impl Pipeline {
    /// The route that serves it.
    pub fn route(&self) -> &'static str {
        match self {
            Pipeline::Ner(_) => "/ner",
            Pipeline::Classifier(_) => "/predict",
        }
    }
}
