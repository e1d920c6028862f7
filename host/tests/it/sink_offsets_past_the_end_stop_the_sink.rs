//! A topic deleted and created again (or a database whose offsets came from
//! another Kafka cluster) leaves PostgreSQL's next offset past the end of the
//! topic. The sink must not take the new messages below it for stored ones
//! and skip them: it stops before reading, says why and what to run, and
//! `host check sync` reports it; once the stored offsets are deleted as the
//! error says, every message of the topic lands.
use crate::support::{audit, common};

use audit::{assert_says, check_entry, check_sync, consume_once, findings_about, produce_json, sink_pipeline};
use common::{Db, create_topic, host_within, unique};
use std::time::Duration;

#[test]
fn a_stored_offset_past_the_end_stops_the_sink_until_it_is_cleared() {
    let topic = unique("past_end");
    let table = unique("past_end_rows");
    create_topic(&topic, 1);
    produce_json(&topic, 0..5);
    let path = sink_pipeline(&topic, &table, &check_entry("sync-audit", "sync_audit", ""));
    let p = path.to_str().expect("utf-8");
    consume_once(&path, &topic);
    let db = Db::connect();
    assert_eq!(db.offsets(&table).len(), 5);

    // What a topic created again leaves behind: the database's next offset
    // (8) is past the topic's end (7), so offsets 5 and 6 would count as
    // stored.
    db.execute(&format!(
        "UPDATE wasm_stream_offsets SET next_offset = 8 WHERE table_name = '{table}'"
    ));
    produce_json(&topic, 5..7);

    let out = host_within(
        &["consume", p, "--topic", &topic, "--once", "--quiet"],
        Duration::from_secs(120),
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "the sink must stop: {stderr}");
    assert_says(
        &stderr,
        &[
            &format!("past the end of topic {topic}"),
            &format!("{topic}/0: stored next offset 8, Kafka's log starts at 0 and ends at 7"),
            "created again",
        ],
    );
    assert_eq!(db.offsets(&table).len(), 5, "nothing written meanwhile");

    let (code, report) = check_sync(&path, &topic);
    assert_ne!(code, 0, "{report:#}");
    let about = findings_about(&report, &format!("{topic}/0"));
    assert!(
        about
            .iter()
            .any(|f| f["severity"] == "error" && f["message"].as_str().is_some_and(|m| m.contains("past the end"))),
        "sync-audit names it: {report:#}"
    );

    // The statement the error gives, as a user would paste it.
    let delete = stderr
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("DELETE FROM"))
        .unwrap_or_else(|| panic!("the error gives the statement to run: {stderr}"));
    db.execute(delete);
    consume_once(&path, &topic);

    // The whole topic again (0-6; the rows of offsets 0-4 from before stay),
    // and the stored offset at its end.
    let offsets: Vec<i64> = db.offsets(&table).into_iter().map(|(_, o)| o).collect();
    assert_eq!(offsets, vec![0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 6]);
    let next: i64 = db.query(
        "SELECT next_offset FROM wasm_stream_offsets WHERE table_name = $1",
        &[&table],
    )[0]
    .get(0);
    assert_eq!(next, 7);
}
