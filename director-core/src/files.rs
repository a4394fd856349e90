//! Files from disk in front of a route's target: `root`, `try-files`, `rewrites`.
//!
//! A route with a `root` answers a request itself when a file is there, and passes the rest
//! to its `cluster` or `backend`, as nginx's `try_files $uri $uri/index.html @app`:
//!
//! 1. a path with a segment starting with `.` gets 403 (unless `dotfiles = true`), whoever
//!    would answer it;
//! 2. GET and HEAD: each `try-files` pattern (`$uri` is the decoded request path) names a file
//!    under `root`; the first regular file found is served with the X-Sendfile code
//!    ([`crate::sendfile`]: ETag, Last-Modified, Range, conditional requests, flat memory) and
//!    its confinement: `..` and symlinks cannot leave `root` (403). Names ending in a
//!    `never-serve` suffix (`.php` by default) are never served, whatever the method;
//! 3. otherwise the route's rewrite rules ([`crate::rewrite`]) may give a new URI, which the
//!    router normalises and routes again (once: a rewritten request is not rewritten again);
//! 4. otherwise the request goes to the route's target as it came.
//!
//! With `precompressed = true`, a client accepting `br` (or `gzip`) gets `file.br` (or
//! `file.gz`) when that sibling exists under `root`, with `Content-Encoding` and the original's
//! `Content-Type`; every file answer of such a route carries `Vary: Accept-Encoding`.
//!
//! The lookups touch the disk, so [`FilesPolicy::look`] runs on the blocking pool.

use std::{
    ffi::OsStr,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

use crate::{
    body::Body,
    config::{ConfigError, RouteConfig},
    rewrite::{self, Rewrite},
    sendfile::{
        self, RequestHead,
        path::{self as sandbox, Opened, Refusal, Root},
    },
};

/// A route's `root` settings, checked.
#[derive(Debug)]
pub struct FilesPolicy {
    root: Root,
    // `root` first, then the `allow-symlinks-to` directories: where an opened file may be.
    confines: Vec<Root>,
    try_files: Vec<Vec<u8>>,
    never_serve: Vec<String>,
    dotfiles: bool,
    precompressed: bool,
    rewrites: Vec<Rewrite>,
}

/// What the disk says about a request.
#[derive(Debug)]
pub enum Lookup {
    /// Answer with this status, and a short reason (the request goes nowhere).
    Refused(StatusCode, &'static str),
    /// Serve this file.
    Found(Box<Found>),
    /// No file: pass the request on, with this new path-and-query if a rule rewrote it.
    Missing(Option<String>),
}

/// A file found for a request.
#[derive(Debug)]
pub struct Found {
    opened: Opened,
    content_type: HeaderValue,
    encoding: Option<&'static str>,
}

/// Encodings a client accepts that a precompressed sibling may have.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Accepts {
    /// `br`.
    pub br: bool,
    /// `gzip`.
    pub gzip: bool,
}

impl Accepts {
    /// Reads `Accept-Encoding` (`q=0` refuses a coding; `*` accepts the ones not named).
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let (mut br, mut gzip, mut star) = (None, None, None);
        for value in headers.get_all(header::ACCEPT_ENCODING) {
            let Ok(value) = value.to_str() else { continue };
            for item in value.split(',') {
                let mut parts = item.split(';');
                let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
                let q = parts
                    .filter_map(|p| p.trim().strip_prefix("q=").or(p.trim().strip_prefix("Q=")))
                    .next()
                    .map_or(1.0, |q| q.trim().parse::<f32>().unwrap_or(0.0));
                let ok = q > 0.0;
                match coding.as_str() {
                    "br" => br = Some(ok),
                    "gzip" | "x-gzip" => gzip = Some(ok),
                    "*" => star = Some(ok),
                    _ => {}
                }
            }
        }
        let star = star.unwrap_or(false);
        Accepts {
            br: br.unwrap_or(star),
            gzip: gzip.unwrap_or(star),
        }
    }
}

