//! A plugin built for the wrong world, a missing plugin file, a core module and
//! broken pipeline files each give an error a user can act on. None of these
//! needs Kafka or PostgreSQL: `host validate` connects nowhere.
use crate::support::common;

use common::{host, plugin, unique, write_pipeline};

fn validate(body: &str) -> String {
    let path = write_pipeline(body);
    let out = host(&["validate", path.to_str().expect("utf-8")]);
    assert!(!out.status.success(), "validate must fail for:\n{body}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn sink_with_mapper(mapper: &str) -> String {
    format!(
        "[[topics]]\nname = \"t\"\n\n[[sinks]]\nname = \"s\"\ntopic = \"t\"\ntable = \"rows\"\nmapper = \"{mapper}\"\n"
    )
}

#[test]
fn a_generator_configured_as_a_mapper_is_refused() {
    let err = validate(&sink_with_mapper(&plugin("langs").display().to_string()));
    assert!(err.contains("is not a mapper plugin"), "{err}");
    assert!(
        err.contains("wasm-stream:plugin/generator@0.3.0"),
        "names what it exports: {err}"
    );
    assert!(
        err.contains("must export wasm-stream:plugin/mapper@0.3.0"),
        "names what is expected: {err}"
    );
}

#[test]
fn a_missing_plugin_file_names_the_path_and_the_fix() {
    let err = validate(&sink_with_mapper("/nonexistent/json_row.wasm"));
    assert!(err.contains("cannot read plugin /nonexistent/json_row.wasm"), "{err}");
    assert!(err.contains("scripts/build"), "{err}");
}

#[test]
fn a_core_module_is_not_a_component() {
    let dir = std::env::temp_dir().join(unique("core"));
    std::fs::create_dir_all(&dir).expect("dir");
    let core = dir.join("core.wasm");
    // The smallest valid core module: magic and version.
    std::fs::write(&core, b"\0asm\x01\0\0\0").expect("write");
    let err = validate(&sink_with_mapper(&core.display().to_string()));
    assert!(err.contains("is not a WebAssembly component"), "{err}");
    assert!(err.contains("it is a core WebAssembly module"), "{err}");
    assert!(err.contains("wasm32-wasip2"), "{err}");
}

#[test]
fn a_component_cut_short_or_not_webassembly_gets_a_hint_of_its_own() {
    let dir = std::env::temp_dir().join(unique("cut"));
    std::fs::create_dir_all(&dir).expect("dir");
    let whole = std::fs::read(plugin("json_row")).expect("json_row is built");
    let cut = dir.join("cut.wasm");
    std::fs::write(&cut, &whole[..whole.len() / 2]).expect("write");
    let err = validate(&sink_with_mapper(&cut.display().to_string()));
    assert!(
        err.contains(&format!("a component cut short at {} bytes", whole.len() / 2)),
        "{err}"
    );
    assert!(err.contains("hint: the file is incomplete"), "{err}");
    assert!(!err.contains("core module"), "it is no core module: {err}");

    let empty = dir.join("empty.wasm");
    std::fs::write(&empty, b"").expect("write");
    let err = validate(&sink_with_mapper(&empty.display().to_string()));
    assert!(
        err.contains("the file is empty") && err.contains("still being written"),
        "{err}"
    );

    let text = dir.join("text.wasm");
    std::fs::write(&text, b"#!/bin/sh\necho hi\n").expect("write");
    let err = validate(&sink_with_mapper(&text.display().to_string()));
    assert!(
        err.contains("the file is not WebAssembly (it starts with \"#!/bin/sh"),
        "{err}"
    );
    assert!(!err.contains("magic header"), "no multi-line compiler text: {err}");
}

#[test]
fn a_value_of_the_wrong_type_names_its_key_and_what_to_write() {
    let langs = plugin("langs").display().to_string();
    let generator = format!(
        "[[topics]]\nname = \"t\"\n\n[[generators]]\nname = \"langs\"\ntopic = \"t\"\nplugin = \"{langs}\"\ninterval_ms = \"1s\"\n"
    );
    // The connection sections take 11 lines: interval_ms is on line 19.
    let err = validate(&generator);
    assert!(
        err.contains("pipeline.toml:19:15: generators.langs.interval_ms: expected a whole number of milliseconds, e.g. interval_ms = 1000 (no quotes), not string \"1s\""),
        "{err}"
    );
    // Other keys and types, by the same rule.
    let json_row = plugin("json_row").display().to_string();
    for (extra, expected) in [
        (
            "batch_size = \"500\"\n",
            "pipeline.toml:20:14: sinks.s.batch_size: expected a whole number, e.g. batch_size = 3 (no quotes)",
        ),
        (
            "key = \"id\"\n",
            "sinks.s.key: expected a list in brackets, e.g. key = [\"a\", \"b\"]",
        ),
        (
            "[sinks.limits]\nmemory_limit_bytes = \"64MB\"\n",
            "sinks.s.limits.memory_limit_bytes: expected a whole number of bytes, e.g. memory_limit_bytes = 1048576",
        ),
        (
            "table = 7\n",
            "sinks.s.table: expected a string in quotes, e.g. table = \"7\", not integer `7`",
        ),
    ] {
        let body = if extra.starts_with("table") {
            sink_with_mapper(&json_row).replace("table = \"rows\"\n", extra)
        } else {
            format!("{}{extra}", sink_with_mapper(&json_row))
        };
        let err = validate(&body);
        assert!(err.contains(expected), "{extra}: {err}");
    }
    let err = validate("[[topics]]\nname = \"t\"\npartitions = \"3\"\n");
    assert!(
        err.contains("topics.t.partitions: expected a whole number, e.g. partitions = 3 (no quotes)"),
        "{err}"
    );
}

#[test]
fn settings_a_plugin_refuses_are_reported_with_its_message() {
    let body = format!(
        "{}[sinks.settings]\ncolour = \"blue\"\n",
        sink_with_mapper(&plugin("json_row").display().to_string())
    );
    let err = validate(&body);
    assert!(err.contains("plugin sink s refused its settings"), "{err}");
    assert!(err.contains("unknown setting \"colour\""), "{err}");
}

#[test]
fn an_unknown_key_is_located_in_the_file() {
    let body = format!(
        "{}batchsize = 10\n",
        sink_with_mapper(&plugin("json_row").display().to_string())
    );
    let err = validate(&body);
    // The connection sections take 11 lines; the typo is on line 20.
    assert!(err.contains("pipeline.toml:20:1: unknown field `batchsize`"), "{err}");
    assert!(err.contains("hint: check the spelling"), "{err}");
}

#[test]
fn a_syntax_error_is_located_in_the_file() {
    let err = validate("[[topics]\nname = \"t\"\n");
    assert!(err.contains("pipeline.toml:12:10: unclosed array table"), "{err}");
}

#[test]
fn a_sink_on_an_undeclared_topic_says_how_to_declare_it() {
    let err = validate(&format!(
        "[[sinks]]\nname = \"s\"\ntopic = \"nope\"\ntable = \"rows\"\nmapper = \"{}\"\n",
        plugin("json_row").display()
    ));
    assert!(
        err.contains("sinks.topic \"nope\" is not declared; add a [[topics]] entry"),
        "{err}"
    );
    assert!(err.contains("pipeline.toml:14:9:"), "{err}");
}

#[test]
fn plaintext_postgres_needs_an_explicit_opt_out() {
    let path = std::env::temp_dir().join(unique("tls")).join("pipeline.toml");
    std::fs::create_dir_all(path.parent().expect("dir")).expect("dir");
    std::fs::write(
        &path,
        "[kafka]\nbootstrap_servers = \"localhost:9092\"\nsecurity_protocol = \"plaintext\"\n\n[postgres]\nurl = \"postgres://u:p@localhost/db?sslmode=disable\"\n",
    )
    .expect("write");
    let out = host(&["validate", path.to_str().expect("utf-8")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pipeline.toml:6:7: postgres.url has sslmode=disable but TLS is required"),
        "{err}"
    );
}

#[test]
fn a_plugin_over_the_size_cap_is_not_compiled() {
    let body = format!(
        "{}[sinks.limits]\nmax_plugin_bytes = 1000\n",
        sink_with_mapper(&plugin("json_row").display().to_string())
    );
    let err = validate(&body);
    assert!(
        err.contains("over the limit of 1000 bytes (plugins.max_plugin_bytes)"),
        "{err}"
    );
}

#[test]
fn a_compilation_over_its_time_limit_is_abandoned() {
    let body = format!(
        "{}[sinks.limits]\ncompile_timeout_ms = 1\n",
        sink_with_mapper(&plugin("json_row").display().to_string())
    );
    let err = validate(&body);
    assert!(
        err.contains("did not compile within 1 ms (limits.compile_timeout_ms)"),
        "{err}"
    );
}
