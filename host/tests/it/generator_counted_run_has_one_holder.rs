//! A counted generator run is produced by one process: a second process
//! started while the first holds the run refuses (and the topic ends with the
//! count exactly once), a process that joined late defers to the holder
//! whatever its member id, and a holder that lost its run (paused past the
//! session timeout while another took over) stops producing when it wakes.
use crate::support::common;

use common::{Running, SinkPipeline, create_topic, kafka_config, read_topic, topic_size, unique, wait_for};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

/// Kills the process when the test ends, pass or fail.
struct Killed(Option<Running>);

impl Killed {
    fn pid(&self) -> String {
        self.0.as_ref().expect("running").child.id().to_string()
    }

    /// Waits for the process to exit by itself: (success, log).
    fn exit_within(&mut self, limit: Duration) -> (bool, String) {
        let running = self.0.as_mut().expect("running");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = running.child.try_wait().expect("wait") {
                return (status.success(), running.log());
            }
            assert!(
                Instant::now() < deadline,
                "still running after {limit:?}:\n{}",
                running.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        if let Some(mut r) = self.0.take() {
            let _ = std::process::Command::new("kill")
                .args(["-CONT", &r.child.id().to_string()])
                .stderr(std::process::Stdio::null())
                .status();
            let _ = r.child.kill();
            let _ = r.child.wait();
        }
    }
}

fn produce(path: &std::path::Path) -> Killed {
    Killed(Some(Running::start(&["produce", path.to_str().expect("utf-8")])))
}

#[test]
fn a_process_started_while_the_run_is_held_refuses_and_the_count_lands_once() {
    let topic = unique("lease_staggered");
    let count = 300;
    let path = SinkPipeline::new(&topic, &unique("lease_staggered_rows"), "json_row")
        .generator("gen", count, 20)
        .write();
    let mut first = produce(&path);
    wait_for("the first process produces", Duration::from_secs(60), || {
        topic_size(&topic) > 0
    });
    let mut second = produce(&path);
    let (ok, log) = second.exit_within(Duration::from_secs(60));
    assert!(!ok, "the second process must refuse:\n{log}");
    assert!(log.contains("is already producing its counted run"), "{log}");
    let (ok, log) = first.exit_within(Duration::from_secs(120));
    assert!(ok, "the holder finishes its run:\n{log}");
    let read = read_topic(&topic);
    assert_eq!(read.len() as i64, count, "the topic holds the count once");
}

#[test]
fn a_late_joiner_defers_to_the_holder_whatever_its_member_id() {
    let topic = unique("lease_race");
    create_topic(&topic, 1);
    let cfg = kafka_config();
    // The late one looks first (the group is empty), then joins only after
    // the other holds the run. Its client id sorts first, and member ids
    // start with the client id: the smallest-id rule alone would let it win.
    let late = {
        let (cfg, topic) = (cfg.clone(), topic.clone());
        std::thread::spawn(move || {
            host::kafka::claim_counted_run_as(
                &cfg,
                &topic,
                "gen",
                "lease-race-a",
                Duration::from_secs(6),
                Arc::default(),
                Arc::new(AtomicBool::new(false)),
            )
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    let holder = host::kafka::claim_counted_run_as(
        &cfg,
        &topic,
        "gen",
        "lease-race-b",
        Duration::ZERO,
        Arc::default(),
        Arc::new(AtomicBool::new(false)),
    )
    .expect("the first to join holds the run");
    match late.join().expect("thread") {
        Ok(_) => panic!("both processes hold the counted run"),
        Err(e) => {
            let e = format!("{e:#}");
            assert!(
                e.contains("is already producing its counted run") && e.contains("lease-race-b"),
                "{e}"
            );
        }
    }
    assert!(!holder.lost());
}

#[test]
fn a_holder_that_lost_its_run_stops_producing() {
    let topic = unique("lease_lost");
    let count = 400;
    let path = SinkPipeline::new(&topic, &unique("lease_lost_rows"), "json_row")
        .generator("gen", count, 25)
        .write();
    let mut paused = produce(&path);
    wait_for("the first process produces", Duration::from_secs(60), || {
        topic_size(&topic) > 0
    });
    let stop = std::process::Command::new("kill")
        .args(["-STOP", &paused.pid()])
        .status()
        .expect("kill -STOP");
    assert!(stop.success());
    let before = topic_size(&topic);
    // Out of its group after the session timeout (10 s): another process may
    // take the run over, and does.
    std::thread::sleep(Duration::from_secs(16));
    let mut successor = produce(&path);
    wait_for("the successor produces", Duration::from_secs(60), || {
        topic_size(&topic) > before
    });
    let cont = std::process::Command::new("kill")
        .args(["-CONT", &paused.pid()])
        .status()
        .expect("kill -CONT");
    assert!(cont.success());
    let (ok, log) = paused.exit_within(Duration::from_secs(30));
    assert!(!ok, "the paused process must stop with an error:\n{log}");
    assert!(log.contains("another process took its counted run"), "{log}");
    let (ok, log) = successor.exit_within(Duration::from_secs(120));
    assert!(ok, "the successor finishes the run:\n{log}");
    // The paused process's messages before the pause stay (and the few its
    // Kafka client had queued when it was paused); after waking it called
    // its plugin no more.
    let total = read_topic(&topic).len() as i64;
    assert!(
        (before + count..=before + count + 5).contains(&total),
        "{total} messages: {before} before the pause, then the successor's {count}"
    );
}
