//! A FastCGI client as a [`tower_service::Service`]: an `http::Request` goes in, the
//! application's `http::Response` comes out, with the request body streamed to `STDIN` and
//! `STDOUT` streamed back as the response body.
//!
//! # Where it sits
//!
//! In Director a request travels listener → service tree (error mapping, router, cache,
//! X-Sendfile) → cluster service (bucket, scheduler, retries) → **backend transport**. For
//! FastCGI backends that transport is a [`FastCgiService`], one per backend address. The crate is
//! generic: it knows nothing of clusters or schedulers and can serve any Tower application.
//!
//! Transport failures are returned as [`Error`] values, never as 5xx responses: the embedding
//! application's single error layer maps them (see [`ErrorKind`] for the intended statuses, and
//! [`Error::request_sent`] for whether a retry elsewhere is safe). A failure after the response
//! head was returned ends the body stream with an [`Error`].
//!
//! # Layout
//!
//! * [`proto`]: the FastCGI 1.0 record layer: constants, record framing and padding
//!   (two-phase parse), and [`proto::params`], the name-value pair encoding. Pure, property-tested.
//! * [`cgi`]: CGI/1.1 variables from a request head ([`cgi::build_params`], with
//!   [`CgiContext`] from the request extensions and [`CgiConfig`] per cluster; every name sent
//!   once, no header standing in for a variable Director sets, control bytes in the decoded
//!   path refused) and the response header block parser ([`cgi::parse_response_head`]:
//!   `Status:`, `Location:`, local redirects). Pure, property-tested.
//! * `conn`: one socket (TCP or UNIX) with its read buffer; connect, read and write with
//!   timeouts, writing while reading so neither peer can block the other.
//! * `pool`: idle connections kept after `END_REQUEST` when `KEEP_CONN` was negotiated, and
//!   closed by a timer at `idle_timeout` (each holds an application worker).
//! * `exchange`: one request: `BEGIN_REQUEST`, `PARAMS`, streamed `STDIN`, then the header block;
//!   client-abort handling when the caller goes away.
//! * `body`: [`ResponseBody`], the `'static` streaming `STDOUT` that owns the connection.
//! * `service`: [`FastCgiService`] and its [`ResponseFuture`].
//! * [`spool`]: a request body of unknown length read whole (memory, then an unlinked
//!   temporary file) so it can be sent with its `CONTENT_LENGTH`.
//! * `config`: [`FastCgiConfig`] and [`ClientAbort`].
//! * `probe`: [`probe`], the health probe of spec 7.5, as a plain async function.
//! * `error`: [`Error`] and [`ErrorKind`].
//! * [`test_util`] (feature `test-util`): [`test_util::FakeResponder`], a scriptable fake
//!   application that writes records byte for byte.
//!
//! # Example
//!
//! ```
//! use director_fastcgi::test_util::{FakeResponder, Script};
//! use director_fastcgi::{FastCgiConfig, FastCgiService};
//! use http_body_util::BodyExt;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let app = FakeResponder::tcp(Script::respond("Content-Type: text/plain\r\n\r\nhello")).await?;
//! let client = FastCgiService::new(app.addr(), FastCgiConfig::default());
//!
//! let request = http::Request::get("/index.php?x=1").body(http_body_util::Empty::<bytes::Bytes>::new())?;
//! let response = client.oneshot(request).await?;
//! assert_eq!(response.status(), 200);
//! assert_eq!(response.into_body().collect().await?.to_bytes(), "hello");
//! assert_eq!(app.requests()[0].param("QUERY_STRING"), Some("x=1"));
//! # Ok(())
//! # }
//! ```

mod body;
pub mod cgi;
mod config;
mod conn;
mod error;
mod exchange;
mod pool;
mod probe;
pub mod proto;
mod service;
pub mod spool;

#[cfg(any(test, feature = "test-util"))]
pub mod test_util;

pub use body::ResponseBody;
pub use cgi::{CgiConfig, CgiContext, LocalRedirect, RefusedRequest, ScriptMapping};
pub use config::{ClientAbort, FastCgiConfig};
pub use conn::FastCgiAddr;
pub use error::{BoxError, Error, ErrorKind};
pub use probe::{ProbeConfig, ProbeOutcome, probe};
pub use service::{FastCgiService, ResponseFuture};
pub use spool::{SpoolConfig, SpooledBody};
