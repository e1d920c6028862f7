//! Helpers shared by the integration tests. They talk to the real local
//! Kafka and PostgreSQL that `scripts/local-stack up` starts; every test uses
//! its own topics, groups and tables, so tests never see each other's data.

use host::config::{KafkaConfig, Pipeline};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub mod badrows;
pub mod chaos;
pub mod registry;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ is inside the repository")
        .to_path_buf()
}

pub fn plugin(name: &str) -> PathBuf {
    repo_root()
        .join("target/wasm32-wasip2/release")
        .join(format!("{name}.wasm"))
}

/// A name no other test run uses: lowercase, valid for topics and tables.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        nanos % 1_000_000,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The `[kafka]` and `[postgres]` sections of the local stack, with absolute paths.
pub fn connection_sections() -> String {
    let certs = repo_root().join("certs");
    format!(
        r#"[kafka]
bootstrap_servers = "localhost:9093"
security_protocol = "ssl"
ca = "{ca}"
cert = "{cert}"
key = "{key}"

[postgres]
url = "postgres://avnadmin:localdev@localhost:5432/info?sslmode=require"
ca = "{ca}"
"#,
        ca = certs.join("ca.pem").display(),
        cert = certs.join("service.cert").display(),
        key = certs.join("service.key").display(),
    )
}

/// Writes a pipeline file into a fresh temporary folder and returns its path.
pub fn write_pipeline(body: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique("pipeline"));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, format!("{}\n{body}", connection_sections())).expect("write pipeline");
    path
}

/// A pipeline with one topic and one sink reading it into a table: the
/// set-up most sink tests share. Keys and sections beyond that are added as
/// TOML text.
pub struct SinkPipeline {
    topic: String,
    table: String,
    mapper: PathBuf,
    name: String,
    partitions: Option<i32>,
    sink_lines: Vec<String>,
    extra: Vec<String>,
}

impl SinkPipeline {
    /// A sink named `rows` from `topic` into `table` through the built plugin `mapper`.
    pub fn new(topic: &str, table: &str, mapper: &str) -> Self {
        Self {
            topic: topic.to_string(),
            table: table.to_string(),
            mapper: plugin(mapper),
            name: "rows".to_string(),
            partitions: None,
            sink_lines: Vec::new(),
            extra: Vec::new(),
        }
    }

    pub fn name(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }

    /// A mapper file outside the built plugins (a copy a test swaps, say).
    pub fn mapper_path(mut self, path: &Path) -> Self {
        self.mapper = path.to_path_buf();
        self
    }

    /// `partitions = N` in the `[[topics]]` table.
    pub fn partitions(mut self, partitions: i32) -> Self {
        self.partitions = Some(partitions);
        self
    }

    /// One more `key = value` line in the `[[sinks]]` table.
    pub fn sink_line(mut self, line: &str) -> Self {
        self.sink_lines.push(line.to_string());
        self
    }

    pub fn batch_size(self, rows: usize) -> Self {
        self.sink_line(&format!("batch_size = {rows}"))
    }

    /// `mode = "upsert"` with the key columns given.
    pub fn upsert(self, key: &[&str]) -> Self {
        let key: Vec<String> = key.iter().map(|k| format!("{k:?}")).collect();
        self.sink_line("mode = \"upsert\"")
            .sink_line(&format!("key = [{}]", key.join(", ")))
    }

    /// A `[[generators]]` of the `langs` plugin writing `count` messages
    /// into the topic, one every `interval_ms`.
    pub fn generator(self, name: &str, count: impl std::fmt::Display, interval_ms: u64) -> Self {
        let text = format!(
            "[[generators]]\nname = \"{name}\"\ntopic = \"{}\"\nplugin = \"{}\"\ninterval_ms = {interval_ms}\ncount = {count}\n",
            self.topic,
            plugin("langs").display()
        );
        self.extra(&text)
    }

    /// TOML placed after the sink; it must open with a table header
    /// (`[sinks.settings]`, `[http]`, ...) so its keys do not join the sink.
    pub fn extra(mut self, toml: &str) -> Self {
        self.extra.push(toml.to_string());
        self
    }

    /// The pipeline text, without the connection sections.
    pub fn body(&self) -> String {
        let mut body = format!(
            "[[topics]]\nname = \"{topic}\"\n{partitions}\n[[sinks]]\nname = \"{name}\"\ntopic = \"{topic}\"\ntable = \"{table}\"\nmapper = \"{mapper}\"\n",
            topic = self.topic,
            partitions = self
                .partitions
                .map(|p| format!("partitions = {p}\n"))
                .unwrap_or_default(),
            name = self.name,
            table = self.table,
            mapper = self.mapper.display(),
        );
        for line in &self.sink_lines {
            body.push_str(line);
            body.push('\n');
        }
        for toml in &self.extra {
            body.push('\n');
            body.push_str(toml);
            body.push('\n');
        }
        body
    }

    /// Writes the pipeline, with the connection sections, into a fresh folder.
    pub fn write(&self) -> PathBuf {
        write_pipeline(&self.body())
    }
}

