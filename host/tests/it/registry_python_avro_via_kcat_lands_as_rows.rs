//! Messages encoded by another implementation, the Apache Avro Python
//! library (through host/tests/registry_support/codec.py, in the venv
//! `scripts/registry-tools install` makes), framed in the registry's wire
//! format and produced with kcat, land as the expected typed rows through a
//! json-columns sink whose columns come from the registry.

use crate::support::common;

use common::registry::{Registry, frame};
use common::{Db, SinkPipeline, host_ok, repo_root, unique};
use serde_json::{Value, json};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

const SCHEMA: &str = r#"{"type":"record","name":"Vote","namespace":"test","fields":[
  {"name":"language","type":"string"},
  {"name":"votes","type":"long"},
  {"name":"score","type":"double"},
  {"name":"ok","type":"boolean"},
  {"name":"day","type":{"type":"int","logicalType":"date"}},
  {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":9,"scale":2}},
  {"name":"note","type":["null","string"],"default":null}
]}"#;

/// language, votes, score, ok, day, price, note.
type Row = (String, i64, f64, bool, String, String, Option<String>);

fn python() -> PathBuf {
    let venv = std::env::var_os("REGISTRY_TOOLS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".tools/registry"));
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/registry-tools install",
        python.display()
    );
    python
}

/// Avro bodies of `values`, encoded by the Python library.
fn python_encode(values: &[Value]) -> Vec<Vec<u8>> {
    let script = repo_root().join("host/tests/registry_support/codec.py");
    let mut child = Command::new(python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start codec.py");
    let schema: Value = serde_json::from_str(SCHEMA).expect("schema JSON");
    let request = json!({"op": "avro-encode", "schema": schema, "values": values});
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(request.to_string().as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("codec.py");
    assert!(
        out.status.success(),
        "codec.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    answer["bodies"]
        .as_array()
        .expect("bodies")
        .iter()
        .map(|h| {
            let h = h.as_str().expect("hex");
            (0..h.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&h[i..i + 2], 16).expect("hex"))
                .collect()
        })
        .collect()
}

/// Produces each payload as one message with kcat (one file a message).
fn kcat_produce(topic: &str, payloads: &[Vec<u8>]) {
    let dir = std::env::temp_dir().join(unique("kcat"));
    std::fs::create_dir_all(&dir).expect("dir");
    let files: Vec<PathBuf> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let f = dir.join(format!("{i:04}.bin"));
            std::fs::write(&f, p).expect("write");
            f
        })
        .collect();
    let certs = repo_root().join("certs");
    let status = Command::new("kcat")
        .args(["-P", "-b", "localhost:9093", "-t", topic, "-p", "0"])
        .args(["-X", "security.protocol=SSL"])
        .arg("-X")
        .arg(format!("ssl.ca.location={}", certs.join("ca.pem").display()))
        .arg("-X")
        .arg(format!(
            "ssl.certificate.location={}",
            certs.join("service.cert").display()
        ))
        .arg("-X")
        .arg(format!("ssl.key.location={}", certs.join("service.key").display()))
        .args(&files)
        .status()
        .expect("kcat is installed by scripts/local-stack up");
    assert!(status.success(), "kcat -P failed: {status}");
}

#[test]
fn avro_encoded_by_the_python_library_and_produced_with_kcat_lands_as_typed_rows() {
    let registry = Registry::start();
    let (topic, table) = (unique("reg_kcat"), unique("reg_kcat"));
    let id = registry.register(&format!("{topic}-value"), "AVRO", SCHEMA);
    let values = [
        json!({"language": "Rust", "votes": 1, "score": 0.5, "ok": true, "day": "2026-12-03", "price": "12.50", "note": "first"}),
        json!({"language": "Zig", "votes": 9_007_199_254_740_993_i64, "score": -2.25, "ok": false, "day": "1970-01-01", "price": "-0.05", "note": null}),
    ];
    let payloads: Vec<Vec<u8>> = python_encode(&values).iter().map(|b| frame(id, b)).collect();
    common::create_topic(&topic, 1);
    kcat_produce(&topic, &payloads);

    let path = SinkPipeline::new(&topic, &table, "json_columns")
        .sink_line("format = \"avro\"")
        .extra("[sinks.settings]\ncolumns = \"from_registry\"\n")
        .extra(&registry.section())
        .write();
    host_ok(&["consume", path.to_str().expect("utf-8"), "--once", "--quiet"]);

    let db = Db::connect();
    let rows = db.query(
        &format!("SELECT language, votes, score, ok, day::text, price::text, note FROM \"{table}\" ORDER BY language"),
        &[],
    );
    let got: Vec<Row> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6)))
        .collect();
    assert_eq!(
        got,
        [
            (
                "Rust".into(),
                1,
                0.5,
                true,
                "2026-12-03".into(),
                "12.50".into(),
                Some("first".into())
            ),
            (
                "Zig".into(),
                9_007_199_254_740_993,
                -2.25,
                false,
                "1970-01-01".into(),
                "-0.05".into(),
                None
            ),
        ]
    );
    assert!(db.dead_letters(&topic).is_empty());
}
