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
pub mod cache;
pub mod catch_panic;
pub mod config;
pub mod demo;
pub mod fastcgi;
pub mod health;
pub mod metrics;
pub mod server;
pub mod stack;
pub mod telemetry;

use std::{future::Future, sync::Arc};

use anyhow::Context as _;
use director_core::registry::Registry;

use crate::{
    config::Loaded,
    server::{ConnSettings, Listener},
    stack::StackSettings,
};

/// Binds the listeners of `loaded`, announces them on standard output, and serves until
/// `shutdown` resolves; then drains in-flight requests.
pub async fn run(loaded: Loaded, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let Loaded { config, snapshot } = loaded;
    // Kept alive while serving: dropping it stops the monitors.
    let _monitors = health::start(&config, &snapshot).map_err(anyhow::Error::msg)?;
    let registry = Arc::new(Registry::new(snapshot));
    // Bound before the listeners are announced, so it is ready once they are.
    let stats_socket = match &config.server.stats_socket {
        Some(path) => Some(
            director_haproxy::socket::bind(path)
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
    let frontends = server::frontend_stats(&listeners);
    let source = director_haproxy::Source::new(registry.clone(), frontends.clone());
    // HAProxy's runtime API; stopped with the listeners.
    let (stop_socket, socket_stopped) = tokio::sync::oneshot::channel::<()>();
    if let (Some(socket), Some(path)) = (stats_socket, &config.server.stats_socket) {
        println!("director: stats socket on {}", path.display());
        let control: Arc<dyn director_haproxy::Control> =
            Arc::new(director_haproxy::RegistryControl::new(registry.clone()));
        let runtime = director_haproxy::Runtime::new(source.clone(), control);
        tokio::spawn(director_haproxy::socket::serve(socket, runtime, async {
            let _ = socket_stopped.await;
        }));
    }
    let stack = stack::build(registry, &StackSettings::from_server(&config.server));
    let stopping = source.clone();
    server::serve_counted(
        listeners.into_iter().zip(frontends).collect(),
        stack,
        ConnSettings::from_server(&config.server),
        async move {
            shutdown.await;
            stopping.set_stopping();
        },
    )
    .await;
    let _ = stop_socket.send(());
    if let Some(path) = &config.server.stats_socket {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
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
