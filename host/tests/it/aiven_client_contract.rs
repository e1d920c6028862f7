//! The Aiven client against a local HTTP server that follows Aiven's
//! documented contract: each request's method, path, `authorization` header
//! and JSON body are asserted, answers come in Aiven's shapes, and the error
//! answers (401, 403, 404, 409, 429, 5xx, no answer at all) each produce the
//! documented behaviour. The token never shows in output, logs or errors.
use crate::support::common;

use common::{connection_sections, repo_root, unique};
use host::aiven::{Client, Created, RetryPolicy};
use host::config::{AivenConfig, TopicConfig};
use serde_json::{Value, json};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOKEN: &str = "tok-S3CRET-contract-0123456789abcdef";
const TOKEN_ENV: &str = "AIVEN_CONTRACT_TOKEN";
const PROJECT: &str = "demo-project";
const KAFKA: &str = "kafka-demo";
const PG: &str = "pg-demo";
const PG_PASSWORD: &str = "PgPassw0rd-never-printed";
// Real PEM files (the local stack's), since `host validate` parses them.
static ACCESS_KEY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| local_cert("service.key"));
static ACCESS_CERT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| local_cert("service.cert"));
static CA_CERT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| local_cert("ca.pem"));

fn local_cert(name: &str) -> String {
    let path = common::repo_root().join("certs").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e} (run scripts/local-stack up)", path.display()))
}

// ---- a minimal HTTP/1.1 server ----

#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("request body is not JSON ({e}): {:?}", self.body))
    }
}

struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    /// Wait this long before answering (to make the client time out).
    delay: Duration,
}

fn reply(status: u16, body: Value) -> Reply {
    Reply {
        status,
        headers: Vec::new(),
        body: body.to_string(),
        delay: Duration::ZERO,
    }
}

/// Aiven's error shape.
fn error(status: u16, message: &str) -> Reply {
    reply(
        status,
        json!({"message": message, "errors": [{"message": message, "status": status}]}),
    )
}

struct Server {
    url: String,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Server {
    /// Serves each request with `handler(request, index of the request)`.
    fn start(handler: impl Fn(&Request, usize) -> Reply + Send + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Some(request) = read_request(&mut stream) else {
                    continue;
                };
                let index = {
                    let mut seen = seen.lock().expect("lock");
                    seen.push(request.clone());
                    seen.len() - 1
                };
                let r = handler(&request, index);
                std::thread::sleep(r.delay);
                let mut head = format!(
                    "HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
                    r.status,
                    r.body.len()
                );
                for (name, value) in &r.headers {
                    head.push_str(&format!("{name}: {value}\r\n"));
                }
                head.push_str("\r\n");
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(r.body.as_bytes());
            }
        });
        Self { url, requests }
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("lock").clone()
    }
}

fn read_request(stream: &mut std::net::TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (name, value) = h.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

// ---- helpers ----

fn config(url: &str) -> AivenConfig {
    AivenConfig {
        project: PROJECT.into(),
        kafka_service: KAFKA.into(),
        pg_service: PG.into(),
        token_env: TOKEN_ENV.into(),
        token_file: None,
        api_url: url.into(),
    }
}

fn fast() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        first_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        max_retry_after: Duration::from_secs(2),
        request_timeout: Duration::from_millis(400),
    }
}

