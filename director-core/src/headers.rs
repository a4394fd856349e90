//! Proxy header rules: what a request and a response look like on the other side of Director.
//!
//! These are pure functions over `http` parts, applied once per request by
//! [`crate::forward::Forward`]. They follow RFC 9110 §7.6: hop-by-hop fields (`Connection` and
//! every field it names, `Keep-Alive`, `TE`, `Transfer-Encoding`, `Upgrade` unless tunnelling,
//! `Proxy-*`) never cross the proxy; `Via` gets Director's entry appended; `X-Forwarded-For` gets
//! the client's address appended. `X-Forwarded-Proto` and `X-Forwarded-Host` are set by Director;
//! what the client sent is kept only when the client is trusted. A request carries exactly one
//! valid `Host`, and an absolute-form target's authority replaces it ([`settle_host`]); an
//! `h2c` upgrade is never tunnelled.

use std::sync::Arc;

use http::{
    HeaderMap, HeaderName, HeaderValue, Method, Version,
    header::{self, HOST},
    request, response,
};

use crate::client_info::ClientInfo;

/// How Director rewrites headers when forwarding.
#[derive(Clone, Debug)]
pub struct HeaderPolicy {
    via: Option<Via>,
    trust_forwarded: bool,
}

/// The `Via` entries for each protocol version, built once so the hot path only clones them.
#[derive(Clone, Debug)]
struct Via {
    pseudonym: Arc<str>,
    v10: HeaderValue,
    v11: HeaderValue,
    v2: HeaderValue,
}

/// A pseudonym that cannot appear in a `Via` header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} cannot be used as a Via pseudonym (use letters, digits and -._~)")]
pub struct InvalidPseudonym(String);

impl HeaderPolicy {
    /// Sends `Via: 1.1 <pseudonym>` (none when `None`), and keeps clients' own
    /// `X-Forwarded-Proto`/`X-Forwarded-Host` only when `trust_forwarded` (for clients that are
    /// themselves trusted proxies); otherwise Director sets them.
    pub fn new(pseudonym: Option<&str>, trust_forwarded: bool) -> Result<Self, InvalidPseudonym> {
        let via = match pseudonym {
            None => None,
            Some(p) => {
                let valid = !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
                if !valid {
                    return Err(InvalidPseudonym(p.to_owned()));
                }
                let value = |v: &str| {
                    HeaderValue::from_str(&format!("{v} {p}")).expect("checked characters")
                };
                Some(Via {
                    pseudonym: p.into(),
                    v10: value("1.0"),
                    v11: value("1.1"),
                    v2: value("2"),
                })
            }
        };
        Ok(HeaderPolicy {
            via,
            trust_forwarded,
        })
    }

    /// The `Via` pseudonym, if Director sends `Via`.
    pub fn pseudonym(&self) -> Option<&Arc<str>> {
        self.via.as_ref().map(|v| &v.pseudonym)
    }

    /// Whether clients' own `X-Forwarded-Proto`/`-Host` are kept.
    pub fn trusts_forwarded(&self) -> bool {
        self.trust_forwarded
    }

    fn via_value(&self, version: Version) -> Option<HeaderValue> {
        let via = self.via.as_ref()?;
        Some(match version {
            Version::HTTP_10 | Version::HTTP_09 => via.v10.clone(),
            Version::HTTP_2 => via.v2.clone(),
            Version::HTTP_3 => HeaderValue::from_str(&format!("3 {}", via.pseudonym)).ok()?,
            _ => via.v11.clone(),
        })
    }
}

