//! Where a sink starts a partition that has nothing stored yet (`start` of a
//! `[[sinks]]` entry), and the RFC 3339 times it and `host sink rewind
//! --to-time` take.

/// Where a partition with no stored offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartAt {
    /// At the start of its log (the default).
    #[default]
    Earliest,
    /// At its end when assigned: only messages produced after.
    Latest,
    /// At the first message with a timestamp at or after this one (unix ms).
    Time(i64),
}

impl StartAt {
    /// Parses the value of `start`; the error says the choices.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "earliest" => Ok(Self::Earliest),
            "latest" => Ok(Self::Latest),
            other => rfc3339_ms(other).map(Self::Time).map_err(|why| {
                format!(
                    "sinks.start {other:?} is not a choice ({why}); use \"earliest\" (the default: the start of each partition), \"latest\" (only messages produced after the sink starts) or an RFC 3339 time such as \"2026-12-01T10:00:00Z\"; it applies only to partitions with no offset stored yet"
                )
            }),
        }
    }
}

/// Milliseconds since the Unix epoch of an RFC 3339 time
/// (`2026-12-01T10:00:00Z`, `2026-12-01T11:00:00.250+01:00`).
pub fn rfc3339_ms(text: &str) -> Result<i64, String> {
    let bad = || format!("{text:?} is not an RFC 3339 time such as 2026-12-01T10:00:00Z");
    let b = text.as_bytes();
    if b.len() < 20 || !text.is_ascii() {
        return Err(bad());
    }
    let num = |from: usize, to: usize| -> Result<i64, String> {
        text[from..to]
            .parse::<i64>()
            .ok()
            .filter(|_| text[from..to].bytes().all(|c| c.is_ascii_digit()))
            .ok_or_else(bad)
    };
    let seps = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if seps.iter().any(|(i, c)| b[*i] != *c) || !matches!(b[10], b'T' | b't' | b' ') {
        return Err(bad());
    }
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&month)
        || !(1..=days_in(year, month)).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(bad());
    }
    // An optional fraction, then Z or an offset.
    let mut at = 19;
    let mut millis = 0;
    if b[at] == b'.' {
        let start = at + 1;
        at = start;
        while at < b.len() && b[at].is_ascii_digit() {
            at += 1;
        }
        if at == start {
            return Err(bad());
        }
        let digits = &text[start..at.min(start + 3)];
        millis = digits.parse::<i64>().map_err(|_| bad())? * 10_i64.pow(3 - digits.len() as u32);
    }
    let offset_minutes = match &text[at..] {
        "Z" | "z" => 0,
        zone if zone.len() == 6 && matches!(zone.as_bytes()[0], b'+' | b'-') && zone.as_bytes()[3] == b':' => {
            let (h, m) = (num(at + 1, at + 3)?, num(at + 4, at + 6)?);
            if h > 23 || m > 59 {
                return Err(bad());
            }
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            sign * (h * 60 + m)
        }
        _ => return Err(bad()),
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset_minutes * 60;
    Ok(seconds * 1000 + millis)
}

fn days_in(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_become_unix_milliseconds() {
        assert_eq!(rfc3339_ms("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(rfc3339_ms("2026-12-01T10:00:00Z"), Ok(1_796_119_200_000));
        assert_eq!(rfc3339_ms("2026-12-01T11:00:00.25+01:00"), Ok(1_796_119_200_250));
        assert_eq!(rfc3339_ms("2024-02-29T00:00:00-00:30"), Ok(1_709_166_600_000));
        for bad in [
            "2026-12-01",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-12-01T10:00:00",
            "2026-12-01T10:00:00+1",
            "2026-12-01T10:00:00.Z",
            "２026-12-01T10:00:00Z",
        ] {
            assert!(rfc3339_ms(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn start_takes_its_three_kinds_and_names_them_when_wrong() {
        assert_eq!(StartAt::parse("earliest"), Ok(StartAt::Earliest));
        assert_eq!(StartAt::parse("latest"), Ok(StartAt::Latest));
        assert_eq!(StartAt::parse("1970-01-01T00:00:01Z"), Ok(StartAt::Time(1000)));
        let e = StartAt::parse("newest").unwrap_err();
        assert!(e.contains("sinks.start \"newest\"") && e.contains("\"latest\""), "{e}");
    }
}
