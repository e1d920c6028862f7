//! `pipeline.toml`: parsed once, in two stages. `Raw*` structs mirror the file
//! (serde, `deny_unknown_fields`, so a typo is an error); [`Pipeline::load`]
//! turns them into a checked [`Pipeline`] in which paths are resolved, names
//! validated and every reference points at something that exists. Errors name
//! the file, the line and the key, and say what to do.

mod names;
mod pg_url;
#[cfg(test)]
mod prop_tests;
pub mod registry;
mod secrets;
#[cfg(test)]
mod secrets_tests;
mod start;
#[cfg(test)]
mod tests;
mod type_errors;

/// The `[kafka]` and `[postgres]` sections of a valid pipeline file that
/// points nowhere: the head of the pipelines unit tests parse from text.
#[cfg(test)]
pub(crate) const TEST_CONNECTIONS: &str = r#"
[kafka]
bootstrap_servers = "localhost:9093"
security_protocol = "ssl"
ca = "/nowhere/ca.pem"
cert = "/nowhere/service.cert"
key = "/nowhere/service.key"

[postgres]
url = "postgres://u:p@localhost:5432/db?sslmode=require"
ca = "/nowhere/ca.pem"
"#;

pub use names::{DatabaseName, MAX_PG_IDENT_LEN, MAX_TOPIC_LEN, NameError, TableName, TopicName, check_name};
pub use pg_url::{PgUrl, PgUrlError};
pub use secrets::{Secret, SecretSource};
pub use start::{StartAt, rfc3339_ms};

use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;
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

/// Default address of the `[http]` server (metrics, health, status).
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:9187";

/// An error in `pipeline.toml`, located in the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}\n  hint: pass the path of a pipeline file, e.g. `host run pipeline.toml`")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

/// The checked pipeline.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The file it was read from.
    pub path: PathBuf,
    pub kafka: KafkaConfig,
    pub postgres: PostgresConfig,
    pub topics: Vec<TopicConfig>,
    pub generators: Vec<GeneratorConfig>,
    pub sinks: Vec<SinkConfig>,
    /// How `host provision` creates topics and databases (`[provision]`).
    pub provision: ProvisionConfig,
    /// The Aiven project and services (`[aiven]`), for `host provision` with
    /// `method = "aiven"` and `host aiven credentials`.
    pub aiven: Option<AivenConfig>,
    /// The check plugins that audit the pipeline (`[[checks]]`).
    pub checks: Vec<CheckConfig>,
    /// When and how the audit runs (`[audit]`).
    pub audit: AuditConfig,
    /// The metrics, health and status server (`[http]`).
    pub http: HttpConfig,
    /// The schema registry (`[schema_registry]`), for registry formats.
    pub schema_registry: Option<registry::RegistryConfig>,
}

/// The `[http]` server of `host run`, `consume` and `produce`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// `None`: turned off (`listen = ""`).
    pub listen: Option<std::net::SocketAddr>,
    /// Host names (besides IP addresses and `localhost`) that requests may
    /// carry in their `Host` header: the names of a proxy in front.
    pub allowed_hosts: Vec<String>,
}

/// How `host provision` creates topics and databases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProvisionMethod {
    /// The Kafka Admin API and `CREATE DATABASE` over PostgreSQL (default).
    #[default]
    Kafka,
    /// Aiven's REST API (needs an `[aiven]` section and a token).
    Aiven,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProvisionConfig {
    pub method: ProvisionMethod,
}

/// Default base URL of Aiven's REST API.
pub const DEFAULT_AIVEN_API_URL: &str = "https://api.aiven.io";
/// Default environment variable holding the Aiven API token.
pub const DEFAULT_AIVEN_TOKEN_ENV: &str = "AIVEN_TOKEN";

/// Where the Aiven services live. Holds the *name* of the token's
/// environment variable or the path of its file, never the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AivenConfig {
    pub project: String,
    pub kafka_service: String,
    pub pg_service: String,
    pub token_env: String,
    /// `aiven.token_file`: the token is read from this file instead of
    /// `token_env` (when the client is made, so a rotated secret is seen).
    pub token_file: Option<PathBuf>,
    /// Without a trailing slash.
    pub api_url: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecurityProtocol {
    Ssl,
    Plaintext,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    pub bootstrap_servers: String,
    pub security_protocol: SecurityProtocol,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The passphrase of an encrypted `key` (`key_password_env` or `key_password_file`).
    pub key_password: Option<Secret>,
    pub key_password_source: SecretSource,
}

/// How the host secures its PostgreSQL connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PgTls {
    /// Encrypt, verify the server's certificate chain and host name (default).
    VerifyFull,
    /// Encrypt without verifying the certificate (like libpq's `require`).
    Require,
    /// Plain text. Only for servers that cannot do TLS.
    Disable,
}

/// `[postgres]`. Its `Debug` never shows the password (see [`PgUrl`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    /// The connection URL, with the password from `password_env` or
    /// `password_file` filled in.
    pub url: PgUrl,
    pub tls: PgTls,
    pub ca: Option<PathBuf>,
    /// Where the URL and the password came from (`host validate`).
    pub url_source: SecretSource,
    pub password_source: SecretSource,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    pub name: TopicName,
    pub partitions: i32,
    pub replication: i32,
}

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

