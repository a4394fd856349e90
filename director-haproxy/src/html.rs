//! The HTML stats page (`/haproxy?stats`), in HAProxy's spirit: one table per listener group and
//! per cluster, each backend's state in words and in colour, counters beside it.

use std::fmt::Write as _;

use crate::report::{Report, Row, RowKind};

const STYLE: &str = "body{font-family:sans-serif;font-size:13px;margin:1em}\
table{border-collapse:collapse;margin-bottom:1.5em}\
th,td{border:1px solid #999;padding:2px 6px;text-align:right}\
th{background:#20a0ff;color:#fff}td.name{text-align:left}\
caption{text-align:left;font-weight:bold;font-size:15px;padding:4px 0}\
tr.up{background:#c0ffc0}tr.down{background:#ff9090}tr.maint{background:#c0c0ff}\
tr.drain{background:#ffc0ff}tr.going{background:#ffffa0}tr.total{background:#e0e0e0}\
tr.open{background:#f0f0f0}";

// (header, column) pairs shown per row.
const COLUMNS: &[(&str, &str)] = &[
    ("Name", "svname"),
    ("Status", "status"),
    ("Queue cur", "qcur"),
    ("Queue max", "qmax"),
    ("Sessions cur", "scur"),
    ("max", "smax"),
    ("limit", "slim"),
    ("total", "stot"),
    ("Bytes in", "bin"),
    ("Bytes out", "bout"),
    ("Err conn", "econ"),
    ("Err resp", "eresp"),
    ("Retr", "wretr"),
    ("Redis", "wredis"),
    ("2xx", "hrsp_2xx"),
    ("4xx", "hrsp_4xx"),
    ("5xx", "hrsp_5xx"),
    ("Wght", "weight"),
    ("Act", "act"),
    ("Bck", "bck"),
    ("Last chk", "check_status"),
    ("Chk fail", "chkfail"),
    ("Down", "chkdown"),
    ("LastChg (s)", "lastchg"),
    ("Downtime (s)", "downtime"),
];

/// The report as an HTML page.
pub fn render(report: &Report) -> String {
    let mut out = String::with_capacity(4096 + report.rows.len() * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Director statistics</title>\
         <style>{STYLE}</style></head><body>\n<h1>Director statistics</h1>\n\
         <p>HAProxy-compatible report. <a href=\"/haproxy?stats;csv\">CSV export</a></p>\n"
    );
    let mut current: Option<&str> = None;
    for row in &report.rows {
        let group = row.get("pxname");
        if current != Some(group) {
            if current.is_some() {
                out.push_str("</table>\n");
            }
            current = Some(group);
            let _ = write!(out, "<table><caption>{}</caption><tr>", escape(group));
            for (title, _) in COLUMNS {
                let _ = write!(out, "<th>{title}</th>");
            }
            out.push_str("</tr>\n");
        }
        write_row(&mut out, row);
    }
    if current.is_some() {
        out.push_str("</table>\n");
    }
    out.push_str("</body></html>\n");
    out
}

fn write_row(out: &mut String, row: &Row) {
    let status = row.get("status");
    let class = match row.kind {
        RowKind::Frontend => "open",
        RowKind::Backend => "total",
        RowKind::Server => state_class(status),
    };
    let _ = write!(out, "<tr class=\"{class}\">");
    for (i, (_, column)) in COLUMNS.iter().enumerate() {
        let value = row.get(column);
        if i == 0 {
            let _ = write!(out, "<td class=\"name\">{}</td>", escape(value));
        } else if *column == "status" {
            let _ = write!(out, "<td class=\"name\">{}</td>", escape(&describe(value)));
        } else {
            let _ = write!(out, "<td>{}</td>", escape(value));
        }
    }
    out.push_str("</tr>\n");
}

fn state_class(status: &str) -> &'static str {
    match status {
        "UP" | "no check" => "up",
        "DOWN" => "down",
        "MAINT" => "maint",
        "DRAIN" => "drain",
        _ => "going",
    }
}

/// The status code and, for people, what it means.
fn describe(status: &str) -> String {
    let words = match status {
        "UP" => "up, checked",
        "no check" => "up, not checked",
        "DOWN" => "down",
        "MAINT" => "in maintenance (disabled)",
        "DRAIN" => "draining: no new requests",
        "OPEN" => "accepting connections",
        s if s.starts_with("UP ") => "up, failing checks",
        s if s.starts_with("DOWN ") => "down, passing checks",
        _ => "",
    };
    if words.is_empty() {
        status.to_owned()
    } else {
        format!("{status} ({words})")
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("<a href='x'>&"), "&lt;a href=&#39;x&#39;&gt;&amp;");
    }

    #[test]
    fn states_in_words() {
        assert_eq!(describe("MAINT"), "MAINT (in maintenance (disabled))");
        assert_eq!(describe("UP 2/3"), "UP 2/3 (up, failing checks)");
        assert_eq!(state_class("DOWN 1/2"), "going");
    }
}
