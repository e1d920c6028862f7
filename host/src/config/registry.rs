//! `[schema_registry]` and the registry keys of sinks and generators:
//! `format`, `key_format`, `subject`, `schema` and json-columns'
//! `columns = "from_registry"`. Raw forms as written, checked into the
//! typed forms the pipeline uses; errors name file:line:key and the fix.

use super::secrets::SecretKeys;
use super::{ConfigError, Secret, SecretSource, Source};
use serde::Deserialize;
use std::path::PathBuf;
use toml::Spanned;

/// The value json-columns' `columns` setting takes to read its columns from
/// the subject's latest registered schema.
pub const FROM_REGISTRY: &str = "from_registry";

/// How a message's value (or key) is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// As it is: the mapper gets the bytes (today's behaviour).
    #[default]
    Raw,
    Avro,
    Protobuf,
    JsonSchema,
}

impl Format {
    pub fn is_registry(self) -> bool {
        self != Format::Raw
    }

    /// The name written in pipeline.toml.
    pub fn name(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Avro => "avro",
            Format::Protobuf => "protobuf",
            Format::JsonSchema => "json_schema",
        }
    }

    fn parse(src: &Source<'_>, key: &str, v: &Spanned<String>) -> Result<Self, ConfigError> {
        Ok(match v.get_ref().as_str() {
            "raw" => Format::Raw,
            "avro" => Format::Avro,
            "protobuf" => Format::Protobuf,
            "json_schema" => Format::JsonSchema,
            other => {
                return Err(src.error(
                    v.span(),
                    format!("{key} {other:?} is not a format; use \"raw\" (the default: the bytes as they are), \"avro\", \"protobuf\" or \"json_schema\" (the schema registry's wire format, decoded through [schema_registry])"),
                ));
            }
        })
    }
}

/// `[schema_registry]`: where the schemas are (Confluent's REST API, which
/// Aiven's Karapace serves).
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Without a trailing slash.
    pub url: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub password_source: SecretSource,
    /// The CA that signed the registry's certificate (else the system's).
    pub ca: Option<PathBuf>,
}

/// A sink's registry settings (all `Raw`: a sink as before).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkRegistry {
    pub format: Format,
    pub key_format: Format,
    /// The subject whose latest schema gives json-columns its columns
    /// (`columns = "from_registry"` in the settings), else `None`.
    pub columns_from: Option<String>,
}

/// A generator that encodes its JSON through a schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratorEncoding {
    pub format: Format,
    /// The schema file, resolved from the pipeline file's folder.
    pub schema: PathBuf,
    /// Its text, read when the file was loaded.
    pub schema_text: String,
    /// Where it is registered (default `<topic>-value`).
    pub subject: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRegistry {
    url: Spanned<String>,
    username: Option<Spanned<String>>,
    password_env: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
    ca: Option<Spanned<String>>,
}

/// The registry keys of a `[[sinks]]` entry, as written (fields of
/// `RawSink`: serde's flatten does not mix with `deny_unknown_fields`).
pub(super) struct RawSinkRegistry<'a> {
    pub format: &'a Option<Spanned<String>>,
    pub key_format: &'a Option<Spanned<String>>,
    pub subject: &'a Option<Spanned<String>>,
}

/// The registry keys of a `[[generators]]` entry, as written.
pub(super) struct RawGeneratorRegistry<'a> {
    pub format: &'a Option<Spanned<String>>,
    pub schema: &'a Option<Spanned<String>>,
    pub subject: &'a Option<Spanned<String>>,
}

/// A registry URL the host talks to: https, or plain http only to localhost.
pub fn url_allowed(url: &str) -> bool {
    let local = ["http://localhost", "http://127.0.0.1", "http://[::1]"]
        .iter()
        .any(|p| {
            url.strip_prefix(p)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/']))
        });
    url.starts_with("https://") || local
}

pub(super) fn check_registry(src: &Source<'_>, raw: RawRegistry) -> Result<RegistryConfig, ConfigError> {
    let url = raw.url.get_ref().trim().trim_end_matches('/');
    if !url_allowed(url) {
        return Err(src.error(
            raw.url.span(),
            format!("schema_registry.url {url:?} must be an https:// URL (plain http only to localhost), e.g. \"https://kafka-demo-project.aivencloud.com:12694\" (Aiven: the Schema Registry tab of the Kafka service)"),
        ));
    }
    let keys = SecretKeys {
        key: "schema_registry.password",
        what: "the schema registry's password",
        inline: None,
        env: raw.password_env.as_ref(),
        file: raw.password_file.as_ref(),
    };
    let (password, password_source) = match keys.read(src)? {
        Some((value, source)) => (Some(Secret::new(value)), source),
        None => (None, SecretSource::None),
    };
    let username = raw.username.as_ref().map(|u| u.get_ref().clone());
    match (&username, &password) {
        (Some(_), None) => {
            let span = raw.username.as_ref().map_or(0..0, Spanned::span);
            return Err(src.error(
                span,
                "schema_registry.username is set without a password; add password_env = \"VAR\" (the variable holding it) or password_file = \"/path\"",
            ));
        }
        (None, Some(_)) => {
            return Err(src.error(
                raw.url.span(),
                "schema_registry has a password but no username; add username = \"avnadmin\" (Aiven: the service's user)",
            ));
        }
        _ => {}
    }
    if let Some(u) = &raw.username
        && u.get_ref().contains(':')
    {
        return Err(src.error(
            u.span(),
            "schema_registry.username holds ':', which basic auth cannot carry",
        ));
    }
    let ca = raw.ca.as_ref().map(|c| src.resolve(c.get_ref()));
    Ok(RegistryConfig {
        url: url.to_string(),
        username,
        password,
        password_source,
        ca,
    })
}

