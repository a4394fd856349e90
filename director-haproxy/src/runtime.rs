//! HAProxy's runtime API, the commands: parse one line, run it, answer in HAProxy's words.
//!
//! Supported: `show info`, `show stat`, `show servers state [<backend>]`, `show backend`,
//! `get weight`, `enable server`, `disable server`, `set server <b>/<s> state
//! ready|drain|maint`, `set server <b>/<s> weight <w>`, `set weight`, `help`, `prompt`, `quit`.
//! A weight is absolute (`50`, 0 to 256; reals such as `2.5` too) or, ending in `%`, relative
//! to the server's configured weight (`50%`: half of it; a runtime change only).
//! Several commands may share a line, separated by `;`. Unknown commands get HAProxy's answer:
//! the commands that share the first word, or the whole list. Answers end with an empty line,
//! as HAProxy's do; a successful change answers just that empty line.
//!
//! HAProxy calls a cluster a *backend* and a backend a *server*; so do the commands here.

use std::{fmt::Write as _, sync::Arc};

use director_core::{
    addr::{BackendAddr, Protocol},
    backend::{AdminState, Health},
    stats::CheckStatus,
    weight::Weight,
};

use crate::{
    control::{Control, ControlError},
    csv,
    report::{Report, Source, check_health},
};

/// (usage, description) of each command, in `help`'s order.
const COMMANDS: &[(&str, &str)] = &[
    (
        "disable server (DEPRECATED)",
        "disable a server for maintenance (use 'set server' instead)",
    ),
    (
        "enable server  (DEPRECATED)",
        "enable a disabled server (use 'set server' instead)",
    ),
    ("get weight <bk>/<srv>", "report a server's current weight"),
    (
        "set server <bk>/<srv> [opts]",
        "change a server's state or weight",
    ),
    (
        "set weight <bk>/<srv>  (DEPRECATED)",
        "change a server's weight (use 'set server' instead)",
    ),
    (
        "show backend",
        "list backends in the current running config",
    ),
    ("show info", "report information about the running process"),
    (
        "show servers state [<backend>]",
        "dump volatile server information (all or for a single backend)",
    ),
    ("show stat", "report counters for each proxy and server"),
];

/// Always offered (HAProxy lists these last, even among "better matches").
const ALWAYS: &[(&str, &str)] = &[
    ("help [<command>]", "list matching or all commands"),
    ("prompt", "toggle interactive mode with prompt"),
    ("quit", "disconnect"),
];

const STATE_USAGE: &str = "'set server <srv> state' expects 'ready', 'drain' and 'maint'.\n\n";
const SET_SERVER_USAGE: &str = "usage: set server <backend>/<server> addr | agent | agent-addr | agent-port | agent-send | check-addr | check-port | fqdn | health | ssl | state | weight\n\n";

/// What a command asks of the connection besides its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Nothing.
    None,
    /// Toggle interactive mode.
    TogglePrompt,
    /// Close the connection.
    Quit,
}

/// Runs runtime commands against a [`Source`] (reads) and a [`Control`] (changes).
#[derive(Clone)]
pub struct Runtime {
    source: Source,
    control: Arc<dyn Control>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
    }
}

impl Runtime {
    /// Commands over `source`, changes through `control`.
    pub fn new(source: Source, control: Arc<dyn Control>) -> Self {
        Runtime { source, control }
    }

    /// Runs one command (no `;`) and returns its answer.
    pub fn execute(&self, command: &str) -> (String, Effect) {
        let words: Vec<&str> = command.split_whitespace().collect();
        let answer = match words.as_slice() {
            ["help", ..] => help(),
            ["prompt", ..] => return ("\n".into(), Effect::TogglePrompt),
            ["quit", ..] => return (String::new(), Effect::Quit),
            ["show", "info", ..] => self.show_info(),
            ["show", "stat", ..] => csv::render(&Report::collect(&self.source)) + "\n",
            ["show", "servers", "state"] => self.show_servers_state(None),
            ["show", "servers", "state", backend, ..] => self.show_servers_state(Some(backend)),
            ["show", "backend", ..] => self.show_backend(),
            ["get", "weight", target, ..] => self.get_weight(target),
            ["get", "weight"] => "Require 'backend/server'.\n\n".into(),
            ["enable", "server", rest @ ..] => self.set_state(rest.first(), AdminState::Ready),
            ["disable", "server", rest @ ..] => self.set_state(rest.first(), AdminState::Maint),
            ["set", "weight", rest @ ..] => self.set_weight(rest.first(), rest.get(1)),
            ["set", "server"] => "Require 'backend/server'.\n\n".into(),
            ["set", "server", target, "state", state, ..] => match *state {
                "ready" => self.set_state(Some(target), AdminState::Ready),
                "drain" => self.set_state(Some(target), AdminState::Drain),
                "maint" => self.set_state(Some(target), AdminState::Maint),
                _ => STATE_USAGE.into(),
            },
            ["set", "server", _, "state"] => STATE_USAGE.into(),
            ["set", "server", target, "weight", weight, ..] => {
                self.set_weight(Some(target), Some(weight))
            }
            ["set", "server", target, ..] if !target.contains('/') => {
                "Require 'backend/server'.\n\n".into()
            }
            ["set", "server", ..] => SET_SERVER_USAGE.into(),
            _ => unknown(&words),
        };
        (answer, Effect::None)
    }

