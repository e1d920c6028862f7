//! A zombie: of two hosts sharing a 4-partition topic, one is SIGSTOPped
//! (often in the middle of a transaction that holds its offsets' row locks).
//! The other takes its partitions once the session expires and must store
//! everything while the first is still stopped; the stopped one, continued,
//! must not write its stale batch. Every message lands exactly once.
mod common;

use common::chaos::SHARED;
use common::{Running, plugin, unique};
use std::process::Command;
use std::time::Duration;

const MESSAGES: i64 = 20_000;

fn signal(host: &Running, sig: &str) {
    let pid = host.child.id().to_string();
    let ok = Command::new("kill").args([sig, &pid]).status().expect("kill").success();
    assert!(ok, "kill {sig} {pid}");
}

#[test]
fn a_stopped_host_is_fenced_and_its_successor_finishes() {
    let topic = unique("zombie");
    let table = unique("zombie_rows");
    SHARED.create_topic(&topic, 4);
    let path = SHARED.write_pipeline(&format!(
        r#"
[[topics]]
name = "{topic}"
partitions = 4

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
batch_size = 20
flush_interval_ms = 20
"#,
        langs = plugin("langs").display(),
        mapper = plugin("json_row").display(),
    ));
    let path = path.to_str().expect("utf-8 path");
    common::host_ok(&["produce", path, "--quiet"]);

    let group = format!("wasm-stream-{table}");
    let db = SHARED.db();
    let zombie = Running::start(&["consume", path, "--topic", &topic, "--quiet", "--instance-id", "zombie"]);
    let successor = Running::start(&[
        "consume",
        path,
        "--topic",
        &topic,
        "--quiet",
        "--instance-id",
        "successor",
    ]);
    common::wait_for("both hosts to hold partitions", Duration::from_secs(90), || {
        let m = SHARED.group_members(&group);
        m.len() == 2 && m.iter().all(|(_, p)| !p.is_empty())
    });
    common::wait_for("some rows", Duration::from_secs(60), || db.count(&table) > 500);
    signal(&zombie, "-STOP");

    // Session timeout, then the bounded wait for the zombie's locks; without
    // the bounds the successor would wait as long as the zombie is stopped.
    let finished = (0..1800).any(|_| {
        let done = db.count(&table) >= MESSAGES;
        if !done {
            std::thread::sleep(Duration::from_millis(100));
        }
        done
    });
    signal(&zombie, "-CONT");
    assert!(
        finished,
        "the successor did not store everything while the zombie was stopped ({} of {MESSAGES})\n{}",
        db.count(&table),
        successor.log()
    );
    // The zombie wakes up with a stale batch: give it time to try.
    std::thread::sleep(Duration::from_secs(3));
    zombie.terminate();
    successor.terminate();
    let tally = db.tally(&table, &topic, &SHARED.end_offsets(&topic));
    assert_eq!(
        (tally.messages, tally.duplicates, tally.missing),
        (MESSAGES, 0, 0),
        "{tally:?}"
    );
}
