//! A sink: consumes one topic, maps each batch through its plugin and writes
//! rows, dead letters and offsets in one transaction (see the contract in
//! `pipeline/mod.rs`). The write of a batch runs in a task of its own while
//! the next batch is consumed and mapped; the next write starts only once the
//! previous one is committed, so offsets still move one transaction at a time.

use super::batch::{self, Mapped};
use super::{Swap, next_backoff, upsert};
use crate::config::{Pipeline, SinkConfig};
use crate::kafka::{self, SinkContext, StoredOffsets};
use crate::plugins::mapper::{Column, Message, Outcome};
use crate::plugins::{MapperWorld, Plugin, PluginError};
use crate::postgres::{self, Batch, SinkStatements, Written};
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

/// How long the sink waits for a message before checking whether it is done.
const IDLE_POLL: Duration = Duration::from_millis(200);
/// How long the sink waits for a message while a write is in flight, so the
/// commit is noticed promptly.
const IN_FLIGHT_POLL: Duration = Duration::from_millis(2);
/// While messages arrive back to back, how many between two looks at the
/// clock for the flush interval.
const CLOCK_EVERY: usize = 64;
/// Longest wait for the revocation when leaving the group on a stop.
const LEAVE_WAIT: Duration = Duration::from_secs(2);

/// Turns a batch of consumed messages into one outcome per message: the WASM
/// mapper plugin, or a native mapper (the benchmark compares the two).
pub trait BatchMapper: Send + 'static {
    /// The name logs use.
    fn name(&self) -> &str;
    /// Tells versions apart in logs.
    fn hash(&self) -> &str;
    /// What the dead-letter table records as the plugin.
    fn describe(&self) -> String;
    /// The columns of the rows it makes, in order.
    fn columns(&self) -> &[Column];
    /// One outcome per message, in order. An error concerns the whole call:
    /// the sink then maps the messages one by one to find the culprits.
    fn map_batch(&mut self, messages: &[Message]) -> Result<Vec<Outcome>, PluginError>;
}

impl BatchMapper for Plugin<MapperWorld> {
    fn name(&self) -> &str {
        Plugin::name(self)
    }
    fn hash(&self) -> &str {
        Plugin::hash(self)
    }
    fn describe(&self) -> String {
        format!("{} ({})", self.path().display(), Plugin::hash(self))
    }
    fn columns(&self) -> &[Column] {
        self.configured()
    }
    fn map_batch(&mut self, messages: &[Message]) -> Result<Vec<Outcome>, PluginError> {
        Plugin::map_batch(self, messages)
    }
}

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

/// What the sink knows of each assigned partition.
#[derive(Default)]
struct Positions {
    /// Next offset stored in PostgreSQL (`None`: nothing stored yet).
    stored: HashMap<i32, Option<i64>>,
    /// Next offset to accept from the stream.
    next: HashMap<i32, Option<i64>>,
}

