//! What a file request gets, decided from its conditional and range fields alone (pure).
//!
//! The order is RFC 9110 §13.2.2: `If-Match` (else `If-Unmodified-Since`) can fail with 412;
//! `If-None-Match` (else `If-Modified-Since`) gives 304; then, for GET only, `Range` (guarded by
//! `If-Range`) gives 206 or 416. A `Range` that does not parse is ignored (200), as the RFC
//! allows; overlapping or too many ranges are refused with 416, as it also allows.

use std::{ops::RangeInclusive, time::SystemTime};

use http::{HeaderMap, HeaderValue, Method, header};

/// The request fields that decide how a file is answered, kept from the request while the
/// backend runs.
#[derive(Clone, Debug, Default)]
pub struct RequestHead {
    /// GET, HEAD or another method.
    pub method: Method,
    /// `Range`.
    pub range: Option<HeaderValue>,
    /// `If-Range`.
    pub if_range: Option<HeaderValue>,
    /// `If-Match`.
    pub if_match: Option<HeaderValue>,
    /// `If-None-Match`.
    pub if_none_match: Option<HeaderValue>,
    /// `If-Modified-Since`.
    pub if_modified_since: Option<HeaderValue>,
    /// `If-Unmodified-Since`.
    pub if_unmodified_since: Option<HeaderValue>,
}

impl RequestHead {
    /// The fields of a request with `method` and `headers`.
    pub fn new(method: &Method, headers: &HeaderMap) -> Self {
        let get = |name| headers.get(name).cloned();
        RequestHead {
            method: method.clone(),
            range: get(header::RANGE),
            if_range: get(header::IF_RANGE),
            if_match: get(header::IF_MATCH),
            if_none_match: get(header::IF_NONE_MATCH),
            if_modified_since: get(header::IF_MODIFIED_SINCE),
            if_unmodified_since: get(header::IF_UNMODIFIED_SINCE),
        }
    }
}

/// A file's validators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validators {
    /// Its length in bytes.
    pub len: u64,
    /// Its modification time, truncated to whole seconds (HTTP dates have no more).
    pub modified: SystemTime,
    /// Its strong entity tag, quotes included.
    pub etag: String,
}

impl Validators {
    /// Validators of a file of `len` bytes modified at `mtime`: the tag is built from the
    /// modification time (to the nanosecond) and the length, as nginx does.
    pub fn new(len: u64, mtime: SystemTime) -> Self {
        let since = mtime
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        Validators {
            len,
            modified: SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(since.as_secs()),
            etag: format!(
                "\"{:x}.{:x}-{:x}\"",
                since.as_secs(),
                since.subsec_nanos(),
                len
            ),
        }
    }
}

/// How to answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// 200 with the whole file.
    Full,
    /// 206 with these ranges (one: a plain 206; several: multipart/byteranges).
    Partial(Vec<RangeInclusive<u64>>),
    /// 304 Not Modified.
    NotModified,
    /// 412 Precondition Failed.
    PreconditionFailed,
    /// 416 Range Not Satisfiable.
    Unsatisfiable,
}

/// Decides the answer for `head` over a file with validators `v`.
pub fn plan(head: &RequestHead, v: &Validators) -> Plan {
    let date = |value: &Option<HeaderValue>| {
        value
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .and_then(|s| httpdate::parse_http_date(s.trim()).ok())
    };
    if let Some(if_match) = &head.if_match {
        if !tags_match(if_match, &v.etag, true) {
            return Plan::PreconditionFailed;
        }
    } else if let Some(since) = date(&head.if_unmodified_since)
        && v.modified > since
    {
        return Plan::PreconditionFailed;
    }
    let get_or_head = head.method == Method::GET || head.method == Method::HEAD;
    if let Some(if_none_match) = &head.if_none_match {
        if tags_match(if_none_match, &v.etag, false) {
            return if get_or_head {
                Plan::NotModified
            } else {
                Plan::PreconditionFailed
            };
        }
    } else if get_or_head
        && let Some(since) = date(&head.if_modified_since)
        && v.modified <= since
    {
        return Plan::NotModified;
    }
    if head.method != Method::GET {
        return Plan::Full;
    }
    let Some(range) = head.range.as_ref().and_then(|r| r.to_str().ok()) else {
        return Plan::Full;
    };
    if let Some(if_range) = &head.if_range {
        let current = match if_range.to_str().map(str::trim) {
            // An entity tag: strong comparison; a weak tag never matches.
            Ok(tag) if tag.starts_with('"') => tag == v.etag,
            Ok(tag) if tag.starts_with("W/") => false,
            // A date: the exact Last-Modified.
            Ok(d) => httpdate::parse_http_date(d).is_ok_and(|d| d == v.modified),
            Err(_) => false,
        };
        if !current {
            return Plan::Full;
        }
    }
    match http_range_header::parse_range_header(range).map(|p| p.validate(v.len)) {
        Ok(Ok(ranges)) if ranges.is_empty() => Plan::Full,
        Ok(Ok(ranges)) => Plan::Partial(ranges),
        Ok(Err(_)) => Plan::Unsatisfiable,
        Err(http_range_header::RangeUnsatisfiableError::Invalid(_)) => Plan::Full,
        Err(_) => Plan::Unsatisfiable,
    }
}

/// Whether a list of entity tags (`*`, `"a", W/"b"`) names `etag`; strong comparison ignores
/// weak tags.
pub fn tags_match(list: &HeaderValue, etag: &str, strong: bool) -> bool {
    let Ok(list) = list.to_str() else {
        return false;
    };
    if list.trim() == "*" {
        return true;
    }
    let ours = etag.trim_start_matches("W/");
    let mut rest = list;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return false;
        }
        let weak = rest.starts_with("W/");
        let tag_start = if weak { &rest[2..] } else { rest };
        // An opaque tag is a quoted string without inner quotes, so the next quote ends it.
        let Some(body) = tag_start.strip_prefix('"') else {
            return false;
        };
        let Some(end) = body.find('"') else {
            return false;
        };
        let tag = &tag_start[..end + 2];
        if tag == ours && !(strong && weak) {
            return true;
        }
        rest = &body[end + 1..];
    }
}
