//! The shape of what the loop sends for Debezium's finer points and walcast's
//! transforms: truncates, skipped operations, keyless deletes, message filters, unwrap.

use super::*;

/// A loop of connector `name` with `events` settings, reports delivered at once.
fn harness_with(name: &str, events: &str) -> Harness {
    let (sink, handle, reports) = MemorySink::new(false, 3);
    harness_over(
        connector_with("exactly_once", name, events),
        sink,
        handle,
        reports,
    )
}

impl Harness {
    /// (key, value) of every visible record, as text (JSON format).
    fn records(&self) -> Vec<(Option<String>, Option<String>)> {
        let text =
            |b: &Option<Vec<u8>>| b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
        self.sink
            .lock()
            .visible
            .iter()
            .map(|s| (text(&s.record.key), text(&s.record.value)))
            .collect()
    }
}

fn truncate(lsn: u64) -> TxEvent {
    TxEvent::Truncate {
        relations: vec![relation()],
        lsn: Lsn(lsn),
        cascade: false,
        restart_identity: false,
    }
}

#[tokio::test]
async fn a_truncate_is_skipped_by_default_and_an_op_t_event_with_a_null_key_when_not() {
    let mut h = harness_with("truncate-default", "");
    h.feed(in_transaction(1, 1_000, vec![truncate(990)]))
        .await
        .unwrap();
    assert!(h.records().is_empty(), "Debezium's default skips truncates");

    let mut h = harness_with(
        "truncate-none",
        "provide_transaction_metadata = true\nskipped_operations = \"none\"",
    );
    h.feed(in_transaction(1, 1_000, vec![truncate(990)]))
        .await
        .unwrap();
    let records = h.records();
    let truncates: Vec<_> = records
        .iter()
        .filter(|(_, v)| v.as_deref().is_some_and(|v| v.contains("\"op\":\"t\"")))
        .collect();
    assert_eq!(truncates.len(), 1, "{records:?}");
    let (key, value) = truncates[0];
    assert_eq!(key, &None, "a truncate has a null key");
    let value = value.as_deref().unwrap();
    assert!(
        value.contains("\"before\":null") && value.contains("\"after\":null"),
        "{value}"
    );
    assert!(value.contains("\"lsn\":990"), "{value}");
    let end = records
        .iter()
        .find_map(|(_, v)| v.as_deref().filter(|v| v.contains("\"status\":\"END\"")))
        .expect("END record");
    assert!(end.contains("\"event_count\":1"), "counted in END: {end}");
}

#[tokio::test]
async fn skipped_operations_drop_those_changes_whole() {
    let mut h = harness_with("skip-cd", "skipped_operations = \"c,d\"");
    let update = TxEvent::Change(RowChange {
        relation: relation(),
        op: RowOp::Update,
        old: None,
        new: Some(vec![Value::Int4(1), Value::Text("changed".into())]),
        lsn: Lsn(995),
    });
    let delete = TxEvent::Change(RowChange {
        relation: relation(),
        op: RowOp::Delete,
        old: Some(crate::model::change::OldRow::Key(vec![
            Value::Int4(1),
            Value::Null,
        ])),
        new: None,
        lsn: Lsn(996),
    });
    h.feed(in_transaction(
        1,
        1_000,
        vec![insert(1, 990), update, delete],
    ))
    .await
    .unwrap();
    let records = h.records();
    assert_eq!(records.len(), 1, "only the update: {records:?}");
    assert!(records[0].1.as_deref().unwrap().contains("\"op\":\"u\""));
    let e = crate::config::parse_connector(
        std::path::Path::new("x.toml"),
        "name = \"x\"\n[source]\ndbname = \"d\"\nuser = \"u\"\n[kafka]\nbootstrap_servers = \"k:9092\"\n[events]\nskipped_operations = \"c,x\"\n[tables.\"public.*\"]\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("skipped_operations: `x` is not an operation"),
        "{e}"
    );
}

#[tokio::test]
async fn a_delete_without_a_key_is_followed_by_a_tombstone_with_a_null_key() {
    let keyless = Arc::new(RelationInfo {
        oid: 16_700,
        schema: "public".into(),
        table: "audit".into(),
        replica_identity: ReplicaIdentity::Full,
        columns: vec![
            ColumnInfo::of_builtin("who", 25).unwrap(),
            ColumnInfo::of_builtin("what", 25).unwrap(),
        ],
        version: 1,
    });
    let delete = |relation: &Arc<RelationInfo>| {
        TxEvent::Change(RowChange {
            relation: relation.clone(),
            op: RowOp::Delete,
            old: Some(crate::model::change::OldRow::Full(vec![
                Value::Text("ann".into()),
                Value::Text("login".into()),
            ])),
            new: None,
            lsn: Lsn(990),
        })
    };
    let mut h = harness_with("keyless", "");
    h.feed(in_transaction(1, 1_000, vec![delete(&keyless)]))
        .await
        .unwrap();
    let records = h.records();
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(records[0].0, None);
    assert!(records[0].1.as_deref().unwrap().contains("\"op\":\"d\""));
    assert_eq!(
        records[1],
        (None, None),
        "the tombstone: null key, null value"
    );
}