    fn set_state(&self, target: Option<&&str>, state: AdminState) -> String {
        let Some((cluster, server)) = target.and_then(|t| t.split_once('/')) else {
            return "Require 'backend/server'.\n\n".into();
        };
        answer(self.control.set_state(cluster, server, state))
    }

    fn set_weight(&self, target: Option<&&str>, weight: Option<&&str>) -> String {
        let Some((cluster, server)) = target.and_then(|t| t.split_once('/')) else {
            return "Require 'backend/server'.\n\n".into();
        };
        // Check the names first: HAProxy names a missing server before a bad weight.
        if let Err(e) = self.lookup(cluster, server) {
            return format!("{e}\n\n");
        }
        let Some(weight) = weight else {
            return "Require <weight> or <weight%>.\n\n".into();
        };
        match parse_weight(weight) {
            Ok(WeightChange::Relative(percent)) => {
                answer(self.control.set_relative_weight(cluster, server, percent))
            }
            Ok(WeightChange::Absolute(weight)) => {
                answer(self.control.set_weight(cluster, server, weight))
            }
            Err(message) => message.into(),
        }
    }

    fn lookup(
        &self,
        cluster: &str,
        server: &str,
    ) -> Result<Arc<director_core::backend::Backend>, ControlError> {
        let snapshot = self.source.registry().load();
        let cluster = snapshot
            .cluster(cluster)
            .ok_or(ControlError::NoSuchCluster)?;
        cluster.backend(server).ok_or(ControlError::NoSuchServer)
    }

    fn get_weight(&self, target: &str) -> String {
        let Some((cluster, server)) = target.split_once('/') else {
            return "Require 'backend/server'.\n\n".into();
        };
        match self.lookup(cluster, server) {
            // Reals print as written (`0.5`), whole ones as HAProxy's integers (`7`).
            Ok(b) => format!("{} (initial {})\n\n", b.weight(), b.initial_weight()),
            Err(e) => format!("{e}\n\n"),
        }
    }

    fn show_backend(&self) -> String {
        let mut out = String::from("# name\n");
        for cluster in self.source.registry().load().clusters() {
            let _ = writeln!(out, "{}", cluster.name());
        }
        out.push('\n');
        out
    }

