//! The database password (or the whole URL) only in a file, as a mounted
//! Kubernetes or docker secret, or only in an environment variable: `host
//! validate` says where each secret came from without showing it, and `host
//! consume --once` stores the topic's rows in PostgreSQL with it. A missing
//! variable or file, or two sources of one secret, stop the host at once with
//! an error naming the key, the line and the variable or file.
use crate::support::{common, ops};

use common::{Db, Running, SinkPipeline, create_topic, produce_raw, repo_root, unique};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The local stack's password: it must never be printed.
const PASSWORD: &str = "localdev";
const MESSAGES: i64 = 20;

/// A folder holding pipeline.toml whose `[postgres]` section is `postgres`.
fn pipeline(postgres: &str, topic: &str, table: &str) -> PathBuf {
    let key = format!("key = \"{}\"", repo_root().join("certs/service.key").display());
    pipeline_with_key(&key, postgres, topic, table)
}

/// Like [`pipeline`], with the `key` lines of `[kafka]` given.
fn pipeline_with_key(key: &str, postgres: &str, topic: &str, table: &str) -> PathBuf {
    let certs = repo_root().join("certs");
    let dir = std::env::temp_dir().join(unique("secrets"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("pipeline.toml");
    let text = format!(
        "[kafka]\nbootstrap_servers = \"localhost:9093\"\nsecurity_protocol = \"ssl\"\nca = \"{ca}\"\ncert = \"{cert}\"\n{key}\n\n[postgres]\n{postgres}\nca = \"{ca}\"\n\n{body}",
        ca = certs.join("ca.pem").display(),
        cert = certs.join("service.cert").display(),
        body = SinkPipeline::new(topic, table, "json_row").body(),
    );
    std::fs::write(&path, text).expect("write pipeline");
    path
}

/// Runs the host with `env` added (at most two minutes).
fn host(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_host"));
    command
        .args(args)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("spawn host");
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "host {args:?} ran over two minutes: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `host validate` succeeds and reports the password's source; then `host
/// consume --once` stores every message; nothing printed holds the password.
fn validate_and_consume(path: &Path, topic: &str, table: &str, env: &[(&str, &str)], password_source: &str) {
    let file = path.to_str().expect("utf-8");
    let out = host(&["validate", file], env);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains(&format!("secret postgres password: {password_source}")),
        "validate does not say where the password came from:\n{said}"
    );
    assert!(!said.contains(PASSWORD), "validate printed the password:\n{said}");

    let out = host(&["consume", file, "--once", "--quiet", "--topic", topic], env);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(!said.contains(PASSWORD), "consume printed the password:\n{said}");
    let offsets = Db::connect().offsets(table);
    let expected: Vec<(i64, i64)> = (0..MESSAGES).map(|o| (0, o)).collect();
    assert_eq!(offsets, expected, "every message stored once");
}

fn topic_with_messages(prefix: &str) -> String {
    let topic = unique(prefix);
    create_topic(&topic, 1);
    let payloads: Vec<Option<Vec<u8>>> = (0..MESSAGES)
        .map(|i| Some(format!("{{\"n\": {i}}}").into_bytes()))
        .collect();
    produce_raw(&topic, &payloads);
    topic
}

#[test]
fn a_password_only_in_a_file_stores_rows() {
    let (topic, table) = (topic_with_messages("secret_file"), unique("secret_file_rows"));
    let path = pipeline(
        "url = \"postgres://avnadmin@localhost:5432/info?sslmode=require\"\npassword_file = \"secrets/pg-password\"",
        &topic,
        &table,
    );
    let dir = path.parent().expect("folder").join("secrets");
    std::fs::create_dir_all(&dir).expect("secrets folder");
    // As `echo localdev > file` writes it: the newline is not the password's.
    std::fs::write(dir.join("pg-password"), format!("{PASSWORD}\n")).expect("write secret");
    let source = format!("file {}", dir.join("pg-password").display());
    validate_and_consume(&path, &topic, &table, &[], &source);
}

#[test]
fn a_password_only_in_an_environment_variable_stores_rows() {
    let (topic, table) = (topic_with_messages("secret_env"), unique("secret_env_rows"));
    let var = format!("WASM_STREAM_TEST_PG_PASSWORD_{}", std::process::id());
    let path = pipeline(
        &format!("url = \"postgres://avnadmin@localhost:5432/info?sslmode=require\"\npassword_env = \"{var}\""),
        &topic,
        &table,
    );
    validate_and_consume(&path, &topic, &table, &[(&var, PASSWORD)], &format!("env {var}"));
}

#[test]
fn a_whole_url_from_a_file_stores_rows() {
    let (topic, table) = (topic_with_messages("secret_url"), unique("secret_url_rows"));
    let path = pipeline("url_file = \"pg-url\"", &topic, &table);
    let file = path.parent().expect("folder").join("pg-url");
    std::fs::write(
        &file,
        format!("postgres://avnadmin:{PASSWORD}@localhost:5432/info?sslmode=require\n"),
    )
    .expect("write secret");
    let source = format!("in postgres.url (file {})", file.display());
    validate_and_consume(&path, &topic, &table, &[], &source);
}

#[test]
fn a_missing_secret_or_two_sources_stop_the_host_naming_the_key_and_line() {
    let (topic, table) = (unique("secret_bad"), unique("secret_bad_rows"));
    let var = format!("WASM_STREAM_TEST_UNSET_{}", std::process::id());
    let url = "url = \"postgres://avnadmin@localhost:5432/info?sslmode=require\"";

    let path = pipeline(&format!("{url}\npassword_env = \"{var}\""), &topic, &table);
    let file = path.to_str().expect("utf-8");
    let validate = ["validate", file];
    let consume = ["consume", file, "--once", "--topic", &topic];
    for args in [&validate[..], &consume[..]] {
        let out = host(args, &[]);
        let said = text(&out);
        assert!(!out.status.success(), "{said}");
        assert!(
            said.contains(&format!(
                "{file}:10:16: postgres.password_env names {var:?}, which is not set"
            )),
            "{said}"
        );
    }
    // Set but empty is not a password either.
    let out = host(&["validate", file], &[(&var, "")]);
    assert!(
        !out.status.success() && text(&out).contains("set but empty"),
        "{}",
        text(&out)
    );

    let path = pipeline(&format!("{url}\npassword_file = \"nowhere/pw\""), &topic, &table);
    let out = host(&["validate", path.to_str().expect("utf-8")], &[]);
    let said = text(&out);
    let missing = path.parent().expect("folder").join("nowhere/pw");
    assert!(
        !out.status.success()
            && said.contains(":10:17: postgres.password_file ")
            && said.contains(&format!("{} does not exist", missing.display())),
        "{said}"
    );

    let path = pipeline(
        &format!("{url}\npassword_env = \"HOME\"\npassword_file = \"pw\""),
        &topic,
        &table,
    );
    std::fs::write(path.parent().expect("folder").join("pw"), PASSWORD).expect("write");
    let out = host(&["validate", path.to_str().expect("utf-8")], &[]);
    let said = text(&out);
    assert!(
        !out.status.success()
            && said.contains(":11:17: postgres.password_file and postgres.password_env (")
            && said.contains("pipeline.toml:10:16)"),
        "{said}"
    );
    assert!(!said.contains(PASSWORD), "{said}");
}

#[test]
fn an_encrypted_kafka_key_with_its_passphrase_in_a_file_stores_rows() {
    const PASSPHRASE: &str = "Key-Passphrase-5150";
    let (topic, table) = (topic_with_messages("secret_key"), unique("secret_key_rows"));
    let pem = std::fs::read(repo_root().join("certs/service.key")).expect("read key");
    let key = openssl::pkey::PKey::private_key_from_pem(&pem).expect("key");
    let encrypted = key
        .private_key_to_pem_pkcs8_passphrase(openssl::symm::Cipher::aes_256_cbc(), PASSPHRASE.as_bytes())
        .expect("encrypt key");
    let url = "url = \"postgres://avnadmin:localdev@localhost:5432/info?sslmode=require\"";

    // Without its passphrase the key is refused, saying how to give it.
    let path = pipeline_with_key("key = \"service.key\"", url, &topic, &table);
    let folder = path.parent().expect("folder");
    std::fs::write(folder.join("service.key"), &encrypted).expect("write key");
    let out = host(&["validate", path.to_str().expect("utf-8")], &[]);
    let said = text(&out);
    assert!(
        !out.status.success() && said.contains("the key is encrypted") && said.contains("kafka.key_password_file"),
        "{said}"
    );

    let path = pipeline_with_key(
        "key = \"service.key\"\nkey_password_file = \"key-passphrase\"",
        url,
        &topic,
        &table,
    );
    let folder = path.parent().expect("folder");
    std::fs::write(folder.join("service.key"), &encrypted).expect("write key");
    std::fs::write(folder.join("key-passphrase"), format!("{PASSPHRASE}\n")).expect("write passphrase");
    let file = path.to_str().expect("utf-8");
    let out = host(&["validate", file], &[]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("encrypted private key, matches kafka.cert")
            && said.contains(&format!(
                "secret kafka.key passphrase: file {}",
                folder.join("key-passphrase").display()
            )),
        "{said}"
    );
    let out = host(
        &["consume", file, "--once", "--quiet", "--topic", &topic],
        &[("RUST_LOG", "trace")],
    );
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(!said.contains(PASSPHRASE), "the passphrase was printed");
    let expected: Vec<(i64, i64)> = (0..MESSAGES).map(|o| (0, o)).collect();
    assert_eq!(Db::connect().offsets(&table), expected, "every message stored once");

    // A wrong passphrase is named as such.
    std::fs::write(folder.join("key-passphrase"), "wrong").expect("write passphrase");
    let out = host(&["validate", file], &[]);
    assert!(
        !out.status.success() && text(&out).contains("cannot be read with the passphrase"),
        "{}",
        text(&out)
    );
}

#[test]
fn status_metrics_and_the_status_page_never_show_the_password() {
    let (topic, table) = (topic_with_messages("secret_http"), unique("secret_http_rows"));
    let port = ops::free_port();
    let path = pipeline(
        "url = \"postgres://avnadmin@localhost:5432/info?sslmode=require\"\npassword_file = \"pg-password\"",
        &topic,
        &table,
    );
    let mut text = std::fs::read_to_string(&path).expect("read pipeline");
    text.push_str(&format!("\n[http]\nlisten = \"127.0.0.1:{port}\"\n"));
    std::fs::write(&path, text).expect("write pipeline");
    std::fs::write(path.parent().expect("folder").join("pg-password"), PASSWORD).expect("write secret");

    let file = path.to_str().expect("utf-8");
    let host = Running::start(&["consume", file, "--topic", &topic, "--quiet"]);
    ops::wait_for_code(port, "/health/ready", 200, Duration::from_secs(90));
    let db = Db::connect();
    common::wait_for("every message stored", Duration::from_secs(90), || {
        db.offsets(&table).len() == MESSAGES as usize
    });
    for page in ["/status", "/metrics", "/", "/health/ready"] {
        let (code, body) = ops::get(port, page).expect("the server answers");
        assert_eq!(code, 200, "{page}: {body}");
        assert!(!body.contains(PASSWORD), "{page} shows the password");
    }
    let log = host.terminate();
    assert!(!log.contains(PASSWORD), "the log shows the password");
}
