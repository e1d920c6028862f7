//! `host sink rewind` while two `host run` processes write the sink, one of
//! them SIGKILLed while the rewind's transaction is open, and started again: after a rewind to a
//! time and one to the start, the table equals the model of the whole topic
//! (append: each good message's row once; upsert: the last value per key),
//! the dead letters are exactly the bad messages, once each, and the rows of
//! the rewound range were written again (newer `message_id`). A dry run
//! first changes nothing and foretells what the rewind then does; a rewind
//! SIGKILLed inside its transaction changes nothing.
use crate::support::{common, rewind};

use common::{
    Db, Keyed, Random, Running, SinkPipeline, create_topic, produce_keyed, read_topic, topic_size, unique, wait_for,
};
use rewind::{count, letters, member, now_ms, rfc3339, settled, sink_ok, stored};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const PER_PHASE: usize = 500;
/// One message in this many is bad (a dead letter).
const BAD_EVERY: usize = 37;
const KEYS: usize = 60;

/// Produces two phases of messages a little apart; `message(i)` makes each.
/// Returns the time between them (unix ms), the rewind's target.
fn produce_phases(topic: &str, message: &dyn Fn(usize) -> Keyed) -> i64 {
    let first: Vec<Keyed> = (0..PER_PHASE).map(message).collect();
    produce_keyed(topic, &first);
    std::thread::sleep(Duration::from_millis(1200));
    let at_ms = now_ms();
    std::thread::sleep(Duration::from_millis(1200));
    let second: Vec<Keyed> = (PER_PHASE..2 * PER_PHASE).map(message).collect();
    produce_keyed(topic, &second);
    at_ms
}

/// Two members of the sink, `a` and `b`.
struct Fleet {
    path: String,
    table: String,
    members: Vec<(String, Running)>,
}

/// A connection holding the sink's offset rows locked, in an open
/// transaction, until it runs `COMMIT`.
fn hold_offsets(table: &str) -> Db {
    let held = Db::connect();
    held.execute("BEGIN");
    held.query(
        "SELECT 1 FROM wasm_stream_offsets WHERE table_name = $1 FOR UPDATE",
        &[&table],
    );
    held
}

/// Waits until a `host sink rewind` waits for a lock inside its transaction.
fn wait_for_rewind_waiting() {
    let watch = Db::connect();
    wait_for(
        "the rewind waiting inside its transaction",
        Duration::from_secs(60),
        || {
            watch.query(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'host-sink-rewind'
             AND wait_event_type = 'Lock' AND xact_start IS NOT NULL",
                &[],
            )[0]
            .get::<_, i64>(0)
                > 0
        },
    );
}

/// Messages produced while a rewind runs, in chunks, so the sinks have
/// batches in flight when it commits.
const DURING: usize = 400;
const CHUNK: usize = 20;

impl Fleet {
    fn start(path: &str, table: &str) -> Self {
        let members = ["a", "b"]
            .iter()
            .map(|m| {
                let id = unique(&format!("rewind_{m}"));
                let running = member(path, &id);
                (id, running)
            })
            .collect();
        Self {
            path: path.to_string(),
            table: table.to_string(),
            members,
        }
    }

    /// Runs `host sink rewind` with `args` while messages `first..first +
    /// DURING` stream into `topic`, and SIGKILLs member `a` while the
    /// rewind's transaction is open, then starts it again. Returns the
    /// rewind's output.
    ///
    /// The moment is made, not hoped for: after a random pause the test
    /// locks the sink's offset rows, so the rewind (and any sink write)
    /// waits inside its transaction until `a` is dead.
    fn rewind_killing_one(
        &mut self,
        args: &[&str],
        random: &mut Random,
        topic: &str,
        first: usize,
        message: &(dyn Fn(usize) -> Keyed + Sync),
    ) -> String {
        let mut all = vec!["rewind", self.path.as_str(), "--sink", "rows"];
        all.extend_from_slice(args);
        let path = self.path.clone();
        let table = self.table.clone();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for chunk in (first..first + DURING).step_by(CHUNK) {
                    let batch: Vec<Keyed> = (chunk..chunk + CHUNK).map(message).collect();
                    produce_keyed(topic, &batch);
                    std::thread::sleep(Duration::from_millis(25));
                }
            });
            std::thread::sleep(Duration::from_millis(150 + random.below(400)));
            let held = hold_offsets(&table);
            let rewind = scope.spawn(|| sink_ok(&all));
            wait_for_rewind_waiting();
            let (id, running) = &mut self.members[0];
            running.child.kill().expect("SIGKILL");
            running.child.wait().expect("reap");
            held.execute("COMMIT");
            let output = rewind.join().expect("rewind thread");
            *running = member(&path, id);
            output
        })
    }

    fn stop(self) {
        for (_, running) in self.members {
            running.terminate();
        }
    }
}

