//! Tests of the Debezium handling options and edge values.

use super::*;

fn one_column(ty: Arc<TypeInfo>, typmod: i32, text: &str, opts: &CodecOptions) -> (String, Avro) {
    let rel = Arc::new(RelationInfo {
        oid: 2,
        schema: "s".into(),
        table: "t".into(),
        replica_identity: ReplicaIdentity::Default,
        columns: vec![col("c", ty, typmod, false)],
        version: 1,
    });
    let spec = TableSpec::from_relation(&rel);
    let codec = TableCodec::new(&rel, &spec, "p", opts).unwrap();
    let value = parse_text(&rel.columns[0].type_info.pg_type, text).unwrap();
    let event = ChangeEvent {
        op: Op::Read,
        relation: rel.clone(),
        before: None,
        after: Some(vec![value]),
        source: SourceInfo {
            snapshot: SnapshotRecord::Last,
            ..SourceInfo::streaming(meta(), 0, None, Lsn(4), 4)
        },
        ts_ns: 0,
        transaction: None,
    };
    let mut buf = Vec::new();
    codec.encode_envelope(&event, 1, &mut buf).unwrap();
    let v = decode(codec.envelope_schema_json(), &buf, 1);
    assert_eq!(
        get(get(&v, "source"), "snapshot"),
        &Avro::Union(0, Box::new(s("last")))
    );
    let after = unwrap_union(get(&v, "after"));
    let json = codec.envelope_schema_json();
    let marker = "\"fields\":[{\"name\":\"c\",\"type\":";
    let start = json.find(marker).unwrap() + marker.len();
    let end = json[start..]
        .find(",\"default\":null}],\"connect.name\":\"p.s.t.Value\"")
        .unwrap();
    (
        json[start..start + end].to_string(),
        get(after, "c").clone(),
    )
}

