//! Server-sent events: `text/event-stream` responses built from a stream of
//! frames, and the `Accept` check that chooses them.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::{Stream, StreamExt};
use serde::Serialize;

/// Whether the client asked for a stream (`Accept: text/event-stream`).
pub fn wants_stream(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(header::ACCEPT)
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"))
}

/// One frame: `event: {name}` (when given) and `data: {json}`.
pub fn frame(name: Option<&str>, data: &impl Serialize) -> web::Bytes {
    let json = serde_json::to_string(data).unwrap_or_else(|e| {
        format!(r#"{{"error":{{"message":"cannot encode an event: {e}","type":"server_error"}}}}"#)
    });
    match name {
        Some(name) => web::Bytes::from(format!("event: {name}\ndata: {json}\n\n")),
        None => web::Bytes::from(format!("data: {json}\n\n")),
    }
}

/// A `data: [DONE]` frame, OpenAI's end of stream.
pub fn done() -> web::Bytes {
    web::Bytes::from_static(b"data: [DONE]\n\n")
}

/// A streaming response of `frames`. Proxies and the compression middleware
/// are asked not to buffer it, and
/// when the client goes away actix drops the stream, which cancels the
/// generations feeding it.
pub fn response(frames: impl Stream<Item = web::Bytes> + 'static) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // `identity` keeps the compression middleware from buffering frames.
        .insert_header((header::CONTENT_ENCODING, "identity"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(frames.map(Ok::<_, actix_web::Error>))
}
