//! The binary COPY encoder round-tripped through the real PostgreSQL for
//! random values of every column type: each value the sink's checks let
//! through is written with [`CopyRows`] in one `COPY ... BINARY`, read back,
//! and compared with what was sent (for `numeric` and `jsonb`, with what
//! PostgreSQL's own text input makes of the same text, scale and key order
//! included). A numeric or JSON text the checks refuse must be one
//! PostgreSQL refuses too: a refusal the server would not make loses a
//! message to the dead letters.

use crate::support::common;

use common::{load, unique, write_pipeline};
use host::plugins::mapper::{Column, ColumnType, Value};
use host::postgres::CopyRows;
use host::postgres::binary::{self, END_DATE_DAYS, MIN_DATE_DAYS, MIN_TIMESTAMP_MICROS, PG_EPOCH_MICROS};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use tokio::runtime::Runtime;
use tokio_postgres::Client;

/// Cases, each a COPY of a few rows: a few seconds against a local server.
const CASES: u32 = 64;

/// The table's columns after `id`: (name, SQL type, the mapper's type).
const COLUMNS: [(&str, &str, ColumnType); 12] = [
    ("t", "text", ColumnType::Text),
    ("i", "bigint", ColumnType::Integer),
    ("f", "double precision", ColumnType::Float),
    ("b", "boolean", ColumnType::Boolean),
    ("ts", "timestamptz", ColumnType::Timestamp),
    ("j", "jsonb", ColumnType::Json),
    ("u", "uuid", ColumnType::Uuid),
    ("n", "numeric", ColumnType::Numeric),
    ("by", "bytea", ColumnType::Bytea),
    ("d", "date", ColumnType::Date),
    // An integer into a float and into a numeric column, as the sink allows.
    ("fi", "double precision", ColumnType::Float),
    ("ni", "numeric", ColumnType::Numeric),
];

/// One row as generated: a value per column of [`COLUMNS`].
type Row = Vec<Value>;

fn text() -> impl Strategy<Value = String> {
    // PostgreSQL's text holds any Unicode but NUL (the sink dead-letters it).
    prop_oneof![any::<String>(), "\\PC{0,20}", Just("é😀\u{feff}\u{10ffff}".to_string())]
        .prop_map(|s| s.replace('\0', ""))
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        prop::sample::select(vec![
            0.0,
            -0.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
            f64::MAX,
            5e-324
        ]),
    ]
}

fn timestamp() -> impl Strategy<Value = i64> {
    prop_oneof![
        MIN_TIMESTAMP_MICROS..=i64::MAX,
        -2_000_000_000_000_000i64..4_000_000_000_000_000,
        prop::sample::select(vec![MIN_TIMESTAMP_MICROS, i64::MAX, 0, -1]),
    ]
}

fn date() -> impl Strategy<Value = i32> {
    prop_oneof![
        MIN_DATE_DAYS..END_DATE_DAYS,
        -800_000i32..800_000,
        prop::sample::select(vec![MIN_DATE_DAYS, END_DATE_DAYS - 1, 0, -1]),
    ]
}

/// A UUID as text: hyphenated or not, either case.
fn uuid() -> impl Strategy<Value = String> {
    (any::<[u8; 16]>(), any::<bool>(), any::<bool>()).prop_map(|(bytes, hyphens, upper)| {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let text = if hyphens {
            format!(
                "{}-{}-{}-{}-{}",
                &hex[..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..]
            )
        } else {
            hex
        };
        if upper { text.to_uppercase() } else { text }
    })
}

/// Decimal text as `numeric_in` reads it: spaces, a sign, digits, a point,
/// an exponent (now and then far out of range), or a special word.
fn numeric() -> impl Strategy<Value = String> {
    let number = (
        prop::sample::select(vec!["", " ", "\t "]),
        prop::sample::select(vec!["", "-", "+"]),
        "[0-9]{0,40}",
        prop::option::of("[0-9]{0,40}"),
        prop::option::of((
            prop::sample::select(vec!["e", "E"]),
            prop::sample::select(vec!["", "-", "+"]),
            prop_oneof![4 => "[0-9]{1,3}", 1 => "[0-9]{4,7}"],
        )),
        prop::sample::select(vec!["", " "]),
    )
        .prop_map(|(lead, sign, int, frac, exp, trail)| {
            let mut s = format!("{lead}{sign}{int}");
            if let Some(f) = frac {
                s.push('.');
                s.push_str(&f);
            }
            if let Some((e, es, digits)) = exp {
                s.push_str(e);
                s.push_str(es);
                s.push_str(&digits);
            }
            s.push_str(trail);
            s
        });
    prop_oneof![
        8 => number,
        1 => prop::sample::select(vec![
            "NaN", "nan", "Infinity", "-Infinity", "+infinity", "inf", "-INF", " NaN ", "1e131071", "1e131072",
            "1e-16383", "1e-16384", "0.0e-16383", "-0", "-0.000",
        ])
        .prop_map(str::to_string),
    ]
}

