//! The running pipeline: one task per generator and per sink, started,
//! changed, swapped and stopped as the pipeline file and the plugin files
//! change. What a change does is decided by `plan` (pure, unit-tested); this
//! module executes the plan through one [`Unit`] type for both kinds. A bad
//! change never stops what runs: it is logged with the path and the reason,
//! and the previous version keeps going.

use super::generator::{self, Echo, GeneratorRun, GeneratorStats};
use super::plan::{self, Action, Kind, UnitConfig, UnitId};
use super::reload::normalize;
use super::reload_report::ReloadReport;
use super::sink::{self, SinkRun, SinkStats};
use super::{RunOptions, Swap};
use crate::config::{GeneratorConfig, Pipeline, PluginConfig, PluginLimits, SinkConfig};
use crate::kafka;
use crate::plugins::{Compiled, GeneratorWorld, MapperWorld, Plugin, PluginError, Runtime, World, content_hash};
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// A running generator or sink: the way into it, and its task.
struct Unit {
    control: Control,
    task: JoinHandle<anyhow::Result<()>>,
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

/// A configured plugin instance for a unit, whichever its world.
enum Instance {
    Generator(Plugin<GeneratorWorld>),
    Mapper(Plugin<MapperWorld>),
}

impl Instance {
    fn path(&self) -> &Path {
        match self {
            Instance::Generator(p) => p.path(),
            Instance::Mapper(p) => p.path(),
        }
    }

    fn hash(&self) -> &str {
        match self {
            Instance::Generator(p) => p.hash(),
            Instance::Mapper(p) => p.hash(),
        }
    }

    /// Shows the instance on the status page as the one its unit runs.
    fn record(&self) {
        match self {
            Instance::Generator(p) => crate::ops::plugin_live::loaded(p),
            Instance::Mapper(p) => crate::ops::plugin_live::loaded(p),
        }
    }
}

/// A compiled plugin file for the world of one kind of unit.
enum AnyCompiled {
    Generator(Compiled<GeneratorWorld>),
    Mapper(Compiled<MapperWorld>),
}

impl AnyCompiled {
    fn instantiate(&self, unit: &UnitConfig) -> Result<Instance, PluginError> {
        let name = unit.id().to_string();
        match self {
            AnyCompiled::Generator(c) => c
                .instantiate(&name, unit.plugin(), unit.seed())
                .map(Instance::Generator),
            AnyCompiled::Mapper(c) => c.instantiate(&name, unit.plugin(), None).map(Instance::Mapper),
        }
    }
}

impl Unit {
    fn signal_stop(&self) {
        match &self.control {
            Control::Generator { stop, .. } => stop.store(true, Ordering::SeqCst),
            Control::Sink { stop, .. } => {
                let _ = stop.send(true);
            }
        }
    }

