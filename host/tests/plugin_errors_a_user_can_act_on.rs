//! A plugin built for the wrong world, a missing plugin file, a core module and
//! broken pipeline files each give an error a user can act on. None of these
//! needs Kafka or PostgreSQL: `host validate` connects nowhere.
mod common;

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
        err.contains("wasm-stream:plugin/generator@0.2.0"),
        "names what it exports: {err}"
    );
    assert!(
        err.contains("must export wasm-stream:plugin/mapper@0.2.0"),
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
    assert!(err.contains("wasm32-wasip2"), "{err}");
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
