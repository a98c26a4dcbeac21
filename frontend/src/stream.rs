//! Server-sent events over `fetch`: `POST /api/annotate` with
//! `Accept: text/event-stream`, read chunk by chunk from the response body.
//! (`EventSource` cannot POST.) Frames are split on blank lines as bytes, so a
//! multi-byte character split across chunks is decoded only once whole.

use gloo_net::http::Request;
use js_sys::{Reflect, Uint8Array};
use serde::de::DeserializeOwned;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortSignal, ReadableStreamDefaultReader};

use crate::api::{ClientError, status_error, transport_error};

/// Splits complete frames off the front of `buf`; returns the `data:` payload
/// of each (frames without one, like comments, are skipped).
pub fn take_frames(buf: &mut Vec<u8>) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
        let frame: Vec<u8> = buf.drain(..end + 2).collect();
        let text = String::from_utf8_lossy(&frame);
        let data: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        if !data.is_empty() {
            out.push(data.join("\n"));
        }
    }
    out
}

/// Posts `body` as JSON to `path` asking for an event stream, and calls
/// `on_event` with each decoded event until the stream ends or `signal`
/// aborts it. A 4xx/5xx answer is an error before any event.
pub async fn post_events<B: serde::Serialize, E: DeserializeOwned>(
    path: &str,
    body: &B,
    signal: &AbortSignal,
    mut on_event: impl FnMut(E),
) -> Result<(), ClientError> {
    let response = Request::post(path)
        .header("Accept", "text/event-stream")
        .abort_signal(Some(signal))
        .json(body)
        .map_err(|e| ClientError::Decode {
            path: path.to_owned(),
            reason: e.to_string(),
        })?
        .send()
        .await
        .map_err(transport_error)?;
    if !response.ok() {
        return Err(status_error(path, response).await);
    }
    let broken = |reason: String| ClientError::Unreachable {
        origin: crate::api::server_origin(),
        reason,
    };
    let Some(body) = response.body() else {
        return Err(broken("the answer had no body".into()));
    };
    let reader: ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let chunk = JsFuture::from(reader.read())
            .await
            .map_err(|e| broken(format!("{e:?}")))?;
        let done = Reflect::get(&chunk, &"done".into())
            .ok()
            .and_then(|v| v.as_bool())
            .unwrap_or(true);
        if done {
            break;
        }
        if let Ok(value) = Reflect::get(&chunk, &"value".into()) {
            buf.extend(value.unchecked_into::<Uint8Array>().to_vec());
        }
        for data in take_frames(&mut buf) {
            let event = serde_json::from_str::<E>(&data).map_err(|e| ClientError::Decode {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
            on_event(event);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_on_blank_lines_and_wait_for_the_rest() {
        let mut buf = b"event: token\ndata: {\"a\":1}\n\ndata: {\"b\":\"\xc3".to_vec();
        assert_eq!(take_frames(&mut buf), vec!["{\"a\":1}".to_string()]);
        assert!(take_frames(&mut buf).is_empty());
        buf.extend_from_slice(b"\xa9\"}\n\n: comment\n\n");
        assert_eq!(take_frames(&mut buf), vec!["{\"b\":\"é\"}".to_string()]);
        assert!(buf.is_empty());
    }
}
