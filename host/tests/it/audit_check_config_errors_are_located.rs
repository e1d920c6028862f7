//! Mistakes in `[[checks]]` and `[audit]` are refused when the file is loaded,
//! with the file, line and key, and what to do.
use crate::support::{audit, common};

use audit::{check_entry, sink_body};
use common::{connection_sections, unique};
use host::config::Pipeline;
use std::path::Path;
use std::time::Duration;

fn parse(body: &str) -> Result<Pipeline, String> {
    let text = format!("{}\n{body}", connection_sections());
    Pipeline::parse(Path::new("pipeline.toml"), &text).map_err(|e| e.to_string())
}

/// The line of `needle` in the parsed text, counting from 1.
fn line_of(body: &str, needle: &str) -> usize {
    let text = format!("{}\n{body}", connection_sections());
    text.lines().position(|l| l.contains(needle)).expect("needle") + 1
}

#[test]
fn checks_and_audit_are_checked_when_loaded() {
    let topic = unique("cfg");
    let sync = check_entry("sync-audit", "sync_audit", "");

    let ok = parse(&sink_body(&topic, &topic, &sync)).expect("valid");
    assert_eq!(ok.checks.len(), 1);
    assert_eq!(ok.checks[0].name, "sync-audit");
    assert_eq!(ok.checks[0].plugin.settings, "{}");
    assert_eq!(ok.audit.interval, Some(Duration::from_secs(30)));
    assert_eq!(ok.audit.timeout, Duration::from_millis(5000));

    let typo = sink_body(&topic, &topic, &check_entry("sync-audit", "sync_audit", "setings = {}"));
    let e = parse(&typo).unwrap_err();
    assert!(
        e.starts_with(&format!("pipeline.toml:{}:", line_of(&typo, "setings"))),
        "{e}"
    );
    assert!(e.contains("unknown field `setings`"), "{e}");

    let twice = sink_body(&topic, &topic, &format!("{sync}{sync}"));
    let e = parse(&twice).unwrap_err();
    assert!(e.contains("checks.name \"sync-audit\" is used twice"), "{e}");

    let fast = sink_body(&topic, &topic, &sync).replace("timeout_ms = 5000", "interval_ms = 10");
    let e = parse(&fast).unwrap_err();
    assert_eq!(
        e,
        format!(
            "pipeline.toml:{}:15: audit.interval_ms must be 0 (no periodic audit) or at least 1000",
            line_of(&fast, "interval_ms = 10")
        )
    );
    let off = sink_body(&topic, &topic, &sync).replace("timeout_ms = 5000", "interval_ms = 0");
    assert_eq!(parse(&off).expect("valid").audit.interval, None);
}
