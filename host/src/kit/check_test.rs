//! `host plugin test` of a check: the `--snapshot` JSON read into the
//! snapshot record, and the findings printed.

use crate::plugins::{CheckWorld, Plugin, check};
use anyhow::Context as _;
use std::fmt::Write as _;
use std::path::Path;

/// The snapshot record of wit/plugin.wit, as JSON (snake_case or kebab-case keys).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotJson {
    #[serde(default, alias = "taken-at")]
    taken_at: i64,
    #[serde(default)]
    partitions: Vec<PartitionJson>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PartitionJson {
    #[serde(default)]
    sink: String,
    topic: String,
    partition: i32,
    #[serde(default)]
    table: String,
    #[serde(default, alias = "consumer-group")]
    consumer_group: String,
    #[serde(default, alias = "end-offset")]
    end_offset: Option<i64>,
    #[serde(default, alias = "committed-offset")]
    committed_offset: Option<i64>,
    #[serde(default, alias = "stored-offset")]
    stored_offset: Option<i64>,
    #[serde(default, alias = "dead-letters")]
    dead_letters: i64,
}

pub(super) fn read_snapshot(path: &Path) -> anyhow::Result<check::Snapshot> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read --snapshot file {}", path.display()))?;
    let s: SnapshotJson = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a snapshot: expected {{\"taken_at\": ms, \"partitions\": [{{\"topic\", \"partition\", \"end_offset\", \"committed_offset\", \"stored_offset\", \"dead_letters\", ...}}]}}",
            path.display()
        )
    })?;
    Ok(check::Snapshot {
        taken_at: s.taken_at,
        partitions: s
            .partitions
            .into_iter()
            .map(|p| check::PartitionState {
                sink: p.sink,
                topic: p.topic,
                partition: p.partition,
                table: p.table,
                consumer_group: p.consumer_group,
                end_offset: p.end_offset,
                committed_offset: p.committed_offset,
                stored_offset: p.stored_offset,
                dead_letters: p.dead_letters,
            })
            .collect(),
    })
}

pub(super) fn run_check(
    mut plugin: Plugin<CheckWorld>,
    snapshot: &check::Snapshot,
    json: bool,
) -> anyhow::Result<String> {
    let findings = plugin.run(snapshot)?;
    let severity = |s: check::Severity| match s {
        check::Severity::Info => "info",
        check::Severity::Warning => "warning",
        check::Severity::Error => "error",
    };
    if json {
        let list: Vec<_> = findings
            .iter()
            .map(|f| serde_json::json!({"severity": severity(f.severity), "subject": f.subject, "message": f.message}))
            .collect();
        return Ok(format!("{}\n", serde_json::to_string_pretty(&list).unwrap_or_default()));
    }
    if findings.is_empty() {
        eprintln!("no findings");
    }
    let mut out = String::new();
    for f in &findings {
        let _ = writeln!(out, "{} {}: {}", severity(f.severity), f.subject, f.message);
    }
    Ok(out)
}
