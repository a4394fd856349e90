//! CGI/1.1 glue (RFC 3875): the variables sent as `PARAMS`, and the header block that opens the
//! application's `STDOUT`.
//!
//! Both halves are pure functions so they can be tested without sockets: [`build_params`] maps an
//! HTTP request head plus a [`CgiContext`] and the per-cluster [`CgiConfig`] to name-value pairs,
//! and [`parse_response_head`] turns the `Status:`/`Location:`/header lines into an HTTP status
//! and header map.

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{StatusCode, Version, request};

#[cfg(test)]
mod tests;

/// Connection facts only the embedding server knows. Insert one into the request's extensions
/// (`req.extensions_mut().insert(CgiContext { .. })`); when absent, the defaults leave
/// `REMOTE_ADDR`/`SERVER_ADDR` out and assume plain HTTP.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgiContext {
    /// The client's address (`REMOTE_ADDR`, `REMOTE_PORT`).
    pub remote_addr: Option<SocketAddr>,
    /// The local address the client connected to (`SERVER_ADDR`, `SERVER_PORT`).
    pub server_addr: Option<SocketAddr>,
    /// Whether the client connection used TLS (`HTTPS=on`, `REQUEST_SCHEME=https`).
    pub https: bool,
    /// An authenticated user name (`REMOTE_USER`), if the server authenticated the client.
    pub remote_user: Option<String>,
}

/// How a request path maps to the script that runs and the `PATH_INFO` after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScriptMapping {
    /// The script is the path up to the first segment that ends in one of these extensions
    /// (like nginx's `fastcgi_split_path_info ^(.+\.php)(/.*)$`); the rest is `PATH_INFO`.
    /// A path ending in `/` gets the index file appended.
    Extension(Vec<String>),
    /// Every request runs this one script (a front controller such as `/index.php`), and the
    /// whole request path becomes `PATH_INFO`.
    FrontController(String),
}

impl Default for ScriptMapping {
    fn default() -> Self {
        Self::Extension(vec![".php".to_owned()])
    }
}

/// Per-cluster CGI settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgiConfig {
    /// The application's document root as the application sees it (`DOCUMENT_ROOT`; prefix of
    /// `SCRIPT_FILENAME` and `PATH_TRANSLATED`).
    pub document_root: String,
    /// File name appended to paths that end in `/` (`index.php`); `None` appends nothing.
    pub index: Option<String>,
    /// How to find the script in the path.
    pub script_mapping: ScriptMapping,
    /// `SERVER_SOFTWARE`.
    pub server_software: String,
    /// Extra parameters from the operator. One whose name Director computes too replaces the
    /// computed value (a name is never sent twice), and no request header can override it.
    pub extra_params: Vec<(String, String)>,
    /// Pass request headers whose names contain `_` (nginx's `underscores_in_headers`). Off by
    /// default: `X_Forwarded_For` and `X-Forwarded-For` both become `HTTP_X_FORWARDED_FOR`, so a
    /// client could send a twin of a header the proxy vouches for. When on, the dashed spelling
    /// wins and its underscore twins are dropped.
    pub underscores_in_headers: bool,
}

impl Default for CgiConfig {
    fn default() -> Self {
        Self {
            document_root: "/var/www".to_owned(),
            index: Some("index.php".to_owned()),
            script_mapping: ScriptMapping::default(),
            server_software: concat!("director/", env!("CARGO_PKG_VERSION")).to_owned(),
            extra_params: Vec::new(),
            underscores_in_headers: false,
        }
    }
}

/// The CGI variables for one request, in the order they are sent.
pub type Params = Vec<(String, Bytes)>;

/// Why a request cannot be turned into CGI variables. Each is the client's fault (400).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RefusedRequest {
    /// The percent-decoded path holds a NUL or another control byte (`/vars.php%00.css`): it
    /// would end up in `SCRIPT_FILENAME`, where C code stops at the NUL.
    #[error("the decoded request path contains a control byte")]
    ControlByteInPath,
}

