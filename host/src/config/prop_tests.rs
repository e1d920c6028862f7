//! Property tests of `pipeline.toml` parsing: any text gives a checked
//! pipeline or an error located in the file, never a panic. Two kinds of
//! input: text with no structure (bytes of TOML syntax in any order, and a
//! valid file with text spliced in or cut out), and whole pipelines in which
//! values are swapped for wrong types, out-of-range numbers, odd names and
//! non-ASCII, keys renamed and lines dropped.

use super::*;
use proptest::prelude::*;
use proptest::test_runner::Config;

/// Every section and key the file accepts, each with a valid value.
const VALID: &str = r#"[kafka]
bootstrap_servers = "localhost:9093"
security_protocol = "ssl"
ca = "certs/ca.pem"
cert = "certs/service.cert"
key = "certs/service.key"

[postgres]
url = "postgres://avnadmin@localhost:5432/info?sslmode=require"
password_env = "HOME"
tls = "verify-full"
ca = "certs/ca.pem"

[plugins]
call_timeout_ms = 5000
memory_limit_bytes = 67108864
max_plugin_bytes = 33554432
compile_timeout_ms = 60000

[http]
listen = "127.0.0.1:9187"
allowed_hosts = ["status.example.com"]

[provision]
method = "aiven"

[aiven]
project = "my-project"
kafka_service = "kafka-demo"
pg_service = "pg-demo"
token_env = "AIVEN_TOKEN"
api_url = "https://api.aiven.io"

[[topics]]
name = "langs"
partitions = 3
replication = 1

[[generators]]
name = "gen"
topic = "langs"
plugin = "g.wasm"
interval_ms = 1000
count = 50
seed = 7

[generators.settings]
rate = 1.5

[generators.limits]
call_timeout_ms = 100

[[sinks]]
name = "rows"
topic = "langs"
table = "lang_rows"
mapper = "m.wasm"
group = "my-group"
instance_id = "one"
batch_size = 100
flush_interval_ms = 50
mode = "upsert"
key = ["id", "at"]
on_lost_offsets = "skip"

[sinks.settings]
columns = ["a", "b"]

[[checks]]
name = "audit"
plugin = "c.wasm"

[checks.settings]
threshold = 0

[audit]
interval_ms = 30000
timeout_ms = 5000
"#;

fn config() -> Config {
    Config {
        // A failure is kept as a named test beside these, not as a file.
        failure_persistence: None,
        ..Config::default()
    }
}

fn parse(text: &str) -> Result<Pipeline, ConfigError> {
    Pipeline::parse(Path::new("pipeline.toml"), text)
}

/// The parse did not panic (the property itself); an error is located
/// inside the text and says something.
fn assert_located(text: &str) -> Result<(), TestCaseError> {
    match parse(text) {
        Ok(_) => Ok(()),
        Err(ConfigError::Invalid {
            line, column, message, ..
        }) => {
            let lines = text.split('\n').count();
            prop_assert!(line >= 1 && line <= lines, "line {line} of {lines}: {message}");
            prop_assert!(column >= 1, "column {column}: {message}");
            prop_assert!(!message.trim().is_empty(), "an empty message");
            Ok(())
        }
        Err(e @ ConfigError::Read { .. }) => Err(TestCaseError::fail(format!("parse read a file: {e}"))),
    }
}

/// A TOML basic string holding `s`, whatever it contains.
fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Names no check expects: empty, blank, non-ASCII, too long, look-alikes.
fn odd_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("  ".to_string()),
        Just("é".to_string()),
        Just("naïve_table".to_string()),
        Just("Ｌangs".to_string()),
        Just("😀".to_string()),
        Just("a\u{0}b".to_string()),
        Just("a\u{301}".to_string()),
        Just("x".repeat(300)),
        Just("é".repeat(40)),
        Just("1abc".to_string()),
        Just("a-b".to_string()),
        Just("langs ".to_string()),
        Just("=".to_string()),
        Just("A=B".to_string()),
        Just("postgres://é@ü:99999/ï".to_string()),
        Just("postgres://u:p@[::1/db".to_string()),
        Just("host=é dbname=ü".to_string()),
        Just("0.0.0.0:99999".to_string()),
        Just("[::1]:é".to_string()),
        Just("https://".to_string()),
        Just("http://localhostévil".to_string()),
        "\\PC{0,12}",
        any::<String>(),
    ]
}

