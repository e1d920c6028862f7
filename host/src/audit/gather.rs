//! Reads the state the audit reports on, each request bounded by
//! `[audit] timeout_ms`: PostgreSQL (TLS, sink tables, stored offsets, dead
//! letters) and Kafka (brokers, topics, end and committed offsets).

use super::{Finding, Report, Severity};
use crate::config::{KafkaConfig, Pipeline, PostgresConfig, SecurityProtocol, SinkConfig};
use crate::kafka::{self, ClusterInfo, GroupPartition};
use crate::plugins::check::{PartitionState, Snapshot};
use crate::postgres;
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::time::Duration;
use tokio_postgres::Client;

/// What PostgreSQL said.
#[derive(Debug, Clone, Serialize)]
pub struct DbReport {
    /// `host:port/database`, from `postgres.url`.
    pub server: String,
    pub reachable: bool,
    pub database: Option<String>,
    pub server_version: Option<String>,
    /// From `pg_stat_ssl`; `None` when the session is not encrypted.
    pub tls_version: Option<String>,
    pub tls_cipher: Option<String>,
    pub tables: Vec<TableReport>,
}

/// A sink table: its row count and last row (highest `message_id`).
#[derive(Debug, Clone, Serialize)]
pub struct TableReport {
    pub sink: String,
    pub table: String,
    pub exists: bool,
    pub rows: Option<i64>,
    pub last_row: Option<serde_json::Value>,
}

/// What Kafka said.
#[derive(Debug, Clone, Serialize)]
pub struct KafkaReport {
    pub bootstrap_servers: String,
    pub security_protocol: &'static str,
    pub reachable: bool,
    /// `id host:port` of each broker.
    pub brokers: Vec<String>,
    /// Every topic the client may see, internal ones left out.
    pub topics: Vec<String>,
    /// The chosen topic, or every declared one.
    pub details: Vec<TopicReport>,
}

/// One topic's partitions.
#[derive(Debug, Clone, Serialize)]
pub struct TopicReport {
    pub topic: String,
    pub exists: bool,
    /// The partition count `[[topics]]` declares.
    pub declared_partitions: Option<i32>,
    pub partitions: Vec<PartitionReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionReport {
    pub partition: i32,
    pub leader: i32,
    pub replicas: usize,
}

/// One partition of one sink's topic: Kafka's offsets next to PostgreSQL's.
#[derive(Debug, Clone, Serialize)]
pub struct SyncRow {
    pub sink: String,
    pub topic: String,
    pub partition: i32,
    pub table: String,
    pub consumer_group: String,
    /// Kafka's high watermark.
    pub end_offset: Option<i64>,
    /// The sink group's committed offset in Kafka (advisory).
    pub committed_offset: Option<i64>,
    /// The next offset stored in PostgreSQL with the rows (the truth).
    pub stored_offset: Option<i64>,
    /// Messages available to consume: end − stored.
    pub lag: Option<i64>,
    /// Stored − committed: above 0 the database is ahead, below 0 Kafka is.
    pub difference: Option<i64>,
    pub dead_letters: i64,
    /// Whether no check plugin reported an error about this partition;
    /// `None` when none reported on it. The host gathers, the checks judge.
    pub in_sync: Option<bool>,
    /// The headline of the most severe finding a check plugin made about this
    /// partition (`database ahead by 1`); `None` when none reported on it.
    pub verdict: Option<String>,
}

/// Runs `what` within `timeout`, flattening its error to a message.
async fn within<T>(timeout: Duration, what: impl Future<Output = anyhow::Result<T>>) -> Result<T, String> {
    match tokio::time::timeout(timeout, what).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(_) => Err(format!(
            "no answer within {} ms (audit.timeout_ms)",
            timeout.as_millis()
        )),
    }
}

fn server_of(cfg: &PostgresConfig) -> String {
    cfg.url.target()
}

pub(super) async fn connect_postgres(cfg: &PostgresConfig, timeout: Duration) -> Result<Client, String> {
    within(timeout, postgres::connect(cfg))
        .await
        .map_err(|e| format!("cannot reach PostgreSQL at {}: {e}", server_of(cfg)))
}

pub(super) async fn cluster(cfg: &KafkaConfig, timeout: Duration) -> Result<ClusterInfo, String> {
    let cfg = cfg.clone();
    match tokio::task::spawn_blocking(move || kafka::cluster_info(&cfg, timeout)).await {
        Ok(result) => result.map_err(|e| format!("{e:#}")),
        Err(e) => Err(format!("the Kafka thread failed: {e}")),
    }
}

