//! The routes: inference (`/embed`, `/predict`, `/ner`), the service's state (`/health`,
//! `/info`, `/metrics`) and app management (`/apps`).

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use lora_bert::encoder::tokenizer::{LengthPolicy, TokenizerError};
use lora_bert::runtime::{Answer, Logits};
use tokio::sync::oneshot;

use crate::api::{
    AppsOut, EmbedRequest, EntityOut, Inputs, NerRequest, PredictRequest, Prediction,
    RegisterRequest,
};
use crate::apps::Pipeline;
use crate::batcher::{Job, Refused, Target};
use crate::error::{ApiError, ErrorKind};
use crate::state::Shared;

/// `Json<T>`, whose rejections (malformed JSON, a wrong content type, a body over the limit,
/// invalid UTF-8) are JSON errors like every other.
pub(crate) struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    Json<T>: FromRequest<S, Rejection = axum::extract::rejection::JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(Json::<T>::from_request(req, state).await?.0))
    }
}

/// What a route served, for the metrics (a response extension).
#[derive(Debug, Clone)]
pub(crate) struct Served {
    pub app: String,
    pub texts: usize,
}

/// A JSON answer tagged with what it served.
fn served<T: serde::Serialize>(app: &str, texts: usize, body: T) -> Response {
    let mut response = Json(body).into_response();
    response.extensions_mut().insert(Served {
        app: app.to_owned(),
        texts,
    });
    response
}

/// One answer per text, or the answer alone for a single text (serialised as it is, fields
/// in their declared order).
#[derive(serde::Serialize)]
#[serde(untagged)]
enum Shaped<T> {
    One(T),
    Many(Vec<T>),
}

fn shaped<T: serde::Serialize>(inputs: &Inputs, mut answers: Vec<T>) -> Shaped<T> {
    if inputs.is_one() && answers.len() == 1 {
        Shaped::One(answers.remove(0))
    } else {
        Shaped::Many(answers)
    }
}

/// Checks the request's texts against the limits: at least one, none empty, not too many,
/// none too long.
fn check_texts(shared: &Shared, texts: &[&str]) -> Result<(), ApiError> {
    let config = &shared.config;
    if texts.is_empty() {
        return Err(ApiError::validation("`inputs` holds no text"));
    }
    if texts.len() > config.max_texts {
        return Err(ApiError::too_large(format!(
            "{} texts in one request; at most {} (max_client_batch_size)",
            texts.len(),
            config.max_texts
        )));
    }
    for (i, text) in texts.iter().enumerate() {
        if text.trim().is_empty() {
            return Err(ApiError::validation(format!(
                "inputs[{i}] is empty (or only whitespace)"
            )));
        }
        // Cheap bound first: a text of at most `max_chars` bytes has at most as many chars.
        if text.len() > config.max_chars {
            let chars = text.chars().count();
            if chars > config.max_chars {
                return Err(ApiError::too_large(format!(
                    "inputs[{i}] has {chars} characters; at most {}",
                    config.max_chars
                )));
            }
        }
    }
    Ok(())
}

/// The request's texts, checked against the limits ([`check_texts`]), as owned strings for
/// the blocking encoder.
fn checked_texts(shared: &Shared, inputs: &Inputs) -> Result<Vec<String>, ApiError> {
    let texts = inputs.texts();
    check_texts(shared, &texts)?;
    Ok(texts.into_iter().map(String::from).collect())
}

/// The logits among a job's answers (a logits job gets nothing else).
fn logits(answers: Vec<Answer>) -> Result<Vec<Logits>, ApiError> {
    answers
        .into_iter()
        .map(|a| match a {
            Answer::Logits(l) => Ok(l),
            Answer::Embedding(_) => Err(ApiError::new(ErrorKind::Backend, "logits expected")),
        })
        .collect()
}

/// Tokenizer refusals of a text too long for a non-truncating request are 413s.
fn encode_error(e: lora_bert::Error) -> ApiError {
    match e {
        lora_bert::Error::Tokenizer(TokenizerError::TooLong {
            index, tokens, max, ..
        }) => ApiError::too_large(format!(
            "inputs[{index}] has {tokens} tokens, more than {max}; send `\"truncate\": true` \
             to cut it"
        )),
        e => e.into(),
    }
}

