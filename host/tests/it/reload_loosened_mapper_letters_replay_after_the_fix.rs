//! A mapper loosened by a swap under load: its settings now declare nullable
//! a column its table holds NOT NULL. The host keeps the table's rule, warns
//! with the statement that would relax it, and the messages with NULL there
//! become dead letters with PostgreSQL's reason while the rest is stored. A
//! replay before the fix keeps them (with that reason) without failing; once
//! the user runs the statement, a replay stores every letter, and every
//! message is in the table exactly once.
use crate::support::common;

use common::{Db, Running, SinkPipeline, create_topic, host_ok, produce_keyed, replace_atomically, unique, wait_for};
use std::time::Duration;

const COUNT: i64 = 3_000;
/// Every this many messages, one with no `v`.
const NULL_EVERY: i64 = 10;

fn settings(nullable: bool) -> String {
    format!(
        r#"[sinks.settings]
columns = [
  {{ name = "seq", type = "integer" }},
  {{ name = "v", type = "text", nullable = {nullable} }},
]"#
    )
}

fn letters(db: &Db, topic: &str) -> Vec<(i64, String)> {
    db.dead_letters(topic).into_iter().map(|(o, _, r)| (o, r)).collect()
}

#[test]
fn a_loosened_mapper_warns_and_its_letters_replay_after_the_fix() {
    let topic = unique("loosened");
    let table = unique("loosened_rows");
    // A replay selects letters by sink name: one no other test uses.
    let sink = unique("loosened_sink");
    create_topic(&topic, 1);
    let pipeline = |nullable: bool| {
        SinkPipeline::new(&topic, &table, "json_columns")
            .name(&sink)
            .batch_size(100)
            .sink_line("flush_interval_ms = 20")
            .extra(&settings(nullable))
    };
    let path = pipeline(false).write();
    let p = path.to_str().expect("utf-8");
    let host = Running::start(&["run", p]);

    // Under load: messages keep coming while the mapper is swapped; the
    // second half only once the swap is applied, so it is mid-stream.
    let (swapped, swap_applied) = std::sync::mpsc::channel::<()>();
    let producer = {
        let topic = topic.clone();
        std::thread::spawn(move || {
            for (i, chunk) in (0..COUNT).collect::<Vec<_>>().chunks(100).enumerate() {
                if i == 15 {
                    swap_applied
                        .recv_timeout(Duration::from_secs(60))
                        .expect("the swap is applied");
                }
                let messages: Vec<common::Keyed> = chunk
                    .iter()
                    .map(|seq| {
                        let payload = if seq % NULL_EVERY == 3 {
                            format!(r#"{{"seq": {seq}}}"#)
                        } else {
                            format!(r#"{{"seq": {seq}, "v": "v{seq}"}}"#)
                        };
                        (0, seq.to_string().into_bytes(), Some(payload.into_bytes()))
                    })
                    .collect();
                produce_keyed(&topic, &messages);
                std::thread::sleep(Duration::from_millis(60));
            }
        })
    };
    let db = Db::connect();
    let stored = |db: &Db| -> i64 {
        db.query(
            "SELECT COALESCE(MAX(next_offset), 0) FROM wasm_stream_offsets WHERE table_name = $1",
            &[&table],
        )[0]
        .get(0)
    };
    wait_for("the first batches", Duration::from_secs(60), || stored(&db) > 300);
    // The new body: the same sink, its mapper's `v` now nullable.
    let text = std::fs::read_to_string(&path).expect("read pipeline");
    let connections = &text[..text.find("[[topics]]").expect("the head is written first")];
    replace_atomically(&path, format!("{connections}{}", pipeline(true).body()).as_bytes());
    wait_for("the swap", Duration::from_secs(60), || {
        host.log().contains("mapper swapped")
    });
    swapped.send(()).expect("the producer waits");
    producer.join().expect("producer");
    wait_for("every message settled", Duration::from_secs(120), || {
        stored(&db) >= COUNT
    });
    let log = host.terminate();

    // The table kept its rule; the warning names the statement that relaxes it.
    let relax = format!("ALTER TABLE \"{table}\" ALTER COLUMN \"v\" DROP NOT NULL;");
    assert!(log.contains(&relax), "the warning with the statement:\n{log}");
    let nullable: bool = db.query(
        "SELECT is_nullable = 'YES' FROM information_schema.columns WHERE table_name = $1 AND column_name = 'v'",
        &[&table],
    )[0]
    .get(0);
    assert!(!nullable, "the host never loosens the table");

    // Before the swap the mapper refused the messages without `v`; after it,
    // PostgreSQL did. Either way each is a letter, and only they are.
    let nulls: Vec<i64> = (0..COUNT).filter(|s| s % NULL_EVERY == 3).collect();
    let before = letters(&db, &topic);
    assert_eq!(before.iter().map(|l| l.0).collect::<Vec<_>>(), nulls);
    let by_postgres = before
        .iter()
        .filter(|l| l.1.contains("PostgreSQL refused the row") && l.1.contains("not-null constraint"))
        .count();
    assert!(
        by_postgres > 0,
        "some letters come from PostgreSQL after the swap: {before:?}"
    );
    let rows = |db: &Db| -> Vec<i64> {
        db.query(&format!("SELECT seq FROM \"{table}\" ORDER BY seq"), &[])
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    assert_eq!(rows(&db).len() as i64, COUNT - nulls.len() as i64);

    // A replay before the fix fails no letter as a whole: each stays, with
    // PostgreSQL's reason.
    host_ok(&["dead-letters", "replay", p]);
    let kept = letters(&db, &topic);
    assert_eq!(kept.len(), nulls.len(), "a replay before the fix stores none");
    assert!(
        kept.iter().all(|l| l.1.contains("not-null constraint")),
        "each keeps PostgreSQL's reason: {kept:?}"
    );

    // The user runs the statement; a replay stores every letter.
    db.execute(&relax);
    host_ok(&["dead-letters", "replay", p]);
    assert!(letters(&db, &topic).is_empty(), "every letter stored");
    assert_eq!(rows(&db), (0..COUNT).collect::<Vec<_>>(), "every message once");
}
