//! HAProxy's stats CSV: the header line, then one comma-terminated line per row.
//!
//! Both the HTTP page (`/haproxy?stats;csv`) and the runtime socket's `show stat` use
//! [`render`], so the two parse alike. Fields are quoted only when they must be (a comma, quote or
//! line break inside), with quotes doubled, as HAProxy does.

use std::fmt::Write as _;

use crate::report::{HEADER, Report};

/// The report as CSV, header first.
pub fn render(report: &Report) -> String {
    let mut out = String::with_capacity(HEADER.len() + report.rows.len() * 512);
    out.push_str(HEADER);
    for row in &report.rows {
        for cell in row.cells() {
            push_field(&mut out, cell);
            out.push(',');
        }
        out.push('\n');
    }
    out
}

fn push_field(out: &mut String, value: &str) {
    if value.contains([',', '"', '\r', '\n']) {
        let _ = write!(out, "\"{}\"", value.replace('"', "\"\""));
    } else {
        out.push_str(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_when_needed() {
        let mut s = String::new();
        push_field(&mut s, "plain");
        s.push(',');
        push_field(&mut s, "a,b \"c\"");
        assert_eq!(s, "plain,\"a,b \"\"c\"\"\"");
    }
}
