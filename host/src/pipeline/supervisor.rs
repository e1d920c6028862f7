//! The running pipeline: one task per generator and per sink, started,
//! changed, swapped and stopped as the pipeline file and the plugin files
//! change. What a change does is decided by `plan` (pure, unit-tested); this
//! module executes the plan through one [`Unit`] type for both kinds. A bad
//! change never stops what runs: it is logged with the path and the reason,
//! and the previous version keeps going.
//!
//! Submodules: `units` (start and stop), `load` (compile and configure
//! plugins), `changes` (the watched files), `execute` (a plan carried out),
//! `audit` (the periodic audit).

use super::RunOptions;
use super::plan::{self, Kind, UnitConfig, UnitId};
use super::reload::normalize;
use crate::config::Pipeline;
use crate::kafka;
use crate::plugins::{GeneratorWorld, MapperWorld, Runtime};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use tokio::sync::watch;
use tokio::task::JoinHandle;

mod audit;
mod changes;
mod execute;
mod load;
mod units;

use audit::Audit;
use load::{Instance, collect_compiles, find_compiled};
use units::Unit;

pub struct Supervisor {
    runtime: Runtime,
    options: RunOptions,
    pipeline: Pipeline,
    /// The pipeline file's text as last applied, to ignore saves that change nothing.
    pipeline_text: Option<String>,
    /// Hash of the plugin bytes running, per normalized path (check plugins
    /// included, so the first look at an unchanged file is not a change).
    running_hashes: HashMap<PathBuf, String>,
    /// Hash of the plugin bytes last looked at, per normalized path: a file
    /// that reports changes but holds the same bytes is not handled twice.
    seen_hashes: HashMap<PathBuf, String>,
    units: BTreeMap<UnitId, Unit>,
    generators_done: watch::Sender<bool>,
    audit: Option<Audit>,
    /// Units stopped by a reload, still finishing.
    retiring: Vec<(String, JoinHandle<anyhow::Result<()>>)>,
    failures: Vec<String>,
}

impl Supervisor {
    /// Loads every plugin (a bad one stops the start), creates the declared
    /// topics in use, and starts every generator and sink the options select.
    pub async fn start(runtime: Runtime, pipeline: Pipeline, options: RunOptions) -> anyhow::Result<Self> {
        let (generators_done, _) = watch::channel(false);
        crate::ops::state::set_pipeline(&pipeline);
        let mut sup = Self {
            runtime,
            pipeline_text: std::fs::read_to_string(&pipeline.path).ok(),
            pipeline: pipeline.clone(),
            options,
            running_hashes: HashMap::new(),
            seen_hashes: HashMap::new(),
            units: BTreeMap::new(),
            generators_done,
            audit: None,
            retiring: Vec::new(),
            failures: Vec::new(),
        };
        let units: Vec<UnitConfig> = plan::units(&pipeline)
            .into_iter()
            .filter(|u| plan::in_scope(&sup.options, u))
            .collect();
        if units.is_empty() {
            anyhow::bail!(
                "nothing to run in {}: no generator or sink for the chosen topic\n  hint: check [[generators]] and [[sinks]] in the pipeline file, or the --topic",
                pipeline.path.display()
            );
        }
        let of_kind = |kind: Kind| {
            units
                .iter()
                .filter(move |u| u.id().kind == kind)
                .map(UnitConfig::plugin)
        };
        // Each distinct plugin file compiles once, all of them at once (a
        // 20 MB component takes seconds), each on a blocking thread; then
        // every unit gets its own configured instance.
        let generator_compiles = sup.spawn_compiles::<GeneratorWorld>(of_kind(Kind::Generator));
        let sink_compiles = sup.spawn_compiles::<MapperWorld>(of_kind(Kind::Sink));
        let generator_compiled = collect_compiles(generator_compiles).await?;
        let sink_compiled = collect_compiles(sink_compiles).await?;
        let mut loaded = Vec::new();
        for unit in units {
            let name = unit.id().to_string();
            let instance = match &unit {
                UnitConfig::Generator(g) => Instance::Generator(
                    find_compiled(&generator_compiled, &g.plugin).instantiate(&name, &g.plugin, g.seed)?,
                ),
                UnitConfig::Sink(s) => {
                    let plugin = find_compiled(&sink_compiled, &s.mapper).instantiate(&name, &s.mapper, None)?;
                    super::tables::resolve(s, plugin.configured()).map_err(anyhow::Error::msg)?;
                    Instance::Mapper(plugin)
                }
            };
            sup.running_hashes
                .insert(normalize(instance.path()), instance.hash().to_string());
            instance.record();
            loaded.push((unit, instance));
        }
        sup.create_topics(&pipeline).await?;
        // Sinks first: they are subscribed before the first message is produced.
        loaded.sort_by_key(|(u, _)| std::cmp::Reverse(u.id().kind));
        for (unit, instance) in loaded {
            sup.spawn(unit, instance);
        }
        sup.restart_audit();
        Ok(sup)
    }

