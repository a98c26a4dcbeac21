//! `POST /api/annotate`: TeacherLM annotations of one sample, as JSON or, with
//! `Accept: text/event-stream`, streamed token by token per kind.

use actix_web::{HttpRequest, HttpResponse, post, web};
use futures_util::StreamExt;
use shared::annotate::{AnnotateEvent, AnnotateRequest};

use super::{body, sse};
use crate::annotate as service;
use crate::error::HttpError;
use crate::state::AppState;

/// Annotates a sample with the kinds asked (default: fundamental, cot, mistakes).
#[utoipa::path(
    post,
    path = "/api/annotate",
    tag = "annotate",
    request_body = AnnotateRequest,
    responses(
        (status = 200, description = "The annotations (JSON), or with `Accept: text/event-stream` a stream of `AnnotateEvent`s ending with `record`", body = shared::annotate::AnnotateResponse),
        (status = 413, description = "Body over 1 MiB", body = shared::api::ApiError),
        (status = 422, description = "A field is invalid; `field` names it", body = shared::api::ApiError),
        (status = 429, description = "The teacher's queue is full; see `Retry-After`", body = shared::api::ApiError),
        (status = 503, description = "No teacher model is loaded", body = shared::api::ApiError),
    )
)]
#[post("/api/annotate")]
pub async fn annotate(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, HttpError> {
    let request: AnnotateRequest = body::json(payload).await?;
    let started = service::start(&state.engines, &request, state.settings.annotate_max_tokens)?;
    if sse::wants_stream(&req) {
        let frames =
            service::events(started).map(|e: AnnotateEvent| sse::frame(Some(e.name()), &e));
        return Ok(sse::response(frames));
    }
    Ok(HttpResponse::Ok().json(service::collect(started).await?))
}
