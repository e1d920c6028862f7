//! The dedicated stack for tests that kill the broker or the database
//! (`scripts/local-stack --instance chaos`: Kafka on 9193, PostgreSQL on
//! 5433), and helpers that work on either stack: group membership read from
//! the broker, and an exactly-once check over a sink table and the dead
//! letters.

use super::{repo_root, unique};
use host::config::{KafkaConfig, Pipeline};
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Once;
use std::time::{Duration, Instant};

/// One Kafka + PostgreSQL pair.
#[derive(Clone, Copy)]
pub struct Stack {
    pub kafka_port: u16,
    pub pg_port: u16,
}

/// The shared stack every test uses.
pub const SHARED: Stack = Stack {
    kafka_port: 9093,
    pg_port: 5432,
};
/// The dedicated stack, which chaos tests may kill.
pub const CHAOS: Stack = Stack {
    kafka_port: 9193,
    pg_port: 5433,
};

/// Starts the dedicated stack unless it runs (idempotent; once per test process).
pub fn chaos_up() -> Stack {
    static UP: Once = Once::new();
    UP.call_once(|| {
        let status = Command::new(repo_root().join("scripts/local-stack"))
            .args(["--instance", "chaos", "up"])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run scripts/local-stack --instance chaos up");
        assert!(status.success(), "scripts/local-stack --instance chaos up failed");
    });
    CHAOS
}

/// SIGKILLs the dedicated broker.
pub fn kill_chaos_kafka() {
    local_stack(&["kill", "kafka"]);
}

/// Stops the dedicated PostgreSQL in immediate mode (a crash).
pub fn crash_chaos_postgres() {
    local_stack(&["kill", "postgres"]);
}

/// Starts whatever of the dedicated stack is down.
pub fn restart_chaos() {
    local_stack(&["up"]);
}

fn local_stack(args: &[&str]) {
    let status = Command::new(repo_root().join("scripts/local-stack"))
        .args(["--instance", "chaos"])
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run scripts/local-stack");
    assert!(status.success(), "scripts/local-stack --instance chaos {args:?} failed");
}

impl Stack {
    pub fn sections(&self) -> String {
        let certs = repo_root().join("certs");
        format!(
            r#"[kafka]
bootstrap_servers = "localhost:{kafka}"
security_protocol = "ssl"
ca = "{ca}"
cert = "{cert}"
key = "{key}"

[postgres]
url = "postgres://avnadmin:localdev@localhost:{pg}/info?sslmode=require"
ca = "{ca}"
"#,
            kafka = self.kafka_port,
            pg = self.pg_port,
            ca = certs.join("ca.pem").display(),
            cert = certs.join("service.cert").display(),
            key = certs.join("service.key").display(),
        )
    }

    /// Writes a pipeline file for this stack into a fresh folder.
    pub fn write_pipeline(&self, body: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(unique("pipeline"));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        let path = dir.join("pipeline.toml");
        std::fs::write(&path, format!("{}\n{body}", self.sections())).expect("write pipeline");
        path
    }

    pub fn pipeline(&self) -> Pipeline {
        Pipeline::load(&self.write_pipeline("")).expect("valid pipeline")
    }

    pub fn kafka(&self) -> KafkaConfig {
        self.pipeline().kafka
    }

    /// Creates `topic` with `partitions` and writes a pipeline with one json-row
    /// sink from it into `table`, the set-up of the scale-out tests.
    pub fn one_sink_pipeline(&self, topic: &str, partitions: i32, table: &str) -> PathBuf {
        self.create_topic(topic, partitions);
        self.write_pipeline(
            &super::SinkPipeline::new(topic, table, "json_row")
                .partitions(partitions)
                .body(),
        )
    }

    pub fn create_topic(&self, name: &str, partitions: i32) {
        let topic = host::config::TopicConfig {
            name: name.parse().expect("valid topic name"),
            partitions,
            replication: 1,
        };
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(host::kafka::create_topics(&self.kafka(), &[topic]))
            .expect("create topic");
    }

