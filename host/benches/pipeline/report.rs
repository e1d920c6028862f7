//! The figures of a run, printed as tables of messages per second and ratios,
//! then the targets (issue 23) with the ratios of this run. Every table
//! names the build that made it.

use crate::Args;
use std::time::Duration;

/// Messages handled in a time.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    pub messages: u64,
    pub took: Duration,
}

impl Measured {
    pub fn new(messages: u64, took: Duration) -> Self {
        Self { messages, took }
    }

    pub fn rate(&self) -> f64 {
        self.messages as f64 / self.took.as_secs_f64().max(1e-9)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Latency {
    /// Messages per second.
    pub rate: u64,
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Clone, Copy)]
pub struct Memory {
    pub partitions: i32,
    /// Sinks reading the topic, each into a table of its own.
    pub sinks: usize,
    pub messages: u64,
    pub peak_bytes: u64,
    pub took: Duration,
}

/// A sink with PostgreSQL a round trip away (see `remote`).
#[derive(Debug, Clone, Copy)]
pub struct Remote {
    pub rtt: Duration,
    pub upsert: bool,
    pub steady: Measured,
    pub round_trips_per_batch: f64,
    pub messages_per_batch: f64,
}

/// Everything measured for one partition count.
#[derive(Debug, Clone)]
pub struct Figures {
    pub partitions: i32,
    pub messages: u64,
    pub message_bytes: f64,
    /// The sinks' batch size.
    pub batch_size: usize,
    /// The topic the host filled, which the sinks read.
    pub topic: Option<String>,
    pub produce_host: Option<Measured>,
    pub produce_plain: Option<Measured>,
    pub kafka_ceiling: Option<Measured>,
    pub copy_ceiling: Option<Measured>,
    pub copy_batched: Option<Measured>,
    pub sink_wasm: Option<Measured>,
    pub sink_native: Option<Measured>,
    /// The WASM sink with the [http] server up and /metrics scraped every second.
    pub sink_scraped: Option<Measured>,
    pub sink_batch1: Option<Measured>,
    /// The WASM sink with `mode = "upsert"`, every key seen twice (half the
    /// messages update a row an earlier batch inserted).
    pub sink_upsert: Option<Measured>,
    /// The same messages in Avro through the schema registry, json-row.
    pub sink_avro: Option<Measured>,
    /// The registry requests the Avro sink made, per million messages.
    pub avro_registry_requests_per_million: Option<f64>,
    /// The Python and JavaScript json-row ports (opt-in: `--sinks python,javascript`),
    /// each with the time its component took to load (compile, instantiate, configure).
    pub sink_python: Option<(Measured, Duration)>,
    pub sink_javascript: Option<(Measured, Duration)>,
    pub latency: Option<Latency>,
    /// The remote lines, by round-trip time, append then upsert.
    pub remote: Vec<Remote>,
}

impl Figures {
    pub fn new(partitions: i32, messages: u64) -> Self {
        Self {
            partitions,
            messages,
            message_bytes: 0.0,
            batch_size: host::config::DEFAULT_BATCH_SIZE,
            topic: None,
            produce_host: None,
            produce_plain: None,
            kafka_ceiling: None,
            copy_ceiling: None,
            copy_batched: None,
            sink_wasm: None,
            sink_native: None,
            sink_scraped: None,
            sink_batch1: None,
            sink_upsert: None,
            sink_avro: None,
            avro_registry_requests_per_million: None,
            sink_python: None,
            sink_javascript: None,
            latency: None,
            remote: Vec::new(),
        }
    }

    fn ratio(a: Option<Measured>, b: Option<Measured>) -> Option<f64> {
        Some(a?.rate() / b?.rate())
    }

    pub fn produce_ratio(&self) -> Option<f64> {
        Self::ratio(self.produce_host, self.produce_plain)
    }

    /// The lower of the two ceilings.
    pub fn ceiling(&self) -> Option<Measured> {
        match (self.kafka_ceiling, self.copy_ceiling) {
            (Some(k), Some(c)) => Some(if k.rate() <= c.rate() { k } else { c }),
            _ => None,
        }
    }

    pub fn ceiling_ratio(&self) -> Option<f64> {
        Self::ratio(self.sink_wasm, self.ceiling())
    }

    pub fn batch1_ratio(&self) -> Option<f64> {
        Self::ratio(self.sink_wasm, self.sink_batch1)
    }