#[test]
fn options_change_representations_as_in_debezium() {
    let string_mode = CodecOptions {
        decimal_handling: DecimalHandling::String,
        ..CodecOptions::default()
    };
    let double_mode = CodecOptions {
        decimal_handling: DecimalHandling::Double,
        ..CodecOptions::default()
    };
    // schemasAndValuesForStringEncodedNumericTypes / ...DoubleEncoded...
    let (schema, v) = one_column(type_info(1700), numeric_typmod(3, 2), "1.10", &string_mode);
    assert_eq!(
        (schema.as_str(), v),
        ("[\"null\",\"string\"]", some(s("1.10")))
    );
    let (_, v) = one_column(type_info(1700), -1, "Infinity", &string_mode);
    assert_eq!(v, some(s("POSITIVE_INFINITY")));
    let (schema, v) = one_column(type_info(1700), -1, "10.1111", &double_mode);
    assert_eq!(
        (schema.as_str(), v),
        ("[\"null\",\"double\"]", some(Avro::Double(10.1111)))
    );
    let (_, v) = one_column(type_info(790), -1, "($1234.11)", &string_mode);
    assert_eq!(v, some(s("-1234.11")));

    // time.precision.mode=connect: Kafka Connect logical types with Avro logical types.
    let connect = CodecOptions {
        time_precision: TimePrecision::Connect,
        ..CodecOptions::default()
    };
    let (schema, v) = one_column(type_info(1082), -1, "2016-11-04", &connect);
    assert_eq!(schema, opt("{\"type\":\"int\",\"connect.version\":1,\"connect.name\":\"org.apache.kafka.connect.data.Date\",\"logicalType\":\"date\"}"));
    assert_eq!(v, some(Avro::Date(17_109)));
    let (schema, v) = one_column(type_info(1114), -1, "2016-11-04 13:51:30.123456", &connect);
    assert_eq!(schema, opt("{\"type\":\"long\",\"connect.version\":1,\"connect.name\":\"org.apache.kafka.connect.data.Timestamp\",\"logicalType\":\"timestamp-millis\"}"));
    assert_eq!(v, some(Avro::TimestampMillis(1_478_267_490_123)));
    let (schema, v) = one_column(type_info(1083), -1, "13:51:30.123456", &connect);
    assert_eq!(schema, opt("{\"type\":\"int\",\"connect.version\":1,\"connect.name\":\"org.apache.kafka.connect.data.Time\",\"logicalType\":\"time-millis\"}"));
    assert_eq!(v, some(Avro::TimeMillis(49_890_123)));
    // adaptive_time_microseconds: time(3) is MicroTime.
    let micros = CodecOptions {
        time_precision: TimePrecision::AdaptiveTimeMicroseconds,
        ..CodecOptions::default()
    };
    let (schema, v) = one_column(type_info(1083), 3, "13:51:30.123", &micros);
    assert_eq!(schema, opt(&named("long", "io.debezium.time.MicroTime")));
    assert_eq!(v, some(Avro::Long(49_890_123_000)));

    // binary.handling.mode (schemaAndValueForByteaBase64 / Hex)
    for (mode, want) in [
        (BinaryHandling::Base64, "AQID"),
        (BinaryHandling::Base64UrlSafe, "AQID"),
        (BinaryHandling::Hex, "010203"),
    ] {
        let o = CodecOptions {
            binary_handling: mode,
            ..CodecOptions::default()
        };
        let (schema, v) = one_column(type_info(17), -1, "\\x010203", &o);
        assert_eq!(
            (schema.as_str(), v),
            ("[\"null\",\"string\"]", some(s(want))),
            "{mode}"
        );
    }

    // hstore.handling.mode=map
    let map = CodecOptions {
        hstore_handling: HstoreHandling::Map,
        ..CodecOptions::default()
    };
    let hstore = user_type(60_000, "public.hstore", PgType::Hstore, None);
    let (schema, v) = one_column(hstore, -1, "\"key1\"=>\"val1\", \"key2\"=>NULL", &map);
    assert_eq!(
        schema,
        opt("{\"type\":\"map\",\"values\":[\"null\",\"string\"]}")
    );
    let Avro::Union(1, m) = v else {
        panic!("{v:?}")
    };
    let Avro::Map(m) = *m else { panic!() };
    assert_eq!(m.get("key1"), Some(&some(s("val1"))));
    assert_eq!(m.get("key2"), Some(&none()));

    // interval.handling.mode=string (schemaAndValuesForIntervalAsString)
    let iso = CodecOptions {
        interval_handling: IntervalHandling::String,
        ..CodecOptions::default()
    };
    let (schema, v) = one_column(
        type_info(1186),
        -1,
        "1 year 2 mons 3 days 04:05:06.78",
        &iso,
    );
    assert_eq!(schema, opt(&named("string", "io.debezium.time.Interval")));
    assert_eq!(v, some(s("P1Y2M3DT4H5M6.78S")));

    // include.unknown.datatypes: the text of a box, as bytes.
    let unknown = CodecOptions {
        include_unknown_datatypes: true,
        ..CodecOptions::default()
    };
    let (schema, v) = one_column(type_info(718), -1, "<(10,20),10>", &unknown);
    assert_eq!(schema, "[\"null\",\"bytes\"]");
    assert_eq!(v, some(Avro::Bytes(b"<(10,20),10>".to_vec())));
}