pub(super) async fn db(
    pipeline: &Pipeline,
    pg: Option<&Client>,
    sinks: &[&SinkConfig],
    findings: &mut Vec<Finding>,
) -> DbReport {
    let timeout = pipeline.audit.timeout;
    let mut report = DbReport {
        server: server_of(&pipeline.postgres),
        reachable: pg.is_some(),
        database: None,
        server_version: None,
        tls_version: None,
        tls_cipher: None,
        tables: Vec::new(),
    };
    let Some(client) = pg else {
        return report;
    };
    match within(timeout, postgres::session_info(client)).await {
        Ok(info) => {
            report.database = Some(info.database);
            report.server_version = Some(info.server_version);
            match info.tls {
                Some((version, cipher)) => {
                    report.tls_version = Some(version);
                    report.tls_cipher = Some(cipher);
                }
                None => findings.push(Finding::host(
                    Severity::Warning,
                    "postgres",
                    "the session is not encrypted (postgres.tls = \"disable\")",
                )),
            }
        }
        Err(e) => findings.push(Finding::host(Severity::Error, "postgres", e)),
    }
    for sink in sinks {
        let mut table = TableReport {
            sink: sink.name.clone(),
            table: sink.table.to_string(),
            exists: false,
            rows: None,
            last_row: None,
        };
        match within(timeout, postgres::table_summary(client, &sink.table)).await {
            Ok(Some((rows, last))) => {
                table.exists = true;
                table.rows = Some(rows);
                table.last_row = last;
            }
            Ok(None) => findings.push(Finding::host(
                Severity::Warning,
                &sink.table,
                "the table does not exist yet; `host provision` or `host run` creates it",
            )),
            Err(e) => findings.push(Finding::host(Severity::Error, &sink.table, e)),
        }
        report.tables.push(table);
    }
    report
}

pub(super) fn kafka(
    pipeline: &Pipeline,
    cluster: Option<&ClusterInfo>,
    topic: Option<&str>,
    findings: &mut Vec<Finding>,
) -> KafkaReport {
    let cfg = &pipeline.kafka;
    let mut report = KafkaReport {
        bootstrap_servers: cfg.bootstrap_servers.clone(),
        security_protocol: match cfg.security_protocol {
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::Plaintext => "plaintext",
        },
        reachable: cluster.is_some(),
        brokers: Vec::new(),
        topics: Vec::new(),
        details: Vec::new(),
    };
    let Some(cluster) = cluster else {
        return report;
    };
    if cfg.security_protocol == SecurityProtocol::Plaintext {
        findings.push(Finding::host(
            Severity::Warning,
            "kafka",
            "the connection is not encrypted (kafka.security_protocol = \"plaintext\")",
        ));
    }
    report.brokers = cluster.brokers.clone();
    report.topics = cluster
        .topics
        .keys()
        .filter(|t| !t.starts_with("__"))
        .cloned()
        .collect();
    let chosen: Vec<String> = match topic {
        Some(t) => vec![t.to_string()],
        None => pipeline.topics.iter().map(|t| t.name.to_string()).collect(),
    };
    for name in chosen {
        let declared = pipeline.topic(&name).map(|t| t.partitions);
        let mut detail = TopicReport {
            topic: name.clone(),
            exists: false,
            declared_partitions: declared,
            partitions: Vec::new(),
        };
        match cluster.topics.get(&name) {
            Some(Ok(partitions)) => {
                detail.exists = true;
                detail.partitions = partitions
                    .iter()
                    .map(|p| PartitionReport {
                        partition: p.id,
                        leader: p.leader,
                        replicas: p.replicas,
                    })
                    .collect();
                detail.partitions.sort_by_key(|p| p.partition);
                if let Some(d) = declared.filter(|d| usize::try_from(*d).ok() != Some(partitions.len())) {
                    findings.push(Finding::host(
                        Severity::Warning,
                        &name,
                        format!(
                            "the topic has {}, the pipeline file declares {d}",
                            crate::plugins::trap_text::plural(partitions.len() as u64, "partition", "partitions")
                        ),
                    ));
                }
            }
            Some(Err(e)) => findings.push(Finding::host(Severity::Error, &name, format!("Kafka reports: {e}"))),
            None => findings.push(missing_topic(&name)),
        }
        report.details.push(detail);
    }
    report
}

