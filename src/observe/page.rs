//! The status page at `/`: the `/status` document as HTML, rendered on the server and
//! refreshed by the browser every few seconds (a meta refresh, no script), so it works
//! from any browser an operator has, and through `kubectl port-forward`.

use std::fmt::Write;

use super::status::{ConnectorStatus, ProcessStatus};

/// Seconds between the page's refreshes.
pub const REFRESH_SECONDS: u32 = 2;

const OPS: [(&str, &str); 6] = [
    ("c", "create"),
    ("u", "update"),
    ("d", "delete"),
    ("r", "read"),
    ("t", "truncate"),
    ("m", "message"),
];

/// The page for `status`.
pub fn render(status: &ProcessStatus) -> String {
    let mut html = String::with_capacity(8 * 1024);
    let _ = write!(
        html,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>walcast {version}: {summary}</title>
<style>{STYLE}</style></head>
<body data-healthy="{healthy}" data-ready="{ready}">
<header><h1>walcast</h1><p>version {version} · up since {started} · {summary} · <a href="/status">JSON</a> · <a href="/metrics">metrics</a></p></header>
"#,
        version = esc(&status.version),
        started = esc(&status.started_at),
        summary = summary(status),
        healthy = status.healthy,
        ready = status.ready,
    );
    if status.connectors.is_empty() {
        html.push_str("<p>No connector yet.</p>\n");
    }
    for c in &status.connectors {
        connector(&mut html, c);
    }
    let _ = write!(
        html,
        "<footer>Rendered {} · refreshes every {REFRESH_SECONDS} s</footer>\n</body></html>\n",
        esc(&status.now)
    );
    html
}

fn summary(status: &ProcessStatus) -> &'static str {
    match (status.healthy, status.ready) {
        (false, _) => "a connector has failed",
        (true, false) => "not ready",
        (true, true) => "ready",
    }
}

fn connector(html: &mut String, c: &ConnectorStatus) {
    let state = esc(&c.state);
    let _ = write!(
        html,
        r#"<section class="connector" id="connector-{id}" data-connector="{name}" data-state="{state}">
<h2>{name} <span class="state state-{state}">{state}</span></h2>
<p class="since">since {since}{retrying}</p>
<table class="facts">
<tr><th>database</th><td class="database">{database}</td><th>slot</th><td class="slot">{slot}</td></tr>
<tr><th>publication</th><td>{publication}</td><th>delivery</th><td>{delivery}</td></tr>
<tr><th>confirmed flush LSN</th><td class="confirmed-lsn">{confirmed}</td><th>server WAL end</th><td>{wal_end}</td></tr>
<tr><th>lag</th><td class="lag"><span class="lag-seconds">{lag_s:.3}</span> s · <span class="lag-bytes">{lag_b}</span> bytes</td><th>newest acknowledged commit</th><td>{last_event}</td></tr>
<tr><th>slot WAL</th><td>{retained} retained · {wal_status}</td><th>in flight</th><td class="in-flight">{in_flight}</td></tr>
<tr><th>events</th><td class="events-total">{events_total}</td><th>transactions</th><td class="transactions">{transactions}</td></tr>
</table>
"#,
        id = esc(&c.name.replace(|ch: char| !ch.is_ascii_alphanumeric(), "-")),
        name = esc(&c.name),
        since = esc(&c.state_since),
        retrying = if c.retrying.is_empty() {
            String::new()
        } else {
            format!(" · retrying: {}", esc(&c.retrying.join(", ")))
        },
        database = esc(&c.database),
        slot = esc(&c.slot),
        publication = esc(&c.publication),
        delivery = esc(&c.delivery),
        confirmed = esc(c.confirmed_flush_lsn.as_deref().unwrap_or("–")),
        wal_end = esc(c.server_wal_end_lsn.as_deref().unwrap_or("–")),
        lag_s = c.lag_seconds,
        lag_b = c.lag_bytes,
        last_event = esc(c.last_event_at.as_deref().unwrap_or("–")),
        retained = c
            .slot_retained_wal_bytes
            .map_or_else(|| "–".to_owned(), bytes),
        wal_status = esc(c.slot_wal_status.as_deref().unwrap_or("–")),
        in_flight = c.records_in_flight,
        events_total = c.events_total,
        transactions = c.transactions,
    );
    if !c.events.is_empty() {
        html.push_str("<table class=\"events\"><tr><th>table</th>");
        for (_, name) in OPS {
            let _ = write!(html, "<th>{name}</th>");
        }
        html.push_str("</tr>\n");
        for (table, ops) in &c.events {
            let label = if table.is_empty() {
                "(messages)"
            } else {
                table
            };
            let _ = write!(
                html,
                "<tr data-table=\"{}\"><td>{}</td>",
                esc(table),
                esc(label)
            );
            for (op, _) in OPS {
                let _ = write!(
                    html,
                    "<td class=\"op-{op}\">{}</td>",
                    ops.get(op).copied().unwrap_or(0)
                );
            }
            html.push_str("</tr>\n");
        }
        html.push_str("</table>\n");
    }
    if let Some(s) = &c.snapshot {
        let _ = write!(
            html,
            r#"<div class="snapshot" data-running="{running}"><h3>{kind} snapshot {what}</h3>
<p><progress max="100" value="{pct}"></progress> <span class="snapshot-percent">{pct_text}</span> · <span class="snapshot-rows">{rows}</span> rows{of} · {rate:.0} rows/s{eta} · tables {done}/{total}</p>
<table class="snapshot-tables"><tr><th>table</th><th>rows read</th><th>estimated</th><th>done</th></tr>
"#,
            running = s.running,
            kind = esc(&s.kind),
            what = if s.running { "running" } else { "finished" },
            pct = s.percent.unwrap_or(0.0),
            pct_text = s
                .percent
                .map_or_else(|| "?%".to_owned(), |p| format!("{p:.1}%")),
            rows = s.rows_read,
            of = s
                .rows_estimated
                .map_or_else(String::new, |e| format!(" of ~{e}")),
            rate = s.rows_per_second,
            eta = match (s.running, s.eta_seconds) {
                (true, Some(eta)) => format!(" · about {eta} s left"),
                _ => String::new(),
            },
            done = s.tables_done,
            total = s.tables_total,
        );
        for t in &s.tables {
            let _ = writeln!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&t.table),
                t.rows_read,
                t.rows_estimated
                    .map_or_else(|| "?".to_owned(), |e| e.to_string()),
                if t.done { "yes" } else { "no" }
            );
        }
        html.push_str("</table></div>\n");
    }
    if let Some(e) = &c.last_error {
        let _ = writeln!(
            html,
            "<p class=\"last-error\"><strong>Last error</strong> at {}: {}</p>",
            esc(&e.at),
            esc(&e.message)
        );
    }
    html.push_str("</section>\n");
}

