//! What a sink does when Kafka fences it out of its consumer group
//! (`FencedInstanceId`).
//!
//! Two processes with one `group.instance.id` fence each other: the broker
//! takes the newer one and fences the older. But a broker that restarted can
//! also fence a static member by itself, with no other process in sight (its
//! coordinator reloads the group and no longer knows the member's current
//! id: KIP-345's known pitfall, confluent-kafka-go #494). Stopping then would
//! leave a `--once` run half done for nothing. So the sink judges:
//!
//! - another running process on this machine holds the id ([`IdHold`]): a
//!   real duplicate, the sink stops at once with the message that names the
//!   fix;
//! - fenced again within [`WINDOW`] of its last fence: a duplicate on another
//!   machine (each rejoin of one fences the other, a session timeout apart),
//!   the sink stops the same way;
//! - otherwise the fenced consumer is dropped and, after a pause of one
//!   session timeout (so a real duplicate on another machine keeps the
//!   floor meanwhile), a new one joins and starts from the offsets stored in
//!   PostgreSQL, as after any rebalance.

use super::Sink;
use crate::kafka::{self, SESSION_TIMEOUT, SinkContext, StoredOffsets};
use crate::member::IdHold;
use anyhow::Context as _;
use rdkafka::consumer::Consumer as _;
use std::time::{Duration, Instant};

/// A second fence this soon after the first is a duplicate's: rejoining
/// after [`SESSION_TIMEOUT`] fences the other process, which does the same
/// one pause later, and so on. Six sessions leave room for slow joins.
pub(super) const WINDOW: Duration = Duration::from_secs(6 * SESSION_TIMEOUT.as_secs());

/// What a sink remembers of its fences.
pub(super) struct Fences {
    /// This process's claim on the sink's instance id.
    hold: IdHold,
    /// When the sink was last fenced.
    last: Option<Instant>,
}

/// Whether a fence is a duplicate's.
#[derive(Debug, PartialEq, Eq)]
enum Judgement {
    Rejoin,
    Duplicate(String),
}

impl Fences {
    pub(super) fn new(instance_id: &str) -> Self {
        Self {
            hold: IdHold::claim(instance_id),
            last: None,
        }
    }

    fn judge(&mut self, now: Instant) -> Judgement {
        let others = self.hold.others();
        if !others.is_empty() {
            return Judgement::Duplicate(format!("process {others:?} on this machine runs with the same id"));
        }
        judge_repeat(self.last.replace(now), now)
    }
}

/// A fence after an earlier one: a duplicate when within [`WINDOW`].
fn judge_repeat(last: Option<Instant>, now: Instant) -> Judgement {
    match last {
        Some(last) if now.duration_since(last) < WINDOW => Judgement::Duplicate(format!(
            "fenced again {} s after the previous fence (rejoined once; a second fence within {} s is another process's)",
            now.duration_since(last).as_secs(),
            WINDOW.as_secs()
        )),
        _ => Judgement::Rejoin,
    }
}

impl Sink {
    /// After a consumer error retrying cannot cure (`reason`): stops the sink
    /// unless it is a fence that is not a duplicate's, which the sink
    /// survives by joining again with a new consumer.
    pub(super) async fn fail_or_rejoin(
        &mut self,
        reason: String,
        error: Option<&rdkafka::error::KafkaError>,
    ) -> anyhow::Result<()> {
        if !kafka::fenced(&self.consumer, error) {
            anyhow::bail!("{reason}");
        }
        if let Judgement::Duplicate(why) = self.fences.judge(Instant::now()) {
            anyhow::bail!("{reason}\n  ({why})");
        }
        tracing::warn!(
            sink = self.config.name,
            group = self.config.group,
            member = self.config.instance_id,
            pause_s = SESSION_TIMEOUT.as_secs(),
            "Kafka fenced this process out of its consumer group, and no other process is known to hold its id (a restarted broker can do that); joining again with a new consumer after the pause"
        );
        self.replace_consumer()?;
        // The new consumer has no assignment yet: the sink starts over from
        // what PostgreSQL holds at its first one. A write in flight keeps its
        // outcome (its commit is conditional on the stored offsets).
        self.batch.clear();
        self.positions.reset(StoredOffsets::new());
        self.settle().await?;
        crate::ops::state::sink_assigned(&self.config.name, self.positions.next.keys());
        let mut stop = self.stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(SESSION_TIMEOUT) => {}
            _ = stop.wait_for(|s| *s) => return Ok(()),
        }
        self.consumer
            .subscribe(&[&self.config.topic])
            .with_context(|| format!("cannot subscribe to topic {:?} again", self.config.topic))?;
        tracing::info!(
            sink = self.config.name,
            member = self.config.instance_id,
            "joining the consumer group again"
        );
        Ok(())
    }

    /// Puts a new consumer (not subscribed yet) in place of the fenced one,
    /// which is closed on a thread of its own (closing polls until done).
    fn replace_consumer(&mut self) -> anyhow::Result<()> {
        let config = &self.config;
        let loader = super::offset_loader(&self.pipeline, config);
        let fresh = kafka::sink_consumer(
            &self.pipeline.kafka,
            &config.group,
            &config.instance_id,
            SinkContext::new(&config.topic, &config.instance_id, loader).starting(config.start),
        )?;
        let fenced = std::mem::replace(&mut self.consumer, fresh);
        tokio::task::spawn_blocking(move || drop(fenced));
        // The generation invariant (see [`Sink`]): the new consumer counts
        // its own generations from zero, and nothing of the old one's stays.
        self.generation = self.consumer.context().generation();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_fence_rejoins_and_a_second_within_the_window_is_a_duplicate() {
        let now = Instant::now();
        assert_eq!(judge_repeat(None, now), Judgement::Rejoin);
        let soon = now + 2 * SESSION_TIMEOUT;
        assert!(matches!(judge_repeat(Some(now), soon), Judgement::Duplicate(_)));
        let later = now + WINDOW + Duration::from_secs(1);
        assert_eq!(judge_repeat(Some(now), later), Judgement::Rejoin);
    }
}