/// `HTTP_*` names Director never passes from a header: `Proxy` would become `HTTP_PROXY`
/// (httpoxy), and `Content-Length`/`Content-Type` are sent as `CONTENT_LENGTH`/`CONTENT_TYPE`
/// only when Director knows there is a body.
const RESERVED_HTTP_VARS: &[&str] = &["HTTP_PROXY", "HTTP_CONTENT_LENGTH", "HTTP_CONTENT_TYPE"];

/// Builds the CGI/1.1 variables for a request head.
///
/// `content_length` is the request body's length (from `Content-Length`, an exact body size
/// hint, or the spooled body); `CONTENT_LENGTH` and `CONTENT_TYPE` are only sent when there is
/// a body.
///
/// Every name is sent once. Director's own variables come first; an operator's
/// [`CgiConfig::extra_params`] entry of the same name replaces one. Request headers become
/// `HTTP_*` only when their name is plain (letters, digits, `-`, and `_` if
/// [`CgiConfig::underscores_in_headers`]) and maps to a name nothing else has taken, so no
/// header can stand in for a variable Director or the operator set.
pub fn build_params(
    head: &request::Parts,
    content_length: Option<u64>,
    config: &CgiConfig,
) -> Result<Params, RefusedRequest> {
    let default_ctx = CgiContext::default();
    let ctx = head.extensions.get::<CgiContext>().unwrap_or(&default_ctx);
    let mut p: Params = Vec::with_capacity(32 + head.headers.len());
    let mut push = |name: &str, value: Bytes| p.push((name.to_owned(), value));

    let decoded = percent_decode(head.uri.path().as_bytes());
    // The raw URI cannot hold control bytes (the parser refuses them); only escapes can.
    if decoded.iter().any(|b| b.is_ascii_control()) {
        return Err(RefusedRequest::ControlByteInPath);
    }
    let path = normalize_path(&decoded);
    let (script_name, path_info) = split_script(&path, config);
    let root = config.document_root.trim_end_matches('/');
    let mut script_filename = root.as_bytes().to_vec();
    script_filename.extend_from_slice(&script_name);

    push("GATEWAY_INTERFACE", Bytes::from_static(b"CGI/1.1"));
    push(
        "SERVER_SOFTWARE",
        Bytes::from(config.server_software.clone()),
    );
    push(
        "SERVER_PROTOCOL",
        Bytes::from_static(protocol(head.version)),
    );
    push(
        "REQUEST_METHOD",
        Bytes::from(head.method.as_str().to_owned()),
    );
    let request_uri = head
        .uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    push("REQUEST_URI", Bytes::from(request_uri));
    push(
        "QUERY_STRING",
        Bytes::from(head.uri.query().unwrap_or("").to_owned()),
    );
    push("DOCUMENT_ROOT", Bytes::from(root.to_owned()));
    push("SCRIPT_NAME", Bytes::from(script_name));
    push("SCRIPT_FILENAME", Bytes::from(script_filename));
    if !path_info.is_empty() {
        let mut translated = root.as_bytes().to_vec();
        translated.extend_from_slice(&path_info);
        push("PATH_TRANSLATED", Bytes::from(translated));
    }
    push("PATH_INFO", Bytes::from(path_info));

    let (host_name, host_port) = host_parts(head);
    let server_name = host_name
        .or_else(|| ctx.server_addr.map(|a| a.ip().to_string()))
        .unwrap_or_else(|| "localhost".to_owned());
    push("SERVER_NAME", Bytes::from(server_name));
    let default_port = if ctx.https { 443 } else { 80 };
    let server_port = ctx
        .server_addr
        .map(|a| a.port())
        .or(host_port)
        .unwrap_or(default_port);
    push("SERVER_PORT", Bytes::from(server_port.to_string()));
    if let Some(addr) = ctx.server_addr {
        push("SERVER_ADDR", Bytes::from(addr.ip().to_string()));
    }
    if let Some(addr) = ctx.remote_addr {
        push("REMOTE_ADDR", Bytes::from(addr.ip().to_string()));
        push("REMOTE_PORT", Bytes::from(addr.port().to_string()));
    }
    if let Some(user) = &ctx.remote_user {
        push("REMOTE_USER", Bytes::from(user.clone()));
    }
    if ctx.https {
        push("HTTPS", Bytes::from_static(b"on"));
    }
    push(
        "REQUEST_SCHEME",
        Bytes::from_static(if ctx.https { b"https" } else { b"http" }),
    );
    // PHP builds with cgi.force_redirect refuse to run without it.
    push("REDIRECT_STATUS", Bytes::from_static(b"200"));

    // A body of unknown length was spooled by the caller and has one now.
    if content_length.is_some_and(|n| n > 0) {
        if let Some(ct) = head.headers.get(header::CONTENT_TYPE) {
            push("CONTENT_TYPE", Bytes::copy_from_slice(ct.as_bytes()));
        }
        if let Some(len) = content_length {
            push("CONTENT_LENGTH", Bytes::from(len.to_string()));
        }
    }

    // The operator's parameters replace Director's of the same name rather than follow them:
    // which of two copies an application keeps is up to the application.
    for (name, value) in &config.extra_params {
        let value = Bytes::from(value.clone());
        match p.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => p.push((name.clone(), value)),
        }
    }

    // Headers last, each checked against the names taken so far. Without underscores the
    // mapping from valid names to `HTTP_*` is one-to-one, so only the operator's `HTTP_*`
    // parameters and the reserved names can collide; with them, dashed names go first so an
    // underscore twin finds its name taken.
    let passes: &[bool] = if config.underscores_in_headers {
        &[false, true]
    } else {
        &[false]
    };
    let operator_http = config
        .extra_params
        .iter()
        .any(|(n, _)| n.starts_with("HTTP_"));
    let first_header = p.len();
    for &underscored in passes {
        for name in head.headers.keys() {
            let name_str = name.as_str();
            if name_str.contains('_') != underscored {
                continue;
            }
            let Some(var) = header_var_name(name_str, config.underscores_in_headers) else {
                continue;
            };
            if RESERVED_HTTP_VARS.contains(&var.as_str()) {
                continue;
            }
            let taken = if operator_http {
                p.iter().any(|(n, _)| *n == var)
            } else {
                config.underscores_in_headers && p[first_header..].iter().any(|(n, _)| *n == var)
            };
            if taken {
                continue;
            }
            let sep: &[u8] = if name == header::COOKIE { b"; " } else { b", " };
            let mut value = Vec::new();
            for (i, v) in head.headers.get_all(name).iter().enumerate() {
                if i > 0 {
                    value.extend_from_slice(sep);
                }
                value.extend_from_slice(v.as_bytes());
            }
            p.push((var, Bytes::from(value)));
        }
    }
    Ok(p)
}

