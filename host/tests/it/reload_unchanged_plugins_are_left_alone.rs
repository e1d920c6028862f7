//! Hot reload leaves plugins alone that did not change: the periodic audit
//! reading the check plugins every round, and a plugin file saved again with
//! the same bytes, reload nothing (the demo once reported both check plugins
//! changed 30 s after start). The pipeline keeps writing every offset once.
use crate::support::common;

use common::{Db, Running, plugin, unique, wait_for, write_pipeline};
use std::time::Duration;

#[test]
fn audit_rounds_and_same_byte_saves_reload_nothing() {
    const COUNT: i64 = 400;
    let (topic, table) = (unique("untouched"), unique("untouched_rows"));
    // Copies of their own, so saving them again touches no other test's files.
    let dir = std::env::temp_dir().join(unique("untouched_plugins"));
    std::fs::create_dir_all(&dir).expect("dir");
    let copy = |name: &str| {
        let to = dir.join(format!("{name}.wasm"));
        std::fs::copy(plugin(name), &to).expect("copy plugin");
        to
    };
    let (mapper, sync_audit, dead_letter_audit) = (copy("json_row"), copy("sync_audit"), copy("dead_letter_audit"));
    let path = write_pipeline(&format!(
        r#"
[audit]
interval_ms = 1000

[[topics]]
name = "{topic}"

[[generators]]
name = "cars"
topic = "{topic}"
plugin = "{cars}"
interval_ms = 20
count = {COUNT}

[[sinks]]
name = "rows"
topic = "{topic}"
table = "{table}"
mapper = "{mapper}"

[[checks]]
name = "sync-audit"
plugin = "{sync_audit}"

[[checks]]
name = "dead-letter-audit"
plugin = "{dead_letter_audit}"
"#,
        cars = plugin("cars").display(),
        mapper = mapper.display(),
        sync_audit = sync_audit.display(),
        dead_letter_audit = dead_letter_audit.display(),
    ));
    let host = Running::start(&["run", path.to_str().expect("utf-8")]);
    let db = Db::connect();
    let running = &host;
    let rounds = |n: usize| move || running.log().matches("audit round done").count() >= n;
    // Each round opens both check plugins (they load on the first).
    wait_for("three audit rounds", Duration::from_secs(60), rounds(3));

    // Saved again with the same bytes, in place: no change either.
    for file in [&mapper, &sync_audit, &dead_letter_audit] {
        let bytes = std::fs::read(file).expect("read");
        std::fs::write(file, bytes).expect("write the same bytes");
    }
    wait_for("two more audit rounds", Duration::from_secs(30), rounds(5));
    wait_for("every message stored", Duration::from_secs(60), || {
        let stored = db.query(
            "SELECT COALESCE(MAX(next_offset), 0) FROM wasm_stream_offsets WHERE table_name = $1",
            &[&table],
        );
        stored[0].get::<_, i64>(0) >= COUNT
    });

    let log = host.terminate();
    assert!(!log.contains("plugin changed"), "nothing was reloaded:\n{log}");
    assert!(!log.contains("restarting the periodic audit"), "{log}");
    assert!(!log.contains("mapper swapped"), "{log}");
    common::assert_each_offset_once(&db.offsets(&table), 0, COUNT);
}
