//! Queries and admin calls: partitions and watermarks of a topic, the
//! cluster's metadata, a group's offsets, creating topics.

use super::{METADATA_TIMEOUT, TlsWatch, client_config, diagnose_tls};
use crate::config::{KafkaConfig, TopicConfig};
use anyhow::{Context as _, bail};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::time::Duration;

/// A plain consumer for queries (watermarks, metadata, committed offsets).
pub fn query_consumer(cfg: &KafkaConfig, group: &str) -> anyhow::Result<BaseConsumer> {
    client_config(cfg)?
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .context("cannot create a Kafka client")
}

/// The partitions of a topic, from the broker's metadata.
pub fn partitions<C: ConsumerContext, K: Consumer<C>>(consumer: &K, topic: &str) -> anyhow::Result<Vec<i32>> {
    let metadata = consumer
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .with_context(|| format!("cannot read the metadata of topic {topic:?} from Kafka"))?;
    let t = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .with_context(|| format!("topic {topic:?} not found"))?;
    if let Some(e) = t.error() {
        bail!(
            "topic {topic:?}: {:?}\n  hint: create it with `host run` (it creates declared topics) or the Kafka admin tools",
            RDKafkaErrorCode::from(e)
        );
    }
    Ok(t.partitions().iter().map(|p| p.id()).collect())
}

/// The end offset (high watermark) of every partition of a topic.
pub fn end_offsets<C: ConsumerContext, K: Consumer<C>>(consumer: &K, topic: &str) -> anyhow::Result<HashMap<i32, i64>> {
    Ok(watermarks(consumer, topic)?
        .into_iter()
        .map(|(p, (_, high))| (p, high))
        .collect())
}

/// The log start and end (low and high watermarks) of every partition of a topic.
pub fn watermarks<C: ConsumerContext, K: Consumer<C>>(
    consumer: &K,
    topic: &str,
) -> anyhow::Result<HashMap<i32, (i64, i64)>> {
    partitions(consumer, topic)?
        .into_iter()
        .map(|p| {
            let marks = consumer
                .fetch_watermarks(topic, p, METADATA_TIMEOUT)
                .with_context(|| format!("cannot read the start and end offsets of {topic}/{p}"))?;
            Ok((p, marks))
        })
        .collect()
}

/// What happened to a declared topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicStatus {
    Created,
    AlreadyExists,
}

/// Creates the declared topics that are missing, through the Admin API.
pub async fn create_topics(cfg: &KafkaConfig, topics: &[TopicConfig]) -> anyhow::Result<Vec<(String, TopicStatus)>> {
    if topics.is_empty() {
        return Ok(Vec::new());
    }
    let admin: AdminClient<TlsWatch> = client_config(cfg)?
        .create_with_context(TlsWatch::default())
        .context("cannot create the Kafka admin client")?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(&t.name, t.partitions, TopicReplication::Fixed(t.replication)))
        .collect();
    let opts = AdminOptions::new()
        .operation_timeout(Some(METADATA_TIMEOUT))
        .request_timeout(Some(METADATA_TIMEOUT));
    let results = match admin.create_topics(&new, &opts).await {
        Ok(r) => r,
        Err(e) => {
            // The admin client does not read librdkafka's log: ask a client that does.
            let (cfg, topics) = (cfg.clone(), new.len());
            let refused = tokio::task::spawn_blocking(move || diagnose_tls(&cfg))
                .await
                .ok()
                .flatten();
            if let Some(refused) = admin.inner().context().refused().or(refused) {
                return Err(refused.context(format!("cannot create {topics} topic(s)")));
            }
            return Err(anyhow::Error::new(e).context(
                "cannot reach Kafka to create topics\n  hint: check kafka.bootstrap_servers and that the broker runs (`scripts/local-stack status`)",
            ));
        }
    };
    results
        .into_iter()
        .map(|r| match r {
            Ok(name) => Ok((name, TopicStatus::Created)),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => Ok((name, TopicStatus::AlreadyExists)),
            Err((name, code)) => bail!("cannot create topic {name:?}: {code}"),
        })
        .collect()
}

/// What the broker's metadata says: its brokers, and every topic with its partitions.
#[derive(Debug, Clone, Default)]
pub struct ClusterInfo {
    /// `id host:port` of each broker.
    pub brokers: Vec<String>,
    /// Topic name -> its partitions, or the error the broker reports for it.
    pub topics: std::collections::BTreeMap<String, Result<Vec<PartitionInfo>, String>>,
}

/// One partition in the broker's metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionInfo {
    pub id: i32,
    pub leader: i32,
    pub replicas: usize,
}

