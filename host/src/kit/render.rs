//! How `host plugin test` prints what a mapper returns: tables of cells,
//! SQL types, and values as text or JSON the way PostgreSQL shows them.

use crate::plugins::mapper;
use std::fmt::Write as _;

pub(super) fn render_table(table: &[Vec<String>]) -> String {
    let width = table.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..width)
        .map(|i| {
            table
                .iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (n, row) in table.iter().enumerate() {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        let _ = writeln!(out, "  {}", cells.join(" | ").trim_end());
        if n == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            let _ = writeln!(out, "  {}", rule.join("-+-"));
        }
    }
    out
}

pub(super) fn sql_type(kind: mapper::ColumnType) -> &'static str {
    match kind {
        mapper::ColumnType::Text => "text",
        mapper::ColumnType::Integer => "bigint",
        mapper::ColumnType::Float => "double precision",
        mapper::ColumnType::Boolean => "boolean",
        mapper::ColumnType::Timestamp => "timestamptz",
        mapper::ColumnType::Json => "jsonb",
        mapper::ColumnType::Uuid => "uuid",
        mapper::ColumnType::Numeric => "numeric",
        mapper::ColumnType::Bytea => "bytea",
        mapper::ColumnType::Date => "date",
    }
}

pub(super) fn value_text(v: &mapper::Value) -> String {
    match v {
        mapper::Value::Null => "null".into(),
        mapper::Value::Text(s) | mapper::Value::Json(s) => s.replace('\n', "\\n"),
        mapper::Value::Integer(i) => i.to_string(),
        mapper::Value::Float(f) => f.to_string(),
        mapper::Value::Boolean(b) => b.to_string(),
        mapper::Value::Timestamp(us) => timestamp_text(*us),
        mapper::Value::Uuid(s) | mapper::Value::Numeric(s) => s.clone(),
        mapper::Value::Bytea(b) => bytea_text(b),
        mapper::Value::Date(days) => date_text(*days),
    }
}

pub(super) fn value_json(v: &mapper::Value) -> serde_json::Value {
    match v {
        mapper::Value::Null => serde_json::Value::Null,
        mapper::Value::Text(s) => s.clone().into(),
        mapper::Value::Json(s) => serde_json::from_str(s).unwrap_or_else(|_| s.clone().into()),
        mapper::Value::Integer(i) => (*i).into(),
        mapper::Value::Float(f) => (*f).into(),
        mapper::Value::Boolean(b) => (*b).into(),
        mapper::Value::Timestamp(us) => timestamp_text(*us).into(),
        // Text, as PostgreSQL's row_to_json renders these types.
        mapper::Value::Uuid(s) | mapper::Value::Numeric(s) => s.clone().into(),
        mapper::Value::Bytea(b) => bytea_text(b).into(),
        mapper::Value::Date(days) => date_text(*days).into(),
    }
}

/// Bytes as PostgreSQL prints a `bytea`: `\x` and hex digits.
pub fn bytea_text(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(2 + 2 * bytes.len());
    out.push_str("\\x");
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Days since the Unix epoch as `YYYY-MM-DD`.
pub fn date_text(days: i32) -> String {
    let (year, month, day) = civil(i64::from(days));
    format!("{year:04}-{month:02}-{day:02}")
}

/// The civil date of a day counted from 1970-01-01 (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Microseconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub fn timestamp_text(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{frac:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_render_in_utc() {
        assert_eq!(timestamp_text(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(timestamp_text(1_700_000_000_123_456), "2023-11-14T22:13:20.123456Z");
        assert_eq!(timestamp_text(-1), "1969-12-31T23:59:59.999999Z");
    }

    #[test]
    fn dates_and_bytes_render_as_postgres_prints_them() {
        assert_eq!(date_text(0), "1970-01-01");
        assert_eq!(date_text(19_723), "2024-01-01");
        assert_eq!(date_text(-1), "1969-12-31");
        assert_eq!(bytea_text(&[0, 0xab, 0x10]), "\\x00ab10");
    }
}
