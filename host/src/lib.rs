//! The `host` library: everything the binary does, reachable from tests.
//! Six layers, each importing only the ones below it (ARCHITECTURE.md,
//! checked by scripts/layers): the ground (typed configuration, the plugin
//! contract's plain types), one module per external system (kafka, postgres,
//! registry, aiven, plugins), the telemetry (ops), the audit, the pipeline
//! logic between the systems, and the commands on top.

pub mod aiven;
pub mod alloc;
pub mod audit;
pub mod commands;
pub mod config;
pub mod contract;
pub mod digest;
pub mod error_text;
pub mod findings;
pub mod kafka;
pub mod kit;
pub mod member;
pub mod ops;
pub mod pipeline;
pub mod plugins;
pub mod postgres;
pub mod provision;
pub mod registry;
pub mod tls;
