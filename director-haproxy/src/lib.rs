//! `director-haproxy`: HAProxy-compatible statistics, monitor page and runtime socket.
//!
//! Tools built for HAProxy (exporters, dashboards, `hatop`, scripts around `socat`) work with
//! Director through this crate. It sits beside the JSON API on the admin listener (see
//! `ARCHITECTURE.md`): it reads the cluster registry and the counters `director-core` keeps as
//! atomics, and changes backends only through the small [`Control`] trait.
//!
//! # Layout
//!
//! - [`report`]: one [`Row`](report::Row) per listener (`FRONTEND`), per backend (server) and
//!   per cluster (`BACKEND`), in HAProxy 2.6's columns ([`HEADER`]); status words as HAProxy
//!   writes them.
//! - [`csv`]: the CSV rendering shared by `/haproxy?stats;csv` and `show stat`.
//! - [`html`]: the HTML stats page.
//! - [`service`]: [`StatsService`], a Tower service for the stats and monitor URLs.
//! - [`control`]: [`Control`], how runtime commands change backends, and [`RegistryControl`].
//! - [`runtime`]: [`Runtime`], the runtime API's commands and HAProxy's answers.
//! - [`socket`]: the UNIX socket serving [`Runtime`].
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use director_core::{registry::{Registry, Snapshot}, stats::FrontendStats};
//! use director_haproxy::{Control, RegistryControl, Runtime, Source, StatsService};
//!
//! let registry = Arc::new(Registry::new(Snapshot::default()));
//! let frontend = Arc::new(FrontendStats::new("127.0.0.1:8080"));
//! let source = Source::new(registry.clone(), vec![frontend]);
//!
//! // The CSV page, as the admin listener serves it.
//! let stats = StatsService::new(source.clone());
//! let page = stats.respond(&http::Method::GET, "/haproxy", Some("stats;csv"));
//! assert_eq!(page.status(), 200);
//!
//! // The runtime API, as the UNIX socket serves it.
//! let control: Arc<dyn Control> = Arc::new(RegistryControl::new(registry));
//! let runtime = Runtime::new(source, control);
//! let (answer, _) = runtime.execute("disable server app/web1");
//! assert_eq!(answer, "No such backend.\n\n");
//! ```

pub mod control;
pub mod csv;
pub mod html;
pub mod report;
pub mod runtime;
pub mod service;
pub mod socket;

pub use control::{Control, ControlError, RegistryControl};
pub use director_core::backend::AdminState;
pub use report::{HEADER, Report, Source};
pub use runtime::Runtime;
pub use service::StatsService;
