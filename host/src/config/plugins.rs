//! `[plugins]` and the `limits` of each plugin: the sandbox limits, and where
//! a plugin comes from with its settings.

use super::bounds::{MAX_OUTPUT_BYTES, MAX_PLUGIN_BYTES, MEMORY_LIMIT_BYTES, PLUGIN_TIMEOUT_MS};
use super::{
    ConfigError, DEFAULT_CALL_TIMEOUT_MS, DEFAULT_COMPILE_TIMEOUT_MS, DEFAULT_MAX_OUTPUT_BYTES,
    DEFAULT_MAX_PLUGIN_BYTES, DEFAULT_MEMORY_LIMIT_BYTES, Source,
};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;
use toml::Spanned;

/// Sandbox limits of one plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginLimits {
    pub call_timeout: Duration,
    pub memory_limit_bytes: usize,
    pub max_plugin_bytes: usize,
    pub compile_timeout: Duration,
    /// What one call may return (wasmtime's hostcall fuel), and the outcomes
    /// of one sink batch together; past it, the messages are dead-lettered.
    pub max_output_bytes: usize,
}

impl Default for PluginLimits {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_millis(DEFAULT_CALL_TIMEOUT_MS),
            memory_limit_bytes: DEFAULT_MEMORY_LIMIT_BYTES,
            max_plugin_bytes: DEFAULT_MAX_PLUGIN_BYTES,
            compile_timeout: Duration::from_millis(DEFAULT_COMPILE_TIMEOUT_MS),
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
        }
    }
}

/// Where a plugin comes from and how it is configured.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConfig {
    pub path: PathBuf,
    /// The plugin's own settings, as the JSON object handed to `configure`.
    pub settings: String,
    pub limits: PluginLimits,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    call_timeout_ms: Option<Spanned<u64>>,
    memory_limit_bytes: Option<Spanned<usize>>,
    max_plugin_bytes: Option<Spanned<usize>>,
    compile_timeout_ms: Option<Spanned<u64>>,
    max_output_bytes: Option<Spanned<usize>>,
}

impl RawLimits {
    /// These limits over `defaults`, each checked against its bounds;
    /// `section` names where they are (`plugins`, `sinks`, ...).
    pub(super) fn over(
        &self,
        src: &Source<'_>,
        section: &str,
        defaults: PluginLimits,
    ) -> Result<PluginLimits, ConfigError> {
        let key = |name: &str| match section {
            "plugins" => format!("plugins.{name}"),
            _ => format!("{section}.limits.{name}"),
        };
        let ms = |v: &Option<Spanned<u64>>, name: &str, default: Duration| -> Result<Duration, ConfigError> {
            let default = u64::try_from(default.as_millis()).unwrap_or(u64::MAX);
            PLUGIN_TIMEOUT_MS
                .or(src, &key(name), v.as_ref(), default)
                .map(Duration::from_millis)
        };
        Ok(PluginLimits {
            call_timeout: ms(&self.call_timeout_ms, "call_timeout_ms", defaults.call_timeout)?,
            memory_limit_bytes: MEMORY_LIMIT_BYTES.or(
                src,
                &key("memory_limit_bytes"),
                self.memory_limit_bytes.as_ref(),
                defaults.memory_limit_bytes,
            )?,
            max_plugin_bytes: MAX_PLUGIN_BYTES.or(
                src,
                &key("max_plugin_bytes"),
                self.max_plugin_bytes.as_ref(),
                defaults.max_plugin_bytes,
            )?,
            compile_timeout: ms(&self.compile_timeout_ms, "compile_timeout_ms", defaults.compile_timeout)?,
            max_output_bytes: MAX_OUTPUT_BYTES.or(
                src,
                &key("max_output_bytes"),
                self.max_output_bytes.as_ref(),
                defaults.max_output_bytes,
            )?,
        })
    }
}

pub(super) fn plugin_config(
    src: &Source<'_>,
    path: &Spanned<String>,
    settings: &toml::Table,
    limits: PluginLimits,
) -> Result<PluginConfig, ConfigError> {
    if path.get_ref().trim().is_empty() {
        return Err(src.error(
            path.span(),
            "plugin path is empty; point it at a .wasm component, e.g. \"target/wasm32-wasip2/release/json_row.wasm\"",
        ));
    }
    let settings = serde_json::to_string(&toml_to_json(settings))
        .map_err(|e| src.error(path.span(), format!("plugin settings cannot be passed as JSON: {e}")))?;
    Ok(PluginConfig {
        path: src.resolve(path.get_ref()),
        settings,
        limits,
    })
}

fn toml_to_json(table: &toml::Table) -> serde_json::Value {
    fn value(v: &toml::Value) -> serde_json::Value {
        match v {
            toml::Value::String(s) => s.clone().into(),
            toml::Value::Integer(i) => (*i).into(),
            toml::Value::Float(f) => (*f).into(),
            toml::Value::Boolean(b) => (*b).into(),
            toml::Value::Datetime(d) => d.to_string().into(),
            toml::Value::Array(a) => a.iter().map(value).collect(),
            toml::Value::Table(t) => toml_to_json(t),
        }
    }
    serde_json::Value::Object(table.iter().map(|(k, v)| (k.clone(), value(v))).collect())
}
