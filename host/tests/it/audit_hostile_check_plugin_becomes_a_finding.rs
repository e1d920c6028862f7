//! A check plugin that traps, loops forever or refuses its settings yields an
//! error finding about itself; the host neither crashes nor hangs, and the
//! other checks still report. The same holds in the periodic audit of
//! `host run`, which keeps the latest findings and stops when told.
use crate::support::{audit, common};

use audit::{check_entry, findings_about, json_report, produce_json, sink_body, sink_pipeline};
use common::{create_topic, host_within, load, unique, write_pipeline};
use host::audit::{Finding, Severity};
use std::time::{Duration, Instant};

fn hostile_checks() -> String {
    [
        check_entry("trapper", "hostile_check", "settings = { mode = \"trap\" }"),
        check_entry(
            "looper",
            "hostile_check",
            "settings = { mode = \"loop\" }\nlimits = { call_timeout_ms = 300 }",
        ),
        check_entry("refuser", "hostile_check", "settings = { mode = \"refuse\" }"),
        check_entry("sync-audit", "sync_audit", ""),
    ]
    .concat()
}

#[test]
fn trapping_looping_and_refusing_checks_become_findings_about_them() {
    let (topic, table) = (unique("hostilecheck"), unique("hostilecheck_rows"));
    create_topic(&topic, 1);
    produce_json(&topic, 0..3);
    let path = sink_pipeline(&topic, &table, &hostile_checks());
    let p = path.to_str().expect("utf-8");

    let started = Instant::now();
    let (code, report) = json_report(&["check", p, "sync", "--topic", &topic], Duration::from_secs(60));
    let took = started.elapsed();
    assert_eq!(code, 1, "{report:#}");

    let only = |subject: &str| {
        let about = findings_about(&report, subject);
        assert_eq!(about.len(), 1, "{report:#}");
        assert_eq!(about[0]["severity"], "error", "{report:#}");
        assert_eq!(about[0]["source"], "host", "{report:#}");
        about[0]["message"].as_str().expect("message").to_string()
    };
    let trapped = only("check trapper");
    assert!(trapped.contains("plugin check trapper trapped"), "{trapped}");
    assert!(
        trapped.contains("hostile-check: asked to trap on a snapshot of 1 partitions"),
        "{trapped}"
    );
    let looped = only("check looper");
    assert_eq!(
        looped,
        "plugin check looper did not return within its deadline of 300 ms (limits.call_timeout_ms)"
    );
    let refused = only("check refuser");
    assert!(
        refused.contains("hostile-check: asked to refuse its settings"),
        "{refused}"
    );

    // The well-behaved check still ran: nothing is stored, 3 messages wait.
    let sync = findings_about(&report, &format!("{topic}/0"));
    assert_eq!(sync.len(), 1, "{report:#}");
    assert_eq!(sync[0]["source"], "check sync-audit");
    assert_eq!(sync[0]["message"], "nothing stored or committed yet");
    assert!(
        took < Duration::from_secs(20),
        "a looping check held the audit for {took:?}"
    );
    eprintln!("check with a trapping, a looping and a refusing plugin took {took:?}");

    // The text report names them too.
    let out = host_within(&["check", p, "sync", "--topic", &topic], Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ERROR    check looper: plugin check looper did not return"),
        "{text}"
    );
}

#[test]
fn periodic_audit_keeps_the_latest_findings_and_stops() {
    let (topic, table) = (unique("periodic"), unique("periodic_rows"));
    create_topic(&topic, 1);
    let checks = [
        check_entry("trapper", "hostile_check", "settings = { mode = \"trap\" }"),
        check_entry("sync-audit", "sync_audit", ""),
    ]
    .concat();
    let pipeline = load(&write_pipeline(&sink_body(&topic, &table, &checks)));

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let runtime = host::plugins::Runtime::new().expect("plugin runtime");
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let interval = Duration::from_millis(500);
        let (task, latest) = host::audit::spawn_periodic(pipeline, runtime, interval, stop_rx);

        let deadline = Instant::now() + Duration::from_secs(30);
        let findings: Vec<Finding> = loop {
            let now = latest.lock().expect("lock").clone();
            if !now.is_empty() {
                break now;
            }
            assert!(Instant::now() < deadline, "no audit round within 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let trap = findings
            .iter()
            .find(|f| f.subject == "check trapper")
            .unwrap_or_else(|| panic!("{findings:#?}"));
        assert_eq!(trap.severity, Severity::Error);
        assert!(trap.message.contains("asked to trap"), "{}", trap.message);
        assert!(
            findings
                .iter()
                .any(|f| f.source == "check sync-audit" && f.subject == format!("{topic}/0")),
            "{findings:#?}"
        );

        // A second round replaces the first, the trapped plugin started afresh.
        // Waited for, not timed: a round reads Kafka and PostgreSQL, which
        // took longer than three intervals once beside the other areas.
        latest.lock().expect("lock").clear();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !latest
            .lock()
            .expect("lock")
            .iter()
            .any(|f| f.subject == "check trapper")
        {
            assert!(
                Instant::now() < deadline,
                "no later round reported the trapped check within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        stop_tx.send(true).expect("stop");
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the audit stops when told")
            .expect("the audit task ends cleanly");
    });
}