fn client(server: &Server) -> Client {
    Client::with_token(&config(&server.url), TOKEN)
        .expect("client")
        .with_retry(fast())
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn assert_authorized(r: &Request) {
    assert_eq!(
        r.header("authorization"),
        Some(format!("aivenv1 {TOKEN}").as_str()),
        "{r:?}"
    );
}

fn topic(name: &str, partitions: i32, replication: i32) -> TopicConfig {
    TopicConfig {
        name: name.parse().expect("valid topic name"),
        partitions,
        replication,
    }
}

fn topics_path() -> String {
    format!("/v1/project/{PROJECT}/service/{KAFKA}/topic")
}

fn kafka_service_body() -> Value {
    json!({"service": {
        "service_name": KAFKA,
        "service_type": "kafka",
        "state": "RUNNING",
        "service_uri": "kafka-demo-demo-project.aivencloud.com:12692",
        "components": [
            {"component": "kafka", "host": "kafka-demo-demo-project.aivencloud.com", "port": 12695,
             "route": "dynamic", "usage": "primary", "kafka_authentication_method": "sasl"},
            {"component": "kafka", "host": "kafka-demo-demo-project.aivencloud.com", "port": 12692,
             "route": "dynamic", "usage": "primary", "kafka_authentication_method": "certificate"},
            {"component": "schema_registry", "host": "kafka-demo-demo-project.aivencloud.com", "port": 12694, "route": "dynamic"}
        ],
        "connection_info": {
            "kafka": ["kafka-demo-demo-project.aivencloud.com:12692"],
            "kafka_access_cert": ACCESS_CERT.as_str(),
            "kafka_access_key": ACCESS_KEY.as_str()
        },
        "users": [{"username": "avnadmin", "type": "primary", "access_cert": ACCESS_CERT.as_str(), "access_key": ACCESS_KEY.as_str()}]
    }})
}

fn pg_service_body() -> Value {
    json!({"service": {
        "service_name": PG,
        "service_type": "pg",
        "state": "RUNNING",
        "service_uri": format!("postgres://avnadmin:{PG_PASSWORD}@pg-demo-demo-project.aivencloud.com:12691/defaultdb?sslmode=require"),
        "components": [{"component": "pg", "host": "pg-demo-demo-project.aivencloud.com", "port": 12691, "route": "dynamic"}]
    }})
}

/// Writes `text` as `pipeline.toml` in a fresh temporary folder.
fn write_temp_pipeline(text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique("aiven_contract"));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, text).expect("write pipeline");
    path
}

/// The `[aiven]` section pointing at `url`.
fn aiven_section(url: &str) -> String {
    format!(
        "[aiven]\nproject = \"{PROJECT}\"        # the project's name\nkafka_service = \"{KAFKA}\"\npg_service = \"{PG}\"\ntoken_env = \"{TOKEN_ENV}\"\napi_url = \"{url}\"\n"
    )
}

/// A pipeline on the local stack (database `database`) with `[provision]
/// method = "aiven"` and an `[aiven]` section pointing at `url`.
fn pipeline_with(url: &str, database: &str, body: &str) -> PathBuf {
    let sections = connection_sections().replace("/info?", &format!("/{database}?"));
    write_temp_pipeline(&format!(
        "{sections}\n[provision]\nmethod = \"aiven\"\n\n{}\n{body}",
        aiven_section(url)
    ))
}

fn aiven_pipeline(url: &str, body: &str) -> PathBuf {
    pipeline_with(url, "info", body)
}

/// Runs the host binary with the token in its environment and full logging.
fn host_with_token(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_host"))
        .args(args)
        .env(TOKEN_ENV, TOKEN)
        .env("PGPASSWORD", PG_PASSWORD)
        .env("SCHEMA_REGISTRY_PASSWORD", "registry-secret")
        .env("RUST_LOG", "trace")
        .output()
        .expect("run host");
    assert_no_secret(&out);
    out
}

fn assert_no_secret(out: &Output) {
    for (name, stream) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let text = String::from_utf8_lossy(stream);
        for secret in [TOKEN, PG_PASSWORD, "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"] {
            assert!(!text.contains(secret), "a secret shows in the {name} of host:\n{text}");
        }
    }
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// ---- the client, call by call ----

#[test]
fn topics_are_listed_and_created_as_documented() {
    let server = Server::start(|r, _| match r.method.as_str() {
        "GET" => reply(
            200,
            json!({"topics": [
                {"topic_name": "langs", "partitions": 3, "replication": 2, "retention_hours": 72,
                 "cleanup_policy": "delete", "state": "ACTIVE", "min_insync_replicas": 1}
            ]}),
        ),
        _ => reply(200, json!({"message": "created"})),
    });
    let client = client(&server);
    let listed = block_on(client.list_topics()).expect("list topics");
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].name.as_str(), listed[0].partitions, listed[0].replication),
        ("langs", 3, 2)
    );
    let created = block_on(client.create_topic(&topic("cars", 2, 3))).expect("create topic");
    assert_eq!(created, Created::Created);

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        (requests[0].method.as_str(), requests[0].path.as_str()),
        ("GET", topics_path().as_str())
    );
    assert_authorized(&requests[0]);
    assert_eq!(
        (requests[1].method.as_str(), requests[1].path.as_str()),
        ("POST", topics_path().as_str())
    );
    assert_authorized(&requests[1]);
    assert_eq!(requests[1].header("content-type"), Some("application/json"));
    assert_eq!(
        requests[1].json(),
        json!({"topic_name": "cars", "partitions": 2, "replication": 3})
    );
}

