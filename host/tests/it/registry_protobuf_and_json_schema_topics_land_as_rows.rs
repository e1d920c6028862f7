//! Protobuf and JSON Schema topics through the schema registry into typed
//! rows (json-columns taking its columns from the registered schema), bad
//! values dead letters; and the mapper sees the schema each value was
//! decoded with: its id, and its subject when the registry says.
//! `/health/ready` says when the registry does not answer.

use crate::support::{common, ops};

use common::registry::{Registry, avro_string, frame, varint};
use common::{Db, SinkPipeline, host_ok, produce_keyed, produce_raw, unique};

const FROM_REGISTRY: &str = "[sinks.settings]\ncolumns = \"from_registry\"\n";

/// `Vote { language = 1, votes = 2, optional note = 3 }`, after the
/// registry's message index (a lone 0: the file's first message).
fn vote(language: &str, votes: i64, note: Option<&str>) -> Vec<u8> {
    let mut out = vec![0];
    let string = |field: u64, s: &str, out: &mut Vec<u8>| {
        varint(field << 3 | 2, out);
        varint(s.len() as u64, out);
        out.extend_from_slice(s.as_bytes());
    };
    string(1, language, &mut out);
    varint(2 << 3, &mut out);
    varint(votes as u64, &mut out);
    if let Some(n) = note {
        string(3, n, &mut out);
    }
    out
}

/// The columns of `table` as PostgreSQL holds them: (name, type, nullable).
fn columns(db: &Db, table: &str) -> Vec<(String, String, bool)> {
    db.query(
        "SELECT column_name::text, udt_name::text, is_nullable = 'YES' FROM information_schema.columns
         WHERE table_name = $1 AND column_name NOT LIKE '\\_%' AND column_name <> 'message_id' ORDER BY ordinal_position",
        &[&table],
    )
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

fn sink(topic: &str, table: &str, format: &str, registry: &Registry, mapper: &str, settings: &str) -> String {
    SinkPipeline::new(topic, table, mapper)
        .sink_line(&format!("format = \"{format}\""))
        .batch_size(40)
        .extra(settings)
        .extra(&registry.section())
        .write()
        .to_str()
        .expect("utf-8")
        .to_string()
}

#[test]
fn protobuf_values_become_typed_rows_with_columns_from_the_registry() {
    let registry = Registry::start();
    let (topic, table) = (unique("reg_proto"), unique("reg_proto"));
    let proto = "syntax = \"proto3\";\npackage test;\nmessage Vote {\n  string language = 1;\n  int64 votes = 2;\n  optional string note = 3;\n}\n";
    let id = registry.register(&format!("{topic}-value"), "PROTOBUF", proto);
    let mut payloads: Vec<Option<Vec<u8>>> = (0..100)
        .map(|n| {
            let note = (n % 3 == 0).then_some("thirds");
            Some(frame(id, &vote("Rust", n, note)))
        })
        .collect();
    // Offset 100: a string longer than the bytes left; then a good one.
    payloads.push(Some(frame(id, &[0, 0x0a, 0x09, b'R'])));
    payloads.push(Some(frame(id, &vote("Go", 100, None))));
    common::create_topic(&topic, 1);
    produce_raw(&topic, &payloads);
    let path = sink(&topic, &table, "protobuf", &registry, "json_columns", FROM_REGISTRY);
    host_ok(&["consume", &path, "--once", "--quiet"]);

    let db = Db::connect();
    assert_eq!(
        columns(&db, &table),
        [
            ("language".to_string(), "text".to_string(), false),
            ("votes".to_string(), "int8".to_string(), false),
            ("note".to_string(), "text".to_string(), true),
        ],
        "the columns of the registered message"
    );
    let rows: Vec<(String, i64, Option<String>)> = db
        .query(
            &format!("SELECT language, votes, note FROM \"{table}\" ORDER BY votes"),
            &[],
        )
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let mut want: Vec<(String, i64, Option<String>)> = (0..100)
        .map(|n| ("Rust".to_string(), n, (n % 3 == 0).then(|| "thirds".to_string())))
        .collect();
    want.push(("Go".to_string(), 100, None));
    assert_eq!(rows, want, "every good value once, an unset optional NULL");
    let letters = db.dead_letters(&topic);
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].0, 100);
    assert!(
        letters[0].2.contains("offset 100") && letters[0].2.contains("decode"),
        "{letters:?}"
    );
}

