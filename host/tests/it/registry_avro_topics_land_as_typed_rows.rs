//! Avro topics through the schema registry into typed rows, against the
//! real Kafka and PostgreSQL and a private registry stand-in per test:
//! wire-format values decode to JSON for json-columns; bad values (unknown
//! id, truncated, wrong magic byte) are dead letters while their neighbours
//! land; one registry request per schema id; a registry outage during a
//! drain makes the sink wait (no dead letters, exactly once); a generator
//! encodes and registers; a new schema version adds its column.

use crate::support::common;

use common::registry::{Registry, avro_long, avro_string, frame};
use common::{Db, Running, SinkPipeline, host_ok, plugin, produce_raw, unique, wait_for};
use std::time::Duration;

const V1: &str = r#"{"type":"record","name":"Vote","namespace":"test","fields":[{"name":"language","type":"string"},{"name":"votes","type":"long"}]}"#;
const V2: &str = r#"{"type":"record","name":"Vote","namespace":"test","fields":[{"name":"language","type":"string"},{"name":"votes","type":"long"},{"name":"year","type":["null","long"],"default":null}]}"#;

fn v1(language: &str, votes: i64) -> Vec<u8> {
    let mut body = Vec::new();
    avro_string(language, &mut body);
    avro_long(votes, &mut body);
    body
}

fn v2(language: &str, votes: i64, year: Option<i64>) -> Vec<u8> {
    let mut body = v1(language, votes);
    match year {
        None => avro_long(0, &mut body),
        Some(y) => {
            avro_long(1, &mut body);
            avro_long(y, &mut body);
        }
    }
    body
}

const COLUMNS: &str = "[sinks.settings]\ncolumns = [{ name = \"language\", type = \"text\" }, { name = \"votes\", type = \"integer\" }]\n";

