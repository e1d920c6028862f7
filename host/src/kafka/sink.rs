//! The sink consumer: its context starts every assigned partition at the
//! offset stored in PostgreSQL, and the errors after which it must stop.

use super::tls_watch::{TLS_HINT, watch_log};
use super::{SESSION_TIMEOUT, client_config, resolve_starts};
use crate::config::KafkaConfig;
use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Where each partition of a new assignment starts: the next offset stored in
/// PostgreSQL, or `None` when the database has nothing for it yet.
pub type StoredOffsets = HashMap<i32, Option<i64>>;

/// Reads stored offsets for the given partitions of a topic, after storing
/// the given start offsets for those of them with nothing stored yet (an
/// offset already there wins). It blocks, and retries until it succeeds: a
/// partition must never start anywhere else.
pub type OffsetLoader = Box<dyn Fn(&str, &[i32], &HashMap<i32, i64>) -> StoredOffsets + Send + Sync>;

/// Consumer context of a sink: on every assignment, the partitions start at the
/// offsets stored in PostgreSQL (Kafka's committed offsets are only advisory),
/// and the sink loop learns the new assignment.
pub struct SinkContext {
    topic: String,
    /// This process's `group.instance.id`, for the assignment logs.
    member: String,
    load_offsets: OffsetLoader,
    /// Where partitions with nothing stored start.
    start: crate::config::StartAt,
    assignment: Mutex<Option<StoredOffsets>>,
    generation: AtomicU64,
    /// librdkafka's words when a TLS handshake failed over a certificate.
    tls_refusal: Mutex<Option<String>>,
}

impl SinkContext {
    pub fn new(topic: &str, member: &str, load_offsets: OffsetLoader) -> Self {
        Self {
            topic: topic.to_string(),
            member: member.to_string(),
            load_offsets,
            start: crate::config::StartAt::Earliest,
            assignment: Mutex::new(None),
            generation: AtomicU64::new(0),
            tls_refusal: Mutex::new(None),
        }
    }

    /// Partitions with nothing stored start at `start` (default: earliest).
    pub fn starting(mut self, start: crate::config::StartAt) -> Self {
        self.start = start;
        self
    }

    /// Increases with every assignment change.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The latest assignment, once: partition -> stored next offset.
    pub fn take_assignment(&self) -> Option<StoredOffsets> {
        self.assignment.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    fn publish(&self, assignment: StoredOffsets) {
        *self.assignment.lock().unwrap_or_else(|p| p.into_inner()) = Some(assignment);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

impl ClientContext for SinkContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        watch_log(&self.tls_refusal, level, fac, message);
    }
}

impl SinkContext {
    /// Why the broker and this client could not agree on certificates, if so.
    pub fn tls_refusal(&self) -> Option<String> {
        self.tls_refusal.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl ConsumerContext for SinkContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                // Only the sink's topic: a group reused for another topic (or
                // a static member's stale assignment) must not leak into it.
                let partitions: Vec<i32> = tpl
                    .elements()
                    .iter()
                    .filter(|e| e.topic() == self.topic)
                    .map(|e| e.partition())
                    .collect();
                let foreign = tpl.count() - partitions.len();
                if foreign > 0 {
                    tracing::warn!(
                        topic = self.topic,
                        foreign,
                        "ignoring partitions of other topics in the assignment"
                    );
                }
                let mut stored = (self.load_offsets)(&self.topic, &partitions, &HashMap::new());
                let fresh: Vec<i32> = partitions
                    .iter()
                    .copied()
                    .filter(|p| stored.get(p).copied().flatten().is_none())
                    .collect();
                // "latest" or a time: resolved once, and stored before any
                // message is read, so every later assignment resumes there.
                if let Some(starts) = resolve_starts(consumer, &self.topic, &fresh, self.start) {
                    tracing::info!(
                        topic = self.topic,
                        ?starts,
                        "storing where partitions with nothing stored start (the sink's start setting)"
                    );
                    stored.extend((self.load_offsets)(&self.topic, &fresh, &starts));
                }
                let mut own = TopicPartitionList::new();
                let mut assignment = StoredOffsets::new();
                for p in partitions {
                    let start = stored.get(&p).copied().flatten();
                    let offset = start.map_or(Offset::Beginning, Offset::Offset);
                    if let Err(e) = own.add_partition_offset(&self.topic, p, offset) {
                        tracing::error!(topic = self.topic, partition = p, error = %e, "cannot set the start offset");
                    }
                    assignment.insert(p, start);
                }
                let mut held: Vec<i32> = assignment.keys().copied().collect();
                held.sort_unstable();
                tracing::info!(
                    topic = self.topic,
                    member = self.member,
                    pid = std::process::id(),
                    partitions = ?held,
                    start = ?assignment,
                    "assigned partitions (start offsets from PostgreSQL)"
                );
                if let Err(e) = consumer.assign(&own) {
                    tracing::error!(error = %e, "cannot assign partitions");
                }
                self.publish(assignment);
            }
            other => {
                if other == RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS {
                    let revoked: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                    tracing::info!(topic = self.topic, member = self.member, pid = std::process::id(), partitions = ?revoked, "partitions revoked");
                } else {
                    tracing::error!(error = ?other, "rebalance error; dropping the assignment");
                }
                if let Err(e) = consumer.unassign() {
                    tracing::error!(error = %e, "cannot unassign partitions");
                }
                self.publish(StoredOffsets::new());
            }
        }
    }
}

