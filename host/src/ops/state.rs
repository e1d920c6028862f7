//! What the running host knows about itself, for `/status`, the status page
//! and readiness: the sinks and generators running, the plugins loaded, the
//! reachability of Kafka and PostgreSQL and the latest audit findings. Units
//! register themselves when they start and leave when they stop.

use crate::config::Pipeline;
use crate::findings::Finding;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

/// Throughput samples kept per sink (one per sampling period).
pub const HISTORY_SAMPLES: usize = 72;

#[derive(Debug, Clone, Default, Serialize)]
pub struct SinkLive {
    /// It stopped (done, removed, or failed); its figures stay for the status.
    pub finished: bool,
    pub topic: String,
    pub table: String,
    /// Connected to PostgreSQL and its statements prepared.
    pub connected: bool,
    /// Paused with `host sink pause`: keeps its partitions, writes nothing.
    pub paused: bool,
    /// Partitions assigned to this sink's consumer (`None`: no assignment yet).
    pub assigned: Option<Vec<i32>>,
    pub messages: u64,
    pub rows: u64,
    pub dead_letters: u64,
    /// Next offset stored in PostgreSQL per partition, as of the last commit.
    pub stored: BTreeMap<i32, i64>,
    /// Kafka's end offset per partition, as last sampled.
    pub end: BTreeMap<i32, i64>,
    /// (unix ms, rows per second) over the last minutes.
    pub throughput: VecDeque<(u64, f64)>,
    #[serde(skip)]
    pub last_sample: Option<(u64, u64)>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct GeneratorLive {
    /// It stopped (its count reached, removed, or failed).
    pub finished: bool,
    pub topic: String,
    /// The Kafka producer exists (librdkafka connects lazily; Kafka's own
    /// reachability is probed separately).
    pub producer_up: bool,
    pub produced: u64,
    pub delivery_errors: u64,
}

/// Reachability of an outside system, as last probed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Reach {
    /// `None`: not probed yet.
    pub ok: Option<bool>,
    pub error: Option<String>,
    pub checked_at_ms: u64,
}

#[derive(Default)]
pub struct Live {
    pub sinks: BTreeMap<String, SinkLive>,
    pub generators: BTreeMap<String, GeneratorLive>,
    /// By plugin name (`sink favorite_languages`, `generator langs`).
    pub plugins: BTreeMap<String, super::plugin_live::PluginLive>,
    /// The pipeline as it runs now (after every reload); `None` before the start.
    pub pipeline: Option<Pipeline>,
    pub postgres: Reach,
    pub kafka: Reach,
    /// Probed only while a sink or generator uses a registry format.
    pub registry: Reach,
    pub findings: Option<Arc<Mutex<Vec<Finding>>>>,
    /// What a unit reported that keeps the host from being ready.
    pub problems: BTreeMap<String, String>,
}

static LIVE: LazyLock<Mutex<Live>> = LazyLock::new(|| Mutex::new(Live::default()));

/// The live state, locked (a panic elsewhere does not make it unreadable).
pub fn lock() -> MutexGuard<'static, Live> {
    LIVE.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Marks a unit finished when dropped (its figures stay for the status).
pub struct Registered {
    kind: Kind,
    name: String,
}

enum Kind {
    Sink,
    Generator,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut live = lock();
        match self.kind {
            Kind::Sink => {
                if let Some(s) = live.sinks.get_mut(&self.name) {
                    s.finished = true;
                    s.connected = false;
                }
            }
            Kind::Generator => {
                if let Some(g) = live.generators.get_mut(&self.name) {
                    g.finished = true;
                    g.producer_up = false;
                }
            }
        }
        live.problems.remove(&self.name);
    }
}

/// A sink starts; it counts as running (and not yet ready) until the guard drops.
pub fn sink_started(name: &str, topic: &str, table: &str) -> Registered {
    lock().sinks.insert(
        name.to_string(),
        SinkLive {
            topic: topic.to_string(),
            table: table.to_string(),
            ..Default::default()
        },
    );
    Registered {
        kind: Kind::Sink,
        name: name.to_string(),
    }
}

/// The sink's PostgreSQL session is up (or down again).
pub fn sink_connected(name: &str, connected: bool) {
    if let Some(s) = lock().sinks.get_mut(name) {
        s.connected = connected;
    }
}

/// The sink was paused or resumed (`host sink pause|resume`).
pub fn sink_paused(name: &str, paused: bool) {
    if let Some(s) = lock().sinks.get_mut(name) {
        s.paused = paused;
    }
}

/// The sink's consumer got a new assignment.
pub fn sink_assigned<'a>(name: &str, partitions: impl IntoIterator<Item = &'a i32>) {
    let mut list: Vec<i32> = partitions.into_iter().copied().collect();
    list.sort_unstable();
    if let Some(s) = lock().sinks.get_mut(name) {
        s.assigned = Some(list);
    }
}

