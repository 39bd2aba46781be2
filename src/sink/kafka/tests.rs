//! The sink's fatal-error check, which asks librdkafka only now and then: a fatal error
//! must still stop the connector.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::time::{Duration, Instant};

use super::*;
use crate::config::CleanupPolicy;

fn unreachable_cluster() -> Kafka {
    Kafka {
        // Nothing listens there; the producer never needs a broker in these tests.
        bootstrap_servers: "127.0.0.1:1".into(),
        topic_prefix: "t".into(),
        partitions: None,
        replication_factor: None,
        min_insync_replicas: None,
        cleanup_policy: CleanupPolicy::Delete,
        producer: BTreeMap::new(),
    }
}

#[tokio::test]
async fn no_fatal_error_is_reported_while_there_is_none() {
    let (sink, _reports) = KafkaSink::new(
        &unreachable_cluster(),
        DeliveryMode::ExactlyOnce,
        "fatal-none",
    )
    .unwrap();
    for _ in 0..1000 {
        assert_eq!(sink.fatal_error(), None);
    }
}

#[tokio::test]
async fn a_fatal_error_is_reported_within_moments() {
    let (sink, _reports) = KafkaSink::new(
        &unreachable_cluster(),
        DeliveryMode::ExactlyOnce,
        "fatal-one",
    )
    .unwrap();
    // Past the first call, which asks librdkafka directly: the error callback (or the
    // 256th call) must tell.
    assert_eq!(sink.fatal_error(), None);
    let reason = CString::new("injected by the test").unwrap();
    // SAFETY: the client pointer is valid while `sink` lives; librdkafka's own test
    // hook raises a fatal error as a real one would be (error callback included).
    unsafe {
        rdkafka::bindings::rd_kafka_test_fatal_error(
            sink.producer.client().native_ptr(),
            rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__GAPLESS_GUARANTEE,
            reason.as_ptr(),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let found = loop {
        if let Some(found) = sink.fatal_error() {
            break Some(found);
        }
        if Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let found = found.expect("the fatal error is reported");
    assert!(found.contains("injected by the test"), "{found}");
}
