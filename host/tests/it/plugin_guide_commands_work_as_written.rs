//! PLUGINS.md's "Trying a plugin by hand" works as written, run from the
//! document itself: its `kcat` line puts keyed messages and a tombstone on a
//! topic (read back from Kafka, then stored by a sink), and its SQL removes a
//! trial sink's table, offsets and dead letters (read back from PostgreSQL)
//! and nothing of another sink on the same topic.
use crate::support::common;

use common::{Db, SinkPipeline, create_topic, host_within, read_topic, repo_root, unique};
use std::time::Duration;

/// The fenced block right after the line `<!-- tested by ...: {name} -->` in PLUGINS.md.
fn tested_block(name: &str) -> String {
    let doc = std::fs::read_to_string(repo_root().join("PLUGINS.md")).expect("read PLUGINS.md");
    let marker = format!("plugin_guide_commands_work_as_written.rs: {name} -->");
    let after = doc
        .split_once(&marker)
        .unwrap_or_else(|| panic!("PLUGINS.md has no block marked {marker:?}"))
        .1;
    let mut lines = after.lines().skip_while(|l| l.trim().is_empty());
    assert!(
        lines.next().is_some_and(|l| l.starts_with("```")),
        "a fenced block follows {marker:?}"
    );
    lines
        .take_while(|l| !l.starts_with("```"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn count(db: &Db, sql: &str, name: &str) -> i64 {
    db.query(sql, &[&name])[0].get(0)
}

fn traces(db: &Db, name: &str) -> (bool, i64, i64) {
    let table: Option<String> = db.query("SELECT to_regclass(quote_ident($1))::text", &[&name])[0].get(0);
    (
        table.is_some(),
        count(
            db,
            "SELECT count(*) FROM wasm_stream_offsets WHERE table_name = $1",
            name,
        ),
        count(
            db,
            "SELECT count(*) FROM wasm_stream_dead_letters WHERE sink = $1",
            name,
        ),
    )
}

#[test]
fn hand_made_messages_reach_a_sink_and_a_trial_sink_is_removed_without_a_trace() {
    // The guide names the sink, its table and its topic `trial`.
    let (trial, kept) = (unique("trial"), unique("kept"));
    create_topic(&trial, 1);

    let kcat = tested_block("kcat").replace("trial", &trial);
    let out = std::process::Command::new("bash")
        .args(["-c", &kcat])
        .current_dir(repo_root())
        .output()
        .expect("run the guide's kcat line");
    assert!(out.status.success(), "{kcat}\n{}", String::from_utf8_lossy(&out.stderr));
    let payloads: Vec<Option<Vec<u8>>> = read_topic(&trial).into_iter().map(|r| r.payload).collect();
    assert_eq!(
        payloads,
        [Some(b"{\"a\": 1}".to_vec()), Some(b"not json".to_vec()), None],
        "one message a line, the key split off at the first ':', an empty payload a tombstone"
    );

    // Two sinks store them: the trial and another on the same topic.
    let pipeline = SinkPipeline::new(&trial, &trial, "json_row")
        .name(&trial)
        .extra(&format!(
            "[[sinks]]\nname = \"{kept}\"\ntopic = \"{trial}\"\ntable = \"{kept}\"\nmapper = \"{}\"\n",
            common::plugin("json_row").display()
        ))
        .write();
    let out = host_within(
        &[
            "consume",
            pipeline.to_str().expect("utf-8"),
            "--topic",
            &trial,
            "--once",
            "--quiet",
        ],
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let db = Db::connect();
    let stored: Vec<String> = db
        .query(&format!("SELECT message_text FROM \"{trial}\""), &[])
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(stored, ["{\"a\": 1}"]);
    assert_eq!(
        traces(&db, &trial),
        (true, 1, 2),
        "table, offsets, the two rejected messages"
    );
    assert_eq!(traces(&db, &kept), (true, 1, 2));

    db.execute(&tested_block("sql").replace("trial", &trial));
    assert_eq!(traces(&db, &trial), (false, 0, 0), "nothing of the trial sink is left");
    assert_eq!(traces(&db, &kept), (true, 1, 2), "the other sink keeps everything");
    db.execute(&format!("DROP TABLE \"{kept}\""));
}

#[test]
fn host_produce_stdin_sends_the_guides_lines_as_written() {
    let topic = unique("trial_stdin");
    create_topic(&topic, 2);
    let pipeline = SinkPipeline::new(&topic, &topic, "json_row").write();
    let lines = tested_block("stdin");
    let (command, input) = lines
        .split_once(" | host produce")
        .expect("a printf piped into host produce");
    // The guide's printf, into the host this test built.
    let printf = std::process::Command::new("bash")
        .args(["-c", command])
        .output()
        .expect("printf");
    assert!(printf.status.success());
    assert!(input.contains("--stdin"), "{lines}");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_host"))
        .args([
            "produce",
            pipeline.to_str().expect("utf-8"),
            "--topic",
            &topic,
            "--stdin",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn host");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(&printf.stdout).expect("write stdin");
    }
    let out = child.wait_with_output().expect("host ends");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("produced 4 messages"), "{err}");

    let read: Vec<(i32, i64, Option<String>)> = read_topic(&topic)
        .into_iter()
        .map(|r| {
            (
                r.partition,
                r.offset,
                r.payload.map(|p| String::from_utf8(p).expect("utf-8")),
            )
        })
        .collect();
    let mut payloads: Vec<Option<String>> = read.iter().map(|r| r.2.clone()).collect();
    payloads.sort();
    assert_eq!(
        payloads,
        [
            None,
            Some("not json".to_string()),
            Some("x".to_string()),
            Some("{\"a\": 1}".to_string())
        ],
        "bare lines as they are, a JSON record's payload, null a tombstone"
    );
    // The record's partition is kept, and the tombstone follows its message.
    let of = |payload: Option<&str>| {
        read.iter()
            .find(|r| r.2.as_deref() == payload)
            .map(|r| (r.0, r.1))
            .expect("read back")
    };
    let (x, tombstone) = (of(Some("x")), of(None));
    assert_eq!((x.0, tombstone.0), (1, 1));
    assert!(x.1 < tombstone.1);

    // A topic that does not exist is named at once, with what to do.
    let missing = unique("no_such_topic");
    let out = host_within(
        &[
            "produce",
            pipeline.to_str().expect("utf-8"),
            "--topic",
            &missing,
            "--stdin",
        ],
        Duration::from_secs(60),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("does not exist") && err.contains("host provision"),
        "{err}"
    );
}
