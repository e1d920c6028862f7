//! A sink: consumes one topic, maps each batch through its plugin and writes
//! rows, dead letters and offsets in one transaction (see the contract in
//! `pipeline/mod.rs`).

use super::{Swap, next_backoff};
use crate::config::{Pipeline, SinkConfig};
use crate::kafka::{self, SinkContext, StoredOffsets};
use crate::plugins::mapper::{Column, ColumnType, Message, Outcome, Value};
use crate::plugins::{MapperWorld, Plugin, PluginError};
use crate::postgres::{self, Batch, ColumnData, DeadLetter, Written};
use anyhow::Context as _;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::{Offset, Timestamp, TopicPartitionList};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// How long the sink waits for a message before checking whether it is done.
const IDLE_POLL: Duration = Duration::from_millis(200);

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

/// A consumed message, owned.
struct Consumed {
    partition: i32,
    offset: i64,
    timestamp: Option<i64>,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
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

pub async fn run(run: SinkRun, mut mapper: Box<dyn BatchMapper>) -> anyhow::Result<()> {
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
    let mut config = live.borrow_and_update().clone();
    let mut columns: Vec<Column> = mapper.columns().to_vec();
    let mut insert_sql = postgres::insert_rows_sql(&config.table, &columns);

    let mut client = connect_with_retry(&pipeline, &mut stop).await?;
    postgres::ensure_host_tables(&client).await?;
    postgres::ensure_sink_table(&client, &config.table, &columns).await?;

    let loader = offset_loader(&pipeline, &config);
    let consumer = kafka::sink_consumer(
        &pipeline.kafka,
        &config.group,
        &config.instance_id,
        SinkContext::new(&config.topic, loader),
    )?;
    consumer
        .subscribe(&[&config.topic])
        .with_context(|| format!("cannot subscribe to topic {:?}", config.topic))?;
    tracing::info!(
        sink = config.name,
        topic = config.topic,
        table = config.table,
        group = config.group,
        "sink started"
    );

    let mut positions = Positions::default();
    let mut generation = 0;
    let mut batch: Vec<Consumed> = Vec::with_capacity(config.batch_size);
    let mut batch_started = Instant::now();
    let mut end_offsets: Option<HashMap<i32, i64>> = None;

    loop {
        let stopping = *stop.borrow();
        let wait = if batch.is_empty() {
            IDLE_POLL
        } else {
            config.flush_interval.saturating_sub(batch_started.elapsed())
        };
        let received = if stopping || wait.is_zero() {
            None
        } else {
            tokio::select! {
                r = tokio::time::timeout(wait, consumer.recv()) => r.ok(),
                _ = stop.changed() => None,
            }
        };

        // A rebalance runs inside recv(): the in-memory batch may now hold
        // messages that will be delivered again, so drop it and start over.
        let current = consumer.context().generation();
        if current != generation {
            generation = current;
            if let Some(assignment) = consumer.context().take_assignment() {
                // Tell Kafka where the database stands, so a committed offset
                // that drifted (a crash between the two commits, `host
                // simulate`) heals even before the next batch.
                let stored: HashMap<i32, i64> = assignment.iter().filter_map(|(p, o)| o.map(|o| (*p, o))).collect();
                kafka::commit_advisory(&consumer, &config.topic, &stored);
                positions.reset(assignment);
            }
            batch.clear();
        }

        match received {
            Some(Ok(m)) if m.topic() == config.topic && positions.accept(m.partition(), m.offset()) => {
                if batch.is_empty() {
                    batch_started = Instant::now();
                }
                batch.push(Consumed {
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
                tracing::warn!(sink = config.name, error = %e, "Kafka consumer error; retrying");
                tokio::time::sleep(IDLE_POLL).await;
            }
            None => {}
        }

        let full = batch.len() >= config.batch_size;
        let due = !batch.is_empty() && batch_started.elapsed() >= config.flush_interval;
        if full || due || (stopping && !batch.is_empty()) {
            // Batch boundary: settings and plugin changes apply from here.
            if live.has_changed().unwrap_or(false) {
                config = live.borrow_and_update().clone();
            }
            while let Ok(swap) = swaps.try_recv() {
                let new_columns = swap.plugin.configured().clone();
                match postgres::ensure_sink_table(&client, &config.table, &new_columns).await {
                    Ok(_) => {
                        tracing::info!(
                            sink = config.name,
                            path = %swap.plugin.path().display(),
                            old_hash = mapper.hash(),
                            new_hash = swap.plugin.hash(),
                            swap_ms = swap.detected.elapsed().as_millis(),
                            "mapper swapped"
                        );
                        insert_sql = postgres::insert_rows_sql(&config.table, &new_columns);
                        columns = new_columns;
                        mapper = Box::new(swap.plugin);
                    }
                    Err(e) => tracing::error!(
                        sink = config.name,
                        path = %swap.plugin.path().display(),
                        error = %format!("{e:#}"),
                        "the new mapper does not fit the table; keeping the old one"
                    ),
                }
            }
            let taken = std::mem::take(&mut batch);
            let write_started = Instant::now();
            let (m, result) = map_and_write(
                &config,
                mapper,
                &columns,
                &insert_sql,
                &taken,
                &positions,
                &mut client,
                destination,
            )
            .await?;
            mapper = m;
            match result {
                Ok(Done { rows, dead_letters }) => {
                    tracing::debug!(
                        sink = config.name,
                        messages = taken.len(),
                        rows,
                        dead_letters,
                        ms = write_started.elapsed().as_millis(),
                        "batch committed"
                    );
                    for c in &taken {
                        positions.stored.insert(c.partition, Some(c.offset + 1));
                    }
                    let next: HashMap<i32, i64> = positions
                        .stored
                        .iter()
                        .filter_map(|(p, o)| o.map(|o| (*p, o)))
                        .collect();
                    kafka::commit_advisory(&consumer, &config.topic, &next);
                    stats.messages.fetch_add(taken.len() as u64, Ordering::Relaxed);
                    stats.rows.fetch_add(rows, Ordering::Relaxed);
                    stats.dead_letters.fetch_add(dead_letters, Ordering::Relaxed);
                    stats.batches.fetch_add(1, Ordering::Relaxed);
                    if echo {
                        for c in &taken {
                            println!(
                                "Received: {}",
                                String::from_utf8_lossy(c.payload.as_deref().unwrap_or_default())
                            );
                        }
                    }
                }
                Err(why) => {
                    // The database is the truth: start again from what it holds.
                    tracing::warn!(
                        sink = config.name,
                        reason = why,
                        "batch not written; resuming from the stored offsets"
                    );
                    client = rewind(&pipeline, &config, &consumer, &mut positions, &mut stop).await?;
                }
            }
        }

        if stopping && batch.is_empty() {
            return Ok(());
        }
        if once && batch.is_empty() && *generators_done.borrow_and_update() {
            if end_offsets.is_none() {
                // A client of its own: on the consumer's connection these
                // requests would queue behind its long-polling fetches.
                let (kafka_cfg, topic, group) = (pipeline.kafka.clone(), config.topic.clone(), config.group.clone());
                let ends = tokio::task::spawn_blocking(move || {
                    kafka::end_offsets(&kafka::query_consumer(&kafka_cfg, &group)?, &topic)
                })
                .await??;
                end_offsets = Some(ends);
            }
            if let Some(ends) = &end_offsets
                && ends
                    .iter()
                    .all(|(p, end)| *end == 0 || positions.stored.get(p).copied().flatten() >= Some(*end))
            {
                tracing::info!(
                    sink = config.name,
                    rows = stats.rows(),
                    "caught up with the end of the topic"
                );
                return Ok(());
            }
        }
    }
}

struct Done {
    rows: u64,
    dead_letters: u64,
}

/// Maps a batch on a blocking thread (plugin calls are synchronous), then
/// writes it. Returns the mapper back, and `Err(reason)` when the batch must be
/// consumed again.
#[allow(clippy::too_many_arguments)]
async fn map_and_write(
    config: &SinkConfig,
    mut mapper: Box<dyn BatchMapper>,
    columns: &[Column],
    insert_sql: &str,
    batch: &[Consumed],
    positions: &Positions,
    client: &mut tokio_postgres::Client,
    destination: Destination,
) -> anyhow::Result<(Box<dyn BatchMapper>, Result<Done, String>)> {
    let messages: Vec<Message> = batch
        .iter()
        .map(|c| Message {
            topic: config.topic.clone(),
            partition: c.partition,
            offset: c.offset,
            timestamp: c.timestamp,
            key: c.key.clone(),
            payload: c.payload.clone(),
        })
        .collect();
    let (mapper, outcomes) = tokio::task::spawn_blocking(move || {
        let outcomes = map_isolating_failures(mapper.as_mut(), &messages);
        (mapper, outcomes)
    })
    .await
    .context("mapper thread panicked")?;
    let outcomes = outcomes?;

    let mut data: Vec<ColumnData> = columns.iter().map(|c| ColumnData::for_type(c.kind)).collect();
    let mut row_count = 0usize;
    let mut dead_letters = Vec::new();
    for (c, outcome) in batch.iter().zip(outcomes) {
        let rejected = match outcome {
            Ok(Outcome::Rows(rows)) => match check_rows(columns, &rows) {
                Ok(()) => {
                    row_count += rows.len();
                    for row in rows {
                        push_row(&mut data, row);
                    }
                    None
                }
                Err(reason) => Some(format!("mapper returned a bad row: {reason}")),
            },
            Ok(Outcome::Rejected(reason)) => Some(format!("rejected: {reason}")),
            Err(e) => Some(e.to_string()),
        };
        if let Some(reason) = rejected {
            dead_letters.push(DeadLetter {
                partition: c.partition,
                offset: c.offset,
                key: c.key.clone(),
                payload: c.payload.clone(),
                reason,
            });
        }
    }

    let mut offsets: HashMap<i32, (Option<i64>, i64)> = HashMap::new();
    for c in batch {
        let old = positions.stored.get(&c.partition).copied().flatten();
        offsets
            .entry(c.partition)
            .and_modify(|e| e.1 = e.1.max(c.offset + 1))
            .or_insert((old, c.offset + 1));
    }
    let dead_count = dead_letters.len() as u64;
    let plugin_name = mapper.describe();
    let write = Batch {
        sink: &config.name,
        table: &config.table,
        topic: &config.topic,
        group: &config.group,
        plugin: &plugin_name,
        insert_sql,
        columns: data,
        row_count,
        dead_letters,
        offsets,
    };
    let written = match destination {
        Destination::Postgres => postgres::write_batch(client, &write).await,
        Destination::Discard => Ok(Written::Committed),
    };
    let result = match written {
        Ok(Written::Committed) => Ok(Done {
            rows: row_count as u64,
            dead_letters: dead_count,
        }),
        Ok(Written::Fenced { partition }) => Err(format!(
            "partition {partition}'s stored offset was moved by another consumer"
        )),
        Err(e) => Err(format!("{e:#}")),
    };
    Ok((mapper, result))
}

/// Maps a batch in one call; when that call fails, maps the messages one by
/// one so only the culprits are dead-lettered. Fails only when the plugin
/// cannot even be restarted.
fn map_isolating_failures(
    mapper: &mut dyn BatchMapper,
    messages: &[Message],
) -> anyhow::Result<Vec<Result<Outcome, PluginError>>> {
    match mapper.map_batch(messages) {
        Ok(outcomes) => return Ok(outcomes.into_iter().map(Ok).collect()),
        Err(e) if messages.len() == 1 => return Ok(vec![fatal_or(e)?]),
        Err(e) => tracing::warn!(plugin = mapper.name(), error = %e, "batch call failed; mapping one by one"),
    }
    messages
        .iter()
        .map(|m| match mapper.map_batch(std::slice::from_ref(m)) {
            Ok(mut one) => Ok(Ok(one.remove(0))),
            Err(e) => fatal_or(e),
        })
        .collect()
}

/// Errors that concern one message become its dead-letter reason; a plugin
/// that cannot start again stops the sink.
fn fatal_or(e: PluginError) -> anyhow::Result<Result<Outcome, PluginError>> {
    match e {
        PluginError::Instantiate { .. } | PluginError::Configure { .. } => Err(e.into()),
        other => Ok(Err(other)),
    }
}

fn value_fits(kind: ColumnType, v: &Value) -> bool {
    matches!(
        (kind, v),
        (_, Value::Null)
            | (ColumnType::Text, Value::Text(_))
            | (ColumnType::Integer, Value::Integer(_))
            | (ColumnType::Float, Value::Float(_) | Value::Integer(_))
            | (ColumnType::Boolean, Value::Boolean(_))
            | (ColumnType::Timestamp, Value::Timestamp(_))
            | (ColumnType::Json, Value::Json(_))
    )
}

fn check_rows(columns: &[Column], rows: &[Vec<Value>]) -> Result<(), String> {
    for row in rows {
        if row.len() != columns.len() {
            return Err(format!("{} values for {} columns", row.len(), columns.len()));
        }
        for (c, v) in columns.iter().zip(row) {
            if matches!(v, Value::Null) && !c.nullable {
                return Err(format!("column {:?} is not nullable", c.name));
            }
            if !value_fits(c.kind, v) {
                return Err(format!("column {:?} is {:?}, got {v:?}", c.name, c.kind));
            }
            if let Value::Json(text) = v
                && serde_json::from_str::<serde::de::IgnoredAny>(text).is_err()
            {
                return Err(format!("column {:?} got text that is not JSON", c.name));
            }
        }
    }
    Ok(())
}

fn push_row(data: &mut [ColumnData], row: Vec<Value>) {
    for (column, v) in data.iter_mut().zip(row) {
        match (column, v) {
            (ColumnData::Text(col), Value::Text(s) | Value::Json(s)) => col.push(Some(s)),
            (ColumnData::Text(col), _) => col.push(None),
            (ColumnData::Integer(col), Value::Integer(i) | Value::Timestamp(i)) => col.push(Some(i)),
            (ColumnData::Integer(col), _) => col.push(None),
            (ColumnData::Float(col), Value::Float(f)) => col.push(Some(f)),
            (ColumnData::Float(col), Value::Integer(i)) => col.push(Some(i as f64)),
            (ColumnData::Float(col), _) => col.push(None),
            (ColumnData::Boolean(col), Value::Boolean(b)) => col.push(Some(b)),
            (ColumnData::Boolean(col), _) => col.push(None),
        }
    }
}

/// After a failed or fenced write: reconnect, reread the stored offsets and
/// seek every assigned partition back to them.
async fn rewind(
    pipeline: &Pipeline,
    config: &SinkConfig,
    consumer: &StreamConsumer<SinkContext>,
    positions: &mut Positions,
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<tokio_postgres::Client> {
    let mut backoff = Duration::from_millis(100);
    loop {
        let client = connect_with_retry(pipeline, stop).await?;
        match postgres::stored_offsets(&client, &config.table, &config.topic).await {
            Ok(stored) => {
                let assigned: Vec<i32> = positions.next.keys().copied().collect();
                let assignment: StoredOffsets = assigned.iter().map(|p| (*p, stored.get(p).copied())).collect();
                // Re-assign rather than seek: a seek fails on a partition that is
                // not fetching yet, and the stream would then go on from wherever
                // it was.
                let mut tpl = TopicPartitionList::new();
                for (p, start) in &assignment {
                    tpl.add_partition_offset(&config.topic, *p, start.map_or(Offset::Beginning, Offset::Offset))?;
                }
                consumer
                    .assign(&tpl)
                    .context("cannot rewind the consumer to the stored offsets")?;
                positions.reset(assignment);
                return Ok(client);
            }
            Err(e) => {
                tracing::warn!(sink = config.name, error = %format!("{e:#}"), "cannot read stored offsets; retrying");
                tokio::time::sleep(backoff).await;
                backoff = next_backoff(backoff);
            }
        }
    }
}

/// Connects to PostgreSQL, retrying with capped backoff until it works or the
/// host is asked to stop.
async fn connect_with_retry(
    pipeline: &Pipeline,
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<tokio_postgres::Client> {
    let mut backoff = Duration::from_millis(100);
    let mut attempts = 0;
    loop {
        match postgres::connect(&pipeline.postgres).await {
            Ok(c) => return Ok(c),
            Err(e) => {
                attempts += 1;
                if *stop.borrow() {
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
