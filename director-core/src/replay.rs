//! Keeping a request so it can be sent again to another backend.
//!
//! A request whose body is empty, or small enough to buffer (`replay-body-limit`), is kept as a
//! template before the first attempt; later attempts send copies. A request with a larger or
//! unknown-length body streams straight through and can only be retried when it was never sent
//! (a failed connect hands it back untouched).

use bytes::Bytes;
use http::{Method, Request};
use http_body::Body as _;
use http_body_util::BodyExt;

use crate::{
    body::{self, Body},
    error::ProxyError,
};

/// The parts of a request needed to send it again.
#[derive(Debug)]
pub struct Template {
    method: Method,
    uri: http::Uri,
    version: http::Version,
    headers: http::HeaderMap,
    extensions: http::Extensions,
    body: Option<Bytes>,
}

impl Template {
    /// A fresh copy of the request.
    pub fn request(&self) -> Request<Body> {
        let body = match &self.body {
            Some(bytes) => body::full(bytes.clone()),
            None => body::empty(),
        };
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers.clone();
        *req.extensions_mut() = self.extensions.clone();
        req
    }

    /// Whether the method is idempotent (RFC 9110 §9.2.2), so a request that reached a backend
    /// may be sent again.
    pub fn is_idempotent(&self) -> bool {
        matches!(
            self.method,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::TRACE
                | Method::PUT
                | Method::DELETE
        )
    }
}

/// Prepares `req` for attempts: returns the request for the first attempt and, when it can be
/// replayed, its template. A body up to `limit` bytes with a known length is read first.
pub async fn prepare(
    req: Request<Body>,
    limit: usize,
) -> Result<(Request<Body>, Option<Template>), ProxyError> {
    let (parts, body) = req.into_parts();
    let keep = |body: Option<Bytes>| Template {
        method: parts.method.clone(),
        uri: parts.uri.clone(),
        version: parts.version,
        headers: parts.headers.clone(),
        extensions: parts.extensions.clone(),
        body,
    };
    if body.is_end_stream() {
        let template = keep(None);
        return Ok((Request::from_parts(parts, body), Some(template)));
    }
    let small = body.size_hint().exact().is_some_and(|n| n <= limit as u64);
    if !small {
        return Ok((Request::from_parts(parts, body), None));
    }
    let bytes = body
        .collect()
        .await
        .map_err(ProxyError::client_body)?
        .to_bytes();
    let template = keep(Some(bytes.clone()));
    Ok((
        Request::from_parts(parts, body::full(bytes)),
        Some(template),
    ))
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    #[tokio::test]
    async fn small_bodies_are_kept_and_large_ones_stream() {
        let req = Request::post("/x")
            .header("a", "1")
            .body(body::full("hello"))
            .unwrap();
        let (first, template) = prepare(req, 16).await.unwrap();
        let template = template.unwrap();
        assert_eq!(
            first.into_body().collect().await.unwrap().to_bytes(),
            "hello"
        );
        let again = template.request();
        assert_eq!(again.method(), Method::POST);
        assert_eq!(again.headers()["a"], "1");
        assert_eq!(
            again.into_body().collect().await.unwrap().to_bytes(),
            "hello"
        );
        assert!(!template.is_idempotent());

        let big = Request::post("/x").body(body::full(vec![0u8; 32])).unwrap();
        let (_, template) = prepare(big, 16).await.unwrap();
        assert!(template.is_none());

        let get = Request::get("/").body(body::empty()).unwrap();
        let (_, template) = prepare(get, 0).await.unwrap();
        assert!(template.unwrap().is_idempotent());
    }
}
