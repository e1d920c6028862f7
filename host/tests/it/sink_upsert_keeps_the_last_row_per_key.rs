//! `mode = "upsert"`: a table the host creates gets the key as primary key
//! and holds the last row per key in offset order, through batches that
//! repeat keys; an existing table without a unique constraint on the key is
//! refused with the SQL that fixes it; a key the mapper does not declare is
//! refused when the mapper is loaded, naming the file, line and key.
use crate::support::common;

use common::{Db, SinkPipeline, create_topic, host_within, produce_keyed, unique};
use std::collections::BTreeMap;
use std::time::Duration;

fn pipeline(topic: &str, table: &str, key: &str) -> std::path::PathBuf {
    SinkPipeline::new(topic, table, "kv_mapper")
        .partitions(2)
        .upsert(&[key])
        .batch_size(37)
        .sink_line("flush_interval_ms = 20")
        .write()
}

/// (k, v) of every row of the table.
fn key_values(db: &Db, table: &str) -> BTreeMap<String, String> {
    db.query(&format!("SELECT k, v FROM \"{table}\""), &[])
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

fn consume(path: &std::path::Path) -> std::process::Output {
    host_within(
        &["consume", path.to_str().expect("utf-8"), "--once", "--quiet"],
        Duration::from_secs(120),
    )
}

#[test]
fn the_last_row_per_key_wins_across_batches_and_partitions() {
    let topic = unique("upsert");
    let table = unique("upsert_rows");
    create_topic(&topic, 2);
    // 30 keys, each always on the same partition, written 20 times over.
    let mut messages = Vec::new();
    let mut model: BTreeMap<String, String> = BTreeMap::new();
    for round in 0..20 {
        for k in 0..30 {
            let key = format!("key{k}");
            let value = format!("{key}-{round}");
            model.insert(key.clone(), value.clone());
            messages.push((k % 2, key.into_bytes(), Some(value.into_bytes())));
        }
    }
    produce_keyed(&topic, &messages);
    let path = pipeline(&topic, &table, "k");
    let out = consume(&path);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let db = Db::connect();
    let rows = key_values(&db, &table);
    assert_eq!(rows, model);
    let pk = db.query(
        "SELECT array_agg(a.attname::text) FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) WHERE i.indrelid = to_regclass($1) AND i.indisprimary",
        &[&format!("\"{table}\"")],
    );
    assert_eq!(pk[0].get::<_, Vec<String>>(0), vec!["k".to_string()]);
    let stored: Vec<i64> = db
        .query(
            "SELECT next_offset FROM wasm_stream_offsets WHERE table_name = $1 ORDER BY partition",
            &[&table],
        )
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(stored, vec![300, 300], "every message settled once");
    // An update moves message_id on, so the highest is the row written last:
    // every key was updated after the first batch inserted ids 1 to 30.
    let first_id: i64 = db.query(&format!("SELECT min(message_id) FROM \"{table}\""), &[])[0].get(0);
    assert!(first_id > 30, "message_id renumbered by updates: {first_id}");

    // Run again over the same messages from scratch: the same table.
    db.execute(&format!(
        "DELETE FROM wasm_stream_offsets WHERE table_name = '{table}'; UPDATE \"{table}\" SET v = 'stale'"
    ));
    let out = consume(&path);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let again: BTreeMap<String, String> = db
        .query(&format!("SELECT k, v FROM \"{table}\""), &[])
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(again, model, "a replay upserts over the rows, never adds");
}

#[test]
fn a_table_without_a_unique_key_is_refused_with_the_fix() {
    let topic = unique("upsert_nokey");
    let table = unique("upsert_nokey_rows");
    create_topic(&topic, 2);
    let db = Db::connect();
    db.execute(&format!(
        "CREATE TABLE \"{table}\" (message_id bigserial PRIMARY KEY, k text NOT NULL, v text NOT NULL, seq bigint NOT NULL)"
    ));
    let out = consume(&pipeline(&topic, &table, "k"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "table \"{table}\" has no primary key or unique constraint on (k)"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("ALTER TABLE \"{table}\" ADD UNIQUE (\"k\");")),
        "{stderr}"
    );
    // With the constraint the same pipeline runs.
    db.execute(&format!("ALTER TABLE \"{table}\" ADD UNIQUE (\"k\")"));
    produce_keyed(
        &topic,
        &[
            (0, b"a".to_vec(), Some(b"1".to_vec())),
            (0, b"a".to_vec(), Some(b"2".to_vec())),
        ],
    );
    let out = consume(&pipeline(&topic, &table, "k"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows = db.query(&format!("SELECT k, v FROM \"{table}\""), &[]);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(1), "2");
}

#[test]
fn a_key_the_mapper_does_not_declare_is_refused_at_load_with_its_location() {
    let topic = unique("upsert_badkey");
    let table = unique("upsert_badkey_rows");
    let path = pipeline(&topic, &table, "id");
    let out = host_within(&["validate", path.to_str().expect("utf-8")], Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let line = std::fs::read_to_string(&path)
        .expect("read")
        .lines()
        .position(|l| l.starts_with("key = ["))
        .expect("key line")
        + 1;
    assert!(
        stderr.contains(&format!(
            "{}:{line}:7: sinks.key \"id\" of sink \"rows\" is not a column of its mapper (columns: k, v, seq)",
            path.display()
        )),
        "{stderr}"
    );
}

#[test]
fn tombstones_delete_in_offset_order_with_the_upserts_of_their_batch() {
    let topic = unique("upsert_delete");
    let table = unique("upsert_delete_rows");
    create_topic(&topic, 2);
    let put = |k: &str, v: &str| (0, k.as_bytes().to_vec(), Some(v.as_bytes().to_vec()));
    let tombstone = |k: &str| (0, k.as_bytes().to_vec(), None);
    // Batches of 37: every case falls inside one batch, and again across two.
    let mut messages = vec![
        put("a", "1"),
        tombstone("a"), // deleted in its batch
        put("b", "1"),
        tombstone("b"),
        put("b", "2"),      // back after its delete
        tombstone("never"), // deleting a key with no row is no error
        put("c", "1"),
    ];
    messages.extend((0..40).map(|i| put("filler", &i.to_string())));
    messages.extend([tombstone("c"), put("d", "1")]); // c deleted in a later batch
    produce_keyed(&topic, &messages);
    let out = consume(&pipeline(&topic, &table, "k"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let db = Db::connect();
    let rows = key_values(&db, &table);
    let expected: BTreeMap<String, String> = [("b", "2"), ("d", "1"), ("filler", "39")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(rows, expected);
    assert!(db.dead_letters(&topic).is_empty(), "no dead letters");
}

#[test]
fn a_tombstone_in_an_append_sink_is_a_dead_letter_saying_why() {
    let topic = unique("append_delete");
    let table = unique("append_delete_rows");
    create_topic(&topic, 1);
    produce_keyed(
        &topic,
        &[(0, b"a".to_vec(), Some(b"1".to_vec())), (0, b"a".to_vec(), None)],
    );
    let path = SinkPipeline::new(&topic, &table, "kv_mapper").write();
    let out = consume(&path);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let db = Db::connect();
    assert_eq!(db.query(&format!("SELECT k FROM \"{table}\""), &[]).len(), 1);
    let dead = db.dead_letters(&topic);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0, 1);
    assert!(dead[0].2.contains("mode = \"upsert\""), "{}", dead[0].2);
}
