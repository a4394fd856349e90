//! The admin listener: a separate listener (default `127.0.0.1:8081`) for operators and their
//! tools, never for traffic.
//!
//! Its router mounts services by path prefix; the first match wins:
//!
//! | prefix | what |
//! |---|---|
//! | `/` (exactly) | redirect to the web UI |
//! | `/ui` | the web UI's pages and assets (`director_api::ui`; public: they hold no data) |
//! | `/history` | the last 15 minutes of traffic, for the UI's live page (`director_api::history`) |
//! | anything else | 404 with a JSON error body |
//!
//! Authentication (`admin-token`, `admin-read-token`) guards everything except the web UI's
//! static files (`/`, `/ui/...`), which hold no data; `/ui/session` (the UI's token cookie) and
//! `/history` are behind it (see `with_ui` in `lib.rs`).
//!
//! In front of everything but the monitor page, [`HostGuard`] answers 421 to a request whose `Host` (or h2
//! `:authority`) is not the listener's own address, `localhost` on loopback, or one of
//! `admin-hosts`: a DNS-rebinding page (a name of the attacker's that resolves to 127.0.0.1)
//! reaches the socket but names its own host, so it never reaches the API, nor the UI pages that
//! drive it.
//!
//! `/haproxy/monitor` (exactly; GET and HEAD) is answered before both the Host check and the
//! tokens (see [`PublicMonitor`]): it is HAProxy's `monitor-uri`, asked by outside load
//! balancers that hold no token and often send no `Host` at all (HAProxy's own `option httpchk`
//! sends `OPTIONS / HTTP/1.0` without one). It answers 200 or 503 with a fixed body, holds no data
//! and changes nothing, so a page that reached it through DNS rebinding learns only that Director
//! runs.

use std::{
    convert::Infallible,
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use bytes::Bytes;
use director_core::{Body, body, client_info::ClientInfo};
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use tower::{Service, util::BoxCloneSyncService};

/// A service mounted on the admin listener.
pub type AdminService = BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

/// Routes admin requests by path prefix.
#[derive(Clone, Default)]
pub struct AdminRouter {
    // (prefix, exact: only the prefix itself, service)
    mounts: Arc<Vec<(&'static str, bool, AdminService)>>,
}

impl std::fmt::Debug for AdminRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let prefixes: Vec<&str> = self.mounts.iter().map(|(p, _, _)| *p).collect();
        f.debug_struct("AdminRouter")
            .field("mounts", &prefixes)
            .finish()
    }
}

impl AdminRouter {
    /// An empty router (everything is 404).
    pub fn new() -> Self {
        AdminRouter::default()
    }

    /// Mounts `service` at `prefix`: it gets requests whose path is `prefix` or starts with
    /// `prefix/` (or, for a prefix ending in `/`, starts with it).
    pub fn mount(mut self, prefix: &'static str, service: AdminService) -> Self {
        Arc::make_mut(&mut self.mounts).push((prefix, false, service));
        self
    }

    /// Mounts `service` at exactly `path` (`/`, say, without catching everything below it).
    pub fn mount_exact(mut self, path: &'static str, service: AdminService) -> Self {
        Arc::make_mut(&mut self.mounts).push((path, true, service));
        self
    }

    fn find(&self, path: &str) -> Option<&AdminService> {
        self.mounts
            .iter()
            .find(|(prefix, exact, _)| {
                path == *prefix
                    || (!exact && prefix.ends_with('/') && path.starts_with(prefix))
                    || !exact
                        && path
                            .strip_prefix(prefix)
                            .is_some_and(|rest| rest.starts_with('/'))
            })
            .map(|(_, _, s)| s)
    }
}

impl Service<Request<Body>> for AdminRouter {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = futures_util::future::BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        match self.find(req.uri().path()) {
            Some(service) => {
                let mut service = service.clone();
                Box::pin(async move { service.call(req).await })
            }
            None => Box::pin(std::future::ready(Ok(json_error(
                StatusCode::NOT_FOUND,
                "not found",
                &format!("nothing is served at {}", req.uri().path()),
            )))),
        }
    }
}

/// HAProxy's `monitor-uri`: public, before the Host check (see the [module docs](self)).
pub const MONITOR_PATH: &str = "/haproxy/monitor";

/// The admin listener's service: `monitor` at exactly [`MONITOR_PATH`], with neither Host check
/// nor token; every other request (whatever its path) to `guarded`, the [`HostGuard`] in front of
/// the tokens.
#[derive(Clone)]
pub struct PublicMonitor {
    monitor: AdminService,
    guarded: AdminService,
}

impl std::fmt::Debug for PublicMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicMonitor")
            .field("path", &MONITOR_PATH)
            .finish_non_exhaustive()
    }
}

