//! Peak memory: the `host` binary cargo built with this benchmark (scripts/bench:
//! the production profile; `--quick`: the dev one), `host run --once` at
//! default settings, producing N messages with the `bench-json` generator
//! flat out and sinking them with `json-row` (one sink, or several reading
//! the same topic, each into a table of its own), in one process. The peak
//! is `VmHWM` from `/proc/<pid>/status`, read until the process exits (it
//! only grows).

use crate::Args;
use crate::report::Memory;
use crate::setup::{self, Env};
use anyhow::Context as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SAMPLE: Duration = Duration::from_millis(50);
/// The sinks of the many-sinks line.
pub const MANY_SINKS: usize = 4;

pub async fn run(args: &Args, env: &mut Env, partitions: i32, sinks: usize) -> anyhow::Result<Memory> {
    // Cargo builds the binary with the benchmark, in the same profile.
    let binary = std::path::PathBuf::from(env!("CARGO_BIN_EXE_host"));
    anyhow::ensure!(
        binary.is_file(),
        "{} is missing\n  hint: run the benchmark with scripts/bench, which builds it",
        binary.display()
    );
    let topic = env.name(&format!("p{partitions}_s{sinks}_mem"));
    let tables: Vec<String> = (0..sinks)
        .map(|i| env.name(&format!("p{partitions}_s{sinks}_mem{i}")))
        .collect();
    let mut body = format!(
        "{}[[generators]]\nname = \"bench\"\ntopic = \"{topic}\"\nplugin = \"{}\"\ninterval_ms = 0\ncount = {}\n\n",
        setup::topic_section(&topic, partitions),
        env.plugin("bench_json").display(),
        args.messages,
    );
    for (i, table) in tables.iter().enumerate() {
        body += &format!(
            "[[sinks]]\nname = \"memory{i}\"\ntopic = \"{topic}\"\ntable = \"{table}\"\nmapper = \"{}\"\n{}\n",
            env.plugin("json_row").display(),
            args.batch_size.map_or(String::new(), |b| format!("batch_size = {b}\n")),
        );
    }
    let file = format!("memory_p{partitions}_s{sinks}.toml");
    env.pipeline(&file, &body)?;
    let log = env.dir.join(format!("memory-host-p{partitions}-s{sinks}.log"));
    eprintln!(
        "bench: peak memory of `host run --once` ({} messages, {partitions} partition(s), {sinks} sink(s)); log in {}",
        args.messages,
        log.display()
    );
    let started = Instant::now();
    let mut child = Command::new(&binary)
        .args(["run", &file, "--once", "--no-watch"])
        .current_dir(&env.dir)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    let status = loop {
        if let Ok(text) = std::fs::read_to_string(&status_path)
            && let Some(kib) = vm_hwm_kib(&text)
        {
            peak_kib = peak_kib.max(kib);
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        tokio::time::sleep(SAMPLE).await;
    };
    let took = started.elapsed();
    anyhow::ensure!(status.success(), "host run failed ({status}); see {}", log.display());
    let client = env.pg().await?;
    for table in &tables {
        let rows: i64 = client
            .query_one(&format!("SELECT count(*) FROM {}", host::postgres::ident(table)), &[])
            .await?
            .get(0);
        anyhow::ensure!(
            rows as u64 == args.messages,
            "host run stored {rows} of {} rows in {table}",
            args.messages
        );
    }
    Ok(Memory {
        partitions,
        sinks,
        messages: args.messages,
        peak_bytes: peak_kib * 1024,
        took,
    })
}

fn vm_hwm_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
