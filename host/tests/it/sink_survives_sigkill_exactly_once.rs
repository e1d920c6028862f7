//! Kill the consuming host with SIGKILL at random moments during a
//! 20,000-message run, restarting it each time: in the end every offset is in
//! the table exactly once.
use crate::support::common;

use common::{
    Db, Random, SinkPipeline, assert_each_offset_once, consume_through_sigkills, create_topic, host_ok, read_topic,
    unique,
};

const MESSAGES: u64 = 20_000;
const KILLS: usize = 6;

#[test]
fn every_offset_lands_once_through_repeated_sigkills() {
    let topic = unique("kill");
    let table = unique("kill_rows");
    create_topic(&topic, 2);
    let path = SinkPipeline::new(&topic, &table, "json_row")
        .partitions(2)
        .batch_size(50)
        .sink_line("flush_interval_ms = 50")
        .generator("load", MESSAGES, 0)
        .write();
    let path = path.to_str().expect("utf-8 path");

    // Produce everything first (the producer is not what this test kills).
    host_ok(&["produce", path, "--quiet"]);
    let kafka = read_topic(&topic);
    assert_eq!(kafka.len() as u64, MESSAGES);

    let db = Db::connect();
    let mut random = Random::new();
    // Kill it at random points once it has written something new, then finish the run.
    let rows_at_kills = consume_through_sigkills(path, KILLS, &mut random, || count(&db, &table));

    let mid_run = rows_at_kills
        .iter()
        .filter(|r| **r > 0 && (**r as u64) < MESSAGES)
        .count();
    assert!(
        mid_run >= 3,
        "at least three kills landed mid-run, rows at kills: {rows_at_kills:?}"
    );

    let offsets = db.offsets(&table);
    assert_eq!(
        offsets.len() as u64,
        MESSAGES,
        "row count; rows at kills: {rows_at_kills:?}"
    );
    for p in 0..2 {
        let in_kafka = kafka.iter().filter(|m| m.partition == p).count() as i64;
        assert_each_offset_once(&offsets, i64::from(p), in_kafka);
    }
    println!("rows at each kill: {rows_at_kills:?}");
}

fn count(db: &Db, table: &str) -> i64 {
    let exists = db.query("SELECT to_regclass($1) IS NOT NULL", &[&format!("\"{table}\"")]);
    if !exists[0].get::<_, bool>(0) {
        return 0;
    }
    db.query(&format!("SELECT count(*) FROM \"{table}\""), &[])[0].get(0)
}
