//! The replication reader: starts streaming a slot, decodes pgoutput, resolves
//! relations and values, puts large streamed transactions through the spool, and
//! hands committed transactions downstream in commit order over a bounded channel
//! (a slow consumer slows the reader; nothing grows without bound).
//!
//! Position reporting: every `status_interval`, and whenever the server asks, the
//! reader sends a standby status update whose flush LSN is whatever the consumer has
//! published on the `flushed` watch channel (the checkpoint), never more.

use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use tokio::sync::{mpsc, watch};
use tokio_postgres::Client;
use tracing::{debug, warn};

use super::pgoutput::{self, Column, DecodeContext, DecodeError, Message, OldTuple, TupleData};
use super::relation::{RelationCache, RelationError};
use super::replication::{ReplicationConnection, ReplicationError, WalMessage};
use super::spool::{Spool, SpoolConfig};
use crate::config::Source;
use crate::model::change::{OldRow, Row, RowChange, RowOp, TxEvent};
use crate::model::lsn::{pg_micros_to_unix_micros, Lsn};
use crate::model::relation::RelationInfo;
use crate::model::value::{parse_text, ValueError};

/// Messages handled back to back before the reader looks at its timers and shutdown.
const DRAIN_BUDGET: usize = 256;
/// Events handed downstream with one reservation of the channel. Sending them one by
/// one woke the event stage (or, with the channel full, the reader) once per change, a
/// cross-thread wake-up that cost more than decoding the change.
const EMIT_BATCH: usize = 64;
/// How often the reader confirms its position to the server while it waits for room
/// downstream (at most; the status interval when that is shorter). Well below any
/// practical `wal_sender_timeout`.
const BLOCKED_STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// How to stream.
#[derive(Debug, Clone)]
pub struct ReaderConfig {
    /// The connector's name, for its metrics (readiness drops while reconnecting).
    pub connector: String,
    pub slot: String,
    pub publication: String,
    /// 0/0 starts at the slot's confirmed position.
    pub start_lsn: Lsn,
    pub status_interval: Duration,
    pub spool: SpoolConfig,
}

