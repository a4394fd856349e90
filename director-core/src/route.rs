//! Routes: which target serves a request, chosen by host and path prefix.
//!
//! The most specific route wins, as in nginx: an exact host beats a wildcard (`*.example.com`,
//! longest suffix first), which beats a route for any host; among those, the longest path prefix
//! wins; equal routes keep their config order. A path prefix matches whole segments: `/api`
//! matches `/api`, `/api/` and `/api/v1`, not `/apis` (a prefix ending in `/` matches anything
//! below it). Paths are matched after [`crate::normalize`] (see [`crate::forward`]), so a prefix
//! has one spelling.

use std::sync::Arc;

use http::{HeaderMap, HeaderName, Uri, header::HOST};

use crate::{
    backend::Backend,
    cluster::{Cluster, Dispatch},
};

/// Where a matched request goes.
#[derive(Clone, Debug)]
pub enum Target {
    /// Balanced over a cluster.
    Cluster(Arc<Cluster>),
    /// Balanced over a cluster, through a service in front of it (an object cache).
    Front(Arc<Cluster>, crate::registry::ClusterFront),
    /// Straight to one backend, no balancing (x0's road warrior), with the route's X-Sendfile
    /// policy if it allows one (`[routes.sendfile]`).
    Direct(Arc<Backend>, Option<Arc<crate::sendfile::SendfilePolicy>>),
    /// Nowhere: Director answers 403 (`deny = true`).
    Deny,
}

/// Which hosts a route serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostPattern {
    /// Every host.
    Any,
    /// Exactly this host (lowercase, no port).
    Exact(String),
    /// Any host ending in `.suffix` (written `*.suffix`).
    Wildcard(String),
}

impl HostPattern {
    /// Parses `"*"`, `"*.example.com"` or `"example.com"`.
    pub fn parse(pattern: &str) -> Result<Self, &'static str> {
        let pattern = pattern.trim().trim_end_matches('.').to_ascii_lowercase();
        if pattern.is_empty() || pattern == "*" {
            return Ok(HostPattern::Any);
        }
        let (wild, name) = match pattern.strip_prefix("*.") {
            Some(rest) => (true, rest.to_owned()),
            None => (false, pattern),
        };
        let valid = !name.is_empty()
            && name.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':' | b'[' | b']')
            });
        if !valid {
            return Err("a host is a name such as example.com, *.example.com or *");
        }
        Ok(if wild {
            HostPattern::Wildcard(name)
        } else {
            HostPattern::Exact(name)
        })
    }

    fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Any => true,
            HostPattern::Exact(name) => host.eq_ignore_ascii_case(name),
            HostPattern::Wildcard(suffix) => {
                host.len() > suffix.len() + 1
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
        }
    }

    fn rank(&self) -> (u8, usize) {
        match self {
            HostPattern::Any => (0, 0),
            HostPattern::Wildcard(suffix) => (1, suffix.len()),
            HostPattern::Exact(name) => (2, name.len()),
        }
    }
}

/// One route: host pattern, path prefix, target.
#[derive(Clone, Debug)]
pub struct Route {
    /// The hosts it serves.
    pub host: HostPattern,
    /// The path prefix it serves (starts with `/`).
    pub path: String,
    /// Where its requests go.
    pub target: Target,
    /// How its requests pick a bucket and a pinned backend.
    pub classify: Classify,
    /// Its own `max-request-body`, over the listener's (0: no limit).
    pub max_request_body: Option<u64>,
    /// Files served before the target, and rewrites (`root`; see [`crate::files`]).
    pub files: Option<Arc<crate::files::FilesPolicy>>,
}

/// How a route's requests pick their bucket and, for client-side routing, a backend.
#[derive(Clone, Debug, Default)]
pub struct Classify {
    /// A fixed bucket.
    pub bucket: Option<String>,
    /// A request header naming the bucket.
    pub bucket_header: Option<HeaderName>,
    /// A cookie naming the bucket.
    pub bucket_cookie: Option<String>,
    /// A cookie naming the backend to pin to.
    pub pin_cookie: Option<String>,
    /// A request header naming the backend to pin to.
    pub pin_header: Option<HeaderName>,
    /// A query parameter naming the backend to pin to.
    pub pin_query: Option<String>,
}

