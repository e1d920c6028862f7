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
//!
//! The steps live in submodules: `start`, `receive` (and rebalances),
//! `write` (batch, map, write, settle), `swap` (changes and rewinds),
//! `finish`; `control` (pause, resume, rewind), `fence` and `pace`.

use super::Swap;
use super::decode::Decoder;
use super::lost_offsets::Skipping;
use super::mapper::BatchMapper;
use crate::config::{Pipeline, SinkConfig};
use crate::kafka::{SinkContext, StoredOffsets};
use crate::plugins::MapperWorld;
use crate::plugins::mapper::Message;
use crate::postgres::{self, SinkStatements, SinkTable, Written};
use rdkafka::consumer::StreamConsumer;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

mod control;
mod fence;
mod finish;
mod pace;
mod receive;
mod start;
mod swap;
mod write;

// `fence` makes its new consumer with the same offset loader.
use start::offset_loader;
use swap::PendingSwap;

/// How long the sink waits for a message before checking whether it is done.
const IDLE_POLL: Duration = Duration::from_millis(200);
/// How long the sink waits for a message while a write is in flight, so the
/// commit is noticed promptly.
const IN_FLIGHT_POLL: Duration = Duration::from_millis(2);

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