#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorConfig {
    pub name: String,
    pub topic: TopicName,
    pub plugin: PluginConfig,
    pub interval: Duration,
    /// How many messages to produce; `None` means until stopped.
    pub count: Option<u64>,
    pub seed: Option<u64>,
    /// `format = "avro"` etc.: the JSON it returns is encoded by a schema.
    pub encoding: Option<registry::GeneratorEncoding>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SinkConfig {
    pub name: String,
    pub topic: TopicName,
    pub table: TableName,
    pub group: String,
    /// Kafka static membership (`group.instance.id`): a restarted host takes
    /// its partitions back at once instead of waiting for the session to expire.
    /// Distinct per process: `<group>-<process name>` (see `member`).
    pub instance_id: String,
    pub mapper: PluginConfig,
    pub batch_size: usize,
    pub flush_interval: Duration,
    /// How rows reach the table: appended, or upserted on a key.
    pub mode: SinkMode,
    /// What the sink does when Kafka no longer holds its stored offset.
    pub on_lost_offsets: OnLostOffsets,
    /// Where a partition with nothing stored starts.
    pub start: StartAt,
    /// `format`, `key_format` and `columns = "from_registry"`.
    pub registry: registry::SinkRegistry,
    /// `[sinks.tables]`: the PostgreSQL table of each table the mapper
    /// names (contract 0.3.0), instead of `<table>_<name>`.
    pub tables: TableNames,
}

/// The tables a sink's file names for its mapper's named tables.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TableNames {
    /// The mapper's table name -> the table in PostgreSQL.
    pub names: std::collections::BTreeMap<String, TableName>,
    /// `file:line:column` of each entry, for errors found when the mapper
    /// is loaded.
    pub at: std::collections::BTreeMap<String, String>,
}

/// What a sink does when the offset stored in PostgreSQL is not in Kafka's
/// log any more (`on_lost_offsets` of a `[[sinks]]` entry): past its end (a
/// topic created again, an unclean leader election) or before its start
/// (retention deleted messages that were never stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnLostOffsets {
    /// Stop, naming the partitions and the statement to run (the default).
    #[default]
    Stop,
    /// Go on, skipping what cannot be stored, and count it.
    Skip,
}

/// How a sink writes rows (`mode` and `key` of a `[[sinks]]` entry).
#[derive(Debug, Clone, Eq, Default)]
pub enum SinkMode {
    /// Every row is a new row (the default).
    #[default]
    Append,
    /// A row replaces the one with the same key; a delete removes it.
    Upsert {
        /// The key columns, in the order the file gives them (the order of a
        /// mapper's delete values).
        key: Vec<String>,
        /// `file:line:column` of the `key` setting, for errors found when
        /// the mapper is loaded.
        at: String,
    },
}

// Where `key` stands in the file is not part of the mode: an edit above it
// must not look like a change of mode.
impl PartialEq for SinkMode {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key() && matches!(self, SinkMode::Upsert { .. }) == matches!(other, SinkMode::Upsert { .. })
    }
}

impl SinkMode {
    /// The key columns; empty in append mode.
    pub fn key(&self) -> &[String] {
        match self {
            SinkMode::Append => &[],
            SinkMode::Upsert { key, .. } => key,
        }
    }

    /// `file:line:column` of the `key` setting; `None` in append mode.
    pub fn at(&self) -> Option<&str> {
        match self {
            SinkMode::Append => None,
            SinkMode::Upsert { at, .. } => Some(at),
        }
    }

