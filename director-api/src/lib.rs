//! `director-api`: Director's JSON admin API, x0's routes and documents over the cluster store.
//!
//! It sits on the admin listener (beside `director-haproxy` and `/metrics`, see
//! `ARCHITECTURE.md`), reads clusters from the cluster store and changes them only through it,
//! so every accepted change is validated, persisted and applied the same way as a config file.
//! The binary mounts [`Api`] under a prefix and puts [`AuthLayer`] in front of the admin router.
//! The reference with a curl example per route is `docs/api.md`.
//!
//! # Layout
//!
//! - [`auth`]: bearer tokens (full and read-only), the `director-token` cookie, 401/403.
//! - `api`: the service: routes, handlers, status codes.
//! - `params`: form, JSON and query parameters and their typed readers.
//! - `edit`: parameters onto `ClusterConfig`, `BackendConfig` and `BucketConfig`.
//! - `render`: the JSON documents (x0's key names and counter shapes).
//! - `error` and `response`: JSON errors and headers.
//! - [`extras`]: the cache operations the binary plugs in.
//! - [`ui`]: the web interface (overview and live pages), embedded in the binary.
//! - [`history`]: a once-a-second sampler of every cluster, bucket and backend, and the
//!   15-minute ring buffer the live page reads (`GET /history`).
//!
//! # Example
//!
//! ```
//! use std::{collections::BTreeMap, sync::Arc};
//! use director_api::{Api, AuthLayer, NoExtras};
//! use director_core::{config::ProxyConfig, store::{Plain, Store}};
//! use tower::{Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // No clusters yet; dynamic ones are written to `dir`.
//! let dir = tempfile::tempdir().unwrap();
//! let store = Store::new(ProxyConfig::default(), BTreeMap::new(), Some(dir.path().into()), Arc::new(Plain));
//! let store = Arc::new(store.unwrap());
//! let api = AuthLayer::new(Some("s3cret"), None)
//!     .layer(Api::new(store, Arc::new(NoExtras)).prefix("/api"));
//!
//! let request = |token: &str| {
//!     http::Request::put("/api/app?queue-limit=10")
//!         .header("authorization", format!("Bearer {token}"))
//!         .body(director_core::body::empty())
//!         .unwrap()
//! };
//! let refused = api.clone().oneshot(request("guess")).await.unwrap();
//! assert_eq!(refused.status(), 401);
//! let created = api.oneshot(request("s3cret")).await.unwrap();
//! assert_eq!(created.status(), 201);
//! assert_eq!(created.headers()["location"], "/api/app");
//! # }
//! ```

mod api;
pub mod auth;
mod edit;
mod error;
pub mod extras;
pub mod history;
mod params;
mod render;
mod response;
pub mod ui;

// The cluster store lives in the core; handlers reach it as `crate::store`.
use director_core::store;

pub use api::{Api, DEFAULT_BODY_LIMIT};
pub use auth::{Auth, AuthLayer, TOKEN_COOKIE};
pub use extras::{Extras, NoExtras};