impl FilesPolicy {
    /// The files policy of `route` (`None` without a `root`); errors name keys under `at`.
    pub fn new(route: &RouteConfig, at: &str) -> Result<Option<Self>, ConfigError> {
        let Some(root) = &route.root else {
            let stray = [
                ("try-files", route.try_files.is_some()),
                ("never-serve", route.never_serve.is_some()),
                ("dotfiles", route.dotfiles),
                ("precompressed", route.precompressed),
                ("allow-symlinks-to", route.allow_symlinks_to.is_some()),
                ("rewrites", !route.rewrites.is_empty()),
            ];
            if let Some((key, _)) = stray.iter().find(|(_, set)| *set) {
                return Err(ConfigError::new(
                    format!("{at}.{key}"),
                    "only a route with a `root` serves files and rewrites",
                ));
            }
            return Ok(None);
        };
        let key = format!("{at}.root");
        let given = Path::new(root);
        if !given.is_absolute() {
            return Err(ConfigError::new(
                key,
                format!("{root:?} is not an absolute path"),
            ));
        }
        let real = std::fs::canonicalize(given)
            .map_err(|e| ConfigError::new(&key, format!("cannot use {root:?}: {e}")))?;
        if !real.is_dir() {
            return Err(ConfigError::new(
                key,
                format!("{root:?} is not a directory"),
            ));
        }
        let try_files = route
            .try_files
            .clone()
            .unwrap_or_else(|| vec!["$uri".to_owned()]);
        for (i, pattern) in try_files.iter().enumerate() {
            if !(pattern.starts_with("$uri") || pattern.starts_with('/')) {
                return Err(ConfigError::new(
                    format!("{at}.try-files[{i}]"),
                    "a try-files entry is a path with `$uri` (such as \"$uri\" or \
                     \"$uri/index.html\") or a fixed path starting with '/'; the route's \
                     cluster or backend is the fallback",
                ));
            }
        }
        let never_serve = route
            .never_serve
            .clone()
            .unwrap_or_else(|| vec![".php".into(), ".phtml".into(), ".phar".into()]);
        for (i, suffix) in never_serve.iter().enumerate() {
            if suffix.is_empty() || suffix.contains('/') {
                return Err(ConfigError::new(
                    format!("{at}.never-serve[{i}]"),
                    "a file name ending such as \".php\"",
                ));
            }
        }
        if route.deny {
            return Err(ConfigError::new(
                format!("{at}.root"),
                "a `deny` route answers 403 to everything: it serves no files",
            ));
        }
        if route.cluster.is_none() && route.backend.is_none() {
            return Err(ConfigError::new(
                format!("{at}.root"),
                "a route with a `root` passes what no file answers to its `cluster` or `backend`: \
                 name one",
            ));
        }
        let root = Root {
            given: sandbox::normalize(given),
            real,
        };
        let mut confines = vec![root.clone()];
        for (i, dir) in route.allow_symlinks_to.iter().flatten().enumerate() {
            let key = format!("{at}.allow-symlinks-to[{i}]");
            let given = Path::new(dir);
            if !given.is_absolute() {
                return Err(ConfigError::new(
                    key,
                    format!("{dir:?} is not an absolute path"),
                ));
            }
            let real = std::fs::canonicalize(given)
                .map_err(|e| ConfigError::new(&key, format!("cannot use {dir:?}: {e}")))?;
            if !real.is_dir() {
                return Err(ConfigError::new(key, format!("{dir:?} is not a directory")));
            }
            // Only where a symlink leads, checked on the canonical path: never joined with a
            // request path, so its lexical form does not widen anything.
            confines.push(Root {
                given: real.clone(),
                real,
            });
        }
        let rewrites = route
            .rewrites
            .iter()
            .enumerate()
            .map(|(i, r)| Rewrite::new(r, &format!("{at}.rewrites[{i}]")))
            .collect::<Result<_, _>>()?;
        Ok(Some(FilesPolicy {
            root,
            confines,
            try_files: try_files.into_iter().map(String::into_bytes).collect(),
            never_serve: never_serve
                .into_iter()
                .map(|s| s.to_ascii_lowercase())
                .collect(),
            dotfiles: route.dotfiles,
            precompressed: route.precompressed,
            rewrites,
        }))
    }

    /// The canonical root.
    pub fn root(&self) -> &Path {
        &self.root.real
    }