/// Waits until every message of the topic is settled.
fn wait_settled(db: &Db, table: &str, topic: &str) {
    let total = topic_size(topic);
    wait_for("every message settled", Duration::from_secs(120), || {
        settled(db, table) == total
    });
}

/// The first offset of each partition at or after `at_ms`.
fn offsets_at(topic: &str, at_ms: i64) -> BTreeMap<i32, i64> {
    let mut first = BTreeMap::new();
    for m in read_topic(topic) {
        if m.timestamp_ms.is_some_and(|t| t >= at_ms) {
            first.entry(m.partition).or_insert(m.offset);
        }
    }
    first
}

/// The (partition, offset) of the messages of a topic whose payload is good
/// (`good`), and of the others.
/// (partition, offset) of messages.
type Positions = Vec<(i32, i64)>;

fn split_topic(topic: &str, good: impl Fn(&Option<Vec<u8>>) -> bool) -> (BTreeSet<(i32, i64)>, Positions) {
    let (mut ok, mut bad) = (BTreeSet::new(), Vec::new());
    for m in read_topic(topic) {
        if good(&m.payload) {
            ok.insert((m.partition, m.offset));
        } else {
            bad.push((m.partition, m.offset));
        }
    }
    (ok, bad)
}

/// The rewind generation of the sink's table (0 before any).
fn generation(db: &Db, table: &str) -> i64 {
    db.query(
        "SELECT coalesce(max(generation), 0)::bigint FROM wasm_stream_sink_control WHERE table_name = $1",
        &[&table],
    )[0]
    .get(0)
}

fn max_message_id(db: &Db, table: &str) -> i64 {
    db.query(&format!("SELECT coalesce(max(message_id), 0) FROM \"{table}\""), &[])[0].get(0)
}

/// Rows at or after `from` (per partition) have a `message_id` above
/// `before` (written again); the others do not.
fn assert_rewritten(rows: &[(i32, i64, i64)], from: &BTreeMap<i32, i64>, before: i64) {
    for (p, o, id) in rows {
        let again = from.get(p).is_some_and(|f| o >= f);
        assert_eq!(
            *id > before,
            again,
            "row of {p}:{o} (message_id {id}, previous max {before}): written again = {}, expected {again}",
            *id > before
        );
    }
}