#[tokio::test]
async fn messages_are_filtered_by_prefix_and_a_filtered_one_is_not_counted() {
    let message = |prefix: &str, transactional: bool, lsn: u64| TxEvent::Message {
        transactional,
        lsn: Lsn(lsn),
        prefix: prefix.into(),
        content: bytes::Bytes::from_static(b"hello"),
    };
    let mut h = harness_with(
        "prefixes",
        "provide_transaction_metadata = true\nmessage_prefix_include_list = \"audit\\\\..*,billing\"",
    );
    h.feed(in_transaction(
        7,
        1_000,
        vec![
            message("audit.login", true, 990),
            message("other", true, 991),
            message("billing", true, 992),
        ],
    ))
    .await
    .unwrap();
    h.feed(vec![
        message("other", false, 2_000),
        message("audit.x", false, 2_010),
    ])
    .await
    .unwrap();
    let records = h.records();
    let messages: Vec<&str> = records
        .iter()
        .filter_map(|(_, v)| v.as_deref().filter(|v| v.contains("\"op\":\"m\"")))
        .collect();
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert!(
        messages.iter().all(|m| !m.contains("\"prefix\":\"other\"")),
        "{messages:?}"
    );
    let end = records
        .iter()
        .find_map(|(_, v)| v.as_deref().filter(|v| v.contains("\"status\":\"END\"")))
        .expect("END record");
    assert!(
        end.contains("\"event_count\":2"),
        "the filtered message is not counted: {end}"
    );
    // The non-transactional one: no transaction block, no txId.
    let alone = messages.last().unwrap();
    assert!(alone.contains("\"txId\":null"), "{alone}");
    assert!(alone.contains("\"transaction\":null"), "{alone}");
}

fn delete(id: i32, lsn: u64) -> TxEvent {
    TxEvent::Change(RowChange {
        relation: relation(),
        op: RowOp::Delete,
        old: Some(crate::model::change::OldRow::Key(vec![
            Value::Int4(id),
            Value::Null,
        ])),
        new: None,
        lsn: Lsn(lsn),
    })
}

/// Every visible record's headers named `name`, as text.
fn header_values(h: &Harness, name: &str) -> Vec<Option<String>> {
    h.sink
        .lock()
        .visible
        .iter()
        .map(|s| {
            s.record
                .headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        })
        .collect()
}

#[tokio::test]
async fn unwrap_makes_the_row_the_value_and_a_delete_a_tombstone_by_default() {
    let mut h = harness_with("unwrap-default", "[transforms.unwrap]");
    h.feed(in_transaction(
        1,
        1_000,
        vec![insert(1, 990), delete(1, 995), truncate(996)],
    ))
    .await
    .unwrap();
    let records = h.records();
    assert_eq!(
        records,
        [
            (Some("{\"id\":1}".into()), Some("{\"id\":1,\"note\":\"n1\"}".into())),
            // JsonConverter writes a null value that has a schema as `null`.
            (Some("{\"id\":1}".into()), Some("null".into())),
        ],
        "the row; the delete as Debezium's tombstone mode leaves it; no second tombstone; the truncate dropped"
    );
}

#[tokio::test]
async fn unwrap_rewrite_adds_deleted_and_the_named_fields_and_headers() {
    let mut h = harness_with(
        "unwrap-rewrite",
        "[transforms.unwrap]\ndelete_tombstone_handling_mode = \"rewrite-with-tombstone\"\nadd_fields = \"op,table,lsn,source.ts_ms\"\nadd_headers = \"op\"",
    );
    h.feed(in_transaction(
        1,
        1_000,
        vec![insert(1, 990), delete(1, 995)],
    ))
    .await
    .unwrap();
    let records = h.records();
    assert_eq!(records.len(), 3, "{records:?}");
    assert_eq!(
        records[0].1.as_deref(),
        Some("{\"id\":1,\"note\":\"n1\",\"__deleted\":\"false\",\"__op\":\"c\",\"__table\":\"orders\",\"__lsn\":990,\"__source_ts_ms\":1700000000000}")
    );
    assert_eq!(
        records[1].1.as_deref(),
        Some("{\"id\":1,\"note\":null,\"__deleted\":\"true\",\"__op\":\"d\",\"__table\":\"orders\",\"__lsn\":995,\"__source_ts_ms\":1700000000000}")
    );
    assert_eq!(
        records[2],
        (Some("{\"id\":1}".into()), None),
        "the tombstone kept"
    );
    assert_eq!(
        header_values(&h, "__op"),
        [Some("c".into()), Some("d".into()), Some("d".into())],
        "a tombstone's op header is d, as Debezium adds it"
    );
}

#[tokio::test]
async fn unwrap_drop_mode_and_a_table_that_keeps_its_envelope() {
    let mut h = harness_with(
        "unwrap-drop",
        "[transforms.unwrap]\ndelete_tombstone_handling_mode = \"drop\"",
    );
    h.feed(in_transaction(
        1,
        1_000,
        vec![insert(1, 990), delete(1, 995)],
    ))
    .await
    .unwrap();
    assert_eq!(h.records().len(), 1, "the delete and its tombstone dropped");

    let mut h = harness_with(
        "unwrap-off",
        "[transforms.unwrap]\n[tables.\"public.orders\"]\nunwrap = false",
    );
    h.feed(in_transaction(1, 1_000, vec![insert(1, 990)]))
        .await
        .unwrap();
    let value = h.records()[0].1.clone().unwrap();
    assert!(
        value.contains("\"op\":\"c\"") && value.contains("\"after\""),
        "{value}"
    );
}
