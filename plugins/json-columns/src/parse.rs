//! One JSON value (its own text) to a value of a column type, or what the
//! type expected.

use sdk::types::{ColumnType, Value};

pub fn type_name(kind: ColumnType) -> &'static str {
    match kind {
        ColumnType::Text => "text",
        ColumnType::Integer => "integer",
        ColumnType::Float => "float",
        ColumnType::Boolean => "boolean",
        ColumnType::Timestamp => "timestamp",
        ColumnType::Json => "json",
        ColumnType::Uuid => "uuid",
        ColumnType::Numeric => "numeric",
        ColumnType::Bytea => "bytea",
        ColumnType::Date => "date",
    }
}

/// A JSON value for a message: at most 60 characters of it.
pub fn shorten(raw: &str) -> String {
    match raw.char_indices().nth(60) {
        Some((i, _)) => format!("{}...", &raw[..i]),
        None => raw.to_string(),
    }
}

/// `raw` is one JSON value, not `null`.
pub fn value(kind: ColumnType, raw: &str) -> Result<Value, String> {
    let string = || serde_json::from_str::<String>(raw).ok();
    let expected = |what: &str| Err(what.to_string());
    match kind {
        ColumnType::Text => match string() {
            Some(s) if s.contains('\0') => expected("a string without NUL characters"),
            Some(s) => Ok(Value::Text(s)),
            None => expected("a string"),
        },
        ColumnType::Integer => match serde_json::from_str::<i64>(raw) {
            Ok(i) => Ok(Value::Integer(i)),
            Err(_) => expected("an integer within 64 bits"),
        },
        ColumnType::Float => match serde_json::from_str::<f64>(raw) {
            Ok(f) => Ok(Value::Float(f)),
            Err(_) => expected("a number"),
        },
        ColumnType::Boolean => match serde_json::from_str::<bool>(raw) {
            Ok(b) => Ok(Value::Boolean(b)),
            Err(_) => expected("true or false"),
        },
        ColumnType::Timestamp => {
            if let Ok(ms) = serde_json::from_str::<i64>(raw) {
                return ms
                    .checked_mul(1000)
                    .map(Value::Timestamp)
                    .ok_or_else(|| "milliseconds within range".to_string());
            }
            match string().and_then(|s| timestamp(&s)) {
                Some(us) => Ok(Value::Timestamp(us)),
                None => expected(
                    "an RFC 3339 timestamp string (2024-05-01T12:00:00Z, with a zone) or milliseconds since the Unix epoch",
                ),
            }
        }
        ColumnType::Json if raw.contains("\\u0000") => expected("JSON without \\u0000 (jsonb cannot store it)"),
        ColumnType::Json => Ok(Value::Json(raw.to_string())),
        ColumnType::Uuid => match string().filter(|s| is_uuid(s)) {
            Some(s) => Ok(Value::Uuid(s)),
            None => expected("a UUID string (32 hex digits, 8-4-4-4-12 with hyphens or without)"),
        },
        ColumnType::Numeric => {
            // A number keeps its own text; a string must hold one.
            let text = if raw.starts_with('"') {
                string()
            } else {
                Some(raw.to_string())
            };
            match text.filter(|t| is_number(t)) {
                Some(t) => Ok(Value::Numeric(t)),
                None => expected("a number, or a string of one (\"12.50\", \"NaN\")"),
            }
        }
        ColumnType::Bytea => match string().and_then(|s| base64(&s)) {
            Some(bytes) => Ok(Value::Bytea(bytes)),
            None => expected("a base64 string"),
        },
        ColumnType::Date => match string().and_then(|s| date(&s)) {
            Some(days) => Ok(Value::Date(days)),
            None => expected("a date string YYYY-MM-DD"),
        },
    }
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    let hex = |s: &[u8]| s.iter().all(u8::is_ascii_hexdigit);
    match b.len() {
        32 => hex(b),
        36 => b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        }),
        _ => false,
    }
}

/// Decimal text as PostgreSQL's numeric reads it: sign, digits, point, exponent; NaN, Infinity.
fn is_number(t: &str) -> bool {
    let unsigned = t.strip_prefix(['-', '+']).unwrap_or(t);
    if t.eq_ignore_ascii_case("nan")
        || unsigned.eq_ignore_ascii_case("infinity")
        || unsigned.eq_ignore_ascii_case("inf")
    {
        return true;
    }
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e.strip_prefix(['-', '+']).unwrap_or(e))),
        None => (unsigned, None),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    !(int.is_empty() && frac.is_empty())
        && digits(int)
        && digits(frac)
        && exponent.is_none_or(|e| !e.is_empty() && e.len() <= 4 && digits(e))
}

/// Standard base64, padding optional.
fn base64(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // 6 leftover bits cannot end base64 (one character alone is not a byte).
    (bits < 6).then_some(out)
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// `YYYY-MM-DD` at the start of `s`, as days since 1970-01-01, and the rest.
fn civil_date(s: &str) -> Option<(i64, &str)> {
    let b = s.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok())?
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    Some((days_from_civil(y, m, d), &s[10..]))
}

fn date(s: &str) -> Option<i32> {
    match civil_date(s)? {
        (days, "") => i32::try_from(days).ok(),
        _ => None,
    }
}

/// RFC 3339 (`T` or a space between date and time, a zone required) as
/// microseconds since the Unix epoch; digits past microseconds are dropped.
fn timestamp(s: &str) -> Option<i64> {
    let (days, rest) = civil_date(s)?;
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    let b = rest.as_bytes();
    if b.len() < 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let two = |i: usize| -> Option<i64> {
        let part = rest.get(i..i + 2)?;
        part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok())?
    };
    let (h, mi, sec) = (two(0)?, two(3)?, two(6)?);
    if h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &rest[8..];
    let mut micros = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        let kept = &frac[..n.min(6)];
        micros = kept.parse::<i64>().ok()? * 10i64.pow(6 - kept.len() as u32);
        rest = &frac[n..];
    }
    let offset_secs = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let zone = &rest[1..];
            if zone.len() != 5 || zone.as_bytes()[2] != b':' {
                return None;
            }
            let (zh, zm) = (zone[..2].parse::<i64>().ok()?, zone[3..].parse::<i64>().ok()?);
            if zh > 23 || zm > 59 {
                return None;
            }
            sign * (zh * 3600 + zm * 60)
        }
    };
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_secs;
    secs.checked_mul(1_000_000)?.checked_add(micros)
}
