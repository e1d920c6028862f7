//! Two processes given the same instance id: the broker fences the first one
//! out when the second joins. The fenced one must end with an error that says
//! why and how to fix it, not retry forever doing nothing.
use crate::support::common;

use common::chaos::SHARED;
use common::{Running, unique};
use std::time::{Duration, Instant};

#[test]
fn a_fenced_sink_exits_non_zero_naming_the_instance_id() {
    let topic = unique("fence");
    let table = unique("fence_rows");
    let path = SHARED.one_sink_pipeline(&topic, 2, &table);
    let path = path.to_str().expect("utf-8 path");
    let id = unique("twin");
    let group = format!("wasm-stream-{table}");
    let mut first = Running::member(path, &topic, &id);
    common::wait_for("the first process to join", Duration::from_secs(60), || {
        SHARED.group_members(&group).len() == 1
    });
    let second = Running::member(path, &topic, &id);

    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = first.child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = first.child.kill();
            panic!("the fenced process did not end\n{}", first.log());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = first.log();
    assert!(!status.success(), "a fenced process must fail: {status}\n{log}");
    assert!(
        log.contains("--instance-id") && log.contains(&id),
        "the error names the id and the fix:\n{log}"
    );
    second.terminate();
}

/// A process whose claims on its id live elsewhere: on this machine it looks
/// like a process on another one (the member lock cannot see it).
fn elsewhere(path: &str, topic: &str, id: &str, tmp: &std::path::Path) -> Running {
    Running::start_with_env(
        &["consume", path, "--topic", topic, "--quiet", "--instance-id", id],
        &[
            ("TMPDIR", tmp.to_str().expect("utf-8 path")),
            ("XDG_RUNTIME_DIR", tmp.to_str().expect("utf-8 path")),
        ],
    )
}

fn other_machine_tmp() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(unique("elsewhere"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn payloads(from: usize, n: usize) -> Vec<Option<Vec<u8>>> {
    (from..from + n)
        .map(|i| Some(format!("{{\"n\":{i}}}").into_bytes()))
        .collect()
}

/// A fence with no other process left holding the id (what a restarted
/// broker does by itself, here made by a twin "on another machine" that is
/// killed as soon as it fenced the sink): the sink joins again after a pause
/// and goes on storing, each message once.
#[test]
fn a_fence_nobody_keeps_up_is_survived_by_joining_again() {
    let topic = unique("fence_once");
    let table = unique("fence_once_rows");
    let path = SHARED.one_sink_pipeline(&topic, 2, &table);
    let path = path.to_str().expect("utf-8 path");
    let id = unique("lone");
    let group = format!("wasm-stream-{table}");
    let db = SHARED.db();
    common::produce_raw(&topic, &payloads(0, 500));
    let sink = Running::member(path, &topic, &id);
    common::wait_for("the first messages to be stored", Duration::from_secs(60), || {
        db.count(&table) == 500
    });
    let tmp = other_machine_tmp();
    let twin = elsewhere(path, &topic, &id, &tmp);
    common::wait_for("the sink to be fenced", Duration::from_secs(60), || {
        sink.log().contains("joining again with a new consumer")
    });
    drop(twin);
    common::produce_raw(&topic, &payloads(500, 500));
    let stored = Instant::now();
    while db.count(&table) < 1000 && stored.elapsed() < Duration::from_secs(90) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let tally = db.tally(&table, &topic, &SHARED.end_offsets(&topic));
    let members = SHARED.group_members(&group);
    let log = sink.terminate();
    assert_eq!(
        (tally.stored, tally.duplicates, tally.missing),
        (1000, 0, 0),
        "every message stored once after the fence; group {members:?}\n{log}"
    );
    assert!(log.contains("joining the consumer group again"), "{log}");
}

/// Two processes with one id on two machines: the lock cannot tell, but the
/// fences repeat (each rejoin fences the other), and one of them stops with
/// the message that names the fix while the other goes on.
#[test]
fn twins_on_two_machines_end_with_one_stopped_naming_the_id() {
    let topic = unique("fence_twins");
    let table = unique("fence_twins_rows");
    let path = SHARED.one_sink_pipeline(&topic, 2, &table);
    let path = path.to_str().expect("utf-8 path");
    let id = unique("twin");
    let group = format!("wasm-stream-{table}");
    let mut first = Running::member(path, &topic, &id);
    common::wait_for("the first process to join", Duration::from_secs(60), || {
        SHARED.group_members(&group).len() == 1
    });
    let tmp = other_machine_tmp();
    let mut second = elsewhere(path, &topic, &id, &tmp);
    let deadline = Instant::now() + Duration::from_secs(150);
    let (stopped, running) = loop {
        if first.child.try_wait().expect("wait").is_some() {
            break (first, second);
        }
        if second.child.try_wait().expect("wait").is_some() {
            break (second, first);
        }
        assert!(
            Instant::now() < deadline,
            "neither twin stopped\nfirst:\n{}\nsecond:\n{}",
            first.log(),
            second.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = stopped.log();
    assert!(
        log.contains("--instance-id") && log.contains(&id) && log.contains("fenced again"),
        "the stopped twin names the id, the fix and the repeated fence:\n{log}"
    );
    running.terminate();
}
