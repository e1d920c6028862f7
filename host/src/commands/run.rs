//! `host run`, `host produce` and `host consume`: the whole pipeline, only
//! its generators, or only its sinks.

use crate::config::Pipeline;
use crate::pipeline::{self, RunOptions};
use std::io::IsTerminal as _;
use std::path::Path;

/// `host run`.
pub async fn run(path: &Path, once: bool, no_watch: bool, instance_id: Option<&str>) -> anyhow::Result<()> {
    crate::member::claim(instance_id)?;
    let pipeline = Pipeline::load(path)?;
    let options = RunOptions {
        generators: true,
        sinks: true,
        once,
        watch: !no_watch,
        ..Default::default()
    };
    pipeline::run(&pipeline, options).await
}

/// `host produce`: the generators, or with `stdin` the lines of stdin.
pub async fn produce(path: &Path, topic: Option<String>, quiet: bool, stdin: bool) -> anyhow::Result<()> {
    let pipeline = Pipeline::load(path)?;
    if let (true, Some(topic)) = (stdin, &topic) {
        let produced = crate::kafka::stdin::produce(&pipeline.kafka, topic)?;
        let noun = if produced == 1 { "message" } else { "messages" };
        eprintln!("produced {produced} {noun} to {topic:?}");
        return Ok(());
    }
    let options = RunOptions {
        generators: true,
        topic,
        echo_produced: !quiet,
        once: true,
        ..Default::default()
    };
    pipeline::run(&pipeline, options).await
}

/// `host consume`: the sinks; without a topic, on a terminal, asks for one.
pub async fn consume(
    path: &Path,
    topic: Option<String>,
    once: bool,
    quiet: bool,
    instance_id: Option<&str>,
) -> anyhow::Result<()> {
    crate::member::claim(instance_id)?;
    let pipeline = Pipeline::load(path)?;
    let topic = match topic {
        Some(t) => Some(t),
        None if std::io::stdin().is_terminal() => Some(super::prompt::choose_topic(&pipeline, "consume")?),
        None => None,
    };
    let options = RunOptions {
        sinks: true,
        topic,
        once,
        echo_consumed: !quiet,
        ..Default::default()
    };
    pipeline::run(&pipeline, options).await
}
