//! Golden tests of the codec: schema JSON compared with what Debezium 3.6 + Confluent's
//! AvroConverter register for the same table (derived by hand from Debezium's
//! `PostgresValueConverter`, `TableSchemaBuilder`, `SchemaFactory`, Confluent's
//! `AvroData` and Debezium's `AbstractRecordsProducerTest` expectations), and encoded
//! records decoded back with apache-avro against that schema.

use std::sync::Arc;

use apache_avro::types::Value as Avro;
use apache_avro::Schema;

use super::event::*;
use super::mapping::{parse_default_expression, ColumnSpec};
use super::options::*;
use super::records::{MessageCodec, TransactionCodec};
use super::table::{EncodeError, TableCodec, TableSpec};
use super::temporal::{interval_micros, TIMESTAMP_POSITIVE_INFINITY_MICROS};
use super::wire;
use crate::model::lsn::Lsn;
use crate::model::relation::ReplicaIdentity;
use crate::model::relation::{ColumnInfo, RelationInfo, TypeInfo};
use crate::model::types::{builtin, PgType};
use crate::model::value::{parse_text, Decimal, Value};

const MOODS: [&str; 3] = ["sad", "ok", "happy"];

fn type_info(oid: u32) -> Arc<TypeInfo> {
    let pg_type = builtin(oid).unwrap_or_else(|| panic!("builtin oid {oid}"));
    Arc::new(TypeInfo {
        oid,
        name: pg_type.name().to_string(),
        pg_type,
        enum_labels: None,
    })
}

fn user_type(oid: u32, name: &str, pg_type: PgType, labels: Option<&[&str]>) -> Arc<TypeInfo> {
    Arc::new(TypeInfo {
        oid,
        name: name.to_string(),
        pg_type,
        enum_labels: labels.map(|l| l.iter().map(|s| s.to_string()).collect()),
    })
}

fn col(name: &str, ty: Arc<TypeInfo>, typmod: i32, key: bool) -> ColumnInfo {
    ColumnInfo {
        name: name.to_string(),
        type_info: ty,
        type_modifier: typmod,
        is_key: key,
        not_null: key,
        default_expr: None,
    }
}

/// numeric(p,s)'s atttypmod.
/// A column of an extension's type (PostGIS, pgvector): known to the codec by its
/// type name only, as pgoutput reports it.
fn extension_column(column: &str, type_name: &str, oid: u32, not_null: bool) -> ColumnInfo {
    ColumnInfo {
        name: column.into(),
        type_info: Arc::new(TypeInfo {
            oid,
            name: format!("public.{type_name}"),
            pg_type: PgType::Unknown,
            enum_labels: None,
        }),
        type_modifier: -1,
        is_key: false,
        not_null,
        default_expr: None,
    }
}

/// `public.<table>` keyed by an int `id`, then `columns`.
fn keyed_relation(oid: u32, table: &str, columns: Vec<ColumnInfo>) -> Arc<RelationInfo> {
    let mut id = ColumnInfo::of_builtin("id", 23).unwrap();
    id.is_key = true;
    id.not_null = true;
    Arc::new(RelationInfo {
        oid,
        schema: "public".into(),
        table: table.into(),
        replica_identity: ReplicaIdentity::Default,
        columns: std::iter::once(id).chain(columns).collect(),
        version: 1,
    })
}

fn numeric_typmod(p: i32, s: i32) -> i32 {
    ((p << 16) | s) + 4
}

