//! The periodic audit of `host run`: started with the checks of the
//! pipeline it judges, and restarted when they or the pipeline change.

use super::super::reload::normalize;
use super::Supervisor;
use crate::plugins::content_hash;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The periodic audit of `host run`: its task, how to stop it, its latest findings.
pub(super) struct Audit {
    pub(super) task: JoinHandle<()>,
    pub(super) stop: watch::Sender<bool>,
    latest: Arc<std::sync::Mutex<Vec<crate::audit::Finding>>>,
}

impl Supervisor {
    /// (Re)starts the periodic audit with the current checks, when `host run`
    /// runs the whole pipeline and the audit is on. Records the check plugins'
    /// hashes either way: they run from these bytes now.
    pub(super) fn restart_audit(&mut self) {
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
}
