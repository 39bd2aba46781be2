//! The streaming-replication sub-protocol inside CopyData: XLogData and primary
//! keepalives from the server, standby status updates from walcast; pure.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::model::lsn::Lsn;

/// One message from the walsender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalMessage {
    /// WAL data: here, one pgoutput message.
    XLogData {
        /// Where this data starts in the WAL (0 for some messages).
        wal_start: Lsn,
        /// The server's current end of WAL.
        wal_end: Lsn,
        send_time: i64,
        data: Bytes,
    },
    /// "I'm here"; with `reply_requested`, answer now or be disconnected at
    /// wal_sender_timeout.
    Keepalive {
        wal_end: Lsn,
        send_time: i64,
        reply_requested: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed replication message: {0}")]
pub struct WalMessageError(pub String);

/// Parses the payload of one CopyData from the walsender.
pub fn parse_wal_message(mut data: Bytes) -> Result<WalMessage, WalMessageError> {
    let short = |what: &str| WalMessageError(format!("{what} message is too short"));
    if data.is_empty() {
        return Err(WalMessageError("empty CopyData".into()));
    }
    match data.get_u8() {
        b'w' => {
            if data.len() < 24 {
                return Err(short("XLogData"));
            }
            let wal_start = Lsn(data.get_u64());
            let wal_end = Lsn(data.get_u64());
            let send_time = data.get_i64();
            Ok(WalMessage::XLogData {
                wal_start,
                wal_end,
                send_time,
                data,
            })
        }
        b'k' => {
            if data.len() < 17 {
                return Err(short("keepalive"));
            }
            Ok(WalMessage::Keepalive {
                wal_end: Lsn(data.get_u64()),
                send_time: data.get_i64(),
                reply_requested: data.get_u8() == 1,
            })
        }
        other => Err(WalMessageError(format!(
            "unknown replication message type {other:#04x}"
        ))),
    }
}

/// The standby status update: what walcast has received (`write`), made durable
/// downstream (`flush`: PostgreSQL may recycle WAL before it) and applied.
pub fn standby_status_update(
    write: Lsn,
    flush: Lsn,
    apply: Lsn,
    now_pg_micros: i64,
    reply: bool,
) -> BytesMut {
    let mut out = BytesMut::with_capacity(34);
    out.put_u8(b'r');
    out.put_u64(write.0);
    out.put_u64(flush.0);
    out.put_u64(apply.0);
    out.put_i64(now_pg_micros);
    out.put_u8(u8::from(reply));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_xlogdata_and_keepalive() {
        let mut w = BytesMut::new();
        w.put_u8(b'w');
        w.put_u64(1);
        w.put_u64(2);
        w.put_i64(3);
        w.put_slice(b"Bpayload");
        assert_eq!(
            parse_wal_message(w.freeze()).unwrap(),
            WalMessage::XLogData {
                wal_start: Lsn(1),
                wal_end: Lsn(2),
                send_time: 3,
                data: Bytes::from_static(b"Bpayload")
            }
        );
        let mut k = BytesMut::new();
        k.put_u8(b'k');
        k.put_u64(9);
        k.put_i64(4);
        k.put_u8(1);
        assert_eq!(
            parse_wal_message(k.freeze()).unwrap(),
            WalMessage::Keepalive {
                wal_end: Lsn(9),
                send_time: 4,
                reply_requested: true
            }
        );
    }

    #[test]
    fn malformed_messages_are_errors() {
        assert!(parse_wal_message(Bytes::new()).is_err());
        assert!(parse_wal_message(Bytes::from_static(b"w\0\0")).is_err());
        assert!(parse_wal_message(Bytes::from_static(b"k\0")).is_err());
        assert!(parse_wal_message(Bytes::from_static(b"x")).is_err());
    }

    #[test]
    fn status_update_layout() {
        let b = standby_status_update(Lsn(1), Lsn(2), Lsn(3), 4, true);
        assert_eq!(b.len(), 34);
        assert_eq!(b[0], b'r');
        assert_eq!(&b[1..9], &1u64.to_be_bytes());
        assert_eq!(&b[9..17], &2u64.to_be_bytes());
        assert_eq!(&b[17..25], &3u64.to_be_bytes());
        assert_eq!(&b[25..33], &4i64.to_be_bytes());
        assert_eq!(b[33], 1);
    }
}