/// The table of every type the brief lists (and a few more).
fn all_types() -> RelationInfo {
    let mood = user_type(50_000, "public.mood", PgType::Enum, Some(&MOODS));
    let mood_array = user_type(
        50_001,
        "public._mood",
        PgType::Array(Box::new(PgType::Enum)),
        Some(&MOODS),
    );
    let hstore = user_type(50_002, "public.hstore", PgType::Hstore, None);
    let columns = vec![
        col("id", type_info(23), -1, true),
        col("price", type_info(1700), numeric_typmod(12, 2), false),
        col("amount", type_info(1700), -1, false),
        col("amount2", type_info(1700), -1, false),
        col("created", type_info(1184), -1, false),
        col("ts3", type_info(1114), 3, false),
        col("ts", type_info(1114), -1, false),
        col("day", type_info(1082), -1, false),
        col("t", type_info(1083), -1, false),
        col("t3", type_info(1083), 3, false),
        col("ttz", type_info(1266), -1, false),
        col("uid", type_info(2950), -1, false),
        col("doc", type_info(3802), -1, false),
        col("mood", mood, -1, false),
        col("ints", type_info(1007), -1, false),
        col("loc", type_info(600), -1, false),
        col("flag", type_info(1560), 1, false),
        col("bits8", type_info(1560), 8, false),
        col("cash", type_info(790), -1, false),
        col("span", type_info(1186), -1, false),
        col("body", type_info(25), -1, false),
        col("small", type_info(21), -1, false),
        col("status", type_info(25), -1, false),
        col("note", type_info(1043), 14, false),
        col("tags", type_info(1009), -1, false),
        col("attrs", hstore, -1, false),
        col("raw", type_info(17), -1, false),
        col("vb", type_info(1562), -1, false),
        col("f4", type_info(700), -1, false),
        col("f8", type_info(701), -1, false),
        col("ok", type_info(16), -1, false),
        col("geo", type_info(603), -1, false),
        col("moods", mood_array, -1, false),
        col("my-col", type_info(25), -1, false),
    ];
    RelationInfo {
        oid: 16_400,
        schema: "public".into(),
        table: "all_types".into(),
        replica_identity: ReplicaIdentity::Default,
        columns,
        version: 1,
    }
}

/// Catalog facts: id serial, small NOT NULL DEFAULT 7, status NOT NULL DEFAULT 'new',
/// note DEFAULT 'n/a'.
fn all_types_spec(rel: &RelationInfo) -> TableSpec {
    let mut spec = TableSpec::from_relation(rel);
    let idx = |name: &str| rel.columns.iter().position(|c| c.name == name).unwrap();
    let set = |spec: &mut TableSpec, name: &str, optional: bool, default: Option<&str>| {
        let i = idx(name);
        spec.columns[i] = ColumnSpec {
            optional,
            default: default.and_then(|d| parse_default_expression(&rel.columns[i], d)),
        };
    };
    set(
        &mut spec,
        "id",
        false,
        Some("nextval('all_types_id_seq'::regclass)"),
    );
    set(&mut spec, "small", false, Some("7"));
    set(&mut spec, "status", false, Some("'new'::text"));
    set(&mut spec, "note", true, Some("'n/a'::character varying"));
    spec
}

fn opt(t: &str) -> String {
    format!("[\"null\",{t}]")
}

fn named(ty: &str, name: &str) -> String {
    format!("{{\"type\":\"{ty}\",\"connect.version\":1,\"connect.name\":\"{name}\"}}")
}

fn f(name: &str, ty: &str) -> String {
    format!("{{\"name\":\"{name}\",\"type\":{ty}}}")
}

fn fo(name: &str, ty: &str) -> String {
    format!(
        "{{\"name\":\"{name}\",\"type\":{},\"default\":null}}",
        opt(ty)
    )
}