/// Why the reader stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReaderError {
    #[error(transparent)]
    Replication(#[from] ReplicationError),
    #[error("{0}")]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Relation(#[from] RelationError),
    #[error("table {table}, column {column}: {error}")]
    Value {
        table: String,
        column: String,
        error: ValueError,
    },
    #[error("a change refers to relation {0}, which the server never described (protocol error)")]
    UnknownRelation(u32),
    #[error("a row of {table} has {got} columns, its relation has {expected}")]
    ColumnCount {
        table: String,
        got: usize,
        expected: usize,
    },
    #[error(transparent)]
    Spool(#[from] super::spool::SpoolError),
    #[error("cannot replay a spooled transaction: {0}")]
    Replay(#[from] std::io::Error),
    #[error("two-phase transactions are not supported (the slot was created with two_phase); recreate it without")]
    TwoPhase,
    #[error("the downstream stage stopped")]
    Downstream,
    #[error("{0}")]
    Missing(String),
}

impl ReaderError {
    /// True when reconnecting may help.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Replication(e) if e.is_transient())
    }
}

/// A started stream.
pub struct Reader {
    conn: ReplicationConnection,
    catalog: Client,
    cache: RelationCache,
    spool: Spool,
    out: mpsc::Sender<TxEvent>,
    flushed: watch::Receiver<Lsn>,
    status_interval: Duration,
    /// The end of the WAL the server has told us about.
    received: Lsn,
    /// The top-level xid of the streamed transaction whose chunk is arriving.
    in_stream: Option<u32>,
    /// Slot and publication, for messages.
    names: ReaderConfig,
    /// Between Begin and Commit of a (non-streamed) transaction.
    in_txn: bool,
    /// Events not yet handed downstream (at most [`EMIT_BATCH`]); sent before the
    /// reader waits for the server again, so batching adds no latency.
    batch: Vec<TxEvent>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

impl Reader {
    /// Connects for replication and starts streaming `config.slot`. `catalog` is an
    /// ordinary connection to the same database, for type lookups.
    pub async fn start(
        source: &Source,
        catalog: Client,
        config: &ReaderConfig,
        out: mpsc::Sender<TxEvent>,
        flushed: watch::Receiver<Lsn>,
    ) -> Result<Self, ReaderError> {
        let mut conn = ReplicationConnection::connect(source).await?;
        let version = conn.pgoutput_version();
        let mut options = vec![
            ("proto_version", version.to_string()),
            (
                "publication_names",
                crate::postgres::quote_ident(&config.publication),
            ),
        ];
        if conn.server_version() >= 140000 {
            options.push(("messages", "true".to_owned()));
        }
        if version >= 2 {
            options.push(("streaming", "on".to_owned()));
        }
        conn.start_replication(&config.slot, config.start_lsn, &options)
            .await
            .map_err(|e| explain_missing(e, config))?;
        debug!(slot = %config.slot, proto_version = version, "replication started");
        Ok(Self {
            conn,
            catalog,
            cache: RelationCache::default(),
            spool: Spool::new(config.spool.clone()),
            out,
            flushed,
            status_interval: config.status_interval,
            received: config.start_lsn,
            in_stream: None,
            names: config.clone(),
            in_txn: false,
            batch: Vec::with_capacity(EMIT_BATCH),
        })
    }

    /// Streams until `shutdown` turns true (then confirms the flushed position and
    /// stops cleanly) or an error ends it.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), ReaderError> {
        let mut ticker = tokio::time::interval(self.status_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A new checkpoint is confirmed within a quarter second, so PostgreSQL releases
        // WAL promptly (the status interval only bounds how long an idle stream waits).
        let mut confirm = tokio::time::interval(Duration::from_millis(250));
        confirm.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_confirmed = *self.flushed.borrow();
        loop {
            tokio::select! {
                message = self.conn.recv() => {
                    self.on_message(message).await?;
                    // Messages already received are handled without a trip through
                    // select! each (its timers and shutdown watch cost more than a
                    // small change's decoding); the budget keeps those checked.
                    for _ in 0..DRAIN_BUDGET {
                        match self.conn.recv().now_or_never() {
                            Some(message) => self.on_message(message).await?,
                            None => break,
                        }
                    }
                    self.send_batch().await?;
                }
                _ = ticker.tick() => {
                    last_confirmed = *self.flushed.borrow();
                    self.send_status(false).await?;
                }
                _ = confirm.tick() => {
                    let flushed = *self.flushed.borrow();
                    if flushed != last_confirmed {
                        last_confirmed = flushed;
                        self.send_status(false).await?;
                    }
                }
                _ = shutdown.changed() => {
                    self.send_status(false).await?;
                    self.conn.stop().await?;
                    return Ok(());
                }
            }
        }
    }

    /// One message of the replication stream.
    async fn on_message(
        &mut self,
        message: Result<Option<WalMessage>, ReplicationError>,
    ) -> Result<(), ReaderError> {
        match message.map_err(|e| explain_missing(e, &self.names))? {
            Some(WalMessage::XLogData {
                wal_start,
                wal_end,
                data,
                ..
            }) => {
                self.received = self.received.max(wal_end);
                self.handle(data, wal_start).await
            }
            Some(WalMessage::Keepalive {
                wal_end,
                reply_requested,
                ..
            }) => {
                self.received = self.received.max(wal_end);
                // Idle only between transactions: not inside one, nor between the chunks
                // of a streamed one still open in the spool (the slot must not move past
                // a transaction walcast has not delivered).
                if !self.in_txn && self.in_stream.is_none() && !self.spool.has_open() {
                    self.emit(TxEvent::Idle { wal_end }).await?;
                }
                if reply_requested {
                    self.send_status(false).await?;
                }
                Ok(())
            }
            None => Err(ReplicationError::Io {
                target: "PostgreSQL".into(),
                detail: "the server ended the replication stream".into(),
            }
            .into()),
        }
    }

    async fn send_status(&mut self, reply: bool) -> Result<(), ReaderError> {
        let flushed = *self.flushed.borrow();
        self.conn
            .send_status(self.received, flushed, flushed, reply)
            .await?;
        Ok(())
    }

    /// Queues `event` for the event stage; a full batch goes at once.
    async fn emit(&mut self, event: TxEvent) -> Result<(), ReaderError> {
        self.batch.push(event);
        if self.batch.len() >= EMIT_BATCH {
            self.send_batch().await?;
        }
        Ok(())
    }

    /// Hands the queued events downstream, in order, waiting for room for all of them.
    /// While it waits (a slow broker or registry has filled the channel) it keeps
    /// sending standby status updates: the server drops a client it has not heard from
    /// for `wal_sender_timeout`, and a stall downstream is no reason to lose the
    /// connection (and decode everything again after a reconnect).
    async fn send_batch(&mut self) -> Result<(), ReaderError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let out = self.out.clone();
        let reserve = out.reserve_many(self.batch.len());
        tokio::pin!(reserve);
        let every = self.status_interval.min(BLOCKED_STATUS_INTERVAL);
        let permits = loop {
            tokio::select! {
                permits = &mut reserve => break permits.map_err(|_| ReaderError::Downstream)?,
                _ = tokio::time::sleep(every) => self.send_status(false).await?,
            }
        };
        for (permit, event) in permits.zip(self.batch.drain(..)) {
            permit.send(event);
        }
        Ok(())
    }

    /// One pgoutput message; `lsn` is the WAL position of the change it carries.
    async fn handle(&mut self, data: Bytes, lsn: Lsn) -> Result<(), ReaderError> {
        let ctx = DecodeContext {
            in_stream: self.in_stream.is_some(),
        };
        let message = pgoutput::decode(&data, ctx)?;
        if let Some(top) = self.in_stream {
            match &message {
                Message::StreamStop => {
                    self.in_stream = None;
                    return Ok(());
                }
                Message::Message(m) if !m.transactional => {}
                _ => {
                    let subxid = message_xid(&message).unwrap_or(top);
                    // The record keeps the change's LSN in front of the message.
                    let mut record = Vec::with_capacity(8 + data.len());
                    record.extend_from_slice(&lsn.0.to_be_bytes());
                    record.extend_from_slice(&data);
                    self.spool.append(top, subxid, &record)?;
                    return Ok(());
                }
            }
        }
        match message {
            Message::Begin(b) => {
                self.in_txn = true;
                self.emit(TxEvent::Begin {
                    xid: b.xid,
                    commit_lsn: b.final_lsn,
                    commit_time_us: pg_micros_to_unix_micros(b.commit_time),
                })
                .await
            }
            Message::Commit(c) => {
                self.in_txn = false;
                self.emit(TxEvent::Commit {
                    xid: 0,
                    commit_lsn: c.commit_lsn,
                    end_lsn: c.end_lsn,
                    commit_time_us: pg_micros_to_unix_micros(c.commit_time),
                })
                .await
            }
            Message::StreamStart(s) => {
                self.in_stream = Some(s.xid);
                Ok(())
            }
            Message::StreamStop => Ok(()),
            Message::StreamAbort(a) => {
                self.spool.abort(a.xid, a.subxid);
                Ok(())
            }
            Message::StreamCommit(c) => {
                self.emit(TxEvent::Begin {
                    xid: c.xid,
                    commit_lsn: c.commit_lsn,
                    commit_time_us: pg_micros_to_unix_micros(c.commit_time),
                })
                .await?;
                let mut replay = self.spool.commit(c.xid)?;
                while let Some(record) = replay.next_record()? {
                    let Some(lsn_bytes) = record.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok())
                    else {
                        return Err(ReaderError::Replay(std::io::Error::other(
                            "spool record without its LSN",
                        )));
                    };
                    let message =
                        pgoutput::decode(&record.slice(8..), DecodeContext { in_stream: true })?;
                    self.apply(message, Lsn(u64::from_be_bytes(lsn_bytes)), true)
                        .await?;
                }
                self.emit(TxEvent::Commit {
                    xid: c.xid,
                    commit_lsn: c.commit_lsn,
                    end_lsn: c.end_lsn,
                    commit_time_us: pg_micros_to_unix_micros(c.commit_time),
                })
                .await
            }
            Message::Origin(o) => {
                debug!(origin = %o.name, "transaction replicated from another origin");
                Ok(())
            }
            Message::BeginPrepare(_)
            | Message::Prepare(_)
            | Message::CommitPrepared(_)
            | Message::RollbackPrepared(_)
            | Message::StreamPrepare(_) => Err(ReaderError::TwoPhase),
            other => self.apply(other, lsn, false).await,
        }
    }

    /// Relation, Type and data messages, live or replayed from the spool.
    async fn apply(
        &mut self,
        message: Message,
        lsn: Lsn,
        replayed: bool,
    ) -> Result<(), ReaderError> {
        match message {
            Message::Relation(r) => {
                let (info, changed) = self.cache.apply(&r, &self.catalog).await?;
                if changed {
                    debug!(table = %info.qualified(), version = info.version, "table changed shape");
                    self.emit(TxEvent::RelationChanged(info)).await?;
                }
                Ok(())
            }
            Message::Type(t) => {
                self.cache.note_type(t.oid, &t.namespace, &t.name);
                Ok(())
            }
            Message::Insert(i) => {
                let relation = self.relation(i.relation)?;
                let new = Some(to_row(&relation, &i.new)?);
                self.emit(TxEvent::Change(RowChange {
                    relation,
                    op: RowOp::Insert,
                    old: None,
                    new,
                    lsn,
                }))
                .await
            }
            Message::Update(u) => {
                let relation = self.relation(u.relation)?;
                let old = u
                    .old
                    .as_ref()
                    .map(|o| to_old_row(&relation, o))
                    .transpose()?;
                let new = Some(to_row(&relation, &u.new)?);
                self.emit(TxEvent::Change(RowChange {
                    relation,
                    op: RowOp::Update,
                    old,
                    new,
                    lsn,
                }))
                .await
            }
            Message::Delete(d) => {
                let relation = self.relation(d.relation)?;
                let old = Some(to_old_row(&relation, &d.old)?);
                self.emit(TxEvent::Change(RowChange {
                    relation,
                    op: RowOp::Delete,
                    old,
                    new: None,
                    lsn,
                }))
                .await
            }
            Message::Truncate(t) => {
                let relations = t
                    .relations
                    .iter()
                    .map(|oid| self.relation(*oid))
                    .collect::<Result<Vec<_>, _>>()?;
                self.emit(TxEvent::Truncate {
                    relations,
                    lsn,
                    cascade: t.options & 1 == 1,
                    restart_identity: t.options & 2 == 2,
                })
                .await
            }
            Message::Message(m) => {
                self.emit(TxEvent::Message {
                    transactional: m.transactional,
                    lsn: m.lsn,
                    prefix: m.prefix,
                    content: m.content,
                })
                .await
            }
            other => {
                if replayed {
                    warn!(
                        ?other,
                        "unexpected message inside a streamed transaction; ignored"
                    );
                }
                Ok(())
            }
        }
    }

    fn relation(&self, oid: u32) -> Result<std::sync::Arc<RelationInfo>, ReaderError> {
        self.cache
            .get(oid)
            .cloned()
            .ok_or(ReaderError::UnknownRelation(oid))
    }
}

