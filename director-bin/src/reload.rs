//! Hot reload: the main config file, the cluster directory and the clusters' own files
//! (`cluster-files`) are watched, and reloaded on SIGHUP too.
//!
//! Directories are watched rather than files, so editors that write a new file and rename it
//! over the old one are seen. Events are debounced (an editor's save is several events). A
//! reload reads and checks everything first; a bad file is refused with a logged error naming
//! file, line and key, the running config stays, and the error is kept for the admin API
//! until a reload succeeds. Requests in flight are never dropped: the store builds the new
//! snapshot beside the live one and swaps it (see `director_core::store`).
//!
//! `[server]` settings (listeners, tokens, threads, `cluster-dir`, which clusters have their own
//! files) are read at start only; a reload that changes them logs that a restart is needed. The
//! contents of the cluster files are reloaded like the main file.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use director_core::store::Store;
use notify_debouncer_full::{
    DebounceEventResult, new_debouncer,
    notify::{RecursiveMode, event::EventKind},
};
use tokio::sync::mpsc;

use crate::config::{self, ServerConfig};

/// What a reload reads.
#[derive(Clone, Debug)]
pub struct Sources {
    /// The main config file.
    pub file: PathBuf,
    /// The cluster directory, if any.
    pub cluster_dir: Option<PathBuf>,
    /// The clusters with files of their own, and the files.
    pub cluster_files: BTreeMap<String, PathBuf>,
    /// `[server]` as Director started with it.
    pub server: ServerConfig,
}

/// Reloads `sources` into `store` on SIGHUP and whenever a watched file changes, until the
/// returned guard is dropped.
pub fn spawn(store: Arc<Store>, sources: Sources) -> anyhow::Result<Reloader> {
    let (tx, mut rx) = mpsc::unbounded_channel::<&'static str>();
    let file_name = sources.file.file_name().map(|n| n.to_owned());
    let dir = sources.cluster_dir.clone();
    // The cluster files by their real directory (what is watched, so what events name).
    let own_files: BTreeSet<PathBuf> = sources
        .cluster_files
        .values()
        .filter_map(|f| real_path(f))
        .collect();
    let own = own_files.clone();
    let watch_tx = tx.clone();
    let mut debouncer = new_debouncer(
        Duration::from_millis(200),
        None,
        move |result: DebounceEventResult| {
            let Ok(events) = result else { return };
            let relevant = events.iter().any(|e| {
                !matches!(e.kind, EventKind::Access(_))
                    && e.paths.iter().any(|p| {
                        let in_dir = dir.as_deref().is_some_and(|d| p.parent() == Some(d));
                        let name = p.file_name();
                        name == file_name.as_deref()
                            // By real path: the directory may be watched under another name.
                            || (!own.is_empty() && real_path(p).is_some_and(|r| own.contains(&r)))
                            || (in_dir
                                && name
                                    .and_then(|n| n.to_str())
                                    .is_some_and(|n| n.ends_with(".toml") && !n.starts_with('.')))
                    })
            });
            if relevant {
                let _ = watch_tx.send("a watched file changed");
            }
        },
    )?;
    let parent = sources
        .file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    debouncer.watch(&parent, RecursiveMode::NonRecursive)?;
    if let Some(dir) = &sources.cluster_dir
        && dir != &parent
    {
        debouncer.watch(dir, RecursiveMode::NonRecursive)?;
    }
    // Directories rather than files, as above: an editor's rename over the file is seen too.
    let watched: BTreeSet<PathBuf> = std::iter::once(parent.as_path())
        .chain(sources.cluster_dir.as_deref())
        .filter_map(|d| std::fs::canonicalize(d).ok())
        .collect();
    let own_dirs: BTreeSet<&Path> = own_files.iter().filter_map(|f| f.parent()).collect();
    for own_dir in own_dirs {
        if !watched.contains(own_dir) {
            debouncer.watch(own_dir, RecursiveMode::NonRecursive)?;
        }
    }

    let hup_tx = tx;
    // Registered before this returns (and before the listeners are announced), so an early
    // SIGHUP reloads rather than kills the process.
    let signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    let hup = tokio::spawn(async move {
        let Ok(mut hup) = signal else {
            tracing::warn!("cannot watch SIGHUP; reloads follow file changes only");
            return;
        };
        while hup.recv().await.is_some() {
            let _ = hup_tx.send("SIGHUP");
        }
    });
    let worker = tokio::spawn(async move {
        while let Some(why) = rx.recv().await {
            // Coalesce a burst (a SIGHUP during a save, say) into one reload.
            while rx.try_recv().is_ok() {}
            let (store, sources) = (store.clone(), sources.clone());
            let _ = tokio::task::spawn_blocking(move || reload(&store, &sources, why)).await;
        }
    });
    Ok(Reloader {
        _debouncer: Box::new(debouncer),
        tasks: vec![hup, worker],
    })
}