/// JSON text: numbers far out of range, escapes (lone surrogates and
/// `\u0000` included), non-ASCII, nesting.
fn json() -> impl Strategy<Value = String> {
    let string = prop::collection::vec(
        prop_oneof![
            "\\PC{0,6}".prop_map(|s| serde_json::Value::from(s).to_string().trim_matches('"').to_string()),
            prop::sample::select(vec![
                "\\ud83d\\ude00",
                "\\u00e9",
                "\\ud800",
                "\\udc00",
                "\\uD800\\u0041",
                "\\u0000",
                "\\n",
                "\\\\",
                "\\\"",
                "\\/",
                "é",
                "😀",
            ])
            .prop_map(str::to_string),
        ],
        0..4,
    )
    .prop_map(|parts| format!("\"{}\"", parts.concat()));
    let number = (
        prop::sample::select(vec!["", "-"]),
        prop_oneof!["0", "[1-9][0-9]{0,25}"],
        prop::option::of("[0-9]{1,20}"),
        prop::option::of((
            prop::sample::select(vec!["e", "E-", "e+"]),
            prop_oneof![3 => "[0-9]{1,3}", 1 => "[0-9]{5,7}"],
        )),
    )
        .prop_map(|(sign, int, frac, exp)| {
            let mut s = format!("{sign}{int}");
            if let Some(f) = frac {
                s = format!("{s}.{f}");
            }
            if let Some((e, digits)) = exp {
                s = format!("{s}{e}{digits}");
            }
            s
        });
    let leaf = prop_oneof![
        string.clone(),
        number,
        Just("true".to_string()),
        Just("null".to_string())
    ];
    leaf.prop_recursive(3, 12, 4, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|items| format!("[{}]", items.join(", "))),
            prop::collection::vec((string.clone(), inner), 0..4).prop_map(|fields| {
                let fields: Vec<String> = fields.into_iter().map(|(k, v)| format!("{k}: {v}")).collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
    })
}

/// A value of `strategy`, or now and then NULL.
fn or_null<S: Strategy<Value = Value> + 'static>(strategy: S) -> BoxedStrategy<Value> {
    prop_oneof![9 => strategy, 1 => Just(Value::Null)].boxed()
}

fn row() -> impl Strategy<Value = Row> {
    (
        (
            or_null(text().prop_map(Value::Text)),
            or_null(any::<i64>().prop_map(Value::Integer)),
            or_null(float().prop_map(Value::Float)),
            or_null(any::<bool>().prop_map(Value::Boolean)),
            or_null(timestamp().prop_map(Value::Timestamp)),
            or_null(json().prop_map(Value::Json)),
        ),
        (
            or_null(uuid().prop_map(Value::Uuid)),
            or_null(numeric().prop_map(Value::Numeric)),
            or_null(any::<Vec<u8>>().prop_map(Value::Bytea)),
            or_null(date().prop_map(Value::Date)),
            or_null(any::<i64>().prop_map(Value::Integer)),
            or_null(any::<i64>().prop_map(Value::Integer)),
        ),
    )
        .prop_map(|((t, i, f, b, ts, j), (u, n, by, d, fi, ni))| vec![t, i, f, b, ts, j, u, n, by, d, fi, ni])
}

