//! Client conditional requests answered from the cache (RFC 9110 §13.2.2).
//!
//! The order of evaluation is the RFC's: `If-Match`, then `If-Unmodified-Since` (only without
//! `If-Match`), then `If-None-Match`, then `If-Modified-Since` (only without `If-None-Match`).
//! `If-None-Match` uses the weak comparison and understands lists and `*`, unlike x0's exact
//! string match.

use std::time::SystemTime;

use http::HeaderMap;
use http::header::{IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_UNMODIFIED_SINCE};
use http::{HeaderValue, StatusCode};

/// A client's preconditions, kept apart from the request because the request itself may be
/// rewritten (conditionals stripped) before it goes upstream.
#[derive(Clone, Debug, Default)]
pub(crate) struct Preconditions {
    if_match: Option<HeaderValue>,
    if_none_match: Option<HeaderValue>,
    if_modified_since: Option<SystemTime>,
    if_unmodified_since: Option<SystemTime>,
}

fn date(headers: &HeaderMap, name: http::header::HeaderName) -> Option<SystemTime> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| httpdate::parse_http_date(s).ok())
}

/// The opaque part of an entity tag, and whether it is weak.
fn opaque(tag: &str) -> (bool, &str) {
    match tag.strip_prefix("W/") {
        Some(rest) => (true, rest),
        None => (false, tag),
    }
}

/// Whether `list` (`*` or comma-separated tags) contains a tag equal to `etag`.
fn list_matches(list: &HeaderValue, etag: Option<&HeaderValue>, strong: bool) -> bool {
    let Ok(list) = list.to_str() else {
        return false;
    };
    if list.trim() == "*" {
        return etag.is_some();
    }
    let Some(etag) = etag.and_then(|e| e.to_str().ok()) else {
        return false;
    };
    let (weak, ours) = opaque(etag.trim());
    if strong && weak {
        return false;
    }
    list.split(',').map(str::trim).any(|candidate| {
        let (cweak, theirs) = opaque(candidate);
        theirs == ours && !(strong && cweak)
    })
}

impl Preconditions {
    /// Reads the client's preconditions.
    pub(crate) fn of(headers: &HeaderMap) -> Self {
        Self {
            if_match: headers.get(IF_MATCH).cloned(),
            if_none_match: headers.get(IF_NONE_MATCH).cloned(),
            if_modified_since: date(headers, IF_MODIFIED_SINCE),
            if_unmodified_since: date(headers, IF_UNMODIFIED_SINCE),
        }
    }

    /// Whether there is any precondition at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.if_match.is_none()
            && self.if_none_match.is_none()
            && self.if_modified_since.is_none()
            && self.if_unmodified_since.is_none()
    }

    /// The status to answer instead of the stored one (304 or 412), if any, for a stored
    /// response with `etag` and `last_modified`. Only GET and HEAD are asked.
    pub(crate) fn evaluate(
        &self,
        etag: Option<&HeaderValue>,
        last_modified: Option<SystemTime>,
    ) -> Option<StatusCode> {
        if let Some(im) = &self.if_match {
            if !list_matches(im, etag, true) {
                return Some(StatusCode::PRECONDITION_FAILED);
            }
        } else if let (Some(ius), Some(lm)) = (self.if_unmodified_since, last_modified)
            && lm > ius
        {
            return Some(StatusCode::PRECONDITION_FAILED);
        }
        if let Some(inm) = &self.if_none_match {
            if list_matches(inm, etag, false) {
                return Some(StatusCode::NOT_MODIFIED);
            }
        } else if let (Some(ims), Some(lm)) = (self.if_modified_since, last_modified)
            && lm <= ims
        {
            return Some(StatusCode::NOT_MODIFIED);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    fn pre(pairs: &[(http::header::HeaderName, &str)]) -> Preconditions {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.insert(n.clone(), v.parse().unwrap());
        }
        Preconditions::of(&h)
    }

    fn tag(s: &str) -> HeaderValue {
        s.parse().unwrap()
    }

    #[test]
    fn if_none_match_weak_lists_and_star() {
        let etag = tag("\"v1\"");
        let weak = tag("W/\"v1\"");
        let nm = StatusCode::NOT_MODIFIED;
        assert_eq!(
            pre(&[(IF_NONE_MATCH, "\"v1\"")]).evaluate(Some(&etag), None),
            Some(nm)
        );
        assert_eq!(
            pre(&[(IF_NONE_MATCH, "\"x\", W/\"v1\"")]).evaluate(Some(&etag), None),
            Some(nm)
        );
        assert_eq!(
            pre(&[(IF_NONE_MATCH, "\"v1\"")]).evaluate(Some(&weak), None),
            Some(nm)
        );
        assert_eq!(
            pre(&[(IF_NONE_MATCH, "*")]).evaluate(Some(&etag), None),
            Some(nm)
        );
        assert_eq!(
            pre(&[(IF_NONE_MATCH, "\"v2\"")]).evaluate(Some(&etag), None),
            None
        );
        assert_eq!(pre(&[(IF_NONE_MATCH, "\"v1\"")]).evaluate(None, None), None);
    }

    #[test]
    fn if_modified_since_ignored_when_if_none_match_present() {
        let lm = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let ims = httpdate::fmt_http_date(lm);
        let p = pre(&[(IF_MODIFIED_SINCE, &ims)]);
        assert_eq!(p.evaluate(None, Some(lm)), Some(StatusCode::NOT_MODIFIED));
        assert_eq!(p.evaluate(None, Some(lm + Duration::from_secs(1))), None);
        let p = pre(&[(IF_MODIFIED_SINCE, &ims), (IF_NONE_MATCH, "\"other\"")]);
        assert_eq!(p.evaluate(Some(&tag("\"v\"")), Some(lm)), None);
    }

    #[test]
    fn if_match_is_strong_and_failures_are_412() {
        let etag = tag("\"v1\"");
        let pf = Some(StatusCode::PRECONDITION_FAILED);
        assert_eq!(
            pre(&[(IF_MATCH, "\"v1\"")]).evaluate(Some(&etag), None),
            None
        );
        assert_eq!(
            pre(&[(IF_MATCH, "W/\"v1\"")]).evaluate(Some(&etag), None),
            pf
        );
        assert_eq!(pre(&[(IF_MATCH, "\"v2\"")]).evaluate(Some(&etag), None), pf);
        let lm = SystemTime::UNIX_EPOCH + Duration::from_secs(5_000);
        let ius = httpdate::fmt_http_date(lm - Duration::from_secs(1));
        assert_eq!(
            pre(&[(IF_UNMODIFIED_SINCE, &ius)]).evaluate(None, Some(lm)),
            pf
        );
        assert!(pre(&[]).is_empty());
    }

    proptest! {
        /// A client that sends back the stored tag always gets 304; any other strong tag never.
        #[test]
        fn own_tag_always_not_modified(a in "[a-z0-9]{1,8}", b in "[a-z0-9]{1,8}", weak: bool) {
            let stored = tag(&format!("{}\"{a}\"", if weak { "W/" } else { "" }));
            let p = pre(&[(IF_NONE_MATCH, &format!("\"{b}\""))]);
            let expect = (a == b).then_some(StatusCode::NOT_MODIFIED);
            prop_assert_eq!(p.evaluate(Some(&stored), None), expect);
        }
    }
}
