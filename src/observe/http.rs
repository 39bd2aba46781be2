//! The HTTP endpoints: `/metrics` (Prometheus), `/healthz` (no connector failed for
//! good: a restart would help), `/readyz` (every connector streams or snapshots),
//! `/status` (JSON) and the status page at `/`.

use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;
use tracing::info;

use super::board::board;
use super::metrics::metrics;

/// The routes, apart from the listener (tests serve them on their own port).
pub fn router() -> Router {
    Router::new()
        .route("/", get(page))
        .route("/status", get(status))
        .route(
            "/metrics",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    metrics().render(),
                )
            }),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn page() -> Html<String> {
    Html(super::page::render(&super::status::current()))
}

async fn status() -> Response {
    let body = serde_json::to_string_pretty(&super::status::current()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn healthz() -> Response {
    let failed = board().failed_connectors();
    if failed.is_empty() {
        "ok\n".into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("failed: {}\n", failed.join(", ")),
        )
            .into_response()
    }
}

async fn readyz() -> Response {
    let not_ready = board().not_ready();
    if not_ready.is_empty() {
        "ready\n".into_response()
    } else {
        let list: Vec<String> = not_ready
            .iter()
            .map(|(name, state)| format!("{name} is {}", state.as_str()))
            .collect();
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", list.join(", ")),
        )
            .into_response()
    }
}

/// Serves the endpoints on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    info!(address = %listener.local_addr()?, "status page on /, /status (JSON), metrics on /metrics, probes on /healthz and /readyz");
    axum::serve(listener, router())
        .with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        })
        .await
}
