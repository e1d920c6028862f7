//! The status of a pipeline, as `/status`, the status page and `host status`
//! show it: per sink the rows PostgreSQL holds, its dead letters, its stored
//! and end offsets and lag per partition, and its throughput over the last
//! minutes; the generators, the plugins, the latest audit findings, and
//! whether the host is ready (and if not, why).

use super::row_counts;
use super::state::{self, Live};
use crate::config::Pipeline;
use crate::postgres;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tokio_postgres::Client;

use super::status_read::read_stored;
pub use super::status_read::{EndOffsets, end_offsets};
pub use super::status_text::render;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub pipeline: String,
    pub version: String,
    pub generated_at_ms: u64,
    /// Whether this came from a running host (its `/status`).
    pub host_running: bool,
    pub ready: bool,
    pub not_ready: Vec<String>,
    pub postgres: Reachability,
    pub kafka: Reachability,
    pub sinks: Vec<SinkStatus>,
    pub generators: Vec<GeneratorStatus>,
    pub plugins: Vec<PluginStatus>,
    pub findings: Vec<FindingStatus>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Reachability {
    pub ok: Option<bool>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SinkStatus {
    pub name: String,
    pub topic: String,
    pub table: String,
    /// Whether this host runs it now.
    pub running: bool,
    pub connected: bool,
    /// Paused with `host sink pause` (as PostgreSQL, or else this host, says).
    #[serde(default)]
    pub paused: bool,
    pub assigned: Option<Vec<i32>>,
    /// Rows this host committed since it started.
    pub rows_written: u64,
    pub dead_letters_written: u64,
    /// Rows the table holds (`None`: PostgreSQL did not answer).
    pub table_rows: Option<i64>,
    /// Whether `table_rows` is a count or PostgreSQL's estimate (see `row_counts`).
    #[serde(default)]
    pub table_rows_kind: Option<row_counts::Kind>,
    /// Dead letters PostgreSQL holds for this sink.
    pub dead_letters: Option<i64>,
    pub partitions: Vec<PartitionStatus>,
    /// (unix ms, rows per second), oldest first.
    pub throughput: Vec<(u64, f64)>,
    /// The most frequent reasons among its recent dead letters, most frequent first.
    #[serde(default)]
    pub dead_letter_reasons: Vec<ReasonCount>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReasonCount {
    /// The reason's first line (the latest of those that differ only in numbers).
    pub reason: String,
    pub count: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PartitionStatus {
    pub partition: i32,
    pub stored: Option<i64>,
    pub end: Option<i64>,
    pub lag: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GeneratorStatus {
    pub name: String,
    pub topic: String,
    pub running: bool,
    /// Messages Kafka acknowledged in its current run, or its last one in
    /// this host; `None`: unknown (no host runs it).
    pub produced: Option<u64>,
    pub delivery_errors: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PluginStatus {
    pub name: String,
    pub path: String,
    pub hash: String,
    /// `generator`, `mapper` or `check`; `None`: not loaded.
    #[serde(default)]
    pub world: Option<String>,
    /// The plugin contract version it targets.
    #[serde(default)]
    pub contract: Option<String>,
    pub loaded_at_ms: Option<u64>,
    /// Why it is not loaded, when it is not.
    #[serde(default)]
    pub note: Option<String>,
    /// The last reload that failed (cleared by a later successful load).
    pub last_reload_error: Option<String>,
    #[serde(default)]
    pub last_reload_error_at_ms: Option<u64>,
    /// Hash of the bytes that reload refused.
    #[serde(default)]
    pub last_reload_error_hash: Option<String>,
    /// Since the host started (`None`: not running).
    #[serde(default)]
    pub calls: Option<u64>,
    #[serde(default)]
    pub traps: Option<u64>,
    #[serde(default)]
    pub timeouts: Option<u64>,
    /// A mapper's: the messages its sink dead-lettered since the host started.
    #[serde(default)]
    pub dead_letters: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FindingStatus {
    pub severity: String,
    pub subject: String,
    pub message: String,
    pub source: String,
}

/// Builds the status. `client` is an open PostgreSQL session (or `None` when
/// PostgreSQL could not be reached, with `pg_error` saying why); `live` is
/// true inside a running host, whose live state is then included.
pub async fn build(
    pipeline: &Pipeline,
    client: Option<&Client>,
    pg_error: Option<String>,
    ends: Option<EndOffsets>,
    live: bool,
) -> Status {
    let (stored, pg_error) = match client {
        Some(c) => match read_stored(c, pipeline).await {
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(format!("{e:#}"))),
        },
        None => (None, pg_error),
    };
    let guard = if live { Some(state::lock()) } else { None };
    let empty = Live::default();
    let l: &Live = guard.as_deref().unwrap_or(&empty);

    let mut postgres = Reachability {
        ok: Some(pg_error.is_none() && client.is_some()),
        error: pg_error,
    };
    let mut kafka = match &ends {
        Some(Ok(_)) => Reachability {
            ok: Some(true),
            error: None,
        },
        Some(Err(e)) => Reachability {
            ok: Some(false),
            error: Some(e.clone()),
        },
        None => Reachability {
            ok: l.kafka.ok,
            error: l.kafka.error.clone(),
        },
    };
    if live && client.is_none() && postgres.error.is_none() {
        postgres = Reachability {
            ok: l.postgres.ok,
            error: l.postgres.error.clone(),
        };
    }
    if !live && ends.is_none() {
        kafka = Reachability::default();
    }

    let mut sinks = Vec::new();
    for s in &pipeline.sinks {
        // What runs under this name now; a sink that ran with another table
        // or topic (before a reload) says nothing about this one.
        let running = l
            .sinks
            .get(&s.name)
            .filter(|r| r.table == s.table.as_str() && r.topic == s.topic.as_str());
        let stored_offsets = stored
            .as_ref()
            .and_then(|st| st.offsets.get(&(s.table.to_string(), s.topic.to_string())).cloned())
            .or_else(|| running.map(|r| r.stored.clone()))
            .unwrap_or_default();
        let end: BTreeMap<i32, i64> = match &ends {
            Some(Ok(e)) => e
                .get(s.topic.as_str())
                .map(|m| m.iter().map(|(p, o)| (*p, *o)).collect())
                .unwrap_or_default(),
            _ => running.map(|r| r.end.clone()).unwrap_or_default(),
        };
        let mut parts: Vec<i32> = stored_offsets.keys().chain(end.keys()).copied().collect();
        parts.sort_unstable();
        parts.dedup();
        let partitions = parts
            .into_iter()
            .map(|p| {
                let (st, en) = (stored_offsets.get(&p).copied(), end.get(&p).copied());
                PartitionStatus {
                    partition: p,
                    stored: st,
                    end: en,
                    lag: en.map(|e| (e - st.unwrap_or(0)).max(0)),
                }
            })
            .collect();
        sinks.push(SinkStatus {
            name: s.name.clone(),
            topic: s.topic.to_string(),
            table: s.table.to_string(),
            running: running.is_some_and(|r| !r.finished),
            connected: running.is_some_and(|r| r.connected),
            paused: match &stored {
                Some(st) => st.paused.contains(&(s.table.to_string(), s.topic.to_string())),
                None => running.is_some_and(|r| r.paused),
            },
            assigned: running.and_then(|r| r.assigned.clone()),
            rows_written: running.map_or(0, |r| r.rows),
            dead_letters_written: running.map_or(0, |r| r.dead_letters),
            table_rows: stored.as_ref().and_then(|st| st.rows.get(&s.name)).map(|r| r.0),
            table_rows_kind: stored.as_ref().and_then(|st| st.rows.get(&s.name)).map(|r| r.1),
            dead_letters: stored
                .as_ref()
                .and_then(|st| st.dead.as_ref())
                .map(|d| d.get(&s.name).copied().unwrap_or(0)),
            partitions,
            throughput: running
                .map(|r| r.throughput.iter().copied().collect())
                .unwrap_or_default(),
            dead_letter_reasons: stored
                .as_ref()
                .and_then(|st| st.reasons.get(&s.name).cloned())
                .unwrap_or_default(),
        });
    }
    let generators = pipeline
        .generators
        .iter()
        .map(|g| {
            let running = l.generators.get(&g.name);
            GeneratorStatus {
                name: g.name.clone(),
                topic: g.topic.to_string(),
                running: running.is_some_and(|r| !r.finished),
                produced: running.map(|r| r.produced),
                delivery_errors: running.map(|r| r.delivery_errors),
            }
        })
        .collect();
    let mut plugins: Vec<PluginStatus> = l
        .plugins
        .iter()
        .map(|(name, p)| {
            let (calls, traps, timeouts, dead_letters) = super::metrics::plugin_health(name);
            let loaded = p.loaded_at_ms.is_some();
            PluginStatus {
                name: name.clone(),
                path: p.path.clone(),
                hash: p.hash.clone(),
                world: p.world.clone(),
                contract: p.contract.clone(),
                loaded_at_ms: p.loaded_at_ms,
                note: p.note.clone(),
                last_reload_error: p.reload_error.as_ref().map(|e| e.message.clone()),
                last_reload_error_at_ms: p.reload_error.as_ref().map(|e| e.at_ms),
                last_reload_error_hash: p.reload_error.as_ref().and_then(|e| e.hash.clone()),
                calls: loaded.then_some(calls),
                traps: loaded.then_some(traps),
                timeouts: loaded.then_some(timeouts),
                dead_letters: dead_letters.filter(|_| loaded),
            }
        })
        .collect();
    if !live {
        // Not running: the plugins the file names.
        plugins = pipeline
            .generators
            .iter()
            .map(|g| (format!("generator {}", g.name), &g.plugin.path))
            .chain(
                pipeline
                    .sinks
                    .iter()
                    .map(|s| (format!("sink {}", s.name), &s.mapper.path)),
            )
            .chain(
                pipeline
                    .checks
                    .iter()
                    .map(|c| (format!("check {}", c.name), &c.plugin.path)),
            )
            .map(|(name, path)| PluginStatus {
                name,
                path: path.display().to_string(),
                hash: std::fs::read(path)
                    .map(|b| crate::plugins::content_hash(&b))
                    .unwrap_or_else(|e| format!("unreadable: {e}")),
                note: Some("no host is running it".to_string()),
                ..Default::default()
            })
            .collect();
    }
    let mut not_ready = if live {
        state::not_ready(l)
    } else {
        vec!["no host is running this pipeline (its [http] server did not answer)".to_string()]
    };
    if live && let Some(e) = &postgres.error {
        let line = format!("PostgreSQL unreachable: {e}");
        if !not_ready.contains(&line) && l.sinks.values().any(|s| !s.finished) {
            not_ready.push(line);
        }
    }
    let findings_src = l.findings.clone();
    drop(guard);
    let findings = findings_src
        .map(|f| f.lock().unwrap_or_else(|p| p.into_inner()).clone())
        .unwrap_or_default()
        .into_iter()
        .map(|f| FindingStatus {
            severity: format!("{:?}", f.severity).to_lowercase(),
            subject: f.subject,
            message: f.message,
            source: f.source,
        })
        .collect();
    Status {
        pipeline: pipeline.path.display().to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        generated_at_ms: state::now_ms(),
        host_running: live,
        ready: live && not_ready.is_empty(),
        not_ready,
        postgres,
        kafka,
        sinks,
        generators,
        plugins,
        findings,
    }
}

/// The status of a pipeline no host serves: PostgreSQL and Kafka asked directly.
pub async fn offline(pipeline: &Pipeline) -> Status {
    let timeout = pipeline.audit.timeout;
    let (client, pg_error) = match tokio::time::timeout(timeout, postgres::connect(&pipeline.postgres)).await {
        Ok(Ok(c)) => (Some(c), None),
        Ok(Err(e)) => (None, Some(format!("{e:#}"))),
        Err(_) => (None, Some(format!("no answer within {} ms", timeout.as_millis()))),
    };
    let mut topics: Vec<String> = pipeline.sinks.iter().map(|s| s.topic.to_string()).collect();
    topics.sort();
    topics.dedup();
    let ends = end_offsets(pipeline, topics, timeout).await;
    build(pipeline, client.as_ref(), pg_error, Some(ends), false).await
}
