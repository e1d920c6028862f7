//! The row checks: which values fit which columns ([`value_fits`]), and what
//! [`check_rows`] refuses before PostgreSQL would refuse the whole batch.

use super::*;

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

fn values() -> Vec<Value> {
    vec![
        Value::Text("t".into()),
        Value::Integer(1),
        Value::Float(1.5),
        Value::Boolean(true),
        Value::Timestamp(0),
        Value::Json("{}".into()),
        Value::Uuid("0b7e5a3c-1234-4abc-8def-001122334455".into()),
        Value::Numeric("1.5".into()),
        Value::Bytea(vec![1]),
        Value::Date(0),
    ]
}

fn column(name: &str, kind: ColumnType, nullable: bool) -> Column {
    Column {
        name: name.into(),
        kind,
        nullable,
    }
}

#[test]
fn each_column_takes_its_own_value_and_the_documented_widenings() {
    for (i, kind) in KINDS.into_iter().enumerate() {
        for (j, value) in values().into_iter().enumerate() {
            // An integer also fits a float or numeric column.
            let widened = matches!(
                (kind, &value),
                (ColumnType::Float | ColumnType::Numeric, Value::Integer(_))
            );
            assert_eq!(value_fits(kind, &value), i == j || widened, "{kind:?} <- {value:?}");
        }
        assert!(
            value_fits(kind, &Value::Null),
            "null fits {kind:?}; nullability is checked apart"
        );
    }
}

#[test]
fn rows_that_fit_pass() {
    let columns = [
        column("name", ColumnType::Text, false),
        column("n", ColumnType::Integer, true),
        column("doc", ColumnType::Json, true),
    ];
    let rows = vec![
        vec![
            Value::Text("a".into()),
            Value::Integer(1),
            Value::Json("[1, {\"b\": null}]".into()),
        ],
        vec![Value::Text(String::new()), Value::Null, Value::Null],
    ];
    assert_eq!(check_rows(&columns, &rows), Ok(()));
    assert_eq!(check_rows(&columns, &[]), Ok(()), "no rows is fine");
}

#[test]
fn a_row_of_the_wrong_width_is_refused() {
    let columns = [column("a", ColumnType::Text, true), column("b", ColumnType::Text, true)];
    assert_eq!(
        check_rows(&columns, &[vec![Value::Null]]),
        Err("1 values for 2 columns".to_string())
    );
    assert_eq!(
        check_rows(&columns, &[vec![Value::Null, Value::Null, Value::Null]]),
        Err("3 values for 2 columns".to_string())
    );
}

#[test]
fn null_in_a_column_that_is_not_nullable_is_refused() {
    let columns = [column("id", ColumnType::Integer, false)];
    assert_eq!(
        check_rows(&columns, &[vec![Value::Null]]),
        Err("column \"id\" is not nullable".to_string())
    );
}

#[test]
fn a_value_of_another_type_names_the_column_and_the_value() {
    let columns = [column("n", ColumnType::Integer, true)];
    let e = check_rows(&columns, &[vec![Value::Text("12".into())]]).unwrap_err();
    assert!(e.starts_with("column \"n\" is ColumnType::Integer, got "), "{e}");
    assert!(e.contains("12"), "{e}");
}

#[test]
fn json_must_parse_and_postgres_limits_on_text_are_caught() {
    let json = [column("doc", ColumnType::Json, true)];
    assert_eq!(
        check_rows(&json, &[vec![Value::Json("{not json".into())]]),
        Err("column \"doc\" got text that is not JSON".to_string())
    );
    assert_eq!(
        check_rows(&json, &[vec![Value::Json("\"a\\u0000b\"".into())]]),
        Err("column \"doc\" got JSON with \\u0000, which PostgreSQL's jsonb cannot store".to_string())
    );
    // An escaped backslash before u0000 is six characters of text, which
    // jsonb takes (the round-trip property test found it refused).
    assert_eq!(
        check_rows(&json, &[vec![Value::Json(r#"{"\\u0000": 1}"#.into())]]),
        Ok(())
    );
    let text = [column("t", ColumnType::Text, true)];
    assert_eq!(
        check_rows(&text, &[vec![Value::Text("a\0b".into())]]),
        Err("column \"t\" got text with a NUL byte, which PostgreSQL cannot store".to_string())
    );
}

#[test]
fn one_bad_row_among_good_ones_fails_the_message() {
    let columns = [column("n", ColumnType::Integer, false)];
    let rows = vec![vec![Value::Integer(1)], vec![Value::Null], vec![Value::Integer(3)]];
    assert!(check_rows(&columns, &rows).is_err());
}

/// PostgreSQL refuses these in a binary COPY ("timestamp out of range",
/// "value overflows numeric format", "invalid input syntax for type json"),
/// which would fail every attempt at the batch: each stays with its message.
#[test]
fn timestamps_and_json_postgres_would_refuse_are_caught() {
    let ts = [column("at", ColumnType::Timestamp, true)];
    assert!(check_rows(&ts, &[vec![Value::Timestamp(0)]]).is_ok());
    assert!(check_rows(&ts, &[vec![Value::Timestamp(i64::MAX)]]).is_ok());
    // 4714-11-24 BC, the first instant PostgreSQL holds, and one before it.
    assert!(check_rows(&ts, &[vec![Value::Timestamp(binary::MIN_TIMESTAMP_MICROS)]]).is_ok());
    for early in [binary::MIN_TIMESTAMP_MICROS - 1, -300_000_000_000_000_000, i64::MIN] {
        let e = check_rows(&ts, &[vec![Value::Timestamp(early)]]).unwrap_err();
        assert!(
            e.contains("column \"at\"") && e.contains("outside PostgreSQL's range"),
            "{e}"
        );
    }
    let json = [column("doc", ColumnType::Json, true)];
    assert!(check_rows(&json, &[vec![Value::Json("[1e131071, -1.5e-3, \"\\u00e9\"]".into())]]).is_ok());
    for bad in ["1e1000000", "{\"a\": 1e-20000}", "\"\\ud800\"", "[\"\\udc00x\"]"] {
        let e = check_rows(&json, &[vec![Value::Json(bad.into())]]).unwrap_err();
        assert!(e.contains("column \"doc\""), "{bad}: {e}");
    }
}

/// A key PostgreSQL's btree cannot index fails every attempt at the batch.
#[test]
fn a_delete_by_a_key_too_long_to_index_is_refused() {
    let key = [column("id", ColumnType::Text, false)];
    assert!(check_delete(&key, &[Value::Text("k".repeat(100))]).is_ok());
    let e = check_delete(&key, &[Value::Text("k".repeat(3000))]).unwrap_err();
    assert!(e.contains("key values of 3000 bytes"), "{e}");
}