/// A consumer for one sink: no auto commit (PostgreSQL holds the offsets), no
/// automatic offset reset.
pub fn sink_consumer(
    cfg: &KafkaConfig,
    group: &str,
    instance_id: &str,
    context: SinkContext,
) -> anyhow::Result<StreamConsumer<SinkContext>> {
    client_config(cfg)?
        .set("group.id", group)
        .set("group.instance.id", instance_id)
        // A static member does not leave the group when it stops; a short
        // session frees its partitions (and the group, for `host simulate`) sooner.
        .set("session.timeout.ms", SESSION_TIMEOUT.as_millis().to_string())
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // An offset out of range (a topic created again, retention past the
        // stored offset) is an error event, not a silent jump: the sink
        // decides (see `pipeline::lost_offsets`). A partition with nothing
        // stored is assigned at the beginning explicitly.
        .set("auto.offset.reset", "error")
        .set("enable.partition.eof", "false")
        // librdkafka pauses fetching for this long once its local queue is
        // over `queued.min.messages`; its default (1000 ms) stalls a sink that
        // drains the queue in a fraction of that (scripts/bench: 0.2 M → 1 M
        // messages/s through the consumer).
        .set("fetch.queue.backoff.ms", "10")
        // Prefetched messages kept in memory. Each also costs librdkafka a
        // few hundred bytes beside its payload, and one fetch response can
        // land on a queue just under the limit, so both are bounded: at most
        // about 6 MiB of payload, 60,000 messages of 100 bytes (defaults:
        // 64 MiB, 100,000 messages, fetches up to the queue's size).
        .set("queued.max.messages.kbytes", "4096")
        .set("queued.min.messages", "20000")
        .set("fetch.max.bytes", "2097152")
        .create_with_context(context)
        .context("cannot create the Kafka consumer")
}

/// Whether a consumer error says a fetch offset was out of range: with
/// `auto.offset.reset = error`, librdkafka reports it instead of moving on.
pub fn is_offset_out_of_range(error: &rdkafka::error::KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange)
    )
}

/// Advisory commit of the sink's progress to Kafka, after the database commit.
/// It only feeds lag figures, so a failure is logged, not fatal.
pub fn commit_advisory<C: ConsumerContext>(consumer: &StreamConsumer<C>, topic: &str, next: &HashMap<i32, i64>) {
    let mut tpl = TopicPartitionList::new();
    for (p, o) in next {
        if let Err(e) = tpl.add_partition_offset(topic, *p, Offset::Offset(*o)) {
            tracing::debug!(error = %e, "cannot build the commit list");
            return;
        }
    }
    let result: KafkaResult<()> = consumer.commit(&tpl, rdkafka::consumer::CommitMode::Async);
    if let Err(e) = result {
        tracing::debug!(error = %e, "advisory Kafka commit failed");
    }
}

