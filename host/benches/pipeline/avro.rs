//! Sink, Avro: the same messages as the JSON sink, encoded in Avro in the
//! schema registry's wire format (one schema id), read by a sink with
//! `format = "avro"` into WASM json-row: decoding and the registry cost,
//! beside the JSON path (`--sinks avro`, on by default). Needs the stack's
//! schema registry (`scripts/local-stack up`: https://localhost:8081), or
//! the one `WASM_STREAM_BENCH_REGISTRY` names (same user and password).

use crate::report::Figures;
use crate::setup::{self, Env};
use crate::sink::{load_mapper, sink_run};
use anyhow::Context as _;
use host::pipeline::Destination;
use host::registry::client::Registry;
use host::registry::codec::{Compiled, SchemaType};

/// The record bench-json writes, field for field.
const SCHEMA: &str = r#"{"type":"record","name":"Bench","namespace":"wasm_stream.bench","fields":[
  {"name":"seq","type":"long"},{"name":"user","type":"string"},{"name":"event","type":"string"},
  {"name":"amount","type":"double"},{"name":"ok","type":"boolean"},{"name":"pad","type":"string"}]}"#;

pub async fn run(
    env: &mut Env,
    batch_size: Option<usize>,
    partitions: i32,
    payloads: &[Vec<u8>],
    f: &mut Figures,
) -> anyhow::Result<()> {
    let url = std::env::var("WASM_STREAM_BENCH_REGISTRY").unwrap_or_else(|_| "https://localhost:8081".into());
    let password = env.dir.join("registry-password");
    std::fs::write(&password, "localdev")?;
    let topic = env.name(&format!("p{partitions}_avro"));
    let table = env.name(&format!("p{partitions}_avro"));
    let body = format!(
        "{}[schema_registry]\nurl = \"{url}\"\nusername = \"avnadmin\"\npassword_file = \"{}\"\nca = \"{}\"\n\n[[sinks]]\nname = \"avro\"\ntopic = \"{topic}\"\ntable = \"{table}\"\nmapper = \"{}\"\nformat = \"avro\"\n{}\n",
        setup::topic_section(&topic, partitions),
        password.display(),
        env.root.join("certs/ca.pem").display(),
        env.plugin("json_row").display(),
        batch_size.map_or(String::new(), |b| format!("batch_size = {b}")),
    );
    let pipeline = env.pipeline(&format!("avro_p{partitions}.toml"), &body)?;
    host::kafka::create_topics(&pipeline.kafka, &pipeline.topics).await?;
    let registry = Registry::shared(pipeline.schema_registry.as_ref().context("[schema_registry]")?)?;
    let id = registry
        .register(&format!("{topic}-value"), SchemaType::Avro, SCHEMA)
        .await
        .with_context(|| format!("the bench needs the schema registry at {url} (scripts/local-stack up)"))?;
    let compiled = Compiled::parse(SchemaType::Avro, SCHEMA, &[])?;
    let encoded = payloads
        .iter()
        .map(|p| {
            let value: serde_json::Value = serde_json::from_slice(p)?;
            Ok(host::registry::wire::frame(id, &compiled.encode(&value)?))
        })
        .collect::<anyhow::Result<Vec<Vec<u8>>>>()?;
    eprintln!(
        "bench: {partitions} partition(s): {} Avro messages of {:.0} bytes (JSON: {:.0})",
        encoded.len(),
        encoded.iter().map(Vec::len).sum::<usize>() as f64 / encoded.len().max(1) as f64,
        f.message_bytes
    );
    let kafka = pipeline.kafka.clone();
    let t = topic.clone();
    tokio::task::spawn_blocking(move || crate::produce::produce_plain(&kafka, &t, &encoded)).await??;

    eprintln!("bench: {partitions} partition(s): sink, Avro through the registry, WASM json-row");
    let before = registry.requests();
    let mapper = load_mapper(env, &pipeline, "avro").await?;
    let m = sink_run(&pipeline, "avro", mapper, Destination::Postgres, None).await?;
    anyhow::ensure!(
        m.total == payloads.len() as u64,
        "the Avro sink settled {} of {}",
        m.total,
        payloads.len()
    );
    f.sink_avro = Some(m.steady);
    // The sink shares the process's client: its fetches are counted there.
    let requests = registry.requests() - before;
    f.avro_registry_requests_per_million = Some(requests as f64 * 1e6 / payloads.len() as f64);
    Ok(())
}
