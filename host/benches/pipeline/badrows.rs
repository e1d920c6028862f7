//! `--only badrows`: what isolating the rows PostgreSQL refuses costs. One
//! batch (20,000 messages, or `--messages` when fewer) written through the
//! sink's batch write into a table with a CHECK constraint: clean, with 1
//! culprit and with 100 culprits at spread offsets. Each culprit becomes a
//! dead letter and the rest is stored in the same transaction (bisecting
//! under savepoints, `postgres::isolate`). The best of `--repeat` runs counts.

use crate::Args;
use crate::report::Measured;
use crate::setup::Env;
use host::plugins::mapper::{Column, ColumnType, Value};
use host::postgres::{self, Batch, CopyRows, SinkStatements, SinkTable, TableBatch, Written, isolate::Parts};
use std::collections::HashMap;
use std::time::Instant;

/// The batch the issue names.
const BATCH: u64 = 20_000;

pub async fn run(args: &Args, env: &mut Env) -> anyhow::Result<()> {
    let size = args.messages.min(BATCH);
    let table = env.name("badrows");
    let topic = env.name("badrows_topic");
    env.tables.push(table.clone());
    env.topics.push(topic.clone());
    let mut client = env.pg().await?;
    postgres::ensure_host_tables(&client).await?;
    client
        .batch_execute(&format!(
            "CREATE TABLE {} (message_id bigserial PRIMARY KEY, seq bigint NOT NULL, v text CHECK (v <> 'bad'))",
            postgres::ident(&table)
        ))
        .await?;
    let columns = vec![
        Column {
            name: "seq".into(),
            kind: ColumnType::Integer,
            nullable: false,
        },
        Column {
            name: "v".into(),
            kind: ColumnType::Text,
            nullable: true,
        },
    ];
    let statements = SinkStatements::prepare(&client, &[SinkTable::one(&table, columns.clone(), &[])]).await?;
    postgres::asynchronous_commits(&client).await?;
    println!(
        "\nrows PostgreSQL refuses (CHECK constraint), one batch of {size} messages, best of {}:",
        args.repeat
    );
    println!(
        "  {:<14} {:>12} {:>10} {:>12}",
        "culprits", "messages/s", "ms", "vs clean"
    );
    let mut clean: Option<f64> = None;
    let mut partition = 0;
    for culprits in [0u64, 1, 100] {
        let mut best: Option<Measured> = None;
        for _ in 0..args.repeat {
            partition += 1;
            let batch = batch(&table, &topic, &columns, partition, size, culprits);
            let started = Instant::now();
            let written = postgres::write_batch(&mut client, &statements, batch).await?;
            let took = started.elapsed();
            anyhow::ensure!(
                matches!(written, Written::Committed(r) if r.letters == culprits),
                "badrows: expected {culprits} dead letters, got {written:?}"
            );
            let m = Measured::new(size, took);
            if best.is_none_or(|b| m.rate() > b.rate()) {
                best = Some(m);
            }
        }
        let best = best.expect("at least one run");
        let rate = best.rate();
        let base = *clean.get_or_insert(rate);
        println!(
            "  {:<14} {:>12.0} {:>10.1} {:>11.2}x",
            culprits,
            rate,
            best.took.as_secs_f64() * 1000.0,
            base / rate
        );
    }
    Ok(())
}

/// `size` messages with `culprits` of them spread evenly, for a partition of its own.
fn batch(table: &str, topic: &str, columns: &[Column], partition: i32, size: u64, culprits: u64) -> Batch {
    let every = size.checked_div(culprits).unwrap_or(u64::MAX);
    let mut rows = CopyRows::with_capacity(columns, size as usize * 32);
    let mut of_row = Vec::with_capacity(size as usize);
    for seq in 0..size {
        let bad = culprits > 0 && seq % every == every / 2 && seq / every < culprits;
        let v = if bad { "bad".to_string() } else { format!("value {seq}") };
        rows.push(vec![Value::Integer(seq as i64), Value::Text(v)]);
        of_row.push(seq as u32);
    }
    Batch {
        sink: "bench".into(),
        table: table.into(),
        topic: topic.into(),
        group: "bench".into(),
        plugin: "bench".into(),
        tables: vec![TableBatch {
            rows: rows.freeze(),
            parts: Parts::Rows(of_row),
            deletes: 0,
        }],
        positions: (0..size as i64).map(|o| (partition, o)).collect(),
        sources: (0..size).map(|_| (None, Some(b"{}".to_vec()))).collect(),
        dead_letters: Vec::new(),
        offsets: HashMap::from([(partition, (None, size as i64))]),
    }
}
