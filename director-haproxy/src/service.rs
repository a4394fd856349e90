//! The HTTP side: a Tower service answering HAProxy's stats and monitor URLs.
//!
//! | path | answer |
//! |---|---|
//! | `/haproxy?stats;csv`, `/haproxy?stats;csv;norefresh`, `/haproxy/stats;csv` | CSV (`text/plain`, as HAProxy sends it) |
//! | `/haproxy?stats`, `/haproxy/stats` | the HTML page |
//! | `/haproxy/monitor` | 200 while serving, 503 once stopping (HAProxy's `monitor-uri`) |
//!
//! Anything else gets 404, so the service can be mounted under `/haproxy` of a larger router.

use std::{
    convert::Infallible,
    future::{Ready, ready},
    task::{Context, Poll},
};

use director_core::{Body, body::full};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};

use crate::{
    csv, html,
    report::{Report, Source},
};

/// HAProxy 2.6's monitor page body.
pub const MONITOR_OK: &str = "<html><body><h1>200 OK</h1>\nService ready.\n</body></html>\n";
/// The monitor page body while stopping.
pub const MONITOR_STOPPING: &str = "<html><body><h1>503 Service Unavailable</h1>\nNo server is available to handle this request.\n</body></html>\n";

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Page {
    /// The stats as CSV.
    Csv,
    /// The stats as HTML.
    Html,
    /// The monitor page.
    Monitor,
}

impl Page {
    /// The page a path and query ask for, if any.
    pub fn of(path: &str, query: Option<&str>) -> Option<Page> {
        let options = |s: &str| s.split(';').skip(1).any(|o| o == "csv");
        match (path, query) {
            ("/haproxy/monitor", _) => Some(Page::Monitor),
            ("/haproxy", Some(q)) if q == "stats" || q.starts_with("stats;") => {
                Some(if options(q) { Page::Csv } else { Page::Html })
            }
            (p, _) if p == "/haproxy/stats" || p.starts_with("/haproxy/stats;") => {
                Some(if options(p) { Page::Csv } else { Page::Html })
            }
            _ => None,
        }
    }
}

/// Answers HAProxy's stats and monitor URLs from a [`Source`].
#[derive(Clone, Debug)]
pub struct StatsService {
    source: Source,
}

impl StatsService {
    /// A service reporting `source`.
    pub fn new(source: Source) -> Self {
        StatsService { source }
    }

    /// Whether `path` (and `query`) is one of the URLs this service answers.
    pub fn handles(path: &str, query: Option<&str>) -> bool {
        Page::of(path, query).is_some()
    }

    /// The answer to a request for `path?query` with `method`.
    pub fn respond(&self, method: &Method, path: &str, query: Option<&str>) -> Response<Body> {
        if method != Method::GET && method != Method::HEAD {
            return plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "405 Method Not Allowed\n".into(),
            );
        }
        match Page::of(path, query) {
            Some(Page::Csv) => plain(
                StatusCode::OK,
                "text/plain",
                csv::render(&Report::collect(&self.source)),
            ),
            Some(Page::Html) => plain(
                StatusCode::OK,
                "text/html",
                html::render(&Report::collect(&self.source)),
            ),
            Some(Page::Monitor) if self.source.is_stopping() => plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/html",
                MONITOR_STOPPING.into(),
            ),
            Some(Page::Monitor) => plain(StatusCode::OK, "text/html", MONITOR_OK.into()),
            None => plain(
                StatusCode::NOT_FOUND,
                "text/plain",
                "404 Not Found\n".into(),
            ),
        }
    }
}

fn plain(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

impl<B> tower_service::Service<Request<B>> for StatsService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        ready(Ok(self.respond(
            req.method(),
            req.uri().path(),
            req.uri().query(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_by_url() {
        assert_eq!(Page::of("/haproxy", Some("stats;csv")), Some(Page::Csv));
        assert_eq!(
            Page::of("/haproxy", Some("stats;csv;norefresh")),
            Some(Page::Csv)
        );
        assert_eq!(
            Page::of("/haproxy", Some("stats;norefresh;csv")),
            Some(Page::Csv)
        );
        assert_eq!(Page::of("/haproxy/stats;csv", None), Some(Page::Csv));
        assert_eq!(Page::of("/haproxy", Some("stats")), Some(Page::Html));
        assert_eq!(Page::of("/haproxy/stats", None), Some(Page::Html));
        assert_eq!(Page::of("/haproxy/monitor", None), Some(Page::Monitor));
        assert_eq!(Page::of("/haproxy", Some("statsx")), None);
        assert_eq!(Page::of("/haproxy", None), None);
        assert_eq!(Page::of("/metrics", None), None);
    }
}
