//! The audit logic lives in the check plugins `pipeline.toml` names: replacing
//! sync-audit by dead-letter-audit, or changing its settings, changes the
//! findings of `host check` while the host binary stays as it was.
use crate::support::{audit, common};

use audit::{check_entry, check_sync, consume_once, findings_about, findings_field, produce_json, sink_body};
use common::{Db, create_topic, produce_raw, unique, write_pipeline};
use std::time::SystemTime;

fn binary_mtime() -> SystemTime {
    std::fs::metadata(env!("CARGO_BIN_EXE_host"))
        .and_then(|m| m.modified())
        .expect("host binary's modification time")
}

#[test]
fn replacing_sync_audit_by_dead_letter_audit_changes_the_findings() {
    let built = binary_mtime();
    let (topic, table) = (unique("swap"), unique("swap_rows"));
    create_topic(&topic, 1);
    produce_json(&topic, 0..3);
    produce_raw(&topic, &[Some(b"not json".to_vec())]);
    let path = write_pipeline(&sink_body(&topic, &table, &check_entry("sync-audit", "sync_audit", "")));
    consume_once(&path, &topic);
    assert_eq!(Db::connect().dead_letters(&topic).len(), 1, "one malformed payload");
    let subject = format!("{topic}/0");

    let (code, report) = check_sync(&path, &topic);
    assert_eq!(code, 0, "{report:#}");
    let found = findings_about(&report, &subject);
    assert_eq!(found.len(), 1, "{report:#}");
    assert_eq!(found[0]["source"], "check sync-audit");
    assert_eq!(found[0]["severity"], "info");
    assert_eq!(found[0]["message"], "in sync at offset 4");

    // Only the file changes: the same binary now judges dead letters.
    let swapped = sink_body(
        &topic,
        &table,
        &check_entry("dead-letters", "dead_letter_audit", "settings = { threshold = 0 }"),
    );
    std::fs::write(&path, format!("{}\n{swapped}", common::connection_sections())).expect("rewrite pipeline");
    let (code, report) = check_sync(&path, &topic);
    assert_eq!(code, 1, "{report:#}");
    let found = findings_about(&report, &subject);
    assert_eq!(found.len(), 1, "{report:#}");
    assert_eq!(found[0]["source"], "check dead-letters");
    assert_eq!(found[0]["severity"], "warning");
    assert_eq!(
        found[0]["message"],
        "1 dead letters from sink audited (threshold 0); see table wasm_stream_dead_letters for the reasons"
    );
    let sources = findings_field(&report, "source");
    assert!(!sources.contains(&"check sync-audit"), "{report:#}");

    // And its settings: one dead letter is now within the threshold.
    let relaxed = swapped.replace("threshold = 0", "threshold = 1");
    std::fs::write(&path, format!("{}\n{relaxed}", common::connection_sections())).expect("rewrite pipeline");
    let (code, report) = check_sync(&path, &topic);
    assert_eq!(code, 0, "{report:#}");
    assert!(findings_about(&report, &subject).is_empty(), "{report:#}");

    assert_eq!(binary_mtime(), built, "the host binary was rebuilt during the test");
}
