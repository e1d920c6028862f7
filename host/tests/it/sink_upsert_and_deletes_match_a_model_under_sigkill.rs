//! An upsert sink under SIGKILL: 20,000 keyed messages with repeated keys and
//! interleaved tombstones, consumed by a host killed at random moments and
//! restarted; the final table equals a model of it (the last value per key
//! in offset order, deleted keys absent) exactly.
use crate::support::common;

use common::{
    Db, Keyed, Random, SinkPipeline, consume_through_sigkills, create_topic, produce_keyed, read_topic, unique,
};
use std::collections::{BTreeMap, HashMap};

const MESSAGES: usize = 20_000;
const KEYS: u64 = 700;
/// One message in this many is a tombstone.
const TOMBSTONE_EVERY: u64 = 8;
const KILLS: usize = 6;

#[test]
fn the_table_equals_the_model_through_repeated_sigkills() {
    let topic = unique("upsert_kill");
    let table = unique("upsert_kill_rows");
    create_topic(&topic, 2);
    let path = SinkPipeline::new(&topic, &table, "kv_mapper")
        .partitions(2)
        .upsert(&["k"])
        .batch_size(50)
        .sink_line("flush_interval_ms = 50")
        .write();
    let path = path.to_str().expect("utf-8 path");

    // Each key lives on one partition, so produce order is its offset order.
    // Payloads are unique: they tell which message a row came from.
    let mut random = Random::new();
    let messages: Vec<Keyed> = (0..MESSAGES)
        .map(|i| {
            let k = random.below(KEYS);
            let payload = (random.below(TOMBSTONE_EVERY) != 0).then(|| format!("m{i}").into_bytes());
            ((k % 2) as i32, format!("key{k}").into_bytes(), payload)
        })
        .collect();
    produce_keyed(&topic, &messages);

    // The model: the last operation per key, with the offset Kafka gave it.
    let offsets: HashMap<Vec<u8>, i64> = read_topic(&topic)
        .into_iter()
        .filter_map(|m| m.payload.map(|p| (p, m.offset)))
        .collect();
    let mut model: BTreeMap<String, (String, i64)> = BTreeMap::new();
    for (_, key, payload) in &messages {
        let key = String::from_utf8(key.clone()).expect("utf-8 key");
        match payload {
            Some(p) => {
                model.insert(key, (String::from_utf8(p.clone()).expect("utf-8"), offsets[p]));
            }
            None => {
                model.remove(&key);
            }
        }
    }
    let deleted = (0..KEYS).filter(|k| !model.contains_key(&format!("key{k}"))).count();
    assert!(deleted > 0, "some keys end deleted");

    let db = Db::connect();
    // Kill it at random points once it has settled something new, then finish the run.
    let settled_at_kills = consume_through_sigkills(path, KILLS, &mut random, || settled(&db, &table));

    let mid_run = settled_at_kills
        .iter()
        .filter(|s| **s > 0 && (**s as usize) < MESSAGES)
        .count();
    assert!(
        mid_run >= 3,
        "at least three kills landed mid-run, messages settled at kills: {settled_at_kills:?}"
    );
    assert_eq!(settled(&db, &table) as usize, MESSAGES, "every message settled");

    let table_rows: BTreeMap<String, (String, i64)> = db
        .query(&format!("SELECT k, v, seq FROM \"{table}\""), &[])
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    let count: i64 = db.query(&format!("SELECT count(*) FROM \"{table}\""), &[])[0].get(0);
    assert_eq!(count as usize, table_rows.len(), "one row per key");
    if table_rows != model {
        let missing: Vec<_> = model.keys().filter(|k| !table_rows.contains_key(*k)).take(5).collect();
        let extra: Vec<_> = table_rows.keys().filter(|k| !model.contains_key(*k)).take(5).collect();
        let wrong: Vec<_> = model
            .iter()
            .filter(|(k, v)| table_rows.get(*k).is_some_and(|t| t != *v))
            .take(5)
            .collect();
        panic!(
            "the table differs from the model: {} rows, {} expected; missing {missing:?}, extra {extra:?}, wrong {wrong:?}; settled at kills {settled_at_kills:?}",
            table_rows.len(),
            model.len()
        );
    }
    assert!(db.dead_letters(&topic).is_empty(), "no dead letters");
    println!(
        "{} keys left, {deleted} deleted; messages settled at each kill: {settled_at_kills:?}",
        model.len()
    );
}

/// Messages settled so far: the sum of the next offsets stored for the table.
fn settled(db: &Db, table: &str) -> i64 {
    db.query(
        "SELECT coalesce(sum(next_offset), 0)::bigint FROM wasm_stream_offsets WHERE table_name = $1",
        &[&table],
    )[0]
    .get(0)
}
