//! PostgreSQL's binary forms of the contract's `uuid`, `numeric` and `date`
//! values, and the checks that keep a value PostgreSQL would refuse (which
//! would fail the whole batch's `COPY`) to the one message that made it.

/// Days from the Unix epoch (1970-01-01) to PostgreSQL's (2000-01-01).
pub const PG_EPOCH_DAYS: i32 = 10_957;
/// The first date PostgreSQL holds (4714-11-24 BC), in days since 1970-01-01.
pub const MIN_DATE_DAYS: i32 = -2_440_588;
/// One past the last date PostgreSQL holds (5874897-12-31 AD), in days since 1970-01-01.
pub const END_DATE_DAYS: i32 = 2_145_042_906;

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
pub const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// The first instant PostgreSQL's `timestamptz` holds (4714-11-24 BC), in
/// microseconds since 1970-01-01. Every later `i64` fits: PostgreSQL's end
/// (294277 AD) lies beyond `i64::MAX` counted from 1970.
pub const MIN_TIMESTAMP_MICROS: i64 = -211_813_488_000_000_000 + PG_EPOCH_MICROS;

/// A timestamp as PostgreSQL's binary form (microseconds since 2000-01-01),
/// or why it does not fit: `timestamptz_recv` refuses an earlier one, which
/// would fail the whole batch.
pub fn timestamp(micros_since_1970: i64) -> Result<i64, String> {
    if micros_since_1970 >= MIN_TIMESTAMP_MICROS {
        Ok(micros_since_1970 - PG_EPOCH_MICROS)
    } else {
        Err(format!(
            "timestamp {micros_since_1970} (microseconds since 1970-01-01) is outside PostgreSQL's range, which starts in 4714 BC"
        ))
    }
}

/// A date as PostgreSQL's binary form (days since 2000-01-01), or why it does
/// not fit.
pub fn date(days_since_1970: i32) -> Result<i32, String> {
    if (MIN_DATE_DAYS..END_DATE_DAYS).contains(&days_since_1970) {
        Ok(days_since_1970 - PG_EPOCH_DAYS)
    } else {
        Err(format!(
            "date {days_since_1970} (days since 1970-01-01) is outside PostgreSQL's range 4713 BC to 5874897 AD"
        ))
    }
}

/// The 16 bytes of a UUID written as 32 hex digits, grouped 8-4-4-4-12 by
/// hyphens or not grouped at all.
pub fn uuid(text: &str) -> Result<[u8; 16], String> {
    let bytes = text.as_bytes();
    let hex: Vec<u8> = match bytes.len() {
        32 => bytes.to_vec(),
        36 if [8, 13, 18, 23].iter().all(|&i| bytes[i] == b'-') => {
            bytes.iter().copied().filter(|&b| b != b'-').collect()
        }
        _ => Vec::new(),
    };
    let nibble = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 16];
    if hex.len() == 32 {
        for (i, pair) in hex.chunks(2).enumerate() {
            match (nibble(pair[0]), nibble(pair[1])) {
                (Some(hi), Some(lo)) => out[i] = (hi << 4) | lo,
                _ => return Err(uuid_error(text)),
            }
        }
        return Ok(out);
    }
    Err(uuid_error(text))
}

fn uuid_error(text: &str) -> String {
    format!(
        "{:?} is not a UUID (32 hex digits, as 8-4-4-4-12 with hyphens or without)",
        shorten(text)
    )
}

/// `numeric` signs in the binary form.
const NUMERIC_POS: u16 = 0x0000;
const NUMERIC_NEG: u16 = 0x4000;
const NUMERIC_NAN: u16 = 0xC000;
const NUMERIC_PINF: u16 = 0xD000;
const NUMERIC_NINF: u16 = 0xF000;
/// The largest display scale PostgreSQL keeps (`NUMERIC_DSCALE_MAX`).
const MAX_DSCALE: usize = 0x3FFF;
/// The largest exponent looked at: beyond it no number fits PostgreSQL's
/// numeric (131,072 digits before the point, 16,383 after), and moving the
/// point that far would only allocate.
const MAX_EXPONENT: i64 = 140_000;
/// The largest weight of a base-10000 digit (`NUMERIC_WEIGHT_MAX`).
const MAX_WEIGHT: i64 = 0x7FFF;

