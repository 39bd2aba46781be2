//! PostGIS geometry and geography as Debezium maps them: `{wkb, srid}` with the EWKB
//! kept whole and the SRID read from its flag; geometry optional even when NOT NULL.

use super::*;

fn postgis_relation() -> Arc<RelationInfo> {
    keyed_relation(
        42,
        "places",
        vec![
            extension_column("geometry", "geometry", 90_001, true),
            extension_column("geography", "geography", 90_002, false),
        ],
    )
}

#[test]
fn geometry_keeps_the_ewkb_and_reads_the_srid_from_its_flag() {
    let relation = postgis_relation();
    let spec = TableSpec::from_relation(&relation);
    let codec = TableCodec::new(&relation, &spec, "dbserver1", &CodecOptions::default()).unwrap();
    let json = codec.envelope_schema_json();
    assert!(
        json.contains("\"name\":\"Geometry\",\"namespace\":\"io.debezium.data.geometry\""),
        "{json}"
    );
    assert!(
        json.contains("\"connect.name\":\"io.debezium.data.geometry.Geography\""),
        "{json}"
    );
    let row = codec.column_schema("geometry").unwrap();
    assert!(
        row.optional,
        "Debezium's Geometry schema is optional even for NOT NULL"
    );
    // POINT(1 2) with SRID 4326 (EWKB, little-endian, SRID flag set).
    let with_srid = "0101000020E6100000000000000000F03F0000000000000040";
    // POINT(1 2) without SRID.
    let plain = "0101000000000000000000F03F0000000000000040";
    let event = ChangeEvent {
        op: Op::Create,
        relation: relation.clone(),
        before: None,
        after: Some(vec![
            Value::Int4(1),
            Value::Unknown(with_srid.into()),
            Value::Unknown(plain.into()),
        ]),
        source: SourceInfo::streaming(meta(), 0, None, Lsn(1), 7),
        ts_ns: 0,
        transaction: None,
    };
    let mut out = Vec::new();
    codec.encode_envelope(&event, 1, &mut out).unwrap();
    let value = decode(json, &out, 1);
    let after = unwrap_union(get(&value, "after"));
    let geometry = unwrap_union(get(after, "geometry"));
    let hex = |s: &str| {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect::<Vec<u8>>()
    };
    assert_eq!(
        get(geometry, "wkb"),
        &Avro::Bytes(hex(with_srid)),
        "the EWKB as received"
    );
    assert_eq!(unwrap_union(get(geometry, "srid")), &Avro::Int(4326));
    let geography = unwrap_union(get(after, "geography"));
    assert_eq!(get(geography, "wkb"), &Avro::Bytes(hex(plain)));
    assert_eq!(
        get(geography, "srid"),
        &Avro::Union(0, Box::new(Avro::Null))
    );
}