    /// Checks that every key column is one the mapper declares.
    pub fn check_columns(&self, sink: &str, columns: &[crate::plugins::mapper::Column]) -> Result<(), String> {
        let SinkMode::Upsert { key, at } = self else {
            return Ok(());
        };
        use crate::plugins::mapper::ColumnType;
        let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        // The staging table has a column of the host's own by that name.
        let flag = crate::postgres::keyed::DELETE_COLUMN;
        if names.contains(&flag) {
            return Err(format!(
                "{at}: sink {sink:?} upserts through a staging table with a column {flag:?} of its own, and its mapper declares a column of that name\n  hint: rename the mapper's column"
            ));
        }
        for k in key {
            let Some(column) = columns.iter().find(|c| &c.name == k) else {
                return Err(format!(
                    "{at}: sinks.key {k:?} of sink {sink:?} is not a column of its mapper (columns: {})\n  hint: name columns the mapper declares in key, or change the mapper's settings so it declares {k:?}",
                    names.join(", ")
                ));
            };
            // Equal values must look equal to the host, which keeps one
            // operation per key and batch: PostgreSQL's equality of these
            // types is coarser than their text (1.0 = 1, key order in JSON).
            let refused = match column.kind {
                ColumnType::Json => "jsonb",
                ColumnType::Float => "double precision",
                ColumnType::Numeric => "numeric",
                _ => continue,
            };
            return Err(format!(
                "{at}: sinks.key {k:?} of sink {sink:?} is a {refused} column, which cannot be a key\n  hint: key on text, integer, uuid, date, timestamp, boolean or bytea columns; have the mapper write this value as text if it identifies the row"
            ));
        }
        Ok(())
    }
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

// ---- the file as written ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    kafka: RawKafka,
    postgres: Spanned<RawPostgres>,
    #[serde(default)]
    plugins: RawLimits,
    #[serde(default)]
    topics: Vec<RawTopic>,
    #[serde(default)]
    generators: Vec<RawGenerator>,
    #[serde(default)]
    sinks: Vec<RawSink>,
    provision: Option<RawProvision>,
    aiven: Option<RawAiven>,
    #[serde(default)]
    checks: Vec<RawCheck>,
    #[serde(default)]
    audit: RawAudit,
    #[serde(default)]
    http: RawHttp,
    schema_registry: Option<registry::RawRegistry>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: Option<Spanned<String>>,
    #[serde(default)]
    allowed_hosts: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    name: Spanned<String>,
    plugin: Spanned<String>,
    #[serde(default)]
    settings: toml::Table,
    #[serde(default)]
    limits: RawLimits,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    interval_ms: Option<Spanned<u64>>,
    timeout_ms: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvision {
    #[serde(default = "default_method")]
    method: Spanned<ProvisionMethod>,
}

fn default_method() -> Spanned<ProvisionMethod> {
    Spanned::new(0..0, ProvisionMethod::Kafka)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAiven {
    project: Spanned<String>,
    kafka_service: Spanned<String>,
    pg_service: Spanned<String>,
    token_env: Option<Spanned<String>>,
    token_file: Option<Spanned<String>>,
    api_url: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKafka {
    bootstrap_servers: Spanned<String>,
    #[serde(default = "default_protocol")]
    security_protocol: Spanned<String>,
    ca: Option<Spanned<String>>,
    cert: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    key_password_env: Option<Spanned<String>>,
    key_password_file: Option<Spanned<String>>,
}

fn default_protocol() -> Spanned<String> {
    Spanned::new(0..0, "ssl".to_string())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPostgres {
    url: Option<Spanned<String>>,
    url_env: Option<Spanned<String>>,
    url_file: Option<Spanned<String>>,
    password_env: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
    #[serde(default = "default_pg_tls")]
    tls: Spanned<PgTls>,
    ca: Option<Spanned<String>>,
}

fn default_pg_tls() -> Spanned<PgTls> {
    Spanned::new(0..0, PgTls::VerifyFull)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    call_timeout_ms: Option<Spanned<u64>>,
    memory_limit_bytes: Option<Spanned<usize>>,
    max_plugin_bytes: Option<Spanned<usize>>,
    compile_timeout_ms: Option<Spanned<u64>>,
    max_output_bytes: Option<Spanned<usize>>,
}

impl RawLimits {
    /// These limits over `defaults`, each checked against its bounds;
    /// `section` names where they are (`plugins`, `sinks`, ...).
    fn over(&self, src: &Source<'_>, section: &str, defaults: PluginLimits) -> Result<PluginLimits, ConfigError> {
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

/// The bounds of a numeric setting, and what it is, for its error.
struct Bound<T> {
    min: T,
    max: T,
    what: &'static str,
}

const PARTITIONS: Bound<i32> = Bound {
    min: 1,
    max: MAX_PARTITIONS,
    what: "the number of partitions of the topic",
};
const REPLICATION: Bound<i32> = Bound {
    min: 1,
    max: MAX_REPLICATION,
    what: "copies of each partition; at most the number of brokers",
};
const GENERATOR_INTERVAL_MS: Bound<u64> = Bound {
    min: 0,
    max: MAX_GENERATOR_INTERVAL_MS,
    what: "the time between two messages; 0 produces flat out",
};
const GENERATOR_COUNT: Bound<u64> = Bound {
    min: 1,
    max: MAX_GENERATOR_COUNT,
    what: "how many messages to produce; leave count out to produce until stopped",
};
const BATCH_SIZE: Bound<usize> = Bound {
    min: 1,
    max: MAX_BATCH_SIZE,
    what: "messages written in one transaction",
};
const FLUSH_INTERVAL_MS: Bound<u64> = Bound {
    min: 1,
    max: MAX_FLUSH_INTERVAL_MS,
    what: "the longest wait to fill a batch",
};
const PLUGIN_TIMEOUT_MS: Bound<u64> = Bound {
    min: 1,
    max: MAX_PLUGIN_TIMEOUT_MS,
    what: "a deadline in milliseconds",
};
const MEMORY_LIMIT_BYTES: Bound<usize> = Bound {
    min: MIN_MEMORY_LIMIT_BYTES,
    max: MAX_MEMORY_LIMIT_BYTES,
    what: "a plugin instance's memory; a 32-bit WebAssembly memory ends at 4 GiB",
};
const MAX_PLUGIN_BYTES: Bound<usize> = Bound {
    min: 1,
    max: MAX_MAX_PLUGIN_BYTES,
    what: "the largest plugin file to compile",
};
const MAX_OUTPUT_BYTES: Bound<usize> = Bound {
    min: MIN_MAX_OUTPUT_BYTES,
    max: MAX_MAX_OUTPUT_BYTES,
    what: "what one plugin call may return, and one sink batch's outcomes together",
};
const AUDIT_INTERVAL_MS: Bound<u64> = Bound {
    min: MIN_AUDIT_INTERVAL_MS,
    max: MAX_AUDIT_INTERVAL_MS,
    what: "the time between two audit rounds; 0 turns the periodic audit off",
};
const AUDIT_TIMEOUT_MS: Bound<u64> = Bound {
    min: MIN_AUDIT_TIMEOUT_MS,
    max: MAX_AUDIT_TIMEOUT_MS,
    what: "the longest wait for Kafka or PostgreSQL to answer",
};

impl<T: Copy + PartialOrd + std::fmt::Display> Bound<T> {
    /// The number set for `key`, within bounds. The error names the key and
    /// the limit it crossed, says what the setting is, and how to fix it.
    fn check(&self, src: &Source<'_>, key: &str, v: &Spanned<T>) -> Result<T, ConfigError> {
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
    fn or(&self, src: &Source<'_>, key: &str, v: Option<&Spanned<T>>, default: T) -> Result<T, ConfigError> {
        v.map_or(Ok(default), |v| self.check(src, key, v))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopic {
    name: Spanned<String>,
    #[serde(default = "one")]
    partitions: Spanned<i32>,
    #[serde(default = "one")]
    replication: Spanned<i32>,
}

fn one() -> Spanned<i32> {
    Spanned::new(0..0, 1)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGenerator {
    name: Spanned<String>,
    topic: Spanned<String>,
    plugin: Spanned<String>,
    interval_ms: Option<Spanned<u64>>,
    count: Option<Spanned<u64>>,
    seed: Option<u64>,
    format: Option<Spanned<String>>,
    schema: Option<Spanned<String>>,
    subject: Option<Spanned<String>>,
    #[serde(default)]
    settings: toml::Table,
    #[serde(default)]
    limits: RawLimits,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSink {
    name: Spanned<String>,
    topic: Spanned<String>,
    table: Spanned<String>,
    mapper: Spanned<String>,
    group: Option<Spanned<String>>,
    instance_id: Option<Spanned<String>>,
    batch_size: Option<Spanned<usize>>,
    flush_interval_ms: Option<Spanned<u64>>,
    mode: Option<Spanned<String>>,
    key: Option<Spanned<Vec<Spanned<String>>>>,
    on_lost_offsets: Option<Spanned<String>>,
    start: Option<Spanned<String>>,
    format: Option<Spanned<String>>,
    key_format: Option<Spanned<String>>,
    subject: Option<Spanned<String>>,
    #[serde(default)]
    tables: std::collections::BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    settings: toml::Table,
    #[serde(default)]
    limits: RawLimits,
}

/// Resolves spans to lines and builds located errors.
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    fn error(&self, span: std::ops::Range<usize>, message: impl Into<String>) -> ConfigError {
        let start = span.start.min(self.text.len());
        let before = &self.text[..start];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line,
            column,
            message: message.into(),
        }
    }

    /// `file:line:column` of a span, for errors found after parsing.
    fn location(&self, span: std::ops::Range<usize>) -> String {
        match self.error(span, "") {
            ConfigError::Invalid { path, line, column, .. } => format!("{}:{line}:{column}", path.display()),
            ConfigError::Read { path, .. } => path.display().to_string(),
        }
    }

    fn resolve(&self, relative: &str) -> PathBuf {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        dir.join(relative)
    }
}

impl Pipeline {
    /// Reads and checks a pipeline file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Checks pipeline text read from `path` (used for messages and relative paths).
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let src = Source { path, text };
        let raw: RawPipeline = toml::from_str(text).map_err(|e| {
            let message = e.message().trim_end().to_string();
            let span = e.span().unwrap_or(0..0);
            if let Some(explained) = type_errors::explain(text, span.clone(), &message) {
                return src.error(span, explained);
            }
            let hint = if message.contains("unknown field") {
                "\n  hint: check the spelling; the keys each section accepts are listed in the README"
            } else {
                ""
            };
            src.error(e.span().unwrap_or(0..0), format!("{message}{hint}"))
        })?;
        let defaults = raw.plugins.over(&src, "plugins", PluginLimits::default())?;
        let schema_registry = raw
            .schema_registry
            .map(|r| registry::check_registry(&src, r))
            .transpose()?;
        let kafka = check_kafka(&src, raw.kafka)?;
        let postgres = check_postgres(&src, raw.postgres)?;

        let mut topics: Vec<TopicConfig> = Vec::new();
        for t in raw.topics {
            let name = TopicName::new(t.name.get_ref().as_str())
                .map_err(|m| src.error(t.name.span(), format!("topics.name: {m}")))?;
            if topics.iter().any(|x| x.name == name) {
                return Err(src.error(t.name.span(), format!("topic {:?} is declared twice", t.name.get_ref())));
            }
            topics.push(TopicConfig {
                name,
                partitions: PARTITIONS.check(&src, "topics.partitions", &t.partitions)?,
                replication: REPLICATION.check(&src, "topics.replication", &t.replication)?,
            });
        }
        let known_topic = |t: &Spanned<String>, section: &str| -> Result<TopicName, ConfigError> {
            if let Some(declared) = topics.iter().find(|x| x.name == *t.get_ref()) {
                Ok(declared.name.clone())
            } else {
                let names: Vec<&str> = topics.iter().map(|x| x.name.as_str()).collect();
                Err(src.error(
                    t.span(),
                    format!(
                        "{section}.topic {:?} is not declared; add a [[topics]] entry with name = {:?} (declared: {names:?})",
                        t.get_ref(),
                        t.get_ref()
                    ),
                ))
            }
        };

        let mut names = HashSet::new();
        let mut unique = |name: &Spanned<String>, section: &str| -> Result<String, ConfigError> {
            check_name(name.get_ref(), MAX_PG_IDENT_LEN, true)
                .map_err(|m| src.error(name.span(), format!("{section}.name: {m}")))?;
            if !names.insert(name.get_ref().clone()) {
                return Err(src.error(
                    name.span(),
                    format!(
                        "{section}.name {:?} is used twice; names must be unique",
                        name.get_ref()
                    ),
                ));
            }
            Ok(name.get_ref().clone())
        };

        let mut generators = Vec::new();
        for g in raw.generators {
            let name = unique(&g.name, "generators")?;
            let topic = known_topic(&g.topic, "generators")?;
            let plugin = plugin_config(
                &src,
                &g.plugin,
                &g.settings,
                g.limits.over(&src, "generators", defaults)?,
            )?;
            let interval_ms = GENERATOR_INTERVAL_MS.or(&src, "generators.interval_ms", g.interval_ms.as_ref(), 0)?;
            let count = match &g.count {
                Some(v) => Some(GENERATOR_COUNT.check(&src, "generators.count", v)?),
                None => None,
            };
            let raw_encoding = registry::RawGeneratorRegistry {
                format: &g.format,
                schema: &g.schema,
                subject: &g.subject,
            };
            let encoding = registry::check_generator(
                &src,
                &raw_encoding,
                g.topic.get_ref(),
                g.name.span(),
                schema_registry.is_some(),
            )?;
            generators.push(GeneratorConfig {
                name,
                topic,
                plugin,
                interval: Duration::from_millis(interval_ms),
                count,
                seed: g.seed,
                encoding,
            });
        }

        let mut sinks = Vec::new();
        let mut tables = HashSet::new();
        // Group -> (sink, where its group comes from), to refuse a shared group.
        let mut groups: HashMap<String, (String, std::ops::Range<usize>)> = HashMap::new();
        for s in raw.sinks {
            let name = unique(&s.name, "sinks")?;
            let topic = known_topic(&s.topic, "sinks")?;
            let table = TableName::new(s.table.get_ref().as_str())
                .map_err(|m| src.error(s.table.span(), format!("sinks.table: {m}")))?;
            if !tables.insert(table.clone()) {
                return Err(src.error(
                    s.table.span(),
                    format!(
                        "sinks.table {:?} is written by two sinks; give each sink its own table",
                        s.table.get_ref()
                    ),
                ));
            }
            let group = match &s.group {
                Some(g) => {
                    check_name(g.get_ref(), MAX_TOPIC_LEN, true)
                        .map_err(|m| src.error(g.span(), format!("sinks.group: {m}")))?;
                    g.get_ref().clone()
                }
                // Offsets are kept per table, so the group follows the table too.
                None => format!("wasm-stream-{}", s.table.get_ref()),
            };
            let group_span = s.group.as_ref().map_or_else(|| s.name.span(), Spanned::span);
            if let Some((other, span)) = groups.get(&group) {
                return Err(src.error(
                    group_span,
                    shared_group_message(&group, s.name.get_ref(), other, &src.location(span.clone())),
                ));
            }
            groups.insert(group.clone(), (s.name.get_ref().clone(), group_span));
            let instance_id = match &s.instance_id {
                Some(id) if id.get_ref().trim().is_empty() => {
                    return Err(src.error(
                        id.span(),
                        "sinks.instance_id is empty; leave it out for the default <group>-<hostname>",
                    ));
                }
                // `--instance-id` names this one process: it wins over the file.
                Some(_) if crate::member::explicit() => format!("{group}-{}", crate::member::name()),
                Some(id) => id.get_ref().clone(),
                None => format!("{group}-{}", crate::member::name()),
            };
            let batch_size = BATCH_SIZE.or(&src, "sinks.batch_size", s.batch_size.as_ref(), DEFAULT_BATCH_SIZE)?;
            let flush_interval_ms = FLUSH_INTERVAL_MS.or(
                &src,
                "sinks.flush_interval_ms",
                s.flush_interval_ms.as_ref(),
                DEFAULT_FLUSH_INTERVAL_MS,
            )?;
            let raw_registry = registry::RawSinkRegistry {
                format: &s.format,
                key_format: &s.key_format,
                subject: &s.subject,
            };
            let registry = registry::check_sink(
                &src,
                &raw_registry,
                s.topic.get_ref(),
                &s.settings,
                s.mapper.span(),
                schema_registry.is_some(),
            )?;
            let mapper = plugin_config(&src, &s.mapper, &s.settings, s.limits.over(&src, "sinks", defaults)?)?;
            let mode = check_mode(&src, &s.name, s.mode.as_ref(), s.key.as_ref())?;
            let on_lost_offsets = match s.on_lost_offsets.as_ref().map(|v| (v.get_ref().as_str(), v.span())) {
                None | Some(("stop", _)) => OnLostOffsets::Stop,
                Some(("skip", _)) => OnLostOffsets::Skip,
                Some((other, span)) => {
                    return Err(src.error(
                        span,
                        format!("sinks.on_lost_offsets {other:?} is not a choice; use \"stop\" (the default: the sink stops and names the statement to run) or \"skip\" (it goes on past the messages Kafka no longer holds, and counts them)"),
                    ));
                }
            };
            let start = match &s.start {
                None => StartAt::Earliest,
                Some(v) => StartAt::parse(v.get_ref()).map_err(|m| src.error(v.span(), m))?,
            };
            let mut names = TableNames::default();
            for (mapper_name, pg) in &s.tables {
                let located = |m: String| src.error(pg.span(), format!("sinks.tables.{mapper_name}: {m}"));
                check_name(mapper_name, MAX_PG_IDENT_LEN, false)
                    .map_err(|m| located(format!("the mapper's table name {m}")))?;
                let pg_table = TableName::new(pg.get_ref().as_str()).map_err(|m| located(m.to_string()))?;
                // `tables` holds every sink's table and the names given so far.
                if !tables.insert(pg_table.clone()) {
                    return Err(located(format!(
                        "table {:?} is written by the sink's other table or another sink; give each table its own name",
                        pg.get_ref()
                    )));
                }
                names.at.insert(mapper_name.clone(), src.location(pg.span()));
                names.names.insert(mapper_name.clone(), pg_table);
            }
            sinks.push(SinkConfig {
                name,
                topic,
                table,
                group,
                instance_id,
                mapper,
                batch_size,
                flush_interval: Duration::from_millis(flush_interval_ms),
                mode,
                on_lost_offsets,
                start,
                registry,
                tables: names,
            });
        }

        let mut checks = Vec::new();
        for c in raw.checks {
            let name = unique(&c.name, "checks")?;
            let plugin = plugin_config(&src, &c.plugin, &c.settings, c.limits.over(&src, "checks", defaults)?)?;
            checks.push(CheckConfig { name, plugin });
        }
        let audit = check_audit(&src, raw.audit)?;
        let http = check_http(&src, raw.http)?;

        let (method, method_span) = match &raw.provision {
            Some(p) => (*p.method.get_ref(), p.method.span()),
            None => (ProvisionMethod::Kafka, 0..0),
        };
        let provision = ProvisionConfig { method };
        let aiven = raw.aiven.map(|a| check_aiven(&src, a)).transpose()?;
        if provision.method == ProvisionMethod::Aiven && aiven.is_none() {
            return Err(src.error(
                method_span,
                "provision.method = \"aiven\" needs an [aiven] section: project, kafka_service and pg_service (the names in the Aiven console), and token_env naming the variable that holds the API token",
            ));
        }

        Ok(Pipeline {
            path: path.to_path_buf(),
            kafka,
            postgres,
            topics,
            generators,
            sinks,
            provision,
            aiven,
            checks,
            audit,
            http,
            schema_registry,
        })
    }

    /// Each secret the pipeline uses and where it comes from, for `host
    /// validate`: never a value.
    pub fn secret_sources(&self) -> Vec<(&'static str, SecretSource)> {
        let mut sources = vec![
            ("postgres.url", self.postgres.url_source.clone()),
            ("postgres password", self.postgres.password_source.clone()),
        ];
        if let Some(key) = &self.kafka.key {
            sources.push(("kafka.key (private key)", SecretSource::File(key.clone())));
            sources.push(("kafka.key passphrase", self.kafka.key_password_source.clone()));
        }
        if let Some(aiven) = &self.aiven {
            let source = match &aiven.token_file {
                Some(path) => SecretSource::File(path.clone()),
                None => SecretSource::Env(aiven.token_env.clone()),
            };
            sources.push(("aiven token", source));
        }
        sources.extend(registry::secret_source(&self.schema_registry));
        sources
    }

    /// The topic's declaration.
    pub fn topic(&self, name: &str) -> Option<&TopicConfig> {
        self.topics.iter().find(|t| t.name == name)
    }
}

/// Two sinks in one consumer group would split the topic's partitions
/// between their tables (each table silently missing the rest), or, with the
/// same member id, fence each other.
fn shared_group_message(group: &str, sink: &str, other: &str, other_at: &str) -> String {
    format!(
        "sinks.group {group:?} of sink {sink:?} is also the group of sink {other:?} ({other_at}); Kafka would give each sink only part of the topic's partitions, so each table would miss the messages of the other's\n  hint: give each sink its own group, or leave group out (the default, \"wasm-stream-<table>\", differs per table)"
    )
}

/// `mode` and `key` of a sink: `key` is required for upsert and refused for
/// append, each name a valid column name, none twice.
fn check_mode(
    src: &Source<'_>,
    name: &Spanned<String>,
    mode: Option<&Spanned<String>>,
    key: Option<&Spanned<Vec<Spanned<String>>>>,
) -> Result<SinkMode, ConfigError> {
    let upsert = match mode.map(|m| m.get_ref().as_str()) {
        None | Some("append") => false,
        Some("upsert") => true,
        Some(other) => {
            let span = mode.map_or(0..0, Spanned::span);
            return Err(src.error(
                span,
                format!("sinks.mode {other:?} is not a mode; use \"append\" (the default: every message adds rows) or \"upsert\" (rows replace those with the same key; needs key = [\"column\", ...])"),
            ));
        }
    };
    match (upsert, key) {
        (false, None) => Ok(SinkMode::Append),
        (false, Some(k)) => Err(src.error(
            k.span(),
            format!(
                "sinks.key is set but sink {:?} appends; add mode = \"upsert\" to write rows by key, or remove key",
                name.get_ref()
            ),
        )),
        (true, None) => Err(src.error(
            mode.map_or(0..0, Spanned::span),
            format!(
                "sink {:?} has mode = \"upsert\" but no key; add key = [\"column\", ...] naming the columns that identify a row",
                name.get_ref()
            ),
        )),
        (true, Some(k)) => {
            if k.get_ref().is_empty() {
                return Err(src.error(
                    k.span(),
                    "sinks.key is empty; name at least one column, e.g. key = [\"id\"]",
                ));
            }
            let mut names: Vec<String> = Vec::new();
            for column in k.get_ref() {
                check_name(column.get_ref(), MAX_PG_IDENT_LEN, false)
                    .map_err(|m| src.error(column.span(), format!("sinks.key: {m}")))?;
                if names.contains(column.get_ref()) {
                    return Err(src.error(
                        column.span(),
                        format!("sinks.key names {:?} twice; name each column once", column.get_ref()),
                    ));
                }
                names.push(column.get_ref().clone());
            }
            Ok(SinkMode::Upsert {
                key: names,
                at: src.location(k.span()),
            })
        }
    }
}

fn check_http(src: &Source<'_>, raw: RawHttp) -> Result<HttpConfig, ConfigError> {
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

fn check_kafka(src: &Source<'_>, raw: RawKafka) -> Result<KafkaConfig, ConfigError> {
    if raw.bootstrap_servers.get_ref().trim().is_empty() {
        return Err(src.error(
            raw.bootstrap_servers.span(),
            "kafka.bootstrap_servers is empty; set it to host:port, e.g. \"localhost:9093\"",
        ));
    }
    let security_protocol = match raw.security_protocol.get_ref().to_ascii_lowercase().as_str() {
        "ssl" => SecurityProtocol::Ssl,
        "plaintext" => SecurityProtocol::Plaintext,
        other => {
            return Err(src.error(
                raw.security_protocol.span(),
                format!("kafka.security_protocol {other:?} is not supported; use \"ssl\" (Aiven, client certificates) or \"plaintext\""),
            ));
        }
    };
    let file = |v: &Option<Spanned<String>>, key: &str| -> Result<Option<PathBuf>, ConfigError> {
        match v {
            None if security_protocol == SecurityProtocol::Ssl => Err(src.error(
                raw.bootstrap_servers.span(),
                format!("kafka.{key} is required with security_protocol = \"ssl\"; set it to the file downloaded from Aiven (e.g. \"certs/{}\")", match key {
                    "ca" => "ca.pem",
                    "cert" => "service.cert",
                    _ => "service.key",
                }),
            )),
            None => Ok(None),
            Some(p) => Ok(Some(src.resolve(p.get_ref()))),
        }
    };
    let key_password = secrets::SecretKeys {
        key: "kafka.key_password",
        what: "the passphrase of the encrypted kafka.key",
        inline: None,
        env: raw.key_password_env.as_ref(),
        file: raw.key_password_file.as_ref(),
    }
    .read(src)?;
    let (key_password, key_password_source) = match key_password {
        Some((value, source)) => (Some(Secret::new(value)), source),
        None => (None, SecretSource::None),
    };
    Ok(KafkaConfig {
        ca: file(&raw.ca, "ca")?,
        cert: file(&raw.cert, "cert")?,
        key: file(&raw.key, "key")?,
        key_password,
        key_password_source,
        bootstrap_servers: raw.bootstrap_servers.into_inner(),
        security_protocol,
    })
}

fn check_postgres(src: &Source<'_>, raw: Spanned<RawPostgres>) -> Result<PostgresConfig, ConfigError> {
    let section = raw.span();
    let raw = raw.into_inner();
    let tls = *raw.tls.get_ref();
    let url_keys = secrets::SecretKeys {
        key: "postgres.url",
        what: "the database URL",
        inline: raw.url.as_ref(),
        env: raw.url_env.as_ref(),
        file: raw.url_file.as_ref(),
    };
    if let Some(url) = &raw.url {
        secrets::refuse_interpolation(src, "postgres.url", url)?;
    }
    let Some((text, url_source)) = url_keys.read(src)? else {
        return Err(src.error(
            section,
            "[postgres] has no url; set url = \"postgres://user@host:5432/database?sslmode=require\", or url_env / url_file to read it from an environment variable or a file",
        ));
    };
    // Where url errors stand: the key that gave the URL.
    let url_span = [&raw.url, &raw.url_env, &raw.url_file]
        .into_iter()
        .flatten()
        .next()
        .map_or(0..0, Spanned::span);
    let from = match &url_source {
        SecretSource::Inline => String::new(),
        other => format!(" (from {other})"),
    };
    let mut url = PgUrl::parse(&text).map_err(|e| {
        let message = match e {
            PgUrlError::Database(_) => format!("postgres.url{from}: {e}"),
            _ => format!("postgres.url{from} {e}"),
        };
        src.error(url_span.clone(), message)
    })?;
    if url.ssl_mode() == tokio_postgres::config::SslMode::Disable && tls != PgTls::Disable {
        return Err(src.error(
            url_span,
            "postgres.url has sslmode=disable but TLS is required; remove sslmode from the URL, or set postgres.tls = \"disable\" if the server really cannot do TLS",
        ));
    }
    let password_keys = secrets::SecretKeys {
        key: "postgres.password",
        what: "the database password",
        inline: None,
        env: raw.password_env.as_ref(),
        file: raw.password_file.as_ref(),
    };
    let in_url = url.config().get_password().is_some();
    let password_source = match password_keys.read(src)? {
        Some((_, source)) if in_url => {
            let key = match source {
                SecretSource::Env(_) => "postgres.password_env",
                _ => "postgres.password_file",
            };
            let span = raw
                .password_env
                .as_ref()
                .or(raw.password_file.as_ref())
                .map_or(0..0, Spanned::span);
            return Err(src.error(
                span,
                format!(
                    "{key} and postgres.url ({}) both give the database password; keep one of them\n  hint: remove the password from the URL (postgres://user@host/...) to take it from {key}",
                    src.location(url_span)
                ),
            ));
        }
        Some((password, source)) => {
            url = url.with_password(&password);
            source
        }
        None if in_url => SecretSource::Within {
            key: "postgres.url",
            source: Box::new(url_source.clone()),
        },
        None => SecretSource::None,
    };
    Ok(PostgresConfig {
        url,
        tls,
        ca: raw.ca.as_ref().map(|p| src.resolve(p.get_ref())),
        url_source,
        password_source,
    })
}

fn check_audit(src: &Source<'_>, raw: RawAudit) -> Result<AuditConfig, ConfigError> {
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

fn check_aiven(src: &Source<'_>, raw: RawAiven) -> Result<AivenConfig, ConfigError> {
    // Aiven project and service names: lowercase letters, digits and hyphens.
    for (key, v) in [
        ("project", &raw.project),
        ("kafka_service", &raw.kafka_service),
        ("pg_service", &raw.pg_service),
    ] {
        check_name(v.get_ref(), MAX_PG_IDENT_LEN, true).map_err(|m| {
            src.error(
                v.span(),
                format!("aiven.{key}: {m}; copy the name from the Aiven console"),
            )
        })?;
    }
    secrets::SecretKeys {
        key: "aiven.token",
        what: "the Aiven API token",
        inline: None,
        env: raw.token_env.as_ref(),
        file: raw.token_file.as_ref(),
    }
    .one_source(src)?;
    // Read when a client is made (only provision and `host aiven` need it);
    // a file is checked now, so a wrong path is found before that.
    let token_file = match &raw.token_file {
        Some(path) => {
            secrets::SecretKeys {
                key: "aiven.token",
                what: "the Aiven API token",
                inline: None,
                env: None,
                file: Some(path),
            }
            .read(src)?;
            Some(src.resolve(path.get_ref()))
        }
        None => None,
    };
    let token_env = match &raw.token_env {
        Some(v) => {
            let name = v.get_ref();
            if !secrets::is_env_name(name) {
                return Err(src.error(
                    v.span(),
                    format!("aiven.token_env {name:?} is not an environment variable name; name the variable that holds the token, e.g. \"{DEFAULT_AIVEN_TOKEN_ENV}\" (the token itself never goes in this file)"),
                ));
            }
            name.clone()
        }
        None => DEFAULT_AIVEN_TOKEN_ENV.to_string(),
    };
    let api_url = match &raw.api_url {
        Some(v) => {
            let url = v.get_ref().trim_end_matches('/');
            let local = ["http://localhost", "http://127.0.0.1", "http://[::1]"]
                .iter()
                .any(|p| {
                    url.strip_prefix(p)
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/']))
                });
            if !url.starts_with("https://") && !local {
                return Err(src.error(
                    v.span(),
                    format!("aiven.api_url {url:?} must be an https:// URL (plain http only to localhost), since the token travels with every request; the default is \"{DEFAULT_AIVEN_API_URL}\""),
                ));
            }
            url.to_string()
        }
        None => DEFAULT_AIVEN_API_URL.to_string(),
    };
    Ok(AivenConfig {
        project: raw.project.into_inner(),
        kafka_service: raw.kafka_service.into_inner(),
        pg_service: raw.pg_service.into_inner(),
        token_env,
        token_file,
        api_url,
    })
}

fn plugin_config(
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

/// "<path> does not exist" and a hint that fits where the pipeline file is: a
/// relative path was resolved from the pipeline file's folder, and the local
/// stack makes certificates only in the `certs/` folder of a wasm-stream checkout.
pub fn missing_file_hint(path: &Path) -> String {
    let shown = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let in_checkout = shown
        .parent()
        .filter(|dir| dir.ends_with("certs"))
        .and_then(Path::parent)
        .is_some_and(|root| root.join("scripts/local-stack").is_file());
    let hint = if in_checkout {
        "run `scripts/local-stack up` to make local certificates, or download the files from the Aiven console (see certs/README.md)"
    } else {
        "relative paths in the pipeline file are resolved from the pipeline file's folder: copy the certificates there, or give absolute paths (e.g. to the certs/ folder of your wasm-stream checkout, or the files downloaded from the Aiven console)"
    };
    format!("{} does not exist\n  hint: {hint}", shown.display())
}

#[cfg(test)]
mod mode_tests {
    use super::*;

    fn parse(sink: &str) -> Result<Pipeline, String> {
        let text = format!(
            "[kafka]\nbootstrap_servers = \"localhost:9092\"\nsecurity_protocol = \"plaintext\"\n\
             [postgres]\nurl = \"postgres://u@localhost/db\"\ntls = \"disable\"\n\
             [[topics]]\nname = \"t\"\n\
             [[sinks]]\nname = \"s\"\ntopic = \"t\"\ntable = \"rows\"\nmapper = \"m.wasm\"\n{sink}"
        );
        Pipeline::parse(Path::new("p.toml"), &text).map_err(|e| e.to_string())
    }

    fn column(name: &str) -> crate::plugins::mapper::Column {
        crate::plugins::mapper::Column {
            name: name.into(),
            kind: crate::plugins::mapper::ColumnType::Text,
            nullable: false,
        }
    }

    #[test]
    fn a_sink_appends_by_default() {
        let p = parse("").unwrap();
        assert_eq!(p.sinks[0].mode, SinkMode::Append);
        assert_eq!(parse("mode = \"append\"").unwrap().sinks[0].mode, SinkMode::Append);
    }

    #[test]
    fn start_is_earliest_by_default_and_a_wrong_choice_is_located() {
        assert_eq!(parse("").unwrap().sinks[0].start, StartAt::Earliest);
        assert_eq!(parse("start = \"latest\"").unwrap().sinks[0].start, StartAt::Latest);
        assert_eq!(
            parse("start = \"1970-01-01T00:00:02Z\"").unwrap().sinks[0].start,
            StartAt::Time(2000)
        );
        let e = parse("start = \"yesterday\"").unwrap_err();
        assert!(
            e.starts_with("p.toml:14:9: ") && e.contains("sinks.start") && e.contains("RFC 3339"),
            "{e}"
        );
    }

    #[test]
    fn on_lost_offsets_stops_by_default_and_a_wrong_choice_is_located() {
        assert_eq!(parse("").unwrap().sinks[0].on_lost_offsets, OnLostOffsets::Stop);
        assert_eq!(
            parse("on_lost_offsets = \"skip\"").unwrap().sinks[0].on_lost_offsets,
            OnLostOffsets::Skip
        );
        let e = parse("on_lost_offsets = \"earliest\"").unwrap_err();
        assert!(
            e.starts_with("p.toml:14:19: ") && e.contains("\"stop\"") && e.contains("\"skip\""),
            "{e}"
        );
    }

    #[test]
    fn upsert_takes_its_key_in_order_and_locates_it() {
        let p = parse("mode = \"upsert\"\nkey = [\"b\", \"a\"]").unwrap();
        assert_eq!(p.sinks[0].mode.key(), ["b", "a"]);
        let SinkMode::Upsert { at, .. } = &p.sinks[0].mode else {
            panic!("not upsert")
        };
        assert_eq!(at, "p.toml:15:7");
    }

    #[test]
    fn mode_and_key_errors_name_the_line_and_the_fix() {
        let e = parse("mode = \"upsert\"").unwrap_err();
        assert!(e.starts_with("p.toml:14:8: ") && e.contains("key = [\"column\""), "{e}");
        let e = parse("key = [\"id\"]").unwrap_err();
        assert!(
            e.starts_with("p.toml:14:7: ") && e.contains("add mode = \"upsert\""),
            "{e}"
        );
        let e = parse("mode = \"merge\"").unwrap_err();
        assert!(e.contains("\"append\"") && e.contains("\"upsert\""), "{e}");
        let e = parse("mode = \"upsert\"\nkey = []").unwrap_err();
        assert!(e.contains("sinks.key is empty"), "{e}");
        let e = parse("mode = \"upsert\"\nkey = [\"id\", \"id\"]").unwrap_err();
        assert!(e.starts_with("p.toml:15:14: ") && e.contains("twice"), "{e}");
        let e = parse("mode = \"upsert\"\nkey = [\"Id\"]").unwrap_err();
        assert!(e.contains("sinks.key") && e.contains("\"id\""), "{e}");
    }

    #[test]
    fn a_key_the_mapper_does_not_declare_is_refused_with_its_location() {
        let p = parse("mode = \"upsert\"\nkey = [\"id\"]").unwrap();
        let mode = &p.sinks[0].mode;
        assert!(mode.check_columns("s", &[column("id"), column("v")]).is_ok());
        let e = mode.check_columns("s", &[column("v")]).unwrap_err();
        assert!(e.starts_with("p.toml:15:7: sinks.key \"id\" of sink \"s\""), "{e}");
        assert!(e.contains("columns: v") && e.contains("hint:"), "{e}");
        assert!(SinkMode::Append.check_columns("s", &[]).is_ok());
        let json = crate::plugins::mapper::Column {
            kind: crate::plugins::mapper::ColumnType::Json,
            ..column("id")
        };
        let e = mode.check_columns("s", &[json]).unwrap_err();
        assert!(e.contains("is a jsonb column, which cannot be a key"), "{e}");
        let e = mode
            .check_columns("s", &[column("id"), column("wasm_stream_delete")])
            .unwrap_err();
        assert!(
            e.starts_with("p.toml:15:7: sink \"s\" upserts") && e.contains("rename"),
            "{e}"
        );
    }

    #[test]
    fn moving_the_key_in_the_file_is_not_a_change_of_mode() {
        let a = SinkMode::Upsert {
            key: vec!["id".into()],
            at: "p.toml:1:1".into(),
        };
        let b = SinkMode::Upsert {
            key: vec!["id".into()],
            at: "p.toml:9:1".into(),
        };
        assert_eq!(a, b);
        assert_ne!(a, SinkMode::Append);
    }
}
