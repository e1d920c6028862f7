//! The registry codecs against other implementations: values encoded by the
//! Apache Avro Python library and the protobuf package decode in the host to
//! the JSON of MAPPING.md, and what the host encodes decodes in them to the
//! same values. The Python side is host/tests/registry_support/codec.py, in
//! the venv `scripts/registry-tools install` makes (scripts/test does it).
//! Without the venv the tests fail, unless REGISTRY_TOOLS_OPTIONAL=1 says
//! to skip them. No Kafka, no PostgreSQL.
use host::registry::codec::{Compiled, SchemaType};
use host::registry::wire;
use serde_json::{Value, json};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn python() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let venv = std::env::var_os("REGISTRY_TOOLS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".tools/registry"));
    let python = venv.join("bin/python");
    if python.exists() {
        return Some(python);
    }
    if std::env::var("REGISTRY_TOOLS_OPTIONAL").as_deref() == Ok("1") {
        eprintln!(
            "SKIPPED: no {} (REGISTRY_TOOLS_OPTIONAL=1); scripts/registry-tools install makes it",
            python.display()
        );
        return None;
    }
    panic!(
        "{} is missing: run scripts/registry-tools install (or set REGISTRY_TOOLS_OPTIONAL=1 to skip)",
        python.display()
    );
}

