//! Kafka, through rdkafka: client settings (TLS with client certificates, as
//! Aiven serves Kafka), the idempotent producer, the sink consumer whose
//! partition assignments start at offsets read from PostgreSQL, and the admin
//! calls the host needs.

use crate::config::{KafkaConfig, SecurityProtocol, TopicConfig};
use anyhow::{Context as _, bail};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

mod lease;
mod start;
pub mod stdin;
pub use lease::{LeaseGate, RunLease, claim_as as claim_counted_run_as, claim_counted_run};
pub use start::{offsets_for_time, resolve_starts};

/// How long metadata and watermark requests may take.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// A sink's consumer session: how long a stopped or hung process keeps its
/// partitions (a static member sends no LeaveGroup when it stops).
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(10);

/// Client settings shared by producers, consumers and admin clients.
pub fn client_config(cfg: &KafkaConfig) -> anyhow::Result<ClientConfig> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.bootstrap_servers);
    // rdkafka derives the level from the `log` crate, which nothing here sets
    // up: without this, librdkafka says nothing (not even a refused certificate).
    c.set_log_level(rdkafka::config::RDKafkaLogLevel::Warning);
    match cfg.security_protocol {
        SecurityProtocol::Plaintext => {
            c.set("security.protocol", "plaintext");
        }
        SecurityProtocol::Ssl => {
            c.set("security.protocol", "ssl");
            for (key, path, what) in [
                ("ssl.ca.location", &cfg.ca, "kafka.ca (the project CA, ca.pem)"),
                (
                    "ssl.certificate.location",
                    &cfg.cert,
                    "kafka.cert (the access certificate, service.cert)",
                ),
                ("ssl.key.location", &cfg.key, "kafka.key (the access key, service.key)"),
            ] {
                let path = path.as_ref().with_context(|| format!("{what} is not set"))?;
                if !path.is_file() {
                    bail!("{what} {}", crate::config::missing_file_hint(path));
                }
                c.set(key, path.to_string_lossy());
            }
            if let Some(password) = &cfg.key_password {
                // librdkafka marks it sensitive: never in its logs.
                c.set("ssl.key.password", password.expose());
            }
        }
    }
    Ok(c)
}

/// Counts deliveries of a producer; the first failure is kept for the report.
#[derive(Default)]
pub struct DeliveryCounter {
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    pub first_error: Mutex<Option<String>>,
}

impl ClientContext for DeliveryCounter {}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
                first.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

impl DeliveryCounter {
    /// The first delivery failure's text, empty when none was kept.
    pub fn first_error(&self) -> String {
        self.first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_default()
    }
}

/// librdkafka's `message.max.bytes` (its default, which the host keeps).
pub const MAX_MESSAGE_BYTES: usize = 1_000_000;
/// What librdkafka adds to a record's key and value when it checks that size
/// (`RD_KAFKAP_MESSAGE_V2_MAX_OVERHEAD`).
const RECORD_OVERHEAD_BYTES: usize = 36;

/// Whether librdkafka refuses a record of this key and payload as too large
/// (`MessageSizeTooLarge`), told before it is handed over.
pub fn too_large(key_bytes: usize, payload_bytes: usize) -> bool {
    key_bytes + payload_bytes + RECORD_OVERHEAD_BYTES > MAX_MESSAGE_BYTES
}

/// Queues a record, waiting while the producer's local queue is full (the
/// poll lets deliveries drain); any other refusal is returned.
pub fn send_waiting<K, P>(
    producer: &BaseProducer<DeliveryCounter>,
    mut record: BaseRecord<'_, K, P>,
) -> Result<(), rdkafka::error::KafkaError>
where
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((rdkafka::error::KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                producer.poll(Duration::from_millis(10));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// An idempotent producer (`enable.idempotence`, `acks=all`): retries never
/// duplicate or reorder a message.
pub fn producer(cfg: &KafkaConfig) -> anyhow::Result<BaseProducer<DeliveryCounter>> {
    client_config(cfg)?
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        // Messages waiting for the broker's acknowledgement (librdkafka's
        // default: 100,000); a full queue makes the generator wait.
        .set("queue.buffering.max.messages", "20000")
        .create_with_context(DeliveryCounter::default())
        .context("cannot create the Kafka producer")
}

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

/// What to check when Kafka and this client disagree on certificates.
const TLS_HINT: &str = "hint: check kafka.ca (the CA that signed the broker's certificate; Aiven's ca.pem), kafka.cert and kafka.key (the access certificate and key the broker trusts; Aiven's service.cert and service.key)";

/// Passes librdkafka's log to `tracing` (debug and trace: its errors repeat
/// during every outage) and keeps the first certificate refusal, so a caller
/// can end naming the setting instead of retrying a handshake that cannot work.
fn watch_log(refusal: &Mutex<Option<String>>, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
    use rdkafka::config::RDKafkaLogLevel as L;
    if message.contains("SSL")
        && ["certificate", "unknown ca", "alert"]
            .iter()
            .any(|w| message.contains(w))
    {
        let mut refusal = refusal.lock().unwrap_or_else(|p| p.into_inner());
        refusal.get_or_insert_with(|| message.to_string());
    }
    match level {
        L::Emerg | L::Alert | L::Critical | L::Error | L::Warning => {
            tracing::debug!(facility = fac, "librdkafka: {message}")
        }
        _ => tracing::trace!(facility = fac, "librdkafka: {message}"),
    }
}

/// A client context that only watches for certificate refusals (admin
/// clients, queries).
#[derive(Default)]
pub struct TlsWatch {
    refusal: Mutex<Option<String>>,
}

impl TlsWatch {
    /// An error naming the TLS settings, when a handshake failed over a certificate.
    pub fn refused(&self) -> Option<anyhow::Error> {
        let refusal = self.refusal.lock().unwrap_or_else(|p| p.into_inner()).clone()?;
        Some(anyhow::anyhow!(
            "the TLS handshake with Kafka failed: {refusal}\n  {TLS_HINT}"
        ))
    }
}

/// After a request to Kafka failed: whether the certificates are why.
/// Connects once more with a client that reads librdkafka's log (a few
/// seconds at most); `None` when the handshake is not the problem.
pub fn diagnose_tls(cfg: &KafkaConfig) -> Option<anyhow::Error> {
    if cfg.security_protocol != SecurityProtocol::Ssl {
        return None;
    }
    let consumer: BaseConsumer<TlsWatch> = client_config(cfg)
        .ok()?
        .set("group.id", "wasm-stream-tls-probe")
        .create_with_context(TlsWatch::default())
        .ok()?;
    let _ = consumer.fetch_metadata(None, Duration::from_secs(3));
    // The log arrives through the consumer's queue.
    for _ in 0..10 {
        let _ = consumer.poll(Duration::from_millis(20));
    }
    consumer.context().refused()
}

impl ConsumerContext for TlsWatch {}

impl ClientContext for TlsWatch {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        watch_log(&self.refusal, level, fac, message);
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

/// Whether a consumer error says a fetch offset was out of range: with
/// `auto.offset.reset = error`, librdkafka reports it instead of moving on.
pub fn is_offset_out_of_range(error: &rdkafka::error::KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange)
    )
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