    /// Hands the unit new settings of its own kind.
    fn update(&self, config: UnitConfig) {
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
    fn swap(&self, instance: Instance, detected: Instant) -> bool {
        match (&self.control, instance) {
            (Control::Generator { swaps, .. }, Instance::Generator(plugin)) => swaps.send(plugin).is_ok(),
            (Control::Sink { swaps, .. }, Instance::Mapper(plugin)) => swaps.send(Swap { plugin, detected }).is_ok(),
            _ => {
                tracing::error!("a plugin of the other world; ignored");
                false
            }
        }
    }

    fn log_progress(&self, name: &str) {
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

    fn log_finished(&self, name: &str) {
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

/// Where the plugins of `SwapPlugin` actions come from.
enum Source<'a> {
    /// Each from the file its settings name (a pipeline file change).
    Files,
    /// One changed plugin file, read once, compiled once per world.
    Changed {
        path: &'a Path,
        bytes: Arc<Vec<u8>>,
        hash: &'a str,
        old_hash: Option<&'a str>,
        detected: Instant,
    },
}

/// The periodic audit of `host run`: its task, how to stop it, its latest findings.
struct Audit {
    task: JoinHandle<()>,
    stop: watch::Sender<bool>,
    latest: Arc<std::sync::Mutex<Vec<crate::audit::Finding>>>,
}

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

    /// (Re)starts the periodic audit with the current checks, when `host run`
    /// runs the whole pipeline and the audit is on. Records the check plugins'
    /// hashes either way: they run from these bytes now.
    fn restart_audit(&mut self) {
        let whole = self.options.generators && self.options.sinks && self.options.topic.is_none();
        let audits = whole && self.pipeline.audit.interval.is_some();
        for check in &self.pipeline.checks {
            let note = if audits {
                "loading (the periodic audit loads it)"
            } else {
                "not loaded: only the periodic audit of `host run` (the whole pipeline, [audit] interval_ms > 0) runs checks"
            };
            crate::ops::plugin_live::declared(&format!("check {}", check.name), &check.plugin.path, note);
            if let Ok(bytes) = std::fs::read(&check.plugin.path) {
                self.running_hashes
                    .insert(normalize(&check.plugin.path), content_hash(&bytes));
            }
        }
        if let Some(old) = self.audit.take() {
            let _ = old.stop.send(true);
            old.task.abort();
        }
        let Some(interval) = self
            .pipeline
            .audit
            .interval
            .filter(|_| whole && !self.pipeline.checks.is_empty())
        else {
            return;
        };
        let (stop, stop_rx) = watch::channel(false);
        let (task, latest) =
            crate::audit::spawn_periodic(self.pipeline.clone(), self.runtime.clone(), interval, stop_rx);
        crate::ops::state::set_audit(Some(latest.clone()));
        self.audit = Some(Audit { task, stop, latest });
    }

    /// The findings of the latest audit round (empty before the first).
    pub fn latest_findings(&self) -> Vec<crate::audit::Finding> {
        self.audit
            .as_ref()
            .map(|a| a.latest.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .unwrap_or_default()
    }

    fn running(&self) -> BTreeSet<UnitId> {
        self.units.keys().cloned().collect()
    }

    /// Starts compiling each distinct plugin file (with its limits) once, on
    /// blocking threads of their own.
    fn spawn_compiles<'a, W: World>(&self, configs: impl Iterator<Item = &'a PluginConfig>) -> Vec<CompileJob<W>> {
        let mut jobs: Vec<CompileJob<W>> = Vec::new();
        for config in configs {
            if jobs.iter().any(|(p, l, _)| *p == config.path && *l == config.limits) {
                continue;
            }
            let (runtime, path, limits) = (self.runtime.clone(), config.path.clone(), config.limits);
            let task = tokio::task::spawn_blocking(move || runtime.compile::<W>(&path, &limits));
            jobs.push((config.path.clone(), config.limits, task));
        }
        jobs
    }

    /// Compiles and configures a unit's plugin from its file, on a blocking thread.
    async fn load(&mut self, unit: &UnitConfig) -> anyhow::Result<Instance> {
        let (runtime, unit) = (self.runtime.clone(), unit.clone());
        let instance = tokio::task::spawn_blocking(move || {
            let name = unit.id().to_string();
            match &unit {
                UnitConfig::Generator(g) => runtime
                    .load::<GeneratorWorld>(&name, &g.plugin, g.seed)
                    .map(Instance::Generator),
                UnitConfig::Sink(s) => runtime
                    .load::<MapperWorld>(&name, &s.mapper, None)
                    .map(Instance::Mapper),
            }
        })
        .await??;
        self.running_hashes
            .insert(normalize(instance.path()), instance.hash().to_string());
        Ok(instance)
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

    /// Starts a unit with its loaded plugin.
    fn spawn(&mut self, config: UnitConfig, instance: Instance) {
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

    /// Every file whose change is reloaded: the pipeline file and the plugins.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.pipeline.path.clone()];
        files.extend(self.pipeline.generators.iter().map(|g| g.plugin.path.clone()));
        files.extend(self.pipeline.sinks.iter().map(|s| s.mapper.path.clone()));
        files.extend(self.pipeline.checks.iter().map(|c| c.plugin.path.clone()));
        files
    }

    /// Reacts to a changed file (already debounced).
    pub async fn file_changed(&mut self, path: &Path) {
        if path == normalize(&self.pipeline.path) {
            self.pipeline_changed().await;
        } else {
            self.plugin_changed(path).await;
        }
    }

    async fn pipeline_changed(&mut self) {
        let path = self.pipeline.path.clone();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot read the pipeline file; keeping the running pipeline");
                return;
            }
        };
        let new = match plan::pipeline_file_saved(self.pipeline_text.as_deref(), &path, &text) {
            Ok(Some(p)) => p,
            Ok(None) => return,
            Err(e) => {
                tracing::error!("{e}\n  the running pipeline is unchanged; fix the file and save it again");
                return;
            }
        };
        let mut new = new;
        if let Err(e) = super::registry_columns::resolve(&mut new).await {
            tracing::error!(
                "{e:#}\n  the running pipeline is unchanged; save the file again once the registry answers"
            );
            return;
        }
        self.pipeline_text = Some(text);
        let started = Instant::now();
        let report = self.apply(new).await;
        report.log(&path, started.elapsed().as_millis());
    }

    /// Resolves the `from_registry` columns of the running pipeline again
    /// (a sink saw a new schema id): a subject's new version with more
    /// fields becomes new columns, applied like a saved pipeline file.
    pub async fn registry_columns_changed(&mut self) {
        let mut new = self.pipeline.clone();
        match super::registry_columns::resolve(&mut new).await {
            Ok(true) => {
                let started = Instant::now();
                let path = self.pipeline.path.clone();
                let report = self.apply(new).await;
                report.log(&path, started.elapsed().as_millis());
            }
            Ok(false) => {}
            Err(e) => tracing::warn!("{e:#}; the columns stay as they are"),
        }
        super::registry_columns::passed();
    }

    /// Applies a new, valid pipeline as a difference from the running one.
    async fn apply(&mut self, new: Pipeline) -> ReloadReport {
        let mut report = ReloadReport::default();
        let old = std::mem::replace(&mut self.pipeline, new.clone());
        if old.kafka != new.kafka || old.postgres != new.postgres {
            tracing::warn!(
                "changes to [kafka] or [postgres] (addresses, TLS files) need a restart of the host; they are not applied, the rest is"
            );
            report.refused("[kafka] or [postgres] changes", "they need a restart of the host");
            // Keep running against the connections the units were started with.
            self.pipeline.kafka = old.kafka.clone();
            self.pipeline.postgres = old.postgres.clone();
        }
        // Topics in use that do not exist yet (idempotent; existing ones are left alone).
        let current = self.pipeline.clone();
        if let Err(e) = self.create_topics(&current).await {
            tracing::error!(error = %format!("{e:#}"), "cannot create the topics of the new pipeline");
            report.refused("creating the new topics", &format!("{e:#}"));
        }
        let actions = plan::pipeline_changed(&old, &new, &self.running(), &self.options);
        let audit_restarts = actions.contains(&Action::RestartAudit);
        self.execute(actions, &current, Source::Files, &mut report).await;
        // A sink whose restart was refused runs with its old settings: the
        // pipeline says so, and the next save of the file tries again.
        for id in report.kept() {
            if let (Some(now), Some(before)) = (
                self.pipeline.sinks.iter_mut().find(|s| s.name == id.name),
                old.sinks.iter().find(|s| s.name == id.name),
            ) {
                *now = before.clone();
                self.pipeline_text = None;
            }
        }
        crate::ops::state::set_pipeline(&self.pipeline);
        if !audit_restarts && (old.sinks != new.sinks || old.generators != new.generators || old.topics != new.topics) {
            // The audit judges the pipeline it was started with: give it the new one.
            self.restart_audit();
        }
        report
    }

    /// A plugin file changed: compile it once per world that uses it, make one
    /// configured instance per unit, then hand each to its unit.
    async fn plugin_changed(&mut self, path: &Path) {
        let detected = Instant::now();
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot read the changed plugin; keeping the running one");
                crate::ops::plugin_live::refused_file(path, None, &format!("cannot read {}: {e}", path.display()));
                return;
            }
        };
        let hash = content_hash(&bytes);
        let old_hash = self.running_hashes.get(path).cloned();
        let seen = self.seen_hashes.insert(path.to_path_buf(), hash.clone());
        if !plan::file_is_new(&hash, old_hash.as_deref(), seen.as_deref()) {
            if old_hash.as_deref() == Some(hash.as_str()) {
                // Back to the bytes that run (after a refused change, say).
                crate::ops::plugin_live::file_runs(path);
            }
            return;
        }
        let actions = plan::plugin_file_changed(&self.pipeline, &self.running(), path);
        tracing::info!(path = %path.display(), old_hash = old_hash.as_deref().unwrap_or("-"), new_hash = hash, "plugin changed; compiling");
        let source = Source::Changed {
            path,
            bytes: Arc::new(bytes),
            hash: &hash,
            old_hash: old_hash.as_deref(),
            detected,
        };
        let pipeline = self.pipeline.clone();
        let swapped = self
            .execute(actions, &pipeline, source, &mut ReloadReport::default())
            .await;
        if swapped {
            crate::ops::metrics::reload(path, &hash, None);
            self.running_hashes.insert(path.to_path_buf(), hash);
        }
    }

