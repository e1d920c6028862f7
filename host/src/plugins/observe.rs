//! What the engine tells whoever watches it (the host's metrics) about each
//! call: given to the [`super::Runtime`], so the engine never calls up into
//! the layers that use it.

use super::PluginError;
use std::time::Duration;

/// Told about every call of every plugin of a runtime.
pub trait Observer: Send + Sync {
    /// A call ended after `took`, with `error` when it failed.
    fn call(&self, plugin: &str, took: Duration, error: Option<&PluginError>);
    /// The instance's peak memory so far, after a call it survived.
    fn memory(&self, plugin: &str, peak_bytes: usize);
}
