//! `[[checks]]`, `[audit]` and `[http]`: what `host run` does besides moving
//! messages, the periodic audit and the metrics, health and status server.

use super::bounds::{AUDIT_INTERVAL_MS, AUDIT_TIMEOUT_MS};
use super::plugins::{RawLimits, plugin_config};
use super::{
    ConfigError, DEFAULT_AUDIT_INTERVAL_MS, DEFAULT_AUDIT_TIMEOUT_MS, MIN_AUDIT_INTERVAL_MS, PluginConfig,
    PluginLimits, Source,
};
use serde::Deserialize;
use std::time::Duration;
use toml::Spanned;

/// Default address of the `[http]` server (metrics, health, status).
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:9187";

/// The `[http]` server of `host run`, `consume` and `produce`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// `None`: turned off (`listen = ""`).
    pub listen: Option<std::net::SocketAddr>,
    /// Host names (besides IP addresses and `localhost`) that requests may
    /// carry in their `Host` header: the names of a proxy in front.
    pub allowed_hosts: Vec<String>,
}

/// A check plugin, run by `host check` and by the periodic audit of `host run`.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckConfig {
    pub name: String,
    pub plugin: PluginConfig,
}

/// When and how the audit runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditConfig {
    /// Time between two rounds of the periodic audit in `host run`; `None`
    /// (`interval_ms = 0`) turns it off.
    pub interval: Option<Duration>,
    /// Longest wait for Kafka or PostgreSQL to answer one audit request.
    pub timeout: Duration,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            interval: Some(Duration::from_millis(DEFAULT_AUDIT_INTERVAL_MS)),
            timeout: Duration::from_millis(DEFAULT_AUDIT_TIMEOUT_MS),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    listen: Option<Spanned<String>>,
    #[serde(default)]
    allowed_hosts: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCheck {
    name: Spanned<String>,
    plugin: Spanned<String>,
    #[serde(default)]
    settings: toml::Table,
    #[serde(default)]
    limits: RawLimits,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudit {
    interval_ms: Option<Spanned<u64>>,
    timeout_ms: Option<Spanned<u64>>,
}

pub(super) fn check_http(src: &Source<'_>, raw: RawHttp) -> Result<HttpConfig, ConfigError> {
    let mut allowed_hosts = Vec::new();
    for name in &raw.allowed_hosts {
        let text = name.get_ref().trim().trim_end_matches('.').to_ascii_lowercase();
        let valid = !text.is_empty()
            && text.len() <= 253
            && text.split('.').all(|label| {
                !label.is_empty() && label.len() <= 63 && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !valid {
            return Err(src.error(
                name.span(),
                format!(
                    "http.allowed_hosts: {:?} is not a host name; list the names clients use to reach this server, without port or scheme, e.g. [\"status.example.com\"]",
                    name.get_ref()
                ),
            ));
        }
        allowed_hosts.push(text);
    }
    let Some(listen) = raw.listen else {
        let listen = DEFAULT_HTTP_LISTEN.parse().ok();
        return Ok(HttpConfig { listen, allowed_hosts });
    };
    let text = listen.get_ref().trim();
    if text.is_empty() {
        return Ok(HttpConfig {
            listen: None,
            allowed_hosts,
        });
    }
    match text.parse() {
        Ok(addr) => Ok(HttpConfig {
            listen: Some(addr),
            allowed_hosts,
        }),
        Err(_) => Err(src.error(
            listen.span(),
            format!(
                "http.listen {text:?} is not an IP address and port, like \"{DEFAULT_HTTP_LISTEN}\" or \"0.0.0.0:9187\" (\"\" turns the HTTP server off)"
            ),
        )),
    }
}

pub(super) fn check_audit(src: &Source<'_>, raw: RawAudit) -> Result<AuditConfig, ConfigError> {
    let defaults = AuditConfig::default();
    let interval = match &raw.interval_ms {
        None => defaults.interval,
        Some(v) if *v.get_ref() == 0 => None,
        Some(v) if *v.get_ref() < MIN_AUDIT_INTERVAL_MS => {
            return Err(src.error(
                v.span(),
                format!("audit.interval_ms must be 0 (no periodic audit) or at least {MIN_AUDIT_INTERVAL_MS}"),
            ));
        }
        Some(v) => Some(Duration::from_millis(AUDIT_INTERVAL_MS.check(
            src,
            "audit.interval_ms",
            v,
        )?)),
    };
    let timeout = match &raw.timeout_ms {
        None => defaults.timeout,
        Some(v) => Duration::from_millis(AUDIT_TIMEOUT_MS.check(src, "audit.timeout_ms", v)?),
    };
    Ok(AuditConfig { interval, timeout })
}

/// `[[checks]]`, in the file's order: `unique` takes each name.
pub(super) fn check_checks(
    src: &Source<'_>,
    raw: Vec<RawCheck>,
    unique: &mut impl FnMut(&Spanned<String>, &str) -> Result<String, ConfigError>,
    defaults: PluginLimits,
) -> Result<Vec<CheckConfig>, ConfigError> {
    let mut checks = Vec::new();
    for c in raw {
        let name = unique(&c.name, "checks")?;
        let plugin = plugin_config(src, &c.plugin, &c.settings, c.limits.over(src, "checks", defaults)?)?;
        checks.push(CheckConfig { name, plugin });
    }
    Ok(checks)
}
