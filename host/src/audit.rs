//! The audit: what `host check` reports, what `host run` checks periodically,
//! and `host simulate`, which puts a pipeline out of sync on purpose.
//!
//! 1. [`gather`] reads the state: from PostgreSQL, the truth (the next offset
//!    stored with the rows, dead letters, sink tables), and from Kafka the end
//!    offsets, the sink groups' committed offsets (advisory) and the topics.
//!    Every request is bounded by `[audit] timeout_ms`.
//! 2. [`CheckSet`] hands that snapshot to every check plugin of `[[checks]]`;
//!    their findings (severity, subject, message) are the verdict, so the
//!    audit logic is swapped by editing `pipeline.toml`. A plugin that traps,
//!    runs out of time or memory, or refuses its settings yields an error
//!    finding about itself; the other checks still run.
//! 3. [`render`] prints the [`Report`] as text; [`Report::to_json`] as JSON.
//!
//! Exit codes of `host check`: 0 all is well, 1 a finding of severity warning
//! or error, 2 a system could not be reached (or the check could not start).

mod checks;
mod gather;
pub mod render;
pub mod simulate;

pub use checks::CheckSet;
pub use gather::{DbReport, KafkaReport, SyncRow, TableReport, TopicReport};

use crate::config::{Pipeline, SinkConfig};
use crate::plugins::Runtime;
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

pub use crate::findings::{Finding, Severity};

/// What `host check` looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// PostgreSQL: TLS, database, per sink table the row count and last row.
    Db,
    /// Kafka: brokers, topics, partitions.
    Kafka,
    /// Offsets per partition, and the check plugins.
    Sync,
    All,
}

impl Scope {
    fn db(self) -> bool {
        matches!(self, Self::Db | Self::All)
    }
    fn kafka(self) -> bool {
        matches!(self, Self::Kafka | Self::All)
    }
    fn sync(self) -> bool {
        matches!(self, Self::Sync | Self::All)
    }
}

/// Everything one audit found out.
#[derive(Debug, Serialize)]
pub struct Report {
    pub pipeline: String,
    /// The topic the audit was restricted to.
    pub topic: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub taken_at_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db: Option<DbReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaReport>,
    /// One row per sink and partition.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync: Option<Vec<SyncRow>>,
    /// Most severe first.
    pub findings: Vec<Finding>,
    /// Systems that could not be reached or did not answer: `postgres`, `kafka`.
    pub unreachable: Vec<String>,
    pub exit_code: u8,
}

impl Report {
    fn new(pipeline: &Pipeline, topic: Option<&str>) -> Self {
        Self {
            pipeline: pipeline.path.display().to_string(),
            topic: topic.map(str::to_string),
            taken_at_ms: now_ms(),
            db: None,
            kafka: None,
            sync: None,
            findings: Vec::new(),
            unreachable: Vec::new(),
            exit_code: 0,
        }
    }

    /// Records that a system could not be reached, once per system.
    fn unreachable(&mut self, system: &str, error: &str) {
        if !self.unreachable.iter().any(|s| s == system) {
            self.unreachable.push(system.to_string());
            self.findings.push(Finding::host(Severity::Error, system, error));
        }
    }

    /// The value when the system answered; otherwise records it as unreachable.
    fn reached<T>(&mut self, system: &str, answer: Result<T, String>) -> Option<T> {
        answer.map_err(|e| self.unreachable(system, &e)).ok()
    }