    /// End offset of each partition: what Kafka holds. A broker just
    /// restarted after a kill may take a while to lead its partitions again
    /// (log recovery), so this asks for up to a minute.
    pub fn end_offsets(&self, topic: &str) -> BTreeMap<i32, i64> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.read_end_offsets(topic) {
                Ok(ends) => return ends,
                Err(e) if Instant::now() > deadline => panic!("end offsets of {topic}: {e:#}"),
                Err(_) => std::thread::sleep(Duration::from_millis(500)),
            }
        }
    }

    /// Like `end_offsets`, `None` while the broker does not answer.
    pub fn try_end_offsets(&self, topic: &str) -> Option<BTreeMap<i32, i64>> {
        self.read_end_offsets(topic).ok()
    }

    fn read_end_offsets(&self, topic: &str) -> anyhow::Result<BTreeMap<i32, i64>> {
        let consumer: BaseConsumer = host::kafka::client_config(&self.kafka())
            .expect("client config")
            .set("group.id", unique("ends"))
            .create()
            .expect("consumer");
        Ok(host::kafka::end_offsets(&consumer, topic)?.into_iter().collect())
    }

    /// The members of a consumer group and the partitions each holds, from
    /// the broker (the group coordinator's description, not a log line).
    pub fn group_members(&self, group: &str) -> Vec<(String, Vec<i32>)> {
        let consumer: BaseConsumer = host::kafka::client_config(&self.kafka())
            .expect("client config")
            .set("group.id", unique("describe"))
            .create()
            .expect("consumer");
        let Ok(list) = consumer.fetch_group_list(Some(group), Duration::from_secs(10)) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for g in list.groups() {
            if g.state() != "Stable" {
                return Vec::new();
            }
            for m in g.members() {
                let partitions = m.assignment().map(assigned_partitions).unwrap_or_default();
                out.push((m.id().to_string(), partitions));
            }
        }
        out.sort();
        out
    }

    /// The group as the coordinator describes it, for a failure message:
    /// its state, protocol, and each member with its client, host and
    /// partitions; or why it could not be read.
    pub fn describe_group(&self, group: &str) -> String {
        let consumer: BaseConsumer = match host::kafka::client_config(&self.kafka())
            .expect("client config")
            .set("group.id", unique("describe"))
            .create()
        {
            Ok(c) => c,
            Err(e) => return format!("cannot create a client: {e}"),
        };
        let list = match consumer.fetch_group_list(Some(group), Duration::from_secs(10)) {
            Ok(list) => list,
            Err(e) => return format!("cannot describe group {group}: {e}"),
        };
        list.groups()
            .iter()
            .map(|g| {
                let members: Vec<String> = g
                    .members()
                    .iter()
                    .map(|m| {
                        format!(
                            "{} ({} at {}) holds {:?}",
                            m.id(),
                            m.client_id(),
                            m.client_host(),
                            m.assignment().map(assigned_partitions).unwrap_or_default()
                        )
                    })
                    .collect();
                format!(
                    "group {} state {} protocol {}/{}: [{}]",
                    g.name(),
                    g.state(),
                    g.protocol_type(),
                    g.protocol(),
                    members.join("; ")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A blocking client of this stack's PostgreSQL.
    pub fn db(&self) -> Pg {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let pg = self.pipeline().postgres;
        let client = rt
            .block_on(host::postgres::connect(&pg))
            .expect("connect to PostgreSQL");
        Pg { rt, client }
    }
}

/// Partitions in a consumer-protocol assignment: version (i16), then an
/// array of (topic: string, partitions: [i32]), then user data.
fn assigned_partitions(bytes: &[u8]) -> Vec<i32> {
    let mut r = Reader(bytes);
    let mut out = Vec::new();
    let Some(_version) = r.i16() else { return out };
    let Some(topics) = r.i32() else { return out };
    for _ in 0..topics.max(0) {
        let Some(len) = r.i16() else { return out };
        if r.take(len.max(0) as usize).is_none() {
            return out;
        }
        let Some(n) = r.i32() else { return out };
        for _ in 0..n.max(0) {
            match r.i32() {
                Some(p) => out.push(p),
                None => return out,
            }
        }
    }
    out.sort_unstable();
    out
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> Option<i32> {
        self.take(4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

pub struct Pg {
    rt: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
}

/// What a sink table and the dead letters hold against what Kafka holds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub messages: i64,
    pub stored: i64,
    pub duplicates: i64,
    pub missing: i64,
}

impl Pg {
    pub fn query(&self, sql: &str, params: &[&(dyn tokio_postgres::types::ToSql + Sync)]) -> Vec<tokio_postgres::Row> {
        self.rt
            .block_on(self.client.query(sql, params))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Rows of a json-row sink table (0 when it does not exist yet).
    pub fn count(&self, table: &str) -> i64 {
        self.rt
            .block_on(self.client.query_one(&format!("SELECT count(*) FROM \"{table}\""), &[]))
            .map(|r| r.get(0))
            .unwrap_or(0)
    }

    /// Every (partition, offset) Kafka holds must be in the table (json-row's
    /// partition_id, offset_id) or the dead letters, exactly once.
    pub fn tally(&self, table: &str, topic: &str, ends: &BTreeMap<i32, i64>) -> Tally {
        let mut seen: HashSet<(i64, i64)> = HashSet::new();
        let mut duplicates = 0;
        let rows = self.query(&format!("SELECT partition_id, offset_id FROM \"{table}\""), &[]);
        let dead = self.query(
            "SELECT partition::bigint, \"offset\" FROM wasm_stream_dead_letters WHERE topic = $1",
            &[&topic],
        );
        for r in rows.iter().chain(dead.iter()) {
            if !seen.insert((r.get(0), r.get(1))) {
                duplicates += 1;
            }
        }
        let messages: i64 = ends.values().sum();
        let missing = ends
            .iter()
            .map(|(p, end)| (0..*end).filter(|o| !seen.contains(&(i64::from(*p), *o))).count() as i64)
            .sum();
        Tally {
            messages,
            stored: seen.len() as i64 + duplicates,
            duplicates,
            missing,
        }
    }
}

impl Pg {
    pub fn execute(&self, sql: &str) {
        self.rt
            .block_on(self.client.batch_execute(sql))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The state and wait event of the sessions named `application_name`.
    pub fn sessions(&self, application_name: &str) -> Vec<(String, String)> {
        self.query(
            "SELECT coalesce(state, ''), coalesce(wait_event_type, '') FROM pg_stat_activity WHERE application_name = $1",
            &[&application_name],
        )
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
    }
}

/// What the zombie scenario saw.
pub struct ZombieOutcome {
    pub tally: Tally,
    /// From the zombie's stop until the successor had stored everything.
    pub recover: Duration,
    pub problems: Vec<String>,
}

fn signal(child: &std::process::Child, sig: &str) {
    let _ = Command::new("kill").args([sig, &child.id().to_string()]).status();
}

/// A zombie caught holding the offsets' row locks: a host is stopped
/// (SIGSTOP) inside its transaction, after its offset updates and before its
/// commit, which this arranges deterministically by holding one offset row
/// while its batch is written. A second host then takes its partitions once
/// the session expires and must store everything while the zombie is still
/// stopped (its session's idle-in-transaction bound frees the locks); the
/// zombie, continued, must not write its stale batch.
pub fn zombie_scenario(stack: Stack, count: i64, limit: Duration) -> ZombieOutcome {
    use super::Running;
    let topic = unique("zombie");
    let table = unique("zombie_rows");
    stack.create_topic(&topic, 4);
    let half = count / 2;
    let pipeline = |n: i64| {
        stack.write_pipeline(
            &super::SinkPipeline::new(&topic, &table, "json_row")
                .partitions(4)
                .generator("load", n, 0)
                .body(),
        )
    };
    let first = pipeline(half);
    let first = first.to_str().expect("utf-8 path");
    let second = pipeline(count - half);
    let second = second.to_str().expect("utf-8 path");
    let group = format!("wasm-stream-{table}");
    let member: String = format!("{group}-zombie").chars().take(63).collect();
    let mut problems = Vec::new();
    let db = stack.db();
    let locker = stack.db();

    let mut zombie = Running::member(first, &topic, "zombie");
    super::host_ok(&["produce", first, "--quiet"]);
    super::wait_for("the zombie to store the first half", limit, || db.count(&table) >= half);

    // Hold the offset rows, so the zombie's next batch stops at its update.
    // Every partition's: keyless messages stick to one partition per
    // producer batch, so the first half may have left a partition without a
    // row (whose first write would be an insert nothing holds), and the
    // second half may go anywhere. The rows inserted here for those say
    // "nothing stored" (offset 0 of a new topic); the zombie's insert for
    // one waits on them, then finds it taken and stores nothing.
    locker.execute(&format!(
        "BEGIN;
         SELECT next_offset FROM wasm_stream_offsets WHERE table_name = '{table}' FOR UPDATE;
         INSERT INTO wasm_stream_offsets (table_name, topic, partition, next_offset, consumer_group)
           SELECT '{table}', '{topic}', p, 0, '{group}' FROM generate_series(0, 3) AS p ON CONFLICT DO NOTHING"
    ));
    super::host_ok(&["produce", second, "--quiet"]);
    super::wait_for("the zombie to wait for the held row", limit, || {
        db.sessions(&member).iter().any(|(_, wait)| wait == "Lock")
    });
    signal(&zombie.child, "-STOP");
    let stopped = std::time::Instant::now();
    // Its update goes through; it can never send the commit.
    locker.execute("COMMIT");
    super::wait_for("the zombie's session to sit in its transaction", limit, || {
        db.sessions(&member)
            .iter()
            .any(|(state, _)| state == "idle in transaction")
    });

    let successor = Running::member(first, &topic, "successor");
    let deadline = std::time::Instant::now() + limit;
    while db.count(&table) < count && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let recover = stopped.elapsed();
    if db.count(&table) < count {
        problems.push(format!(
            "the successor stored {} of {count} while the zombie was stopped",
            db.count(&table)
        ));
    }
    signal(&zombie.child, "-CONT");
    std::thread::sleep(Duration::from_secs(3));
    for host in [&zombie, &successor] {
        signal(&host.child, "-TERM");
    }
    for (name, host) in [("the zombie", &mut zombie), ("the successor", &mut { successor })] {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match host.child.try_wait().expect("wait") {
                Some(s) if s.success() => break,
                Some(s) => {
                    problems.push(format!("{name} exited with {s}"));
                    break;
                }
                None if std::time::Instant::now() > deadline => {
                    let _ = host.child.kill();
                    problems.push(format!("{name} did not stop on SIGTERM"));
                    break;
                }
                None => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
    let tally = db.tally(&table, &topic, &stack.end_offsets(&topic));
    ZombieOutcome {
        tally,
        recover,
        problems,
    }
}
