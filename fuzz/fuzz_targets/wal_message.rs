//! Fuzzes the streaming-replication framing (XLogData, keepalive): arbitrary bytes
//! never panic, and an XLogData payload goes on through the pgoutput decoder.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use walcast::source::pgoutput::{decode, DecodeContext};
use walcast::source::replication::protocol::parse_wal_message;
use walcast::source::replication::WalMessage;

fuzz_target!(|data: &[u8]| {
    if let Ok(WalMessage::XLogData { data, .. }) = parse_wal_message(Bytes::copy_from_slice(data)) {
        for in_stream in [false, true] {
            let _ = decode(&data, DecodeContext { in_stream });
        }
    }
});
