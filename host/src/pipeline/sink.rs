//! A sink: consumes one topic, maps each batch through its plugin and writes
//! rows, dead letters and offsets in one transaction (see the contract in
//! `pipeline/mod.rs`). The write of a batch runs in a task of its own while
//! the next batch is consumed and mapped; the next write starts only once the
//! previous one is committed, so offsets still move one transaction at a time.
//!
//! [`run`] is a loop of named steps, each a method of [`Sink`]: settle a
//! finished write, receive, follow a rebalance, take the message into the
//! batch, and at a batch boundary apply changes, map and launch the write;
//! then see whether the sink is done.

use super::Swap;
use super::batch::{self, Mapped};
use super::decode::{self, Decoder};
use super::lost_offsets::{self, Skipping};
use super::mapper::BatchMapper;
use super::retry::{self, Backoff, Verdict};
use crate::config::{Pipeline, PostgresConfig, SinkConfig};
use crate::kafka::{self, SinkContext, StoredOffsets};
use crate::plugins::MapperWorld;
use crate::plugins::mapper::Message;
use crate::postgres::{self, Batch, SinkStatements, SinkTable, TableBatch, Written};
use anyhow::Context as _;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::{Offset, Timestamp, TopicPartitionList};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

mod control;
mod fence;
mod pace;

/// How long the sink waits for a message before checking whether it is done.
const IDLE_POLL: Duration = Duration::from_millis(200);
/// How long the sink waits for a message while a write is in flight, so the
/// commit is noticed promptly.
const IN_FLIGHT_POLL: Duration = Duration::from_millis(2);
/// Longest wait for the revocation when leaving the group on a stop.
const LEAVE_WAIT: Duration = Duration::from_secs(2);

/// Where a sink's batches go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Destination {
    /// Rows, dead letters and next offsets in one PostgreSQL transaction: the
    /// delivery contract.
    #[default]
    Postgres,
    /// Nowhere: the batch counts as written, offsets are kept in memory only.
    /// Measures what the consumer alone can do (`scripts/bench`).
    Discard,
}

/// Progress of one sink.
#[derive(Default)]
pub struct SinkStats {
    messages: AtomicU64,
    rows: AtomicU64,
    dead_letters: AtomicU64,
    batches: AtomicU64,
}

impl SinkStats {
    /// Messages settled: mapped to rows or dead-lettered, and committed.
    pub fn messages(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }
    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }
    pub fn dead_letters(&self) -> u64 {
        self.dead_letters.load(Ordering::Relaxed)
    }
    /// Batches committed.
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }
}

pub struct SinkRun {
    pub pipeline: Pipeline,
    /// The sink's settings; a reload of the pipeline file sends new ones
    /// (batch size and flush interval apply from the next batch).
    pub config: watch::Receiver<SinkConfig>,
    /// A reloaded mapper, swapped in at the next batch boundary.
    pub swaps: mpsc::UnboundedReceiver<Swap<MapperWorld>>,
    pub stop: watch::Receiver<bool>,
    pub generators_done: watch::Receiver<bool>,
    pub once: bool,
    pub echo: bool,
    pub stats: Arc<SinkStats>,
    pub destination: Destination,
}

/// What the sink knows of each assigned partition. Belongs to one assignment
/// generation: see [`Sink`].
#[derive(Debug, Default)]
struct Positions {
    /// Next offset stored in PostgreSQL (`None`: nothing stored yet).
    stored: HashMap<i32, Option<i64>>,
    /// Next offset to accept from the stream.
    next: HashMap<i32, Option<i64>>,
}

impl Positions {
    /// Starts over from the offsets stored for a (new) assignment.
    fn reset(&mut self, assignment: StoredOffsets) {
        self.next = assignment.clone();
        self.stored = assignment;
    }

    /// Whether a message continues its partition (stale or revoked ones do not).
    fn accept(&mut self, partition: i32, offset: i64) -> bool {
        match self.next.get_mut(&partition) {
            None => false,
            Some(next) if next.is_some_and(|n| offset < n) => false,
            Some(next) => {
                *next = Some(offset + 1);
                true
            }
        }
    }

    /// For each partition of a batch's `(partition, offset)` positions: the
    /// stored next offset the write is conditional on, and the new one.
    fn batch_offsets(&self, positions: &[(i32, i64)]) -> HashMap<i32, (Option<i64>, i64)> {
        let mut offsets: HashMap<i32, (Option<i64>, i64)> = HashMap::new();
        for (partition, offset) in positions {
            let old = self.stored.get(partition).copied().flatten();
            offsets
                .entry(*partition)
                .and_modify(|e| e.1 = e.1.max(offset + 1))
                .or_insert((old, offset + 1));
        }
        offsets
    }

    /// A batch's next offsets are committed.
    fn committed(&mut self, next: &HashMap<i32, i64>) {
        for (p, o) in next {
            self.stored.insert(*p, Some(*o));
        }
    }

    /// The stored next offset of each partition that has one.
    fn stored_next(&self) -> HashMap<i32, i64> {
        self.stored.iter().filter_map(|(p, o)| o.map(|o| (*p, o))).collect()
    }

    /// Whether every partition is done with its log (`marks`: partition ->
    /// (start, end)): empty, stored up to its end, or read up to it (`read`:
    /// the consumer's position, past transaction markers, which are never
    /// delivered). Called only with nothing left to write.
    fn reached(&self, marks: &HashMap<i32, (i64, i64)>, read: &HashMap<i32, i64>) -> bool {
        marks.iter().all(|(p, (start, end))| {
            start >= end || self.stored.get(p).copied().flatten() >= Some(*end) || read.get(p).is_some_and(|r| r >= end)
        })
    }
}

/// The sink's PostgreSQL connection and its prepared statements. It moves
/// into the task that writes a batch and comes back with the result.
struct Writer {
    client: tokio_postgres::Client,
    statements: SinkStatements,
}

