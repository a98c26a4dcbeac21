//! `GET /health`: liveness plus what the server can serve.

use actix_web::{HttpResponse, get, web};
use shared::api::Health;

use crate::configuration::Settings;
use crate::models;

/// Reports `ok`, the version and the models present in the model directory.
#[get("/health")]
pub async fn health(settings: web::Data<Settings>) -> HttpResponse {
    let dir = settings.models_dir.clone();
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
