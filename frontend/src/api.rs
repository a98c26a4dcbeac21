//! The typed HTTP client: one async function per server route, each returning a `shared`
//! DTO or a [`ClientError`] whose `Display` is a sentence meant for the user.
//!
//! Requests go to the origin that served the page (the backend serves both the app and
//! the API), so paths are relative and no base URL is configured.

use gloo_net::http::{Request, Response};
use leptos::web_sys::AbortSignal;
use serde::de::DeserializeOwned;
use shared::api::{ApiError, Health};
use shared::samples::SampleList;

/// How long a request may take before it is abandoned, in seconds.
pub const REQUEST_TIMEOUT_SECS: u32 = 10;

/// Why a request to the server failed, worded for the person using the app.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The request never got an HTTP answer: server down, wrong address, network off.
    #[error("Cannot reach the server at {origin} ({reason}).")]
    Unreachable {
        /// Where the app expected the server, e.g. `http://127.0.0.1:8080`.
        origin: String,
        /// What the browser reported, e.g. `Failed to fetch`.
        reason: String,
    },
    /// The server accepted the connection but did not answer in time.
    #[error("The server at {origin} did not answer within {seconds} seconds.")]
    Timeout {
        /// Where the app expected the server.
        origin: String,
        /// The limit that was exceeded.
        seconds: u32,
    },
    /// The teacher's queue is full; the server suggests a wait.
    #[error("The teacher is busy with other requests; try again in {retry_after} s.")]
    Busy {
        /// Seconds to wait (`Retry-After`).
        retry_after: u32,
    },
    /// The server answered with a 4xx or 5xx status.
    #[error("The server refused {path} with status {status}: {message}")]
    Status {
        /// The request path, e.g. `/health`.
        path: String,
        /// The HTTP status code.
        status: u16,
        /// The server's own sentence (`ApiError::error`), or the status text.
        message: String,
    },
    /// The server answered 2xx with a body this build of the app cannot read, usually
    /// because app and server come from different versions.
    #[error(
        "The server's answer to {path} could not be read ({reason}). Reload the page; if that does not help, the app and server versions may differ."
    )]
    Decode {
        /// The request path.
        path: String,
        /// What the JSON decoder reported.
        reason: String,
    },
}

/// `GET /health`: the server's version and the models it found.
pub async fn health() -> Result<Health, ClientError> {
    get_json("/health").await
}

/// `GET /api/samples`: a page of real examples of `dataset`.
pub async fn samples(dataset: &str, offset: usize) -> Result<SampleList, ClientError> {
    get_json(&format!(
        "/api/samples?dataset={dataset}&offset={offset}&limit=1"
    ))
    .await
}

/// The origin this page was served from, which is where the server is expected.
pub fn server_origin() -> String {
    leptos::prelude::window()
        .location()
        .origin()
        .unwrap_or_else(|_| "this page's address".to_owned())
}

/// Sends `GET path` and decodes a JSON body of type `T`.
async fn get_json<T: DeserializeOwned>(path: &str) -> Result<T, ClientError> {
    let timeout = AbortSignal::timeout_with_u32(REQUEST_TIMEOUT_SECS * 1000);
    let response = Request::get(path)
        .header("Accept", "application/json")
        .abort_signal(Some(&timeout))
        .send()
        .await
        .map_err(transport_error)?;
    if !response.ok() {
        return Err(status_error(path, response).await);
    }
    response.json::<T>().await.map_err(|e| match e {
        gloo_net::Error::JsError(js) if is_timeout(&js.name) => ClientError::Timeout {
            origin: server_origin(),
            seconds: REQUEST_TIMEOUT_SECS,
        },
        other => ClientError::Decode {
            path: path.to_owned(),
            reason: other.to_string(),
        },
    })
}

/// Maps a failure to get any HTTP answer at all.
pub(crate) fn transport_error(error: gloo_net::Error) -> ClientError {
    match error {
        gloo_net::Error::JsError(js) if is_timeout(&js.name) => ClientError::Timeout {
            origin: server_origin(),
            seconds: REQUEST_TIMEOUT_SECS,
        },
        gloo_net::Error::JsError(js) => ClientError::Unreachable {
            origin: server_origin(),
            reason: js.message,
        },
        other => ClientError::Unreachable {
            origin: server_origin(),
            reason: other.to_string(),
        },
    }
}

/// Builds the error for a 4xx/5xx answer, preferring the server's `ApiError` sentence.
pub(crate) async fn status_error(path: &str, response: Response) -> ClientError {
    let status = response.status();
    if status == 429 {
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(1);
        return ClientError::Busy { retry_after };
    }
    let status_text = response.status_text();
    let message = match response.json::<ApiError>().await {
        Ok(body) => body.error,
        Err(_) if status_text.is_empty() => "no explanation given".to_owned(),
        Err(_) => status_text,
    };
    ClientError::Status {
        path: path.to_owned(),
        status,
        message,
    }
}

/// Whether a DOM exception name means the request was cut by its timeout signal.
fn is_timeout(name: &str) -> bool {
    matches!(name, "TimeoutError" | "AbortError")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_as_sentences() {
        let e = ClientError::Unreachable {
            origin: "http://127.0.0.1:8080".into(),
            reason: "Failed to fetch".into(),
        };
        assert_eq!(
            e.to_string(),
            "Cannot reach the server at http://127.0.0.1:8080 (Failed to fetch)."
        );
        let e = ClientError::Status {
            path: "/health".into(),
            status: 503,
            message: "Model still loading".into(),
        };
        assert_eq!(
            e.to_string(),
            "The server refused /health with status 503: Model still loading"
        );
    }

    #[test]
    fn timeout_names() {
        assert!(is_timeout("TimeoutError"));
        assert!(is_timeout("AbortError"));
        assert!(!is_timeout("TypeError"));
    }
}