    /// Looks a request up on disk (blocking: call it off the async threads). `path` is the
    /// request's normalised path, `query` its query; `get` says whether files may be served
    /// (GET or HEAD); `rewrite` whether rules apply (not to a request already rewritten).
    pub fn look(
        &self,
        path: &str,
        query: Option<&str>,
        get: bool,
        accepts: Accepts,
        rewrite: bool,
    ) -> Lookup {
        let decoded: Vec<u8> = percent_encoding::percent_decode_str(path).collect();
        if decoded.contains(&0) {
            return Lookup::Refused(StatusCode::BAD_REQUEST, "bad path\n");
        }
        if !self.dotfiles && has_dot_segment(&decoded) {
            return Lookup::Refused(StatusCode::FORBIDDEN, "forbidden\n");
        }
        if get {
            for pattern in &self.try_files {
                let candidate = expand(pattern, &decoded);
                if self.never_served(&candidate) || (!self.dotfiles && has_dot_segment(&candidate))
                {
                    continue;
                }
                let on_disk = self.on_disk(&candidate);
                // Lexically under `root` (or it is not even tried), then confined on disk.
                if !on_disk.starts_with(&self.root.given) {
                    return self.refused(path, Refusal::Outside(on_disk));
                }
                match sandbox::open_within(&on_disk, &self.confines) {
                    Ok(opened) => return Lookup::Found(Box::new(self.found(opened, accepts))),
                    Err(Refusal::NotFound | Refusal::NotAFile) => {}
                    Err(refusal) => return self.refused(path, refusal),
                }
            }
        }
        let rewritten = rewrite
            .then(|| {
                rewrite::apply(&self.rewrites, path, query, |p| {
                    let decoded: Vec<u8> = percent_encoding::percent_decode_str(p).collect();
                    let on_disk = self.on_disk(&decoded);
                    on_disk.starts_with(&self.root.given)
                        && std::fs::metadata(&on_disk).is_ok_and(|m| m.is_file())
                })
            })
            .flatten();
        Lookup::Missing(rewritten)
    }

    fn on_disk(&self, decoded: &[u8]) -> PathBuf {
        let relative = &decoded[decoded.iter().take_while(|&&b| b == b'/').count()..];
        sandbox::normalize(&self.root.given.join(Path::new(OsStr::from_bytes(relative))))
    }

    fn never_served(&self, candidate: &[u8]) -> bool {
        let lower = candidate.to_ascii_lowercase();
        self.never_serve
            .iter()
            .any(|s| lower.ends_with(s.as_bytes()))
    }

    fn found(&self, opened: Opened, accepts: Accepts) -> Found {
        let content_type = sendfile::content_type_of(&opened.path);
        if self.precompressed {
            let siblings = [("br", accepts.br), ("gzip", accepts.gzip)];
            for (encoding, accepted) in siblings {
                if !accepted {
                    continue;
                }
                let mut name = opened.path.clone().into_os_string();
                name.push(if encoding == "br" { ".br" } else { ".gz" });
                if let Ok(sibling) = sandbox::open_within(Path::new(&name), &self.confines) {
                    return Found {
                        opened: sibling,
                        content_type,
                        encoding: Some(encoding),
                    };
                }
            }
        }
        Found {
            opened,
            content_type,
            encoding: None,
        }
    }

