//! `host simulate`: the old demo's two out-of-sync cases, made by moving the
//! Kafka committed offset of a sink's group by one. No data changes:
//!
//! - `db-ahead` moves it one back, so the database holds one message more than
//!   Kafka knows of ("saved in the database but not committed to Kafka");
//! - `kafka-ahead` moves it one forward ("committed to Kafka but not saved").
//!
//! Each moves the offset relative to where it is, so one case then the other
//! returns to normal. Both heal by themselves: the sink resumes from the
//! offset stored in PostgreSQL and commits that to Kafka.
//!
//! The commit is made from outside the group (no `group.instance.id`, no
//! subscription), which the broker accepts only while the group has no
//! members; a host that just stopped keeps its static membership for its
//! session timeout, so this waits for that, up to a limit.

use super::gather;
use crate::config::{Pipeline, SinkConfig};
use crate::kafka::{self, OutsideCommitError};
use crate::postgres;
use anyhow::{Context as _, bail};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How often a refused commit is tried again while the group empties.
const RETRY_EVERY: Duration = Duration::from_secs(2);

/// Which side ends up ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    /// Kafka's committed offset one behind the database's.
    DbAhead,
    /// Kafka's committed offset one ahead of the database's.
    KafkaAhead,
}

impl Case {
    pub fn name(self) -> &'static str {
        match self {
            Self::DbAhead => "db-ahead",
            Self::KafkaAhead => "kafka-ahead",
        }
    }

    fn opposite(self) -> Self {
        match self {
            Self::DbAhead => Self::KafkaAhead,
            Self::KafkaAhead => Self::DbAhead,
        }
    }
}

/// One committed offset moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub sink: String,
    pub group: String,
    pub topic: String,
    pub partition: i32,
    /// The next offset stored in PostgreSQL (unchanged).
    pub stored: i64,
    /// The committed offset before (`None`: never committed).
    pub before: Option<i64>,
    pub after: i64,
}

/// Moves the committed offset of every partition the database has an offset
/// for, for each sink of `topic`. `note` hears about waits. Waits up to `wait`
/// for the group to have no members.
pub async fn simulate(
    pipeline: &Pipeline,
    case: Case,
    topic: &str,
    wait: Duration,
    mut note: impl FnMut(&str),
) -> anyhow::Result<Vec<Move>> {
    let sinks: Vec<&SinkConfig> = pipeline.sinks.iter().filter(|s| s.topic == topic).collect();
    if sinks.is_empty() {
        bail!(
            "no sink consumes topic {topic:?} in {}, so there is no committed offset to move",
            pipeline.path.display()
        );
    }
    let timeout = pipeline.audit.timeout;
    let client = gather::connect_postgres(&pipeline.postgres, timeout)
        .await
        .map_err(anyhow::Error::msg)?;
    let mut planned: Vec<(&SinkConfig, Vec<Move>)> = Vec::new();
    for sink in &sinks {
        let stored = if postgres::table_exists(&client, postgres::OFFSETS_TABLE).await? {
            postgres::stored_offsets(&client, &sink.table, topic).await?
        } else {
            Default::default()
        };
        if stored.is_empty() {
            continue;
        }
        let stored: BTreeMap<i32, i64> = stored.into_iter().collect();
        let committed = committed_offsets(pipeline, sink, stored.keys().copied().collect()).await?;
        let mut moves = Vec::new();
        for (partition, stored) in stored {
            let before = committed.get(&partition).copied().flatten();
            let base = before.unwrap_or(stored);
            let after = match case {
                Case::DbAhead => base - 1,
                Case::KafkaAhead => base + 1,
            };
            if after < 0 {
                bail!("the committed offset of {topic}/{partition} is {base}; it cannot move below 0");
            }
            moves.push(Move {
                sink: sink.name.clone(),
                group: sink.group.clone(),
                topic: topic.to_string(),
                partition,
                stored,
                before,
                after,
            });
        }
        planned.push((sink, moves));
    }
    if planned.is_empty() {
        let tables: Vec<&str> = sinks.iter().map(|s| s.table.as_str()).collect();
        bail!(
            "nothing is stored yet for topic {topic:?} (table {}), so there is no offset to move\n  hint: store some messages first: `host consume {} --topic {topic} --once`",
            tables.join(", "),
            pipeline.path.display()
        );
    }
    for (sink, moves) in &planned {
        let offsets: BTreeMap<i32, i64> = moves.iter().map(|m| (m.partition, m.after)).collect();
        commit_when_group_empty(pipeline, sink, &offsets, wait, &mut note).await?;
        let now = committed_offsets(pipeline, sink, offsets.keys().copied().collect()).await?;
        for (partition, wanted) in &offsets {
            let read = now.get(partition).copied().flatten();
            if read != Some(*wanted) {
                bail!(
                    "Kafka took the commit of group {:?} but reports {read:?} for {topic}/{partition} instead of {wanted}",
                    sink.group
                );
            }
        }
    }
    Ok(planned.into_iter().flat_map(|(_, moves)| moves).collect())
}

