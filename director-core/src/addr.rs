//! Where a backend lives: a TCP address (IPv4, IPv6 or a host name) or a UNIX socket path.
//!
//! Backends are written as URLs in the config:
//!
//! | URL                               | meaning                               |
//! |-----------------------------------|---------------------------------------|
//! | `http://127.0.0.1:3000`           | HTTP/1.1 over TCP, IPv4               |
//! | `http://127.0.0.1:3000/base`      | the same, every request path under `/base` (fnlb) |
//! | `http://[::1]:3000`               | HTTP/1.1 over TCP, IPv6               |
//! | `http://app.internal:3000`        | HTTP/1.1 over TCP, resolved on connect |
//! | `unix:/run/app.sock`              | HTTP/1.1 over a UNIX socket           |
//! | `http+unix:/run/app.sock`         | the same, spelled explicitly          |
//! | `fastcgi://...`, `fastcgi+unix:` | FastCGI (see [`Protocol`])            |
//! | `cluster:NAME`                    | another cluster, as one backend       |

use std::{fmt, net::SocketAddr, path::PathBuf, str::FromStr, sync::Arc};

/// The transport address of a backend.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BackendAddr {
    /// A TCP socket address (IPv4 or IPv6 literal).
    Tcp(SocketAddr),
    /// A host name and port, resolved each time a new connection is opened.
    Host(Arc<str>, u16),
    /// A UNIX domain socket path.
    Unix(PathBuf),
    /// Another cluster of the same config, used as one backend (a nested director).
    Cluster(Arc<str>),
}

impl fmt::Display for BackendAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendAddr::Tcp(addr) => write!(f, "{addr}"),
            BackendAddr::Host(host, port) => write!(f, "{host}:{port}"),
            BackendAddr::Unix(path) => write!(f, "unix:{}", path.display()),
            BackendAddr::Cluster(name) => write!(f, "cluster:{name}"),
        }
    }
}

/// The protocol spoken to a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// HTTP/1.1.
    Http,
    /// FastCGI (responder role).
    FastCgi,
    /// Whatever the nested cluster's backends speak.
    Cluster,
}

/// A parsed backend URL: protocol, address and (HTTP over TCP only) a base path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BackendUrl {
    /// How to speak to the backend.
    pub protocol: Protocol,
    /// Where the backend is.
    pub addr: BackendAddr,
    /// A path prefix put before every request path sent to this backend (fnlb's
    /// `http://node/base`): `/dir` is sent as `/base/dir`. Never ends with `/`; `None` when the
    /// URL has no path (or only `/`).
    pub base_path: Option<Arc<str>>,
}

impl BackendUrl {
    fn new(protocol: Protocol, addr: BackendAddr) -> Self {
        BackendUrl {
            protocol,
            addr,
            base_path: None,
        }
    }
}

/// Puts `base` (no trailing `/`) before an origin-form `path_and_query`: `/dir?q=1` becomes
/// `/base/dir?q=1`, `/` becomes `/base/`. Anything else (the asterisk form) is left alone.
pub fn prefix_path(base: &str, path_and_query: &str) -> Option<String> {
    if !path_and_query.starts_with('/') {
        return None;
    }
    let mut out = String::with_capacity(base.len() + path_and_query.len());
    out.push_str(base);
    out.push_str(path_and_query);
    Some(out)
}

/// Checks a backend URL's path: absolute, only characters a URI path may hold (RFC 3986),
/// no empty, `.` or `..` segment (a backend could resolve them differently). Returns the
/// prefix without its trailing `/`, or `None` for `/` alone.
fn base_path(path: &str) -> Result<Option<Arc<str>>, &'static str> {
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    if trimmed.is_empty() {
        return Ok(None);
    }
    let valid = |b: u8| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'%'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
            )
    };
    for segment in trimmed[1..].split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err("a base path has no empty, . or .. segment");
        }
        if !segment.bytes().all(valid) {
            return Err("a base path holds only URI path characters");
        }
    }
    let bytes = trimmed.as_bytes();
    for (i, _) in trimmed.match_indices('%') {
        let hex = bytes.get(i + 1..i + 3);
        if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
            return Err("a base path's % is followed by two hex digits");
        }
    }
    Ok(Some(trimmed.into()))
}

/// Why a backend URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid backend URL {url:?}: {reason}")]
pub struct AddrError {
    url: String,
    reason: &'static str,
}

