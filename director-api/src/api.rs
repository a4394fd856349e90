//! The API service: routes, handlers, and the status profile.
//!
//! Paths are taken after the prefix and split on `/`, empty segments dropped (x0), so trailing
//! and doubled slashes do not matter. Every change goes through the cluster store
//! ([`Store::update`] and friends, on a blocking thread), which validates it by building,
//! persists it and swaps it in; parameters are checked on a copy first, so a bad one answers
//! 400 before anything else is tried.
//!
//! Status profile (x0's classic codes, with the rewrite's routes; see `docs/api.md`):
//! 200 reads; 201 + `Location` creates (`PUT`); 202 updates (`POST`) and a backend `DELETE`,
//! which drains before the backend goes; 204 `LOCK`, `UNLOCK`, and a cluster or bucket `DELETE`.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    sync::Arc,
    task::{Context, Poll},
    time::UNIX_EPOCH,
};

use bytes::Bytes;
use director_core::{
    backend::AdminState,
    body::{Body, BoxError},
    config::{ClusterConfig, ConfigError},
};
use futures_util::future::BoxFuture;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::json;

use crate::{
    Extras, edit,
    error::ApiError,
    params::{BodyKind, Params},
    render,
    response::Reply,
    store::{ClusterEntry, Store, StoreError},
};

/// The default limit of a request body (64 KiB); larger ones get 413.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

const ALLOW_INDEX: &str = "GET, HEAD";
const ALLOW_CLUSTER: &str = "GET, HEAD, POST, PUT, DELETE, LOCK, UNLOCK";
const ALLOW_COLLECTION: &str = "GET, HEAD, PUT";
const ALLOW_BACKEND: &str = "GET, HEAD, POST, PUT, DELETE, LOCK, UNLOCK";
const ALLOW_BUCKET: &str = "GET, HEAD, POST, PUT, DELETE";
const ALLOW_CACHE: &str = "POST";

/// The JSON admin API as a `tower::Service`; see the [crate docs](crate).
#[derive(Clone, Debug)]
pub struct Api {
    store: Arc<Store>,
    extras: Arc<dyn Extras>,
    prefix: Arc<str>,
    body_limit: usize,
}

// === impl Api ===

impl Api {
    /// The API over `store`, with `extras` for the cache routes ([`crate::NoExtras`] for none),
    /// mounted at `/` with a 64 KiB body limit.
    pub fn new(store: Arc<Store>, extras: Arc<dyn Extras>) -> Self {
        Api {
            store,
            extras,
            prefix: Arc::from(""),
            body_limit: DEFAULT_BODY_LIMIT,
        }
    }