/// A sink's `format`, `key_format` and `subject`, and whether its settings
/// ask for `columns = "from_registry"`.
pub(super) fn check_sink(
    src: &Source<'_>,
    raw: &RawSinkRegistry<'_>,
    topic: &str,
    settings: &toml::Table,
    mapper_span: std::ops::Range<usize>,
    registry: bool,
) -> Result<SinkRegistry, ConfigError> {
    let format = match raw.format {
        Some(v) => Format::parse(src, "sinks.format", v)?,
        None => Format::Raw,
    };
    let key_format = match raw.key_format {
        Some(v) => Format::parse(src, "sinks.key_format", v)?,
        None => Format::Raw,
    };
    for (key, f, v) in [
        ("format", format, raw.format),
        ("key_format", key_format, raw.key_format),
    ] {
        if f.is_registry() && !registry {
            let span = v.as_ref().map_or(0..0, Spanned::span);
            return Err(src.error(
                span,
                format!("sinks.{key} = {:?} needs a [schema_registry] section with the registry's url (and username, password_env) to fetch the schemas from", f.name()),
            ));
        }
    }
    let from_registry = settings.get("columns").and_then(toml::Value::as_str) == Some(FROM_REGISTRY);
    if let Some(s) = raw.subject
        && s.get_ref().trim().is_empty()
    {
        return Err(src.error(s.span(), "sinks.subject is empty; leave it out for \"<topic>-value\""));
    }
    let columns_from = if from_registry {
        if !format.is_registry() {
            return Err(src.error(
                mapper_span,
                "settings.columns = \"from_registry\" takes the columns from the topic's registered schema, so the sink needs format = \"avro\", \"protobuf\" or \"json_schema\"",
            ));
        }
        Some(
            raw.subject
                .as_ref()
                .map_or_else(|| format!("{topic}-value"), |s| s.get_ref().clone()),
        )
    } else {
        if let Some(s) = raw.subject {
            return Err(src.error(
                s.span(),
                "sinks.subject names the subject whose schema gives the columns; it needs columns = \"from_registry\" in the sink's settings (messages are decoded by the schema id they carry, whatever the subject)",
            ));
        }
        None
    };
    Ok(SinkRegistry {
        format,
        key_format,
        columns_from,
    })
}

/// A generator's `format`, `schema` and `subject`: `None` for raw output.
pub(super) fn check_generator(
    src: &Source<'_>,
    raw: &RawGeneratorRegistry<'_>,
    topic: &str,
    name_span: std::ops::Range<usize>,
    registry: bool,
) -> Result<Option<GeneratorEncoding>, ConfigError> {
    let format = match raw.format {
        Some(v) => Format::parse(src, "generators.format", v)?,
        None => Format::Raw,
    };
    if !format.is_registry() {
        if let Some(v) = raw.schema.as_ref().or(raw.subject.as_ref()) {
            return Err(src.error(
                v.span(),
                "generators.schema and generators.subject encode the generator's JSON; they need format = \"avro\", \"protobuf\" or \"json_schema\"",
            ));
        }
        return Ok(None);
    }
    let format_span = raw.format.as_ref().map_or(name_span.clone(), Spanned::span);
    if !registry {
        return Err(src.error(
            format_span,
            format!("generators.format = {:?} registers its schema, so the pipeline needs a [schema_registry] section with the registry's url", format.name()),
        ));
    }
    let Some(schema) = raw.schema else {
        let example = match format {
            Format::Avro => "langs.avsc",
            Format::Protobuf => "langs.proto",
            _ => "langs.schema.json",
        };
        return Err(src.error(
            format_span,
            format!("generators.format = {:?} needs schema = \"{example}\", the schema file to encode with (relative to the pipeline file)", format.name()),
        ));
    };
    let path = src.resolve(schema.get_ref());
    let schema_text = std::fs::read_to_string(&path).map_err(|e| {
        src.error(
            schema.span(),
            format!(
                "generators.schema {}: {e}; name the schema file, relative to the pipeline file's folder",
                path.display()
            ),
        )
    })?;
    let subject = match raw.subject {
        Some(s) if s.get_ref().trim().is_empty() => {
            return Err(src.error(
                s.span(),
                "generators.subject is empty; leave it out for \"<topic>-value\"",
            ));
        }
        Some(s) => s.get_ref().clone(),
        None => format!("{topic}-value"),
    };
    Ok(Some(GeneratorEncoding {
        format,
        schema: path,
        schema_text,
        subject,
    }))
}