/// The xid a streamed data message carries (its (sub)transaction).
fn message_xid(message: &Message) -> Option<u32> {
    match message {
        Message::Relation(m) => m.xid,
        Message::Type(m) => m.xid,
        Message::Insert(m) => m.xid,
        Message::Update(m) => m.xid,
        Message::Delete(m) => m.xid,
        Message::Truncate(m) => m.xid,
        Message::Message(m) => m.xid,
        _ => None,
    }
}

fn to_old_row(relation: &RelationInfo, old: &OldTuple) -> Result<OldRow, ReaderError> {
    Ok(match old {
        OldTuple::Key(t) => OldRow::Key(to_row(relation, t)?),
        OldTuple::Full(t) => OldRow::Full(to_row(relation, t)?),
    })
}

/// Parses a tuple's columns into values of the relation's types.
pub fn to_row(relation: &RelationInfo, tuple: &TupleData) -> Result<Row, ReaderError> {
    if tuple.columns.len() != relation.columns.len() {
        return Err(ReaderError::ColumnCount {
            table: relation.qualified(),
            got: tuple.columns.len(),
            expected: relation.columns.len(),
        });
    }
    let mut row = Vec::with_capacity(tuple.columns.len());
    for (column, info) in tuple.columns.iter().zip(&relation.columns) {
        let value = match column {
            Column::Null => crate::model::value::Value::Null,
            Column::UnchangedToast => crate::model::value::Value::UnchangedToast,
            Column::Text(bytes) => {
                let text = std::str::from_utf8(bytes).map_err(|_| ReaderError::Value {
                    table: relation.qualified(),
                    column: info.name.clone(),
                    error: ValueError {
                        ty: info.type_info.name.clone(),
                        text: "<not UTF-8>".into(),
                        reason: "the server sent bytes that are not UTF-8".into(),
                    },
                })?;
                parse_text(&info.type_info.pg_type, text).map_err(|error| ReaderError::Value {
                    table: relation.qualified(),
                    column: info.name.clone(),
                    error,
                })?
            }
            Column::Binary(_) => {
                return Err(ReaderError::Value {
                    table: relation.qualified(),
                    column: info.name.clone(),
                    error: ValueError {
                        ty: info.type_info.name.clone(),
                        text: "<binary>".into(),
                        reason: "binary column data was not requested".into(),
                    },
                })
            }
        };
        row.push(value);
    }
    Ok(row)
}

