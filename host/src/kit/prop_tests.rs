//! Property tests of what `host plugin test` reads and prints: any `--input`
//! line is a message or an error naming the field, any file and any
//! `--snapshot` text is read or refused, and any value a mapper returns
//! renders, never a panic.

use super::check_test::read_snapshot;
use super::messages::{MESSAGE_FIELDS, parse_message, read_messages};
use super::render::{date_text, timestamp_text, value_json, value_text};
use crate::plugins::{content_hash, mapper};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Value as Json, json};

fn config() -> Config {
    Config {
        // A failure is kept as a named test beside these, not as a file.
        failure_persistence: None,
        ..Config::default()
    }
}

/// A JSON value of any type, non-ASCII and extreme numbers included.
fn json_value() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::from),
        any::<i64>().prop_map(Json::from),
        any::<u64>().prop_map(Json::from),
        prop::sample::select(vec![
            i64::from(i32::MIN) - 1,
            i64::from(i32::MAX) + 1,
            i64::MIN,
            i64::MAX
        ])
        .prop_map(Json::from),
        any::<f64>().prop_map(Json::from),
        any::<String>().prop_map(Json::from),
        prop::sample::select(vec!["é", "😀", "", "\u{0}", "\\u0000", "{\"payload\": 1}"]).prop_map(Json::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Json::from),
            prop::collection::btree_map("\\PC{0,6}", inner, 0..4).prop_map(|m| Json::Object(m.into_iter().collect())),
        ]
    })
}

/// A message record line: `payload` and any of the other message fields,
/// each of any JSON type, sometimes with a field that is not a message's.
fn message_line() -> impl Strategy<Value = String> {
    (
        json_value(),
        prop::collection::vec((prop::sample::select(MESSAGE_FIELDS.to_vec()), json_value()), 0..6),
        prop::option::of("\\PC{1,8}"),
    )
        .prop_map(|(payload, fields, extra)| {
            let mut object = serde_json::Map::new();
            for (k, v) in fields {
                object.insert(k.to_string(), v);
            }
            object.insert("payload".into(), payload);
            if let Some(k) = extra {
                object.insert(k, json!(1));
            }
            Json::Object(object).to_string()
        })
}

/// A value as a mapper may return it.
fn mapper_value() -> impl Strategy<Value = mapper::Value> {
    prop_oneof![
        Just(mapper::Value::Null),
        any::<String>().prop_map(mapper::Value::Text),
        any::<i64>().prop_map(mapper::Value::Integer),
        any::<f64>().prop_map(mapper::Value::Float),
        any::<bool>().prop_map(mapper::Value::Boolean),
        any::<i64>().prop_map(mapper::Value::Timestamp),
        any::<String>().prop_map(mapper::Value::Json),
        any::<String>().prop_map(mapper::Value::Uuid),
        any::<String>().prop_map(mapper::Value::Numeric),
        any::<Vec<u8>>().prop_map(mapper::Value::Bytea),
        any::<i32>().prop_map(mapper::Value::Date),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_input_line_is_a_message_or_an_error(line in any::<String>()) {
        let _ = parse_message(0, &line);
    }

    #[test]
    fn any_json_input_line_is_a_message_or_an_error(value in json_value(), index in any::<usize>()) {
        let _ = parse_message(index, &value.to_string());
    }

    /// A record's string payload is the payload as it was; a bad field is
    /// an error that names it.
    #[test]
    fn message_records_keep_their_payload_or_name_the_bad_field(line in message_line()) {
        let fields: serde_json::Map<String, Json> = serde_json::from_str(&line).expect("an object");
        match parse_message(0, &line) {
            Ok(m) => {
                if fields.keys().all(|k| MESSAGE_FIELDS.contains(&k.as_str())) {
                    if let Some(Json::String(s)) = fields.get("payload") {
                        prop_assert_eq!(m.payload.as_deref(), Some(s.as_bytes()));
                    }
                } else {
                    prop_assert_eq!(m.payload.as_deref(), Some(line.as_bytes()));
                }
            }
            Err(e) => {
                let e = e.to_string();
                prop_assert!(MESSAGE_FIELDS.iter().any(|f| e.starts_with(f)), "{}", e);
            }
        }
    }

    /// Any bytes as the `--input` file: messages, or an error naming the file.
    #[test]
    fn any_input_file_is_messages_or_an_error(bytes in prop_oneof![any::<Vec<u8>>(), any::<String>().prop_map(String::into_bytes)], lines in prop::collection::vec(message_line(), 0..4)) {
        let path = std::env::temp_dir().join(format!("kit-prop-input-{}-{}.jsonl", std::process::id(), content_hash(&bytes)));
        let mut text = bytes;
        for l in &lines {
            text.push(b'\n');
            text.extend_from_slice(l.as_bytes());
        }
        std::fs::write(&path, &text).expect("write input");
        let read = read_messages(&path);
        let _ = std::fs::remove_file(&path);
        if let Err(e) = read {
            prop_assert!(format!("{e:#}").contains(&path.display().to_string()), "{:#}", e);
        }
    }

    /// Any JSON as the `--snapshot` file: a snapshot, or an error naming it.
    #[test]
    fn any_snapshot_file_is_a_snapshot_or_an_error(
        value in json_value(),
        partitions in prop::collection::vec(prop::collection::btree_map(
            prop::sample::select(vec!["topic", "partition", "end_offset", "stored-offset", "dead_letters", "sink", "é"]),
            json_value(),
            0..5,
        ), 0..3),
        whole in any::<bool>(),
    ) {
        let text = if whole {
            json!({"taken_at": value, "partitions": partitions}).to_string()
        } else {
            value.to_string()
        };
        let path = std::env::temp_dir().join(format!("kit-prop-snapshot-{}-{}.json", std::process::id(), content_hash(text.as_bytes())));
        std::fs::write(&path, &text).expect("write snapshot");
        let read = read_snapshot(&path);
        let _ = std::fs::remove_file(&path);
        if let Err(e) = read {
            prop_assert!(format!("{e:#}").contains("is not a snapshot"), "{:#}", e);
        }
    }

    /// Whatever a mapper returns prints as text and as JSON.
    #[test]
    fn any_mapper_value_renders(value in mapper_value()) {
        let _ = value_text(&value);
        let _ = value_json(&value);
    }

    #[test]
    fn any_timestamp_and_date_render(micros in any::<i64>(), days in any::<i32>()) {
        prop_assert!(timestamp_text(micros).ends_with('Z'));
        prop_assert!(date_text(days).contains('-'));
    }
}