#[test]
fn append_rewinds_to_a_time_and_to_the_start_exactly_once() {
    let topic = unique("rewind_append");
    let table = unique("rewind_append_rows");
    create_topic(&topic, 2);
    let path = SinkPipeline::new(&topic, &table, "json_row")
        .partitions(2)
        .batch_size(40)
        .sink_line("flush_interval_ms = 50")
        .write();
    let path = path.to_str().expect("utf-8 path");
    let db = Db::connect();
    let mut random = Random::new();
    let mut fleet = Fleet::start(path, &table);
    let message = |i: usize| -> Keyed {
        let payload = if i % BAD_EVERY == 5 {
            b"not json".to_vec()
        } else {
            format!("{{\"i\": {i}}}").into_bytes()
        };
        ((i % 2) as i32, format!("k{i}").into_bytes(), Some(payload))
    };
    let at_ms = produce_phases(&topic, &message);
    wait_settled(&db, &table, &topic);
    let model = || split_topic(&topic, |p| p.as_deref().is_some_and(|p| p != b"not json"));
    let check = |db: &Db| {
        let (good, bad) = model();
        let rows: Vec<(i64, i64)> = db.offsets(&table);
        let set: BTreeSet<(i32, i64)> = rows.iter().map(|(p, o)| (*p as i32, *o)).collect();
        assert_eq!(rows.len(), set.len(), "no (partition, offset) stored twice");
        assert_eq!(set, good, "the rows are the good messages, each once");
        assert_eq!(
            letters(db, &topic),
            bad,
            "the dead letters are the bad messages, each once"
        );
    };
    check(&db);

    // A dry run changes nothing and says what the rewind will do.
    let to_time = rfc3339(at_ms);
    let before = (count(&db, &table), stored(&db, &table), letters(&db, &topic));
    let dry = sink_ok(&["rewind", path, "--sink", "rows", "--to-time", &to_time, "--dry-run"]);
    assert_eq!(
        (count(&db, &table), stored(&db, &table), letters(&db, &topic)),
        before,
        "a dry run changes nothing"
    );
    let (good, bad) = model();
    let from = offsets_at(&topic, at_ms);
    for (p, o) in &from {
        let rows = good.iter().filter(|(gp, go)| gp == p && go >= o).count();
        let gone = bad.iter().filter(|(bp, bo)| bp == p && bo >= o).count();
        let foretold = format!(
            "partition {p}: stored 500, would resume at {o}; {rows} row(s) would go; {gone} dead letter(s) would go"
        );
        assert!(dry.contains(&foretold), "expected {foretold:?} in:\n{dry}");
    }
    assert!(dry.starts_with("dry run, nothing changed"), "{dry}");

    let last_id = max_message_id(&db, &table);
    let out = fleet.rewind_killing_one(&["--to-time", &to_time], &mut random, &topic, 2 * PER_PHASE, &message);
    for (p, o) in &from {
        assert!(out.contains(&format!("partition {p}: stored ")), "{out}");
        assert!(out.contains(&format!(", resumes at {o}; ")), "{out}");
    }
    wait_settled(&db, &table, &topic);
    check(&db);
    let rows = |db: &Db| -> Vec<(i32, i64, i64)> {
        db.query(
            &format!("SELECT partition_id, offset_id, message_id FROM \"{table}\""),
            &[],
        )
        .iter()
        .map(|r| (r.get::<_, i64>(0) as i32, r.get(1), r.get(2)))
        .collect()
    };
    assert_rewritten(&rows(&db), &from, last_id);

    // The rewind itself SIGKILLed inside its transaction: nothing of it
    // stays (PostgreSQL rolls it back), and the sinks go on undisturbed.
    let before = (
        count(&db, &table),
        stored(&db, &table),
        letters(&db, &topic),
        generation(&db, &table),
    );
    let held = hold_offsets(&table);
    let mut rewind = Running::start(&["sink", "rewind", path, "--sink", "rows", "--to-start"]);
    wait_for_rewind_waiting();
    rewind.child.kill().expect("SIGKILL the rewind");
    rewind.child.wait().expect("reap");
    held.execute("COMMIT");
    wait_for("the killed rewind's session gone", Duration::from_secs(30), || {
        db.query(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'host-sink-rewind'",
            &[],
        )[0]
        .get::<_, i64>(0)
            == 0
    });
    assert_eq!(
        (
            count(&db, &table),
            stored(&db, &table),
            letters(&db, &topic),
            generation(&db, &table)
        ),
        before,
        "a killed rewind changes nothing"
    );

    let last_id = max_message_id(&db, &table);
    let out = fleet.rewind_killing_one(&["--to-start"], &mut random, &topic, 2 * PER_PHASE + DURING, &message);
    assert!(
        out.contains("partition 0: stored ") && out.contains(", resumes at 0; "),
        "{out}"
    );
    wait_settled(&db, &table, &topic);
    check(&db);
    let everything: BTreeMap<i32, i64> = [(0, 0), (1, 0)].into_iter().collect();
    assert_rewritten(&rows(&db), &everything, last_id);
    fleet.stop();
}

