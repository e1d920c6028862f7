//! End-to-end latency: `host::pipeline::run` (the code path of `host run`)
//! with the `bench-json` generator at a fixed moderate rate and the `json-row`
//! sink at default settings. A watcher polls the table every few
//! milliseconds; a message's latency is the time the watcher first saw its row
//! minus its Kafka timestamp (set by the producer when the host hands it the
//! message). Polling adds up to one interval plus a query (a few ms).

use crate::Args;
use crate::report::{Figures, Latency};
use crate::setup::{self, Env};
use host::pipeline::RunOptions;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const POLL: Duration = Duration::from_millis(5);
/// Messages produced before the sink's first commit, and this long after it,
/// are the start-up backlog, not the steady state.
const WARM_UP_MS: f64 = 1_000.0;

pub async fn run(args: &Args, env: &mut Env, partitions: i32, f: &mut Figures) -> anyhow::Result<()> {
    let interval_ms = (1000 / args.latency_rate).max(1);
    let rate = 1000 / interval_ms;
    let count = rate * args.latency_duration.as_secs();
    let topic = env.name(&format!("p{partitions}_lat"));
    let table = env.name(&format!("p{partitions}_lat"));
    let body = format!(
        "{}[[generators]]\nname = \"bench\"\ntopic = \"{topic}\"\nplugin = \"{}\"\ninterval_ms = {interval_ms}\ncount = {count}\n\n\
         [[sinks]]\nname = \"latency\"\ntopic = \"{topic}\"\ntable = \"{table}\"\nmapper = \"{}\"\n",
        setup::topic_section(&topic, partitions),
        env.plugin("bench_json").display(),
        env.plugin("json_row").display(),
    );
    let pipeline = env.pipeline(&format!("latency_p{partitions}.toml"), &body)?;
    eprintln!(
        "bench: {partitions} partition(s): latency at {rate} messages/s for {} s",
        args.latency_duration.as_secs()
    );
    let options = RunOptions {
        generators: true,
        sinks: true,
        once: true,
        ..RunOptions::default()
    };
    let task = tokio::spawn(async move { host::pipeline::run(&pipeline, options).await });

    let client = env.pg().await?;
    let query = format!(
        "SELECT message_id, (extract(epoch FROM message_time) * 1000)::int8 FROM {} WHERE message_id > $1 ORDER BY message_id",
        host::postgres::ident(&table)
    );
    let mut last_id = 0i64;
    let mut first_seen: Option<f64> = None;
    let mut samples: Vec<f64> = Vec::with_capacity(count as usize);
    loop {
        let done = task.is_finished();
        // The table appears when the sink starts.
        if let Ok(rows) = client.query(&query, &[&last_id]).await {
            let seen = now_ms();
            for row in rows {
                last_id = row.get(0);
                let produced = row.get::<_, i64>(1) as f64;
                let start = *first_seen.get_or_insert(seen);
                if produced > start + WARM_UP_MS {
                    samples.push(seen - produced);
                }
            }
        }
        if done {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    task.await??;
    anyhow::ensure!(
        samples.len() > 10,
        "too few messages after the warm-up to measure latency"
    );
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    f.latency = Some(Latency {
        rate,
        samples: samples.len(),
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        max_ms: at(1.0),
    });
    Ok(())
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}