#[test]
fn a_database_is_created_and_409_means_it_already_exists() {
    let server = Server::start(|_, i| match i {
        0 => reply(200, json!({"message": "created"})),
        _ => error(409, "Database already exists"),
    });
    let client = client(&server);
    assert_eq!(
        block_on(client.create_database("info")).expect("create"),
        Created::Created
    );
    assert_eq!(
        block_on(client.create_database("info")).expect("again"),
        Created::AlreadyExists
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 2, "409 is final, not retried");
    for r in &requests {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, format!("/v1/project/{PROJECT}/service/{PG}/db"));
        assert_authorized(r);
        assert_eq!(r.json(), json!({"database": "info"}));
    }
}

#[test]
fn a_topic_that_appeared_meanwhile_is_already_existing() {
    let server = Server::start(|_, _| error(409, "Topic 'langs' already exists"));
    let created = block_on(client(&server).create_topic(&topic("langs", 1, 3))).expect("409 is success");
    assert_eq!(created, Created::AlreadyExists);
}

#[test]
fn a_rejected_token_says_how_to_make_a_new_one() {
    let server = Server::start(|_, _| error(401, "Invalid token"));
    let err = block_on(client(&server).list_topics()).expect_err("401 fails");
    let message = err.to_string();
    assert!(message.contains("401 Unauthorized: Invalid token"), "{message}");
    assert!(
        message.contains(&format!("Aiven rejected the API token in {TOKEN_ENV}")),
        "{message}"
    );
    assert!(message.contains("User information → Tokens"), "{message}");
    assert!(message.contains("avn user access-token create"), "{message}");
    assert!(
        !message.contains(TOKEN) && !format!("{err:?}").contains(TOKEN),
        "{message}"
    );
    assert_eq!(server.requests().len(), 1, "401 is not retried");
}

#[test]
fn forbidden_names_the_project() {
    let server = Server::start(|_, _| error(403, "Not enough permissions"));
    let message = block_on(client(&server).list_topics()).expect_err("403").to_string();
    assert!(message.contains("403 Forbidden: Not enough permissions"), "{message}");
    assert!(message.contains(&format!("role in project \"{PROJECT}\"")), "{message}");
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn not_found_says_whether_the_project_or_the_service_is_missing() {
    let server = Server::start(|_, i| match i {
        0 => error(404, "Project does not exist"),
        _ => error(404, "Service not found"),
    });
    let client = client(&server);
    let project = block_on(client.list_topics()).expect_err("404").to_string();
    assert!(
        project.contains(&format!("project \"{PROJECT}\" was not found")),
        "{project}"
    );
    assert!(project.contains("check aiven.project"), "{project}");
    let service = block_on(client.create_database("info")).expect_err("404").to_string();
    assert!(
        service.contains(&format!("service \"{PG}\" in project \"{PROJECT}\" was not found")),
        "{service}"
    );
    assert!(service.contains("check aiven.pg_service"), "{service}");
    assert_eq!(server.requests().len(), 2, "404 is not retried");
}

#[test]
fn rate_limiting_waits_for_retry_after_then_succeeds() {
    let server = Server::start(|_, i| match i {
        0 => {
            let mut r = error(429, "Too many requests");
            r.headers.push(("retry-after", "1".into()));
            r
        }
        _ => reply(200, json!({"topics": []})),
    });
    let started = Instant::now();
    let listed = block_on(client(&server).list_topics()).expect("succeeds after the wait");
    assert!(listed.is_empty());
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was honoured ({:?})",
        started.elapsed()
    );
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn rate_limiting_that_never_ends_fails_clearly() {
    let server = Server::start(|_, _| {
        let mut r = error(429, "Too many requests");
        r.headers.push(("retry-after", "0".into()));
        r
    });
    let message = block_on(client(&server).list_topics()).expect_err("429").to_string();
    assert!(
        message.contains("still answered 429 Too Many Requests after 3 attempts"),
        "{message}"
    );
    assert_eq!(server.requests().len(), 3);
}

#[test]
fn a_server_error_is_retried_then_succeeds() {
    let server = Server::start(|_, i| match i {
        0 => error(500, "Internal server error"),
        _ => reply(200, json!({"message": "created"})),
    });
    let created = block_on(client(&server).create_topic(&topic("langs", 1, 3))).expect("second attempt");
    assert_eq!(created, Created::Created);
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].body, requests[1].body, "the retry sends the same request");
}

