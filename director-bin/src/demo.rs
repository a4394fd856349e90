//! `director demo`: Director on its embedded default, with its own backends, on loopback.
//!
//! It starts three small HTTP backends (IPv4, IPv6 and a UNIX socket), and Director in front of
//! them on 127.0.0.1:8080 with a round-robin cluster and a road-warrior route, then prints what it
//! started and a few `curl` commands to try. The backends answer with who they are and what they
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

# One cluster, three backends: over IPv4, IPv6 and a UNIX socket.
[clusters.demo]
connect-timeout = "1s"
read-timeout = "10s"

[[clusters.demo.backends]]
name = "alpha"
url = "{a}"

[[clusters.demo.backends]]
name = "beta"
url = "{b}"

[[clusters.demo.backends]]
name = "gamma"
url = "{c}"

# Road warrior: straight to one backend, no balancing.
[[routes]]
path = "/direct"
backend = "{a}"

[[routes]]
cluster = "demo"
"#;

/// The demo's backends, running until the process ends.
#[derive(Debug)]
pub struct DemoBackends {
    /// URLs of the three backends, in order.
    pub urls: [String; 3],
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
    let urls = [
        format!("http://{}", a.local_addr()?),
        format!("http://{}", b.local_addr()?),
        format!("unix:{}", path.display()),
    ];
    tokio::spawn(serve_tcp(a, "alpha"));
    tokio::spawn(serve_tcp(b, "beta"));
    tokio::spawn(async move {
        while let Ok((stream, _)) = c.accept().await {
            tokio::spawn(serve_one(TokioIo::new(stream), "gamma", None));
        }
    });
    Ok(DemoBackends { urls, socket_dir })
}

/// The demo config text for `listen` and the started backends.
pub fn config_text(listen: &str, backends: &DemoBackends) -> String {
    DEMO_CONFIG
        .replace("{listen}", listen)
        .replace("{a}", &backends.urls[0])
        .replace("{b}", &backends.urls[1])
        .replace("{c}", &backends.urls[2])
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

async fn answer(
    req: Request<Incoming>,
    name: Arc<str>,
    peer: Option<SocketAddr>,
) -> Result<Response<Body>, Infallible> {
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
