//! API errors and the JSON responses they become.
//!
//! Every refusal of the API is an [`ApiError`]: a status, a one-line message and a JSON detail
//! (usually `{"field": ..}` naming the parameter at fault). [`ApiError::into_response`] is the one
//! place that turns them into `{"error": "...", "detail": ...}` bodies.

use director_core::config::ConfigError;
use http::{StatusCode, header};
use serde_json::{Value, json};

use crate::{response::Reply, store::StoreError};

/// Why the API refused a request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
    pub(crate) detail: Value,
    /// For 405: the methods the resource allows.
    pub(crate) allow: Option<&'static str>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>, detail: Value) -> Self {
        ApiError {
            status,
            message: message.into(),
            detail,
            allow: None,
        }
    }

    /// 400 naming the parameter at fault.
    pub(crate) fn field(field: &str, message: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            format!("bad parameter {field:?}: {message}"),
            json!({ "field": field }),
        )
    }

    pub(crate) fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, what, Value::Null)
    }

    pub(crate) fn method_not_allowed(allow: &'static str) -> Self {
        ApiError {
            allow: Some(allow),
            ..Self::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed here",
                json!({ "allow": allow }),
            )
        }
    }

    pub(crate) fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message, Value::Null)
    }

    pub(crate) fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message, Value::Null)
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message, Value::Null)
    }

    /// The JSON response.
    pub(crate) fn into_reply(self) -> Reply {
        let mut reply = Reply::json(
            self.status,
            &json!({ "error": self.message, "detail": self.detail }),
        );
        if let Some(allow) = self.allow {
            reply = reply.header(header::ALLOW, allow);
        }
        reply
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let message = e.to_string();
        match e {
            StoreError::NotFound(_) => ApiError::not_found(message),
            StoreError::Immutable(_) => ApiError::new(
                StatusCode::FORBIDDEN,
                message,
                json!({ "reason": "static cluster: only enable and disable are allowed" }),
            ),
            StoreError::Forbidden(_) => ApiError::forbidden(message),
            StoreError::Conflict(_) => ApiError::conflict(message),
            StoreError::Invalid(e) => invalid(&e),
            StoreError::Persist { file, source } => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot persist the change; nothing was changed",
                json!({ "file": file.display().to_string(), "io": source.to_string() }),
            ),
        }
    }
}

/// 400 for a config the store refused to build, naming the key (`rate` of
/// `clusters.app.buckets[1].rate`) and the whole path.
pub(crate) fn invalid(e: &ConfigError) -> ApiError {
    if !e.path.contains('.') {
        // A parameter refused inside a store call: the message already names it.
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            e.message.clone(),
            json!({ "field": e.path }),
        );
    }
    let mut parts = e.path.rsplit('.');
    let last = parts.next().unwrap_or(&e.path);
    let field = last.split('[').next().unwrap_or(last);
    // `clusters.app.health.path` is the API's `health-path`.
    let field = match parts.next() {
        Some("health") => format!("health-{field}"),
        _ => field.to_owned(),
    };
    ApiError::new(
        StatusCode::BAD_REQUEST,
        format!("bad parameter {field:?}: {}", e.message),
        json!({ "field": field, "path": e.path, "message": e.message }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_names_the_last_key() {
        let e = invalid(&ConfigError::new(
            "clusters.app.buckets[1].rate",
            "Rate limit overflow.",
        ));
        assert_eq!(e.status, 400);
        assert_eq!(e.detail["field"], "rate");
        assert_eq!(e.detail["path"], "clusters.app.buckets[1].rate");
        let e = invalid(&ConfigError::new("clusters.app.backends[0]", "x"));
        assert_eq!(e.detail["field"], "backends");
        let e = invalid(&ConfigError::new("clusters.app.health.path", "x"));
        assert_eq!(e.detail["field"], "health-path");
    }
}
