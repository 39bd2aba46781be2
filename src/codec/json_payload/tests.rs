use apache_avro::types::Value as Avro;

use super::*;

fn decode(expanded: &Expanded) -> Avro {
    let schema = apache_avro::Schema::parse_str(&expanded.schema.to_avro_json()).unwrap();
    let mut datum = expanded.datum.as_slice();
    let value = apache_avro::from_avro_datum(&schema, &mut datum, None).unwrap();
    assert!(datum.is_empty(), "{} bytes left", datum.len());
    match value {
        Avro::Union(1, inner) => *inner,
        other => panic!("not the struct branch: {other:?}"),
    }
}

fn some(v: Avro) -> Avro {
    Avro::Union(1, Box::new(v))
}

fn fields(v: &Avro) -> Vec<(String, Avro)> {
    match v {
        Avro::Record(fields) => fields.clone(),
        other => panic!("not a record: {other:?}"),
    }
}

#[test]
fn an_object_becomes_a_struct_named_after_the_column_with_members_in_document_order() {
    let text = r#"{"id": 5, "big": 5000000000, "price": 1.5, "name": "x", "ok": true,
        "none": null, "tags": ["a", "b"], "addr": {"city": "P", "zip": null}, "empty": []}"#;
    let expanded = expand(text, "payload", NullBehavior::Ignore).unwrap();
    let json = expanded.schema.to_avro_json();
    assert!(
        json.starts_with("[\"null\",{\"type\":\"record\",\"name\":\"payload\",\"fields\":["),
        "{json}"
    );
    assert!(
        json.contains(
            "{\"name\":\"addr\",\"type\":[\"null\",{\"type\":\"record\",\"name\":\"addr\",\
             \"namespace\":\"payload\",\"fields\":[{\"name\":\"city\",\"type\":[\"null\",\"string\"],\
             \"default\":null}],\"connect.name\":\"payload.addr\"}],\"default\":null}"
        ),
        "{json}"
    );
    let value = decode(&expanded);
    let names: Vec<String> = fields(&value).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        ["id", "big", "price", "name", "ok", "tags", "addr"],
        "nulls and empty arrays are left out"
    );
    assert_eq!(
        fields(&value)[..6],
        [
            ("id".into(), some(Avro::Int(5))),
            ("big".into(), some(Avro::Long(5_000_000_000))),
            ("price".into(), some(Avro::Double(1.5))),
            ("name".into(), some(Avro::String("x".into()))),
            ("ok".into(), some(Avro::Boolean(true))),
            (
                "tags".into(),
                some(Avro::Array(vec![
                    some(Avro::String("a".into())),
                    some(Avro::String("b".into()))
                ]))
            ),
        ]
    );
}

#[test]
fn optional_bytes_keeps_null_members_as_null_bytes_fields() {
    let expanded = expand(
        r#"{"a": null, "b": [null]}"#,
        "body",
        NullBehavior::OptionalBytes,
    )
    .unwrap();
    assert_eq!(expanded.schema.name.as_deref(), Some("body"));
    assert_eq!(
        fields(&decode(&expanded)),
        [
            ("a".into(), Avro::Union(0, Box::new(Avro::Null))),
            (
                "b".into(),
                some(Avro::Array(vec![Avro::Union(0, Box::new(Avro::Null))]))
            ),
        ]
    );
}

#[test]
fn an_array_of_objects_has_the_union_of_their_members() {
    let text = r#"{"items": [{"sku": "a", "note": null}, {"qty": 2, "sku": "b", "note": "n"}]}"#;
    let expanded = expand(text, "payload", NullBehavior::Ignore).unwrap();
    let json = expanded.schema.to_avro_json();
    assert!(
        json.contains("\"name\":\"items\",\"namespace\":\"payload\""),
        "{json}"
    );
    let items = match &fields(&decode(&expanded))[0].1 {
        Avro::Union(1, items) => match items.as_ref() {
            Avro::Array(items) => items.clone(),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    };
    let second = match &items[1] {
        Avro::Union(1, record) => fields(record),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        second,
        [
            ("sku".into(), some(Avro::String("b".into()))),
            ("qty".into(), some(Avro::Int(2))),
            ("note".into(), some(Avro::String("n".into()))),
        ],
        "the first element's members, then the new ones"
    );
}

#[test]
fn a_repeated_member_keeps_its_first_place_and_last_value() {
    let expanded = expand(
        r#"{"a": 1, "b": 2, "a": 3}"#,
        "payload",
        NullBehavior::Ignore,
    )
    .unwrap();
    assert_eq!(
        fields(&decode(&expanded)),
        [
            ("a".into(), some(Avro::Int(3))),
            ("b".into(), some(Avro::Int(2)))
        ]
    );
}

#[test]
fn documents_without_one_type_per_member_are_not_expanded() {
    for (text, why) in [
        ("[1, 2]", "the payload is not a JSON object"),
        (" {\"a\": 1}", "the payload is not a JSON object"),
        ("\"text\"", "the payload is not a JSON object"),
        ("{\"a\": ", "the payload is not valid JSON"),
        ("{\"a\": [1, \"x\"]}", "an array mixes types"),
        ("{\"a\": [1, 5000000000]}", "an array mixes types"),
        ("{\"a\": [1, 2.5]}", "an array mixes types"),
        ("{\"a\": [null]}", "an array holds only nulls"),
        (
            "{\"a\": [{\"x\": 1}, {\"x\": \"s\"}]}",
            "array elements disagree on a member's type",
        ),
        (
            "{\"a\": [[{\"x\": 1}]]}",
            "an array of arrays holds objects, which have no name",
        ),
        (
            "{\"a\": 18446744073709551615}",
            "an integer is beyond 64 bits",
        ),
    ] {
        assert_eq!(
            expand(text, "payload", NullBehavior::Ignore),
            Err(NotExpanded(why)),
            "{text}"
        );
    }
}
