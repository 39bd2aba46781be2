//! Streams a replication slot through walcast's reader and reports throughput and
//! peak memory: the measurement behind the README's replication figures.
//!
//! Usage: stream_slot <connector.toml> <slot> <publication> <rows>
//! Stops once `rows` row changes arrived (or after 10 minutes), confirming each commit.

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use walcast::model::change::TxEvent;
use walcast::model::lsn::Lsn;
use walcast::source::reader::{stream_with_reconnect, ReaderConfig};
use walcast::source::spool::SpoolConfig;

/// Peak resident memory of this process (VmHWM), in MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: stream_slot <connector.toml> <slot> <publication> <rows>");
        std::process::exit(2);
    }
    let connector = walcast::config::load_file(std::path::Path::new(&args[1]))?;
    let rows: u64 = args[4].parse()?;
    let config = ReaderConfig {
        connector: "stream_slot".into(),
        slot: args[2].clone(),
        publication: args[3].clone(),
        start_lsn: Lsn::ZERO,
        status_interval: Duration::from_secs(1),
        spool: SpoolConfig::new(std::env::temp_dir(), u64::MAX),
    };
    let (tx, mut rx) = mpsc::channel(4096);
    let (flushed_tx, flushed_rx) = watch::channel(Lsn::ZERO);
    let (stop_tx, stop_rx) = watch::channel(false);
    let source = connector.source.clone();
    let task = tokio::spawn(async move {
        stream_with_reconnect(&source, &config, tx, flushed_rx, stop_rx).await
    });

    let mut changes = 0u64;
    let mut first: Option<Instant> = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    while changes < rows {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(TxEvent::Change(_))) => {
                first.get_or_insert_with(Instant::now);
                changes += 1;
            }
            Ok(Some(TxEvent::Commit { end_lsn, .. })) => {
                let _ = flushed_tx.send(end_lsn);
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    let elapsed = first.map_or(Duration::ZERO, |f| f.elapsed());
    // Drain the rest of the last transaction so its commit is confirmed.
    while let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
        if let TxEvent::Commit { end_lsn, .. } = event {
            let _ = flushed_tx.send(end_lsn);
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let _ = stop_tx.send(true);
    task.await??;
    let secs = elapsed.as_secs_f64().max(1e-9);
    println!(
        "rows={changes} seconds={secs:.2} rows_per_second={:.0} peak_rss_mib={:.1}",
        changes as f64 / secs,
        peak_rss_mib()
    );
    Ok(())
}
