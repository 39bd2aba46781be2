//! One record as the event stage hands it to the run loop.

use std::sync::Arc;

/// One record ready for the sink (position assigned by the caller, in order).
#[derive(Debug, Clone)]
pub struct Encoded {
    pub topic: Arc<str>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// Headers besides walcast's own position headers (Debezium's key-change headers).
    pub headers: Vec<(&'static str, Vec<u8>)>,
    /// The `walcast_events_total` series a data event counts in once it is sent (none
    /// for tombstones and transaction metadata).
    pub counter: Option<prometheus::IntCounter>,
    /// A data event or tombstone: it carries the connector's context headers.
    pub context: bool,
    /// The partition the record must go to (the outbox router's `column:partition`);
    /// `None`: by key, as the Java client chooses.
    pub partition: Option<i32>,
    /// The Kafka record timestamp in ms (the outbox router's
    /// `table_field_event_timestamp`); `None`: the time it is produced.
    pub timestamp_ms: Option<i64>,
}

impl Encoded {
    /// Bytes of key, value and headers (what `walcast_bytes_produced_total` counts).
    pub fn size(&self) -> usize {
        self.key.as_ref().map_or(0, Vec::len)
            + self.value.as_ref().map_or(0, Vec::len)
            + self
                .headers
                .iter()
                .map(|(name, value)| name.len() + value.len())
                .sum::<usize>()
    }

    /// A record without extra headers.
    pub fn new(topic: Arc<str>, key: Option<Vec<u8>>, value: Option<Vec<u8>>) -> Self {
        Encoded {
            topic,
            key,
            value,
            headers: Vec::new(),
            counter: None,
            context: false,
            partition: None,
            timestamp_ms: None,
        }
    }
}
