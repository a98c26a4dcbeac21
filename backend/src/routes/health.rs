//! `GET /health`: liveness plus what the server can serve.

use actix_web::{HttpResponse, get, web};
use shared::api::Health;

use crate::models;
use crate::state::AppState;

/// Reports `ok`, the version and the models present in the model directory.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, body = Health)))]
#[get("/health")]
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let dir = state.settings.models_dir.clone();
    // Listing touches the disk: keep it off the async workers.
    let names = web::block(move || {
        models::list(&dir)
            .into_iter()
            .filter(|m| m.present)
            .map(|m| m.name)
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    HttpResponse::Ok().json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        models: names,
    })
}