/// Why the sink would dead-letter a value instead of writing it (its checks
/// for text PostgreSQL refuses), or `None` when it writes it.
fn refused(v: &Value) -> Option<String> {
    match v {
        Value::Json(t) if serde_json::from_str::<serde::de::IgnoredAny>(t).is_err() => Some("not JSON".into()),
        Value::Json(t) if binary::json_nul_escape(t) => Some("\\u0000".into()),
        Value::Json(t) => binary::json(t).err(),
        Value::Numeric(t) => binary::numeric(t).err(),
        Value::Uuid(t) => binary::uuid(t).err(),
        Value::Timestamp(us) => binary::timestamp(*us).err(),
        Value::Date(d) => binary::date(*d).err(),
        _ => None,
    }
}

struct Server {
    rt: Runtime,
    client: Client,
}

impl Server {
    fn connect() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let pg = load(&write_pipeline("")).postgres;
        let client = rt.block_on(host::postgres::connect(&pg)).expect("connect");
        Self { rt, client }
    }

    fn execute(&self, sql: &str) {
        self.rt
            .block_on(self.client.batch_execute(sql))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    fn copy(&self, sql: &str, bytes: Vec<u8>) -> Result<u64, String> {
        self.rt.block_on(async {
            let sink = self
                .client
                .copy_in::<_, std::io::Cursor<Vec<u8>>>(sql)
                .await
                .map_err(|e| e.to_string())?;
            futures_util::pin_mut!(sink);
            futures_util::SinkExt::send(&mut sink, std::io::Cursor::new(bytes))
                .await
                .map_err(|e| e.to_string())?;
            sink.finish().await.map_err(|e| {
                e.as_db_error()
                    .map_or_else(|| e.to_string(), |d| d.message().to_string())
            })
        })
    }

    /// PostgreSQL's text input of `text` as `sql_type`, printed back; its
    /// refusal as the error.
    fn parse(&self, text: &str, sql_type: &str) -> Result<String, String> {
        self.rt
            .block_on(
                self.client
                    .query_one(&format!("SELECT $1::text::{sql_type}::text"), &[&text]),
            )
            .map(|r| r.get(0))
            .map_err(|e| {
                e.as_db_error()
                    .map_or_else(|| e.to_string(), |d| d.message().to_string())
            })
    }
}