    /// Carries out a plan against `pipeline` (the one now current). Returns
    /// whether any unit received a new plugin instance.
    async fn execute(
        &mut self,
        actions: Vec<Action>,
        pipeline: &Pipeline,
        source: Source<'_>,
        report: &mut ReloadReport,
    ) -> bool {
        let configs: BTreeMap<UnitId, UnitConfig> = plan::units(pipeline).into_iter().map(|u| (u.id(), u)).collect();
        // Units whose new plugin was refused keep everything as it was.
        let mut refused_units: BTreeSet<UnitId> = BTreeSet::new();
        // With a changed file: its compilation per world, `None` once refused.
        let mut compiled: HashMap<Kind, Option<AnyCompiled>> = HashMap::new();
        let mut swapped = false;
        let config_of = |id: &UnitId| configs.get(id).cloned();
        for action in actions {
            match action {
                Action::RestartAudit => {
                    match &source {
                        Source::Files => tracing::info!(
                            checks = pipeline.checks.len(),
                            "checks changed; restarting the periodic audit"
                        ),
                        Source::Changed { path, hash, .. } => {
                            tracing::info!(path = %path.display(), new_hash = hash, "check plugin changed; restarting the periodic audit")
                        }
                    }
                    self.restart_audit();
                    report.applied("checks and audit");
                }
                Action::Stop(id) => {
                    self.stop_unit(&id).await;
                    report.applied(format!("{id} removed"));
                }
                Action::Restart(id) => {
                    let Some(config) = config_of(&id) else {
                        self.stop_unit(&id).await;
                        continue;
                    };
                    // Compile first, then stop and swap: the unit's pause
                    // is the swap, not the compile (seconds for Python).
                    match self.load(&config).await {
                        Ok(instance) => {
                            self.stop_unit(&id).await;
                            let what = match &config {
                                UnitConfig::Sink(s) => format!("{id} restarted (table {}, topic {})", s.table, s.topic),
                                UnitConfig::Generator(_) => format!("{id} restarted"),
                            };
                            self.spawn_loaded(config, instance);
                            report.applied(what);
                        }
                        Err(e) => {
                            let what = format!("{id}: restart with the plugin {}", config.plugin().path.display());
                            tracing::error!(unit = %id, error = %format!("{e:#}"), "{what} refused: {}; the {} runs on as before", first_line(&e), id.kind.label());
                            crate::ops::plugin_live::refused_unit(
                                &id.to_string(),
                                &config.plugin().path,
                                &format!("{e:#}"),
                            );
                            report.refused(what, &e.to_string());
                            report.kept_running(id);
                        }
                    }
                }
                Action::Start(id) => {
                    if let Some(config) = config_of(&id) {
                        match self.start_unit(config).await {
                            Ok(()) => report.applied(format!("{id} added")),
                            Err(e) => report.refused(format!("adding {id}"), &e),
                        }
                    }
                }
                Action::SwapPlugin(id) => {
                    let Some(config) = config_of(&id) else { continue };
                    let instance = match &source {
                        Source::Files => match self.load(&config).await {
                            Ok(instance) => instance,
                            Err(e) => {
                                // Names what was refused and why; the unit
                                // keeps its plugin and all its settings.
                                let what = format!(
                                    "{id}: new {} {}",
                                    match id.kind {
                                        Kind::Generator => "plugin",
                                        Kind::Sink => "mapper",
                                    },
                                    config.plugin().path.display()
                                );
                                tracing::error!(unit = %id, error = %format!("{e:#}"), "{what} refused: {}; keeping the running plugin and the old settings", first_line(&e));
                                crate::ops::plugin_live::refused_unit(
                                    &id.to_string(),
                                    &config.plugin().path,
                                    &format!("{e:#}"),
                                );
                                report.refused(what, &e.to_string());
                                refused_units.insert(id);
                                continue;
                            }
                        },
                        Source::Changed { path, bytes, hash, .. } => {
                            if let Entry::Vacant(slot) = compiled.entry(id.kind) {
                                let result = self.compile(id.kind, path, bytes, &config.plugin().limits).await;
                                slot.insert(result.map_err(|e| refused(path, hash, &e)).ok());
                            }
                            let Some(Some(c)) = compiled.get(&id.kind) else {
                                refused_units.insert(id);
                                continue;
                            };
                            match c.instantiate(&config) {
                                Ok(instance) => instance,
                                Err(e) => {
                                    refused(path, hash, &e);
                                    refused_units.insert(id);
                                    continue;
                                }
                            }
                        }
                    };
                    if id.kind == Kind::Generator {
                        // A generator takes every plugin it is handed; a sink
                        // shows its mapper once the table takes it (`sink::swap`).
                        instance.record();
                    }
                    let detected = match &source {
                        Source::Files => Instant::now(),
                        Source::Changed { detected, .. } => *detected,
                    };
                    if let Some(unit) = self.units.get(&id)
                        && unit.swap(instance, detected)
                    {
                        swapped = true;
                        report.applied(format!("{id}: new plugin"));
                        if let (
                            Source::Changed {
                                path, hash, old_hash, ..
                            },
                            Kind::Generator,
                        ) = (&source, id.kind)
                        {
                            tracing::info!(generator = id.name, path = %path.display(), old_hash = old_hash.unwrap_or("-"), new_hash = hash, swap_ms = detected.elapsed().as_millis(), "generator plugin swapped");
                        }
                    }
                }
                Action::UpdateSettings(id) => {
                    if refused_units.contains(&id) {
                        continue;
                    }
                    if let (Some(unit), Some(config)) = (self.units.get(&id), config_of(&id)) {
                        unit.update(config);
                        report.applied(format!("{id}: new settings"));
                    }
                }
            }
        }
        swapped
    }