/// Runs CPU work (tokenising, decoding) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(ErrorKind::Backend, format!("a worker failed: {e}")))?
}

/// Queues `rows` and waits for their answers.
async fn submit(
    shared: &Shared,
    target: Target,
    rows: Vec<Vec<u32>>,
) -> Result<Vec<Answer>, ApiError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let (reply, answer) = oneshot::channel();
    let job = Job {
        target,
        rows,
        reply,
    };
    match shared.batcher.submit(job) {
        Ok(()) => {}
        Err(Refused::Full) => {
            let mut e = ApiError::new(
                ErrorKind::Overloaded,
                format!(
                    "the queue holds {} requests, its maximum; retry later",
                    shared.config.max_queue
                ),
            );
            e.retry_after = Some(shared.config.retry_after_secs);
            return Err(e);
        }
        Err(Refused::Closed) => {
            return Err(ApiError::new(
                ErrorKind::ShuttingDown,
                "the server is shutting down",
            ));
        }
    }
    answer
        .await
        .map_err(|_| ApiError::new(ErrorKind::Backend, "the batcher stopped before answering"))?
}

fn pipeline(shared: &Shared, app: &str) -> Result<Arc<Pipeline>, ApiError> {
    shared.pipeline(app).ok_or_else(|| {
        ApiError::new(
            ErrorKind::UnknownApp,
            format!("no app `{app}` is registered"),
        )
    })
}

pub(crate) async fn ner(
    State(shared): State<Arc<Shared>>,
    ApiJson(request): ApiJson<NerRequest>,
) -> Result<Response, ApiError> {
    let texts = checked_texts(&shared, &request.inputs)?;
    let Pipeline::Ner(ner) = &*pipeline(&shared, &request.app)? else {
        return Err(ApiError::validation(format!(
            "app `{}` classifies texts: ask /predict",
            request.app
        )));
    };
    let ner = ner.clone();
    let (input, ner) = blocking(move || {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        Ok((ner.encode(&refs)?, ner))
    })
    .await?;
    let rows = input.ids().map(<[u32]>::to_vec).collect();
    let answers = submit(&shared, Target::Logits(request.app.clone()), rows).await?;
    let n = input.texts().len();
    let entities = blocking(move || Ok(ner.decode(&input, logits(answers)?)?)).await?;
    let out: Vec<Vec<EntityOut>> = entities
        .into_iter()
        .map(|es| {
            es.into_iter()
                .map(|e| EntityOut {
                    entity_group: e.label,
                    score: e.score,
                    word: e.text,
                    start: e.start,
                    end: e.end,
                })
                .collect()
        })
        .collect();
    Ok(served(&request.app, n, shaped(&request.inputs, out)))
}

pub(crate) async fn predict(
    State(shared): State<Arc<Shared>>,
    ApiJson(request): ApiJson<PredictRequest>,
) -> Result<Response, ApiError> {
    let texts = checked_texts(&shared, &request.inputs)?;
    let Pipeline::Classifier(classifier) = &*pipeline(&shared, &request.app)? else {
        return Err(ApiError::validation(format!(
            "app `{}` tags tokens: ask /ner",
            request.app
        )));
    };
    let classifier = classifier.clone();
    let truncate = request.truncate;
    let (rows, classifier) = blocking(move || {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let rows: Vec<Vec<u32>> = if truncate {
            let input = classifier.encode(&refs).map_err(encode_error)?;
            input.ids().map(<[u32]>::to_vec).collect()
        } else {
            // Refuse what the pipeline would cut; what fits encodes as the pipeline encodes
            // it (no truncation happens), so these rows are its rows.
            let strict = classifier
                .tokenizer()
                .clone()
                .with_length_policy(LengthPolicy::Error);
            let batch = strict
                .encode_batch(&refs)
                .map_err(|e| encode_error(e.into()))?;
            batch.encodings.into_iter().map(|e| e.ids).collect()
        };
        Ok((rows, classifier))
    })
    .await?;
    let n = rows.len();
    let answers = submit(&shared, Target::Logits(request.app.clone()), rows).await?;
    let out: Vec<Vec<Prediction>> = classifier
        .decode(logits(answers)?)?
        .into_iter()
        .map(|c| {
            let mut scores: Vec<Prediction> = c
                .scores
                .into_iter()
                .map(|(label, score)| Prediction { label, score })
                .collect();
            scores.sort_by(|a, b| b.score.total_cmp(&a.score));
            scores
        })
        .collect();
    Ok(served(&request.app, n, shaped(&request.inputs, out)))
}

