//! Rewrite rules: a route's `[[routes.rewrites]]`, regex → replacement with captures.
//!
//! A rule matches the request's normalised path (never its query) with a regular expression
//! (the `regex` crate: no look-around, so "everything but `/lib/`" is written as a rule that
//! only applies when no file is there, `if-missing`). Its replacement may use `$1`..`$9`
//! (a single digit), `${name}` for named groups, `$0` for the whole match and `$$` for a `$`.
//! Rules are tried in config order; the first that matches rewrites the URI and, with `last`
//! (the default, as nginx's `last`), stops; `last = false` goes on to the next rules with the
//! rewritten path. The client's query is appended (after `&` when the replacement has a query
//! of its own, as nginx does) unless `keep-query = false`.
//!
//! What comes out is a new path and query; the router normalises that path and routes it again
//! (see [`crate::router`]), so a rewrite cannot reach what a `deny` route or the normaliser
//! refuses.

use regex::Regex;

use crate::config::{ConfigError, RewriteConfig};

/// One checked rule.
#[derive(Clone, Debug)]
pub struct Rewrite {
    pattern: Regex,
    to: Vec<Piece>,
    if_missing: bool,
    last: bool,
    keep_query: bool,
}

/// A piece of a replacement.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Group(usize),
    Named(String),
}

impl Rewrite {
    /// Checks `config`; errors name the key under `at` (`routes[0].rewrites[1]`).
    pub fn new(config: &RewriteConfig, at: &str) -> Result<Self, ConfigError> {
        let pattern = Regex::new(&config.r#match).map_err(|e| {
            let lookaround = ["(?!", "(?=", "(?<!", "(?<="]
                .iter()
                .any(|l| config.r#match.contains(l));
            let message = if lookaround {
                "look-around ((?!...), (?=...)) is not supported: a rule with \
                 `if-missing = true` leaves existing files alone, or put a more specific rule \
                 before it"
                    .to_owned()
            } else {
                format!("not a valid regex: {e}")
            };
            ConfigError::new(format!("{at}.match"), message)
        })?;
        let to =
            parse_replacement(&config.to).map_err(|m| ConfigError::new(format!("{at}.to"), m))?;
        if !config.to.starts_with('/') {
            return Err(ConfigError::new(
                format!("{at}.to"),
                "a replacement is a path starting with '/' (and an optional ?query)",
            ));
        }
        for piece in &to {
            match piece {
                Piece::Group(n) if *n >= pattern.captures_len() => {
                    return Err(ConfigError::new(
                        format!("{at}.to"),
                        format!("${n}: the pattern has no group {n}"),
                    ));
                }
                Piece::Named(name) if !pattern.capture_names().any(|n| n == Some(name)) => {
                    return Err(ConfigError::new(
                        format!("{at}.to"),
                        format!("${{{name}}}: the pattern has no group named {name:?}"),
                    ));
                }
                _ => {}
            }
        }
        Ok(Rewrite {
            pattern,
            to,
            if_missing: config.if_missing,
            last: config.last,
            keep_query: config.keep_query,
        })
    }

    /// Whether it applies only when no file is at the path.
    pub fn if_missing(&self) -> bool {
        self.if_missing
    }

    fn expand(&self, path: &str) -> Option<String> {
        let caps = self.pattern.captures(path)?;
        let mut out = String::new();
        for piece in &self.to {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Group(n) => out.push_str(caps.get(*n).map_or("", |m| m.as_str())),
                Piece::Named(n) => out.push_str(caps.name(n).map_or("", |m| m.as_str())),
            }
        }
        Some(out)
    }
}

fn parse_replacement(to: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = to.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            text.push(c);
            continue;
        }
        let piece = match chars.next() {
            Some('$') => {
                text.push('$');
                continue;
            }
            Some(d @ '0'..='9') => Piece::Group(d as usize - '0' as usize),
            Some('{') => {
                let name: String = chars.by_ref().take_while(|&c| c != '}').collect();
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(format!("${{{name}}} is not a group name"));
                }
                match name.parse() {
                    Ok(n) => Piece::Group(n),
                    Err(_) => Piece::Named(name),
                }
            }
            _ => return Err("a '$' is followed by a digit, {name} or '$'".into()),
        };
        if !text.is_empty() {
            pieces.push(Piece::Text(std::mem::take(&mut text)));
        }
        pieces.push(piece);
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