/// One request to codec.py; its answer.
fn call(python: &PathBuf, request: &Value) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/registry_support/codec.py");
    let mut child = Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start codec.py");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(request.to_string().as_bytes())
        .expect("write the request");
    let output = child.wait_with_output().expect("codec.py ends");
    assert!(
        output.status.success(),
        "codec.py failed on {}: {}",
        request["op"],
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("codec.py answers JSON")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Compares field by field, so a failure names the field.
fn assert_same(direction: &str, got: &Value, want: &Value) {
    if let (Some(got), Some(want)) = (got.as_object(), want.as_object()) {
        for (key, w) in want {
            assert_eq!(got.get(key), Some(w), "{direction}: field {key:?}");
        }
        assert_eq!(
            got.len(),
            want.len(),
            "{direction}: fields {:?} vs {:?}",
            got.keys(),
            want.keys()
        );
    } else {
        assert_eq!(got, want, "{direction}");
    }
}

/// Python encodes each row, the host decodes; the host encodes, Python decodes.
fn avro_round_trips(python: &PathBuf, schema: &Value, rows: &[Value]) {
    let compiled = Compiled::parse(SchemaType::Avro, &schema.to_string(), &[]).expect("the host compiles the schema");
    let answer = call(python, &json!({"op": "avro-encode", "schema": schema, "values": rows}));
    for (row, body) in rows.iter().zip(answer["bodies"].as_array().expect("bodies")) {
        let decoded = compiled
            .decode(&unhex(body.as_str().expect("hex")))
            .expect("the host decodes Python's bytes");
        assert_same("Python → host", &decoded, row);
    }
    let bodies: Vec<String> = rows
        .iter()
        .map(|r| hex(&compiled.encode(r).expect("the host encodes")))
        .collect();
    let answer = call(
        python,
        &json!({"op": "avro-decode", "schema": schema, "bodies": bodies}),
    );
    for (row, decoded) in rows.iter().zip(answer["values"].as_array().expect("values")) {
        assert_same("host → Python", decoded, row);
    }
}

#[test]
fn avro_every_type_and_logical_type_round_trips_with_the_python_library() {
    let Some(python) = python() else { return };
    let field = |name: &str, schema: Value| json!({"name": name, "type": schema});
    let schema = json!({"type": "record", "name": "Everything", "namespace": "test", "fields": [
        field("null", json!("null")),
        field("boolean", json!("boolean")),
        field("int", json!("int")),
        field("long", json!("long")),
        field("float", json!("float")),
        field("double", json!("double")),
        field("bytes", json!("bytes")),
        field("string", json!("string")),
        field("decimal_bytes", json!({"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2})),
        field("decimal_fixed", json!({"type": "fixed", "name": "Money", "size": 8, "logicalType": "decimal", "precision": 18, "scale": 4})),
        field("date", json!({"type": "int", "logicalType": "date"})),
        field("time_millis", json!({"type": "int", "logicalType": "time-millis"})),
        field("time_micros", json!({"type": "long", "logicalType": "time-micros"})),
        field("timestamp_millis", json!({"type": "long", "logicalType": "timestamp-millis"})),
        field("timestamp_micros", json!({"type": "long", "logicalType": "timestamp-micros"})),
        field("timestamp_nanos", json!({"type": "long", "logicalType": "timestamp-nanos"})),
        field("local_timestamp_millis", json!({"type": "long", "logicalType": "local-timestamp-millis"})),
        field("local_timestamp_micros", json!({"type": "long", "logicalType": "local-timestamp-micros"})),
        field("uuid", json!({"type": "string", "logicalType": "uuid"})),
        field("uuid_fixed", json!({"type": "fixed", "name": "Id", "size": 16, "logicalType": "uuid"})),
        field("duration", json!({"type": "fixed", "name": "Span", "size": 12, "logicalType": "duration"})),
        field("enum", json!({"type": "enum", "name": "Suit", "symbols": ["SPADES", "HEARTS", "CLUBS"]})),
        field("fixed", json!({"type": "fixed", "name": "Four", "size": 4})),
        field("map", json!({"type": "map", "values": "long"})),
        field("array", json!({"type": "array", "items": "string"})),
        field("record", json!({"type": "record", "name": "Inner", "fields": [
            {"name": "name", "type": "string"},
            {"name": "tags", "type": {"type": "array", "items": "Suit"}}]})),
        field("optional", json!(["null", "string"])),
        field("multi", json!(["null", "long", "string", "Inner"])),
        field("named_again", json!("Four")),
    ]});
    let rows = [
        json!({"null": null, "boolean": true, "int": 2147483647, "long": 9007199254740993i64, "float": 1.5,
            "double": 1234.5678, "bytes": "AAEC/w==", "string": "héllo ✓", "decimal_bytes": "12.50",
            "decimal_fixed": "-123456789.0001", "date": "2026-12-03", "time_millis": "10:00:00.123",
            "time_micros": "23:59:59.999999", "timestamp_millis": "2026-12-03T10:00:00.123Z",
            "timestamp_micros": "2026-12-03T10:00:00.123456Z", "timestamp_nanos": "2026-12-03T10:00:00.123456789Z",
            "local_timestamp_millis": "2026-12-03T10:00:00.123Z", "local_timestamp_micros": "2026-12-03T10:00:00.000001Z",
            "uuid": "0b7e6a5c-1d2e-4f30-8a9b-0c1d2e3f4a5b", "uuid_fixed": "00010203-0405-0607-0809-0a0b0c0d0e0f",
            "duration": {"months": 1, "days": 2, "milliseconds": 3}, "enum": "CLUBS", "fixed": "AQIDBA==",
            "map": {"a": 1, "b": -1}, "array": ["x", "y"], "record": {"name": "n", "tags": ["SPADES", "HEARTS"]},
            "optional": "x", "multi": 5, "named_again": "/////w=="}),
        json!({"null": null, "boolean": false, "int": -2147483648, "long": i64::MIN, "float": "NaN",
            "double": "-Infinity", "bytes": "", "string": "", "decimal_bytes": "-0.05",
            "decimal_fixed": "0.0000", "date": "1969-12-31", "time_millis": "00:00:00.000",
            "time_micros": "00:00:00.000001", "timestamp_millis": "1969-12-31T23:59:59.999Z",
            "timestamp_micros": "1970-01-01T00:00:00.000000Z", "timestamp_nanos": "1970-01-01T00:00:00.000000001Z",
            "local_timestamp_millis": "2000-02-29T00:00:00.000Z", "local_timestamp_micros": "1999-12-31T23:59:59.999999Z",
            "uuid": "00000000-0000-0000-0000-000000000000", "uuid_fixed": "ffffffff-ffff-ffff-ffff-ffffffffffff",
            "duration": {"months": 0, "days": 0, "milliseconds": 4294967295u32}, "enum": "SPADES", "fixed": "AAAAAA==",
            "map": {}, "array": [], "record": {"name": "", "tags": []},
            "optional": null, "multi": "five", "named_again": "AAAAAA=="}),
        json!({"null": null, "boolean": true, "int": 0, "long": 0, "float": -0.25, "double": "Infinity",
            "bytes": "/w==", "string": "a\u{0}b", "decimal_bytes": "99999999.99", "decimal_fixed": "99999999999999.9999",
            "date": "2000-02-29", "time_millis": "23:59:59.999", "time_micros": "12:00:00.000000",
            "timestamp_millis": "2026-12-03T10:00:00.000Z", "timestamp_micros": "2026-12-03T10:00:00.000001Z",
            "timestamp_nanos": "2026-12-03T10:00:00.000000000Z", "local_timestamp_millis": "2026-12-03T10:00:00.999Z",
            "local_timestamp_micros": "2026-12-03T10:00:00.500000Z", "uuid": "ffffffff-ffff-ffff-ffff-ffffffffffff",
            "uuid_fixed": "0b7e6a5c-1d2e-4f30-8a9b-0c1d2e3f4a5b", "duration": {"months": 12, "days": 31, "milliseconds": 0},
            "enum": "HEARTS", "fixed": "AQIDBA==", "map": {"only": 9223372036854775807i64}, "array": ["z"],
            "record": {"name": "x", "tags": ["CLUBS"]}, "optional": "", "multi": {"name": "inner", "tags": []},
            "named_again": "AQIDBA=="}),
    ];
    avro_round_trips(&python, &schema, &rows);
}

#[test]
fn avro_a_recursive_record_and_a_union_of_records_round_trip() {
    let Some(python) = python() else { return };
    let schema = json!({"type": "record", "name": "Node", "namespace": "tree", "fields": [
        {"name": "value", "type": "long"},
        {"name": "next", "type": ["null", "Node"]},
        {"name": "shape", "type": [
            {"type": "record", "name": "Circle", "fields": [{"name": "radius", "type": "double"}]},
            {"type": "record", "name": "Square", "fields": [{"name": "side", "type": "double"}, {"name": "label", "type": "string"}]}]}
    ]});
    let rows = [
        json!({"value": 1, "next": {"value": 2, "next": null, "shape": {"radius": 1.5}}, "shape": {"side": 2.0, "label": "s"}}),
        json!({"value": -1, "next": null, "shape": {"radius": 0.5}}),
    ];
    avro_round_trips(&python, &schema, &rows);
}

const PROTO: &str = r#"
syntax = "proto3";
package shop.v1;

import "google/protobuf/timestamp.proto";
import "google/protobuf/duration.proto";
import "google/protobuf/wrappers.proto";
import "google/protobuf/struct.proto";
import "common.proto";

enum Status { STATUS_UNSPECIFIED = 0; PAID = 1; SHIPPED = 2; }

message Everything {
  int32 i32 = 1;
  int64 i64 = 2;
  uint32 u32 = 3;
  uint64 u64 = 4;
  sint32 s32 = 5;
  sint64 s64 = 6;
  fixed32 f32 = 7;
  fixed64 f64 = 8;
  sfixed32 sf32 = 9;
  sfixed64 sf64 = 10;
  float flt = 11;
  double dbl = 12;
  bool flag = 13;
  string text = 14;
  bytes blob = 15;
  Status status = 16;
  message Line { string sku = 1; uint32 count = 2; common.Money price = 3; }
  repeated Line lines = 17;
  repeated int32 packed = 18;
  map<string, int64> counts = 19;
  oneof payment { string card = 20; int64 voucher = 21; }
  google.protobuf.Timestamp at = 22;
  google.protobuf.Duration took = 23;
  google.protobuf.Int64Value maybe_count = 24;
  google.protobuf.StringValue maybe_note = 25;
  google.protobuf.Struct extra = 26;
  optional string nickname = 27;
}

message Refund {
  message Reason { string code = 1; }
  Reason reason = 1;
  int64 order = 2;
}
"#;

const COMMON: &str = "syntax = \"proto3\";\npackage common;\nmessage Money { int64 cents = 1; string currency = 2; }\n";

fn proto_round_trips(python: &PathBuf, message: &str, rows: &[Value]) {
    let references = [("common.proto".to_string(), COMMON.to_string())];
    let compiled = Compiled::parse(SchemaType::Protobuf, PROTO, &references)
        .expect("the host compiles the schema")
        .with_message(message)
        .expect("the message exists");
    let files = json!({"schema.proto": PROTO, "common.proto": COMMON});
    let answer = call(
        python,
        &json!({"op": "proto-encode", "files": files, "message": message, "values": rows}),
    );
    for (row, body) in rows.iter().zip(answer["bodies"].as_array().expect("bodies")) {
        let decoded = compiled
            .decode(&unhex(body.as_str().expect("hex")))
            .expect("the host decodes Python's bytes");
        assert_same(&format!("{message}: Python → host"), &decoded, row);
    }
    let bodies: Vec<String> = rows
        .iter()
        .map(|r| hex(&compiled.encode(r).expect("the host encodes")))
        .collect();
    let answer = call(python, &json!({"op": "proto-decode", "files": files, "bodies": bodies}));
    for (row, decoded) in rows.iter().zip(answer["values"].as_array().expect("values")) {
        assert_same(&format!("{message}: host → Python"), decoded, row);
    }
}

#[test]
fn protobuf_scalars_messages_and_well_known_types_round_trip_with_the_python_package() {
    let Some(python) = python() else { return };
    let full = json!({"i32": -5, "i64": 9007199254740993i64, "u32": 4294967295u32, "u64": 18446744073709551615u64,
        "s32": -2147483648, "s64": i64::MIN, "f32": 7, "f64": 8, "sf32": -9, "sf64": -10, "flt": 1.5, "dbl": -2.25,
        "flag": true, "text": "héllo", "blob": "AAEC/w==", "status": "SHIPPED",
        "lines": [{"sku": "a", "count": 2, "price": {"cents": 1250, "currency": "EUR"}}, {"sku": "b", "count": 0}],
        "packed": [1, -1, 300], "counts": {"x": 1, "y": -2}, "card": "4111",
        "at": "2026-12-03T10:00:00.123Z", "took": "1.500s", "maybe_count": 0, "maybe_note": "note",
        "extra": {"k": [1.0, "two", null, true, {"n": {}}]}, "nickname": ""});
    let defaults = json!({"i32": 0, "i64": 0, "u32": 0, "u64": 0, "s32": 0, "s64": 0, "f32": 0, "f64": 0, "sf32": 0,
        "sf64": 0, "flt": 0.0, "dbl": 0.0, "flag": false, "text": "", "blob": "", "status": "STATUS_UNSPECIFIED",
        "lines": [], "packed": [], "counts": {}, "voucher": 12});
    proto_round_trips(&python, "shop.v1.Everything", &[full, defaults]);
}

#[test]
fn protobuf_a_nested_message_and_the_second_message_use_their_message_indexes() {
    let Some(python) = python() else { return };
    proto_round_trips(
        &python,
        "shop.v1.Refund",
        &[json!({"reason": {"code": "late"}, "order": 7})],
    );
    proto_round_trips(&python, "shop.v1.Refund.Reason", &[json!({"code": "x"})]);
    proto_round_trips(&python, "shop.v1.Everything.Line", &[json!({"sku": "s", "count": 1})]);
    // The message indexes in the body pick the message, whatever `encode` writes.
    let references = [("common.proto".to_string(), COMMON.to_string())];
    let first = Compiled::parse(SchemaType::Protobuf, PROTO, &references).unwrap();
    let reason = first.clone().with_message("shop.v1.Refund.Reason").unwrap();
    let body = reason.encode(&json!({"code": "y"})).unwrap();
    assert_eq!(&body[..3], [4, 2, 0], "[1, 0]: count 2, then 1 and 0, zig-zag");
    assert_eq!(first.decode(&body).unwrap(), json!({"code": "y"}));
}

#[test]
fn json_schema_valid_documents_pass_and_invalid_ones_are_refused() {
    let schema = r#"{"type": "object", "required": ["id"], "additionalProperties": false,
        "properties": {"id": {"type": "integer"}, "name": {"type": ["string", "null"]}}}"#;
    let compiled = Compiled::parse(SchemaType::Json, schema, &[]).unwrap();
    let body = compiled.encode(&json!({"id": 1, "name": null})).unwrap();
    assert_eq!(body, br#"{"id":1,"name":null}"#);
    let framed = wire::frame(42, &body);
    let (id, rest) = wire::split(&framed).unwrap();
    assert_eq!(
        (id, compiled.decode(rest).unwrap()),
        (42, json!({"id": 1, "name": null}))
    );
    for (bad, why) in [
        (json!({"name": "x"}), "required"),
        (json!({"id": "1"}), "expected type"),
        (json!({"id": 1, "other": 2}), "no property"),
    ] {
        let e = compiled.decode(bad.to_string().as_bytes()).unwrap_err().to_string();
        assert!(e.contains(why), "{bad}: {e}");
        assert!(compiled.encode(&bad).is_err(), "{bad}");
    }
}
