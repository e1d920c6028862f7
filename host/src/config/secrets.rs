//! Secrets in `pipeline.toml`. Each may be written in the file (where that is
//! allowed today), or come from an environment variable (`<key>_env`, naming
//! it) or a file (`<key>_file`, a path; trailing newlines trimmed, as
//! `echo secret > file` leaves one), the way Kubernetes Secrets and docker
//! secrets are handed to a process. Exactly one source per secret. Values
//! are never quoted in an error: only the key, the variable or the path.
//!
//! `${VAR}` inside values is not expanded: a value means what it says, and
//! a `$` in a password or a plugin setting stays a `$` (see README, Secrets).

use super::{ConfigError, Source};
use std::fmt;
use std::path::PathBuf;
use toml::Spanned;

/// A secret value held after loading (a key's passphrase): its `Debug`
/// shows no value, so a printed config never leaks it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The value, to hand to the library that needs it (never to a message).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Where a secret came from, for `host validate`: never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// Written in pipeline.toml.
    Inline,
    /// The environment variable of that name.
    Env(String),
    /// That file.
    File(PathBuf),
    /// Inside another secret (a password in a URL): where that came from.
    Within {
        key: &'static str,
        source: Box<SecretSource>,
    },
    /// Not given.
    None,
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Inline => write!(f, "pipeline.toml"),
            SecretSource::Env(name) => write!(f, "env {name}"),
            SecretSource::File(path) => write!(f, "file {}", path.display()),
            SecretSource::Within { key, source } => write!(f, "in {key} ({source})"),
            SecretSource::None => write!(f, "none"),
        }
    }
}

/// One secret's keys as written: `<key>` (when the file may hold it),
/// `<key>_env` and `<key>_file`.
pub(super) struct SecretKeys<'a> {
    /// `section.key`, e.g. `postgres.password`.
    pub key: &'a str,
    /// What it is, for messages: "the database password".
    pub what: &'a str,
    pub inline: Option<&'a Spanned<String>>,
    pub env: Option<&'a Spanned<String>>,
    pub file: Option<&'a Spanned<String>>,
}

impl SecretKeys<'_> {
    /// The keys given, as (key, span), in file order.
    fn given(&self) -> Vec<(String, std::ops::Range<usize>)> {
        let mut given: Vec<(String, std::ops::Range<usize>)> = [
            (self.key.to_string(), self.inline),
            (format!("{}_env", self.key), self.env),
            (format!("{}_file", self.key), self.file),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v.span())))
        .collect();
        given.sort_by_key(|(_, span)| span.start);
        given
    }

    /// Refuses two sources of one secret; the error stands at the second and
    /// names both keys and where the first one is.
    pub fn one_source(&self, src: &Source<'_>) -> Result<(), ConfigError> {
        let given = self.given();
        if let [(first, first_span), (second, second_span), ..] = given.as_slice() {
            return Err(src.error(
                second_span.clone(),
                format!(
                    "{second} and {first} ({}) both give {}; keep one of them\n  hint: {} takes the value itself, {}_env the name of an environment variable holding it, {}_file the path of a file holding it (a mounted Kubernetes or docker secret)",
                    src.location(first_span.clone()),
                    self.what,
                    self.key,
                    self.key,
                    self.key
                ),
            ));
        }
        Ok(())
    }

    /// The secret and where it came from: `None` when no key is given.
    /// Checks [`SecretKeys::one_source`] first.
    pub fn read(&self, src: &Source<'_>) -> Result<Option<(String, SecretSource)>, ConfigError> {
        self.one_source(src)?;
        if let Some(v) = self.inline {
            return Ok(Some((v.get_ref().clone(), SecretSource::Inline)));
        }
        if let Some(var) = self.env {
            return read_env(src, &format!("{}_env", self.key), self.key, self.what, var).map(Some);
        }
        if let Some(path) = self.file {
            return read_file(src, &format!("{}_file", self.key), self.key, self.what, path).map(Some);
        }
        Ok(None)
    }
}