/// A batch being written by a task of its own while the sink consumes and
/// maps the next one. Its effects on the sink's state wait for the commit.
struct InFlight {
    task: JoinHandle<(Writer, anyhow::Result<Written>)>,
    /// The assignment generation the batch was consumed in.
    generation: u64,
    /// Next offset of each partition once committed.
    next: HashMap<i32, i64>,
    messages: u64,
    rows: u64,
    dead_letters: u64,
    echo: Vec<Vec<u8>>,
    started: Instant,
}

/// A swap waiting for the database. Its retries back off: each attempt at
/// `ALTER TABLE` queues every other session's access to the table behind it
/// for up to the lock timeout.
struct PendingSwap {
    swap: Swap<MapperWorld>,
    retry_at: Instant,
    backoff: Backoff,
}

/// The first and the longest pause before a pending swap is tried again.
const SWAP_RETRY_FIRST: Duration = Duration::from_secs(1);
const SWAP_RETRY_MAX: Duration = Duration::from_secs(60);
/// How long a batch with a new schema id waits for its columns to be resolved.
const NEW_SCHEMA_WAIT: Duration = Duration::from_secs(10);

/// What one receive step got from the consumer.
enum Received {
    Message(Message),
    /// A message of another topic.
    Foreign,
    Error(rdkafka::error::KafkaError),
    /// Nothing before the wait ended (a timeout, a stop, a flush due).
    Nothing,
}

/// Everything a running sink holds.
///
/// # The generation invariant
///
/// `generation` is the consumer's assignment generation (`SinkContext` bumps
/// it on every rebalance, inside `recv()`) as the sink last saw it. The
/// batch being collected and `positions` always belong to that generation:
/// when the consumer's generation moves on, [`Sink::follow_rebalance`] drops
/// the batch (its messages will be delivered again) and resets `positions`
/// from the offsets the loader read from PostgreSQL for the new assignment.
/// A write carries the generation its batch was consumed in
/// ([`InFlight::generation`]); [`Sink::settle`] lets its commit advance
/// `positions` only while that is still the current generation. Otherwise
/// the new assignment's start offsets may have been read before the commit
/// landed, so the sink rewinds to what PostgreSQL now holds. [`Sink::flush`]
/// launches a mapped batch only if no rebalance came between consuming and
/// launching it. A rewind keeps the generation but starts over the same way:
/// positions reset from PostgreSQL, whatever is not written dropped.
struct Sink {
    pipeline: Pipeline,
    config: SinkConfig,
    /// New settings from a reload of the pipeline file.
    live: watch::Receiver<SinkConfig>,
    /// Reloaded mappers, swapped in at the next batch boundary.
    swaps: mpsc::UnboundedReceiver<Swap<MapperWorld>>,
    /// A swap the database could not take yet (a lock held past the lock
    /// timeout, a lost connection): tried again at a later batch boundary.
    pending: Option<PendingSwap>,
    /// `None` only while a batch is being mapped.
    mapper: Option<Box<dyn BatchMapper>>,
    /// The tables the mapper writes, resolved against the sink's settings.
    tables: Arc<[SinkTable]>,
    /// The control row as the poller last read it, and as the sink last obeyed it.
    control: watch::Receiver<postgres::lineage::Control>,
    seen: postgres::lineage::Control,
    _poller: control::Poller,
    /// Paused with `host sink pause`: nothing is written.
    paused: bool,
    consumer: StreamConsumer<SinkContext>,
    positions: Positions,
    generation: u64,
    /// Messages consumed and not yet mapped, and when the first arrived.
    batch: Vec<Message>,
    batch_started: Instant,
    /// `None` while a write is in flight.
    writer: Option<Writer>,
    in_flight: Option<InFlight>,
    /// The start and end of each partition, read once when a `once` sink
    /// may be done.
    end_offsets: Option<HashMap<i32, (i64, i64)>>,
    /// What `on_lost_offsets = "skip"` went past (see `lost_offsets`).
    skipping: Skipping,
    stop: watch::Receiver<bool>,
    generators_done: watch::Receiver<bool>,
    once: bool,
    echo: bool,
    stats: Arc<SinkStats>,
    destination: Destination,
    /// The fences Kafka put this sink through (see `fence`).
    fences: fence::Fences,
    /// The writes that failed since the last commit.
    failing: super::stuck::Failing,
    /// Registry formats: decodes each batch before the mapper.
    decoder: Option<Arc<Decoder>>,
    _registered: crate::ops::state::Registered,
}

/// Runs a sink until it is stopped or, with `once`, until it has caught up
/// with the end of its topic; each step is a method of [`Sink`].
pub async fn run(run: SinkRun, mapper: Box<dyn BatchMapper>) -> anyhow::Result<()> {
    let mut sink = Sink::start(run, mapper).await?;
    loop {
        // A write that has finished is settled at once (stats, offsets).
        if sink.write_finished() && sink.settle().await? {
            sink.batch.clear();
        }
        let stopping = *sink.stop.borrow();
        let (received, arrival) = sink.receive(stopping).await;
        sink.follow_rebalance().await?;
        if sink.obey().await? {
            continue;
        }
        sink.take(received).await?;
        if sink.batch_due(arrival, stopping) && sink.flush().await? {
            // Rewound: the batch will be consumed again.
            continue;
        }
        if stopping && sink.batch.is_empty() {
            return sink.finish().await;
        }
        if sink.idle_and_generators_done() && sink.caught_up().await? {
            return sink.finish().await;
        }
    }
}