impl PublicMonitor {
    /// `monitor` in front of `guarded`.
    pub fn new(monitor: AdminService, guarded: AdminService) -> Self {
        PublicMonitor { monitor, guarded }
    }
}

impl Service<Request<Body>> for PublicMonitor {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = tower::util::Oneshot<AdminService, Request<Body>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        // Each call drives a clone of its service to readiness (oneshot).
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        use tower::ServiceExt as _;
        let service = if req.uri().path() == MONITOR_PATH {
            self.monitor.clone()
        } else {
            self.guarded.clone()
        };
        service.oneshot(req)
    }
}

/// A JSON error response: `{"error": ..., "detail": ...}`.
pub fn json_error(status: StatusCode, error: &str, detail: &str) -> Response<Body> {
    let text = serde_json::json!({ "error": error, "detail": detail }).to_string() + "\n";
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body::boxed(Full::new(Bytes::from(text))))
        .expect("a valid response")
}

/// One `admin-hosts` entry: a host name or IP literal, with or without a port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminHost {
    // Lowercase, without a trailing dot; IPv6 without brackets.
    name: String,
    // `None`: any port.
    port: Option<u16>,
}

impl AdminHost {
    /// Parses `admin.example.com`, `admin.example.com:8081`, `192.0.2.7:8081`, `[2001:db8::7]`.
    pub fn parse(text: &str) -> Result<AdminHost, String> {
        let bad = || {
            format!(
                "{text:?} is not a host such as admin.example.com, admin.example.com:8081 or \
                 [2001:db8::1]:8081"
            )
        };
        let (name, port) = split_host(text).ok_or_else(bad)?;
        let name_ok = !name.is_empty()
            && (name.parse::<IpAddr>().is_ok()
                || name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')));
        if !name_ok {
            return Err(bad());
        }
        Ok(AdminHost { name, port })
    }
}

/// Splits a `Host` value into its lowercased name (IPv6 without brackets, no trailing dot)
/// and port; `None` when it is malformed.
fn split_host(text: &str) -> Option<(String, Option<u16>)> {
    let (name, port) = if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        inside.parse::<std::net::Ipv6Addr>().ok()?;
        match after {
            "" => (inside, None),
            _ => (inside, Some(after.strip_prefix(':')?)),
        }
    } else {
        match text.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (text, None),
        }
    };
    let port = match port {
        // Digits only: `u16::from_str` would take a sign.
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse().ok()?),
        Some(_) => return None,
        None => None,
    };
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    Some((name, port))
}

/// Refuses (421, JSON error) requests on the admin listener whose `Host` names anything but
/// the listener: the IP the connection reached (with its port), `localhost` and loopback IPs
/// when that IP is loopback, or a configured [`AdminHost`]. UNIX sockets (no local address)
/// answer any `Host`: a browser cannot reach them.
#[derive(Clone, Debug)]
pub struct HostGuard<S> {
    inner: S,
    hosts: Arc<[AdminHost]>,
}

impl<S> HostGuard<S> {
    /// Guards `inner`, also admitting `hosts` (`admin-hosts`, checked at load).
    pub fn new(inner: S, hosts: &[String]) -> Result<Self, String> {
        let hosts = hosts
            .iter()
            .map(|h| AdminHost::parse(h))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(HostGuard {
            inner,
            hosts: hosts.into(),
        })
    }

    /// Whether `host` (a `Host` value) names this listener, reached at `local`.
    fn admits(&self, host: &str, local: SocketAddr) -> bool {
        let Some((name, port)) = split_host(host) else {
            return false;
        };
        // Plain HTTP: no port means 80.
        let port = port.unwrap_or(80);
        if self
            .hosts
            .iter()
            .any(|h| h.name == name && h.port.is_none_or(|p| p == port))
        {
            return true;
        }
        if port != local.port() {
            return false;
        }
        let local_ip = local.ip().to_canonical();
        match name.parse::<IpAddr>() {
            // A page can only name an IP literal it was loaded from, so no rebinding.
            Ok(ip) => ip.to_canonical() == local_ip || (ip.is_loopback() && local_ip.is_loopback()),
            Err(_) => name == "localhost" && local_ip.is_loopback(),
        }
    }

    fn check<B>(&self, req: &Request<B>) -> Result<(), String> {
        let Some(local) = req.extensions().get::<ClientInfo>().and_then(|c| c.local) else {
            return Ok(());
        };
        let headers = req.headers().get_all(header::HOST);
        let authority = req.uri().authority().map(|a| a.as_str());
        if headers.iter().next().is_none() && authority.is_none() {
            return Err("the request names no host; the admin listener needs one".into());
        }
        // Every name the request gives must be ours (an absolute-form URI and each Host alike).
        for value in headers {
            let host = value.to_str().unwrap_or("");
            if !self.admits(host, local) {
                return Err(format!(
                    "this admin listener does not answer to Host {host:?}; use its address \
                     ({local}) or add the name to `admin-hosts`"
                ));
            }
        }
        if let Some(host) = authority
            && !self.admits(host, local)
        {
            return Err(format!(
                "this admin listener does not answer to {host:?}; use its address ({local}) \
                 or add the name to `admin-hosts`"
            ));
        }
        Ok(())
    }
}

