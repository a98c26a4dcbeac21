//! Middleware around every route: API keys on non-public routes, and the request
//! counter of `/metrics`.
//!
//! Public without a key: `/health`, the API description (`/api/openapi.json`,
//! `/api/docs`) and the web app's files. Everything else under `/api`, `/v1`
//! and `/metrics` needs `Authorization: Bearer <key>` once keys are configured.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{Error, ResponseError, web};

use crate::error::{HttpError, OpenAiError};
use crate::state::AppState;

/// Whether `path` needs an API key (when keys are configured).
pub fn is_protected(path: &str) -> bool {
    let public = ["/health", "/api/openapi.json", "/api/docs"];
    if public.contains(&path) {
        return false;
    }
    ["/api", "/v1", "/metrics"]
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")))
}

/// Checks the API key, runs the route, counts the answer.
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    if let Some(state) = &state {
        let keys = &state.settings.api_keys;
        if !keys.is_empty() && is_protected(req.path()) {
            let given = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim);
            if !given.is_some_and(|k| keys.iter().any(|key| key == k)) {
                let response = if req.path().starts_with("/v1/") {
                    OpenAiError(HttpError::Unauthorized).error_response()
                } else {
                    HttpError::Unauthorized.error_response()
                };
                state
                    .metrics
                    .request(&route_label(&req), req.method().as_str(), 401);
                return Ok(req.into_response(response));
            }
        }
    }
    let route = route_label(&req);
    let method = req.method().to_string();
    let response = next.call(req).await?.map_into_boxed_body();
    if let Some(state) = state {
        state
            .metrics
            .request(&route, &method, response.status().as_u16());
    }
    Ok(response)
}

/// The route pattern (not the raw path, which would grow the label set without
/// bound); static files all count as `static`.
fn route_label(req: &ServiceRequest) -> String {
    match req.match_pattern() {
        Some(p) if p != "/" || req.path() == "/" => p,
        _ if is_protected(req.path()) || req.path() == "/health" => "unmatched".into(),
        _ => "static".into(),
    }
}
