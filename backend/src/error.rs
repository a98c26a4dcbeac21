//! The one mapping from errors to HTTP responses. `/api` routes answer with
//! `shared::api::ApiError` (`{"error", "error_type", "field"}`); `/v1` routes
//! wrap the same [`HttpError`] in [`OpenAiError`] to answer in OpenAI's shape
//! (`{"error": {"message", "type", "param", "code"}}`), so its clients raise the
//! right exception.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use shared::api::ApiError;
use shared::openai::{ErrorBody, ErrorDetail};

use crate::infer::InferError;

/// An error a route returns.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Nothing at this path.
    #[error("no route {0}")]
    NotFound(String),
    /// A request field is invalid (422).
    #[error("{field}: {message}")]
    Invalid {
        /// The field at fault (`options[2]`, `temperature`, `model`).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The body is larger than the server accepts (413).
    #[error("the request body exceeds {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// No or a wrong API key (401).
    #[error("a valid API key is required: send `Authorization: Bearer <key>`")]
    Unauthorized,
    /// The model's queue is full (429 with `Retry-After`).
    #[error("{message}")]
    Busy {
        /// What is full.
        message: String,
        /// Seconds to wait.
        retry_after_s: u64,
    },
    /// Nothing can serve the request now (503).
    #[error("{0}")]
    Unavailable(String),
    /// A remote model's server failed (502).
    #[error("{0}")]
    BadGateway(String),
    /// Something broke on our side (500).
    #[error("internal error: {0}")]
    Internal(String),
}

impl HttpError {
    /// A 422 naming `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "not_found",
            Self::Invalid { .. } => "validation",
            Self::TooLarge { .. } => "too_large",
            Self::Unauthorized => "unauthorized",
            Self::Busy { .. } => "queue_full",
            Self::Unavailable(_) => "unavailable",
            Self::BadGateway(_) => "remote",
            Self::Internal(_) => "internal",
        }
    }

    fn field(&self) -> Option<String> {
        match self {
            Self::Invalid { field, .. } => Some(field.clone()),
            _ => None,
        }
    }

    fn respond(&self, body: impl serde::Serialize) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code()).json(body);
        if let Self::Busy { retry_after_s, .. } = self {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_str(&retry_after_s.to_string())
                    .unwrap_or(HeaderValue::from_static("1")),
            );
        }
        if let Self::Unauthorized = self {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }

    /// The body `/api` routes send.
    pub fn api_body(&self) -> ApiError {
        ApiError {
            error: self.to_string(),
            error_type: self.kind().to_string(),
            field: self.field(),
        }
    }
}

impl From<InferError> for HttpError {
    fn from(e: InferError) -> Self {
        match e {
            InferError::Invalid { field, message } => Self::Invalid { field, message },
            InferError::QueueFull { retry_after_s, .. } => Self::Busy {
                message: e.to_string(),
                retry_after_s,
            },
            InferError::Unavailable { .. } => Self::Unavailable(e.to_string()),
        }
    }
}

impl ResponseError for HttpError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Busy { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        self.respond(self.api_body())
    }
}

/// An [`HttpError`] answered in OpenAI's error shape (the `/v1` routes).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct OpenAiError(#[from] pub HttpError);

impl From<InferError> for OpenAiError {
    fn from(e: InferError) -> Self {
        Self(e.into())
    }
}

impl OpenAiError {
    /// The `{"error": {...}}` body.
    pub fn body(&self) -> ErrorBody {
        let e = &self.0;
        let (kind, code) = match e {
            HttpError::Invalid { field, .. } if field == "model" => {
                ("invalid_request_error", Some("model_not_found"))
            }
            HttpError::Invalid { .. } | HttpError::TooLarge { .. } | HttpError::NotFound(_) => {
                ("invalid_request_error", None)
            }
            HttpError::Unauthorized => ("authentication_error", Some("invalid_api_key")),
            HttpError::Busy { .. } => ("rate_limit_exceeded", Some("queue_full")),
            HttpError::Unavailable(_) | HttpError::BadGateway(_) | HttpError::Internal(_) => {
                ("server_error", None)
            }
        };
        ErrorBody {
            error: ErrorDetail {
                message: e.to_string(),
                kind: kind.to_string(),
                param: e.field(),
                code: code.map(str::to_string),
            },
        }
    }
}

impl ResponseError for OpenAiError {
    fn status_code(&self) -> StatusCode {
        self.0.status_code()
    }

    fn error_response(&self) -> HttpResponse {
        self.0.respond(self.body())
    }
}
