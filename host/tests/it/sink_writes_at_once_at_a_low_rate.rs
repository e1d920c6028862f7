//! Adaptive batching: at a low rate a message is written as soon as the
//! consumer has nothing more buffered, not when `flush_interval_ms` ends.
//! The sink here waits up to a minute to fill a batch of 20,000, yet every
//! message, produced one at a time, is in its table within seconds, each
//! exactly once.
use crate::support::common;

use common::{Db, Running, SinkPipeline, create_topic, produce_raw, unique, wait_for};
use std::time::{Duration, Instant};

/// Far below the flush interval (a minute), well above a loaded machine's write.
const WITHIN: Duration = Duration::from_secs(15);

#[test]
fn each_message_lands_long_before_the_flush_interval() {
    let topic = unique("lowrate");
    let table = unique("lowrate_rows");
    create_topic(&topic, 1);
    let path = SinkPipeline::new(&topic, &table, "json_row")
        .sink_line("flush_interval_ms = 60000")
        .write();
    let host = Running::start(&["consume", path.to_str().expect("utf-8"), "--quiet"]);
    let db = Db::connect();
    let rows = || -> i64 {
        db.query(&format!("SELECT count(*) FROM \"{table}\""), &[])
            .first()
            .map_or(0, |r| r.get(0))
    };
    let table_exists = || {
        !db.query("SELECT 1 FROM pg_tables WHERE tablename = $1", &[&table])
            .is_empty()
    };
    // The first message also waits for the group join and the assignment.
    wait_for("the sink's table", Duration::from_secs(60), table_exists);
    produce_raw(&topic, &[Some(br#"{"n": 0}"#.to_vec())]);
    wait_for("the first row", Duration::from_secs(60), || rows() == 1);

    for n in 1..=3i64 {
        let sent = Instant::now();
        produce_raw(&topic, &[Some(format!(r#"{{"n": {n}}}"#).into_bytes())]);
        wait_for(&format!("row {} within {WITHIN:?}", n + 1), WITHIN, || rows() == n + 1);
        assert!(sent.elapsed() < WITHIN, "{}", host.log());
    }
    let stored: Vec<i64> = db
        .query(
            "SELECT next_offset FROM wasm_stream_offsets WHERE table_name = $1",
            &[&table],
        )
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(stored, vec![4], "every message settled once");
    let offsets: Vec<i64> = db
        .query(&format!("SELECT offset_id FROM \"{table}\" ORDER BY offset_id"), &[])
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(offsets, vec![0, 1, 2, 3]);
    drop(host);
}
