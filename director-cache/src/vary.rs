//! The secondary key: which variant of an object a request selects (RFC 9111 §4.1).
//!
//! A stored response remembers the header names its `Vary` lists and the request's values for
//! them, normalised (lists rejoined without blanks around commas, lowercased), so
//! `gzip, br` and `GZIP,br` select the same variant. `Vary: *` never matches, so such
//! responses are not stored at all.

use http::header::VARY;
use http::{HeaderMap, HeaderName};

/// The request header values a variant was stored under.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct VaryKey {
    fields: Vec<(HeaderName, Option<String>)>,
}

/// The header names of a response's `Vary`, or `None` for `Vary: *`.
pub(crate) fn vary_names(response: &HeaderMap) -> Option<Vec<HeaderName>> {
    let mut names: Vec<HeaderName> = Vec::new();
    for line in response.get_all(VARY) {
        let line = line.to_str().ok()?;
        for name in line.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "*" {
                return None;
            }
            let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    Some(names)
}

/// A request's normalised value for one header: all lines joined, blanks around commas
/// dropped, lowercased. `None` when the header is absent.
fn normalized(request: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut out: Option<String> = None;
    for line in request.get_all(name) {
        let s = out.get_or_insert_with(String::new);
        let text = String::from_utf8_lossy(line.as_bytes());
        for item in text.split(',').map(str::trim) {
            if !s.is_empty() {
                s.push(',');
            }
            s.push_str(&item.to_ascii_lowercase());
        }
    }
    out
}

// === impl VaryKey ===

impl VaryKey {
    /// Records the request's values for `names`.
    pub(crate) fn capture(names: &[HeaderName], request: &HeaderMap) -> Self {
        Self {
            fields: names
                .iter()
                .map(|n| (n.clone(), normalized(request, n)))
                .collect(),
        }
    }

    /// Whether `request` selects this variant.
    pub(crate) fn matches(&self, request: &HeaderMap) -> bool {
        self.fields
            .iter()
            .all(|(name, value)| normalized(request, name).as_deref() == value.as_deref())
    }

    /// Whether two variants vary on the same header names.
    pub(crate) fn same_names(&self, other: &Self) -> bool {
        self.fields.len() == other.fields.len()
            && self
                .fields
                .iter()
                .zip(&other.fields)
                .all(|((a, _), (b, _))| a == b)
    }

    /// An estimate of the heap bytes this key holds.
    pub(crate) fn weight(&self) -> usize {
        self.fields
            .iter()
            .map(|(n, v)| n.as_str().len() + v.as_ref().map_or(0, String::len) + 32)
            .sum()
    }

    /// A stable hash of the values, used to tell concurrent refreshes of variants apart.
    pub(crate) fn hash(&self) -> u64 {
        let mut buf = Vec::new();
        for (n, v) in &self.fields {
            buf.extend_from_slice(n.as_str().as_bytes());
            buf.push(0);
            if let Some(v) = v {
                buf.extend_from_slice(v.as_bytes());
            }
            buf.push(1);
        }
        xxhash_rust::xxh3::xxh3_64(&buf)
    }
}

#[cfg(test)]
mod tests {
    use http::header::{ACCEPT_ENCODING, ACCEPT_LANGUAGE};
    use proptest::prelude::*;

    use super::*;

    fn map(pairs: &[(&HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append((*n).clone(), v.parse().unwrap());
        }
        h
    }

    #[test]
    fn names_are_deduplicated_sorted_and_star_is_none() {
        let resp = map(&[
            (&VARY, "Accept-Language, accept-encoding"),
            (&VARY, "Accept-Encoding"),
        ]);
        assert_eq!(
            vary_names(&resp).unwrap(),
            vec![ACCEPT_ENCODING, ACCEPT_LANGUAGE]
        );
        assert_eq!(vary_names(&map(&[(&VARY, "Accept, *")])), None);
        assert_eq!(
            vary_names(&HeaderMap::new()).unwrap(),
            Vec::<HeaderName>::new()
        );
    }

    #[test]
    fn matching_normalises_case_and_blanks() {
        let names = [ACCEPT_ENCODING];
        let key = VaryKey::capture(&names, &map(&[(&ACCEPT_ENCODING, "gzip, br")]));
        assert!(key.matches(&map(&[(&ACCEPT_ENCODING, "GZIP,br")])));
        assert!(key.matches(&map(&[
            (&ACCEPT_ENCODING, "gzip"),
            (&ACCEPT_ENCODING, "br")
        ])));
        assert!(!key.matches(&map(&[(&ACCEPT_ENCODING, "br, gzip")])));
        assert!(!key.matches(&HeaderMap::new()));
        let absent = VaryKey::capture(&names, &HeaderMap::new());
        assert!(absent.matches(&HeaderMap::new()));
        assert!(!absent.matches(&map(&[(&ACCEPT_ENCODING, "")])));
    }

    proptest! {
        /// A variant always matches the request it was captured from, and the hash agrees with
        /// equality of captured keys.
        #[test]
        fn captured_key_matches_its_request(a in "[a-zA-Z, ]{0,12}", b in "[a-zA-Z, ]{0,12}") {
            let names = [ACCEPT_ENCODING];
            let ra = map(&[(&ACCEPT_ENCODING, a.as_str())]);
            let rb = map(&[(&ACCEPT_ENCODING, b.as_str())]);
            let (ka, kb) = (VaryKey::capture(&names, &ra), VaryKey::capture(&names, &rb));
            prop_assert!(ka.matches(&ra));
            prop_assert_eq!(ka.matches(&rb), ka == kb);
            prop_assert_eq!(ka.hash() == kb.hash(), ka == kb);
        }
    }
}
