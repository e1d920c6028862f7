//! `pipeline.toml`: parsed once, in two stages. `Raw*` structs mirror the file
//! (serde, `deny_unknown_fields`, so a typo is an error); [`Pipeline::load`]
//! turns them into a checked [`Pipeline`] in which paths are resolved, names
//! validated and every reference points at something that exists. Errors name
//! the file, the line and the key, and say what to do.
//!
//! One module per section (`kafka`, `postgres`, `plugins`, `topics`, `sinks`,
//! `ops`, `provision`, `registry`) holds its raw struct, its checked struct and
//! the check between them; `pipeline` reads the whole file in order, and
//! `bounds` holds the numeric defaults and limits.

mod bounds;
mod kafka;
mod names;
mod ops;
mod pg_url;
mod pipeline;
mod plugins;
mod postgres;
#[cfg(test)]
mod prop_tests;
mod provision;
pub mod registry;
mod secrets;
#[cfg(test)]
mod secrets_tests;
mod sinks;
mod start;
#[cfg(test)]
mod tests;
mod topics;
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

pub use names::{
    DELETE_COLUMN, DatabaseName, MAX_PG_IDENT_LEN, MAX_TOPIC_LEN, NameError, TableName, TopicName, check_name,
};
pub use pg_url::{PgUrl, PgUrlError};
pub use secrets::{Secret, SecretSource};
pub use start::{StartAt, rfc3339_ms};

pub use bounds::{
    DEFAULT_AUDIT_INTERVAL_MS, DEFAULT_AUDIT_TIMEOUT_MS, DEFAULT_BATCH_SIZE, DEFAULT_CALL_TIMEOUT_MS,
    DEFAULT_COMPILE_TIMEOUT_MS, DEFAULT_FLUSH_INTERVAL_MS, DEFAULT_MAX_OUTPUT_BYTES, DEFAULT_MAX_PLUGIN_BYTES,
    DEFAULT_MEMORY_LIMIT_BYTES, MAX_AUDIT_INTERVAL_MS, MAX_AUDIT_TIMEOUT_MS, MAX_BATCH_SIZE, MAX_FLUSH_INTERVAL_MS,
    MAX_GENERATOR_COUNT, MAX_GENERATOR_INTERVAL_MS, MAX_MAX_OUTPUT_BYTES, MAX_MAX_PLUGIN_BYTES, MAX_MEMORY_LIMIT_BYTES,
    MAX_PARTITIONS, MAX_PLUGIN_TIMEOUT_MS, MAX_REPLICATION, MIN_AUDIT_INTERVAL_MS, MIN_AUDIT_TIMEOUT_MS,
    MIN_MAX_OUTPUT_BYTES, MIN_MEMORY_LIMIT_BYTES,
};
pub use kafka::{KafkaConfig, SecurityProtocol};
pub use ops::{AuditConfig, CheckConfig, DEFAULT_HTTP_LISTEN, HttpConfig};
pub use pipeline::Pipeline;
pub use plugins::{PluginConfig, PluginLimits};
pub use postgres::{PgTls, PostgresConfig};
pub use provision::{AivenConfig, DEFAULT_AIVEN_API_URL, DEFAULT_AIVEN_TOKEN_ENV, ProvisionConfig, ProvisionMethod};
pub use sinks::{OnLostOffsets, SinkConfig, SinkMode, TableNames};
pub use topics::{GeneratorConfig, TopicConfig};

use std::path::{Path, PathBuf};

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
