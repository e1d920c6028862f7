//! A plugin that sleeps in a WASI call (`std::thread::sleep` of ten minutes),
//! or sleeps 5 ms at a time forever, is out of reach of epoch interruption:
//! its call must still end at `call_timeout_ms`. A mapper's message becomes
//! a dead letter, a generator is restarted and goes on producing, a check
//! becomes an error finding; a plugin sleeping in `configure` fails to load
//! with the same timeout instead of holding the host.
use crate::support::{audit, common};

use audit::{check_entry, findings_about, json_report, produce_json, sink_pipeline};
use common::{
    Db, Running, SinkPipeline, create_topic, host_within, plugin, produce_raw, read_topic, unique, write_pipeline,
};
use std::time::{Duration, Instant};

/// Far below the fixture's ten-minute sleeps, far above the 300 ms deadlines.
const BOUND: Duration = Duration::from_secs(60);

#[test]
fn sleeping_mapper_messages_become_dead_letters_at_the_deadline() {
    let topic = unique("sleepy");
    let table = unique("sleepy_rows");
    create_topic(&topic, 1);
    let words = ["a", "sleep", "b", "naps", "c"];
    produce_raw(
        &topic,
        &words.iter().map(|w| Some(w.as_bytes().to_vec())).collect::<Vec<_>>(),
    );
    let path = SinkPipeline::new(&topic, &table, "hostile_mapper")
        .name("sleepy")
        .batch_size(100)
        .extra("[sinks.limits]\ncall_timeout_ms = 300")
        .write();
    let started = Instant::now();
    let out = host_within(&["consume", path.to_str().expect("utf-8"), "--once", "--quiet"], BOUND);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    eprintln!(
        "a batch with a sleeping and a napping message took {:?}",
        started.elapsed()
    );

    let db = Db::connect();
    let rows = db.query(&format!("SELECT payload FROM \"{table}\" ORDER BY offset_id"), &[]);
    let stored: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(stored, ["a", "b", "c"], "{stderr}");
    let dead = db.dead_letters(&topic);
    assert_eq!(dead.iter().map(|d| d.0).collect::<Vec<_>>(), [1, 3], "{stderr}");
    for (offset, _, reason) in &dead {
        assert!(
            reason.contains("plugin sink sleepy did not return within its deadline of 300 ms"),
            "offset {offset}: {reason}"
        );
    }
}

#[test]
fn mapper_sleeping_in_configure_fails_to_load_at_the_deadline() {
    let topic = unique("sleepy_configure");
    let table = unique("sleepy_configure_rows");
    create_topic(&topic, 1);
    let path = SinkPipeline::new(&topic, &table, "hostile_mapper")
        .name("drowsy")
        .extra("[sinks.settings]\nsleep_in_configure = true\n[sinks.limits]\ncall_timeout_ms = 300")
        .write();
    let out = host_within(&["consume", path.to_str().expect("utf-8"), "--once", "--quiet"], BOUND);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("plugin sink drowsy did not return within its deadline of 300 ms"),
        "{stderr}"
    );
}

#[test]
fn sleeping_checks_become_findings_at_the_deadline() {
    let (topic, table) = (unique("sleepycheck"), unique("sleepycheck_rows"));
    create_topic(&topic, 1);
    produce_json(&topic, 0..3);
    let limits = "limits = { call_timeout_ms = 300 }";
    let checks = [
        check_entry(
            "sleeper",
            "hostile_check",
            &format!("settings = {{ mode = \"sleep\" }}\n{limits}"),
        ),
        check_entry(
            "napper",
            "hostile_check",
            &format!("settings = {{ mode = \"naps\" }}\n{limits}"),
        ),
        check_entry(
            "slow-starter",
            "hostile_check",
            &format!("settings = {{ mode = \"sleep-in-configure\" }}\n{limits}"),
        ),
        check_entry("sync-audit", "sync_audit", ""),
    ]
    .concat();
    let path = sink_pipeline(&topic, &table, &checks);
    let p = path.to_str().expect("utf-8");

    let (code, report) = json_report(&["check", p, "sync", "--topic", &topic], BOUND);
    assert_eq!(code, 1, "{report:#}");
    for name in ["sleeper", "napper", "slow-starter"] {
        let about = findings_about(&report, &format!("check {name}"));
        assert_eq!(about.len(), 1, "{report:#}");
        assert_eq!(about[0]["severity"], "error", "{report:#}");
        let message = about[0]["message"].as_str().expect("message");
        assert!(
            message.contains(&format!(
                "plugin check {name} did not return within its deadline of 300 ms"
            )),
            "{message}"
        );
    }
    // The well-behaved check still ran.
    assert_eq!(findings_about(&report, &format!("{topic}/0")).len(), 1, "{report:#}");
}

/// Kills the host when the test ends, pass or fail.
struct KillOnDrop(Running);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.child.kill();
        let _ = self.0.child.wait();
    }
}

#[test]
fn sleeping_generators_are_restarted_and_reach_their_count() {
    const COUNT: usize = 12;
    let topic = unique("sleepy_gen");
    create_topic(&topic, 1);
    let hostile = plugin("hostile_generator");
    let mut body = format!("[audit]\ninterval_ms = 0\n\n[[topics]]\nname = \"{topic}\"\n");
    for mode in ["sleep", "naps"] {
        body.push_str(&format!(
            r#"
[[generators]]
name = "{mode}"
topic = "{topic}"
plugin = "{hostile}"
interval_ms = 1
count = {COUNT}
[generators.settings]
mode = "{mode}"
every = 2
[generators.limits]
call_timeout_ms = 300
"#,
            hostile = hostile.display(),
        ));
    }
    let path = write_pipeline(&body);
    let mut host = KillOnDrop(Running::start(&["run", path.to_str().expect("utf-8"), "--no-watch"]));

    let started = Instant::now();
    let mut produced = 0;
    while produced < 2 * COUNT {
        if let Ok(Some(status)) = host.0.child.try_wait() {
            panic!("host ended early ({status})\n{}", host.0.log());
        }
        assert!(
            started.elapsed() < BOUND,
            "{produced} of {} messages after {BOUND:?}: a sleeping call held its generator\n{}",
            2 * COUNT,
            host.0.log()
        );
        std::thread::sleep(Duration::from_millis(500));
        produced = read_topic(&topic).len();
    }
    eprintln!(
        "two sleeping generators made their {COUNT} messages each in {:?}",
        started.elapsed()
    );
    let log = host.0.log();
    assert!(log.contains("did not return within its deadline of 300 ms"), "{log}");
}
