//! Checks the certificate and key files a pipeline names, connecting nowhere
//! (`host validate`): each must exist, be readable and parse, and a client
//! certificate must match its key. Messages name the setting and the file,
//! never a key's contents.

use crate::config::{PgTls, Pipeline, SecurityProtocol};
use anyhow::{Context as _, bail};
use openssl::pkey::PKey;
use openssl::x509::X509;
use std::path::Path;

/// One line per file checked, e.g. `kafka.ca certs/ca.pem: 1 certificate`.
pub fn check_files(pipeline: &Pipeline) -> anyhow::Result<Vec<String>> {
    let mut lines = Vec::new();
    let kafka = &pipeline.kafka;
    if kafka.security_protocol == SecurityProtocol::Ssl {
        let ca = kafka
            .ca
            .as_deref()
            .context("kafka.ca is not set: name the CA file (ca.pem) that signed the broker's certificate")?;
        lines.push(certificates("kafka.ca", ca)?);
        let cert = kafka
            .cert
            .as_deref()
            .context("kafka.cert is not set: name the access certificate (service.cert) the broker trusts")?;
        let key = kafka
            .key
            .as_deref()
            .context("kafka.key is not set: name the access key (service.key)")?;
        lines.push(certificates("kafka.cert", cert)?);
        let password = kafka.key_password.as_ref().map(|p| p.expose().as_bytes());
        lines.push(private_key("kafka.key", key, cert, password)?);
    }
    if pipeline.postgres.tls != PgTls::Disable
        && let Some(ca) = pipeline.postgres.ca.as_deref()
    {
        lines.push(certificates("postgres.ca", ca)?);
    }
    Ok(lines)
}

fn read(setting: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            anyhow::anyhow!("{setting} {}", crate::config::missing_file_hint(path))
        }
        std::io::ErrorKind::PermissionDenied => anyhow::anyhow!(
            "{setting} {} is not readable by this user\n  hint: make it readable by the user running the host (private keys: chmod 600, owned by that user)",
            path.display()
        ),
        _ => anyhow::anyhow!("{setting} {} cannot be read ({e})", path.display()),
    })
}

fn certificates(setting: &str, path: &Path) -> anyhow::Result<String> {
    let bytes = read(setting, path)?;
    let certs = X509::stack_from_pem(&bytes).ok().filter(|c| !c.is_empty());
    let Some(certs) = certs else {
        bail!(
            "{setting} {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)\n  hint: name the certificate file itself, not its key or a PKCS#12 bundle",
            path.display()
        );
    };
    Ok(format!(
        "{setting} {}: {} certificate{}",
        path.display(),
        certs.len(),
        if certs.len() == 1 { "" } else { "s" }
    ))
}

fn private_key(setting: &str, path: &Path, cert_path: &Path, password: Option<&[u8]>) -> anyhow::Result<String> {
    let bytes = read(setting, path)?;
    // The library's error could quote the file: report only that it failed.
    let key = match password {
        Some(password) => PKey::private_key_from_pem_passphrase(&bytes, password).map_err(|_| {
            anyhow::anyhow!(
                "{setting} {} cannot be read with the passphrase of kafka.key_password_env / key_password_file\n  hint: check the passphrase (`host validate` says where it came from), and that the file is a PEM private key (service.key)",
                path.display()
            )
        })?,
        // A callback that gives no passphrase: OpenSSL's default one would
        // ask on the terminal for an encrypted key.
        None => PKey::private_key_from_pem_callback(&bytes, |_| Ok(0)).map_err(|_| {
            let encrypted = String::from_utf8_lossy(&bytes).contains("ENCRYPTED");
            let hint = if encrypted {
                "the key is encrypted: give its passphrase with kafka.key_password_env (a variable's name) or kafka.key_password_file (a file's path)"
            } else {
                "name the access key (service.key)"
            };
            anyhow::anyhow!("{setting} {} is not a readable PEM private key\n  hint: {hint}", path.display())
        })?,
    };
    let cert = std::fs::read(cert_path)
        .ok()
        .and_then(|b| X509::from_pem(&b).ok())
        .with_context(|| format!("kafka.cert {} cannot be read", cert_path.display()))?;
    let matches = cert.public_key().map(|p| p.public_eq(&key)).unwrap_or(false);
    if !matches {
        bail!(
            "{setting} {} does not belong to kafka.cert {}\n  hint: use the key and certificate of the same service (service.key with service.cert)",
            path.display(),
            cert_path.display()
        );
    }
    let encrypted = if password.is_some() { "encrypted " } else { "" };
    Ok(format!(
        "{setting} {}: {encrypted}private key, matches kafka.cert",
        path.display()
    ))
}