fn missing_topic(topic: &str) -> Finding {
    Finding::host(
        Severity::Warning,
        topic,
        "the topic does not exist in Kafka; `host provision` or `host run` creates it",
    )
}

/// PostgreSQL's side of one sink: stored next offsets and dead letters per partition.
async fn stored_side(client: &Client, sink: &SinkConfig) -> anyhow::Result<(HashMap<i32, i64>, HashMap<i32, i64>)> {
    let stored = if postgres::table_exists(client, postgres::OFFSETS_TABLE).await? {
        postgres::stored_offsets(client, &sink.table, &sink.topic).await?
    } else {
        HashMap::new()
    };
    let dead = postgres::dead_letter_counts(client, &sink.name, &sink.topic).await?;
    Ok((stored, dead))
}

/// Kafka's side of one sink: end and committed offsets of every partition of
/// its topic (none when the topic does not exist).
async fn kafka_side(
    cfg: &KafkaConfig,
    cluster: &ClusterInfo,
    sink: &SinkConfig,
    timeout: Duration,
    findings: &mut Vec<Finding>,
) -> Result<Vec<GroupPartition>, String> {
    let partitions: Vec<i32> = match cluster.topics.get(sink.topic.as_str()) {
        Some(Ok(p)) => p.iter().map(|p| p.id).collect(),
        Some(Err(e)) => {
            findings.push(Finding::host(
                Severity::Error,
                &sink.topic,
                format!("Kafka reports: {e}"),
            ));
            return Ok(Vec::new());
        }
        None => {
            findings.push(missing_topic(&sink.topic));
            return Ok(Vec::new());
        }
    };
    let (cfg, group, topic) = (cfg.clone(), sink.group.clone(), sink.topic.clone());
    let read = move || kafka::group_offsets(&cfg, &group, &topic, &partitions, timeout);
    match tokio::task::spawn_blocking(read).await {
        Ok(result) => result.map_err(|e| format!("{e:#}")),
        Err(e) => Err(format!("the Kafka thread failed: {e}")),
    }
}

pub(super) async fn sync(
    pipeline: &Pipeline,
    pg: Option<&Client>,
    cluster: Option<&ClusterInfo>,
    sinks: &[&SinkConfig],
    report: &mut Report,
) -> Vec<SyncRow> {
    let timeout = pipeline.audit.timeout;
    let mut rows = Vec::new();
    for sink in sinks {
        let (stored, dead) = match pg {
            Some(client) => match within(timeout, stored_side(client, sink)).await {
                Ok(side) => side,
                Err(e) => {
                    report.unreachable(
                        "postgres",
                        &format!("cannot read the offsets of sink {}: {e}", sink.name),
                    );
                    Default::default()
                }
            },
            None => Default::default(),
        };
        let in_kafka = match cluster {
            Some(cluster) => match kafka_side(&pipeline.kafka, cluster, sink, timeout, &mut report.findings).await {
                Ok(side) => side,
                Err(e) => {
                    report.unreachable("kafka", &e);
                    Vec::new()
                }
            },
            None => Vec::new(),
        };
        rows.extend(partition_rows(sink, &in_kafka, &stored, &dead));
    }
    rows
}

/// One row per partition either side knows of: Kafka's offsets next to the
/// ones stored in PostgreSQL, the lag and the difference (figures only; the
/// check plugins judge them).
fn partition_rows(
    sink: &SinkConfig,
    in_kafka: &[GroupPartition],
    stored: &HashMap<i32, i64>,
    dead: &HashMap<i32, i64>,
) -> Vec<SyncRow> {
    let partitions: BTreeSet<i32> = in_kafka
        .iter()
        .map(|g| g.partition)
        .chain(stored.keys().copied())
        .collect();
    partitions
        .into_iter()
        .map(|p| {
            let kafka = in_kafka.iter().find(|g| g.partition == p);
            let end = kafka.map(|g| g.end);
            let committed = kafka.and_then(|g| g.committed);
            let stored = stored.get(&p).copied();
            SyncRow {
                sink: sink.name.clone(),
                topic: sink.topic.to_string(),
                partition: p,
                table: sink.table.to_string(),
                consumer_group: sink.group.clone(),
                end_offset: end,
                committed_offset: committed,
                stored_offset: stored,
                lag: end.map(|e| e - stored.unwrap_or(0)),
                difference: stored.zip(committed).map(|(s, c)| s - c),
                dead_letters: dead.get(&p).copied().unwrap_or(0),
                // Filled in from the check plugins' findings (`audit::judged`).
                in_sync: None,
                verdict: None,
            }
        })
        .collect()
}