    fn finish(mut self) -> Self {
        // The same finding may come from two parts of the audit (a missing topic).
        let mut seen = std::collections::HashSet::new();
        self.findings.retain(|f| seen.insert(f.clone()));
        self.findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
        self.exit_code = if !self.unreachable.is_empty() {
            2
        } else if self.findings.iter().any(|f| f.severity >= Severity::Warning) {
            1
        } else {
            0
        };
        self
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report serializes")
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The sinks the audit covers: all, or those of `topic`.
pub fn sinks_of<'a>(pipeline: &'a Pipeline, topic: Option<&str>) -> anyhow::Result<Vec<&'a SinkConfig>> {
    let sinks: Vec<&SinkConfig> = pipeline
        .sinks
        .iter()
        .filter(|s| topic.is_none_or(|t| s.topic == t))
        .collect();
    if let Some(t) = topic
        && sinks.is_empty()
        && pipeline.topic(t).is_none()
    {
        let declared: Vec<&str> = pipeline.topics.iter().map(|t| t.name.as_str()).collect();
        anyhow::bail!(
            "topic {t:?} is not declared in {} (declared: {declared:?})",
            pipeline.path.display()
        );
    }
    Ok(sinks)
}

/// Loads every check plugin of the pipeline without running it (`host validate`).
pub fn validate_checks(pipeline: &Pipeline) -> anyhow::Result<Vec<String>> {
    checks::validate(&Runtime::new()?, &pipeline.checks)
}

/// Runs one audit with freshly loaded check plugins.
pub async fn check(
    pipeline: &Pipeline,
    runtime: &Runtime,
    scope: Scope,
    topic: Option<&str>,
) -> anyhow::Result<Report> {
    check_with(
        pipeline,
        &CheckSet::new(runtime.clone(), &pipeline.checks),
        scope,
        topic,
    )
    .await
}

/// Runs one audit with the given check plugins (kept loaded between rounds).
pub async fn check_with(
    pipeline: &Pipeline,
    checks: &CheckSet,
    scope: Scope,
    topic: Option<&str>,
) -> anyhow::Result<Report> {
    let sinks = sinks_of(pipeline, topic)?;
    let mut report = Report::new(pipeline, topic);
    let timeout = pipeline.audit.timeout;

    let pg = if scope.db() || scope.sync() {
        report.reached("postgres", gather::connect_postgres(&pipeline.postgres, timeout).await)
    } else {
        None
    };
    let cluster = if scope.kafka() || scope.sync() {
        report.reached("kafka", gather::cluster(&pipeline.kafka, timeout).await)
    } else {
        None
    };

    if scope.db() {
        report.db = Some(gather::db(pipeline, pg.as_ref(), &sinks, &mut report.findings).await);
    }
    if scope.kafka() {
        report.kafka = Some(gather::kafka(pipeline, cluster.as_ref(), topic, &mut report.findings));
    }
    if scope.sync() {
        let mut rows = gather::sync(pipeline, pg.as_ref(), cluster.as_ref(), &sinks, &mut report).await;
        if report.unreachable.is_empty() {
            let snapshot = gather::snapshot(&rows, report.taken_at_ms);
            let found = checks.run(snapshot).await;
            judged(&mut rows, &found);
            report.findings.extend(found);
        } else {
            report.findings.push(Finding::host(
                Severity::Info,
                "checks",
                "the check plugins did not run: the snapshot is incomplete",
            ));
        }
        report.sync = Some(rows);
    }
    Ok(report.finish())
}

/// Fills each row's verdict from what the check plugins said about its
/// `topic/partition`: the headline (the text before the first `": "`) of the
/// most severe finding, the first of equals; in sync unless one is an error.
/// The host adds no judgement of its own: a partition no check reported on
/// has no verdict.
fn judged(rows: &mut [SyncRow], findings: &[Finding]) {
    for row in rows {
        // `sink:topic/partition` is how a check names one sink's partition
        // when several sinks read the topic; `topic/partition` otherwise.
        let subject = format!("{}/{}", row.topic, row.partition);
        let of_sink = format!("{}:{subject}", row.sink);
        let about = || {
            findings
                .iter()
                .filter(|f| (f.subject == subject || f.subject == of_sink) && f.source.starts_with("check "))
        };
        // `max_by_key` keeps the last of equals; the first is wanted.
        let top = about().rev().max_by_key(|f| f.severity);
        let names = [
            subject.clone(),
            of_sink.clone(),
            row.sink.clone(),
            format!("sink {}", row.sink),
            row.topic.clone(),
        ];
        row.verdict = top.map(|f| headline(&f.message, &names).to_string());
        row.in_sync = top.map(|_| !about().any(|f| f.severity == Severity::Error));
    }
}