impl Sink {
    /// Connects to PostgreSQL (the tables ready), subscribes to the topic.
    async fn start(run: SinkRun, mapper: Box<dyn BatchMapper>) -> anyhow::Result<Self> {
        let SinkRun {
            pipeline,
            config: mut live,
            swaps,
            mut stop,
            generators_done,
            once,
            echo,
            stats,
            destination,
        } = run;
        let config = live.borrow_and_update().clone();
        let mut tables = super::tables::resolve(&config, mapper.tables()).map_err(anyhow::Error::msg)?;
        let registry = match &pipeline.schema_registry {
            Some(r) if config.registry.format.is_registry() || config.registry.key_format.is_registry() => {
                Some(crate::registry::client::Registry::shared(r)?)
            }
            _ => None,
        };
        let decoder = Decoder::new(registry, &config.registry, &config.topic).map(Arc::new);
        let registered = crate::ops::state::sink_started(&config.name, &config.topic, &config.table);

        let client = connect_with_retry(&pipeline.postgres, &config.instance_id, &mut stop).await?;
        postgres::ensure_host_tables(&client).await?;
        postgres::ensure_sink_tables(&client, &mut tables).await?;
        let tables: Arc<[SinkTable]> = tables.into();
        let statements = SinkStatements::prepare(&client, &tables).await?;
        let first = postgres::lineage::read_control(&client, &config.table, &config.topic).await?;
        let (poller, control) = control::poll(
            pipeline.postgres.clone(),
            config.instance_id.clone(),
            config.table.to_string(),
            config.topic.to_string(),
            first,
        );
        postgres::asynchronous_commits(&client).await?;
        crate::ops::state::sink_connected(&config.name, true);

        let loader = offset_loader(&pipeline, &config);
        let consumer = kafka::sink_consumer(
            &pipeline.kafka,
            &config.group,
            &config.instance_id,
            SinkContext::new(&config.topic, &config.instance_id, loader).starting(config.start),
        )?;
        consumer
            .subscribe(&[&config.topic])
            .with_context(|| format!("cannot subscribe to topic {:?}", config.topic))?;
        tracing::info!(
            sink = config.name,
            topic = %config.topic,
            table = %config.table,
            group = config.group,
            member = config.instance_id,
            pid = std::process::id(),
            "sink started"
        );
        if first.paused {
            tracing::info!(
                sink = config.name,
                "the sink is paused (host sink pause); it writes nothing until resumed"
            );
            crate::ops::state::sink_paused(&config.name, true);
        }
        crate::ops::metrics::paused(&config.name, first.paused);
        Ok(Sink {
            fences: fence::Fences::new(&config.instance_id),
            pipeline,
            batch: Vec::with_capacity(config.batch_size),
            config,
            live,
            swaps,
            pending: None,
            mapper: Some(mapper),
            tables,
            control,
            seen: first,
            _poller: poller,
            paused: first.paused,
            consumer,
            positions: Positions::default(),
            generation: 0,
            batch_started: Instant::now(),
            writer: Some(Writer { client, statements }),
            in_flight: None,
            end_offsets: None,
            skipping: Skipping::default(),
            stop,
            generators_done,
            once,
            echo,
            stats,
            destination,
            failing: super::stuck::Failing::default(),
            decoder,
            _registered: registered,
        })
    }

    fn write_finished(&self) -> bool {
        self.in_flight.as_ref().is_some_and(|f| f.task.is_finished())
    }

    /// Receives the next message. One already fetched needs no timer, no
    /// select and no clock; with none buffered and no write in flight, the
    /// batch goes at once (`pace`); otherwise it waits until the flush is
    /// due, a stop, or a poll interval (short while a write is in flight, so
    /// its commit is noticed promptly).
    async fn receive(&mut self, stopping: bool) -> (Received, pace::Arrival) {
        if stopping {
            return (Received::Nothing, pace::Arrival::Waited);
        }
        if let Some(ready) = futures_util::FutureExt::now_or_never(self.consumer.recv()) {
            return (self.own(ready), pace::Arrival::Buffered);
        }
        let writing = self.in_flight.is_some();
        if pace::write_now(self.batch.len(), writing) {
            return (Received::Nothing, pace::Arrival::Drained);
        }
        let wait = pace::wait(
            &self.pace(),
            self.batch_started.elapsed(),
            IDLE_POLL,
            writing,
            IN_FLIGHT_POLL,
        );
        if wait.is_zero() {
            return (Received::Nothing, pace::Arrival::Waited);
        }
        let received = tokio::select! {
            r = tokio::time::timeout(wait, self.consumer.recv()) => r.ok(),
            _ = self.stop.changed() => None,
        };
        (
            received.map_or(Received::Nothing, |r| self.own(r)),
            pace::Arrival::Waited,
        )
    }

    /// A message of the sink's topic, copied out of the consumer's buffer.
    fn own(&self, received: rdkafka::error::KafkaResult<rdkafka::message::BorrowedMessage<'_>>) -> Received {
        match received {
            Err(e) => Received::Error(e),
            Ok(m) if m.topic() != self.config.topic => Received::Foreign,
            Ok(m) => Received::Message(Message {
                topic: self.config.topic.to_string(),
                partition: m.partition(),
                offset: m.offset(),
                timestamp: match m.timestamp() {
                    Timestamp::NotAvailable => None,
                    Timestamp::CreateTime(t) | Timestamp::LogAppendTime(t) => Some(t),
                },
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().map(<[u8]>::to_vec),
                // Set by the decoder when the sink has a registry format.
                schema: None,
            }),
        }
    }

    /// A rebalance runs inside `recv()`: the batch may now hold messages that
    /// will be delivered again, so it is dropped and the positions start over
    /// from the new assignment (the generation invariant, see [`Sink`]).
    async fn follow_rebalance(&mut self) -> anyhow::Result<()> {
        let current = self.consumer.context().generation();
        if current == self.generation {
            return Ok(());
        }
        self.generation = current;
        if let Some(assignment) = self.consumer.context().take_assignment() {
            let starts = self.check_offsets(&assignment).await?;
            if !starts.is_empty() {
                self.assign(&assignment, &starts)?;
            }
            // Tell Kafka where the database stands, so a committed offset
            // that drifted (a crash between the two commits, `host
            // simulate`) heals even before the next batch.
            let stored: HashMap<i32, i64> = assignment.iter().filter_map(|(p, o)| o.map(|o| (*p, o))).collect();
            kafka::commit_advisory(&self.consumer, &self.config.topic, &stored);
            self.positions.reset(assignment);
            crate::ops::state::sink_assigned(&self.config.name, self.positions.next.keys());
            self.pause_assigned();
        }
        self.batch.clear();
        Ok(())
    }

