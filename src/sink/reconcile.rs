//! Reading back what Kafka holds, for exactly-once restarts: the last position in each
//! partition, the connector's last committed checkpoint record, and the key of the last
//! initial-snapshot record per partition. Every reader is read_committed and walks back
//! from a partition's end. Blocking calls (run them off the async runtime).

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::Message;

use super::checkpoint_record::CheckpointRecord;
use super::error::SinkError;
use super::kafka::{
    base_config, HEADER_POSITION, HEADER_SNAPSHOT_KEY, HEADER_SOURCE, OFFSETS_TOPIC,
};
use super::partition::partition_for_key;
use crate::checkpoint::Position;
use crate::config::Kafka;
use crate::model::lsn::Lsn;

/// Whose records a read-back may use. Every record a connector writes carries its
/// identity (connector name and the database's system identifier) in the
/// [`HEADER_SOURCE`] header, and its checkpoint records carry it as `source`: a record
/// of another producer or another connector sharing a topic, whatever position it
/// claims, never makes walcast skip its own events.
#[derive(Debug, Clone)]
pub struct Origin {
    /// walcast's Kafka client id (the reading consumers' group is derived from it).
    pub client_id: String,
    pub identity: String,
}

impl Origin {
    /// The identity of connector `name` on the database cluster with `system_id`.
    pub fn new(name: &str, system_id: &str) -> Self {
        Self {
            client_id: Self::client_id(name),
            identity: format!("{name}@{system_id}"),
        }
    }

    /// walcast's Kafka client id (and transactional id) for connector `name`.
    pub fn client_id(name: &str) -> String {
        format!("walcast-{name}")
    }

    /// Whether `message` was written by this connector.
    fn wrote(&self, message: &BorrowedMessage<'_>) -> bool {
        header(message, HEADER_SOURCE) == Some(self.identity.as_bytes())
    }
}

/// For exactly-once restarts: the position in the last record of this connector (see
/// [`Origin`]) in each partition of `topic` (partitions that are empty or hold none of
/// its records are absent). Blocking.
pub fn last_positions(
    settings: &Kafka,
    topic: &str,
    origin: &Origin,
) -> Result<HashMap<i32, Position>, SinkError> {
    let consumer = reading_consumer(settings, &origin.client_id)?;
    let metadata_err = |e: KafkaError| SinkError::Metadata {
        servers: settings.bootstrap_servers.clone(),
        topic: topic.to_owned(),
        message: e.to_string(),
    };
    let partitions = partitions_of(&consumer, topic).map_err(metadata_err)?;
    let mut out = HashMap::new();
    for partition in partitions {
        // The newest offsets can be transaction markers, records of an aborted Kafka
        // transaction (a read_committed consumer never sees them), or records of other
        // producers: walk back until a record of this connector with a position.
        let newest = newest_back(&consumer, topic, partition, (16, 8), |message| {
            position_of(message).filter(|_| origin.wrote(message))
        })
        .map_err(metadata_err)?;
        if let Some(p) = newest {
            out.insert(partition, p);
        }
    }
    Ok(out)
}

/// The position recorded in `connector`'s newest committed record for `slot` in [`OFFSETS_TOPIC`]
/// (`None` when it has none): every event at or below it is in Kafka. Reads back from
/// the end of the topic in growing windows, so a long uncompacted history costs little.
/// Blocking.
pub fn committed_position(
    settings: &Kafka,
    connector: &str,
    slot: &str,
    origin: &Origin,
) -> Result<Option<CheckpointRecord>, SinkError> {
    let consumer = reading_consumer(settings, &origin.client_id)?;
    let metadata_err = |e: KafkaError| SinkError::Metadata {
        servers: settings.bootstrap_servers.clone(),
        topic: OFFSETS_TOPIC.to_owned(),
        message: e.to_string(),
    };
    let metadata = consumer
        .fetch_metadata(Some(OFFSETS_TOPIC), Duration::from_secs(10))
        .map_err(metadata_err)?;
    let Some(count) = metadata
        .topics()
        .iter()
        .find(|t| t.name() == OFFSETS_TOPIC && t.error().is_none())
        .map(|t| t.partitions().len() as i32)
        .filter(|n| *n > 0)
    else {
        return Ok(None);
    };
    let partition = partition_for_key(connector.as_bytes(), count);
    newest_back(&consumer, OFFSETS_TOPIC, partition, (256, 4), |m| {
        if m.key() != Some(connector.as_bytes()) {
            return None;
        }
        m.payload()
            .and_then(|p| serde_json::from_slice::<CheckpointRecord>(p).ok())
            .filter(|r| r.slot == slot && r.source == origin.identity)
    })
    .map_err(metadata_err)
}

/// The newest record of one partition that `pick` accepts (what it makes of it): the
/// partition is read back from its end in windows of `first` records, growing `growth`
/// times each step, so a long history costs little when the answer is near the end.
fn newest_back<T, C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
    (first, growth): (i64, i64),
    mut pick: impl FnMut(&BorrowedMessage<'_>) -> Option<T>,
) -> Result<Option<T>, KafkaError> {
    let (low, high) = watermarks(consumer, topic, partition)?;
    let mut end = high;
    let mut window = first;
    while end > low {
        let start = (end - window).max(low);
        let mut found = None;
        read_range(
            consumer,
            topic,
            partition,
            start,
            end,
            Duration::from_secs(30),
            |m| {
                if let Some(t) = pick(m) {
                    found = Some(t);
                }
            },
        )?;
        if found.is_some() {
            return Ok(found);
        }
        end = start;
        window = window.saturating_mul(growth);
    }
    Ok(None)
}

