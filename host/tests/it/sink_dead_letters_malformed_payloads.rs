//! Malformed payloads (not JSON, invalid UTF-8, empty, none) produced among
//! good ones: exactly those land in the dead-letter table, every good one in
//! the table.
use crate::support::common;

use common::{Db, SinkPipeline, create_topic, host_ok, produce_raw, unique};

#[test]
fn exactly_the_malformed_messages_are_dead_lettered() {
    let topic = unique("malformed");
    let table = unique("malformed_rows");
    create_topic(&topic, 1);
    let good = |i: usize| Some(format!(r#"{{"Favorite Language": "Rust {i}"}}"#).into_bytes());
    let payloads: Vec<Option<Vec<u8>>> = vec![
        good(0),
        Some(b"not json".to_vec()),
        good(2),
        Some(vec![0xff, 0xfe, b'{', b'}']),
        good(4),
        Some(Vec::new()),
        None,
        good(7),
        Some(br#"{"truncated": "#.to_vec()),
        good(9),
    ];
    produce_raw(&topic, &payloads);
    let path = SinkPipeline::new(&topic, &table, "json_row").batch_size(4).write();
    host_ok(&["consume", path.to_str().expect("utf-8"), "--once", "--quiet"]);

    let db = Db::connect();
    let stored: Vec<i64> = db.offsets(&table).into_iter().map(|(_, o)| o).collect();
    assert_eq!(stored, vec![0, 2, 4, 7, 9]);
    let dead = db.dead_letters(&topic);
    let dead_offsets: Vec<i64> = dead.iter().map(|d| d.0).collect();
    assert_eq!(dead_offsets, vec![1, 3, 5, 6, 8]);
    for (offset, payload, reason) in &dead {
        assert_eq!(payload, &payloads[*offset as usize], "payload kept for offset {offset}");
        let expected = match offset {
            1 | 8 => "not JSON",
            3 => "not valid UTF-8",
            _ => "empty payload",
        };
        assert!(reason.contains(expected), "offset {offset}: {reason}");
    }
}
