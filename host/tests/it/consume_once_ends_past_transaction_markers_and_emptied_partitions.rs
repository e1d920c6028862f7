//! `host consume --once` ends when every partition's position has reached
//! its end, even where the end is not a message: a transactional producer
//! leaves a commit or abort marker as the last record of a partition (never
//! delivered), and retention can empty a partition nothing was stored for.
use crate::support::{common, offsets};

use common::{Db, SinkPipeline, create_topic, host_within, kafka_config, unique};
use offsets::delete_records;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::collections::BTreeMap;
use std::time::Duration;

const TXN_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `host consume --once`: it must end, and succeed, within two minutes.
fn consume_once(topic: &str, table: &str) {
    let path = SinkPipeline::new(topic, table, "json_row").write();
    let out = host_within(
        &[
            "consume",
            path.to_str().expect("utf-8"),
            "--topic",
            topic,
            "--once",
            "--quiet",
        ],
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Message text -> how many rows hold it.
fn stored_texts(db: &Db, table: &str) -> BTreeMap<String, i64> {
    let mut texts = BTreeMap::new();
    for row in db.query(&format!("SELECT message_text FROM \"{table}\""), &[]) {
        *texts.entry(row.get(0)).or_insert(0) += 1;
    }
    texts
}

fn send(producer: &BaseProducer, topic: &str, partition: i32, text: &str) {
    producer
        .send(BaseRecord::<(), str>::to(topic).partition(partition).payload(text))
        .map_err(|(e, _)| e)
        .expect("send");
    producer.poll(Duration::ZERO);
}

#[test]
fn once_ends_on_a_transactional_topic_with_each_committed_message_stored_once() {
    let (topic, table) = (unique("once_txn"), unique("once_txn_rows"));
    create_topic(&topic, 2);
    let producer: BaseProducer = host::kafka::client_config(&kafka_config())
        .expect("client config")
        .set("transactional.id", unique("once_txn_producer"))
        .create()
        .expect("transactional producer");
    producer.init_transactions(TXN_TIMEOUT).expect("init transactions");
    let mut committed = Vec::new();
    // Committed, aborted, committed: both partitions end with a marker.
    for (txn, commit, counts) in [(1, true, [5, 3]), (2, false, [2, 2]), (3, true, [1, 4])] {
        producer.begin_transaction().expect("begin");
        for (partition, count) in counts.into_iter().enumerate() {
            for i in 0..count {
                let text = format!("{{\"txn\": {txn}, \"partition\": {partition}, \"i\": {i}}}");
                send(&producer, &topic, partition as i32, &text);
                if commit {
                    committed.push(text);
                }
            }
        }
        if commit {
            producer.commit_transaction(TXN_TIMEOUT).expect("commit");
        } else {
            // Written to the log, then aborted: a consumer must skip them.
            producer.flush(TXN_TIMEOUT).expect("flush");
            producer.abort_transaction(TXN_TIMEOUT).expect("abort");
        }
    }

    consume_once(&topic, &table);

    let db = Db::connect();
    let texts = stored_texts(&db, &table);
    let expected: BTreeMap<String, i64> = committed.into_iter().map(|t| (t, 1)).collect();
    assert_eq!(texts, expected, "each committed message once, no aborted one");
    // Running again finds nothing to do and ends too.
    consume_once(&topic, &table);
    assert_eq!(stored_texts(&db, &table), expected);
}

#[test]
fn once_ends_when_retention_emptied_a_partition_nothing_was_stored_for() {
    let (topic, table) = (unique("once_emptied"), unique("once_emptied_rows"));
    create_topic(&topic, 2);
    let producer: BaseProducer = host::kafka::client_config(&kafka_config())
        .expect("client config")
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    for i in 0..4 {
        send(&producer, &topic, 0, &format!("{{\"kept\": {i}}}"));
    }
    for i in 0..3 {
        send(&producer, &topic, 1, &format!("{{\"deleted\": {i}}}"));
    }
    producer.flush(TXN_TIMEOUT).expect("flush");
    // Partition 1: start = end = 3, and nothing stored for it.
    delete_records(&topic, 1, 3);

    consume_once(&topic, &table);

    let db = Db::connect();
    let offsets = db.offsets(&table);
    assert_eq!(offsets, vec![(0, 0), (0, 1), (0, 2), (0, 3)]);
    assert!(stored_texts(&db, &table).keys().all(|t| t.contains("kept")));
}