#[test]
fn json_schema_values_are_checked_and_become_typed_rows() {
    let registry = Registry::start();
    let (topic, table) = (unique("reg_jsonschema"), unique("reg_jsonschema"));
    let schema = r#"{"type":"object","properties":{"language":{"type":"string"},"votes":{"type":"integer"},"share":{"type":"number"}},"required":["language","votes"]}"#;
    let id = registry.register(&format!("{topic}-value"), "JSON", schema);
    let mut payloads: Vec<Option<Vec<u8>>> = (0..50)
        .map(|n| {
            Some(frame(
                id,
                format!(r#"{{"language":"Rust","votes":{n},"share":0.5}}"#).as_bytes(),
            ))
        })
        .collect();
    // Offset 50: votes is not an integer, so the schema refuses it.
    payloads.push(Some(frame(id, br#"{"language":"Go","votes":"many"}"#)));
    payloads.push(Some(frame(id, br#"{"language":"Go","votes":50}"#)));
    common::create_topic(&topic, 1);
    produce_raw(&topic, &payloads);
    let path = sink(&topic, &table, "json_schema", &registry, "json_columns", FROM_REGISTRY);
    host_ok(&["consume", &path, "--once", "--quiet"]);

    let db = Db::connect();
    let kinds: Vec<(String, String)> = columns(&db, &table).into_iter().map(|(n, t, _)| (n, t)).collect();
    for want in [("language", "text"), ("votes", "int8"), ("share", "float8")] {
        assert!(
            kinds.contains(&(want.0.to_string(), want.1.to_string())),
            "{want:?} in {kinds:?}"
        );
    }
    let rows: Vec<(String, i64, Option<f64>)> = db
        .query(
            &format!("SELECT language, votes, share FROM \"{table}\" ORDER BY votes"),
            &[],
        )
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let mut want: Vec<(String, i64, Option<f64>)> = (0..50).map(|n| ("Rust".to_string(), n, Some(0.5))).collect();
    want.push(("Go".to_string(), 50, None));
    assert_eq!(rows, want);
    let letters = db.dead_letters(&topic);
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].0, 50);
}

#[test]
fn the_mapper_sees_the_schema_id_and_subject_of_each_value() {
    let registry = Registry::start();
    let topic = unique("reg_seen");
    let table = unique("reg_seen");
    let record =
        |name: &str| format!(r#"{{"type":"record","name":"{name}","fields":[{{"name":"language","type":"string"}}]}}"#);
    // Under the topic's subject; under another subject only; under two
    // other subjects (the host cannot tell which one is meant).
    let own = registry.register(&format!("{topic}-value"), "AVRO", &record("Own"));
    let other = registry.register(&format!("elsewhere-{topic}"), "AVRO", &record("Other"));
    let twice = registry.register(&format!("first-{topic}"), "AVRO", &record("Twice"));
    assert_eq!(
        registry.register(&format!("second-{topic}"), "AVRO", &record("Twice")),
        twice
    );
    let value = |id: u32| {
        let mut body = Vec::new();
        avro_string("Rust", &mut body);
        frame(id, &body)
    };
    let messages: Vec<common::Keyed> = [own, other, twice]
        .iter()
        .enumerate()
        .map(|(i, id)| (0, format!("k{i}").into_bytes(), Some(value(*id))))
        .collect();
    common::create_topic(&topic, 1);
    produce_keyed(&topic, &messages);
    let settings = "[sinks.settings]\nextra = [{ name = \"schema_id\", type = \"integer\", from = \"schema_id\" }, { name = \"subject\", type = \"text\", from = \"schema_subject\" }]\n";
    let path = sink(&topic, &table, "avro", &registry, "kv_mapper", settings);
    host_ok(&["consume", &path, "--once", "--quiet"]);

    let db = Db::connect();
    let rows: Vec<(i64, Option<i64>, Option<String>, String)> = db
        .query(
            &format!("SELECT seq, schema_id, subject, v FROM \"{table}\" ORDER BY seq"),
            &[],
        )
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        rows,
        [
            (
                0,
                Some(i64::from(own)),
                Some(format!("{topic}-value")),
                r#"{"language":"Rust"}"#.to_string()
            ),
            (
                1,
                Some(i64::from(other)),
                Some(format!("elsewhere-{topic}")),
                r#"{"language":"Rust"}"#.to_string()
            ),
            (2, Some(i64::from(twice)), None, r#"{"language":"Rust"}"#.to_string()),
        ]
    );
}

/// `/health/ready` asks the registry itself (every 10 s) while a sink reads
/// a registry format: not ready while it is down, ready again after.
#[test]
fn health_ready_says_when_the_registry_does_not_answer() {
    let mut registry = Registry::start();
    let (topic, table) = (unique("reg_ready"), unique("reg_ready"));
    common::create_topic(&topic, 1);
    let port = ops::free_port();
    let path = SinkPipeline::new(&topic, &table, "json_row")
        .sink_line("format = \"avro\"")
        .extra(&registry.section())
        .extra(&format!("[http]\nlisten = \"127.0.0.1:{port}\"\n"))
        .write();
    let host = common::Running::start(&["run", path.to_str().expect("utf-8"), "--no-watch"]);
    let limit = std::time::Duration::from_secs(60);
    ops::wait_for_code(port, "/health/ready", 200, limit);
    registry.stop();
    let body = ops::wait_for_code(port, "/health/ready", 503, limit);
    assert!(body.contains("schema registry unreachable"), "{body}");
    registry.start_again();
    ops::wait_for_code(port, "/health/ready", 200, limit);
    host.terminate();
}