pub(super) fn sink_committed(name: &str, messages: u64, rows: u64, dead_letters: u64, stored: BTreeMap<i32, i64>) {
    if let Some(s) = lock().sinks.get_mut(name) {
        s.messages += messages;
        s.rows += rows;
        s.dead_letters += dead_letters;
        s.stored.extend(stored);
    }
}

/// A generator starts; it counts as running until the guard drops.
pub fn generator_started(name: &str, topic: &str) -> Registered {
    lock().generators.insert(
        name.to_string(),
        GeneratorLive {
            topic: topic.to_string(),
            producer_up: true,
            ..Default::default()
        },
    );
    Registered {
        kind: Kind::Generator,
        name: name.to_string(),
    }
}

pub(super) fn generator_progress(name: &str, produced: u64, errors: u64) {
    if let Some(g) = lock().generators.get_mut(name) {
        g.produced = produced;
        g.delivery_errors = errors;
    }
}

/// A unit reports what keeps it from working (`None`: it works again).
pub fn problem(unit: &str, what: Option<String>) {
    let mut live = lock();
    match what {
        Some(w) => live.problems.insert(unit.to_string(), w),
        None => live.problems.remove(unit),
    };
}

/// The pipeline runs as `pipeline` says from now on: what it no longer
/// names (a sink or generator removed, their plugins) leaves the status.
pub fn set_pipeline(pipeline: &Pipeline) {
    let names: BTreeSet<String> = pipeline
        .generators
        .iter()
        .map(|g| format!("generator {}", g.name))
        .chain(pipeline.sinks.iter().map(|s| format!("sink {}", s.name)))
        .chain(pipeline.checks.iter().map(|c| format!("check {}", c.name)))
        .collect();
    super::plugin_live::retain(&names);
    let mut live = lock();
    let gone: Vec<(String, Vec<i32>)> = live
        .sinks
        .iter()
        .filter(|(name, _)| !pipeline.sinks.iter().any(|s| &s.name == *name))
        .map(|(name, s)| (name.clone(), s.end.keys().chain(s.stored.keys()).copied().collect()))
        .collect();
    for (name, partitions) in gone {
        live.sinks.remove(&name);
        super::metrics::sink_removed(&name, &partitions);
    }
    live.generators
        .retain(|name, _| pipeline.generators.iter().any(|g| &g.name == name));
    live.pipeline = Some(pipeline.clone());
}

/// The pipeline as the host runs it now (`None`: no pipeline started).
pub fn pipeline() -> Option<Pipeline> {
    lock().pipeline.clone()
}

/// The periodic audit's latest findings (replaced when the audit restarts).
pub fn set_audit(latest: Option<Arc<Mutex<Vec<Finding>>>>) {
    lock().findings = latest;
}

/// The latest audit findings.
pub fn findings() -> Vec<Finding> {
    let shared = lock().findings.clone();
    shared
        .map(|f| f.lock().unwrap_or_else(|p| p.into_inner()).clone())
        .unwrap_or_default()
}

/// Why the host is not ready (empty: ready). Ready means: every sink is
/// connected to PostgreSQL and has partitions assigned, every generator's
/// producer is up, and Kafka and PostgreSQL answered the last probe.
pub fn not_ready(live: &Live) -> Vec<String> {
    let mut why = Vec::new();
    let needs_pg = live.sinks.values().any(|s| !s.finished);
    let needs_kafka = needs_pg || live.generators.values().any(|g| !g.finished);
    if needs_kafka {
        match (live.kafka.ok, &live.kafka.error) {
            (Some(true), _) => {}
            (Some(false), e) => why.push(format!("Kafka unreachable: {}", e.as_deref().unwrap_or("no answer"))),
            (None, _) => why.push("Kafka not probed yet".into()),
        }
    }
    if needs_pg {
        match (live.postgres.ok, &live.postgres.error) {
            (Some(true), _) => {}
            (Some(false), e) => why.push(format!(
                "PostgreSQL unreachable: {}",
                e.as_deref().unwrap_or("no answer")
            )),
            (None, _) => why.push("PostgreSQL not probed yet".into()),
        }
    }
    if let (Some(false), e) = (live.registry.ok, &live.registry.error) {
        why.push(format!(
            "schema registry unreachable: {}",
            e.as_deref().unwrap_or("no answer")
        ));
    }
    for (name, s) in live.sinks.iter().filter(|(_, s)| !s.finished) {
        if !s.connected {
            why.push(format!("sink {name}: not connected to PostgreSQL"));
        }
        match &s.assigned {
            None => why.push(format!(
                "sink {name}: no partitions of topic {:?} assigned yet",
                s.topic
            )),
            Some(p) if p.is_empty() => why.push(format!(
                "sink {name}: its consumer group gave it no partition of topic {:?}",
                s.topic
            )),
            Some(_) => {}
        }
    }
    for (name, g) in live.generators.iter().filter(|(_, g)| !g.finished) {
        if !g.producer_up {
            why.push(format!("generator {name}: producer not up"));
        }
    }
    for (unit, what) in &live.problems {
        why.push(format!("{unit}: {what}"));
    }
    why
}
