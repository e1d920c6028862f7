//! `host dead-letters replay` runs letters through the sink's current mapper
//! while `host run` produces to and sinks into the same table, and two
//! replays run at once:
//! every letter the mapper now accepts becomes exactly one row and is gone,
//! every Kafka message is stored exactly once, and the letters still rejected
//! stay with the new reason and a replay count.
use crate::support::common;

use common::{Db, Running, SinkPipeline, assert_each_offset_once, host_ok, unique};
use std::time::Duration;

#[test]
fn replaying_while_a_sink_writes_neither_loses_nor_doubles() {
    let topic = unique("replay");
    let table = unique("replay_rows");
    let sink = unique("replay_sink");
    let messages = 4000;
    let path = SinkPipeline::new(&topic, &table, "hostile_mapper")
        .name(&sink)
        .batch_size(20)
        .sink_line("flush_interval_ms = 5")
        // 4 ms apart: the generator runs for ~16 s, so the sink is still
        // writing while the two replays run (at 1 ms it could finish first).
        .generator("gen", messages, 4)
        .extra("[http]\nlisten = \"\"\n\n[audit]\ninterval_ms = 0")
        .write();
    let path = path.to_str().expect("utf-8");

    // Letters an older mapper rejected: offsets past the topic's end, so the
    // rows they become are told apart from the sink's. Every tenth payload is
    // `trap`, which the current mapper still cannot map.
    let letters = 3000i64;
    let db = Db::connect();
    host_ok(&["dead-letters", "list", path]); // creates the host's tables
    db.execute(&format!(
        "INSERT INTO wasm_stream_dead_letters (sink, topic, partition, \"offset\", payload, reason, plugin)
         SELECT '{sink}', '{topic}', 0, 100000 + g,
                convert_to(CASE WHEN g % 10 = 0 THEN 'trap' ELSE 'letter ' || g END, 'UTF8'),
                'rejected: an old mapper', 'old.wasm'
         FROM generate_series(0, {last}) AS g",
        last = letters - 1
    ));

    let run = Running::start(&["run", path, "--no-watch"]);
    // Replay once the sink is writing, twice at once.
    common::wait_for("the sink writing", Duration::from_secs(60), || {
        !db.query(
            "SELECT 1 FROM information_schema.tables WHERE table_name = $1",
            &[&table],
        )
        .is_empty()
            && db.offsets(&table).len() > 40
    });
    let replay = |p: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_host"))
            .args(["dead-letters", "replay", p, "--sink", &sink])
            .output()
            .expect("run replay")
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| replay(path));
        let b = s.spawn(|| replay(path));
        (a.join().expect("replay a"), b.join().expect("replay b"))
    });
    for out in [&a, &b] {
        assert!(
            out.status.success(),
            "replay failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    common::wait_for("the sink caught up", Duration::from_secs(120), || {
        db.offsets(&table).iter().filter(|(_, o)| *o < 100_000).count() >= messages as usize
    });
    // The sink wrote while the replays did: some of its rows were inserted
    // between the first and the last replayed row.
    let interleaved: i64 = db.query(
        &format!(
            "WITH r AS (SELECT min(message_id) AS lo, max(message_id) AS hi FROM \"{table}\" WHERE offset_id >= 100000)
             SELECT count(*) FROM \"{table}\", r WHERE offset_id < 100000 AND message_id BETWEEN r.lo AND r.hi"
        ),
        &[],
    )[0]
    .get(0);
    run.terminate();

    let offsets = db.offsets(&table);
    type Rows = Vec<(i64, i64)>;
    let (kafka, replayed): (Rows, Rows) = offsets.into_iter().partition(|(_, o)| *o < 100_000);
    assert_each_offset_once(&kafka, 0, messages);
    // Every letter but the traps became exactly one row.
    let mut expected: Vec<i64> = (0..letters).filter(|g| g % 10 != 0).map(|g| 100_000 + g).collect();
    let mut got: Vec<i64> = replayed.iter().map(|(_, o)| *o).collect();
    got.sort_unstable();
    expected.sort_unstable();
    assert_eq!(got.len(), expected.len(), "replayed rows (a duplicate or a loss)");
    assert_eq!(got, expected);
    // The traps stay, with the new reason and a replay count.
    let left = db.query(
        "SELECT \"offset\", reason, replays FROM wasm_stream_dead_letters WHERE sink = $1 ORDER BY \"offset\"",
        &[&sink],
    );
    let left_offsets: Vec<i64> = left.iter().map(|r| r.get(0)).collect();
    let traps: Vec<i64> = (0..letters).filter(|g| g % 10 == 0).map(|g| 100_000 + g).collect();
    assert_eq!(left_offsets, traps);
    for r in &left {
        let (reason, replays): (String, i32) = (r.get(1), r.get(2));
        assert!(reason.contains("trapped"), "new reason: {reason}");
        assert!(replays >= 1, "replay count {replays}");
    }
    // Said what it did.
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&a.stdout),
        String::from_utf8_lossy(&b.stdout)
    );
    assert!(said.contains("Replayed:"), "{said}");
    assert!(interleaved > 0, "the sink wrote nothing while the replays ran");
    eprintln!("sink rows written between the first and last replayed row: {interleaved}");
}

#[test]
fn list_and_show_filter_by_sink_id_and_time() {
    let sink = unique("listed");
    let topic = unique("listed_topic");
    let path = SinkPipeline::new(&topic, &unique("listed_rows"), "json_row")
        .name(&sink)
        .write();
    let path = path.to_str().expect("utf-8");
    host_ok(&["dead-letters", "list", path]);
    let db = Db::connect();
    db.execute(&format!(
        "INSERT INTO wasm_stream_dead_letters (sink, topic, partition, \"offset\", payload, reason, plugin, created_at)
         VALUES ('{sink}', '{topic}', 0, 7, '\\xfffe'::bytea, 'rejected: not UTF-8', 'x.wasm', now() - interval '3 hours'),
                ('{sink}', '{topic}', 0, 9, convert_to('not json', 'UTF8'), 'rejected: not JSON', 'x.wasm', now())"
    ));
    let ids: Vec<i64> = db
        .query(
            "SELECT id FROM wasm_stream_dead_letters WHERE sink = $1 ORDER BY \"offset\"",
            &[&sink],
        )
        .iter()
        .map(|r| r.get(0))
        .collect();
    let out = host_ok(&["dead-letters", "list", path, "--sink", &sink]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("2 dead letter(s)"), "{text}");
    let out = host_ok(&["dead-letters", "list", path, "--sink", &sink, "--since", "1h"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1 dead letter(s)") && text.contains("not JSON"), "{text}");
    let out = host_ok(&["dead-letters", "show", path, "--id", &ids[0].to_string()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("0xfffe (2 bytes, not UTF-8)") && text.contains("offset 7"),
        "{text}"
    );
    let out = common::host(&["dead-letters", "list", path, "--since", "yesterday-ish"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--since \"yesterday-ish\""));
    let out = common::host(&["dead-letters", "list", path, "--sink", "nope"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--sink \"nope\" is not a sink"));
}