/// Whether `name` can be an environment variable's name.
pub(super) fn is_env_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn read_env(
    src: &Source<'_>,
    setting: &str,
    key: &str,
    what: &str,
    var: &Spanned<String>,
) -> Result<(String, SecretSource), ConfigError> {
    let name = var.get_ref();
    if !is_env_name(name) {
        return Err(src.error(
            var.span(),
            format!("{setting} {name:?} is not an environment variable name; name the variable that holds {what}, e.g. \"PGPASSWORD\" (the value itself never goes in this key)"),
        ));
    }
    let fix = format!(
        "export {name} with {what} (Kubernetes: an env entry with valueFrom.secretKeyRef; systemd: EnvironmentFile), or read it from a file with {key}_file"
    );
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => Ok((value, SecretSource::Env(name.clone()))),
        Ok(_) => Err(src.error(
            var.span(),
            format!("{setting} names {name:?}, which is set but empty\n  hint: {fix}"),
        )),
        Err(std::env::VarError::NotPresent) => Err(src.error(
            var.span(),
            format!("{setting} names {name:?}, which is not set\n  hint: {fix}"),
        )),
        Err(std::env::VarError::NotUnicode(_)) => Err(src.error(
            var.span(),
            format!("{setting} names {name:?}, which does not hold UTF-8 text\n  hint: {fix}"),
        )),
    }
}

fn read_file(
    src: &Source<'_>,
    setting: &str,
    key: &str,
    what: &str,
    path: &Spanned<String>,
) -> Result<(String, SecretSource), ConfigError> {
    if path.get_ref().trim().is_empty() {
        return Err(src.error(
            path.span(),
            format!("{setting} is empty; give the path of the file holding {what}"),
        ));
    }
    let resolved = src.resolve(path.get_ref());
    let shown = resolved.display();
    let text = std::fs::read(&resolved).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => "does not exist".to_string(),
            std::io::ErrorKind::PermissionDenied => "is not readable by this user".to_string(),
            _ => format!("cannot be read ({e})"),
        };
        src.error(
            path.span(),
            format!(
                "{setting} {shown} {why}\n  hint: mount the secret holding {what} there (Kubernetes: a Secret volume; docker: --secret), make it readable by the user running the host, or set {key}_env instead; a relative path is resolved from the pipeline file's folder"
            ),
        )
    })?;
    let Ok(text) = String::from_utf8(text) else {
        return Err(src.error(
            path.span(),
            format!("{setting} {shown} does not hold UTF-8 text; it should hold {what} alone"),
        ));
    };
    // `echo secret > file` and editors end the file with a newline.
    let value = text.trim_end_matches(['\n', '\r']);
    if value.is_empty() {
        return Err(src.error(
            path.span(),
            format!("{setting} {shown} is empty; it should hold {what} alone"),
        ));
    }
    Ok((value.to_string(), SecretSource::File(resolved)))
}

/// A `${` in a value: pipeline.toml is taken as written.
pub(super) fn refuse_interpolation(src: &Source<'_>, key: &str, v: &Spanned<String>) -> Result<(), ConfigError> {
    let Some(at) = v.get_ref().find("${") else {
        return Ok(());
    };
    // Quote the name only when it is one: anything else may be part of a password.
    let name: String = v.get_ref()[at + 2..].chars().take_while(|&c| c != '}').collect();
    let shown = if is_env_name(&name) {
        format!("${{{name}}}")
    } else {
        "${".to_string()
    };
    Err(src.error(
        v.span(),
        format!(
            "{key} holds \"{shown}\", but pipeline.toml values are taken as written: ${{VAR}} is not expanded\n  hint: give the whole value through {key}_env = \"VAR\" or {key}_file = \"/path\" instead (a \"$\" that belongs to a password in a URL is written %24)"
        ),
    ))
}