async fn committed_offsets(
    pipeline: &Pipeline,
    sink: &SinkConfig,
    partitions: Vec<i32>,
) -> anyhow::Result<BTreeMap<i32, Option<i64>>> {
    let (cfg, group, topic, timeout) = (
        pipeline.kafka.clone(),
        sink.group.clone(),
        sink.topic.clone(),
        pipeline.audit.timeout,
    );
    let read = move || kafka::group_offsets(&cfg, &group, &topic, &partitions, timeout);
    let offsets = tokio::task::spawn_blocking(read)
        .await
        .context("Kafka thread failed")??;
    Ok(offsets.into_iter().map(|g| (g.partition, g.committed)).collect())
}

async fn commit_when_group_empty(
    pipeline: &Pipeline,
    sink: &SinkConfig,
    offsets: &BTreeMap<i32, i64>,
    wait: Duration,
    note: &mut impl FnMut(&str),
) -> anyhow::Result<()> {
    let deadline = Instant::now() + wait;
    let mut told = false;
    loop {
        let (cfg, group, topic, offsets) = (
            pipeline.kafka.clone(),
            sink.group.clone(),
            sink.topic.clone(),
            offsets.clone(),
        );
        let commit = move || kafka::commit_outside_group(&cfg, &group, &topic, &offsets);
        match tokio::task::spawn_blocking(commit)
            .await
            .context("Kafka thread failed")?
        {
            Ok(()) => return Ok(()),
            Err(OutsideCommitError::GroupActive(code)) if Instant::now() < deadline => {
                if !told {
                    note(&format!(
                        "group {} still has a member ({code}): a running host, or one killed less than its session timeout ago ({} s); waiting up to {} s for it to leave",
                        sink.group,
                        crate::kafka::SESSION_TIMEOUT.as_secs(),
                        wait.as_secs()
                    ));
                    told = true;
                }
                tokio::time::sleep(RETRY_EVERY).await;
            }
            Err(OutsideCommitError::GroupActive(code)) => bail!(
                "Kafka refused to move the committed offset of group {:?} ({code}): the group has active members\n  hint: stop the host first (a killed host keeps its place in the group for its session timeout, {} s), then try again",
                sink.group,
                crate::kafka::SESSION_TIMEOUT.as_secs()
            ),
            Err(OutsideCommitError::Other(e)) => return Err(e),
        }
    }
}

/// Which side the move left ahead, and by how many: a description of what
/// was done, not an audit (the check plugins judge; `host check` shows them).
fn difference(stored: i64, committed: i64) -> String {
    match stored.cmp(&committed) {
        std::cmp::Ordering::Equal => "in sync".into(),
        std::cmp::Ordering::Greater => format!("database ahead by {}", stored - committed),
        std::cmp::Ordering::Less => format!("Kafka ahead by {}", committed - stored),
    }
}

/// What was done, the state it left, and how to see, undo or heal it.
pub fn summary(pipeline: &Pipeline, case: Case, topic: &str, moves: &[Move]) -> String {
    let path = pipeline.path.display();
    let mut lines = Vec::new();
    for m in moves {
        let before = m.before.map_or_else(|| "none".to_string(), |b| b.to_string());
        lines.push(format!(
            "{}/{}: Kafka committed offset of group {} moved {before} -> {} (PostgreSQL holds {}): {}",
            m.topic,
            m.partition,
            m.group,
            m.after,
            m.stored,
            difference(m.stored, m.after)
        ));
    }
    let state = if moves.iter().all(|m| m.after == m.stored) {
        "Kafka and the database agree again."
    } else if moves.iter().all(|m| m.after < m.stored) {
        "Simulated: saved in the database but not committed to Kafka."
    } else if moves.iter().all(|m| m.after > m.stored) {
        "Simulated: committed to Kafka but not saved in the database."
    } else {
        "The partitions now disagree in both directions."
    };
    lines.push(format!("{state} No data was changed."));
    lines.push(format!("See it: host check {path} sync --topic {topic}"));
    lines.push(format!(
        "Undo:   host simulate {path} {} --topic {topic}",
        case.opposite().name()
    ));
    lines.push(format!(
        "Heal:   host run {path} (or host consume {path} --topic {topic}): the sink resumes from the offset in PostgreSQL and commits it to Kafka"
    ));
    lines.join("\n")
}