impl Default for HeaderPolicy {
    fn default() -> Self {
        HeaderPolicy::new(Some("director"), false).expect("a valid pseudonym")
    }
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static X_SENDFILE: HeaderName = HeaderName::from_static("x-sendfile");
static X_ACCEL_REDIRECT: HeaderName = HeaderName::from_static("x-accel-redirect");
static HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// Which of the fields the proxy rules care about a message carries, found in one pass over
/// its names: most messages carry none of the hop-by-hop fields, and a pass over a handful of
/// names is cheaper than a dozen hash lookups that miss.
#[derive(Clone, Copy, Debug, Default)]
struct Present {
    connection: bool,
    hop_by_hop: bool,
    expect: bool,
    sendfile: bool,
    forwarded_for: bool,
}

fn scan(headers: &HeaderMap) -> Present {
    let mut p = Present::default();
    for name in headers.keys() {
        match name.as_str() {
            "connection" => p.connection = true,
            "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "proxy-authorization"
            | "proxy-authenticate"
            | "http2-settings" => p.hop_by_hop = true,
            "expect" => p.expect = true,
            "x-sendfile" | "x-accel-redirect" => p.sendfile = true,
            "x-forwarded-for" => p.forwarded_for = true,
            _ => {}
        }
    }
    p
}

/// The hop-by-hop fields of RFC 9110 §7.6.1, plus the legacy `Proxy-Connection` and h2c's
/// `HTTP2-Settings` (RFC 7540 §3.2: it belongs to the connection it would upgrade).
fn standard_hop_by_hop() -> [&'static HeaderName; 10] {
    [
        &header::CONNECTION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::TE,
        &header::TRAILER,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
        &header::PROXY_AUTHORIZATION,
        &header::PROXY_AUTHENTICATE,
        &HTTP2_SETTINGS,
    ]
}

/// Whether a `Connection` header lists `token` (case-insensitive).
pub fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Whether the request asks for a protocol upgrade (`Connection: upgrade` plus `Upgrade`).
pub fn is_upgrade_request(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_has(headers, "upgrade")
}

/// Whether an `Upgrade` field offers `h2c`.
///
/// Such an upgrade is never tunnelled: the request is served as plain HTTP/1.1 (RFC 9110 §7.8
/// lets a server ignore `Upgrade`), as HAProxy 2.6+ does. A tunnelled h2c connection would be a
/// backend connection that Director no longer sees into: later requests on it would bypass
/// routing, deny rules and body limits (the "h2c smuggling" attack). A 400 would break
/// clients that offer h2c opportunistically (curl `--http2` on `http://`), which the
/// ignore-it answer serves correctly.
fn offers_h2c(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("h2c"))
}

/// Removes the hop-by-hop fields, and every field the `Connection` header names.
///
/// `Host` and `Content-Length` are never removed this way: a client naming them in `Connection`
/// would otherwise be able to break the request's routing or framing.
fn strip_hop_by_hop(headers: &mut HeaderMap, present: Present) {
    if present.connection {
        // Tokens that name standard hop-by-hop fields (or none, like `close`) are removed below
        // anyway; only other names need parsing, and the Vec allocates only for those.
        let mut named: Vec<HeaderName> = Vec::new();
        for token in headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
        {
            let common = ["keep-alive", "close", "upgrade", "te", ""]
                .iter()
                .any(|c| token.eq_ignore_ascii_case(c));
            if common {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(token.as_bytes())
                && name != HOST
                && name != header::CONTENT_LENGTH
            {
                named.push(name);
            }
        }
        for name in named {
            headers.remove(name);
        }
        headers.remove(header::CONNECTION);
    }
    if present.hop_by_hop {
        for name in standard_hop_by_hop() {
            headers.remove(name);
        }
    }
}

fn version_token(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// Rewrites a request's head for forwarding to a backend over HTTP/1.1.
///
/// Returns the `Upgrade` value when the request is a protocol upgrade to tunnel (its `Upgrade`
/// and `Connection: upgrade` fields are kept for the backend).
pub fn prepare_request(
    parts: &mut request::Parts,
    client: &ClientInfo,
    policy: &HeaderPolicy,
) -> Option<HeaderValue> {
    let headers = &mut parts.headers;
    let present = scan(headers);
    let upgrade = if present.connection
        && present.hop_by_hop
        && is_upgrade_request(headers)
        && !offers_h2c(headers)
    {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    };
    strip_hop_by_hop(headers, present);
    // Director answers `Expect: 100-continue` itself (hyper sends the 100 when the body is first
    // read, that is when the backend is ready to take it); the backend must not see it again.
    if present.expect {
        headers.remove(header::EXPECT);
    }
    if let Some(upgrade) = &upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, upgrade.clone());
    }

    // HTTP/2 requests carry the host in the URI only; HTTP/1.1 backends need a `Host` field.
    if !headers.contains_key(HOST)
        && let Some(authority) = parts.uri.authority()
        && let Ok(value) = HeaderValue::from_str(authority.as_str())
    {
        headers.insert(HOST, value);
    }

    if let Some(client_ip) = client.forwarded_for() {
        let prior = if present.forwarded_for {
            headers.get(&X_FORWARDED_FOR).map(HeaderValue::as_bytes)
        } else {
            None
        };
        let value = match prior {
            Some(prior) if !prior.is_empty() => {
                let ip = client_ip.to_str().unwrap_or_default();
                // Several XFF lines form one list; join them so the backend sees one field.
                let mut joined = String::new();
                for v in headers.get_all(&X_FORWARDED_FOR) {
                    if let Ok(s) = v.to_str() {
                        if !joined.is_empty() {
                            joined.push_str(", ");
                        }
                        joined.push_str(s);
                    }
                }
                joined.push_str(", ");
                joined.push_str(ip);
                HeaderValue::from_str(&joined).ok()
            }
            // The common case: no earlier proxy; the per-connection value is only cloned.
            _ => Some(client_ip),
        };
        if let Some(value) = value {
            headers.insert(&X_FORWARDED_FOR, value);
        }
    }
    if !(policy.trust_forwarded && headers.contains_key(&X_FORWARDED_PROTO)) {
        headers.insert(
            &X_FORWARDED_PROTO,
            HeaderValue::from_static(client.scheme()),
        );
    }
    if !(policy.trust_forwarded && headers.contains_key(&X_FORWARDED_HOST)) {
        match headers.get(HOST).cloned() {
            Some(host) => {
                headers.insert(&X_FORWARDED_HOST, host);
            }
            None => {
                headers.remove(&X_FORWARDED_HOST);
            }
        }
    }
    if let Some(via) = policy.via_value(parts.version) {
        headers.append(header::VIA, via);
    }

    // Backends get origin-form over HTTP/1.1, whatever the client spoke.
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        let pq = parts
            .uri
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/");
        if let Ok(uri) = pq.parse() {
            parts.uri = uri;
        }
    }
    parts.version = Version::HTTP_11;
    upgrade
}

