//! Where a backend's header points, and whether Director may open it.
//!
//! The sandbox works in three steps, so neither `..` nor a symlink can lead out of a root:
//! 1. lexically: the path, with `.` and `..` resolved as text, must lie under a root (as
//!    configured or as canonicalised), so `/etc/passwd` is refused without touching the disk;
//! 2. on disk: the canonical path (`realpath`, every symlink resolved) must lie under a
//!    canonical root;
//! 3. after `open` (with `O_NOFOLLOW`): on Linux, the path of the handle actually opened
//!    (`/proc/self/fd/N`) must still lie under a canonical root, which closes the window between
//!    the check and the open. The file is then served from that one handle.

use std::{
    ffi::OsStr,
    fs::{File, Metadata, OpenOptions},
    io,
    os::unix::{ffi::OsStrExt, fs::OpenOptionsExt},
    path::{Component, Path, PathBuf},
};

/// An allowed root directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Root {
    /// As configured, with `.` and `..` resolved lexically.
    pub(crate) given: PathBuf,
    /// Canonical (`realpath`).
    pub(crate) real: PathBuf,
}

/// Why a file is not served.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// The path leads outside every root (403, logged).
    Outside(PathBuf),
    /// Nothing is there, or no X-Accel-Redirect location matches (404).
    NotFound,
    /// A directory, device, socket or FIFO (403).
    NotAFile,
    /// The file exists but cannot be opened (403 when permission is denied, else 500).
    Unreadable(io::Error),
}

/// A file opened for serving.
#[derive(Debug)]
pub(crate) struct Opened {
    pub(crate) file: File,
    pub(crate) meta: Metadata,
    pub(crate) path: PathBuf,
}

/// `path` with `.` and `..` resolved as text (`..` at the top stays at the top).
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The path an `X-Sendfile` value names: absolute as it is, relative under the first root.
pub(crate) fn sendfile_candidate(value: &[u8], roots: &[Root]) -> Option<PathBuf> {
    if value.is_empty() {
        return None;
    }
    let path = Path::new(OsStr::from_bytes(value));
    if path.is_absolute() {
        Some(normalize(path))
    } else {
        roots.first().map(|r| normalize(&r.given.join(path)))
    }
}

/// The path an `X-Accel-Redirect` URI names through the location map (longest prefix first),
/// or `None` when no location matches. The URI's query is ignored and `%XX` escapes decoded.
pub(crate) fn accel_candidate(uri: &[u8], locations: &[(String, PathBuf)]) -> Option<PathBuf> {
    let path = uri.split(|&b| b == b'?').next().unwrap_or_default();
    let decoded: Vec<u8> = percent_encoding::percent_decode(path).collect();
    if decoded.contains(&0) {
        return None;
    }
    let (prefix, dir) = locations
        .iter()
        .find(|(prefix, _)| decoded.starts_with(prefix.as_bytes()))?;
    let rest = &decoded[prefix.len()..];
    let rest = &rest[rest.iter().take_while(|&&b| b == b'/').count()..];
    Some(normalize(&dir.join(Path::new(OsStr::from_bytes(rest)))))
}

fn inside(path: &Path, roots: &[Root], lexical: bool) -> bool {
    roots
        .iter()
        .any(|r| path.starts_with(&r.real) || (lexical && path.starts_with(&r.given)))
}

/// Opens `candidate` for serving if it is a regular file inside `roots` (blocking: call it off
/// the async threads).
pub(crate) fn open_within(candidate: &Path, roots: &[Root]) -> Result<Opened, Refusal> {
    if !inside(candidate, roots, true) {
        return Err(Refusal::Outside(candidate.to_owned()));
    }
    let real = std::fs::canonicalize(candidate).map_err(refusal)?;
    if !inside(&real, roots, false) {
        return Err(Refusal::Outside(real));
    }
    // A FIFO would block `open`; only regular files go further.
    if !std::fs::metadata(&real).map_err(refusal)?.is_file() {
        return Err(Refusal::NotAFile);
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&real)
        .map_err(refusal)?;
    let meta = file.metadata().map_err(refusal)?;
    if !meta.is_file() {
        return Err(Refusal::NotAFile);
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        if let Ok(opened) = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
            && !inside(&opened, roots, false)
        {
            return Err(Refusal::Outside(opened));
        }
    }
    Ok(Opened {
        file,
        meta,
        path: real,
    })
}

fn refusal(err: io::Error) -> Refusal {
    match err.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => Refusal::NotFound,
        // ELOOP: the last component was swapped for a symlink after the check.
        _ if err.raw_os_error() == Some(libc::ELOOP) => Refusal::NotAFile,
        _ => Refusal::Unreadable(err),
    }
}
