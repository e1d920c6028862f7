use super::Avro;
use crate::contract::mapper::ColumnType;
use crate::registry::codec::{CodecError, Compiled, SchemaType};
use serde_json::json;

const ORDER: &str = r#"{"type": "record", "name": "Order", "fields": [
    {"name": "id", "type": "long"},
    {"name": "favoriteLanguage", "type": ["null", "string"], "default": null},
    {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 6, "scale": 2}},
    {"name": "lines", "type": {"type": "array", "items": {"type": "record", "name": "Line", "fields": [
        {"name": "sku", "type": "string"}, {"name": "count", "type": "int"}]}}},
    {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B"]}},
    {"name": "either", "type": ["int", "string"]}
]}"#;

fn order() -> Compiled {
    Compiled::parse(SchemaType::Avro, ORDER, &[]).unwrap()
}

fn value() -> serde_json::Value {
    json!({"id": 1, "favoriteLanguage": "Rust", "price": "12.50", "lines": [{"sku": "a", "count": 2}],
        "at": "2026-12-03T10:00:00.123Z", "kind": "B", "either": "x"})
}

#[test]
fn a_value_round_trips_and_its_bytes_are_avro() {
    let body = order().encode(&value()).unwrap();
    // id 1 → 02; union branch 1 → 02, "Rust"; 1250 = 0x04e2 in 2 bytes.
    assert_eq!(&body[..9], [0x02, 0x02, 0x08, b'R', b'u', b's', b't', 0x04, 0x04]);
    assert_eq!(order().decode(&body).unwrap(), value());
}

#[test]
fn a_missing_nullable_field_is_null_and_numbers_are_taken_for_decimals() {
    let mut v = value();
    v.as_object_mut().unwrap().remove("favoriteLanguage");
    v["price"] = json!(3.5);
    let decoded = order().decode(&order().encode(&v).unwrap()).unwrap();
    assert_eq!(decoded["favoriteLanguage"], json!(null));
    assert_eq!(decoded["price"], json!("3.50"));
}

