//! A wrong database password or CA, a wrong Kafka CA or client certificate:
//! `host consume` ends at once with an error naming the setting, instead of
//! retrying "unreachable" forever. Secrets (the password, the private key)
//! never appear in its output, even at RUST_LOG=trace.
use crate::support::common;

use common::{plugin, repo_root, unique};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CANARY: &str = "Canary-Secret-4711";

struct Setup {
    kafka_ca: String,
    kafka_cert: String,
    kafka_key: String,
    pg_url: String,
    /// More `[postgres]` lines: `password_env`, `password_file`.
    pg_extra: String,
    /// Environment variables the host gets.
    env: Vec<(String, String)>,
    pg_ca: String,
}

fn certs(name: &str) -> String {
    repo_root().join("certs").join(name).to_string_lossy().into_owned()
}

fn good() -> Setup {
    Setup {
        kafka_ca: certs("ca.pem"),
        kafka_cert: certs("service.cert"),
        kafka_key: certs("service.key"),
        pg_url: "postgres://avnadmin:localdev@localhost:5432/info?sslmode=require".into(),
        pg_extra: String::new(),
        env: Vec::new(),
        pg_ca: certs("ca.pem"),
    }
}

/// Runs `host consume --once` at trace level; returns (exit ok, stderr).
fn consume(s: &Setup, topic: &str, limit: Duration) -> (bool, String) {
    let table = unique("creds_rows");
    let dir = std::env::temp_dir().join(unique("creds"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("pipeline.toml");
    std::fs::write(
        &path,
        format!(
            r#"[kafka]
bootstrap_servers = "localhost:9093"
security_protocol = "ssl"
ca = "{}"
cert = "{}"
key = "{}"

[postgres]
url = "{}"
{}
ca = "{}"

[[topics]]
name = "{topic}"
partitions = 1

[[sinks]]
name = "rows"
topic = "{topic}"
table = "{table}"
mapper = "{}"
"#,
            s.kafka_ca,
            s.kafka_cert,
            s.kafka_key,
            s.pg_url,
            s.pg_extra,
            s.pg_ca,
            plugin("json_row").display()
        ),
    )
    .expect("write");
    let log = dir.join("stderr.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_host"))
        .args([
            "consume",
            path.to_str().expect("utf-8"),
            "--once",
            "--quiet",
            "--topic",
            topic,
        ])
        .env("RUST_LOG", "trace")
        .envs(s.env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn host");
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "host kept going past {limit:?} instead of failing fast:\n{}",
                tail(&std::fs::read_to_string(&log).unwrap_or_default())
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    (status.success(), std::fs::read_to_string(&log).unwrap_or_default())
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn assert_no_secrets(log: &str) {
    assert!(!log.contains(CANARY), "the password leaked:\n{}", tail(log));
    assert!(!log.contains("localdev"), "the password leaked:\n{}", tail(log));
    let key = std::fs::read_to_string(certs("service.key")).expect("key");
    for line in key.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!log.contains(line), "the private key leaked");
    }
    assert!(!log.contains("PRIVATE KEY"), "the private key leaked");
}

#[test]
fn permanent_errors_end_the_host_naming_the_setting() {
    let topic = unique("creds");
    common::create_topic(&topic, 1);
    let fast = Duration::from_secs(60);

    let mut s = good();
    s.pg_url = format!("postgres://avnadmin:{CANARY}@localhost:5432/info?sslmode=require");
    let (ok, log) = consume(&s, &topic, fast);
    assert!(
        !ok && log.contains("password") && log.contains("postgres.url"),
        "{}",
        tail(&log)
    );
    assert_no_secrets(&log);

    // The same wrong password from an environment variable, then from a file.
    let var = format!("WASM_STREAM_TEST_CANARY_{}", std::process::id());
    let mut s = good();
    s.pg_url = "postgres://avnadmin@localhost:5432/info?sslmode=require".into();
    s.pg_extra = format!("password_env = \"{var}\"");
    s.env = vec![(var, CANARY.into())];
    let (ok, log) = consume(&s, &topic, fast);
    assert!(!ok && log.contains("password"), "{}", tail(&log));
    assert_no_secrets(&log);

    let file = std::env::temp_dir().join(unique("canary-password"));
    std::fs::write(&file, format!("{CANARY}\n")).expect("write secret");
    let mut s = good();
    s.pg_url = "postgres://avnadmin@localhost:5432/info?sslmode=require".into();
    s.pg_extra = format!("password_file = \"{}\"", file.display());
    let (ok, log) = consume(&s, &topic, fast);
    assert!(!ok && log.contains("password"), "{}", tail(&log));
    assert_no_secrets(&log);

    let mut s = good();
    s.pg_ca = certs("other-ca.pem");
    let (ok, log) = consume(&s, &topic, fast);
    assert!(!ok && log.contains("postgres.ca"), "{}", tail(&log));
    assert_no_secrets(&log);

    let mut s = good();
    s.kafka_ca = certs("other-ca.pem");
    let (ok, log) = consume(&s, &topic, fast);
    assert!(!ok && log.contains("kafka.ca"), "{}", tail(&log));
    assert_no_secrets(&log);

    let mut s = good();
    s.kafka_cert = certs("other-client.cert");
    s.kafka_key = certs("other-client.key");
    let (ok, log) = consume(&s, &topic, fast);
    assert!(!ok && log.contains("kafka.cert"), "{}", tail(&log));
    assert_no_secrets(&log);

    // And a run that works, at trace level, says nothing secret either.
    let (ok, log) = consume(&good(), &topic, Duration::from_secs(120));
    assert!(ok, "{}", tail(&log));
    assert_no_secrets(&log);
}
