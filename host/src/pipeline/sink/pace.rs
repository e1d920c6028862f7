//! When a sink writes its batch: adaptive batching (group commit).
//!
//! - A batch is written as soon as the consumer has nothing more buffered
//!   and no write is in flight: at low load a message waits for one write,
//!   not for `flush_interval_ms`.
//! - While a write is in flight, messages collect; the next batch is what
//!   arrived meanwhile. So batches grow only while messages arrive faster
//!   than a write takes (a slow or distant database gets larger batches and
//!   the same number of round trips per batch), up to `batch_size`.
//! - `flush_interval_ms` caps how long a batch collects while a write is in
//!   flight: the batch is then mapped, and written once that write commits.
//!
//! Under full load the consumer always has messages buffered, so batches
//! fill to `batch_size` as before.

use std::time::Duration;

/// While messages arrive back to back, how many between two looks at the
/// clock for the flush interval.
const CLOCK_EVERY: usize = 64;

/// How a receive step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Arrival {
    /// A message the consumer had already fetched (no wait, no clock).
    Buffered,
    /// Nothing buffered, and nothing in flight: the batch can go now.
    Drained,
    /// After a wait: a message, a timeout or a stop.
    Waited,
}

/// Whether a receive that found nothing buffered should end at once, so the
/// batch is written without waiting for more.
pub(super) fn write_now(batch_len: usize, writing: bool) -> bool {
    batch_len > 0 && !writing
}

/// What the decision looks at.
pub(super) struct Batch {
    pub len: usize,
    pub batch_size: usize,
    pub flush_interval: Duration,
}

impl Batch {
    /// Whether the batch is to be written now (the sink stopping aside):
    /// full, drained with nothing in flight, or collecting for longer than
    /// the flush interval. `elapsed` (the age of the batch) is read only
    /// when needed, and while messages stream in only every few of them.
    pub(super) fn due(&self, arrival: Arrival, elapsed: impl FnOnce() -> Duration) -> bool {
        if self.len == 0 {
            return false;
        }
        if self.len >= self.batch_size || arrival == Arrival::Drained {
            return true;
        }
        let look = arrival != Arrival::Buffered || self.len.is_multiple_of(CLOCK_EVERY);
        look && elapsed() >= self.flush_interval
    }
}

/// How long a receive may wait for the next message: until the batch's
/// flush interval is over (`idle` with nothing collected), at most `poll`
/// while a write is in flight so its commit is noticed promptly.
pub(super) fn wait(batch: &Batch, elapsed: Duration, idle: Duration, writing: bool, poll: Duration) -> Duration {
    let wait = if batch.len == 0 {
        idle
    } else {
        batch.flush_interval.saturating_sub(elapsed)
    };
    if writing { wait.min(poll) } else { wait }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn batch(len: usize) -> Batch {
        Batch {
            len,
            batch_size: 100,
            flush_interval: 200 * MS,
        }
    }

    #[test]
    fn a_drained_consumer_writes_at_once_when_nothing_is_in_flight() {
        assert!(write_now(1, false));
        assert!(!write_now(1, true), "messages collect while a write is in flight");
        assert!(!write_now(0, false), "nothing to write");
        assert!(batch(1).due(Arrival::Drained, || Duration::ZERO));
    }

    #[test]
    fn an_empty_batch_is_never_due() {
        assert!(!batch(0).due(Arrival::Drained, || Duration::from_secs(9)));
        assert!(!batch(0).due(Arrival::Waited, || Duration::from_secs(9)));
    }

    #[test]
    fn a_full_batch_is_due_whatever_its_age() {
        assert!(batch(100).due(Arrival::Buffered, || Duration::ZERO));
        assert!(batch(150).due(Arrival::Waited, || Duration::ZERO));
    }

    #[test]
    fn a_batch_collecting_behind_a_write_is_due_after_the_flush_interval() {
        assert!(!batch(10).due(Arrival::Waited, || 199 * MS));
        assert!(batch(10).due(Arrival::Waited, || 200 * MS));
    }

    #[test]
    fn streaming_messages_look_at_the_clock_only_every_few() {
        let mut looked = false;
        assert!(!batch(65).due(Arrival::Buffered, || {
            looked = true;
            Duration::from_secs(1)
        }));
        assert!(!looked);
        assert!(batch(64).due(Arrival::Buffered, || Duration::from_secs(1)));
    }

    #[test]
    fn waits_are_short_while_a_write_is_in_flight() {
        let (idle, poll) = (200 * MS, 2 * MS);
        assert_eq!(wait(&batch(0), Duration::ZERO, idle, false, poll), idle);
        assert_eq!(wait(&batch(3), 50 * MS, idle, false, poll), 150 * MS);
        assert_eq!(wait(&batch(3), 50 * MS, idle, true, poll), poll);
        assert_eq!(wait(&batch(3), 300 * MS, idle, false, poll), Duration::ZERO);
    }
}
