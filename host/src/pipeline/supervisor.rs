//! The running pipeline: one task per generator and per sink, started,
//! changed, swapped and stopped as the pipeline file and the plugin files
//! change. A bad change never stops what runs: it is logged with the path and
//! the reason, and the previous version keeps going.

use super::generator::{self, Echo, GeneratorRun, GeneratorStats};
use super::reload::normalize;
use super::sink::{self, SinkRun, SinkStats};
use super::{RunOptions, Swap};
use crate::config::{GeneratorConfig, Pipeline, PluginConfig, PluginLimits, SinkConfig};
use crate::kafka;
use crate::plugins::{Compiled, GeneratorWorld, MapperWorld, Plugin, PluginError, Runtime, World, content_hash};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

struct GeneratorUnit {
    config: watch::Sender<GeneratorConfig>,
    swaps: std::sync::mpsc::Sender<Plugin<GeneratorWorld>>,
    stop: Arc<AtomicBool>,
    stats: Arc<GeneratorStats>,
    task: JoinHandle<anyhow::Result<()>>,
}

/// The periodic audit of `host run`: its task, how to stop it, its latest findings.
struct Audit {
    task: JoinHandle<()>,
    stop: watch::Sender<bool>,
    latest: Arc<std::sync::Mutex<Vec<crate::audit::Finding>>>,
}

struct SinkUnit {
    config: watch::Sender<SinkConfig>,
    swaps: mpsc::UnboundedSender<Swap<MapperWorld>>,
    stop: watch::Sender<bool>,
    stats: Arc<SinkStats>,
    task: JoinHandle<anyhow::Result<()>>,
}

