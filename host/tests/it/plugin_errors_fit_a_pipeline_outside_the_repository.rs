//! With the pipeline file copied out of the repository, a missing certificate
//! or plugin is reported at the path it was resolved to (from the pipeline
//! file's folder), with a hint that fits: no `scripts/local-stack up` when the
//! certificates are not the local stack's, no `scripts/build` alone for a plugin.
use crate::support::common;

use common::{host_within, plugin, repo_root, unique};
use std::time::Duration;

#[test]
fn missing_certificates_and_plugins_are_reported_where_they_were_looked_for() {
    let dir = std::env::temp_dir().join(unique("elsewhere"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let text = std::fs::read_to_string(repo_root().join("pipeline.toml")).expect("demo pipeline");
    std::fs::write(dir.join("pipeline.toml"), &text).expect("copy");
    let pipeline = dir.join("pipeline.toml");
    let pipeline = pipeline.to_str().expect("utf-8");

    let out = host_within(&["validate", pipeline], Duration::from_secs(60));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("{}/target/wasm32-wasip2/release/langs.wasm", dir.display())),
        "the resolved path: {err}"
    );
    assert!(err.contains("resolved from the pipeline file's folder"), "{err}");
    assert!(err.contains("cargo build --release"), "{err}");

    // The plugins found (absolute paths), the certificates not.
    let release = repo_root().join("target/wasm32-wasip2/release");
    let text = text.replace("target/wasm32-wasip2/release", release.to_str().expect("utf-8"));
    std::fs::write(dir.join("pipeline.toml"), text).expect("rewrite");
    let out = host_within(&["run", pipeline, "--once", "--no-watch"], Duration::from_secs(120));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("{}/certs/ca.pem does not exist", dir.display())),
        "{err}"
    );
    assert!(err.contains("resolved from the pipeline file's folder"), "{err}");
    assert!(!err.contains("scripts/local-stack up"), "{err}");
    assert!(plugin("langs").is_file());
}
