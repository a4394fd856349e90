//! `director-api`: Director's JSON admin API, its web UI and the traffic history behind it.
//!
//! This crate sits on the admin listener, beside `director-haproxy`, and reads the cluster
//! registry of `director-core` (see `ARCHITECTURE.md`). The JSON API itself lands with the
//! admin-API issue; what is here now:
//!
//! - [`ui`]: the web interface (overview and live pages), embedded in the binary.
//! - [`history`]: a once-a-second sampler of every cluster, bucket and backend, and the
//!   15-minute ring buffer the live page reads (`GET /history`).
//!
//! ```
//! use director_api::{history::History, ui::Ui};
//!
//! let history = History::new(900, std::time::Duration::from_secs(1));
//! let (_pages, _data) = (Ui::new(), history.service());
//! assert!(history.is_empty());
//! ```

pub mod history;
pub mod ui;
