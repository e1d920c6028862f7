//! The text forms of the JSON mapping (MAPPING.md): dates, times of day,
//! RFC 3339 timestamps, exact decimals and UUIDs, both ways. Pure functions.
use std::fmt::Write;

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

/// The civil date of a day since 1970-01-01 (the inverse of the above).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

fn push_date(days: i64, out: &mut String) {
    let (y, m, d) = civil_from_days(days);
    let _ = write!(out, "{y:04}-{m:02}-{d:02}");
}

/// `YYYY-MM-DD`.
pub fn format_date(days: i64) -> String {
    let mut out = String::with_capacity(10);
    push_date(days, &mut out);
    out
}

fn digits_of(unit_per_second: i64) -> usize {
    match unit_per_second {
        1_000 => 3,
        1_000_000 => 6,
        _ => 9,
    }
}

fn push_time(secs_of_day: i64, fraction: i64, unit_per_second: i64, out: &mut String) {
    let (h, m, s) = (secs_of_day / 3600, secs_of_day / 60 % 60, secs_of_day % 60);
    let _ = write!(
        out,
        "{h:02}:{m:02}:{s:02}.{fraction:0width$}",
        width = digits_of(unit_per_second)
    );
}

/// `HH:MM:SS.fff` (as many fraction digits as the unit has) of a time of day
/// in `unit_per_second` units since midnight.
pub fn format_time(value: i64, unit_per_second: i64) -> Option<String> {
    if !(0..86_400 * unit_per_second).contains(&value) {
        return None;
    }
    let mut out = String::with_capacity(18);
    push_time(
        value / unit_per_second,
        value % unit_per_second,
        unit_per_second,
        &mut out,
    );
    Some(out)
}

/// RFC 3339 in UTC (`2026-12-03T10:00:00.123Z`) of a count of units since
/// the Unix epoch, with as many fraction digits as the unit has.
pub fn format_timestamp(value: i64, unit_per_second: i64) -> String {
    let secs = value.div_euclid(unit_per_second);
    let fraction = value.rem_euclid(unit_per_second);
    let mut out = String::with_capacity(30);
    push_date(secs.div_euclid(86_400), &mut out);
    out.push('T');
    push_time(secs.rem_euclid(86_400), fraction, unit_per_second, &mut out);
    out.push('Z');
    out
}

/// `YYYY-MM-DD` at the start of `s`, as days since 1970-01-01, and the rest.
fn civil_date(s: &str) -> Option<(i64, &str)> {
    let b = s.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, m, d) = (number(s.get(0..4)?)?, number(s.get(5..7)?)?, number(s.get(8..10)?)?);
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    Some((days_from_civil(y, m, d), &s[10..]))
}

fn number(part: &str) -> Option<i64> {
    if part.is_empty() || !part.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    part.parse().ok()
}

pub fn parse_date(s: &str) -> Option<i64> {
    match civil_date(s)? {
        (days, "") => Some(days),
        _ => None,
    }
}

/// `HH:MM:SS[.fraction]` at the start of `s`: seconds of the day, the
/// fraction in `unit_per_second` units (refused if finer), and the rest.
fn clock(s: &str, unit_per_second: i64) -> Option<(i64, i64, &str)> {
    let b = s.as_bytes();
    if b.len() < 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let (h, mi, sec) = (number(&s[0..2])?, number(&s[3..5])?, number(&s[6..8])?);
    if h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let mut rest = &s[8..];
    let mut fraction = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        let width = digits_of(unit_per_second);
        if n == 0 || n > width {
            return None;
        }
        fraction = number(&frac[..n])? * 10i64.pow((width - n) as u32);
        rest = &frac[n..];
    }
    Some((h * 3600 + mi * 60 + sec, fraction, rest))
}

/// `HH:MM:SS[.fraction]` as units since midnight.
pub fn parse_time(s: &str, unit_per_second: i64) -> Option<i64> {
    match clock(s, unit_per_second)? {
        (secs, fraction, "") => Some(secs * unit_per_second + fraction),
        _ => None,
    }
}

/// RFC 3339 (`T` or a space; `Z` or an offset; for `local`, no zone is
/// taken as UTC too) as units since the Unix epoch.
pub fn parse_timestamp(s: &str, unit_per_second: i64, local: bool) -> Option<i64> {
    let (days, rest) = civil_date(s)?;
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    let (secs, fraction, zone) = clock(rest, unit_per_second)?;
    let offset = match zone {
        "Z" | "z" => 0,
        "" if local => 0,
        _ => {
            let sign = match zone.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let zone = &zone[1..];
            if zone.len() != 5 || zone.as_bytes()[2] != b':' {
                return None;
            }
            let (zh, zm) = (number(&zone[..2])?, number(&zone[3..])?);
            if zh > 23 || zm > 59 {
                return None;
            }
            sign * (zh * 3600 + zm * 60)
        }
    };
    let secs = days.checked_mul(86_400)? + secs - offset;
    secs.checked_mul(unit_per_second)?.checked_add(fraction)
}

