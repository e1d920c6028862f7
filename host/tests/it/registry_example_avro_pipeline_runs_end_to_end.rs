//! `examples/avro/pipeline.toml`, the languages demo in Avro, run as a user
//! would (`host run ... --once`) against the local stack's registry: its
//! topic and table renamed so the run is its own. The generator's JSON goes
//! to Kafka in the registry's wire format, and the sink stores one typed
//! row per message, its column taken from the registered schema.
use crate::support::common;

use common::{Db, host_ok, read_topic, repo_root, unique};

#[test]
fn the_avro_example_stores_every_vote_as_a_typed_row() {
    let example = repo_root().join("examples/avro");
    let (topic, table) = (unique("langs_avro"), unique("favorite_languages_avro"));
    let dir = std::env::temp_dir().join(unique("avro_example"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for file in ["langs.avsc", "registry-password"] {
        std::fs::copy(example.join(file), dir.join(file)).expect("copy the example's file");
    }
    let text = std::fs::read_to_string(example.join("pipeline.toml")).expect("the example");
    let text = text
        .replace("\"../../", &format!("\"{}/", repo_root().display()))
        .replace("favorite_languages_avro", &table)
        .replace("langs_avro", &topic)
        .replace("interval_ms = 100", "interval_ms = 0");
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, text).expect("write the pipeline");
    host_ok(&["run", path.to_str().expect("utf-8"), "--once"]);

    let messages = read_topic(&topic);
    assert_eq!(messages.len(), 50, "the example's count");
    for m in &messages {
        let payload = m.payload.as_deref().expect("a value");
        assert_eq!(payload[0], 0, "the registry's magic byte");
    }
    let db = Db::connect();
    let kind: String = db.query(
        "SELECT udt_name::text FROM information_schema.columns WHERE table_name = $1 AND column_name = 'language'",
        &[&table],
    )[0]
    .get(0);
    assert_eq!(kind, "text", "the column of the registered schema");
    let rows: Vec<(i64, String)> = db
        .query(
            &format!("SELECT _kafka_offset, language FROM \"{table}\" ORDER BY 1"),
            &[],
        )
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rows.len(), 50, "one row per message");
    assert!(
        rows.iter().enumerate().all(|(i, (o, _))| *o == i as i64),
        "each offset once"
    );
    assert!(
        rows.iter().all(|(_, l)| !l.is_empty() && !l.starts_with('{')),
        "decoded values, not bytes or JSON: {rows:?}"
    );
}