    pub fn scraped_ratio(&self) -> Option<f64> {
        Self::ratio(self.sink_scraped, self.sink_wasm)
    }

    pub fn upsert_ratio(&self) -> Option<f64> {
        Self::ratio(self.sink_upsert, self.sink_wasm)
    }

    pub fn avro_ratio(&self) -> Option<f64> {
        Self::ratio(self.sink_avro, self.sink_wasm)
    }

    pub fn native_ratio(&self) -> Option<f64> {
        Self::ratio(self.sink_wasm, self.sink_native)
    }

    /// The slowest remote line against its local figure, at the longest round trip.
    pub fn remote_ratio(&self) -> Option<f64> {
        let longest = self.remote.iter().map(|r| r.rtt).max()?;
        self.remote
            .iter()
            .filter(|r| r.rtt == longest)
            .filter_map(|r| Self::ratio(Some(r.steady), crate::remote::local(self, r.upsert)))
            .min_by(f64::total_cmp)
    }

    pub fn latency_p50(&self) -> Option<f64> {
        self.latency.map(|l| l.p50_ms)
    }

    pub fn latency_p99(&self) -> Option<f64> {
        self.latency.map(|l| l.p99_ms)
    }
}

/// Which build made the figures: the directory cargo built the `host`
/// binary into beside the benchmark (`production`, or `debug` for `--quick`).
pub fn build() -> &'static str {
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_host"));
    match binary.parent().and_then(|d| d.file_name()).and_then(|d| d.to_str()) {
        Some("production") => "production profile (as deployed)",
        Some("debug") => "dev profile, host crate at opt-level 2 (--quick; not what users deploy)",
        Some("release") => "release profile",
        _ => "unknown build",
    }
}

pub fn header(args: &Args) -> anyhow::Result<()> {
    // `--quick` promises the dev build; any build runs without it (labelled).
    anyhow::ensure!(
        !args.quick || build().starts_with("dev"),
        "this benchmark binary is the {}, but --quick was given: run it through scripts/bench --quick",
        build()
    );
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    println!(
        "wasm-stream benchmark: {} messages, partitions {:?}; {cores} cores ({cpu}), {mem_gib:.0} GiB; build: {}",
        group(args.messages as f64),
        args.partitions,
        build()
    );
    Ok(())
}

