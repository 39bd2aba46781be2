//! Tests of `events`.

use super::*;
use crate::config::{HashAlgorithm, Secret};
use sha2::{Digest, Sha256};

#[test]
fn masks_hash_fix_and_truncate_text_only() {
    let row = vec![
        Value::Text("ann@example.com".into()),
        Value::Text("555-1234".into()),
        Value::Text("long notes".into()),
        Value::Int4(1),
        Value::Null,
    ];
    let masks = vec![
        Some(Mask::Hash {
            algorithm: HashAlgorithm::Sha256,
            salt: Secret::new("s"),
        }),
        Some(Mask::Fixed("****".into())),
        Some(Mask::Truncate(4)),
        Some(Mask::Fixed("x".into())),
        Some(Mask::Fixed("x".into())),
    ];
    let out = apply_masks(row, &masks);
    // sha256("s" + "ann@example.com")
    let expected: String = Sha256::digest(b"sann@example.com")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(out[0], Value::Text(expected));
    assert_eq!(out[1], Value::Text("****".into()));
    assert_eq!(out[2], Value::Text("long".into()));
    assert_eq!(out[3], Value::Int4(1));
    assert_eq!(out[4], Value::Null);
}

// --- The stage end to end, in the JSON format (no registry, no I/O) ---

use crate::model::relation::{ColumnInfo, ReplicaIdentity};

fn stage(events: &str) -> EventStage {
    let text = format!(
        r#"name = "shop"
[source]
dbname = "shopdb"
user = "walcast"
[kafka]
bootstrap_servers = "127.0.0.1:9092"
[events]
format = "json"
{events}
[tables."public.*"]
"#
    );
    let connector =
        crate::config::parse_connector(std::path::Path::new("shop.toml"), &text).unwrap();
    EventStage::new(Arc::new(connector), None)
}

fn relation(table: &str) -> Arc<RelationInfo> {
    let column = |name: &str, oid: u32, key: bool| ColumnInfo {
        is_key: key,
        not_null: key,
        ..ColumnInfo::of_builtin(name, oid).unwrap()
    };
    Arc::new(RelationInfo {
        oid: if table == "a" { 16_600 } else { 16_601 },
        schema: "public".into(),
        table: table.into(),
        replica_identity: ReplicaIdentity::Default,
        columns: vec![column("id", 23, true), column("name", 25, false)],
        version: 1,
    })
}

fn change(
    rel: &Arc<RelationInfo>,
    op: RowOp,
    old: Option<i32>,
    new: Option<i32>,
    lsn: u64,
) -> RowChange {
    RowChange {
        relation: rel.clone(),
        op,
        old: old.map(|id| OldRow::Key(vec![Value::Int4(id), Value::Null])),
        new: new.map(|id| vec![Value::Int4(id), Value::Text(format!("n{id}"))]),
        lsn: Lsn(lsn),
    }
}

fn json(bytes: &Option<Vec<u8>>) -> serde_json::Value {
    match bytes {
        Some(b) => serde_json::from_slice(b).unwrap(),
        None => serde_json::Value::Null,
    }
}

const TX: TxContext = TxContext {
    xid: 571,
    commit_time_us: 1_700_000_000_123_456,
    last_commit_lsn: Some(Lsn(900)),
};

