//! `director demo`: Director on its embedded default, with its own backends, on loopback.
//!
//! It starts three small HTTP backends (IPv4, IPv6 and a UNIX socket) and a small FastCGI
//! application, and Director in front of them on 127.0.0.1:8080: a round-robin cluster with
//! capacities, a backup and two buckets, a FastCGI cluster, a cluster whose backends answer
//! with X-Sendfile, and a road-warrior route. It prints
//! what it started and a few `curl` commands to try. The backends answer with who they are and what they
//! received, so the proxy's work (balancing, `X-Forwarded-For`, `Via`) is visible.

use std::{convert::Infallible, net::SocketAddr, path::PathBuf, sync::Arc};

use director_core::{Body, body};
use http::{Request, Response};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, UnixListener};

/// The embedded demo config; `{a}`, `{b}`, `{c}` and `{listen}` are filled in at start.
pub const DEMO_CONFIG: &str = r#"
[server]
listen = ["{listen}"]
pseudonym = "director-demo"
# HAProxy's runtime API: `echo "show stat" | socat stdio PATH`, `disable server demo/beta`.
stats-socket = "{stats_socket}"
# Dynamic clusters, one file each, changed through the admin API (127.0.0.1:8081) and kept
# there; the demo starts with "shop", reachable as `Host: shop`.
cluster-dir = "{cluster_dir}"
# Hostile clients (docs/security.md): a client gets 10 s for a request head, 30 s between body
# bytes, at most 10 MiB of body (413 beyond), and each listener holds at most 1000 connections
# (accept pauses at the limit instead of running out of file descriptors).
header-read-timeout = "10s"
client-body-timeout = "30s"
max-request-body = 10485760
max-connections = 1000

# One cluster, three backends: over IPv4, IPv6 and a UNIX socket. alpha and beta take 4
# requests at once each; gamma is a backup, used only while neither is available.
[clusters.demo]
connect-timeout = "1s"
read-timeout = "10s"
queue-limit = 32
queue-timeout = "5s"
# Response bodies are read at the backend's pace (1 MiB in memory, then a temporary file), so a
# slow client does not hold a backend's slot for its whole download (nginx's proxy_buffering).
buffer-responses = true

# Every backend is probed every 2 s (x0's probe headers, Host: backend-healthcheck); a failed live
# request takes a backend out at once, and two good probes bring it back.
[clusters.demo.health]
interval = "2s"
rise = 2
fall = 1
# Live failures may hold out at most half the backends and never the last one; below half
# available, requests spread over all of them (panic mode). These are the defaults.
max-ejection-percent = 50
panic-threshold = 50

# Buckets split the cluster's capacity between request classes (HTB): vip is assured 25% and
# may borrow up to 50% from what the others leave idle; bulk likewise; unclassified requests
# share the remaining 50% and may borrow the rest.
[[clusters.demo.buckets]]
name = "vip"
rate = 0.25
ceil = 0.5

[[clusters.demo.buckets]]
name = "bulk"
rate = 0.25
ceil = 0.5

[[clusters.demo.backends]]
name = "alpha"
url = "{a}"
capacity = 4

[[clusters.demo.backends]]
name = "beta"
url = "{b}"
capacity = 4

[[clusters.demo.backends]]
name = "gamma"
url = "{c}"
capacity = 4
role = "backup"

# A FastCGI application (in-process, speaking real FastCGI records over TCP).
[clusters.app]
read-timeout = "10s"

[clusters.app.fastcgi]
document-root = "/srv/demo"
# The demo's application runs in-process with no files on disk; with a real document root on
# this machine Director checks that the script exists before asking the application.
check-script = false

# FastCGI backends get a FastCGI probe.
[clusters.app.health]
interval = "2s"
path = "/ping.php"

[[clusters.app.backends]]
name = "fcgi"
url = "{fcgi}"

[[routes]]
path = "/app"
cluster = "app"

