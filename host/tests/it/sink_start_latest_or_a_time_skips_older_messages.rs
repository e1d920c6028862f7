//! A sink's `start` for partitions with nothing stored: "latest" stores only
//! messages produced after the sink was assigned, a time only messages from
//! that time on; the older ones are never stored. Either is resolved once
//! and stored, so a restart before the first write resumes there.
use crate::support::{common, rewind};

use common::{Db, SinkPipeline, create_topic, produce_keyed, unique, wait_for};
use rewind::{count, member, now_ms, rfc3339, stored};
use std::time::Duration;

fn messages(from: usize, to: usize) -> Vec<common::Keyed> {
    (from..to)
        .map(|i| {
            (
                0,
                format!("k{i}").into_bytes(),
                Some(format!("{{\"i\": {i}}}").into_bytes()),
            )
        })
        .collect()
}

/// Messages `{"i": i}` over two partitions, alternating.
fn alternating(range: std::ops::Range<i32>) -> Vec<common::Keyed> {
    range
        .map(|i| {
            (
                i % 2,
                format!("k{i}").into_bytes(),
                Some(format!("{{\"i\": {i}}}").into_bytes()),
            )
        })
        .collect()
}

/// The `i` of every stored row, in order.
fn stored_is(db: &Db, table: &str) -> Vec<i64> {
    db.query(
        &format!("SELECT (message_text::jsonb->>'i')::bigint FROM \"{table}\" ORDER BY 1"),
        &[],
    )
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[test]
fn start_latest_stores_only_what_comes_after_the_assignment() {
    let topic = unique("start_latest");
    let table = unique("start_latest_rows");
    create_topic(&topic, 1);
    produce_keyed(&topic, &messages(0, 100));
    let path = SinkPipeline::new(&topic, &table, "json_row")
        .sink_line("start = \"latest\"")
        .sink_line("flush_interval_ms = 50")
        .write();
    let path = path.to_str().expect("utf-8 path");
    let db = Db::connect();
    let running = member(path, &unique("start_latest"));
    // Probe messages until one lands: the sink is assigned and reading.
    let mut next = 1000;
    wait_for("a probe message stored", Duration::from_secs(90), || {
        produce_keyed(&topic, &messages(next, next + 1));
        next += 1;
        std::thread::sleep(Duration::from_millis(300));
        db.query("SELECT to_regclass($1) IS NOT NULL", &[&format!("\"{table}\"")])[0].get::<_, bool>(0)
            && count(&db, &table) > 0
    });
    produce_keyed(&topic, &messages(2000, 2050));
    wait_for("the new messages stored", Duration::from_secs(60), || {
        stored_is(&db, &table).iter().filter(|i| **i >= 2000).count() == 50
    });
    let stored = stored_is(&db, &table);
    assert!(
        stored.iter().all(|i| *i >= 1000),
        "no message from before the start: {stored:?}"
    );
    let probes: Vec<i64> = stored.iter().copied().filter(|i| *i < 2000).collect();
    assert!(
        probes.windows(2).all(|w| w[1] == w[0] + 1) && probes.last() == Some(&(next as i64 - 1)),
        "from the first probe stored on, every probe is stored once: {probes:?}"
    );
    running.terminate();
}

#[test]
fn start_at_a_time_stores_the_messages_from_that_time_on() {
    let topic = unique("start_time");
    let table = unique("start_time_rows");
    create_topic(&topic, 1);
    produce_keyed(&topic, &messages(0, 60));
    std::thread::sleep(Duration::from_millis(1200));
    let at = rfc3339(now_ms());
    std::thread::sleep(Duration::from_millis(1200));
    produce_keyed(&topic, &messages(60, 100));
    let path = SinkPipeline::new(&topic, &table, "json_row")
        .sink_line(&format!("start = \"{at}\""))
        .write();
    let path = path.to_str().expect("utf-8 path");
    common::host_ok(&["consume", path, "--once", "--quiet"]);
    let db = Db::connect();
    assert_eq!(stored_is(&db, &table), (60..100).collect::<Vec<i64>>());
}

/// "latest" is where the sink stood when first assigned, not where the log
/// ends at each assignment: messages that arrive while the sink is down
/// before its first write are stored after the restart.
#[test]
fn start_latest_is_resolved_once_and_kept_across_a_restart() {
    let topic = unique("start_once");
    let table = unique("start_once_rows");
    create_topic(&topic, 2);
    produce_keyed(&topic, &alternating(0..40));
    let path = SinkPipeline::new(&topic, &table, "json_row")
        .sink_line("start = \"latest\"")
        .write();
    let path = path.to_str().expect("utf-8 path");
    let db = Db::connect();
    let mut running = member(path, &unique("start_once"));
    wait_for("the start offsets stored", Duration::from_secs(90), || {
        stored(&db, &table).len() == 2
    });
    assert_eq!(
        stored(&db, &table),
        [(0, 20), (1, 20)],
        "each partition's end when assigned"
    );
    // Killed before it wrote anything: nothing but the start is stored.
    let _ = running.child.kill();
    let _ = running.child.wait();
    produce_keyed(&topic, &alternating(100..130));
    common::host_ok(&["consume", path, "--once", "--quiet"]);
    assert_eq!(
        stored_is(&db, &table),
        (100..130).collect::<Vec<i64>>(),
        "every message produced while the sink was down, and none from before its start"
    );
    assert_eq!(stored(&db, &table), [(0, 35), (1, 35)]);
}
