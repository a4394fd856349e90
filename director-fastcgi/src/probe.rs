//! The FastCGI health probe (spec 7.5): one small `GET` straight over the protocol, without a
//! pool, whose CGI status tells whether the application serves.
//!
//! Unlike x0 it ends the request body with an empty `STDIN` record (quirk 22: php-fpm waits for
//! it) and sends `SERVER_PROTOCOL=HTTP/1.1` (quirk 26). A health checker calls [`probe`] on its
//! schedule and feeds the outcome to its rise/fall logic.

use std::time::Duration;

use bytes::BytesMut;
use http::StatusCode;

use crate::cgi::{self, http_var_name};
use crate::conn::{Conn, FastCgiAddr};
use crate::error::{Error, ErrorKind};
use crate::exchange::{self, REQUEST_ID};
use crate::proto::{self, RecordType, Role, params};

/// What to send and how long to wait.
#[derive(Clone, Debug)]
pub struct ProbeConfig {
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// Longest silence while waiting for the response.
    pub read_timeout: Duration,
    /// Longest time to write the request.
    pub write_timeout: Duration,
    /// `SCRIPT_NAME` and `REQUEST_URI`.
    pub request_path: String,
    /// `SCRIPT_FILENAME`, the script the application runs (sent only when set).
    pub script_filename: Option<String>,
    /// `SERVER_NAME`.
    pub server_name: String,
    /// `SERVER_SOFTWARE`.
    pub server_software: String,
    /// Request headers, sent as `HTTP_*` (e.g. `Host`, `X-Director-Health-Check`).
    pub headers: Vec<(String, String)>,
    /// Largest CGI header block accepted.
    pub max_header_size: usize,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            request_path: "/".to_owned(),
            script_filename: None,
            server_name: "localhost".to_owned(),
            server_software: concat!("director/", env!("CARGO_PKG_VERSION")).to_owned(),
            headers: Vec::new(),
            max_header_size: 64 * 1024,
        }
    }
}

/// The answer to a probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeOutcome {
    /// The CGI status: from `Status:`, else 302 for a `Location:`, else 200 when the
    /// application exited with status 0 (php-fpm rarely sends `Status: 200`), else 500.
    pub status: StatusCode,
    /// The application's exit status from `END_REQUEST`.
    pub app_status: u32,
}

impl ProbeOutcome {
    /// Whether the application answered with a 2xx status.
    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }
}

/// Probes the application at `addr` once.
///
/// `Err` means the application is unreachable or broken at the protocol level (refused,
/// timeout, closed before `END_REQUEST`, overloaded); `Ok` carries the status it answered with,
/// which the caller compares with what it expects.
pub async fn probe(addr: &FastCgiAddr, config: &ProbeConfig) -> Result<ProbeOutcome, Error> {
    let mut conn = Conn::connect(addr, config.connect_timeout).await?;

    let mut pairs: Vec<(String, String)> = vec![
        ("GATEWAY_INTERFACE".into(), "CGI/1.1".into()),
        ("SERVER_NAME".into(), config.server_name.clone()),
        ("SERVER_PORT".into(), "0".into()),
        ("SERVER_PROTOCOL".into(), "HTTP/1.1".into()),
        ("SERVER_SOFTWARE".into(), config.server_software.clone()),
        ("REQUEST_METHOD".into(), "GET".into()),
        ("REQUEST_URI".into(), config.request_path.clone()),
        ("SCRIPT_NAME".into(), config.request_path.clone()),
        ("QUERY_STRING".into(), String::new()),
        ("REDIRECT_STATUS".into(), "200".into()),
    ];
    if let Some(file) = &config.script_filename {
        pairs.push(("SCRIPT_FILENAME".into(), file.clone()));
    }
    for (name, value) in &config.headers {
        pairs.push((http_var_name(name), value.clone()));
    }

    let mut out = BytesMut::new();
    proto::encode_begin_request(REQUEST_ID, Role::Responder, 0, &mut out);
    let encoded = params::encode_pairs(pairs.iter().map(|(k, v)| (k, v)));
    proto::encode_stream(RecordType::Params, REQUEST_ID, &encoded, &mut out);
    proto::encode_record(RecordType::Params, REQUEST_ID, &[], &mut out);
    proto::encode_record(RecordType::Stdin, REQUEST_ID, &[], &mut out);
    conn.write_all(&mut out, config.write_timeout)
        .await
        .map_err(|e| e.sent(true))?;

    let mut stdout = BytesMut::new();
    let mut status = None;
    loop {
        let Some(rec) = conn
            .read_record(config.read_timeout)
            .await
            .map_err(|e| e.sent(true))?
        else {
            return Err(
                Error::new(ErrorKind::ClosedEarly, "probe: closed before END_REQUEST").sent(true),
            );
        };
        match rec.record_type {
            RecordType::Stdout if rec.request_id == REQUEST_ID => {
                if status.is_none() {
                    stdout.extend_from_slice(&rec.content);
                    match cgi::parse_response_head(&stdout, config.max_header_size) {
                        Ok(Some((head, _))) => {
                            status = Some(head.status);
                            // The body is of no interest; stop buffering.
                            stdout = BytesMut::new();
                        }
                        Ok(None) => {}
                        Err(e) => {
                            return Err(Error::new(
                                ErrorKind::Protocol,
                                "probe: bad CGI header block",
                            )
                            .with_source(e)
                            .sent(true));
                        }
                    }
                }
            }
            RecordType::EndRequest if rec.request_id == REQUEST_ID => {
                let end = exchange::end_request(&rec).map_err(|e| e.sent(true))?;
                exchange::check_end(end).map_err(|e| e.sent(true))?;
                // parse_response_head already maps "no Status" to 200, so only an app that
                // sent no header block at all falls back to its exit status.
                let status = status.unwrap_or(if end.app_status == 0 {
                    StatusCode::OK
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                });
                return Ok(ProbeOutcome {
                    status,
                    app_status: end.app_status,
                });
            }
            _ => exchange::log_record(&rec, addr),
        }
    }
}