# Deny a prefix: 403 for every spelling of it (/app/%69nc/, /app//inc/, /app/x/../inc/), since
# paths are normalised once before routing and backends get the same normal path.
[[routes]]
path = "/app/inc/"
deny = true

# Sticky sessions: consistent hashing of the `session` cookie over alpha and beta.
[clusters.sticky]
scheduler = "hash"
hash-key = "cookie:session"

[[clusters.sticky.backends]]
name = "alpha"
url = "{a}"

[[clusters.sticky.backends]]
name = "beta"
url = "{b}"

[[routes]]
path = "/sticky"
cluster = "sticky"

# An object cache in front of alpha and beta: the second request for a URL is a hit
# (X-Cache: HIT), and a stale copy is served (X-Director-Cache: shadow) while no backend answers.
[clusters.cached]

[clusters.cached.cache]
default-ttl = "30s"
shadow-ttl = "5m"
purge-allow = ["127.0.0.1", "::1"]

[[clusters.cached.backends]]
name = "alpha"
url = "{a}"

[[clusters.cached.backends]]
name = "beta"
url = "{b}"

[[routes]]
path = "/cached"
cluster = "cached"

# X-Sendfile: alpha and beta answer /files/NAME with `X-Sendfile: <demo dir>/NAME` and
# /download/NAME with `X-Accel-Redirect: /protected/NAME`; Director serves the file itself
# (ranges, ETag, 304) from the allowed root, and the backend is free again at once.
[clusters.files]

[clusters.files.sendfile]
roots = ["{files}"]
accel-redirect = { "/protected/" = "{files}" }

[[clusters.files.backends]]
name = "alpha"
url = "{a}"

[[clusters.files.backends]]
name = "beta"
url = "{b}"

[[routes]]
path = "/files"
cluster = "files"

[[routes]]
path = "/download"
cluster = "files"

# Files from disk beside the clusters: /site/ serves <demo dir>/www/site/index.html itself
# (ETag, ranges, 304), the rewrite sends /site/wiki/NAME to the FastCGI app as
# /app/index.php?page=NAME (routed again, so deny routes still apply), and any other miss
# goes to the demo cluster. See docs/php.md.
[[routes]]
path = "/site"
cluster = "demo"
root = "{www}"
try-files = ["$uri", "$uri/index.html"]

[[routes.rewrites]]
match = "^/site/wiki/(.*)"
to = "/app/index.php?page=$1"

# Road warrior: straight to one backend, no balancing.
[[routes]]
path = "/direct"
backend = "{a}"

# Everything else: balanced over the demo cluster; the X-Bucket header picks a bucket, and a
# `backend` cookie pins the request to one backend (x0's director.pass).
[[routes]]
cluster = "demo"
bucket-header = "x-bucket"
pin-cookie = "backend"
"#;

/// The demo's backends, running until the process ends.
#[derive(Debug)]
pub struct DemoBackends {
    /// URLs of the three HTTP backends, in order.
    pub urls: [String; 3],
    /// URL of the FastCGI application.
    pub fastcgi: String,
    /// The directory the `files` cluster serves with X-Sendfile.
    pub files: PathBuf,
    socket_dir: PathBuf,
}

impl Drop for DemoBackends {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.socket_dir);
    }
}