/// A TOML value of any type: what a key may wrongly be given.
fn any_value() -> impl Strategy<Value = String> {
    let integer = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        prop::sample::select(vec![
            0i64,
            -1,
            1,
            i64::from(i32::MAX),
            i64::from(i32::MAX) + 1,
            i64::from(u32::MAX) + 1,
            i64::MAX,
            i64::MIN,
            4 << 30,
            (4 << 30) + 1,
            (1 << 20) - 1,
            100_000,
            100_001,
            600_001,
        ])
        .prop_map(|n| n.to_string()),
    ];
    prop_oneof![
        3 => integer,
        3 => odd_name().prop_map(|s| quoted(&s)),
        1 => prop::sample::select(vec![
            "1.5", "nan", "-inf", "+inf", "1e308", "-0.0", "true", "false", "1979-05-27T07:32:00Z", "07:32:00",
            "1979-05-27", "[]", "[1, \"a\"]", "{}", "{ a = 1 }", "{ a = { b = [] } }", "'literal é'",
            "\"\"\"multi\nline é\"\"\"", "0x1F", "0o17", "0b101", "1_000", "+1", "é", "\"unterminated",
            "[1,", "", "\"\\u00\"", "\"\\uD800\"",
        ])
        .prop_map(str::to_string),
    ]
}

/// What happens to one `key = value` line of [`VALID`].
#[derive(Debug, Clone)]
enum Change {
    Value(String),
    Key(String),
    Drop,
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        6 => any_value().prop_map(Change::Value),
        1 => prop_oneof![
            odd_name(),
            Just("\"naïve\"".to_string()),
            Just("batch_sizé".to_string()),
        ]
        .prop_map(Change::Key),
        1 => Just(Change::Drop),
    ]
}

/// [`VALID`] with a few of its `key = value` lines changed: each change
/// applies to the line its index picks.
fn mutated(changes: &[(prop::sample::Index, Change)]) -> String {
    let lines: Vec<&str> = VALID.lines().collect();
    let keyed: Vec<usize> = (0..lines.len()).filter(|i| lines[*i].contains(" = ")).collect();
    let mut out: Vec<Option<String>> = lines.iter().map(|l| Some(l.to_string())).collect();
    for (at, change) in changes {
        let i = keyed[at.index(keyed.len())];
        let Some((key, value)) = lines[i].split_once(" = ") else {
            continue;
        };
        out[i] = match change {
            Change::Value(v) => Some(format!("{key} = {v}")),
            Change::Key(k) => Some(format!("{} = {value}", quoted(k))),
            Change::Drop => None,
        };
    }
    out.into_iter().flatten().map(|l| l + "\n").collect()
}

/// Bits of TOML syntax and of this file's vocabulary, to be put in any order.
fn token() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "[kafka]",
        "[postgres]",
        "[[topics]]",
        "[[sinks]]",
        "[[generators]]",
        "[[checks]]",
        "[plugins]",
        "[http]",
        "[aiven]",
        "[audit]",
        "[provision]",
        "[sinks.settings]",
        "[sinks.limits]",
        "\n",
        "\r\n",
        " ",
        "\t",
        "=",
        " = ",
        "\"",
        "'",
        "\"\"\"",
        "'''",
        "[",
        "]",
        "{",
        "}",
        ",",
        ".",
        "#",
        "\\",
        "\\u",
        "é",
        "ü",
        "😀",
        "\u{0}",
        "\u{7f}",
        "\u{feff}",
        "name",
        "topic",
        "table",
        "mapper",
        "key",
        "mode",
        "url",
        "bootstrap_servers",
        "security_protocol",
        "listen",
        "batch_size",
        "\"langs\"",
        "\"upsert\"",
        "\"m.wasm\"",
        "1",
        "-1",
        "99999999999999999999",
        "1.5",
        "true",
        "1979-05-27",
        "T07:32:00Z",
    ])
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_text_is_a_pipeline_or_a_located_error(text in any::<String>()) {
        assert_located(&text)?;
    }

    #[test]
    fn toml_syntax_in_any_order_is_a_pipeline_or_a_located_error(
        tokens in prop::collection::vec(token(), 0..60)
    ) {
        assert_located(&tokens.concat())?;
    }

    #[test]
    fn a_valid_file_with_text_spliced_in_is_a_pipeline_or_a_located_error(
        at in any::<prop::sample::Index>(),
        cut in 0usize..40,
        insert in prop::collection::vec(token(), 0..4),
    ) {
        let chars: Vec<char> = VALID.chars().collect();
        let start = at.index(chars.len());
        let end = (start + cut).min(chars.len());
        let text: String = chars[..start]
            .iter()
            .chain(insert.concat().chars().collect::<Vec<_>>().iter())
            .chain(chars[end..].iter())
            .collect();
        assert_located(&text)?;
    }

    #[test]
    fn pipelines_with_wrong_values_keys_and_lines_are_a_pipeline_or_a_located_error(
        changes in prop::collection::vec((any::<prop::sample::Index>(), change()), 1..4)
    ) {
        assert_located(&mutated(&changes))?;
    }
}

#[test]
fn the_unchanged_pipeline_is_valid() {
    assert_eq!(mutated(&[]), VALID);
    let p = parse(VALID).expect("valid");
    assert_eq!(p.sinks[0].mode.key(), ["id", "at"]);
    assert_eq!(p.generators[0].count, Some(50));
}
