//! `scripts/bench`: the pipeline's throughput, latency and memory against the
//! local stack, each figure next to what the machine can do without the host.
//!
//! For each partition count (1 and 4 by default), on N messages of 100 bytes
//! of JSON (the `bench-json` generator plugin):
//!
//! - produce: the host's generator loop with the WASM generator, against plain
//!   librdkafka sending the same bytes with the same producer settings;
//! - sink, from the pre-filled topic: Kafka → WASM `json-row` → PostgreSQL,
//!   exactly once, against (a) the host's consumer with a sink that maps
//!   nothing and discards, (b) one binary `COPY` of the same rows into an
//!   identical table, (c) the host with batch size 1, (d) the host with the
//!   same `json-row` logic in native Rust; (h) `mode = "upsert"` on
//!   (partition, offset mod half the partition), so every key comes twice;
//! - end-to-end latency from produce to committed row at a moderate rate;
//! - peak resident memory of the `host` binary at default settings, at each
//!   partition count and with four sinks;
//! - remote: the sink, append and upsert, with round trips added between the
//!   host and PostgreSQL by a delaying proxy, and the round trips per batch;
//! - badrows: one batch of 20,000 with 1 and with 100 rows PostgreSQL
//!   refuses, beside a clean one (not run by default; `--only badrows`);
//! - fanout: a mapper of two tables (`orders`: an order and its items)
//!   beside `json-row` on the same order messages (not run by default;
//!   `--only fanout`).
//!
//! Run it with `scripts/bench [--messages N] [--partitions 1,4] [--only ...]`:
//! the production profile, as deployed; `--quick`, the dev profile (the
//! dependencies as the demo and the tests built them) with the host crate at
//! opt-level 2. Every table names the build.

mod avro;
mod badrows;
mod fanout;
mod latency;
mod memory;
mod produce;
mod proxy;
mod remote;
mod report;
mod setup;
mod sink;

use anyhow::Context as _;
use std::time::Duration;

/// What to run, from the command line.
#[derive(Debug, Clone)]
pub struct Args {
    pub messages: u64,
    pub partitions: Vec<i32>,
    pub only: Vec<String>,
    /// Which sink modes (default all): discard, copy, wasm, native, batch1, scraped, upsert, avro.
    pub sinks: Vec<String>,
    /// Messages per second of the latency run.
    pub latency_rate: u64,
    pub latency_duration: Duration,
    /// How long the batch-size-1 mode runs (it is ~1000 times slower).
    pub batch1_duration: Duration,
    /// Keep topics and tables for a look afterwards.
    pub keep: bool,
    /// The sinks' batch size (default: the host's default).
    pub batch_size: Option<usize>,
    /// How many times each sink mode runs; the best run counts.
    pub repeat: u32,
    /// Round-trip times added between the host and PostgreSQL (remote lines).
    pub rtt: Vec<Duration>,
    /// `scripts/bench --quick`: the dev build (the binary checks it is one).
    pub quick: bool,
}

const USAGE: &str = "usage: scripts/bench [--quick] [--messages N] [--partitions 1,4] [--only produce,sink,latency,memory,remote,badrows,fanout]
                    [--sinks discard,copy,wasm,native,batch1,scraped,upsert,avro,python,javascript] [--rtt-ms 2,10]
                    [--latency-rate MSG_PER_S] [--latency-seconds S] [--batch1-seconds S] [--batch-size N] [--repeat R] [--keep]";

