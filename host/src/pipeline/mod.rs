//! The pipeline: generators produce to Kafka, sinks consume from Kafka, map
//! each message through a plugin and write rows to PostgreSQL.
//!
//! # Delivery contract
//!
//! - The producer is idempotent (`enable.idempotence`, `acks=all`): librdkafka's
//!   retries neither duplicate nor reorder a message.
//! - A sink consumes in batches. For each batch, the rows, the dead letters and
//!   the next offset of each partition are written in **one PostgreSQL
//!   transaction**. The offset update is conditional on the offset the batch
//!   started from (`... WHERE next_offset = $old`): a consumer that lost its
//!   partition to another writes nothing and starts again from the database.
//! - On start and on every partition assignment the consumer starts each
//!   partition at the offset stored in PostgreSQL (where the sink's `start`
//!   says when there is none). Kafka offset commits happen after the database commit and are
//!   advisory: they only feed lag figures and `host check`.
//! - A message the mapper rejects, or whose mapping traps or runs out of time or
//!   memory, goes to the dead-letter table in the same transaction, with the
//!   reason; the pipeline moves on. Nothing is silently dropped.
//! - A database or broker outage is retried with capped backoff, never skipped:
//!   after a failed write the sink rereads the stored offsets and consumes the
//!   batch again.
//! - Sinks commit with `synchronous_commit = off`. A crash of PostgreSQL may
//!   lose its last commits, but rows and offsets together, in commit order;
//!   the sink's next conditional offset update then fails, and it rewinds to
//!   the offsets that survived. A sink that stops flushes its commits first.
//! - A batch is written by a task of its own while the next one is consumed
//!   and mapped; the next write starts only once the previous one committed,
//!   and one whose partitions were reassigned meanwhile makes the sink rewind.
//! - A sink with `mode = "upsert"` writes the same way: its batch's last
//!   upsert or delete per key (in offset order, see `upsert`) is staged and
//!   applied by one `DELETE` and one `INSERT ... ON CONFLICT` inside that
//!   same transaction, so its deletes and updates are exactly once too.
//!
//! - `host sink rewind` moves stored offsets back in one transaction that
//!   locks them first, deletes the rows (by lineage) and dead letters of the
//!   rewound offsets and bumps the sink's control generation: a write in
//!   flight either committed before or fails its conditional update, and
//!   every running sink starts again from the new offsets (`commands::sink::rewind`).
//!
//! So every message lands exactly once, through crashes and restarts.

mod batch;
pub mod decode;
mod encode;
mod fault_log;
mod generator;
mod lost_offsets;
mod mapper;
mod plan;
pub mod registry_columns;
mod reload;
mod reload_report;
mod retry;
mod sink;
mod stuck;
mod supervisor;
pub mod tables;
pub(crate) use crate::postgres::upsert;

pub use batch::{DELETE_NEEDS_KEY, Delete, Mapped, MappedTable, map as map_messages};
pub use generator::{Echo, GeneratorStats};
pub use mapper::BatchMapper;
pub use retry::MAX_BACKOFF;
pub use sink::{Destination, SinkStats};

use crate::config::{GeneratorConfig, KafkaConfig, Pipeline, SinkConfig};
use crate::plugins::{GeneratorWorld, MapperWorld, Plugin, Runtime};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tokio::sync::watch;

/// How often progress is logged.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// What `run` runs.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub generators: bool,
    pub sinks: bool,
    /// Only the parts working on this topic.
    pub topic: Option<String>,
    /// Stop when generators are done and sinks have caught up.
    pub once: bool,
    /// Print each produced message (`Sending: ...`).
    pub echo_produced: bool,
    /// Print each stored message (`Received: ...`).
    pub echo_consumed: bool,
    /// Reload the pipeline file and plugins when they change.
    pub watch: bool,
}

/// A reloaded plugin on its way to the unit that runs it.
pub struct Swap<W: crate::plugins::World> {
    pub plugin: Plugin<W>,
    /// When the change was noticed, to report how long the swap took.
    pub detected: std::time::Instant,
}

