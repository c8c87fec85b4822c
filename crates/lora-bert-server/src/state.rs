//! What every route shares: the runtime, the apps' pipelines, the batcher, the metrics.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use lora_bert::apps::manifest::AppKind;
use lora_bert::encoder::tokenizer::BertTokenizer;
use lora_bert::pipelines::{ClassifierPipeline, NerPipeline};
use lora_bert::runtime::{AppInfo, Runtime};

use crate::ServerConfig;
use crate::api::{AppOut, Info};
use crate::apps::Pipeline;
use crate::batcher::Batcher;
use crate::error::{ApiError, ErrorKind};
use crate::metrics::Metrics;

/// The server's state, behind an `Arc` in every route.
#[derive(Debug)]
pub(crate) struct Shared {
    pub runtime: Arc<Runtime>,
    pub config: ServerConfig,
    /// The pipelines' tokenizer (their own length policies on top).
    pub tokenizer: BertTokenizer,
    /// `/embed`'s: truncating at the embedding length.
    pub embed_tokenizer: BertTokenizer,
    pub batcher: Batcher,
    pub metrics: Arc<Metrics>,
    pub model_id: String,
    pipelines: RwLock<BTreeMap<String, Arc<Pipeline>>>,
    batcher_alive: AtomicBool,
}

impl Shared {
    pub fn new(
        runtime: Arc<Runtime>,
        config: ServerConfig,
        tokenizer: BertTokenizer,
        embed_tokenizer: BertTokenizer,
        model_id: String,
    ) -> Self {
        let metrics = Arc::new(Metrics::default());
        let batcher = Batcher::new(
            runtime.clone(),
            metrics.clone(),
            config.max_batch_tokens,
            config.max_wait,
            config.max_queue,
        );
        Self {
            runtime,
            config,
            tokenizer,
            embed_tokenizer,
            batcher,
            metrics,
            model_id,
            pipelines: RwLock::new(BTreeMap::new()),
            batcher_alive: AtomicBool::new(true),
        }
    }

    pub fn pipeline(&self, app: &str) -> Option<Arc<Pipeline>> {
        self.pipelines
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(app)
            .cloned()
    }

    pub fn app_count(&self) -> usize {
        self.pipelines
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    pub fn batcher_alive(&self) -> bool {
        self.batcher_alive.load(Ordering::Relaxed)
    }

    pub fn batcher_stopped(&self) {
        self.batcher_alive.store(false, Ordering::Relaxed);
    }

    /// Registers the app in `dir` under `name` and builds its pipeline. An app no route can
    /// serve (a token app whose labels are not entity tags) is refused and leaves nothing
    /// behind.
    pub fn register(&self, name: &str, dir: &str) -> Result<AppOut, ApiError> {
        if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
            return Err(ApiError::validation(
                "an app's name is 1 to 128 bytes without control characters",
            ));
        }
        let info = self.runtime.register(name, dir)?;
        let pipeline = match info.kind {
            AppKind::TokenClassification => {
                NerPipeline::new(self.runtime.clone(), name, self.tokenizer.clone())
                    .map(Pipeline::Ner)
            }
            AppKind::SequenceClassification => {
                ClassifierPipeline::new(self.runtime.clone(), name, self.tokenizer.clone())
                    .map(Pipeline::Classifier)
            }
        };
        let pipeline = match pipeline {
            Ok(p) => Arc::new(p),
            Err(e) => {
                let _ = self.runtime.remove(name);
                return Err(ApiError::new(ErrorKind::AppLoad, e.to_string()));
            }
        };
        let out = app_out(&info, &pipeline);
        self.pipelines
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), pipeline);
        Ok(out)
    }

    /// Removes an app: new requests for it are 404; queued ones are answered 404 too.
    pub fn remove(&self, name: &str) -> Result<(), ApiError> {
        let removed = self
            .pipelines
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        if removed.is_none() {
            return Err(ApiError::new(
                ErrorKind::UnknownApp,
                format!("no app `{name}` is registered"),
            ));
        }
        self.runtime.remove(name)?;
        Ok(())
    }

    pub fn app_list(&self) -> Vec<AppOut> {
        let pipelines = self.pipelines.read().unwrap_or_else(|e| e.into_inner());
        self.runtime
            .apps()
            .iter()
            .filter_map(|info| pipelines.get(&info.name).map(|p| app_out(info, p)))
            .collect()
    }

    pub fn info(&self) -> Info {
        let c = &self.config;
        Info {
            model_id: self.model_id.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            hidden_size: self.runtime.config().hidden_size,
            max_input_length: self.tokenizer.max_length(),
            max_embed_length: self.embed_tokenizer.max_length(),
            max_batch_tokens: c.max_batch_tokens,
            max_wait_ms: c.max_wait.as_secs_f64() * 1e3,
            max_concurrent_requests: c.max_queue,
            max_client_batch_size: c.max_texts,
            max_chars: c.max_chars,
            max_body_bytes: c.max_body_bytes,
            management: c.management,
            apps: self.app_list(),
        }
    }
}

fn app_out(info: &AppInfo, pipeline: &Pipeline) -> AppOut {
    AppOut {
        name: info.name.clone(),
        kind: match info.kind {
            AppKind::TokenClassification => "token_classification",
            AppKind::SequenceClassification => "sequence_classification",
        }
        .to_owned(),
        route: pipeline.route().to_owned(),
        labels: info.labels.clone(),
        bytes: info.bytes,
        dir: info.dir.display().to_string(),
    }
}