    fn refused(&self, path: &str, refusal: Refusal) -> Lookup {
        let root = self.root.real.display();
        match refusal {
            Refusal::Outside(resolved) => {
                tracing::warn!(%root, %path, resolved = %resolved.display(),
                    "file refused: the path leads outside the route's root");
                Lookup::Refused(StatusCode::FORBIDDEN, "forbidden\n")
            }
            Refusal::Unreadable(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
                tracing::warn!(%root, %path, error = %err, "file refused: it cannot be read");
                Lookup::Refused(StatusCode::FORBIDDEN, "forbidden\n")
            }
            Refusal::Unreadable(err) => {
                tracing::error!(%root, %path, error = %err, "file cannot be opened");
                Lookup::Refused(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
            }
            Refusal::NotFound | Refusal::NotAFile => Lookup::Missing(None),
        }
    }

    /// The answer to a request with `head` for a file found.
    pub fn respond(&self, found: Box<Found>, head: &RequestHead) -> Response<Body> {
        let (mut parts, ()) = Response::new(()).into_parts();
        if self.precompressed {
            parts
                .headers
                .insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        }
        let mut response = sendfile::answer(
            parts,
            found.opened,
            head,
            found.content_type,
            sendfile::CHUNK,
        );
        if let Some(encoding) = found.encoding
            && matches!(
                response.status(),
                StatusCode::OK | StatusCode::PARTIAL_CONTENT | StatusCode::NOT_MODIFIED
            )
        {
            response
                .headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
        }
        response
    }
}

/// `pattern` with each `$uri` replaced by `path`.
fn expand(pattern: &[u8], path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(pattern.len() + path.len());
    let mut rest = pattern;
    while let Some(at) = rest.windows(4).position(|w| w == b"$uri") {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(path);
        rest = &rest[at + 4..];
    }
    out.extend_from_slice(rest);
    out
}

/// Whether a segment of `path` starts with `.` (dotfiles, `.`, `..`).
fn has_dot_segment(path: &[u8]) -> bool {
    path.split(|&b| b == b'/').any(|s| s.first() == Some(&b'.'))
}

/// A plain-text answer of Director's own.
pub fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut r = Response::new(crate::body::full(text));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(text.len()));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Site {
        dir: tempfile::TempDir,
        policy: FilesPolicy,
    }

    fn site(edit: impl FnOnce(&mut RouteConfig)) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let www = dir.path().join("www");
        std::fs::create_dir_all(www.join("docs")).unwrap();
        std::fs::create_dir_all(www.join("lib/tpl")).unwrap();
        std::fs::write(www.join("style.css"), "body{}").unwrap();
        std::fs::write(www.join("style.css.gz"), "gz").unwrap();
        std::fs::write(www.join("docs/index.html"), "<h1>docs</h1>").unwrap();
        std::fs::write(www.join("doku.php"), "<?php secret();").unwrap();
        std::fs::write(www.join(".htaccess"), "deny").unwrap();
        std::fs::write(dir.path().join("outside.txt"), "secret").unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside.txt"), www.join("escape.txt")).unwrap();
        let mut route = RouteConfig {
            cluster: Some("php".into()),
            root: Some(www.to_str().unwrap().into()),
            try_files: Some(vec!["$uri".into(), "$uri/index.html".into()]),
            rewrites: vec![crate::config::RewriteConfig {
                r#match: "^/(.*)".into(),
                to: "/doku.php?id=$1".into(),
                if_missing: true,
                last: true,
                keep_query: true,
            }],
            ..RouteConfig::default()
        };
        edit(&mut route);
        let policy = FilesPolicy::new(&route, "routes[0]").unwrap().unwrap();
        Site { dir, policy }
    }

    fn found_name(lookup: &Lookup) -> Option<String> {
        match lookup {
            Lookup::Found(f) => Some(
                f.opened
                    .path
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            ),
            _ => None,
        }
    }

    #[test]
    fn try_files_in_order() {
        let s = site(|_| {});
        let all = Accepts::default();
        let look = |p: &str| s.policy.look(p, None, true, all, true);
        assert_eq!(
            found_name(&look("/style.css")).as_deref(),
            Some("style.css")
        );
        // A directory is skipped; its index is the next entry.
        assert_eq!(found_name(&look("/docs")).as_deref(), Some("index.html"));
        assert_eq!(found_name(&look("/docs/")).as_deref(), Some("index.html"));
        // Encoded names are decoded before the lookup.
        assert_eq!(
            found_name(&look("/style%2Ecss")).as_deref(),
            Some("style.css")
        );
        assert!(s.dir.path().exists());
    }

    #[test]
    fn misses_fall_back_with_rewrites() {
        let s = site(|_| {});
        let look = |p: &str, q: Option<&str>, get: bool| {
            s.policy.look(p, q, get, Accepts::default(), true)
        };
        assert!(matches!(
            look("/wiki/page", Some("do=edit"), true),
            Lookup::Missing(Some(ref u)) if u == "/doku.php?id=wiki/page&do=edit"
        ));
        // `.php` is never a static file, and it exists, so `if-missing` passes it on as is.
        assert!(matches!(
            look("/doku.php", None, true),
            Lookup::Missing(None)
        ));
        assert!(matches!(
            look("/DOKU.PHP", None, true),
            Lookup::Missing(Some(_))
        ));
        // Not GET/HEAD: no file is served, the rules still apply.
        assert!(matches!(
            look("/style.css", None, false),
            Lookup::Missing(None)
        ));
        assert!(matches!(
            look("/new/page", None, false),
            Lookup::Missing(Some(ref u)) if u == "/doku.php?id=new/page"
        ));
        // A rewritten request is not rewritten again.
        assert!(matches!(
            s.policy.look("/x", None, true, Accepts::default(), false),
            Lookup::Missing(None)
        ));
    }

    #[test]
    fn dotfiles_and_escapes_are_refused() {
        let s = site(|_| {});
        let look = |p: &str| s.policy.look(p, None, true, Accepts::default(), true);
        for p in [
            "/.htaccess",
            "/.git/config",
            "/a/.env",
            "/%2Ehtaccess",
            "/../outside.txt",
        ] {
            assert!(
                matches!(look(p), Lookup::Refused(StatusCode::FORBIDDEN, _)),
                "{p}"
            );
        }
        assert!(matches!(
            look("/escape.txt"),
            Lookup::Refused(StatusCode::FORBIDDEN, _)
        ));
        let s = site(|r| r.dotfiles = true);
        assert_eq!(
            found_name(
                &s.policy
                    .look("/.htaccess", None, true, Accepts::default(), true)
            )
            .as_deref(),
            Some(".htaccess")
        );
        // Even with dotfiles allowed, `..` stays inside the root (lexically and on disk).
        assert!(!matches!(
            s.policy
                .look("/../outside.txt", None, true, Accepts::default(), true),
            Lookup::Found(_)
        ));
    }

    #[test]
    fn symlinks_lead_only_where_allowed() {
        let s = site(|_| {});
        let elsewhere = s.dir.path().join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::fs::write(elsewhere.join("theme.css"), "a{}").unwrap();
        std::os::unix::fs::symlink(&elsewhere, s.dir.path().join("www/lib/theme")).unwrap();
        let look = |p: &FilesPolicy, path: &str| p.look(path, None, true, Accepts::default(), true);
        assert!(matches!(
            look(&s.policy, "/lib/theme/theme.css"),
            Lookup::Refused(StatusCode::FORBIDDEN, _)
        ));
        let allowed = site(|r| {
            r.root = Some(s.dir.path().join("www").to_str().unwrap().into());
            r.allow_symlinks_to = Some(vec![elsewhere.to_str().unwrap().into()]);
        });
        assert_eq!(
            found_name(&look(&allowed.policy, "/lib/theme/theme.css")).as_deref(),
            Some("theme.css")
        );
        // Only through a symlink under root: the other escapes stay refused.
        assert!(matches!(
            look(&allowed.policy, "/escape.txt"),
            Lookup::Refused(StatusCode::FORBIDDEN, _)
        ));
    }

    #[test]
    fn precompressed_siblings() {
        let s = site(|r| r.precompressed = true);
        let gzip = Accepts {
            br: false,
            gzip: true,
        };
        match s.policy.look("/style.css", None, true, gzip, true) {
            Lookup::Found(f) => {
                assert_eq!(f.encoding, Some("gzip"));
                assert_eq!(f.content_type, "text/css");
            }
            other => panic!("{other:?}"),
        }
        let br = Accepts {
            br: true,
            gzip: false,
        };
        match s.policy.look("/style.css", None, true, br, true) {
            Lookup::Found(f) => assert_eq!(f.encoding, None),
            other => panic!("{other:?}"),
        }
        let s = site(|_| {});
        match s.policy.look("/style.css", None, true, gzip, true) {
            Lookup::Found(f) => assert_eq!(f.encoding, None),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn accept_encoding() {
        let parse = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
            Accepts::from_headers(&h)
        };
        assert_eq!(
            parse("gzip, br"),
            Accepts {
                br: true,
                gzip: true
            }
        );
        assert_eq!(
            parse("gzip;q=0, br;q=0.5"),
            Accepts {
                br: true,
                gzip: false
            }
        );
        assert_eq!(
            parse("*"),
            Accepts {
                br: true,
                gzip: true
            }
        );
        assert_eq!(
            parse("*, br;q=0"),
            Accepts {
                br: false,
                gzip: true
            }
        );
        assert_eq!(parse("identity"), Accepts::default());
    }

    #[test]
    fn bad_settings_name_their_key() {
        let route = |edit: &dyn Fn(&mut RouteConfig)| {
            let mut r = RouteConfig {
                cluster: Some("php".into()),
                root: Some("/".into()),
                ..RouteConfig::default()
            };
            edit(&mut r);
            FilesPolicy::new(&r, "routes[1]").unwrap_err().path
        };
        assert_eq!(route(&|r| r.root = Some("rel".into())), "routes[1].root");
        assert_eq!(
            route(&|r| r.root = Some("/no/such/dir".into())),
            "routes[1].root"
        );
        assert_eq!(route(&|r| r.cluster = None), "routes[1].root");
        assert_eq!(
            route(&|r| r.try_files = Some(vec!["@php".into()])),
            "routes[1].try-files[0]"
        );
        assert_eq!(
            route(&|r| {
                r.root = None;
                r.try_files = Some(vec!["$uri".into()]);
            }),
            "routes[1].try-files"
        );
    }
}