#[test]
fn edge_values_match_debeziums_tests() {
    let d = CodecOptions::default();
    // schemaAndValuesForDateTimeTypes
    let (_, v) = one_column(type_info(1114), -1, "-infinity", &d);
    assert_eq!(v, some(Avro::Long(-9_223_372_036_832_400_000)));
    let (_, v) = one_column(type_info(1114), -1, "4713-12-31 23:59:59.999999 BC", &d);
    assert_eq!(v, some(Avro::Long(-210_831_897_600_000_001)));
    let (_, v) = one_column(type_info(1114), -1, "294247-01-01 23:59:59.999999", &d);
    assert_eq!(v, some(Avro::Long(9_223_371_331_200_000_000 - 1)));
    let (_, v) = one_column(type_info(1114), 3, "infinity", &d);
    assert_eq!(
        v,
        some(Avro::Long(TIMESTAMP_POSITIVE_INFINITY_MICROS / 1000))
    );
    let (_, v) = one_column(type_info(1184), -1, "infinity", &d);
    assert_eq!(v, some(s("infinity")));
    let (_, v) = one_column(type_info(1184), -1, "-infinity", &d);
    assert_eq!(v, some(s("-infinity")));
    let (_, v) = one_column(type_info(1082), -1, "infinity", &d);
    assert_eq!(v, some(Avro::Int(-2_147_472_692)));
    // char(n) keeps its padding (char_array in schemasAndValuesForArrayTypes).
    let (_, v) = one_column(type_info(1014), 14, "{\"cone      \"}", &d);
    assert_eq!(v, some(Avro::Array(vec![some(s("cone      "))])));
    // numeric(10,2)[] rescales to the column scale; numeric[] elements are VariableScaleDecimal.
    let (schema, v) = one_column(type_info(1231), numeric_typmod(10, 2), "{1.2,3.4}", &d);
    assert!(schema.contains("\"precision\":10"), "{schema}");
    assert_eq!(
        v,
        some(Avro::Array(vec![
            some(Avro::Decimal(unscaled(false, "120", 2).into())),
            some(Avro::Decimal(unscaled(false, "340", 2).into())),
        ]))
    );
    // bit varying(1) is a boolean (bv1 in schemaAndValuesForBinTypes).
    let (schema, v) = one_column(type_info(1562), 1, "1", &d);
    assert_eq!(
        (schema.as_str(), v),
        ("[\"null\",\"boolean\"]", some(Avro::Boolean(true)))
    );
    // An interval of days only.
    let (_, v) = one_column(type_info(1186), -1, "-2 days", &d);
    assert_eq!(v, some(Avro::Long(interval_micros(0, -2, 0))));
    assert_eq!(interval_micros(0, -2, 0), -172_800_000_000);
    // Omitted: name[] and interval[] columns.
    for oid in [1003, 1187] {
        let rel = RelationInfo {
            oid: 3,
            schema: "s".into(),
            table: "t".into(),
            replica_identity: ReplicaIdentity::Default,
            columns: vec![col("c", type_info(oid), -1, false)],
            version: 1,
        };
        let codec = TableCodec::new(&rel, &TableSpec::from_relation(&rel), "p", &d).unwrap();
        assert!(codec
            .envelope_schema_json()
            .contains("\"fields\":[],\"connect.name\":\"p.s.t.Value\""));
    }
}

#[test]
fn message_records_decode() {
    let codec = MessageCodec::new(&CodecOptions::default());
    assert_eq!(
        codec.key_schema_json(),
        "{\"type\":\"record\",\"name\":\"MessageKey\",\"namespace\":\"io.debezium.connector.postgresql\",\"fields\":[{\"name\":\"prefix\",\"type\":[\"null\",\"string\"],\"default\":null}],\"connect.version\":1,\"connect.name\":\"io.debezium.connector.postgresql.MessageKey\"}"
    );
    let event = MessageEvent {
        prefix: "outbox".into(),
        content: bytes::Bytes::from_static(b"hello"),
        source: SourceInfo::streaming(meta(), 1_000_000, None, Lsn(99), 7),
        ts_ns: 5_000_000,
        transaction: None,
    };
    let mut buf = Vec::new();
    codec.encode_key(&event, 3, &mut buf);
    let k = decode(codec.key_schema_json(), &buf, 3);
    assert_fields(&k, &[("prefix".into(), some(s("outbox")))]);
    codec.encode_value(&event, 4, &mut buf);
    let v = decode(codec.value_schema_json(), &buf, 4);
    assert_eq!(get(&v, "op"), &s("m"));
    assert_eq!(get(&v, "ts_ms"), &some(Avro::Long(5)));
    assert_eq!(get(get(&v, "source"), "table"), &s(""));
    assert_fields(
        get(&v, "message"),
        &[
            ("prefix".into(), some(s("outbox"))),
            ("content".into(), some(Avro::Bytes(b"hello".to_vec()))),
        ],
    );
}

