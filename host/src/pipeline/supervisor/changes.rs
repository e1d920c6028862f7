//! Reloads: the watched files, a saved pipeline file applied as a difference
//! from the running one, and a changed plugin file handed to its units.

use super::super::plan::{self, Action};
use super::super::reload::normalize;
use super::super::reload_report::ReloadReport;
use super::Supervisor;
use super::execute::Source;
use crate::config::Pipeline;
use crate::plugins::content_hash;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

impl Supervisor {
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
        if let Err(e) = super::super::registry_columns::resolve(&mut new).await {
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
        match super::super::registry_columns::resolve(&mut new).await {
            Ok(true) => {
                let started = Instant::now();
                let path = self.pipeline.path.clone();
                let report = self.apply(new).await;
                report.log(&path, started.elapsed().as_millis());
            }
            Ok(false) => {}
            Err(e) => tracing::warn!("{e:#}; the columns stay as they are"),
        }
        super::super::registry_columns::passed();
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
}
