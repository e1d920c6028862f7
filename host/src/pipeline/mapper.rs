//! What a sink maps its batches with. A module of its own, so the batch (which
//! calls the mapper) and the sink (which holds it) need not import each other.

use crate::plugins::mapper::{Message, Outcome, Table};
use crate::plugins::{MapperWorld, Plugin, PluginError};

/// Turns a batch of consumed messages into one outcome per message: the WASM
/// mapper plugin, or a native mapper (the benchmark compares the two).
pub trait BatchMapper: Send + 'static {
    /// The name logs use.
    fn name(&self) -> &str;
    /// Tells versions apart in logs.
    fn hash(&self) -> &str;
    /// What the dead-letter table records as the plugin.
    fn describe(&self) -> String;
    /// The tables it writes, as it declared them (contract 0.3.0; an older
    /// mapper's columns are one unnamed table).
    fn tables(&self) -> &[Table];
    /// One outcome per message, in order. An error concerns the whole call:
    /// the sink then maps the messages one by one to find the culprits.
    fn map_batch(&mut self, messages: &[Message]) -> Result<Vec<Outcome>, PluginError>;
    /// The most bytes one batch's outcomes may hold (`limits.max_output_bytes`).
    fn max_output_bytes(&self) -> usize {
        usize::MAX
    }
}

impl BatchMapper for Plugin<MapperWorld> {
    fn name(&self) -> &str {
        Plugin::name(self)
    }
    fn hash(&self) -> &str {
        Plugin::hash(self)
    }
    fn describe(&self) -> String {
        format!("{} ({})", self.path().display(), Plugin::hash(self))
    }
    fn tables(&self) -> &[Table] {
        self.configured()
    }
    fn map_batch(&mut self, messages: &[Message]) -> Result<Vec<Outcome>, PluginError> {
        Plugin::map_batch(self, messages)
    }
    fn max_output_bytes(&self) -> usize {
        self.limits().max_output_bytes
    }
}