fn votes(db: &Db, table: &str) -> Vec<(String, i64)> {
    db.query(&format!("SELECT language, votes FROM \"{table}\" ORDER BY votes"), &[])
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

fn count(db: &Db, table: &str) -> i64 {
    let exists = db.query("SELECT to_regclass($1) IS NOT NULL", &[&format!("\"{table}\"")]);
    if !exists[0].get::<_, bool>(0) {
        return 0;
    }
    db.query(&format!("SELECT count(*) FROM \"{table}\""), &[])[0].get(0)
}

#[test]
fn avro_values_become_rows_and_bad_ones_dead_letters_with_one_request_per_id() {
    let registry = Registry::start();
    let (topic, table) = (unique("reg_avro"), unique("reg_avro"));
    let id = registry.register(&format!("{topic}-value"), "AVRO", V1);
    let mut payloads: Vec<Option<Vec<u8>>> = (0..300).map(|n| Some(frame(id, &v1("Rust", n)))).collect();
    // Offsets 300..303: an id the registry does not know, a value cut
    // short, a plain JSON value (no magic byte); then a good one.
    payloads.push(Some(frame(9999, &v1("Zig", 1))));
    payloads.push(Some(frame(id, &v1("Zig", 1))[..8].to_vec()));
    payloads.push(Some(br#"{"language":"Go","votes":3}"#.to_vec()));
    payloads.push(Some(frame(id, &v1("Go", 300))));
    common::create_topic(&topic, 1);
    produce_raw(&topic, &payloads);

    let path = SinkPipeline::new(&topic, &table, "json_columns")
        .sink_line("format = \"avro\"")
        .batch_size(50)
        .extra(COLUMNS)
        .extra(&registry.section())
        .write();
    host_ok(&["consume", path.to_str().expect("utf-8"), "--once", "--quiet"]);

    let db = Db::connect();
    let rows = votes(&db, &table);
    assert_eq!(rows.len(), 301, "every good value is a row");
    assert_eq!(rows[0], ("Rust".to_string(), 0));
    assert_eq!(rows[300], ("Go".to_string(), 300));
    let letters = db.dead_letters(&topic);
    let offsets: Vec<i64> = letters.iter().map(|l| l.0).collect();
    assert_eq!(offsets, [300, 301, 302], "{letters:?}");
    assert!(
        letters[0].2.contains("offset 300") && letters[0].2.contains("schema id 9999"),
        "{}",
        letters[0].2
    );
    assert!(
        letters[1].2.contains("offset 301") && letters[1].2.contains("does not decode"),
        "{}",
        letters[1].2
    );
    assert!(
        letters[2].2.contains("offset 302") && letters[2].2.contains("wire format"),
        "{}",
        letters[2].2
    );
    // The original bytes are kept, to replay after a fix.
    assert_eq!(letters[2].1.as_deref(), Some(&br#"{"language":"Go","votes":3}"#[..]));
    assert_eq!(
        registry.id_requests(id),
        1,
        "one request for the known id: {}",
        registry.requests()
    );
    assert_eq!(
        registry.id_requests(9999),
        1,
        "one for the unknown one: {}",
        registry.requests()
    );
}

#[test]
fn a_registry_outage_during_a_drain_waits_without_dead_letters_exactly_once() {
    let mut registry = Registry::start();
    let (topic, table) = (unique("reg_outage"), unique("reg_outage"));
    let subject = format!("{topic}-value");
    let first = registry.register(&subject, "AVRO", V1);
    let second = registry.register(&subject, "AVRO", V2);
    assert_ne!(first, second);
    common::create_topic(&topic, 1);
    produce_raw(
        &topic,
        &(0..500).map(|n| Some(frame(first, &v1("Rust", n)))).collect::<Vec<_>>(),
    );

    let path = SinkPipeline::new(&topic, &table, "json_columns")
        .sink_line("format = \"avro\"")
        .batch_size(100)
        .extra(COLUMNS)
        .extra(&registry.section())
        .write();
    let host = Running::start(&["consume", path.to_str().expect("utf-8"), "--quiet"]);
    let db = Db::connect();
    wait_for("the first 500 rows", Duration::from_secs(60), || {
        count(&db, &table) == 500
    });

    // The second schema id arrives while the registry is down for 10 s.
    registry.stop();
    produce_raw(
        &topic,
        &(500..1000)
            .map(|n| Some(frame(second, &v2("Zig", n, Some(2016)))))
            .collect::<Vec<_>>(),
    );
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(count(&db, &table), 500, "nothing written while the schema is unknown");
    assert!(
        db.dead_letters(&topic).is_empty(),
        "an outage is not the messages' fault"
    );
    registry.start_again();
    wait_for("all 1000 rows", Duration::from_secs(60), || count(&db, &table) == 1000);
    let log = host.terminate();

    let rows = votes(&db, &table);
    let seen: Vec<i64> = rows.iter().map(|r| r.1).collect();
    assert_eq!(seen, (0..1000).collect::<Vec<_>>(), "each message once");
    assert!(db.dead_letters(&topic).is_empty());
    assert!(log.contains("schema registry does not answer"), "{log}");
    assert_eq!(registry.id_requests(second), 1, "{}", registry.requests());
}

#[test]
fn an_avro_generator_feeds_a_sink_whose_columns_come_from_the_registry() {
    let registry = Registry::start();
    let (topic, table) = (unique("reg_gen"), unique("reg_gen"));
    let schema = registry.dir().join("langs.avsc");
    std::fs::write(
        &schema,
        r#"{"type":"record","name":"FavoriteLanguage","fields":[{"name":"language","type":"string"}]}"#,
    )
    .expect("write schema");
    let generator = format!(
        "[[generators]]\nname = \"langs\"\ntopic = \"{topic}\"\nplugin = \"{}\"\ncount = 40\nformat = \"avro\"\nschema = \"{}\"\nsettings = {{ field = \"language\" }}\n",
        plugin("langs").display(),
        schema.display()
    );
    let path = SinkPipeline::new(&topic, &table, "json_columns")
        .sink_line("format = \"avro\"")
        .extra("[sinks.settings]\ncolumns = \"from_registry\"\n")
        .extra(&generator)
        .extra(&registry.section())
        .write();
    host_ok(&["run", path.to_str().expect("utf-8"), "--once"]);

    let db = Db::connect();
    let languages: Vec<String> = db
        .query(&format!("SELECT language FROM \"{table}\""), &[])
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(languages.len(), 40);
    assert!(languages.iter().all(|l| !l.is_empty()), "{languages:?}");
    // What was produced is the wire format of the registered schema.
    let (status, subjects) = registry.curl("GET", "/subjects", None, true);
    assert_eq!(status, 200);
    assert!(subjects.contains(&format!("{topic}-value")), "{subjects}");
    for m in common::read_topic(&topic) {
        let payload = m.payload.expect("payload");
        assert_eq!(payload[0], 0, "magic byte");
        assert_eq!(
            u32::from_be_bytes(payload[1..5].try_into().expect("4 bytes")),
            1,
            "the first schema id"
        );
    }
}

#[test]
fn a_new_schema_version_adds_its_column_and_old_and_new_rows_land() {
    let registry = Registry::start();
    let (topic, table) = (unique("reg_evolve"), unique("reg_evolve"));
    let subject = format!("{topic}-value");
    let first = registry.register(&subject, "AVRO", V1);
    common::create_topic(&topic, 1);
    produce_raw(
        &topic,
        &(0..5).map(|n| Some(frame(first, &v1("Rust", n)))).collect::<Vec<_>>(),
    );

    let path = SinkPipeline::new(&topic, &table, "json_columns")
        .sink_line("format = \"avro\"")
        .extra("[sinks.settings]\ncolumns = \"from_registry\"\n")
        .extra(&registry.section())
        .write();
    let host = Running::start(&["consume", path.to_str().expect("utf-8"), "--quiet"]);
    let db = Db::connect();
    wait_for("the v1 rows", Duration::from_secs(60), || count(&db, &table) == 5);

    let second = registry.register(&subject, "AVRO", V2);
    produce_raw(
        &topic,
        &(5..10)
            .map(|n| Some(frame(second, &v2("Zig", n, Some(2016)))))
            .collect::<Vec<_>>(),
    );
    wait_for("the v2 rows", Duration::from_secs(60), || count(&db, &table) == 10);
    let log = host.terminate();

    let rows: Vec<(i64, Option<i64>)> = db
        .query(&format!("SELECT votes, year FROM \"{table}\" ORDER BY votes"), &[])
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let expected: Vec<(i64, Option<i64>)> = (0..10).map(|n| (n, (n >= 5).then_some(2016))).collect();
    assert_eq!(rows, expected, "{log}");
    assert!(db.dead_letters(&topic).is_empty());
}