#[test]
fn server_errors_that_persist_fail_clearly_after_a_few_attempts() {
    let server = Server::start(|_, _| error(503, "Service temporarily unavailable"));
    let message = block_on(client(&server).list_topics()).expect_err("503").to_string();
    assert!(
        message.contains("Aiven answered 503 3 times in a row (Service temporarily unavailable)"),
        "{message}"
    );
    assert!(message.contains("status.aiven.io"), "{message}");
    assert_eq!(server.requests().len(), 3);
}

#[test]
fn a_server_that_never_answers_times_out_and_fails_clearly() {
    let server = Server::start(|_, _| Reply {
        delay: Duration::from_secs(2),
        ..reply(200, json!({"topics": []}))
    });
    let started = Instant::now();
    let message = block_on(client(&server).list_topics())
        .expect_err("timeout")
        .to_string();
    assert!(message.contains("cannot reach the Aiven API"), "{message}");
    assert!(message.contains("after 3 attempts"), "{message}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "per-attempt timeout applied ({:?})",
        started.elapsed()
    );
}

#[test]
fn an_error_body_that_echoes_the_token_is_redacted() {
    let server = Server::start(|_, _| error(400, &format!("bad header aivenv1 {TOKEN}")));
    let err = block_on(client(&server).list_topics()).expect_err("400");
    let message = err.to_string();
    assert!(message.contains("400") && message.contains("<redacted>"), "{message}");
    assert!(!message.contains(TOKEN), "{message}");
}

#[test]
fn connection_details_are_read_from_the_service_shapes() {
    let server = Server::start(|r, _| match r.path.as_str() {
        p if p.ends_with("/kms/ca") => reply(200, json!({"certificate": CA_CERT.as_str()})),
        p if p.ends_with(&format!("/service/{KAFKA}")) => reply(200, kafka_service_body()),
        p if p.ends_with(&format!("/service/{PG}")) => reply(200, pg_service_body()),
        _ => error(404, "Not found"),
    });
    let client = client(&server);
    assert_eq!(block_on(client.project_ca()).expect("ca"), CA_CERT.as_str());
    let kafka = block_on(client.kafka_access()).expect("kafka");
    assert_eq!(kafka.bootstrap_servers, "kafka-demo-demo-project.aivencloud.com:12692");
    assert_eq!(
        (kafka.access_cert.as_str(), kafka.access_key.as_str()),
        (ACCESS_CERT.as_str(), ACCESS_KEY.as_str())
    );
    let pg = block_on(client.pg_service_uri()).expect("pg");
    assert!(pg.expose().contains(PG_PASSWORD));
    for debug in [format!("{kafka:?}"), format!("{pg:?}"), format!("{client:?}")] {
        assert!(
            !debug.contains(PG_PASSWORD) && !debug.contains("MIIEvQ") && !debug.contains(TOKEN),
            "{debug}"
        );
    }
    let paths: Vec<(String, String)> = server
        .requests()
        .iter()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    assert_eq!(
        paths,
        [
            ("GET".to_string(), format!("/v1/project/{PROJECT}/kms/ca")),
            ("GET".to_string(), format!("/v1/project/{PROJECT}/service/{KAFKA}")),
            ("GET".to_string(), format!("/v1/project/{PROJECT}/service/{PG}")),
        ]
    );
    server.requests().iter().for_each(assert_authorized);
}

