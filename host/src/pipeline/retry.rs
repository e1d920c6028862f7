//! Retrying a database or broker operation that failed, with a capped
//! backoff: an outage is waited out, never skipped (see the delivery contract
//! in `pipeline/mod.rs`).

use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;

/// The pause after the first failure; it doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause between retries of a failed database or broker operation.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The pauses between attempts: [`FIRST_BACKOFF`], then doubling up to
/// [`MAX_BACKOFF`].
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(FIRST_BACKOFF, MAX_BACKOFF)
    }
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Self {
        Self {
            next: first.min(max),
            max,
        }
    }

    /// The pause before the next attempt; the one after it is twice as long,
    /// up to the maximum.
    pub fn next_pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        pause
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Retry,
    /// Waiting cannot cure it (a refused password, a panicked task).
    GiveUp,
}

/// Runs `attempt` until it succeeds, pausing by `backoff` between attempts.
/// After each failure, `failed(&error, failures so far)` logs it and says
/// whether another attempt is worth it. With `stop`, a stop request cuts the
/// pause short and ends the retries with the last error.
pub async fn with_backoff<T, E, Fut>(
    mut backoff: Backoff,
    mut stop: Option<&mut watch::Receiver<bool>>,
    mut attempt: impl FnMut() -> Fut,
    mut failed: impl FnMut(&E, u32) -> Verdict,
) -> Result<T, E>
where
    Fut: Future<Output = Result<T, E>>,
{
    let mut failures = 0u32;
    loop {
        let error = match attempt().await {
            Ok(value) => return Ok(value),
            Err(e) => e,
        };
        failures = failures.saturating_add(1);
        if stop.as_ref().is_some_and(|s| *s.borrow()) || failed(&error, failures) == Verdict::GiveUp {
            return Err(error);
        }
        let pause = tokio::time::sleep(backoff.next_pause());
        match stop.as_deref_mut() {
            None => pause.await,
            Some(stop) => {
                tokio::pin!(pause);
                tokio::select! {
                    _ = &mut pause => {}
                    // A dropped sender never sends a stop: sleep the pause out.
                    changed = stop.changed() => if changed.is_err() { pause.await },
                }
                if *stop.borrow() {
                    return Err(error);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::time::Instant;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn pauses_double_up_to_the_cap() {
        let mut b = Backoff::default();
        let pauses: Vec<u64> = (0..9).map(|_| b.next_pause().as_millis() as u64).collect();
        assert_eq!(pauses, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
    }

    #[test]
    fn a_first_pause_over_the_cap_is_capped() {
        let mut b = Backoff::new(Duration::from_secs(60), MAX_BACKOFF);
        assert_eq!(b.next_pause(), MAX_BACKOFF);
        assert_eq!(b.next_pause(), MAX_BACKOFF);
    }

    #[test]
    fn a_huge_pause_does_not_overflow() {
        let mut b = Backoff::new(Duration::MAX, Duration::MAX);
        assert_eq!(b.next_pause(), Duration::MAX);
        assert_eq!(b.next_pause(), Duration::MAX);
    }

    #[tokio::test]
    async fn retries_until_the_attempt_succeeds() {
        let calls = Cell::new(0u32);
        let seen = Cell::new(Vec::new());
        let result: Result<u32, String> = with_backoff(
            Backoff::new(MS, MS),
            None,
            || {
                calls.set(calls.get() + 1);
                let n = calls.get();
                async move { if n < 4 { Err(format!("failure {n}")) } else { Ok(n) } }
            },
            |e: &String, failures| {
                let mut s = seen.take();
                s.push((e.clone(), failures));
                seen.set(s);
                Verdict::Retry
            },
        )
        .await;
        assert_eq!(result, Ok(4));
        assert_eq!(
            seen.take(),
            [
                ("failure 1".to_string(), 1),
                ("failure 2".to_string(), 2),
                ("failure 3".to_string(), 3)
            ]
        );
    }

    #[tokio::test]
    async fn gives_up_when_told_to() {
        let calls = Cell::new(0u32);
        let result: Result<(), &str> = with_backoff(
            Backoff::new(MS, MS),
            None,
            || {
                calls.set(calls.get() + 1);
                async { Err("refused") }
            },
            |_, failures| if failures == 2 { Verdict::GiveUp } else { Verdict::Retry },
        )
        .await;
        assert_eq!(result, Err("refused"));
        assert_eq!(calls.get(), 2);
    }

    #[tokio::test]
    async fn a_stop_already_requested_ends_the_retries_at_once() {
        let (_tx, mut stop) = watch::channel(true);
        let calls = Cell::new(0u32);
        let result: Result<(), &str> = with_backoff(
            Backoff::default(),
            Some(&mut stop),
            || {
                calls.set(calls.get() + 1);
                async { Err("down") }
            },
            |_, _| Verdict::Retry,
        )
        .await;
        assert_eq!(result, Err("down"));
        assert_eq!(calls.get(), 1);
    }

    #[tokio::test]
    async fn a_stop_cuts_the_pause_short() {
        let (tx, mut stop) = watch::channel(false);
        let started = Instant::now();
        let stopper = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = tx.send(true);
            tx
        });
        let result: Result<(), &str> = with_backoff(
            Backoff::new(Duration::from_secs(60), Duration::from_secs(60)),
            Some(&mut stop),
            || async { Err("down") },
            |_, _| Verdict::Retry,
        )
        .await;
        assert_eq!(result, Err("down"));
        // Far less than the 60 s pause: the stop ended it.
        assert!(started.elapsed() < Duration::from_secs(30));
        drop(stopper.await);
    }

    #[tokio::test]
    async fn a_dropped_stop_sender_still_pauses() {
        let (tx, mut stop) = watch::channel(false);
        drop(tx);
        let calls = Cell::new(0u32);
        let started = Instant::now();
        let result: Result<u32, &str> = with_backoff(
            Backoff::new(Duration::from_millis(30), Duration::from_millis(30)),
            Some(&mut stop),
            || {
                calls.set(calls.get() + 1);
                let n = calls.get();
                async move { if n < 3 { Err("down") } else { Ok(n) } }
            },
            |_, _| Verdict::Retry,
        )
        .await;
        assert_eq!(result, Ok(3));
        assert!(started.elapsed() >= Duration::from_millis(60));
    }
}
