//! `--only fanout`: a mapper of two tables against one of one table, on the
//! same messages. The topic holds `--messages` orders of 1 to 5 items (3 on
//! average) produced once; the WASM `orders` mapper writes each as one row of
//! the sink's table and one row per item of `<table>_items` (4 rows per
//! message on average, two COPYs per batch), the WASM `json-row` writes the
//! same messages as one row each. Both run exactly once, from the start of
//! the topic, in batches of the sink's default (of `--messages` / 20 when that
//! is smaller, or `--batch-size`); the best of `--repeat` runs counts.

use crate::Args;
use crate::report::Measured;
use crate::setup::{self, Env};
use crate::sink::sink_run;
use anyhow::Context as _;
use host::pipeline::{BatchMapper, Destination};
use host::plugins::MapperWorld;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use std::time::Duration;

/// Items of order `i`: 1 to 5, 3 on average.
fn items(i: u64) -> u64 {
    1 + i % 5
}

/// Order `i` as JSON.
fn order(i: u64) -> Vec<u8> {
    let lines: Vec<String> = (0..items(i))
        .map(|l| {
            format!(
                r#"{{"sku":"sku-{}","qty":{},"price":"{}.{:02}"}}"#,
                (i * 7 + l) % 1000,
                1 + l,
                i % 200,
                l * 7 % 100
            )
        })
        .collect();
    format!(
        r#"{{"order_id":{i},"customer":"customer-{}","items":[{}]}}"#,
        i % 613,
        lines.join(",")
    )
    .into_bytes()
}

pub async fn run(args: &Args, env: &mut Env) -> anyhow::Result<()> {
    let n = args.messages;
    let partitions = args.partitions.first().copied().unwrap_or(1);
    let topic = env.name("fanout");
    let mut best: [Option<Measured>; 2] = [None, None];
    let rows_per_message = [1.0 + (0..n).map(items).sum::<u64>() as f64 / n as f64, 1.0];
    // Steady state needs several batches: the default batch on a long run,
    // smaller ones on a short one.
    let batch = args
        .batch_size
        .unwrap_or(host::config::DEFAULT_BATCH_SIZE.min((n / 20).max(1) as usize));
    for round in 1..=args.repeat {
        let (fan, one) = (
            env.name(&format!("fanout_orders_{round}")),
            env.name(&format!("fanout_one_{round}")),
        );
        env.tables.push(format!("{fan}_items"));
        let body = format!(
            "{}[[sinks]]\nname = \"orders\"\ntopic = \"{topic}\"\ntable = \"{fan}\"\nmapper = \"{}\"\nbatch_size = {batch}\n\n\
             [[sinks]]\nname = \"one\"\ntopic = \"{topic}\"\ntable = \"{one}\"\nmapper = \"{}\"\nbatch_size = {batch}\n",
            setup::topic_section(&topic, partitions),
            env.plugin("orders").display(),
            env.plugin("json_row").display(),
        );
        let pipeline = env.pipeline(&format!("fanout_{round}.toml"), &body)?;
        if round == 1 {
            host::kafka::create_topics(&pipeline.kafka, &pipeline.topics).await?;
            eprintln!("bench: fanout: producing {n} orders");
            produce(env, &topic, partitions, n)?;
        }
        for (slot, (sink, table)) in [("orders", &fan), ("one", &one)].into_iter().enumerate() {
            eprintln!("bench: fanout, round {round}: sink {sink}");
            let config = pipeline
                .sinks
                .iter()
                .find(|s| s.name == sink)
                .cloned()
                .context("sink")?;
            let runtime = env.runtime.clone();
            let plugin = tokio::task::spawn_blocking(move || {
                runtime.load::<MapperWorld>(&format!("sink {}", config.name), &config.mapper, None)
            })
            .await??;
            let mapper: Box<dyn BatchMapper> = Box::new(plugin);
            let m = sink_run(&pipeline, sink, mapper, Destination::Postgres, None).await?;
            anyhow::ensure!(m.total == n, "sink {sink} settled {} of {n} messages", m.total);
            verify(env, table, n, slot == 0).await?;
            if best[slot].is_none_or(|b| m.steady.rate() > b.rate()) {
                best[slot] = Some(m.steady);
            }
        }
    }
    println!(
        "\nfan-out: {n} orders of 1-5 items, {partitions} partition(s), batches of {batch}, best of {}:",
        args.repeat
    );
    println!(
        "  {:<32} {:>12} {:>12} {:>10}",
        "sink", "messages/s", "rows/s", "vs 1 table"
    );
    let one = best[1].context("measured")?.rate();
    for (slot, label) in [(1, "json-row, 1 table"), (0, "orders, 2 tables (order + items)")] {
        let rate = best[slot].context("measured")?.rate();
        println!(
            "  {label:<32} {rate:>12.0} {:>12.0} {:>9.2}x",
            rate * rows_per_message[slot],
            rate / one
        );
    }
    Ok(())
}

/// Produces `n` orders, keyed by their id, spread over the partitions.
fn produce(env: &Env, topic: &str, partitions: i32, n: u64) -> anyhow::Result<()> {
    let producer: BaseProducer = host::kafka::client_config(&env.base.kafka)?
        .set("linger.ms", "5")
        .create()?;
    for i in 0..n {
        let (key, payload) = (i.to_string(), order(i));
        let mut record = BaseRecord::to(topic)
            .partition((i % partitions as u64) as i32)
            .key(key.as_bytes())
            .payload(payload.as_slice());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    r,
                )) => {
                    record = r;
                    producer.poll(Duration::from_millis(50));
                }
                Err((e, _)) => anyhow::bail!("cannot produce order {i}: {e}"),
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(120))?;
    Ok(())
}

/// Every order once in `table`; with `fan`, every item once in `<table>_items`.
async fn verify(env: &Env, table: &str, n: u64, fan: bool) -> anyhow::Result<()> {
    let client = env.pg().await?;
    let t = host::postgres::ident(table);
    let rows: i64 = client
        .query_one(&format!("SELECT count(*) FROM {t}"), &[])
        .await?
        .get(0);
    anyhow::ensure!(rows as u64 == n, "table {table} holds {rows} rows, expected {n}");
    if fan {
        let want: u64 = (0..n).map(items).sum();
        let items = host::postgres::ident(&format!("{table}_items"));
        let got: i64 = client
            .query_one(&format!("SELECT count(DISTINCT (order_id, line)) FROM {items}"), &[])
            .await?
            .get(0);
        anyhow::ensure!(got as u64 == want, "the items of {table}: {got}, expected {want}");
    }
    Ok(())
}
