//! Every argument of the `host` command line given non-ASCII text (a value
//! whose last character takes several bytes, a combining accent, digits of
//! another script, an emoji, bytes that are not UTF-8): the real binary exits
//! non-zero with an error that names the argument or the value, and never
//! panics. `host dead-letters list --since 5é` used to panic slicing the unit
//! off the age byte-wise.

use crate::support::common;

use common::{SinkPipeline, host_within, plugin, unique};
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt as _;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

/// Non-ASCII values every argument is tried with.
const VALUES: [&str; 6] = ["5é", "é", "5\u{301}", "٣d", "1😀", "Ｌangs"];

fn run(args: &[&str]) -> Output {
    host_within(args, Duration::from_secs(60))
}

/// `host args` failed, said `error`, named one of `expected`, and did not panic.
fn assert_clean_failure(args: &[&str], out: &Output, expected: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let shown = format!("host {args:?}: {}\nstderr: {stderr}", out.status);
    assert!(!out.status.success(), "exited 0: {shown}");
    assert_ne!(out.status.code(), None, "killed by a signal: {shown}");
    assert_ne!(out.status.code(), Some(101), "the exit code of a panic: {shown}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "panicked: {shown}"
    );
    assert!(stderr.contains("error"), "no error message: {shown}");
    assert!(
        expected.iter().any(|e| stderr.contains(e)),
        "the error names none of {expected:?}: {shown}"
    );
}

/// How a value may appear in an error: as given, or escaped by `{:?}`.
fn named(value: &str) -> [String; 2] {
    let debug = format!("{value:?}");
    [value.to_string(), debug.trim_matches('"').to_string()]
}

fn check(args: &[&str], flag: &str, value: &str) {
    let out = run(args);
    let [plain, escaped] = named(value);
    assert_clean_failure(args, &out, &[plain.as_str(), escaped.as_str(), flag]);
}

fn pipeline() -> std::path::PathBuf {
    let topic = unique("cli_non_ascii");
    SinkPipeline::new(&topic, &topic, "json_row")
        .generator("cli_gen", 1, 0)
        .extra("[http]\nlisten = \"\"")
        .write()
}

#[test]
fn dead_letter_selections_with_non_ascii_are_refused() {
    let p = pipeline();
    let p = p.to_str().expect("a UTF-8 path");
    for v in VALUES {
        for command in ["list", "show", "replay"] {
            check(&["dead-letters", command, p, "--since", v], "--since", v);
        }
        check(&["dead-letters", "list", p, "--sink", v], "--sink", v);
        check(&["dead-letters", "list", p, "--id", v], "--id", v);
        check(&["dead-letters", "show", p, "--id", "1", v], "--id", v);
    }
}

#[test]
fn check_simulate_and_status_with_non_ascii_are_refused() {
    let p = pipeline();
    let p = p.to_str().expect("a UTF-8 path");
    for v in VALUES {
        check(&["check", p, "--topic", v], "--topic", v);
        check(&["check", p, "sync", "--topic", v], "--topic", v);
        check(&["check", p, v], "WHAT", v);
        check(
            &["simulate", p, "db-ahead", "--topic", v, "--wait-secs", "1"],
            "topic",
            v,
        );
        check(&["simulate", p, v], "CASE", v);
        check(&["simulate", p, "kafka-ahead", "--wait-secs", v], "--wait-secs", v);
        let missing = format!("{v}.toml");
        for command in ["status", "validate", "provision", "check", "run", "produce", "consume"] {
            check(&[command, &missing], "cannot read", &missing);
        }
        check(&["aiven", "credentials", &missing], "cannot read", &missing);
        check(&["dead-letters", "list", &missing], "cannot read", &missing);
    }
}

