//! What `host plugin test` reads as mapper input: each `--input` line a
//! bare payload or a JSON message record.

use super::registry;
use crate::plugins::mapper;
use anyhow::{Context as _, bail};
use std::path::Path;

/// Reads mapper input: each line a message, either a bare payload or a JSON
/// object with `payload` and any of key, partition, offset, timestamp, topic.
pub fn read_messages(path: &Path) -> anyhow::Result<Vec<mapper::Message>> {
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("cannot read the messages from stdin")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read --input file {}", path.display()))?
    };
    text.lines()
        .enumerate()
        .map(|(i, line)| parse_message(i, line).with_context(|| format!("{}:{}", path.display(), i + 1)))
        .collect()
}

pub(super) const MESSAGE_FIELDS: [&str; 8] = [
    "payload",
    "key",
    "partition",
    "offset",
    "timestamp",
    "topic",
    // Bytes that are not text, such as the registry's wire format.
    "payload_base64",
    "key_base64",
];

pub(super) fn parse_message(index: usize, line: &str) -> anyhow::Result<mapper::Message> {
    let offset = i64::try_from(index).unwrap_or(i64::MAX);
    let mut message = mapper::Message {
        topic: "test".into(),
        partition: 0,
        offset,
        timestamp: None,
        key: None,
        payload: Some(line.as_bytes().to_vec()),
        schema: None,
    };
    let Ok(serde_json::Value::Object(fields)) = serde_json::from_str::<serde_json::Value>(line) else {
        return Ok(message);
    };
    // A JSON line is a message record only when it has a payload and nothing
    // else than a message's fields; any other JSON is itself the payload.
    let has_payload = fields.contains_key("payload") || fields.contains_key("payload_base64");
    if !has_payload || fields.keys().any(|k| !MESSAGE_FIELDS.contains(&k.as_str())) {
        return Ok(message);
    }
    let bytes = |v: &serde_json::Value, what: &str| -> anyhow::Result<Option<Vec<u8>>> {
        Ok(match v {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(s.as_bytes().to_vec()),
            serde_json::Value::Object(_) | serde_json::Value::Array(_) => Some(v.to_string().into_bytes()),
            other => bail!("{what} must be a string, null or JSON: {other}"),
        })
    };
    for (k, v) in &fields {
        match k.as_str() {
            "payload" => message.payload = bytes(v, "payload")?,
            "key" => message.key = bytes(v, "key")?,
            "payload_base64" => message.payload = registry::base64_field(v, k)?,
            "key_base64" => message.key = registry::base64_field(v, k)?,
            "topic" => message.topic = v.as_str().context("topic must be a string")?.to_string(),
            "partition" => {
                message.partition = v
                    .as_i64()
                    .and_then(|p| i32::try_from(p).ok())
                    .context("partition must be a 32-bit integer")?;
            }
            "offset" => message.offset = v.as_i64().context("offset must be an integer")?,
            "timestamp" => {
                message.timestamp = match v {
                    serde_json::Value::Null => None,
                    v => Some(
                        v.as_i64()
                            .context("timestamp must be milliseconds since the Unix epoch")?,
                    ),
                }
            }
            _ => {}
        }
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_are_messages_only_with_message_fields() {
        let m = parse_message(3, r#"{"payload": "x", "offset": 9, "key": "k"}"#).expect("parses");
        assert_eq!(
            (m.offset, m.payload.as_deref(), m.key.as_deref()),
            (9, Some(&b"x"[..]), Some(&b"k"[..]))
        );
        let m = parse_message(3, r#"{"payload": "x", "name": "y"}"#).expect("parses");
        assert_eq!(m.payload.as_deref(), Some(&br#"{"payload": "x", "name": "y"}"#[..]));
        assert_eq!(m.offset, 3);
        assert!(parse_message(0, r#"{"payload": 5}"#).is_err());
        let m = parse_message(0, r#"{"payload_base64": "AAAAAAEK", "key_base64": null}"#).expect("parses");
        assert_eq!((m.payload.as_deref(), m.key), (Some(&[0, 0, 0, 0, 1, 10][..]), None));
        assert!(parse_message(0, r#"{"payload_base64": "not base64!"}"#).is_err());
    }
}
