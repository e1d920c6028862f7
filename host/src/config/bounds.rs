//! The defaults and bounds of the numeric settings, and [`Bound`], which holds
//! a number within its bounds and says which key crossed which limit.

use super::{ConfigError, Source};
use toml::Spanned;

/// Default number of messages a sink maps and writes in one transaction.
pub const DEFAULT_BATCH_SIZE: usize = 20_000;
/// Default longest time a sink waits to fill a batch before writing it.
pub const DEFAULT_FLUSH_INTERVAL_MS: u64 = 200;
/// Default deadline of one plugin call.
pub const DEFAULT_CALL_TIMEOUT_MS: u64 = 5_000;
/// Default memory cap of one plugin instance.
pub const DEFAULT_MEMORY_LIMIT_BYTES: usize = 64 << 20;
/// Largest plugin file the host will compile.
pub const DEFAULT_MAX_PLUGIN_BYTES: usize = 32 << 20;
/// Default longest time compiling one plugin may take.
pub const DEFAULT_COMPILE_TIMEOUT_MS: u64 = 60_000;
/// Default most bytes one plugin call returns, and one sink batch's outcomes hold.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 64 << 20;

/// Default time between two rounds of the periodic audit in `host run`.
pub const DEFAULT_AUDIT_INTERVAL_MS: u64 = 30_000;
/// Shortest time between two rounds of the periodic audit.
pub const MIN_AUDIT_INTERVAL_MS: u64 = 1_000;
/// Default longest time the audit waits for Kafka or PostgreSQL to answer.
pub const DEFAULT_AUDIT_TIMEOUT_MS: u64 = 5_000;

/// Most messages a sink writes in one transaction (`sinks.batch_size`).
pub const MAX_BATCH_SIZE: usize = 100_000;
/// Longest `sinks.flush_interval_ms`: a minute.
pub const MAX_FLUSH_INTERVAL_MS: u64 = 60_000;
/// Longest `generators.interval_ms`: a day.
pub const MAX_GENERATOR_INTERVAL_MS: u64 = 86_400_000;
/// Most messages one generator produces (`generators.count`).
pub const MAX_GENERATOR_COUNT: u64 = 1_000_000_000_000;
/// Most partitions of one topic (`topics.partitions`).
pub const MAX_PARTITIONS: i32 = 10_000;
/// Most copies of a partition (`topics.replication`).
pub const MAX_REPLICATION: i32 = 32;
/// Longest plugin call or compile deadline (`call_timeout_ms`,
/// `compile_timeout_ms`): ten minutes.
pub const MAX_PLUGIN_TIMEOUT_MS: u64 = 600_000;
/// Least memory of a plugin instance (`memory_limit_bytes`): 1 MiB.
pub const MIN_MEMORY_LIMIT_BYTES: usize = 1 << 20;
/// Most memory of a plugin instance: 4 GiB, all a 32-bit WebAssembly memory can address.
pub const MAX_MEMORY_LIMIT_BYTES: usize = 4 << 30;
/// Largest `max_plugin_bytes`: 1 GiB.
pub const MAX_MAX_PLUGIN_BYTES: usize = 1 << 30;
/// Least `max_output_bytes`: 64 KiB (also what a plugin may write to stderr in one call).
pub const MIN_MAX_OUTPUT_BYTES: usize = 64 << 10;
/// Largest `max_output_bytes`: 1 GiB.
pub const MAX_MAX_OUTPUT_BYTES: usize = 1 << 30;
/// Longest time between two audit rounds (`audit.interval_ms`): a day.
pub const MAX_AUDIT_INTERVAL_MS: u64 = 86_400_000;
/// Shortest and longest `audit.timeout_ms`.
pub const MIN_AUDIT_TIMEOUT_MS: u64 = 100;
pub const MAX_AUDIT_TIMEOUT_MS: u64 = 600_000;

/// The bounds of a numeric setting, and what it is, for its error.
pub(super) struct Bound<T> {
    min: T,
    max: T,
    what: &'static str,
}

