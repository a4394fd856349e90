//! Cache keys: x0's pattern language (`%s`, `%h`, `%r`, `%q`, `%%`) and the primary-key hash.
//!
//! The key names a resource, not a representation: the method is not part of it (HEAD is
//! answered from GET's object) and `Vary` variants live under one key (see `vary`). The
//! rendered key is what `PURGE` and bans match on; the store is indexed by its xxh3-128 hash,
//! which is stable across processes.

use std::fmt;

use http::Request;
use http::header::HOST;

/// The default pattern, x0's `%h#%r#%q`: host, path and query.
pub const DEFAULT_PATTERN: &str = "%h#%r#%q";

/// A parsed key pattern.
///
/// Placeholders: `%s` scheme (`http` unless the request URI says otherwise), `%h` the `Host`
/// header (or the URI authority), `%r` the path without the query, `%q` the query string, `%%` a
/// literal `%`. Any other `%x` and a trailing lone `%` are copied unchanged, as in x0.
///
/// A request may carry its own pattern as a request extension (`KeyPattern` itself).
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPattern {
    source: String,
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    Scheme,
    Host,
    Path,
    Query,
}

// === impl KeyPattern ===

impl KeyPattern {
    /// Parses a pattern. Every string is a valid pattern.
    pub fn new(pattern: &str) -> Self {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                lit.push(c);
                continue;
            }
            let part = match chars.next() {
                Some('s') => Part::Scheme,
                Some('h') => Part::Host,
                Some('r') => Part::Path,
                Some('q') => Part::Query,
                Some('%') => {
                    lit.push('%');
                    continue;
                }
                Some(other) => {
                    lit.push('%');
                    lit.push(other);
                    continue;
                }
                None => {
                    lit.push('%');
                    continue;
                }
            };
            if !lit.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut lit)));
            }
            parts.push(part);
        }
        if !lit.is_empty() {
            parts.push(Part::Literal(lit));
        }
        Self {
            source: pattern.to_owned(),
            parts,
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Renders the key of a request.
    pub fn render<B>(&self, req: &Request<B>) -> String {
        let uri = req.uri();
        let mut out = String::with_capacity(64);
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Scheme => out.push_str(uri.scheme_str().unwrap_or("http")),
                Part::Host => {
                    let host = req
                        .headers()
                        .get(HOST)
                        .and_then(|h| h.to_str().ok())
                        .or_else(|| uri.authority().map(|a| a.as_str()))
                        .unwrap_or("");
                    out.push_str(host);
                }
                Part::Path => out.push_str(uri.path()),
                Part::Query => out.push_str(uri.query().unwrap_or("")),
            }
        }
        out
    }
}

impl Default for KeyPattern {
    fn default() -> Self {
        Self::new(DEFAULT_PATTERN)
    }
}

impl fmt::Debug for KeyPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("KeyPattern").field(&self.source).finish()
    }
}

/// The stable 128-bit hash the store is indexed by.
pub(crate) fn hash_key(key: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(key.as_bytes())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn req(uri: &str, host: Option<&str>) -> Request<()> {
        let mut b = Request::builder().uri(uri);
        if let Some(h) = host {
            b = b.header(HOST, h);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn default_pattern_is_host_path_query() {
        let k = KeyPattern::default();
        assert_eq!(
            k.render(&req("/a/b?x=1", Some("example.com"))),
            "example.com#/a/b#x=1"
        );
        assert_eq!(k.render(&req("/a", Some("h"))), "h#/a#");
        assert_eq!(k.render(&req("http://auth:81/p?q", None)), "auth:81#/p#q");
    }

    #[test]
    fn escapes_and_unknown_placeholders() {
        let k = KeyPattern::new("%s|%%|%x|%h%");
        assert_eq!(k.render(&req("https://h/p", None)), "https|%|%x|h%");
        assert_eq!(k.as_str(), "%s|%%|%x|%h%");
    }

    proptest! {
        /// A pattern without `%` renders to itself, whatever the request.
        #[test]
        fn literal_patterns_render_verbatim(p in "[a-zA-Z0-9#/:._-]{0,40}", path in "/[a-z]{0,10}") {
            let k = KeyPattern::new(&p);
            prop_assert_eq!(k.render(&req(&path, Some("host"))), p);
        }

        /// `%%` always renders as one `%`, and distinct paths give distinct default keys and hashes.
        #[test]
        fn distinct_paths_distinct_keys(a in "/[a-z0-9]{0,12}", b in "/[a-z0-9]{0,12}") {
            let k = KeyPattern::default();
            let (ka, kb) = (k.render(&req(&a, Some("h"))), k.render(&req(&b, Some("h"))));
            prop_assert_eq!(ka == kb, a == b);
            prop_assert_eq!(hash_key(&ka) == hash_key(&kb), a == b);
            prop_assert_eq!(KeyPattern::new("%%").render(&req(&a, None)), "%");
        }
    }
}