/// The Value record fields Debezium + AvroData give `all_types`.
fn expected_value_fields() -> Vec<String> {
    let enum_ty = "{\"type\":\"string\",\"connect.version\":1,\"connect.parameters\":{\"allowed\":\"sad,ok,happy\"},\"connect.name\":\"io.debezium.data.Enum\"}";
    vec![
        // serial: PostgresDefaultValueConverter maps nextval(...) to 0.
        "{\"name\":\"id\",\"type\":{\"type\":\"int\",\"connect.default\":0},\"default\":0}".into(),
        // SpecialValueDecimal.builder(PRECISE, 12, 2) → AvroData decimal props first.
        fo("price", "{\"type\":\"bytes\",\"scale\":2,\"precision\":12,\"connect.version\":1,\"connect.parameters\":{\"scale\":\"2\",\"connect.decimal.precision\":\"12\"},\"connect.name\":\"org.apache.kafka.connect.data.Decimal\",\"logicalType\":\"decimal\"}"),
        // numeric without modifier: VariableScaleDecimal (SchemaFactory.datatypeVariableScaleDecimalSchema).
        fo("amount", "{\"type\":\"record\",\"name\":\"VariableScaleDecimal\",\"namespace\":\"io.debezium.data\",\"fields\":[{\"name\":\"scale\",\"type\":\"int\"},{\"name\":\"value\",\"type\":\"bytes\"}],\"connect.doc\":\"Variable scaled decimal\",\"connect.version\":1,\"connect.name\":\"io.debezium.data.VariableScaleDecimal\"}"),
        // The second use of a named record is a reference.
        fo("amount2", "\"io.debezium.data.VariableScaleDecimal\""),
        fo("created", &named("string", "io.debezium.time.ZonedTimestamp")),
        fo("ts3", &named("long", "io.debezium.time.Timestamp")),
        fo("ts", &named("long", "io.debezium.time.MicroTimestamp")),
        fo("day", &named("int", "io.debezium.time.Date")),
        fo("t", &named("long", "io.debezium.time.MicroTime")),
        fo("t3", &named("int", "io.debezium.time.Time")),
        fo("ttz", &named("string", "io.debezium.time.ZonedTime")),
        fo("uid", &named("string", "io.debezium.data.Uuid")),
        fo("doc", &named("string", "io.debezium.data.Json")),
        fo("mood", enum_ty),
        // INT4_ARRAY: SchemaBuilder.array(OPTIONAL_INT32_SCHEMA).
        fo("ints", "{\"type\":\"array\",\"items\":[\"null\",\"int\"]}"),
        fo("loc", "{\"type\":\"record\",\"name\":\"Point\",\"namespace\":\"io.debezium.data.geometry\",\"fields\":[{\"name\":\"x\",\"type\":\"double\"},{\"name\":\"y\",\"type\":\"double\"},{\"name\":\"wkb\",\"type\":[\"null\",\"bytes\"],\"default\":null},{\"name\":\"srid\",\"type\":[\"null\",\"int\"],\"default\":null}],\"connect.doc\":\"Geometry (POINT)\",\"connect.version\":1,\"connect.name\":\"io.debezium.data.geometry.Point\"}"),
        // bit(1) is a boolean, bit(8) Bits with its length.
        fo("flag", "\"boolean\""),
        fo("bits8", "{\"type\":\"bytes\",\"connect.version\":1,\"connect.parameters\":{\"length\":\"8\"},\"connect.name\":\"io.debezium.data.Bits\"}"),
        // money: Decimal.builder(2) without a precision parameter → Avro precision 64.
        fo("cash", "{\"type\":\"bytes\",\"scale\":2,\"precision\":64,\"connect.version\":1,\"connect.parameters\":{\"scale\":\"2\"},\"connect.name\":\"org.apache.kafka.connect.data.Decimal\",\"logicalType\":\"decimal\"}"),
        fo("span", &named("long", "io.debezium.time.MicroDuration")),
        fo("body", "\"string\""),
        // int16 carries connect.type; the default comes before the name in AvroData.
        "{\"name\":\"small\",\"type\":{\"type\":\"int\",\"connect.default\":7,\"connect.type\":\"int16\"},\"default\":7}".into(),
        "{\"name\":\"status\",\"type\":{\"type\":\"string\",\"connect.default\":\"new\"},\"default\":\"new\"}".into(),
        // Optional with a default: [T, "null"] and the default value.
        "{\"name\":\"note\",\"type\":[{\"type\":\"string\",\"connect.default\":\"n/a\"},\"null\"],\"default\":\"n/a\"}".into(),
        fo("tags", "{\"type\":\"array\",\"items\":[\"null\",\"string\"]}"),
        fo("attrs", &named("string", "io.debezium.data.Json")),
        fo("raw", "\"bytes\""),
        fo("vb", "{\"type\":\"bytes\",\"connect.version\":1,\"connect.parameters\":{\"length\":\"2147483647\"},\"connect.name\":\"io.debezium.data.Bits\"}"),
        fo("f4", "\"float\""),
        fo("f8", "\"double\""),
        fo("ok", "\"boolean\""),
        // geo (box) is left out: Debezium has no mapping without include.unknown.datatypes.
        // Enum arrays: SchemaBuilder.array(Enum.builder(...)) with non-optional items.
        fo("moods", &format!("{{\"type\":\"array\",\"items\":{enum_ty}}}")),
        // "my-col" is not a valid Avro name: adjusted as Debezium's avro mode does.
        fo("my_col", "\"string\""),
    ]
}