    /// Where partitions start instead of their stored offset because Kafka
    /// no longer holds it (past the end of a topic created again, before the
    /// start after retention); stops the sink there unless its
    /// `on_lost_offsets` is "skip" (see `lost_offsets`).
    async fn check_offsets(&mut self, stored: &StoredOffsets) -> anyhow::Result<HashMap<i32, Offset>> {
        if stored.values().all(Option::is_none) {
            return Ok(HashMap::new());
        }
        // None: stopped while Kafka did not answer; nothing is read then.
        let Some(marks) = self.read_watermarks().await? else {
            return Ok(HashMap::new());
        };
        let lost = lost_offsets::find(stored, &marks);
        self.skipping.take_on(&self.config, &lost)
    }

    /// Assigns the partitions at their stored offsets, or at `starts`.
    /// A partition with nothing stored starts at the log's start: a sink
    /// whose `start` is "latest" or a time stored its start offsets when the
    /// partitions were first assigned (see `kafka::resolve_starts`).
    fn assign(&self, stored: &StoredOffsets, starts: &HashMap<i32, Offset>) -> anyhow::Result<()> {
        let mut tpl = TopicPartitionList::new();
        for (p, offset) in stored {
            let start = match (starts.get(p), offset) {
                (Some(start), _) => *start,
                (None, Some(o)) => Offset::Offset(*o),
                (None, None) => Offset::Beginning,
            };
            tpl.add_partition_offset(&self.config.topic, *p, start)?;
        }
        self.consumer
            .assign(&tpl)
            .context("cannot assign the partitions at their start offsets")?;
        self.pause_assigned();
        Ok(())
    }

    /// librdkafka found a fetch offset out of range (`auto.offset.reset =
    /// error`): the write in flight is settled, and the sink starts over from
    /// the stored offsets, which are checked against the log.
    async fn offset_out_of_range(&mut self, error: &rdkafka::error::KafkaError) -> anyhow::Result<()> {
        tracing::warn!(
            sink = self.config.name,
            error = %error,
            "a fetch offset is out of range; checking the stored offsets against the topic"
        );
        if !self.settle().await? {
            self.rewind().await?;
        }
        self.batch.clear();
        Ok(())
    }

    /// Adds a message that continues its partition to the batch; stops the
    /// sink on a consumer error that retrying cannot cure.
    async fn take(&mut self, received: Received) -> anyhow::Result<()> {
        match received {
            // Paused: dropped, and consumed again from the stored offsets on resume.
            Received::Message(_) if self.paused => {}
            Received::Message(m) if self.positions.accept(m.partition, m.offset) => {
                if self.batch.is_empty() {
                    self.batch_started = Instant::now();
                }
                self.batch.push(m);
            }
            // Stale (already stored, or skipped), from a partition no longer
            // assigned, or not of the sink's topic.
            Received::Message(m) => self.skipping.stale(&self.config.name, m.partition, m.offset),
            Received::Foreign => {}
            Received::Error(e) if kafka::is_offset_out_of_range(&e) => self.offset_out_of_range(&e).await?,
            Received::Error(e) => {
                // Fenced, or refused by TLS: retrying would only hide it.
                if let Some(reason) = self.permanent_kafka_error(Some(&e)) {
                    return self.fail_or_rejoin(reason, Some(&e)).await;
                }
                tracing::warn!(sink = self.config.name, error = %e, "Kafka consumer error; retrying");
                tokio::time::sleep(IDLE_POLL).await;
            }
            Received::Nothing => {
                if let Some(reason) = self.permanent_kafka_error(None) {
                    return self.fail_or_rejoin(reason, None).await;
                }
            }
        }
        Ok(())
    }

    /// Whether the batch is to be written now (see `pace`), or the sink is
    /// stopping.
    fn batch_due(&self, arrival: pace::Arrival, stopping: bool) -> bool {
        (stopping && !self.batch.is_empty()) || self.pace().due(arrival, || self.batch_started.elapsed())
    }

    fn pace(&self) -> pace::Batch {
        pace::Batch {
            len: self.batch.len(),
            batch_size: self.config.batch_size,
            flush_interval: self.config.flush_interval,
        }
    }

    /// At a batch boundary: applies new settings and mappers, maps the batch
    /// and launches its write. True when the sink rewound instead: the batch
    /// will be consumed again.
    async fn flush(&mut self) -> anyhow::Result<bool> {
        if self.apply_changes().await? {
            self.batch.clear();
            return Ok(true);
        }
        let taken = std::mem::replace(&mut self.batch, Vec::with_capacity(self.config.batch_size));
        let generation = self.generation;
        let Some(decoded) =
            decode::decode_waiting(self.decoder.as_ref(), taken, &self.config.name, &mut self.stop).await?
        else {
            // Stopped while the registry was down: nothing of it is written.
            return Ok(true);
        };
        // A new schema version may bring columns (`from_registry`): the
        // run loop resolves them, and the new mapper comes before this batch.
        if decoded.new_ids && self.config.registry.columns_from.is_some() {
            super::registry_columns::ask_and_wait(NEW_SCHEMA_WAIT).await;
            if self.apply_changes().await? {
                return Ok(true);
            }
        }
        let mut mapped = self.map(decoded.messages).await?;
        decode::add_dead_letters(&mut mapped, decoded.dead_letters);
        // The previous write finished meanwhile, most of the time.
        if self.in_flight.is_some() && self.settle().await? {
            return Ok(true);
        }
        // The generation invariant (see [`Sink`]).
        if generation == self.generation {
            self.launch(mapped)?;
        }
        Ok(false)
    }