/// The 32 hex digits of a UUID text, lowercase and hyphenated, as PostgreSQL prints it.
fn uuid_text(text: &str) -> String {
    let hex: String = text.chars().filter(|c| *c != '-').collect::<String>().to_lowercase();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

fn same_float(sent: f64, read: f64) -> bool {
    (sent.is_nan() && read.is_nan()) || sent.to_bits() == read.to_bits()
}

/// Writes `rows` (refused values made NULL, as the sink dead-letters their
/// messages) with one COPY, reads them back and compares.
fn round_trip(server: &Server, table: &str, rows: Vec<Row>) -> Result<(), TestCaseError> {
    // A refused value: PostgreSQL must refuse its text too.
    for v in rows.iter().flatten() {
        let (Some(reason), Value::Numeric(t) | Value::Json(t)) = (refused(v), v) else {
            continue;
        };
        let sql_type = if matches!(v, Value::Numeric(_)) {
            "numeric"
        } else {
            "jsonb"
        };
        if let Ok(taken) = server.parse(t, sql_type) {
            return Err(TestCaseError::fail(format!(
                "the check refuses {sql_type} {t:?} ({reason}) but PostgreSQL takes it as {taken:?}"
            )));
        }
    }
    let rows: Vec<Row> = rows
        .into_iter()
        .map(|r| {
            r.into_iter()
                .map(|v| if refused(&v).is_some() { Value::Null } else { v })
                .collect()
        })
        .collect();

    let mut columns = vec![Column {
        name: "id".into(),
        kind: ColumnType::Integer,
        nullable: false,
    }];
    columns.extend(COLUMNS.iter().map(|(name, _, kind)| Column {
        name: (*name).into(),
        kind: *kind,
        nullable: true,
    }));
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    let mut copy = CopyRows::with_capacity(&columns, 0);
    for (id, row) in rows.iter().enumerate() {
        let mut values = vec![Value::Integer(id as i64)];
        values.extend(row.iter().cloned());
        copy.push(values);
    }
    server.execute(&format!("TRUNCATE \"{table}\""));
    let sql = format!("COPY \"{table}\" ({}) FROM STDIN BINARY", names.join(", "));
    let copied = server
        .copy(&sql, copy.finish())
        .map_err(|e| TestCaseError::fail(format!("PostgreSQL refused the COPY: {e}\nrows: {rows:?}")))?;
    prop_assert_eq!(copied, rows.len() as u64);

    for (id, row) in rows.iter().enumerate() {
        let read = server
            .rt
            .block_on(server.client.query_one(
                &format!(
                    "SELECT t, i, f, b, (extract(epoch FROM ts - timestamptz '2000-01-01 00:00:00+00') * 1000000)::bigint, j::text, u::text, n::text,
                            by, d - date '1970-01-01', fi, ni::text FROM \"{table}\" WHERE id = $1"
                ),
                &[&(id as i64)],
            ))
            .map_err(|e| TestCaseError::fail(format!("read row {id}: {e}")))?;
        for (c, sent) in row.iter().enumerate() {
            let name = COLUMNS[c].0;
            let at = format!("row {id} column {name} sent {sent:?}");
            match sent {
                Value::Null => prop_assert!(is_null(&read, c), "{}: read a value", at),
                Value::Text(s) => prop_assert_eq!(&read.get::<_, String>(c), s, "{}", at),
                Value::Integer(i) => match name {
                    "fi" => prop_assert!(same_float(*i as f64, read.get(c)), "{}", at),
                    "ni" => prop_assert_eq!(read.get::<_, String>(c), i.to_string(), "{}", at),
                    _ => prop_assert_eq!(read.get::<_, i64>(c), *i, "{}", at),
                },
                Value::Float(f) => {
                    let got: f64 = read.get(c);
                    prop_assert!(same_float(*f, got), "{}: read {}", at, got);
                }
                Value::Boolean(b) => prop_assert_eq!(read.get::<_, bool>(c), *b, "{}", at),
                // Counted from 2000 in SQL: extract(epoch) of a timestamp past
                // i64::MAX - 30 years rounds through a float.
                Value::Timestamp(us) => prop_assert_eq!(read.get::<_, i64>(c) + PG_EPOCH_MICROS, *us, "{}", at),
                Value::Json(t) => {
                    let want = server.parse(t, "jsonb").map_err(|e| {
                        TestCaseError::fail(format!(
                            "{at}: the check takes it, PostgreSQL's text input refuses: {e}"
                        ))
                    })?;
                    prop_assert_eq!(read.get::<_, String>(c), want, "{}", at);
                }
                Value::Uuid(t) => prop_assert_eq!(read.get::<_, String>(c), uuid_text(t), "{}", at),
                Value::Numeric(t) => {
                    let want = server.parse(t, "numeric").map_err(|e| {
                        TestCaseError::fail(format!(
                            "{at}: the check takes it, PostgreSQL's text input refuses: {e}"
                        ))
                    })?;
                    prop_assert_eq!(read.get::<_, String>(c), want, "{}", at);
                }
                Value::Bytea(bytes) => prop_assert_eq!(&read.get::<_, Vec<u8>>(c), bytes, "{}", at),
                Value::Date(days) => prop_assert_eq!(read.get::<_, i32>(c), *days, "{}", at),
            }
        }
    }
    Ok(())
}

/// Whether column `c` of the row read back is NULL, whatever its type.
fn is_null(row: &tokio_postgres::Row, c: usize) -> bool {
    use tokio_postgres::types::{FromSql, Type};
    struct Any;
    impl<'a> FromSql<'a> for Any {
        fn from_sql(_: &Type, _: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
            Ok(Any)
        }
        fn accepts(_: &Type) -> bool {
            true
        }
    }
    row.get::<_, Option<Any>>(c).is_none()
}

#[test]
fn random_values_of_every_type_come_back_as_sent() {
    let server = Server::connect();
    let table = unique("copy_round_trip");
    let definitions: Vec<String> = COLUMNS.iter().map(|(n, t, _)| format!("{n} {t}")).collect();
    server.execute(&format!(
        "CREATE TABLE \"{table}\" (id bigint PRIMARY KEY, {})",
        definitions.join(", ")
    ));
    // PROPTEST_CASES=N runs more (or fewer), as it does for the unit tests.
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(CASES);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&prop::collection::vec(row(), 1..8), |rows| {
        round_trip(&server, &table, rows)
    });
    server.execute(&format!("DROP TABLE \"{table}\""));
    if let Err(e) = result {
        panic!("{e}");
    }
}
