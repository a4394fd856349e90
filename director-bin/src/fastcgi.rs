//! FastCGI backends: `director-fastcgi`'s client plugged into `director-core`'s clusters.
//!
//! `director-core` knows FastCGI only as a backend URL scheme and a settings table; this module
//! is the [`TransportFactory`] that turns those into a [`FastCgiService`], and the adapter that
//! hands it the client's address (`REMOTE_ADDR`) and scheme (`HTTPS`), and maps its errors to
//! the proxy's: the client's own faults (a bad path, a missing script, a failed request body)
//! become 4xx answers that no backend is blamed for.

use std::{
    sync::Arc,
    task::{Context, Poll, Waker},
};

use director_core::{
    Body, ErrorKind, ProxyError,
    addr::BackendAddr,
    body::client_body_error,
    client_info::ClientInfo,
    config::{ClientAbort, FastCgiSettings},
    registry::TransportFactory,
    router::BoxFuture,
    transport::{Transport, TransportOptions},
};
use director_fastcgi::{
    CgiConfig, CgiContext, FastCgiAddr, FastCgiConfig, FastCgiService, ScriptMapping, SpoolConfig,
};
use http::{HeaderValue, Request, Response, StatusCode, header};
use tower::Service;

/// Builds FastCGI transports for the registry.
#[derive(Clone, Copy, Debug, Default)]
pub struct FastCgiFactory;

impl TransportFactory for FastCgiFactory {
    fn fastcgi(
        &self,
        addr: &BackendAddr,
        opts: &TransportOptions,
        settings: &FastCgiSettings,
    ) -> Result<Arc<dyn Transport>, String> {
        let addr = match addr {
            BackendAddr::Tcp(sa) => FastCgiAddr::Tcp(*sa),
            BackendAddr::Unix(path) => FastCgiAddr::Unix(path.clone()),
            BackendAddr::Cluster(name) => {
                return Err(format!("cluster:{name} is not a FastCGI address"));
            }
            BackendAddr::Host(host, port) => {
                return Err(format!(
                    "a FastCGI backend needs an IP address or a UNIX socket, not the name {host}:{port}"
                ));
            }
        };
        let script_mapping = match (&settings.front_controller, &settings.script_extensions) {
            (Some(script), _) => ScriptMapping::FrontController(script.clone()),
            (None, Some(exts)) => ScriptMapping::Extension(exts.clone()),
            (None, None) => ScriptMapping::default(),
        };
        let document_root = settings.document_root.trim_end_matches('/');
        let check_script = check_script(settings);
        let spool_dir = match &settings.spool_dir {
            Some(dir) if !std::path::Path::new(dir).is_dir() => {
                return Err(format!("spool-dir {dir:?} is not a directory"));
            }
            Some(dir) => std::path::PathBuf::from(dir),
            None => std::env::temp_dir(),
        };
        let config = FastCgiConfig {
            cgi: CgiConfig {
                document_root: document_root.to_owned(),
                index: (!settings.index.is_empty()).then(|| settings.index.clone()),
                script_mapping,
                extra_params: settings
                    .params
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                underscores_in_headers: settings.underscores_in_headers,
                ..CgiConfig::default()
            },
            check_script,
            connect_timeout: opts.connect_timeout,
            read_timeout: opts.read_timeout,
            write_timeout: opts.write_timeout,
            keep_conn: settings.keep_connections,
            max_idle_connections: settings.max_idle_connections,
            idle_timeout: opts.idle_timeout,
            // `ignore` is drained by the cluster, which holds the request's slot meanwhile;
            // the transport does the same when it is used without a cluster.
            on_client_abort: match opts.on_client_abort {
                ClientAbort::Close => director_fastcgi::ClientAbort::Close,
                ClientAbort::Notify => director_fastcgi::ClientAbort::Notify,
                ClientAbort::Ignore => director_fastcgi::ClientAbort::Ignore,
            },
            spool: SpoolConfig {
                memory: settings.request_buffer_memory,
                dir: spool_dir,
            },
            ..FastCgiConfig::default()
        };
        Ok(Arc::new(FastCgiTransport {
            service: FastCgiService::new(addr, config),
        }))
    }
}

/// Whether to check that scripts exist before asking the application: `check-script`, or by
/// default whether the document root is a directory here. Decided when the config is loaded
/// (and at each reload), not per request: a root that exists here is taken to hold the
/// scripts the application runs.
fn check_script(settings: &FastCgiSettings) -> bool {
    settings.check_script.unwrap_or_else(|| {
        std::path::Path::new(settings.document_root.trim_end_matches('/')).is_dir()
    })
}

/// One FastCGI backend as a `director-core` transport.
#[derive(Clone, Debug)]
pub struct FastCgiTransport {
    service: FastCgiService,
}

