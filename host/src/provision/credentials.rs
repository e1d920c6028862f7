//! `host aiven credentials`: fetches from Aiven what the old tutorial had users
//! copy from the console by hand. The project CA, the Kafka service's
//! certificate listener with its access certificate and key, and the
//! PostgreSQL service's URI. It writes `certs/ca.pem`, `certs/service.cert`
//! and `certs/service.key` (owner-only) next to the pipeline file, then prints
//! the `[kafka]` and `[postgres]` sections, or with `--write` sets them in the
//! pipeline file, keeping its comments. The PostgreSQL password is never
//! printed or written: the sections name `PGPASSWORD` instead, or keep the
//! `password_file` the pipeline already reads it from. A certs folder
//! without a `.gitignore` gets one that ignores everything in it.

use crate::aiven;
use crate::config::{PgUrl, Pipeline, SecretSource};
use anyhow::{Context as _, bail};
use std::io::Write;
use std::path::{Path, PathBuf};
use toml_edit::{DocumentMut, Item, Value};

/// The variable the printed `[postgres]` section reads the password from.
pub const PASSWORD_ENV: &str = "PGPASSWORD";
/// The variable the printed `[schema_registry]` section reads its password from.
pub const REGISTRY_PASSWORD_ENV: &str = "SCHEMA_REGISTRY_PASSWORD";
/// Where the files go, relative to the pipeline file's folder.
pub const CA_FILE: &str = "certs/ca.pem";
pub const CERT_FILE: &str = "certs/service.cert";
pub const KEY_FILE: &str = "certs/service.key";
/// Keeps the key out of git in a certs folder that has no `.gitignore` yet.
const IGNORE_FILE: &str = "certs/.gitignore";
const IGNORE_TEXT: &str = "# Written by `host aiven credentials`: keys and certificates never go into git.\n*\n";

/// Fetches the credentials, writes the files and prints (or, with `write`,
/// applies) the connection sections.
pub async fn run(pipeline: &Pipeline, write: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let Some(config) = &pipeline.aiven else {
        bail!(
            "{} has no [aiven] section, so there is nothing to fetch credentials from\n  hint: add one with the names from the Aiven console:\n\n[aiven]\nproject = \"my-project\"\nkafka_service = \"kafka-demo\"\npg_service = \"pg-demo\"\ntoken_env = \"AIVEN_TOKEN\"   # export AIVEN_TOKEN=<token>\n",
            pipeline.path.display()
        );
    };
    let client = aiven::Client::new(config)?;
    let ca = client.project_ca().await?;
    let kafka = client.kafka_access().await?;
    let pg = client.pg_service_uri().await?;

    // The service's URI, with the pipeline's database and no password.
    let service = PgUrl::parse(pg.expose()).ok();
    let Some((pg_user, pg_url)) = service.and_then(|url| {
        let user = url.user().unwrap_or("avnadmin").to_string();
        Some((
            user,
            url.with_database(pipeline.postgres.url.database()).without_password()?,
        ))
    }) else {
        bail!(
            "service {:?} returned a service URI that is not a postgres:// URL",
            config.pg_service
        );
    };

    let dir = pipeline.path.parent().unwrap_or(Path::new("."));
    let ignore = dir.join(IGNORE_FILE);
    if !ignore.exists() {
        write_file(&ignore, IGNORE_TEXT, 0o644).with_context(|| format!("cannot write {}", ignore.display()))?;
    }
    for (file, contents, mode, what) in [
        (CA_FILE, &ca, 0o644, "the project CA"),
        (CERT_FILE, &kafka.access_cert, 0o644, "the Kafka access certificate"),
        (
            KEY_FILE,
            &kafka.access_key,
            0o600,
            "the Kafka access key, readable by you only",
        ),
    ] {
        let path = dir.join(file);
        write_file(&path, contents, mode).with_context(|| format!("cannot write {}", path.display()))?;
        writeln!(out, "Wrote {} ({what}).", path.display())?;
    }

    let kafka_keys = [
        ("bootstrap_servers", kafka.bootstrap_servers.as_str()),
        ("security_protocol", "ssl"),
        ("ca", CA_FILE),
        ("cert", CERT_FILE),
        ("key", KEY_FILE),
    ];
    // A password already read from a file (a mounted secret) stays there;
    // otherwise it is PGPASSWORD. Either way the section keeps one source.
    let password_file = match &pipeline.postgres.password_source {
        SecretSource::File(path) => Some(path.clone()),
        _ => None,
    };
    let mut pg_keys = vec![("url", pg_url.as_str())];
    if password_file.is_none() {
        pg_keys.push(("password_env", PASSWORD_ENV));
    }
    pg_keys.push(("ca", CA_FILE));
    let pg_other_sources: &[&str] = match password_file {
        Some(_) => &["url_env", "url_file", "password_env"],
        None => &["url_env", "url_file", "password_file"],
    };
    let what = format!(
        "the password of {pg_user}: Aiven console → service {:?} → Overview → Connection information",
        config.pg_service
    );
    let mut export = match &password_file {
        Some(path) => format!("Then write {what} into {}", path.display()),
        None => format!("Then export {PASSWORD_ENV}=<{what}>"),
    };
    // The registry's password: a file the pipeline reads it from stays.
    let registry_file = pipeline
        .schema_registry
        .as_ref()
        .and_then(|r| match &r.password_source {
            SecretSource::File(path) => Some(path.clone()),
            _ => None,
        });
    let mut registry_keys: Vec<(&str, &str)> = Vec::new();
    if let Some((url, user)) = &kafka.schema_registry {
        registry_keys.extend([("url", url.as_str()), ("username", user.as_str())]);
        if registry_file.is_none() {
            registry_keys.push(("password_env", REGISTRY_PASSWORD_ENV));
        }
        registry_keys.push(("ca", CA_FILE));
        let what = format!(
            "the password of {user}: Aiven console → service {:?} → Overview → Schema Registry",
            config.kafka_service
        );
        export.push_str(&match &registry_file {
            Some(path) => format!("\nThen write {what} into {}", path.display()),
            None => format!("\nThen export {REGISTRY_PASSWORD_ENV}=<{what}>"),
        });
    }
    let registry_other: &[&str] = match registry_file {
        Some(_) => &["password_env"],
        None => &["password_file"],
    };
    if write {
        let mut sections: Vec<Section<'_>> =
            vec![("kafka", &kafka_keys, &[]), ("postgres", &pg_keys, pg_other_sources)];
        if !registry_keys.is_empty() {
            sections.push(("schema_registry", &registry_keys, registry_other));
        }
        update_pipeline_file(&pipeline.path, &sections)?;
        writeln!(
            out,
            "Updated [kafka]{} in {} (other lines and comments kept).",
            if registry_keys.is_empty() {
                " and [postgres]"
            } else {
                ", [postgres] and [schema_registry]"
            },
            pipeline.path.display()
        )?;
    } else {
        writeln!(
            out,
            "\nPaste these over the [kafka] and [postgres] sections of {} (or run again with --write):\n",
            pipeline.path.display()
        )?;
        for (section, keys) in [
            ("kafka", &kafka_keys[..]),
            ("postgres", &pg_keys[..]),
            ("schema_registry", &registry_keys[..]),
        ] {
            if keys.is_empty() {
                continue;
            }
            writeln!(out, "[{section}]")?;
            for (key, value) in keys {
                writeln!(out, "{key} = {}", Value::from(*value))?;
            }
            writeln!(out)?;
        }
    }
    writeln!(out, "{export}")?;
    Ok(())
}

