//! Plugins built against version 0.2.0 of the contract (the frozen
//! `wit/v0.2.0/plugin.wit`) still load and run as mappers of one table: every
//! type 0.2.0 added crosses the host's adapter, and their deletes reach the
//! sink's table in an upsert sink; `host plugin inspect` names the version.
use crate::support::common;

use common::{Db, Keyed, SinkPipeline, create_topic, host, host_ok, plugin, produce_keyed, unique};

#[test]
fn a_mapper_built_for_0_2_0_upserts_rows_and_deletes_through_a_pipeline() {
    let topic = unique("contract02");
    let table = unique("contract02_rows");
    create_topic(&topic, 1);
    let messages: Vec<Keyed> = vec![
        (0, b"a".to_vec(), Some(b"first a".to_vec())),
        (0, b"b".to_vec(), Some(b"first b".to_vec())),
        (0, b"c".to_vec(), Some(b"first c".to_vec())),
        (0, b"a".to_vec(), Some(b"second a".to_vec())),
        (0, b"b".to_vec(), None),
    ];
    produce_keyed(&topic, &messages);
    let path = SinkPipeline::new(&topic, &table, "mapper_v0_2")
        .name("old")
        .batch_size(2)
        .upsert(&["k"])
        .write();
    host_ok(&["consume", path.to_str().expect("utf-8"), "--once", "--quiet"]);

    let db = Db::connect();
    let types: Vec<(String, String)> = db
        .query(
            "SELECT column_name::text, udt_name::text FROM information_schema.columns
             WHERE table_name = $1 AND column_name <> 'message_id' ORDER BY ordinal_position",
            &[&table],
        )
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let want = [
        ("k", "text"),
        ("v", "text"),
        ("u", "uuid"),
        ("n", "numeric"),
        ("b", "bytea"),
        ("d", "date"),
    ];
    let want: Vec<(String, String)> = want.iter().map(|(c, t)| (c.to_string(), t.to_string())).collect();
    assert_eq!(
        types.iter().take(want.len()).cloned().collect::<Vec<_>>(),
        want,
        "the 0.2.0 column types, as the table has them"
    );

    let rows: Vec<(String, String, String, String, Vec<u8>, String)> = db
        .query(
            &format!("SELECT k, v, u::text, n::text, b, d::text FROM \"{table}\" ORDER BY k"),
            &[],
        )
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect();
    assert_eq!(
        rows,
        vec![
            (
                "a".to_string(),
                "second a".to_string(),
                "00000000-0000-4000-8000-000000000003".to_string(),
                "3.50".to_string(),
                3i64.to_be_bytes().to_vec(),
                "1970-01-04".to_string()
            ),
            (
                "c".to_string(),
                "first c".to_string(),
                "00000000-0000-4000-8000-000000000002".to_string(),
                "2.50".to_string(),
                2i64.to_be_bytes().to_vec(),
                "1970-01-03".to_string()
            ),
        ],
        "b was deleted by its tombstone, a replaced"
    );
    assert!(db.dead_letters(&topic).is_empty());
}

#[test]
fn inspect_says_a_0_2_0_plugin_is_of_an_older_version_the_host_runs() {
    let out = host(&["plugin", "inspect", plugin("mapper_v0_2").to_str().expect("utf-8")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("exports wasm-stream:plugin/mapper@0.2.0"), "{text}");
    assert!(
        text.contains("contract: 0.2.0 (an older version this host still runs"),
        "{text}"
    );
    assert!(text.contains("verdict:  loads in this host"), "{text}");
}