/// The exact decimal text of `unscaled × 10^-scale` (`1250`, 2 → `"12.50"`).
pub fn format_decimal(unscaled: i128, scale: u32) -> String {
    let digits = unscaled.unsigned_abs().to_string();
    let sign = if unscaled < 0 { "-" } else { "" };
    let scale = scale as usize;
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = if digits.len() <= scale {
        format!("{}{digits}", "0".repeat(scale + 1 - digits.len()))
    } else {
        digits
    };
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{sign}{int}.{frac}")
}

/// Decimal text (`"12.5"`, `"-3"`, `"1e2"` as a number's text) as the
/// unscaled integer at `scale`; `None` if it has more fraction digits than
/// the scale (rounding would change the value) or does not fit 128 bits.
pub fn parse_decimal(s: &str, scale: u32) -> Option<i128> {
    let (negative, unsigned) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().ok()?),
        None => (unsigned, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if (int.is_empty() && frac.is_empty()) || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut value: i128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        value = value.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
    }
    // value × 10^(exponent - frac.len()) must be a whole number of 10^-scale.
    let shift = i64::from(scale) + i64::from(exponent) - frac.len() as i64;
    if shift >= 0 {
        value = value.checked_mul(10i128.checked_pow(u32::try_from(shift).ok()?)?)?;
    } else {
        let divisor = 10i128.checked_pow(u32::try_from(-shift).ok()?)?;
        if value % divisor != 0 {
            return None;
        }
        value /= divisor;
    }
    Some(if negative { -value } else { value })
}

/// The 8-4-4-4-12 hyphenated form of 16 bytes.
pub fn format_uuid(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(36);
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// 32 hex digits, with the hyphens or without.
pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = s.bytes().filter(|&b| b != b'-').collect();
    let hyphens_ok = match s.len() {
        32 => true,
        36 => [8, 13, 18, 23].iter().all(|&i| s.as_bytes()[i] == b'-'),
        _ => false,
    };
    if !hyphens_ok || hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_timestamps_round_trip() {
        for days in [-719_468, -1, 0, 1, 19_000, 20_790, 2_932_896] {
            assert_eq!(parse_date(&format_date(days)), Some(days));
        }
        assert_eq!(format_date(0), "1970-01-01");
        assert_eq!(format_timestamp(1_764_756_000_123, 1_000), "2025-12-03T10:00:00.123Z");
        assert_eq!(format_timestamp(-1, 1_000_000), "1969-12-31T23:59:59.999999Z");
        for (v, unit) in [(1_764_756_000_123i64, 1_000i64), (-1, 1_000_000), (5, 1_000_000_000)] {
            assert_eq!(parse_timestamp(&format_timestamp(v, unit), unit, false), Some(v));
        }
        assert_eq!(
            parse_timestamp("2025-12-03T11:00:00.5+01:00", 1_000, false),
            Some(1_764_756_000_500)
        );
        assert_eq!(parse_timestamp("2025-12-03T10:00:00", 1_000, false), None);
        assert_eq!(
            parse_timestamp("2025-12-03T10:00:00", 1_000, true),
            Some(1_764_756_000_000)
        );
        assert_eq!(parse_timestamp("2025-12-03T10:00:00.1234Z", 1_000, false), None);
    }

    #[test]
    fn times_of_day_keep_the_unit_digits() {
        assert_eq!(format_time(3_723_004, 1_000).as_deref(), Some("01:02:03.004"));
        assert_eq!(
            format_time(86_400_000_000 - 1, 1_000_000).as_deref(),
            Some("23:59:59.999999")
        );
        assert_eq!(format_time(-1, 1_000), None);
        assert_eq!(parse_time("01:02:03.004", 1_000), Some(3_723_004));
        assert_eq!(parse_time("01:02:03", 1_000_000), Some(3_723_000_000));
    }

    #[test]
    fn decimals_are_exact_both_ways() {
        assert_eq!(format_decimal(1250, 2), "12.50");
        assert_eq!(format_decimal(-5, 3), "-0.005");
        assert_eq!(format_decimal(7, 0), "7");
        assert_eq!(parse_decimal("12.5", 2), Some(1250));
        assert_eq!(parse_decimal("-0.005", 3), Some(-5));
        assert_eq!(parse_decimal("1e2", 1), Some(1000));
        assert_eq!(parse_decimal("12.345", 2), None);
        assert_eq!(parse_decimal("12.340", 2), Some(1234));
        assert_eq!(parse_decimal("abc", 2), None);
        assert_eq!(parse_decimal(".", 2), None);
    }

    #[test]
    fn uuids_both_ways() {
        let bytes: Vec<u8> = (0..16).collect();
        let text = format_uuid(&bytes);
        assert_eq!(text, "00010203-0405-0607-0809-0a0b0c0d0e0f");
        assert_eq!(parse_uuid(&text).map(|b| b.to_vec()), Some(bytes.clone()));
        assert_eq!(parse_uuid(&text.replace('-', "")).map(|b| b.to_vec()), Some(bytes));
        assert_eq!(parse_uuid("nope"), None);
    }
}
