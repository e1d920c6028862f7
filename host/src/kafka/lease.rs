//! A counted generator run, claimed through a Kafka consumer group so that
//! two processes never produce the same count twice.
//!
//! The group `wasm-stream-generator-<topic>-<generator>` has the holder as a
//! member, and its committed offset of partition 0 of the topic carries the
//! holder's client id in its metadata (the *marker*). A process that wants
//! the run:
//!
//! 1. refuses at once when the group has members;
//! 2. joins, waits as long as joining took (a process that looked at the
//!    same time is joining too), then looks again: a marker naming a member
//!    other than itself means that member holds the run (the holder wins,
//!    whatever the ids); with no live holder, the smallest member id goes on;
//! 3. writes the marker. Kafka accepts an offset commit only from a member of
//!    the group's current generation, and every join starts a new one, so a
//!    marker written before a newcomer joined is seen by it, and one written
//!    from a stale view is refused (the process looks again);
//! 4. waits as long again and reads the marker back: two that both wrote it
//!    (each from a view without the other's marker) agree on the last one.
//!
//! While the run lasts, the holder reads the marker every second; when it
//! names another process (this one was gone from the group longer than the
//! session timeout, paused or cut off, and another took the run over), the
//! lease is lost: the generator is told to stop and its unit fails. Each
//! read that still names this process renews the [`LeaseGate`] for
//! [`VALID_FOR`], well under the session timeout, and the generator produces
//! only while the gate is open: a process that wakes from a long pause waits
//! for the next read instead of producing what it is behind.

use super::{METADATA_TIMEOUT, SESSION_TIMEOUT, client_config, query_consumer};
use crate::config::KafkaConfig;
use anyhow::{Context as _, bail};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A counted generator run held by this process (see the module). Dropping
/// it leaves the group at once.
pub struct RunLease {
    stop: Arc<AtomicBool>,
    lost: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunLease {
    /// Whether another process took the run over while this one held it.
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }
}