    /// HAProxy's `show info`: `Name: value` lines about the process.
    fn show_info(&self) -> String {
        let uptime = self.source.started().elapsed().as_secs();
        let (mut cur, mut total, mut requests, mut bytes_out) = (0, 0, 0, 0);
        // Per-second connection rates, now and at most, summed over the listeners.
        let (mut rate, mut max_rate) = (0, 0);
        for f in self.source.frontends() {
            let s = f.snapshot();
            cur += s.connections.current;
            total += s.connections.total;
            requests += s.requests;
            bytes_out += s.bytes_out;
            rate += s.connection_rate.current;
            max_rate += s.connection_rate.max;
        }
        // The open-files limit, as HAProxy's `Ulimit-n` (soft limit, from the kernel's view).
        let ulimit = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|limits| {
                limits
                    .lines()
                    .find(|l| l.starts_with("Max open files"))
                    .and_then(|l| l.split_whitespace().nth(3).map(str::to_owned))
            })
            .unwrap_or_default();
        let start = self
            .source
            .started_at()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // The runtime's workers (1 on a current-thread runtime); the cores outside a runtime.
        let threads = tokio::runtime::Handle::try_current().map_or_else(
            |_| std::thread::available_parallelism().map_or(1, |n| n.get()),
            |rt| rt.metrics().num_workers(),
        );
        let node = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        let version = env!("CARGO_PKG_VERSION");
        let lines = [
            ("Name", "Director".to_owned()),
            ("Version", version.to_owned()),
            ("Nbthread", threads.to_string()),
            ("Nbproc", "1".into()),
            ("Process_num", "1".into()),
            ("Pid", std::process::id().to_string()),
            (
                "Uptime",
                format!(
                    "{}d {}h{:02}m{:02}s",
                    uptime / 86400,
                    uptime / 3600 % 24,
                    uptime / 60 % 60,
                    uptime % 60
                ),
            ),
            ("Uptime_sec", uptime.to_string()),
            ("Ulimit-n", ulimit),
            ("CurrConns", cur.to_string()),
            ("CumConns", total.to_string()),
            ("CumReq", requests.to_string()),
            // HTTP/1 and h2c sessions are the client connections here.
            ("ConnRate", rate.to_string()),
            ("MaxConnRate", max_rate.to_string()),
            ("SessRate", rate.to_string()),
            ("MaxSessRate", max_rate.to_string()),
            ("node", node),
            ("Stopping", u8::from(self.source.is_stopping()).to_string()),
            ("Listeners", self.source.frontends().len().to_string()),
            ("TotalBytesOut", bytes_out.to_string()),
            ("Build info", version.to_owned()),
            ("Start_time_sec", start.to_string()),
        ];
        let mut out = String::new();
        for (name, value) in lines {
            let _ = writeln!(out, "{name}: {value}");
        }
        out.push('\n');
        out
    }

    /// HAProxy's `show servers state` (format version 1), the state-file format.
    fn show_servers_state(&self, only: Option<&str>) -> String {
        let snapshot = self.source.registry().load();
        if let Some(name) = only
            && snapshot.cluster(name).is_none()
        {
            return "Can't find backend.\n\n".into();
        }
        let mut out = String::from(
            "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n",
        );
        // Proxy ids follow the stats report: listeners first, then clusters.
        let first = self.source.frontends().len() + 2;
        for (i, cluster) in snapshot.clusters().enumerate() {
            if only.is_some_and(|n| n != &**cluster.name()) {
                continue;
            }
            for (j, b) in cluster.backends().iter().enumerate() {
                let check = b.check_info();
                let down = b.health() == Health::Offline
                    || (b.url().protocol == Protocol::Cluster && !b.is_available());
                // SRV_ST_STOPPED = 0, SRV_ST_RUNNING = 2.
                let op_state = if down { 0 } else { 2 };
                // SRV_ADMF_FMAINT = 0x01, SRV_ADMF_FDRAIN = 0x08.
                let admin = match b.admin_state() {
                    AdminState::Ready => 0,
                    AdminState::Maint => 1,
                    AdminState::Drain => 8,
                };
                let (status, result, health, chk_state) = match &check {
                    None => (1, 0, 0, 0),
                    Some(c) => (
                        check_status_code(c.status),
                        match c.status {
                            CheckStatus::Init => 0,
                            s if s.passed() => 3,
                            _ => 2,
                        },
                        check_health(b, c),
                        // CHK_ST_ENABLED | CHK_ST_CONFIGURED, and PAUSED while in maintenance.
                        if b.admin_state() == AdminState::Maint {
                            14
                        } else {
                            6
                        },
                    ),
                };
                let (addr, port) = match &b.url().addr {
                    BackendAddr::Tcp(sa) => (sa.ip().to_string(), sa.port()),
                    BackendAddr::Host(h, p) => (h.to_string(), *p),
                    BackendAddr::Unix(p) => (p.display().to_string(), 0),
                    BackendAddr::Cluster(_) => ("-".into(), 0),
                };
                let _ = writeln!(
                    out,
                    "{} {} {} {} {} {} {} {} {} {} {} {} {} {} 0 0 0 - {} - 0 0 - - 0",
                    first + i,
                    cluster.name(),
                    j + 1,
                    b.name(),
                    addr,
                    op_state,
                    admin,
                    b.weight(),
                    b.initial_weight(),
                    b.since_last_change().as_secs(),
                    status,
                    result,
                    health,
                    chk_state,
                    port,
                );
            }
        }
        out.push('\n');
        out
    }
}

/// HAProxy's numeric `enum healthcheck_status` values (as `show servers state` prints them).
fn check_status_code(status: CheckStatus) -> u8 {
    match status {
        CheckStatus::Init => 1,
        CheckStatus::L4Ok => 6,
        CheckStatus::L4Timeout => 7,
        CheckStatus::L4Connect => 8,
        CheckStatus::L7Timeout => 12,
        CheckStatus::L7Response => 13,
        CheckStatus::L7Ok => 15,
        CheckStatus::L7Status => 17,
    }
}

fn answer(result: Result<(), ControlError>) -> String {
    match result {
        Ok(()) => "\n".into(),
        Err(e) => format!("{e}\n\n"),
    }
}

fn line(out: &mut String, (usage, description): (&str, &str)) {
    let _ = writeln!(out, "  {usage:<40}: {description}");
}

fn help() -> String {
    let mut out = String::from("The following commands are valid at this level:\n");
    for &c in COMMANDS.iter().chain(ALWAYS) {
        line(&mut out, c);
    }
    out.push('\n');
    out
}

