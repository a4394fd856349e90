//! The web interface: an HAProxy-like overview of every cluster and a live page with charts.
//!
//! Both pages are static files compiled into the binary (`include_str!`; no CDN, no framework,
//! works offline). They are plain HTML, CSS and JavaScript that call the JSON API (`/api/`) and
//! the history endpoint (`/history`, see [`crate::history`]) from the browser, so the pages
//! themselves hold no data and can be served without authentication. The data calls are
//! authenticated like any API call: when one answers 401 the page asks for the token and hands it
//! to `POST /ui/session`, which must be mounted *behind* the admin authentication and answers
//! with the cookie `director-token` (`HttpOnly; SameSite=Strict`), so the token is checked before
//! it is kept and scripts never read it back.
//!
//! | path | what |
//! |---|---|
//! | `/` | redirect to `/ui/` |
//! | `/ui/` | the overview |
//! | `/ui/live` | the live page |
//! | `/ui/assets/*` | stylesheet, scripts, icon |
//! | `POST /ui/session` | keeps the bearer token of the request in a cookie (204) |
//! | `DELETE /ui/session` | forgets it (204) |
//!
//! ```
//! use director_api::ui::Ui;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let page = Ui::new()
//!     .oneshot(http::Request::get("/ui/").body(director_core::body::empty()).unwrap())
//!     .await
//!     .unwrap();
//! assert_eq!(page.status(), 200);
//! assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
//! # }
//! ```

use std::{
    convert::Infallible,
    task::{Context, Poll},
};

use director_core::{Body, body};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};

/// The cookie the pages keep the admin token in (the API's auth layer reads it).
pub use crate::auth::TOKEN_COOKIE;

/// One embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $file:literal, $type:literal) => {
        Asset {
            path: $path,
            content_type: $type,
            bytes: include_bytes!(concat!("assets/", $file)),
        }
    };
}

static ASSETS: &[Asset] = &[
    asset!("/ui/", "overview.html", "text/html; charset=utf-8"),
    asset!("/ui/live", "live.html", "text/html; charset=utf-8"),
    asset!("/ui/assets/ui.css", "ui.css", "text/css; charset=utf-8"),
    asset!(
        "/ui/assets/common.js",
        "common.js",
        "text/javascript; charset=utf-8"
    ),
    asset!(
        "/ui/assets/overview.js",
        "overview.js",
        "text/javascript; charset=utf-8"
    ),
    asset!(
        "/ui/assets/chart.js",
        "chart.js",
        "text/javascript; charset=utf-8"
    ),
    asset!(
        "/ui/assets/live.js",
        "live.js",
        "text/javascript; charset=utf-8"
    ),
    asset!("/ui/assets/icon.svg", "icon.svg", "image/svg+xml"),
];

/// Serves the pages, their assets and the token cookie; see the [module docs](self).
#[derive(Clone, Copy, Debug, Default)]
pub struct Ui;

// === impl Ui ===

impl Ui {
    /// The web interface.
    pub fn new() -> Self {
        Ui
    }

    /// Every path this service serves a file at (for tests and route listings).
    pub fn paths() -> impl Iterator<Item = &'static str> {
        ASSETS.iter().map(|a| a.path)
    }

    fn answer(method: &Method, path: &str, headers: &http::HeaderMap) -> Response<Body> {
        if path == "/ui/session" {
            return session(method, headers);
        }
        if path == "/" || path == "/ui" {
            return redirect("/ui/");
        }
        let Some(asset) = ASSETS.iter().find(|a| a.path == path) else {
            return json_error(
                StatusCode::NOT_FOUND,
                "not found",
                &format!("the web interface has nothing at {path}"),
            );
        };
        if method != Method::GET && method != Method::HEAD {
            let mut r = json_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed",
                "the web interface's files are read with GET",
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        let mut r = Response::new(if method == Method::HEAD {
            body::empty()
        } else {
            body::full(asset.bytes)
        });
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(asset.bytes.len()));
        // Always revalidate: the files change with the binary, and they are small.
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        secure(h);
        r
    }
}

/// Headers that keep the pages from being framed, sniffed or fed foreign scripts.
fn secure(h: &mut http::HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
             connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

fn redirect(to: &'static str) -> Response<Body> {
    let mut r = Response::new(body::empty());
    *r.status_mut() = StatusCode::FOUND;
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    r
}

/// `POST`: the request's bearer token into an `HttpOnly` cookie; `DELETE`: the cookie cleared.
/// The authentication in front has checked the token already.
fn session(method: &Method, headers: &http::HeaderMap) -> Response<Body> {
    let cookie = match *method {
        Method::POST => {
            let token = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim);
            let Some(token) = token.filter(|t| !t.is_empty()) else {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "bad request",
                    "send the token as `Authorization: Bearer <token>`",
                );
            };
            // RFC 6265 cookie-octets: no controls, spaces, quotes, commas, semicolons or
            // backslashes. Such a token has to go as a header on each call instead.
            if !token
                .bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b',' | b';' | b'\\'))
            {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "bad request",
                    "this token cannot be kept in a cookie; send it as a bearer header",
                );
            }
            format!("{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict")
        }
        Method::DELETE => {
            format!("{TOKEN_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
        }
        _ => {
            let mut r = json_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed",
                "POST keeps the bearer token in a cookie, DELETE forgets it",
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST, DELETE"));
            return r;
        }
    };
    let mut r = Response::new(body::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    let h = r.headers_mut();
    h.insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("cookie-octets only"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn json_error(status: StatusCode, error: &str, detail: &str) -> Response<Body> {
    let text = serde_json::json!({ "error": error, "detail": detail }).to_string() + "\n";
    let mut r = Response::new(body::full(text));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

impl<B> tower_service::Service<Request<B>> for Ui {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        std::future::ready(Ok(Ui::answer(
            req.method(),
            req.uri().path(),
            req.headers(),
        )))
    }
}

#[cfg(test)]
mod tests;