#[test]
fn services_swapped_in_the_file_are_named() {
    let server = Server::start(|_, _| reply(200, pg_service_body()));
    let message = block_on(client(&server).kafka_access())
        .expect_err("wrong type")
        .to_string();
    assert!(
        message.contains(&format!("aiven.kafka_service \"{KAFKA}\" is a pg service, not kafka")),
        "{message}"
    );
}

// ---- the host binary ----

#[test]
fn provision_with_aiven_creates_only_the_missing_topics() {
    let (existing, missing) = (unique("aiven_langs"), unique("aiven_cars"));
    let listed = existing.clone();
    let server = Server::start(move |r, _| match r.method.as_str() {
        "GET" => reply(
            200,
            json!({"topics": [{"topic_name": listed, "partitions": 1, "replication": 3, "state": "ACTIVE"}]}),
        ),
        _ => reply(200, json!({"message": "created"})),
    });
    let path = aiven_pipeline(
        &server.url,
        &format!(
            "[[topics]]\nname = \"{existing}\"\nreplication = 3\n\n[[topics]]\nname = \"{missing}\"\npartitions = 6\nreplication = 3\n"
        ),
    );
    let out = host_with_token(&["provision", path.to_str().expect("utf-8")]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    // The database of the local stack exists, so Aiven is not asked to make it.
    assert!(stdout.contains("Database \"info\" already exists."), "{stdout}");
    assert!(
        stdout.contains(&format!("Topic \"{existing}\" already exists.")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "Topic \"{missing}\" was successfully created on Kafka server."
        )),
        "{stdout}"
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(
        (requests[0].method.as_str(), requests[0].path.as_str()),
        ("GET", topics_path().as_str())
    );
    assert_eq!(
        (requests[1].method.as_str(), requests[1].path.as_str()),
        ("POST", topics_path().as_str())
    );
    assert_eq!(
        requests[1].json(),
        json!({"topic_name": missing, "partitions": 6, "replication": 3})
    );
    requests.iter().for_each(assert_authorized);
}

#[test]
fn provision_with_a_rejected_token_fails_without_showing_it() {
    let server = Server::start(|_, _| error(401, "Invalid token"));
    let path = aiven_pipeline(&server.url, "[[topics]]\nname = \"langs\"\n");
    let out = host_with_token(&["provision", path.to_str().expect("utf-8")]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("Aiven rejected the API token"), "{stderr}");
    assert!(stderr.contains("avn user access-token create"), "{stderr}");
}

#[test]
fn provision_without_the_token_says_which_variable_to_set_and_calls_nothing() {
    let server = Server::start(|_, _| reply(200, json!({"topics": []})));
    let path = aiven_pipeline(&server.url, "[[topics]]\nname = \"langs\"\n");
    let out = Command::new(env!("CARGO_BIN_EXE_host"))
        .args(["provision", path.to_str().expect("utf-8")])
        .env_remove(TOKEN_ENV)
        .output()
        .expect("run host");
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("the Aiven API token is not set: export {TOKEN_ENV}=<token>")),
        "{stderr}"
    );
    assert!(server.requests().is_empty());
}

#[test]
fn provision_reads_the_token_from_token_file_and_sends_it() {
    let server = Server::start(|_, _| {
        reply(
            200,
            json!({"topics": [{"topic_name": "langs", "partitions": 1, "replication": 3, "state": "ACTIVE"}]}),
        )
    });
    let path = aiven_pipeline(&server.url, "[[topics]]\nname = \"langs\"\nreplication = 3\n");
    // As a mounted secret: no variable, the token in a file with a newline.
    let text_of = std::fs::read_to_string(&path).expect("read");
    std::fs::write(
        &path,
        text_of.replace(&format!("token_env = \"{TOKEN_ENV}\""), "token_file = \"aiven-token\""),
    )
    .expect("write");
    let token_file = path.parent().expect("folder").join("aiven-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("write token");
    let run = || {
        let out = Command::new(env!("CARGO_BIN_EXE_host"))
            .args(["provision", path.to_str().expect("utf-8")])
            .env_remove(TOKEN_ENV)
            .env("RUST_LOG", "trace")
            .output()
            .expect("run host");
        assert_no_secret(&out);
        out
    };
    let out = run();
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let requests = server.requests();
    assert!(!requests.is_empty());
    requests.iter().for_each(assert_authorized);

    let out = Command::new(env!("CARGO_BIN_EXE_host"))
        .args(["validate", path.to_str().expect("utf-8")])
        .output()
        .expect("run host");
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains(&format!("secret aiven token: file {}", token_file.display())),
        "{stdout}"
    );

    // Emptied (a secret not mounted yet): located at load, naming the file.
    std::fs::write(&token_file, "").expect("empty token");
    let out = run();
    let (_, stderr) = text(&out);
    assert!(
        !out.status.success() && stderr.contains("aiven.token_file ") && stderr.contains("is empty"),
        "{stderr}"
    );
}