    /// Serves under `prefix` (such as `/api`); other paths get 404.
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = Arc::from(prefix.trim_end_matches('/'));
        self
    }

    /// Refuses request bodies larger than `bytes` with 413.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Answers one request.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let head = req.method() == Method::HEAD;
        let reply = match self.route(req).await {
            Ok(reply) => reply,
            Err(e) => {
                if e.status.is_server_error() {
                    tracing::error!(error = %e.message, detail = %e.detail, "admin API");
                }
                e.into_reply()
            }
        };
        reply.into_response(head)
    }

    fn path<'a>(&self, path: &'a str) -> Option<&'a str> {
        let rest = path.strip_prefix(&*self.prefix)?;
        (rest.is_empty() || rest.starts_with('/')).then_some(rest)
    }

    async fn route<B>(&self, req: Request<B>) -> Result<Reply, ApiError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let path = req.uri().path().to_owned();
        let Some(rest) = self.path(&path) else {
            return Err(ApiError::not_found(format!(
                "{path} is not under the API prefix"
            )));
        };
        let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        let method = req.method().clone();
        let is = |m: &Method| method == *m;
        let read = is(&Method::GET) || is(&Method::HEAD);
        let lock = method.as_str() == "LOCK";
        let unlock = method.as_str() == "UNLOCK";
        match segments.as_slice() {
            [] if read => self.index().await,
            [] => Err(ApiError::method_not_allowed(ALLOW_INDEX)),
            ["_status"] if read => self.status().await,
            ["_status"] => Err(ApiError::method_not_allowed(ALLOW_INDEX)),
            [c] => {
                let c = (*c).to_owned();
                if read {
                    self.show_cluster(&c).await
                } else if is(&Method::POST) {
                    let if_match = if_match(req.headers());
                    let params = self.params(req).await?;
                    self.update_cluster(&c, if_match, params).await
                } else if is(&Method::PUT) {
                    let if_match = if_match(req.headers());
                    let params = self.params(req).await?;
                    if edit::names_backend_address(&params) {
                        // x0's documented backend create (`PUT /:director` with hostname and
                        // port), and its on-demand cluster (`PUT /:name?hostname=&port=`).
                        self.put_cluster_backend(&c, if_match, params).await
                    } else {
                        self.create_cluster(&c, params).await
                    }
                } else if is(&Method::DELETE) {
                    self.delete_cluster(&c, if_match(req.headers())).await
                } else if lock || unlock {
                    self.enable_cluster(&c, unlock).await
                } else {
                    Err(ApiError::method_not_allowed(ALLOW_CLUSTER))
                }
            }
            [c, "backends"] => {
                let c = (*c).to_owned();
                if read {
                    self.list_backends(&c).await
                } else if is(&Method::PUT) {
                    let if_match = if_match(req.headers());
                    let params = self.params(req).await?;
                    self.create_backend(&c, None, if_match, params).await
                } else {
                    Err(ApiError::method_not_allowed(ALLOW_COLLECTION))
                }
            }
            [c, "backends", b] => self.backend_route(c, b, req).await,
            [c, "buckets"] => {
                let c = (*c).to_owned();
                if read {
                    self.show_bucket(&c, "root").await
                } else if is(&Method::PUT) {
                    let if_match = if_match(req.headers());
                    let params = self.params(req).await?;
                    self.create_bucket(&c, None, if_match, params).await
                } else {
                    Err(ApiError::method_not_allowed(ALLOW_COLLECTION))
                }
            }
            [c, "buckets", k] => {
                let (c, k) = ((*c).to_owned(), (*k).to_owned());
                if read {
                    self.show_bucket(&c, &k).await
                } else if is(&Method::PUT) {
                    let if_match = if_match(req.headers());
                    let params = self.params(req).await?;
                    self.create_bucket(&c, Some(k), if_match, params).await
                } else if is(&Method::POST) {
                    let if_match = if_match(req.headers());
                    let params = self.params(req).await?;
                    self.update_bucket(&c, &k, if_match, params).await
                } else if is(&Method::DELETE) {
                    self.delete_bucket(&c, &k, if_match(req.headers())).await
                } else {
                    Err(ApiError::method_not_allowed(ALLOW_BUCKET))
                }
            }
            // x0's documented shape, `/:director/:backend`, for the same handlers. The
            // collection names win: a backend called `backends` or `buckets` is reached as
            // `/:cluster/backends/:backend` only.
            [c, b] => self.backend_route(c, b, req).await,
            [c, "cache", op @ ("purge" | "ban")] => {
                if !is(&Method::POST) {
                    return Err(ApiError::method_not_allowed(ALLOW_CACHE));
                }
                let (c, op) = ((*c).to_owned(), *op);
                let params = self.params(req).await?;
                self.cache(&c, op, params).await
            }
            _ => Err(ApiError::not_found(format!("no API route {rest:?}"))),
        }
    }

    /// One backend: `/:cluster/backends/:backend`, and x0's documented `/:cluster/:backend`.
    async fn backend_route<B>(&self, c: &str, b: &str, req: Request<B>) -> Result<Reply, ApiError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let method = req.method().clone();
        let (c, b) = (c.to_owned(), b.to_owned());
        match method.as_str() {
            "GET" | "HEAD" => self.show_backend(&c, &b).await,
            "PUT" => {
                let if_match = if_match(req.headers());
                let params = self.params(req).await?;
                self.create_backend(&c, Some(b), if_match, params).await
            }
            "POST" => {
                let if_match = if_match(req.headers());
                let params = self.params(req).await?;
                self.update_backend(&c, &b, if_match, params).await
            }
            "DELETE" => self.delete_backend(&c, &b, if_match(req.headers())).await,
            "LOCK" => self.enable_backend(&c, &b, false).await,
            "UNLOCK" => self.enable_backend(&c, &b, true).await,
            _ => Err(ApiError::method_not_allowed(ALLOW_BACKEND)),
        }
    }

    /// The body (form or JSON, at most `body_limit` bytes) and the query string.
    async fn params<B>(&self, req: Request<B>) -> Result<Params, ApiError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is larger than {} bytes", self.body_limit),
                json!({ "limit": self.body_limit }),
            )
        };
        let (parts, body) = req.into_parts();
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.body_limit as u64) {
            return Err(too_large());
        }
        let bytes = http_body_util::Limited::new(body, self.body_limit)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    too_large()
                } else {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        format!("cannot read the request body: {e}"),
                        serde_json::Value::Null,
                    )
                }
            })?
            .to_bytes();
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("(not text)"));
        // An empty body needs no particular type (curl -X PUT sends none).
        let kind = if bytes.iter().all(u8::is_ascii_whitespace) {
            BodyKind::Form
        } else {
            BodyKind::of(content_type)?
        };
        Params::parse(kind, &bytes, parts.uri.query())
    }

    /// Runs a store call on a blocking thread (the store writes files).
    async fn store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| ApiError::internal(format!("the store task failed: {e}")))?
            .map_err(ApiError::from)
    }

    async fn entry(&self, cluster: &str) -> Result<ClusterEntry, ApiError> {
        let name = cluster.to_owned();
        self.store(move |s| {
            s.get(&name)
                .ok_or_else(|| StoreError::NotFound(format!("no cluster {name:?}")))
        })
        .await
    }

    fn location(&self, tail: &str) -> String {
        format!("{}/{tail}", self.prefix)
    }

    // --- index and status ---

    async fn index(&self) -> Result<Reply, ApiError> {
        let entries = self.store(|s| Ok(s.list())).await?;
        let docs: BTreeMap<String, render::ClusterDoc> = entries
            .iter()
            .map(|e| (e.name.clone(), render::cluster(e, &*self.extras)))
            .collect();
        Ok(Reply::json(StatusCode::OK, &docs))
    }

    async fn status(&self) -> Result<Reply, ApiError> {
        let (entries, error) = self
            .store(|s| Ok((s.list(), s.last_reload_error())))
            .await?;
        let dynamic = entries.iter().filter(|e| e.dynamic).count();
        let error = error.map(|e| {
            json!({
                "at": httpdate::fmt_http_date(e.at),
                "at-unix": e.at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
                "message": e.message,
            })
        });
        Ok(Reply::json(
            StatusCode::OK,
            &json!({
                "clusters": entries.len(),
                "static": entries.len() - dynamic,
                "dynamic": dynamic,
                "last-reload-error": error,
            }),
        ))
    }

    // --- clusters ---

    fn cluster_reply(&self, status: StatusCode, entry: &ClusterEntry) -> Reply {
        Reply::json(status, &render::cluster(entry, &*self.extras))
            .header(header::ETAG, &etag(entry))
    }

    async fn show_cluster(&self, c: &str) -> Result<Reply, ApiError> {
        let entry = self.entry(c).await?;
        Ok(self.cluster_reply(StatusCode::OK, &entry))
    }

    async fn update_cluster(
        &self,
        c: &str,
        if_match: Option<String>,
        params: Params,
    ) -> Result<Reply, ApiError> {
        let entry = self.entry(c).await?;
        // Check every value before anything else (x0 answers 400 before 403 too).
        edit::apply_cluster(&params, &mut entry.config.clone())?;
        let if_match = pick_if_match(if_match, &entry);
        let name = c.to_owned();
        let updated = if !entry.dynamic && params.only(&["enabled"]) {
            // Static clusters may be enabled and disabled (at runtime only).
            match params.get("enabled") {
                Some(p) => {
                    let on = p.bool()?;
                    self.store(move |s| s.set_cluster_enabled(&name, on))
                        .await?
                }
                None => entry,
            }
        } else {
            self.store(move |s| {
                s.update(&name, if_match.as_deref(), move |config| {
                    edit::apply_cluster(&params, config).map_err(into_store)
                })
            })
            .await?
        };
        Ok(self.cluster_reply(StatusCode::ACCEPTED, &updated))
    }

    /// Refuses a name a new cluster cannot have.
    fn check_new_cluster(&self, c: &str) -> Result<(), ApiError> {
        check_name(c, "cluster")?;
        if c.starts_with('_') {
            return Err(ApiError::field(
                "name",
                "names beginning with '_' are reserved for the API",
            ));
        }
        Ok(())
    }

    async fn create_cluster(&self, c: &str, mut params: Params) -> Result<Reply, ApiError> {
        // The name in the path wins over a `name` parameter.
        params.take("name");
        self.check_new_cluster(c)?;
        let mut config: ClusterConfig = edit::default_cluster();
        edit::apply_cluster(&params, &mut config)?;
        let name = c.to_owned();
        let entry = self.store(move |s| s.create(&name, config)).await?;
        Ok(self
            .cluster_reply(StatusCode::CREATED, &entry)
            .header(header::LOCATION, &self.location(c)))
    }

    /// `PUT /:cluster` with a backend's address (x0's documented shape). On an existing cluster
    /// it creates the backend, as `PUT /:cluster/backends` does (the name is the `name`
    /// parameter). A missing cluster is created with this backend as its first member (x0's
    /// on-demand `PUT /director/:name?hostname=&port=`): the backend's parameters go to the
    /// backend (named by `name`, or after the cluster), the others to the cluster.
    async fn put_cluster_backend(
        &self,
        c: &str,
        if_match: Option<String>,
        params: Params,
    ) -> Result<Reply, ApiError> {
        let name = c.to_owned();
        if self.store(move |s| Ok(s.get(&name).is_some())).await? {
            return self.create_backend(c, None, if_match, params).await;
        }
        // A precondition on the cluster (even `*`) fails when there is none (RFC 9110 13.1.1).
        if if_match.is_some() {
            return Err(ApiError::conflict(format!(
                "If-Match: cluster {c:?} does not exist"
            )));
        }
        let (mut backend_params, cluster_params) = params.partition(edit::BACKEND_KEYS);
        if backend_params.get("name").is_none() {
            backend_params.set_text("name", c);
        }
        let backend_name = new_member_name(None, &mut backend_params, "backend")?;
        self.check_new_cluster(c)?;
        let mut config: ClusterConfig = edit::default_cluster();
        edit::apply_cluster(&cluster_params, &mut config)?;
        config
            .backends
            .push(edit::new_backend(&backend_name, &backend_params)?);
        let name = c.to_owned();
        let entry = self.store(move |s| s.create(&name, config)).await?;
        Ok(self
            .cluster_reply(StatusCode::CREATED, &entry)
            .header(header::LOCATION, &self.location(c)))
    }

    async fn delete_cluster(&self, c: &str, if_match: Option<String>) -> Result<Reply, ApiError> {
        let entry = self.entry(c).await?;
        let if_match = pick_if_match(if_match, &entry);
        let name = c.to_owned();
        self.store(move |s| s.delete(&name, if_match.as_deref()))
            .await?;
        Ok(Reply::empty(StatusCode::NO_CONTENT))
    }

    async fn enable_cluster(&self, c: &str, enabled: bool) -> Result<Reply, ApiError> {
        let name = c.to_owned();
        let entry = self
            .store(move |s| s.set_cluster_enabled(&name, enabled))
            .await?;
        Ok(Reply::empty(StatusCode::NO_CONTENT).header(header::ETAG, &etag(&entry)))
    }

    // --- backends ---

    async fn list_backends(&self, c: &str) -> Result<Reply, ApiError> {
        let entry = self.entry(c).await?;
        let docs: Vec<_> = entry
            .live
            .backends()
            .iter()
            .map(|b| render::member(&entry, b))
            .collect();
        Ok(Reply::json(StatusCode::OK, &docs).header(header::ETAG, &etag(&entry)))
    }

    fn backend_reply(
        &self,
        status: StatusCode,
        entry: &ClusterEntry,
        b: &str,
    ) -> Result<Reply, ApiError> {
        let live = entry.live.backend(b).ok_or_else(|| {
            ApiError::not_found(format!("no backend {b:?} in cluster {:?}", entry.name))
        })?;
        Ok(Reply::json(status, &render::member(entry, &live)).header(header::ETAG, &etag(entry)))
    }

    async fn show_backend(&self, c: &str, b: &str) -> Result<Reply, ApiError> {
        let entry = self.entry(c).await?;
        self.backend_reply(StatusCode::OK, &entry, b)
    }

    async fn create_backend(
        &self,
        c: &str,
        path_name: Option<String>,
        if_match: Option<String>,
        mut params: Params,
    ) -> Result<Reply, ApiError> {
        let name = new_member_name(path_name, &mut params, "backend")?;
        let entry = self.entry(c).await?;
        if entry.config.backends.iter().any(|b| b.name == name)
            || entry.live.backend(&name).is_some()
        {
            return Err(ApiError::conflict(format!(
                "backend {name:?} exists in cluster {c:?}"
            )));
        }
        let backend = edit::new_backend(&name, &params)?;
        let entry = self
            .add_member(
                c,
                pick_if_match(if_match, &entry),
                "backend",
                &name,
                |config, name| config.backends.iter().any(|b| b.name == name),
                move |config| config.backends.push(backend),
            )
            .await?;
        Ok(self
            .backend_reply(StatusCode::CREATED, &entry, &name)?
            .header(
                header::LOCATION,
                &self.location(&format!("{c}/backends/{name}")),
            ))
    }

    /// Adds a member (backend or bucket) to cluster `c` through the store: `exists` refuses a
    /// name taken meanwhile (409), `add` puts it into the cluster's config. `if_match` is the
    /// client's precondition, as [`pick_if_match`] read it.
    async fn add_member(
        &self,
        c: &str,
        if_match: Option<String>,
        what: &'static str,
        name: &str,
        exists: fn(&ClusterConfig, &str) -> bool,
        add: impl FnOnce(&mut ClusterConfig) + Send + 'static,
    ) -> Result<ClusterEntry, ApiError> {
        let (cluster, name) = (c.to_owned(), name.to_owned());
        self.store(move |s| {
            s.update(&cluster, if_match.as_deref(), move |config| {
                if exists(config, &name) {
                    return Err(StoreError::Conflict(format!("{what} {name:?} exists")));
                }
                add(config);
                Ok(())
            })
        })
        .await
    }

    async fn update_backend(
        &self,
        c: &str,
        b: &str,
        if_match: Option<String>,
        params: Params,
    ) -> Result<Reply, ApiError> {
        let entry = self.entry(c).await?;
        let Some(current) = entry.config.backends.iter().find(|x| x.name == b) else {
            return Err(ApiError::not_found(format!(
                "no backend {b:?} in cluster {c:?}"
            )));
        };
        edit::apply_backend(&params, &mut current.clone())?;
        let if_match = pick_if_match(if_match, &entry);
        let (cluster, name) = (c.to_owned(), b.to_owned());
        let weight = params.get("weight").map(|p| p.weight()).transpose()?;
        // HAProxy's operator state: given with other parameters, it is applied after them.
        let state = match params.get("state") {
            Some(p) => Some(match p.choice(&["ready", "drain", "maint"])?.as_str() {
                "drain" => AdminState::Drain,
                "maint" => AdminState::Maint,
                _ => AdminState::Ready,
            }),
            None => None,
        };
        let mut entry = if !entry.dynamic && params.only(&["enabled", "name", "state"]) {
            match params.get("enabled") {
                Some(p) => {
                    let on = p.bool()?;
                    let (cluster, name) = (cluster.clone(), name.clone());
                    self.store(move |s| s.set_backend_enabled(&cluster, &name, on))
                        .await?
                }
                None => entry,
            }
        } else {
            let name = name.clone();
            let cluster = cluster.clone();
            self.store(move |s| {
                s.update(&cluster, if_match.as_deref(), move |config| {
                    let backend = config
                        .backends
                        .iter_mut()
                        .find(|x| x.name == name)
                        .ok_or_else(|| StoreError::NotFound(format!("no backend {name:?}")))?;
                    edit::apply_backend(&params, backend).map_err(into_store)
                })
            })
            .await?
        };
        // A weight given replaces a runtime one (`set weight B/S 50%`) even when the
        // configured weight did not change.
        if let Some(w) = weight
            && let Some(live) = entry.live.backend(b)
            && live.weight() != w.get()
        {
            live.set_weight(w.get());
            entry.live.reschedule();
        }
        // A dynamic cluster's update above already wrote the state; a static cluster's is a
        // runtime switch.
        if let Some(state) = state
            && !entry.dynamic
        {
            entry = self
                .store(move |s| s.set_backend_state(&cluster, &name, state))
                .await?;
        }
        self.backend_reply(StatusCode::ACCEPTED, &entry, b)
    }

    async fn delete_backend(
        &self,
        c: &str,
        b: &str,
        if_match: Option<String>,
    ) -> Result<Reply, ApiError> {
        let entry = self.entry(c).await?;
        let Some(current) = entry.config.backends.iter().find(|x| x.name == b) else {
            return Err(match entry.live.backend(b) {
                Some(_) => ApiError::conflict(format!("backend {b:?} is already draining")),
                None => ApiError::not_found(format!("no backend {b:?} in cluster {c:?}")),
            });
        };
        if current.terminate_protection {
            return Err(ApiError::forbidden(format!(
                "backend {b:?} is terminate-protected; set terminate-protection=false first"
            )));
        }
        let if_match = pick_if_match(if_match, &entry);
        let (cluster, name) = (c.to_owned(), b.to_owned());
        let entry = self
            .store(move |s| {
                s.update(&cluster, if_match.as_deref(), move |config| {
                    config.backends.retain(|x| x.name != name);
                    Ok(())
                })
            })
            .await?;
        // Accepted: the backend drains and leaves once idle.
        Ok(Reply::empty(StatusCode::ACCEPTED).header(header::ETAG, &etag(&entry)))
    }

    async fn enable_backend(&self, c: &str, b: &str, enabled: bool) -> Result<Reply, ApiError> {
        let (cluster, name) = (c.to_owned(), b.to_owned());
        let entry = self
            .store(move |s| s.set_backend_enabled(&cluster, &name, enabled))
            .await?;
        Ok(Reply::empty(StatusCode::NO_CONTENT).header(header::ETAG, &etag(&entry)))
    }

    // --- buckets ---

    fn bucket_reply(
        &self,
        status: StatusCode,
        entry: &ClusterEntry,
        k: &str,
    ) -> Result<Reply, ApiError> {
        let id = entry.live.shaper().find(k).ok_or_else(|| {
            ApiError::not_found(format!("no bucket {k:?} in cluster {:?}", entry.name))
        })?;
        Ok(
            Reply::json(status, &render::bucket(&entry.live, id))
                .header(header::ETAG, &etag(entry)),
        )
    }

    async fn show_bucket(&self, c: &str, k: &str) -> Result<Reply, ApiError> {
        let entry = self.entry(c).await?;
        self.bucket_reply(StatusCode::OK, &entry, k)
    }

    async fn create_bucket(
        &self,
        c: &str,
        path_name: Option<String>,
        if_match: Option<String>,
        mut params: Params,
    ) -> Result<Reply, ApiError> {
        let name = new_member_name(path_name, &mut params, "bucket")?;
        let entry = self.entry(c).await?;
        if name == "root" || entry.config.buckets.iter().any(|k| k.name == name) {
            return Err(ApiError::conflict(format!(
                "bucket {name:?} exists in cluster {c:?}"
            )));
        }
        let bucket = edit::new_bucket(&name, &params)?;
        let entry = self
            .add_member(
                c,
                pick_if_match(if_match, &entry),
                "bucket",
                &name,
                |config, name| config.buckets.iter().any(|k| k.name == name),
                move |config| config.buckets.push(bucket),
            )
            .await?;
        Ok(self
            .bucket_reply(StatusCode::CREATED, &entry, &name)?
            .header(
                header::LOCATION,
                &self.location(&format!("{c}/buckets/{name}")),
            ))
    }

    async fn update_bucket(
        &self,
        c: &str,
        k: &str,
        if_match: Option<String>,
        params: Params,
    ) -> Result<Reply, ApiError> {
        let entry = self.entry(c).await?;
        if k == "root" {
            return Err(ApiError::forbidden(
                "the root bucket always has all of the cluster's capacity",
            ));
        }
        let Some(current) = entry.config.buckets.iter().find(|x| x.name == k) else {
            return Err(ApiError::not_found(format!(
                "no bucket {k:?} in cluster {c:?}"
            )));
        };
        edit::apply_bucket(&params, &mut current.clone())?;
        let if_match = pick_if_match(if_match, &entry);
        let (cluster, name) = (c.to_owned(), k.to_owned());
        let entry = self
            .store(move |s| {
                s.update(&cluster, if_match.as_deref(), move |config| {
                    let bucket = config
                        .buckets
                        .iter_mut()
                        .find(|x| x.name == name)
                        .ok_or_else(|| StoreError::NotFound(format!("no bucket {name:?}")))?;
                    edit::apply_bucket(&params, bucket).map_err(into_store)
                })
            })
            .await?;
        self.bucket_reply(StatusCode::ACCEPTED, &entry, k)
    }

    async fn delete_bucket(
        &self,
        c: &str,
        k: &str,
        if_match: Option<String>,
    ) -> Result<Reply, ApiError> {
        let entry = self.entry(c).await?;
        if k == "root" {
            return Err(ApiError::forbidden("the root bucket cannot be deleted"));
        }
        if !entry.config.buckets.iter().any(|x| x.name == k) {
            return Err(ApiError::not_found(format!(
                "no bucket {k:?} in cluster {c:?}"
            )));
        }
        if let Some(child) = entry
            .config
            .buckets
            .iter()
            .find(|x| x.parent.as_deref() == Some(k))
        {
            return Err(ApiError::conflict(format!(
                "bucket {k:?} has child bucket {:?}; delete that first",
                child.name
            )));
        }
        let if_match = pick_if_match(if_match, &entry);
        let (cluster, name) = (c.to_owned(), k.to_owned());
        let entry = self
            .store(move |s| {
                s.update(&cluster, if_match.as_deref(), move |config| {
                    config.buckets.retain(|x| x.name != name);
                    Ok(())
                })
            })
            .await?;
        Ok(Reply::empty(StatusCode::NO_CONTENT).header(header::ETAG, &etag(&entry)))
    }

    // --- cache ---

    async fn cache(&self, c: &str, op: &str, params: Params) -> Result<Reply, ApiError> {
        // purge takes `url`; ban takes `prefix` or `match` (a regular expression over the
        // stored keys, Varnish's `ban req.url ~ ...`).
        let keys: &[&str] = if op == "purge" {
            &["url"]
        } else {
            &["prefix", "match"]
        };
        if let Some(other) = params.iter().find(|p| !keys.contains(&p.key)) {
            return Err(ApiError::field(
                other.key,
                format!("unknown parameter; {op} takes {}", keys.join(" or ")),
            ));
        }
        let given: Vec<&str> = keys
            .iter()
            .copied()
            .filter(|k| params.get(k).is_some())
            .collect();
        let key = match given.as_slice() {
            [one] => *one,
            [] => return Err(ApiError::field(keys[0], "missing")),
            _ => return Err(ApiError::field("match", "give prefix or match, not both")),
        };
        let target = params
            .get(key)
            .ok_or_else(|| ApiError::field(key, "missing"))?
            .text()?;
        let pattern =
            match key {
                "match" => Some(regex::Regex::new(&target).map_err(|e| {
                    ApiError::field("match", format!("not a regular expression: {e}"))
                })?),
                _ => None,
            };
        self.entry(c).await?;
        let extras = self.extras.clone();
        let cluster = c.to_owned();
        let op_owned = op.to_owned();
        let count = tokio::task::spawn_blocking(move || match (op_owned.as_str(), pattern) {
            ("purge", _) => extras.purge(&cluster, &target),
            (_, Some(re)) => extras.ban_matching(&cluster, &|k: &str| re.is_match(k)),
            _ => extras.ban_prefix(&cluster, &target),
        })
        .await
        .map_err(|e| ApiError::internal(format!("the cache task failed: {e}")))?
        .ok_or_else(|| ApiError::not_found(format!("cluster {c:?} has no cache")))?;
        let field = if op == "purge" { "purged" } else { "banned" };
        Ok(Reply::json(StatusCode::OK, &json!({ field: count })))
    }
}