/// How long a seek may take to be taken up by librdkafka's fetcher before
/// the partitions are re-assigned instead (normally a millisecond).
const SEEK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Moves the consumer to `starts` (the partitions it should hold, each at the
/// offset to read next). When it already holds exactly these partitions and
/// each is fetching, a seek does it; otherwise, or when any seek fails, they
/// are assigned anew. Prefetched messages of before are dropped either way.
///
/// Why seek first: a re-assignment stops each partition's fetcher, and
/// librdkafka 2.12.1 aborts the process (`rd_kafka_assignment_partition_stopped:
/// Assertion rktp->rktp_started`, confluentinc/librdkafka#5573) when a revoke
/// removes the partition again before that stop came back. A sink whose
/// write failed re-assigns, and a revoke often follows (its PostgreSQL
/// session and its group session expire together after a pause); a seek
/// leaves the assignment alone, so the revoke is the one removal.
pub fn reposition<C: ConsumerContext>(consumer: &StreamConsumer<C>, starts: &TopicPartitionList) -> KafkaResult<()> {
    if holds_exactly(consumer, starts) {
        match consumer.seek_partitions(starts.clone(), SEEK_TIMEOUT) {
            Ok(sought) if sought.elements().iter().all(|e| e.error().is_ok()) => {
                tracing::debug!(partitions = sought.count(), "partitions sought to their start offsets");
                return Ok(());
            }
            Ok(sought) => {
                let refused: Vec<String> = sought
                    .elements()
                    .iter()
                    .filter_map(|e| {
                        e.error()
                            .err()
                            .map(|err| format!("{} [{}]: {err}", e.topic(), e.partition()))
                    })
                    .collect();
                tracing::debug!(?refused, "cannot seek every partition; assigning them anew");
            }
            Err(e) => tracing::debug!(error = %e, "cannot seek the partitions; assigning them anew"),
        }
    }
    consumer.assign(starts)
}

/// Whether the consumer's assignment is exactly the partitions of `tpl`.
fn holds_exactly<C: ConsumerContext>(consumer: &StreamConsumer<C>, tpl: &TopicPartitionList) -> bool {
    let Ok(held) = consumer.assignment() else {
        return false;
    };
    tpl.count() > 0
        && held.count() == tpl.count()
        && tpl
            .elements()
            .iter()
            .all(|e| held.find_partition(e.topic(), e.partition()).is_some())
}

/// Whether the broker fenced this consumer out of its group
/// (`FencedInstanceId`): the consumer is dead, a new one may join again.
pub fn fenced<C: ConsumerContext>(consumer: &StreamConsumer<C>, error: Option<&rdkafka::error::KafkaError>) -> bool {
    let code = |c: Option<RDKafkaErrorCode>| c == Some(RDKafkaErrorCode::FencedInstanceId);
    code(consumer.client().fatal_error().map(|(c, _)| c)) || code(error.and_then(|e| e.rdkafka_error_code()))
}

/// A consumer error the sink must not retry: the process was fenced out of
/// its group, or the broker refused its certificates. `None` for the errors
/// that pass (a broker down or restarting). The text names the setting to fix.
pub fn permanent_consumer_error(
    consumer: &StreamConsumer<SinkContext>,
    error: Option<&rdkafka::error::KafkaError>,
    group: &str,
    instance_id: &str,
) -> Option<String> {
    let fatal = consumer.client().fatal_error();
    let is_fatal = fatal.is_some();
    let code = fatal
        .as_ref()
        .map(|(code, _)| *code)
        .or_else(|| error.and_then(|e| e.rdkafka_error_code()))?;
    let detail = fatal.map(|(_, reason)| reason).unwrap_or_else(|| code.to_string());
    match code {
        RDKafkaErrorCode::FencedInstanceId => Some(format!(
            "Kafka fenced this process out of consumer group {group:?}: another process joined it with the same instance id {instance_id:?} ({detail})\n  hint: give every process of a sink its own id: `host consume --instance-id <name>` or {env}=<name> (processes on one machine get distinct ids by default; a pipeline file's sinks.instance_id is for one process only)",
            env = crate::member::ENV
        )),
        // Only a refused certificate: a handshake cut by a restarting broker passes.
        RDKafkaErrorCode::SSL | RDKafkaErrorCode::BrokerTransportFailure
            if consumer.context().tls_refusal().is_some() =>
        {
            Some(format!(
                "the TLS handshake with Kafka failed: {}\n  {TLS_HINT}",
                consumer.context().tls_refusal().unwrap_or(detail)
            ))
        }
        RDKafkaErrorCode::Authentication => Some(format!(
            "Kafka refused this client's credentials ({detail})\n  hint: check kafka.cert and kafka.key (the access certificate and key of the service)"
        )),
        _ if is_fatal => Some(format!(
            "the Kafka consumer of group {group:?} hit a fatal error: {detail}"
        )),
        _ => None,
    }
}
