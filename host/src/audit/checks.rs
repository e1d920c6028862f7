//! The check plugins of `[[checks]]`: loaded on first use, each call under its
//! deadline and memory cap, every failure turned into a finding about the
//! plugin. A plugin that failed to load is tried again on the next round, so
//! a fixed file is picked up without a restart.

use super::{Finding, Severity};
use crate::config::CheckConfig;
use crate::plugins::check::{self, Snapshot};
use crate::plugins::{CheckWorld, Plugin, Runtime};
use std::sync::{Arc, Mutex};

/// Most findings kept from one plugin in one round.
const MAX_FINDINGS_PER_CHECK: usize = 1000;
/// Longest subject kept from a plugin, in characters.
const MAX_SUBJECT_CHARS: usize = 200;
/// Longest message kept from a plugin, in characters.
const MAX_MESSAGE_CHARS: usize = 4000;

/// The configured check plugins. Cheap to clone; rounds run one at a time.
#[derive(Clone)]
pub struct CheckSet {
    runtime: Runtime,
    slots: Arc<Mutex<Vec<Slot>>>,
}

struct Slot {
    config: CheckConfig,
    plugin: Option<Plugin<CheckWorld>>,
}

impl CheckSet {
    /// Nothing is loaded until the first round.
    pub fn new(runtime: Runtime, configs: &[CheckConfig]) -> Self {
        let slots = configs
            .iter()
            .map(|c| Slot {
                config: c.clone(),
                plugin: None,
            })
            .collect();
        Self {
            runtime,
            slots: Arc::new(Mutex::new(slots)),
        }
    }

    /// Hands the snapshot to every plugin, in order, on a blocking thread
    /// (plugin calls are synchronous and bounded by their deadlines).
    pub async fn run(&self, snapshot: Snapshot) -> Vec<Finding> {
        let this = self.clone();
        match tokio::task::spawn_blocking(move || this.run_blocking(&snapshot)).await {
            Ok(findings) => findings,
            Err(e) => vec![Finding::host(
                Severity::Error,
                "checks",
                format!("the check plugins' thread failed: {e}"),
            )],
        }
    }

    /// Loads every plugin not loaded yet, so the status shows them before the
    /// first round (a failure is tried again, and reported, by the round).
    pub async fn preload(&self) {
        let this = self.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let mut slots = this.slots.lock().unwrap_or_else(|p| p.into_inner());
            for slot in slots.iter_mut().filter(|s| s.plugin.is_none()) {
                let name = format!("check {}", slot.config.name);
                let _ = this.load(&name, slot);
            }
        })
        .await;
    }

    /// Loads a slot's plugin and records the outcome for the status page.
    fn load<'a>(&self, name: &str, slot: &'a mut Slot) -> Result<&'a mut Plugin<CheckWorld>, String> {
        match self.runtime.load::<CheckWorld>(name, &slot.config.plugin, None) {
            Ok(p) => {
                crate::ops::plugin_live::loaded(&p);
                Ok(slot.plugin.insert(p))
            }
            Err(e) => {
                crate::ops::plugin_live::refused_unit(name, &slot.config.plugin.path, &e.to_string());
                Err(e.to_string())
            }
        }
    }

    fn run_blocking(&self, snapshot: &Snapshot) -> Vec<Finding> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if slots.is_empty() {
            return vec![Finding::host(
                Severity::Info,
                "checks",
                "no [[checks]] in the pipeline file, so nothing judged the snapshot; add sync-audit (see pipeline.toml)",
            )];
        }
        let mut findings = Vec::new();
        for slot in slots.iter_mut() {
            let name = format!("check {}", slot.config.name);
            let plugin = match &mut slot.plugin {
                Some(p) => p,
                None => match self.load(&name, slot) {
                    Ok(p) => p,
                    Err(e) => {
                        findings.push(about_plugin(&name, e));
                        continue;
                    }
                },
            };
            match plugin.run(snapshot) {
                Ok(found) => findings.extend(accept(&name, found)),
                Err(e) => findings.push(about_plugin(&name, e.to_string())),
            }
        }
        findings
    }
}

/// Loads every check plugin with its settings, without running it: one line
/// per plugin for `host validate`, or the first error.
pub fn validate(runtime: &Runtime, configs: &[CheckConfig]) -> anyhow::Result<Vec<String>> {
    configs
        .iter()
        .map(|c| {
            let p = runtime.load::<CheckWorld>(&format!("check {}", c.name), &c.plugin, None)?;
            Ok(format!("{}: {} (hash {})", p.name(), p.path().display(), p.hash()))
        })
        .collect()
}

/// A finding about a check plugin that failed.
fn about_plugin(name: &str, error: String) -> Finding {
    Finding::host(Severity::Error, name, error)
}

/// Takes a plugin's findings, bounded in number and size.
fn accept(name: &str, found: Vec<check::Finding>) -> Vec<Finding> {
    let total = found.len();
    let mut out: Vec<Finding> = found
        .into_iter()
        .take(MAX_FINDINGS_PER_CHECK)
        .map(|f| Finding {
            severity: match f.severity {
                check::Severity::Info => Severity::Info,
                check::Severity::Warning => Severity::Warning,
                check::Severity::Error => Severity::Error,
            },
            subject: truncate(f.subject, MAX_SUBJECT_CHARS),
            message: truncate(f.message, MAX_MESSAGE_CHARS),
            source: name.to_string(),
        })
        .collect();
    if total > MAX_FINDINGS_PER_CHECK {
        out.push(Finding::host(
            Severity::Warning,
            name,
            format!("returned {total} findings; only the first {MAX_FINDINGS_PER_CHECK} are kept"),
        ));
    }
    out
}

fn truncate(mut text: String, max_chars: usize) -> String {
    if let Some((cut, _)) = text.char_indices().nth(max_chars) {
        text.truncate(cut);
        text.push('…');
    }
    text
}