/// Where the registry's password comes from, for `host validate`.
pub(super) fn secret_source(registry: &Option<RegistryConfig>) -> Option<(&'static str, SecretSource)> {
    registry
        .as_ref()
        .filter(|r| r.username.is_some())
        .map(|r| ("schema_registry password", r.password_source.clone()))
}

#[cfg(test)]
mod tests {
    use crate::config::Pipeline;
    use std::path::Path;

    const HEAD: &str = "[kafka]\nbootstrap_servers = \"localhost:9092\"\nsecurity_protocol = \"plaintext\"\n\n[postgres]\nurl = \"postgres://avnadmin:pw@localhost:5432/info?sslmode=require\"\n\n[[topics]]\nname = \"cars\"\n";
    const SINK: &str = "[[sinks]]\nname = \"s\"\ntopic = \"cars\"\ntable = \"cars_rows\"\nmapper = \"m.wasm\"\n";
    const REGISTRY: &str = "[schema_registry]\nurl = \"https://registry.example.com:12694\"\n";

    fn parse(body: &str) -> Result<Pipeline, String> {
        Pipeline::parse(Path::new("pipeline.toml"), &format!("{HEAD}{body}")).map_err(|e| e.to_string())
    }

    #[test]
    fn a_registry_format_without_a_registry_is_refused_at_its_line() {
        let e = parse(&format!("{SINK}format = \"avro\"\n")).expect_err("refused");
        assert!(e.starts_with("pipeline.toml:15:10:"), "{e}");
        assert!(
            e.contains("sinks.format = \"avro\" needs a [schema_registry] section"),
            "{e}"
        );
    }

    #[test]
    fn formats_parse_and_default_to_raw() {
        let p = parse(&format!(
            "{REGISTRY}{SINK}format = \"protobuf\"\nkey_format = \"json_schema\"\n"
        ))
        .expect("valid");
        assert_eq!(p.sinks[0].registry.format, super::Format::Protobuf);
        assert_eq!(p.sinks[0].registry.key_format, super::Format::JsonSchema);
        let p = parse(SINK).expect("valid");
        assert_eq!(p.sinks[0].registry, super::SinkRegistry::default());
        let e = parse(&format!("{REGISTRY}{SINK}format = \"avro2\"\n")).expect_err("refused");
        assert!(e.contains("sinks.format \"avro2\" is not a format"), "{e}");
    }

    #[test]
    fn from_registry_columns_need_a_registry_format_and_default_to_the_value_subject() {
        let body = format!("{REGISTRY}{SINK}format = \"avro\"\n[sinks.settings]\ncolumns = \"from_registry\"\n");
        let p = parse(&body).expect("valid");
        assert_eq!(p.sinks[0].registry.columns_from.as_deref(), Some("cars-value"));
        let e = parse(&format!(
            "{REGISTRY}{SINK}[sinks.settings]\ncolumns = \"from_registry\"\n"
        ))
        .expect_err("refused");
        assert!(e.contains("needs format = \"avro\""), "{e}");
        let e = parse(&format!("{REGISTRY}{SINK}subject = \"x\"\n")).expect_err("refused");
        assert!(e.contains("needs columns = \"from_registry\""), "{e}");
    }

    #[test]
    fn the_registry_url_must_be_https_and_a_user_needs_a_password() {
        let e = parse("[schema_registry]\nurl = \"http://registry.example.com\"\n").expect_err("refused");
        assert!(e.contains("must be an https:// URL"), "{e}");
        parse("[schema_registry]\nurl = \"http://localhost:8081\"\n").expect("plain http to localhost");
        let e = parse(&format!("{REGISTRY}username = \"avnadmin\"\n")).expect_err("refused");
        assert!(e.contains("without a password"), "{e}");
    }

    #[test]
    fn a_generator_format_needs_a_schema_file() {
        let g = "[[generators]]\nname = \"g\"\ntopic = \"cars\"\nplugin = \"g.wasm\"\nformat = \"avro\"\n";
        let e = parse(&format!("{REGISTRY}{g}")).expect_err("refused");
        assert!(e.contains("needs schema = \"langs.avsc\""), "{e}");
        let e = parse(&format!("{REGISTRY}{g}schema = \"/nowhere/x.avsc\"\n")).expect_err("refused");
        assert!(e.contains("generators.schema /nowhere/x.avsc"), "{e}");
        let e = parse(&format!("{g}schema = \"x.avsc\"\n")).expect_err("refused");
        assert!(e.contains("needs a [schema_registry] section"), "{e}");
    }
}