/// A message's first clause: `database ahead by 1` of `database ahead by 1:
/// PostgreSQL holds ...`. A leading clause that only names what the row
/// already shows (`sink x: lag 29`, `langs/0: ...`) is skipped: as a verdict
/// it would say nothing.
fn headline<'a>(message: &'a str, names: &[String]) -> &'a str {
    let mut rest = message.lines().next().unwrap_or_default();
    while let Some((head, tail)) = rest.split_once(": ") {
        if !names.iter().any(|n| n == head.trim()) || tail.trim().is_empty() {
            return head;
        }
        rest = tail;
    }
    rest
}

/// Runs the sync audit every `interval` until `stop` turns true (or its
/// sender is dropped), logging the findings of each round: warnings and
/// errors at their level, the rest at debug, and one summary line. The check
/// plugins stay loaded between rounds. Returns the task and the latest
/// findings, which the status and metrics work can read at any time.
pub fn spawn_periodic(
    pipeline: Pipeline,
    runtime: Runtime,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) -> (tokio::task::JoinHandle<()>, Arc<Mutex<Vec<Finding>>>) {
    let latest = Arc::new(Mutex::new(Vec::new()));
    let shared = latest.clone();
    let task = tokio::spawn(async move {
        let checks = CheckSet::new(runtime, &pipeline.checks);
        checks.preload().await;
        let start = tokio::time::Instant::now() + interval;
        let mut tick = tokio::time::interval_at(start, interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                changed = stop.changed() => if changed.is_err() { return },
            }
            if *stop.borrow() {
                return;
            }
            let round = tokio::select! {
                r = check_with(&pipeline, &checks, Scope::Sync, None) => r,
                changed = stop.changed() => if changed.is_err() || *stop.borrow() { return } else { continue },
            };
            let findings = match round {
                Ok(report) => report.findings,
                Err(e) => vec![Finding::host(Severity::Error, "audit", format!("{e:#}"))],
            };
            log_findings(&findings);
            *shared.lock().unwrap_or_else(|p| p.into_inner()) = findings;
        }
    });
    (task, latest)
}