/// A decimal number written as text, in PostgreSQL's binary `numeric` form:
/// the number of base-10000 digits, the weight of the first, the sign, the
/// display scale, then the digits (all big-endian 16-bit).
///
/// Accepts what `numeric_in` accepts save PostgreSQL 16's underscores and
/// non-decimal integers: surrounding spaces, an optional sign, digits with an
/// optional decimal point, an optional exponent; `NaN`, `Infinity`, `inf`
/// (either case, infinities signed).
pub fn numeric(text: &str) -> Result<Vec<u8>, String> {
    let bad = || {
        format!(
            "{:?} is not a number PostgreSQL's numeric holds (digits with an optional sign, point and exponent, or NaN, Infinity)",
            shorten(text)
        )
    };
    let t = text.trim_matches(|c: char| c.is_ascii_whitespace());
    let (negative, unsigned) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let special = |sign: u16| header(0, 0, sign, 0);
    if unsigned.eq_ignore_ascii_case("infinity") || unsigned.eq_ignore_ascii_case("inf") {
        return Ok(special(if negative { NUMERIC_NINF } else { NUMERIC_PINF }));
    }
    if t.eq_ignore_ascii_case("nan") {
        return Ok(special(NUMERIC_NAN));
    }
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(i) => {
            let e = &unsigned[i + 1..];
            let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            // Many digits: out of range either way.
            let mut exponent: i64 = e.parse().unwrap_or(i64::MAX);
            let mantissa = &unsigned[..i];
            // Past MAX_EXPONENT plus the mantissa's digits (its leading
            // zeros) no number fits, save zero moved left: PostgreSQL takes
            // `0e140010` as 0 (any exponent below i32::MAX / 2).
            if exponent.abs() > MAX_EXPONENT + mantissa.len() as i64 {
                let zero = mantissa.bytes().all(|b| matches!(b, b'0' | b'.'));
                if zero && exponent > 0 && exponent < i64::from(i32::MAX / 2) {
                    exponent = mantissa.len() as i64;
                } else {
                    return Err(overflow(text));
                }
            }
            (mantissa, exponent)
        }
        None => (unsigned, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !all_digits(int) || !all_digits(frac) {
        return Err(bad());
    }
    // Move the point by the exponent: all digits, and where the point falls.
    let mut digits: Vec<u8> = int.bytes().chain(frac.bytes()).map(|b| b - b'0').collect();
    let mut point = int.len() as i64 + exponent;
    if point < 0 {
        let pad = usize::try_from(-point).unwrap_or(0);
        digits.splice(0..0, std::iter::repeat_n(0, pad));
        point = 0;
    }
    let point = usize::try_from(point).unwrap_or(0);
    if point > digits.len() {
        digits.resize(point, 0);
    }
    let (int, frac) = digits.split_at(point);
    let dscale = frac.len();
    if dscale > MAX_DSCALE {
        return Err(format!(
            "{:?} has {dscale} digits after the point; PostgreSQL's numeric keeps at most {MAX_DSCALE}",
            shorten(text)
        ));
    }
    // Base-10000 digits: the integer part padded on the left, the fraction on
    // the right, to whole groups of four.
    let lead = (4 - int.len() % 4) % 4;
    let trail = (4 - frac.len() % 4) % 4;
    let padded: Vec<u8> = std::iter::repeat_n(0, lead)
        .chain(int.iter().copied())
        .chain(frac.iter().copied())
        .chain(std::iter::repeat_n(0, trail))
        .collect();
    let mut groups: Vec<u16> = padded
        .chunks(4)
        .map(|c| c.iter().fold(0u16, |n, d| n * 10 + u16::from(*d)))
        .collect();
    let mut weight = ((lead + int.len()) / 4) as i64 - 1;
    let leading_zeros = groups.iter().take_while(|g| **g == 0).count();
    groups.drain(..leading_zeros);
    weight -= leading_zeros as i64;
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        // Zero: no digits, weight 0, never negative (as PostgreSQL makes it).
        return Ok(header(0, 0, NUMERIC_POS, dscale as u16));
    }
    if weight > MAX_WEIGHT || groups.len() > i16::MAX as usize {
        return Err(overflow(text));
    }
    let sign = if negative { NUMERIC_NEG } else { NUMERIC_POS };
    let mut out = header(groups.len() as u16, weight as i16, sign, dscale as u16);
    for g in groups {
        out.extend_from_slice(&g.to_be_bytes());
    }
    Ok(out)
}

