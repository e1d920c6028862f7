//! `[postgres]`: the connection URL, its password and TLS.

use super::{ConfigError, PgUrl, PgUrlError, SecretSource, Source, secrets};
use serde::Deserialize;
use std::path::PathBuf;
use toml::Spanned;

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPostgres {
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

pub(super) fn check_postgres(src: &Source<'_>, raw: Spanned<RawPostgres>) -> Result<PostgresConfig, ConfigError> {
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