/// HAProxy's answer to an unknown command: the commands sharing its first word if any,
/// otherwise all of them.
fn unknown(words: &[&str]) -> String {
    let matching: Vec<(&str, &str)> = match words.first() {
        Some(first) => COMMANDS
            .iter()
            .copied()
            .filter(|(usage, _)| usage.split_whitespace().next() == Some(first))
            .collect(),
        None => Vec::new(),
    };
    let (intro, list) = if matching.is_empty() {
        (
            "Unknown command. Please enter one of the following commands only:\n",
            COMMANDS.to_vec(),
        )
    } else {
        (
            "Unknown command, but maybe one of the following ones is a better match:\n",
            matching,
        )
    };
    let mut out = String::from(intro);
    for c in list.into_iter().chain(ALWAYS.iter().copied()) {
        line(&mut out, c);
    }
    out.push('\n');
    out
}

/// What `set weight` asks for.
#[derive(Debug, PartialEq)]
enum WeightChange {
    /// An absolute weight, 0..=256 as HAProxy allows (reals too: Director's weights are).
    Absolute(Weight),
    /// `<n>%` of the configured (initial) weight, capped at 25 600 % as in HAProxy.
    Relative(f64),
}

/// HAProxy's `<weight>` or `<weight>%`, with HAProxy's error messages.
fn parse_weight(text: &str) -> Result<WeightChange, &'static str> {
    let (number, relative) = match text.strip_suffix('%') {
        Some(n) => (n, true),
        None => (text, false),
    };
    let numeric = |b: u8| b.is_ascii_digit() || b == b'.';
    let starts = number.strip_prefix('-').unwrap_or(number);
    if !starts.bytes().next().is_some_and(numeric) {
        return Err("Empty weight string empty or preceded by garbage\n");
    }
    let value = match starts.bytes().all(numeric) {
        true => number.parse::<f64>().ok(),
        false => None,
    };
    let Some(value) = value else {
        return Err("Trailing garbage in weight string\n");
    };
    if relative {
        if value < 0.0 {
            return Err("Relative weight must be positive.\n\n");
        }
        return Ok(WeightChange::Relative(value.min(25_600.0)));
    }
    match Weight::new(value) {
        Ok(w) if w.get() <= 256.0 => Ok(WeightChange::Absolute(w)),
        _ => Err("Absolute weight can only be between 0 and 256 inclusive.\n\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_absolute_relative_and_refused() {
        let abs = |w: f64| Ok(WeightChange::Absolute(Weight::new(w).unwrap()));
        assert_eq!(parse_weight("50"), abs(50.0));
        assert_eq!(parse_weight("0"), abs(0.0));
        assert_eq!(parse_weight("256"), abs(256.0));
        assert_eq!(parse_weight("2.5"), abs(2.5));
        assert_eq!(parse_weight("50%"), Ok(WeightChange::Relative(50.0)));
        assert_eq!(parse_weight("0%"), Ok(WeightChange::Relative(0.0)));
        assert_eq!(parse_weight("12.5%"), Ok(WeightChange::Relative(12.5)));
        assert_eq!(parse_weight("99999%"), Ok(WeightChange::Relative(25_600.0)));
        let too = Err("Absolute weight can only be between 0 and 256 inclusive.\n\n");
        assert_eq!(parse_weight("257"), too);
        assert_eq!(parse_weight("-1"), too);
        assert_eq!(
            parse_weight("-5%"),
            Err("Relative weight must be positive.\n\n")
        );
        let garbage = Err("Empty weight string empty or preceded by garbage\n");
        for text in ["x", "", "%", "+5", "x5"] {
            assert_eq!(parse_weight(text), garbage, "{text:?}");
        }
        let trailing = Err("Trailing garbage in weight string\n");
        for text in ["5x", "5%%", "5e2", "1.2.3", "50 %"] {
            assert_eq!(parse_weight(text), trailing, "{text:?}");
        }
    }

    #[test]
    fn help_lines_are_haproxy_shaped() {
        let h = help();
        assert!(h.starts_with("The following commands are valid at this level:\n"));
        assert!(h.contains(
            "\n  show servers state [<backend>]          : dump volatile server information (all or for a single backend)\n"
        ));
        assert!(h.ends_with("  quit                                    : disconnect\n\n"));
    }

    #[test]
    fn unknown_commands() {
        let u = unknown(&["show", "foo"]);
        assert!(u.starts_with(
            "Unknown command, but maybe one of the following ones is a better match:\n"
        ));
        assert!(u.contains("  show stat "));
        assert!(!u.contains("set weight"));
        let u = unknown(&["frobnicate"]);
        assert!(
            u.starts_with("Unknown command. Please enter one of the following commands only:\n")
        );
        assert!(u.contains("set weight"));
    }
}
