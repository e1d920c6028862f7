//! The `host` library: everything the binary does, reachable from tests.
//! One module per external system (kafka, postgres, plugins), the pipeline
//! logic between them, and the typed configuration.

pub mod config;
pub mod kafka;
pub mod pipeline;
pub mod plugins;
pub mod postgres;
