//! The host's Prometheus metrics: one registry for the process, updated by
//! one-line calls where things happen (a batch committed, a partition fenced,
//! a plugin called) and encoded by `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabels {
    pub sink: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub sink: String,
    pub partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GeneratorLabels {
    pub generator: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabels {
    pub plugin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub plugin: String,
    pub hash: String,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SeverityLabels {
    pub severity: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn batch_buckets() -> Histogram {
    // 1 .. 65,536 messages.
    Histogram::new(exponential_buckets(1.0, 4.0, 9))
}

fn seconds_buckets() -> Histogram {
    // 0.1 ms .. ~13 s.
    Histogram::new(exponential_buckets(0.0001, 4.0, 9))
}

/// Every metric the host exports.
pub struct Metrics {
    registry: Registry,
    pub sink_messages: Family<SinkLabels, Counter>,
    pub sink_rows: Family<SinkLabels, Counter>,
    pub sink_dead_letters: Family<SinkLabels, Counter>,
    pub sink_batches: Family<SinkLabels, Counter>,
    pub sink_fenced: Family<SinkLabels, Counter>,
    pub sink_rewinds: Family<SinkLabels, Counter>,
    pub sink_stuck_seconds: Family<SinkLabels, Gauge>,
    pub sink_paused: Family<SinkLabels, Gauge>,
    pub sink_skipped: Family<SinkLabels, Counter>,
    pub sink_batch_size: Histograms<SinkLabels>,
    pub sink_write_seconds: Histograms<SinkLabels>,
    pub sink_stored_offset: Family<PartitionLabels, Gauge>,
    pub sink_lag: Family<PartitionLabels, Gauge>,
    pub generator_messages: Family<GeneratorLabels, Counter>,
    pub generator_delivery_errors: Family<GeneratorLabels, Counter>,
    pub plugin_calls: Family<PluginLabels, Counter>,
    pub plugin_traps: Family<PluginLabels, Counter>,
    pub plugin_timeouts: Family<PluginLabels, Counter>,
    pub plugin_call_seconds: Histograms<PluginLabels>,
    pub plugin_memory_high_water: Family<PluginLabels, Gauge>,
    pub reloads: Family<ReloadLabels, Counter>,
    pub audit_findings: Family<SeverityLabels, Gauge>,
    pub http_requests: Counter,
    start_time: Gauge,
    build_info: Family<BuildLabels, Gauge>,
}

/// The process's metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

impl Metrics {
    fn new() -> Self {
        let mut r = Registry::with_prefix("wasm_stream");
        let m = Self {
            registry: Registry::default(),
            sink_messages: Family::default(),
            sink_rows: Family::default(),
            sink_dead_letters: Family::default(),
            sink_batches: Family::default(),
            sink_fenced: Family::default(),
            sink_rewinds: Family::default(),
            sink_stuck_seconds: Family::default(),
            sink_paused: Family::default(),
            sink_skipped: Family::default(),
            sink_batch_size: Family::new_with_constructor(batch_buckets),
            sink_write_seconds: Family::new_with_constructor(seconds_buckets),
            sink_stored_offset: Family::default(),
            sink_lag: Family::default(),
            generator_messages: Family::default(),
            generator_delivery_errors: Family::default(),
            plugin_calls: Family::default(),
            plugin_traps: Family::default(),
            plugin_timeouts: Family::default(),
            plugin_call_seconds: Family::new_with_constructor(seconds_buckets),
            plugin_memory_high_water: Family::default(),
            reloads: Family::default(),
            audit_findings: Family::default(),
            http_requests: Counter::default(),
            start_time: Gauge::default(),
            build_info: Family::default(),
        };
        r.register(
            "sink_messages",
            "Messages a sink settled (stored as rows or dead letters) and committed",
            m.sink_messages.clone(),
        );
        r.register("sink_rows", "Rows a sink committed to its table", m.sink_rows.clone());
        r.register(
            "sink_dead_letters",
            "Messages a sink committed to the dead-letter table",
            m.sink_dead_letters.clone(),
        );
        r.register("sink_batches", "Batches a sink committed", m.sink_batches.clone());
        r.register(
            "sink_fenced_writes",
            "Batches rolled back because another consumer moved a stored offset",
            m.sink_fenced.clone(),
        );
        r.register(
            "sink_rewinds",
            "Times a sink went back to the offsets stored in PostgreSQL",
            m.sink_rewinds.clone(),
        );
        r.register(
            "sink_stuck_seconds",
            "How long a sink has failed every write of its batch (0: it commits)",
            m.sink_stuck_seconds.clone(),
        );
        r.register(
            "sink_paused",
            "1 while a sink is paused (host sink pause): it keeps its partitions and writes nothing",
            m.sink_paused.clone(),
        );
        r.register(
            "sink_skipped_messages",
            "Messages a sink with on_lost_offsets = \"skip\" went past without storing: deleted by retention before they were stored, or below the stored offset of a topic created again",
            m.sink_skipped.clone(),
        );
        r.register(
            "sink_batch_size",
            "Messages per committed batch",
            m.sink_batch_size.clone(),
        );
        r.register(
            "sink_write_seconds",
            "Time from launching a batch write to its commit",
            m.sink_write_seconds.clone(),
        );
        r.register(
            "sink_stored_offset",
            "Next offset stored in PostgreSQL, per partition",
            m.sink_stored_offset.clone(),
        );
        r.register(
            "sink_lag",
            "Messages in Kafka not yet stored (end offset - stored offset), per partition",
            m.sink_lag.clone(),
        );
        r.register(
            "generator_messages",
            "Messages a generator produced that Kafka acknowledged",
            m.generator_messages.clone(),
        );
        r.register(
            "generator_delivery_errors",
            "Messages Kafka did not acknowledge",
            m.generator_delivery_errors.clone(),
        );
        r.register("plugin_calls", "Calls into a plugin", m.plugin_calls.clone());
        r.register(
            "plugin_traps",
            "Plugin calls that trapped or ran out of memory",
            m.plugin_traps.clone(),
        );
        r.register(
            "plugin_timeouts",
            "Plugin calls stopped at their deadline",
            m.plugin_timeouts.clone(),
        );
        r.register(
            "plugin_call_seconds",
            "Duration of a plugin call",
            m.plugin_call_seconds.clone(),
        );
        r.register(
            "plugin_memory_high_water_bytes",
            "Largest linear memory a plugin instance grew to",
            m.plugin_memory_high_water.clone(),
        );
        r.register(
            "plugin_reloads",
            "Plugin reloads, by plugin, new hash and result (ok or failed)",
            m.reloads.clone(),
        );
        r.register(
            "audit_findings",
            "Findings of the latest audit round, by severity",
            m.audit_findings.clone(),
        );
        r.register(
            "http_requests",
            "Requests the HTTP server answered",
            m.http_requests.clone(),
        );
        r.register(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch",
            m.start_time.clone(),
        );
        r.register("build_info", "The host's version (value 1)", m.build_info.clone());
        m.start_time.set(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        );
        m.build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        Self { registry: r, ..m }
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

fn sink(name: &str) -> SinkLabels {
    SinkLabels { sink: name.to_string() }
}

/// A batch committed: its counts, how long its write took, and the stored
/// offsets it moved.
pub fn batch_committed(
    name: &str,
    (messages, rows, dead_letters): (u64, u64, u64),
    took: Duration,
    stored: &std::collections::HashMap<i32, Option<i64>>,
) {
    let m = &*METRICS;
    let l = sink(name);
    m.sink_messages.get_or_create(&l).inc_by(messages);
    m.sink_rows.get_or_create(&l).inc_by(rows);
    m.sink_dead_letters.get_or_create(&l).inc_by(dead_letters);
    m.sink_batches.get_or_create(&l).inc();
    m.sink_batch_size.get_or_create(&l).observe(messages as f64);
    m.sink_write_seconds.get_or_create(&l).observe(took.as_secs_f64());
    let offsets: BTreeMap<i32, i64> = stored.iter().filter_map(|(p, o)| o.map(|o| (*p, o))).collect();
    for (p, o) in &offsets {
        m.sink_stored_offset
            .get_or_create(&PartitionLabels {
                sink: name.to_string(),
                partition: *p,
            })
            .set(*o);
    }
    super::state::sink_committed(name, messages, rows, dead_letters, offsets);
}

/// A sink skipped messages Kafka no longer holds (`on_lost_offsets = "skip"`).
pub fn skipped(name: &str, messages: u64) {
    METRICS.sink_skipped.get_or_create(&sink(name)).inc_by(messages);
}

/// A batch write was fenced: another consumer moved a stored offset.
pub fn fenced(name: &str) {
    METRICS.sink_fenced.get_or_create(&sink(name)).inc();
}

/// How long a sink has failed every write (zero once it commits again).
pub fn stuck(name: &str, failing: Duration) {
    METRICS
        .sink_stuck_seconds
        .get_or_create(&sink(name))
        .set(i64::try_from(failing.as_secs()).unwrap_or(i64::MAX));
}

/// A sink was paused or resumed (`host sink pause|resume`).
pub fn paused(name: &str, paused: bool) {
    METRICS.sink_paused.get_or_create(&sink(name)).set(i64::from(paused));
}

/// A sink went back to the stored offsets.
pub fn rewind(name: &str) {
    METRICS.sink_rewinds.get_or_create(&sink(name)).inc();
}

/// A generator's totals so far (acknowledged, failed). Counters only go up:
/// a generator restarted by a reload counts from where the last one was.
pub fn generator_progress(name: &str, counter: &crate::kafka::DeliveryCounter) {
    let delivered = counter.delivered.load(Ordering::Relaxed);
    let failed = counter.failed.load(Ordering::Relaxed);
    let l = GeneratorLabels {
        generator: name.to_string(),
    };
    METRICS
        .generator_messages
        .get_or_create(&l)
        .inner()
        .fetch_max(delivered, Ordering::Relaxed);
    METRICS
        .generator_delivery_errors
        .get_or_create(&l)
        .inner()
        .fetch_max(failed, Ordering::Relaxed);
    super::state::generator_progress(name, delivered, failed);
}

/// The plugin engine's [`crate::plugins::Observer`]: each call's count,
/// time and failure, and each instance's memory high-water mark.
pub fn plugin_observer() -> std::sync::Arc<dyn crate::plugins::Observer> {
    struct PluginMetrics;
    impl crate::plugins::Observer for PluginMetrics {
        fn call(&self, plugin: &str, took: Duration, error: Option<&crate::plugins::PluginError>) {
            plugin_call(plugin, took, error);
        }
        fn memory(&self, plugin: &str, peak_bytes: usize) {
            plugin_memory(plugin, peak_bytes);
        }
    }
    std::sync::Arc::new(PluginMetrics)
}

/// One plugin call and how it ended.
fn plugin_call(name: &str, took: Duration, error: Option<&crate::plugins::PluginError>) {
    use crate::plugins::PluginError;
    let l = PluginLabels {
        plugin: name.to_string(),
    };
    let m = &*METRICS;
    m.plugin_calls.get_or_create(&l).inc();
    m.plugin_call_seconds.get_or_create(&l).observe(took.as_secs_f64());
    match error {
        Some(PluginError::Trap { .. } | PluginError::OutOfMemory { .. } | PluginError::OutputTooLarge { .. }) => {
            m.plugin_traps.get_or_create(&l).inc();
        }
        Some(PluginError::Timeout { .. }) => {
            m.plugin_timeouts.get_or_create(&l).inc();
        }
        _ => {}
    }
}

/// A changed plugin file: handed to its units (bytes `hash`), or refused
/// with the reason the status page shows until a later load of it succeeds.
pub fn reload(path: &std::path::Path, hash: &str, error: Option<String>) {
    METRICS
        .reloads
        .get_or_create(&ReloadLabels {
            plugin: path.display().to_string(),
            hash: hash.to_string(),
            result: if error.is_some() { "failed" } else { "ok" },
        })
        .inc();
    // A success is shown by each unit as it takes the new plugin.
    if let Some(e) = error {
        super::plugin_live::refused_file(path, Some(hash), &e);
    }
}

/// A plugin's health since the host started: (calls, traps, timeouts), and
/// for a sink's mapper the messages it dead-lettered.
pub fn plugin_health(name: &str) -> (u64, u64, u64, Option<u64>) {
    let m = &*METRICS;
    let l = PluginLabels {
        plugin: name.to_string(),
    };
    let count = |f: &Family<PluginLabels, Counter>| f.get(&l).map_or(0, |c| c.get());
    let dead = name
        .strip_prefix("sink ")
        .map(|s| m.sink_dead_letters.get(&sink(s)).map_or(0, |c| c.get()));
    (
        count(&m.plugin_calls),
        count(&m.plugin_traps),
        count(&m.plugin_timeouts),
        dead,
    )
}

/// A sink left the pipeline: its per-partition gauges go with it.
pub fn sink_removed(name: &str, partitions: &[i32]) {
    for p in partitions {
        let l = PartitionLabels {
            sink: name.to_string(),
            partition: *p,
        };
        METRICS.sink_lag.remove(&l);
        METRICS.sink_stored_offset.remove(&l);
    }
    METRICS.sink_stuck_seconds.remove(&sink(name));
    METRICS.sink_paused.remove(&sink(name));
}

/// Sets the lag of a sink's partition.
pub fn lag(name: &str, partition: i32, lag: i64) {
    METRICS
        .sink_lag
        .get_or_create(&PartitionLabels {
            sink: name.to_string(),
            partition,
        })
        .set(lag);
}

/// Sets the per-severity counts of the latest audit round.
pub fn audit_counts(info: i64, warning: i64, error: i64) {
    for (severity, n) in [("info", info), ("warning", warning), ("error", error)] {
        METRICS
            .audit_findings
            .get_or_create(&SeverityLabels { severity })
            .set(n);
    }
}

/// The most a plugin's instance held in linear memories and tables together.
fn plugin_memory(name: &str, peak_bytes: usize) {
    METRICS
        .plugin_memory_high_water
        .get_or_create(&PluginLabels {
            plugin: name.to_string(),
        })
        .inner()
        .fetch_max(i64::try_from(peak_bytes).unwrap_or(i64::MAX), Ordering::Relaxed);
}
