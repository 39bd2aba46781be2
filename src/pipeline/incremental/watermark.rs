//! The watermarks that bound a chunk: rows written into `walcast.signal`, which come
//! back through the replication stream in WAL order.

use tokio_postgres::Client;

use super::super::PipelineError;
use super::setup_err;

/// PostgreSQL's commit order and visibility order differ: a transaction whose commit
/// record precedes the low watermark in the WAL can stay invisible for a moment (until its
/// WAL is flushed and it leaves the proc array). The chunk must see every such
/// transaction, or a change streamed before the window opens would be followed by an
/// older chunk row. So the read waits until the transactions running when the watermark
/// committed have ended — at most 5 s: one still running then commits after the
/// watermark, where the window catches its changes.
pub(super) async fn wait_for_commits_in_flight(client: &Client) -> Result<(), PipelineError> {
    let running: Vec<i64> = client
        .query_one(
            "SELECT coalesce(array_agg(x::text::bigint), '{}') FROM txid_snapshot_xip(txid_current_snapshot()) x",
            &[],
        )
        .await
        .map_err(PipelineError::sql(
            "incremental snapshot: reading the transactions in flight",
        ))?
        .get(0);
    if running.is_empty() {
        return Ok(());
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        let still: i64 = client
            .query_one(
                "SELECT count(*) FROM unnest($1::bigint[]) x WHERE txid_status(x) = 'in progress'",
                &[&running],
            )
            .await
            .map_err(PipelineError::sql(
                "incremental snapshot: waiting for the transactions in flight",
            ))?
            .get(0);
        if still == 0 {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    Ok(())
}

pub(super) async fn insert_signal(
    client: &Client,
    id: &str,
    kind: &str,
) -> Result<(), PipelineError> {
    client
        .execute(
            "INSERT INTO walcast.signal (id, type, data) VALUES ($1, $2, NULL)",
            &[&id, &kind],
        )
        .await
        .map(|_| ())
        .map_err(|e| {
            setup_err(format!(
                "cannot write a watermark into walcast.signal ({}); grant INSERT on it (walcast setup does)",
                e.as_db_error().map_or_else(|| e.to_string(), |d| d.message().to_owned())
            ))
        })
}