/// A byte count as people read it.
pub fn bytes(n: i64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value.abs() >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

/// Text made safe inside HTML elements and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(ch),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
h1{margin:0}header p{color:#555}\
section.connector{border:1px solid #ccc;border-radius:6px;padding:0.5em 1em;margin:1em 0}\
.state{font-size:0.7em;padding:0.15em 0.5em;border-radius:4px;color:#fff;background:#777;vertical-align:middle}\
.state-streaming,.state-snapshotting{background:#2a7d2a}.state-retrying,.state-starting{background:#b8860b}\
.state-failed{background:#b22222}.state-stopped{background:#555}\
table{border-collapse:collapse;margin:0.5em 0}th,td{padding:0.2em 0.7em;text-align:left;border-bottom:1px solid #eee}\
table.events td,table.snapshot-tables td{text-align:right}table.events td:first-child,table.snapshot-tables td:first-child{text-align:left}\
.last-error{color:#b22222}footer{color:#777;font-size:0.85em}";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::status::{ErrorStatus, SnapshotStatus, TableStatus};

    fn sample() -> ProcessStatus {
        let mut events = std::collections::BTreeMap::new();
        events.insert(
            "public.orders".to_owned(),
            [("c".to_owned(), 3u64), ("u".to_owned(), 1)]
                .into_iter()
                .collect(),
        );
        ProcessStatus {
            version: "0.1.0".into(),
            started_at: "2026-12-07T15:00:00Z".into(),
            now: "2026-12-07T15:01:00Z".into(),
            healthy: true,
            ready: false,
            connectors: vec![ConnectorStatus {
                name: "shop <main>".into(),
                state: "retrying".into(),
                state_since: "2026-12-07T15:00:30Z".into(),
                retrying: vec!["postgres".into()],
                database: "db:5432/shop".into(),
                slot: "walcast_shop".into(),
                publication: "walcast_shop".into(),
                delivery: "exactly_once".into(),
                bootstrap_servers: "k:9092".into(),
                confirmed_flush_lsn: Some("0/16B3748".into()),
                server_wal_end_lsn: None,
                lag_bytes: 0,
                lag_seconds: 1.5,
                last_event_at: None,
                slot_retained_wal_bytes: Some(3 * 1024 * 1024),
                slot_wal_status: Some("reserved".into()),
                events_total: 4,
                events,
                transactions: 2,
                records_sent: 4,
                records_in_flight: 0,
                snapshot: Some(SnapshotStatus {
                    kind: "initial".into(),
                    started_at: "2026-12-07T15:00:00Z".into(),
                    running: true,
                    rows_read: 50,
                    rows_estimated: Some(100),
                    rows_per_second: 25.0,
                    percent: Some(50.0),
                    eta_seconds: Some(2),
                    tables_done: 0,
                    tables_total: 1,
                    tables: vec![TableStatus {
                        table: "public.orders".into(),
                        rows_read: 50,
                        rows_estimated: Some(100),
                        done: false,
                    }],
                }),
                last_error: Some(ErrorStatus {
                    message: "connection refused <db>".into(),
                    at: "2026-12-07T15:00:30Z".into(),
                }),
            }],
        }
    }

    #[test]
    fn the_page_shows_state_counts_progress_and_the_error_escaped() {
        let html = render(&sample());
        assert!(html.contains("http-equiv=\"refresh\""));
        assert!(html.contains("data-state=\"retrying\""));
        assert!(html.contains("shop &lt;main&gt;"), "names are escaped");
        assert!(!html.contains("<main>"));
        assert!(html.contains("<td class=\"op-c\">3</td>"));
        assert!(html.contains("<span class=\"snapshot-percent\">50.0%</span>"));
        assert!(html.contains("about 2 s left"));
        assert!(html.contains("connection refused &lt;db&gt;"));
        assert!(html.contains("3.0 MiB retained"));
        assert!(!html.contains("<script"), "no script");
    }

    #[test]
    fn byte_counts_read_as_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }
}
