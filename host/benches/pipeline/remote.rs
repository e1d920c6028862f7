//! Remote database: the sink (append, and upsert with every key twice) with
//! PostgreSQL a round trip away (2 and 10 ms by default), through the
//! delaying proxy, from the topic the host filled. Next to each: the same
//! sink's local figure of this run, the round trips a batch cost (the
//! client's turns at the proxy after the first commit, per batch committed
//! meanwhile) and the messages per batch (adaptive batching grows them with
//! the round trip).

use crate::Args;
use crate::proxy::Proxy;
use crate::report::{Figures, Measured, Remote};
use crate::setup::{self, Env};
use crate::sink::{self, RepeatingKeys};
use anyhow::Context as _;
use host::pipeline::Destination;

pub async fn run(args: &Args, env: &mut Env, partitions: i32, f: &mut Figures) -> anyhow::Result<()> {
    let topic = f
        .topic
        .clone()
        .context("the remote sinks read what the produce step wrote")?;
    let n = args.messages;
    let json_row = env.plugin("json_row");
    let size = args.batch_size.map_or(String::new(), |b| format!("batch_size = {b}\n"));
    for &rtt in &args.rtt {
        let ms = rtt.as_millis();
        for mode in ["append", "upsert"] {
            let mut best: Option<Remote> = None;
            for round in 1..=args.repeat {
                eprintln!("bench: {partitions} partition(s), round {round}: remote sink, {mode}, {ms} ms round trip");
                let proxy = Proxy::start(setup::PG_HOST_PORT, rtt).await?;
                let table = env.name(&format!("p{partitions}_rtt{ms}_{mode}"));
                let extra = if mode == "upsert" {
                    "mode = \"upsert\"\nkey = [\"partition_id\", \"offset_id\"]\n"
                } else {
                    ""
                };
                let body = format!(
                    "{}[[sinks]]\nname = \"{mode}\"\ntopic = \"{topic}\"\ntable = \"{table}\"\nmapper = \"{}\"\n{size}{extra}",
                    setup::topic_section(&topic, partitions),
                    json_row.display(),
                );
                let pipeline = env.pipeline_at(
                    &format!("remote_p{partitions}_{ms}_{mode}_{round}.toml"),
                    &body,
                    &format!("localhost:{}", proxy.port),
                )?;
                let inner = sink::load_mapper(env, &pipeline, mode).await?;
                let half = (n / partitions as u64).div_ceil(2) as i64;
                let mapper: Box<dyn host::pipeline::BatchMapper> = if mode == "upsert" {
                    Box::new(RepeatingKeys { inner, half })
                } else {
                    inner
                };
                let m = sink::sink_run_counting(
                    &pipeline,
                    mode,
                    mapper,
                    Destination::Postgres,
                    None,
                    Some(proxy.turns()),
                )
                .await?;
                drop(proxy);
                anyhow::ensure!(
                    m.total == n,
                    "the remote {mode} sink settled {} of {n} messages",
                    m.total
                );
                if mode == "upsert" {
                    sink::verify_upsert(env, &table, half).await?;
                } else {
                    sink::verify(env, &table, n).await?;
                }
                let run = Remote {
                    rtt,
                    upsert: mode == "upsert",
                    steady: m.steady,
                    round_trips_per_batch: m.counted as f64 / m.batches.max(1) as f64,
                    messages_per_batch: m.steady.messages as f64 / m.batches.max(1) as f64,
                };
                if best.as_ref().is_none_or(|b| run.steady.rate() > b.steady.rate()) {
                    best = Some(run);
                }
            }
            f.remote.extend(best);
        }
    }
    Ok(())
}

/// The local figure a remote line compares with.
pub fn local(f: &Figures, upsert: bool) -> Option<Measured> {
    if upsert { f.sink_upsert } else { f.sink_wasm }
}
