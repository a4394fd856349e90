//! `director-bin`: the `director` binary, which stacks Director's crates into one service tree.
//!
//! This crate owns process concerns: the command line, the config file, listeners (TCP v4/v6
//! dual-stack and UNIX sockets; HTTP/1.1 and h2c on the same port), the assembled service tree
//! ([`stack`]), graceful shutdown, logging, and the embedded demo. The request path itself lives
//! in `director-core`; see `ARCHITECTURE.md` for the map.
//!
//! # Layout
//!
//! - `main.rs`: the CLI (`director --config`, `director check`, `director demo`).
//! - [`config`]: the TOML config file, with errors that name file, line and key.
//! - [`stack`]: the ordered list of layers every request passes.
//! - [`server`]: listeners, connections, graceful drain.
//! - [`access_log`], [`catch_panic`]: the bin's own layers.
//! - [`cache`]: the object cache (`director-cache`) in front of clusters that ask for it.
//! - [`fastcgi`]: FastCGI backends, `director-fastcgi` plugged into the core's clusters.
//! - [`health`]: health monitors (`director-health`) plugged into the core's clusters.
//! - [`telemetry`]: log output.
//! - [`demo`]: the embedded demo backends and config.
//!
//! # Example
//!
//! Running Director inside another program, on a config string, until a signal of your choice:
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! let loaded = director_bin::config::parse(
//!     "[server]\nlisten = [\"127.0.0.1:8080\"]\n",
//!     std::path::Path::new("inline.toml"),
//! )?;
//! director_bin::run(loaded, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

pub mod access_log;
pub mod admin;
pub mod assembly;
pub mod cache;
pub mod catch_panic;
pub mod config;
pub mod control;
pub mod demo;
pub mod fastcgi;
pub mod health;
pub mod metrics;
pub mod reload;
pub mod server;
pub mod stack;
pub mod telemetry;
pub mod x0;

use std::{future::Future, sync::Arc};

use anyhow::Context as _;
use director_core::store::Store;

use crate::{
    config::{ListenAddr, Loaded},
    server::{ConnSettings, Listener},
    stack::StackSettings,
};

/// Binds the listeners of `loaded` (traffic, then admin), announces them on standard output,
/// watches the config for changes, and serves until `shutdown` resolves; then drains in-flight
/// requests.
pub async fn run(loaded: Loaded, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let Loaded {
        config,
        dynamic,
        cluster_dir,
        cluster_files,
        file,
        snapshot: _,
    } = loaded;
    // Again here: the command line may have changed the admin settings after the load.
    config::check_admin(&config.server)
        .map_err(|(key, message)| anyhow::anyhow!("server.{key}: {message}"))?;
    let assembly = Arc::new(assembly::Assembly::default());
    // The store starts the health monitors (through the assembly) as it builds.
    let store = Arc::new(
        Store::new(
            config.proxy(),
            dynamic,
            cluster_dir.clone(),
            assembly.clone(),
        )
        .map_err(|e| anyhow::anyhow!("{}: {}", e.path, e.message))?
        .with_cluster_files(cluster_files.clone())?,
    );
    let _reloader = match file {
        Some(file) => Some(reload::spawn(
            store.clone(),
            reload::Sources {
                file,
                cluster_dir: cluster_dir.clone(),
                cluster_files,
                server: config.server.clone(),
            },
        )?),
        None => None,
    };
    let registry = store.registry().clone();
    // Bound before the listeners are announced, so it is ready once they are.
    let stats_socket = match &config.server.stats_socket {
        Some(path) => Some(
            director_haproxy::socket::bind_with_mode(path, config.server.admin_socket_mode)
                .with_context(|| format!("cannot open the stats socket {}", path.display()))?,
        ),
        None => None,
    };
    let mut listeners = Vec::new();
    for addr in config.listen_addrs() {
        let listener = Listener::bind(&addr).with_context(|| format!("cannot listen on {addr}"))?;
        println!("director: listening on {}", listener.local_addr()?);
        listeners.push(listener);
    }
    let mut admin_listeners = Vec::new();
    for addr in &config.server.admin_listen {
        let addr = ListenAddr::parse(addr).map_err(anyhow::Error::msg)?;
        let listener = match &addr {
            // Created with `admin-socket-mode`, whatever the umask.
            ListenAddr::Unix(path) => {
                director_haproxy::socket::bind_with_mode(path, config.server.admin_socket_mode)
                    .map(|l| Listener::Unix(l, path.clone()))
            }
            ListenAddr::Tcp(_) => Listener::bind(&addr),
        }
        .with_context(|| format!("cannot listen on {addr} (admin-listen)"))?;
        println!("director: admin on {}", listener.local_addr()?);
        admin_listeners.push(listener);
    }
    // The traffic listeners' counters: HAProxy's FRONTEND rows and the listener metrics.
    let frontends = server::frontend_stats(&listeners);
    let source = director_haproxy::Source::new(registry.clone(), frontends.clone());
    // Runtime-socket changes go through the store, like the JSON API's.
    let control: Arc<dyn director_haproxy::Control> =
        Arc::new(control::StoreControl::new(store.clone()));
    let stack = stack::build(
        store.registry().clone(),
        &StackSettings::from_server(&config.server),
    );
    let conn = ConnSettings::from_server(&config.server);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    if let (Some(socket), Some(path)) = (stats_socket, &config.server.stats_socket) {
        println!("director: stats socket on {}", path.display());
        let runtime = director_haproxy::Runtime::new(source.clone(), control.clone());
        tokio::spawn(director_haproxy::socket::serve(
            socket,
            runtime,
            stopped(stop_rx.clone()),
        ));
    }
    // Checked at load; a `Host` outside these gets 421 on every admin path.
    let admin_hosts = config.server.admin_hosts.clone();
    let admin = (!admin_listeners.is_empty()).then(|| {
        let metrics = metrics::Metrics::new(registry.clone(), frontends.clone())
            .with_cache_fronts(assembly.cache().clone());
        let api = director_api::Api::new(store.clone(), Arc::new(assembly.cache().clone()))
            .prefix("/api");
        let protected = admin::AdminRouter::new()
            // The JSON admin API (docs/api.md).
            .mount("/api", tower::util::BoxCloneSyncService::new(api))
            // HAProxy's stats page (`/haproxy?stats;csv`, `/haproxy/stats;csv`) and monitor.
            .mount(
                "/haproxy",
                tower::util::BoxCloneSyncService::new(director_haproxy::StatsService::new(
                    source.clone(),
                )),
            )
            .mount(
                "/metrics",
                tower::util::BoxCloneSyncService::new(metrics::MetricsService::new(metrics)),
            );
        // Tokens guard the whole admin router but the web UI's static files (and the monitor
        // page, answered in front of the Host check: see `admin::PublicMonitor`).
        let auth = director_api::AuthLayer::new(
            config.server.admin_token.as_deref(),
            config.server.admin_read_token.as_deref(),
        );
        let router = with_ui(protected, &auth, &store);
        let guarded =
            admin::HostGuard::new(router, &admin_hosts).expect("admin-hosts were checked above");
        // Outside load balancers ask the monitor page with neither token nor our Host.
        let monitor = tower::util::BoxCloneSyncService::new(director_haproxy::StatsService::new(
            source.clone(),
        ));
        tokio::spawn(server::serve(
            admin_listeners,
            tower::util::BoxCloneSyncService::new(admin::PublicMonitor::new(
                monitor,
                tower::util::BoxCloneSyncService::new(guarded),
            )),
            conn.clone(),
            stopped(stop_rx.clone()),
        ))
    });
    let traffic = server::serve_counted(
        listeners.into_iter().zip(frontends).collect(),
        stack,
        conn,
        stopped(stop_rx),
    );
    let signal = async {
        shutdown.await;
        // The monitor page answers 503 from now on.
        source.set_stopping();
        let _ = stop_tx.send(true);
    };
    tokio::join!(traffic, signal);
    if let Some(admin) = admin {
        let _ = admin.await;
    }
    if let Some(path) = &config.server.stats_socket {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// The admin router: the web UI's pages in front (public: they hold no data), then everything
/// else, the traffic history included, behind `auth`. The history's sampler starts here and runs
/// as long as the runtime.
fn with_ui(
    protected: admin::AdminRouter,
    auth: &director_api::AuthLayer,
    store: &Arc<Store>,
) -> admin::AdminRouter {
    use director_api::{history, ui::Ui};
    use tower::{Layer, util::BoxCloneSyncService};
    let history = history::History::new(history::DEFAULT_SAMPLES, history::DEFAULT_INTERVAL);
    drop(history.spawn_sampler(store.clone()));
    let protected = protected.mount("/history", BoxCloneSyncService::new(history.service()));
    admin::AdminRouter::new()
        .mount_exact("/", BoxCloneSyncService::new(Ui::new()))
        // Keeps a token in a cookie: only once the token layer accepted it.
        .mount(
            "/ui/session",
            BoxCloneSyncService::new(auth.layer(Ui::new())),
        )
        .mount("/ui", BoxCloneSyncService::new(Ui::new()))
        .mount("/", BoxCloneSyncService::new(auth.layer(protected)))
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(err) => {
            tracing::error!(error = %err, "cannot watch SIGTERM; only Ctrl-C will stop Director");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
