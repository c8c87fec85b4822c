//! An HTTP service for lora-bert: many apps on one backbone, their requests batched together.
//!
//! One backbone is loaded once; apps (a LoRA group and a head each, as lora-bert's
//! fine-tuning saves them) are registered at start or while serving. Requests of every app go
//! to one queue; a batcher thread takes rows of many requests, of any apps, up to a token
//! budget, and runs them in one forward pass that routes each row through its own app's group
//! ([`Runtime::answer`](lora_bert::runtime::Runtime::answer)); each request is answered from
//! its own rows, decoded by the same pipelines the library offers.
//!
//! Routes (text-embeddings-inference's where it has them; bodies are JSON):
//!
//! | route | body | answer |
//! |---|---|---|
//! | `POST /embed` | `{"inputs": "text" \| [...], "app"?, "normalize"?, "truncate"?}` | `[[f32, ...], ...]` |
//! | `POST /predict` | `{"inputs": ..., "app": "sentiment"}` | `[{"label", "score"}, ...]` per text, best first |
//! | `POST /ner` | `{"inputs": ..., "app": "ner"}` | `[{"entity_group", "score", "word", "start", "end"}, ...]` per text |
//! | `GET /health`, `GET /info`, `GET /metrics` | | status, limits and apps, Prometheus text |
//! | `GET /apps`, `POST /apps`, `DELETE /apps/{name}` | `{"name", "dir"}` to register | apps with their bytes |
//!
//! One text in `inputs` gets one answer; a list gets a list. Errors are
//! `{"error": "...", "error_type": "..."}` with their status code (see [`ErrorKind`]).
//!
//! ```no_run
//! use std::sync::Arc;
//! use lora_bert::device;
//! use lora_bert::encoder::tokenizer::BertTokenizer;
//! use lora_bert::runtime::Runtime;
//! use lora_bert_server::{Server, ServerConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let device = device::device(device::Backend::Flex)?;
//! let runtime = Arc::new(Runtime::load("path/to/backbone", &device)?);
//! let tokenizer = BertTokenizer::from_file("path/to/backbone/tokenizer.json")?;
//! let server = Server::new(runtime, tokenizer, ServerConfig::default(), "my-backbone")?;
//! server.register("ner", "apps/wnut16")?;
//! let running = server.spawn("127.0.0.1:8080".parse()?)?;
//! println!("serving on http://{}", running.addr());
//! running.shutdown()?; // drains the queue first
//! # Ok(())
//! # }
//! ```

pub mod api;
mod apps;
mod batcher;
pub mod client;
mod config;
mod error;
mod metrics;
mod routes;
mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use lora_bert::encoder::tokenizer::{BertTokenizer, LengthPolicy};
use lora_bert::runtime::Runtime;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub use api::AppOut;
pub use config::ServerConfig;
pub use error::{ApiError, ErrorKind};

use state::Shared;

