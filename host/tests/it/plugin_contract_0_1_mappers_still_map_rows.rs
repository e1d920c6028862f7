//! Plugins built against version 0.1.0 of the contract (the frozen
//! `wit/v0.1.0/plugin.wit`) still load and map rows through a real pipeline,
//! every 0.1.0 value type crossing the host's adapter; `host plugin inspect`
//! says which version a plugin targets, and a version the host does not run
//! is refused naming the versions it runs.
use crate::support::common;

use common::{Db, SinkPipeline, create_topic, host, host_ok, plugin, produce_raw, unique};

#[test]
fn a_mapper_built_for_0_1_0_maps_rows_and_rejections_through_a_pipeline() {
    let topic = unique("contract01");
    let table = unique("contract01_rows");
    create_topic(&topic, 1);
    let payloads: Vec<Option<Vec<u8>>> = vec![
        Some(br#"{"a": 1}"#.to_vec()),
        Some(b"not json".to_vec()),
        Some(br#"{"b": [true, null], "c": "x"}"#.to_vec()),
        Some(Vec::new()),
        Some(br#""just a string""#.to_vec()),
    ];
    produce_raw(&topic, &payloads);
    let path = SinkPipeline::new(&topic, &table, "mapper_v0_1")
        .name("old")
        .batch_size(2)
        .write();
    host_ok(&["consume", path.to_str().expect("utf-8"), "--once", "--quiet"]);

    let db = Db::connect();
    let types: Vec<(String, String)> = db
        .query(
            "SELECT column_name::text, udt_name::text FROM information_schema.columns
             WHERE table_name = $1 AND column_name <> 'message_id' AND column_name NOT LIKE '\\_kafka\\_%' ORDER BY ordinal_position",
            &[&table],
        )
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let want = [
        ("message_text", "text"),
        ("message_time", "timestamptz"),
        ("offset_id", "int8"),
        ("partition_id", "int8"),
        ("doc", "jsonb"),
        ("size", "float8"),
        ("has_key", "bool"),
    ];
    let want: Vec<(String, String)> = want.iter().map(|(c, t)| (c.to_string(), t.to_string())).collect();
    assert_eq!(types, want, "the 0.1.0 column types, as the table has them");

    let rows: Vec<(String, bool, i64, i64, String, f64, bool)> = db
        .query(
            &format!(
                "SELECT message_text, message_time IS NOT NULL, offset_id, partition_id, doc::text, size, has_key
                 FROM \"{table}\" ORDER BY offset_id"
            ),
            &[],
        )
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6)))
        .collect();
    let text = |i: usize| String::from_utf8(payloads[i].clone().expect("payload")).expect("utf-8");
    assert_eq!(
        rows,
        vec![
            (text(0), true, 0, 0, r#"{"a": 1}"#.to_string(), 8.0, false),
            (
                text(2),
                true,
                2,
                0,
                r#"{"b": [true, null], "c": "x"}"#.to_string(),
                29.0,
                false
            ),
            (text(4), true, 4, 0, r#""just a string""#.to_string(), 15.0, false),
        ]
    );
    let dead: Vec<(i64, String)> = db.dead_letters(&topic).into_iter().map(|(o, _, r)| (o, r)).collect();
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert_eq!(dead[0].0, 1);
    assert!(dead[0].1.contains("rejected: payload is not JSON"), "{dead:?}");
    assert_eq!(dead[1].0, 3);
    assert!(dead[1].1.contains("rejected: empty payload"), "{dead:?}");
}

#[test]
fn inspect_names_the_contract_version_a_plugin_targets() {
    let out = host(&["plugin", "inspect", plugin("mapper_v0_1").to_str().expect("utf-8")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("exports wasm-stream:plugin/mapper@0.1.0"), "{text}");
    assert!(
        text.contains("contract: 0.1.0 (an older version this host still runs"),
        "{text}"
    );
    assert!(text.contains("verdict:  loads in this host"), "{text}");

    let out = host(&["plugin", "inspect", plugin("json_row").to_str().expect("utf-8")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("contract: 0.3.0 (the version of this host's wit/plugin.wit)"),
        "{text}"
    );
}

#[test]
fn a_plugin_of_a_version_the_host_does_not_run_is_refused_naming_both_versions() {
    let future = plugin("future_mapper");
    let path = SinkPipeline::new("t", &unique("never"), "future_mapper")
        .name("s")
        .write();
    let out = host(&["validate", path.to_str().expect("utf-8")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is a mapper plugin for version 0.9.0 of the plugin contract"),
        "{err}"
    );
    assert!(err.contains("it runs versions 0.3.0, 0.2.0 and 0.1.0"), "{err}");
    assert!(
        err.contains("rebuild the plugin against the wit/plugin.wit of this host"),
        "{err}"
    );

    let out = host(&["plugin", "test", future.to_str().expect("utf-8"), "--input", "-"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("0.9.0") && err.contains("0.3.0, 0.2.0 and 0.1.0"), "{err}");
}
