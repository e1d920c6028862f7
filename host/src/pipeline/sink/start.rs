//! Starting a sink: its PostgreSQL session and tables, its control row, and
//! a consumer whose partitions start at the offsets stored in PostgreSQL.

use super::super::decode::Decoder;
use super::super::lost_offsets::Skipping;
use super::super::mapper::BatchMapper;
use super::super::retry::{self, Backoff, Verdict};
use super::{Positions, Sink, SinkRun, Writer, control, fence};
use crate::config::{Pipeline, PostgresConfig, SinkConfig};
use crate::kafka::{self, SinkContext};
use crate::postgres::{self, SinkStatements, SinkTable};
use anyhow::Context as _;
use rdkafka::consumer::Consumer as _;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;

impl Sink {
    /// Connects to PostgreSQL (the tables ready), subscribes to the topic.
    pub(super) async fn start(run: SinkRun, mapper: Box<dyn BatchMapper>) -> anyhow::Result<Self> {
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
        let mut tables = super::super::tables::resolve(&config, mapper.tables()).map_err(anyhow::Error::msg)?;
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
            failing: super::super::stuck::Failing::default(),
            decoder,
            _registered: registered,
        })
    }
}

/// Connects to PostgreSQL, retrying with capped backoff until it works, the
/// refusal is for good, or the host is asked to stop.
pub(super) async fn connect_with_retry(
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
pub(super) fn offset_loader(pipeline: &Pipeline, config: &SinkConfig) -> kafka::OffsetLoader {
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
