//! Hot reload of a mapper: under a steady stream, swapping the plugin file
//! between two versions several times loses and doubles nothing, and rows
//! written after each swap carry the new mapping. Bad files never stop the
//! pipeline; a file written slowly is loaded once.
use crate::support::common;

use common::{Db, Running, SinkPipeline, plugin, replace_atomically, unique, versions, wait_for};
use std::path::{Path, PathBuf};
use std::time::Duration;

struct Setup {
    mapper: PathBuf,
    pipeline: PathBuf,
    table: String,
}

/// A pipeline whose mapper is a copy of versioned-mapper-v1 in a folder of its own.
fn setup(count: u64, interval_ms: u64) -> Setup {
    let topic = unique("reload");
    let table = unique("reload_rows");
    let dir = std::env::temp_dir().join(unique("plugins"));
    std::fs::create_dir_all(&dir).expect("dir");
    let mapper = dir.join("mapper.wasm");
    std::fs::copy(plugin("versioned_mapper_v1"), &mapper).expect("copy v1");
    let pipeline = SinkPipeline::new(&topic, &table, "versioned_mapper_v1")
        .mapper_path(&mapper)
        .batch_size(20)
        .sink_line("flush_interval_ms = 20")
        .generator("steady", count, interval_ms)
        .write();
    Setup {
        mapper,
        pipeline,
        table,
    }
}

/// Starts `host run` on the setup and waits for its first rows.
fn start(s: &Setup, once: bool) -> (Running, Db) {
    let path = s.pipeline.to_str().expect("utf-8");
    let mut args = vec!["run", path];
    if once {
        args.push("--once");
    }
    let host = Running::start(&args);
    let db = Db::connect();
    wait_for("the first rows", Duration::from_secs(30), || {
        latest_version(&db, &s.table).is_some()
    });
    (host, db)
}

fn latest_version(db: &Db, table: &str) -> Option<String> {
    versions(db, table).last().map(|(_, v)| v.clone())
}

/// One way an editor saves a file.
type Save = fn(&Path, &[u8]);

fn bytes(name: &str) -> Vec<u8> {
    std::fs::read(plugin(name)).expect("read fixture")
}

#[test]
fn swapping_the_mapper_back_and_forth_keeps_every_offset_once() {
    // 30 s of stream at 3 ms, so the four swaps end before the stream does
    // on a loaded machine. With 3,000 (9 s) the whole suite once timed out
    // waiting for v2's rows, most likely because no message was left to map.
    const COUNT: u64 = 10_000;
    let s = setup(COUNT, 3);
    let (host, db) = start(&s, true);

    // Four swaps, each saved differently: atomic rename, in-place write, delete and create.
    let saves: [(&str, Save); 4] = [
        ("v2", replace_atomically),
        ("v1", |p, b| std::fs::write(p, b).expect("write")),
        ("v2", |p, b| {
            std::fs::remove_file(p).expect("remove");
            std::fs::write(p, b).expect("create");
        }),
        ("v1", replace_atomically),
    ];
    for (version, save) in saves {
        save(&s.mapper, &bytes(&format!("versioned_mapper_{version}")));
        wait_for(&format!("rows mapped by {version}"), Duration::from_secs(30), || {
            latest_version(&db, &s.table).as_deref() == Some(version)
        });
    }
    let log = host.wait(Duration::from_secs(120));

    let rows = versions(&db, &s.table);
    let offsets: Vec<(i64, i64)> = rows.iter().map(|(o, _)| (0, *o)).collect();
    common::assert_each_offset_once(&offsets, 0, COUNT as i64);
    // In offset order the versions run v1, v2, v1, v2, v1: once swapped, never back.
    let mut runs: Vec<&str> = Vec::new();
    for (_, v) in &rows {
        if runs.last() != Some(&v.as_str()) {
            runs.push(v);
        }
    }
    assert_eq!(runs, ["v1", "v2", "v1", "v2", "v1"], "log:\n{log}");
    assert_eq!(log.matches("mapper swapped").count(), 4, "one swap per change:\n{log}");
}

#[test]
fn broken_plugin_files_leave_the_old_mapper_serving() {
    let s = setup(1_000_000, 5);
    let (host, db) = start(&s, false);

    let v2 = bytes("versioned_mapper_v2");
    let mut noise = vec![0u8; 4096];
    for (i, b) in noise.iter_mut().enumerate() {
        *b = (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0];
    }
    let bad: [(&str, Vec<u8>); 4] = [
        ("truncated", v2[..v2.len() / 2].to_vec()),
        ("random bytes", noise),
        ("empty", Vec::new()),
        ("wrong world", bytes("langs")),
    ];
    for (i, (what, content)) in bad.into_iter().enumerate() {
        replace_atomically(&s.mapper, &content);
        // Each file is judged before the next is written (else the debounce
        // would rightly merge the two saves into one change).
        wait_for(
            &format!("the {what} file to be refused"),
            Duration::from_secs(20),
            || host.log().matches("changed plugin refused").count() > i,
        );
        // Rows keep flowing, all still from v1.
        let before = versions(&db, &s.table).len();
        wait_for(&format!("rows after the {what} file"), Duration::from_secs(20), || {
            versions(&db, &s.table).len() > before + 100
        });
        assert!(
            versions(&db, &s.table).iter().all(|(_, v)| v == "v1"),
            "{what}: the old mapper keeps serving"
        );
    }
    // Fixing the file is picked up like any change.
    replace_atomically(&s.mapper, &v2);
    wait_for("rows mapped by the fixed file", Duration::from_secs(30), || {
        latest_version(&db, &s.table).as_deref() == Some("v2")
    });
    let log = host.terminate();
    assert_eq!(
        log.matches("changed plugin refused").count(),
        4,
        "each bad file is logged:\n{log}"
    );
    for reason in ["is not a WebAssembly component", "is not a mapper plugin"] {
        assert!(log.contains(reason), "{reason}:\n{log}");
    }
    assert!(log.contains(&s.mapper.display().to_string()), "the path is logged");
    let offsets: Vec<(i64, i64)> = versions(&db, &s.table).iter().map(|(o, _)| (0, *o)).collect();
    let stored: i64 = db.query(
        "SELECT next_offset FROM wasm_stream_offsets WHERE table_name = $1",
        &[&s.table],
    )[0]
    .get(0);
    common::assert_each_offset_once(&offsets, 0, stored);
}

#[test]
fn a_file_written_slowly_in_chunks_is_loaded_once() {
    let s = setup(1_000_000, 5);
    let (host, db) = start(&s, false);

    let v2 = bytes("versioned_mapper_v2");
    {
        use std::io::Write as _;
        let mut file = std::fs::File::create(&s.mapper).expect("open");
        for chunk in v2.chunks(v2.len() / 4 + 1) {
            file.write_all(chunk).expect("write chunk");
            file.flush().expect("flush");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    wait_for("rows mapped by v2", Duration::from_secs(30), || {
        latest_version(&db, &s.table).as_deref() == Some("v2")
    });
    let log = host.terminate();
    let hash = host::plugins::content_hash(&v2);
    assert_eq!(log.matches("mapper swapped").count(), 1, "loaded once:\n{log}");
    assert!(
        log.contains(&format!("new_hash=\"{hash}\"")) || log.contains(&format!("new_hash={hash}")),
        "{log}"
    );
    assert!(!log.contains("refused"), "no half-written file was loaded:\n{log}");
}