    fn running(&self) -> BTreeSet<UnitId> {
        self.units.keys().cloned().collect()
    }

    async fn create_topics(&self, pipeline: &Pipeline) -> anyhow::Result<()> {
        let units: Vec<UnitConfig> = plan::units(pipeline)
            .into_iter()
            .filter(|u| plan::in_scope(&self.options, u))
            .collect();
        let used: Vec<_> = pipeline
            .topics
            .iter()
            .filter(|t| units.iter().any(|u| u.topic() == t.name))
            .cloned()
            .collect();
        for (name, status) in kafka::create_topics(&pipeline.kafka, &used).await? {
            if status == kafka::TopicStatus::Created {
                tracing::info!(topic = name, "created topic");
            }
        }
        Ok(())
    }

    /// Collects units that ended. Returns true when the run is over: with
    /// `once`, every unit has finished; otherwise, when one failed.
    pub fn poll(&mut self) -> bool {
        let finished: Vec<UnitId> = self
            .units
            .iter()
            .filter(|(_, u)| u.task.is_finished())
            .map(|(id, _)| id.clone())
            .collect();
        for id in finished {
            if let Some(unit) = self.units.remove(&id) {
                unit.log_finished(&id.name);
                self.reap(id.to_string(), unit.task);
            }
        }
        if !self.units.keys().any(|id| id.kind == Kind::Generator) {
            let _ = self.generators_done.send(true);
        }
        !self.failures.is_empty() || self.units.is_empty()
    }

    fn reap(&mut self, name: String, task: JoinHandle<anyhow::Result<()>>) {
        // The task has finished: take its result without blocking.
        match futures_util::FutureExt::now_or_never(task) {
            Some(Ok(Ok(()))) | None => {}
            Some(Ok(Err(e))) => self.failures.push(format!("{name}: {e:#}")),
            Some(Err(e)) => self.failures.push(format!("{name}: task failed: {e}")),
        }
    }

    pub fn log_progress(&self) {
        let findings = self.latest_findings();
        if !findings.is_empty() {
            tracing::debug!(findings = findings.len(), "latest audit round");
        }
        for (id, unit) in &self.units {
            unit.log_progress(&id.name);
        }
        super::fault_log::log_pending(false);
    }

    /// Asks every unit to stop (generators flush, sinks write the batch in
    /// flight), waits for them, and reports failures.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(audit) = self.audit.take() {
            let _ = audit.stop.send(true);
            let _ = audit.task.await;
        }
        for unit in self.units.values() {
            unit.signal_stop();
        }
        let mut tasks: Vec<(String, JoinHandle<anyhow::Result<()>>)> = std::mem::take(&mut self.retiring);
        // Generators first (the map's order), as before.
        tasks.extend(
            std::mem::take(&mut self.units)
                .into_iter()
                .map(|(id, u)| (id.to_string(), u.task)),
        );
        for (name, task) in tasks {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => self.failures.push(format!("{name}: {e:#}")),
                Err(e) => self.failures.push(format!("{name}: task failed: {e}")),
            }
        }
        // The failures counted since each mapper's last line.
        super::fault_log::log_pending(true);
        if self.failures.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("{}", self.failures.join("\n"))
        }
    }
}
