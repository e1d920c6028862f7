//! `[provision]` and `[aiven]`: how `host provision` creates topics and
//! databases, and where the Aiven services live.

use super::{ConfigError, MAX_PG_IDENT_LEN, Source, check_name, secrets};
use serde::Deserialize;
use std::path::PathBuf;
use toml::Spanned;

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProvision {
    #[serde(default = "default_method")]
    method: Spanned<ProvisionMethod>,
}

fn default_method() -> Spanned<ProvisionMethod> {
    Spanned::new(0..0, ProvisionMethod::Kafka)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAiven {
    project: Spanned<String>,
    kafka_service: Spanned<String>,
    pg_service: Spanned<String>,
    token_env: Option<Spanned<String>>,
    token_file: Option<Spanned<String>>,
    api_url: Option<Spanned<String>>,
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

/// `[provision]` and `[aiven]`: `method = "aiven"` needs an `[aiven]` section.
pub(super) fn check_provision(
    src: &Source<'_>,
    provision: Option<RawProvision>,
    aiven: Option<RawAiven>,
) -> Result<(ProvisionConfig, Option<AivenConfig>), ConfigError> {
    let (method, method_span) = match &provision {
        Some(p) => (*p.method.get_ref(), p.method.span()),
        None => (ProvisionMethod::Kafka, 0..0),
    };
    let provision = ProvisionConfig { method };
    let aiven = aiven.map(|a| check_aiven(src, a)).transpose()?;
    if provision.method == ProvisionMethod::Aiven && aiven.is_none() {
        return Err(src.error(
            method_span,
            "provision.method = \"aiven\" needs an [aiven] section: project, kafka_service and pg_service (the names in the Aiven console), and token_env naming the variable that holds the API token",
        ));
    }
    Ok((provision, aiven))
}
