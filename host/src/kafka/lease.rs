//! A counted generator run, claimed through a Kafka consumer group so that
//! two processes never produce the same count twice.

use super::{METADATA_TIMEOUT, SESSION_TIMEOUT, client_config, query_consumer};
use crate::config::KafkaConfig;
use anyhow::{Context as _, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// A counted generator run held by this process: while it lives, this
/// process is the one member of the consumer group
/// `wasm-stream-generator-<topic>-<generator>`, so a second process starting
/// the same run (another `host run` or `host produce` with the same pipeline
/// file) sees it and refuses instead of producing the count a second time.
/// Dropping it leaves the group at once.
pub struct RunLease {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for RunLease {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How long joining the lease group may take.
const LEASE_JOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Claims a counted generator run, or says which process holds it. Blocks
/// while it joins the group (a second or so).
pub fn claim_counted_run(cfg: &KafkaConfig, topic: &str, generator: &str) -> anyhow::Result<RunLease> {
    let group = format!("wasm-stream-generator-{topic}-{generator}");
    let refuse = |holder: &str| {
        anyhow::anyhow!(
            "generator {generator:?} (topic {topic:?}) is already producing its counted run in another process ({holder}); this process would produce the count a second time\n  hint: run generators in one process only (`host produce` on one machine) and sinks in as many as you like (`host consume` on each); a process stopped less than {} s ago still counts",
            SESSION_TIMEOUT.as_secs()
        )
    };
    let probe = query_consumer(cfg, &group)?;
    let deadline = std::time::Instant::now() + LEASE_JOIN_TIMEOUT;
    let members = |c: &BaseConsumer| -> anyhow::Result<Vec<(String, String, String)>> {
        // A coordinator still loading (a fresh or restarted broker) answers soon.
        let list = loop {
            match c.fetch_group_list(Some(&group), METADATA_TIMEOUT) {
                Ok(list) => break list,
                Err(e) if std::time::Instant::now() < deadline => {
                    tracing::debug!(group, error = %e, "cannot describe the generator's group yet; retrying");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(format!("cannot describe consumer group {group:?}")));
                }
            }
        };
        Ok(list
            .groups()
            .iter()
            .flat_map(|g| g.members())
            .map(|m| {
                (
                    m.id().to_string(),
                    m.client_id().to_string(),
                    m.client_host().to_string(),
                )
            })
            .collect())
    };
    if let Some((_, client, host)) = members(&probe)?.first() {
        return Err(refuse(&format!("{client} on {host}")));
    }
    let me = format!(
        "wasm-stream-generator-{}-{}-{}",
        crate::member::hostname(),
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    );
    let consumer: BaseConsumer = client_config(cfg)?
        .set("group.id", &group)
        .set("client.id", &me)
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", SESSION_TIMEOUT.as_millis().to_string())
        // Polled by the thread below, as long as the run lasts.
        .set("max.poll.interval.ms", "86400000")
        .create()
        .context("cannot create the Kafka client that claims the generator run")?;
    consumer
        .subscribe(&[topic])
        .with_context(|| format!("cannot join consumer group {group:?}"))?;
    let joining = std::time::Instant::now();
    loop {
        // Polling drives the join; messages are not read.
        let _ = consumer.poll(Duration::from_millis(100));
        if members(&probe)?.iter().any(|(_, client, _)| *client == me) {
            break;
        }
        if std::time::Instant::now() > deadline {
            bail!(
                "could not join consumer group {group:?} within {} s to claim the generator run",
                LEASE_JOIN_TIMEOUT.as_secs()
            );
        }
    }
    // A process that looked before this one joined is joining now, about as
    // fast as this one did: wait as long, then look again.
    let settle = joining.elapsed().max(Duration::from_secs(1));
    let until = std::time::Instant::now() + settle;
    while std::time::Instant::now() < until {
        let _ = consumer.poll(Duration::from_millis(100));
    }
    let members = members(&probe)?;
    // Two processes that started together: the smallest member id goes on.
    let first = members.iter().min_by(|a, b| a.0.cmp(&b.0)).map(|m| m.1.clone());
    if first.as_deref() != Some(me.as_str()) {
        let other = members
            .iter()
            .find(|m| m.1 != me)
            .map(|m| format!("{} on {}", m.1, m.2))
            .unwrap_or_default();
        return Err(refuse(&other));
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("generator-lease".into())
        .spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let _ = consumer.poll(Duration::from_millis(200));
            }
            // Dropping the consumer leaves the group.
        })
        .context("cannot start the generator lease thread")?;
    Ok(RunLease {
        stop,
        thread: Some(thread),
    })
}
