//! A mapper's failed calls (traps, timeouts, memory, output, contract) were
//! only counted (`dead_letters=` moved, the log said nothing). Each is now
//! logged at WARN, at most one line per plugin per [`INTERVAL`]: the line
//! gives the reason of the latest failure (its first line) and how many
//! calls failed, of which kind, since the plugin's previous line.

use crate::plugins::PluginError;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The least time between two lines about one plugin.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// Failures of one plugin not yet logged.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    pub traps: u64,
    pub timeouts: u64,
    /// Memory, output and contract faults.
    pub other: u64,
}

impl Counts {
    pub fn total(&self) -> u64 {
        self.traps + self.timeouts + self.other
    }

    fn add(&mut self, e: &PluginError) {
        match e {
            PluginError::Trap { .. } => self.traps += 1,
            PluginError::Timeout { .. } => self.timeouts += 1,
            _ => self.other += 1,
        }
    }
}

/// What to log now about a plugin, if anything.
#[derive(Debug, PartialEq, Eq)]
pub struct Line {
    pub counts: Counts,
    pub reason: String,
}

/// One plugin's state: when its last line was logged, the failures since,
/// and the latest one's reason.
#[derive(Default)]
struct State {
    last_line: Option<Instant>,
    counts: Counts,
    reason: String,
}

/// Per plugin: when its last line was logged, and the failures since.
#[derive(Default)]
pub struct Limiter {
    plugins: HashMap<String, State>,
    interval: Duration,
}

impl Limiter {
    pub fn new(interval: Duration) -> Self {
        Self {
            plugins: HashMap::new(),
            interval,
        }
    }

    /// Counts a failure of `plugin` at `now`; returns the line to log when
    /// the plugin's last line is at least the interval old (or there was none).
    pub fn record(&mut self, plugin: &str, e: &PluginError, now: Instant) -> Option<Line> {
        let state = self.plugins.entry(plugin.to_string()).or_default();
        state.counts.add(e);
        state.reason = e.to_string().lines().next().unwrap_or_default().to_string();
        if state
            .last_line
            .is_some_and(|at| now.saturating_duration_since(at) < self.interval)
        {
            return None;
        }
        Some(Self::line(state, now))
    }

    /// The lines of failures not yet logged whose plugin's last line is at
    /// least the interval old; every one with `all` (the run is ending).
    pub fn pending(&mut self, now: Instant, all: bool) -> Vec<(String, Line)> {
        let interval = self.interval;
        let mut lines: Vec<(String, Line)> = self
            .plugins
            .iter_mut()
            .filter(|(_, s)| s.counts.total() > 0)
            .filter(|(_, s)| {
                all || s
                    .last_line
                    .is_none_or(|at| now.saturating_duration_since(at) >= interval)
            })
            .map(|(plugin, s)| (plugin.clone(), Self::line(s, now)))
            .collect();
        lines.sort_by(|a, b| a.0.cmp(&b.0));
        lines
    }

    fn line(state: &mut State, now: Instant) -> Line {
        state.last_line = Some(now);
        Line {
            counts: std::mem::take(&mut state.counts),
            reason: state.reason.clone(),
        }
    }
}

/// Whether an error of a mapper call is the plugin's fault (logged here),
/// not a failure to start it (which stops the sink and is logged there).
pub fn is_call_fault(e: &PluginError) -> bool {
    matches!(
        e,
        PluginError::Trap { .. }
            | PluginError::Timeout { .. }
            | PluginError::OutOfMemory { .. }
            | PluginError::OutputTooLarge { .. }
            | PluginError::Contract { .. }
    )
}

/// Records a failed mapper call (a whole batch, or one message of a batch
/// whose call failed), logging at WARN within the rate limit.
pub fn mapper_call_failed(plugin: &str, e: &PluginError) {
    if !is_call_fault(e) {
        return;
    }
    let line = limiter().record(plugin, e, Instant::now());
    if let Some(line) = line {
        log(plugin, &line);
    }
}

/// Logs the failures counted since each plugin's last line, for plugins
/// whose last line is at least [`INTERVAL`] old (called every few seconds,
/// so a burst's count is not held until the next failure), or for all of
/// them with `all` (the run is ending).
pub fn log_pending(all: bool) {
    let lines = limiter().pending(Instant::now(), all);
    for (plugin, line) in lines {
        log(&plugin, &line);
    }
}

