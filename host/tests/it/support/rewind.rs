//! Helpers for the tests of `host sink rewind|pause|resume` and `start`:
//! sink processes under `host run`, the progress PostgreSQL holds, and
//! RFC 3339 times for `--to-time` and `start`.

use super::common::{Db, Running, host_within};
use std::process::Output;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `host run PIPELINE` as the group member `id` (no file watching).
pub fn member(pipeline: &str, id: &str) -> Running {
    Running::start(&["run", pipeline, "--no-watch", "--instance-id", id])
}

/// `host sink ARGS...`, which must succeed; its stdout.
pub fn sink_ok(args: &[&str]) -> String {
    let out = sink(args);
    assert!(
        out.status.success(),
        "host sink {args:?} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `host sink ARGS...`, whatever its end.
pub fn sink(args: &[&str]) -> Output {
    let mut all = vec!["sink"];
    all.extend_from_slice(args);
    host_within(&all, Duration::from_secs(120))
}

/// Messages settled so far: the sum of the next offsets stored for the table.
pub fn settled(db: &Db, table: &str) -> i64 {
    db.query(
        "SELECT coalesce(sum(next_offset), 0)::bigint FROM wasm_stream_offsets WHERE table_name = $1",
        &[&table],
    )[0]
    .get(0)
}

/// The stored next offsets of a table, by partition.
pub fn stored(db: &Db, table: &str) -> Vec<(i32, i64)> {
    db.query(
        "SELECT partition, next_offset FROM wasm_stream_offsets WHERE table_name = $1 ORDER BY partition",
        &[&table],
    )
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// The (partition, offset) of the dead letters of a topic, in order.
pub fn letters(db: &Db, topic: &str) -> Vec<(i32, i64)> {
    db.query(
        "SELECT partition, \"offset\" FROM wasm_stream_dead_letters WHERE topic = $1 ORDER BY partition, \"offset\"",
        &[&topic],
    )
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// The rows of a table (0 before it exists).
pub fn count(db: &Db, table: &str) -> i64 {
    let exists = db.query("SELECT to_regclass($1) IS NOT NULL", &[&format!("\"{table}\"")]);
    if !exists[0].get::<_, bool>(0) {
        return 0;
    }
    db.query(&format!("SELECT count(*) FROM \"{table}\""), &[])[0].get(0)
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// An RFC 3339 time (UTC, milliseconds) for unix ms.
pub fn rfc3339(ms: i64) -> String {
    let (days, rest) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000
    )
}

#[test]
fn rfc3339_writes_the_time_it_is_given() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339(1_796_119_200_250), "2026-12-01T10:00:00.250Z");
    assert_eq!(
        host::config::rfc3339_ms(&rfc3339(1_709_166_600_001)),
        Ok(1_709_166_600_001)
    );
}
