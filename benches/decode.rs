//! Benchmarks the reader's per-row work on a realistic 10-column row: pgoutput decode
//! of an Insert alone, and decode plus parsing every column into typed values.
//!
//! Run: `cargo bench --bench decode`

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use walcast::codec::{ChangeEvent, CodecOptions, ConnectorMeta, SourceInfo, TableCodec, TableSpec};
use walcast::model::change::{RowChange, RowOp};
use walcast::model::lsn::Lsn;
use walcast::model::relation::ReplicaIdentity;
use walcast::model::relation::{ColumnInfo, RelationInfo, TypeInfo};
use walcast::model::types::builtin;
use walcast::source::pgoutput::{
    decode, encode, Column, DecodeContext, Insert, Message, TupleData,
};
use walcast::source::reader::to_row;

/// (column, type name, type OID, atttypmod, text as pgoutput sends it).
const COLUMNS: [(&str, &str, u32, i32, &str); 10] = [
    ("id", "int8", 20, -1, "1234567"),
    ("name", "text", 25, -1, "Ada Lovelace"),
    (
        "email",
        "varchar",
        1043,
        255 + 4,
        "ada.lovelace@example.com",
    ),
    ("amount", "numeric", 1700, ((12 << 16) | 2) + 4, "1234.56"),
    (
        "created_at",
        "timestamptz",
        1184,
        -1,
        "2024-03-01 12:34:56.789123+00",
    ),
    ("active", "bool", 16, -1, "t"),
    (
        "attrs",
        "jsonb",
        3802,
        -1,
        r#"{"tags": ["vip", "beta"], "tier": "gold", "visits": 42}"#,
    ),
    ("quantity", "int4", 23, -1, "42"),
    ("score", "float8", 701, -1, "0.8731"),
    (
        "ref",
        "uuid",
        2950,
        -1,
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    ),
];

const CTX: DecodeContext = DecodeContext { in_stream: false };

fn relation() -> RelationInfo {
    RelationInfo {
        oid: 16384,
        schema: "public".into(),
        table: "orders".into(),
        replica_identity: ReplicaIdentity::Default,
        columns: COLUMNS
            .iter()
            .map(|&(name, type_name, oid, type_modifier, _)| ColumnInfo {
                name: name.into(),
                type_info: Arc::new(TypeInfo {
                    oid,
                    name: type_name.into(),
                    pg_type: builtin(oid).expect("a built-in type"),
                    enum_labels: None,
                }),
                type_modifier,
                is_key: name == "id",
                not_null: name == "id",
                default_expr: None,
            })
            .collect(),
        version: 1,
    }
}

/// The Insert message as the server sends it (the payload of one XLogData).
fn insert_message() -> Bytes {
    let new = TupleData {
        columns: COLUMNS
            .iter()
            .map(|&(.., text)| Column::Text(Bytes::from_static(text.as_bytes())))
            .collect(),
    };
    let message = Message::Insert(Insert {
        xid: None,
        relation: 16384,
        new,
    });
    let mut out = BytesMut::new();
    encode(&message, CTX, &mut out);
    out.freeze()
}

fn decode_and_parse(data: &Bytes, relation: &RelationInfo) -> usize {
    match decode(data, CTX) {
        Ok(Message::Insert(insert)) => to_row(relation, &insert.new).expect("the row parses").len(),
        other => panic!("expected an Insert, got {other:?}"),
    }
}

fn bench(c: &mut Criterion) {
    let data = insert_message();
    let relation = relation();
    // Fail before measuring if the fixture is wrong.
    assert_eq!(decode_and_parse(&data, &relation), COLUMNS.len());

    let mut group = c.benchmark_group("row_10_columns");
    group.throughput(Throughput::Elements(1));
    group.bench_function("pgoutput_decode", |b| {
        b.iter(|| decode(black_box(&data), CTX))
    });
    group.bench_function("decode_and_parse_values", |b| {
        b.iter(|| decode_and_parse(black_box(&data), &relation))
    });

    // Avro: key + Debezium envelope, Confluent-framed, into reused buffers.
    let relation = Arc::new(relation);
    let codec = TableCodec::new(
        &relation,
        &TableSpec::from_relation(&relation),
        "bench",
        &CodecOptions::default(),
    )
    .expect("schemas derive");
    let row = match decode(&data, CTX) {
        Ok(Message::Insert(insert)) => to_row(&relation, &insert.new).expect("the row parses"),
        other => panic!("expected an Insert, got {other:?}"),
    };
    let meta = Arc::new(ConnectorMeta::new("bench", "shop"));
    let change = RowChange {
        relation: relation.clone(),
        op: RowOp::Insert,
        old: None,
        new: Some(row),
        lsn: Lsn(0x1_0000),
    };
    let event = ChangeEvent::from_row_change(
        change,
        SourceInfo::streaming(
            meta,
            1_768_557_600_000_000,
            Some(Lsn(0xFF00)),
            Lsn(0x1_0000),
            742,
        ),
        1_768_557_600_000_000_000,
        None,
    );
    let (mut key, mut value) = (Vec::with_capacity(64), Vec::with_capacity(512));
    group.bench_function("avro_encode_key_and_envelope", |b| {
        b.iter(|| {
            codec
                .encode_key(black_box(event.key_row().unwrap_or_default()), 1, &mut key)
                .expect("key");
            codec
                .encode_envelope(black_box(&event), 2, &mut value)
                .expect("envelope");
            key.len() + value.len()
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
