//! The Python and JavaScript langs generators draw from `wasi:random`, which
//! the host seeds: the same seed gives the same messages read back from
//! Kafka, another seed other messages.
use crate::support::common;

use common::{create_topic, host_ok, plugin, read_topic, unique, write_pipeline};

const COUNT: usize = 200;

/// Runs both generators with `seed`; returns the payloads of each topic.
fn produce(seed: u64) -> [Vec<Option<Vec<u8>>>; 2] {
    let topics = [unique("py_langs"), unique("js_langs")];
    // What this test checks is the bytes, not the default compile deadline
    // (plugin_python_javascript_components_load does): the suite runs it
    // beside other binaries that compile, so the deadline is the longest.
    let mut body = String::from("[plugins]\ncompile_timeout_ms = 600000\n\n");
    for (topic, wasm) in topics.iter().zip(["py_langs", "js_langs"]) {
        create_topic(topic, 1);
        body += &format!(
            "[[topics]]\nname = \"{topic}\"\n\n[[generators]]\nname = \"{wasm}\"\ntopic = \"{topic}\"\nplugin = \"{}\"\ncount = {COUNT}\nseed = {seed}\n\n",
            plugin(wasm).display()
        );
    }
    let path = write_pipeline(&body);
    host_ok(&["produce", path.to_str().expect("utf-8"), "--quiet"]);
    topics.map(|t| read_topic(&t).into_iter().map(|m| m.payload).collect())
}

#[test]
fn the_same_seed_gives_the_same_messages_in_python_and_javascript() {
    let first = produce(7);
    let second = produce(7);
    let other = produce(8);
    for (i, lang) in ["python", "javascript"].iter().enumerate() {
        assert_eq!(first[i].len(), COUNT, "{lang}");
        assert_eq!(first[i], second[i], "{lang}: seed 7 twice");
        assert_ne!(first[i], other[i], "{lang}: seed 8 differs from seed 7");
        let distinct: std::collections::HashSet<_> = first[i].iter().collect();
        assert!(
            distinct.len() > 8,
            "{lang}: the messages vary: {} distinct",
            distinct.len()
        );
        for payload in &first[i] {
            let text = String::from_utf8(payload.clone().expect("a payload")).expect("utf-8");
            let value: serde_json::Value = serde_json::from_str(&text).expect("JSON");
            assert!(value["Favorite Language"].is_string(), "{lang}: {text}");
        }
    }
}
