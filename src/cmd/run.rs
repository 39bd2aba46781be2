//! `walcast run`: one task per connector, a shared shutdown signal (SIGINT/SIGTERM),
//! and an exit status that says whether every connector ended cleanly.

use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{error, info, info_span, warn, Instrument};

use crate::cmd::check;
use crate::cmd::setup::publication::{self, PublicationSync};
use crate::config::Connector;
use crate::observe::{ConnectorInfo, ConnectorState};
use crate::postgres::connect;

/// Why one connector stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("connector {connector}: {message}")]
    Failed { connector: String, message: String },
    /// The status and metrics endpoint cannot listen where `[metrics]` says.
    #[error("cannot serve the status page and metrics on {address}: {reason}; set [metrics] listen to a free address, or enabled = false")]
    Listen {
        address: std::net::SocketAddr,
        reason: String,
    },
}

/// Runs every connector until each stops or a shutdown signal arrives; returns the
/// errors of those that failed (empty means a clean stop).
pub async fn run(connectors: Vec<Connector>) -> Vec<RunError> {
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    // One endpoint per process: loading a folder made every connector's [metrics] the
    // same (config::load_path); each series is labelled with its connector.
    let listen = connectors
        .iter()
        .find(|c| c.metrics.enabled)
        .map(|c| c.metrics.listen);
    let mut metrics_server = None;
    if let Some(address) = listen {
        let listener = match tokio::net::TcpListener::bind(address).await {
            Ok(listener) => listener,
            Err(e) => {
                return vec![RunError::Listen {
                    address,
                    reason: e.to_string(),
                }]
            }
        };
        let rx = shutdown_rx.clone();
        metrics_server = Some(tokio::spawn(async move {
            if let Err(e) = crate::observe::serve(listener, rx).await {
                error!("the status and metrics endpoint stopped: {e}");
            }
        }));
    }
    let mut tasks = JoinSet::new();
    for connector in connectors {
        crate::observe::board().register(&connector.name, connector_info(&connector));
        let span = info_span!("connector", name = %connector.name);
        let rx = shutdown_rx.clone();
        let name = connector.name.clone();
        tasks.spawn(
            async move {
                let result = run_connector(connector, rx).await;
                let board = crate::observe::board();
                match &result {
                    Ok(()) => board.set_state(&name, ConnectorState::Stopped),
                    Err(e) => board.failed(&name, e.to_string()),
                }
                result
            }
            .instrument(span),
        );
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
    let board = crate::observe::board();
    let client = loop {
        match connect(&connector.source, None).await {
            Ok(client) => {
                board.set_retrying(&connector.name, "postgres", false);
                break client;
            }
            Err(e) if e.transient => {
                let wait = backoff.next_wait();
                error!(retry_in_ms = wait.as_millis() as u64, "{e}");
                board.set_retrying(&connector.name, "postgres", true);
                board.note_error(&connector.name, e.to_string());
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

/// Where the connector reads and writes, for `/status` (no password).
fn connector_info(connector: &Connector) -> ConnectorInfo {
    let source = &connector.source;
    ConnectorInfo {
        database: format!("{}:{}/{}", source.host, source.port, source.dbname),
        slot: source.slot.clone(),
        publication: source.publication.clone(),
        delivery: connector.delivery.mode.as_str().to_owned(),
        bootstrap_servers: connector.kafka.bootstrap_servers.clone(),
    }
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
