//! Request path normalisation: the one spelling of a path that routes match and backends receive.
//!
//! A backend that decodes and resolves paths itself (php-fpm's `SCRIPT_FILENAME`, a file
//! server) sees `/%69nc/x`, `//inc/x` and `/lib/../inc/x` as `/inc/x`; a route matching the raw
//! path does not. So [`crate::forward::Forward`] rewrites the path once, before routing, with
//! [`normalize_path`]:
//!
//! 1. percent-encoded unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded, and the hex of
//!    every other percent-encoding is uppercased (RFC 3986 §2.3, §6.2.2.1);
//! 2. repeated slashes are merged (as nginx's `merge_slashes`);
//! 3. dot segments are removed (RFC 3986 §5.2.4), after decoding, so `%2e%2e` counts.
//!
//! Refused ([`PathError`], 400): an encoded `/` (`%2F`, which a backend would decode into a
//! separator no route saw), an encoded NUL, any control byte (raw or encoded: they end up in
//! FastCGI params, file names and logs), a malformed percent-encoding, and a path that climbs
//! above the root (`/../x`; nginx answers 400 too). The result is idempotent: a normalised path
//! normalises to itself.

use std::{borrow::Cow, fmt};

/// Why a path was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    /// The path does not start with `/`.
    NotAbsolute,
    /// `%2F`: an encoded slash.
    EncodedSlash,
    /// `%00`: an encoded NUL.
    EncodedNul,
    /// A control byte (0x00-0x1F, 0x7F), raw or percent-encoded.
    ControlByte,
    /// A `%` not followed by two hex digits.
    BadPercentEncoding,
    /// `..` segments climb above the root.
    AboveRoot,
}

impl PathError {
    /// A short explanation for the client (a static string: no client bytes echoed).
    pub fn describe(self) -> &'static str {
        match self {
            PathError::NotAbsolute => "the request path must start with '/'",
            PathError::EncodedSlash => "an encoded '/' (%2F) in the request path is refused",
            PathError::EncodedNul => "an encoded NUL (%00) in the request path is refused",
            PathError::ControlByte => "a control character in the request path is refused",
            PathError::BadPercentEncoding => "a malformed percent-encoding in the request path",
            PathError::AboveRoot => "the request path climbs above the root",
        }
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

impl std::error::Error for PathError {}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn is_control(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Whether `path` is already normal: simple whole-slice scans the compiler vectorises, so that
/// the common request allocates nothing and pays a few nanoseconds.
fn is_normal(path: &[u8]) -> Result<bool, PathError> {
    if path.iter().any(|&b| is_control(b)) {
        return Err(PathError::ControlByte);
    }
    if path.contains(&b'%') {
        return Ok(false);
    }
    // Empty and dot segments begin with "//" or "/."; a "/." may start a name (`/.well-known`).
    let mut normal = true;
    for (i, pair) in path.windows(2).enumerate() {
        if pair[0] == b'/' && (pair[1] == b'/' || pair[1] == b'.') {
            let rest = &path[i + 1..];
            let segment = rest.split(|&b| b == b'/').next().unwrap_or(rest);
            if segment.is_empty() || segment == b"." || segment == b".." {
                normal = false;
                break;
            }
        }
    }
    Ok(normal)
}

/// The normal form of an origin-form `path` (without its query), or why it is refused.
///
/// Borrows `path` when it is already normal.
pub fn normalize_path(path: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    if is_normal(bytes)? {
        return Ok(Cow::Borrowed(path));
    }

    // Step 1: percent-encodings, into `decoded` (still '/'-separated: no '/' is ever decoded).
    let mut decoded = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'%' {
            // Multi-byte UTF-8 passes through whole: copy up to the next '%'.
            let end = bytes[i..]
                .iter()
                .position(|&c| c == b'%')
                .map_or(bytes.len(), |p| i + p);
            decoded.push_str(&path[i..end]);
            i = end;
            continue;
        }
        let (Some(hi), Some(lo)) = (
            bytes.get(i + 1).copied().and_then(hex_value),
            bytes.get(i + 2).copied().and_then(hex_value),
        ) else {
            return Err(PathError::BadPercentEncoding);
        };
        let value = hi << 4 | lo;
        match value {
            0 => return Err(PathError::EncodedNul),
            b'/' => return Err(PathError::EncodedSlash),
            v if is_control(v) => return Err(PathError::ControlByte),
            v if is_unreserved(v) => decoded.push(char::from(v)),
            _ => {
                decoded.push('%');
                decoded.push(char::from(bytes[i + 1].to_ascii_uppercase()));
                decoded.push(char::from(bytes[i + 2].to_ascii_uppercase()));
            }
        }
        i += 3;
    }

    // Steps 2 and 3: empty segments (repeated slashes) and dot segments.
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for segment in decoded[1..].split('/') {
        // A path ending in an empty, `.` or `..` segment names a directory: keep its slash.
        trailing_slash = matches!(segment, "" | "." | "..");
        match segment {
            "" | "." => {}
            ".." => {
                if segments.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    if trailing_slash || segments.is_empty() {
        out.push('/');
    }
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests;
