//! The built frontend: static files from trunk's `dist/`, and `index.html` for
//! every other GET outside `/api` and `/v1`, so client-side routes (`/annotate`)
//! survive a reload. Unknown API paths get a JSON 404.

use std::path::PathBuf;

use actix_files::{Files, NamedFile};
use actix_web::dev::{ServiceRequest, ServiceResponse, fn_service};
use actix_web::{HttpResponse, web};

use crate::error::HttpError;

/// The static file service rooted at `dir`, with the SPA fallback.
pub fn service(dir: PathBuf) -> Files {
    let index = dir.join("index.html");
    Files::new("/", dir)
        .index_file("index.html")
        .default_handler(fn_service(move |req: ServiceRequest| {
            let index = index.clone();
            async move {
                let (req, _) = req.into_parts();
                let path = req.path();
                if is_api(path) || req.method() != actix_web::http::Method::GET {
                    let resp = actix_web::ResponseError::error_response(&HttpError::NotFound(
                        path.to_string(),
                    ));
                    return Ok(ServiceResponse::new(req, resp));
                }
                match NamedFile::open_async(&index).await {
                    Ok(file) => {
                        let resp = file.into_response(&req);
                        Ok(ServiceResponse::new(req, resp))
                    }
                    Err(_) => Ok(ServiceResponse::new(req, frontend_missing())),
                }
            }
        }))
}

fn is_api(path: &str) -> bool {
    ["/api", "/v1", "/health", "/metrics"]
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")))
}

/// What `/` shows when the frontend was not built.
pub fn frontend_missing() -> HttpResponse {
    HttpResponse::ServiceUnavailable()
        .content_type("text/plain; charset=utf-8")
        .body("The web app is not built. Run `cargo xtask serve`, which builds it with trunk.\n")
}

/// JSON 404 for anything unrouted when there is no frontend directory.
pub async fn not_found(req: actix_web::HttpRequest) -> Result<HttpResponse, HttpError> {
    if is_api(req.path()) {
        Err(HttpError::NotFound(req.path().to_string()))
    } else {
        Ok(frontend_missing())
    }
}

/// Registers the frontend (or the fallback when `dir` has no index.html).
pub fn configure(dir: PathBuf) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        if dir.join("index.html").exists() {
            cfg.service(service(dir));
        } else {
            tracing::warn!(dir = %dir.display(), "no built frontend; serving the API only");
            cfg.default_service(web::to(not_found));
        }
    }
}