fn overflow(text: &str) -> String {
    format!(
        "{:?} is too large or too precise for PostgreSQL's numeric (at most 131072 digits before the point, 16383 after)",
        shorten(text)
    )
}

/// Why PostgreSQL's `jsonb` would refuse a document that is valid JSON (a
/// lone UTF-16 surrogate in an escape, a number its `numeric` cannot hold),
/// or `Ok` when it takes it. The text must already parse as JSON.
pub fn json(text: &str) -> Result<(), String> {
    let b = text.as_bytes();
    let hex4 = |at: usize| {
        b.get(at..at + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u16::from_str_radix(h, 16).ok())
    };
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] != b'\\' {
                        i += 1;
                        continue;
                    }
                    if b.get(i + 1) != Some(&b'u') {
                        i += 2;
                        continue;
                    }
                    match hex4(i + 2) {
                        Some(0xD800..=0xDBFF)
                            if b.get(i + 6..i + 8) == Some(b"\\u") && matches!(hex4(i + 8), Some(0xDC00..=0xDFFF)) =>
                        {
                            i += 12
                        }
                        Some(0xD800..=0xDFFF) => {
                            return Err(format!(
                                "JSON escape \\u{} is half of a UTF-16 surrogate pair, which PostgreSQL's jsonb refuses",
                                &text[i + 2..i + 6]
                            ));
                        }
                        _ => i += 6,
                    }
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < b.len() && matches!(b[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-') {
                    i += 1;
                }
                let number = &text[start..i];
                // Only an exponent or a great many digits can overflow.
                if (number.len() > 1000 || number.contains(['e', 'E'])) && numeric(number).is_err() {
                    return Err(format!("JSON number {}", overflow(number)));
                }
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// Whether JSON text holds the escape `\u0000`, which PostgreSQL's jsonb
/// refuses; an escaped backslash before `u0000` (`"\\u0000"`, six
/// characters of text) does not count.
pub fn json_nul_escape(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            i += 1;
            continue;
        }
        if b[i + 1..].starts_with(b"u0000") {
            return true;
        }
        i += 2;
    }
    false
}

fn header(ndigits: u16, weight: i16, sign: u16, dscale: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + 2 * usize::from(ndigits));
    out.extend_from_slice(&ndigits.to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&dscale.to_be_bytes());
    out
}

