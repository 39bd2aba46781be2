//! `walcast status <connector.toml | URL>`: asks a running walcast for its `/status`
//! and prints it for a terminal. The exit status says whether every connector is
//! streaming or snapshotting, so scripts can wait on it.

use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::observe::page::bytes;
use crate::observe::status::{ConnectorStatus, ProcessStatus};

/// Where the status of `target` (a connector file or a base URL) is served.
pub fn status_url(target: &str) -> Result<String, String> {
    if target.starts_with("http://") || target.starts_with("https://") {
        let base = target.trim_end_matches('/');
        let base = base.strip_suffix("/status").unwrap_or(base);
        return Ok(format!("{base}/status"));
    }
    let connector =
        crate::config::load_file(std::path::Path::new(target)).map_err(|e| e.to_string())?;
    if !connector.metrics.enabled {
        return Err(format!(
            "{target} has [metrics] enabled = false, so walcast serves no status; enable it, or pass the URL of a walcast that serves one"
        ));
    }
    Ok(format!(
        "http://{}/status",
        reachable(connector.metrics.listen)
    ))
}

/// A listen address as a client reaches it (a wildcard means this machine).
fn reachable(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), listen.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), listen.port())
        }
        _ => listen,
    }
}

/// Fetches the status; `Ok(ready)`.
pub async fn run(target: &str) -> Result<bool, String> {
    let url = status_url(target)?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let response = client.get(&url).send().await.map_err(|e| {
        format!("no walcast answers at {url} ({}); is walcast run running with this connector, and [metrics] listen set to where it serves?", root_cause(&e))
    })?;
    if !response.status().is_success() {
        return Err(format!(
            "{url} answered {}; is it a walcast?",
            response.status()
        ));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("reading {url}: {}", root_cause(&e)))?;
    let status: ProcessStatus = serde_json::from_slice(&body)
        .map_err(|e| format!("{url} did not answer with a walcast status: {e}"))?;
    print!("{}", render(&status));
    Ok(status.ready)
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// The status as terminal text.
pub fn render(status: &ProcessStatus) -> String {
    let mut out = String::new();
    let summary = match (status.healthy, status.ready) {
        (false, _) => "a connector has failed",
        (true, false) => "not ready",
        (true, true) => "ready",
    };
    let _ = writeln!(
        out,
        "walcast {} · up since {} · {summary}",
        status.version, status.started_at
    );
    for c in &status.connectors {
        connector(&mut out, c);
    }
    out
}

fn connector(out: &mut String, c: &ConnectorStatus) {
    let _ = writeln!(
        out,
        "\nconnector {}: {} since {}",
        c.name,
        c.state.to_uppercase(),
        c.state_since
    );
    if !c.retrying.is_empty() {
        let _ = writeln!(out, "  retrying    {}", c.retrying.join(", "));
    }
    let _ = writeln!(
        out,
        "  source      {} · slot {} · publication {}",
        c.database, c.slot, c.publication
    );
    let _ = writeln!(
        out,
        "  kafka       {} · {}",
        c.bootstrap_servers, c.delivery
    );
    let _ = writeln!(
        out,
        "  position    confirmed {} · server WAL end {}",
        c.confirmed_flush_lsn.as_deref().unwrap_or("-"),
        c.server_wal_end_lsn.as_deref().unwrap_or("-")
    );
    let _ = writeln!(
        out,
        "  lag         {:.3} s · {} · newest acknowledged commit {}",
        c.lag_seconds,
        bytes(c.lag_bytes),
        c.last_event_at.as_deref().unwrap_or("-")
    );
    if let Some(retained) = c.slot_retained_wal_bytes {
        let _ = writeln!(
            out,
            "  slot WAL    {} retained · wal_status {}",
            bytes(retained),
            c.slot_wal_status.as_deref().unwrap_or("-")
        );
    }
    let _ = writeln!(
        out,
        "  events      {} · transactions {} · records sent {} · in flight {}",
        c.events_total, c.transactions, c.records_sent, c.records_in_flight
    );
    for (table, ops) in &c.events {
        let counts: Vec<String> = ops.iter().map(|(op, n)| format!("{op} {n}")).collect();
        let name = if table.is_empty() {
            "(messages)"
        } else {
            table
        };
        let _ = writeln!(out, "    {name:<40} {}", counts.join("  "));
    }
    if let Some(s) = &c.snapshot {
        let _ = writeln!(
            out,
            "  snapshot    {} {}: {} · {} rows{} · {:.0} rows/s{} · tables {}/{}",
            s.kind,
            if s.running { "running" } else { "finished" },
            s.percent
                .map_or_else(|| "?%".to_owned(), |p| format!("{p:.1}%")),
            s.rows_read,
            s.rows_estimated
                .map_or_else(String::new, |e| format!(" of ~{e}")),
            s.rows_per_second,
            match (s.running, s.eta_seconds) {
                (true, Some(eta)) => format!(" · about {eta} s left"),
                _ => String::new(),
            },
            s.tables_done,
            s.tables_total
        );
    }
    if let Some(e) = &c.last_error {
        let _ = writeln!(out, "  last error  {}: {}", e.at, e.message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_or_a_wildcard_listen_address_becomes_the_status_url() {
        assert_eq!(
            status_url("http://walcast:8723/").unwrap(),
            "http://walcast:8723/status"
        );
        assert_eq!(
            status_url("http://walcast:8723/status").unwrap(),
            "http://walcast:8723/status"
        );
        assert_eq!(
            reachable("0.0.0.0:8723".parse().unwrap()).to_string(),
            "127.0.0.1:8723"
        );
        assert_eq!(
            reachable("[::]:8723".parse().unwrap()).to_string(),
            "[::1]:8723"
        );
        assert!(status_url("/nonexistent/connector.toml").is_err());
    }

    #[test]
    fn the_terminal_view_names_state_lag_and_counts() {
        let json = r#"{"version":"0.1.0","started_at":"2026-12-07T15:00:00Z","now":"2026-12-07T15:01:00Z","healthy":true,"ready":true,
          "connectors":[{"name":"shop","state":"streaming","state_since":"2026-12-07T15:00:05Z","retrying":[],
          "database":"db:5432/shop","slot":"walcast_shop","publication":"walcast_shop","delivery":"exactly_once","bootstrap_servers":"k:9092",
          "confirmed_flush_lsn":"0/16B3748","server_wal_end_lsn":"0/16B3800","lag_bytes":184,"lag_seconds":0.004,"last_event_at":null,
          "slot_retained_wal_bytes":1048576,"slot_wal_status":"reserved","events_total":3,"events":{"public.orders":{"c":2,"u":1}},
          "transactions":2,"records_sent":3,"records_in_flight":0,"snapshot":null,"last_error":null}]}"#;
        let status: ProcessStatus = serde_json::from_str(json).unwrap();
        let text = render(&status);
        assert!(text.contains("connector shop: STREAMING"), "{text}");
        assert!(text.contains("lag         0.004 s · 184 B"), "{text}");
        assert!(text.contains("public.orders"), "{text}");
        assert!(text.contains("c 2  u 1"), "{text}");
        assert!(
            text.contains("1.0 MiB retained · wal_status reserved"),
            "{text}"
        );
    }
}