/// Why a server could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Binding, accepting or the async runtime failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A configuration the server refuses to run with.
    #[error("{0}")]
    Config(String),
    /// Loading the backbone, the tokenizer or an app failed.
    #[error(transparent)]
    Model(#[from] lora_bert::Error),
    /// An app given at start could not be served.
    #[error("app `{name}`: {message}")]
    App {
        /// Its name.
        name: String,
        /// What was wrong.
        message: String,
    },
    /// The batcher thread panicked (a bug).
    #[error("the batcher thread panicked")]
    Batcher,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServerError {
    let what = what.into();
    move |source| ServerError::Io { what, source }
}

/// A server: a runtime, its apps, the batcher and the routes; [`serve`](Self::serve) or
/// [`spawn`](Self::spawn) it.
#[derive(Debug, Clone)]
pub struct Server {
    shared: Arc<Shared>,
}

impl Server {
    /// A server for `runtime`'s backbone. `tokenizer` is the backbone's; the server sets its
    /// maximum length to `config.max_length` (at most the model's positions) for `/ner`
    /// windows and `/predict`, and to `config.embed_max_length` for `/embed`. `model_id`
    /// names the backbone in `/info`.
    ///
    /// # Errors
    ///
    /// [`ServerError::Config`] for limits of zero or a length beyond the model's positions.
    pub fn new(
        runtime: Arc<Runtime>,
        tokenizer: BertTokenizer,
        config: ServerConfig,
        model_id: impl Into<String>,
    ) -> Result<Self, ServerError> {
        let positions = runtime.config().max_position_embeddings;
        for (name, value) in [
            ("max_batch_tokens", config.max_batch_tokens),
            ("max_queue", config.max_queue),
            ("max_texts", config.max_texts),
            ("max_chars", config.max_chars),
            ("max_body_bytes", config.max_body_bytes),
        ] {
            if value == 0 {
                return Err(ServerError::Config(format!("{name} must be at least 1")));
            }
        }
        let embed_max = config.embed_max_length.unwrap_or(positions);
        for (name, value) in [
            ("max_length", config.max_length),
            ("embed_max_length", embed_max),
        ] {
            if !(8..=positions).contains(&value) {
                return Err(ServerError::Config(format!(
                    "{name} is {value}: it must be 8 to {positions} (the model's positions)"
                )));
            }
        }
        let pipelines = tokenizer.clone().with_max_length(config.max_length);
        let embed = tokenizer
            .with_max_length(embed_max)
            .with_length_policy(LengthPolicy::Truncate);
        Ok(Self {
            shared: Arc::new(Shared::new(
                runtime,
                config,
                pipelines,
                embed,
                model_id.into(),
            )),
        })
    }

    /// Registers the app saved in `dir` as `name` (before or while serving).
    ///
    /// # Errors
    ///
    /// [`ServerError::App`] for an app that does not load or that no route serves (a token
    /// app whose labels are not entity tags).
    pub fn register(
        &self,
        name: &str,
        dir: impl AsRef<std::path::Path>,
    ) -> Result<AppOut, ServerError> {
        let dir = dir.as_ref().display().to_string();
        self.shared
            .register(name, &dir)
            .map_err(|e| ServerError::App {
                name: name.to_owned(),
                message: e.message,
            })
    }

    /// The routes, for embedding in another axum application (the batcher must run: use
    /// [`serve`](Self::serve), which runs it).
    pub fn router(&self) -> Router {
        let mut router = Router::new()
            .route("/embed", post(routes::embed))
            .route("/predict", post(routes::predict))
            .route("/ner", post(routes::ner))
            .route("/health", get(routes::health))
            .route("/info", get(routes::info))
            .route("/metrics", get(routes::metrics));
        if self.shared.config.management {
            router = router
                .route("/apps", get(routes::list_apps).post(routes::register_app))
                .route("/apps/{name}", delete(routes::remove_app));
        }
        router
            .fallback(routes::not_found)
            .layer(DefaultBodyLimit::max(self.shared.config.max_body_bytes))
            .layer(axum::middleware::from_fn_with_state(
                self.shared.clone(),
                routes::record,
            ))
            .with_state(self.shared.clone())
    }

    /// Serves on `listener` until `shutdown` completes, then stops accepting, answers every
    /// request already accepted (the queue drains) and returns.
    ///
    /// # Errors
    ///
    /// [`ServerError::Config`] when management routes would be served on a non-loopback
    /// address without a token; [`ServerError::Io`]; [`ServerError::Batcher`].
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let addr = listener
            .local_addr()
            .map_err(io("reading the bound address"))?;
        let config = &self.shared.config;
        if config.management && config.token.is_none() && !addr.ip().is_loopback() {
            return Err(ServerError::Config(format!(
                "management routes (/apps) on {addr}, a non-loopback address, need a token \
                 (LORA_BERT_SERVER_TOKEN or --token-file); or serve without them \
                 (--no-management)"
            )));
        }
        let shared = self.shared.clone();
        let batcher = std::thread::Builder::new()
            .name("lora-bert-batcher".into())
            .spawn(move || {
                let result =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| shared.batcher.run()));
                shared.batcher_stopped();
                result
            })
            .map_err(io("starting the batcher thread"))?;
        let served = axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(io("serving"));
        // Every accepted request has its answer now; stop the batcher.
        self.shared.batcher.close();
        let joined = tokio::task::spawn_blocking(move || batcher.join())
            .await
            .map_err(|e| ServerError::Io {
                what: "joining the batcher".into(),
                source: std::io::Error::other(e.to_string()),
            })?;
        served?;
        match joined {
            Ok(Ok(())) => Ok(()),
            _ => Err(ServerError::Batcher),
        }
    }

    /// Binds `addr` and serves on a thread of its own (with its own async runtime) until the
    /// returned handle is shut down or dropped. Port 0 picks a free port
    /// ([`RunningServer::addr`] tells which).
    ///
    /// # Errors
    ///
    /// [`ServerError::Io`] when the address cannot be bound; [`ServerError::Config`] as
    /// [`serve`](Self::serve).
    pub fn spawn(self, addr: SocketAddr) -> Result<RunningServer, ServerError> {
        let listener = std::net::TcpListener::bind(addr).map_err(io(format!("binding {addr}")))?;
        let addr = listener
            .local_addr()
            .map_err(io("reading the bound address"))?;
        listener
            .set_nonblocking(true)
            .map_err(io("making the listener non-blocking"))?;
        let config = &self.shared.config;
        if config.management && config.token.is_none() && !addr.ip().is_loopback() {
            return Err(ServerError::Config(format!(
                "management routes (/apps) on {addr}, a non-loopback address, need a token"
            )));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("lora-bert-server")
            .build()
            .map_err(io("starting the async runtime"))?;
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("lora-bert-server".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener =
                        TcpListener::from_std(listener).map_err(io("registering the listener"))?;
                    self.serve(listener, async move {
                        let _ = stopped.await;
                    })
                    .await
                })
            })
            .map_err(io("starting the server thread"))?;
        Ok(RunningServer {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

/// A server serving on its own thread ([`Server::spawn`]). Dropping it shuts it down.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), ServerError>>>,
}

impl RunningServer {
    /// The address it serves on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, answers every accepted request, and waits until it has.
    ///
    /// # Errors
    ///
    /// What [`Server::serve`] returned.
    pub fn shutdown(mut self) -> Result<(), ServerError> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<(), ServerError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take() {
            Some(thread) => thread.join().map_err(|_| ServerError::Batcher)?,
            None => Ok(()),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}