impl Positions {
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

/// Everything a running sink holds.
struct Sink {
    pipeline: Pipeline,
    config: SinkConfig,
    columns: Vec<Column>,
    consumer: StreamConsumer<SinkContext>,
    positions: Positions,
    generation: u64,
    /// `None` while a write is in flight.
    writer: Option<Writer>,
    in_flight: Option<InFlight>,
    stop: watch::Receiver<bool>,
    stats: Arc<SinkStats>,
    destination: Destination,
}

pub async fn run(run: SinkRun, mapper: Box<dyn BatchMapper>) -> anyhow::Result<()> {
    let SinkRun {
        pipeline,
        config: mut live,
        mut swaps,
        mut stop,
        mut generators_done,
        once,
        echo,
        stats,
        destination,
    } = run;
    let config = live.borrow_and_update().clone();
    let columns: Vec<Column> = mapper.columns().to_vec();
    let _live = crate::ops::state::sink_started(&config.name, &config.topic, &config.table);

    let client = connect_with_retry(&pipeline, &config.instance_id, &mut stop).await?;
    postgres::ensure_host_tables(&client).await?;
    config
        .mode
        .check_columns(&config.name, &columns)
        .map_err(anyhow::Error::msg)?;
    postgres::ensure_sink_table(&client, &config.table, &columns, config.mode.key()).await?;
    let statements = SinkStatements::prepare(&client, &config.table, &columns, config.mode.key()).await?;
    postgres::asynchronous_commits(&client).await?;
    crate::ops::state::sink_connected(&config.name, true);

    let loader = offset_loader(&pipeline, &config);
    let consumer = kafka::sink_consumer(
        &pipeline.kafka,
        &config.group,
        &config.instance_id,
        SinkContext::new(&config.topic, &config.instance_id, loader),
    )?;
    consumer
        .subscribe(&[&config.topic])
        .with_context(|| format!("cannot subscribe to topic {:?}", config.topic))?;
    tracing::info!(
        sink = config.name,
        topic = config.topic,
        table = config.table,
        group = config.group,
        member = config.instance_id,
        pid = std::process::id(),
        "sink started"
    );

    let mut sink = Sink {
        pipeline,
        config,
        columns,
        consumer,
        positions: Positions::default(),
        generation: 0,
        writer: Some(Writer { client, statements }),
        in_flight: None,
        stop,
        stats,
        destination,
    };
    let mut mapper = Some(mapper);
    let mut batch: Vec<Message> = Vec::with_capacity(sink.config.batch_size);
    let mut batch_started = Instant::now();
    let mut end_offsets: Option<HashMap<i32, i64>> = None;

    loop {
        // A write that has finished is settled at once (stats, offsets).
        if sink.in_flight.as_ref().is_some_and(|f| f.task.is_finished()) && sink.settle(echo).await? {
            batch.clear();
        }
        let stopping = *sink.stop.borrow();
        // A message already fetched needs no timer, no select and no clock.
        let ready = if stopping {
            None
        } else {
            futures_util::FutureExt::now_or_never(sink.consumer.recv())
        };
        let fast = ready.is_some();
        let received = match ready {
            Some(r) => Some(r),
            None if stopping => None,
            None => {
                let mut wait = if batch.is_empty() {
                    IDLE_POLL
                } else {
                    sink.config.flush_interval.saturating_sub(batch_started.elapsed())
                };
                if sink.in_flight.is_some() {
                    wait = wait.min(IN_FLIGHT_POLL);
                }
                if wait.is_zero() {
                    None
                } else {
                    tokio::select! {
                        r = tokio::time::timeout(wait, sink.consumer.recv()) => r.ok(),
                        _ = sink.stop.changed() => None,
                    }
                }
            }
        };

        // A rebalance runs inside recv(): the in-memory batch may now hold
        // messages that will be delivered again, so drop it and start over.
        let current = sink.consumer.context().generation();
        if current != sink.generation {
            sink.generation = current;
            if let Some(assignment) = sink.consumer.context().take_assignment() {
                // Tell Kafka where the database stands, so a committed offset
                // that drifted (a crash between the two commits, `host
                // simulate`) heals even before the next batch.
                let stored: HashMap<i32, i64> = assignment.iter().filter_map(|(p, o)| o.map(|o| (*p, o))).collect();
                kafka::commit_advisory(&sink.consumer, &sink.config.topic, &stored);
                sink.positions.reset(assignment);
                crate::ops::state::sink_assigned(&sink.config.name, sink.positions.next.keys());
            }
            batch.clear();
        }

        match received {
            Some(Ok(m)) if m.topic() == sink.config.topic && sink.positions.accept(m.partition(), m.offset()) => {
                if batch.is_empty() {
                    batch_started = Instant::now();
                }
                batch.push(Message {
                    topic: sink.config.topic.clone(),
                    partition: m.partition(),
                    offset: m.offset(),
                    timestamp: match m.timestamp() {
                        Timestamp::NotAvailable => None,
                        Timestamp::CreateTime(t) | Timestamp::LogAppendTime(t) => Some(t),
                    },
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().map(<[u8]>::to_vec),
                });
            }
            // Stale (already stored) or from a partition no longer assigned.
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                // Fenced, or refused by TLS: retrying would only hide it.
                if let Some(reason) = sink.permanent_kafka_error(Some(&e)) {
                    anyhow::bail!("{reason}");
                }
                tracing::warn!(sink = sink.config.name, error = %e, "Kafka consumer error; retrying");
                tokio::time::sleep(IDLE_POLL).await;
            }
            None => {
                if let Some(reason) = sink.permanent_kafka_error(None) {
                    anyhow::bail!("{reason}");
                }
            }
        }

        let full = batch.len() >= sink.config.batch_size;
        // While messages stream in, the clock is read every few of them.
        let due = !batch.is_empty()
            && (!fast || batch.len().is_multiple_of(CLOCK_EVERY))
            && batch_started.elapsed() >= sink.config.flush_interval;
        if full || due || (stopping && !batch.is_empty()) {
            // Batch boundary: settings and plugin changes apply from here,
            // once the write in flight is settled (they may need the table).
            let changed = live.has_changed().unwrap_or(false);
            if (changed || !swaps.is_empty()) && sink.in_flight.is_some() && sink.settle(echo).await? {
                batch.clear();
                continue;
            }
            if changed {
                sink.config = live.borrow_and_update().clone();
            }
            while let Ok(swap) = swaps.try_recv() {
                let current = mapper.as_deref().expect("the mapper is back between batches");
                if let Some(new) = sink.swap(current.hash().to_string(), swap).await? {
                    mapper = Some(new);
                }
            }

            let taken = std::mem::replace(&mut batch, Vec::with_capacity(sink.config.batch_size));
            let generation = sink.generation;
            let (m, mapped) = batch::map_keyed(
                mapper.take().expect("the mapper is back between batches"),
                sink.columns.clone(),
                upsert::key_columns(&sink.config.mode, &sink.columns),
                taken,
                echo,
            )
            .await?;
            mapper = Some(m);
            let mapped = mapped?;
            // The previous write finished meanwhile, most of the time.
            if sink.in_flight.is_some() && sink.settle(echo).await? {
                // Rewound: this batch will be consumed again.
                continue;
            }
            if generation == sink.generation {
                sink.launch(mapped)?;
            }
        }

        if stopping && batch.is_empty() {
            return sink.finish(echo).await;
        }
        if once && batch.is_empty() && sink.in_flight.is_none() && *generators_done.borrow_and_update() {
            if end_offsets.is_none() {
                // A client of its own: on the consumer's connection these
                // requests would queue behind its long-polling fetches.
                let (kafka_cfg, topic, group) = (
                    sink.pipeline.kafka.clone(),
                    sink.config.topic.clone(),
                    sink.config.group.clone(),
                );
                let query = tokio::task::spawn_blocking(move || kafka::query_consumer(&kafka_cfg, &group)).await??;
                let query = Arc::new(query);
                // A broker outage is waited out, never taken for the end.
                let mut backoff = Duration::from_millis(100);
                loop {
                    let (q, t) = (query.clone(), topic.clone());
                    match tokio::task::spawn_blocking(move || kafka::end_offsets(q.as_ref(), &t)).await? {
                        Ok(ends) => {
                            end_offsets = Some(ends);
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(
                                sink = sink.config.name,
                                error = %format!("{e:#}"),
                                "cannot read the end of the topic; retrying"
                            );
                            tokio::select! {
                                _ = tokio::time::sleep(backoff) => {}
                                _ = sink.stop.changed() => {}
                            }
                            backoff = next_backoff(backoff);
                            if *sink.stop.borrow() {
                                return sink.finish(echo).await;
                            }
                        }
                    }
                }
            }
            if let Some(ends) = &end_offsets
                && ends
                    .iter()
                    .all(|(p, end)| *end == 0 || sink.positions.stored.get(p).copied().flatten() >= Some(*end))
            {
                // Caught up only once the commits are on disk: a database that
                // crashed meanwhile may have lost the last ones.
                if !sink.make_durable().await? {
                    batch.clear();
                    continue;
                }
                tracing::info!(
                    sink = sink.config.name,
                    rows = sink.stats.rows(),
                    "caught up with the end of the topic"
                );
                return sink.finish(echo).await;
            }
        }
    }
}

