//! Starting and stopping units: one [`Unit`] type for a generator (on a
//! blocking thread) and a sink (on the async runtime).

use super::super::Swap;
use super::super::generator::{self, Echo, GeneratorRun, GeneratorStats};
use super::super::plan::{Kind, UnitConfig, UnitId};
use super::super::sink::{self, SinkRun, SinkStats};
use super::Supervisor;
use super::load::Instance;
use crate::config::{GeneratorConfig, SinkConfig};
use crate::plugins::{GeneratorWorld, MapperWorld, Plugin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// A running generator or sink: the way into it, and its task.
pub(super) struct Unit {
    control: Control,
    pub(super) task: JoinHandle<anyhow::Result<()>>,
}

/// The channels into a unit. A generator runs on a blocking thread (a std
/// channel and an atomic flag it polls between messages), a sink on the async
/// runtime (tokio channels it selects on); [`Unit`] hides the difference.
enum Control {
    Generator {
        config: watch::Sender<GeneratorConfig>,
        swaps: std::sync::mpsc::Sender<Plugin<GeneratorWorld>>,
        stop: Arc<AtomicBool>,
        stats: Arc<GeneratorStats>,
    },
    Sink {
        config: watch::Sender<SinkConfig>,
        swaps: mpsc::UnboundedSender<Swap<MapperWorld>>,
        stop: watch::Sender<bool>,
        stats: Arc<SinkStats>,
    },
}

impl Unit {
    pub(super) fn signal_stop(&self) {
        match &self.control {
            Control::Generator { stop, .. } => stop.store(true, Ordering::SeqCst),
            Control::Sink { stop, .. } => {
                let _ = stop.send(true);
            }
        }
    }

    /// Hands the unit new settings of its own kind.
    pub(super) fn update(&self, config: UnitConfig) {
        match (&self.control, config) {
            (Control::Generator { config: tx, .. }, UnitConfig::Generator(c)) => {
                let _ = tx.send(c);
            }
            (Control::Sink { config: tx, .. }, UnitConfig::Sink(c)) => {
                let _ = tx.send(c);
            }
            _ => tracing::error!("settings of the other kind of unit; ignored"),
        }
    }

    /// Hands the unit a new plugin instance; false when the unit is gone.
    pub(super) fn swap(&self, instance: Instance, detected: Instant) -> bool {
        match (&self.control, instance) {
            (Control::Generator { swaps, .. }, Instance::Generator(plugin)) => swaps.send(plugin).is_ok(),
            (Control::Sink { swaps, .. }, Instance::Mapper(plugin)) => swaps.send(Swap { plugin, detected }).is_ok(),
            _ => {
                tracing::error!("a plugin of the other world; ignored");
                false
            }
        }
    }

    pub(super) fn log_progress(&self, name: &str) {
        match &self.control {
            Control::Generator { stats, .. } => {
                tracing::info!(generator = name, produced = stats.delivered(), "progress")
            }
            Control::Sink { stats, .. } => tracing::info!(
                sink = name,
                rows = stats.rows(),
                dead_letters = stats.dead_letters(),
                "progress"
            ),
        }
    }

    pub(super) fn log_finished(&self, name: &str) {
        match &self.control {
            Control::Generator { stats, .. } => {
                tracing::info!(generator = name, produced = stats.delivered(), "generator finished")
            }
            Control::Sink { stats, .. } => tracing::info!(
                sink = name,
                rows = stats.rows(),
                dead_letters = stats.dead_letters(),
                "sink finished"
            ),
        }
    }
}

impl Supervisor {
    /// Starts a unit with its loaded plugin.
    pub(super) fn spawn(&mut self, config: UnitConfig, instance: Instance) {
        let id = config.id();
        let unit = match (config, instance) {
            (UnitConfig::Generator(c), Instance::Generator(p)) => self.spawn_generator(c, p),
            (UnitConfig::Sink(c), Instance::Mapper(p)) => self.spawn_sink(c, p),
            _ => {
                tracing::error!(unit = %id, "a plugin of the other world; not started");
                return;
            }
        };
        self.units.insert(id, unit);
    }

    fn spawn_generator(&self, config: GeneratorConfig, plugin: Plugin<GeneratorWorld>) -> Unit {
        // A counted run is produced by one process only (see `RunLease`).
        let claim = config.count.map(|_| (config.topic.clone(), config.name.clone()));
        let kafka = self.pipeline.kafka.clone();
        let (config_tx, config_rx) = watch::channel(config);
        let (swaps_tx, swaps_rx) = std::sync::mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(GeneratorStats::default());
        let gate = claim.as_ref().map(|_| Arc::new(crate::kafka::LeaseGate::default()));
        let run = GeneratorRun {
            kafka: self.pipeline.kafka.clone(),
            config: config_rx,
            swaps: swaps_rx,
            stop: stop.clone(),
            echo: if self.options.echo_produced {
                Echo::Print
            } else {
                Echo::Quiet
            },
            stats: stats.clone(),
            gate: gate.clone(),
            registry: self.pipeline.schema_registry.clone(),
        };
        let on_lost = stop.clone();
        let task = tokio::task::spawn_blocking(move || {
            let lease = match (&claim, gate) {
                (Some((topic, name)), Some(gate)) => {
                    Some(crate::kafka::claim_counted_run(&kafka, topic, name, gate, on_lost)?)
                }
                _ => None,
            };
            let result = generator::run(run, plugin);
            if let (Some(lease), Some((topic, name))) = (&lease, &claim)
                && lease.lost()
            {
                anyhow::bail!(
                    "generator {name:?} stopped producing: another process took its counted run on topic {topic:?} over while this one was out of the group (paused or cut off); the count is that process's now"
                );
            }
            result
        });
        Unit {
            control: Control::Generator {
                config: config_tx,
                swaps: swaps_tx,
                stop,
                stats,
            },
            task,
        }
    }

    fn spawn_sink(&self, config: SinkConfig, mapper: Plugin<MapperWorld>) -> Unit {
        let (config_tx, config_rx) = watch::channel(config);
        let (swaps_tx, swaps_rx) = mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = watch::channel(false);
        let stats = Arc::new(SinkStats::default());
        let run = SinkRun {
            pipeline: self.pipeline.clone(),
            config: config_rx,
            swaps: swaps_rx,
            stop: stop_rx,
            generators_done: self.generators_done.subscribe(),
            once: self.options.once,
            echo: self.options.echo_consumed,
            stats: stats.clone(),
            destination: sink::Destination::Postgres,
        };
        let task = tokio::spawn(sink::run(run, Box::new(mapper)));
        Unit {
            control: Control::Sink {
                config: config_tx,
                swaps: swaps_tx,
                stop: stop_tx,
                stats,
            },
            task,
        }
    }

    /// Stops a unit. A generator finishes in the background; a sink is waited
    /// for, so a replacement in the same group never overlaps it.
    pub(super) async fn stop_unit(&mut self, id: &UnitId) {
        let Some(unit) = self.units.remove(id) else { return };
        unit.signal_stop();
        match id.kind {
            Kind::Generator => {
                tracing::info!(generator = id.name, "generator removed");
                self.retiring.push((id.to_string(), unit.task));
            }
            Kind::Sink => {
                tracing::info!(
                    sink = id.name,
                    "sink stopping (removed, or its topic, table or group changed)"
                );
                match unit.task.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::error!(sink = id.name, error = %format!("{e:#}"), "sink ended with an error")
                    }
                    Err(e) => tracing::error!(sink = id.name, error = %e, "sink task failed"),
                }
            }
        }
    }

    /// Loads a unit's plugin and starts it; a failure is logged (and
    /// returned, its first line) and the rest goes on.
    pub(super) async fn start_unit(&mut self, config: UnitConfig) -> Result<(), String> {
        let id = config.id();
        match self.load(&config).await {
            Ok(instance) => {
                self.spawn_loaded(config, instance);
                Ok(())
            }
            Err(e) => {
                crate::ops::plugin_live::refused_unit(&id.to_string(), &config.plugin().path, &format!("{e:#}"));
                match id.kind {
                    Kind::Generator => {
                        tracing::error!(generator = id.name, error = %format!("{e:#}"), "cannot start the new generator")
                    }
                    Kind::Sink => tracing::error!(sink = id.name, error = %format!("{e:#}"), "cannot start the sink"),
                }
                Err(e.to_string())
            }
        }
    }

    /// Starts a unit of a reload whose plugin is loaded.
    pub(super) fn spawn_loaded(&mut self, config: UnitConfig, instance: Instance) {
        instance.record();
        match &config {
            UnitConfig::Generator(g) => tracing::info!(generator = g.name, topic = %g.topic, "generator added"),
            UnitConfig::Sink(s) => tracing::info!(
                sink = s.name,
                topic = %s.topic,
                table = %s.table,
                "sink started by reload"
            ),
        }
        self.spawn(config, instance);
    }
}
