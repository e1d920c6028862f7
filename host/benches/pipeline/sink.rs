//! Sink: Kafka → mapper → PostgreSQL from the topic the host filled, in
//! several modes, each from the beginning of the topic into a table of its
//! own. Rates are steady-state: from the first committed batch to the last,
//! so connecting and joining the group (the same in every mode) do not count.

use crate::Args;
use crate::report::{Figures, Measured};
use crate::setup::{self, Env};
use anyhow::Context as _;
use host::config::Pipeline;
use host::pipeline::{BatchMapper, Destination, SinkStats};
use host::plugins::mapper::{Column, ColumnType, Message, Outcome, Table, TableRows, Value};
use host::plugins::{MapperWorld, PluginError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

/// How often the progress of a sink is sampled.
const SAMPLE: Duration = Duration::from_millis(2);
/// Rows per transaction of the batched `COPY`, as the sink's default batch.
const COPY_BATCH: usize = host::config::DEFAULT_BATCH_SIZE;

pub async fn run(
    args: &Args,
    env: &mut Env,
    partitions: i32,
    payloads: &[Vec<u8>],
    f: &mut Figures,
) -> anyhow::Result<()> {
    let topic = f.topic.clone().context("the sink reads what the produce step wrote")?;
    let json_row = env.plugin("json_row");
    let sink = |name: &str, table: &str, extra: &str| {
        format!(
            "[[sinks]]\nname = \"{name}\"\ntopic = \"{topic}\"\ntable = \"{table}\"\nmapper = \"{}\"\n{extra}\n",
            json_row.display()
        )
    };
    let size = args.batch_size.map_or(String::new(), |b| format!("batch_size = {b}"));
    // The Python and JavaScript ports run when named, or by default when
    // their components are built (scripts/build, through scripts/plugin-tools).
    let ports: Vec<(&str, &str)> = [("python", "py_json_row"), ("javascript", "js_json_row")]
        .into_iter()
        .filter(|(mode, wasm)| {
            args.sinks.iter().any(|s| s == mode) || (args.sinks.is_empty() && env.plugin(wasm).is_file())
        })
        .collect();
    f.batch_size = args.batch_size.unwrap_or(COPY_BATCH);
    let n = args.messages;
    let columns = json_row_columns();
    let mut batch1 = None;

    // Each mode runs `repeat` times, interleaved, into fresh tables; the best
    // run counts (the machine is shared with a broker and a database).
    for round in 1..=args.repeat {
        let tables: Vec<String> = [
            "wasm", "native", "discard", "batch1", "scraped", "upsert", "copy", "copyb",
        ]
        .iter()
        .map(|m| env.name(&format!("p{partitions}_{m}")))
        .collect();
        let mut body = format!(
            "{}{}{}{}{}{}{}",
            setup::topic_section(&topic, partitions),
            sink("wasm", &tables[0], &size),
            sink("native", &tables[1], &size),
            sink("discard", &tables[2], &size),
            sink("batch1", &tables[3], "batch_size = 1"),
            sink("scraped", &tables[4], &size),
            sink(
                "upsert",
                &tables[5],
                &format!("{size}\nmode = \"upsert\"\nkey = [\"partition_id\", \"offset_id\"]")
            ),
        );
        let port_tables: Vec<String> = ports
            .iter()
            .map(|(mode, _)| env.name(&format!("p{partitions}_{mode}")))
            .collect();
        for ((mode, wasm), table) in ports.iter().zip(&port_tables) {
            body += &format!(
                "[[sinks]]\nname = \"{mode}\"\ntopic = \"{topic}\"\ntable = \"{table}\"\nmapper = \"{}\"\n{size}\n",
                env.plugin(wasm).display()
            );
        }
        let pipeline = env.pipeline(&format!("sink_p{partitions}_{round}.toml"), &body)?;
        env.tables.extend(tables[6..].iter().cloned());
        let step = |what: &str| eprintln!("bench: {partitions} partition(s), round {round}: {what}");
        if round == 1 {
            batch1 = Some((pipeline.clone(), tables[3].clone()));
        }

        if args.wants_sink("discard") {
            step("(a) Kafka ceiling, the host's consumer discarding");
            let mapper = Box::new(NullMapper(one_table(&columns)));
            let m = sink_run(&pipeline, "discard", mapper, Destination::Discard, None).await?;
            anyhow::ensure!(m.total == n, "the discarding sink saw {} of {n} messages", m.total);
            f.kafka_ceiling = best(f.kafka_ceiling, m.steady);
        }

        if args.wants_sink("copy") {
            step("(b) PostgreSQL ceiling, one COPY");
            let m = copy(env, &tables[6], &columns, payloads, partitions, payloads.len()).await?;
            f.copy_ceiling = best(f.copy_ceiling, m);
            step(&format!("COPY, {} rows per transaction", f.batch_size));
            let m = copy(env, &tables[7], &columns, payloads, partitions, f.batch_size).await?;
            f.copy_batched = best(f.copy_batched, m);
        }

        if args.wants_sink("wasm") {
            step("sink, WASM json-row");
            let mapper = load_mapper(env, &pipeline, "wasm").await?;
            let m = sink_run(&pipeline, "wasm", mapper, Destination::Postgres, None).await?;
            verify(env, &tables[0], n).await?;
            f.sink_wasm = best(f.sink_wasm, m.steady);
        }

        if args.wants_sink("scraped") {
            step("sink, WASM json-row, the [http] server up and /metrics scraped every second");
            let mut served = pipeline.clone();
            served.http.listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
            let server = host::ops::http::start(&served)
                .await
                .context("the [http] server did not start")?;
            let scraper = tokio::spawn(scrape(server.addr));
            let mapper = load_mapper(env, &pipeline, "scraped").await?;
            let m = sink_run(&pipeline, "scraped", mapper, Destination::Postgres, None).await;
            scraper.abort();
            drop(server);
            let m = m?;
            verify(env, &tables[4], n).await?;
            f.sink_scraped = best(f.sink_scraped, m.steady);
        }

        if args.wants_sink("upsert") {
            step("(h) sink, WASM json-row, upsert, every key twice");
            // Offsets past half of a partition repeat the keys of its first half.
            let half = (n / partitions as u64).div_ceil(2) as i64;
            let inner = load_mapper(env, &pipeline, "upsert").await?;
            let mapper = Box::new(RepeatingKeys { inner, half });
            let m = sink_run(&pipeline, "upsert", mapper, Destination::Postgres, None).await?;
            anyhow::ensure!(m.total == n, "the upsert sink settled {} of {n} messages", m.total);
            verify_upsert(env, &tables[5], half).await?;
            f.sink_upsert = best(f.sink_upsert, m.steady);
        }

        if args.wants_sink("native") {
            step("(d) sink, native json-row");
            let mapper = Box::new(NativeJsonRow(one_table(&columns)));
            let m = sink_run(&pipeline, "native", mapper, Destination::Postgres, None).await?;
            verify(env, &tables[1], n).await?;
            f.sink_native = best(f.sink_native, m.steady);
        }

        // Several times slower than the rest: one round is enough.
        for ((mode, _), table) in ports.iter().zip(&port_tables).filter(|_| round == 1) {
            step(&format!("sink, {mode} json-row"));
            let started = Instant::now();
            let mapper = load_mapper(env, &pipeline, mode).await?;
            let load = started.elapsed();
            let m = sink_run(&pipeline, mode, mapper, Destination::Postgres, None).await?;
            verify(env, table, n).await?;
            let slot = if *mode == "python" {
                &mut f.sink_python
            } else {
                &mut f.sink_javascript
            };
            if slot.is_none_or(|(best, _)| m.steady.rate() > best.rate()) {
                *slot = Some((m.steady, load));
            }
        }
    }

    let Some((pipeline, table)) = batch1 else {
        return Ok(());
    };
    if !args.wants_sink("batch1") {
        return Ok(());
    }
    eprintln!(
        "bench: {partitions} partition(s): (c) sink, batch size 1, for {} s",
        args.batch1_duration.as_secs()
    );
    let mapper = load_mapper(env, &pipeline, "batch1").await?;
    let m = sink_run(
        &pipeline,
        "batch1",
        mapper,
        Destination::Postgres,
        Some(args.batch1_duration),
    )
    .await?;
    verify(env, &table, m.total).await?;
    f.sink_batch1 = Some(m.steady);
    Ok(())
}

/// Gets `/metrics` every second, as a Prometheus server would.
async fn scrape(addr: std::net::SocketAddr) {
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/metrics");
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut scrapes = 0u64;
    loop {
        tick.tick().await;
        match client.get(&url).send().await {
            Ok(r) if r.status().is_success() => {
                let _ = r.bytes().await;
                scrapes += 1;
            }
            Ok(r) => eprintln!("bench: /metrics answered {} after {scrapes} scrapes", r.status()),
            Err(e) => eprintln!("bench: /metrics failed after {scrapes} scrapes: {e}"),
        }
    }
}

/// The faster of two measurements.
fn best(a: Option<Measured>, b: Measured) -> Option<Measured> {
    Some(match a {
        Some(a) if a.rate() >= b.rate() => a,
        _ => b,
    })
}

pub async fn load_mapper(env: &Env, pipeline: &Pipeline, sink: &str) -> anyhow::Result<Box<dyn BatchMapper>> {
    let config = sink_config(pipeline, sink)?;
    let runtime = env.runtime.clone();
    let name = format!("sink {sink}");
    let plugin =
        tokio::task::spawn_blocking(move || runtime.load::<MapperWorld>(&name, &config.mapper, None)).await??;
    Ok(Box::new(plugin))
}

fn sink_config(pipeline: &Pipeline, name: &str) -> anyhow::Result<host::config::SinkConfig> {
    pipeline
        .sinks
        .iter()
        .find(|s| s.name == name)
        .cloned()
        .with_context(|| format!("no sink {name:?} in the bench pipeline"))
}

/// What a sink run did.
pub struct SinkRun {
    /// Messages settled in all.
    pub total: u64,
    /// From the first committed batch to the end.
    pub steady: Measured,
    /// Batches committed after the first.
    pub batches: u64,
    /// What the `counter` given to [`sink_run`] counted after the first
    /// committed batch (a proxy's round trips).
    pub counted: u64,
}

/// Runs one sink until it has caught up with the topic, or for `limit` after
/// its first committed batch.
pub async fn sink_run(
    pipeline: &Pipeline,
    sink: &str,
    mapper: Box<dyn BatchMapper>,
    destination: Destination,
    limit: Option<Duration>,
) -> anyhow::Result<SinkRun> {
    sink_run_counting(pipeline, sink, mapper, destination, limit, None).await
}

/// As [`sink_run`], reading `counter` at the first commit and at the end.
pub async fn sink_run_counting(
    pipeline: &Pipeline,
    sink: &str,
    mapper: Box<dyn BatchMapper>,
    destination: Destination,
    limit: Option<Duration>,
    counter: Option<Arc<std::sync::atomic::AtomicU64>>,
) -> anyhow::Result<SinkRun> {
    let count = || {
        counter
            .as_ref()
            .map_or(0, |c| c.load(std::sync::atomic::Ordering::Relaxed))
    };
    let config = sink_config(pipeline, sink)?;
    let stats = Arc::new(SinkStats::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let (p, s) = (pipeline.clone(), stats.clone());
    let task = tokio::spawn(async move { host::pipeline::run_sink(&p, config, mapper, destination, s, stop_rx).await });
    let mut first: Option<(Instant, u64)> = None;
    let mut stopped: Option<(Instant, u64)> = None;
    let (mut first_batches, mut first_count) = (0, 0);
    while !task.is_finished() {
        let (now, m) = (Instant::now(), stats.messages());
        if first.is_none() && m > 0 {
            first = Some((now, m));
            (first_batches, first_count) = (stats.batches(), count());
        }
        if let (Some(limit), Some((t0, _))) = (limit, first)
            && now - t0 >= limit
        {
            stopped = Some((now, m));
            let _ = stop_tx.send(true);
            break;
        }
        tokio::time::sleep(SAMPLE).await;
    }
    task.await?.with_context(|| format!("sink {sink} failed"))?;
    let total = stats.messages();
    let (t1, m1) = stopped.unwrap_or((Instant::now(), total));
    let (t0, m0) = first.context("the sink committed nothing")?;
    Ok(SinkRun {
        total,
        steady: Measured::new(m1 - m0, t1 - t0),
        batches: stats.batches().saturating_sub(first_batches),
        counted: count().saturating_sub(first_count),
    })
}

/// Checks that the table holds `n` rows, one per message: exactly once.
pub async fn verify(env: &Env, table: &str, n: u64) -> anyhow::Result<()> {
    let client = env.pg().await?;
    let row = client
        .query_one(
            &format!(
                "SELECT count(*), count(DISTINCT (partition_id, offset_id)) FROM {}",
                host::postgres::ident(table)
            ),
            &[],
        )
        .await?;
    let (rows, distinct): (i64, i64) = (row.get(0), row.get(1));
    anyhow::ensure!(
        rows as u64 == n && distinct == rows,
        "table {table} holds {rows} rows ({distinct} distinct messages), expected {n}"
    );
    Ok(())
}

/// Checks that an upsert table holds one row per key: per partition, as many
/// as the partition had messages, up to `half`.
pub async fn verify_upsert(env: &Env, table: &str, half: i64) -> anyhow::Result<()> {
    let client = env.pg().await?;
    let expected: i64 = client
        .query(
            &format!(
                "SELECT next_offset FROM {} WHERE table_name = $1",
                host::postgres::ident(host::postgres::OFFSETS_TABLE)
            ),
            &[&table],
        )
        .await?
        .iter()
        .map(|r| r.get::<_, i64>(0).min(half))
        .sum();
    let rows: i64 = client
        .query_one(&format!("SELECT count(*) FROM {}", host::postgres::ident(table)), &[])
        .await?
        .get(0);
    anyhow::ensure!(
        rows == expected,
        "upsert table {table} holds {rows} rows, expected {expected} keys"
    );
    Ok(())
}

/// The WASM mapper, with `offset_id` folded onto the first half of its
/// partition, so the key (partition, offset) of every message comes twice.
pub struct RepeatingKeys {
    pub inner: Box<dyn BatchMapper>,
    pub half: i64,
}

impl BatchMapper for RepeatingKeys {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn hash(&self) -> &str {
        self.inner.hash()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn tables(&self) -> &[Table] {
        self.inner.tables()
    }
    fn map_batch(&mut self, messages: &[Message]) -> Result<Vec<Outcome>, PluginError> {
        let mut outcomes = self.inner.map_batch(messages)?;
        for outcome in &mut outcomes {
            if let Outcome::Rows(parts) = outcome {
                for row in parts.iter_mut().flat_map(|p| &mut p.rows) {
                    if let Some(Value::Integer(offset)) = row.get_mut(2) {
                        *offset %= self.half;
                    }
                }
            }
        }
        Ok(outcomes)
    }
}

/// `COPY ... FROM STDIN BINARY` of the rows the sink writes for the same
/// messages, `per_transaction` rows per transaction, into a table made like
/// the sink's: the mapper's columns and the lineage (topic, partition,
/// offset) the host adds to every row.
async fn copy(
    env: &Env,
    table: &str,
    columns: &[Column],
    payloads: &[Vec<u8>],
    partitions: i32,
    per_transaction: usize,
) -> anyhow::Result<Measured> {
    let mut client = env.pg().await?;
    // Commits as the sink makes them.
    host::postgres::asynchronous_commits(&client).await?;
    host::postgres::ensure_sink_table(&client, table, columns, &[]).await?;
    let written = host::postgres::lineage::write_columns(columns, true);
    let names: Vec<String> = written.iter().map(|c| host::postgres::ident(&c.name)).collect();
    let sql = format!(
        "COPY {} ({}) FROM STDIN BINARY",
        host::postgres::ident(table),
        names.join(", ")
    );
    let texts: Vec<&str> = payloads
        .iter()
        .map(|p| std::str::from_utf8(p))
        .collect::<Result<_, _>>()?;
    let now = SystemTime::now();
    let started = Instant::now();
    for (chunk_no, chunk) in texts.chunks(per_transaction).enumerate() {
        let tx = client.transaction().await?;
        let sink = tx.copy_in(&sql).await?;
        let types = [
            Type::TEXT,
            Type::TIMESTAMPTZ,
            Type::INT8,
            Type::INT8,
            Type::TEXT,
            Type::INT8,
            Type::INT8,
        ];
        let writer = BinaryCopyInWriter::new(sink, &types);
        tokio::pin!(writer);
        for (j, text) in chunk.iter().enumerate() {
            let i = (chunk_no * per_transaction + j) as i64;
            let (offset, partition) = (i / i64::from(partitions), i % i64::from(partitions));
            // A topic name as long as the benchmark's.
            let row: [&(dyn ToSql + Sync); 7] = [text, &now, &offset, &partition, &table, &partition, &offset];
            writer.as_mut().write(&row).await?;
        }
        writer.finish().await?;
        tx.commit().await?;
    }
    let took = started.elapsed();
    let count: i64 = client
        .query_one(&format!("SELECT count(*) FROM {}", host::postgres::ident(table)), &[])
        .await?
        .get(0);
    anyhow::ensure!(count as usize == payloads.len(), "COPY stored {count} rows");
    Ok(Measured::new(payloads.len() as u64, took))
}

/// The columns of `json-row`.
fn json_row_columns() -> Vec<Column> {
    let column = |name: &str, kind, nullable| Column {
        name: name.to_string(),
        kind,
        nullable,
    };
    vec![
        column("message_text", ColumnType::Text, false),
        column("message_time", ColumnType::Timestamp, true),
        column("offset_id", ColumnType::Integer, false),
        column("partition_id", ColumnType::Integer, false),
    ]
}

/// Columns as one unnamed table: the sink's.
pub fn one_table(columns: &[Column]) -> Vec<Table> {
    vec![Table {
        name: None,
        columns: columns.to_vec(),
        key: None,
    }]
}

/// Maps every message to no row: with [`Destination::Discard`], what is left
/// is the host's consumer and batching.
struct NullMapper(Vec<Table>);

impl BatchMapper for NullMapper {
    fn name(&self) -> &str {
        "null"
    }
    fn hash(&self) -> &str {
        "native"
    }
    fn describe(&self) -> String {
        "native null mapper (bench)".into()
    }
    fn tables(&self) -> &[Table] {
        &self.0
    }
    fn map_batch(&mut self, messages: &[Message]) -> Result<Vec<Outcome>, PluginError> {
        Ok(messages.iter().map(|_| Outcome::Rows(Vec::new())).collect())
    }
}

/// `plugins/json-row` in native Rust: the same checks and the same row.
struct NativeJsonRow(Vec<Table>);

impl BatchMapper for NativeJsonRow {
    fn name(&self) -> &str {
        "native json-row"
    }
    fn hash(&self) -> &str {
        "native"
    }
    fn describe(&self) -> String {
        "native json-row (bench)".into()
    }
    fn tables(&self) -> &[Table] {
        &self.0
    }
    fn map_batch(&mut self, messages: &[Message]) -> Result<Vec<Outcome>, PluginError> {
        Ok(messages.iter().map(json_row).collect())
    }
}

fn json_row(message: &Message) -> Outcome {
    let text = match validate(message.payload.as_deref()) {
        Ok(text) => text,
        Err(reason) => return Outcome::Rejected(reason),
    };
    let time = match message.timestamp {
        Some(ms) => Value::Timestamp(ms.saturating_mul(1000)),
        None => Value::Null,
    };
    Outcome::Rows(vec![TableRows {
        table: 0,
        rows: vec![vec![
            Value::Text(text),
            time,
            Value::Integer(message.offset),
            Value::Integer(i64::from(message.partition)),
        ]],
    }])
}

fn validate(payload: Option<&[u8]>) -> Result<String, String> {
    let bytes = payload.filter(|p| !p.is_empty()).ok_or("empty payload")?;
    let text = std::str::from_utf8(bytes).map_err(|e| format!("payload is not valid UTF-8: {e}"))?;
    serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(|e| format!("payload is not JSON: {e}"))?;
    Ok(text.to_string())
}