/// Applies `rules` in order to a request with `path` and `query`; `file_at(path)` says whether a
/// file is at a path (asked only by `if-missing` rules). Returns the new path-and-query, or
/// `None` when no rule matched.
pub fn apply(
    rules: &[Rewrite],
    path: &str,
    query: Option<&str>,
    mut file_at: impl FnMut(&str) -> bool,
) -> Option<String> {
    let mut current_path = path.to_owned();
    let mut current_query = query.map(str::to_owned);
    let mut rewritten = false;
    for rule in rules {
        if rule.if_missing && file_at(&current_path) {
            continue;
        }
        let Some(target) = rule.expand(&current_path) else {
            continue;
        };
        let (new_path, new_query) = match target.split_once('?') {
            Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
            None => (target, None),
        };
        current_query = match (new_query, current_query.filter(|_| rule.keep_query)) {
            (Some(n), Some(old)) if !old.is_empty() => Some(format!("{n}&{old}")),
            (Some(n), _) => Some(n),
            (None, old) => old,
        };
        current_path = new_path;
        rewritten = true;
        if rule.last {
            break;
        }
    }
    rewritten.then(|| match current_query {
        Some(q) => format!("{current_path}?{q}"),
        None => current_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(m: &str, to: &str) -> RewriteConfig {
        RewriteConfig {
            r#match: m.into(),
            to: to.into(),
            if_missing: false,
            last: true,
            keep_query: true,
        }
    }

    fn rules(configs: &[RewriteConfig]) -> Vec<Rewrite> {
        configs
            .iter()
            .enumerate()
            .map(|(i, c)| Rewrite::new(c, &format!("rewrites[{i}]")).unwrap())
            .collect()
    }

    /// DokuWiki's pretty URLs, from its nginx page, without the look-ahead.
    fn dokuwiki() -> Vec<Rewrite> {
        rules(&[
            rule("^/_media/(.*)", "/lib/exe/fetch.php?media=$1"),
            rule("^/_detail/(.*)", "/lib/exe/detail.php?media=$1"),
            rule("^/_export/([^/]+)/(.*)", "/doku.php?do=export_$1&id=$2"),
            RewriteConfig {
                if_missing: true,
                ..rule("^/(.*)", "/doku.php?id=$1")
            },
        ])
    }

    #[test]
    fn captures_fill_the_replacement() {
        let r = dokuwiki();
        let files = |p: &str| p == "/doku.php" || p.starts_with("/lib/");
        assert_eq!(
            apply(&r, "/_media/wiki/logo.png", None, files).as_deref(),
            Some("/lib/exe/fetch.php?media=wiki/logo.png")
        );
        assert_eq!(
            apply(&r, "/_export/raw/wiki/syntax", None, files).as_deref(),
            Some("/doku.php?do=export_raw&id=wiki/syntax")
        );
        assert_eq!(
            apply(&r, "/wiki/syntax", None, files).as_deref(),
            Some("/doku.php?id=wiki/syntax")
        );
        assert_eq!(
            apply(&r, "/", None, files).as_deref(),
            Some("/doku.php?id=")
        );
    }

    #[test]
    fn if_missing_skips_existing_files() {
        let r = dokuwiki();
        let files = |p: &str| p == "/doku.php" || p.starts_with("/lib/");
        assert_eq!(apply(&r, "/lib/exe/fetch.php", None, files), None);
        assert_eq!(apply(&r, "/doku.php", Some("id=x"), files), None);
    }

    #[test]
    fn first_match_stops_unless_not_last() {
        let r = rules(&[rule("^/a/(.*)", "/b/$1"), rule("^/b/(.*)", "/c/$1")]);
        assert_eq!(apply(&r, "/a/x", None, |_| false).as_deref(), Some("/b/x"));
        let r = rules(&[
            RewriteConfig {
                last: false,
                ..rule("^/a/(.*)", "/b/$1")
            },
            rule("^/b/(.*)", "/c/$1"),
            rule("^/c/(.*)", "/d/$1"),
        ]);
        assert_eq!(apply(&r, "/a/x", None, |_| false).as_deref(), Some("/c/x"));
        assert_eq!(apply(&r, "/z", None, |_| false), None);
    }

    #[test]
    fn the_query_is_merged() {
        let r = dokuwiki();
        assert_eq!(
            apply(&r, "/wiki/x", Some("do=edit&rev=1"), |_| false).as_deref(),
            Some("/doku.php?id=wiki/x&do=edit&rev=1")
        );
        let r = rules(&[rule("^/old/(.*)", "/new/$1")]);
        assert_eq!(
            apply(&r, "/old/p", Some("a=1"), |_| false).as_deref(),
            Some("/new/p?a=1")
        );
        assert_eq!(
            apply(&r, "/old/p", Some(""), |_| false).as_deref(),
            Some("/new/p?")
        );
        let r = rules(&[RewriteConfig {
            keep_query: false,
            ..rule("^/old/(.*)", "/new/$1?v=2")
        }]);
        assert_eq!(
            apply(&r, "/old/p", Some("a=1"), |_| false).as_deref(),
            Some("/new/p?v=2")
        );
    }

    #[test]
    fn replacement_syntax() {
        let r = rules(&[rule(
            r"^/(?P<user>\w+)/(\d+)$",
            "/u.php?u=${user}&n=$2&x=$$1&all=$0",
        )]);
        assert_eq!(
            apply(&r, "/bob/42", None, |_| false).as_deref(),
            Some("/u.php?u=bob&n=42&x=$1&all=/bob/42")
        );
        // A digit after `$1` is text: `$1` is one digit.
        let r = rules(&[rule("^/(.)(.*)", "/$10")]);
        assert_eq!(apply(&r, "/ab", None, |_| false).as_deref(), Some("/a0"));
    }

    #[test]
    fn bad_rules_are_refused_with_their_key() {
        let bad =
            |m: &str, to: &str| Rewrite::new(&rule(m, to), "routes[0].rewrites[2]").unwrap_err();
        let e = bad("^/(?!lib/)(.*)", "/doku.php?id=$1");
        assert_eq!(e.path, "routes[0].rewrites[2].match");
        assert!(e.message.contains("look-around"), "{e}");
        assert_eq!(bad("^/(.*)", "/x/$2").path, "routes[0].rewrites[2].to");
        assert_eq!(bad("^/(.*)", "/x/${nope}").path, "routes[0].rewrites[2].to");
        assert_eq!(bad("^/(.*)", "/x/$").path, "routes[0].rewrites[2].to");
        assert_eq!(bad("^/(.*)", "x/$1").path, "routes[0].rewrites[2].to");
    }
}
