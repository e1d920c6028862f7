//! The binary `COPY` encoder ([`CopyRows`]) against the format PostgreSQL
//! documents: the header, every value type of contract 0.1, NULLs, several
//! rows and the trailer. Decoded here, without a server. (The types of
//! contract 0.2 are in `copy_tests`.)

use super::{CopyRows, binary};
use crate::contract::mapper::{Column, ColumnType, Value};

fn column(name: &str, kind: ColumnType) -> Column {
    Column {
        name: name.into(),
        kind,
        nullable: true,
    }
}

/// A decoded `COPY ... (FORMAT binary)` stream: its rows, each a list of
/// fields, `None` for NULL. Fails on anything the format does not allow.
fn decode(bytes: &[u8]) -> Vec<Vec<Option<Vec<u8>>>> {
    // Signature, then flags (no OIDs) and header extension length, both 0.
    assert_eq!(&bytes[..11], b"PGCOPY\n\xff\r\n\0", "signature");
    assert_eq!(&bytes[11..15], &0i32.to_be_bytes(), "flags");
    assert_eq!(&bytes[15..19], &0i32.to_be_bytes(), "header extension");
    let mut at = 19;
    let mut rows = Vec::new();
    loop {
        let count = i16::from_be_bytes([bytes[at], bytes[at + 1]]);
        at += 2;
        if count == -1 {
            assert_eq!(at, bytes.len(), "nothing after the trailer");
            return rows;
        }
        let mut row = Vec::new();
        for _ in 0..count {
            let len = i32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
            at += 4;
            if len == -1 {
                row.push(None);
            } else {
                let len = usize::try_from(len).expect("a length is -1 or positive");
                row.push(Some(bytes[at..at + len].to_vec()));
                at += len;
            }
        }
        rows.push(row);
    }
}

/// The one field of a one-column, one-row COPY of `value` in a `kind` column.
fn one(kind: ColumnType, value: Value) -> Option<Vec<u8>> {
    let mut rows = CopyRows::with_capacity(&[column("c", kind)], 0);
    rows.push(vec![value]);
    let mut decoded = decode(&rows.finish());
    assert_eq!(decoded.len(), 1);
    let mut row = decoded.remove(0);
    assert_eq!(row.len(), 1);
    row.remove(0)
}

#[test]
fn no_rows_is_the_header_then_the_trailer() {
    let rows = CopyRows::with_capacity(&[column("a", ColumnType::Text)], 1024);
    assert!(rows.is_empty());
    assert_eq!(rows.len(), 0);
    let bytes = rows.finish();
    assert_eq!(bytes, b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0\xff\xff");
    assert!(decode(&bytes).is_empty());
}

#[test]
fn one_integer_row_is_exactly_the_documented_bytes() {
    let mut rows = CopyRows::with_capacity(&[column("n", ColumnType::Integer)], 0);
    rows.push(vec![Value::Integer(1)]);
    let mut expected = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0".to_vec();
    expected.extend_from_slice(&[0, 1]); // one field
    expected.extend_from_slice(&[0, 0, 0, 8]); // of 8 bytes
    expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]); // bigint 1
    expected.extend_from_slice(&[0xff, 0xff]); // trailer
    assert_eq!(rows.finish(), expected);
}

#[test]
fn each_value_type_has_its_binary_form() {
    // text: the UTF-8 bytes.
    assert_eq!(
        one(ColumnType::Text, Value::Text("héllo".into())),
        Some("héllo".as_bytes().to_vec())
    );
    assert_eq!(
        one(ColumnType::Text, Value::Text(String::new())),
        Some(Vec::new()),
        "empty is not NULL"
    );
    // bigint: 8 bytes, big-endian.
    assert_eq!(
        one(ColumnType::Integer, Value::Integer(-2)),
        Some((-2i64).to_be_bytes().to_vec())
    );
    assert_eq!(
        one(ColumnType::Integer, Value::Integer(i64::MAX)),
        Some(i64::MAX.to_be_bytes().to_vec())
    );
    // double precision: IEEE 754, big-endian; an integer is widened.
    assert_eq!(
        one(ColumnType::Float, Value::Float(1.5)),
        Some(1.5f64.to_be_bytes().to_vec())
    );
    assert_eq!(
        one(ColumnType::Float, Value::Integer(3)),
        Some(3.0f64.to_be_bytes().to_vec())
    );
    // boolean: one byte.
    assert_eq!(one(ColumnType::Boolean, Value::Boolean(true)), Some(vec![1]));
    assert_eq!(one(ColumnType::Boolean, Value::Boolean(false)), Some(vec![0]));
    // jsonb: version 1, then the text.
    assert_eq!(
        one(ColumnType::Json, Value::Json("{\"a\":1}".into())),
        Some(b"\x01{\"a\":1}".to_vec())
    );
}

#[test]
fn timestamps_count_microseconds_from_2000() {
    let micros = |us: i64| Some(us.to_be_bytes().to_vec());
    // 2000-01-01T00:00:00Z is PostgreSQL's zero.
    assert_eq!(
        one(ColumnType::Timestamp, Value::Timestamp(946_684_800_000_000)),
        micros(0)
    );
    // The Unix epoch is 30 years (10,957 days) before it.
    assert_eq!(
        one(ColumnType::Timestamp, Value::Timestamp(0)),
        micros(-10_957 * 86_400 * 1_000_000)
    );
    assert_eq!(
        one(ColumnType::Timestamp, Value::Timestamp(1_700_000_000_123_456)),
        micros(1_700_000_000_123_456 - binary::PG_EPOCH_MICROS)
    );
    // An integer in a timestamp column is taken as Unix microseconds too.
    assert_eq!(
        one(ColumnType::Timestamp, Value::Integer(0)),
        one(ColumnType::Timestamp, Value::Timestamp(0))
    );
}