impl<B> tower_service::Service<Request<B>> for Api
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let api = self.clone();
        Box::pin(async move { Ok(api.handle(req).await) })
    }
}

/// The cluster's `ETag` header value (a quoted entity tag).
fn etag(entry: &ClusterEntry) -> String {
    if entry.etag.starts_with('"') || entry.etag.starts_with("W/") {
        entry.etag.clone()
    } else {
        format!("\"{}\"", entry.etag)
    }
}

/// The raw `If-Match` header.
fn if_match(headers: &HeaderMap) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(header::IF_MATCH)
        .iter()
        .map(|v| v.to_str().unwrap_or("\"\""))
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

/// The entity tag to hand the store: `*` checks nothing but existence; of several tags, the
/// current one if listed (the store checks it again under its lock); otherwise the first,
/// which the store refuses with 409.
/// The name of a backend or bucket to create: the path's wins over a `name` parameter (x0's
/// docs; the rewrite's code).
fn new_member_name(
    path_name: Option<String>,
    params: &mut Params,
    what: &str,
) -> Result<String, ApiError> {
    let body_name = match params.take("name") {
        Some(v) => Some(
            crate::params::Param {
                key: "name",
                value: &v,
            }
            .text()?,
        ),
        None => None,
    };
    let name = path_name
        .or(body_name)
        .ok_or_else(|| ApiError::field("name", "missing"))?;
    check_name(&name, what)?;
    Ok(name)
}