    /// Settings and plugin changes apply from a batch boundary, once the
    /// write in flight is settled (they may need the table). True when
    /// settling made the sink rewind.
    async fn apply_changes(&mut self) -> anyhow::Result<bool> {
        let changed = self.live.has_changed().unwrap_or(false);
        let due = |p: &PendingSwap| Instant::now() >= p.retry_at;
        let swapping = self.pending.as_ref().is_some_and(due) || !self.swaps.is_empty();
        if (changed || swapping) && self.in_flight.is_some() && self.settle().await? {
            return Ok(true);
        }
        if changed {
            self.config = self.live.borrow_and_update().clone();
        }
        // A swap sent after the look above finds the write still in flight
        // (`swap` would fail the sink): it waits for the next boundary.
        while self.in_flight.is_none() {
            // A newer mapper replaces one still waiting.
            let (swap, backoff) = match self.swaps.try_recv() {
                Ok(newer) => {
                    self.pending = None;
                    (newer, None)
                }
                Err(_) => match self.pending.take_if(|p| due(p)) {
                    Some(waiting) => (waiting.swap, Some(waiting.backoff)),
                    None => break,
                },
            };
            self.swap(swap, backoff).await?;
            if self.pending.is_some() {
                break;
            }
        }
        Ok(false)
    }

    /// Maps and encodes a batch on a blocking thread; the mapper comes back.
    /// Fails only when the mapper cannot even be restarted.
    async fn map(&mut self, messages: Vec<Message>) -> anyhow::Result<Mapped> {
        let mapper = self
            .mapper
            .take()
            .context("the mapper is away while a batch is mapped")?;
        let (mapper, mapped) = batch::map(mapper, self.tables.clone(), messages, self.echo).await?;
        self.mapper = Some(mapper);
        mapped
    }

    /// A `once` sink with nothing left to write, whose generators are done.
    fn idle_and_generators_done(&mut self) -> bool {
        self.once && self.batch.is_empty() && self.in_flight.is_none() && *self.generators_done.borrow_and_update()
    }

    /// Whether the stored offsets reached the end of the topic (read once),
    /// with the commits on disk; also true when a stop came while reading it;
    /// never while paused.
    async fn caught_up(&mut self) -> anyhow::Result<bool> {
        // A paused sink has written nothing past its offsets: `--once` waits
        // for a resume (or a stop) rather than report it caught up.
        if self.paused {
            return Ok(false);
        }
        let marks = match &self.end_offsets {
            Some(marks) => marks,
            None => match self.read_watermarks().await? {
                Some(marks) => self.end_offsets.insert(marks),
                None => return Ok(true),
            },
        };
        if !self
            .positions
            .reached(marks, &read_positions(&self.consumer, &self.config.topic))
        {
            return Ok(false);
        }
        // Caught up only once the commits are on disk: a database that
        // crashed meanwhile may have lost the last ones.
        if !self.make_durable().await? {
            self.batch.clear();
            return Ok(false);
        }
        tracing::info!(
            sink = self.config.name,
            rows = self.stats.rows(),
            "caught up with the end of the topic"
        );
        Ok(true)
    }

