//! `GET /metrics`: Prometheus text exposition of requests, tokens, queue depth
//! and latency histograms.

use actix_web::{HttpResponse, get, web};

use crate::state::AppState;

/// The current metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain")))]
#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render(&state.engines.gauges()))
}