fn pick_if_match(header: Option<String>, entry: &ClusterEntry) -> Option<String> {
    let header = header?;
    let tags: Vec<String> = header
        .split(',')
        .map(|t| {
            t.trim()
                .trim_start_matches("W/")
                .trim_matches('"')
                .to_owned()
        })
        .filter(|t| !t.is_empty() || header.trim() == "\"\"")
        .collect();
    if tags.iter().any(|t| t == "*") {
        return None;
    }
    let current = etag(entry)
        .trim_start_matches("W/")
        .trim_matches('"')
        .to_owned();
    let chosen = tags
        .iter()
        .find(|t| **t == current)
        .or(tags.first())?
        .clone();
    // Hand the store its own spelling of the tag.
    Some(if chosen == current {
        entry.etag.clone()
    } else {
        chosen
    })
}

fn check_name(name: &str, what: &str) -> Result<(), ApiError> {
    // The store's rule: names become file names and `Host` values.
    director_core::store::check_name(name, what).map_err(|message| {
        let mut e = ApiError::field("name", message);
        e.detail["value"] = json!(name);
        e
    })
}

/// An edit's refusal inside a store call (values were checked before, so this is rare: the
/// config changed in between).
fn into_store(e: ApiError) -> StoreError {
    let field = e.detail["field"]
        .as_str()
        .unwrap_or("parameters")
        .to_owned();
    StoreError::Invalid(ConfigError::new(field, e.message))
}

#[cfg(test)]
mod tests;
