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
//!   partition at the offset stored in PostgreSQL (the beginning when there is
//!   none). Kafka offset commits happen after the database commit and are
//!   advisory: they only feed lag figures and `host check`.
//! - A message the mapper rejects, or whose mapping traps or runs out of time or
//!   memory, goes to the dead-letter table in the same transaction, with the
//!   reason; the pipeline moves on. Nothing is silently dropped.
//! - A database or broker outage is retried with capped backoff, never skipped:
//!   after a failed write the sink rereads the stored offsets and consumes the
//!   batch again.
//!
//! So every message lands exactly once, through crashes and restarts.

mod generator;
mod sink;

pub use generator::{Echo, GeneratorStats};
pub use sink::SinkStats;

use crate::config::Pipeline;
use crate::kafka;
use crate::plugins::{GeneratorWorld, MapperWorld, Plugin, Runtime};
use anyhow::Context as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// Longest pause between retries of a failed database or broker operation.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
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
}

/// Doubles a backoff up to [`MAX_BACKOFF`].
pub fn next_backoff(current: Duration) -> Duration {
    (current * 2).min(MAX_BACKOFF)
}

/// Runs the pipeline until stopped (Ctrl-C, SIGTERM) or, with `once`, until it is done.
pub async fn run(pipeline: &Pipeline, options: RunOptions) -> anyhow::Result<()> {
    let runtime = Runtime::new()?;
    let wanted = |topic: &str| options.topic.as_deref().is_none_or(|t| t == topic);
    let generators: Vec<_> = pipeline
        .generators
        .iter()
        .filter(|g| options.generators && wanted(&g.topic))
        .cloned()
        .collect();
    let sinks: Vec<_> = pipeline
        .sinks
        .iter()
        .filter(|s| options.sinks && wanted(&s.topic))
        .cloned()
        .collect();
    if generators.is_empty() && sinks.is_empty() {
        anyhow::bail!(
            "nothing to run in {}: no {} for the chosen topic\n  hint: check [[generators]] and [[sinks]] in the pipeline file, or the --topic",
            pipeline.path.display(),
            if options.generators && options.sinks {
                "generator or sink"
            } else if options.sinks {
                "sink"
            } else {
                "generator"
            }
        );
    }

    // Load every plugin first, so a bad one stops the run before anything moves.
    let loaded = {
        let runtime = runtime.clone();
        let (generators, sinks) = (generators.clone(), sinks.clone());
        tokio::task::spawn_blocking(move || load_plugins(&runtime, &generators, &sinks)).await??
    };

    let used: Vec<_> = pipeline
        .topics
        .iter()
        .filter(|t| generators.iter().any(|g| g.topic == t.name) || sinks.iter().any(|s| s.topic == t.name))
        .cloned()
        .collect();
    for (name, status) in kafka::create_topics(&pipeline.kafka, &used).await? {
        if status == kafka::TopicStatus::Created {
            tracing::info!(topic = name, "created topic");
        }
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let (gens_done_tx, gens_done_rx) = watch::channel(generators.is_empty());
    let stop_flag = Arc::new(AtomicBool::new(false));

    let mut sink_tasks = Vec::new();
    for (config, mapper) in sinks.iter().cloned().zip(loaded.mappers) {
        let ctx = sink::SinkRun {
            pipeline: pipeline.clone(),
            config,
            stop: stop_rx.clone(),
            generators_done: gens_done_rx.clone(),
            once: options.once,
            echo: options.echo_consumed,
            stats: Arc::new(SinkStats::default()),
        };
        let stats = ctx.stats.clone();
        sink_tasks.push((ctx.config.name.clone(), stats, tokio::spawn(sink::run(ctx, mapper))));
    }
    let mut gen_tasks = Vec::new();
    for (config, plugin) in generators.iter().cloned().zip(loaded.generators) {
        let stats = Arc::new(GeneratorStats::default());
        let run = generator::GeneratorRun {
            kafka: pipeline.kafka.clone(),
            config,
            stop: stop_flag.clone(),
            echo: if options.echo_produced {
                Echo::Print
            } else {
                Echo::Quiet
            },
            stats: stats.clone(),
        };
        gen_tasks.push((
            run.config.name.clone(),
            stats,
            tokio::task::spawn_blocking(move || generator::run(run, plugin)),
        ));
    }

    let progress = {
        let gens: Vec<_> = gen_tasks.iter().map(|(n, s, _)| (n.clone(), s.clone())).collect();
        let sinks: Vec<_> = sink_tasks.iter().map(|(n, s, _)| (n.clone(), s.clone())).collect();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PROGRESS_EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                for (name, s) in &gens {
                    tracing::info!(generator = name, produced = s.delivered(), "progress");
                }
                for (name, s) in &sinks {
                    tracing::info!(
                        sink = name,
                        rows = s.rows(),
                        dead_letters = s.dead_letters(),
                        "progress"
                    );
                }
            }
        })
    };

    let shutdown = {
        let stop_tx = stop_tx.clone();
        let stop_flag = stop_flag.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("stopping: finishing the batches in flight");
            stop_flag.store(true, Ordering::SeqCst);
            let _ = stop_tx.send(true);
        })
    };

    let mut failures = Vec::new();
    for (name, stats, task) in gen_tasks {
        match task.await.context("generator task panicked")? {
            Ok(()) => tracing::info!(generator = name, produced = stats.delivered(), "generator finished"),
            Err(e) => failures.push(format!("generator {name}: {e:#}")),
        }
    }
    let _ = gens_done_tx.send(true);
    if !failures.is_empty() {
        stop_flag.store(true, Ordering::SeqCst);
        let _ = stop_tx.send(true);
    }
    for (name, stats, task) in sink_tasks {
        match task.await.context("sink task panicked")? {
            Ok(()) => tracing::info!(
                sink = name,
                rows = stats.rows(),
                dead_letters = stats.dead_letters(),
                "sink finished"
            ),
            Err(e) => failures.push(format!("sink {name}: {e:#}")),
        }
    }
    progress.abort();
    shutdown.abort();
    if failures.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{}", failures.join("\n"))
    }
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
    for p in &loaded.mappers {
        let columns: Vec<String> = p.configured().iter().map(|c| c.name.clone()).collect();
        report.push(format!(
            "{}: {} (hash {}), columns {}",
            p.name(),
            p.path().display(),
            p.hash(),
            columns.join(", ")
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
