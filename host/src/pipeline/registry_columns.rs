//! json-columns' `columns = "from_registry"`: the columns come from the
//! subject's latest registered schema (its top-level fields, see the
//! codec's `columns`), written into the mapper's settings before the plugin
//! is configured. A later version with an added optional field resolves to
//! one more nullable column: the settings change, and the running pipeline
//! takes it through the schema-evolution path (mapper swap, then
//! `ALTER TABLE ... ADD COLUMN`).

use crate::config::Pipeline;
use crate::config::registry::FROM_REGISTRY;
use crate::plugins::mapper::ColumnType;
use crate::registry::client::{Registry, RegistryError};
use anyhow::Context as _;

/// json-columns' name of a column type.
fn type_name(kind: ColumnType) -> &'static str {
    match kind {
        ColumnType::Text => "text",
        ColumnType::Integer => "integer",
        ColumnType::Float => "float",
        ColumnType::Boolean => "boolean",
        ColumnType::Timestamp => "timestamp",
        ColumnType::Json => "json",
        ColumnType::Uuid => "uuid",
        ColumnType::Numeric => "numeric",
        ColumnType::Bytea => "bytea",
        ColumnType::Date => "date",
    }
}

fn from_registry_error(sink: &str, e: RegistryError) -> anyhow::Error {
    match e {
        RegistryError::UnknownSubject { .. } => anyhow::anyhow!(
            "sink {sink}: columns = \"from_registry\": {e}\n  hint: register the topic's schema first (a generator with format and schema does), or set sinks.subject"
        ),
        e => anyhow::anyhow!("sink {sink}: columns = \"from_registry\": {e}"),
    }
}

/// Whether any sink takes its columns from the registry.
pub fn any(pipeline: &Pipeline) -> bool {
    pipeline.sinks.iter().any(|s| s.registry.columns_from.is_some())
}

/// Writes each `from_registry` sink's columns into its mapper settings.
/// True when a sink's settings changed from what they held.
pub async fn resolve(pipeline: &mut Pipeline) -> anyhow::Result<bool> {
    resolve_with(pipeline, true).await
}

/// With `register` false (`host validate`, which writes nowhere), a
/// subject a generator of the pipeline would register is read from that
/// generator's schema file when the registry does not hold it yet.
async fn resolve_with(pipeline: &mut Pipeline, register: bool) -> anyhow::Result<bool> {
    let Some(config) = pipeline.schema_registry.clone() else {
        return Ok(false);
    };
    let mut changed = false;
    let generators = pipeline.generators.clone();
    for sink in pipeline.sinks.iter_mut() {
        let Some(subject) = sink.registry.columns_from.clone() else {
            continue;
        };
        let registry = Registry::shared(&config)?;
        // A generator of the same pipeline that registers the subject does
        // it first, so one `host run` can make the topic and read it.
        let own = generators.iter().find_map(|g| {
            let encoding = g.encoding.as_ref().filter(|e| e.subject == subject)?;
            Some((g, encoding, super::encode::schema_type(encoding.format)?))
        });
        if let (true, Some((g, encoding, kind))) = (register, own) {
            registry
                .register(&subject, kind, &encoding.schema_text)
                .await
                .with_context(|| format!("generator {}", g.name))?;
        }
        let latest = match registry.latest(&subject).await {
            Err(RegistryError::UnknownSubject { .. }) if !register && own.is_some() => None,
            other => Some(other),
        };
        let (columns, version, id) = match latest {
            None => {
                let (g, encoding, kind) = own.context("a generator registers the subject")?;
                let compiled = crate::registry::codec::Compiled::parse(kind, &encoding.schema_text, &[])
                    .with_context(|| format!("generator {}: schema {}", g.name, encoding.schema.display()))?;
                (compiled.columns()?, 0, 0)
            }
            Some(latest) => {
                let latest = latest.map_err(|e| from_registry_error(&sink.name, e))?;
                let columns = latest.schema.compiled.columns().with_context(|| {
                    format!(
                        "sink {}: the columns of subject {subject:?} (schema id {})",
                        sink.name, latest.schema.id
                    )
                })?;
                (columns, latest.version, latest.schema.id)
            }
        };
        let mut settings: serde_json::Value =
            serde_json::from_str(&sink.mapper.settings).context("sink settings are JSON")?;
        let listed: Vec<serde_json::Value> = columns
            .iter()
            .map(|c| {
                serde_json::json!({
                    "name": c.name,
                    "type": type_name(c.kind),
                    "nullable": c.nullable,
                    "field": c.field,
                })
            })
            .collect();
        if let Some(map) = settings.as_object_mut() {
            map.insert("columns".into(), serde_json::Value::Array(listed));
        }
        let text = serde_json::to_string(&settings)?;
        if text != sink.mapper.settings {
            if !sink.mapper.settings.contains(FROM_REGISTRY) {
                changed = true;
            }
            tracing::info!(
                sink = sink.name,
                subject,
                version,
                schema_id = id,
                columns = columns.len(),
                "columns from the schema registry"
            );
            sink.mapper.settings = text;
        }
    }
    Ok(changed)
}

/// Sinks ask for their `from_registry` columns to be resolved again when a
/// message carries a schema id they have not seen; the run loop does it and
/// applies a change like a saved pipeline file. The counter says a pass ended.
struct Refresh {
    asked: tokio::sync::Notify,
    done: tokio::sync::watch::Sender<u64>,
}

fn refresh() -> &'static Refresh {
    static REFRESH: std::sync::OnceLock<Refresh> = std::sync::OnceLock::new();
    REFRESH.get_or_init(|| Refresh {
        asked: tokio::sync::Notify::new(),
        done: tokio::sync::watch::channel(0).0,
    })
}

/// The run loop: resolves when a sink asks.
pub async fn asked() {
    refresh().asked.notified().await;
}

/// The run loop: a pass ended (its swaps, if any, are on their way).
pub fn passed() {
    refresh().done.send_modify(|n| *n += 1);
}

/// A sink: asks for a pass and waits until one has ended, at most `limit`.
pub async fn ask_and_wait(limit: std::time::Duration) {
    let mut done = refresh().done.subscribe();
    done.borrow_and_update();
    refresh().asked.notify_one();
    let _ = tokio::time::timeout(limit, done.changed()).await;
}

/// `host validate`: one line on whether the registry answers (and takes
/// the credentials), then the `from_registry` columns resolved. `None`
/// without `[schema_registry]`. An unanswering registry is an error only
/// when a sink's columns need it.
pub async fn check(pipeline: &mut Pipeline) -> anyhow::Result<Option<String>> {
    let Some(config) = pipeline.schema_registry.clone() else {
        return Ok(None);
    };
    let registry = Registry::shared(&config)?;
    let line = match registry.ping().await {
        Ok(n) => format!("schema_registry {}: answers ({n} subjects)", config.url),
        Err(e) if any(pipeline) => anyhow::bail!("{e}"),
        Err(e) => format!("schema_registry {}: does not answer: {e}", config.url),
    };
    resolve_with(pipeline, false).await?;
    Ok(Some(line))
}