impl<S> Service<Request<Body>> for HostGuard<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = futures_util::future::Either<
        S::Future,
        std::future::Ready<Result<Response<Body>, Infallible>>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        match self.check(&req) {
            Ok(()) => futures_util::future::Either::Left(self.inner.call(req)),
            Err(detail) => {
                tracing::warn!(%detail, path = req.uri().path(), "admin request refused: foreign Host");
                futures_util::future::Either::Right(std::future::ready(Ok(json_error(
                    StatusCode::MISDIRECTED_REQUEST,
                    "misdirected request",
                    &detail,
                ))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(hosts: &[&str]) -> HostGuard<()> {
        let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        HostGuard::new((), &hosts).unwrap()
    }

    fn at(addr: &str) -> SocketAddr {
        addr.parse().unwrap()
    }

    #[test]
    fn the_listeners_own_names_are_admitted() {
        let g = guard(&[]);
        let local = at("127.0.0.1:8081");
        for host in [
            "127.0.0.1:8081",
            "localhost:8081",
            "LocalHost:8081",
            "localhost.:8081",
            "[::1]:8081",
        ] {
            assert!(g.admits(host, local), "{host}");
        }
        // A dual-stack listener sees IPv4 clients as mapped addresses.
        assert!(g.admits("127.0.0.1:8081", at("[::ffff:127.0.0.1]:8081")));
        // Beyond loopback: the address the connection reached, by IP only.
        let public = at("192.0.2.7:8081");
        assert!(g.admits("192.0.2.7:8081", public));
        assert!(!g.admits("localhost:8081", public));
    }

    #[test]
    fn foreign_names_and_ports_are_refused() {
        let g = guard(&[]);
        let local = at("127.0.0.1:8081");
        for host in [
            "evil.example:8081",
            "127.0.0.1.nip.io:8081",
            "localhost:8082",
            "127.0.0.1",
            "localhost",
            "",
            "localhost:",
            "localhost:+8081",
            "localhost:8081:1",
            "[::1",
            "[evil]:8081",
            "192.0.2.7:8081",
        ] {
            assert!(!g.admits(host, local), "{host:?}");
        }
        // Port 80 is what a missing port means.
        assert!(g.admits("localhost", at("127.0.0.1:80")));
    }

    #[test]
    fn admin_hosts_are_admitted_on_any_port_or_the_one_given() {
        let g = guard(&["Admin.Example.com", "ops.example.com:9000", "[2001:db8::7]"]);
        let local = at("127.0.0.1:8081");
        assert!(g.admits("admin.example.com:8081", local));
        assert!(g.admits("admin.example.com", local));
        assert!(g.admits("ops.example.com:9000", local));
        assert!(!g.admits("ops.example.com:8081", local));
        assert!(g.admits("[2001:db8::7]:443", local));
        assert!(!g.admits("other.example.com:8081", local));
    }

    #[test]
    fn bad_admin_hosts_are_refused() {
        for bad in [
            "",
            "a b",
            "a/b",
            "host:port",
            "host:99999",
            "[::1",
            "x\r\ny",
            ":8081",
        ] {
            assert!(AdminHost::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn requests_without_a_local_address_or_host() {
        let g = guard(&[]);
        // A UNIX socket: no local address, any Host.
        let req = Request::get("/api")
            .header("host", "evil.example")
            .body(())
            .unwrap();
        assert!(g.check(&req).is_ok());
        let mut req = Request::get("/api").body(()).unwrap();
        req.extensions_mut().insert(ClientInfo::new(
            Some(at("127.0.0.1:5000")),
            Some(at("127.0.0.1:8081")),
            false,
        ));
        assert!(g.check(&req).is_err());
        // An absolute-form URI must name us too.
        *req.uri_mut() = "http://evil.example:8081/api".parse().unwrap();
        req.headers_mut()
            .insert(header::HOST, "127.0.0.1:8081".parse().unwrap());
        assert!(g.check(&req).is_err());
        // A second, foreign Host behind ours.
        *req.uri_mut() = "/api".parse().unwrap();
        req.headers_mut()
            .append(header::HOST, "evil.example:8081".parse().unwrap());
        assert!(g.check(&req).is_err());
        req.headers_mut().remove(header::HOST);
        req.headers_mut()
            .insert(header::HOST, "127.0.0.1:8081".parse().unwrap());
        assert!(g.check(&req).is_ok());
    }
}
