//! The request key the `hash` and `shard` schedulers hash: parts of the request named in the
//! cluster's `hash-key`, such as `"path"`, `"url"`, `"host"`, `"client-ip"`, `"header:X-User"`
//! or `"cookie:session"`, combined with `+` (`"host+path"`).
//!
//! The hash is xxh3 over the parts, so the same request maps to the same backend in every
//! process and after every restart.

use http::{HeaderName, Request};

use crate::{client_info::ClientInfo, directors::hash_key, route::cookie_value};

/// One part of a hash key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyPart {
    /// Path and query.
    Url,
    /// Path only.
    Path,
    /// The `Host` header.
    Host,
    /// The client's IP address.
    ClientIp,
    /// A request header.
    Header(HeaderName),
    /// A cookie.
    Cookie(String),
}

/// A cluster's hash key: the parts, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashKey {
    parts: Vec<KeyPart>,
}

impl HashKey {
    /// Parses `"path"`, `"url"`, `"host"`, `"client-ip"`, `"header:NAME"`, `"cookie:NAME"`,
    /// joined with `+`.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let parts = spec
            .split('+')
            .map(|p| {
                let p = p.trim();
                Ok(match p {
                    "url" => KeyPart::Url,
                    "path" => KeyPart::Path,
                    "host" => KeyPart::Host,
                    "client-ip" => KeyPart::ClientIp,
                    _ => match p.split_once(':') {
                        Some(("header", name)) => KeyPart::Header(
                            HeaderName::from_bytes(name.as_bytes())
                                .map_err(|_| format!("{name:?} is not a header name"))?,
                        ),
                        Some(("cookie", name)) if !name.is_empty() => {
                            KeyPart::Cookie(name.to_owned())
                        }
                        _ => {
                            return Err(format!(
                                "unknown hash key part {p:?}: use url, path, host, client-ip, header:NAME or cookie:NAME"
                            ));
                        }
                    },
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(HashKey { parts })
    }

    /// The key of `req`.
    pub fn of<B>(&self, req: &Request<B>) -> u64 {
        let mut bytes: Vec<u8> = Vec::with_capacity(64);
        for part in &self.parts {
            match part {
                KeyPart::Url => bytes.extend_from_slice(
                    req.uri()
                        .path_and_query()
                        .map_or("/", |pq| pq.as_str())
                        .as_bytes(),
                ),
                KeyPart::Path => bytes.extend_from_slice(req.uri().path().as_bytes()),
                KeyPart::Host => bytes.extend_from_slice(
                    req.headers()
                        .get(http::header::HOST)
                        .map_or(&[][..], |h| h.as_bytes()),
                ),
                KeyPart::ClientIp => {
                    if let Some(ip) = req
                        .extensions()
                        .get::<ClientInfo>()
                        .and_then(|c| c.remote)
                        .map(|a| a.ip().to_canonical())
                    {
                        bytes.extend_from_slice(ip.to_string().as_bytes());
                    }
                }
                KeyPart::Header(name) => {
                    if let Some(v) = req.headers().get(name) {
                        bytes.extend_from_slice(v.as_bytes());
                    }
                }
                KeyPart::Cookie(name) => {
                    if let Some(v) = cookie_value(req.headers(), name) {
                        bytes.extend_from_slice(v.as_bytes());
                    }
                }
            }
            // A separator, so "ab"+"c" and "a"+"bc" differ.
            bytes.push(0);
        }
        hash_key(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::get(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn parts_and_combinations() {
        let path = HashKey::parse("path").unwrap();
        assert_eq!(path.of(&req("/a?x=1", &[])), path.of(&req("/a?x=2", &[])));
        let url = HashKey::parse("url").unwrap();
        assert_ne!(url.of(&req("/a?x=1", &[])), url.of(&req("/a?x=2", &[])));
        let user = HashKey::parse("header:x-user+cookie:sid").unwrap();
        let a = user.of(&req("/", &[("x-user", "ann"), ("cookie", "sid=1")]));
        let b = user.of(&req(
            "/other",
            &[("x-user", "ann"), ("cookie", "a=b; sid=1")],
        ));
        assert_eq!(a, b, "only the named parts count");
        assert_ne!(
            a,
            user.of(&req("/", &[("x-user", "bob"), ("cookie", "sid=1")]))
        );
        assert!(HashKey::parse("body").is_err());
        assert!(HashKey::parse("header:bad header").is_err());
    }
}
