//! The one mapping from errors to HTTP responses: status code plus the JSON body
//! `shared::api::ApiError` (`{"error", "error_type", "field"}`).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use shared::api::ApiError;

/// An error a route returns.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Nothing at this path.
    #[error("no route {0}")]
    NotFound(String),
    /// Something broke on our side.
    #[error("internal error: {0}")]
    Internal(String),
}

impl HttpError {
    fn kind(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "not_found",
            Self::Internal(_) => "internal",
        }
    }
}

impl ResponseError for HttpError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(ApiError {
            error: self.to_string(),
            error_type: self.kind().to_string(),
            field: None,
        })
    }
}