/// For resuming an interrupted initial snapshot: per partition of `topic`, the primary key
/// (text values) of the last record the snapshot at `snapshot_lsn` (or a resumption of it)
/// wrote, looking at most `depth` records back from the end. A snapshot sends each table in key order and
/// the producer keeps each partition's order without gaps, so every row of the table
/// whose key sorts at or below its partition's entry is in Kafka, and none above it.
/// Blocking.
pub fn last_snapshot_keys(
    settings: &Kafka,
    topic: &str,
    origin: &Origin,
    snapshot_lsn: Lsn,
    depth: i64,
) -> Result<HashMap<i32, Vec<String>>, SinkError> {
    let consumer = reading_consumer(settings, &origin.client_id)?;
    let metadata_err = |e: KafkaError| SinkError::Metadata {
        servers: settings.bootstrap_servers.clone(),
        topic: topic.to_owned(),
        message: e.to_string(),
    };
    let partitions = partitions_of(&consumer, topic).map_err(metadata_err)?;
    let mut out = HashMap::new();
    for partition in partitions {
        let (low, high) = watermarks(&consumer, topic, partition).map_err(metadata_err)?;
        if high <= low {
            continue;
        }
        let start = (high - depth).max(low);
        read_range(
            &consumer,
            topic,
            partition,
            start,
            high,
            Duration::from_secs(60),
            |m| {
                // The snapshot's own records, and those of its resumption (streamed later,
                // so at higher positions).
                if origin.wrote(m) && position_of(m).is_some_and(|p| p.commit_lsn >= snapshot_lsn) {
                    if let Some(key) = header(m, HEADER_SNAPSHOT_KEY)
                        .and_then(|v| serde_json::from_slice::<Vec<String>>(v).ok())
                    {
                        out.insert(partition, key);
                    }
                }
            },
        )
        .map_err(metadata_err)?;
    }
    Ok(out)
}

/// Reads offsets `start..end` of one partition of `topic` (read_committed: transaction
/// markers and aborted records are never seen), handing each record to `each`; stops at
/// `end` or the partition's end, and fails after `timeout`.
fn read_range<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
    start: i64,
    end: i64,
    timeout: Duration,
    mut each: impl FnMut(&BorrowedMessage<'_>),
) -> Result<(), KafkaError> {
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, rdkafka::Offset::Offset(start))?;
    consumer.assign(&tpl)?;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if std::time::Instant::now() > deadline {
            return Err(KafkaError::MessageConsumption(
                RDKafkaErrorCode::RequestTimedOut,
            ));
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                if message.offset() >= end {
                    return Ok(());
                }
                each(&message);
                if message.offset() + 1 >= end {
                    return Ok(());
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => return Ok(()),
            Some(Err(e)) => return Err(e),
            None => {}
        }
    }
}

/// The partition ids of `topic`.
fn partitions_of<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
) -> Result<Vec<i32>, KafkaError> {
    Ok(consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))?
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect())
}

/// The value of header `name`.
fn header<'a>(message: &'a BorrowedMessage<'_>, name: &str) -> Option<&'a [u8]> {
    message
        .headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
}

/// The walcast position a record carries.
fn position_of(message: &BorrowedMessage<'_>) -> Option<Position> {
    header(message, HEADER_POSITION)
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.parse().ok())
}

/// A partition's low and high offsets. A topic created moments ago may not have a leader
/// for each partition yet: that answer is retried for up to 10 s.
fn watermarks<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> Result<(i64, i64), KafkaError> {
    let mut attempt = 0;
    loop {
        match consumer.fetch_watermarks(topic, partition, Duration::from_secs(10)) {
            Err(e)
                if attempt < 40
                    && matches!(
                        e.rdkafka_error_code(),
                        Some(
                            RDKafkaErrorCode::NotLeaderForPartition
                                | RDKafkaErrorCode::LeaderNotAvailable
                                | RDKafkaErrorCode::UnknownTopicOrPartition
                        )
                    ) =>
            {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(250));
            }
            other => return other,
        }
    }
}

/// A read_committed consumer without a group position, that reports the end of a
/// partition (quietly).
fn reading_consumer(
    settings: &Kafka,
    client_id: &str,
) -> Result<BaseConsumer<EndOfPartitionIsNoError>, SinkError> {
    base_config(settings, client_id)
        .set("group.id", format!("{client_id}-reconcile"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create_with_context(EndOfPartitionIsNoError)
        .map_err(|e| SinkError::Config(e.to_string()))
}

/// A consumer context for reading to the end of a partition: reaching it is how the
/// read ends, not an error worth a log line.
struct EndOfPartitionIsNoError;

impl ClientContext for EndOfPartitionIsNoError {
    fn error(&self, error: KafkaError, reason: &str) {
        // librdkafka reports it as a global error too (`Global(PartitionEOF)`).
        if error.rdkafka_error_code() != Some(RDKafkaErrorCode::PartitionEOF)
            && !matches!(error, KafkaError::PartitionEOF(_))
        {
            tracing::error!("librdkafka: {error}: {reason}");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for EndOfPartitionIsNoError {}
