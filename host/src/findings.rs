//! What an audit finds: plain data the audit makes, the pipeline keeps and
//! the status page and metrics show, so it lives below all three.

use serde::Serialize;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

/// One thing the audit found.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// What it is about: `topic/partition`, `postgres`, `kafka`, a table, or
    /// `check <name>` when a check plugin itself failed.
    pub subject: String,
    pub message: String,
    /// Who found it: `host`, or `check <name>` for a check plugin.
    pub source: String,
}

impl Finding {
    pub(crate) fn host(severity: Severity, subject: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            severity,
            subject: subject.into(),
            message: message.into(),
            source: "host".into(),
        }
    }
}