/// Text for a message: at most 40 characters of it.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The binary form as (ndigits, weight, sign, dscale, digits).
    fn parts(bytes: &[u8]) -> (u16, i16, u16, u16, Vec<u16>) {
        let word = |i: usize| u16::from_be_bytes([bytes[i], bytes[i + 1]]);
        let digits = (8..bytes.len()).step_by(2).map(word).collect();
        (word(0), word(2) as i16, word(4), word(6), digits)
    }

    #[test]
    fn numerics_encode_as_postgres_sends_them() {
        // Figures as `numeric_send` produces them for the same text.
        assert_eq!(parts(&numeric("0").unwrap()), (0, 0, 0, 0, vec![]));
        assert_eq!(parts(&numeric("-0.00").unwrap()), (0, 0, 0, 2, vec![]));
        assert_eq!(parts(&numeric("1").unwrap()), (1, 0, 0, 0, vec![1]));
        assert_eq!(parts(&numeric("12345.678").unwrap()), (3, 1, 0, 3, vec![1, 2345, 6780]));
        assert_eq!(parts(&numeric("-12.50").unwrap()), (2, 0, 0x4000, 2, vec![12, 5000]));
        assert_eq!(parts(&numeric("0.0001").unwrap()), (1, -1, 0, 4, vec![1]));
        assert_eq!(parts(&numeric("0.00001").unwrap()), (1, -2, 0, 5, vec![1000]));
        assert_eq!(parts(&numeric("10000").unwrap()), (1, 1, 0, 0, vec![1]));
        assert_eq!(parts(&numeric(" +007 ").unwrap()), (1, 0, 0, 0, vec![7]));
        assert_eq!(parts(&numeric(".5").unwrap()), (1, -1, 0, 1, vec![5000]));
        assert_eq!(parts(&numeric("5.").unwrap()), (1, 0, 0, 0, vec![5]));
        assert_eq!(
            parts(&numeric("123456789012345678901234567890").unwrap()),
            (8, 7, 0, 0, vec![12, 3456, 7890, 1234, 5678, 9012, 3456, 7890])
        );
    }

    #[test]
    fn numeric_exponents_move_the_point_and_keep_the_scale() {
        assert_eq!(parts(&numeric("1e3").unwrap()), (1, 0, 0, 0, vec![1000]));
        assert_eq!(parts(&numeric("1.50e1").unwrap()), (1, 0, 0, 1, vec![15]));
        assert_eq!(parts(&numeric("15E-3").unwrap()), (1, -1, 0, 3, vec![150]));
        assert_eq!(parts(&numeric("-2.5e+4").unwrap()), (2, 1, 0x4000, 0, vec![2, 5000]));
    }

    #[test]
    fn numeric_specials_have_their_signs() {
        assert_eq!(parts(&numeric("NaN").unwrap()), (0, 0, 0xC000, 0, vec![]));
        assert_eq!(parts(&numeric("infinity").unwrap()), (0, 0, 0xD000, 0, vec![]));
        assert_eq!(parts(&numeric("-Inf").unwrap()), (0, 0, 0xF000, 0, vec![]));
    }

    #[test]
    fn numeric_text_that_is_not_a_number_is_refused() {
        for bad in [
            "", " ", "-", ".", "1.2.3", "1e", "e5", "abc", "1_000", "0x1F", "--1", "- 1", "NaN1", "-NaN", "+NaN",
        ] {
            let e = numeric(bad).expect_err(bad);
            assert!(e.contains(&format!("{bad:?}")), "{bad}: {e}");
        }
        assert!(numeric("1e-1000").is_ok());
        let long = format!("0.{}", "1".repeat(MAX_DSCALE + 1));
        assert!(numeric(&long).unwrap_err().contains("digits after the point"));
    }

    /// PostgreSQL 15 takes any exponent whose number fits: 131072 digits
    /// before the point, 16383 after (`SELECT '1e131071'::numeric` works,
    /// `'1e131072'` and `'1e-16384'` overflow).
    #[test]
    fn numeric_exponents_reach_as_far_as_postgres_holds() {
        assert_eq!(parts(&numeric("1e1001").unwrap()).1, 250);
        assert_eq!(parts(&numeric("1e131071").unwrap()).1, 0x7FFF);
        assert_eq!(parts(&numeric("1e-16383").unwrap()).3, 16383);
        assert_eq!(parts(&numeric("-1.5e-1001").unwrap()).3, 1002);
        for over in [
            "1e131072",
            "1e-16384",
            "0.0e-16383",
            "0e-300000",
            "1e999999999999999999999",
            "0e1073741823",
            "0e-140010",
        ] {
            assert!(numeric(over).unwrap_err().contains("PostgreSQL's numeric"), "{over}");
        }
    }

    /// The bytes PostgreSQL 15's `numeric_send` gives for the same text
    /// (`SELECT encode(numeric_send('...'::numeric), 'hex')`).
    #[test]
    fn numerics_match_postgres_numeric_send_byte_for_byte() {
        for (text, hex) in [
            ("0", "0000000000000000"),
            ("-0", "0000000000000000"),
            ("-0.000", "0000000000000003"),
            ("00012.3400", "0002000000000004000c0d48"),
            ("1e1001", "000100fa00000000000a"),
            ("-1.5e-1001", "0001ff05400003ea05dc"),
            ("9999.9999", "0002000000000004270f270f"),
            ("10000.0001", "0003000100000004000100000001"),
            ("0.00000001", "0001fffe000000080001"),
            ("123456789.123456789", "0006000200000009000109291a8504d2162e2328"),
            ("NaN", "00000000c0000000"),
            ("1.23E+2", "0001000000000000007b"),
            ("1.230e-2", "0001ffff00000005007b"),
            (".000", "0000000000000003"),
            ("5e-0", "00010000000000000005"),
            ("100000000", "00010002000000000001"),
            ("0.1234e4", "000100000000000004d2"),
            // Zero moved any distance left is zero (found by the round-trip
            // property test: the check refused what PostgreSQL takes).
            ("0e140010", "0000000000000000"),
            ("-0.000e1073741822", "0000000000000000"),
        ] {
            let bytes = numeric(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let got: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(got, hex, "{text}");
        }
    }

    #[test]
    fn json_postgres_refuses_is_told_apart_from_json_it_takes() {
        for ok in [
            "{}",
            "[1, -2.5, 1e3, 1E-3, 1e131071]",
            "\"\\ud83d\\ude00 \\u00e9\"",
            "{\"e\": \"1e999999 is only text\"}",
            "[0e140010, 0E+999999]",
            "\"\\\\ud800 is an escaped backslash\"",
        ] {
            assert_eq!(json(ok), Ok(()), "{ok}");
        }
        for bad in [
            "1e1000000",
            "[1e-20000]",
            "\"\\ud800\"",
            "\"\\udc00x\"",
            "\"\\uD800\\u0041\"",
        ] {
            assert!(json(bad).is_err(), "{bad}");
        }
    }

    /// Found by the round-trip property test: `{"\\u0000": 1}` (a key of
    /// six characters of text) was refused, though PostgreSQL takes it.
    #[test]
    fn only_a_real_nul_escape_is_one() {
        assert!(json_nul_escape(r#""a\u0000b""#));
        assert!(json_nul_escape(r#"["\\", "\u0000"]"#));
        assert!(!json_nul_escape(r#"{"\\u0000": 1}"#));
        assert!(!json_nul_escape(r#""\\\\u0000""#));
        assert!(json_nul_escape(r#""\u00001""#));
        assert!(!json_nul_escape("\\"));
    }

    #[test]
    fn uuids_take_hyphens_or_not_and_either_case() {
        let want = [
            0x0b, 0x7e, 0x5a, 0x3c, 0x12, 0x34, 0x4a, 0xbc, 0x8d, 0xef, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55,
        ];
        assert_eq!(uuid("0b7e5a3c-1234-4abc-8def-001122334455").unwrap(), want);
        assert_eq!(uuid("0B7E5A3C12344ABC8DEF001122334455").unwrap(), want);
        for bad in [
            "",
            "0b7e5a3c-1234-4abc-8def-00112233445",
            "0b7e5a3c12344abc8def00112233445g",
            "0b7e5a3c-12344abc-8def-0011223344556",
            "{0b7e5a3c-1234-4abc-8def-001122334455}",
        ] {
            assert!(uuid(bad).unwrap_err().contains("is not a UUID"), "{bad}");
        }
    }

    #[test]
    fn dates_count_from_2000_within_postgres_range() {
        assert_eq!(date(0), Ok(-10_957));
        assert_eq!(date(10_957), Ok(0));
        assert_eq!(date(MIN_DATE_DAYS), Ok(-2_451_545));
        assert!(date(MIN_DATE_DAYS - 1).is_err());
        assert!(date(END_DATE_DAYS - 1).is_ok());
        assert!(date(END_DATE_DAYS).unwrap_err().contains("outside PostgreSQL's range"));
        assert!(date(i32::MIN).is_err() && date(i32::MAX).is_err());
    }
}
