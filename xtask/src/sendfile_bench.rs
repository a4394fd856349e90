//! The large-file scenario of `cargo xtask bench`: X-Sendfile through Director against nginx's
//! X-Accel-Redirect, serving the same 1 MiB and 100 MiB files.
//!
//! One origin (nginx) answers `/sf/NAME` with `X-Sendfile: <dir>/NAME` and `/xa/NAME` with
//! `X-Accel-Redirect: /protected/NAME`, both with an empty body. In front of it, on loopback:
//! nginx (one worker, `sendfile on`, an `internal` location aliasing the files) and Director (one
//! worker thread, `[clusters.NAME.sendfile]` over the same directory). wrk fetches each file
//! through each proxy for a few seconds, alternating proxies, over several rounds; the medians of
//! throughput (bytes/s from wrk's own count) are printed with the ratio Director ÷ nginx.
//!
//! Environment: `SENDFILE_RUNS` (default 3), `SENDFILE_DURATION` (seconds, default 5).

use std::{
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

const ORIGIN_PORT: u16 = 18201;
const NGINX_PORT: u16 = 18202;
const DIRECTOR_PORT: u16 = 18203;

/// The files: name, size, wrk connections.
const FILES: [(&str, u64, u32); 2] = [("1m.bin", 1 << 20, 8), ("100m.bin", 100 << 20, 2)];

struct Guard(Vec<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        // SIGTERM first: an nginx master killed with SIGKILL leaves its worker running, still
        // holding the port for the next run.
        for child in &mut self.0 {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        for child in &mut self.0 {
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn wait_port(port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn write_file(path: &Path, size: u64) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let block: Vec<u8> = (0..65536u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let mut left = size;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n])?;
        left -= n as u64;
    }
    f.flush()
}

/// Bytes per second from wrk's `Transfer/sec:` line (e.g. `1.23GB`).
fn parse_transfer(out: &str) -> Option<f64> {
    let value = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Transfer/sec:"))?
        .trim();
    let split = value.find(|c: char| c.is_ascii_alphabetic())?;
    let (n, unit) = value.split_at(split);
    let n: f64 = n.trim().parse().ok()?;
    let scale = match unit {
        "B" => 1.0,
        "KB" => 1024.0,
        "MB" => 1024.0 * 1024.0,
        "GB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(n * scale)
}

fn requests_per_sec(out: &str) -> Option<f64> {
    out.lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))?
        .trim()
        .parse()
        .ok()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Runs the scenario with the release binary `director`.
pub(crate) fn run(director: &Path) -> Result<(), String> {
    let runs: usize = std::env::var("SENDFILE_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let duration: u32 = std::env::var("SENDFILE_DURATION")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let dir = std::env::temp_dir().join(format!("director-sendfile-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let files = dir.join("files");
    for sub in ["files", "origin/tmp", "nginx/tmp"] {
        std::fs::create_dir_all(dir.join(sub)).map_err(|e| e.to_string())?;
    }
    for (name, size, _) in FILES {
        write_file(&files.join(name), size).map_err(|e| e.to_string())?;
    }
    let result = scenario(director, &dir, &files, runs, duration);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn nginx_common(prefix: &Path) -> String {
    let tmp = prefix.join("tmp").display().to_string();
    format!(
        "worker_processes 1;\ndaemon off;\nmaster_process on;\npid {pid};\nerror_log stderr warn;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n access_log off;\n sendfile on;\n tcp_nopush on;\n tcp_nodelay on;\n server_tokens off;\n\
         keepalive_requests 1000000;\n client_body_temp_path {tmp}/body;\n proxy_temp_path {tmp}/proxy;\n\
         fastcgi_temp_path {tmp}/fcgi;\n uwsgi_temp_path {tmp}/uwsgi;\n scgi_temp_path {tmp}/scgi;\n\
         default_type application/octet-stream;\n",
        pid = prefix.join("nginx.pid").display(),
    )
}

fn scenario(
    director: &Path,
    dir: &Path,
    files: &Path,
    runs: usize,
    duration: u32,
) -> Result<(), String> {
    let f = files.display();
    let origin_conf = format!(
        "{common} server {{\n  listen 127.0.0.1:{ORIGIN_PORT};\n\
         location ~ ^/sf/(.+)$ {{ add_header X-Sendfile {f}/$1; return 200 \"\"; }}\n\
         location ~ ^/xa/(.+)$ {{ add_header X-Accel-Redirect /protected/$1; return 200 \"\"; }}\n }}\n}}\n",
        common = nginx_common(&dir.join("origin")),
    );
    let front_conf = format!(
        "{common} upstream origin {{ server 127.0.0.1:{ORIGIN_PORT}; keepalive 32; }}\n\
         server {{\n  listen 127.0.0.1:{NGINX_PORT};\n\
         location / {{ proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection \"\"; }}\n\
         location /protected/ {{ internal; alias {f}/; }}\n }}\n}}\n",
        common = nginx_common(&dir.join("nginx")),
    );
    let director_conf = format!(
        "[server]\nlisten = [\"127.0.0.1:{DIRECTOR_PORT}\"]\naccess-log = \"off\"\nlog-level = \"error\"\n\n\
         [clusters.files]\n[clusters.files.sendfile]\nroots = [\"{f}\"]\n\
         [[clusters.files.backends]]\nname = \"origin\"\nurl = \"http://127.0.0.1:{ORIGIN_PORT}\"\n\n\
         [[routes]]\ncluster = \"files\"\n"
    );
    let write = |name: &str, text: &str| -> Result<PathBuf, String> {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| e.to_string())?;
        Ok(p)
    };
    let origin_path = write("origin.conf", &origin_conf)?;
    let front_path = write("front.conf", &front_conf)?;
    let director_path = write("director.toml", &director_conf)?;

    let spawn = |cmd: &mut Command| {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())
    };
    let mut guard = Guard(Vec::new());
    for (prefix, conf) in [("origin", &origin_path), ("nginx", &front_path)] {
        guard.0.push(spawn(
            Command::new("nginx")
                .arg("-p")
                .arg(dir.join(prefix))
                .arg("-c")
                .arg(conf)
                .args(["-e", "stderr"]),
        )?);
    }
    guard.0.push(spawn(
        Command::new(director)
            .arg("--config")
            .arg(&director_path)
            .args(["--threads", "1"]),
    )?);
    for port in [ORIGIN_PORT, NGINX_PORT, DIRECTOR_PORT] {
        if !wait_port(port) {
            return Err(format!("nothing listens on 127.0.0.1:{port}"));
        }
    }
    // Both proxies must serve the file, not the origin's empty body.
    for (name, size, _) in FILES {
        for url in [
            format!("http://127.0.0.1:{NGINX_PORT}/xa/{name}"),
            format!("http://127.0.0.1:{DIRECTOR_PORT}/sf/{name}"),
        ] {
            let out = Command::new("curl")
                .args([
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code} %{size_download}",
                    &url,
                ])
                .output()
                .map_err(|e| e.to_string())?;
            let got = String::from_utf8_lossy(&out.stdout).into_owned();
            if got != format!("200 {size}") {
                return Err(format!("{url} answered {got:?}, expected \"200 {size}\""));
            }
        }
    }

    println!(
        "\nxtask bench: large files, X-Sendfile through Director vs X-Accel-Redirect through nginx \
         (one worker each, wrk -t1, {runs} rounds of {duration}s, medians)"
    );
    println!(
        "{:10} {:>4} {:>14} {:>10} {:>14} {:>10} {:>8}",
        "file", "conn", "nginx MiB/s", "nginx r/s", "director MiB/s", "dir r/s", "÷ nginx"
    );
    for (name, _, conns) in FILES {
        let (mut nginx_bps, mut nginx_rps, mut dir_bps, mut dir_rps) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for round in 0..runs {
            // Alternate which proxy goes first, so neither always gets the warmer cache.
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for which in order {
                let url = if which == 0 {
                    format!("http://127.0.0.1:{NGINX_PORT}/xa/{name}")
                } else {
                    format!("http://127.0.0.1:{DIRECTOR_PORT}/sf/{name}")
                };
                let out = Command::new("wrk")
                    .args([
                        "-t1",
                        &format!("-c{conns}"),
                        &format!("-d{duration}s"),
                        "--timeout",
                        "30s",
                        &url,
                    ])
                    .output()
                    .map_err(|e| e.to_string())?;
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                let (Some(bps), Some(rps)) = (parse_transfer(&text), requests_per_sec(&text))
                else {
                    return Err(format!("cannot read wrk's output for {url}:\n{text}"));
                };
                if text.contains("Non-2xx") {
                    return Err(format!("{url} answered errors:\n{text}"));
                }
                if which == 0 {
                    nginx_bps.push(bps);
                    nginx_rps.push(rps);
                } else {
                    dir_bps.push(bps);
                    dir_rps.push(rps);
                }
            }
        }
        let (nb, nr, db, dr) = (
            median(&mut nginx_bps),
            median(&mut nginx_rps),
            median(&mut dir_bps),
            median(&mut dir_rps),
        );
        let mib = 1024.0 * 1024.0;
        println!(
            "{name:10} {conns:>4} {:>14.0} {nr:>10.1} {:>14.0} {dr:>10.1} {:>8.2}",
            nb / mib,
            db / mib,
            db / nb
        );
    }
    drop(guard);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_output() {
        let out = "Running 5s test\n  1 threads and 8 connections\nRequests/sec:   1234.56\nTransfer/sec:      1.50GB\n";
        assert_eq!(requests_per_sec(out), Some(1234.56));
        assert_eq!(parse_transfer(out), Some(1.5 * 1024.0 * 1024.0 * 1024.0));
        assert_eq!(
            parse_transfer("Transfer/sec:    512.00KB\n"),
            Some(512.0 * 1024.0)
        );
        assert_eq!(parse_transfer("nothing"), None);
    }
}
