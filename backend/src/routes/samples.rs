//! `GET /api/samples`: a page of real examples (CREAK, ECQA, MMLU, GSM8K) for the
//! Annotate page's sample picker.

use actix_web::{HttpResponse, get, web};
use serde::Deserialize;
use shared::samples::SampleList;

use crate::error::HttpError;
use crate::samples::{self as data, SamplesError};
use crate::state::AppState;

/// Most samples per page.
const MAX_LIMIT: usize = 200;

/// Query of `GET /api/samples`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct SamplesQuery {
    /// `creak`, `ecqa`, `mmlu` or `gsm8k`.
    dataset: String,
    /// MMLU subject (`high_school_biology`); default the first.
    subject: Option<String>,
    /// Examples to skip.
    #[serde(default)]
    offset: usize,
    /// Examples to return (default 20, at most 200).
    limit: Option<usize>,
}

/// A page of examples from one dataset.
#[utoipa::path(get, path = "/api/samples", tag = "annotate", params(SamplesQuery),
    responses(
        (status = 200, body = SampleList),
        (status = 422, description = "Unknown dataset or subject, or a bad page", body = shared::api::ApiError),
        (status = 503, description = "The data folder is missing", body = shared::api::ApiError),
    ))]
#[get("/api/samples")]
pub async fn samples(
    state: web::Data<AppState>,
    query: web::Query<SamplesQuery>,
) -> Result<HttpResponse, HttpError> {
    let q = query.into_inner();
    let limit = q.limit.unwrap_or(20);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(HttpError::invalid(
            "limit",
            format!("must be 1 to {MAX_LIMIT}"),
        ));
    }
    let dir = state.settings.data_dir.clone();
    let page =
        web::block(move || data::list(&dir, &q.dataset, q.subject.as_deref(), q.offset, limit))
            .await
            .map_err(|e| HttpError::Internal(e.to_string()))?
            .map_err(|e| match e {
                SamplesError::UnknownDataset(_) => HttpError::invalid("dataset", e.to_string()),
                SamplesError::UnknownSubject(_) => HttpError::invalid("subject", e.to_string()),
                SamplesError::File { .. } => HttpError::Unavailable(e.to_string()),
            })?;
    Ok(HttpResponse::Ok().json(page))
}
