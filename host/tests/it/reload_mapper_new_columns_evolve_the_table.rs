//! Schema evolution through hot reload, under a steady stream: a mapper
//! reloaded with a new nullable column gets it added to the table at a batch
//! boundary (NULL before the swap, values after); a type change or a new NOT
//! NULL column is refused and the old mapper keeps writing. Every message
//! lands exactly once throughout.
use crate::support::common;

use common::{
    Db, Running, SinkPipeline, create_topic, produce_keyed, replace_atomically, unique, wait_for, write_pipeline,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

fn sink(topic: &str, table: &str, mode: &str, extra: &str) -> String {
    let body = SinkPipeline::new(topic, table, "kv_mapper")
        .batch_size(50)
        .sink_line("flush_interval_ms = 20")
        .sink_line(mode)
        .sink_line(&format!("settings = {{ extra = [{extra}] }}"))
        .body();
    format!("\n{body}")
}

/// Saves the pipeline file with other mapper settings.
fn save(path: &std::path::Path, topic: &str, table: &str, mode: &str, extra: &str) {
    let text = std::fs::read_to_string(path).expect("read pipeline");
    let head = text.split("\n[[topics]]").next().expect("head");
    replace_atomically(path, format!("{head}{}", sink(topic, table, mode, extra)).as_bytes());
}

/// Whether the table has the column `note` and a row with a value in it.
fn rows_with_a_note(db: &Db, table: &str) -> bool {
    let has = db.query(
        "SELECT count(*) FROM information_schema.columns WHERE table_name = $1 AND column_name = 'note'",
        &[&table],
    )[0]
    .get::<_, i64>(0)
        == 1;
    has && db.query(&format!("SELECT count(*) FROM \"{table}\" WHERE note IS NOT NULL"), &[])[0].get::<_, i64>(0) > 0
}

/// (seq, v, note) of every row, checked to hold each of the `total`
/// messages exactly once.
fn rows_once(db: &Db, table: &str, total: i64, log: &str) -> Vec<(i64, String, Option<String>)> {
    let rows: Vec<(i64, String, Option<String>)> = db
        .query(&format!("SELECT seq, v, note FROM \"{table}\" ORDER BY seq"), &[])
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let seqs: Vec<i64> = rows.iter().map(|r| r.0).collect();
    assert_eq!(seqs, (0..total).collect::<Vec<_>>(), "every offset exactly once\n{log}");
    rows
}

fn max_seq(db: &Db, table: &str) -> i64 {
    db.query(&format!("SELECT coalesce(max(seq), -1) FROM \"{table}\""), &[])[0].get(0)
}

#[test]
fn a_new_nullable_column_is_added_and_unsafe_changes_keep_the_old_mapper() {
    evolve("");
}

/// The same through an upsert sink, whose staging table follows the columns
/// (every message has a key of its own, so every message is a row).
#[test]
fn an_upsert_sink_evolves_its_table_and_staging_table_alike() {
    evolve("mode = \"upsert\"\nkey = [\"k\"]");
}

fn evolve(mode: &str) {
    let topic = unique("evolve");
    let table = unique("evolve_rows");
    create_topic(&topic, 1);
    let path = write_pipeline(&sink(&topic, &table, mode, ""));
    let host = Running::start(&["run", path.to_str().expect("utf-8")]);

    // A steady stream, 10 messages every 20 ms, until told to stop.
    let (stop, produced) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicI64::new(0)));
    let producer = {
        let (topic, stop, produced) = (topic.clone(), stop.clone(), produced.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let first = produced.load(Ordering::SeqCst);
                let chunk: Vec<_> = (first..first + 10)
                    .map(|i| (0, format!("m{i}").into_bytes(), Some(format!("p{i}").into_bytes())))
                    .collect();
                produce_keyed(&topic, &chunk);
                produced.fetch_add(10, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let db = Db::connect();
    let exists = || db.query("SELECT to_regclass($1) IS NOT NULL", &[&format!("\"{table}\"")])[0].get::<_, bool>(0);
    wait_for("the first rows", Duration::from_secs(60), || {
        exists() && max_seq(&db, &table) >= 0
    });

    // 1. A new nullable column: added, filled from the swap on.
    save(&path, &topic, &table, mode, r#"{ name = "note", type = "text" }"#);
    wait_for("rows with a note", Duration::from_secs(60), || {
        rows_with_a_note(&db, &table)
    });

    // 2. The same column as another type: refused, the old mapper goes on.
    save(&path, &topic, &table, mode, r#"{ name = "note", type = "integer" }"#);
    wait_for("the type change refused", Duration::from_secs(60), || {
        host.log()
            .contains("has column \"note\" of type text, but the mapper writes bigint")
    });
    let after_type = max_seq(&db, &table);
    wait_for("rows after the refused type change", Duration::from_secs(60), || {
        max_seq(&db, &table) > after_type + 50
    });

    // 3. A new NOT NULL column: refused too.
    save(
        &path,
        &topic,
        &table,
        mode,
        r#"{ name = "note", type = "text" }, { name = "must", type = "text", nullable = false }"#,
    );
    wait_for("the NOT NULL column refused", Duration::from_secs(60), || {
        host.log()
            .contains("has no column \"must\", which the mapper writes as NOT NULL")
    });
    let after_not_null = max_seq(&db, &table);
    wait_for(
        "rows after the refused NOT NULL column",
        Duration::from_secs(60),
        || max_seq(&db, &table) > after_not_null + 50,
    );

    stop.store(true, Ordering::SeqCst);
    producer.join().expect("producer");
    let total = produced.load(Ordering::SeqCst);
    wait_for("every message stored", Duration::from_secs(60), || {
        max_seq(&db, &table) == total - 1
    });
    let log = host.terminate();

    let rows = rows_once(&db, &table, total, &log);
    // NULL before the swap, the payload after it, and never again NULL:
    // the refused mappers never ran.
    let first_note = rows.iter().position(|r| r.2.is_some()).expect("a note");
    assert!(first_note > 0, "rows before the swap");
    assert!(rows[..first_note].iter().all(|r| r.2.is_none()));
    assert!(rows[first_note..].iter().all(|r| r.2.as_deref() == Some(r.1.as_str())));
    let kinds = db.query(
        "SELECT column_name::text, data_type::text FROM information_schema.columns WHERE table_name = $1 AND column_name IN ('note', 'must')",
        &[&table],
    );
    assert_eq!(kinds.len(), 1, "no column must");
    assert_eq!(kinds[0].get::<_, String>(1), "text");
}

/// A reloaded mapper that no longer declares a key column is refused; the
/// old one keeps writing.
#[test]
fn a_mapper_that_drops_a_key_column_keeps_the_old_one() {
    let topic = unique("evolve_key");
    let table = unique("evolve_key_rows");
    create_topic(&topic, 1);
    let mode = "mode = \"upsert\"\nkey = [\"k\", \"tag\"]";
    let tag = r#"{ name = "tag", type = "text", nullable = false }"#;
    let path = write_pipeline(&sink(&topic, &table, mode, tag));
    produce_keyed(&topic, &hundred(0));
    let host = Running::start(&["run", path.to_str().expect("utf-8")]);
    let db = Db::connect();
    let exists = || db.query("SELECT to_regclass($1) IS NOT NULL", &[&format!("\"{table}\"")])[0].get::<_, bool>(0);
    wait_for("the first 100 rows", Duration::from_secs(60), || {
        exists() && max_seq(&db, &table) == 99
    });

    // The swap waits for the next batch boundary: the next messages.
    save(&path, &topic, &table, mode, "");
    wait_for("the reload", Duration::from_secs(60), || {
        host.log().contains("pipeline file reloaded")
    });
    produce_keyed(&topic, &hundred(100));
    wait_for(
        "the mapper without the key column refused",
        Duration::from_secs(60),
        || {
            host.log()
                .contains("sinks.key \"tag\" of sink \"rows\" is not a column of its mapper (columns: k, v, seq)")
        },
    );
    wait_for("200 rows", Duration::from_secs(60), || max_seq(&db, &table) == 199);
    host.terminate();

    let rows: Vec<(i64, String, String)> = db
        .query(&format!("SELECT seq, v, tag FROM \"{table}\" ORDER BY seq"), &[])
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(rows.len(), 200);
    assert!(
        rows.iter().enumerate().all(|(i, r)| r.0 == i as i64 && r.1 == r.2),
        "the old mapper wrote every row"
    );
}

/// Messages `m{from}`..: 100 of them, on partition 0.
fn hundred(from: i64) -> Vec<(i32, Vec<u8>, Option<Vec<u8>>)> {
    (from..from + 100)
        .map(|i| (0, format!("m{i}").into_bytes(), Some(format!("p{i}").into_bytes())))
        .collect()
}

/// A new nullable column needs `ALTER TABLE`, which waits for every other
/// lock on the table. When a long query holds one past the sink's lock
/// timeout, the swap is not refused for good: it is tried again at a batch
/// boundary after a pause that grows with each failed attempt, and the new
/// column arrives once the query is over. Every message lands exactly once.
#[test]
fn a_new_column_blocked_by_a_lock_is_added_once_the_lock_is_gone() {
    let topic = unique("evolve_lock");
    let table = unique("evolve_lock_rows");
    create_topic(&topic, 1);
    let path = write_pipeline(&sink(&topic, &table, "", ""));
    produce_keyed(&topic, &hundred(0));
    let host = Running::start(&["run", path.to_str().expect("utf-8")]);
    let db = Db::connect();
    let exists = || db.query("SELECT to_regclass($1) IS NOT NULL", &[&format!("\"{table}\"")])[0].get::<_, bool>(0);
    wait_for("the first 100 rows", Duration::from_secs(60), || {
        exists() && max_seq(&db, &table) == 99
    });

    // A long reader of the table: ALTER TABLE must wait for it.
    let reader = Db::connect();
    reader.execute(&format!("BEGIN; LOCK TABLE \"{table}\" IN ACCESS SHARE MODE"));
    save(&path, &topic, &table, "", r#"{ name = "note", type = "text" }"#);
    wait_for("the reload", Duration::from_secs(60), || {
        host.log().contains("pipeline file reloaded")
    });
    // The next batch boundary tries the swap, which times out on the lock.
    produce_keyed(&topic, &hundred(100));
    wait_for("the lock timeout", Duration::from_secs(60), || {
        host.log().contains("lock timeout")
    });
    reader.execute("COMMIT");

    // The swap is retried at a batch boundary after a pause: keep messages
    // coming until rows carry the note.
    let mut produced = 200;
    wait_for("rows with a note", Duration::from_secs(90), || {
        produce_keyed(&topic, &hundred(produced)[..10]);
        produced += 10;
        std::thread::sleep(Duration::from_millis(200));
        rows_with_a_note(&db, &table)
    });
    produce_keyed(&topic, &hundred(produced));
    produced += 100;
    wait_for("every row", Duration::from_secs(60), || {
        max_seq(&db, &table) == produced - 1
    });
    let log = host.terminate();

    let rows = rows_once(&db, &table, produced, &log);
    let first_note = rows.iter().position(|r| r.2.is_some()).expect("a note");
    assert!(first_note >= 100, "no note before the swap");
    assert!(
        rows[first_note..].iter().all(|r| r.2.as_deref() == Some(r.1.as_str())),
        "the new mapper wrote every row after the swap"
    );
}