impl FromStr for BackendUrl {
    type Err = AddrError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let err = |reason| AddrError {
            url: url.to_owned(),
            reason,
        };
        let (scheme, rest) = url
            .split_once(':')
            .ok_or_else(|| err("expected a scheme such as http:// or unix:"))?;
        if scheme.eq_ignore_ascii_case("cluster") {
            let valid = !rest.is_empty()
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            if !valid {
                return Err(err("cluster:NAME names another cluster"));
            }
            return Ok(BackendUrl::new(
                Protocol::Cluster,
                BackendAddr::Cluster(rest.into()),
            ));
        }
        let (protocol, unix) = match scheme.to_ascii_lowercase().as_str() {
            "http" => (Protocol::Http, false),
            "unix" | "http+unix" => (Protocol::Http, true),
            "fastcgi" | "fcgi" => (Protocol::FastCgi, false),
            "fastcgi+unix" | "fcgi+unix" => (Protocol::FastCgi, true),
            "https" => return Err(err("TLS to backends is not supported; use http://")),
            _ => {
                return Err(err(
                    "unknown scheme; use http, unix, fastcgi or fastcgi+unix",
                ));
            }
        };
        if unix {
            // Accept `unix:/p`, `unix://p` is ambiguous, `unix:///p` is the URL form.
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if !path.starts_with('/') {
                return Err(err("a UNIX socket path must be absolute"));
            }
            return Ok(BackendUrl::new(
                protocol,
                BackendAddr::Unix(PathBuf::from(path)),
            ));
        }
        let rest = rest
            .strip_prefix("//")
            .ok_or_else(|| err("expected // after the scheme"))?;
        let (authority, path) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        if authority.contains('?') || authority.contains('#') || authority.contains('@') {
            return Err(err(
                "a backend URL has a host, a port and a base path only, no user or query",
            ));
        }
        if path.contains('?') || path.contains('#') {
            return Err(err("a backend URL's base path has no query or fragment"));
        }
        let base = base_path(path).map_err(err)?;
        if base.is_some() && protocol != Protocol::Http {
            return Err(err("only an http:// backend may have a base path"));
        }
        let url = |addr| BackendUrl {
            protocol,
            addr,
            base_path: base.clone(),
        };
        if authority.is_empty() {
            return Err(err("missing host"));
        }
        let default_port = match protocol {
            Protocol::Http => 80,
            // FastCGI has no registered port; 9000 is php-fpm's default.
            Protocol::FastCgi | Protocol::Cluster => 9000,
        };
        if let Ok(addr) = authority.parse::<SocketAddr>() {
            return Ok(url(BackendAddr::Tcp(addr)));
        }
        let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
            // `[v6]` or `[v6]:port`
            let (v6, after) = rest
                .split_once(']')
                .ok_or_else(|| err("unclosed IPv6 bracket"))?;
            let port = match after {
                "" => default_port,
                p => p
                    .strip_prefix(':')
                    .and_then(|p| p.parse::<u16>().ok())
                    .ok_or_else(|| err("invalid port"))?,
            };
            (&authority[..v6.len() + 2], port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, port.parse::<u16>().map_err(|_| err("invalid port"))?),
                None => (authority, default_port),
            }
        };
        if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            let ip = v6
                .parse::<std::net::Ipv6Addr>()
                .map_err(|_| err("invalid IPv6 address"))?;
            return Ok(url(BackendAddr::Tcp(SocketAddr::new(ip.into(), port))));
        }
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            return Ok(url(BackendAddr::Tcp(SocketAddr::new(ip, port))));
        }
        let valid_name = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !valid_name {
            return Err(err("invalid host name"));
        }
        Ok(url(BackendAddr::Host(
            host.to_ascii_lowercase().into(),
            port,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<BackendUrl, AddrError> {
        s.parse()
    }

    #[test]
    fn tcp_forms() {
        assert_eq!(
            parse("http://127.0.0.1:3000").unwrap().addr,
            BackendAddr::Tcp("127.0.0.1:3000".parse().unwrap())
        );
        assert_eq!(
            parse("http://[::1]:8080/").unwrap().addr,
            BackendAddr::Tcp("[::1]:8080".parse().unwrap())
        );
        assert_eq!(
            parse("http://[::1]").unwrap().addr,
            BackendAddr::Tcp("[::1]:80".parse().unwrap())
        );
        assert_eq!(
            parse("http://App.internal:81").unwrap().addr,
            BackendAddr::Host("app.internal".into(), 81)
        );
        assert_eq!(
            parse("http://10.0.0.1").unwrap().addr,
            BackendAddr::Tcp("10.0.0.1:80".parse().unwrap())
        );
    }

    #[test]
    fn base_paths() {
        let base = |s: &str| parse(s).unwrap().base_path.map(|b| b.to_string());
        assert_eq!(base("http://a:1"), None);
        assert_eq!(base("http://a:1/"), None);
        assert_eq!(base("http://a:1/base"), Some("/base".into()));
        assert_eq!(base("http://a:1/base/"), Some("/base".into()));
        assert_eq!(base("http://[::1]:1/a/b%20c"), Some("/a/b%20c".into()));
        assert_eq!(
            parse("http://10.0.0.1:81/base").unwrap().addr,
            BackendAddr::Tcp("10.0.0.1:81".parse().unwrap())
        );
        assert_eq!(prefix_path("/base", "/dir?q=1").unwrap(), "/base/dir?q=1");
        assert_eq!(prefix_path("/base", "/").unwrap(), "/base/");
        assert_eq!(prefix_path("/base", "*"), None);
    }

    #[test]
    fn unix_forms() {
        for url in [
            "unix:/run/a.sock",
            "http+unix:/run/a.sock",
            "unix:///run/a.sock",
        ] {
            let parsed = parse(url).unwrap();
            assert_eq!(parsed.protocol, Protocol::Http);
            assert_eq!(parsed.addr, BackendAddr::Unix("/run/a.sock".into()));
        }
        assert!(parse("unix:relative.sock").is_err());
    }

    #[test]
    fn fastcgi_forms() {
        let parsed = parse("fastcgi://127.0.0.1").unwrap();
        assert_eq!(parsed.protocol, Protocol::FastCgi);
        assert_eq!(
            parsed.addr,
            BackendAddr::Tcp("127.0.0.1:9000".parse().unwrap())
        );
        assert_eq!(
            parse("fastcgi+unix:/run/php.sock").unwrap().protocol,
            Protocol::FastCgi
        );
    }

    #[test]
    fn rejects_nonsense() {
        for url in [
            "127.0.0.1:80",
            "https://a",
            "ftp://a",
            "http://",
            "http://a/path?x=1",
            "http://a/p#f",
            "http://a//p",
            "http://a/p/../q",
            "http://a/p/./q",
            "http://a/p q",
            "http://a/%zz",
            "fastcgi://a/base",
            "http://a:port",
            "http://user@a",
            "http://a b",
            "http://[zz]:1",
        ] {
            assert!(parse(url).is_err(), "{url} should be refused");
        }
    }
}