/// Reads everything again and hands it to the store; logs the outcome.
pub fn reload(store: &Store, sources: &Sources, why: &str) -> bool {
    // A cluster file that went away would read as an empty cluster and drop its backends.
    if let Some((name, file)) = sources.cluster_files.iter().find(|(_, f)| !f.exists()) {
        let err = format!(
            "{}: the file of cluster {name:?} (server.cluster-files) is gone; put it back, or \
             restart to have it created empty",
            file.display()
        );
        tracing::error!(reason = why, error = %err, "reload refused; the running config stays");
        store.reload_failed(err);
        return false;
    }
    let loaded = match read(&sources.file) {
        Ok(loaded) => loaded,
        Err(err) => {
            tracing::error!(reason = why, error = %err, "reload refused; the running config stays");
            store.reload_failed(err);
            return false;
        }
    };
    if loaded.config.server != sources.server {
        tracing::warn!("[server] changed; those settings apply at the next restart");
    }
    if loaded.cluster_dir != sources.cluster_dir {
        tracing::warn!("server.cluster-dir changed; it applies at the next restart");
    }
    if loaded.cluster_files != sources.cluster_files {
        tracing::warn!("server.cluster-files changed; it applies at the next restart");
    }
    let dynamic = if loaded.cluster_dir == sources.cluster_dir
        && loaded.cluster_files == sources.cluster_files
    {
        loaded.dynamic
    } else {
        // The clusters of the directory and files Director started with.
        let read = || -> Result<_, String> {
            let mut dynamic = match &sources.cluster_dir {
                Some(dir) => config::load_cluster_dir(dir).map_err(|e| e.to_string())?,
                None => BTreeMap::new(),
            };
            config::load_cluster_files(
                &sources.cluster_files,
                sources.cluster_dir.as_deref(),
                &mut dynamic,
            )
            .map_err(|e| match e {
                config::FileError::Config(key, message) => {
                    format!("{}: {key}: {message}", sources.file.display())
                }
                config::FileError::Load(e) => e.to_string(),
            })?;
            Ok(dynamic)
        };
        match read() {
            Ok(d) => d,
            Err(err) => {
                tracing::error!(reason = why, error = %err, "reload refused; the running config stays");
                store.reload_failed(err);
                return false;
            }
        }
    };
    match store.reload(loaded.config.proxy(), dynamic) {
        Ok(()) => {
            tracing::info!(reason = why, "config reloaded");
            true
        }
        Err(err) => {
            let message = format!("{}: {}: {}", sources.file.display(), err.path, err.message);
            tracing::error!(reason = why, error = %message, "reload refused; the running config stays");
            store.reload_failed(message);
            false
        }
    }
}

/// Reads and checks the main file for a reload. Refused: a file with nothing in it (empty,
/// whitespace, comments: an editor that truncates and rewrites in place shows this for a
/// moment, and it would drop every route), and a file that changed while it was read (the
/// next change event reloads the finished file).
fn read(file: &Path) -> Result<config::Loaded, String> {
    let text =
        |file: &Path| std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()));
    let source = text(file)?;
    if config::is_blank(&source) {
        return Err(format!(
            "{}: the file is empty (or only comments); reloading it would drop every cluster \
             and route, so the running config stays (a file with only `[server]` serves nothing \
             on purpose)",
            file.display()
        ));
    }
    let mut loaded = config::parse(&source, file).map_err(|e| e.to_string())?;
    if text(file)? != source {
        return Err(format!(
            "{}: the file changed while it was read (still being written?); the next change \
             reloads it",
            file.display()
        ));
    }
    loaded.file = Some(file.to_owned());
    Ok(loaded)
}

/// `file` with its directory's real path (symlinks resolved), as the watcher names it; `None`
/// when the directory is gone.
fn real_path(file: &Path) -> Option<PathBuf> {
    let parent = file.parent().filter(|p| !p.as_os_str().is_empty())?;
    Some(std::fs::canonicalize(parent).ok()?.join(file.file_name()?))
}

/// Keeps the watcher and the reload tasks alive.
pub struct Reloader {
    _debouncer: Box<dyn std::any::Any + Send>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader").finish_non_exhaustive()
    }
}

impl Drop for Reloader {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
