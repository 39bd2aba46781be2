//! A replication connection (`replication=database`) built on postgres-protocol's
//! codecs: TLS per sslmode, password/MD5/SCRAM-SHA-256 login, simple queries
//! (IDENTIFY_SYSTEM, CREATE_REPLICATION_SLOT) and the CopyBoth stream of
//! START_REPLICATION. Upstream tokio-postgres has no CopyBoth, hence this module.

use std::time::Duration;

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::message::{backend, frontend};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::login::negotiate_tls;
use super::protocol::{parse_wal_message, standby_status_update, WalMessage};
use crate::config::Source;
use crate::model::lsn::{pg_now_micros, Lsn};
use crate::postgres::{explain_client_error, ConnectError};

pub(super) trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Stream for T {}

/// Why the replication connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// Login failed (the message names the cause and the fix).
    #[error("{0}")]
    Connect(#[from] ConnectError),
    #[error("lost the replication connection to {target}: {detail}")]
    Io { target: String, detail: String },
    #[error("PostgreSQL refused `{command}`: {message} (SQLSTATE {code})")]
    Server {
        command: String,
        code: String,
        message: String,
    },
    #[error("replication protocol error from {target}: {detail}")]
    Protocol { target: String, detail: String },
}

impl ReplicationError {
    /// True when reconnecting later may succeed (network, restart, slot briefly busy).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connect(e) => e.transient,
            Self::Io { .. } => true,
            Self::Server { code, .. } => crate::postgres::sqlstate::is_transient(code),
            Self::Protocol { .. } => false,
        }
    }

    /// The SQLSTATE when the server refused a command.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Server { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// Rows of a simple query, as text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

impl QueryResult {
    /// The first row's value of `column`.
    pub fn first(&self, column: &str) -> Option<&str> {
        let i = self.columns.iter().position(|c| c == column)?;
        self.rows.first()?.get(i)?.as_deref()
    }
}

/// IDENTIFY_SYSTEM's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemIdentity {
    pub system_id: String,
    pub timeline: u32,
    pub xlog_pos: Lsn,
    pub dbname: Option<String>,
}

/// What CREATE_REPLICATION_SLOT returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedSlot {
    pub name: String,
    /// The first LSN the slot will stream; the exported snapshot sees exactly the data before it.
    pub consistent_point: Lsn,
    /// With `export_snapshot`: the snapshot name for `SET TRANSACTION SNAPSHOT`, valid
    /// until the next command on this connection.
    pub snapshot_name: Option<String>,
}

/// One connection in replication mode.
pub struct ReplicationConnection {
    pub(super) stream: Box<dyn Stream>,
    rbuf: BytesMut,
    pub(super) wbuf: BytesMut,
    pub(super) target: String,
    pub(super) server_version: i32,
    copy_both: bool,
    /// TLS is on.
    pub(super) encrypted: bool,
    /// The server certificate's `tls-server-end-point` channel binding data.
    pub(super) end_point: Option<Vec<u8>>,
    /// The login used SCRAM-SHA-256-PLUS (bound to this TLS session).
    pub(super) channel_bound: bool,
}

impl std::fmt::Debug for ReplicationConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicationConnection")
            .field("target", &self.target)
            .field("server_version", &self.server_version)
            .finish_non_exhaustive()
    }
}

impl ReplicationConnection {
    /// Connects and logs in as `[source]` says, with `replication=database`.
    pub async fn connect(source: &Source) -> Result<Self, ReplicationError> {
        let mut conn = Self::open(source).await?;
        tokio::time::timeout(source.connect_timeout, conn.startup(source, true))
            .await
            .map_err(|_| {
                ConnectError::new(format!("login to {} timed out", conn.target), true)
            })??;
        Ok(conn)
    }