impl Classify {
    /// How to dispatch a request with this URI and headers (`tag`: attach upstream info).
    pub fn dispatch(&self, uri: &Uri, headers: &HeaderMap, tag: bool) -> Dispatch {
        let header = |name: &Option<HeaderName>| {
            name.as_ref()
                .and_then(|n| headers.get(n))
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let cookie = |name: &Option<String>| name.as_deref().and_then(|n| cookie_value(headers, n));
        let bucket = header(&self.bucket_header)
            .or_else(|| cookie(&self.bucket_cookie))
            .or_else(|| self.bucket.clone());
        let pin = cookie(&self.pin_cookie)
            .or_else(|| header(&self.pin_header))
            .or_else(|| {
                self.pin_query
                    .as_deref()
                    .and_then(|n| query_value(uri.query()?, n))
            });
        Dispatch { bucket, pin, tag }
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"').to_owned())
        .filter(|v| !v.is_empty())
}

/// The value of query parameter `name`.
pub fn query_value(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty())
}

impl Route {
    fn matches(&self, host: &str, path: &str) -> bool {
        self.host.matches(host) && path_has_prefix(path, &self.path)
    }
}

fn path_has_prefix(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// The routes of a config, ordered most specific first.
#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// Orders `routes` by specificity (stable: config order breaks ties).
    pub fn new(mut routes: Vec<Route>) -> Self {
        routes.sort_by(|a, b| {
            b.host
                .rank()
                .cmp(&a.host.rank())
                .then(b.path.len().cmp(&a.path.len()))
        });
        RouteTable { routes }
    }

    /// The routes, most specific first.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route for a request with this URI and headers.
    pub fn find(&self, uri: &Uri, headers: &HeaderMap) -> Option<&Route> {
        let host = request_host(uri, headers);
        let path = uri.path();
        self.routes.iter().find(|r| r.matches(host, path))
    }
}

/// The request's host without port: the `Host` header, else the URI's authority.
pub fn request_host<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> &'a str {
    let raw = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.host())
        .unwrap_or("");
    let host = if raw.starts_with('[') {
        // An IPv6 literal keeps its brackets; drop only a trailing port.
        match raw.find(']') {
            Some(end) => &raw[..=end],
            None => raw,
        }
    } else {
        raw.split(':').next().unwrap_or(raw)
    };
    host.strip_suffix('.').unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::HeaderValue;

    use super::*;
    use crate::transport::TransportOptions;

    fn direct(name: &str) -> Target {
        let url = "http://127.0.0.1:1".parse().unwrap();
        let opts = TransportOptions {
            connect_timeout: Duration::from_secs(1),
            ..TransportOptions::default()
        };
        Target::Direct(Arc::new(Backend::new(name, url, opts)), None)
    }

    fn route(host: &str, path: &str, name: &str) -> Route {
        Route {
            host: HostPattern::parse(host).unwrap(),
            path: path.into(),
            target: direct(name),
            classify: Classify::default(),
            max_request_body: None,
            files: None,
        }
    }

    #[test]
    fn classification_by_header_cookie_and_query() {
        let classify = Classify {
            bucket: Some("main".into()),
            bucket_header: Some(HeaderName::from_static("x-class")),
            bucket_cookie: Some("class".into()),
            pin_cookie: Some("backend".into()),
            pin_header: None,
            pin_query: Some("b".into()),
        };
        let mut headers = HeaderMap::new();
        let uri: Uri = "/x?a=1&b=app2".parse().unwrap();
        let d = classify.dispatch(&uri, &headers, false);
        assert_eq!(
            (d.bucket.as_deref(), d.pin.as_deref()),
            (Some("main"), Some("app2"))
        );
        headers.insert(
            "cookie",
            HeaderValue::from_static("x=1; class=vip; backend=app1"),
        );
        let d = classify.dispatch(&uri, &headers, false);
        assert_eq!(
            (d.bucket.as_deref(), d.pin.as_deref()),
            (Some("vip"), Some("app1"))
        );
        headers.insert("x-class", HeaderValue::from_static("batch"));
        assert_eq!(
            classify.dispatch(&uri, &headers, false).bucket.as_deref(),
            Some("batch")
        );
        assert_eq!(query_value("a=1&b=", "b"), None);
    }

    fn find<'a>(table: &'a RouteTable, host: &str, path: &str) -> Option<&'a str> {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_str(host).unwrap());
        let uri: Uri = path.parse().unwrap();
        table.find(&uri, &headers).map(|r| match &r.target {
            Target::Direct(b, _) => &**b.name(),
            Target::Cluster(c) | Target::Front(c, _) => &**c.name(),
            Target::Deny => "deny",
        })
    }

    #[test]
    fn most_specific_route_wins() {
        let table = RouteTable::new(vec![
            route("*", "/", "default"),
            route("*.example.com", "/", "wild"),
            route("api.example.com", "/", "api"),
            route("api.example.com", "/v2", "api-v2"),
            route("*", "/static/", "static"),
        ]);
        assert_eq!(find(&table, "api.example.com", "/x"), Some("api"));
        assert_eq!(
            find(&table, "API.Example.com:8080", "/v2/users"),
            Some("api-v2")
        );
        assert_eq!(find(&table, "api.example.com", "/v2"), Some("api-v2"));
        assert_eq!(find(&table, "api.example.com", "/v2x"), Some("api"));
        assert_eq!(find(&table, "www.example.com", "/"), Some("wild"));
        assert_eq!(find(&table, "a.b.example.com", "/"), Some("wild"));
        assert_eq!(find(&table, "example.com", "/"), Some("default"));
        assert_eq!(find(&table, "other.org", "/static/app.js"), Some("static"));
        assert_eq!(find(&table, "other.org", "/staticfoo"), Some("default"));
    }

    #[test]
    fn no_match_without_catch_all() {
        let table = RouteTable::new(vec![route("example.com", "/", "only")]);
        assert_eq!(find(&table, "example.org", "/"), None);
        assert_eq!(find(&table, "example.com.", "/"), Some("only"));
    }

    #[test]
    fn ipv6_hosts() {
        let table = RouteTable::new(vec![route("[::1]", "/", "v6")]);
        assert_eq!(find(&table, "[::1]:8080", "/"), Some("v6"));
    }

    #[test]
    fn host_patterns() {
        assert_eq!(HostPattern::parse("*").unwrap(), HostPattern::Any);
        assert_eq!(
            HostPattern::parse("*.Example.com").unwrap(),
            HostPattern::Wildcard("example.com".into())
        );
        assert!(HostPattern::parse("exa mple.com").is_err());
        assert!(HostPattern::parse("*.a b").is_err());
    }
}