/// Starts the three demo backends.
pub async fn start_backends() -> std::io::Result<DemoBackends> {
    let a = TcpListener::bind("127.0.0.1:0").await?;
    // Fall back to IPv4 where the machine has no IPv6 loopback.
    let b = match TcpListener::bind("[::1]:0").await {
        Ok(l) => l,
        Err(_) => TcpListener::bind("127.0.0.1:0").await?,
    };
    let socket_dir = std::env::temp_dir().join(format!("director-demo-{}", std::process::id()));
    std::fs::create_dir_all(&socket_dir)?;
    let path = socket_dir.join("gamma.sock");
    let _ = std::fs::remove_file(&path);
    let c = UnixListener::bind(&path)?;
    let files = socket_dir.join("files");
    std::fs::create_dir_all(&files)?;
    std::fs::write(
        files.join("hello.txt"),
        "Hello from a file: the backend only named it (X-Sendfile), Director sent it.\n",
    )?;
    let _ = FILES.set(files.clone());
    let www = socket_dir.join("www");
    std::fs::create_dir_all(www.join("site"))?;
    std::fs::write(
        www.join("site/index.html"),
        "<!doctype html><title>Director</title><p>Served from disk by Director itself.</p>\n",
    )?;
    let clusters = socket_dir.join("clusters");
    std::fs::create_dir_all(&clusters)?;
    let urls = [
        format!("http://{}", a.local_addr()?),
        format!("http://{}", b.local_addr()?),
        format!("unix:{}", path.display()),
    ];
    let fcgi = TcpListener::bind("127.0.0.1:0").await?;
    let fastcgi = format!("fastcgi://{}", fcgi.local_addr()?);
    tokio::spawn(async move {
        while let Ok((stream, _)) = fcgi.accept().await {
            tokio::spawn(fastcgi_app::serve(stream));
        }
    });
    // A dynamic cluster over alpha and beta, as the admin API would have written it.
    std::fs::write(
        clusters.join("shop.toml"),
        format!(
            "# A dynamic cluster: change it with the admin API, e.g.\n\
             # curl -X POST -d capacity=8 http://127.0.0.1:8081/api/shop/backends/alpha\n\
             scheduler = \"least-load\"\n\n\
             [[backends]]\nname = \"alpha\"\nurl = \"{}\"\ncapacity = 4\n\n\
             [[backends]]\nname = \"beta\"\nurl = \"{}\"\ncapacity = 4\n",
            urls[0], urls[1]
        ),
    )?;
    tokio::spawn(serve_tcp(a, "alpha"));
    tokio::spawn(serve_tcp(b, "beta"));
    tokio::spawn(async move {
        while let Ok((stream, _)) = c.accept().await {
            tokio::spawn(serve_one(TokioIo::new(stream), "gamma", None));
        }
    });
    Ok(DemoBackends {
        urls,
        fastcgi,
        files,
        socket_dir,
    })
}

/// The demo config text for `listen` and the started backends.
pub fn config_text(listen: &str, backends: &DemoBackends) -> String {
    DEMO_CONFIG
        .replace("{listen}", listen)
        .replace("{a}", &backends.urls[0])
        .replace("{b}", &backends.urls[1])
        .replace("{c}", &backends.urls[2])
        .replace("{fcgi}", &backends.fastcgi)
        .replace("{files}", &backends.files.display().to_string())
        .replace(
            "{www}",
            &backends.socket_dir.join("www").display().to_string(),
        )
        .replace(
            "{cluster_dir}",
            &backends.socket_dir.join("clusters").display().to_string(),
        )
        .replace(
            "{stats_socket}",
            &backends
                .socket_dir
                .join("director.sock")
                .display()
                .to_string(),
        )
}

async fn serve_tcp(listener: TcpListener, name: &'static str) {
    while let Ok((stream, peer)) = listener.accept().await {
        tokio::spawn(serve_one(TokioIo::new(stream), name, Some(peer)));
    }
}

async fn serve_one<I>(io: I, name: &'static str, peer: Option<SocketAddr>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let name: Arc<str> = name.into();
    let service = service_fn(move |req| answer(req, name.clone(), peer));
    let _ = http1::Builder::new().serve_connection(io, service).await;
}

/// Where the demo backends point X-Sendfile (set once by [`start_backends`]).
static FILES: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

