//! json-columns in an upsert sink, end to end: typed columns (uuid, numeric,
//! date, jsonb, bytea) upserted by a uuid key however the UUID is written,
//! and tombstones (the key in the Kafka message key) deleting rows.
use crate::support::common;

use common::{Db, SinkPipeline, create_topic, host_within, produce_keyed, unique};
use std::time::Duration;

const A: &str = "0b7e5a3c-1234-4321-abcd-0123456789ab";
const B: &str = "1b7e5a3c-1234-4321-abcd-0123456789ab";
const C: &str = "2b7e5a3c-1234-4321-abcd-0123456789ab";

fn put(id: &str, payload: &str) -> common::Keyed {
    (0, format!("\"{id}\"").into_bytes(), Some(payload.as_bytes().to_vec()))
}

#[test]
fn typed_rows_are_upserted_by_uuid_and_tombstones_delete_them() {
    let topic = unique("json_upsert");
    let table = unique("json_upsert_rows");
    create_topic(&topic, 1);
    let a_upper = A.to_uppercase().replace('-', "");
    produce_keyed(
        &topic,
        &[
            put(
                A,
                &format!(r#"{{"id": "{A}", "price": "1.5", "day": "2024-05-01", "doc": {{"v": 1}}, "blob": "AAEC"}}"#),
            ),
            put(B, &format!(r#"{{"id": "{B}", "price": 7, "day": null}}"#)),
            put(C, &format!(r#"{{"id": "{C}", "price": "3"}}"#)),
            // The same key as A, written another way: an update of A.
            put(
                &a_upper,
                &format!(
                    r#"{{"id": "{a_upper}", "price": "12.50", "day": "2024-05-02", "doc": {{"v": [1, 2]}}, "blob": "/w=="}}"#
                ),
            ),
            (0, format!("\"{C}\"").into_bytes(), None),
        ],
    );
    let path = SinkPipeline::new(&topic, &table, "json_columns")
        .upsert(&["id"])
        .batch_size(5) // one batch: A twice, written two ways
        .extra(
            r#"[sinks.settings]
key = ["id"]
columns = [
  { name = "id", type = "uuid" },
  { name = "price", type = "numeric", nullable = true },
  { name = "day", type = "date", nullable = true },
  { name = "doc", type = "json", nullable = true },
  { name = "blob", type = "bytea", nullable = true },
]"#,
        )
        .write();
    let out = host_within(
        &["consume", path.to_str().expect("utf-8"), "--once", "--quiet"],
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let db = Db::connect();
    assert!(db.dead_letters(&topic).is_empty(), "{:?}", db.dead_letters(&topic));
    type Row = (String, Option<String>, Option<String>, Option<String>, Option<Vec<u8>>);
    let rows: Vec<Row> = db
        .query(
            &format!("SELECT id::text, price::text, day::text, doc::text, blob FROM \"{table}\" ORDER BY id"),
            &[],
        )
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    assert_eq!(
        rows,
        vec![
            (
                A.to_string(),
                Some("12.50".into()),
                Some("2024-05-02".into()),
                Some(r#"{"v": [1, 2]}"#.into()),
                Some(vec![0xff])
            ),
            (B.to_string(), Some("7".into()), None, None, None),
        ]
    );
    let types: Vec<(String, String)> = db
        .query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns WHERE table_name = $1 AND column_name <> 'message_id' AND column_name NOT LIKE '\\_kafka\\_%' ORDER BY ordinal_position",
            &[&table],
        )
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let expected = [
        ("id", "uuid"),
        ("price", "numeric"),
        ("day", "date"),
        ("doc", "jsonb"),
        ("blob", "bytea"),
    ];
    assert_eq!(
        types,
        expected
            .iter()
            .map(|(c, t)| (c.to_string(), t.to_string()))
            .collect::<Vec<_>>()
    );
}
