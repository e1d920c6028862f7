//! `host plugin test` and `host plugin inspect` run a component on its own:
//! no Kafka, no PostgreSQL, the pipeline's sandbox and limits. A plugin that
//! cannot load exits 2 with the message `host validate` gives; `--expect`
//! exits 1 on a difference; a component importing what the host does not
//! provide is refused everywhere it could be loaded.
use crate::support::common;

use common::{host, plugin, unique, write_pipeline};
use std::path::{Path, PathBuf};

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique("kit"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join(name);
    std::fs::write(&file, text).expect("write");
    file
}

#[test]
fn a_seeded_generator_prints_the_same_messages_and_expect_catches_a_change() {
    let langs = plugin("langs");
    let args = ["plugin", "test", path(&langs), "--count", "7", "--seed", "3"];
    let first = host(&args);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let lines: Vec<String> = stdout(&first).lines().map(String::from).collect();
    assert_eq!(lines.len(), 7);
    assert!(
        lines.iter().all(|l| l.starts_with("{\"Favorite Language\":")),
        "{lines:?}"
    );
    assert_eq!(stdout(&host(&args)), stdout(&first), "seeded runs agree");

    let expected = temp_file("expected.txt", &stdout(&first));
    let mut with_expect = args.to_vec();
    with_expect.extend(["--expect", path(&expected)]);
    assert_eq!(host(&with_expect).status.code(), Some(0));

    let mut changed = stdout(&first);
    changed = changed.replacen("Favorite Language", "Least Favorite", 1);
    let wrong = temp_file("expected.txt", &changed);
    let mut with_wrong = args.to_vec();
    with_wrong.extend(["--expect", path(&wrong)]);
    let out = host(&with_wrong);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("line 1:") && stderr(&out).contains("- {\"Least Favorite\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_mapper_prints_columns_rows_and_rejections() {
    let input = temp_file(
        "messages.txt",
        "{\"a\": 1}\nnot json\n{\"payload\": \"{\\\"b\\\": 2}\", \"offset\": 41, \"timestamp\": 1700000000000}\n",
    );
    let json_row = plugin("json_row");
    let out = host(&["plugin", "test", path(&json_row), "--input", path(&input), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    let columns: Vec<&str> = doc["columns"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    assert_eq!(columns, ["message_text", "message_time", "offset_id", "partition_id"]);
    let messages = doc["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 3);
    assert_eq!(messages[0]["rows"][0][0], "{\"a\": 1}");
    assert!(messages[1]["rejected"].as_str().is_some_and(|r| !r.is_empty()), "{doc}");
    assert_eq!(messages[2]["offset"], 41);
    assert_eq!(messages[2]["rows"][0][1], "2023-11-14T22:13:20.000000Z");
    assert_eq!(messages[2]["rows"][0][2], 41);

    let text = host(&["plugin", "test", path(&json_row), "--input", path(&input)]);
    let text = stdout(&text);
    assert!(text.contains("message_text text not null"), "{text}");
    assert!(text.contains("rows: 2"), "{text}");
    assert!(text.contains("offset 1: rejected:"), "{text}");
}

#[test]
fn a_mapper_of_several_tables_prints_each_table_with_its_rows() {
    let input = temp_file(
        "orders.txt",
        "{\"order_id\": 7, \"customer\": \"ann\", \"items\": [{\"sku\": \"A-1\", \"qty\": 2, \"price\": 9.99}, {\"sku\": \"B\", \"qty\": 1, \"price\": \"1.50\"}]}\n\
         {\"order_id\": 8, \"customer\": \"bo\"}\n",
    );
    let orders = plugin("orders");
    let out = host(&["plugin", "test", path(&orders), "--input", path(&input), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    let tables = doc["tables"].as_array().expect("tables");
    assert_eq!(tables.len(), 2, "{doc}");
    assert!(tables[0]["name"].is_null() && tables[1]["name"] == "items", "{doc}");
    assert_eq!(tables[1]["key"], serde_json::json!(["order_id", "line"]));
    let rows = doc["messages"][0]["rows"].as_array().expect("rows");
    assert_eq!(
        (rows[0]["table"].as_u64(), rows[1]["table"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(rows[1]["rows"].as_array().map(Vec::len), Some(2), "{doc}");
    assert_eq!(rows[1]["rows"][1][4], "1.50");
    assert!(
        doc["messages"][1]["rejected"]
            .as_str()
            .is_some_and(|r| r.contains("items")),
        "{doc}"
    );

    let text = stdout(&host(&["plugin", "test", path(&orders), "--input", path(&input)]));
    assert!(text.contains("table 0: the sink's table"), "{text}");
    assert!(
        text.contains("table 1: <sink table>_items\nkey: order_id, line"),
        "{text}"
    );
    assert!(text.contains("rows: 1") && text.contains("rows: 2"), "{text}");
}

#[test]
fn a_check_prints_its_findings() {
    let snapshot = temp_file(
        "snapshot.json",
        r#"{"taken_at": 1, "partitions": [{"sink": "s", "topic": "t", "partition": 0, "table": "x",
            "consumer_group": "g", "end_offset": 10, "committed_offset": 10, "stored_offset": 10, "dead_letters": 3}]}"#,
    );
    let audit = plugin("dead_letter_audit");
    let out = host(&["plugin", "test", path(&audit), "--snapshot", path(&snapshot)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("warning "), "{text}");
    assert!(text.contains("3 dead letters"), "{text}");
}

#[test]
fn a_plugin_that_cannot_load_exits_2_with_the_validate_message() {
    let junk = temp_file("junk.wasm", "not wasm at all");
    let out = host(&["plugin", "test", path(&junk)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is not a WebAssembly component"),
        "{}",
        stderr(&out)
    );

    let langs = plugin("langs");
    let out = host(&["plugin", "test", path(&langs), "--settings", r#"{"values": []}"#]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("refused its settings"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("settings.values must not be empty"),
        "{}",
        stderr(&out)
    );

    let hostile = plugin("hostile_generator");
    let out = host(&[
        "plugin",
        "test",
        path(&hostile),
        "--settings",
        r#"{"mode": "trap-in-configure"}"#,
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("asked to trap in configure"), "{}", stderr(&out));
}

#[test]
fn contract_breaches_are_reported_and_held_to_the_contract() {
    let hostile = plugin("hostile_generator");
    let out = host(&[
        "plugin",
        "test",
        path(&hostile),
        "--count",
        "4",
        "--settings",
        r#"{"mode": "too-many", "every": 1}"#,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 4, "never past the count");
    assert!(stderr(&out).contains("next(4) returned 9 messages"), "{}", stderr(&out));
}

#[test]
fn inspect_names_the_world_and_an_import_the_host_does_not_provide() {
    let langs = plugin("langs");
    let out = host(&["plugin", "inspect", path(&langs)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let bytes = std::fs::read(&langs).expect("read langs");
    assert!(text.contains("world:    generator-plugin"), "{text}");
    assert!(text.contains("contract: 0.3.0"), "{text}");
    assert!(text.contains(&host::plugins::content_hash(&bytes)), "{text}");
    assert!(text.contains("wasi:random/random@"), "{text}");

    let http = plugin("http_importing_generator");
    let out = host(&["plugin", "inspect", path(&http)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("wasi:http/client@0.3.0 (NOT provided by this host)"),
        "{}",
        stdout(&out)
    );

    // Refused at load by validate (and so by run and reload, which load the same way).
    let pipeline = write_pipeline(&format!(
        "[[topics]]\nname = \"t\"\n\n[[generators]]\nname = \"g\"\ntopic = \"t\"\nplugin = \"{}\"\n",
        http.display()
    ));
    let out = host(&["validate", path(&pipeline)]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("imports wasi:http/client@0.3.0, which the host does not provide"),
        "{err}"
    );
    assert!(err.contains("hint: build the plugin without it"), "{err}");
}

#[test]
fn generator_calls_are_made_as_host_run_makes_them_and_a_failing_call_is_named() {
    let hostile = plugin("hostile_generator");
    let calls = |settings: &str, calls: &str| {
        host(&[
            "plugin",
            "test",
            path(&hostile),
            "--calls",
            calls,
            "--count",
            "2",
            "--settings",
            settings,
        ])
    };
    // The fixture numbers its calls in each message: 2 messages from each of 4 calls.
    let out = calls(r#"{"mode": "none"}"#, "4");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let numbers: Vec<u64> = stdout(&out)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("JSON")["call"]
                .as_u64()
                .expect("call")
        })
        .collect();
    assert_eq!(numbers, [1, 1, 2, 2, 3, 3, 4, 4]);
    assert!(stderr(&out).contains("8 messages in 4 calls"), "{}", stderr(&out));

    // It traps on its third call: the first two calls' messages, then the fault, named.
    let out = calls(r#"{"mode": "trap", "every": 3}"#, "5");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 4, "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("call 3 (next(2)) failed after 4 messages"), "{err}");
    assert!(err.contains("asked to trap on call 3"), "{err}");

    let out = calls("{}", "0");
    assert_eq!(out.status.code(), Some(2), "--calls 0 is refused");
}

/// A process of the test's own that lives until the test ends, pass or fail.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cache_files(dir: &Path) -> (Vec<String>, Vec<String>) {
    let names: Vec<String> = std::fs::read_dir(dir)
        .expect("cache folder")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.into_iter().partition(|n| n.ends_with(".cwasm"))
}

/// Starts `plugin test` of `py` and kills it (SIGKILL) once its cache write
/// has begun; the partial file it left, or `None` when the write ended first.
fn kill_while_writing(py: &Path, cache: &Path) -> Option<String> {
    let _ = std::fs::remove_dir_all(cache);
    let mut child = Reaped(
        std::process::Command::new(env!("CARGO_BIN_EXE_host"))
            .args([
                "plugin",
                "test",
                path(py),
                "--count",
                "1",
                "--compile-timeout-ms",
                "600000",
            ])
            .env("WASM_STREAM_CACHE_DIR", cache)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn host"),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    while std::time::Instant::now() < deadline && child.0.try_wait().expect("try_wait").is_none() {
        let writing = std::fs::read_dir(cache)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| n.contains(".tmp"));
        if let Some(name) = writing {
            let _ = child.0.kill();
            let _ = child.0.wait();
            let (entries, others) = cache_files(cache);
            return (entries.is_empty() && others == [name.clone()]).then_some(name);
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    None
}

#[test]
fn a_python_component_compiles_once_and_no_command_leaves_a_partial_file() {
    let py = plugin("py_langs");
    let cache = std::env::temp_dir().join(unique("kit_cache"));
    let run = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_host"))
            // The compile limit is not under test: a loaded machine may pass the default.
            .args(["plugin", "test", path(&py), "--count", "3", "--seed", "1"])
            .args(["--compile-timeout-ms", "600000"])
            .env("WASM_STREAM_CACHE_DIR", &cache)
            .output()
            .expect("run host");
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        out
    };

    // A run killed while it writes its compiled code leaves a partial file
    // (tried again when the write won the race with the kill).
    let killed = (0..3)
        .find_map(|_| kill_while_writing(&py, &cache))
        .expect("a run killed during its cache write left its partial file");

    let first = run();
    assert!(stderr(&first).contains("compiled in "), "{}", stderr(&first));
    let (entries, others) = cache_files(&cache);
    assert_eq!(entries.len(), 1, "the compiled code is kept: {entries:?} {others:?}");
    assert!(
        others.is_empty(),
        "the killed run's partial file {killed} is removed, and this run left none: {others:?}"
    );

    // A partial file a running process is writing now stays.
    let live = Reaped(
        std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .expect("spawn sleep"),
    );
    let writing = cache.join(format!("writing.tmp{}", live.0.id()));
    std::fs::write(&writing, b"partial").expect("write");

    let second = run();
    let err = stderr(&second);
    assert!(
        err.contains("compiled code read from the cache"),
        "nothing compiled: {err}"
    );
    assert_eq!(stdout(&second), stdout(&first), "the same messages");
    let (again, others) = cache_files(&cache);
    assert_eq!(again, entries);
    assert_eq!(
        others,
        [writing.file_name().expect("name").to_string_lossy().into_owned()],
        "the running process's partial file stays"
    );
    drop(live);
    let _ = std::fs::remove_dir_all(&cache);

    // `host validate`, another command that exits once its plugins are
    // loaded, keeps the compiled code whole too. (In this test, not a test of
    // its own: two Python compiles at once slow each other down.)
    let pipeline = write_pipeline(&format!(
        "[plugins]\ncompile_timeout_ms = 600000\n\n[[topics]]\nname = \"t\"\n\n[[generators]]\nname = \"g\"\ntopic = \"t\"\nplugin = \"{}\"\n",
        py.display()
    ));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_host"))
        .args(["validate", path(&pipeline)])
        .env("WASM_STREAM_CACHE_DIR", &cache)
        .output()
        .expect("run host");
    assert!(out.status.success(), "{}", stderr(&out));
    let (entries, others) = cache_files(&cache);
    assert_eq!(
        (entries.len(), others),
        (1, Vec::<String>::new()),
        "kept whole: {entries:?}"
    );
    let _ = std::fs::remove_dir_all(&cache);
}

/// `--registry`: wire-format input is decoded with the writer's schema,
/// fetched from a private registry stand-in, before the mapper sees it.
#[test]
fn registry_encoded_input_is_decoded_to_json_before_the_mapper() {
    use base64::Engine as _;
    use common::registry::{PASSWORD, Registry, USER, frame};
    use host::registry::codec::{Compiled, SchemaType};

    const SCHEMA: &str = r#"{"type":"record","name":"Vote","namespace":"test","fields":[{"name":"language","type":"string"},{"name":"votes","type":"long"}]}"#;
    let registry = Registry::start();
    let id = registry.register(&format!("{}-value", unique("kit_avro")), "AVRO", SCHEMA);
    // Encoded with the host's own codec, framed as a producer would.
    let value = serde_json::json!({"language": "Rust", "votes": 7});
    let body = Compiled::parse(SchemaType::Avro, SCHEMA, &[])
        .expect("schema")
        .encode(&value)
        .expect("encode");
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let lines = [
        serde_json::json!({"payload_base64": b64(&frame(id, &body)), "offset": 5}),
        // An id the registry does not know: `host run` dead-letters it.
        serde_json::json!({"payload_base64": b64(&frame(9999, &body)), "offset": 6}),
    ];
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let input = temp_file("framed.jsonl", &text);
    let settings = r#"{"columns": [{"name": "language", "type": "text"}, {"name": "votes", "type": "integer"}]}"#;
    let ca = common::repo_root().join("certs/ca.pem");
    let json_columns = plugin("json_columns");
    let run = |extra: &[&str]| {
        let url = registry.url();
        let mut args = vec!["plugin", "test", path(&json_columns), "--input", path(&input)];
        args.extend(["--settings", settings, "--registry", &url, "--registry-user", USER]);
        args.extend([
            "--registry-password-env",
            "KIT_REGISTRY_PASSWORD",
            "--registry-ca",
            path(&ca),
        ]);
        args.extend(extra);
        std::process::Command::new(env!("CARGO_BIN_EXE_host"))
            .args(&args)
            .env("KIT_REGISTRY_PASSWORD", PASSWORD)
            .output()
            .expect("run host")
    };

    let out = run(&["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert_eq!(
        doc["messages"][0],
        serde_json::json!({"offset": 5, "rows": [["Rust", 7]], "schema_id": id, "decoded": value})
    );
    let failed = doc["messages"][1]["failed"].as_str().expect("the unknown id fails");
    assert!(failed.contains("schema id 9999"), "{failed}");
    assert!(doc["messages"][1].get("rows").is_none(), "{doc}");

    let out = run(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "offset 5: schema id {id}: {{\"language\":\"Rust\",\"votes\":7}}"
        )),
        "{text}"
    );
}
