//! Generators whose plugin traps, loops past its deadline, grows past its
//! memory cap, returns more messages than asked or a payload over Kafka's
//! maximum size, and one that traps on every call, all run beside a healthy
//! generator and two sinks. None of them stops `host run`: the healthy
//! generator and both sinks finish their work, every hostile generator but
//! the always-trapping one produces exactly its count, nothing twice, and the
//! always-trapping one is retried with a capped backoff until the host stops.
use crate::support::common;

use common::{Db, Running, assert_each_offset_once, create_topic, plugin, read_topic, unique, write_pipeline};
use std::collections::HashSet;
use std::time::{Duration, Instant};

const COUNT: i64 = 40;
const HOSTILE: [(&str, &str, u32); 5] = [
    ("trap", "trap", 3),
    ("loop", "loop", 4),
    ("grow", "grow", 4),
    ("many", "too-many", 2),
    ("big", "oversized", 2),
];

#[test]
fn hostile_generators_never_stop_the_pipeline_and_counts_stay_exact() {
    let (hostile_topic, healthy_topic) = (unique("hostile_gen"), unique("healthy_gen"));
    let (hostile_table, healthy_table) = (unique("hostile_gen_rows"), unique("healthy_gen_rows"));
    create_topic(&hostile_topic, 1);
    create_topic(&healthy_topic, 1);
    let hostile_plugin = plugin("hostile_generator");
    let mut body = format!(
        r#"
[audit]
interval_ms = 0

[[topics]]
name = "{hostile_topic}"

[[topics]]
name = "{healthy_topic}"

[[generators]]
name = "healthy"
topic = "{healthy_topic}"
plugin = "{langs}"
interval_ms = 1
count = {COUNT}

[[generators]]
name = "always"
topic = "{hostile_topic}"
plugin = "{hostile}"
interval_ms = 1
count = 5
[generators.settings]
mode = "trap"
every = 1

[[sinks]]
name = "hostile_rows"
topic = "{hostile_topic}"
table = "{hostile_table}"
mapper = "{json_row}"

[[sinks]]
name = "healthy_rows"
topic = "{healthy_topic}"
table = "{healthy_table}"
mapper = "{json_row}"
"#,
        langs = plugin("langs").display(),
        hostile = hostile_plugin.display(),
        json_row = plugin("json_row").display(),
    );
    for (name, mode, every) in HOSTILE {
        body.push_str(&format!(
            r#"
[[generators]]
name = "{name}"
topic = "{hostile_topic}"
plugin = "{hostile}"
interval_ms = 1
count = {COUNT}
{seed}
[generators.settings]
mode = "{mode}"
every = {every}
[generators.limits]
call_timeout_ms = 200
memory_limit_bytes = 33554432
"#,
            hostile = hostile_plugin.display(),
            // Seeded, a restarted instance would replay the ids it made unless
            // the host derives a new seed for it.
            seed = if name == "trap" { "seed = 5" } else { "" },
        ));
    }
    let path = write_pipeline(&body);
    let mut host = Running::start(&["run", path.to_str().expect("utf-8"), "--no-watch"]);

    let db = Db::connect();
    let expected_hostile = COUNT * HOSTILE.len() as i64;
    let count = |table: &str| -> i64 { db.query(&format!("SELECT count(*) FROM \"{table}\""), &[])[0].get(0) };
    let exists = |table: &str| {
        db.query(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = $1",
            &[&table],
        )[0]
        .get::<_, i64>(0)
            > 0
    };
    let deadline = Instant::now() + Duration::from_secs(180);
    while !(exists(&hostile_table)
        && exists(&healthy_table)
        && count(&hostile_table) >= expected_hostile
        && count(&healthy_table) >= COUNT)
    {
        if let Ok(Some(status)) = host.child.try_wait() {
            panic!("host ended early ({status})\n{}", host.log());
        }
        if Instant::now() > deadline {
            let log = host.log();
            let _ = host.terminate();
            panic!("timed out waiting for both sinks to store every message\n{log}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Let the always-trapping generator back off a few times more.
    std::thread::sleep(Duration::from_secs(3));
    let log = host.terminate();

    // Kafka: exactly the counts, and no message twice (each id is random).
    let hostile = read_topic(&hostile_topic);
    assert_eq!(hostile.len() as i64, expected_hostile, "{log}");
    let ids: HashSet<Vec<u8>> = hostile.iter().filter_map(|m| m.payload.clone()).collect();
    assert_eq!(ids.len() as i64, expected_hostile, "a message was produced twice");
    assert!(
        hostile
            .iter()
            .all(|m| m.payload.as_ref().is_some_and(|p| p.len() < 100)),
        "no oversized payload reached Kafka"
    );
    assert_eq!(read_topic(&healthy_topic).len() as i64, COUNT);

    // PostgreSQL: every offset once, nothing dead-lettered.
    assert_each_offset_once(&db.offsets(&hostile_table), 0, expected_hostile);
    assert_each_offset_once(&db.offsets(&healthy_table), 0, COUNT);
    assert!(db.dead_letters(&hostile_topic).is_empty());

    // The failures were reported: a trap with its stderr, the deadline, the
    // memory cap, each contract breach once, and the backoff of `always`.
    assert!(log.contains("asked to trap on call 3"), "{log}");
    assert!(log.contains("about to trap on call 3"), "stderr is captured: {log}");
    assert!(log.contains("deadline of 200 ms"), "{log}");
    assert!(log.contains("memory limit of 33554432 bytes"), "{log}");
    assert_eq!(log.matches("next(1) returned 6 messages").count(), 1, "{log}");
    assert_eq!(
        log.matches("over the producer's maximum message size").count(),
        1,
        "{log}"
    );
    assert!(
        log.contains("generator=big") || log.contains("generator=\"big\""),
        "the oversized report names the generator: {log}"
    );
    assert!(log.contains("consecutive_failures=5"), "{log}");
    assert!(log.contains("retry_in_ms=1600"), "the backoff grows: {log}");
}
