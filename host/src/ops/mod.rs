//! Operating a running pipeline without reading logs: Prometheus metrics,
//! health and readiness, and the status (JSON, a page, `host status`).

pub mod http;
mod http_guard;
pub mod metrics;
pub mod plugin_live;
pub mod row_counts;
pub mod state;
pub mod status;
mod status_read;
mod status_text;