impl Transport for FastCgiTransport {
    fn send(&self, mut req: Request<Body>) -> BoxFuture<Result<Response<Body>, ProxyError>> {
        let client = req.extensions().get::<ClientInfo>();
        let context = CgiContext {
            remote_addr: client.and_then(|c| c.remote),
            server_addr: client.and_then(|c| c.local),
            https: is_https(&req, client),
            remote_user: None,
        };
        req.extensions_mut().insert(context);
        let mut service = self.service.clone();
        // The FastCGI service is always ready (it has no admission of its own); check it without
        // a task, and call it here rather than inside the async block, whose `Send` inference
        // trips over the body's boxed error type.
        let mut cx = Context::from_waker(Waker::noop());
        if let Poll::Ready(Err(err)) = Service::<Request<Body>>::poll_ready(&mut service, &mut cx) {
            return Box::pin(std::future::ready(Err(proxy_error(err))));
        }
        let future = service.call(req);
        Box::pin(async move {
            match future.await {
                Ok(response) => Ok(response.map(director_core::body::boxed)),
                Err(err) => {
                    let refused = matches!(
                        err.kind(),
                        director_fastcgi::ErrorKind::BadRequest
                            | director_fastcgi::ErrorKind::ScriptNotFound
                    );
                    let err = proxy_error(err);
                    if refused { Ok(refusal(err)) } else { Err(err) }
                }
            }
        })
    }
}

/// Whether the request came over TLS as far as Director vouches: by the time a request
/// reaches a transport, the forwarding layer has set `X-Forwarded-Proto` from the client
/// connection, or kept the client's own only under `trust-forwarded-headers` (a TLS terminator
/// in front). Its first entry is the original client's scheme. Without the header (a request
/// that did not pass the forwarding layer), the connection's own TLS flag decides.
fn is_https(req: &Request<Body>, client: Option<&ClientInfo>) -> bool {
    match req.headers().get("x-forwarded-proto") {
        Some(proto) => proto
            .as_bytes()
            .split(|b| *b == b',')
            .next()
            .is_some_and(|first| first.trim_ascii().eq_ignore_ascii_case(b"https")),
        None => client.is_some_and(|c| c.tls),
    }
}