#[test]
fn run_produce_and_consume_with_non_ascii_are_refused() {
    let p = pipeline();
    let p = p.to_str().expect("a UTF-8 path");
    for v in VALUES {
        check(&["produce", p, "--topic", v], "topic", v);
        check(&["consume", p, "--topic", v, "--once"], "topic", v);
        check(&["run", p, "--once", "--instance-id", v], "--instance-id", v);
        check(&["consume", p, "--once", "--instance-id", v], "--instance-id", v);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_host"))
            .args(["consume", p, "--once"])
            .env("WASM_STREAM_INSTANCE_ID", v)
            .output()
            .expect("run host");
        let [plain, escaped] = named(v);
        assert_clean_failure(&["consume", p, "--once"], &out, &[&plain, &escaped]);
    }
}

#[test]
fn plugin_commands_with_non_ascii_are_refused() {
    let generator = plugin("langs");
    let mapper = plugin("json_row");
    let check_plugin = plugin("sync_audit");
    let (generator, mapper, check_plugin) = (
        generator.to_str().expect("UTF-8"),
        mapper.to_str().expect("UTF-8"),
        check_plugin.to_str().expect("UTF-8"),
    );
    let dir = std::env::temp_dir().join(unique("cli_non_ascii_plugin"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let dir_text = dir.to_str().expect("UTF-8");
    for v in VALUES {
        let test = |flag: &str, plugin: &str| check(&["plugin", "test", plugin, flag, v], flag, v);
        test("--settings", mapper);
        test("--input", mapper);
        test("--snapshot", check_plugin);
        test("--expect", generator);
        for flag in ["--count", "--seed", "--call-timeout-ms", "--memory-limit-bytes"] {
            test(flag, generator);
        }
        check(&["plugin", "test", v], "cannot read", v);
        check(&["plugin", "inspect", v], "cannot read", v);
        check(
            &["plugin", "new", "generator", v, "--lang", "rust", "--dir", dir_text],
            "plugin name",
            v,
        );
        check(&["plugin", "new", v, "x", "--dir", dir_text], "KIND", v);
        check(
            &["plugin", "new", "generator", "x", "--lang", v, "--dir", dir_text],
            "--lang",
            v,
        );
    }
    // Input files in another encoding, or with non-ASCII, are refused or read.
    let bad = dir.join("latin1.txt");
    std::fs::write(&bad, b"caf\xe9\n").expect("write");
    let bad = bad.to_str().expect("UTF-8");
    check(&["plugin", "test", mapper, "--input", bad], "--input", bad);
    check(&["plugin", "test", generator, "--expect", bad], "--expect", bad);
    check(&["plugin", "test", check_plugin, "--snapshot", bad], "--snapshot", bad);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Arguments that are not UTF-8 at all: clap refuses them, or a path that
/// does not exist is named.
#[test]
fn arguments_that_are_not_utf8_are_refused() {
    let p = pipeline();
    let not_utf8 = OsString::from_vec(b"caf\xe9".to_vec());
    for args in [
        vec![
            "check".into(),
            p.clone().into_os_string(),
            "--topic".into(),
            not_utf8.clone(),
        ],
        vec![
            "dead-letters".into(),
            "list".into(),
            p.clone().into_os_string(),
            "--since".into(),
            not_utf8.clone(),
        ],
        vec!["validate".into(), not_utf8.clone()],
        vec!["plugin".into(), "inspect".into(), not_utf8.clone()],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_host"))
            .args(&args)
            .output()
            .expect("run host");
        let shown: Vec<String> = args.iter().map(|a| Path::new(a).display().to_string()).collect();
        let shown: Vec<&str> = shown.iter().map(String::as_str).collect();
        assert_clean_failure(&shown, &out, &["invalid UTF-8", "caf"]);
    }
}

#[test]
fn sink_commands_with_non_ascii_are_refused() {
    let p = pipeline();
    let p = p.to_str().expect("a UTF-8 path");
    for v in VALUES {
        check(&["sink", "rewind", p, "--sink", "rows", "--to-time", v], "--to-time", v);
        check(
            &["sink", "rewind", p, "--sink", "rows", "--to-offset", v],
            "--to-offset",
            v,
        );
        check(
            &["sink", "rewind", p, "--sink", v, "--to-start", "--dry-run"],
            "--sink",
            v,
        );
        check(&["sink", "pause", p, "--sink", v], "--sink", v);
        check(&["sink", "resume", p, "--sink", v], "--sink", v);
    }
}
