//! The registry codecs on their own (no Kafka, no PostgreSQL): messages per
//! second decoding and encoding the bench-json message (100 bytes of JSON)
//! as an Avro record, beside serde_json parsing and writing the same JSON.
//!
//! `cargo bench --profile dev --config 'profile.dev.package.host.opt-level=2'
//! --bench registry_codec [-- N]` (the dev profile scripts/bench uses), or
//! `--release`.
use host::registry::codec::{Compiled, SchemaType};
use serde_json::Value;
use std::hint::black_box;
use std::time::Instant;

const SCHEMA: &str = r#"{"type": "record", "name": "Event", "fields": [
    {"name": "seq", "type": "long"},
    {"name": "user", "type": "string"},
    {"name": "event", "type": {"type": "enum", "name": "Kind", "symbols": ["click", "view", "scroll", "purchase", "login", "logout"]}},
    {"name": "amount", "type": "double"},
    {"name": "ok", "type": "boolean"},
    {"name": "pad", "type": "string"}
]}"#;

const PROTO: &str = r#"syntax = "proto3";
enum Kind { CLICK = 0; VIEW = 1; SCROLL = 2; PURCHASE = 3; LOGIN = 4; LOGOUT = 5; }
message Event { int64 seq = 1; string user = 2; Kind event = 3; double amount = 4; bool ok = 5; string pad = 6; }
"#;

const EVENTS: [&str; 6] = ["click", "view", "scroll", "purchase", "login", "logout"];

/// The bench-json generator's message `seq`, 100 bytes.
fn message(seq: u64) -> Vec<u8> {
    let h = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let head = format!(
        r#"{{"seq":{seq},"user":"user-{:04}","event":"{}","amount":{}.{:02},"ok":{},"pad":""#,
        h % 10_000,
        EVENTS[(h >> 16) as usize % EVENTS.len()],
        (h >> 24) % 10_000,
        (h >> 40) % 100,
        (h >> 48) & 1 == 1,
    );
    let mut out = head.into_bytes();
    out.resize(98, b'x');
    out.extend_from_slice(b"\"}");
    out
}

fn rate(label: &str, n: usize, f: impl FnMut(usize)) -> f64 {
    let mut f = f;
    let start = Instant::now();
    for i in 0..n {
        f(i);
    }
    let per_second = n as f64 / start.elapsed().as_secs_f64();
    println!("{label:<58} {per_second:>12.0} msg/s");
    per_second
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let compiled = Compiled::parse(SchemaType::Avro, SCHEMA, &[]).expect("schema");
    let json: Vec<Vec<u8>> = (0..n as u64).map(message).collect();
    let values: Vec<Value> = json.iter().map(|j| serde_json::from_slice(j).expect("json")).collect();
    let avro: Vec<Vec<u8>> = values.iter().map(|v| compiled.encode(v).expect("encode")).collect();
    println!(
        "{n} messages: JSON {} bytes, Avro body {} bytes (the first)",
        json[0].len(),
        avro[0].len()
    );
    let parse = rate("serde_json: parse JSON bytes to a Value", n, |i| {
        black_box(serde_json::from_slice::<Value>(&json[i]).expect("json"));
    });
    let decode = rate("avro: decode the body to a Value", n, |i| {
        black_box(compiled.decode(&avro[i]).expect("decode"));
    });
    let mut text = Vec::with_capacity(256);
    let decode_text = rate("avro: decode to JSON text (decode_json_into)", n, |i| {
        text.clear();
        compiled.decode_json_into(&avro[i], &mut text).expect("decode");
        black_box(&text);
    });
    let write = rate("serde_json: write a Value as JSON text", n, |i| {
        text.clear();
        serde_json::to_writer(&mut text, &values[i]).expect("write");
        black_box(&text);
    });
    let mut body = Vec::with_capacity(256);
    let encode = rate("avro: encode a Value (reused buffer)", n, |i| {
        body.clear();
        compiled.encode_into(&values[i], &mut body).expect("encode");
        black_box(&body);
    });
    let round = rate("avro: decode + encode", n, |i| {
        body.clear();
        compiled
            .encode_into(&compiled.decode(&avro[i]).expect("decode"), &mut body)
            .expect("encode");
        black_box(&body);
    });
    // The same message as Protobuf (prost-reflect through serde).
    let proto = Compiled::parse(SchemaType::Protobuf, PROTO, &[]).expect("proto schema");
    let proto_values: Vec<Value> = values
        .iter()
        .map(|v| {
            let mut v = v.clone();
            v["event"] = Value::from(v["event"].as_str().map(str::to_uppercase));
            v
        })
        .collect();
    let proto_bodies: Vec<Vec<u8>> = proto_values.iter().map(|v| proto.encode(v).expect("encode")).collect();
    let proto_decode = rate("protobuf: decode to JSON text (decode_json_into)", n, |i| {
        text.clear();
        proto.decode_json_into(&proto_bodies[i], &mut text).expect("decode");
        black_box(&text);
    });
    let proto_encode = rate("protobuf: encode a Value (reused buffer)", n, |i| {
        body.clear();
        proto.encode_into(&proto_values[i], &mut body).expect("encode");
        black_box(&body);
    });
    println!(
        "protobuf ratios: decode to JSON text / JSON parse {:.2}; encode / JSON write {:.2}",
        proto_decode / parse,
        proto_encode / write
    );
    println!(
        "ratios: avro decode / JSON parse {:.2}; decode+JSON text / JSON parse {:.2}; encode / JSON write {:.2}; decode+encode / JSON parse {:.2}",
        decode / parse,
        decode_text / parse,
        encode / write,
        round / parse
    );
}