/// Why a request's `Host` is refused: each gets 400 (RFC 9112 §3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostError {
    /// More than one `Host` field: which one a backend, a cache or a log believes is anyone's
    /// guess.
    Several,
    /// A `Host` (or absolute-form authority) that is not `host[:port]` (RFC 3986 §3.2.2).
    Invalid,
    /// An HTTP/1.1 request with neither `Host` nor an absolute-form target.
    Missing,
    /// An absolute-form target with userinfo (`http://user@host/`, RFC 9110 §4.2.4).
    UserInfo,
}

impl HostError {
    /// A short explanation for the client.
    pub fn describe(self) -> &'static str {
        match self {
            HostError::Several => "a request carries exactly one Host header",
            HostError::Invalid => "the Host header is not a valid host[:port]",
            HostError::Missing => "an HTTP/1.1 request needs a Host header",
            HostError::UserInfo => "userinfo in the request target is refused",
        }
    }
}

/// Checks the request's `Host` and, when the target has an authority (absolute-form, or
/// HTTP/2's `:authority`), replaces `Host` with it (RFC 9112 §3.2.2: the target's authority
/// wins), so that routing, the cache and the backend all see the same host.
pub fn settle_host(parts: &mut request::Parts) -> Result<(), HostError> {
    let mut hosts = parts.headers.get_all(HOST).iter();
    let first = hosts.next();
    if hosts.next().is_some() {
        return Err(HostError::Several);
    }
    match parts.uri.authority() {
        Some(authority) => {
            let authority = authority.as_str();
            if authority.contains('@') {
                return Err(HostError::UserInfo);
            }
            if authority.is_empty() || !valid_host(authority.as_bytes()) {
                return Err(HostError::Invalid);
            }
            if first.map(HeaderValue::as_bytes) != Some(authority.as_bytes()) {
                let value = HeaderValue::from_str(authority).map_err(|_| HostError::Invalid)?;
                parts.headers.insert(HOST, value);
            }
            Ok(())
        }
        None => match first {
            // An empty Host is valid: the target has no authority (RFC 9112 §3.2).
            Some(host) if valid_host(host.as_bytes()) => Ok(()),
            Some(_) => Err(HostError::Invalid),
            None if parts.version == Version::HTTP_11 => Err(HostError::Missing),
            None => Ok(()),
        },
    }
}

