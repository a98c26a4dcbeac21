//! JSON bodies of the HTTP API, as the server sends them and the browser reads them.

use serde::{Deserialize, Serialize};

/// Body of `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    /// Always `"ok"` when the server answers at all.
    pub status: String,
    /// The server's version (the workspace version).
    pub version: String,
    /// Models found in the model directory, by catalogue name or file name.
    pub models: Vec<String>,
}

/// The error body every `/api` route returns with a 4xx or 5xx status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiError {
    /// A sentence for a person.
    pub error: String,
    /// A stable machine-readable kind, e.g. `"validation"`, `"not_found"`.
    pub error_type: String,
    /// The request field at fault, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_error_omits_absent_field() {
        let e = ApiError {
            error: "bad".into(),
            error_type: "validation".into(),
            field: None,
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"error":"bad","error_type":"validation"}"#
        );
    }
}
