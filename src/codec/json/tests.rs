//! Tests of `json`.

use super::connect_string::{big_decimal_string, java_date, MILLIS_PER_DAY};
use super::*;
use crate::codec::connect::{field, DECIMAL_NAME};

#[test]
fn big_decimals_print_as_java_does() {
    let d = |unscaled: i64, scale: i32| {
        let bytes = unscaled.to_be_bytes();
        // Minimal two's complement, as BigInteger.toByteArray.
        let mut start = 0;
        while start < 7
            && ((bytes[start] == 0 && bytes[start + 1] & 0x80 == 0)
                || (bytes[start] == 0xff && bytes[start + 1] & 0x80 != 0))
        {
            start += 1;
        }
        big_decimal_string(&bytes[start..], scale)
    };
    assert_eq!(d(1250, 2), "12.50");
    assert_eq!(d(-1250, 2), "-12.50");
    assert_eq!(d(5, 3), "0.005");
    assert_eq!(d(0, 2), "0.00");
    assert_eq!(d(42, 0), "42");
    assert_eq!(d(1, 7), "1E-7");
    assert_eq!(d(1000, 10), "1.000E-7");
    assert_eq!(d(1, 6), "0.000001");
    assert_eq!(d(123, -2), "1.23E+4");
    assert_eq!(d(-128, 0), "-128");
    assert_eq!(d(i64::MAX, 0), i64::MAX.to_string());
    assert_eq!(d(i64::MIN, 0), i64::MIN.to_string());
    // Beyond 64 bits: 2^80.
    let mut big = vec![1u8];
    big.extend([0u8; 10]);
    assert_eq!(big_decimal_string(&big, 0), "1208925819614629174706176");
}

#[test]
fn dates_print_as_connect_values_does() {
    let s = |millis: i64| {
        let mut out = String::new();
        java_date(&mut out, millis);
        out
    };
    assert_eq!(s(0), "00:00:00.000Z");
    assert_eq!(s(3_723_004), "01:02:03.004Z");
    assert_eq!(s(19_000 * MILLIS_PER_DAY), "2022-01-08");
    assert_eq!(s(19_000 * MILLIS_PER_DAY + 1), "2022-01-08T00:00:00.001Z");
}

#[test]
fn schemas_render_as_json_converter_does() {
    let s = ConnectSchema::record(
        "a.B",
        vec![
            field("id", ConnectSchema::int32()),
            field(
                "price",
                ConnectSchema::bytes()
                    .named(DECIMAL_NAME)
                    .version(1)
                    .param("scale", "2")
                    .optional()
                    .with_default(Json::Str("\u{1}\u{2}".into())),
            ),
            field(
                "tags",
                ConnectSchema::array(ConnectSchema::string().optional()).optional(),
            ),
            field(
                "attrs",
                ConnectSchema::map(ConnectSchema::string(), ConnectSchema::string().optional()),
            ),
        ],
    );
    assert_eq!(
        schema_json(&s),
        concat!(
            r#"{"type":"struct","fields":["#,
            r#"{"type":"int32","optional":false,"field":"id"},"#,
            r#"{"type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal","version":1,"parameters":{"scale":"2"},"default":"AQI=","field":"price"},"#,
            r#"{"type":"array","items":{"type":"string","optional":true},"optional":true,"field":"tags"},"#,
            r#"{"type":"map","keys":{"type":"string","optional":false},"values":{"type":"string","optional":true},"optional":false,"field":"attrs"}"#,
            r#"],"optional":false,"name":"a.B"}"#
        )
    );
}

// -----------------------------------------------------------------------------
// Golden records of a small table: public.items (id int PRIMARY KEY, name text
// NOT NULL, price numeric(10,2), tags text[], ok boolean).

use std::sync::Arc;

use crate::codec::event::{
    ConnectorMeta, MessageEvent, Op, SourceInfo, TransactionBlock, TransactionMetadataEvent,
    TransactionStatus,
};
use crate::codec::options::CodecOptions;
use crate::codec::records::{MessageCodec, TransactionCodec};
use crate::codec::table::TableSpec;
use crate::model::lsn::Lsn;
use crate::model::relation::ReplicaIdentity;
use crate::model::relation::{ColumnInfo, RelationInfo};
use crate::model::types::PgType;
use crate::model::value::parse_text;

fn column(name: &str, oid: u32, typmod: i32, key: bool, not_null: bool) -> ColumnInfo {
    ColumnInfo {
        type_modifier: typmod,
        is_key: key,
        not_null,
        ..ColumnInfo::of_builtin(name, oid).unwrap()
    }
}