/// Asks the broker for its metadata (blocks up to `timeout`). Success means
/// the broker was reached, over TLS when the security protocol is `ssl`.
pub fn cluster_info(cfg: &KafkaConfig, timeout: Duration) -> anyhow::Result<ClusterInfo> {
    let consumer = query_consumer(cfg, "wasm-stream-audit")?;
    let metadata = consumer.fetch_metadata(None, timeout);
    if metadata.is_err()
        && let Some(refused) = diagnose_tls(cfg)
    {
        return Err(refused.context(format!("cannot reach Kafka at {}", cfg.bootstrap_servers)));
    }
    let metadata = metadata.with_context(|| {
        format!(
            "cannot reach Kafka at {} within {} ms\n  hint: check kafka.bootstrap_servers and the certificates, and that the broker runs (`scripts/local-stack status`)",
            cfg.bootstrap_servers,
            timeout.as_millis()
        )
    })?;
    let brokers = metadata
        .brokers()
        .iter()
        .map(|b| format!("{} {}:{}", b.id(), b.host(), b.port()))
        .collect();
    let topics = metadata
        .topics()
        .iter()
        .map(|t| {
            let partitions = match t.error() {
                Some(e) => Err(RDKafkaErrorCode::from(e).to_string()),
                None => Ok(t
                    .partitions()
                    .iter()
                    .map(|p| PartitionInfo {
                        id: p.id(),
                        leader: p.leader(),
                        replicas: p.replicas().len(),
                    })
                    .collect()),
            };
            (t.name().to_string(), partitions)
        })
        .collect();
    Ok(ClusterInfo { brokers, topics })
}

/// Kafka's view of one partition for a consumer group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupPartition {
    pub partition: i32,
    /// The high watermark: the offset the next message produced gets.
    pub end: i64,
    /// The group's committed offset; `None` when it never committed.
    pub committed: Option<i64>,
}

/// The end offsets of the given partitions of a topic, and the committed
/// offsets of `group` for them (blocks up to `timeout` per request).
pub fn group_offsets(
    cfg: &KafkaConfig,
    group: &str,
    topic: &str,
    partitions: &[i32],
    timeout: Duration,
) -> anyhow::Result<Vec<GroupPartition>> {
    let consumer = query_consumer(cfg, group)?;
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        tpl.add_partition(topic, *p);
    }
    let committed = consumer
        .committed_offsets(tpl, timeout)
        .with_context(|| format!("cannot read the committed offsets of group {group:?} for topic {topic:?}"))?;
    partitions
        .iter()
        .map(|p| {
            let (_, end) = consumer
                .fetch_watermarks(topic, *p, timeout)
                .with_context(|| format!("cannot read the end offset of {topic}/{p}"))?;
            let committed = match committed.find_partition(topic, *p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => Some(o),
                _ => None,
            };
            Ok(GroupPartition {
                partition: *p,
                end,
                committed,
            })
        })
        .collect()
}

/// Why a commit from outside a consumer group failed.
#[derive(Debug, thiserror::Error)]
pub enum OutsideCommitError {
    /// The broker takes such commits only while the group has no members.
    #[error("the group has members, so the broker refused the commit ({0})")]
    GroupActive(RDKafkaErrorCode),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Commits offsets for `group` without joining it (no `group.instance.id`,
/// no subscription): how offsets of a stopped pipeline are moved by hand.
pub fn commit_outside_group(
    cfg: &KafkaConfig,
    group: &str,
    topic: &str,
    offsets: &std::collections::BTreeMap<i32, i64>,
) -> Result<(), OutsideCommitError> {
    let consumer = query_consumer(cfg, group)?;
    let mut tpl = TopicPartitionList::new();
    for (p, o) in offsets {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*o))
            .context("cannot build the commit list")?;
    }
    consumer
        .assign(&tpl)
        .context("cannot assign the partitions to commit")?;
    match consumer.commit(&tpl, rdkafka::consumer::CommitMode::Sync) {
        Ok(()) => Ok(()),
        Err(e) => match e.rdkafka_error_code() {
            Some(
                code @ (RDKafkaErrorCode::UnknownMemberId
                | RDKafkaErrorCode::IllegalGeneration
                | RDKafkaErrorCode::RebalanceInProgress
                | RDKafkaErrorCode::FencedInstanceId),
            ) => Err(OutsideCommitError::GroupActive(code)),
            _ => Err(anyhow::Error::new(e)
                .context(format!("cannot commit offsets of group {group:?} for topic {topic:?}"))
                .into()),
        },
    }
}
