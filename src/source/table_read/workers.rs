//! Snapshot workers: each owns a connection inside the slot's exported snapshot and
//! reads ranges (taken in emission order from a shared queue), parsing rows on its own
//! thread. Every range has its own bounded channel, which the emitter drains one range
//! after another, so rows leave in the order a single reader would produce them while
//! the next ranges are read ahead; memory stays bounded by the channels.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use super::copy::{read_rows, Query, Range};
use super::SnapshotError;
use crate::model::change::Row;
use crate::model::relation::RelationInfo;

/// Rows handed over at a time: one channel message per this many rows.
pub const BATCH_ROWS: usize = 512;

/// Batches a range's channel holds before its worker waits for the emitter.
const RANGE_CHANNEL_BATCHES: usize = 4;

/// A parsed row and, for tables read in key order, its key as a JSON array of texts.
pub type ReadRow = (Row, Option<Vec<u8>>);

/// What a worker sends about one range.
pub enum RangeMessage {
    Rows(Vec<ReadRow>),
    /// The range was read to its end.
    Done,
    Failed(SnapshotError),
}

/// One range to read, with where its rows go.
pub struct Job {
    pub relation: Arc<RelationInfo>,
    pub filter: Option<String>,
    pub key: Arc<[usize]>,
    pub range: Range,
    tx: mpsc::Sender<RangeMessage>,
}

/// The receiving end of a job's channel, drained by the emitter.
pub type RangeReceiver = mpsc::Receiver<RangeMessage>;

impl Job {
    pub fn new(
        relation: Arc<RelationInfo>,
        filter: Option<String>,
        key: Arc<[usize]>,
        range: Range,
    ) -> (Job, RangeReceiver) {
        let (tx, rx) = mpsc::channel(RANGE_CHANNEL_BATCHES);
        (
            Job {
                relation,
                filter,
                key,
                range,
                tx,
            },
            rx,
        )
    }
}

/// Starts one worker per client over `jobs` (in order). Each worker commits its
/// snapshot transaction when the queue is empty.
pub fn spawn(clients: Vec<Client>, jobs: Vec<Job>) -> Vec<JoinHandle<()>> {
    let queue = Arc::new(Mutex::new(VecDeque::from(jobs)));
    clients
        .into_iter()
        .map(|client| {
            let queue = queue.clone();
            tokio::spawn(async move {
                loop {
                    let job = match queue.lock() {
                        Ok(mut q) => q.pop_front(),
                        Err(_) => None,
                    };
                    let Some(job) = job else { break };
                    let tx = job.tx.clone();
                    let message = match read_range(&client, job).await {
                        Ok(()) => RangeMessage::Done,
                        Err(ReadError::Snapshot(e)) => RangeMessage::Failed(e),
                        // The emitter is gone (the connector is stopping).
                        Err(ReadError::Closed) => return,
                    };
                    let failed = matches!(message, RangeMessage::Failed(_));
                    if tx.send(message).await.is_err() || failed {
                        return;
                    }
                }
                let _ = client.batch_execute("COMMIT").await;
            })
        })
        .collect()
}

enum ReadError {
    Snapshot(SnapshotError),
    Closed,
}

async fn read_range(client: &Client, job: Job) -> Result<(), ReadError> {
    let query = Query {
        filter: job.filter.as_deref(),
        key: &job.key,
        range: &job.range,
        limit: None,
        extra: None,
    };
    let mut rows = read_rows(client, &job.relation, query)
        .await
        .map_err(ReadError::Snapshot)?;
    let mut batch = Vec::with_capacity(BATCH_ROWS);
    while let Some(row) = rows.next_row().await.map_err(ReadError::Snapshot)? {
        let key = (!job.key.is_empty()).then(|| key_json(&rows.last_key));
        batch.push((row, key));
        if batch.len() == BATCH_ROWS {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_ROWS));
            job.tx
                .send(RangeMessage::Rows(full))
                .await
                .map_err(|_| ReadError::Closed)?;
        }
    }
    if !batch.is_empty() {
        job.tx
            .send(RangeMessage::Rows(batch))
            .await
            .map_err(|_| ReadError::Closed)?;
    }
    Ok(())
}

/// A key's texts as the JSON array the `walcast.snapshot.key` header carries.
pub fn key_json(texts: &[String]) -> Vec<u8> {
    serde_json::to_vec(texts).unwrap_or_default()
}
