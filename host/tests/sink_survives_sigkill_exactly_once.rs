//! Kill the consuming host with SIGKILL at random moments during a
//! 20,000-message run, restarting it each time: in the end every offset is in
//! the table exactly once.
mod common;

use common::{Db, assert_each_offset_once, create_topic, host_ok, plugin, read_topic, unique, write_pipeline};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const MESSAGES: u64 = 20_000;
const KILLS: usize = 6;

/// A small xorshift generator seeded from the clock: random kill moments.
struct Random(u64);

impl Random {
    fn new() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(42);
        Self(nanos | 1)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn every_offset_lands_once_through_repeated_sigkills() {
    let topic = unique("kill");
    let table = unique("kill_rows");
    create_topic(&topic, 2);
    let path = write_pipeline(&format!(
        r#"
[[topics]]
name = "{topic}"
partitions = 2

[[generators]]
name = "load"
topic = "{topic}"
plugin = "{langs}"
count = {MESSAGES}

[[sinks]]
name = "rows"
topic = "{topic}"
table = "{table}"
mapper = "{mapper}"
batch_size = 50
flush_interval_ms = 50
"#,
        langs = plugin("langs").display(),
        mapper = plugin("json_row").display(),
    ));
    let path = path.to_str().expect("utf-8 path");

    // Produce everything first (the producer is not what this test kills).
    host_ok(&["produce", path, "--quiet"]);
    let kafka = read_topic(&topic);
    assert_eq!(kafka.len() as u64, MESSAGES);

    let db = Db::connect();
    let mut random = Random::new();
    let mut rows_at_kills = Vec::new();
    for _ in 0..KILLS {
        let mut child = Command::new(env!("CARGO_BIN_EXE_host"))
            .args(["consume", path, "--once", "--quiet"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn host");
        // Wait until it has written something new (or a moment), then kill it at a random point.
        let before = count(&db, &table);
        let started = Instant::now();
        while count(&db, &table) == before
            && child.try_wait().expect("poll child").is_none()
            && started.elapsed() < Duration::from_secs(20)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(random.below(150)));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        rows_at_kills.push(count(&db, &table));
    }
    // Finish the run.
    host_ok(&["consume", path, "--once", "--quiet"]);

    let mid_run = rows_at_kills
        .iter()
        .filter(|r| **r > 0 && (**r as u64) < MESSAGES)
        .count();
    assert!(
        mid_run >= 3,
        "at least three kills landed mid-run, rows at kills: {rows_at_kills:?}"
    );

    let offsets = db.offsets(&table);
    assert_eq!(
        offsets.len() as u64,
        MESSAGES,
        "row count; rows at kills: {rows_at_kills:?}"
    );
    for p in 0..2 {
        let in_kafka = kafka.iter().filter(|m| m.partition == p).count() as i64;
        assert_each_offset_once(&offsets, i64::from(p), in_kafka);
    }
    println!("rows at each kill: {rows_at_kills:?}");
}

fn count(db: &Db, table: &str) -> i64 {
    let exists = db.query("SELECT to_regclass($1) IS NOT NULL", &[&format!("\"{table}\"")]);
    if !exists[0].get::<_, bool>(0) {
        return 0;
    }
    db.query(&format!("SELECT count(*) FROM \"{table}\""), &[])[0].get(0)
}