#[test]
fn invalid_names_are_refused_before_any_request_or_statement() {
    let server = Server::start(|_, _| reply(200, json!({"topics": []})));
    let long_table = format!("t{}", "x".repeat(63));
    let must = "must start with a lowercase letter and hold only lowercase letters, digits and underscores";
    let cases = [
        (
            "topic",
            "Langs",
            format!("topics.name: \"Langs\" {must}, e.g. \"langs\""),
        ),
        ("topic", "1cars", format!("topics.name: \"1cars\" {must}\n")),
        (
            "topic",
            "cars;drop",
            format!("topics.name: \"cars;drop\" {must}, e.g. \"cars_drop\""),
        ),
        (
            "topic",
            "lang-s",
            format!("topics.name: \"lang-s\" {must}, e.g. \"lang_s\""),
        ),
        (
            "table",
            long_table.as_str(),
            format!("sinks.table: \"{long_table}\" must be 1 to 63 characters long"),
        ),
    ];
    let db = common::Db::connect();
    for (what, bad, message) in cases {
        let (topic, table) = match what {
            "topic" => (bad.to_string(), "fine_table".to_string()),
            _ => ("fine_topic".to_string(), bad.to_string()),
        };
        let database = unique("never_created");
        let body = common::SinkPipeline::new(&topic, &table, "json_row").name("s").body();
        let aiven = pipeline_with(&server.url, &database, &body);
        // The same names with the default method (Kafka Admin API, CREATE DATABASE).
        let kafka = write_temp_pipeline(
            &std::fs::read_to_string(&aiven)
                .expect("read")
                .replace("method = \"aiven\"", "method = \"kafka\""),
        );
        for (path, command) in [
            (&aiven, &["provision"][..]),
            (&aiven, &["aiven", "credentials"][..]),
            (&kafka, &["provision"][..]),
        ] {
            let line = std::fs::read_to_string(path)
                .expect("read")
                .lines()
                .position(|l| l.contains(&format!("\"{bad}\"")))
                .expect("bad name in file")
                + 1;
            let mut args = command.to_vec();
            args.push(path.to_str().expect("utf-8"));
            let out = host_with_token(&args);
            let (stdout, stderr) = text(&out);
            assert!(!out.status.success(), "{args:?} with {bad:?} must fail");
            let located = format!("{}:{line}:", path.display());
            assert!(
                stderr.contains(&located) && format!("{stderr}\n").contains(&message),
                "{args:?} with {bad:?}: expected {located} {message:?} in:\n{stderr}"
            );
            assert!(stdout.is_empty(), "nothing was provisioned: {stdout}");
        }
        let rows = db.query("SELECT 1 FROM pg_database WHERE datname = $1", &[&database]);
        assert!(
            rows.is_empty(),
            "{bad:?}: database {database} must not have been created"
        );
    }
    assert!(
        server.requests().is_empty(),
        "no request may reach Aiven: {:?}",
        server.requests()
    );
}