impl Drop for RunLease {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How long one read of the marker lets the generator produce.
pub const VALID_FOR: Duration = Duration::from_secs(3);

/// Opened for [`VALID_FOR`] by each read of the marker that names this
/// process; the generator waits at it before each call of its plugin.
pub struct LeaseGate {
    base: Instant,
    /// Milliseconds since `base` until which the lease is known to be held.
    open_until_ms: AtomicU64,
}

impl Default for LeaseGate {
    fn default() -> Self {
        Self {
            base: Instant::now(),
            open_until_ms: AtomicU64::new(0),
        }
    }
}

impl LeaseGate {
    fn renew(&self) {
        let until = (self.base.elapsed() + VALID_FOR).as_millis();
        self.open_until_ms
            .store(u64::try_from(until).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn open(&self) -> bool {
        self.base.elapsed().as_millis() < u128::from(self.open_until_ms.load(Ordering::Relaxed))
    }

    /// Waits until the lease is known to be held (true), or `stop` is set (false).
    pub fn wait_open(&self, stop: &AtomicBool) -> bool {
        while !self.open() {
            if stop.load(Ordering::Relaxed) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }
}

/// How long joining the lease group may take.
const LEASE_JOIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the holder reads the marker back.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// The marker's metadata: this prefix and the holder's client id.
const MARKER_PREFIX: &str = "held by ";

/// Claims a counted generator run, or says which process holds it. Blocks
/// while it joins the group (a few seconds). `on_lost` is set when the lease
/// is lost later (the generator's stop flag).
pub fn claim_counted_run(
    cfg: &KafkaConfig,
    topic: &str,
    generator: &str,
    gate: Arc<LeaseGate>,
    on_lost: Arc<AtomicBool>,
) -> anyhow::Result<RunLease> {
    let me = format!(
        "wasm-stream-generator-{}-{}-{}",
        crate::member::hostname(),
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    );
    claim_as(cfg, topic, generator, &me, Duration::ZERO, gate, on_lost)
}

/// [`claim_counted_run`] as client `me`, pausing `after_probe` between the
/// first look and joining: for tests of two processes that start together.
#[doc(hidden)]
pub fn claim_as(
    cfg: &KafkaConfig,
    topic: &str,
    generator: &str,
    me: &str,
    after_probe: Duration,
    gate: Arc<LeaseGate>,
    on_lost: Arc<AtomicBool>,
) -> anyhow::Result<RunLease> {
    let group = format!("wasm-stream-generator-{topic}-{generator}");
    let refuse = |holder: &str| {
        anyhow::anyhow!(
            "generator {generator:?} (topic {topic:?}) is already producing its counted run in another process ({holder}); this process would produce the count a second time\n  hint: run generators in one process only (`host produce` on one machine) and sinks in as many as you like (`host consume` on each); a process stopped less than {} s ago still counts",
            SESSION_TIMEOUT.as_secs()
        )
    };
    let probe = query_consumer(cfg, &group)?;
    let deadline = Instant::now() + LEASE_JOIN_TIMEOUT;
    let look = Look {
        group: &group,
        topic,
        deadline,
    };
    if let Some(m) = look.members(&probe)?.first() {
        return Err(refuse(&m.describe()));
    }
    std::thread::sleep(after_probe);
    let consumer: BaseConsumer = client_config(cfg)?
        .set("group.id", &group)
        .set("client.id", me)
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", SESSION_TIMEOUT.as_millis().to_string())
        // Polled by the thread below, as long as the run lasts.
        .set("max.poll.interval.ms", "86400000")
        .create()
        .context("cannot create the Kafka client that claims the generator run")?;
    consumer
        .subscribe(&[topic])
        .with_context(|| format!("cannot join consumer group {group:?}"))?;
    let joining = Instant::now();
    loop {
        // Polling drives the join; messages are not read.
        let _ = consumer.poll(Duration::from_millis(100));
        if look.members(&probe)?.iter().any(|m| m.client == me) {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "could not join consumer group {group:?} within {} s to claim the generator run",
                LEASE_JOIN_TIMEOUT.as_secs()
            );
        }
    }
    // A process that looked before this one joined is joining now, about as
    // fast as this one did: wait as long before each look.
    let settle = joining.elapsed().max(Duration::from_secs(1));
    loop {
        idle(&consumer, settle);
        let members = look.members(&probe)?;
        let holder = look.marker(&probe)?;
        if let Some(h) = holder.as_deref().filter(|h| *h != me)
            && let Some(m) = members.iter().find(|m| m.client == h)
        {
            return Err(refuse(&m.describe()));
        }
        // No live holder: of two processes that started together, the
        // smallest member id goes on.
        let first = members.iter().min_by(|a, b| a.id.cmp(&b.id));
        if first.is_none_or(|m| m.client != me) {
            let other = members.iter().find(|m| m.client != me).map(Member::describe);
            return Err(refuse(&other.unwrap_or_default()));
        }
        if let Err(e) = write_marker(&consumer, topic, me) {
            // Someone joined meanwhile (a new generation): look again.
            tracing::debug!(group, error = %e, "generator lease marker refused; looking again");
            if Instant::now() > deadline {
                return Err(e.context(format!("cannot claim the generator run in group {group:?}")));
            }
            continue;
        }
        idle(&consumer, settle);
        match look.marker(&probe)? {
            Some(h) if h == me => {
                gate.renew();
                break;
            }
            Some(h) => {
                let m = look.members(&probe)?.into_iter().find(|m| m.client == h);
                return Err(refuse(&m.map_or(h, |m| m.describe())));
            }
            None => continue,
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let lost = Arc::new(AtomicBool::new(false));
    let (flag, lost_flag) = (stop.clone(), lost.clone());
    let (me, topic, group) = (me.to_string(), topic.to_string(), group.clone());
    let thread = std::thread::Builder::new()
        .name("generator-lease".into())
        .spawn(move || {
            let look = Look {
                group: &group,
                topic: &topic,
                deadline: Instant::now(),
            };
            let mut checked = Instant::now();
            while !flag.load(Ordering::Relaxed) {
                let _ = consumer.poll(Duration::from_millis(200));
                if checked.elapsed() < CHECK_EVERY {
                    continue;
                }
                checked = Instant::now();
                // A marker that cannot be read says nothing: the gate
                // closes by itself until a read succeeds.
                let Ok(Some(h)) = look.marker(&consumer) else {
                    continue;
                };
                if h == me {
                    gate.renew();
                } else {
                    tracing::error!(
                        group,
                        holder = h,
                        "this process lost the generator's counted run to another process (it was out of its group longer than {} s); the generator stops producing",
                        SESSION_TIMEOUT.as_secs()
                    );
                    lost_flag.store(true, Ordering::Relaxed);
                    on_lost.store(true, Ordering::Relaxed);
                    break;
                }
            }
            // Dropping the consumer leaves the group.
        })
        .context("cannot start the generator lease thread")?;
    Ok(RunLease {
        stop,
        lost,
        thread: Some(thread),
    })
}

/// Polls (so the membership stays current) for `how_long`.
fn idle(consumer: &BaseConsumer, how_long: Duration) {
    let until = Instant::now() + how_long;
    while Instant::now() < until {
        let _ = consumer.poll(Duration::from_millis(100));
    }
}

/// Commits the marker: accepted only from a member of the current generation.
fn write_marker(consumer: &BaseConsumer, topic: &str, me: &str) -> anyhow::Result<()> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(0))?;
    if let Some(mut e) = tpl.find_partition(topic, 0) {
        e.set_metadata(format!("{MARKER_PREFIX}{me}"));
    }
    consumer.commit(&tpl, CommitMode::Sync)?;
    Ok(())
}

struct Member {
    id: String,
    client: String,
    host: String,
}

impl Member {
    fn describe(&self) -> String {
        format!("{} on {}", self.client, self.host)
    }
}

struct Look<'a> {
    group: &'a str,
    topic: &'a str,
    deadline: Instant,
}

impl Look<'_> {
    /// The group's members. A coordinator still loading (a fresh or
    /// restarted broker) answers soon: retried until the deadline.
    fn members(&self, c: &BaseConsumer) -> anyhow::Result<Vec<Member>> {
        let list = loop {
            match c.fetch_group_list(Some(self.group), METADATA_TIMEOUT) {
                Ok(list) => break list,
                Err(e) if Instant::now() < self.deadline => {
                    tracing::debug!(group = self.group, error = %e, "cannot describe the generator's group yet; retrying");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => {
                    return Err(
                        anyhow::Error::new(e).context(format!("cannot describe consumer group {:?}", self.group))
                    );
                }
            }
        };
        Ok(list
            .groups()
            .iter()
            .flat_map(|g| g.members())
            .map(|m| Member {
                id: m.id().to_string(),
                client: m.client_id().to_string(),
                host: m.client_host().to_string(),
            })
            .collect())
    }

    /// The client id the marker names, if any.
    fn marker(&self, c: &BaseConsumer) -> anyhow::Result<Option<String>> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(self.topic, 0);
        let read = c
            .committed_offsets(tpl, METADATA_TIMEOUT)
            .with_context(|| format!("cannot read the offsets of consumer group {:?}", self.group))?;
        Ok(read
            .find_partition(self.topic, 0)
            .and_then(|e| e.metadata().strip_prefix(MARKER_PREFIX).map(str::to_string)))
    }
}
