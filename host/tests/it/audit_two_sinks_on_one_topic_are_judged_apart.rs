//! Two sinks read one topic into two tables: when one sink's stored offsets
//! are lost, `host check sync` says so for that sink's partition only; the
//! other sink's partition stays in sync.
use crate::support::{audit, common};

use audit::{check_entry, check_sync, consume_once, produce_json, sink_body};
use common::{Db, create_topic, plugin, unique, write_pipeline};
use serde_json::Value;

#[test]
fn each_sink_gets_its_own_verdict() {
    let topic = unique("audit_two_sinks");
    let (kept, lost) = (unique("audit_kept"), unique("audit_lost"));
    create_topic(&topic, 1);
    produce_json(&topic, 0..10);
    let second = format!(
        "\n[[sinks]]\nname = \"second\"\ntopic = \"{topic}\"\ntable = \"{lost}\"\nmapper = \"{}\"\n",
        plugin("json_row").display()
    );
    let body = sink_body(&topic, &kept, &check_entry("sync-audit", "sync_audit", ""));
    let path = write_pipeline(&format!("{body}{second}"));
    consume_once(&path, &topic);

    // The second sink's offsets are gone: Kafka is ahead for it alone.
    Db::connect().execute(&format!("DELETE FROM wasm_stream_offsets WHERE table_name = '{lost}'"));

    let (code, report) = check_sync(&path, &topic);
    assert_eq!(code, 1, "{report:#}");
    let row = |sink: &str| -> &Value {
        report["sync"]
            .as_array()
            .expect("a sync section")
            .iter()
            .find(|r| r["sink"] == sink && r["topic"] == topic.as_str() && r["partition"] == 0)
            .unwrap_or_else(|| panic!("no row of sink {sink} in {report:#}"))
    };
    assert_eq!(row("audited")["stored_offset"], 10, "{report:#}");
    assert_eq!(row("audited")["verdict"], "in sync at offset 10", "{report:#}");
    assert_eq!(row("audited")["in_sync"], true, "{report:#}");
    assert_eq!(row("second")["stored_offset"], Value::Null, "{report:#}");
    assert_eq!(row("second")["verdict"], "Kafka ahead", "{report:#}");
    assert_eq!(row("second")["in_sync"], false, "{report:#}");
}

/// Two sinks of one topic in distinct groups (the only way the file allows:
/// a shared group is refused when it is loaded) each store every message of
/// every partition, not a share of the partitions.
#[test]
fn two_groups_on_one_topic_each_store_every_message() {
    let topic = unique("two_groups");
    let (a, b) = (unique("two_groups_a"), unique("two_groups_b"));
    create_topic(&topic, 4);
    let messages: Vec<common::Keyed> = (0..40)
        .map(|i| {
            (
                i % 4,
                format!("k{i}").into_bytes(),
                Some(format!("{{\"n\": {i}}}").into_bytes()),
            )
        })
        .collect();
    common::produce_keyed(&topic, &messages);
    let sink = |name: &str, table: &str| {
        format!(
            "\n[[sinks]]\nname = \"{name}\"\ntopic = \"{topic}\"\ntable = \"{table}\"\ngroup = \"{table}_group\"\nmapper = \"{}\"\n",
            plugin("json_row").display()
        )
    };
    let path = write_pipeline(&format!(
        "\n[[topics]]\nname = \"{topic}\"\npartitions = 4\n{}{}",
        sink("first", &a),
        sink("second", &b)
    ));
    consume_once(&path, &topic);
    let db = Db::connect();
    for table in [&a, &b] {
        let offsets = db.offsets(table);
        assert_eq!(offsets.len(), 40, "{table} holds every message once: {offsets:?}");
        for p in 0..4 {
            common::assert_each_offset_once(&offsets, p, 10);
        }
    }
}