#[test]
fn transaction_records_decode() {
    let codec = TransactionCodec::new();
    Schema::parse_str(codec.key_schema_json()).unwrap();
    assert!(codec.value_schema_json().contains(
        "{\"name\":\"data_collections\",\"type\":[\"null\",{\"type\":\"array\",\"items\":[\"null\",{\"type\":\"record\",\"name\":\"collection\",\"namespace\":\"event\""
    ));
    let end = TransactionMetadataEvent {
        status: TransactionStatus::End,
        xid: 571,
        lsn: Lsn(53_195_832),
        ts_ms: 1_486_500_577_691,
        event_count: Some(2),
        data_collections: Some(vec![("s1.a".into(), 1), ("s2.a".into(), 1)]),
    };
    let mut buf = Vec::new();
    codec.encode_key(&end, 1, &mut buf);
    assert_fields(
        &decode(codec.key_schema_json(), &buf, 1),
        &[("id".into(), s("571:53195832"))],
    );
    codec.encode_value(&end, 2, &mut buf);
    let v = decode(codec.value_schema_json(), &buf, 2);
    let collection = |name: &str| {
        some(Avro::Record(vec![
            ("data_collection".into(), s(name)),
            ("event_count".into(), Avro::Long(1)),
        ]))
    };
    assert_fields(
        &v,
        &[
            ("status".into(), s("END")),
            ("id".into(), s("571:53195832")),
            ("event_count".into(), some(Avro::Long(2))),
            (
                "data_collections".into(),
                some(Avro::Array(vec![collection("s1.a"), collection("s2.a")])),
            ),
            ("ts_ms".into(), Avro::Long(1_486_500_577_691)),
        ],
    );
    let begin = TransactionMetadataEvent {
        status: TransactionStatus::Begin,
        event_count: None,
        data_collections: None,
        ..end
    };
    codec.encode_value(&begin, 2, &mut buf);
    let v = decode(codec.value_schema_json(), &buf, 2);
    assert_eq!(get(&v, "status"), &s("BEGIN"));
    assert_eq!(get(&v, "data_collections"), &none());
}

#[test]
fn defaults_follow_postgres_default_value_converter() {
    let rel = all_types();
    let c = |name: &str| rel.columns.iter().find(|c| c.name == name).unwrap();
    assert_eq!(
        parse_default_expression(c("id"), "nextval('all_types_id_seq'::regclass)"),
        Some(Value::Int4(0))
    );
    assert_eq!(
        parse_default_expression(c("status"), "'it''s'::text"),
        Some(Value::Text("it".into()))
    );
    assert_eq!(parse_default_expression(c("status"), "NULL::text"), None);
    assert_eq!(
        parse_default_expression(c("created"), "now()"),
        parse_text(&PgType::TimestampTz, "1970-01-01 00:00:00+00").ok()
    );
    assert_eq!(
        parse_default_expression(c("mood"), "'ok'::mood"),
        Some(Value::Enum("ok".into()))
    );
    assert_eq!(
        parse_default_expression(c("flag"), "B'1'::\"bit\""),
        Some(Value::Bool(true))
    );
    // No mapper: bytea, arrays, extension types.
    assert_eq!(parse_default_expression(c("raw"), "'\\x00'::bytea"), None);
    assert_eq!(parse_default_expression(c("attrs"), "''::hstore"), None);
}
