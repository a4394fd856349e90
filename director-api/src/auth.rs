//! Bearer-token authentication for the admin listener.
//!
//! Two tokens: the full token may do anything, the read-only token may only `GET` and `HEAD`.
//! A request shows its token as `Authorization: Bearer <token>`, or, for the web UI (issue #9),
//! as the cookie `director-token=<token>` (the UI should set it `HttpOnly; SameSite=Strict`).
//!
//! - No token configured: everything is open (the binary refuses a non-loopback admin listener
//!   without one).
//! - Missing or wrong token: 401 with `WWW-Authenticate: Bearer` and a JSON error.
//! - Read-only token on any other method: 403.
//! - Any method other than `GET`/`HEAD` whose `Origin` header names another host than `Host`:
//!   403. Browsers send `Origin` on cross-site form posts, which need no preflight; without this
//!   check any web page could change an open (loopback, tokenless) admin API, or one that the
//!   UI's cookie authenticates.
//!
//! Tokens are compared as SHA-256 digests with a constant-time equality (`subtle`), so neither
//! the content nor the length of a token leaks through timing.

use std::{
    fmt,
    task::{Context, Poll},
};

use director_core::body::Body;
use futures_util::future::{Either, Ready, ready};
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{error::ApiError, response::Reply};

/// The cookie that may carry the token (for the web UI).
pub const TOKEN_COOKIE: &str = "director-token";

type TokenDigest = [u8; 32];

fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

/// What a request may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Full,
    Read,
}

/// Checks the admin tokens in front of a service; see the [module docs](self).
#[derive(Clone)]
pub struct AuthLayer {
    full: Option<TokenDigest>,
    read: Option<TokenDigest>,
}

impl fmt::Debug for AuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the tokens, not even their digests.
        f.debug_struct("AuthLayer")
            .field("full", &self.full.is_some())
            .field("read", &self.read.is_some())
            .finish()
    }
}

// === impl AuthLayer ===

impl AuthLayer {
    /// Checks `full` (may do anything) and `read` (GET and HEAD only). Empty strings count as
    /// not configured. With neither, requests pass unchecked (except the cross-origin check).
    pub fn new(full: Option<&str>, read: Option<&str>) -> Self {
        let token = |t: Option<&str>| t.filter(|t| !t.is_empty()).map(digest);
        AuthLayer {
            full: token(full),
            read: token(read),
        }
    }

    /// Whether no token is configured.
    pub fn is_open(&self) -> bool {
        self.full.is_none() && self.read.is_none()
    }

    /// The refusal for a request, if it is refused.
    fn check(&self, method: &Method, headers: &HeaderMap) -> Result<(), ApiError> {
        let safe = *method == Method::GET || *method == Method::HEAD;
        if !safe && cross_origin(headers) {
            return Err(ApiError::forbidden(
                "cross-origin request refused: the Origin header names another host",
            ));
        }
        if self.is_open() {
            return Ok(());
        }
        let Some(token) = presented(headers) else {
            return Err(unauthorized(None));
        };
        let given = digest(token);
        // Both comparisons always run, so timing says nothing about which token matched.
        let full = self.full.map_or(0, |d| d.ct_eq(&given).unwrap_u8());
        let read = self.read.map_or(0, |d| d.ct_eq(&given).unwrap_u8());
        let access = match (full, read) {
            (1, _) => Access::Full,
            (_, 1) => Access::Read,
            _ => return Err(unauthorized(Some("invalid_token"))),
        };
        if access == Access::Read && !safe {
            return Err(ApiError::forbidden(
                "the read-only token may only GET and HEAD",
            ));
        }
        Ok(())
    }
}

fn unauthorized(error: Option<&str>) -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        match error {
            Some(_) => "invalid token",
            None => "authentication required: Authorization: Bearer <token>",
        },
        json!({ "scheme": "Bearer", "cookie": TOKEN_COOKIE }),
    )
}

/// The token of `Authorization: Bearer` or, failing that, of the `director-token` cookie.
fn presented(headers: &HeaderMap) -> Option<&str> {
    for value in headers.get_all(header::AUTHORIZATION) {
        let Ok(value) = value.to_str() else { continue };
        let value = value.trim();
        if let Some((scheme, token)) = value.split_once(' ')
            && scheme.eq_ignore_ascii_case("bearer")
        {
            return Some(token.trim());
        }
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == TOKEN_COOKIE)
        .map(|(_, value)| value.trim_matches('"'))
}

/// Whether `Origin` is present and names another authority than `Host`.
fn cross_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let Ok(origin) = origin.to_str() else {
        return true;
    };
    let authority = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    host.is_none_or(|h| !h.eq_ignore_ascii_case(authority))
}

impl<S> tower_layer::Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`AuthLayer`].
#[derive(Clone, Debug)]
pub struct Auth<S> {
    inner: S,
    layer: AuthLayer,
}

// === impl Auth ===

impl<S> Auth<S> {
    /// `inner` behind the tokens of `layer`.
    pub fn new(inner: S, layer: AuthLayer) -> Self {
        Auth { inner, layer }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> tower_service::Service<Request<B>> for Auth<S>
where
    S: tower_service::Service<Request<B>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Either<Ready<Result<Response<Body>, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match self.layer.check(req.method(), req.headers()) {
            Ok(()) => Either::Right(self.inner.call(req)),
            Err(e) => {
                let status = e.status;
                let mut reply: Reply = e.into_reply();
                if status == StatusCode::UNAUTHORIZED {
                    let challenge = if presented(req.headers()).is_some() {
                        "Bearer realm=\"director\", error=\"invalid_token\""
                    } else {
                        "Bearer realm=\"director\""
                    };
                    reply = reply.header(header::WWW_AUTHENTICATE, challenge);
                }
                Either::Left(ready(Ok(reply.into_response(req.method() == Method::HEAD))))
            }
        }
    }
}

#[cfg(test)]
mod tests;