fn items() -> (Arc<RelationInfo>, TableCodec) {
    let rel = Arc::new(RelationInfo {
        oid: 16_500,
        schema: "public".into(),
        table: "items".into(),
        replica_identity: ReplicaIdentity::Default,
        columns: vec![
            column("id", 23, -1, true, true),
            column("name", 25, -1, false, true),
            column("price", 1700, ((10 << 16) | 2) + 4, false, false),
            column("tags", 1009, -1, false, false),
            column("ok", 16, -1, false, false),
        ],
        version: 1,
    });
    let spec = TableSpec::from_relation(&rel);
    let codec = TableCodec::new(&rel, &spec, "shop", &CodecOptions::default()).unwrap();
    (rel, codec)
}

fn row(id: i32, name: &str, price: &str, tags: &str, ok: bool) -> Vec<Value> {
    vec![
        Value::Int4(id),
        Value::Text(name.into()),
        parse_text(&PgType::Numeric, price).unwrap(),
        parse_text(&PgType::Array(Box::new(PgType::Text)), tags).unwrap(),
        Value::Bool(ok),
    ]
}

fn event(
    rel: &Arc<RelationInfo>,
    op: Op,
    before: Option<Vec<Value>>,
    after: Option<Vec<Value>>,
) -> ChangeEvent {
    let meta = Arc::new(ConnectorMeta {
        version: "0.1.0".into(),
        name: "shop".into(),
        db: "shopdb".into(),
    });
    ChangeEvent {
        op,
        relation: rel.clone(),
        before,
        after,
        source: SourceInfo::streaming(
            meta,
            1_700_000_000_123_456,
            Some(Lsn(24_023_000)),
            Lsn(24_023_928),
            556,
        ),
        ts_ns: 1_700_000_001_000_000_007,
        transaction: None,
    }
}

fn text(codec: &JsonTableCodec, table: &TableCodec, e: &ChangeEvent) -> String {
    let mut out = Vec::new();
    codec.encode_envelope(table, e, &mut out).unwrap();
    let s = String::from_utf8(out).unwrap();
    serde_json::from_str::<serde_json::Value>(&s).expect("valid JSON");
    s
}

const SOURCE: &str = r#""source":{"version":"0.1.0","connector":"postgresql","name":"shop","ts_ms":1700000000123,"snapshot":"false","db":"shopdb","sequence":"[\"24023000\",\"24023928\"]","ts_us":1700000000123456,"ts_ns":1700000000123456000,"schema":"public","table":"items","txId":556,"lsn":24023928,"xmin":null,"origin":null,"origin_lsn":null}"#;
const TIMES: &str = r#""ts_ms":1700000001000,"ts_us":1700000001000000,"ts_ns":1700000001000000007"#;