/// The `HTTP_*` variable for a request header, or `None` when the header is not passed: names
/// are passed only when made of ASCII letters, digits and `-` (and `_` when `underscores`), as
/// nginx's `ignore_invalid_headers` does, because any other character (`.`, `_`, `~`…) also
/// maps to `_` and would let a client send a twin of a header a proxy vouches for.
pub fn header_var_name(header: &str, underscores: bool) -> Option<String> {
    let plain = !header.is_empty()
        && header
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || (underscores && b == b'_'));
    plain.then(|| http_var_name(header))
}

fn protocol(version: Version) -> &'static [u8] {
    match version {
        Version::HTTP_09 => b"HTTP/0.9",
        Version::HTTP_10 => b"HTTP/1.0",
        Version::HTTP_2 => b"HTTP/2.0",
        Version::HTTP_3 => b"HTTP/3.0",
        _ => b"HTTP/1.1",
    }
}

/// `HTTP_` + the header name upper-cased, every non-alphanumeric character turned into `_`.
pub fn http_var_name(header: &str) -> String {
    let mut s = String::with_capacity(5 + header.len());
    s.push_str("HTTP_");
    s.extend(header.chars().map(|c| {
        if c.is_ascii_alphanumeric() {
            c.to_ascii_uppercase()
        } else {
            '_'
        }
    }));
    s
}

