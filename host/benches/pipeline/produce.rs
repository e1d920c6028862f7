//! Produce: the host's generator loop with the WASM `bench-json` generator,
//! against a plain librdkafka producer sending the same bytes with the same
//! settings (`host::kafka::producer`). Both runs time everything from creating
//! the producer to the last acknowledgement; the plugin is compiled before.

use crate::Args;
use crate::report::{Figures, Measured};
use crate::setup::{self, Env};
use anyhow::Context as _;
use host::config::GeneratorConfig;
use host::pipeline::GeneratorStats;
use host::plugins::GeneratorWorld;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, Producer};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How many messages the generator is asked for at a time when the baseline
/// takes its bytes (the host asks for as many).
const CHUNK: u32 = 500;

/// Returns the payloads, for the `COPY` ceiling.
pub async fn run(args: &Args, env: &mut Env, partitions: i32, f: &mut Figures) -> anyhow::Result<Vec<Vec<u8>>> {
    let host_topic = env.name(&format!("p{partitions}"));
    let base_topic = env.name(&format!("p{partitions}_plain"));
    let body = format!(
        "{}{}[[generators]]\nname = \"bench\"\ntopic = \"{host_topic}\"\nplugin = \"{}\"\ninterval_ms = 0\ncount = {}\n",
        setup::topic_section(&host_topic, partitions),
        setup::topic_section(&base_topic, partitions),
        env.plugin("bench_json").display(),
        args.messages,
    );
    let pipeline = env.pipeline(&format!("produce_p{partitions}.toml"), &body)?;
    host::kafka::create_topics(&pipeline.kafka, &pipeline.topics).await?;
    let generator = pipeline.generators[0].clone();

    eprintln!(
        "bench: {partitions} partition(s): taking {} messages from the generator for the baseline",
        args.messages
    );
    let payloads = {
        let (runtime, generator, n) = (env.runtime.clone(), generator.clone(), args.messages);
        tokio::task::spawn_blocking(move || generate(&runtime, &generator, n)).await??
    };
    f.message_bytes = payloads.iter().map(Vec::len).sum::<usize>() as f64 / payloads.len() as f64;
    anyhow::ensure!(
        payloads.iter().all(|p| p.len() == setup::MESSAGE_BYTES),
        "bench-json made a message that is not {} bytes",
        setup::MESSAGE_BYTES
    );

    eprintln!("bench: {partitions} partition(s): plain librdkafka producing");
    let kafka = pipeline.kafka.clone();
    let (base, payloads) = {
        let topic = base_topic.clone();
        tokio::task::spawn_blocking(move || produce_plain(&kafka, &topic, &payloads).map(|t| (t, payloads))).await??
    };
    f.produce_plain = Some(Measured::new(args.messages, base));

    eprintln!("bench: {partitions} partition(s): host producing with the WASM generator");
    let plugin = {
        let (runtime, g) = (env.runtime.clone(), generator.clone());
        tokio::task::spawn_blocking(move || runtime.load::<GeneratorWorld>("generator bench", &g.plugin, g.seed))
            .await??
    };
    let stats = Arc::new(GeneratorStats::default());
    let (kafka, s) = (pipeline.kafka.clone(), stats.clone());
    let started = Instant::now();
    tokio::task::spawn_blocking(move || host::pipeline::run_generator(&kafka, generator, plugin, s)).await??;
    let took = started.elapsed();
    anyhow::ensure!(
        stats.delivered() == args.messages,
        "the host delivered {} of {} messages",
        stats.delivered(),
        args.messages
    );
    f.produce_host = Some(Measured::new(args.messages, took));
    f.topic = Some(host_topic);
    Ok(payloads)
}

/// The bytes a fresh instance of the generator makes, as the host asks for them.
fn generate(runtime: &host::plugins::Runtime, g: &GeneratorConfig, n: u64) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut plugin = runtime.load::<GeneratorWorld>("generator bench (baseline)", &g.plugin, g.seed)?;
    let mut out = Vec::with_capacity(n as usize);
    while (out.len() as u64) < n {
        let want = CHUNK.min(u32::try_from(n - out.len() as u64).unwrap_or(CHUNK));
        let messages = plugin.next(want)?;
        anyhow::ensure!(
            !messages.is_empty(),
            "the generator ran out after {} messages",
            out.len()
        );
        out.extend(messages.into_iter().map(|m| m.payload));
    }
    Ok(out)
}

/// Sends every payload with plain librdkafka calls, polling for delivery
/// reports only when its queue is full or every thousand messages.
pub fn produce_plain(kafka: &host::config::KafkaConfig, topic: &str, payloads: &[Vec<u8>]) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let producer = host::kafka::producer(kafka)?;
    for (i, payload) in payloads.iter().enumerate() {
        let mut record = BaseRecord::<(), [u8]>::to(topic).payload(payload.as_slice());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => anyhow::bail!("cannot produce to {topic:?}: {e}"),
            }
        }
        if i % 1000 == 999 {
            producer.poll(Duration::ZERO);
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .context("the plain producer did not flush")?;
    let took = started.elapsed();
    let ctx = producer.context();
    let (delivered, failed) = (
        ctx.delivered.load(Ordering::Relaxed),
        ctx.failed.load(Ordering::Relaxed),
    );
    anyhow::ensure!(
        delivered == payloads.len() as u64 && failed == 0,
        "the plain producer delivered {delivered} of {} ({failed} failed)",
        payloads.len()
    );
    Ok(took)
}
