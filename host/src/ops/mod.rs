//! Operating a running pipeline without reading logs: Prometheus metrics,
//! health and readiness, the status (JSON, a page, `host status`), and
//! replaying dead letters into their sink (`host dead-letters`).

pub mod dead_letters;
pub mod http;
mod http_guard;
pub mod metrics;
pub mod plugin_live;
pub mod rewind;
pub mod row_counts;
pub mod state;
pub mod status;
mod status_text;