/// Host name and port from the `Host` header, or else from an absolute-form URI.
fn host_parts(head: &request::Parts) -> (Option<String>, Option<u16>) {
    if let Some(auth) = head
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<http::uri::Authority>().ok())
    {
        return (Some(auth.host().to_owned()), auth.port_u16());
    }
    (head.uri.host().map(str::to_owned), head.uri.port_u16())
}

/// Decodes `%XX` escapes; malformed escapes are kept literally.
pub fn percent_decode(input: &[u8]) -> Vec<u8> {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%'
            && i + 2 < input.len()
            && let (Some(h), Some(l)) = (hex(input[i + 1]), hex(input[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(input[i]);
        i += 1;
    }
    out
}

/// Resolves `.` and `..` segments and collapses repeated slashes, so a decoded path can never
/// climb out of the document root. The result starts with `/`; a trailing slash is kept.
pub fn normalize_path(path: &[u8]) -> Vec<u8> {
    let mut segments: Vec<&[u8]> = Vec::new();
    let mut trailing_slash = path.is_empty() || path.ends_with(b"/");
    for seg in path.split(|b| *b == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    if let Some(last) = path.rsplit(|b| *b == b'/').next()
        && (last == b"." || last == b"..")
    {
        trailing_slash = true;
    }
    let mut out = Vec::with_capacity(path.len() + 1);
    for s in &segments {
        out.push(b'/');
        out.extend_from_slice(s);
    }
    if trailing_slash || segments.is_empty() {
        out.push(b'/');
    }
    out
}

/// Splits a normalized path into `(SCRIPT_NAME, PATH_INFO)` by the configured mapping.
pub fn split_script(path: &[u8], config: &CgiConfig) -> (Vec<u8>, Vec<u8>) {
    match &config.script_mapping {
        ScriptMapping::FrontController(script) => (script.as_bytes().to_vec(), path.to_vec()),
        ScriptMapping::Extension(exts) => {
            // Candidate ends: every segment boundary, and the end of the path.
            let ends = path
                .iter()
                .enumerate()
                .filter(|(i, b)| **b == b'/' && *i > 0)
                .map(|(i, _)| i)
                .chain(std::iter::once(path.len()));
            for end in ends {
                let candidate = &path[..end];
                if exts
                    .iter()
                    .any(|ext| !ext.is_empty() && candidate.ends_with(ext.as_bytes()))
                {
                    return (candidate.to_vec(), path[end..].to_vec());
                }
            }
            let mut script = path.to_vec();
            if path.ends_with(b"/")
                && let Some(index) = &config.index
            {
                script.extend_from_slice(index.as_bytes());
            }
            (script, Vec::new())
        }
    }
}

/// The response head an application sent at the start of `STDOUT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgiResponseHead {
    /// The status (from `Status:`, else 302 for a redirect, else 200).
    pub status: StatusCode,
    /// The headers, without `Status` and without hop-by-hop headers.
    pub headers: HeaderMap,
    /// Set when the application asked for a CGI local redirect (see [`LocalRedirect`]).
    pub local_redirect: Option<LocalRedirect>,
}

/// A CGI *local redirect* (RFC 3875 §6.2.2): `Location: /path` without a `Status:`.
///
/// A generic client cannot re-dispatch a request inside the server, so the response goes out as
/// a `302 Found` with the `Location` header (what browsers follow anyway), and this value is
/// attached to the response's extensions so an embedding server may re-dispatch instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalRedirect(pub String);

/// Why a CGI header block was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// The block grew past the configured maximum without ending.
    #[error("CGI header block larger than {0} bytes")]
    TooLarge(usize),
    /// The lines were not valid header syntax.
    #[error("malformed CGI header block: {0}")]
    Malformed(httparse::Error),
    /// `Status:` did not start with a three-digit code.
    #[error("invalid CGI Status header")]
    BadStatus,
    /// `Content-Length` was not one decimal number.
    #[error("invalid Content-Length in the CGI header block")]
    BadContentLength,
}

/// Most header lines a CGI response may carry.
const MAX_HEADERS: usize = 128;

/// Headers that describe one connection and never cross a proxy.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
];