const SOURCE_JSON: &str = concat!(
    "{\"type\":\"record\",\"name\":\"Source\",\"namespace\":\"io.debezium.connector.postgresql\",\"fields\":[",
    "{\"name\":\"version\",\"type\":\"string\"},",
    "{\"name\":\"connector\",\"type\":\"string\"},",
    "{\"name\":\"name\",\"type\":\"string\"},",
    "{\"name\":\"ts_ms\",\"type\":\"long\"},",
    "{\"name\":\"snapshot\",\"type\":[{\"type\":\"string\",\"connect.version\":1,\"connect.parameters\":{\"allowed\":\"true,first,first_in_data_collection,last_in_data_collection,last,false,incremental\"},\"connect.default\":\"false\",\"connect.name\":\"io.debezium.data.Enum\"},\"null\"],\"default\":\"false\"},",
    "{\"name\":\"db\",\"type\":\"string\"},",
    "{\"name\":\"sequence\",\"type\":[\"null\",\"string\"],\"default\":null},",
    "{\"name\":\"ts_us\",\"type\":[\"null\",\"long\"],\"default\":null},",
    "{\"name\":\"ts_ns\",\"type\":[\"null\",\"long\"],\"default\":null},",
    "{\"name\":\"schema\",\"type\":\"string\"},",
    "{\"name\":\"table\",\"type\":\"string\"},",
    "{\"name\":\"txId\",\"type\":[\"null\",\"long\"],\"default\":null},",
    "{\"name\":\"lsn\",\"type\":[\"null\",\"long\"],\"default\":null},",
    "{\"name\":\"xmin\",\"type\":[\"null\",\"long\"],\"default\":null},",
    "{\"name\":\"origin\",\"type\":[\"null\",\"string\"],\"default\":null},",
    "{\"name\":\"origin_lsn\",\"type\":[\"null\",\"long\"],\"default\":null}",
    "],\"connect.version\":1,\"connect.name\":\"io.debezium.connector.postgresql.Source\"}"
);

const BLOCK_JSON: &str = "{\"type\":\"record\",\"name\":\"block\",\"namespace\":\"event\",\"fields\":[{\"name\":\"id\",\"type\":\"string\"},{\"name\":\"total_order\",\"type\":\"long\"},{\"name\":\"data_collection_order\",\"type\":\"long\"}],\"connect.version\":1,\"connect.name\":\"event.block\"}";

fn expected_envelope_json() -> String {
    let value = format!(
        "{{\"type\":\"record\",\"name\":\"Value\",\"fields\":[{}],\"connect.name\":\"dbserver1.public.all_types.Value\"}}",
        expected_value_fields().join(",")
    );
    let fields = [
        fo("before", &value),
        fo("after", "\"Value\""),
        f("source", SOURCE_JSON),
        fo("transaction", BLOCK_JSON),
        f("op", "\"string\""),
        fo("ts_ms", "\"long\""),
        fo("ts_us", "\"long\""),
        fo("ts_ns", "\"long\""),
    ];
    format!(
        "{{\"type\":\"record\",\"name\":\"Envelope\",\"namespace\":\"dbserver1.public.all_types\",\"fields\":[{}],\"connect.version\":2,\"connect.name\":\"dbserver1.public.all_types.Envelope\"}}",
        fields.join(",")
    )
}