impl Args {
    fn parse() -> anyhow::Result<Self> {
        let mut args = Self {
            messages: 1_000_000,
            partitions: vec![1, 4],
            only: Vec::new(),
            sinks: Vec::new(),
            latency_rate: 1_000,
            latency_duration: Duration::from_secs(15),
            batch1_duration: Duration::from_secs(15),
            keep: false,
            batch_size: None,
            repeat: 2,
            rtt: vec![Duration::from_millis(2), Duration::from_millis(10)],
            quick: false,
        };
        let mut it = std::env::args().skip(1);
        while let Some(arg) = it.next() {
            let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value\n{USAGE}"));
            match arg.as_str() {
                // Passed by `cargo bench`.
                "--bench" => {}
                "--messages" => args.messages = value("--messages")?.replace('_', "").parse()?,
                "--partitions" => {
                    args.partitions = value("--partitions")?
                        .split(',')
                        .map(str::parse)
                        .collect::<Result<_, _>>()?
                }
                "--only" => args.only = value("--only")?.split(',').map(str::to_string).collect(),
                "--sinks" => args.sinks = value("--sinks")?.split(',').map(str::to_string).collect(),
                "--latency-rate" => args.latency_rate = value("--latency-rate")?.parse()?,
                "--latency-seconds" => {
                    args.latency_duration = Duration::from_secs(value("--latency-seconds")?.parse()?)
                }
                "--batch1-seconds" => args.batch1_duration = Duration::from_secs(value("--batch1-seconds")?.parse()?),
                "--keep" => args.keep = true,
                "--quick" => args.quick = true,
                "--rtt-ms" => {
                    args.rtt = value("--rtt-ms")?
                        .split(',')
                        .map(|v| v.parse().map(Duration::from_millis))
                        .collect::<Result<_, _>>()?
                }
                "--batch-size" => args.batch_size = Some(value("--batch-size")?.parse()?),
                "--repeat" => args.repeat = value("--repeat")?.parse()?,
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                other => anyhow::bail!("unknown argument {other:?}\n{USAGE}"),
            }
        }
        anyhow::ensure!(args.messages >= 1000, "--messages must be at least 1000");
        anyhow::ensure!((1..=10).contains(&args.repeat), "--repeat must be between 1 and 10");
        anyhow::ensure!(
            !args.partitions.is_empty() && args.partitions.iter().all(|p| (1..=64).contains(p)),
            "--partitions takes counts between 1 and 64"
        );
        anyhow::ensure!(
            (1..=1000).contains(&args.latency_rate),
            "--latency-rate must be between 1 and 1000 messages a second"
        );
        anyhow::ensure!(
            args.rtt.iter().all(|r| r.as_millis() <= 1000),
            "--rtt-ms takes round trips of at most 1000 ms"
        );
        Ok(args)
    }

    fn wants(&self, part: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == part)
    }

    /// Parts that run only when named.
    fn named(&self, part: &str) -> bool {
        self.only.iter().any(|o| o == part)
    }

    pub fn wants_sink(&self, mode: &str) -> bool {
        self.sinks.is_empty() || self.sinks.iter().any(|o| o == mode)
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse()?;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut env = setup::Env::new(&args)?;
    report::header(&args)?;
    let result = measure(&args, &mut env).await;
    if args.keep {
        eprintln!("bench: keeping topics {:?} and tables {:?}", env.topics, env.tables);
    } else if let Err(e) = env.clean_up().await {
        eprintln!("bench: cleaning up failed: {e:#}");
    }
    result
}

async fn measure(args: &Args, env: &mut setup::Env) -> anyhow::Result<()> {
    if args.named("badrows") {
        badrows::run(args, env).await?;
        if args.only.len() == 1 {
            return Ok(());
        }
    }
    if args.named("fanout") {
        fanout::run(args, env).await?;
        if args.only.iter().all(|o| o == "fanout" || o == "badrows") {
            return Ok(());
        }
    }
    let mut figures = Vec::new();
    for &partitions in &args.partitions {
        let mut f = report::Figures::new(partitions, args.messages);
        // The sinks read what the host produced, so they need the produce step.
        if args.wants("produce") || args.wants("sink") || args.wants("remote") {
            let payloads = produce::run(args, env, partitions, &mut f).await?;
            if args.wants("sink") {
                sink::run(args, env, partitions, &payloads, &mut f).await?;
                if args.wants_sink("avro") {
                    avro::run(env, args.batch_size, partitions, &payloads, &mut f).await?;
                }
            }
        }
        if args.wants("remote") && f.topic.is_some() {
            remote::run(args, env, partitions, &mut f).await?;
        }
        if args.wants("latency") {
            latency::run(args, env, partitions, &mut f).await?;
        }
        report::partition_table(&f);
        figures.push(f);
    }
    let mut memory = Vec::new();
    if args.wants("memory") {
        for &partitions in &args.partitions {
            memory.push(memory::run(args, env, partitions, 1).await?);
        }
        let partitions = *args.partitions.iter().max().expect("at least one partition count");
        memory.push(memory::run(args, env, partitions, memory::MANY_SINKS).await?);
    }
    report::summary(&figures, &memory);
    Ok(())
}