/// Parses the CGI header block at the start of `buf`.
///
/// Returns `Ok(None)` while the blank line that ends the block has not arrived (and the block is
/// still within `max_size`), else the head and the number of bytes it occupied.
pub fn parse_response_head(
    buf: &[u8],
    max_size: usize,
) -> Result<Option<(CgiResponseHead, usize)>, HeadError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let (consumed, lines) = match httparse::parse_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete((consumed, lines))) => (consumed, lines),
        Ok(httparse::Status::Partial) => {
            return if buf.len() > max_size {
                Err(HeadError::TooLarge(max_size))
            } else {
                Ok(None)
            };
        }
        Err(e) => return Err(HeadError::Malformed(e)),
    };
    if consumed > max_size {
        return Err(HeadError::TooLarge(max_size));
    }

    let mut status = None;
    let mut location = None;
    let mut headers = HeaderMap::with_capacity(lines.len());
    for line in lines.iter() {
        if line.name.eq_ignore_ascii_case("status") {
            status = Some(parse_status(line.value)?);
            continue;
        }
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(line.name.as_bytes()),
            HeaderValue::from_bytes(line.value),
        ) else {
            tracing::warn!(
                name = line.name,
                "fastcgi: dropping invalid response header"
            );
            continue;
        };
        if HOP_BY_HOP.contains(&name.as_str()) {
            continue;
        }
        if name == header::LOCATION {
            location = Some(value.clone());
        }
        headers.append(name, value);
    }

    // Quirk 26 fixed: an explicit Status always wins; Location only implies 302 without one.
    let mut local_redirect = None;
    let status = match (status, location) {
        (Some(s), _) => s,
        (None, Some(loc)) => {
            let loc = String::from_utf8_lossy(loc.as_bytes()).into_owned();
            if loc.starts_with('/') && !loc.starts_with("//") {
                local_redirect = Some(LocalRedirect(loc));
            }
            StatusCode::FOUND
        }
        (None, None) => StatusCode::OK,
    };
    Ok(Some((
        CgiResponseHead {
            status,
            headers,
            local_redirect,
        },
        consumed,
    )))
}

/// Where a response body ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// The response has no body (a reply to HEAD; 1xx, 204, 304): whatever the application
    /// writes is dropped, and `END_REQUEST` ends it.
    Empty,
    /// The application said `Content-Length`: the body is that many bytes, and `END_REQUEST`
    /// follows them.
    Length(u64),
    /// The body ends at `END_REQUEST`.
    UntilEnd,
}

/// How the body of a response with this head ends (RFC 9112 section 6.3, with `END_REQUEST`
/// in place of the connection's close). A `Content-Length` that is not one decimal number (a
/// list of the same number counts as one) is refused: the embedder would pass it on.
pub fn response_framing(is_head: bool, head: &CgiResponseHead) -> Result<Framing, HeadError> {
    let status = head.status;
    if is_head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(Framing::Empty);
    }
    let mut length = None;
    for value in head.headers.get_all(header::CONTENT_LENGTH) {
        for item in value.as_bytes().split(|b| *b == b',') {
            let item = item.trim_ascii();
            let n = (!item.is_empty() && item.len() <= 19 && item.iter().all(u8::is_ascii_digit))
                .then(|| std::str::from_utf8(item).ok()?.parse::<u64>().ok())
                .flatten()
                .ok_or(HeadError::BadContentLength)?;
            if length.is_some_and(|l| l != n) {
                return Err(HeadError::BadContentLength);
            }
            length = Some(n);
        }
    }
    Ok(length.map_or(Framing::UntilEnd, Framing::Length))
}

fn parse_status(value: &[u8]) -> Result<StatusCode, HeadError> {
    let value = value.trim_ascii();
    let code = value
        .split(|b| *b == b' ')
        .next()
        .filter(|c| c.len() == 3)
        .ok_or(HeadError::BadStatus)?;
    StatusCode::from_bytes(code).map_err(|_| HeadError::BadStatus)
}