fn codec(opts: &CodecOptions) -> (Arc<RelationInfo>, TableCodec) {
    let rel = Arc::new(all_types());
    let spec = all_types_spec(&rel);
    let codec = TableCodec::new(&rel, &spec, "dbserver1", opts).unwrap();
    (rel, codec)
}

#[test]
fn key_and_envelope_schemas_are_debeziums() {
    let (_, codec) = codec(&CodecOptions::default());
    assert_eq!(
        codec.key_schema_json().unwrap(),
        "{\"type\":\"record\",\"name\":\"Key\",\"namespace\":\"dbserver1.public.all_types\",\"fields\":[{\"name\":\"id\",\"type\":{\"type\":\"int\",\"connect.default\":0},\"default\":0}],\"connect.name\":\"dbserver1.public.all_types.Key\"}"
    );
    let got = codec.envelope_schema_json();
    let want = expected_envelope_json();
    if got != want {
        // Show the first difference rather than two 8 KB strings.
        let at = got
            .bytes()
            .zip(want.bytes())
            .take_while(|(a, b)| a == b)
            .count();
        let from = at.saturating_sub(80);
        panic!(
            "envelope schema differs at byte {at}:\n got: …{}\nwant: …{}",
            &got[from..(at + 120).min(got.len())],
            &want[from..(at + 120).min(want.len())]
        );
    }
    // And apache-avro accepts both.
    Schema::parse_str(got).unwrap();
    Schema::parse_str(codec.key_schema_json().unwrap()).unwrap();
}