fn limiter() -> std::sync::MutexGuard<'static, Limiter> {
    static LIMITER: OnceLock<Mutex<Limiter>> = OnceLock::new();
    LIMITER
        .get_or_init(|| Mutex::new(Limiter::new(INTERVAL)))
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

fn log(plugin: &str, Line { counts, reason }: &Line) {
    tracing::warn!(
        plugin,
        failed_calls = counts.total(),
        traps = counts.traps,
        timeouts = counts.timeouts,
        other = counts.other,
        reason,
        "mapper call failed; each message it fails on alone is a dead letter (failed_calls counts since this plugin's previous line; at most one line per {} s)",
        INTERVAL.as_secs()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trap(n: u32) -> PluginError {
        PluginError::Trap {
            name: "sink rows".into(),
            reason: format!("wasm trap: unreachable; stderr: panicked at x.rs:1:1: boom {n}\nmore"),
        }
    }

    fn timeout() -> PluginError {
        PluginError::Timeout {
            name: "sink rows".into(),
            timeout_ms: 5000,
        }
    }

    #[test]
    fn the_first_failure_is_logged_then_at_most_one_line_per_interval_with_the_count() {
        let mut l = Limiter::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let first = l.record("sink rows", &trap(1), t0).expect("the first is logged");
        assert_eq!(first.counts.total(), 1);
        assert_eq!(
            first.reason,
            "plugin sink rows trapped: wasm trap: unreachable; stderr: panicked at x.rs:1:1: boom 1"
        );
        for i in 2..=5 {
            assert_eq!(
                l.record("sink rows", &trap(i), t0 + Duration::from_secs(u64::from(i))),
                None
            );
        }
        assert_eq!(l.record("sink rows", &timeout(), t0 + Duration::from_secs(9)), None);
        let next = l
            .record("sink rows", &trap(7), t0 + Duration::from_secs(10))
            .expect("one line per interval");
        assert_eq!(
            next.counts,
            Counts {
                traps: 5,
                timeouts: 1,
                other: 0
            },
            "every failure since the last line"
        );
        assert!(next.reason.ends_with("boom 7"), "the latest reason: {}", next.reason);
    }

    #[test]
    fn failures_held_back_are_logged_once_the_interval_has_passed_or_at_the_end() {
        let mut l = Limiter::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(l.record("sink rows", &trap(1), t0).is_some());
        assert!(
            l.pending(t0 + Duration::from_secs(5), false).is_empty(),
            "nothing held back yet"
        );
        assert!(l.record("sink rows", &trap(2), t0 + Duration::from_secs(1)).is_none());
        assert!(l.record("sink rows", &timeout(), t0 + Duration::from_secs(2)).is_none());
        assert!(
            l.pending(t0 + Duration::from_secs(9), false).is_empty(),
            "within the interval"
        );
        let due = l.pending(t0 + Duration::from_secs(10), false);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].0, "sink rows");
        assert_eq!(
            due[0].1.counts,
            Counts {
                traps: 1,
                timeouts: 1,
                other: 0
            }
        );
        assert!(
            due[0].1.reason.contains("did not return within"),
            "the latest: {}",
            due[0].1.reason
        );
        assert!(l.pending(t0 + Duration::from_secs(30), false).is_empty(), "logged once");
        // At the end, what is held back goes out whatever the time.
        assert!(l.record("sink rows", &trap(3), t0 + Duration::from_secs(11)).is_none());
        let end = l.pending(t0 + Duration::from_secs(12), true);
        assert_eq!(end.len(), 1);
        assert_eq!(end[0].1.counts.total(), 1);
    }

    #[test]
    fn plugins_are_limited_apart() {
        let mut l = Limiter::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(l.record("sink a", &trap(1), t0).is_some());
        assert!(l.record("sink b", &timeout(), t0).is_some());
        assert!(l.record("sink a", &trap(2), t0).is_none());
    }

    #[test]
    fn failing_to_start_is_not_a_call_fault() {
        assert!(!is_call_fault(&PluginError::Configure {
            name: "x".into(),
            message: "no".into()
        }));
        assert!(is_call_fault(&timeout()));
    }
}
