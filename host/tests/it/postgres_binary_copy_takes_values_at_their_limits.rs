//! The binary COPY encoder against the real PostgreSQL: values at the edges
//! of what each type holds (the first instant of timestamptz, the first and
//! last date, numerics with exponents far past 1000, a UUID in capitals)
//! are taken, and read back as PostgreSQL prints them.

use crate::support::common;

use common::{Db, load, unique, write_pipeline};
use host::plugins::mapper::{Column, ColumnType, Value};
use host::postgres::CopyRows;
use host::postgres::binary::{END_DATE_DAYS, MIN_DATE_DAYS, MIN_TIMESTAMP_MICROS};

/// Sends `bytes` (binary COPY format) into `table`: PostgreSQL's verdict.
fn copy_in(table: &str, columns: &str, bytes: Vec<u8>) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let pg = load(&write_pipeline("")).postgres;
    rt.block_on(async {
        let client = host::postgres::connect(&pg).await.expect("connect");
        let sink = client
            .copy_in::<_, std::io::Cursor<Vec<u8>>>(&format!("COPY \"{table}\" ({columns}) FROM STDIN BINARY"))
            .await
            .expect("copy");
        futures_util::pin_mut!(sink);
        futures_util::SinkExt::send(&mut sink, std::io::Cursor::new(bytes))
            .await
            .expect("send");
        sink.finish().await.map(drop).map_err(|e| {
            e.as_db_error()
                .map_or_else(|| e.to_string(), |d| d.message().to_string())
        })
    })
}

fn column(name: &str, kind: ColumnType) -> Column {
    Column {
        name: name.into(),
        kind,
        nullable: true,
    }
}

#[test]
fn edge_values_are_taken_and_read_back_as_postgres_prints_them() {
    let db = Db::connect();
    let table = unique("copy_limits");
    db.execute(&format!(
        "CREATE TABLE \"{table}\" (i bigint, ts timestamptz, d date, n numeric, u uuid)"
    ));
    let columns = [
        column("i", ColumnType::Integer),
        column("ts", ColumnType::Timestamp),
        column("d", ColumnType::Date),
        column("n", ColumnType::Numeric),
        column("u", ColumnType::Uuid),
    ];
    let mut rows = CopyRows::with_capacity(&columns, 0);
    let uuid = "0B7E5A3C-1234-4ABC-8DEF-001122334455";
    rows.push(vec![
        Value::Integer(1),
        Value::Timestamp(MIN_TIMESTAMP_MICROS),
        Value::Date(MIN_DATE_DAYS),
        Value::Numeric("-1.5e-1001".into()),
        Value::Uuid(uuid.into()),
    ]);
    rows.push(vec![
        Value::Integer(2),
        Value::Timestamp(i64::MAX),
        Value::Date(END_DATE_DAYS - 1),
        Value::Numeric("1e131071".into()),
        Value::Uuid(uuid.replace('-', "")),
    ]);
    rows.push(vec![
        Value::Integer(3),
        Value::Timestamp(0),
        Value::Date(0),
        Value::Numeric("00012.3400".into()),
        Value::Null,
    ]);

    copy_in(&table, "i, ts, d, n, u", rows.finish()).expect("PostgreSQL takes every value");

    let read: Vec<(String, String, String, String)> = db
        .query(
            &format!(
                "SELECT (ts AT TIME ZONE 'UTC')::text, d::text, left(n::text, 12) || ':' || length(n::text), coalesce(u::text, '') FROM \"{table}\" ORDER BY i"
            ),
            &[],
        )
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    db.execute(&format!("DROP TABLE \"{table}\""));
    let lower = uuid.to_lowercase();
    assert_eq!(
        read[0],
        (
            "4714-11-24 00:00:00 BC".to_string(),
            "4714-11-24 BC".to_string(),
            format!("-0.000000000:{}", 1002 + 3),
            lower.clone()
        )
    );
    assert_eq!(read[1].1, "5874897-12-31");
    assert!(read[1].0.starts_with("294247-"), "{}", read[1].0);
    assert_eq!(read[1].2, format!("100000000000:{}", 131_072));
    assert_eq!(read[1].3, lower);
    assert_eq!(
        read[2],
        (
            "1970-01-01 00:00:00".to_string(),
            "1970-01-01".to_string(),
            "12.3400:7".to_string(),
            String::new()
        )
    );
}

/// Why the host checks timestamps: one microsecond before the first instant,
/// PostgreSQL refuses the whole COPY ("timestamp out of range").
#[test]
fn postgres_refuses_a_timestamp_before_its_first_instant() {
    let db = Db::connect();
    let table = unique("copy_early");
    db.execute(&format!("CREATE TABLE \"{table}\" (ts timestamptz)"));
    let copy = |micros_since_1970: i64| {
        let pg = micros_since_1970 - host::postgres::binary::PG_EPOCH_MICROS;
        let mut bytes = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0".to_vec();
        bytes.extend_from_slice(&1i16.to_be_bytes());
        bytes.extend_from_slice(&8i32.to_be_bytes());
        bytes.extend_from_slice(&pg.to_be_bytes());
        bytes.extend_from_slice(&(-1i16).to_be_bytes());
        copy_in(&table, "ts", bytes)
    };
    assert!(copy(MIN_TIMESTAMP_MICROS).is_ok());
    let e = copy(MIN_TIMESTAMP_MICROS - 1).expect_err("out of range");
    assert!(e.contains("timestamp out of range"), "{e}");
    db.execute(&format!("DROP TABLE \"{table}\""));
}