fn parse(rel: &RelationInfo, name: &str, text: &str) -> Value {
    let c = rel.columns.iter().find(|c| c.name == name).unwrap();
    parse_text(&c.type_info.pg_type, text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The row inserted in the golden test, as PostgreSQL prints it.
fn insert_row(rel: &RelationInfo) -> Vec<Value> {
    let text = [
        ("id", Some("1")),
        ("price", Some("1234.50")),
        ("amount", Some("22.2200")),
        ("amount2", None),
        ("created", Some("2016-11-04 13:51:30.123456+02")),
        ("ts3", Some("2016-11-04 13:51:30.123")),
        ("ts", Some("infinity")),
        ("day", Some("2016-11-04")),
        ("t", Some("24:00:00")),
        ("t3", Some("13:51:30.123")),
        ("ttz", Some("13:51:30.123789+02")),
        ("uid", Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")),
        ("doc", Some("{\"bar\": \"baz\"}")),
        ("mood", Some("happy")),
        ("ints", Some("{1,NULL,3}")),
        ("loc", Some("(1,2)")),
        ("flag", Some("1")),
        ("bits8", Some("10100000")),
        ("cash", Some("$1,234.11")),
        ("span", Some("1 year 2 mons 3 days 04:05:06.78")),
        ("body", Some("some text")),
        ("small", Some("1")),
        ("status", Some("new")),
        ("note", None),
        ("tags", Some("{a,b}")),
        ("attrs", Some("\"key4\"=>\"val4\", \"key5\"=>NULL")),
        ("raw", Some("\\x010203")),
        ("vb", Some("101")),
        ("f4", Some("3.3")),
        ("f8", Some("4.44")),
        ("ok", Some("t")),
        ("geo", Some("(1,1),(0,0)")),
        ("moods", Some("{sad,ok}")),
        ("my-col", Some("x")),
    ];
    assert_eq!(text.len(), rel.columns.len());
    text.iter()
        .zip(&rel.columns)
        .map(|((name, t), c)| {
            assert_eq!(*name, c.name);
            t.map_or(Value::Null, |t| parse(rel, name, t))
        })
        .collect()
}

fn some(v: Avro) -> Avro {
    Avro::Union(1, Box::new(v))
}

fn none() -> Avro {
    Avro::Union(0, Box::new(Avro::Null))
}

fn s(v: &str) -> Avro {
    Avro::String(v.into())
}

fn unscaled(negative: bool, digits: &str, scale: u32) -> Vec<u8> {
    Decimal::new(negative, digits, scale)
        .unwrap()
        .unscaled_be_bytes()
}

fn wkb(x: f64, y: f64) -> Vec<u8> {
    let mut w = vec![1, 1, 0, 0, 0];
    w.extend_from_slice(&x.to_le_bytes());
    w.extend_from_slice(&y.to_le_bytes());
    w
}

const TOAST: &str = "__debezium_unavailable_value";

/// The decoded Value record of `insert_row`.
fn expected_insert_value() -> Vec<(String, Avro)> {
    let ts3_ms = 1_478_267_490_123; // 2016-11-04T13:51:30.123 as UTC
                                    // MicroDuration.durationMicros(1, 2, 3, 4, 5, 6.78, 365.25 / 12)
    let span = {
        let days = 14.0 * (365.25 / 12.0) + 3.0;
        let secs = (((days * 24.0 + 4.0) * 60.0) + 5.0) * 60.0 + 6.78;
        (secs * 1e6) as i64
    };
    let fields: Vec<(&str, Avro)> = vec![
        ("id", Avro::Int(1)),
        (
            "price",
            some(Avro::Decimal(unscaled(false, "123450", 2).into())),
        ),
        (
            "amount",
            some(Avro::Record(vec![
                ("scale".into(), Avro::Int(2)),
                ("value".into(), Avro::Bytes(unscaled(false, "2222", 2))),
            ])),
        ),
        ("amount2", none()),
        ("created", some(s("2016-11-04T11:51:30.123456Z"))),
        ("ts3", some(Avro::Long(ts3_ms))),
        ("ts", some(Avro::Long(9_223_372_036_825_200_000))),
        ("day", some(Avro::Int(17_109))),
        ("t", some(Avro::Long(86_400_000_000))),
        ("t3", some(Avro::Int(49_890_123))),
        ("ttz", some(s("11:51:30.123789Z"))),
        ("uid", some(s("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"))),
        ("doc", some(s("{\"bar\": \"baz\"}"))),
        ("mood", some(s("happy"))),
        (
            "ints",
            some(Avro::Array(vec![
                some(Avro::Int(1)),
                none(),
                some(Avro::Int(3)),
            ])),
        ),
        (
            "loc",
            some(Avro::Record(vec![
                ("x".into(), Avro::Double(1.0)),
                ("y".into(), Avro::Double(2.0)),
                ("wkb".into(), some(Avro::Bytes(wkb(1.0, 2.0)))),
                ("srid".into(), none()),
            ])),
        ),
        ("flag", some(Avro::Boolean(true))),
        ("bits8", some(Avro::Bytes(vec![0xa0]))),
        (
            "cash",
            some(Avro::Decimal(unscaled(false, "123411", 2).into())),
        ),
        ("span", some(Avro::Long(span))),
        ("body", some(s("some text"))),
        ("small", Avro::Int(1)),
        ("status", s("new")),
        // [T, "null"]: null is branch 1.
        ("note", Avro::Union(1, Box::new(Avro::Null))),
        ("tags", some(Avro::Array(vec![some(s("a")), some(s("b"))]))),
        // Jackson over a HashMap: key5 iterates before key4 (Debezium's own test).
        ("attrs", some(s("{\"key5\":null,\"key4\":\"val4\"}"))),
        ("raw", some(Avro::Bytes(vec![1, 2, 3]))),
        ("vb", some(Avro::Bytes(vec![5]))),
        ("f4", some(Avro::Float(3.3))),
        ("f8", some(Avro::Double(4.44))),
        ("ok", some(Avro::Boolean(true))),
        ("moods", some(Avro::Array(vec![s("sad"), s("ok")]))),
        ("my_col", some(s("x"))),
    ];
    fields
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

fn meta() -> Arc<ConnectorMeta> {
    Arc::new(ConnectorMeta {
        version: "3.6.1.Final".into(),
        name: "dbserver1".into(),
        db: "postgres".into(),
    })
}

fn decode(schema_json: &str, framed: &[u8], id: u32) -> Avro {
    let schema = Schema::parse_str(schema_json).unwrap();
    let (got_id, mut datum) = wire::split(framed).unwrap();
    assert_eq!(got_id, id);
    let v = apache_avro::from_avro_datum(&schema, &mut datum, None).unwrap();
    assert!(
        datum.is_empty(),
        "{} bytes left after the datum",
        datum.len()
    );
    v
}

fn record(v: &Avro) -> &[(String, Avro)] {
    match v {
        Avro::Record(fields) => fields,
        other => panic!("not a record: {other:?}"),
    }
}

fn get<'a>(v: &'a Avro, name: &str) -> &'a Avro {
    record(v)
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no field {name}"))
}

fn unwrap_union(v: &Avro) -> &Avro {
    match v {
        Avro::Union(_, inner) => inner,
        other => other,
    }
}

fn assert_fields(got: &Avro, want: &[(String, Avro)]) {
    let got = record(got);
    assert_eq!(got.len(), want.len(), "field count");
    for ((gk, gv), (wk, wv)) in got.iter().zip(want) {
        assert_eq!(gk, wk);
        assert_eq!(gv, wv, "field {gk}");
    }
}

#[test]
fn insert_event_decodes_to_debeziums_values() {
    let (rel, codec) = codec(&CodecOptions::default());
    let source = SourceInfo::streaming(
        meta(),
        1_478_267_490_123_456,
        Some(Lsn(24_023_000)),
        Lsn(24_023_928),
        556,
    );
    let event = ChangeEvent {
        op: Op::Create,
        relation: rel.clone(),
        before: None,
        after: Some(insert_row(&rel)),
        source,
        ts_ns: 1_580_390_884_335_451_325,
        transaction: Some(TransactionBlock {
            xid: 556,
            lsn: Lsn(24_023_928),
            total_order: 1,
            data_collection_order: 1,
        }),
    };
    let mut buf = Vec::new();
    let stats = codec.encode_envelope(&event, 7, &mut buf).unwrap();
    assert_eq!(stats.nulled_values, 0);
    let v = decode(codec.envelope_schema_json(), &buf, 7);

    assert_eq!(get(&v, "before"), &none());
    assert_fields(unwrap_union(get(&v, "after")), &expected_insert_value());
    let source = get(&v, "source");
    let want_source: Vec<(String, Avro)> = vec![
        ("version", s("3.6.1.Final")),
        ("connector", s("postgresql")),
        ("name", s("dbserver1")),
        ("ts_ms", Avro::Long(1_478_267_490_123)),
        ("snapshot", Avro::Union(0, Box::new(s("false")))),
        ("db", s("postgres")),
        ("sequence", some(s("[\"24023000\",\"24023928\"]"))),
        ("ts_us", some(Avro::Long(1_478_267_490_123_456))),
        ("ts_ns", some(Avro::Long(1_478_267_490_123_456_000))),
        ("schema", s("public")),
        ("table", s("all_types")),
        ("txId", some(Avro::Long(556))),
        ("lsn", some(Avro::Long(24_023_928))),
        ("xmin", none()),
        ("origin", none()),
        ("origin_lsn", none()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_fields(source, &want_source);
    assert_fields(
        unwrap_union(get(&v, "transaction")),
        &[
            ("id".into(), s("556:24023928")),
            ("total_order".into(), Avro::Long(1)),
            ("data_collection_order".into(), Avro::Long(1)),
        ],
    );
    assert_eq!(get(&v, "op"), &s("c"));
    assert_eq!(get(&v, "ts_ms"), &some(Avro::Long(1_580_390_884_335)));
    assert_eq!(get(&v, "ts_us"), &some(Avro::Long(1_580_390_884_335_451)));
    assert_eq!(
        get(&v, "ts_ns"),
        &some(Avro::Long(1_580_390_884_335_451_325))
    );

    // The key.
    let mut key = Vec::new();
    codec
        .encode_key(event.key_row().unwrap(), 6, &mut key)
        .unwrap();
    let k = decode(codec.key_schema_json().unwrap(), &key, 6);
    assert_fields(&k, &[("id".into(), Avro::Int(1))]);
}

/// One column's schema JSON and decoded value under `opts`.
mod geometry;
mod options;
mod row_cases;
mod vector;