/// `uri-host [ ":" port ]` (RFC 9112 §3.2, RFC 3986 §3.2.2-3): an IP literal in brackets or a
/// reg-name (unreserved, pct-encoded, sub-delims), then an optional port of digits.
fn valid_host(value: &[u8]) -> bool {
    let valid_port = |p: &[u8]| p.len() <= 5 && p.iter().all(u8::is_ascii_digit);
    if value.first() == Some(&b'[') {
        let Some(end) = value.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = &value[1..end];
        let ip = !literal.is_empty()
            && literal
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        return ip
            && match &value[end + 1..] {
                [] => true,
                [b':', port @ ..] => valid_port(port),
                _ => false,
            };
    }
    let (host, port) = match value.iter().position(|&b| b == b':') {
        Some(colon) => (&value[..colon], Some(&value[colon + 1..])),
        None => (value, None),
    };
    if host.is_empty() && port.is_some() {
        return false;
    }
    let reg_name = host.iter().all(|&b| {
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
            )
    });
    reg_name && port.is_none_or(valid_port)
}

/// Rewrites a backend's response head for the client.
///
/// `X-Sendfile` and `X-Accel-Redirect` are always removed here: a backend must not be able to
/// make Director serve a file unless the cluster allows it, and that is decided before this.
pub fn prepare_response(parts: &mut response::Parts, policy: &HeaderPolicy) {
    let upgrade = (parts.status == http::StatusCode::SWITCHING_PROTOCOLS)
        .then(|| parts.headers.get(header::UPGRADE).cloned())
        .flatten();
    let present = scan(&parts.headers);
    strip_hop_by_hop(&mut parts.headers, present);
    if present.sendfile {
        parts.headers.remove(&X_SENDFILE);
        parts.headers.remove(&X_ACCEL_REDIRECT);
    }
    if let Some(upgrade) = upgrade {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(header::UPGRADE, upgrade);
    }
    if let Some(via) = policy.via_value(parts.version) {
        parts.headers.append(header::VIA, via);
    }
}

/// What to do with a `TRACE` or `OPTIONS` request under RFC 9110 §7.6.2 (`Max-Forwards`).
#[derive(Debug, PartialEq, Eq)]
pub enum MaxForwards {
    /// Forward the request (the field was absent, or has been decremented).
    Forward,
    /// `Max-Forwards: 0`: Director is the final recipient and answers itself.
    AnswerLocally,
    /// The field is not a number.
    Invalid,
}

/// Applies `Max-Forwards` to a `TRACE` or `OPTIONS` request, decrementing it when forwarding.
pub fn max_forwards(method: &Method, headers: &mut HeaderMap) -> MaxForwards {
    if method != Method::TRACE && method != Method::OPTIONS {
        return MaxForwards::Forward;
    }
    let Some(value) = headers.get(header::MAX_FORWARDS) else {
        return MaxForwards::Forward;
    };
    let Some(n) = value
        .to_str()
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
    else {
        return MaxForwards::Invalid;
    };
    if n == 0 {
        return MaxForwards::AnswerLocally;
    }
    headers.insert(header::MAX_FORWARDS, HeaderValue::from(n - 1));
    MaxForwards::Forward
}

/// Fields a `TRACE` reflection leaves out (RFC 9110 §9.3.8: credentials are not echoed).
const TRACE_REDACTED: [HeaderName; 3] = [
    header::AUTHORIZATION,
    header::PROXY_AUTHORIZATION,
    header::COOKIE,
];

/// The `message/http` body of a `TRACE` answered by Director: the request head as received.
pub fn trace_reflection(parts: &request::Parts) -> String {
    let target = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/");
    let mut out = format!("TRACE {target} HTTP/{}\r\n", version_token(parts.version));
    for (name, value) in &parts.headers {
        if TRACE_REDACTED.contains(name) {
            continue;
        }
        out.push_str(name.as_str());
        out.push_str(": ");
        out.push_str(&String::from_utf8_lossy(value.as_bytes()));
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out
}

#[cfg(test)]
mod tests;
