//! Check plugin: for every partition, compares the sink group's committed
//! offset in Kafka with the next offset stored in PostgreSQL (the truth), and
//! the lag (messages not yet stored: end offset − stored offset).
//!
//! Findings, subject `topic/partition` (`sink:topic/partition` when several
//! sinks read the topic, so each sink's partition gets its own verdict):
//! `error` when one side is ahead (and by
//! how many), or when the database's offset lies past the end of the topic
//! (the topic was created again: a sink stops there rather than skip
//! messages), `info` when both agree, `warning` when the lag exceeds the
//! `lag_warning` setting (default 1000 messages).
use sdk::check::{Finding, Guest, PartitionState, Severity, Snapshot};
use std::sync::OnceLock;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Warn when more messages than this wait to be stored.
    #[serde(default = "default_lag_warning")]
    lag_warning: i64,
}

fn default_lag_warning() -> i64 {
    1000
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

struct SyncAudit;

impl Guest for SyncAudit {
    fn configure(settings: String) -> Result<(), String> {
        let parsed: Settings = sdk::parse_settings("sync-audit", &settings)?;
        if parsed.lag_warning < 0 {
            return Err("sync-audit: settings.lag_warning must be 0 or more".into());
        }
        SETTINGS
            .set(parsed)
            .map_err(|_| "sync-audit: configure called twice".to_string())
    }

    fn run(state: Snapshot) -> Vec<Finding> {
        let lag_warning = SETTINGS.get().map_or_else(default_lag_warning, |s| s.lag_warning);
        state
            .partitions
            .iter()
            .flat_map(|p| audit(p, shared_topic(&state, p), lag_warning))
            .collect()
    }
}

/// Whether another sink reads the same topic as `p`'s sink.
fn shared_topic(state: &Snapshot, p: &PartitionState) -> bool {
    state.partitions.iter().any(|o| o.topic == p.topic && o.sink != p.sink)
}

fn audit(p: &PartitionState, shared_topic: bool, lag_warning: i64) -> Vec<Finding> {
    let subject = if shared_topic {
        format!("{}:{}/{}", p.sink, p.topic, p.partition)
    } else {
        format!("{}/{}", p.topic, p.partition)
    };
    let finding = |severity, message: String| Finding {
        severity,
        subject: subject.clone(),
        message,
    };
    let group = &p.consumer_group;
    let past_end = match (p.stored_offset, p.end_offset) {
        (Some(s), Some(end)) if s > end => Some((s, end)),
        _ => None,
    };
    let verdict = match (p.stored_offset, p.committed_offset) {
        _ if let Some((s, end)) = past_end => finding(
            Severity::Error,
            format!(
                "database past the end of the topic: PostgreSQL holds {s}, the partition ends at {end} (the topic was created again, or the offsets come from another Kafka cluster); the sink stops rather than skip the messages below {s}; delete the stored offsets of table {} to store the topic from its beginning",
                p.table
            ),
        ),
        (None, None) => finding(Severity::Info, "nothing stored or committed yet".into()),
        (Some(s), Some(c)) if s == c => finding(Severity::Info, format!("in sync at offset {s}")),
        (Some(s), Some(c)) if s > c => finding(
            Severity::Error,
            format!(
                "database ahead by {}: PostgreSQL holds {s}, Kafka's committed offset of group {group} is {c} (saved in the database but not committed to Kafka); the next run commits it",
                s - c
            ),
        ),
        (Some(s), Some(c)) => finding(
            Severity::Error,
            format!(
                "Kafka ahead by {}: Kafka's committed offset of group {group} is {c}, PostgreSQL holds {s} (committed to Kafka but not saved in the database); the next run resumes from the database",
                c - s
            ),
        ),
        (Some(s), None) => finding(
            Severity::Error,
            format!(
                "database ahead: PostgreSQL holds {s}, group {group} has no committed offset in Kafka; the next run commits it"
            ),
        ),
        (None, Some(c)) => finding(
            Severity::Error,
            format!(
                "Kafka ahead: group {group} committed {c}, PostgreSQL holds nothing for table {}; the next run starts from the beginning",
                p.table
            ),
        ),
    };
    let mut findings = vec![verdict];
    if let Some(end) = p.end_offset {
        let lag = end - p.stored_offset.unwrap_or(0);
        if lag > lag_warning {
            findings.push(finding(
                Severity::Warning,
                format!("lag of {lag} messages (end offset {end}), above lag_warning = {lag_warning}"),
            ));
        }
    }
    findings
}

sdk::export_check!(SyncAudit);
