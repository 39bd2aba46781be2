//! `walcast run`: one task per connector, a shared shutdown signal (SIGINT/SIGTERM),
//! and an exit status that says whether every connector ended cleanly.

use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{error, info, info_span, warn, Instrument};

use crate::cmd::check;
use crate::cmd::setup::publication::{self, PublicationSync};
use crate::config::Connector;
use crate::postgres::connect;

/// Why one connector stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("connector {connector}: {message}")]
    Failed { connector: String, message: String },
}

/// Runs every connector until each stops or a shutdown signal arrives; returns the
/// errors of those that failed (empty means a clean stop).
pub async fn run(connectors: Vec<Connector>) -> Vec<RunError> {
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    // One metrics endpoint per process: the first enabled connector's address (all
    // connectors' metrics are labelled with their name).
    let listen: Vec<std::net::SocketAddr> = connectors
        .iter()
        .filter(|c| c.metrics.enabled)
        .map(|c| c.metrics.listen)
        .collect();
    let metrics_server = listen.first().copied().map(|address| {
        if listen.iter().any(|a| *a != address) {
            warn!(%address, "connectors name different [metrics] listen addresses; serving all on the first");
        }
        let rx = shutdown_rx.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::observe::serve(address, rx).await {
                error!("cannot serve metrics on {address}: {e}; set [metrics] listen to a free address or enabled = false");
            }
        })
    });
    let mut tasks = JoinSet::new();
    for connector in connectors {
        crate::observe::metrics().set_streaming(&connector.name, false);
        let span = info_span!("connector", name = %connector.name);
        let rx = shutdown_rx.clone();
        tasks.spawn(run_connector(connector, rx).instrument(span));
    }
    let signal = tokio::spawn(async move {
        crate::shutdown::shutdown_signal().await;
        info!("shutdown requested; stopping connectors");
        let _ = shutdown_tx.send(true);
    });
    let mut errors = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                error!("{e}");
                errors.push(e);
            }
            Err(panic) => errors.push(RunError::Failed {
                connector: "?".into(),
                message: format!("task ended abnormally: {panic}"),
            }),
        }
    }
    signal.abort();
    if let Some(server) = metrics_server {
        server.abort();
    }
    errors
}

/// Runs one connector: waits for its database (retrying transient failures with
/// backoff until shutdown), runs the preflight, makes the publication current, then
/// streams until shutdown.
async fn run_connector(
    connector: Connector,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), RunError> {
    let failed = |message: String| RunError::Failed {
        connector: connector.name.clone(),
        message,
    };
    warn_if_unverified(&connector);
    let mut backoff = crate::shutdown::Backoff::reconnect();
    let client = loop {
        match connect(&connector.source, None).await {
            Ok(client) => break client,
            Err(e) if e.transient => {
                let wait = backoff.next_wait();
                error!(retry_in_ms = wait.as_millis() as u64, "{e}");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => return Ok(()),
                }
            }
            Err(e) => return Err(failed(e.to_string())),
        }
    };
    let problems: Vec<String> = check::check(&connector)
        .await
        .into_iter()
        .filter(|f| !f.ok)
        .map(|f| f.message)
        .collect();
    if !problems.is_empty() {
        return Err(failed(format!(
            "{} preflight problem(s): {}; run walcast check {} for details",
            problems.len(),
            problems.join("; "),
            connector.file.display()
        )));
    }
    match publication::sync(&connector, &client).await {
        Ok(PublicationSync::Created { tables } | PublicationSync::Updated { tables }) => {
            info!(publication = %connector.source.publication, tables, "publication updated");
        }
        Ok(_) => {}
        Err(e) => return Err(failed(e.to_string())),
    }
    drop(client);
    if *shutdown.borrow() {
        return Ok(());
    }
    crate::pipeline::run(connector.clone(), shutdown)
        .await
        .map_err(|e| failed(e.to_string()))
}

/// Says at start when walcast cannot tell it talks to the PostgreSQL it names: TLS
/// without a checked certificate, or no TLS at all to another machine.
fn warn_if_unverified(connector: &Connector) {
    use crate::config::SslMode;
    let source = &connector.source;
    match source.sslmode {
        SslMode::Prefer | SslMode::Require => warn!(
            sslmode = source.sslmode.as_str(),
            "PostgreSQL's TLS certificate is not verified (sslmode = {}), so a man in the middle could read the changes; set [source] sslmode = \"verify-full\" and sslrootcert to the server's CA",
            source.sslmode.as_str()
        ),
        SslMode::Disable if !is_loopback(&source.host) => warn!(
            sslmode = "disable",
            "the connection to PostgreSQL at {} is not encrypted (sslmode = disable); set [source] sslmode = \"verify-full\" and sslrootcert to the server's CA",
            source.host
        ),
        _ => {}
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host.starts_with('/')
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