async fn answer(
    req: Request<Incoming>,
    name: Arc<str>,
    peer: Option<SocketAddr>,
) -> Result<Response<Body>, Infallible> {
    // The file routes: name the file, let Director send it.
    let path = req.uri().path();
    let pointer = match (
        path.strip_prefix("/files/"),
        path.strip_prefix("/download/"),
    ) {
        (Some(file), _) => FILES
            .get()
            .map(|dir| ("x-sendfile", format!("{}/{file}", dir.display()))),
        (_, Some(file)) => Some(("x-accel-redirect", format!("/protected/{file}"))),
        _ => None,
    };
    if let Some((header, value)) = pointer
        && let Ok(value) = http::HeaderValue::from_str(&value)
    {
        let mut response = Response::new(body::empty());
        response.headers_mut().insert(header, value);
        response.headers_mut().insert(
            "x-demo-backend",
            http::HeaderValue::from_str(&name).expect("static name"),
        );
        return Ok(response);
    }
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    };
    let text = format!(
        "Hello from demo backend {name}.\n\
         You asked for {} {}\n\
         Host: {}\nX-Forwarded-For: {}\nX-Forwarded-Proto: {}\nVia: {}\n\
         Director reached me from {}.\n",
        req.method(),
        req.uri(),
        header("host"),
        header("x-forwarded-for"),
        header("x-forwarded-proto"),
        header("via"),
        peer.map_or_else(|| "a UNIX socket".to_owned(), |p| p.to_string()),
    );
    let mut response = Response::new(body::full(text));
    response.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response.headers_mut().insert(
        "x-demo-backend",
        http::HeaderValue::from_str(&name).expect("static name"),
    );
    Ok(response)
}

/// A tiny FastCGI responder for the demo: it answers every request with the CGI variables it
/// received, so the FastCGI mapping (script name, path info, query string) is visible.
pub mod fastcgi_app {
    use bytes::{Buf, BytesMut};
    use director_fastcgi::proto::{
        self, EndRequest, ProtocolStatus, Record, RecordType, params::decode_pairs,
    };
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpStream,
    };

    /// Serves FastCGI requests on `stream` until it closes.
    pub async fn serve(mut stream: TcpStream) {
        let mut buf = BytesMut::with_capacity(8192);
        let mut params = BytesMut::new();
        let (mut id, mut keep) = (1, false);
        loop {
            let record = loop {
                match Record::parse(&mut buf) {
                    Ok(Some(record)) => break record,
                    Ok(None) => {}
                    Err(_) => return,
                }
                match stream.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            };
            match record.record_type {
                RecordType::BeginRequest => {
                    let Ok(begin) = record.begin_request() else {
                        return;
                    };
                    id = record.request_id;
                    keep = begin.flags & proto::FLAG_KEEP_CONN != 0;
                    params.clear();
                }
                RecordType::Params => params.extend_from_slice(&record.content),
                RecordType::Stdin if record.content.is_empty() => {
                    let vars = decode_pairs(&params.split().freeze()).unwrap_or_default();
                    if stream.write_all(&answer(id, &vars)).await.is_err() || !keep {
                        return;
                    }
                }
                _ => {}
            }
        }
    }

    fn answer(id: u16, vars: &[(bytes::Bytes, bytes::Bytes)]) -> BytesMut {
        let var = |name: &str| {
            vars.iter()
                .find(|(n, _)| n.chunk() == name.as_bytes())
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_else(|| "-".into())
        };
        let mut body = String::from(
            "Content-Type: text/plain; charset=utf-8\r\nX-Demo-Backend: fcgi\r\n\r\n\
             Hello from the demo FastCGI application.\n",
        );
        for name in [
            "REQUEST_METHOD",
            "SCRIPT_FILENAME",
            "SCRIPT_NAME",
            "PATH_INFO",
            "QUERY_STRING",
            "REMOTE_ADDR",
            "HTTP_HOST",
            "HTTP_X_FORWARDED_FOR",
        ] {
            body.push_str(&format!("{name}={}\n", var(name)));
        }
        let mut out = BytesMut::new();
        proto::encode_stream(RecordType::Stdout, id, body.as_bytes(), &mut out);
        proto::encode_record(RecordType::Stdout, id, &[], &mut out);
        proto::encode_end_request(
            id,
            EndRequest {
                app_status: 0,
                protocol_status: ProtocolStatus::RequestComplete,
            },
            &mut out,
        );
        out
    }
}