/// A slot or publication that does not exist (42704) is not transient: say which and
/// what to do.
fn explain_missing(e: ReplicationError, config: &ReaderConfig) -> ReaderError {
    use crate::postgres::sqlstate::{is_missing_object, is_wrong_state};
    match e.code() {
        Some(code) if is_missing_object(code) => ReaderError::Missing(format!(
            "{e}; the slot ({}) or publication ({}) does not exist: run walcast setup, or check that nobody dropped them",
            config.slot, config.publication
        )),
        // An invalidated slot: "cannot read from logical replication slot" (PostgreSQL
        // 13-16), "can no longer get changes from replication slot" (17+).
        Some(code)
            if is_wrong_state(code)
                && ["cannot read from logical replication slot", "can no longer get changes"]
                .iter()
                .any(|m| e.to_string().contains(m)) =>
        {
            ReaderError::Missing(format!(
                "{e}; slot {} was invalidated (wal_status = lost: PostgreSQL removed WAL it still needed, e.g. past max_slot_wal_keep_size), so the changes since walcast's last checkpoint are gone; set [source] snapshot_mode = \"when_needed\" to take a new snapshot, or run once with walcast run --accept-slot-loss to accept the gap",
                config.slot
            ))
        }
        _ => ReaderError::Replication(e),
    }
}