    /// The start and end offset of each partition of the topic; `None` when
    /// the sink was stopped while a broker outage was waited out (never taken
    /// for the end).
    async fn read_watermarks(&mut self) -> anyhow::Result<Option<HashMap<i32, (i64, i64)>>> {
        // A client of its own: on the consumer's connection these requests
        // would queue behind its long-polling fetches.
        let (kafka_cfg, group) = (self.pipeline.kafka.clone(), self.config.group.clone());
        let query = tokio::task::spawn_blocking(move || kafka::query_consumer(&kafka_cfg, &group)).await??;
        let query = Arc::new(query);
        let (topic, name) = (&self.config.topic, &self.config.name);
        let ends = retry::with_backoff(
            Backoff::default(),
            Some(&mut self.stop),
            || {
                let (q, t) = (query.clone(), topic.clone());
                async move {
                    tokio::task::spawn_blocking(move || kafka::watermarks(q.as_ref(), &t))
                        .await
                        .map_err(anyhow::Error::from)
                        .and_then(|ends| ends)
                }
            },
            |e: &anyhow::Error, _| {
                if e.is::<tokio::task::JoinError>() {
                    return Verdict::GiveUp;
                }
                tracing::warn!(sink = name, error = %format!("{e:#}"), "cannot read the end of the topic; retrying");
                Verdict::Retry
            },
        )
        .await;
        match ends {
            Ok(ends) => Ok(Some(ends)),
            Err(_) if *self.stop.borrow() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A consumer error that retrying cannot cure, explained.
    fn permanent_kafka_error(&self, error: Option<&rdkafka::error::KafkaError>) -> Option<String> {
        kafka::permanent_consumer_error(&self.consumer, error, &self.config.group, &self.config.instance_id)
    }

    /// Settles the write in flight and makes the commits durable.
    async fn finish(mut self) -> anyhow::Result<()> {
        self.settle().await?;
        if let (Some(writer), Destination::Postgres) = (self.writer.as_mut(), self.destination)
            && let Err(e) = postgres::flush_commits(&mut writer.client, &self.config.table, &self.config.topic).await
        {
            // Nothing is lost: the next run resumes from what the database kept.
            tracing::warn!(sink = self.config.name, error = %format!("{e:#}"), "cannot make the last commits durable; the next run resumes from the stored offsets");
        }
        self.leave_group().await;
        Ok(())
    }
    /// Hands the partitions over at once. A static member sends no
    /// LeaveGroup when it closes (KIP-345), so its partitions would wait out
    /// the session timeout; librdkafka does send one on unsubscribe, once the
    /// revocation has been served, which takes polling.
    async fn leave_group(&mut self) {
        let before = self.consumer.context().generation();
        self.consumer.unsubscribe();
        let deadline = Instant::now() + LEAVE_WAIT;
        while Instant::now() < deadline && self.consumer.context().generation() == before {
            let _ = tokio::time::timeout(IDLE_POLL, self.consumer.recv()).await;
        }
        // The LeaveGroup request goes out after the revocation.
        let _ = tokio::time::timeout(IDLE_POLL, self.consumer.recv()).await;
        tracing::info!(
            sink = self.config.name,
            member = self.config.instance_id,
            "left the consumer group; its partitions go to the other members"
        );
    }

    /// Makes the commits so far durable. False when that failed (a database
    /// that crashed may have lost them): the sink has rewound to the offsets
    /// the database kept and must consume from there again.
    async fn make_durable(&mut self) -> anyhow::Result<bool> {
        let Some(writer) = self.writer.as_mut() else {
            return Ok(true);
        };
        if self.destination != Destination::Postgres {
            return Ok(true);
        }
        match postgres::flush_commits(&mut writer.client, &self.config.table, &self.config.topic).await {
            Ok(()) => Ok(true),
            Err(e) => {
                tracing::warn!(sink = self.config.name, error = %format!("{e:#}"), "cannot make the last commits durable; resuming from the stored offsets");
                self.rewind().await?;
                Ok(false)
            }
        }
    }

    /// Starts writing a mapped batch in a task of its own: rows, dead letters
    /// and the next offsets, in one transaction.
    fn launch(&mut self, mapped: Mapped) -> anyhow::Result<()> {
        let mut writer = self
            .writer
            .take()
            .context("a batch is written while another is in flight")?;
        let offsets = self.positions.batch_offsets(&mapped.positions);
        let next = offsets.iter().map(|(p, (_, new))| (*p, *new)).collect();
        let (messages, rows, dead_letters) = (
            mapped.positions.len() as u64,
            mapped.rows() as u64,
            mapped.dead_letters.len() as u64,
        );
        let batch = Batch {
            sink: self.config.name.clone(),
            table: self.config.table.to_string(),
            topic: self.config.topic.to_string(),
            group: self.config.group.clone(),
            plugin: mapped.plugin,
            tables: mapped
                .tables
                .into_iter()
                .map(|t| TableBatch {
                    deletes: t.deletes.len(),
                    rows: t.rows.freeze(),
                    parts: t.parts,
                })
                .collect(),
            positions: mapped.positions,
            sources: mapped.sources,
            dead_letters: mapped.dead_letters,
            offsets,
        };
        let destination = self.destination;
        let task = tokio::spawn(async move {
            let result = match destination {
                Destination::Postgres => postgres::write_batch(&mut writer.client, &writer.statements, batch).await,
                Destination::Discard => Ok(Written::Committed(postgres::RowsRefused::default())),
            };
            (writer, result)
        });
        self.in_flight = Some(InFlight {
            task,
            generation: self.generation,
            next,
            messages,
            rows,
            dead_letters,
            echo: mapped.echo,
            started: Instant::now(),
        });
        Ok(())
    }

    /// Waits for the write in flight and applies its outcome. Returns true
    /// when the sink had to rewind to the stored offsets: whatever it holds
    /// that is not written must be dropped, and will be consumed again.
    async fn settle(&mut self) -> anyhow::Result<bool> {
        let Some(mut f) = self.in_flight.take() else {
            return Ok(false);
        };
        let (writer, result) = (&mut f.task).await.context("the batch writer panicked")?;
        self.writer = Some(writer);
        let why = match result {
            Ok(Written::Committed(refused)) => {
                // Messages whose rows PostgreSQL refused are dead letters now.
                f.rows = f.rows.saturating_sub(refused.rows);
                f.dead_letters += refused.letters;
                self.committed_again();
                tracing::debug!(
                    sink = self.config.name,
                    messages = f.messages,
                    rows = f.rows,
                    dead_letters = f.dead_letters,
                    ms = f.started.elapsed().as_millis(),
                    "batch committed"
                );
                self.stats.messages.fetch_add(f.messages, Ordering::Relaxed);
                self.stats.rows.fetch_add(f.rows, Ordering::Relaxed);
                self.stats.dead_letters.fetch_add(f.dead_letters, Ordering::Relaxed);
                self.stats.batches.fetch_add(1, Ordering::Relaxed);
                if self.echo {
                    for payload in &f.echo {
                        println!("Received: {}", String::from_utf8_lossy(payload));
                    }
                }
                // The generation invariant (see [`Sink`]).
                if f.generation == self.generation {
                    self.positions.committed(&f.next);
                    crate::ops::metrics::batch_committed(
                        &self.config.name,
                        (f.messages, f.rows, f.dead_letters),
                        f.started.elapsed(),
                        &self.positions.stored,
                    );
                    kafka::commit_advisory(&self.consumer, &self.config.topic, &self.positions.stored_next());
                    return Ok(false);
                }
                // The partitions were reassigned while the batch was written:
                // the start offsets read then may predate this commit.
                "the assignment changed while the batch was written".to_string()
            }
            Ok(Written::Fenced { partition }) => {
                crate::ops::metrics::fenced(&self.config.name);
                format!(
                    "partition {partition}'s stored offset was moved by another consumer or a rewind (host sink rewind)"
                )
            }
            Err(e) => format!("{e:#}"),
        };
        // The database is the truth: start again from what it holds, after
        // a pause that grows while the writes keep failing.
        let pause = self.failing.failed(&self.config.name, &why);
        tracing::warn!(
            sink = self.config.name,
            reason = why,
            retry_in_ms = pause.as_millis(),
            "batch not written; resuming from the stored offsets"
        );
        let mut stop = self.stop.clone();
        if !*stop.borrow() {
            let sleep = tokio::time::sleep(pause);
            tokio::pin!(sleep);
            tokio::select! {
                _ = &mut sleep => {}
                // A dropped sender never sends a stop: sleep the pause out.
                changed = stop.changed() => if changed.is_err() { sleep.await },
            }
        }
        self.rewind().await?;
        Ok(true)
    }

    /// A batch committed: the sink is no longer stuck, if it was.
    fn committed_again(&mut self) {
        self.failing.committed(&self.config.name);
    }

    /// Swaps in a reloaded mapper when the table fits its columns, or keeps
    /// the old one when it does not. Runs between batches, with no write in
    /// flight.
    /// `backoff`: the retry pauses of a swap that was pending.
    async fn swap(&mut self, swap: Swap<MapperWorld>, backoff: Option<Backoff>) -> anyhow::Result<()> {
        let old_hash = self
            .mapper
            .as_deref()
            .context("the mapper is away while a mapper is swapped")?
            .hash()
            .to_string();
        let writer = self
            .writer
            .as_mut()
            .context("a mapper is swapped while a batch is written")?;
        // The key must survive the swap; new tables are created and new
        // nullable columns added here, between batches; any other change is
        // refused (see `ensure_sink_table`).
        // Resolved here: the plugin (not `Sync`) must not be held across an await.
        let resolved = super::tables::resolve(&self.config, swap.plugin.configured());
        let fits = async {
            let mut tables = resolved.map_err(anyhow::Error::msg)?;
            postgres::ensure_sink_tables(&writer.client, &mut tables).await?;
            let tables: Arc<[SinkTable]> = tables.into();
            let statements = SinkStatements::prepare(&writer.client, &tables).await?;
            anyhow::Ok((tables, statements))
        };
        match fits.await {
            Ok((new_tables, statements)) => {
                tracing::info!(
                    sink = self.config.name,
                    path = %swap.plugin.path().display(),
                    old_hash,
                    new_hash = swap.plugin.hash(),
                    swap_ms = swap.detected.elapsed().as_millis(),
                    "mapper swapped"
                );
                writer.statements = statements;
                self.tables = new_tables;
                crate::ops::plugin_live::loaded(&swap.plugin);
                self.mapper = Some(Box::new(swap.plugin));
            }
            // The database did not answer (a lock held past the lock
            // timeout, a lost connection): no verdict on the mapper.
            Err(e) if e.chain().any(|c| c.is::<tokio_postgres::Error>()) => {
                let mut backoff = backoff.unwrap_or_else(|| Backoff::new(SWAP_RETRY_FIRST, SWAP_RETRY_MAX));
                let pause = backoff.next_pause();
                tracing::warn!(
                    sink = self.config.name,
                    path = %swap.plugin.path().display(),
                    error = %format!("{e:#}"),
                    retry_in_ms = pause.as_millis(),
                    "cannot apply the new mapper's table changes yet; the old mapper keeps writing, the swap is tried again at a batch boundary after the pause"
                );
                self.pending = Some(PendingSwap {
                    swap,
                    retry_at: Instant::now() + pause,
                    backoff,
                });
            }
            Err(e) => {
                tracing::error!(
                    sink = self.config.name,
                    path = %swap.plugin.path().display(),
                    error = %format!("{e:#}"),
                    "the new mapper does not fit the table; keeping the old one"
                );
                crate::ops::plugin_live::refused_unit(swap.plugin.name(), swap.plugin.path(), &format!("{e:#}"));
            }
        }
        Ok(())
    }

    /// After a failed or fenced write: reconnect, reread the stored offsets and
    /// start every assigned partition again from them.
    async fn rewind(&mut self) -> anyhow::Result<()> {
        crate::ops::metrics::rewind(&self.config.name);
        let (pg, config, tables) = (&self.pipeline.postgres, &self.config, &self.tables);
        let failing = &mut self.failing;
        let mut stop = self.stop.clone();
        let (client, stored, statements) = retry::with_backoff(
            Backoff::default(),
            Some(&mut stop),
            || {
                let mut stop = self.stop.clone();
                async move {
                    let client = connect_with_retry(pg, &config.instance_id, &mut stop).await?;
                    let stored = postgres::stored_offsets(&client, &config.table, &config.topic).await?;
                    let statements = SinkStatements::prepare(&client, tables).await?;
                    postgres::asynchronous_commits(&client).await?;
                    anyhow::Ok((client, stored, statements))
                }
            },
            |e, _| {
                // A refused password or certificate does not heal by waiting.
                if postgres::is_permanent(e) {
                    return Verdict::GiveUp;
                }
                tracing::warn!(sink = config.name, error = %format!("{e:#}"), "cannot read stored offsets; retrying");
                failing.note(&config.name, &format!("{e:#}"));
                Verdict::Retry
            },
        )
        .await?;
        let assignment: StoredOffsets = self
            .positions
            .next
            .keys()
            .map(|p| (*p, stored.get(p).copied()))
            .collect();
        // Offsets Kafka no longer holds stop the sink here too.
        let starts = self.check_offsets(&assignment).await?;
        // Re-assign rather than seek: a seek fails on a partition that is not
        // fetching yet, and the stream would then go on from wherever it was.
        self.assign(&assignment, &starts)
            .context("cannot rewind the consumer to the stored offsets")?;
        self.positions.reset(assignment);
        self.writer = Some(Writer { client, statements });
        Ok(())
    }
}

/// The consumer's position in each partition of `topic` it has read from:
/// one past the last message delivered or transaction marker passed.
fn read_positions(consumer: &StreamConsumer<kafka::SinkContext>, topic: &str) -> HashMap<i32, i64> {
    let Ok(tpl) = consumer.position() else {
        return HashMap::new();
    };
    tpl.elements_for_topic(topic)
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

/// Connects to PostgreSQL, retrying with capped backoff until it works, the
/// refusal is for good, or the host is asked to stop.
async fn connect_with_retry(
    pg: &PostgresConfig,
    member: &str,
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<tokio_postgres::Client> {
    retry::with_backoff(
        Backoff::default(),
        Some(stop),
        // Named after the member, so an operator (or a test) can tell the
        // sessions of each process apart in pg_stat_activity.
        || postgres::connect_as(pg, Some(member)),
        |e, attempt| {
            // A refused password or certificate does not heal by waiting.
            if postgres::is_permanent(e) {
                return Verdict::GiveUp;
            }
            tracing::warn!(attempt, error = %format!("{e:#}"), "PostgreSQL unreachable; retrying");
            Verdict::Retry
        },
    )
    .await
}

/// The loader the consumer calls on each assignment: it blocks the consumer
/// until the start offsets it is given are stored and the stored offsets
/// read, retrying, since a partition must never start anywhere else.
fn offset_loader(pipeline: &Pipeline, config: &SinkConfig) -> kafka::OffsetLoader {
    let pg = pipeline.postgres.clone();
    let (table, group) = (config.table.clone(), config.group.clone());
    let handle = tokio::runtime::Handle::current();
    Box::new(move |topic: &str, partitions: &[i32], starts: &HashMap<i32, i64>| {
        tokio::task::block_in_place(|| {
            handle.block_on(async {
                let stored = retry::with_backoff(
                    Backoff::default(),
                    None,
                    || async {
                        let client = postgres::connect(&pg).await?;
                        if !starts.is_empty() {
                            postgres::store_start_offsets(&client, &table, topic, &group, starts).await?;
                        }
                        postgres::stored_offsets(&client, &table, topic).await
                    },
                    |e: &anyhow::Error, _| {
                        tracing::warn!(error = %format!("{e:#}"), "cannot read stored offsets for the assignment; retrying");
                        Verdict::Retry
                    },
                )
                .await;
                // Never given up, with no stop to end it: only success ends the loop.
                let Ok(stored) = stored else {
                    unreachable!("stored offsets are retried until they are read")
                };
                tracing::debug!(%table, topic, ?stored, "stored offsets for the assignment");
                partitions.iter().map(|p| (*p, stored.get(p).copied())).collect()
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn positions(assignment: &[(i32, Option<i64>)]) -> Positions {
        let mut p = Positions::default();
        p.reset(assignment.iter().copied().collect());
        p
    }

    #[test]
    fn a_partition_with_nothing_stored_accepts_from_any_offset_then_only_forward() {
        let mut p = positions(&[(0, None)]);
        assert!(p.accept(0, 7));
        assert!(p.accept(0, 8));
        // Delivered again after a seek: stale.
        assert!(!p.accept(0, 7));
        // A gap (compaction, aborted transactions) is fine.
        assert!(p.accept(0, 20));
        assert_eq!(p.next[&0], Some(21));
    }

    #[test]
    fn messages_before_the_stored_offset_are_stale() {
        let mut p = positions(&[(0, Some(10))]);
        assert!(!p.accept(0, 9));
        assert!(p.accept(0, 10));
        assert!(!p.accept(0, 10));
    }

    #[test]
    fn a_partition_not_assigned_accepts_nothing() {
        let mut p = positions(&[(0, None)]);
        assert!(!p.accept(1, 0));
        assert!(!p.next.contains_key(&1));
    }

    #[test]
    fn a_reset_forgets_what_was_accepted() {
        let mut p = positions(&[(0, Some(5))]);
        assert!(p.accept(0, 5));
        assert!(p.accept(0, 6));
        p.reset([(0, Some(5)), (1, None)].into_iter().collect());
        assert!(p.accept(0, 5));
        assert!(p.accept(1, 0));
        assert_eq!(p.stored[&0], Some(5));
    }

    #[test]
    fn batch_offsets_start_from_the_stored_ones_and_end_past_the_highest() {
        let p = positions(&[(0, Some(10)), (1, None), (2, Some(3))]);
        let offsets = p.batch_offsets(&[(0, 10), (1, 0), (0, 12), (1, 4), (0, 11)]);
        assert_eq!(offsets.len(), 2);
        assert_eq!(offsets[&0], (Some(10), 13));
        assert_eq!(offsets[&1], (None, 5));
        assert!(p.batch_offsets(&[]).is_empty());
    }

    #[test]
    fn a_commit_moves_the_stored_offsets() {
        let mut p = positions(&[(0, Some(10)), (1, None), (2, None)]);
        p.committed(&[(0, 13), (1, 5)].into_iter().collect());
        assert_eq!(p.stored[&0], Some(13));
        assert_eq!(p.stored[&1], Some(5));
        assert_eq!(p.stored_next(), [(0, 13), (1, 5)].into_iter().collect());
        // The next batch is conditional on the committed offsets.
        assert_eq!(p.batch_offsets(&[(0, 13)])[&0], (Some(13), 14));
    }

    #[test]
    fn the_end_is_reached_when_every_partition_with_messages_is_stored_up_to_it() {
        let mut p = positions(&[(0, Some(10)), (1, None), (2, None)]);
        let marks: HashMap<i32, (i64, i64)> = [(0, (0, 10)), (1, (0, 4)), (2, (0, 0))].into_iter().collect();
        let none = HashMap::new();
        assert!(!p.reached(&marks, &none), "partition 1 has nothing stored");
        p.committed(&[(1, 3)].into_iter().collect());
        assert!(!p.reached(&marks, &none));
        p.committed(&[(1, 4)].into_iter().collect());
        assert!(
            p.reached(&marks, &none),
            "an empty partition (end 0) needs nothing stored"
        );
    }

    #[test]
    fn the_end_is_reached_past_a_transaction_marker_or_in_an_emptied_partition() {
        let p = positions(&[(0, Some(9)), (1, None)]);
        // Partition 0 ends with a marker at 9; retention emptied partition 1.
        let marks: HashMap<i32, (i64, i64)> = [(0, (0, 10)), (1, (6, 6))].into_iter().collect();
        assert!(!p.reached(&marks, &HashMap::new()), "the marker is not passed yet");
        assert!(!p.reached(&marks, &[(0, 9)].into_iter().collect()));
        assert!(p.reached(&marks, &[(0, 10)].into_iter().collect()));
    }
}
