//! `pipeline.toml` parsing and validation, without services: typed names, the
//! parsed URL, and the bounds of every numeric setting.

use super::*;
use std::time::Duration;

const HEAD: &str = r#"[kafka]
bootstrap_servers = "localhost:9092"
security_protocol = "plaintext"

[postgres]
url = "postgres://avnadmin:pw@localhost:5432/info?sslmode=require"

[[topics]]
name = "cars"
"#;

fn parse(body: &str) -> Result<Pipeline, String> {
    Pipeline::parse(Path::new("pipeline.toml"), body).map_err(|e| e.to_string())
}

/// The 1-based line of the first line holding `needle`.
fn line_of(body: &str, needle: &str) -> usize {
    body.lines().position(|l| l.contains(needle)).expect("needle in body") + 1
}

fn sink(extra: &str) -> String {
    format!("{HEAD}\n[[sinks]]\nname = \"s\"\ntopic = \"cars\"\ntable = \"cars_rows\"\nmapper = \"m.wasm\"\n{extra}\n")
}

fn generator(extra: &str) -> String {
    format!("{HEAD}\n[[generators]]\nname = \"g\"\ntopic = \"cars\"\nplugin = \"g.wasm\"\n{extra}\n")
}

#[test]
fn a_valid_pipeline_holds_typed_names_and_a_parsed_url() {
    let p = parse(&sink("")).expect("valid");
    let s = &p.sinks[0];
    assert_eq!(s.topic, "cars");
    assert_eq!(s.table, "cars_rows");
    assert_eq!(p.topics[0].name, TopicName::new("cars").expect("valid"));
    assert_eq!(p.postgres.url.database(), "info");
    assert_eq!(p.postgres.url.target(), "localhost:5432/info");
    assert_eq!(s.batch_size, DEFAULT_BATCH_SIZE);
    assert_eq!(s.flush_interval, Duration::from_millis(DEFAULT_FLUSH_INTERVAL_MS));
    assert_eq!(s.group, "wasm-stream-cars_rows");
    assert!(!format!("{:?}", p.postgres).contains("pw"), "the password never prints");
}

#[test]
fn invalid_topic_and_table_names_are_located_and_say_the_fix() {
    let body = HEAD.replace("name = \"cars\"", "name = \"Cars\"");
    assert_eq!(
        parse(&body).unwrap_err(),
        format!(
            "pipeline.toml:{}:8: topics.name: \"Cars\" must start with a lowercase letter and hold only lowercase letters, digits and underscores, e.g. \"cars\"",
            line_of(&body, "\"Cars\"")
        )
    );
    let body = sink("").replace("cars_rows", "cars-rows");
    let e = parse(&body).unwrap_err();
    assert!(
        e.starts_with(&format!(
            "pipeline.toml:{}:9: sinks.table: ",
            line_of(&body, "cars-rows")
        )),
        "{e}"
    );
    assert!(e.ends_with("e.g. \"cars_rows\""), "{e}");
}

#[test]
fn postgres_urls_are_checked_when_loaded() {
    let url = |u: &str| parse(&HEAD.replace("postgres://avnadmin:pw@localhost:5432/info?sslmode=require", u));
    let e = url("postgres://avnadmin@localhost:5432").unwrap_err();
    assert_eq!(
        e,
        "pipeline.toml:6:7: postgres.url names no database; add it to the path, e.g. postgres://...:5432/info"
    );
    let e = url("postgres://avnadmin@localhost:5432/Info").unwrap_err();
    assert!(
        e.starts_with("pipeline.toml:6:7: postgres.url: the database name \"Info\" must start"),
        "{e}"
    );
    let e = url("postgres://avnadmin@localhost:port/info").unwrap_err();
    assert!(
        e.starts_with("pipeline.toml:6:7: postgres.url is not a PostgreSQL URL ("),
        "{e}"
    );
    let e = url("postgres://avnadmin@localhost/info?sslmode=disable").unwrap_err();
    assert!(
        e.contains("postgres.url has sslmode=disable but TLS is required"),
        "{e}"
    );
    let ok = url("host=localhost user=avnadmin dbname=info").expect("key=value form");
    assert_eq!(ok.postgres.url.database(), "info");
}

/// Each numeric setting: its key, a value over its limit and one under its
/// minimum (`None`: any value down to the type's least is allowed).
fn bounds() -> Vec<(&'static str, String, u64, Option<u64>, u64)> {
    vec![
        (
            "sinks.batch_size",
            sink("batch_size = {}"),
            MAX_BATCH_SIZE as u64,
            Some(1),
            20,
        ),
        (
            "sinks.flush_interval_ms",
            sink("flush_interval_ms = {}"),
            MAX_FLUSH_INTERVAL_MS,
            Some(1),
            5,
        ),
        (
            "generators.interval_ms",
            generator("interval_ms = {}"),
            MAX_GENERATOR_INTERVAL_MS,
            None,
            0,
        ),
        (
            "generators.count",
            generator("count = {}"),
            MAX_GENERATOR_COUNT,
            Some(1),
            5,
        ),
        (
            "sinks.limits.call_timeout_ms",
            sink("[sinks.limits]\ncall_timeout_ms = {}"),
            MAX_PLUGIN_TIMEOUT_MS,
            Some(1),
            300,
        ),
        (
            "generators.limits.compile_timeout_ms",
            generator("[generators.limits]\ncompile_timeout_ms = {}"),
            MAX_PLUGIN_TIMEOUT_MS,
            Some(1),
            1,
        ),
        (
            "plugins.memory_limit_bytes",
            format!("[plugins]\nmemory_limit_bytes = {{}}\n{HEAD}"),
            MAX_MEMORY_LIMIT_BYTES as u64,
            Some(MIN_MEMORY_LIMIT_BYTES as u64),
            33_554_432,
        ),
        (
            "plugins.max_output_bytes",
            format!("[plugins]\nmax_output_bytes = {{}}\n{HEAD}"),
            MAX_MAX_OUTPUT_BYTES as u64,
            Some(MIN_MAX_OUTPUT_BYTES as u64),
            1_048_576,
        ),
        (
            "plugins.max_plugin_bytes",
            format!("[plugins]\nmax_plugin_bytes = {{}}\n{HEAD}"),
            MAX_MAX_PLUGIN_BYTES as u64,
            Some(1),
            1000,
        ),
        (
            "topics.partitions",
            HEAD.replace("name = \"cars\"", "name = \"cars\"\npartitions = {}"),
            MAX_PARTITIONS as u64,
            Some(1),
            6,
        ),
        (
            "topics.replication",
            HEAD.replace("name = \"cars\"", "name = \"cars\"\nreplication = {}"),
            MAX_REPLICATION as u64,
            Some(1),
            3,
        ),
        (
            "audit.timeout_ms",
            format!("{HEAD}\n[audit]\ntimeout_ms = {{}}\n"),
            MAX_AUDIT_TIMEOUT_MS,
            Some(MIN_AUDIT_TIMEOUT_MS),
            5000,
        ),
        (
            "audit.interval_ms",
            format!("{HEAD}\n[audit]\ninterval_ms = {{}}\n"),
            MAX_AUDIT_INTERVAL_MS,
            None,
            30_000,
        ),
    ]
}