fn log_findings(findings: &[Finding]) {
    let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
    for f in findings {
        let (subject, source, message) = (&f.subject, &f.source, &f.message);
        match f.severity {
            Severity::Error => tracing::error!(subject, source, "audit: {message}"),
            Severity::Warning => tracing::warn!(subject, source, "audit: {message}"),
            Severity::Info => tracing::debug!(subject, source, "audit: {message}"),
        }
    }
    tracing::info!(
        errors = count(Severity::Error),
        warnings = count(Severity::Warning),
        infos = count(Severity::Info),
        "audit round done"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(topic: &str, partition: i32) -> SyncRow {
        SyncRow {
            sink: "s".into(),
            topic: topic.into(),
            partition,
            table: "t".into(),
            consumer_group: "g".into(),
            end_offset: Some(10),
            committed_offset: Some(9),
            stored_offset: Some(10),
            lag: Some(0),
            difference: Some(1),
            dead_letters: 0,
            in_sync: None,
            verdict: None,
        }
    }

    fn by(check: &str, severity: Severity, subject: &str, message: &str) -> Finding {
        Finding {
            severity,
            subject: subject.into(),
            message: message.into(),
            source: format!("check {check}"),
        }
    }

    #[test]
    fn the_verdict_is_the_headline_of_the_most_severe_check_finding() {
        let mut rows = [row("langs", 0), row("langs", 1)];
        let findings = [
            by("sync-audit", Severity::Info, "langs/0", "in sync at offset 10"),
            by(
                "sync-audit",
                Severity::Error,
                "langs/1",
                "database ahead by 1: PostgreSQL holds 10, Kafka's committed offset of group g is 9",
            ),
            by("sync-audit", Severity::Warning, "langs/1", "lag of 2000 messages"),
        ];
        judged(&mut rows, &findings);
        assert_eq!(rows[0].verdict.as_deref(), Some("in sync at offset 10"));
        assert_eq!(rows[0].in_sync, Some(true));
        assert_eq!(rows[1].verdict.as_deref(), Some("database ahead by 1"));
        assert_eq!(rows[1].in_sync, Some(false));
    }

    #[test]
    fn a_warning_is_the_verdict_but_the_partition_stays_in_sync() {
        let mut rows = [row("langs", 0)];
        let findings = [
            by("sync-audit", Severity::Info, "langs/0", "in sync at offset 10"),
            by(
                "sync-audit",
                Severity::Warning,
                "langs/0",
                "lag of 2000 messages (end offset 3000), above lag_warning = 1000",
            ),
            by("dead-letter-audit", Severity::Warning, "langs/0", "3 dead letters"),
        ];
        judged(&mut rows, &findings);
        // The first of equally severe findings.
        assert_eq!(
            rows[0].verdict.as_deref(),
            Some("lag of 2000 messages (end offset 3000), above lag_warning = 1000")
        );
        assert_eq!(rows[0].in_sync, Some(true));
    }

    #[test]
    fn a_leading_clause_naming_the_sink_or_partition_is_not_the_verdict() {
        let mut rows = [row("langs", 0), row("langs", 1), row("langs", 2)];
        let findings = [
            by("lag", Severity::Warning, "langs/0", "sink s: lag 29"),
            by("lag", Severity::Warning, "langs/1", "langs/1: lag 30: above 10"),
            by("lag", Severity::Warning, "langs/2", "sink s:"),
        ];
        judged(&mut rows, &findings);
        assert_eq!(rows[0].verdict.as_deref(), Some("lag 29"));
        assert_eq!(rows[1].verdict.as_deref(), Some("lag 30"));
        assert_eq!(rows[2].verdict.as_deref(), Some("sink s:"));
    }

    #[test]
    fn the_host_judges_nothing_itself() {
        // Out of sync by the numbers, but no check said so: no verdict.
        let mut rows = [row("langs", 0)];
        let findings = [
            Finding::host(Severity::Error, "langs/0", "a host finding about the same subject"),
            by("sync-audit", Severity::Error, "other/0", "Kafka ahead by 2: ..."),
            by("sync-audit", Severity::Error, "langs/00", "not this partition"),
        ];
        judged(&mut rows, &findings);
        assert_eq!(rows[0].verdict, None);
        assert_eq!(rows[0].in_sync, None);
    }

    #[test]
    fn a_finding_about_one_sink_judges_only_that_sinks_partition() {
        let mut rows = [
            row("langs", 0),
            SyncRow {
                sink: "t".into(),
                ..row("langs", 0)
            },
        ];
        let findings = [
            by("sync-audit", Severity::Info, "s:langs/0", "in sync at offset 10"),
            by("sync-audit", Severity::Error, "t:langs/0", "Kafka ahead by 2: ..."),
        ];
        judged(&mut rows, &findings);
        assert_eq!(rows[0].verdict.as_deref(), Some("in sync at offset 10"));
        assert_eq!(rows[0].in_sync, Some(true));
        assert_eq!(rows[1].verdict.as_deref(), Some("Kafka ahead by 2"));
        assert_eq!(rows[1].in_sync, Some(false));
    }

    #[test]
    fn a_headline_is_the_first_clause_of_the_first_line() {
        assert_eq!(
            headline("database ahead by 1: PostgreSQL holds 10", &[]),
            "database ahead by 1"
        );
        assert_eq!(headline("in sync at offset 4", &[]), "in sync at offset 4");
        assert_eq!(headline("two lines\nsecond: line", &[]), "two lines");
        assert_eq!(headline("a: b: c", &[]), "a");
        assert_eq!(headline("", &[]), "");
    }
}
