//! Three `host consume` processes started with one pipeline file and no
//! per-process settings, as a new user would, on a 6-partition topic: each
//! joins the group as a member of its own, the broker gives each two
//! partitions, and every message lands once.
use crate::support::common;

use common::chaos::SHARED;
use common::{Running, SinkPipeline, unique};
use std::time::{Duration, Instant};

const MESSAGES: i64 = 6_000;

#[test]
fn three_processes_each_hold_two_of_six_partitions() {
    let topic = unique("scale");
    let table = unique("scale_rows");
    SHARED.create_topic(&topic, 6);
    let path = SHARED.write_pipeline(
        &SinkPipeline::new(&topic, &table, "json_row")
            .partitions(6)
            .generator("load", MESSAGES, 0)
            .body(),
    );
    let path = path.to_str().expect("utf-8 path");
    common::host_ok(&["produce", path, "--quiet"]);

    let mut hosts: Vec<Running> = (0..3)
        .map(|_| Running::start(&["consume", path, "--topic", &topic, "--quiet"]))
        .collect();
    let group = format!("wasm-stream-{table}");
    let mut members = Vec::new();
    // Bounded by time, not by polls: one look at the group can take seconds.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut settled = false;
    while Instant::now() < deadline && !hosts.iter_mut().any(|h| h.exited().is_some()) {
        members = SHARED.group_members(&group);
        settled = members.len() == 3 && members.iter().all(|(_, p)| p.len() == 2);
        if settled {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let logs: Vec<String> = hosts.iter().map(Running::log).collect();
    assert!(
        settled,
        "the group never had three members with two partitions each: {members:?}\n{}",
        logs.join("\n----\n")
    );
    let mut all: Vec<i32> = members.iter().flat_map(|(_, p)| p.clone()).collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..6).collect::<Vec<_>>(),
        "every partition held once: {members:?}"
    );

    let db = SHARED.db();
    common::wait_for("every message stored", Duration::from_secs(120), || {
        db.count(&table) >= MESSAGES
    });
    for h in hosts {
        h.terminate();
    }
    let tally = db.tally(&table, &topic, &SHARED.end_offsets(&topic));
    assert_eq!(
        (tally.messages, tally.duplicates, tally.missing),
        (MESSAGES, 0, 0),
        "{tally:?}"
    );
}