/// `1234567.8` as `1,234,568`.
fn group(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn line(what: &str, m: Option<Measured>, note: String) {
    if let Some(m) = m {
        println!(
            "  {what:<46} {:>11} msg/s  {:>7.2} s  {note}",
            group(m.rate()),
            m.took.as_secs_f64()
        );
    }
}

fn times(r: Option<f64>, of: &str) -> String {
    r.map_or(String::new(), |r| format!("{r:.2} × {of}"))
}

pub fn partition_table(f: &Figures) {
    println!();
    println!(
        "{} partition{}, {} messages of {:.0} bytes; build: {}",
        f.partitions,
        if f.partitions == 1 { "" } else { "s" },
        group(f.messages as f64),
        f.message_bytes,
        build()
    );
    line(
        "produce: host, WASM generator",
        f.produce_host,
        times(f.produce_ratio(), "plain librdkafka"),
    );
    line("produce: plain librdkafka, same bytes", f.produce_plain, String::new());
    line(
        "sink: host, WASM json-row, exactly once",
        f.sink_wasm,
        times(f.ceiling_ratio(), "the lower ceiling"),
    );
    line(
        "  (a) Kafka ceiling: host consumer, discard",
        f.kafka_ceiling,
        String::new(),
    );
    line(
        "  (b) PostgreSQL ceiling: one binary COPY",
        f.copy_ceiling,
        String::new(),
    );
    line(
        &format!("      COPY, {} rows per transaction", f.batch_size),
        f.copy_batched,
        times(Figures::ratio(f.sink_wasm, f.copy_batched), "(sink / this)"),
    );
    line(
        "  (c) host, batch size 1",
        f.sink_batch1,
        f.batch1_ratio()
            .map_or(String::new(), |r| format!("sink = {r:.0} × this")),
    );
    line(
        "  (d) host, native json-row",
        f.sink_native,
        times(f.native_ratio(), "(WASM / native)"),
    );
    line(
        "  (e) host, /metrics scraped every second",
        f.sink_scraped,
        times(f.scraped_ratio(), "(this / unscraped sink)"),
    );
    line(
        "  (h) host, upsert, half the keys repeated",
        f.sink_upsert,
        times(f.upsert_ratio(), "(upsert / append)"),
    );
    line(
        "  (i) host, Avro via the registry, json-row",
        f.sink_avro,
        format!(
            "{}; {} registry requests per 1M",
            times(f.avro_ratio(), "(Avro / JSON)"),
            f.avro_registry_requests_per_million
                .map_or("?".to_string(), |r| format!("{r:.1}"))
        ),
    );
    for (what, figure) in [
        ("  (f) host, Python json-row (componentize-py)", f.sink_python),
        ("  (g) host, JavaScript json-row (componentize-js)", f.sink_javascript),
    ] {
        if let Some((m, load)) = figure {
            let note = times(Figures::ratio(Some(m), f.sink_wasm), "(this / Rust WASM)");
            line(what, Some(m), format!("{note}; loaded in {:.1} s", load.as_secs_f64()));
        }
    }
    for r in &f.remote {
        let local = crate::remote::local(f, r.upsert);
        let note = format!(
            "{}; {:.1} round trips and {:.0} messages a batch",
            times(Figures::ratio(Some(r.steady), local), "(this / local)"),
            r.round_trips_per_batch,
            r.messages_per_batch
        );
        line(
            &format!(
                "  (r) host, {}, PostgreSQL {} ms away",
                if r.upsert { "upsert" } else { "append" },
                r.rtt.as_millis()
            ),
            Some(r.steady),
            note,
        );
    }
    if let Some(l) = f.latency {
        println!(
            "  latency at {} msg/s, produce to committed row: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({} messages)",
            l.rate, l.p50_ms, l.p99_ms, l.max_ms, l.samples
        );
    }
}

/// A figure of the run, for one partition count.
type Ratio = fn(&Figures) -> Option<f64>;

pub fn summary(figures: &[Figures], memory: &[Memory]) {
    println!();
    println!("targets (issue 23; figures from this run; build: {})", build());
    let verdict = |ok: bool| if ok { "met" } else { "NOT MET" };
    // (what, figure, bound, whether the figure must stay at or under it)
    let targets: [(&str, Ratio, f64, bool); 10] = [
        (
            "sink ≥ 0.75 × min(Kafka, COPY ceiling)",
            Figures::ceiling_ratio,
            0.75,
            false,
        ),
        ("produce ≥ 0.95 × plain librdkafka", Figures::produce_ratio, 0.95, false),
        ("WASM mapper ≥ 0.95 × native mapper", Figures::native_ratio, 0.95, false),
        ("upsert ≥ 0.6 × append", Figures::upsert_ratio, 0.6, false),
        ("latency p50 ≤ 20 ms", Figures::latency_p50, 20.0, true),
        ("latency p99 ≤ 60 ms", Figures::latency_p99, 60.0, true),
        (
            "remote sink ≥ 0.8 × local (longest RTT)",
            Figures::remote_ratio,
            0.8,
            false,
        ),
        ("Avro sink ≥ 0.7 × JSON sink", Figures::avro_ratio, 0.7, false),
        ("sink ≥ 100 × batch size 1", Figures::batch1_ratio, 100.0, false),
        (
            "scraping /metrics costs ≤ 3% of the sink",
            Figures::scraped_ratio,
            0.97,
            false,
        ),
    ];
    for (what, ratio, bound, at_most) in targets {
        let cells: Vec<String> = figures
            .iter()
            .filter_map(|f| {
                ratio(f).map(|r| {
                    let ok = if at_most { r <= bound } else { r >= bound };
                    let shown = if at_most {
                        format!("{r:.0} ms")
                    } else {
                        format!("{r:.2}×")
                    };
                    format!(
                        "{} partition{}: {shown} {}",
                        f.partitions,
                        if f.partitions == 1 { "" } else { "s" },
                        verdict(ok)
                    )
                })
            })
            .collect();
        if !cells.is_empty() {
            println!("  {what:<40} {}", cells.join("; "));
        }
    }
    for m in memory {
        let mb = m.peak_bytes as f64 / 1e6;
        println!(
            "  {:<40} {mb:.0} MB {} (host run --once, {} messages, {} partition{}, {} sink{}, {:.1} s)",
            "host peak memory < 150 MB",
            verdict(mb < 150.0),
            group(m.messages as f64),
            m.partitions,
            if m.partitions == 1 { "" } else { "s" },
            m.sinks,
            if m.sinks == 1 { "" } else { "s" },
            m.took.as_secs_f64()
        );
    }
}