#[test]
fn insert_update_delete_as_json_converter_writes_them() {
    let (rel, table) = items();
    let plain = JsonTableCodec::new(&table, false);
    let lamp = row(1, "lamp", "12.50", "{a,\"b \\\"c\\\"\"}", true);
    let lamp2 = row(1, "lamp", "13.00", "{}", false);

    // Keys.
    let mut key = Vec::new();
    plain.encode_key(&table, &lamp, &mut key).unwrap();
    assert_eq!(String::from_utf8(key.clone()).unwrap(), r#"{"id":1}"#);
    JsonTableCodec::new(&table, true)
        .encode_key(&table, &lamp, &mut key)
        .unwrap();
    assert_eq!(
        String::from_utf8(key).unwrap(),
        r#"{"schema":{"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"}],"optional":false,"name":"shop.public.items.Key"},"payload":{"id":1}}"#
    );

    // 12.50 at scale 2 is 1250 = 0x04E2: base64 "BOI=".
    let create = event(&rel, Op::Create, None, Some(lamp.clone()));
    assert_eq!(
        text(&plain, &table, &create),
        format!(
            r#"{{"before":null,"after":{{"id":1,"name":"lamp","price":"BOI=","tags":["a","b \"c\""],"ok":true}},{SOURCE},"transaction":null,"op":"c",{TIMES}}}"#
        )
    );
    // 13.00 is 1300 = 0x0514: "BRQ=".
    let mut update = event(&rel, Op::Update, None, Some(lamp2.clone()));
    update.transaction = Some(TransactionBlock {
        xid: 556,
        lsn: Lsn(24_023_928),
        total_order: 2,
        data_collection_order: 1,
    });
    assert_eq!(
        text(&plain, &table, &update),
        format!(
            r#"{{"before":null,"after":{{"id":1,"name":"lamp","price":"BRQ=","tags":[],"ok":false}},{SOURCE},"transaction":{{"id":"556:24023928","total_order":2,"data_collection_order":1}},"op":"u",{TIMES}}}"#
        )
    );
    // A key-only old row: the NOT NULL name is Debezium's fill-in "".
    let key_only = vec![
        Value::Int4(1),
        Value::Null,
        Value::Null,
        Value::Null,
        Value::Null,
    ];
    let delete = event(&rel, Op::Delete, Some(key_only), None);
    assert_eq!(
        text(&plain, &table, &delete),
        format!(
            r#"{{"before":{{"id":1,"name":"","price":null,"tags":null,"ok":null}},"after":null,{SOURCE},"transaction":null,"op":"d",{TIMES}}}"#
        )
    );
}

#[test]
fn with_schema_the_envelope_carries_the_connect_schema() {
    let (rel, table) = items();
    let codec = JsonTableCodec::new(&table, true);
    let create = event(
        &rel,
        Op::Create,
        None,
        Some(row(7, "cup", "0.05", "{x}", true)),
    );
    let json = text(&codec, &table, &create);
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    let row_fields = concat!(
        r#"[{"type":"int32","optional":false,"field":"id"},"#,
        r#"{"type":"string","optional":false,"field":"name"},"#,
        r#"{"type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal","version":1,"parameters":{"scale":"2","connect.decimal.precision":"10"},"field":"price"},"#,
        r#"{"type":"array","items":{"type":"string","optional":true},"optional":true,"field":"tags"},"#,
        r#"{"type":"boolean","optional":true,"field":"ok"}]"#
    );
    let expected_schema = format!(
        concat!(
            r#"{{"type":"struct","fields":["#,
            r#"{{"type":"struct","fields":{rows},"optional":true,"name":"shop.public.items.Value","field":"before"}},"#,
            r#"{{"type":"struct","fields":{rows},"optional":true,"name":"shop.public.items.Value","field":"after"}},"#,
            r#"{{"type":"struct","fields":["#,
            r#"{{"type":"string","optional":false,"field":"version"}},"#,
            r#"{{"type":"string","optional":false,"field":"connector"}},"#,
            r#"{{"type":"string","optional":false,"field":"name"}},"#,
            r#"{{"type":"int64","optional":false,"field":"ts_ms"}},"#,
            r#"{{"type":"string","optional":true,"name":"io.debezium.data.Enum","version":1,"parameters":{{"allowed":"true,first,first_in_data_collection,last_in_data_collection,last,false,incremental"}},"default":"false","field":"snapshot"}},"#,
            r#"{{"type":"string","optional":false,"field":"db"}},"#,
            r#"{{"type":"string","optional":true,"field":"sequence"}},"#,
            r#"{{"type":"int64","optional":true,"field":"ts_us"}},"#,
            r#"{{"type":"int64","optional":true,"field":"ts_ns"}},"#,
            r#"{{"type":"string","optional":false,"field":"schema"}},"#,
            r#"{{"type":"string","optional":false,"field":"table"}},"#,
            r#"{{"type":"int64","optional":true,"field":"txId"}},"#,
            r#"{{"type":"int64","optional":true,"field":"lsn"}},"#,
            r#"{{"type":"int64","optional":true,"field":"xmin"}},"#,
            r#"{{"type":"string","optional":true,"field":"origin"}},"#,
            r#"{{"type":"int64","optional":true,"field":"origin_lsn"}}"#,
            r#"],"optional":false,"name":"io.debezium.connector.postgresql.Source","version":1,"field":"source"}},"#,
            r#"{{"type":"struct","fields":["#,
            r#"{{"type":"string","optional":false,"field":"id"}},"#,
            r#"{{"type":"int64","optional":false,"field":"total_order"}},"#,
            r#"{{"type":"int64","optional":false,"field":"data_collection_order"}}"#,
            r#"],"optional":true,"name":"event.block","version":1,"field":"transaction"}},"#,
            r#"{{"type":"string","optional":false,"field":"op"}},"#,
            r#"{{"type":"int64","optional":true,"field":"ts_ms"}},"#,
            r#"{{"type":"int64","optional":true,"field":"ts_us"}},"#,
            r#"{{"type":"int64","optional":true,"field":"ts_ns"}}"#,
            r#"],"optional":false,"name":"shop.public.items.Envelope","version":2}}"#
        ),
        rows = row_fields
    );
    let schema_text = serde_json::to_string(&value["schema"]).unwrap();
    // serde_json keeps key order only with preserve_order; compare parsed values and
    // the raw prefix.
    assert_eq!(
        value["schema"],
        serde_json::from_str::<serde_json::Value>(&expected_schema).unwrap(),
        "{schema_text}"
    );
    assert!(json.starts_with(&format!("{{\"schema\":{expected_schema},\"payload\":{{")));
    assert_eq!(
        value["payload"]["after"]["price"], "BQ==",
        "0.05 → unscaled 5"
    );
    assert_eq!(value["payload"]["op"], "c");
    assert_eq!(value.as_object().unwrap().len(), 2);
}

#[test]
fn key_headers_are_connects_string_form() {
    let (_, table) = items();
    let header = key_header_value(&table, &row(42, "x", "1.00", "{}", true)).unwrap();
    assert_eq!(header, r#"{"id":42}"#);

    // Several key types, as Values.convertToString prints a Struct.
    let rel = Arc::new(RelationInfo {
        oid: 16_501,
        schema: "public".into(),
        table: "k".into(),
        replica_identity: ReplicaIdentity::Default,
        columns: vec![
            column("code", 25, -1, true, true),
            column("amount", 1700, ((10 << 16) | 3) + 4, true, true),
            column("raw", 17, -1, true, true),
            column("f", 701, -1, true, true),
        ],
        version: 1,
    });
    let spec = TableSpec::from_relation(&rel);
    let codec = TableCodec::new(&rel, &spec, "shop", &CodecOptions::default()).unwrap();
    let key = vec![
        Value::Text("a\"b\\c".into()),
        parse_text(&PgType::Numeric, "-0.5").unwrap(),
        Value::Bytea(vec![1, 2, 3]),
        Value::Float8(1e10),
    ];
    assert_eq!(
        key_header_value(&codec, &key).unwrap(),
        r#"{"code":"a\"b\\c","amount":-0.500,"raw":"AQID","f":1.0E10}"#
    );
}

#[test]
fn message_and_transaction_records_render() {
    let opts = CodecOptions::default();
    let messages = MessageCodec::new(&opts);
    let meta = Arc::new(ConnectorMeta {
        version: "0.1.0".into(),
        name: "shop".into(),
        db: "shopdb".into(),
    });
    let event = MessageEvent {
        prefix: "audit".into(),
        content: bytes::Bytes::from_static(b"hi"),
        source: SourceInfo::streaming(meta, 1_000_000, None, Lsn(100), 7),
        ts_ns: 5_000_000,
        transaction: None,
    };
    let mut framed = Vec::new();
    messages.encode_key(&event, 0, &mut framed);
    let mut out = Vec::new();
    JsonRecord::new(messages.key_connect_schema(), false)
        .write_framed(&framed, &mut out)
        .unwrap();
    assert_eq!(out, br#"{"prefix":"audit"}"#);
    messages.encode_value(&event, 0, &mut framed);
    JsonRecord::new(messages.value_connect_schema(), false)
        .write_framed(&framed, &mut out)
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["op"], "m");
    assert_eq!(v["ts_ms"], 5);
    assert_eq!(v["message"]["content"], "aGk=");
    assert_eq!(v["source"]["schema"], "");

    let tx = TransactionCodec::new();
    let end = TransactionMetadataEvent {
        status: TransactionStatus::End,
        xid: 571,
        lsn: Lsn(53_195_832),
        ts_ms: 1_580_390_884_335,
        event_count: Some(2),
        data_collections: Some(vec![("s1.a".into(), 1), ("s2.a".into(), 1)]),
    };
    tx.encode_value(&end, 0, &mut framed);
    JsonRecord::new(tx.value_connect_schema(), false)
        .write_framed(&framed, &mut out)
        .unwrap();
    assert_eq!(
        String::from_utf8(out.clone()).unwrap(),
        r#"{"status":"END","id":"571:53195832","event_count":2,"data_collections":[{"data_collection":"s1.a","event_count":1},{"data_collection":"s2.a","event_count":1}],"ts_ms":1580390884335}"#
    );
    let begin = TransactionMetadataEvent {
        status: TransactionStatus::Begin,
        event_count: None,
        data_collections: None,
        ..end
    };
    tx.encode_key(&begin, 0, &mut framed);
    JsonRecord::new(tx.key_connect_schema(), true)
        .write_framed(&framed, &mut out)
        .unwrap();
    assert_eq!(
        String::from_utf8(out.clone()).unwrap(),
        r#"{"schema":{"type":"struct","fields":[{"type":"string","optional":false,"field":"id"}],"optional":false,"name":"io.debezium.connector.common.TransactionMetadataKey","version":1},"payload":{"id":"571:53195832"}}"#
    );
    tx.encode_value(&begin, 0, &mut framed);
    JsonRecord::new(tx.value_connect_schema(), false)
        .write_framed(&framed, &mut out)
        .unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        r#"{"status":"BEGIN","id":"571:53195832","event_count":null,"data_collections":null,"ts_ms":1580390884335}"#
    );
}
