//! pgvector's types as Debezium maps them, through the whole codec: the Avro schema
//! Confluent's AvroData registers for Debezium's Connect schemas (a sparse vector's
//! int16-keyed map as an array of `io.confluent.connect.avro.MapEntry`), values decoded
//! back with apache-avro, the JSON forms, and unreadable text nulled.

use super::*;
use crate::codec::json::JsonTableCodec;

fn vector_relation() -> Arc<RelationInfo> {
    keyed_relation(
        43,
        "embeddings",
        vec![
            extension_column("vector_col", "vector", 91_001, true),
            extension_column("halfvec_col", "halfvec", 91_002, false),
            extension_column("sparsevec_col", "sparsevec", 91_003, false),
        ],
    )
}

fn event(relation: &Arc<RelationInfo>, row: [&str; 3]) -> ChangeEvent {
    ChangeEvent {
        op: Op::Create,
        relation: relation.clone(),
        before: None,
        after: Some(vec![
            Value::Int4(1),
            Value::Unknown(row[0].into()),
            Value::Unknown(row[1].into()),
            Value::Unknown(row[2].into()),
        ]),
        source: SourceInfo::streaming(meta(), 0, None, Lsn(1), 7),
        ts_ns: 0,
        transaction: None,
    }
}

#[test]
fn vectors_register_debeziums_schemas_and_decode_to_their_values() {
    let relation = vector_relation();
    let spec = TableSpec::from_relation(&relation);
    let codec = TableCodec::new(&relation, &spec, "dbserver1", &CodecOptions::default()).unwrap();
    let json = codec.envelope_schema_json();
    for fragment in [
        "{\"name\":\"vector_col\",\"type\":{\"type\":\"array\",\"items\":\"double\",\
         \"connect.version\":1,\"connect.name\":\"io.debezium.data.DoubleVector\"}}",
        "{\"name\":\"halfvec_col\",\"type\":[\"null\",{\"type\":\"array\",\"items\":\"float\",\
         \"connect.version\":1,\"connect.name\":\"io.debezium.data.FloatVector\"}],\"default\":null}",
        "{\"type\":\"record\",\"name\":\"SparseDoubleVector\",\"namespace\":\"io.debezium.data\",\
         \"fields\":[{\"name\":\"dimensions\",\"type\":{\"type\":\"int\",\"connect.type\":\"int16\"}},\
         {\"name\":\"vector\",\"type\":{\"type\":\"array\",\"items\":{\"type\":\"record\",\
         \"name\":\"MapEntry\",\"namespace\":\"io.confluent.connect.avro\",\"fields\":[\
         {\"name\":\"key\",\"type\":{\"type\":\"int\",\"connect.type\":\"int16\"}},\
         {\"name\":\"value\",\"type\":\"double\"}]}}}],\"connect.doc\":\"Sparse double vector\",\
         \"connect.version\":1,\"connect.name\":\"io.debezium.data.SparseDoubleVector\"}",
    ] {
        assert!(json.contains(fragment), "{fragment}\nnot in\n{json}");
    }

    let mut out = Vec::new();
    let row = [
        "[1,2.5,-3e-07]",
        "[1.5,2,0.099975586]",
        "{33:2,1:1.5,9:-0.25}/40",
    ];
    codec
        .encode_envelope(&event(&relation, row), 1, &mut out)
        .unwrap();
    let value = decode(json, &out, 1);
    let after = unwrap_union(get(&value, "after"));
    assert_eq!(
        get(after, "vector_col"),
        &Avro::Array(vec![
            Avro::Double(1.0),
            Avro::Double(2.5),
            Avro::Double(-3e-7)
        ])
    );
    assert_eq!(
        unwrap_union(get(after, "halfvec_col")),
        &Avro::Array(vec![
            Avro::Float(1.5),
            Avro::Float(2.0),
            Avro::Float(0.099_975_586)
        ])
    );
    let sparse = unwrap_union(get(after, "sparsevec_col"));
    assert_eq!(get(sparse, "dimensions"), &Avro::Int(40));
    let entry = |k: i32, v: f64| {
        Avro::Record(vec![
            ("key".into(), Avro::Int(k)),
            ("value".into(), Avro::Double(v)),
        ])
    };
    // Java's HashMap order at capacity 16: buckets 1 (33 then 1, as inserted), 9.
    assert_eq!(
        get(sparse, "vector"),
        &Avro::Array(vec![entry(33, 2.0), entry(1, 1.5), entry(9, -0.25)])
    );
}

#[test]
fn vectors_in_json_are_arrays_and_a_sparse_map_is_an_array_of_pairs() {
    let relation = vector_relation();
    let spec = TableSpec::from_relation(&relation);
    let codec = TableCodec::new(&relation, &spec, "dbserver1", &CodecOptions::default()).unwrap();
    let json = JsonTableCodec::new(&codec, true);
    let mut out = Vec::new();
    let row = ["[1,2]", "[0.5]", "{3:2,1:1.5}/5"];
    json.encode_envelope(&codec, &event(&relation, row), &mut out)
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    for fragment in [
        "\"vector_col\":[1.0,2.0]",
        "\"halfvec_col\":[0.5]",
        "\"sparsevec_col\":{\"dimensions\":5,\"vector\":[[1,1.5],[3,2.0]]}",
        "{\"type\":\"map\",\"keys\":{\"type\":\"int16\",\"optional\":false},\
         \"values\":{\"type\":\"double\",\"optional\":false},\"optional\":false,\"field\":\"vector\"}",
        "\"optional\":false,\"name\":\"io.debezium.data.DoubleVector\",\"version\":1,\
         \"field\":\"vector_col\"",
    ] {
        assert!(text.contains(fragment), "{fragment}\nnot in\n{text}");
    }
}

#[test]
fn unreadable_vector_text_is_null_in_a_nullable_column_and_an_error_in_a_not_null_one() {
    let relation = vector_relation();
    let spec = TableSpec::from_relation(&relation);
    let codec = TableCodec::new(&relation, &spec, "dbserver1", &CodecOptions::default()).unwrap();
    let json = codec.envelope_schema_json();
    let mut out = Vec::new();
    // A sparse index beyond int16, which Debezium's Short.parseShort refuses too.
    let row = ["[1]", "[1]", "{40000:1}/50000"];
    let stats = codec
        .encode_envelope(&event(&relation, row), 1, &mut out)
        .unwrap();
    assert_eq!(stats.nulled_values, 1);
    let value = decode(json, &out, 1);
    let after = unwrap_union(get(&value, "after"));
    assert_eq!(
        get(after, "sparsevec_col"),
        &Avro::Union(0, Box::new(Avro::Null))
    );

    let err = codec
        .encode_envelope(&event(&relation, ["[]", "[1]", "{}/1"]), 1, &mut out)
        .unwrap_err();
    assert!(
        matches!(err, EncodeError::Unconvertible { ref column, .. } if column == "vector_col"),
        "{err:?}"
    );
}
