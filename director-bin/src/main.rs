//! The `director` command.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand, ValueEnum};
use director_bin::{
    config::{self, AccessLogFormat, Config, Loaded},
    demo, telemetry,
};
use director_core::config::{BackendConfig, ClusterConfig, RouteConfig};

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
    /// Worker threads (overrides the config; 1 runs on a single thread).
    #[arg(long)]
    threads: Option<usize>,
    /// Access log format (overrides the config).
    #[arg(long, value_enum)]
    access_log: Option<LogFormat>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a config file and exit: 0 when it is valid, 1 with file, line and key when not.
    Check {
        /// The config file.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
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
        None => {
            let loaded = match (&cli.config, cli.upstream.is_empty()) {
                (Some(path), true) => config::load(path),
                (None, false) => quick_config(&cli),
                _ => {
                    eprintln!(
                        "director: give --config FILE, or --listen ADDR with --upstream URL ...; \
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

/// `--listen` + `--upstream`: one round-robin cluster, no config file.
fn quick_config(cli: &Cli) -> Result<Loaded, config::LoadError> {
    let mut config = Config::default();
    if !cli.listen.is_empty() {
        config.server.listen = cli.listen.clone();
    }
    let backends = cli
        .upstream
        .iter()
        .enumerate()
        .map(|(i, url)| BackendConfig {
            name: format!("upstream{}", i + 1),
            url: if url.contains("://") || url.starts_with("unix:") {
                url.clone()
            } else {
                format!("http://{url}")
            },
            enabled: true,
            capacity: 0,
            role: Default::default(),
            terminate_protection: false,
        })
        .collect();
    let cluster: ClusterConfig = toml::from_str("").expect("defaults parse");
    config.clusters.insert(
        "default".into(),
        ClusterConfig {
            backends,
            ..cluster
        },
    );
    let route: RouteConfig = toml::from_str("cluster = \"default\"").expect("route parses");
    config.routes.push(route);
    let text = toml_text(&config);
    config::parse(&text, std::path::Path::new("(command line)"))
}

/// Renders a quick config back to TOML so it goes through the same checks as a file.
fn toml_text(config: &Config) -> String {
    let mut out = String::from("[server]\nlisten = [");
    let listens: Vec<String> = config
        .server
        .listen
        .iter()
        .map(|l| format!("{l:?}"))
        .collect();
    out.push_str(&listens.join(", "));
    out.push_str("]\n\n[clusters.default]\n");
    for b in &config.clusters["default"].backends {
        out.push_str(&format!(
            "[[clusters.default.backends]]\nname = {:?}\nurl = {:?}\n",
            b.name, b.url
        ));
    }
    out.push_str("\n[[routes]]\ncluster = \"default\"\n");
    out
}

fn apply_overrides(cli: &Cli, loaded: &mut Loaded) {
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
    apply_overrides(cli, &mut loaded);
    telemetry::init(
        loaded.config.server.access_log,
        &loaded.config.server.log_level,
    );
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
        apply_overrides(cli, &mut loaded);
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
        println!("  curl -i 'http://{listen}/app/index.php/hello?x=1'   # FastCGI");
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