    /// A TCP connection to `[source]` with TLS as its sslmode says, before the startup
    /// message.
    pub(super) async fn open(source: &Source) -> Result<Self, ReplicationError> {
        let target = format!("{}:{}", source.host, source.port);
        let timeout = source.connect_timeout;
        let tcp = match tokio::time::timeout(timeout, TcpStream::connect((source.host.as_str(), source.port))).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return Err(explain_client_error(&e.to_string(), source, &source.user, &target).into()),
            Err(_) => {
                return Err(ConnectError::new(
                    format!("cannot reach PostgreSQL at {target}: no answer within {}s; check [source] host and port", timeout.as_secs()),
                    true,
                )
                .into())
            }
        };
        let _ = tcp.set_nodelay(true);
        let negotiated = tokio::time::timeout(timeout, negotiate_tls(tcp, source, &target))
            .await
            .map_err(|_| {
                ConnectError::new(format!("TLS negotiation with {target} timed out"), true)
            })??;
        Ok(Self {
            stream: negotiated.stream,
            rbuf: BytesMut::with_capacity(128 * 1024),
            wbuf: BytesMut::with_capacity(1024),
            target,
            server_version: 0,
            copy_both: false,
            encrypted: negotiated.encrypted,
            end_point: negotiated.end_point,
            channel_bound: false,
        })
    }

    /// Whether the connection is encrypted (TLS).
    pub fn encrypted(&self) -> bool {
        self.encrypted
    }

    /// Whether the login was bound to the TLS session (SCRAM-SHA-256-PLUS).
    pub fn channel_bound(&self) -> bool {
        self.channel_bound
    }

    /// `server_version_num`, e.g. 150018.
    pub fn server_version(&self) -> i32 {
        self.server_version
    }

    /// The pgoutput protocol version this server speaks best: 4 on 16+, 3 on 15,
    /// 2 on 14 (streaming of large transactions), 1 before.
    pub fn pgoutput_version(&self) -> u32 {
        match self.server_version {
            v if v >= 160000 => 4,
            v if v >= 150000 => 3,
            v if v >= 140000 => 2,
            _ => 1,
        }
    }

    /// Runs one replication command or SQL query with the simple protocol.
    pub async fn simple_query(&mut self, sql: &str) -> Result<QueryResult, ReplicationError> {
        if self.copy_both {
            return Err(self.protocol("a query was sent while streaming".into()));
        }
        self.wbuf.clear();
        frontend::query(sql, &mut self.wbuf).map_err(|e| self.protocol(e.to_string()))?;
        self.flush().await?;
        let mut result = QueryResult::default();
        let mut error = None;
        loop {
            match self.read_backend().await? {
                Backend::Message(backend::Message::RowDescription(body)) => {
                    let mut fields = body.fields();
                    while let Some(f) = fields.next().map_err(|e| self.protocol(e.to_string()))? {
                        result.columns.push(f.name().to_owned());
                    }
                }
                Backend::Message(backend::Message::DataRow(body)) => {
                    let buffer = body.buffer();
                    let mut ranges = body.ranges();
                    let mut row = Vec::new();
                    while let Some(range) =
                        ranges.next().map_err(|e| self.protocol(e.to_string()))?
                    {
                        row.push(range.map(|r| String::from_utf8_lossy(&buffer[r]).into_owned()));
                    }
                    result.rows.push(row);
                }
                Backend::Message(backend::Message::ErrorResponse(body)) => {
                    error = Some(self.server_error(sql, &body));
                }
                Backend::Message(backend::Message::ReadyForQuery(_)) => {
                    return match error {
                        Some(e) => Err(e),
                        None => Ok(result),
                    };
                }
                Backend::Message(_) => {}
                Backend::CopyBothResponse => {
                    return Err(self.protocol(format!("unexpected CopyBoth after `{sql}`")))
                }
            }
        }
    }

    pub async fn identify_system(&mut self) -> Result<SystemIdentity, ReplicationError> {
        let r = self.simple_query("IDENTIFY_SYSTEM").await?;
        let field = |name: &str| r.first(name).map(str::to_owned);
        Ok(SystemIdentity {
            system_id: field("systemid").unwrap_or_default(),
            timeline: field("timeline").and_then(|t| t.parse().ok()).unwrap_or(0),
            xlog_pos: field("xlogpos")
                .and_then(|l| l.parse().ok())
                .unwrap_or_default(),
            dbname: field("dbname"),
        })
    }

    /// Creates a logical slot using pgoutput; `temporary` slots vanish with the
    /// connection; `export_snapshot` keeps a snapshot for an initial load.
    pub async fn create_slot(
        &mut self,
        name: &str,
        temporary: bool,
        export_snapshot: bool,
    ) -> Result<CreatedSlot, ReplicationError> {
        let sql = format!(
            "CREATE_REPLICATION_SLOT {}{} LOGICAL pgoutput {}",
            crate::postgres::quote_ident(name),
            if temporary { " TEMPORARY" } else { "" },
            if export_snapshot {
                "EXPORT_SNAPSHOT"
            } else {
                "NOEXPORT_SNAPSHOT"
            }
        );
        let r = self.simple_query(&sql).await?;
        let consistent_point = r
            .first("consistent_point")
            .and_then(|l| l.parse().ok())
            .ok_or_else(|| {
                self.protocol("CREATE_REPLICATION_SLOT returned no consistent_point".into())
            })?;
        Ok(CreatedSlot {
            name: name.to_owned(),
            consistent_point,
            snapshot_name: r.first("snapshot_name").map(str::to_owned),
        })
    }

    /// Starts streaming `slot` from `start` (0/0: from the slot's confirmed position)
    /// with pgoutput options; afterwards only [`Self::recv`], [`Self::send_status`] and
    /// [`Self::stop`] are valid.
    pub async fn start_replication(
        &mut self,
        slot: &str,
        start: Lsn,
        options: &[(&str, String)],
    ) -> Result<(), ReplicationError> {
        let opts = options
            .iter()
            .map(|(k, v)| format!("\"{k}\" {}", crate::postgres::quote_literal(v)))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "START_REPLICATION SLOT {} LOGICAL {start} ({opts})",
            crate::postgres::quote_ident(slot)
        );
        self.wbuf.clear();
        frontend::query(&sql, &mut self.wbuf).map_err(|e| self.protocol(e.to_string()))?;
        self.flush().await?;
        loop {
            match self.read_backend().await? {
                Backend::CopyBothResponse => {
                    self.copy_both = true;
                    return Ok(());
                }
                Backend::Message(backend::Message::ErrorResponse(body)) => {
                    let err = self.server_error(&format!("START_REPLICATION SLOT {slot}"), &body);
                    self.drain_until_ready().await;
                    return Err(err);
                }
                Backend::Message(_) => {}
            }
        }
    }

    /// The next message of the stream; `None` when the server ended it. Cancel-safe:
    /// it only awaits reading into an internal buffer.
    pub async fn recv(&mut self) -> Result<Option<WalMessage>, ReplicationError> {
        loop {
            match self.read_backend().await? {
                Backend::Message(backend::Message::CopyData(body)) => {
                    return parse_wal_message(body.into_bytes())
                        .map(Some)
                        .map_err(|e| self.protocol(e.to_string()));
                }
                Backend::Message(backend::Message::CopyDone) => {
                    self.copy_both = false;
                    return Ok(None);
                }
                Backend::Message(backend::Message::ErrorResponse(body)) => {
                    return Err(self.server_error("streaming", &body));
                }
                Backend::Message(_) => {}
                Backend::CopyBothResponse => return Err(self.protocol("a second CopyBoth".into())),
            }
        }
    }

    /// Sends a standby status update. `flush` is what PostgreSQL may release.
    pub async fn send_status(
        &mut self,
        write: Lsn,
        flush: Lsn,
        apply: Lsn,
        reply: bool,
    ) -> Result<(), ReplicationError> {
        let payload = standby_status_update(write, flush, apply, pg_now_micros(), reply);
        self.wbuf.clear();
        frontend::CopyData::new(&payload[..])
            .map_err(|e| self.protocol(e.to_string()))?
            .write(&mut self.wbuf);
        self.flush().await
    }

    /// Ends the stream cleanly (CopyDone), then closes the connection.
    pub async fn stop(mut self) -> Result<(), ReplicationError> {
        if self.copy_both {
            self.wbuf.clear();
            frontend::copy_done(&mut self.wbuf);
            self.flush().await?;
            self.drain_until_ready().await;
        }
        self.wbuf.clear();
        frontend::terminate(&mut self.wbuf);
        let _ = self.flush().await;
        let _ = self.stream.shutdown().await;
        Ok(())
    }

    async fn drain_until_ready(&mut self) {
        let drain = async {
            loop {
                match self.read_backend().await {
                    Ok(Backend::Message(backend::Message::ReadyForQuery(_))) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
    }

    pub(super) async fn flush(&mut self) -> Result<(), ReplicationError> {
        let target = self.target.clone();
        let io = |e: std::io::Error| ReplicationError::Io {
            target: target.clone(),
            detail: e.to_string(),
        };
        self.stream.write_all(&self.wbuf).await.map_err(io)?;
        self.stream.flush().await.map_err(io)
    }

    /// Reads one backend message, recognising CopyBothResponse, which
    /// postgres-protocol's parser does not know.
    pub(super) async fn read_backend(&mut self) -> Result<Backend, ReplicationError> {
        loop {
            if let Some(header) =
                backend::Header::parse(&self.rbuf).map_err(|e| self.protocol(e.to_string()))?
            {
                let total = header.len() as usize + 1;
                if header.tag() == b'W' {
                    if self.rbuf.len() >= total {
                        let _ = self.rbuf.split_to(total);
                        return Ok(Backend::CopyBothResponse);
                    }
                } else if let Some(message) = backend::Message::parse(&mut self.rbuf)
                    .map_err(|e| self.protocol(e.to_string()))?
                {
                    return Ok(Backend::Message(message));
                }
                self.rbuf
                    .reserve(total.saturating_sub(self.rbuf.len()).max(64 * 1024));
            } else {
                self.rbuf.reserve(64 * 1024);
            }
            let n =
                self.stream
                    .read_buf(&mut self.rbuf)
                    .await
                    .map_err(|e| ReplicationError::Io {
                        target: self.target.clone(),
                        detail: e.to_string(),
                    })?;
            if n == 0 {
                return Err(ReplicationError::Io {
                    target: self.target.clone(),
                    detail: "the server closed the connection".into(),
                });
            }
        }
    }

    pub(super) fn protocol(&self, detail: String) -> ReplicationError {
        ReplicationError::Protocol {
            target: self.target.clone(),
            detail,
        }
    }

    pub(super) fn server_error(
        &self,
        command: &str,
        body: &backend::ErrorResponseBody,
    ) -> ReplicationError {
        let (code, message) = error_fields(body);
        ReplicationError::Server {
            command: command.to_owned(),
            code,
            message,
        }
    }
}

pub(super) enum Backend {
    Message(backend::Message),
    CopyBothResponse,
}

pub(super) fn error_fields(body: &backend::ErrorResponseBody) -> (String, String) {
    let mut code = String::new();
    let mut message = String::new();
    let mut fields = body.fields();
    while let Ok(Some(field)) = fields.next() {
        match field.type_() {
            b'C' => code = String::from_utf8_lossy(field.value_bytes()).into_owned(),
            b'M' => message = String::from_utf8_lossy(field.value_bytes()).into_owned(),
            _ => {}
        }
    }
    (code, message)
}

/// "15.18 (Debian …)" or "16beta1" → 150018 / 160000.
pub(super) fn parse_server_version(text: &str) -> i32 {
    let numeric: String = text
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mut parts = numeric.split('.').map(|p| p.parse::<i32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    if major >= 10 {
        major * 10000 + minor
    } else {
        major * 10000 + minor * 100 + parts.next().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_server_version;

    #[test]
    fn server_versions_parse() {
        assert_eq!(
            parse_server_version("15.18 (Debian 15.18-0+deb12u1)"),
            150018
        );
        assert_eq!(parse_server_version("16beta1"), 160000);
        assert_eq!(parse_server_version("12.2"), 120002);
        assert_eq!(parse_server_version("9.6.24"), 90624);
    }
}
