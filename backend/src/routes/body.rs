//! Reading JSON request bodies: a size limit answered with 413, and parse errors
//! answered with 422 naming the field (`options[1]`, `temperature`), which
//! actix's own `Json` extractor cannot do.

use actix_web::web;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::error::HttpError;

/// The largest body a route accepts (1 MiB: a long prompt is a few KB).
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Reads the whole body (at most [`MAX_BODY_BYTES`]) and parses it as `T`.
pub async fn json<T: DeserializeOwned>(mut payload: web::Payload) -> Result<T, HttpError> {
    let mut bytes = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| HttpError::invalid("body", e.to_string()))?;
        if bytes.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(HttpError::TooLarge {
                limit: MAX_BODY_BYTES,
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    parse(&bytes)
}

/// Parses `bytes` as `T`, naming the field a parse error is about.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, HttpError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(HttpError::invalid("body", "is empty; send a JSON object"));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        if inner.is_syntax() || inner.is_eof() {
            return HttpError::invalid("body", format!("not valid JSON: {message}"));
        }
        // "missing field `x`" is reported at the parent's path: name the field.
        let field = match message.strip_prefix("missing field `") {
            Some(rest) => {
                let name = rest.split('`').next().unwrap_or_default();
                if path == "." {
                    name.to_string()
                } else {
                    format!("{path}.{name}")
                }
            }
            None if path == "." => "body".to_string(),
            None => path,
        };
        HttpError::invalid(field, message)
    })?;
    // Anything after the value (a second object, stray text) is an error too.
    de.end()
        .map_err(|e| HttpError::invalid("body", e.to_string()))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Req {
        question: String,
        #[serde(default)]
        options: Vec<String>,
        temperature: Option<f32>,
    }

    fn field(body: &str) -> String {
        match parse::<Req>(body.as_bytes()).unwrap_err() {
            HttpError::Invalid { field, .. } => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parse_errors_name_the_field() {
        assert_eq!(field(r#"{"options": []}"#), "question");
        assert_eq!(
            field(r#"{"question": "q", "options": ["a", 3]}"#),
            "options[1]"
        );
        assert_eq!(
            field(r#"{"question": "q", "temperature": "hot"}"#),
            "temperature"
        );
        assert_eq!(field("not json"), "body");
        assert_eq!(field(""), "body");
        assert_eq!(field(r#"{"question": "q"} {"question": "r"}"#), "body");
    }
}