#[test]
fn a_truncated_body_names_the_field_it_ends_in() {
    let body = order().encode(&value()).unwrap();
    let e = order().decode(&body[..body.len() - 6]).unwrap_err();
    let CodecError::Decode { path, reason, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(path, "$.at", "{e}");
    assert!(reason.contains("truncated"), "{e}");
    let e = order().decode(&[]).unwrap_err().to_string();
    assert!(e.contains("$.id") && e.contains("truncated"), "{e}");
}

#[test]
fn an_unknown_union_branch_or_enum_symbol_is_refused() {
    let s = Avro::parse(r#"["null", "string"]"#, &[]).unwrap();
    let e = s.decode(&[0x04]).unwrap_err();
    assert!(
        e.reason().contains("2 branches") && e.reason().contains("branch 2"),
        "{}",
        e.reason()
    );
    let s = Avro::parse(r#"{"type": "enum", "name": "E", "symbols": ["A"]}"#, &[]).unwrap();
    assert!(s.decode(&[0x02]).unwrap_err().reason().contains("symbol 1"));
    let s = Avro::parse(r#""boolean""#, &[]).unwrap();
    assert!(s.decode(&[2]).unwrap_err().reason().contains("not 0 or 1"));
    let s = Avro::parse(r#""string""#, &[]).unwrap();
    assert!(s.decode(&[4, 0xff, 0xfe]).unwrap_err().reason().contains("UTF-8"));
    assert!(s.decode(&[2, b'a', 0]).unwrap_err().reason().contains("left after"));
}

#[test]
fn encoding_errors_name_the_field_and_what_was_expected() {
    let fail = |v: serde_json::Value| order().encode(&v).unwrap_err().to_string();
    let mut v = value();
    v["lines"][0]["count"] = json!("two");
    let e = fail(v);
    assert!(
        e.contains("$.lines[0].count") && e.contains("integer of 32 bits"),
        "{e}"
    );
    let mut v = value();
    v["kind"] = json!("C");
    assert!(fail(v).contains("\"C\" is not a symbol of enum Kind (A, B)"));
    let mut v = value();
    v.as_object_mut().unwrap().remove("id");
    assert!(fail(v).contains("$.id"));
    let mut v = value();
    v["price"] = json!("1.234");
    assert!(fail(v).contains("at most 2 fraction digits"));
    let mut v = value();
    v["price"] = json!("12345.00");
    assert!(fail(v).contains("6 digits"));
    let mut v = value();
    v["either"] = json!(true);
    let e = fail(v);
    assert!(e.contains("no branch of the union [int, string]"), "{e}");
    let mut v = value();
    v["extra"] = json!(1);
    assert!(fail(v).contains("$.extra"));
}

#[test]
fn a_union_branch_may_be_named_as_in_avro_json() {
    let s = Avro::parse(r#"["null", "int", "long"]"#, &[]).unwrap();
    let mut out = Vec::new();
    s.encode(&json!({"long": 5}), &mut out).unwrap();
    assert_eq!(out, [4, 10]);
}

#[test]
fn columns_map_each_field_to_a_postgres_type() {
    let columns = order().columns().unwrap();
    let summary: Vec<(&str, &str, ColumnType, bool)> = columns
        .iter()
        .map(|c| (c.name.as_str(), c.field.as_str(), c.kind, c.nullable))
        .collect();
    assert_eq!(
        summary,
        [
            ("id", "id", ColumnType::Integer, false),
            ("favorite_language", "favoriteLanguage", ColumnType::Text, true),
            ("price", "price", ColumnType::Numeric, false),
            ("lines", "lines", ColumnType::Json, false),
            ("at", "at", ColumnType::Timestamp, false),
            ("kind", "kind", ColumnType::Text, false),
            ("either", "either", ColumnType::Json, false),
        ]
    );
    let e = Compiled::parse(SchemaType::Avro, r#""string""#, &[])
        .unwrap()
        .columns()
        .unwrap_err();
    assert!(e.to_string().contains("not a record"));
}

#[test]
fn decimals_wider_than_a_long_keep_every_digit() {
    let s = Avro::parse(
        r#"{"type": "fixed", "name": "D", "size": 16, "logicalType": "decimal", "precision": 38, "scale": 3}"#,
        &[],
    )
    .unwrap();
    for text in ["12345678901234567890123456789012345.678", "-0.001", "0.000"] {
        let mut out = Vec::new();
        s.encode(&json!(text), &mut out).unwrap();
        assert_eq!(out.len(), 16);
        assert_eq!(s.decode(&out).unwrap(), json!(text));
    }
}

#[test]
fn a_huge_block_count_or_deep_nesting_is_refused_not_followed() {
    let nulls = Avro::parse(r#"{"type": "array", "items": "null"}"#, &[]).unwrap();
    // Count 2^62 of zero-byte items: refused at once, no allocation.
    let mut body = Vec::new();
    crate::registry::varint::write_zigzag(1 << 62, &mut body);
    assert!(nulls.decode(&body).unwrap_err().reason().contains("claims"));
    // A 1000-deep linked list in 2000 bytes.
    let list = Avro::parse(
        r#"{"type": "record", "name": "L", "fields": [{"name": "next", "type": ["null", "L"]}]}"#,
        &[],
    )
    .unwrap();
    let mut body = vec![2u8; 1000];
    body.push(0);
    assert!(list.decode(&body).unwrap_err().reason().contains("deeper than"));
    let mut body = vec![2u8; 50];
    body.push(0);
    assert!(list.decode(&body).is_ok());
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    const SCHEMAS: [&str; 3] = [
        ORDER,
        r#"{"type": "record", "name": "L", "fields": [{"name": "v", "type": {"type": "map", "values": "null"}},
            {"name": "next", "type": ["null", "L"]}]}"#,
        r#"{"type": "array", "items": ["null", "double", {"type": "fixed", "name": "F", "size": 16, "logicalType": "decimal", "precision": 30, "scale": 5},
            {"type": "long", "logicalType": "timestamp-nanos"}, {"type": "int", "logicalType": "date"},
            {"type": "long", "logicalType": "time-micros"}, {"type": "fixed", "name": "D", "size": 12, "logicalType": "duration"}]}"#,
    ];

    proptest! {
        /// Whatever the bytes, a value or an error, never a panic.
        #[test]
        fn any_bytes_decode_to_a_value_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..200), which in 0..3usize) {
            let compiled = Compiled::parse(SchemaType::Avro, SCHEMAS[which], &[]).unwrap();
            // Encoding may refuse what decoding reads (a decimal past its
            // precision); what it writes must decode to the same value.
            if let Ok(value) = compiled.decode(&bytes)
                && let Ok(again) = compiled.encode(&value)
            {
                prop_assert_eq!(compiled.decode(&again).expect("a re-encoded value decodes"), value);
            }
        }

        #[test]
        fn any_bytes_give_protobuf_and_json_schema_a_value_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let proto = Compiled::parse(
                SchemaType::Protobuf,
                "syntax = \"proto3\"; message M { int64 a = 1; string b = 2; repeated M c = 3; map<string, M> d = 4; }",
                &[],
            )
            .unwrap();
            let _ = proto.decode(&bytes);
            let json = Compiled::parse(SchemaType::Json, r##"{"type": "object", "additionalProperties": {"$ref": "#"}}"##, &[]).unwrap();
            let _ = json.decode(&bytes);
        }
    }
}