fn credentials_server() -> Server {
    Server::start(|r, _| match (r.method.as_str(), r.path.as_str()) {
        ("GET", p) if p == format!("/v1/project/{PROJECT}/kms/ca") => {
            reply(200, json!({"certificate": CA_CERT.as_str()}))
        }
        ("GET", p) if p == format!("/v1/project/{PROJECT}/service/{KAFKA}") => reply(200, kafka_service_body()),
        ("GET", p) if p == format!("/v1/project/{PROJECT}/service/{PG}") => reply(200, pg_service_body()),
        _ => error(404, "Not found"),
    })
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn credentials_writes_the_certificates_and_prints_the_sections() {
    let server = credentials_server();
    let path = aiven_pipeline(&server.url, "");
    let dir = path.parent().expect("dir");
    let out = host_with_token(&["aiven", "credentials", path.to_str().expect("utf-8")]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");

    assert_eq!(
        std::fs::read_to_string(dir.join("certs/ca.pem")).expect("ca"),
        CA_CERT.as_str()
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("certs/service.cert")).expect("cert"),
        ACCESS_CERT.as_str()
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("certs/service.key")).expect("key"),
        ACCESS_KEY.as_str()
    );
    #[cfg(unix)]
    assert_eq!(
        mode(&dir.join("certs/service.key")),
        0o600,
        "the key is the owner's only"
    );
    let ignore = std::fs::read_to_string(dir.join("certs/.gitignore")).expect("certs/.gitignore");
    assert!(ignore.lines().any(|l| l == "*"), "the key stays out of git: {ignore}");

    for expected in [
        "[kafka]\nbootstrap_servers = \"kafka-demo-demo-project.aivencloud.com:12692\"\nsecurity_protocol = \"ssl\"\nca = \"certs/ca.pem\"\ncert = \"certs/service.cert\"\nkey = \"certs/service.key\"\n",
        "[postgres]\nurl = \"postgres://avnadmin@pg-demo-demo-project.aivencloud.com:12691/info?sslmode=require\"\npassword_env = \"PGPASSWORD\"\nca = \"certs/ca.pem\"\n",
        "export PGPASSWORD=",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }
    // Printing changes no file but the certificates.
    assert!(std::fs::read_to_string(&path).expect("read").contains("localhost:9093"));
}