pub fn load(path: &Path) -> Pipeline {
    Pipeline::load(path).expect("test pipeline is valid")
}

pub fn kafka_config() -> KafkaConfig {
    load(&write_pipeline("")).kafka
}

/// Runs the host binary with arguments, returning its output.
pub fn host(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_host"))
        .args(args)
        .output()
        .expect("run host")
}

/// Runs `host`, killing it (and failing the test) if it takes longer than `limit`.
pub fn host_within(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_host"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn host");
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "host {args:?} ran over {limit:?}\nstderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

/// Runs `host` (at most five minutes) and panics with its output when it fails.
pub fn host_ok(args: &[&str]) -> Output {
    let out = host_within(args, Duration::from_secs(300));
    assert!(
        out.status.success(),
        "host {args:?} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn create_topic(name: &str, partitions: i32) {
    let topic = host::config::TopicConfig {
        name: name.parse().expect("valid topic name"),
        partitions,
        replication: 1,
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(host::kafka::create_topics(&kafka_config(), &[topic]))
        .expect("create topic");
}

/// Produces raw payloads (None: a message without payload) to partition 0 and waits for delivery.
pub fn produce_raw(topic: &str, payloads: &[Option<Vec<u8>>]) {
    let producer: BaseProducer = host::kafka::client_config(&kafka_config())
        .expect("client config")
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    for p in payloads {
        let mut record: BaseRecord<'_, (), [u8]> = BaseRecord::to(topic).partition(0);
        if let Some(p) = p {
            record = record.payload(p.as_slice());
        }
        producer.send(record).map_err(|(e, _)| e).expect("send");
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

/// A message read back from Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub payload: Option<Vec<u8>>,
}

/// Reads a whole topic with a separate consumer (no group commits).
pub fn read_topic(topic: &str) -> Vec<Read> {
    let cfg = kafka_config();
    let consumer: BaseConsumer = host::kafka::client_config(&cfg)
        .expect("client config")
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let ends = host::kafka::end_offsets(&consumer, topic).expect("end offsets");
    let mut tpl = TopicPartitionList::new();
    for p in ends.keys() {
        tpl.add_partition_offset(topic, *p, Offset::Beginning).expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let total: i64 = ends.values().sum();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while (out.len() as i64) < total && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(500)) {
            let m = m.expect("message");
            out.push(Read {
                partition: m.partition(),
                offset: m.offset(),
                timestamp_ms: m.timestamp().to_millis(),
                payload: m.payload().map(<[u8]>::to_vec),
            });
        }
    }
    assert_eq!(out.len() as i64, total, "read the whole topic {topic}");
    out.sort_by_key(|r| (r.partition, r.offset));
    out
}

/// A blocking PostgreSQL client for assertions.
pub struct Db {
    rt: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
}

impl Db {
    pub fn connect() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let pg = load(&write_pipeline("")).postgres;
        let client = rt
            .block_on(host::postgres::connect(&pg))
            .expect("connect to PostgreSQL");
        Self { rt, client }
    }

    pub fn query(&self, sql: &str, params: &[&(dyn tokio_postgres::types::ToSql + Sync)]) -> Vec<tokio_postgres::Row> {
        self.rt
            .block_on(self.client.query(sql, params))
            .unwrap_or_else(|e| panic!("{sql}: {}", host::error_text::one_line(&e)))
    }

    pub fn execute(&self, sql: &str) {
        self.try_execute(sql)
            .unwrap_or_else(|e| panic!("{sql}: {}", host::error_text::one_line(&e)));
    }

    pub fn try_execute(&self, sql: &str) -> Result<(), tokio_postgres::Error> {
        self.rt.block_on(self.client.batch_execute(sql))
    }

    /// (partition, offset) of every row of a sink table made by json-row, in order.
    pub fn offsets(&self, table: &str) -> Vec<(i64, i64)> {
        self.query(
            &format!("SELECT partition_id, offset_id FROM \"{table}\" ORDER BY partition_id, offset_id"),
            &[],
        )
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
    }

    pub fn dead_letters(&self, topic: &str) -> Vec<(i64, Option<Vec<u8>>, String)> {
        self.query(
            "SELECT \"offset\", payload, reason FROM wasm_stream_dead_letters WHERE topic = $1 ORDER BY \"offset\"",
            &[&topic],
        )
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
    }
}

/// (offset, version) of every row of a table a versioned mapper filled, in
/// offset order; empty before the table exists.
pub fn versions(db: &Db, table: &str) -> Vec<(i64, String)> {
    let exists = db.query("SELECT to_regclass($1) IS NOT NULL", &[&format!("\"{table}\"")]);
    if !exists[0].get::<_, bool>(0) {
        return Vec::new();
    }
    db.query(
        &format!("SELECT offset_id, version FROM \"{table}\" ORDER BY offset_id"),
        &[],
    )
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// Asserts every offset of a partition from 0 to `count - 1` appears exactly once.
pub fn assert_each_offset_once(offsets: &[(i64, i64)], partition: i64, count: i64) {
    let mine: Vec<i64> = offsets
        .iter()
        .filter(|(p, _)| *p == partition)
        .map(|(_, o)| *o)
        .collect();
    let mut seen = std::collections::HashSet::new();
    let dups: Vec<i64> = mine.iter().copied().filter(|o| !seen.insert(*o)).collect();
    assert!(
        dups.is_empty(),
        "offsets stored twice in partition {partition}: {dups:?}"
    );
    let missing: Vec<i64> = (0..count).filter(|o| !seen.contains(o)).collect();
    assert!(
        missing.is_empty(),
        "offsets missing in partition {partition}: {} (first {:?})",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert_eq!(mine.len() as i64, count, "row count of partition {partition}");
}

/// A host running in the background, its stderr going to a file.
pub struct Running {
    pub child: std::process::Child,
    pub log: PathBuf,
}

impl Running {
    pub fn start(args: &[&str]) -> Self {
        Self::start_with_env(args, &[])
    }

    /// `host ARGS` with extra environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        let log = std::env::temp_dir().join(format!("{}.log", unique("host")));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_host"))
            .args(args)
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn host");
        Self { child, log }
    }

    /// `host consume PIPELINE --topic TOPIC` as the static group member `instance_id`.
    pub fn member(pipeline: &str, topic: &str, instance_id: &str) -> Self {
        Self::start(&[
            "consume",
            pipeline,
            "--topic",
            topic,
            "--quiet",
            "--instance-id",
            instance_id,
        ])
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How the host ended, if it has.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("wait")
    }

    /// Waits for the host to exit by itself; panics with its log past `limit`.
    pub fn wait(mut self, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "host failed: {status}\n{}", self.log());
                return self.log();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("host ran over {limit:?}\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the host with SIGTERM, as a service manager would, and waits.
    pub fn terminate(self) -> String {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().expect("kill -TERM");
        self.wait(Duration::from_secs(60))
    }
}

/// A test that fails (or forgets) leaves no host behind: the process is
/// killed and reaped when its handle goes, unless it has ended already.
impl Drop for Running {
    fn drop(&mut self) {
        reap(&mut self.child);
    }
}

/// Kills a child that still runs and waits for it.
fn reap(child: &mut std::process::Child) {
    if matches!(child.try_wait(), Ok(None)) {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A child process that is killed and reaped when the guard goes (a panic
/// in the test included).
pub struct Reaped(pub std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        reap(&mut self.0);
    }
}

/// Waits until `condition` holds, polling; panics with `what` after `limit`.
pub fn wait_for(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The sum of a topic's end offsets: how many messages it holds.
pub fn topic_size(topic: &str) -> i64 {
    let consumer: BaseConsumer = host::kafka::client_config(&kafka_config())
        .expect("client config")
        .set("group.id", unique("size"))
        .create()
        .expect("consumer");
    host::kafka::end_offsets(&consumer, topic)
        .map(|ends| ends.values().sum())
        .unwrap_or(0)
}

/// Replaces a file the way an editor that saves atomically does.
pub fn replace_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp-save");
    std::fs::write(&tmp, bytes).expect("write temp");
    std::fs::rename(&tmp, path).expect("rename");
}

/// A keyed message: partition, key, payload (`None`: a tombstone).
pub type Keyed = (i32, Vec<u8>, Option<Vec<u8>>);

/// Produces keyed messages, each to the partition given, in order, and
/// waits for delivery.
pub fn produce_keyed(topic: &str, messages: &[Keyed]) {
    let producer: BaseProducer = host::kafka::client_config(&kafka_config())
        .expect("client config")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    for (partition, key, payload) in messages {
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).partition(*partition).key(key.as_slice());
        if let Some(p) = payload {
            record = record.payload(p.as_slice());
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    r,
                )) => {
                    record = r;
                    producer.poll(Duration::from_millis(100));
                }
                Err((e, _)) => panic!("send: {e}"),
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
}

/// A small xorshift generator seeded from the clock (the seed is printed, to
/// replay a failure): random kill moments and test data.
pub struct Random(u64);

impl Random {
    pub fn new() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(42);
        println!("seed {}", nanos | 1);
        Self(nanos | 1)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

impl Default for Random {
    fn default() -> Self {
        Self::new()
    }
}

/// Starts `host consume PIPELINE --once` `kills` times and SIGKILLs it at a
/// random moment once `progress` has moved (or after 20 s), then finishes the
/// run with one clean `consume --once`. Returns `progress` at each kill.
pub fn consume_through_sigkills(
    pipeline: &str,
    kills: usize,
    random: &mut Random,
    mut progress: impl FnMut() -> i64,
) -> Vec<i64> {
    let mut at_kills = Vec::new();
    for _ in 0..kills {
        let mut guard = Reaped(
            Command::new(env!("CARGO_BIN_EXE_host"))
                .args(["consume", pipeline, "--once", "--quiet"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("spawn host"),
        );
        let child = &mut guard.0;
        let before = progress();
        let started = Instant::now();
        while progress() == before
            && child.try_wait().expect("poll child").is_none()
            && started.elapsed() < Duration::from_secs(20)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(random.below(150)));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        at_kills.push(progress());
    }
    host_ok(&["consume", pipeline, "--once", "--quiet"]);
    at_kills
}