/// Sets keys of tables in a TOML file, keeping everything else (comments,
/// order, other keys, and the inline comment after a replaced value), and
/// removes the keys of each table's removal list (other sources of a secret
/// set here, which would make two).
type Section<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [&'a str]);

fn update_pipeline_file(path: &Path, sections: &[Section<'_>]) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut doc: DocumentMut = text
        .parse()
        .with_context(|| format!("{} is not valid TOML", path.display()))?;
    for (section, keys, remove) in sections {
        let table = doc
            .entry(section)
            .or_insert_with(toml_edit::table)
            .as_table_mut()
            .with_context(|| format!("[{section}] in {} is not a table", path.display()))?;
        for (key, new) in *keys {
            match table.get_mut(key) {
                Some(Item::Value(old)) => {
                    let decor = old.decor().clone();
                    let mut value = Value::from(*new);
                    *value.decor_mut() = decor;
                    *old = value;
                }
                _ => {
                    table.insert(key, toml_edit::value(*new));
                }
            }
        }
        for key in *remove {
            table.remove(key);
        }
    }
    replace_keeping_attributes(path, &doc.to_string()).with_context(|| format!("cannot write {}", path.display()))
}

/// Replaces the contents of an existing file the way an editor should: a
/// symlink stays a symlink (its target gets the new contents), and the target
/// keeps its mode and owner. The new text goes to a temporary file beside the
/// target, is synced, then renamed over it, so a crash leaves the old file or
/// the new one, never half of it.
fn replace_keeping_attributes(path: &Path, contents: &str) -> std::io::Result<()> {
    let target = std::fs::canonicalize(path)?;
    let meta = std::fs::metadata(&target)?;
    let name = target.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    let tmp = target.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
            // Never wider than the original while the text is written.
            options.mode(meta.permissions().mode() & 0o7777);
            let mut file = options.open(&tmp)?;
            // Keep the owner and group: allowed for the owner's own files
            // (the group when the user is in it) and for root; a change we
            // may not make leaves the writer's own, which is no wider.
            if let Err(e) = std::os::unix::fs::fchown(&file, Some(meta.uid()), Some(meta.gid())) {
                tracing::debug!(error = %e, file = %target.display(), "cannot keep the file's owner");
            }
            file.set_permissions(std::fs::Permissions::from_mode(meta.permissions().mode() & 0o7777))?;
            file.write_all(contents.as_bytes())?;
            file.sync_all()?;
        }
        #[cfg(not(unix))]
        {
            let mut file = options.open(&tmp)?;
            file.set_permissions(meta.permissions())?;
            file.write_all(contents.as_bytes())?;
            file.sync_all()?;
        }
        std::fs::rename(&tmp, &target)?;
        // The rename itself survives a crash once the folder is synced.
        if let Some(dir) = target.parent()
            && let Ok(d) = std::fs::File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes a file through a temporary file and a rename, with `mode` on Unix.
fn write_file(path: &Path, contents: &str, mode: u32) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    let tmp: PathBuf = path.with_file_name(format!(".{name}.tmp"));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        options.mode(mode);
        let mut file = options.open(&tmp)?;
        // The file may have existed with a wider mode.
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
    }
    #[cfg(not(unix))]
    {
        let _ = mode;
        let mut file = options.open(&tmp)?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}
