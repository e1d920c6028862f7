//! The whole file: `RawPipeline` as serde reads it, then each section checked
//! in the file's order into a [`Pipeline`].

use super::kafka::{RawKafka, check_kafka};
use super::ops::{RawAudit, RawCheck, RawHttp, check_audit, check_checks, check_http};
use super::plugins::RawLimits;
use super::postgres::{RawPostgres, check_postgres};
use super::provision::{RawAiven, RawProvision, check_provision};
use super::sinks::{RawSink, check_sinks};
use super::topics::{RawGenerator, RawTopic, check_generators, check_topics};
use super::{
    AivenConfig, AuditConfig, CheckConfig, ConfigError, GeneratorConfig, HttpConfig, KafkaConfig, MAX_PG_IDENT_LEN,
    PluginLimits, PostgresConfig, ProvisionConfig, SecretSource, SinkConfig, Source, TopicConfig, TopicName,
    check_name, registry, type_errors,
};
use serde::Deserialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use toml::Spanned;

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

        let topics = check_topics(&src, raw.topics)?;
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

        let has_registry = schema_registry.is_some();
        let generators = check_generators(&src, raw.generators, &mut unique, &known_topic, defaults, has_registry)?;
        let sinks = check_sinks(&src, raw.sinks, &mut unique, &known_topic, defaults, has_registry)?;
        let checks = check_checks(&src, raw.checks, &mut unique, defaults)?;
        let audit = check_audit(&src, raw.audit)?;
        let http = check_http(&src, raw.http)?;

        let (provision, aiven) = check_provision(&src, raw.provision, raw.aiven)?;

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