#[tokio::test]
async fn transaction_metadata_and_key_change_headers() {
    let mut stage = stage("provide_transaction_metadata = true");
    let (a, b) = (relation("a"), relation("b"));
    let mut out = Vec::new();
    stage.begin_transaction(&TX, Lsn(2_000));
    stage
        .change(
            change(&a, RowOp::Insert, None, Some(1), 1_000),
            &TX,
            &mut out,
        )
        .await
        .unwrap();
    stage
        .change(
            change(&b, RowOp::Insert, None, Some(5), 1_010),
            &TX,
            &mut out,
        )
        .await
        .unwrap();
    // The key of a.1 becomes 2: delete, tombstone, create.
    stage
        .change(
            change(&a, RowOp::Update, Some(1), Some(2), 1_020),
            &TX,
            &mut out,
        )
        .await
        .unwrap();
    stage
        .commit_transaction(Lsn(2_048), &mut out)
        .await
        .unwrap();

    let topics: Vec<&str> = out.iter().map(|r| &*r.topic).collect();
    assert_eq!(
        topics,
        [
            "shop.transaction",
            "shop.public.a",
            "shop.public.b",
            "shop.public.a",
            "shop.public.a",
            "shop.public.a",
            "shop.transaction"
        ]
    );
    // BEGIN: the first event's LSN in its id, the commit time.
    assert_eq!(json(&out[0].key), serde_json::json!({"id": "571:1000"}));
    assert_eq!(
        json(&out[0].value),
        serde_json::json!({"status": "BEGIN", "id": "571:1000", "event_count": null,
            "data_collections": null, "ts_ms": 1_700_000_000_123_i64})
    );
    let block = |i: usize| json(&out[i].value)["transaction"].clone();
    assert_eq!(
        block(1),
        serde_json::json!({"id": "571:1000", "total_order": 1, "data_collection_order": 1})
    );
    assert_eq!(
        block(2),
        serde_json::json!({"id": "571:1010", "total_order": 2, "data_collection_order": 1})
    );
    assert_eq!(
        block(3),
        serde_json::json!({"id": "571:1020", "total_order": 3, "data_collection_order": 2})
    );
    assert_eq!(out[4].value, None, "the delete's tombstone");
    assert_eq!(
        block(5),
        serde_json::json!({"id": "571:1020", "total_order": 4, "data_collection_order": 3})
    );
    // END: the end LSN, every event counted per table (HashMap order).
    assert_eq!(
        json(&out[6].value),
        serde_json::json!({"status": "END", "id": "571:2048", "event_count": 4,
            "data_collections": [{"data_collection": "public.a", "event_count": 3},
                {"data_collection": "public.b", "event_count": 1}],
            "ts_ms": 1_700_000_000_123_i64})
    );

    // Key-change headers: the new key on the delete and its tombstone, the old key
    // on the create; none elsewhere.
    assert_eq!(json(&out[3].value)["op"], "d");
    assert_eq!(json(&out[3].key), serde_json::json!({"id": 1}));
    let newkey = vec![(HEADER_NEW_KEY, br#"{"id":2}"#.to_vec())];
    assert_eq!(out[3].headers, newkey);
    assert_eq!(out[4].headers, newkey);
    assert_eq!(json(&out[5].value)["op"], "c");
    assert_eq!(json(&out[5].key), serde_json::json!({"id": 2}));
    assert_eq!(
        out[5].headers,
        vec![(HEADER_OLD_KEY, br#"{"id":1}"#.to_vec())]
    );
    for i in [0, 1, 2, 6] {
        assert!(out[i].headers.is_empty(), "record {i}");
    }

    // A transaction with nothing captured still gets BEGIN and END, as in Debezium;
    // the counts start afresh.
    out.clear();
    stage.begin_transaction(&TxContext { xid: 572, ..TX }, Lsn(3_000));
    stage
        .commit_transaction(Lsn(3_040), &mut out)
        .await
        .unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(json(&out[0].value)["id"], "572:3000");
    assert_eq!(json(&out[1].value)["id"], "572:3040");
    assert_eq!(json(&out[1].value)["event_count"], 0);
    assert_eq!(
        json(&out[1].value)["data_collections"],
        serde_json::json!([])
    );
}

#[tokio::test]
async fn without_the_options_there_is_no_metadata_and_no_header() {
    let mut stage = stage("emit_key_change_headers = false");
    let a = relation("a");
    let mut out = Vec::new();
    stage.begin_transaction(&TX, Lsn(2_000));
    stage
        .change(
            change(&a, RowOp::Update, Some(1), Some(2), 1_020),
            &TX,
            &mut out,
        )
        .await
        .unwrap();
    stage
        .message(
            "p".into(),
            bytes::Bytes::from_static(b"x"),
            Lsn(1_030),
            true,
            &TX,
            &mut out,
        )
        .await
        .unwrap();
    stage
        .commit_transaction(Lsn(2_048), &mut out)
        .await
        .unwrap();
    assert_eq!(out.len(), 4, "delete, tombstone, create, message");
    for r in &out {
        assert!(r.headers.is_empty());
        assert_ne!(&*r.topic, "shop.transaction");
        if r.value.is_some() {
            assert_eq!(json(&r.value)["transaction"], serde_json::Value::Null);
        }
    }
}

#[tokio::test]
async fn messages_count_in_their_transaction() {
    let mut stage = stage("provide_transaction_metadata = true");
    let mut out = Vec::new();
    stage.begin_transaction(&TX, Lsn(2_000));
    stage
        .message(
            "p".into(),
            bytes::Bytes::from_static(b"x"),
            Lsn(1_030),
            true,
            &TX,
            &mut out,
        )
        .await
        .unwrap();
    stage
        .message(
            "p".into(),
            bytes::Bytes::from_static(b"y"),
            Lsn(1_040),
            true,
            &TX,
            &mut out,
        )
        .await
        .unwrap();
    stage
        .commit_transaction(Lsn(2_048), &mut out)
        .await
        .unwrap();
    assert_eq!(out.len(), 4);
    assert_eq!(&*out[1].topic, "shop.message");
    assert_eq!(
        json(&out[2].value)["transaction"],
        serde_json::json!({"id": "571:1040", "total_order": 2, "data_collection_order": 2})
    );
    assert_eq!(
        json(&out[3].value)["data_collections"],
        serde_json::json!([{"data_collection": MESSAGE_DATA_COLLECTION, "event_count": 2}])
    );
    // A non-transactional message stands outside any transaction.
    out.clear();
    stage
        .message(
            "p".into(),
            bytes::Bytes::from_static(b"z"),
            Lsn(4_000),
            false,
            &TX,
            &mut out,
        )
        .await
        .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(json(&out[0].value)["transaction"], serde_json::Value::Null);
}

#[test]
fn record_names_come_from_the_schema() {
    assert_eq!(
        record_full_name(r#"{"type":"record","name":"Envelope","namespace":"p.public.t"}"#),
        "p.public.t.Envelope"
    );
    assert_eq!(record_full_name(r#"{"type":"record","name":"Key"}"#), "Key");
    assert_eq!(record_full_name("not json"), "");
}

#[test]
fn table_versions_name_shapes_whichever_cache_described_them() {
    // Two caches (a reader before and after a reconnect, or a snapshot) describing the
    // same shape agree on its version; another shape gets another one.
    let before = relation("a");
    let again = relation("a");
    assert_eq!(before.shape_version(), again.shape_version());
    let mut wider = (*before).clone();
    wider.columns.push(wider.columns[1].clone());
    wider.columns[2].name = "extra".into();
    assert_ne!(before.shape_version(), wider.shape_version());
    let mut keyed = (*before).clone();
    keyed.columns[1].is_key = true;
    assert_ne!(before.shape_version(), keyed.shape_version());
}