pub(super) const PARTITIONS: Bound<i32> = Bound {
    min: 1,
    max: MAX_PARTITIONS,
    what: "the number of partitions of the topic",
};
pub(super) const REPLICATION: Bound<i32> = Bound {
    min: 1,
    max: MAX_REPLICATION,
    what: "copies of each partition; at most the number of brokers",
};
pub(super) const GENERATOR_INTERVAL_MS: Bound<u64> = Bound {
    min: 0,
    max: MAX_GENERATOR_INTERVAL_MS,
    what: "the time between two messages; 0 produces flat out",
};
pub(super) const GENERATOR_COUNT: Bound<u64> = Bound {
    min: 1,
    max: MAX_GENERATOR_COUNT,
    what: "how many messages to produce; leave count out to produce until stopped",
};
pub(super) const BATCH_SIZE: Bound<usize> = Bound {
    min: 1,
    max: MAX_BATCH_SIZE,
    what: "messages written in one transaction",
};
pub(super) const FLUSH_INTERVAL_MS: Bound<u64> = Bound {
    min: 1,
    max: MAX_FLUSH_INTERVAL_MS,
    what: "the longest wait to fill a batch",
};
pub(super) const PLUGIN_TIMEOUT_MS: Bound<u64> = Bound {
    min: 1,
    max: MAX_PLUGIN_TIMEOUT_MS,
    what: "a deadline in milliseconds",
};
pub(super) const MEMORY_LIMIT_BYTES: Bound<usize> = Bound {
    min: MIN_MEMORY_LIMIT_BYTES,
    max: MAX_MEMORY_LIMIT_BYTES,
    what: "a plugin instance's memory; a 32-bit WebAssembly memory ends at 4 GiB",
};
pub(super) const MAX_PLUGIN_BYTES: Bound<usize> = Bound {
    min: 1,
    max: MAX_MAX_PLUGIN_BYTES,
    what: "the largest plugin file to compile",
};
pub(super) const MAX_OUTPUT_BYTES: Bound<usize> = Bound {
    min: MIN_MAX_OUTPUT_BYTES,
    max: MAX_MAX_OUTPUT_BYTES,
    what: "what one plugin call may return, and one sink batch's outcomes together",
};
pub(super) const AUDIT_INTERVAL_MS: Bound<u64> = Bound {
    min: MIN_AUDIT_INTERVAL_MS,
    max: MAX_AUDIT_INTERVAL_MS,
    what: "the time between two audit rounds; 0 turns the periodic audit off",
};
pub(super) const AUDIT_TIMEOUT_MS: Bound<u64> = Bound {
    min: MIN_AUDIT_TIMEOUT_MS,
    max: MAX_AUDIT_TIMEOUT_MS,
    what: "the longest wait for Kafka or PostgreSQL to answer",
};

impl<T: Copy + PartialOrd + std::fmt::Display> Bound<T> {
    /// The number set for `key`, within bounds. The error names the key and
    /// the limit it crossed, says what the setting is, and how to fix it.
    pub(super) fn check(&self, src: &Source<'_>, key: &str, v: &Spanned<T>) -> Result<T, ConfigError> {
        let (n, min, max) = (*v.get_ref(), self.min, self.max);
        if n >= min && n <= max {
            return Ok(n);
        }
        let crossed = if n < min {
            format!("below its minimum of {min}")
        } else {
            format!("over its limit of {max}")
        };
        Err(src.error(
            v.span(),
            format!(
                "{key} = {n} is {crossed} ({}); set it between {min} and {max}",
                self.what
            ),
        ))
    }

    /// Like [`Bound::check`], with `default` when the key is left out.
    pub(super) fn or(&self, src: &Source<'_>, key: &str, v: Option<&Spanned<T>>, default: T) -> Result<T, ConfigError> {
        v.map_or(Ok(default), |v| self.check(src, key, v))
    }
}