#[test]
fn upsert_rewinds_to_a_time_and_to_the_start_and_ends_as_the_model() {
    let topic = unique("rewind_upsert");
    let table = unique("rewind_upsert_rows");
    create_topic(&topic, 2);
    let path = SinkPipeline::new(&topic, &table, "kv_mapper")
        .partitions(2)
        .upsert(&["k"])
        .batch_size(40)
        .sink_line("flush_interval_ms = 50")
        .write();
    let path = path.to_str().expect("utf-8 path");
    let db = Db::connect();
    let mut random = Random::new();
    let mut fleet = Fleet::start(path, &table);
    // Each key on one partition; a bad message has a key that is not UTF-8.
    let message = |i: usize| -> Keyed {
        let k = i % KEYS;
        let key = if i % BAD_EVERY == 5 {
            vec![0xff, 0xfe]
        } else {
            format!("key{k}").into_bytes()
        };
        ((k % 2) as i32, key, Some(format!("v{i}").into_bytes()))
    };
    let at_ms = produce_phases(&topic, &message);
    wait_settled(&db, &table, &topic);
    // The model: the last value per key in offset order, with its offset.
    let check = |db: &Db| {
        let mut model: BTreeMap<String, (String, i64)> = BTreeMap::new();
        let mut bad = Vec::new();
        for m in read_topic(&topic) {
            let payload = String::from_utf8(m.payload.clone().expect("payload")).expect("utf-8");
            let i: usize = payload[1..].parse().expect("v<i>");
            if i % BAD_EVERY == 5 {
                bad.push((m.partition, m.offset));
            } else {
                model.insert(format!("key{}", i % KEYS), (payload, m.offset));
            }
        }
        bad.sort_unstable();
        let rows: BTreeMap<String, (String, i64)> = db
            .query(&format!("SELECT k, v, seq FROM \"{table}\""), &[])
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2))))
            .collect();
        assert_eq!(rows, model, "the table is the model of the whole topic");
        assert_eq!(count(db, &table) as usize, model.len(), "one row per key");
        assert_eq!(
            letters(db, &topic),
            bad,
            "the dead letters are the bad messages, each once"
        );
    };
    check(&db);

    let last_id = max_message_id(&db, &table);
    let from = offsets_at(&topic, at_ms);
    let out = fleet.rewind_killing_one(
        &["--to-time", &rfc3339(at_ms)],
        &mut random,
        &topic,
        2 * PER_PHASE,
        &message,
    );
    assert!(out.contains("rows stay (re-applied by key)"), "{out}");
    wait_settled(&db, &table, &topic);
    check(&db);
    // Every key written after the time was applied again (a fresh message_id).
    let again: Vec<(i32, i64, i64)> = db
        .query(&format!("SELECT k, seq, message_id FROM \"{table}\""), &[])
        .iter()
        .map(|r| {
            let k: String = r.get(0);
            let n: usize = k[3..].parse().expect("key<n>");
            ((n % 2) as i32, r.get(1), r.get(2))
        })
        .collect();
    assert_rewritten(&again, &from, last_id);

    fleet.rewind_killing_one(&["--to-start"], &mut random, &topic, 2 * PER_PHASE + DURING, &message);
    wait_settled(&db, &table, &topic);
    check(&db);
    fleet.stop();
}

#[test]
fn a_table_without_lineage_is_refused_unless_everything_is_deleted() {
    let topic = unique("rewind_old");
    let table = unique("rewind_old_rows");
    create_topic(&topic, 1);
    let db = Db::connect();
    // A table as an older host made it: no lineage columns.
    db.execute(&format!(
        "CREATE TABLE \"{table}\" (message_id bigserial PRIMARY KEY, message_text text NOT NULL,
         message_time timestamptz, offset_id bigint NOT NULL, partition_id bigint NOT NULL)"
    ));
    let messages: Vec<Keyed> = (0..20)
        .map(|i| {
            let payload = if i % 10 == 3 {
                b"not json".to_vec()
            } else {
                format!("{{\"i\": {i}}}").into_bytes()
            };
            (0, format!("k{i}").into_bytes(), Some(payload))
        })
        .collect();
    produce_keyed(&topic, &messages);
    let path = SinkPipeline::new(&topic, &table, "json_row").write();
    let path = path.to_str().expect("utf-8 path");
    common::host_ok(&["consume", path, "--once", "--quiet"]);
    assert_eq!((count(&db, &table), letters(&db, &topic).len()), (18, 2));

    let refused = rewind::sink(&["rewind", path, "--sink", "rows", "--to-offset", "0:10"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("no lineage columns (_kafka_topic text, _kafka_partition bigint, _kafka_offset bigint)")
            && stderr.contains("--delete-all"),
        "{stderr}"
    );
    assert_eq!(count(&db, &table), 18, "a refused rewind changes nothing");

    let dry = sink_ok(&[
        "rewind",
        path,
        "--sink",
        "rows",
        "--to-start",
        "--delete-all",
        "--dry-run",
    ]);
    assert!(
        dry.contains("all 18 row(s)") && dry.contains("2 dead letter(s) would go"),
        "{dry}"
    );
    assert_eq!(count(&db, &table), 18, "a dry run changes nothing");
    let out = sink_ok(&["rewind", path, "--sink", "rows", "--to-start", "--delete-all"]);
    assert!(out.contains("all 18 row(s)") && out.contains("resumes at 0"), "{out}");
    assert_eq!((count(&db, &table), letters(&db, &topic).len()), (0, 0));
    assert_eq!(stored(&db, &table), [(0, 0)]);

    common::host_ok(&["consume", path, "--once", "--quiet"]);
    let rows: Vec<(i64, i64)> = db.offsets(&table);
    let expected: Vec<(i64, i64)> = (0..20).filter(|i| i % 10 != 3).map(|i| (0, i)).collect();
    assert_eq!(rows, expected, "every good message stored once again");
    assert_eq!(letters(&db, &topic), [(0, 3), (0, 13)]);
}
