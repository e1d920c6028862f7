//! A sink whose writes keep failing: the pauses between its attempts grow
//! (never a tight loop), and once it has gone long without a commit it says
//! so at warning level with the cause, on `/status` and in the
//! `wasm_stream_sink_stuck_seconds` metric.

use super::retry::Backoff;
use std::time::{Duration, Instant};

/// No commit for this long, with every write failing: the sink is stuck.
pub const STUCK_AFTER: Duration = Duration::from_secs(30);
/// How often a stuck sink repeats its warning.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The writes that failed since the last commit.
#[derive(Debug, Default)]
pub struct Failing {
    /// When the first of them failed, and the pauses between attempts.
    since: Option<(Instant, Backoff)>,
    attempts: u32,
    warned: Option<Instant>,
}

impl Failing {
    /// A write failed because of `why`: the pause before the next attempt.
    pub fn failed(&mut self, sink: &str, why: &str) -> Duration {
        self.note(sink, why);
        match self.since.as_mut() {
            Some((_, backoff)) => backoff.next_pause(),
            None => Duration::ZERO,
        }
    }

    /// Something on the way to a commit failed (a write, or reading the
    /// stored offsets again, which pauses by itself): warns once the sink
    /// has gone long without a commit.
    pub fn note(&mut self, sink: &str, why: &str) {
        let now = Instant::now();
        let (since, _) = self.since.get_or_insert_with(|| (now, Backoff::default()));
        let stuck_for = now.duration_since(*since);
        self.attempts += 1;
        if stuck_for >= STUCK_AFTER {
            let what = format!(
                "no batch committed for {} s ({}); the last failed with: {why}",
                stuck_for.as_secs(),
                crate::plugins::trap_text::plural(u64::from(self.attempts), "attempt", "attempts")
            );
            if self.warned.is_none_or(|w| now.duration_since(w) >= WARN_EVERY) {
                self.warned = Some(now);
                tracing::warn!(
                    sink,
                    stuck_s = stuck_for.as_secs(),
                    attempts = self.attempts,
                    reason = why,
                    "sink stuck: every write of the batch fails; it keeps retrying"
                );
            }
            crate::ops::state::problem(&unit(sink), Some(what));
            crate::ops::metrics::stuck(sink, stuck_for);
        }
    }

    /// A batch committed.
    pub fn committed(&mut self, sink: &str) {
        if self.since.take().is_some() {
            if self.warned.take().is_some() {
                tracing::info!(
                    sink,
                    attempts = self.attempts,
                    "sink no longer stuck: a batch committed"
                );
                crate::ops::state::problem(&unit(sink), None);
                crate::ops::metrics::stuck(sink, Duration::ZERO);
            }
            self.attempts = 0;
        }
    }
}

fn unit(sink: &str) -> String {
    format!("sink {sink}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_while_writes_fail_and_start_over_after_a_commit() {
        let mut f = Failing::default();
        let pauses: Vec<u128> = (0..4).map(|_| f.failed("s", "why").as_millis()).collect();
        assert_eq!(pauses, [100, 200, 400, 800]);
        f.committed("s");
        assert_eq!(f.failed("s", "why").as_millis(), 100);
    }
}
