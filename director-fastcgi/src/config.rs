//! The service's settings: where the CGI variables come from, timeouts, connection reuse and
//! limits. One value per backend cluster; plain data with `Default`s chosen for php-fpm.

use std::time::Duration;

use crate::cgi::CgiConfig;
use crate::spool::SpoolConfig;

/// What happens to the application's work when the client goes away mid-request (spec 5.7).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientAbort {
    /// Close the connection (the default; the only signal php-fpm reliably notices).
    #[default]
    Close,
    /// Send `ABORT_REQUEST`, then read and discard until `END_REQUEST` (bounded by the read
    /// timeout) in a background task, and reuse the connection if it stays open.
    Notify,
    /// Read the response to its end in a background task and discard it, so the application
    /// never notices; while the request body was still being sent, this closes instead.
    Ignore,
}

/// Settings of a [`FastCgiService`](crate::FastCgiService).
#[derive(Clone, Debug)]
pub struct FastCgiConfig {
    /// CGI variables: document root, index file, script mapping, `SERVER_SOFTWARE`, extras.
    pub cgi: CgiConfig,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// Longest silence from the application while a response is awaited or streamed.
    pub read_timeout: Duration,
    /// Longest time to write one chunk of the request.
    pub write_timeout: Duration,
    /// Ask the application to keep the connection open (`FCGI_KEEP_CONN`) and pool it.
    pub keep_conn: bool,
    /// Most idle connections kept for reuse. With php-fpm keep this well below the number of
    /// children: each open connection holds one child, busy or not, until it is closed.
    pub max_idle_connections: usize,
    /// An idle connection is closed this long after it was last used, by a timer, whether or
    /// not another request comes (an idle connection holds a php-fpm child).
    pub idle_timeout: Duration,
    /// Check that `SCRIPT_FILENAME` is a regular file (following symlinks, as the application
    /// will) before connecting, and fail with [`ErrorKind::ScriptNotFound`](crate::ErrorKind)
    /// otherwise. Only meaningful when the document root is on this machine's filesystem
    /// exactly as the application sees it; off by default.
    pub check_script: bool,
    /// Largest CGI header block accepted at the start of `STDOUT`.
    pub max_header_size: usize,
    /// Most response body bytes buffered while the request body is still being sent; beyond
    /// it the client stops reading until the upload is done.
    pub max_early_body: usize,
    /// What to do when the response is dropped before it ended.
    pub on_client_abort: ClientAbort,
    /// Where a request body of unknown length is kept until it is whole (it is sent with its
    /// `CONTENT_LENGTH`, which CGI needs).
    pub spool: SpoolConfig,
}

impl Default for FastCgiConfig {
    fn default() -> Self {
        Self {
            cgi: CgiConfig::default(),
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
            keep_conn: true,
            max_idle_connections: 1,
            idle_timeout: Duration::from_secs(30),
            check_script: false,
            max_header_size: 64 * 1024,
            max_early_body: 1024 * 1024,
            on_client_abort: ClientAbort::Close,
            spool: SpoolConfig::default(),
        }
    }
}
