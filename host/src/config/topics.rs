//! `[[topics]]` and the `[[generators]]` that produce into them.

use super::bounds::{GENERATOR_COUNT, GENERATOR_INTERVAL_MS, PARTITIONS, REPLICATION};
use super::plugins::{RawLimits, plugin_config};
use super::{ConfigError, PluginConfig, PluginLimits, Source, TopicName, registry};
use serde::Deserialize;
use std::time::Duration;
use toml::Spanned;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    pub name: TopicName,
    pub partitions: i32,
    pub replication: i32,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTopic {
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
pub(super) struct RawGenerator {
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

/// `[[topics]]`: each name valid and declared once, its numbers within bounds.
pub(super) fn check_topics(src: &Source<'_>, raw: Vec<RawTopic>) -> Result<Vec<TopicConfig>, ConfigError> {
    let mut topics: Vec<TopicConfig> = Vec::new();
    for t in raw {
        let name = TopicName::new(t.name.get_ref().as_str())
            .map_err(|m| src.error(t.name.span(), format!("topics.name: {m}")))?;
        if topics.iter().any(|x| x.name == name) {
            return Err(src.error(t.name.span(), format!("topic {:?} is declared twice", t.name.get_ref())));
        }
        topics.push(TopicConfig {
            name,
            partitions: PARTITIONS.check(src, "topics.partitions", &t.partitions)?,
            replication: REPLICATION.check(src, "topics.replication", &t.replication)?,
        });
    }
    Ok(topics)
}

/// `[[generators]]`, in the file's order: `unique` takes each name,
/// `known_topic` finds its topic among the declared ones.
pub(super) fn check_generators(
    src: &Source<'_>,
    raw: Vec<RawGenerator>,
    unique: &mut impl FnMut(&Spanned<String>, &str) -> Result<String, ConfigError>,
    known_topic: &impl Fn(&Spanned<String>, &str) -> Result<TopicName, ConfigError>,
    defaults: PluginLimits,
    has_registry: bool,
) -> Result<Vec<GeneratorConfig>, ConfigError> {
    let mut generators = Vec::new();
    for g in raw {
        let name = unique(&g.name, "generators")?;
        let topic = known_topic(&g.topic, "generators")?;
        let plugin = plugin_config(src, &g.plugin, &g.settings, g.limits.over(src, "generators", defaults)?)?;
        let interval_ms = GENERATOR_INTERVAL_MS.or(src, "generators.interval_ms", g.interval_ms.as_ref(), 0)?;
        let count = match &g.count {
            Some(v) => Some(GENERATOR_COUNT.check(src, "generators.count", v)?),
            None => None,
        };
        let raw_encoding = registry::RawGeneratorRegistry {
            format: &g.format,
            schema: &g.schema,
            subject: &g.subject,
        };
        let encoding = registry::check_generator(src, &raw_encoding, g.topic.get_ref(), g.name.span(), has_registry)?;
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
    Ok(generators)
}
