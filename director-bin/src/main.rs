//! The `director` command.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand, ValueEnum};
use director_bin::{
    config::{self, AccessLogFormat, Loaded},
    demo, telemetry,
};

// mimalloc: fewer cycles per allocation than glibc's malloc on the request path (measured with
// `cargo xtask bench`), and no lock contention between worker threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Director: a reverse proxy and load balancer for HTTP backends.
#[derive(Debug, Parser)]
#[command(name = "director", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Run with this config file.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Without a config: listen here (repeatable) ...
    #[arg(long, value_name = "ADDR")]
    listen: Vec<String>,
    /// ... and balance round-robin over these backend URLs (repeatable).
    #[arg(long, value_name = "URL")]
    upstream: Vec<String>,
    /// fnlb mode: consistent-hash requests by URL path over these nodes (comma-separated);
    /// a node that fails is skipped and pinged until it answers, then gets its keys back.
    #[arg(long, value_name = "URL,URL,...", value_delimiter = ',')]
    nodes: Vec<String>,
    /// Without a config: put an object cache in front (responses without their own lifetime
    /// are kept for an hour).
    #[arg(long)]
    cache: bool,
    /// Worker threads (overrides the config; 1 runs on a single thread).
    #[arg(long)]
    threads: Option<usize>,
    /// Access log format (overrides the config).
    #[arg(long, value_enum)]
    access_log: Option<LogFormat>,
    /// Where the admin listener listens (overrides the config; without a config there is none
    /// unless this is given).
    #[arg(long, value_name = "ADDR", global = true)]
    admin: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a config file and exit: 0 when it is valid, 1 with file, line and key when not.
    Check {
        /// The config file.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Convert an x0 cluster file (classic `.db` or rewrite `.cluster.conf`) into a Director
    /// dynamic cluster: printed, or written into a cluster directory.
    ImportX0 {
        /// The x0 file.
        file: PathBuf,
        /// The cluster's name (default: the file name without its extension).
        #[arg(long)]
        name: Option<String>,
        /// Write `NAME.toml` into this cluster directory instead of printing it.
        #[arg(long, value_name = "DIR")]
        into: Option<PathBuf>,
        /// The document root of FastCGI backends (x0 took it from its virtual host).
        #[arg(long, value_name = "DIR")]
        document_root: Option<String>,
        /// Read durations as the rewrite did (milliseconds); default by file name.
        #[arg(long)]
        rewrite: bool,
    },
    /// Run Director on its embedded demo config, with demo backends, until Ctrl-C.
    Demo {
        /// Where the demo proxy listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Human,
    Json,
    Off,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::Check { config }) => match config::load(config) {
            Ok(loaded) => {
                println!(
                    "{}: ok ({} clusters, {} routes)",
                    config.display(),
                    loaded.config.clusters.len(),
                    loaded.config.routes.len()
                );
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("{err}");
                ExitCode::FAILURE
            }
        },
        Some(Command::Demo { listen }) => run_demo(&cli, listen),
        Some(Command::ImportX0 {
            file,
            name,
            into,
            document_root,
            rewrite,
        }) => import_x0(
            file,
            name.as_deref(),
            into.as_deref(),
            document_root.as_deref(),
            *rewrite,
        ),
        None => {
            let quick = !cli.upstream.is_empty() || !cli.nodes.is_empty();
            let loaded = match (&cli.config, quick) {
                (Some(path), false) => config::load(path),
                (None, true) => quick_config(&cli),
                _ => {
                    eprintln!(
                        "director: give --config FILE, or --listen ADDR with --upstream URL ... \
                         (round-robin) or --nodes URL,URL,... (consistent hash); \
                         `director demo` runs the embedded demo (see --help)"
                    );
                    return ExitCode::from(2);
                }
            };
            match loaded {
                Ok(loaded) => serve(&cli, loaded),
                Err(err) => {
                    eprintln!("{err}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn import_x0(
    file: &std::path::Path,
    name: Option<&str>,
    into: Option<&std::path::Path>,
    document_root: Option<&str>,
    rewrite: bool,
) -> ExitCode {
    use director_bin::x0;
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(err) => {
            eprintln!("{}: {err}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let dialect = if rewrite {
        x0::Dialect::Rewrite
    } else {
        x0::Dialect::of(file)
    };
    let imported = match x0::import(&text, file, dialect, document_root) {
        Ok(i) => i,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::FAILURE;
        }
    };
    let name = name.unwrap_or(&imported.name);
    // The name becomes a file name in the cluster directory, as through the API.
    if let Err(message) = director_core::store::check_name(name, "cluster") {
        eprintln!("director: cluster name {name:?}: {message} (give one with --name)");
        return ExitCode::FAILURE;
    }
    for note in &imported.notes {
        eprintln!("note: {note}");
    }
    let text = director_core::store::cluster_text(name, &imported.config);
    match into {
        None => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Some(dir) => {
            let path = director_core::store::cluster_file(dir, name);
            if path.exists() {
                eprintln!("{}: exists; not overwritten", path.display());
                return ExitCode::FAILURE;
            }
            match director_core::store::write_atomically(&path, text.as_bytes()) {
                Ok(()) => {
                    eprintln!("wrote {}", path.display());
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("{}: {err}", path.display());
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `--listen` with `--upstream` (one round-robin cluster) or `--nodes` (fnlb mode), no config
/// file. The config is written as TOML and checked like a file.
fn quick_config(cli: &Cli) -> Result<Loaded, config::LoadError> {
    let url = |u: &String| {
        if u.contains("://") || u.starts_with("unix:") {
            u.clone()
        } else {
            format!("http://{u}")
        }
    };
    let listen = if cli.listen.is_empty() {
        vec!["127.0.0.1:8080".to_owned()]
    } else {
        cli.listen.clone()
    };
    let listens: Vec<String> = listen.iter().map(|l| format!("{l:?}")).collect();
    let mut text = format!(
        "[server]\nlisten = [{}]\nadmin-listen = []\n\n[clusters.default]\n",
        listens.join(", ")
    );
    let (members, prefix) = if cli.nodes.is_empty() {
        (&cli.upstream, "upstream")
    } else {
        // fnlb: the same URL path always goes to the same node; a node that fails a connect
        // leaves the ring until a background ping (lazy TCP probe) reaches it again.
        text.push_str(&format!(
            "scheduler = \"hash\"\nhash-key = \"path\"\nunavailable-status = 502\n\
             max-retry-count = {}\n\n[clusters.default.health]\nmode = \"lazy\"\nprobe = \"tcp\"\n\
             interval = \"1s\"\nrise = 1\nfall = 1\n\n",
            cli.nodes.len().saturating_sub(1)
        ));
        (&cli.nodes, "node")
    };
    if cli.cache {
        text.push_str("[clusters.default.cache]\ndefault-ttl = \"1h\"\n\n");
    }
    for (i, member) in members.iter().enumerate() {
        text.push_str(&format!(
            "[[clusters.default.backends]]\nname = \"{prefix}{}\"\nurl = {:?}\n",
            i + 1,
            url(member)
        ));
    }
    text.push_str("\n[[routes]]\ncluster = \"default\"\n");
    config::parse(&text, std::path::Path::new("(command line)"))
}

/// Applies the command line's overrides; the admin settings that result are checked as a
/// config file's are, and a refusal names the option.
fn apply_overrides(cli: &Cli, loaded: &mut Loaded) -> Result<(), String> {
    if let Some(admin) = &cli.admin {
        loaded.config.server.admin_listen = vec![admin.clone()];
        config::check_admin(&loaded.config.server).map_err(|(key, message)| {
            let key = if key.starts_with("admin-listen") {
                format!("--admin {admin}")
            } else {
                format!("server.{key}")
            };
            format!("director: {key}: {message}")
        })?;
    }
    if let Some(threads) = cli.threads {
        loaded.config.server.threads = Some(threads.max(1));
    }
    if let Some(format) = cli.access_log {
        loaded.config.server.access_log = match format {
            LogFormat::Human => AccessLogFormat::Human,
            LogFormat::Json => AccessLogFormat::Json,
            LogFormat::Off => AccessLogFormat::Off,
        };
    }
    Ok(())
}

fn runtime(threads: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    match threads {
        Some(1) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    }
}

fn serve(cli: &Cli, mut loaded: Loaded) -> ExitCode {
    if let Err(message) = apply_overrides(cli, &mut loaded) {
        eprintln!("{message}");
        return ExitCode::FAILURE;
    }
    telemetry::init(
        loaded.config.server.access_log,
        &loaded.config.server.log_level,
    );
    director_bin::server::check_fd_limit(&loaded.config.server);
    let rt = match runtime(loaded.config.server.threads) {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("director: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(director_bin::run(loaded, director_bin::shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("director: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_demo(cli: &Cli, listen: &str) -> ExitCode {
    let rt = match runtime(cli.threads) {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("director: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result: anyhow::Result<()> = rt.block_on(async {
        let backends = demo::start_backends().await?;
        let text = demo::config_text(listen, &backends);
        let mut loaded = config::parse(&text, std::path::Path::new("(embedded demo config)"))?;
        apply_overrides(cli, &mut loaded).map_err(anyhow::Error::msg)?;
        telemetry::init(
            loaded.config.server.access_log,
            &loaded.config.server.log_level,
        );
        println!("director demo: started four demo backends:");
        for (name, url) in ["alpha", "beta", "gamma"].iter().zip(&backends.urls) {
            println!("  {name:<6} {url}");
        }
        println!("  fcgi   {} (a FastCGI application)", backends.fastcgi);
        println!(
            "director demo: proxy on http://{listen} (cluster \"demo\": round-robin over alpha and beta, gamma as backup)"
        );
        println!("director demo: try");
        println!("  curl -i http://{listen}/            # balanced over alpha and beta");
        println!("  curl -i -H 'X-Bucket: vip' http://{listen}/     # in the vip bucket");
        println!("  curl -i -b backend=gamma http://{listen}/     # pinned to the backup");
        println!("  curl -i http://{listen}/direct      # road warrior: straight to alpha");
        println!("  curl -i -b session=42 http://{listen}/sticky   # consistent hash: same session, same backend");
        println!("  curl -i http://{listen}/cached      # object cache: X-Cache: MISS, then HIT");
        println!("  curl -i -X PURGE http://{listen}/cached   # purge (allowed from loopback)");
        println!("  curl -i 'http://{listen}/app/index.php/hello?x=1'   # FastCGI");
        println!("  curl -i http://{listen}/app/%69nc/config.php   # 403: a denied prefix, in any spelling");
        println!("  curl -i http://{listen}/files/hello.txt   # X-Sendfile: the backend names it, Director sends it");
        println!("  curl -i -r 0-4 http://{listen}/download/hello.txt   # X-Accel-Redirect, a range");
        println!("  curl -i http://{listen}/site/          # a static file from disk (ETag, 304, ranges)");
        println!("  curl -i http://{listen}/site/wiki/start   # a rewrite: the FastCGI app gets /app/index.php?page=start");
        if let Some(socket) = &loaded.config.server.stats_socket {
            let socket = socket.display();
            println!("  echo 'show stat' | socat stdio {socket}    # HAProxy's runtime API");
            println!("  echo 'show stat' | socat stdio {socket} | cut -d, -f1,2,34,36,56,59-62   # rate, rate_max, lastsess, qtime/ctime/rtime/ttime (ms)");
            println!("  echo 'set server demo/beta state drain' | socat stdio {socket}");
        }
        if let Some(admin) = loaded.config.server.admin_listen.first() {
            let a = &backends.urls[0];
            println!("director demo: the admin API (docs/api.md) on http://{admin}/api:");
            println!("  curl http://{admin}/api/shop          # a dynamic cluster as JSON (x0's document)");
            println!("  curl -X POST http://{admin}/api/shop/backends/alpha -d capacity=8   # 202, written to its file");
            println!("  curl -X LOCK http://{admin}/api/demo/backends/beta   # disable beta (UNLOCK: enable)");
            println!("  curl -X PUT http://{admin}/api/blog -d scheduler=rr   # a new cluster at runtime");
            println!("  curl -X PUT http://{admin}/api/blog/backends/alpha -d 'url={a}&capacity=4'");
            println!("  curl -H 'Host: blog' http://{listen}/   # served by the new cluster");
            println!(
                "director demo: web UI on http://{admin}/ui/ (overview) and http://{admin}/ui/live (charts); for traffic to watch:"
            );
            println!(
                "  while sleep 0.05; do curl -s -o /dev/null http://{listen}/; done"
            );
        }
        println!("director demo: Ctrl-C stops it.");
        director_bin::run(loaded, director_bin::shutdown_signal()).await?;
        drop(backends);
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("director demo: {err:#}");
            ExitCode::FAILURE
        }
    }
}