pub struct Supervisor {
    runtime: Runtime,
    options: RunOptions,
    pipeline: Pipeline,
    /// The pipeline file's text as last applied, to ignore saves that change nothing.
    pipeline_text: Option<String>,
    /// Hash of the plugin bytes running, per normalized path.
    running_hashes: HashMap<PathBuf, String>,
    /// Hash of the plugin bytes last looked at, per normalized path: a file
    /// that reports changes but holds the same bytes is not handled twice.
    seen_hashes: HashMap<PathBuf, String>,
    generators: BTreeMap<String, GeneratorUnit>,
    sinks: BTreeMap<String, SinkUnit>,
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
        let mut sup = Self {
            runtime,
            pipeline_text: std::fs::read_to_string(&pipeline.path).ok(),
            pipeline: pipeline.clone(),
            options,
            running_hashes: HashMap::new(),
            seen_hashes: HashMap::new(),
            generators: BTreeMap::new(),
            sinks: BTreeMap::new(),
            generators_done,
            audit: None,
            retiring: Vec::new(),
            failures: Vec::new(),
        };
        let generators: Vec<GeneratorConfig> = pipeline
            .generators
            .iter()
            .filter(|g| sup.wants_generator(g))
            .cloned()
            .collect();
        let sinks: Vec<SinkConfig> = pipeline.sinks.iter().filter(|s| sup.wants_sink(s)).cloned().collect();
        if generators.is_empty() && sinks.is_empty() {
            anyhow::bail!(
                "nothing to run in {}: no generator or sink for the chosen topic\n  hint: check [[generators]] and [[sinks]] in the pipeline file, or the --topic",
                pipeline.path.display()
            );
        }
        // Each distinct plugin file compiles once, all of them at once (a
        // 20 MB component takes seconds), each on a blocking thread; then
        // every unit gets its own configured instance.
        let generator_compiles = sup.spawn_compiles::<GeneratorWorld>(generators.iter().map(|g| &g.plugin));
        let sink_compiles = sup.spawn_compiles::<MapperWorld>(sinks.iter().map(|s| &s.mapper));
        let generator_compiled = collect_compiles(generator_compiles).await?;
        let sink_compiled = collect_compiles(sink_compiles).await?;
        let mut loaded_generators = Vec::new();
        for g in &generators {
            let compiled = find_compiled(&generator_compiled, &g.plugin);
            let plugin = compiled.instantiate(&format!("generator {}", g.name), &g.plugin, g.seed)?;
            sup.running_hashes
                .insert(normalize(plugin.path()), plugin.hash().to_string());
            loaded_generators.push(plugin);
        }
        let mut loaded_sinks = Vec::new();
        for s in &sinks {
            let compiled = find_compiled(&sink_compiled, &s.mapper);
            let plugin = compiled.instantiate(&format!("sink {}", s.name), &s.mapper, None)?;
            s.mode
                .check_columns(&s.name, plugin.configured())
                .map_err(anyhow::Error::msg)?;
            sup.running_hashes
                .insert(normalize(plugin.path()), plugin.hash().to_string());
            loaded_sinks.push(plugin);
        }
        sup.create_topics(&pipeline).await?;
        for (s, mapper) in sinks.into_iter().zip(loaded_sinks) {
            sup.spawn_sink(s, mapper);
        }
        for (g, plugin) in generators.into_iter().zip(loaded_generators) {
            sup.spawn_generator(g, plugin);
        }
        sup.restart_audit();
        Ok(sup)
    }

    /// (Re)starts the periodic audit with the current checks, when `host run`
    /// runs the whole pipeline and the audit is on.
    fn restart_audit(&mut self) {
        if let Some(old) = self.audit.take() {
            let _ = old.stop.send(true);
            old.task.abort();
        }
        let whole = self.options.generators && self.options.sinks && self.options.topic.is_none();
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

    fn wants_generator(&self, g: &GeneratorConfig) -> bool {
        self.options.generators && self.options.topic.as_deref().is_none_or(|t| t == g.topic)
    }

    fn wants_sink(&self, s: &SinkConfig) -> bool {
        self.options.sinks && self.options.topic.as_deref().is_none_or(|t| t == s.topic)
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

    /// Compiles and configures a plugin on a blocking thread.
    async fn load<W: World>(
        &mut self,
        name: &str,
        config: &PluginConfig,
        seed: Option<u64>,
    ) -> anyhow::Result<Plugin<W>> {
        let (runtime, name, config) = (self.runtime.clone(), name.to_string(), config.clone());
        let plugin = tokio::task::spawn_blocking(move || runtime.load::<W>(&name, &config, seed)).await??;
        self.running_hashes
            .insert(normalize(plugin.path()), plugin.hash().to_string());
        crate::ops::state::plugin_loaded(plugin.name(), plugin.path(), plugin.hash());
        Ok(plugin)
    }

    async fn create_topics(&self, pipeline: &Pipeline) -> anyhow::Result<()> {
        let used: Vec<_> = pipeline
            .topics
            .iter()
            .filter(|t| {
                pipeline
                    .generators
                    .iter()
                    .any(|g| g.topic == t.name && self.wants_generator(g))
                    || pipeline.sinks.iter().any(|s| s.topic == t.name && self.wants_sink(s))
            })
            .cloned()
            .collect();
        for (name, status) in kafka::create_topics(&pipeline.kafka, &used).await? {
            if status == kafka::TopicStatus::Created {
                tracing::info!(topic = name, "created topic");
            }
        }
        Ok(())
    }

    fn spawn_generator(&mut self, config: GeneratorConfig, plugin: Plugin<GeneratorWorld>) {
        let name = config.name.clone();
        // A counted run is produced by one process only (see `RunLease`).
        let claim = config.count.map(|_| (config.topic.clone(), config.name.clone()));
        let kafka = self.pipeline.kafka.clone();
        let (config_tx, config_rx) = watch::channel(config);
        let (swaps_tx, swaps_rx) = std::sync::mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(GeneratorStats::default());
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
        };
        let task = tokio::task::spawn_blocking(move || {
            let _lease = match &claim {
                Some((topic, name)) => Some(crate::kafka::claim_counted_run(&kafka, topic, name)?),
                None => None,
            };
            generator::run(run, plugin)
        });
        self.generators.insert(
            name,
            GeneratorUnit {
                config: config_tx,
                swaps: swaps_tx,
                stop,
                stats,
                task,
            },
        );
    }

    fn spawn_sink(&mut self, config: SinkConfig, mapper: Plugin<MapperWorld>) {
        let name = config.name.clone();
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
        self.sinks.insert(
            name,
            SinkUnit {
                config: config_tx,
                swaps: swaps_tx,
                stop: stop_tx,
                stats,
                task,
            },
        );
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
        if self.pipeline_text.as_deref() == Some(text.as_str()) {
            return;
        }
        let new = match Pipeline::parse(&path, &text) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!("{e}\n  the running pipeline is unchanged; fix the file and save it again");
                return;
            }
        };
        self.pipeline_text = Some(text);
        let started = Instant::now();
        self.apply(new).await;
        tracing::info!(path = %path.display(), ms = started.elapsed().as_millis(), "pipeline file reloaded");
    }

    /// Applies a new, valid pipeline as a difference from the running one.
    async fn apply(&mut self, new: Pipeline) {
        let old = std::mem::replace(&mut self.pipeline, new.clone());
        if old.kafka != new.kafka || old.postgres != new.postgres {
            tracing::warn!(
                "changes to [kafka] or [postgres] (addresses, TLS files) need a restart of the host; they are not applied, the rest is"
            );
            // Keep running against the connections the units were started with.
            self.pipeline.kafka = old.kafka.clone();
            self.pipeline.postgres = old.postgres.clone();
        }
        // Topics in use that do not exist yet (idempotent; existing ones are left alone).
        let current = self.pipeline.clone();
        if let Err(e) = self.create_topics(&current).await {
            tracing::error!(error = %format!("{e:#}"), "cannot create the topics of the new pipeline");
        }

        if old.checks != new.checks || old.audit != new.audit {
            tracing::info!(
                checks = new.checks.len(),
                "checks changed; restarting the periodic audit"
            );
            self.restart_audit();
        }

        // Generators.
        let wanted: BTreeMap<String, GeneratorConfig> = new
            .generators
            .iter()
            .filter(|g| self.wants_generator(g))
            .map(|g| (g.name.clone(), g.clone()))
            .collect();
        let running: Vec<String> = self.generators.keys().cloned().collect();
        for name in running.iter().filter(|n| !wanted.contains_key(*n)) {
            if let Some(unit) = self.generators.remove(name) {
                tracing::info!(generator = name, "generator removed");
                unit.stop.store(true, Ordering::SeqCst);
                self.retiring.push((format!("generator {name}"), unit.task));
            }
        }
        for (name, config) in wanted {
            let before = old.generators.iter().find(|g| g.name == name);
            match (before, self.generators.contains_key(&name)) {
                (Some(before), true) => {
                    if before.plugin != config.plugin || before.seed != config.seed {
                        match self
                            .load::<GeneratorWorld>(&format!("generator {name}"), &config.plugin, config.seed)
                            .await
                        {
                            Ok(plugin) => {
                                if let Some(unit) = self.generators.get(&name) {
                                    let _ = unit.swaps.send(plugin);
                                }
                            }
                            Err(e) => {
                                tracing::error!(generator = name, error = %format!("{e:#}"), "new plugin settings refused; keeping the old plugin");
                                continue;
                            }
                        }
                    }
                    if *before != config
                        && let Some(unit) = self.generators.get(&name)
                    {
                        let _ = unit.config.send(config);
                    }
                }
                _ => match self
                    .load::<GeneratorWorld>(&format!("generator {name}"), &config.plugin, config.seed)
                    .await
                {
                    Ok(plugin) => {
                        tracing::info!(generator = name, topic = %config.topic, "generator added");
                        self.spawn_generator(config, plugin);
                    }
                    Err(e) => {
                        tracing::error!(generator = name, error = %format!("{e:#}"), "cannot start the new generator")
                    }
                },
            }
        }

        // Sinks.
        let wanted: BTreeMap<String, SinkConfig> = new
            .sinks
            .iter()
            .filter(|s| self.wants_sink(s))
            .map(|s| (s.name.clone(), s.clone()))
            .collect();
        let running: Vec<String> = self.sinks.keys().cloned().collect();
        for name in &running {
            let restart = match (old.sinks.iter().find(|s| &s.name == name), wanted.get(name)) {
                (_, None) => true,
                // A new mode or key needs the table checked again.
                (Some(o), Some(n)) => {
                    (&o.topic, &o.table, &o.group, &o.instance_id, &o.mode)
                        != (&n.topic, &n.table, &n.group, &n.instance_id, &n.mode)
                }
                (None, Some(_)) => false,
            };
            if restart && let Some(unit) = self.sinks.remove(name) {
                tracing::info!(
                    sink = name,
                    "sink stopping (removed, or its topic, table or group changed)"
                );
                let _ = unit.stop.send(true);
                // Wait: a replacement with the same group must not overlap it.
                match unit.task.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::error!(sink = name, error = %format!("{e:#}"), "sink ended with an error"),
                    Err(e) => tracing::error!(sink = name, error = %e, "sink task failed"),
                }
            }
        }
        for (name, config) in wanted {
            let before = old.sinks.iter().find(|s| s.name == name);
            if self.sinks.contains_key(&name) {
                let before = before.expect("a running sink was in the old pipeline");
                if before.mapper != config.mapper {
                    match self
                        .load::<MapperWorld>(&format!("sink {name}"), &config.mapper, None)
                        .await
                    {
                        Ok(plugin) => {
                            if let Some(unit) = self.sinks.get(&name) {
                                let _ = unit.swaps.send(Swap {
                                    plugin,
                                    detected: Instant::now(),
                                });
                            }
                        }
                        Err(e) => {
                            tracing::error!(sink = name, error = %format!("{e:#}"), "new mapper settings refused; keeping the old mapper");
                            continue;
                        }
                    }
                }
                // A key that moved in the file is no change of mode, but its
                // errors must name its new line.
                if (*before != config || before.mode.at() != config.mode.at())
                    && let Some(unit) = self.sinks.get(&name)
                {
                    let _ = unit.config.send(config);
                }
            } else {
                match self
                    .load::<MapperWorld>(&format!("sink {name}"), &config.mapper, None)
                    .await
                {
                    Ok(mapper) => {
                        tracing::info!(
                            sink = name,
                            topic = %config.topic,
                            table = %config.table,
                            "sink started by reload"
                        );
                        self.spawn_sink(config, mapper);
                    }
                    Err(e) => tracing::error!(sink = name, error = %format!("{e:#}"), "cannot start the sink"),
                }
            }
        }
    }

    /// A plugin file changed: compile it once per world that uses it, make one
    /// configured instance per unit, then hand each to its unit.
    async fn plugin_changed(&mut self, path: &Path) {
        let detected = Instant::now();
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot read the changed plugin; keeping the running one");
                return;
            }
        };
        let hash = content_hash(&bytes);
        let old_hash = self.running_hashes.get(path).cloned();
        let seen = self.seen_hashes.insert(path.to_path_buf(), hash.clone());
        if old_hash.as_deref() == Some(hash.as_str()) || seen.as_deref() == Some(hash.as_str()) {
            return;
        }
        let bytes = Arc::new(bytes);
        if self.pipeline.checks.iter().any(|c| normalize(&c.plugin.path) == path) {
            // Check plugins are loaded by the audit task, which reports a bad
            // one as a finding; starting it again picks up the new file.
            tracing::info!(path = %path.display(), new_hash = hash, "check plugin changed; restarting the periodic audit");
            self.restart_audit();
            self.running_hashes.insert(path.to_path_buf(), hash.clone());
        }
        tracing::info!(path = %path.display(), old_hash = old_hash.as_deref().unwrap_or("-"), new_hash = hash, "plugin changed; compiling");

        let generators: Vec<GeneratorConfig> = self
            .pipeline
            .generators
            .iter()
            .filter(|g| self.generators.contains_key(&g.name) && normalize(&g.plugin.path) == path)
            .cloned()
            .collect();
        let sinks: Vec<SinkConfig> = self
            .pipeline
            .sinks
            .iter()
            .filter(|s| self.sinks.contains_key(&s.name) && normalize(&s.mapper.path) == path)
            .cloned()
            .collect();
        let mut swapped = false;
        if let Some(first) = generators.first() {
            match self.compile::<GeneratorWorld>(path, &bytes, &first.plugin).await {
                Ok(compiled) => {
                    for g in &generators {
                        match compiled.instantiate(&format!("generator {}", g.name), &g.plugin, g.seed) {
                            Ok(plugin) => {
                                if let Some(unit) = self.generators.get(&g.name) {
                                    let _ = unit.swaps.send(plugin);
                                    swapped = true;
                                    tracing::info!(generator = g.name, path = %path.display(), old_hash = old_hash.as_deref().unwrap_or("-"), new_hash = hash, swap_ms = detected.elapsed().as_millis(), "generator plugin swapped");
                                }
                            }
                            Err(e) => refused(path, &e),
                        }
                    }
                }
                Err(e) => refused(path, &e),
            }
        }
        if let Some(first) = sinks.first() {
            match self.compile::<MapperWorld>(path, &bytes, &first.mapper).await {
                Ok(compiled) => {
                    for s in &sinks {
                        match compiled.instantiate(&format!("sink {}", s.name), &s.mapper, None) {
                            Ok(plugin) => {
                                if let Some(unit) = self.sinks.get(&s.name) {
                                    let _ = unit.swaps.send(Swap { plugin, detected });
                                    swapped = true;
                                }
                            }
                            Err(e) => refused(path, &e),
                        }
                    }
                }
                Err(e) => refused(path, &e),
            }
        }
        if swapped {
            crate::ops::metrics::reload(&path.display().to_string(), &hash, None);
            self.running_hashes.insert(path.to_path_buf(), hash);
        }
    }

    async fn compile<W: World>(
        &self,
        path: &Path,
        bytes: &Arc<Vec<u8>>,
        config: &PluginConfig,
    ) -> Result<Compiled<W>, PluginError> {
        let (runtime, path, bytes, limits) = (self.runtime.clone(), path.to_path_buf(), bytes.clone(), config.limits);
        match tokio::task::spawn_blocking(move || runtime.compile_bytes::<W>(&path, &bytes, &limits)).await {
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
        let finished: Vec<String> = self
            .generators
            .iter()
            .filter(|(_, u)| u.task.is_finished())
            .map(|(n, _)| n.clone())
            .collect();
        for name in finished {
            if let Some(unit) = self.generators.remove(&name) {
                let delivered = unit.stats.delivered();
                self.reap(format!("generator {name}"), unit.task);
                tracing::info!(generator = name, produced = delivered, "generator finished");
            }
        }
        if self.generators.is_empty() {
            let _ = self.generators_done.send(true);
        }
        let finished: Vec<String> = self
            .sinks
            .iter()
            .filter(|(_, u)| u.task.is_finished())
            .map(|(n, _)| n.clone())
            .collect();
        for name in finished {
            if let Some(unit) = self.sinks.remove(&name) {
                let (rows, dead) = (unit.stats.rows(), unit.stats.dead_letters());
                self.reap(format!("sink {name}"), unit.task);
                tracing::info!(sink = name, rows, dead_letters = dead, "sink finished");
            }
        }
        !self.failures.is_empty() || (self.generators.is_empty() && self.sinks.is_empty())
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
        for (name, u) in &self.generators {
            tracing::info!(generator = name, produced = u.stats.delivered(), "progress");
        }
        for (name, u) in &self.sinks {
            tracing::info!(
                sink = name,
                rows = u.stats.rows(),
                dead_letters = u.stats.dead_letters(),
                "progress"
            );
        }
    }

    /// Asks every unit to stop (generators flush, sinks write the batch in
    /// flight), waits for them, and reports failures.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(audit) = self.audit.take() {
            let _ = audit.stop.send(true);
            let _ = audit.task.await;
        }
        for unit in self.generators.values() {
            unit.stop.store(true, Ordering::SeqCst);
        }
        for unit in self.sinks.values() {
            let _ = unit.stop.send(true);
        }
        let mut tasks: Vec<(String, JoinHandle<anyhow::Result<()>>)> = std::mem::take(&mut self.retiring);
        tasks.extend(
            std::mem::take(&mut self.generators)
                .into_iter()
                .map(|(n, u)| (format!("generator {n}"), u.task)),
        );
        tasks.extend(
            std::mem::take(&mut self.sinks)
                .into_iter()
                .map(|(n, u)| (format!("sink {n}"), u.task)),
        );
        for (name, task) in tasks {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => self.failures.push(format!("{name}: {e:#}")),
                Err(e) => self.failures.push(format!("{name}: task failed: {e}")),
            }
        }
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

fn refused(path: &Path, e: &PluginError) {
    crate::ops::metrics::reload(&path.display().to_string(), "-", Some(e.to_string()));
    tracing::error!(path = %path.display(), error = %e, "changed plugin refused; the running version keeps serving");
}
