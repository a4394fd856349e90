//! JSON responses with the headers of spec 8.1 (Rec.): `Content-Type: application/json`,
//! `Cache-Control: no-cache`, `Content-Length`, and a body that ends with a newline.
//!
//! `Access-Control-Allow-Origin: *`, which x0 sent, is left out on purpose: on an admin API
//! without a token it would let any web page the operator visits read the cluster state.

use bytes::Bytes;
use director_core::body::{self, Body};
use http::{HeaderName, HeaderValue, Response, StatusCode, header};
use serde::Serialize;

/// A response under construction.
#[derive(Debug)]
pub(crate) struct Reply {
    status: StatusCode,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
}

impl Reply {
    /// `value` as pretty JSON with a trailing newline.
    pub(crate) fn json(status: StatusCode, value: &impl Serialize) -> Self {
        let mut text = serde_json::to_vec_pretty(value).unwrap_or_else(|e| {
            // Serialising our own documents cannot fail; say so loudly if it ever does.
            format!("{{\"error\": \"cannot render JSON: {e}\", \"detail\": null}}").into_bytes()
        });
        text.push(b'\n');
        Reply {
            status,
            headers: vec![(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body: Bytes::from(text),
        }
    }

    /// No body (204, and 202 where there is nothing to show).
    pub(crate) fn empty(status: StatusCode) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// Adds a header; a value that is not a valid header value is left out.
    pub(crate) fn header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((name, v));
        }
        self
    }

    /// The response; `head` drops the body but keeps its length (for HEAD).
    pub(crate) fn into_response(self, head: bool) -> Response<Body> {
        let mut response = Response::new(if head || self.body.is_empty() {
            body::empty()
        } else {
            body::full(self.body.clone())
        });
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        if self.status != StatusCode::NO_CONTENT {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(self.body.len()));
        }
        for (name, value) in self.headers {
            headers.append(name, value);
        }
        response
    }
}
