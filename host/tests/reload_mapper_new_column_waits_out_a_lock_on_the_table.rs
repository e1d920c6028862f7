//! A reloaded mapper with a new nullable column needs `ALTER TABLE`, which
//! waits for every other lock on the table. When a long query holds one past
//! the sink's lock timeout, the swap is not refused for good: it is tried
//! again at the next batch boundary, and the new column arrives once the
//! query is over. Every message lands exactly once throughout.
mod common;

use common::{Db, Running, create_topic, plugin, produce_keyed, replace_atomically, unique, wait_for, write_pipeline};
use std::time::Duration;

fn sink(topic: &str, table: &str, extra: &str) -> String {
    format!(
        r#"
[[topics]]
name = "{topic}"

[[sinks]]
name = "rows"
topic = "{topic}"
table = "{table}"
mapper = "{mapper}"
batch_size = 50
flush_interval_ms = 20
settings = {{ extra = [{extra}] }}
"#,
        mapper = plugin("kv_mapper").display(),
    )
}

fn messages(from: i64) -> Vec<(i32, Vec<u8>, Option<Vec<u8>>)> {
    (from..from + 100)
        .map(|i| (0, format!("m{i}").into_bytes(), Some(format!("p{i}").into_bytes())))
        .collect()
}

fn max_seq(db: &Db, table: &str) -> i64 {
    db.query(&format!("SELECT coalesce(max(seq), -1) FROM \"{table}\""), &[])[0].get(0)
}

#[test]
fn a_new_column_blocked_by_a_lock_is_added_once_the_lock_is_gone() {
    let topic = unique("evolve_lock");
    let table = unique("evolve_lock_rows");
    create_topic(&topic, 1);
    let path = write_pipeline(&sink(&topic, &table, ""));
    produce_keyed(&topic, &messages(0));
    let host = Running::start(&["run", path.to_str().expect("utf-8")]);
    let db = Db::connect();
    let exists = || db.query("SELECT to_regclass($1) IS NOT NULL", &[&format!("\"{table}\"")])[0].get::<_, bool>(0);
    wait_for("the first 100 rows", Duration::from_secs(60), || {
        exists() && max_seq(&db, &table) == 99
    });

    // A long reader of the table: ALTER TABLE must wait for it.
    let reader = Db::connect();
    reader.execute(&format!("BEGIN; LOCK TABLE \"{table}\" IN ACCESS SHARE MODE"));
    let text = std::fs::read_to_string(&path).expect("read pipeline");
    let head = text.split("\n[[topics]]").next().expect("head");
    let with_note = format!("{head}{}", sink(&topic, &table, r#"{ name = "note", type = "text" }"#));
    replace_atomically(&path, with_note.as_bytes());
    wait_for("the reload", Duration::from_secs(60), || {
        host.log().contains("pipeline file reloaded")
    });
    // The next batch boundary tries the swap, which times out on the lock.
    produce_keyed(&topic, &messages(100));
    wait_for("the lock timeout", Duration::from_secs(60), || {
        host.log().contains("lock timeout")
    });
    reader.execute("COMMIT");

    // The swap is retried at a batch boundary after a pause: keep messages
    // coming until rows carry the note.
    let mut produced = 200;
    wait_for("rows with a note", Duration::from_secs(90), || {
        produce_keyed(&topic, &messages(produced)[..10]);
        produced += 10;
        std::thread::sleep(Duration::from_millis(200));
        let has_note = db.query(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = $1 AND column_name = 'note'",
            &[&table],
        )[0]
        .get::<_, i64>(0)
            == 1;
        has_note
            && db.query(&format!("SELECT count(*) FROM \"{table}\" WHERE note IS NOT NULL"), &[])[0].get::<_, i64>(0)
                > 0
    });
    produce_keyed(&topic, &messages(produced));
    produced += 100;
    wait_for("every row", Duration::from_secs(60), || {
        max_seq(&db, &table) == produced - 1
    });
    let log = host.terminate();

    let rows: Vec<(i64, String, Option<String>)> = db
        .query(&format!("SELECT seq, v, note FROM \"{table}\" ORDER BY seq"), &[])
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let seqs: Vec<i64> = rows.iter().map(|r| r.0).collect();
    assert_eq!(
        seqs,
        (0..produced).collect::<Vec<_>>(),
        "every offset exactly once\n{log}"
    );
    let first_note = rows.iter().position(|r| r.2.is_some()).expect("a note");
    assert!(first_note >= 100, "no note before the swap");
    assert!(
        rows[first_note..].iter().all(|r| r.2.as_deref() == Some(r.1.as_str())),
        "the new mapper wrote every row after the swap"
    );
}
