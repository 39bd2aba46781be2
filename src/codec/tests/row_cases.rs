//! Rows Debezium treats specially: unchanged TOAST values, key-only old rows with NOT
//! NULL columns, NaN in decimal columns.

use super::*;

#[test]
fn unchanged_toast_gets_debeziums_placeholders() {
    let (rel, codec) = codec(&CodecOptions::default());
    let mut row = insert_row(&rel);
    let idx = |name: &str| rel.columns.iter().position(|c| c.name == name).unwrap();
    for name in ["body", "tags", "attrs", "raw", "ints", "amount", "doc"] {
        row[idx(name)] = Value::UnchangedToast;
    }
    let event = ChangeEvent {
        op: Op::Update,
        relation: rel.clone(),
        before: None,
        after: Some(row),
        source: SourceInfo::streaming(meta(), 0, None, Lsn(1), 1),
        ts_ns: 0,
        transaction: None,
    };
    let mut buf = Vec::new();
    let stats = codec.encode_envelope(&event, 1, &mut buf).unwrap();
    // numeric has no placeholder in Debezium: the value becomes null (and is counted).
    assert_eq!(stats.nulled_values, 1);
    let v = decode(codec.envelope_schema_json(), &buf, 1);
    let after = unwrap_union(get(&v, "after"));
    assert_eq!(get(after, "body"), &some(s(TOAST)));
    assert_eq!(get(after, "doc"), &some(s(TOAST)));
    assert_eq!(get(after, "tags"), &some(Avro::Array(vec![some(s(TOAST))])));
    assert_eq!(
        get(after, "attrs"),
        &some(s(&format!("{{\"{TOAST}\":\"{TOAST}\"}}")))
    );
    assert_eq!(
        get(after, "raw"),
        &some(Avro::Bytes(TOAST.as_bytes().to_vec()))
    );
    // int4[]: the placeholder's bytes as numbers (UnchangedToastedPlaceholder).
    let ints: Vec<Avro> = TOAST
        .bytes()
        .map(|b| some(Avro::Int(i32::from(b))))
        .collect();
    assert_eq!(get(after, "ints"), &some(Avro::Array(ints)));
    assert_eq!(get(after, "amount"), &none());
    assert_eq!(get(&v, "op"), &s("u"));
    assert_eq!(get(&v, "transaction"), &none());
}

#[test]
fn key_only_old_row_fills_not_null_columns_like_debezium() {
    let (rel, codec) = codec(&CodecOptions::default());
    let mut before = vec![Value::Null; rel.columns.len()];
    before[0] = Value::Int4(1);
    let event = ChangeEvent {
        op: Op::Delete,
        relation: rel.clone(),
        before: Some(before),
        after: None,
        source: SourceInfo::streaming(meta(), 0, None, Lsn(2), 2),
        ts_ns: 0,
        transaction: None,
    };
    let mut buf = Vec::new();
    codec.encode_envelope(&event, 1, &mut buf).unwrap();
    let v = decode(codec.envelope_schema_json(), &buf, 1);
    let before = unwrap_union(get(&v, "before"));
    assert_eq!(get(before, "id"), &Avro::Int(1));
    // NOT NULL columns without a value: their default (convertValue).
    assert_eq!(get(before, "small"), &Avro::Int(7));
    assert_eq!(get(before, "status"), &s("new"));
    // Nullable ones stay null, even with a default (walcast does not substitute).
    assert_eq!(get(before, "note"), &Avro::Union(1, Box::new(Avro::Null)));
    assert_eq!(get(before, "body"), &none());
    assert_eq!(get(&v, "after"), &none());
    assert_eq!(get(&v, "op"), &s("d"));
}

#[test]
fn nan_in_a_not_null_decimal_is_an_error_and_nulls_an_optional_one() {
    let rel = Arc::new(RelationInfo {
        oid: 1,
        schema: "public".into(),
        table: "n".into(),
        replica_identity: ReplicaIdentity::Default,
        columns: vec![
            col("a", type_info(1700), numeric_typmod(5, 2), true),
            col("b", type_info(1700), -1, false),
        ],
        version: 1,
    });
    let spec = TableSpec::from_relation(&rel);
    let codec = TableCodec::new(&rel, &spec, "p", &CodecOptions::default()).unwrap();
    let nan = parse_text(&PgType::Numeric, "NaN").unwrap();
    let event = ChangeEvent {
        op: Op::Create,
        relation: rel.clone(),
        before: None,
        after: Some(vec![
            Value::Numeric(crate::model::value::Numeric::NaN),
            nan.clone(),
        ]),
        source: SourceInfo::streaming(meta(), 0, None, Lsn(3), 3),
        ts_ns: 0,
        transaction: None,
    };
    let mut buf = Vec::new();
    let err = codec.encode_envelope(&event, 1, &mut buf).unwrap_err();
    assert!(
        matches!(err, EncodeError::Unconvertible { ref column, .. } if column == "a"),
        "{err}"
    );
    assert!(err.to_string().contains("decimal.handling.mode"), "{err}");

    // String mode names the special values as Debezium does.
    let opts = CodecOptions {
        decimal_handling: DecimalHandling::String,
        ..CodecOptions::default()
    };
    let codec = TableCodec::new(&rel, &spec, "p", &opts).unwrap();
    let stats = codec.encode_envelope(&event, 1, &mut buf).unwrap();
    assert_eq!(stats.nulled_values, 0);
    let v = decode(codec.envelope_schema_json(), &buf, 1);
    let after = unwrap_union(get(&v, "after"));
    assert_eq!(get(after, "a"), &s("NAN"));
    assert_eq!(get(after, "b"), &some(s("NAN")));
}