/// The answer Director gives for the application to a request it refused before connecting
/// (a control byte in the path: 400; no such script: 404, as nginx's `try_files $uri =404`).
/// A response rather than an error: nothing was sent and no backend failed, so the cluster
/// must neither try another backend nor count a backend error; to the backend's statistics it
/// is a 4xx answer, as it would be had the application refused it.
fn refusal(err: ProxyError) -> Response<Body> {
    let mut response = director_core::error_response::error_response(Box::new(err), None);
    // The script may appear later; a cache must not keep the answer.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The proxy's view of a FastCGI failure: which status, and whether anything was sent.
///
/// The client's own faults are marked sent, whatever reached the application: retrying them
/// on another backend would fail the same way. A broken, stalled or oversized body is
/// [`ErrorKind::ClientBody`] with the status of the [`ClientBodyError`](director_core::body::ClientBodyError) in its source chain
/// (400, 408, 413), as in the HTTP transport; a bad path is [`ErrorKind::BadRequest`] (400).
/// Passive health ignores both.
fn proxy_error(err: director_fastcgi::Error) -> ProxyError {
    use director_fastcgi::ErrorKind as F;
    // The client's broken body is the client's, as in every transport: no passive-health
    // report, no backend error counted, no retry.
    if client_body_error(&err).is_some() {
        return ProxyError::client_body(err);
    }
    let kind = match err.kind() {
        F::Connect => ErrorKind::ConnectFailed,
        F::ConnectTimeout => ErrorKind::ConnectTimeout,
        F::ReadTimeout | F::WriteTimeout => ErrorKind::Timeout,
        F::Protocol | F::ClosedEarly => ErrorKind::UpstreamBroken,
        F::Overloaded => ErrorKind::Overloaded,
        F::RequestBody => return ProxyError::client_body(err),
        F::BadRequest => {
            return ProxyError::new(ErrorKind::BadRequest)
                .with_detail("the request path contains a control character")
                .with_source(err)
                .sent();
        }
        // Director could not keep the body (its spool directory is gone or full): its own
        // fault, not the client's nor the backend's, and nothing was sent.
        F::Spool => {
            return ProxyError::new(ErrorKind::BadRequest)
                .with_status(StatusCode::INTERNAL_SERVER_ERROR)
                .with_detail("the request body could not be buffered")
                .with_source(err)
                .sent();
        }
        F::ScriptNotFound => {
            return ProxyError::new(ErrorKind::BadRequest)
                .with_status(StatusCode::NOT_FOUND)
                .with_detail("no such script")
                .with_source(err)
                .sent();
        }
    };
    let sent = err.request_sent();
    let err = ProxyError::new(kind).with_source(err);
    if sent { err.sent() } else { err }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;

    use bytes::Bytes;
    use director_core::body::ClientBodyError;
    use director_fastcgi::test_util::{FakeResponder, Script};
    use http_body::Frame;
    use http_body_util::BodyExt;

    use super::*;

    /// A request body that sends one chunk, then fails with `error`.
    struct FailingBody(Option<ClientBodyError>, bool);

    impl http_body::Body for FailingBody {
        type Data = Bytes;
        type Error = director_core::body::BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            if !self.1 {
                self.1 = true;
                return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"part")))));
            }
            Poll::Ready(self.0.take().map(|e| Err(e.into())))
        }
    }

    async fn transport(responder: &FakeResponder, settings: &str) -> Arc<dyn Transport> {
        let addr = match responder.addr() {
            FastCgiAddr::Tcp(sa) => BackendAddr::Tcp(sa),
            FastCgiAddr::Unix(p) => BackendAddr::Unix(p),
        };
        let settings: FastCgiSettings = toml::from_str(settings).unwrap();
        FastCgiFactory
            .fastcgi(&addr, &TransportOptions::default(), &settings)
            .unwrap()
    }

    #[tokio::test]
    async fn a_client_body_failure_is_the_clients_with_its_status() {
        let app = FakeResponder::tcp(Script::respond("\r\nok")).await.unwrap();
        let t = transport(&app, "document-root = \"/srv\"\ncheck-script = false").await;
        for (error, status) in [
            (ClientBodyError::Read("reset".into()), 400),
            (
                ClientBodyError::Timeout(std::time::Duration::from_secs(30)),
                408,
            ),
            (ClientBodyError::TooLarge(10), 413),
        ] {
            let body = director_core::body::boxed(FailingBody(Some(error), false));
            let req = Request::post("/upload.php").body(body).unwrap();
            let err = t.send(req).await.unwrap_err();
            assert_eq!(err.status(), status);
            assert_eq!(
                err.kind(),
                ErrorKind::ClientBody,
                "the client's: passive health and backend counters ignore it"
            );
            assert!(err.was_sent(), "never retried on another backend");
        }
    }

    #[tokio::test]
    async fn a_spool_that_cannot_be_written_is_directors_own_500() {
        let app = FakeResponder::tcp(Script::respond("\r\nok")).await.unwrap();
        let spool = tempfile::tempdir().unwrap();
        let t = transport(
            &app,
            &format!(
                "document-root = \"/srv\"\ncheck-script = false\nrequest-buffer-memory = 0\n\
                 spool-dir = \"{}\"",
                spool.path().display()
            ),
        )
        .await;
        drop(spool);
        // One chunk and the end: a body of unknown length, spooled to a directory now gone.
        let body = director_core::body::boxed(FailingBody(None, false));
        let err = t
            .send(Request::post("/upload.php").body(body).unwrap())
            .await
            .unwrap_err();
        assert_eq!(err.status(), 500);
        assert!(!err.is_client_body());
        assert_eq!(
            err.kind(),
            ErrorKind::BadRequest,
            "no backend is blamed: passive health ignores it"
        );
        assert!(err.was_sent(), "never retried: the body is gone");
        assert_eq!(app.connections(), 0);
    }

    #[test]
    fn the_spool_dir_must_be_a_directory() {
        let settings: FastCgiSettings =
            toml::from_str("document-root = \"/srv\"\nspool-dir = \"/no/such/dir\"").unwrap();
        let err = FastCgiFactory
            .fastcgi(
                &BackendAddr::Tcp("127.0.0.1:9000".parse().unwrap()),
                &TransportOptions::default(),
                &settings,
            )
            .unwrap_err();
        assert!(err.contains("spool-dir"), "{err}");
    }

    #[tokio::test]
    async fn refusals_are_answers_that_never_reach_the_application() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("upload.txt"), "<?php evil();").unwrap();
        let app = FakeResponder::tcp(Script::respond("\r\nok")).await.unwrap();
        let t = transport(
            &app,
            &format!("document-root = \"{}\"", root.path().display()),
        )
        .await;
        for (path, status) in [("/upload.txt/x.php", 404), ("/vars.php%00.css", 400)] {
            let req = Request::get(path)
                .body(director_core::body::empty())
                .unwrap();
            let resp = t.send(req).await.unwrap();
            assert_eq!(resp.status(), status, "{path}");
            assert_eq!(resp.headers()["cache-control"], "no-store");
            resp.into_body().collect().await.unwrap();
        }
        assert_eq!(app.connections(), 0);
    }

    #[test]
    fn the_script_check_defaults_to_whether_the_root_is_local() {
        let root = tempfile::tempdir().unwrap();
        let check = |settings: &str| check_script(&toml::from_str(settings).unwrap());
        let local = format!("document-root = \"{}\"", root.path().display());
        assert!(check(&local));
        assert!(!check(&format!("{local}\ncheck-script = false")));
        assert!(!check("document-root = \"/no/such/root/here\""));
        assert!(check(
            "document-root = \"/no/such/root/here\"\ncheck-script = true"
        ));
    }

    #[test]
    fn host_names_are_refused_for_fastcgi() {
        let settings: FastCgiSettings = toml::from_str("document-root = \"/srv\"").unwrap();
        let err = FastCgiFactory
            .fastcgi(
                &BackendAddr::Host("php".into(), 9000),
                &TransportOptions::default(),
                &settings,
            )
            .unwrap_err();
        assert!(err.contains("IP address"), "{err}");
    }
}
