//! Logging: human-readable lines by default, JSON lines on request, to standard error.
//!
//! The filter comes from `RUST_LOG` when set, else from `[server] log-level`. Access log lines
//! use the target `director::access`, so `RUST_LOG=director::access=off` silences them alone.

use tracing_subscriber::EnvFilter;

use crate::config::AccessLogFormat;

/// Installs the global subscriber (once per process; later calls do nothing).
pub fn init(format: AccessLogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        AccessLogFormat::Json => builder.json().flatten_event(true).try_init(),
        AccessLogFormat::Human | AccessLogFormat::Off => builder.try_init(),
    };
}
