//! Debezium's extended context headers (3.2+, `extended.headers.enabled`, on by
//! default): every data event and tombstone says which connector and which run produced
//! it. For a PostgreSQL connector Debezium writes the topic prefix as the logical name,
//! task `0`, connector `postgresql`, and a UUIDv7 made once per start as the run id;
//! all plain UTF-8 text (Kafka Connect's SimpleHeaderConverter of a string).

use std::hash::{BuildHasher, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::Connector;

pub const LOGICAL_NAME: &str = "__debezium.context.connectorLogicalName";
pub const TASK_ID: &str = "__debezium.context.taskId";
pub const CONNECTOR_NAME: &str = "__debezium.context.connectorName";
pub const RUN_ID: &str = "__debezium.context.runId";

/// The headers for `connector`'s run starting now (empty when turned off).
pub fn for_run(connector: &Connector) -> Vec<(&'static str, Vec<u8>)> {
    if !connector.events.extended_headers {
        return Vec::new();
    }
    vec![
        (
            LOGICAL_NAME,
            connector.kafka.topic_prefix.clone().into_bytes(),
        ),
        (TASK_ID, b"0".to_vec()),
        (CONNECTOR_NAME, b"postgresql".to_vec()),
        (RUN_ID, uuid_v7(now_ms(), random_u128()).into_bytes()),
    ]
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// 128 bits from the standard library's per-process random hash keys (seeded by the
/// OS): enough for an id that only has to differ between runs.
fn random_u128() -> u128 {
    let mut bits = 0u128;
    for _ in 0..2 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(now_ms());
        bits = (bits << 64) | u128::from(h.finish());
    }
    bits
}

/// RFC 9562 UUID version 7: 48 bits of Unix milliseconds, version 7, variant 10, the
/// rest random; in the usual 8-4-4-4-12 form.
fn uuid_v7(unix_ms: u64, random: u128) -> String {
    let mut v = (u128::from(unix_ms & 0xFFFF_FFFF_FFFF) << 80) | (random & ((1u128 << 80) - 1));
    v = (v & !(0xF << 76)) | (0x7 << 76);
    v = (v & !(0x3 << 62)) | (0x2 << 62);
    let hex = format!("{v:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_id_is_a_version_7_uuid_starting_with_the_time() {
        let id = uuid_v7(0x0190_1234_5678, u128::MAX);
        assert_eq!(id.len(), 36);
        assert!(id.starts_with("01901234-5678-7"), "{id}");
        let variant = id.as_bytes()[19];
        assert!(b"89ab".contains(&variant), "{id}");
        assert_ne!(uuid_v7(1, random_u128()), uuid_v7(1, random_u128()));
    }

    #[test]
    fn the_headers_name_the_prefix_and_can_be_turned_off() {
        let file = |extra: &str| {
            format!("name = \"c\"\n[source]\ndbname = \"d\"\nuser = \"u\"\n[kafka]\nbootstrap_servers = \"k:9092\"\ntopic_prefix = \"shop\"\n[events]\nformat = \"json\"\n{extra}\n[tables.\"public.*\"]\n")
        };
        let parse = |text: String| {
            crate::config::parse_connector(std::path::Path::new("c.toml"), &text).unwrap()
        };
        let on = for_run(&parse(file("")));
        let names: Vec<&str> = on.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, [LOGICAL_NAME, TASK_ID, CONNECTOR_NAME, RUN_ID]);
        assert_eq!(on[0].1, b"shop");
        assert!(for_run(&parse(file("extended_headers_enabled = false"))).is_empty());
    }
}
