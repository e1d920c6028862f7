//! The default pipeline (the old demo), with its intervals set to zero and its
//! names made unique: after `host run --once` each table holds exactly the
//! produced messages, one row per offset, with the Kafka timestamps.
use crate::support::common;

use common::{Db, host_ok, read_topic, repo_root, unique};
use std::time::UNIX_EPOCH;

#[test]
fn each_table_holds_exactly_what_kafka_holds() {
    let id = unique("demo");
    let root = repo_root();
    let text = std::fs::read_to_string(root.join("pipeline.toml")).expect("read pipeline.toml");
    let (langs, cars) = (format!("{id}_langs"), format!("{id}_cars"));
    let (langs_table, cars_table) = (format!("{id}_favorite_languages"), format!("{id}_favorite_cars"));
    let text = text
        .replace("\"langs\"", &format!("\"{langs}\""))
        .replace("\"cars\"", &format!("\"{cars}\""))
        .replace("\"favorite_languages\"", &format!("\"{langs_table}\""))
        .replace("\"favorite_cars\"", &format!("\"{cars_table}\""))
        .replace("interval_ms = 1000", "interval_ms = 0")
        .replace("interval_ms = 2000", "interval_ms = 0")
        .replace("\"certs/", &format!("\"{}/certs/", root.display()))
        .replace("\"target/", &format!("\"{}/target/", root.display()));
    let dir = std::env::temp_dir().join(&id);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, text).expect("write pipeline");

    host_ok(&["run", path.to_str().expect("utf-8 path"), "--once"]);

    let db = Db::connect();
    for (topic, table, count) in [(&langs, &langs_table, 50), (&cars, &cars_table, 25)] {
        let kafka = read_topic(topic);
        assert_eq!(kafka.len(), count, "messages produced to {topic}");
        let rows = db.query(
            &format!(
                "SELECT partition_id, offset_id, message_text, message_time FROM \"{table}\" ORDER BY partition_id, offset_id"
            ),
            &[],
        );
        assert_eq!(rows.len(), count, "rows in {table}");
        for (row, message) in rows.iter().zip(&kafka) {
            let (partition, offset): (i64, i64) = (row.get(0), row.get(1));
            let text: String = row.get(2);
            let time: std::time::SystemTime = row.get(3);
            assert_eq!((partition, offset), (i64::from(message.partition), message.offset));
            assert_eq!(
                Some(text.as_bytes()),
                message.payload.as_deref(),
                "message_text of offset {offset}"
            );
            let stored_ms = time.duration_since(UNIX_EPOCH).expect("after 1970").as_millis() as i64;
            assert_eq!(Some(stored_ms), message.timestamp_ms, "message_time of offset {offset}");
            let json: serde_json::Value = serde_json::from_str(&text).expect("stored text is JSON");
            let field = if topic == &langs {
                "Favorite Language"
            } else {
                "Favorite Car"
            };
            assert!(json.get(field).and_then(|v| v.as_str()).is_some(), "{text} has {field}");
        }
        common::assert_each_offset_once(&db.offsets(table), 0, count as i64);
        let stored = db.query(
            "SELECT next_offset FROM wasm_stream_offsets WHERE table_name = $1 AND topic = $2 AND partition = 0",
            &[table, topic],
        );
        assert_eq!(
            stored[0].get::<_, i64>(0),
            count as i64,
            "stored next offset of {table}"
        );
    }
}