pub(crate) async fn embed(
    State(shared): State<Arc<Shared>>,
    ApiJson(request): ApiJson<EmbedRequest>,
) -> Result<Response, ApiError> {
    let texts = checked_texts(&shared, &request.inputs)?;
    if let Some(app) = &request.app {
        pipeline(&shared, app)?;
    }
    let tokenizer = if request.truncate {
        shared.embed_tokenizer.clone()
    } else {
        shared
            .embed_tokenizer
            .clone()
            .with_length_policy(LengthPolicy::Error)
    };
    let rows = blocking(move || {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let batch = tokenizer
            .encode_batch(&refs)
            .map_err(|e| encode_error(e.into()))?;
        Ok(batch
            .encodings
            .into_iter()
            .map(|e| e.ids)
            .collect::<Vec<_>>())
    })
    .await?;
    let n = rows.len();
    let answers = submit(&shared, Target::Embedding(request.app.clone()), rows).await?;
    let out: Vec<Vec<f32>> = answers
        .into_iter()
        .map(|a| match a {
            Answer::Embedding(mut v) => {
                if request.normalize {
                    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                    // sentence-transformers' Normalize: divide by max(norm, 1e-12).
                    let norm = norm.max(1e-12);
                    v.iter_mut().for_each(|x| *x /= norm);
                }
                Ok(v)
            }
            Answer::Logits(_) => Err(ApiError::new(ErrorKind::Backend, "an embedding expected")),
        })
        .collect::<Result<_, _>>()?;
    let app = request.app.as_deref().unwrap_or("");
    // Embeddings are always a list, one per text (text-embeddings-inference's shape).
    Ok(served(app, n, out))
}

pub(crate) async fn health(State(shared): State<Arc<Shared>>) -> Response {
    if shared.batcher_alive() {
        Json(serde_json::json!({"status": "ok"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "the batcher has stopped"})),
        )
            .into_response()
    }
}

pub(crate) async fn info(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.info()).into_response()
}

pub(crate) async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        shared.metrics.render(shared.app_count()),
    )
        .into_response()
}

/// Refuses a management request without the configured bearer token.
fn authorize(shared: &Shared, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &shared.config.token else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Compared in time independent of where the first difference is.
    let same = given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorKind::Unauthorized,
            "the management routes need `Authorization: Bearer <token>`",
        ))
    }
}

pub(crate) async fn list_apps(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&shared, &headers)?;
    let memory = shared.runtime.memory();
    Ok(Json(AppsOut {
        backbone_bytes: memory.backbone_bytes,
        apps: shared.app_list(),
    })
    .into_response())
}

pub(crate) async fn register_app(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<RegisterRequest>,
) -> Result<Response, ApiError> {
    authorize(&shared, &headers)?;
    let name = request.name.clone();
    let worker = shared.clone();
    let app = blocking(move || worker.register(&request.name, &request.dir)).await?;
    let mut response = (StatusCode::CREATED, Json(app)).into_response();
    response.extensions_mut().insert(Served {
        app: name,
        texts: 0,
    });
    Ok(response)
}

pub(crate) async fn remove_app(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&shared, &headers)?;
    shared.remove(&name)?;
    Ok(served(&name, 0, serde_json::json!({"removed": name})))
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::new(ErrorKind::NotFound, "no such route")
}

/// Times every request and counts it by route, app and status.
pub(crate) async fn record(
    State(shared): State<Arc<Shared>>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let path = req.uri().path();
    let route = match path {
        "/embed" | "/predict" | "/ner" | "/apps" | "/health" | "/info" | "/metrics" => path,
        p if p.starts_with("/apps/") => "/apps/{name}",
        _ => "other",
    }
    .to_owned();
    let response = next.run(req).await;
    let (app, texts) = response
        .extensions()
        .get::<Served>()
        .map_or((String::new(), 0), |s| (s.app.clone(), s.texts));
    let error = response.extensions().get::<ErrorKind>().copied();
    shared.metrics.request(
        &route,
        &app,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
        texts,
        error,
    );
    response
}