#[test]
fn every_numeric_setting_is_bounded_and_the_error_names_the_limit() {
    for (key, template, max, min, fine) in bounds() {
        let with = |n: u64| template.replace("{}", &n.to_string());
        parse(&with(fine)).unwrap_or_else(|e| panic!("{key} = {fine} is fine: {e}"));
        parse(&with(max)).unwrap_or_else(|e| panic!("{key} = {max} is the limit, allowed: {e}"));

        let over = with(max + 1);
        let e = parse(&over).expect_err(key);
        let line = line_of(&over, &format!("= {}", max + 1));
        assert!(e.starts_with(&format!("pipeline.toml:{line}:")), "{key}: {e}");
        assert!(
            e.contains(&format!("{key} = {} is over its limit of {max} (", max + 1)),
            "{key}: {e}"
        );
        assert!(e.contains("; set it between "), "{key}: {e}");

        if let Some(min) = min.filter(|m| *m > 0) {
            let e = parse(&with(min - 1)).expect_err(key);
            assert!(
                e.contains(&format!("{key} = {} is below its minimum of {min} (", min - 1)),
                "{key}: {e}"
            );
        }
    }
}

#[test]
fn a_short_audit_interval_keeps_its_own_message() {
    let body = format!("{HEAD}\n[audit]\ninterval_ms = 10\n");
    assert_eq!(
        parse(&body).unwrap_err(),
        format!(
            "pipeline.toml:{}:15: audit.interval_ms must be 0 (no periodic audit) or at least 1000",
            line_of(&body, "interval_ms = 10")
        )
    );
    let off = parse(&format!("{HEAD}\n[audit]\ninterval_ms = 0\n")).expect("0 turns it off");
    assert_eq!(off.audit.interval, None);
}

#[test]
fn limits_inherit_from_plugins_and_per_plugin_limits_win() {
    let body = format!(
        "[plugins]\ncall_timeout_ms = 700\n{}",
        sink("[sinks.limits]\nmemory_limit_bytes = 2097152")
    );
    let p = parse(&body).expect("valid");
    let limits = p.sinks[0].mapper.limits;
    assert_eq!(limits.call_timeout, Duration::from_millis(700));
    assert_eq!(limits.memory_limit_bytes, 2 << 20);
    assert_eq!(limits.max_plugin_bytes, DEFAULT_MAX_PLUGIN_BYTES);
    assert_eq!(limits.max_output_bytes, DEFAULT_MAX_OUTPUT_BYTES);
}

#[test]
fn two_sinks_in_one_group_are_refused_naming_both() {
    let body = format!(
        "{}\n[[sinks]]\nname = \"t\"\ntopic = \"cars\"\ntable = \"cars_copy\"\nmapper = \"m.wasm\"\ngroup = \"shared\"\n",
        sink("group = \"shared\"")
    );
    let e = parse(&body).unwrap_err();
    let first = body
        .lines()
        .position(|l| l.contains("group = \"shared\""))
        .expect("first")
        + 1;
    let second = body.lines().count()
        - body
            .lines()
            .rev()
            .position(|l| l.contains("group = \"shared\""))
            .expect("second");
    assert!(
        e.starts_with(&format!("pipeline.toml:{second}:9: sinks.group \"shared\" of sink \"t\" is also the group of sink \"s\" (pipeline.toml:{first}:9)")),
        "{e}"
    );
    assert!(e.contains("give each sink its own group"), "{e}");
    // A group written out that equals another sink's default is the same group.
    let body = format!(
        "{}\n[[sinks]]\nname = \"t\"\ntopic = \"cars\"\ntable = \"cars_copy\"\nmapper = \"m.wasm\"\ngroup = \"wasm-stream-cars_rows\"\n",
        sink("")
    );
    let e = parse(&body).unwrap_err();
    assert!(e.contains("is also the group of sink \"s\""), "{e}");
    // Distinct groups on one topic are fine.
    let body = format!(
        "{}\n[[sinks]]\nname = \"t\"\ntopic = \"cars\"\ntable = \"cars_copy\"\nmapper = \"m.wasm\"\ngroup = \"other\"\n",
        sink("group = \"shared\"")
    );
    parse(&body).expect("distinct groups");
}
