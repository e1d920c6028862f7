//! Carrying out a plan: each [`Action`] of a reload applied to the running
//! units; a refused plugin is logged and its unit left as it was.

use super::super::plan::{self, Action, Kind, UnitConfig, UnitId};
use super::super::reload_report::ReloadReport;
use super::Supervisor;
use super::load::AnyCompiled;
use crate::config::Pipeline;
use crate::plugins::PluginError;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// Where the plugins of `SwapPlugin` actions come from.
pub(super) enum Source<'a> {
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

impl Supervisor {
    /// Carries out a plan against `pipeline` (the one now current). Returns
    /// whether any unit received a new plugin instance.
    pub(super) async fn execute(
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
}

/// An error's first line: the headline, without its hint.
fn first_line(e: &impl std::fmt::Display) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}

fn refused(path: &Path, hash: &str, e: &PluginError) {
    crate::ops::metrics::reload(path, hash, Some(e.to_string()));
    tracing::error!(path = %path.display(), error = %e, "changed plugin refused; the running version keeps serving");
}
