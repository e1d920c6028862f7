//! `host validate` and `host provision`: a pipeline file checked, and what it
//! needs created, before it runs.

use crate::config::Pipeline;
use crate::{audit, pipeline};
use std::path::Path;

/// `host validate`: the file, every plugin, the TLS files and the check
/// plugins, and where each secret came from.
pub async fn validate(path: &Path) -> anyhow::Result<()> {
    let mut pipeline = Pipeline::load(path)?;
    // Whether the registry answers; `from_registry` columns need it.
    let registry_line = crate::pipeline::registry_columns::check(&mut pipeline).await?;
    let sources = pipeline.secret_sources();
    let report = tokio::task::spawn_blocking(move || {
        let mut lines = pipeline::validate_plugins(&pipeline)?;
        lines.extend(crate::tls::check_files(&pipeline)?);
        lines.extend(audit::validate_checks(&pipeline)?);
        anyhow::Ok(lines)
    })
    .await??;
    println!("{}: ok", path.display());
    for line in report.into_iter().chain(registry_line) {
        println!("  {line}");
    }
    // Where each secret came from, never its value.
    for (secret, source) in sources {
        println!("  secret {secret}: {source}");
    }
    Ok(())
}

/// `host provision`: one line per object made or found.
pub async fn provision(path: &Path) -> anyhow::Result<()> {
    let mut pipeline = Pipeline::load(path)?;
    crate::pipeline::registry_columns::resolve(&mut pipeline).await?;
    crate::provision::run(&pipeline, |line| println!("{line}")).await?;
    Ok(())
}
