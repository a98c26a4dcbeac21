//! `GET /api/openapi.json`, the API description generated from the route
//! handlers and the `shared` types (utoipa), and `GET /api/docs`, a page that
//! renders it for people.

use actix_web::{HttpResponse, get};
use utoipa::OpenApi;
use utoipa::openapi::path::Operation;

use super::{annotate, health, metrics, openai, samples};

/// The whole API, as utoipa collects it.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "TeacherLM Studio",
        description = "Annotate data with a teacher model (TeacherLM's fundamentals, chain of thought and common mistakes), through this server's own API or its OpenAI-compatible one."
    ),
    paths(
        health::health,
        annotate::annotate,
        samples::samples,
        openai::models,
        openai::completions,
        openai::chat_completions,
        metrics::metrics,
        openapi_json,
        docs,
    ),
    tags(
        (name = "annotate", description = "TeacherLM annotation"),
        (name = "openai", description = "OpenAI-compatible generation"),
        (name = "operations", description = "Health, metrics and this description"),
    )
)]
pub struct ApiDoc;

/// The OpenAPI 3.1 description of this server.
#[utoipa::path(get, path = "/api/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1 JSON")))]
#[get("/api/openapi.json")]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

/// A readable page of the API description.
#[utoipa::path(get, path = "/api/docs", tag = "operations",
    responses((status = 200, description = "HTML", content_type = "text/html")))]
#[get("/api/docs")]
pub async fn docs() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(render(&ApiDoc::openapi()))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The description as one HTML page: each route with its method, summary,
/// request body and responses, then every schema as JSON.
pub fn render(api: &utoipa::openapi::OpenApi) -> String {
    let mut html = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>TeacherLM Studio API</title><style>\
         body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1d2330}\
         h2{margin-top:2rem;border-bottom:1px solid #dde}code,pre{background:#f3f4f8;border-radius:4px}\
         pre{padding:.75rem;overflow:auto}.m{font-weight:700;text-transform:uppercase;margin-right:.5rem}\
         table{border-collapse:collapse}td{padding:.2rem .8rem .2rem 0;vertical-align:top}\
         </style></head><body>",
    );
    html.push_str(&format!(
        "<h1>{}</h1><p>{}</p><p><a href=\"/api/openapi.json\">openapi.json</a></p>",
        escape(&api.info.title),
        escape(api.info.description.as_deref().unwrap_or_default())
    ));
    html.push_str("<h2>Routes</h2>");
    for (path, item) in &api.paths.paths {
        let ops: [(&str, &Option<Operation>); 3] = [
            ("get", &item.get),
            ("post", &item.post),
            ("delete", &item.delete),
        ];
        for (method, op) in ops {
            let Some(op) = op else { continue };
            html.push_str(&format!(
                "<h3><span class=\"m\">{method}</span><code>{}</code></h3>",
                escape(path)
            ));
            for text in [&op.summary, &op.description].into_iter().flatten() {
                html.push_str(&format!("<p>{}</p>", escape(text)));
            }
            if let Some(body) = &op.request_body {
                let json = serde_json::to_string(&body.content).unwrap_or_default();
                html.push_str(&format!("<p>Request body:</p><pre>{}</pre>", escape(&json)));
            }
            html.push_str("<table>");
            for (status, response) in &op.responses.responses {
                let text = match response {
                    utoipa::openapi::RefOr::T(r) => r.description.clone(),
                    utoipa::openapi::RefOr::Ref(r) => r.ref_location.clone(),
                };
                html.push_str(&format!(
                    "<tr><td><code>{}</code></td><td>{}</td></tr>",
                    escape(status),
                    escape(&text)
                ));
            }
            html.push_str("</table>");
        }
    }
    if let Some(components) = &api.components {
        html.push_str("<h2>Schemas</h2>");
        for (name, schema) in &components.schemas {
            let json = serde_json::to_string_pretty(schema).unwrap_or_default();
            html.push_str(&format!(
                "<h3 id=\"{0}\">{0}</h3><pre>{1}</pre>",
                escape(name),
                escape(&json)
            ));
        }
    }
    html.push_str("</body></html>");
    html
}