impl Sink {
    /// A consumer error that retrying cannot cure, explained.
    fn permanent_kafka_error(&self, error: Option<&rdkafka::error::KafkaError>) -> Option<String> {
        kafka::permanent_consumer_error(&self.consumer, error, &self.config.group, &self.config.instance_id)
    }

    /// Settles the write in flight and makes the commits durable.
    async fn finish(mut self, echo: bool) -> anyhow::Result<()> {
        self.settle(echo).await?;
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
        let mut offsets: HashMap<i32, (Option<i64>, i64)> = HashMap::new();
        for (partition, offset) in &mapped.positions {
            let old = self.positions.stored.get(partition).copied().flatten();
            offsets
                .entry(*partition)
                .and_modify(|e| e.1 = e.1.max(offset + 1))
                .or_insert((old, offset + 1));
        }
        let next = offsets.iter().map(|(p, (_, new))| (*p, *new)).collect();
        let (messages, rows, dead_letters) = (
            mapped.positions.len() as u64,
            mapped.rows.len() as u64,
            mapped.dead_letters.len() as u64,
        );
        let batch = Batch {
            sink: self.config.name.clone(),
            table: self.config.table.clone(),
            topic: self.config.topic.clone(),
            group: self.config.group.clone(),
            plugin: mapped.plugin,
            rows: mapped.rows,
            deletes: mapped.deletes.len(),
            dead_letters: mapped.dead_letters,
            offsets,
        };
        let destination = self.destination;
        let task = tokio::spawn(async move {
            let result = match destination {
                Destination::Postgres => postgres::write_batch(&mut writer.client, &writer.statements, batch).await,
                Destination::Discard => Ok(Written::Committed),
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
    async fn settle(&mut self, echo: bool) -> anyhow::Result<bool> {
        let Some(f) = self.in_flight.take() else {
            return Ok(false);
        };
        let (writer, result) = f.task.await.context("the batch writer panicked")?;
        self.writer = Some(writer);
        let why = match result {
            Ok(Written::Committed) => {
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
                if echo {
                    for payload in &f.echo {
                        println!("Received: {}", String::from_utf8_lossy(payload));
                    }
                }
                if f.generation == self.generation {
                    for (p, o) in &f.next {
                        self.positions.stored.insert(*p, Some(*o));
                    }
                    crate::ops::metrics::batch_committed(
                        &self.config.name,
                        (f.messages, f.rows, f.dead_letters),
                        f.started.elapsed(),
                        &self.positions.stored,
                    );
                    let next: HashMap<i32, i64> = self
                        .positions
                        .stored
                        .iter()
                        .filter_map(|(p, o)| o.map(|o| (*p, o)))
                        .collect();
                    kafka::commit_advisory(&self.consumer, &self.config.topic, &next);
                    return Ok(false);
                }
                // The partitions were reassigned while the batch was written:
                // the start offsets read then may predate this commit.
                "the assignment changed while the batch was written".to_string()
            }
            Ok(Written::Fenced { partition }) => {
                crate::ops::metrics::fenced(&self.config.name);
                format!("partition {partition}'s stored offset was moved by another consumer")
            }
            Err(e) => format!("{e:#}"),
        };
        // The database is the truth: start again from what it holds.
        tracing::warn!(
            sink = self.config.name,
            reason = why,
            "batch not written; resuming from the stored offsets"
        );
        self.rewind().await?;
        Ok(true)
    }

    /// Swaps in a reloaded mapper when the table fits its columns; returns it,
    /// or `None` (keeping the old one) when it does not. Runs between batches,
    /// with no write in flight.
    async fn swap(
        &mut self,
        old_hash: String,
        swap: Swap<MapperWorld>,
    ) -> anyhow::Result<Option<Box<dyn BatchMapper>>> {
        let writer = self
            .writer
            .as_mut()
            .context("a mapper is swapped while a batch is written")?;
        let new_columns = swap.plugin.configured().clone();
        let (table, key) = (&self.config.table, self.config.mode.key());
        // The key must survive the swap; new nullable columns are added here,
        // between batches; any other change is refused (see `ensure_sink_table`).
        let fits = async {
            self.config
                .mode
                .check_columns(&self.config.name, &new_columns)
                .map_err(anyhow::Error::msg)?;
            postgres::ensure_sink_table(&writer.client, table, &new_columns, key).await?;
            SinkStatements::prepare(&writer.client, table, &new_columns, key).await
        };
        match fits.await {
            Ok(statements) => {
                tracing::info!(
                    sink = self.config.name,
                    path = %swap.plugin.path().display(),
                    old_hash,
                    new_hash = swap.plugin.hash(),
                    swap_ms = swap.detected.elapsed().as_millis(),
                    "mapper swapped"
                );
                writer.statements = statements;
                self.columns = new_columns;
                Ok(Some(Box::new(swap.plugin)))
            }
            Err(e) => {
                tracing::error!(
                    sink = self.config.name,
                    path = %swap.plugin.path().display(),
                    error = %format!("{e:#}"),
                    "the new mapper does not fit the table; keeping the old one"
                );
                Ok(None)
            }
        }
    }

    /// After a failed or fenced write: reconnect, reread the stored offsets and
    /// start every assigned partition again from them.
    async fn rewind(&mut self) -> anyhow::Result<()> {
        crate::ops::metrics::rewind(&self.config.name);
        let mut backoff = Duration::from_millis(100);
        loop {
            let client = connect_with_retry(&self.pipeline, &self.config.instance_id, &mut self.stop).await?;
            let ready = async {
                let stored = postgres::stored_offsets(&client, &self.config.table, &self.config.topic).await?;
                let statements =
                    SinkStatements::prepare(&client, &self.config.table, &self.columns, self.config.mode.key()).await?;
                postgres::asynchronous_commits(&client).await?;
                anyhow::Ok((stored, statements))
            };
            match ready.await {
                Ok((stored, statements)) => {
                    let assigned: Vec<i32> = self.positions.next.keys().copied().collect();
                    let assignment: StoredOffsets = assigned.iter().map(|p| (*p, stored.get(p).copied())).collect();
                    // Re-assign rather than seek: a seek fails on a partition that is
                    // not fetching yet, and the stream would then go on from wherever
                    // it was.
                    let mut tpl = TopicPartitionList::new();
                    for (p, start) in &assignment {
                        tpl.add_partition_offset(
                            &self.config.topic,
                            *p,
                            start.map_or(Offset::Beginning, Offset::Offset),
                        )?;
                    }
                    self.consumer
                        .assign(&tpl)
                        .context("cannot rewind the consumer to the stored offsets")?;
                    self.positions.reset(assignment);
                    self.writer = Some(Writer { client, statements });
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!(sink = self.config.name, error = %format!("{e:#}"), "cannot read stored offsets; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = next_backoff(backoff);
                }
            }
        }
    }
}

/// Connects to PostgreSQL, retrying with capped backoff until it works or the
/// host is asked to stop.
async fn connect_with_retry(
    pipeline: &Pipeline,
    member: &str,
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<tokio_postgres::Client> {
    let mut backoff = Duration::from_millis(100);
    let mut attempts = 0;
    loop {
        // Named after the member, so an operator (or a test) can tell the
        // sessions of each process apart in pg_stat_activity.
        match postgres::connect_as(&pipeline.postgres, Some(member)).await {
            Ok(c) => return Ok(c),
            Err(e) => {
                attempts += 1;
                // A refused password or certificate does not heal by waiting.
                if *stop.borrow() || postgres::is_permanent(&e) {
                    return Err(e);
                }
                tracing::warn!(attempt = attempts, error = %format!("{e:#}"), "PostgreSQL unreachable; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => {}
                }
                backoff = next_backoff(backoff);
            }
        }
    }
}

/// The loader the consumer calls on each assignment: it blocks the consumer
/// until the stored offsets are read, retrying, since a partition must never
/// start anywhere else.
fn offset_loader(pipeline: &Pipeline, config: &SinkConfig) -> kafka::OffsetLoader {
    let pg = pipeline.postgres.clone();
    let table = config.table.clone();
    let handle = tokio::runtime::Handle::current();
    Box::new(move |topic: &str, partitions: &[i32]| {
        tokio::task::block_in_place(|| {
            handle.block_on(async {
                let mut backoff = Duration::from_millis(100);
                loop {
                    let result = async {
                        let client = postgres::connect(&pg).await?;
                        postgres::stored_offsets(&client, &table, topic).await
                    }
                    .await;
                    match result {
                        Ok(stored) => {
                            tracing::debug!(table, topic, ?stored, "stored offsets for the assignment");
                            return partitions.iter().map(|p| (*p, stored.get(p).copied())).collect();
                        }
                        Err(e) => {
                            tracing::warn!(error = %format!("{e:#}"), "cannot read stored offsets for the assignment; retrying");
                            tokio::time::sleep(backoff).await;
                            backoff = next_backoff(backoff);
                        }
                    }
                }
            })
        })
    })
}
