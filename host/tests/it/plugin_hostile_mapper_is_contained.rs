//! A mapper that traps on some messages, loops forever on others, grows memory
//! without end on others: the host stays up, those messages are dead-lettered
//! with the reason, the rest flow. Text PostgreSQL cannot store (a NUL byte) is
//! dead-lettered too, instead of failing the whole batch. Outcomes past
//! `max_output_bytes`, in one call or in one batch, are dead-lettered.
use crate::support::common;

use common::{Db, SinkPipeline, create_topic, host_ok, produce_raw, unique};

#[test]
fn traps_loops_and_memory_hogs_become_dead_letters() {
    let topic = unique("hostile");
    let table = unique("hostile_rows");
    create_topic(&topic, 1);
    let words = ["a", "trap", "b", "loop", "c", "grow", "d", "trap", "e", "nul\0byte"];
    produce_raw(
        &topic,
        &words.iter().map(|w| Some(w.as_bytes().to_vec())).collect::<Vec<_>>(),
    );
    let path = SinkPipeline::new(&topic, &table, "hostile_mapper")
        .name("hostile")
        .batch_size(100)
        .extra("[sinks.limits]\ncall_timeout_ms = 300\nmemory_limit_bytes = 33554432")
        .write();
    let out = host_ok(&["consume", path.to_str().expect("utf-8"), "--once", "--quiet"]);

    let db = Db::connect();
    let rows = db.query(
        &format!("SELECT payload, offset_id FROM \"{table}\" ORDER BY offset_id"),
        &[],
    );
    let stored: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        stored,
        vec![
            ("a".into(), 0),
            ("b".into(), 2),
            ("c".into(), 4),
            ("d".into(), 6),
            ("e".into(), 8)
        ],
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dead = db.dead_letters(&topic);
    let reasons: Vec<(i64, &str)> = dead.iter().map(|d| (d.0, d.2.as_str())).collect();
    assert_eq!(reasons.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 3, 5, 7, 9]);
    assert!(
        reasons[0].1.contains("trapped") && reasons[0].1.contains("asked to trap at offset 1"),
        "{}",
        reasons[0].1
    );
    assert!(reasons[1].1.contains("deadline of 300 ms"), "{}", reasons[1].1);
    assert!(
        reasons[2].1.contains("memory limit of 33554432 bytes"),
        "{}",
        reasons[2].1
    );
    assert!(reasons[3].1.contains("asked to trap at offset 7"), "{}", reasons[3].1);
    assert!(
        reasons[4].1.contains("NUL byte, which PostgreSQL cannot store"),
        "{}",
        reasons[4].1
    );
}

#[test]
fn outcomes_past_max_output_bytes_become_dead_letters() {
    let topic = unique("huge");
    let table = unique("huge_rows");
    create_topic(&topic, 1);
    // 3 MiB fits in 4 MiB; a second 3 MiB row in the same batch does not,
    // nor does a 5 MiB row on its own; the small rows after them still fit.
    let words = ["a", "huge:3", "huge:3", "b", "huge:5", "c"];
    produce_raw(
        &topic,
        &words.iter().map(|w| Some(w.as_bytes().to_vec())).collect::<Vec<_>>(),
    );
    let path = SinkPipeline::new(&topic, &table, "hostile_mapper")
        .name("huge")
        .batch_size(100)
        .extra("[sinks.limits]\nmax_output_bytes = 4194304")
        .write();
    let out = host_ok(&["consume", path.to_str().expect("utf-8"), "--once", "--quiet"]);

    let db = Db::connect();
    let rows = db.query(
        &format!("SELECT offset_id, length(payload) FROM \"{table}\" ORDER BY offset_id"),
        &[],
    );
    let stored: Vec<(i64, i32)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        stored,
        vec![(0, 1), (1, 3 << 20), (3, 1), (5, 1)],
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dead = db.dead_letters(&topic);
    assert_eq!(dead.iter().map(|d| d.0).collect::<Vec<_>>(), vec![2, 4]);
    for (offset, _, reason) in &dead {
        assert!(
            reason
                .contains("plugin sink huge returned more than 4194304 bytes for one batch (limits.max_output_bytes)"),
            "offset {offset}: {reason}"
        );
    }
}
