//! The json-columns example mapper, with a schema of every column type in its
//! settings, against the real Kafka and PostgreSQL (an append sink): values
//! of every type, `jsonb`, `uuid`, `numeric`, `bytea` and `date` included,
//! land with the right PostgreSQL types and values; messages that do not fit
//! the schema, and a tombstone (a delete, which an append sink cannot apply),
//! become dead letters with a reason naming the field and what it expected.
//! `host plugin test` shows a tombstone as a delete by the JSON Kafka key.
use crate::support::common;

use common::{Db, SinkPipeline, create_topic, host_ok, kafka_config, plugin, unique};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::time::Duration;

/// Produces (key, payload) pairs to partition 0, in order; `None` payload: a tombstone.
fn produce_keyed(topic: &str, messages: &[(Option<&str>, Option<&str>)]) {
    let producer: BaseProducer = host::kafka::client_config(&kafka_config())
        .expect("client config")
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    for (key, payload) in messages {
        let mut record: BaseRecord<'_, str, str> = BaseRecord::to(topic).partition(0);
        if let Some(k) = key {
            record = record.key(*k);
        }
        if let Some(p) = payload {
            record = record.payload(*p);
        }
        producer.send(record).map_err(|(e, _)| e).expect("send");
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

const SETTINGS: &str = r#"
[sinks.settings]
key = ["id"]
columns = [
  { name = "id", type = "uuid" },
  { name = "price", type = "numeric", nullable = true },
  { name = "day", type = "date" },
  { name = "doc", type = "json", nullable = true },
  { name = "photo", type = "bytea", nullable = true, field = "photo_base64" },
  { name = "seen", type = "timestamp" },
  { name = "n", type = "integer" },
  { name = "f", type = "float", nullable = true },
  { name = "ok", type = "boolean" },
  { name = "label", type = "text" },
]
"#;

#[test]
fn every_type_lands_with_its_postgres_type_and_misfits_are_dead_letters() {
    let topic = unique("jsoncols");
    let table = unique("jsoncols_rows");
    create_topic(&topic, 1);
    let messages: Vec<(Option<&str>, Option<&str>)> = vec![
        // 0: every field, numbers as written.
        (
            None,
            Some(
                r#"{"id": "0B7E5A3C-1234-4ABC-8DEF-001122334455", "price": 12.50, "day": "2024-02-29",
                   "doc": {"a": [1, 2.5, null], "b": {"c": "ü"}}, "photo_base64": "AAEC/w==",
                   "seen": "2024-05-01T12:00:00.123456+02:00", "n": -9007199254740993, "f": 1.5, "ok": true,
                   "label": "first", "extra": "ignored"}"#,
            ),
        ),
        // 1: nulls and missing nullable fields; numeric as a long string, uuid without hyphens, BC-free old date.
        (
            None,
            Some(
                r#"{"id": "00000000000000000000000000000001", "price": "-123456789012345678901234567890.000000000001",
                   "day": "1900-01-01", "doc": null, "seen": 1700000000000, "n": 0, "ok": false, "label": ""}"#,
            ),
        ),
        // 2: numeric NaN and an exponent; jsonb scalar; empty bytea.
        (
            None,
            Some(
                r#"{"id": "0b7e5a3c-1234-4abc-8def-001122334466", "price": 1.5e3, "day": "1970-01-01", "doc": "text",
                   "photo_base64": "", "seen": "1970-01-01T00:00:00Z", "n": 9223372036854775807, "f": -0.0,
                   "ok": true, "label": "third"}"#,
            ),
        ),
        // 3..: misfits.
        (
            None,
            Some(r#"{"id": "not-a-uuid", "day": "2024-01-01", "seen": 0, "n": 1, "ok": true, "label": "x"}"#),
        ),
        (
            None,
            Some(
                r#"{"id": "00000000000000000000000000000003", "price": "12,5", "day": "2024-01-01", "seen": 0, "n": 1, "ok": true, "label": "x"}"#,
            ),
        ),
        (
            None,
            Some(
                r#"{"id": "00000000000000000000000000000004", "day": "2023-02-29", "seen": 0, "n": 1, "ok": true, "label": "x"}"#,
            ),
        ),
        (
            None,
            Some(
                r#"{"id": "00000000000000000000000000000005", "day": "2024-01-01", "seen": 0, "ok": true, "label": "x"}"#,
            ),
        ),
        (
            None,
            Some(
                r#"{"id": "00000000000000000000000000000006", "day": "2024-01-01", "seen": 0, "n": 1.5, "ok": true, "label": "x"}"#,
            ),
        ),
        (
            None,
            Some(
                r#"{"id": "00000000000000000000000000000007", "photo_base64": "***", "day": "2024-01-01", "seen": 0, "n": 1, "ok": true, "label": "x"}"#,
            ),
        ),
        (None, Some(r#"[1, 2]"#)),
        // 10: a tombstone: a delete, which an append sink dead-letters.
        (Some(r#"{"id": "0b7e5a3c-1234-4abc-8def-001122334455"}"#), None),
    ];
    produce_keyed(&topic, &messages);
    let path = SinkPipeline::new(&topic, &table, "json_columns")
        .name("typed")
        .batch_size(4)
        .extra(SETTINGS)
        .write();
    host_ok(&["consume", path.to_str().expect("utf-8"), "--once", "--quiet"]);

    let db = Db::connect();
    let types: Vec<(String, String, String)> = db
        .query(
            "SELECT column_name::text, udt_name::text, is_nullable::text FROM information_schema.columns
             WHERE table_name = $1 AND column_name <> 'message_id' AND column_name NOT LIKE '\\_kafka\\_%' ORDER BY ordinal_position",
            &[&table],
        )
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let want = [
        ("id", "uuid", "NO"),
        ("price", "numeric", "YES"),
        ("day", "date", "NO"),
        ("doc", "jsonb", "YES"),
        ("photo", "bytea", "YES"),
        ("seen", "timestamptz", "NO"),
        ("n", "int8", "NO"),
        ("f", "float8", "YES"),
        ("ok", "bool", "NO"),
        ("label", "text", "NO"),
    ];
    let want: Vec<(String, String, String)> = want
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    assert_eq!(types, want);

    type Row = (
        String,
        Option<String>,
        String,
        i32,
        Option<serde_json::Value>,
        Option<Vec<u8>>,
        i64,
        i64,
        Option<f64>,
        bool,
        String,
    );
    let rows: Vec<Row> = db
        .query(
            &format!(
                "SELECT id::text, price::text, day::text, day - DATE '1970-01-01', doc, photo,
                        (extract(epoch FROM seen) * 1000000)::int8, n, f, ok, label
                 FROM \"{table}\" ORDER BY message_id"
            ),
            &[],
        )
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                r.get(6),
                r.get(7),
                r.get(8),
                r.get(9),
                r.get(10),
            )
        })
        .collect();
    let expected: Vec<Row> = vec![
        (
            "0b7e5a3c-1234-4abc-8def-001122334455".into(),
            Some("12.50".into()),
            "2024-02-29".into(),
            19_782,
            Some(serde_json::json!({"a": [1, 2.5, null], "b": {"c": "ü"}})),
            Some(vec![0, 1, 2, 0xff]),
            1_714_557_600_123_456,
            -9_007_199_254_740_993,
            Some(1.5),
            true,
            "first".into(),
        ),
        (
            "00000000-0000-0000-0000-000000000001".into(),
            Some("-123456789012345678901234567890.000000000001".into()),
            "1900-01-01".into(),
            -25_567,
            None,
            None,
            1_700_000_000_000_000,
            0,
            None,
            false,
            String::new(),
        ),
        (
            "0b7e5a3c-1234-4abc-8def-001122334466".into(),
            Some("1500".into()),
            "1970-01-01".into(),
            0,
            Some(serde_json::json!("text")),
            Some(Vec::new()),
            0,
            i64::MAX,
            Some(-0.0),
            true,
            "third".into(),
        ),
    ];
    assert_eq!(rows, expected);

    let dead: Vec<(i64, String)> = db.dead_letters(&topic).into_iter().map(|(o, _, r)| (o, r)).collect();
    let offsets: Vec<i64> = dead.iter().map(|d| d.0).collect();
    assert_eq!(offsets, (3..=10).collect::<Vec<i64>>(), "{dead:#?}");
    let reasons = [
        r#"field "id" is "not-a-uuid"; expected a UUID string"#,
        r#"field "price" is "12,5"; expected a number, or a string of one"#,
        r#"field "day" is "2023-02-29"; expected a date string YYYY-MM-DD"#,
        r#"field "n" is missing or null; column "n" (integer) is not nullable"#,
        r#"field "n" is 1.5; expected an integer within 64 bits"#,
        r#"field "photo_base64" is "***"; expected a base64 string"#,
        "payload is not a JSON object",
        r#"delete outcome needs a sink with mode = "upsert" and a key"#,
    ];
    for ((offset, reason), want) in dead.iter().zip(reasons) {
        assert!(reason.contains(want), "offset {offset}: {reason:?} lacks {want:?}");
    }
}

#[test]
fn plugin_test_shows_a_tombstone_as_a_delete_by_the_json_kafka_key() {
    let dir = std::env::temp_dir().join(unique("jsoncols_input"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let input = dir.join("messages.jsonl");
    std::fs::write(
        &input,
        [
            r#"{"payload": null, "key": "{\"id\": \"0b7e5a3c-1234-4abc-8def-001122334455\", \"n\": 7}"}"#,
            r#"{"payload": null, "key": "\"0b7e5a3c-1234-4abc-8def-001122334455\""}"#,
            r#"{"payload": null, "key": "{\"other\": 1}"}"#,
            r#"{"payload": null}"#,
        ]
        .join("\n"),
    )
    .expect("write input");
    let settings =
        r#"{"columns": [{"name": "id", "type": "uuid"}, {"name": "n", "type": "integer"}], "key": ["id", "n"]}"#;
    let wasm = plugin("json_columns");
    let run = |settings: &str| {
        let out = common::host(&[
            "plugin",
            "test",
            wasm.to_str().expect("utf-8"),
            "--settings",
            settings,
            "--input",
            input.to_str().expect("utf-8"),
            "--json",
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
        doc["messages"].as_array().expect("messages").clone()
    };
    let out = run(settings);
    assert_eq!(
        out[0]["delete"],
        serde_json::json!(["0b7e5a3c-1234-4abc-8def-001122334455", 7])
    );
    // Two key columns: a bare key is not enough.
    assert!(
        out[1]["rejected"]
            .as_str()
            .is_some_and(|r| r.contains("not a JSON object with the key fields \"id\", \"n\"")),
        "{out:?}"
    );
    assert!(
        out[2]["rejected"]
            .as_str()
            .is_some_and(|r| r.contains("has no field \"id\"")),
        "{out:?}"
    );
    assert!(
        out[3]["rejected"]
            .as_str()
            .is_some_and(|r| r.contains("without a Kafka key")),
        "{out:?}"
    );

    // One key column: the bare key is its value.
    let out = run(r#"{"columns": [{"name": "id", "type": "uuid"}], "key": ["id"]}"#);
    assert_eq!(
        out[1]["delete"],
        serde_json::json!(["0b7e5a3c-1234-4abc-8def-001122334455"])
    );
    // No key in the settings: a tombstone is rejected, saying how to delete by it.
    let out = run(r#"{"columns": [{"name": "id", "type": "uuid"}]}"#);
    assert!(
        out[0]["rejected"]
            .as_str()
            .is_some_and(|r| r.contains("settings.key is not set")),
        "{out:?}"
    );
}
