//! Developer tasks for the Director workspace, run as `cargo xtask <task>`.
//!
//! - `test-all`: format check, clippy with `-D warnings`, every test of the workspace
//!   (cargo-nextest when installed, else `cargo test`), doc tests; ends with one summary line.
//! - `bench`: builds Director in release mode and runs the load comparison with HAProxy and nginx
//!   (`../shared/bench/peers.sh`), printing the table and the ratios; then the large-file
//!   scenario ([`sendfile_bench`]: X-Sendfile through Director vs nginx's X-Accel-Redirect).
//!   `bench sendfile` runs only the latter.
//!
//! It uses only the standard library, so it compiles in a moment.

use std::{
    env,
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Command, ExitCode, Stdio},
    sync::mpsc,
    time::Instant,
};

const TASKS: &str = "\
usage: cargo xtask <task>

tasks:
  test-all   fmt --check, clippy -D warnings, all tests (nextest if installed), doc tests
  bench      release build + load comparison with HAProxy and nginx (../shared/bench/peers.sh)
             environment: BENCH_DIR (default ../shared/bench), and peers.sh's own variables
             (RUNS, DURATION, PIN, THREADS, BODIES, TARGETS, ...); then large files (1 MiB,
             100 MiB) with X-Sendfile through Director vs X-Accel-Redirect through nginx
             (SENDFILE_RUNS, SENDFILE_DURATION)
  bench sendfile   only the large-file scenario
";

mod sendfile_bench;

fn main() -> ExitCode {
    let task = env::args().nth(1);
    match task.as_deref() {
        Some("test-all") => test_all(),
        Some("bench") if env::args().nth(2).as_deref() == Some("sendfile") => bench_sendfile(),
        Some("bench") => bench(),
        Some("help") | Some("--help") | Some("-h") | None => {
            print!("{TASKS}");
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprint!("xtask: unknown task {other:?}\n\n{TASKS}");
            ExitCode::from(2)
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

fn cargo() -> Command {
    let mut cmd = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

/// Test counts parsed from runner output.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    passed: u64,
    failed: u64,
    skipped: u64,
}

impl Counts {
    fn add(&mut self, other: Counts) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.skipped += other.skipped;
    }
}

/// Reads the counts from a line of `cargo test` or `cargo nextest` output.
fn parse_counts(line: &str) -> Option<Counts> {
    let number_before = |text: &str, word: &str| -> u64 {
        text.split([',', ';'])
            .filter_map(|part| {
                let part = part.trim();
                let (n, rest) = part.split_once(' ')?;
                rest.trim()
                    .starts_with(word)
                    .then(|| n.trim().parse().ok())?
            })
            .next()
            .unwrap_or(0)
    };
    let line = line.trim();
    if let Some(rest) = line.strip_prefix("test result: ") {
        // cargo test: "test result: ok. 5 passed; 0 failed; 1 ignored; 0 measured; ..."
        let rest = rest.split_once(". ").map_or(rest, |(_, r)| r);
        return Some(Counts {
            passed: number_before(rest, "passed"),
            failed: number_before(rest, "failed"),
            skipped: number_before(rest, "ignored"),
        });
    }
    if line.starts_with("Summary [") && line.contains(" run: ") {
        // nextest: "Summary [  12.345s] 120 tests run: 118 passed, 2 failed, 3 skipped"
        let rest = line.split_once(" run: ").map_or("", |(_, r)| r);
        return Some(Counts {
            passed: number_before(rest, "passed"),
            failed: number_before(rest, "failed") + number_before(rest, "timed out"),
            skipped: number_before(rest, "skipped"),
        });
    }
    None
}

/// Runs `cmd`, echoing its output, and sums the test counts it reports.
fn run_counting(name: &str, mut cmd: Command) -> (bool, Counts) {
    println!("xtask: == {name}: {cmd:?}");
    let started = Instant::now();
    let mut child = match cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn() {
        Ok(child) => child,
        Err(err) => {
            eprintln!("xtask: cannot run {name}: {err}");
            return (false, Counts::default());
        }
    };
    let (tx, rx) = mpsc::channel::<(bool, String)>();
    let out = child.stdout.take().expect("piped");
    let err = child.stderr.take().expect("piped");
    let tx2 = tx.clone();
    let t1 = std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send((false, line));
        }
    });
    let t2 = std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx2.send((true, line));
        }
    });
    let mut counts = Counts::default();
    for (is_err, line) in rx {
        if let Some(c) = parse_counts(&line) {
            counts.add(c);
        }
        if is_err {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }
    let _ = (t1.join(), t2.join());
    let ok = child.wait().map(|s| s.success()).unwrap_or(false);
    println!(
        "xtask: == {name}: {} in {:.1}s",
        if ok { "ok" } else { "FAILED" },
        started.elapsed().as_secs_f64()
    );
    (ok, counts)
}

