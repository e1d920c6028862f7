//! The `host` library: everything the binary does, reachable from tests.
//! One module per external system (kafka, postgres, aiven, plugins), the
//! pipeline logic between them, provisioning, the audit, and the typed
//! configuration.

pub mod aiven;
pub mod alloc;
pub mod audit;
pub mod cli;
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
