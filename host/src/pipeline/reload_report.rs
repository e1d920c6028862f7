//! What a reload of the pipeline file did, part by part, for its closing
//! log line: `pipeline file reloaded` only when every part applied, else
//! `pipeline file partly applied` at WARN, naming what applied and what was
//! refused and why (a refused plugin once read as a success: an ERROR line,
//! then `INFO pipeline file reloaded`).

use super::plan::UnitId;

/// The parts of one reload: what applied and what was refused (with why).
#[derive(Debug, Default)]
pub struct ReloadReport {
    applied: Vec<String>,
    refused: Vec<(String, String)>,
    /// Units whose restart was refused: they run on as before.
    kept: Vec<UnitId>,
}

impl ReloadReport {
    pub fn applied(&mut self, what: impl Into<String>) {
        self.applied.push(what.into());
    }

    /// `why`: the error; its first line is kept (the full error is on the
    /// line that refused it).
    pub fn refused(&mut self, what: impl Into<String>, why: &str) {
        self.refused
            .push((what.into(), why.lines().next().unwrap_or_default().to_string()));
    }

    /// A unit whose restart (a new table, topic, group or mode) was refused:
    /// it keeps running with its old settings.
    pub fn kept_running(&mut self, id: UnitId) {
        self.kept.push(id);
    }

    pub fn kept(&self) -> &[UnitId] {
        &self.kept
    }

    pub fn all_applied(&self) -> bool {
        self.refused.is_empty()
    }

    /// `a; b; c`, or `nothing`.
    pub fn applied_text(&self) -> String {
        if self.applied.is_empty() {
            "nothing".into()
        } else {
            self.applied.join("; ")
        }
    }

    /// `what (why); ...`.
    pub fn refused_text(&self) -> String {
        self.refused
            .iter()
            .map(|(what, why)| format!("{what} ({why})"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The closing line of a pipeline file reload.
    pub fn log(&self, path: &std::path::Path, ms: u128) {
        if self.all_applied() {
            tracing::info!(path = %path.display(), ms, applied = self.applied_text(), "pipeline file reloaded");
        } else {
            tracing::warn!(
                path = %path.display(),
                ms,
                applied = self.applied_text(),
                refused = self.refused_text(),
                "pipeline file partly applied: {} of {} changes refused; each refused part runs on as before",
                self.refused.len(),
                self.refused.len() + self.applied.len()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_with_a_refusal_lists_both_halves() {
        let mut r = ReloadReport::default();
        r.applied("sink rows: new settings");
        r.refused(
            "generator langs: new plugin /p/m.wasm",
            "/p/m.wasm is not a generator plugin: it exports [x]\n  hint: ...",
        );
        assert!(!r.all_applied());
        assert_eq!(r.applied_text(), "sink rows: new settings");
        assert_eq!(
            r.refused_text(),
            "generator langs: new plugin /p/m.wasm (/p/m.wasm is not a generator plugin: it exports [x])"
        );
    }

    #[test]
    fn an_empty_reload_applied_nothing() {
        let r = ReloadReport::default();
        assert!(r.all_applied());
        assert_eq!(r.applied_text(), "nothing");
    }
}
