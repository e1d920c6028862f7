//! Lineage names the topic: two sinks of different topics write one table,
//! and rewinding one deletes only its own topic's rows. A table made while
//! lineage was partition and offset only gets the topic column; a long
//! table name gets an index name of its own within PostgreSQL's 63 bytes.
use crate::support::{common, rewind};

use common::{Db, Keyed, SinkPipeline, create_topic, host_ok, produce_keyed, unique};
use rewind::{count, sink_ok};

fn messages(topic_tag: &str) -> Vec<Keyed> {
    (0..10)
        .map(|i| {
            (
                0,
                format!("k{i}").into_bytes(),
                Some(format!("{{\"from\": \"{topic_tag}\", \"i\": {i}}}").into_bytes()),
            )
        })
        .collect()
}

/// (from, i) of every row, in order.
fn rows(db: &Db, table: &str) -> Vec<(String, i64)> {
    db.query(
        &format!(
            "SELECT message_text::jsonb->>'from', (message_text::jsonb->>'i')::bigint FROM \"{table}\" ORDER BY 1, 2"
        ),
        &[],
    )
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

fn both_once() -> Vec<(String, i64)> {
    ["a", "b"]
        .iter()
        .flat_map(|t| (0..10).map(move |i| (t.to_string(), i)))
        .collect()
}

/// Two pipelines, one sink each, of topics a and b into `table`.
fn two_sinks(table: &str) -> (String, String) {
    let (a, b) = (unique("shared_a"), unique("shared_b"));
    for (topic, tag) in [(&a, "a"), (&b, "b")] {
        create_topic(topic, 1);
        produce_keyed(topic, &messages(tag));
    }
    let path = |topic: &str| {
        SinkPipeline::new(topic, table, "json_row")
            .write()
            .to_str()
            .expect("utf-8 path")
            .to_string()
    };
    (path(&a), path(&b))
}

#[test]
fn a_rewind_deletes_only_its_topics_rows_from_a_shared_table() {
    // 60 bytes: "<table>_kafka_lineage" would pass 63.
    let base = unique("shared");
    let table = format!("{base}_{}", "x".repeat(59 - base.len()));
    assert_eq!(table.len(), 60);
    let (pa, pb) = two_sinks(&table);
    let db = Db::connect();
    host_ok(&["consume", &pa, "--once", "--quiet"]);
    host_ok(&["consume", &pb, "--once", "--quiet"]);
    assert_eq!(rows(&db, &table), both_once());

    let out = sink_ok(&["rewind", &pa, "--sink", "rows", "--to-offset", "0:4"]);
    assert!(out.contains("6 row(s)"), "{out}");
    let left = rows(&db, &table);
    assert_eq!(
        left.iter().filter(|(t, _)| t == "b").count(),
        10,
        "topic b untouched: {left:?}"
    );
    assert_eq!(
        left.iter().filter(|(t, _)| t == "a").count(),
        4,
        "topic a from 4 on gone: {left:?}"
    );
    host_ok(&["consume", &pa, "--once", "--quiet"]);
    assert_eq!(rows(&db, &table), both_once(), "every message of both topics once");

    let index: Vec<(String, String)> = db
        .query(
            "SELECT indexname::text, indexdef FROM pg_indexes WHERE tablename = $1 AND indexdef LIKE '%_kafka_offset%'",
            &[&table],
        )
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(index.len(), 1, "{index:?}");
    assert!(
        index[0].0.len() <= 63 && index[0].0.ends_with("_kafka_lineage"),
        "{index:?}"
    );
    assert!(index[0].1.contains("USING brin (_kafka_offset)"), "{index:?}");
}

#[test]
fn a_table_with_partition_and_offset_lineage_gets_the_topic_column() {
    let table = unique("lineage_two_columns");
    let db = Db::connect();
    // As a host made it before lineage had a topic.
    db.execute(&format!(
        "CREATE TABLE \"{table}\" (message_id bigserial PRIMARY KEY, message_text text NOT NULL,
         message_time timestamptz, offset_id bigint NOT NULL, partition_id bigint NOT NULL,
         _kafka_partition bigint, _kafka_offset bigint)"
    ));
    let (pa, pb) = two_sinks(&table);
    host_ok(&["consume", &pa, "--once", "--quiet"]);
    host_ok(&["consume", &pb, "--once", "--quiet"]);
    let untagged: i64 = db.query(
        &format!("SELECT count(*) FROM \"{table}\" WHERE _kafka_topic IS NULL"),
        &[],
    )[0]
    .get(0);
    assert_eq!((count(&db, &table), untagged), (20, 0), "every row names its topic");
    sink_ok(&["rewind", &pb, "--sink", "rows", "--to-start"]);
    assert_eq!(count(&db, &table), 10, "only topic b's rows went");
    host_ok(&["consume", &pb, "--once", "--quiet"]);
    assert_eq!(rows(&db, &table), both_once());
}