fn has_nextest() -> bool {
    cargo()
        .args(["nextest", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn test_all() -> ExitCode {
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut total = Counts::default();

    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    if !run_counting("fmt", fmt).0 {
        failures.push("fmt");
    }

    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    if !run_counting("clippy", clippy).0 {
        failures.push("clippy");
    }

    let mut tests = cargo();
    if has_nextest() {
        tests.args([
            "nextest",
            "run",
            "--workspace",
            "--no-fail-fast",
            "--failure-output",
            "final",
        ]);
    } else {
        tests.args(["test", "--workspace", "--all-targets", "--no-fail-fast"]);
    }
    let (ok, counts) = run_counting("tests", tests);
    total.add(counts);
    if !ok {
        failures.push("tests");
    }

    let mut doc = cargo();
    doc.args(["test", "--workspace", "--doc"]);
    let (ok, counts) = run_counting("doc tests", doc);
    total.add(counts);
    if !ok {
        failures.push("doc tests");
    }

    let _ = std::io::stdout().flush();
    let elapsed = started.elapsed().as_secs_f64();
    if !failures.is_empty() {
        println!("xtask: failed steps: {}", failures.join(", "));
    }
    if total.passed == 0 && failures.is_empty() {
        println!("xtask: no test ran");
        println!("test-all: 0 passed, 1 failed");
        return ExitCode::FAILURE;
    }
    let failed = total.failed.max(u64::from(!failures.is_empty()));
    println!("xtask: finished in {elapsed:.0}s");
    if total.skipped > 0 {
        println!(
            "test-all: {} passed, {failed} failed, {} skipped",
            total.passed, total.skipped
        );
    } else {
        println!("test-all: {} passed, {failed} failed", total.passed);
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn which(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Builds the release binary; its path, or `None` when the build failed.
fn release_director() -> Option<PathBuf> {
    let mut build = cargo();
    build.args(["build", "--release", "-p", "director-bin"]);
    if !build.status().is_ok_and(|s| s.success()) {
        eprintln!("xtask bench: release build failed");
        return None;
    }
    let target = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    Some(target.join("release/director"))
}

/// Whether every tool is on the PATH; if not, says which are missing and the Debian
/// `packages` that bring them.
fn have_tools(tools: &[&str], packages: &str) -> bool {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !which(t)).collect();
    if !missing.is_empty() {
        eprintln!(
            "xtask bench: missing tools: {}\n  install them with: apt-get install -y {packages}",
            missing.join(", ")
        );
    }
    missing.is_empty()
}

fn bench_sendfile() -> ExitCode {
    if !have_tools(&["wrk", "nginx", "curl"], "wrk nginx curl") {
        return ExitCode::FAILURE;
    }
    let Some(director) = release_director() else {
        return ExitCode::FAILURE;
    };
    match sendfile_bench::run(&director) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask bench: large-file scenario failed: {err}");
            ExitCode::FAILURE
        }
    }
}

fn bench() -> ExitCode {
    let bench_dir = env::var_os("BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/bench"));
    let script = bench_dir.join("peers.sh");
    if !script.exists() {
        eprintln!(
            "xtask bench: {} not found; set BENCH_DIR to the folder holding peers.sh",
            script.display()
        );
        return ExitCode::FAILURE;
    }
    if !have_tools(
        &["wrk", "haproxy", "nginx", "varnishd", "curl", "taskset"],
        "wrk haproxy nginx varnish curl util-linux iproute2",
    ) {
        return ExitCode::FAILURE;
    }
    let mut build = cargo();
    build.args(["build", "--release", "-p", "director-bin"]);
    if !build.status().is_ok_and(|s| s.success()) {
        eprintln!("xtask bench: release build failed");
        return ExitCode::FAILURE;
    }
    let target = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let director = target.join("release/director");
    // The same shape as the peers: round-robin over the two origins, keep-alive, one worker
    // thread per {threads}, no access log (HAProxy and nginx run without logging too).
    let proxy_cmd = format!(
        "{} --listen 127.0.0.1:{{port}} --upstream {{up1}} --upstream {{up2}} --threads {{threads}} --access-log off",
        director.display()
    );
    // The same with the object cache in front, compared with Varnish's and nginx's cache hits.
    let hit_cmd = format!(
        "{} --listen 127.0.0.1:{{port}} --upstream {{up1}} --upstream {{up2}} --threads {{threads}} --access-log off --cache",
        director.display()
    );
    println!("xtask bench: PROXY_CMD={proxy_cmd}");
    println!("xtask bench: PROXY_HIT_CMD={hit_cmd}");
    let mut cmd = Command::new("bash");
    cmd.arg(&script).current_dir(&bench_dir);
    if env::var_os("PROXY_CMD").is_none() {
        cmd.env("PROXY_CMD", &proxy_cmd);
    }
    if env::var_os("PROXY_HIT_CMD").is_none() {
        cmd.env("PROXY_HIT_CMD", &hit_cmd);
    }
    if env::var_os("PROXY_NAME").is_none() {
        cmd.env("PROXY_NAME", "director");
    }
    if !cmd.status().is_ok_and(|s| s.success()) {
        return ExitCode::FAILURE;
    }
    match sendfile_bench::run(&director) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask bench: large-file scenario failed: {err}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cargo_test_results() {
        assert_eq!(
            parse_counts(
                "test result: ok. 5 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.1s"
            ),
            Some(Counts {
                passed: 5,
                failed: 0,
                skipped: 1
            })
        );
        assert_eq!(
            parse_counts(
                "test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out"
            ),
            Some(Counts {
                passed: 3,
                failed: 2,
                skipped: 0
            })
        );
    }

    #[test]
    fn parses_nextest_summaries() {
        assert_eq!(
            parse_counts("     Summary [  12.345s] 120 tests run: 118 passed, 2 failed, 3 skipped"),
            Some(Counts {
                passed: 118,
                failed: 2,
                skipped: 3
            })
        );
        assert_eq!(
            parse_counts("     Summary [   1.000s] 7 tests run: 7 passed, 0 skipped"),
            Some(Counts {
                passed: 7,
                failed: 0,
                skipped: 0
            })
        );
        assert_eq!(parse_counts("running 5 tests"), None);
    }
}