#[test]
fn credentials_write_keeps_a_password_file_and_one_source_per_secret() {
    let server = credentials_server();
    let certs = repo_root().join("certs");
    let path = write_temp_pipeline(&format!(
        "[kafka]\nbootstrap_servers = \"localhost:9093\"\nca = \"{ca}\"\ncert = \"{cert}\"\nkey = \"{key}\"\n\n[postgres]\nurl_file = \"pg-url\"\npassword_file = \"pg-password\"\n\n{}",
        aiven_section(&server.url),
        ca = certs.join("ca.pem").display(),
        cert = certs.join("service.cert").display(),
        key = certs.join("service.key").display(),
    ));
    let dir = path.parent().expect("dir");
    std::fs::write(
        dir.join("pg-url"),
        "postgres://avnadmin@localhost:5432/info?sslmode=require\n",
    )
    .expect("write");
    std::fs::write(dir.join("pg-password"), format!("{PG_PASSWORD}\n")).expect("write");
    let out = host_with_token(&["aiven", "credentials", path.to_str().expect("utf-8"), "--write"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains(&format!("Then write the password of avnadmin: Aiven console → service \"{PG}\" → Overview → Connection information into {}", dir.join("pg-password").display())),
        "{stdout}"
    );
    let written = std::fs::read_to_string(&path).expect("read");
    assert!(
        written
            .contains("url = \"postgres://avnadmin@pg-demo-demo-project.aivencloud.com:12691/info?sslmode=require\"")
            && written.contains("password_file = \"pg-password\"")
            && !written.contains("url_file")
            // The registry's password comes from its own variable; the
            // database's from the file alone.
            && written.matches("password_env").count() == 1
            && written.contains("password_env = \"SCHEMA_REGISTRY_PASSWORD\""),
        "{written}"
    );
    // One source per secret: the file still loads (the registry's password
    // from a file too, so this process needs no variable).
    std::fs::write(
        &path,
        written.replace(
            "password_env = \"SCHEMA_REGISTRY_PASSWORD\"",
            "password_file = \"registry-password\"",
        ),
    )
    .expect("write");
    std::fs::write(dir.join("registry-password"), "registry-secret\n").expect("write");
    let pipeline = host::config::Pipeline::load(&path).unwrap_or_else(|e| panic!("{e}\n{written}"));
    assert_eq!(
        pipeline.postgres.password_source,
        host::config::SecretSource::File(dir.join("pg-password"))
    );
}

#[test]
fn credentials_write_updates_the_sections_and_keeps_the_comments() {
    let server = credentials_server();
    let path = write_temp_pipeline(&format!(
        r#"# The demo pipeline. Relative paths are relative to this file.

[kafka]
bootstrap_servers = "localhost:9093"
security_protocol = "ssl"          # "ssl" with client certificates
ca = "certs/ca.pem"                # Aiven console: "CA certificate"
cert = "certs/service.cert"
key = "certs/service.key"

[postgres]
# For a real service, leave the password out of the URL.
url = "postgres://avnadmin:localdev@localhost:5432/info?sslmode=require"
ca = "certs/ca.pem"                # verifies the server's certificate
# tls = "verify-full"

{}"#,
        aiven_section(&server.url)
    ));
    let out = host_with_token(&["aiven", "credentials", path.to_str().expect("utf-8"), "--write"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("Updated [kafka], [postgres] and [schema_registry]"),
        "{stdout}"
    );

    let written = std::fs::read_to_string(&path).expect("read");
    for kept in [
        "# The demo pipeline. Relative paths are relative to this file.",
        "security_protocol = \"ssl\"          # \"ssl\" with client certificates",
        "ca = \"certs/ca.pem\"                # Aiven console: \"CA certificate\"",
        "# For a real service, leave the password out of the URL.",
        "ca = \"certs/ca.pem\"                # verifies the server's certificate",
        "# tls = \"verify-full\"",
        "project = \"demo-project\"        # the project's name",
    ] {
        assert!(written.contains(kept), "lost {kept:?}:\n{written}");
    }
    for set in [
        "bootstrap_servers = \"kafka-demo-demo-project.aivencloud.com:12692\"",
        "url = \"postgres://avnadmin@pg-demo-demo-project.aivencloud.com:12691/info?sslmode=require\"",
        "password_env = \"PGPASSWORD\"",
    ] {
        assert!(written.contains(set), "missing {set:?}:\n{written}");
    }
    assert!(
        !written.contains("localdev") && !written.contains("localhost"),
        "{written}"
    );

    // The result is a valid pipeline (the password comes from PGPASSWORD).
    let check = host_with_token(&["validate", path.to_str().expect("utf-8")]);
    assert!(check.status.success(), "{}", text(&check).1);
}

#[cfg(unix)]
#[test]
fn credentials_write_keeps_the_file_mode_and_a_symlink() {
    use std::os::unix::fs::PermissionsExt as _;
    let server = credentials_server();
    // A 0600 file stays 0600 (it may hold secrets the owner put there).
    let path = aiven_pipeline(&server.url, "");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let out = host_with_token(&["aiven", "credentials", path.to_str().expect("utf-8"), "--write"]);
    assert!(out.status.success(), "{}", text(&out).1);
    assert!(
        std::fs::read_to_string(&path).expect("read").contains("aivencloud.com"),
        "the file was updated"
    );
    assert_eq!(mode(&path), 0o600, "the mode of the pipeline file is kept");

    // A symlink stays a symlink; its target gets the new text and keeps its mode.
    let real = aiven_pipeline(&server.url, "");
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let dir = std::env::temp_dir().join(unique("aiven_link"));
    std::fs::create_dir_all(&dir).expect("dir");
    let link = dir.join("pipeline.toml");
    std::os::unix::fs::symlink(&real, &link).expect("symlink");
    let out = host_with_token(&["aiven", "credentials", link.to_str().expect("utf-8"), "--write"]);
    assert!(out.status.success(), "{}", text(&out).1);
    let kind = std::fs::symlink_metadata(&link).expect("lstat").file_type();
    assert!(kind.is_symlink(), "the link was replaced by a file");
    assert_eq!(std::fs::read_link(&link).expect("readlink"), real);
    assert!(
        std::fs::read_to_string(&real).expect("read").contains("aivencloud.com"),
        "the link's target was updated"
    );
    assert_eq!(mode(&real), 0o640, "the target keeps its mode");
    let leftovers: Vec<_> = std::fs::read_dir(real.parent().expect("dir"))
        .expect("list")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "no temporary file left: {leftovers:?}");
}
