//! Hot reload of the pipeline file, the sink half: under a steady stream, a
//! sink's batch settings and mapper change live, a sink added starts from the
//! beginning of its topic, one removed stops after writing what it consumed,
//! and one moved to another table starts that table from the beginning. Every
//! table holds each offset at most once, without gaps, and its stored offset
//! matches its rows.
use crate::support::common;

use common::{Db, Running, plugin, replace_atomically, unique, versions, wait_for, write_pipeline};
use std::path::Path;
use std::time::Duration;

const COUNT: i64 = 8000;

struct Names {
    topic: String,
    /// The first table of sink `rows`, then the one it moves to.
    first: String,
    moved: String,
    /// The table of sink `extra`, added and later removed.
    extra: String,
}

fn generator(topic: &str) -> String {
    format!(
        "[[topics]]\nname = \"{topic}\"\n\n[[generators]]\nname = \"steady\"\ntopic = \"{topic}\"\nplugin = \"{}\"\ninterval_ms = 2\ncount = {COUNT}\n\n",
        plugin("langs").display()
    )
}

fn sink(name: &str, topic: &str, table: &str, mapper: &Path, batch_size: u32) -> String {
    format!(
        "[[sinks]]\nname = \"{name}\"\ntopic = \"{topic}\"\ntable = \"{table}\"\nmapper = \"{}\"\nbatch_size = {batch_size}\nflush_interval_ms = 20\n\n",
        mapper.display()
    )
}

fn stored_offset(db: &Db, table: &str) -> i64 {
    db.query(
        "SELECT COALESCE(MAX(next_offset), 0) FROM wasm_stream_offsets WHERE table_name = $1",
        &[&table],
    )[0]
    .get(0)
}

/// The table holds offsets 0.. each once, without a gap, as many as its stored offset says.
fn assert_prefix_once(db: &Db, table: &str) -> Vec<(i64, String)> {
    let rows = versions(db, table);
    let stored = stored_offset(db, table);
    let offsets: Vec<(i64, i64)> = rows.iter().map(|(o, _)| (0, *o)).collect();
    common::assert_each_offset_once(&offsets, 0, stored);
    rows
}

#[test]
fn sinks_are_changed_added_moved_and_removed_while_running() {
    let names = Names {
        topic: unique("sinklive"),
        first: unique("sinklive_first"),
        moved: unique("sinklive_moved"),
        extra: unique("sinklive_extra"),
    };
    // The mappers are files of their own, so the test never touches the fixtures.
    let dir = std::env::temp_dir().join(unique("sinklive_plugins"));
    std::fs::create_dir_all(&dir).expect("dir");
    let (v1, v2) = (dir.join("v1.wasm"), dir.join("v2.wasm"));
    std::fs::copy(plugin("versioned_mapper_v1"), &v1).expect("copy v1");
    std::fs::copy(plugin("versioned_mapper_v2"), &v2).expect("copy v2");

    let head = generator(&names.topic);
    let path = write_pipeline(&format!("{head}{}", sink("rows", &names.topic, &names.first, &v1, 20)));
    let host = Running::start(&["run", path.to_str().expect("utf-8"), "--once"]);
    // Saves a new body and waits until the host has applied it (a sink that
    // stops is waited for before the reload is reported).
    let mut saves = 0;
    let mut save = |body: String| {
        let text = std::fs::read_to_string(&path).expect("read pipeline");
        let connections = &text[..text.find("[[topics]]").expect("the head is written first")];
        replace_atomically(&path, format!("{connections}{body}").as_bytes());
        saves += 1;
        wait_for(&format!("reload {saves} applied"), Duration::from_secs(30), || {
            host.log().matches("pipeline file reloaded").count() >= saves
        });
    };
    let db = Db::connect();
    wait_for("the first rows", Duration::from_secs(30), || {
        !versions(&db, &names.first).is_empty()
    });

    // Settings and mapper: rows go on in the same table, now mapped by v2.
    save(format!("{head}{}", sink("rows", &names.topic, &names.first, &v2, 50)));
    wait_for("rows mapped by v2", Duration::from_secs(30), || {
        versions(&db, &names.first).last().is_some_and(|(_, v)| v == "v2")
    });

    // Added: a second sink fills its own table from offset 0.
    let rows_v2 = sink("rows", &names.topic, &names.first, &v2, 50);
    save(format!(
        "{head}{rows_v2}{}",
        sink("extra", &names.topic, &names.extra, &v1, 20)
    ));
    wait_for("rows of the added sink", Duration::from_secs(30), || {
        !versions(&db, &names.extra).is_empty()
    });

    // Removed: its table stops growing.
    save(format!("{head}{rows_v2}"));
    let extra_after_stop = versions(&db, &names.extra).len();

    // Moved to another table: a restart that fills the new table from offset 0.
    save(format!("{head}{}", sink("rows", &names.topic, &names.moved, &v2, 50)));
    wait_for("rows in the new table", Duration::from_secs(30), || {
        !versions(&db, &names.moved).is_empty()
    });
    let first_after_move = versions(&db, &names.first).len();

    let log = host.wait(Duration::from_secs(180));

    // The table the sink moved to holds every message once.
    let moved = assert_prefix_once(&db, &names.moved);
    assert_eq!(moved.len() as i64, COUNT, "every message in the new table:\n{log}");
    assert!(moved.iter().all(|(_, v)| v == "v2"), "the new table is mapped by v2");

    // The first table: a gapless prefix, v1 then v2 (once swapped, never back),
    // and nothing written after the sink moved away.
    let first = assert_prefix_once(&db, &names.first);
    assert_eq!(
        first.len(),
        first_after_move,
        "nothing written to the old table after the move"
    );
    let mut runs: Vec<&str> = Vec::new();
    for (_, v) in &first {
        if runs.last() != Some(&v.as_str()) {
            runs.push(v);
        }
    }
    assert_eq!(runs, ["v1", "v2"], "log:\n{log}");

    // The removed sink: a gapless prefix, nothing after it stopped.
    let extra = assert_prefix_once(&db, &names.extra);
    assert_eq!(
        extra.len(),
        extra_after_stop,
        "nothing written after the sink was removed"
    );
    assert!(
        !extra.is_empty() && (extra.len() as i64) < COUNT,
        "{} rows",
        extra.len()
    );

    assert_eq!(log.matches("sink started by reload").count(), 2, "{log}");
    assert_eq!(log.matches("sink stopping").count(), 2, "{log}");
}