#[test]
fn nulls_are_length_minus_one_in_any_column() {
    for kind in [
        ColumnType::Text,
        ColumnType::Integer,
        ColumnType::Float,
        ColumnType::Boolean,
        ColumnType::Timestamp,
        ColumnType::Json,
    ] {
        assert_eq!(one(kind, Value::Null), None, "{kind:?}");
    }
}

#[test]
fn rows_follow_each_other_with_their_field_counts() {
    let columns = [
        column("name", ColumnType::Text),
        column("n", ColumnType::Integer),
        column("ok", ColumnType::Boolean),
    ];
    let mut rows = CopyRows::with_capacity(&columns, 0);
    rows.push(vec![Value::Text("a".into()), Value::Integer(1), Value::Boolean(true)]);
    rows.push(vec![Value::Null, Value::Integer(2), Value::Null]);
    rows.push(vec![Value::Text("c".into()), Value::Null, Value::Boolean(false)]);
    assert_eq!(rows.len(), 3);
    let decoded = decode(&rows.finish());
    assert_eq!(
        decoded,
        [
            vec![Some(b"a".to_vec()), Some(1i64.to_be_bytes().to_vec()), Some(vec![1])],
            vec![None, Some(2i64.to_be_bytes().to_vec()), None],
            vec![Some(b"c".to_vec()), None, Some(vec![0])],
        ]
    );
}

mod properties {
    //! Any values a mapper returns, in any columns, encode to a stream the
    //! format allows, one field per column; the checks of text PostgreSQL
    //! would refuse (`numeric`, `uuid`, `jsonb`) answer for any text. Never a
    //! panic. (The round trip through PostgreSQL is the integration test
    //! `postgres_binary_copy_round_trips_random_values`.)

    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::Config;

    fn config() -> Config {
        Config {
            failure_persistence: None,
            ..Config::default()
        }
    }

    const KINDS: [ColumnType; 10] = [
        ColumnType::Text,
        ColumnType::Integer,
        ColumnType::Float,
        ColumnType::Boolean,
        ColumnType::Timestamp,
        ColumnType::Json,
        ColumnType::Uuid,
        ColumnType::Numeric,
        ColumnType::Bytea,
        ColumnType::Date,
    ];

    /// Text shaped like a number: signs, digits, points, exponents, spaces
    /// and the words PostgreSQL takes, in any order.
    fn number_text() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop::sample::select(vec![
                "-",
                "+",
                ".",
                "e",
                "E",
                "e-",
                "e+",
                "0",
                "1",
                "9",
                "00",
                "12345",
                " ",
                "\t",
                "NaN",
                "inf",
                "Infinity",
                "é",
                "٣",
                "_",
                "99999999999999999999",
                "131071",
                "16383",
                "140001",
            ]),
            0..8,
        )
        .prop_map(|parts| parts.concat())
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<String>().prop_map(Value::Text),
            any::<i64>().prop_map(Value::Integer),
            any::<f64>().prop_map(Value::Float),
            any::<bool>().prop_map(Value::Boolean),
            any::<i64>().prop_map(Value::Timestamp),
            any::<String>().prop_map(Value::Json),
            prop_oneof![any::<String>(), "[0-9a-fA-F-]{30,38}"].prop_map(Value::Uuid),
            prop_oneof![any::<String>(), number_text()].prop_map(Value::Numeric),
            any::<Vec<u8>>().prop_map(Value::Bytea),
            any::<i32>().prop_map(Value::Date),
        ]
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn any_values_in_any_columns_make_a_stream_the_format_allows(
            rows in (1usize..6).prop_flat_map(|n| (
                prop::collection::vec(prop::sample::select(KINDS.to_vec()), n),
                prop::collection::vec(prop::collection::vec(value(), n), 0..4),
            ))
        ) {
            let (kinds, values) = rows;
            let columns: Vec<Column> = kinds.iter().map(|k| column("c", *k)).collect();
            let mut copy = CopyRows::with_capacity(&columns, 0);
            for row in values.clone() {
                copy.push(row);
            }
            let decoded = decode(&copy.finish());
            prop_assert_eq!(decoded.len(), values.len());
            for row in decoded {
                prop_assert_eq!(row.len(), kinds.len());
            }
        }

        #[test]
        fn any_text_is_a_numeric_or_a_reason(text in prop_oneof![any::<String>(), number_text()]) {
            if let Err(e) = binary::numeric(&text) {
                prop_assert!(e.contains("numeric"), "{}", e);
            }
        }

        #[test]
        fn any_text_is_a_uuid_or_a_reason(text in prop_oneof![any::<String>(), "[0-9a-fA-F-]{30,38}", "[0-9a-fé-]{36}"]) {
            if let Err(e) = binary::uuid(&text) {
                prop_assert!(e.contains("is not a UUID"), "{}", e);
            }
        }

        #[test]
        fn any_json_text_is_taken_or_has_a_reason(
            text in prop_oneof![
                any::<String>(),
                prop::collection::vec(prop::sample::select(vec![
                    "\"", "\\u", "\\", "D800", "DC00", "d83d", "0041", "é", "1", "e", "E", "-", "+", ".", "9999999",
                    "[", "]", "{", "}", ":", ",", "\\ud800", "\\udc00", "1e131072", "1e-16384",
                ]), 0..12).prop_map(|p| p.concat()),
            ]
        ) {
            let _ = binary::json(&text);
        }
    }
}
