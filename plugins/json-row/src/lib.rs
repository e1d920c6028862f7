//! Maps a JSON message to the old demo's row: `message_text` (the JSON text),
//! `message_time` (the Kafka timestamp), `offset_id` and `partition_id`.
//! Payloads that are empty, not UTF-8 or not JSON are rejected.
use sdk::mapper::{Guest, Message, Outcome, Table};
use sdk::types::{Column, ColumnType, Value};

struct JsonRow;

impl Guest for JsonRow {
    fn configure(settings: String) -> Result<Vec<Table>, String> {
        // No settings yet; refuse unknown ones so a typo is not silently ignored.
        let _: std::collections::BTreeMap<String, serde_json::Value> = sdk::parse_settings("json-row", &settings)
            .and_then(
                |m: std::collections::BTreeMap<String, serde_json::Value>| match m.keys().next() {
                    Some(k) => Err(format!("json-row: unknown setting {k:?} (this mapper takes none)")),
                    None => Ok(m),
                },
            )?;
        let column = |name: &str, kind, nullable| Column {
            name: name.to_string(),
            kind,
            nullable,
        };
        Ok(sdk::one_table(vec![
            column("message_text", ColumnType::Text, false),
            column("message_time", ColumnType::Timestamp, true),
            column("offset_id", ColumnType::Integer, false),
            column("partition_id", ColumnType::Integer, false),
        ]))
    }

    fn map_batch(messages: Vec<Message>) -> Vec<Outcome> {
        messages.into_iter().map(map_one).collect()
    }
}

fn map_one(message: Message) -> Outcome {
    let text = match validate(message.payload) {
        Ok(text) => text,
        Err(reason) => return Outcome::Rejected(reason),
    };
    let time = match message.timestamp {
        Some(ms) => Value::Timestamp(ms.saturating_mul(1000)),
        None => Value::Null,
    };
    sdk::rows(vec![vec![
        Value::Text(text),
        time,
        Value::Integer(message.offset),
        Value::Integer(i64::from(message.partition)),
    ]])
}

fn validate(payload: Option<Vec<u8>>) -> Result<String, String> {
    let bytes = payload.filter(|p| !p.is_empty()).ok_or("empty payload")?;
    let text = String::from_utf8(bytes).map_err(|e| format!("payload is not valid UTF-8: {e}"))?;
    serde_json::from_str::<serde::de::IgnoredAny>(&text).map_err(|e| format!("payload is not JSON: {e}"))?;
    Ok(text)
}

sdk::export_mapper!(JsonRow);
