//! FastCGI backends: `director-fastcgi`'s client plugged into `director-core`'s clusters.
//!
//! `director-core` knows FastCGI only as a backend URL scheme and a settings table; this module
//! is the [`TransportFactory`] that turns those into a [`FastCgiService`], and the adapter that
//! hands it the client's address (`REMOTE_ADDR`) and maps its errors to the proxy's.

use std::{
    sync::Arc,
    task::{Context, Poll, Waker},
};

use director_core::{
    Body, ErrorKind, ProxyError,
    addr::BackendAddr,
    client_info::ClientInfo,
    config::{ClientAbort, FastCgiSettings},
    registry::TransportFactory,
    router::BoxFuture,
    transport::{Transport, TransportOptions},
};
use director_fastcgi::{
    CgiConfig, CgiContext, FastCgiAddr, FastCgiConfig, FastCgiService, ScriptMapping,
};
use http::{Request, Response};
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
        let config = FastCgiConfig {
            cgi: CgiConfig {
                document_root: settings.document_root.trim_end_matches('/').to_owned(),
                index: (!settings.index.is_empty()).then(|| settings.index.clone()),
                script_mapping,
                extra_params: settings
                    .params
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                ..CgiConfig::default()
            },
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
            ..FastCgiConfig::default()
        };
        Ok(Arc::new(FastCgiTransport {
            service: FastCgiService::new(addr, config),
        }))
    }
}

/// One FastCGI backend as a `director-core` transport.
#[derive(Clone, Debug)]
pub struct FastCgiTransport {
    service: FastCgiService,
}

impl Transport for FastCgiTransport {
    fn send(&self, mut req: Request<Body>) -> BoxFuture<Result<Response<Body>, ProxyError>> {
        if let Some(client) = req.extensions().get::<ClientInfo>() {
            let context = CgiContext {
                remote_addr: client.remote,
                server_addr: client.local,
                https: client.tls,
                remote_user: None,
            };
            req.extensions_mut().insert(context);
        }
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
                Err(err) => Err(proxy_error(err)),
            }
        })
    }
}

/// The proxy's view of a FastCGI failure: which status, and whether anything was sent.
fn proxy_error(err: director_fastcgi::Error) -> ProxyError {
    use director_fastcgi::ErrorKind as F;
    let kind = match err.kind() {
        F::Connect => ErrorKind::ConnectFailed,
        F::ConnectTimeout => ErrorKind::ConnectTimeout,
        F::ReadTimeout | F::WriteTimeout => ErrorKind::Timeout,
        F::Protocol | F::ClosedEarly => ErrorKind::UpstreamBroken,
        F::Overloaded => ErrorKind::Overloaded,
        F::RequestBody => ErrorKind::BadRequest,
    };
    // The client's broken body is the client's, as in every transport.
    if director_core::body::client_body_error(&err).is_some() {
        return ProxyError::client_body(err);
    }
    let sent = err.request_sent();
    let err = ProxyError::new(kind).with_source(err);
    if sent { err.sent() } else { err }
}

#[cfg(test)]
mod tests {
    use super::*;

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