    /// Stops a unit. A generator finishes in the background; a sink is waited
    /// for, so a replacement in the same group never overlaps it.
    async fn stop_unit(&mut self, id: &UnitId) {
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
    async fn start_unit(&mut self, config: UnitConfig) -> Result<(), String> {
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
    fn spawn_loaded(&mut self, config: UnitConfig, instance: Instance) {
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

    async fn compile(
        &self,
        kind: Kind,
        path: &Path,
        bytes: &Arc<Vec<u8>>,
        limits: &PluginLimits,
    ) -> Result<AnyCompiled, PluginError> {
        let (runtime, path, bytes, limits) = (self.runtime.clone(), path.to_path_buf(), bytes.clone(), *limits);
        let compile = move || match kind {
            Kind::Generator => runtime
                .compile_bytes::<GeneratorWorld>(&path, &bytes, &limits)
                .map(AnyCompiled::Generator),
            Kind::Sink => runtime
                .compile_bytes::<MapperWorld>(&path, &bytes, &limits)
                .map(AnyCompiled::Mapper),
        };
        match tokio::task::spawn_blocking(compile).await {
            Ok(result) => result,
            Err(e) => Err(PluginError::Trap {
                name: "compiler".into(),
                reason: e.to_string(),
            }),
        }
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

type CompileJob<W> = (PathBuf, PluginLimits, JoinHandle<Result<Compiled<W>, PluginError>>);

async fn collect_compiles<W: World>(
    jobs: Vec<CompileJob<W>>,
) -> anyhow::Result<Vec<(PathBuf, PluginLimits, Compiled<W>)>> {
    let mut done = Vec::new();
    for (path, limits, task) in jobs {
        done.push((path, limits, task.await??));
    }
    Ok(done)
}

fn find_compiled<'a, W: World>(
    compiled: &'a [(PathBuf, PluginLimits, Compiled<W>)],
    config: &PluginConfig,
) -> &'a Compiled<W> {
    compiled
        .iter()
        .find(|(p, l, _)| *p == config.path && *l == config.limits)
        .map(|(_, _, c)| c)
        .expect("every plugin config was compiled")
}

/// An error's first line: the headline, without its hint.
fn first_line(e: &impl std::fmt::Display) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}

fn refused(path: &Path, hash: &str, e: &PluginError) {
    crate::ops::metrics::reload(path, hash, Some(e.to_string()));
    tracing::error!(path = %path.display(), error = %e, "changed plugin refused; the running version keeps serving");
}