/// Streams with [`Reader`] until `shutdown`, reconnecting with exponential backoff
/// (0.5 s doubling to 30 s) after transient failures: the server restarts from the
/// slot's confirmed position, announced downstream as [`TxEvent::Restarted`].
pub async fn stream_with_reconnect(
    source: &Source,
    config: &ReaderConfig,
    out: mpsc::Sender<TxEvent>,
    flushed: watch::Receiver<Lsn>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ReaderError> {
    let mut backoff = crate::shutdown::Backoff::reconnect();
    loop {
        let attempt = async {
            let catalog = crate::postgres::connect(source, None)
                .await
                .map_err(|e| ReaderError::Replication(ReplicationError::Connect(e)))?;
            Reader::start(source, catalog, config, out.clone(), flushed.clone()).await
        };
        let board = crate::observe::board();
        let result = match attempt.await {
            Ok(reader) => {
                backoff.reset();
                board.set_retrying(&config.connector, "postgres", false);
                board.set_state(&config.connector, crate::observe::ConnectorState::Streaming);
                reader.run(shutdown.clone()).await
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => return Ok(()),
            Err(e) if e.is_transient() => {
                // Not ready while the connection is being made again.
                board.set_retrying(&config.connector, "postgres", true);
                board.note_error(&config.connector, e.to_string());
                let wait = backoff.next_wait();
                warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "replication interrupted; reconnecting from the slot's confirmed position");
                out.send(TxEvent::Restarted)
                    .await
                    .map_err(|_| ReaderError::Downstream)?;
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => return Ok(()),
                }
            }
            Err(e) => return Err(e),
        }
    }
}