/// The snapshot the check plugins judge.
pub(super) fn snapshot(rows: &[SyncRow], taken_at_ms: i64) -> Snapshot {
    Snapshot {
        taken_at: taken_at_ms,
        partitions: rows
            .iter()
            .map(|r| PartitionState {
                sink: r.sink.clone(),
                topic: r.topic.clone(),
                partition: r.partition,
                table: r.table.clone(),
                consumer_group: r.consumer_group.clone(),
                end_offset: r.end_offset,
                committed_offset: r.committed_offset,
                stored_offset: r.stored_offset,
                dead_letters: r.dead_letters,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Pipeline;
    use std::path::Path;

    /// A sink as the pipeline file makes it (so these tests follow the config's shape).
    fn sink() -> SinkConfig {
        let text = r#"
[[topics]]
name = "langs"

[[sinks]]
name = "rows"
topic = "langs"
table = "langs_rows"
group = "g"
mapper = "/nowhere/json_row.wasm"
"#;
        let text = format!("{}{text}", crate::config::TEST_CONNECTIONS);
        let pipeline = Pipeline::parse(Path::new("/nowhere/pipeline.toml"), &text)
            .unwrap_or_else(|e| panic!("test pipeline is valid: {e}"));
        pipeline.sinks[0].clone()
    }

    fn kafka(partition: i32, end: i64, committed: Option<i64>) -> GroupPartition {
        GroupPartition {
            partition,
            end,
            committed,
        }
    }

    #[test]
    fn rows_put_both_sides_of_each_partition_side_by_side() {
        let in_kafka = [kafka(0, 50, Some(49)), kafka(1, 20, None), kafka(2, 0, None)];
        let stored = HashMap::from([(0, 50), (1, 18)]);
        let dead = HashMap::from([(1, 3)]);
        let rows = partition_rows(&sink(), &in_kafka, &stored, &dead);
        let figures: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r.partition,
                    r.end_offset,
                    r.committed_offset,
                    r.stored_offset,
                    r.lag,
                    r.difference,
                    r.dead_letters,
                )
            })
            .collect();
        assert_eq!(
            figures,
            [
                (0, Some(50), Some(49), Some(50), Some(0), Some(1), 0),
                (1, Some(20), None, Some(18), Some(2), None, 3),
                (2, Some(0), None, None, Some(0), None, 0),
            ]
        );
        let r = &rows[0];
        assert_eq!(
            (r.sink.as_str(), r.topic.as_str(), r.table.as_str()),
            ("rows", "langs", "langs_rows")
        );
        assert!(r.consumer_group.starts_with('g'), "{}", r.consumer_group);
        // No judgement here: the check plugins give the verdict.
        assert!(rows.iter().all(|r| r.verdict.is_none() && r.in_sync.is_none()));
    }

    #[test]
    fn a_partition_only_the_database_knows_still_gets_a_row() {
        // Kafka unreachable, or the topic recreated with fewer partitions.
        let stored = HashMap::from([(3, 7)]);
        let rows = partition_rows(&sink(), &[], &stored, &HashMap::new());
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(
            (r.partition, r.end_offset, r.committed_offset, r.stored_offset, r.lag),
            (3, None, None, Some(7), None)
        );
    }

    #[test]
    fn the_snapshot_carries_every_row_s_figures() {
        let rows = partition_rows(
            &sink(),
            &[kafka(0, 50, Some(49))],
            &HashMap::from([(0, 50)]),
            &HashMap::from([(0, 2)]),
        );
        let snapshot = snapshot(&rows, 1234);
        assert_eq!(snapshot.taken_at, 1234);
        assert_eq!(snapshot.partitions.len(), 1);
        let p = &snapshot.partitions[0];
        assert_eq!(
            (
                p.topic.as_str(),
                p.partition,
                p.end_offset,
                p.committed_offset,
                p.stored_offset,
                p.dead_letters
            ),
            ("langs", 0, Some(50), Some(49), Some(50), 2)
        );
    }
}