/// Runs the pipeline until stopped (Ctrl-C, SIGTERM) or, with `once`, until it
/// is done. With `watch`, changes to the pipeline file and the plugin files are
/// applied while it runs.
pub async fn run(pipeline: &Pipeline, options: RunOptions) -> anyhow::Result<()> {
    let runtime = Runtime::new()?.observed_by(crate::ops::metrics::plugin_observer());
    let _http = crate::ops::http::start(pipeline).await;
    let mut pipeline = pipeline.clone();
    registry_columns::resolve(&mut pipeline).await?;
    let from_registry = registry_columns::any(&pipeline);
    let mut supervisor = supervisor::Supervisor::start(runtime, pipeline, options.clone()).await?;
    crate::ops::state::problem("host", None);
    let mut watcher = if options.watch {
        let mut w = reload::Watcher::new(reload::DEBOUNCE)?;
        w.watch_files(supervisor.watched_files());
        Some(w)
    } else {
        None
    };
    let signal = shutdown_signal();
    tokio::pin!(signal);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut progress = tokio::time::interval(PROGRESS_EVERY);
    progress.tick().await;
    loop {
        tokio::select! {
            _ = &mut signal => {
                tracing::info!("stopping: finishing the batches in flight");
                break;
            }
            path = async { watcher.as_mut().expect("guarded").next().await }, if watcher.is_some() => {
                supervisor.file_changed(&path).await;
                if let Some(w) = watcher.as_mut() {
                    w.watch_files(supervisor.watched_files());
                }
            }
            _ = tick.tick() => {
                if supervisor.poll() {
                    break;
                }
            }
            _ = progress.tick() => supervisor.log_progress(),
            _ = registry_columns::asked(), if from_registry => supervisor.registry_columns_changed().await,
        }
    }
    // A second Ctrl-C or SIGTERM while the batches in flight finish means
    // "now": nothing is lost either way, since sinks resume from PostgreSQL.
    tokio::select! {
        result = supervisor.shutdown() => result,
        _ = shutdown_signal() => {
            eprintln!("error: stopped at once by a second signal; the next run resumes from the offsets stored in PostgreSQL");
            // Not a return: dropping the runtime would wait for the blocking threads.
            std::process::exit(130);
        }
    }
}

/// Runs one generator with a loaded plugin, outside a supervised run
/// (`scripts/bench` measures it): produces its `count` messages and waits until
/// Kafka has acknowledged them all. Blocks the calling thread.
pub fn run_generator(
    kafka: &KafkaConfig,
    config: GeneratorConfig,
    plugin: Plugin<GeneratorWorld>,
    stats: Arc<GeneratorStats>,
) -> anyhow::Result<()> {
    let (_config_tx, config_rx) = watch::channel(config);
    let (_swaps_tx, swaps_rx) = std::sync::mpsc::channel();
    let run = generator::GeneratorRun {
        kafka: kafka.clone(),
        config: config_rx,
        swaps: swaps_rx,
        stop: Arc::new(AtomicBool::new(false)),
        echo: Echo::Quiet,
        stats,
        gate: None,
        registry: None,
    };
    generator::run(run, plugin)
}

/// Runs one sink with a given mapper and destination, outside a supervised
/// run (`scripts/bench` measures it): consumes `config.topic` until it has
/// caught up with the end of the topic, or until `stop` turns true.
pub async fn run_sink(
    pipeline: &Pipeline,
    config: SinkConfig,
    mapper: Box<dyn BatchMapper>,
    destination: Destination,
    stats: Arc<SinkStats>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let (_config_tx, config_rx) = watch::channel(config);
    let (_swaps_tx, swaps_rx) = tokio::sync::mpsc::unbounded_channel();
    let (_done_tx, done_rx) = watch::channel(true);
    let run = sink::SinkRun {
        pipeline: pipeline.clone(),
        config: config_rx,
        swaps: swaps_rx,
        stop,
        generators_done: done_rx,
        once: true,
        echo: false,
        stats,
        destination,
    };
    sink::run(run, mapper).await
}

struct Loaded {
    generators: Vec<Plugin<GeneratorWorld>>,
    mappers: Vec<Plugin<MapperWorld>>,
}

fn load_plugins(
    runtime: &Runtime,
    generators: &[crate::config::GeneratorConfig],
    sinks: &[crate::config::SinkConfig],
) -> anyhow::Result<Loaded> {
    let generators = generators
        .iter()
        .map(|g| runtime.load::<GeneratorWorld>(&format!("generator {}", g.name), &g.plugin, g.seed))
        .collect::<Result<_, _>>()?;
    let mappers = sinks
        .iter()
        .map(|s| runtime.load::<MapperWorld>(&format!("sink {}", s.name), &s.mapper, None))
        .collect::<Result<_, _>>()?;
    Ok(Loaded { generators, mappers })
}

/// Checks that every plugin of the pipeline loads and accepts its settings,
/// without connecting anywhere.
pub fn validate_plugins(pipeline: &Pipeline) -> anyhow::Result<Vec<String>> {
    let runtime = Runtime::new()?;
    let loaded = load_plugins(&runtime, &pipeline.generators, &pipeline.sinks)?;
    let mut report: Vec<String> = loaded
        .generators
        .iter()
        .map(|p| format!("{}: {} (hash {})", p.name(), p.path().display(), p.hash()))
        .collect();
    for (p, s) in loaded.mappers.iter().zip(&pipeline.sinks) {
        let tables = tables::resolve(s, p.configured()).map_err(anyhow::Error::msg)?;
        let described = match tables.as_slice() {
            [one] => format!(
                "columns {}",
                one.columns
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            several => format!("tables {}", tables::describe(several)),
        };
        report.push(format!(
            "{}: {} (hash {}), {described}",
            p.name(),
            p.path().display(),
            p.hash(),
        ));
    }
    Ok(report)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
