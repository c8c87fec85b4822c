//! Errors as the server answers them: a status code and a JSON body
//! `{"error": "...", "error_type": "..."}` (text-embeddings-inference's shape).

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// What went wrong, as `error_type` names it. The metrics count errors by this kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A body that is not the JSON the route takes (400, 415 or 422 as the cause).
    BadRequest,
    /// Well-formed JSON the route refuses: an empty text list, an empty text, a wrong field
    /// (422).
    Validation,
    /// Too many texts, a text too long, a body too large (413).
    PayloadTooLarge,
    /// No app of that name (404).
    UnknownApp,
    /// No such route (404).
    NotFound,
    /// An app of that name is registered already (409).
    Conflict,
    /// An app directory that does not load (422).
    AppLoad,
    /// A management route without the right bearer token (401).
    Unauthorized,
    /// The queue is full (503 with `Retry-After`).
    Overloaded,
    /// The server is shutting down (503).
    ShuttingDown,
    /// The model failed on a request (500).
    Backend,
}

impl ErrorKind {
    /// The name metrics and bodies use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::Validation => "validation",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnknownApp => "unknown_app",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::AppLoad => "app_load",
            Self::Unauthorized => "unauthorized",
            Self::Overloaded => "overloaded",
            Self::ShuttingDown => "shutting_down",
            Self::Backend => "backend",
        }
    }
}

/// An error answer: status, kind and message.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The status code.
    pub status: StatusCode,
    /// What went wrong.
    pub kind: ErrorKind,
    /// For the client to read.
    pub message: String,
    /// `Retry-After` seconds (a full queue).
    pub retry_after: Option<u32>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    error_type: ErrorKind,
}

impl ApiError {
    /// An error of `kind` with its usual status.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let status = match kind {
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::Validation | ErrorKind::AppLoad => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::UnknownApp | ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::Overloaded | ErrorKind::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Backend => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self {
            status,
            kind,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A 422 naming what is wrong with the request.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Validation, message)
    }

    /// A 413.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::PayloadTooLarge, message)
    }
}

impl From<lora_bert::Error> for ApiError {
    fn from(e: lora_bert::Error) -> Self {
        use lora_bert::Error as E;
        let kind = match &e {
            E::UnknownApp(_) => ErrorKind::UnknownApp,
            E::AppExists(_) => ErrorKind::Conflict,
            E::InvalidInput(_) | E::Tokenizer(_) | E::Input(_) | E::Data(_) => {
                ErrorKind::Validation
            }
            E::Checkpoint(_)
            | E::Adapter(_)
            | E::App(_)
            | E::OwnBackbone { .. }
            | E::HeadWidth { .. }
            | E::UnusedTensors { .. } => ErrorKind::AppLoad,
            _ => ErrorKind::Backend,
        };
        Self::new(kind, e.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = r.status();
        let kind = match status {
            StatusCode::PAYLOAD_TOO_LARGE => ErrorKind::PayloadTooLarge,
            StatusCode::UNPROCESSABLE_ENTITY => ErrorKind::Validation,
            _ => ErrorKind::BadRequest,
        };
        Self {
            status,
            kind,
            message: r.body_text(),
            retry_after: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(Body {
                error: &self.message,
                error_type: self.kind,
            }),
        )
            .into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        // Lets the metrics layer count the error by kind.
        response.extensions_mut().insert(self.kind);
        response
    }
}
