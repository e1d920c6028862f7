//! Helpers of the tests of lost offsets and `--once`: a host in the
//! background, and the Admin API calls that lose offsets (a topic deleted
//! and created again, records deleted as retention would).

use super::common::{Running, kafka_config, wait_for};
use rdkafka::TopicPartitionList;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use std::time::{Duration, Instant};

/// A background `host consume` (ended with the test by `Running`'s drop).
pub struct Host(Running);

impl Host {
    pub fn consume(path: &str, topic: &str) -> Self {
        Self(Running::start(&["consume", path, "--topic", topic, "--quiet"]))
    }

    pub fn log(&self) -> String {
        self.0.log()
    }

    /// Waits for the host to exit by itself: (success, log).
    pub fn exit_within(&mut self, limit: Duration) -> (bool, String) {
        let running = &mut self.0;
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = running.child.try_wait().expect("wait") {
                return (status.success(), running.log());
            }
            assert!(Instant::now() < deadline, "host ran over {limit:?}\n{}", running.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn admin() -> AdminClient<DefaultClientContext> {
    host::kafka::client_config(&kafka_config())
        .expect("client config")
        .create()
        .expect("admin client")
}

fn options() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)))
}

/// Deletes the topic and creates it again (one partition), empty.
pub fn recreate_topic(topic: &str) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let deleted = rt
        .block_on(admin().delete_topics(&[topic], &options()))
        .expect("delete topic");
    assert!(deleted.iter().all(Result::is_ok), "{deleted:?}");
    let config = host::config::TopicConfig {
        name: topic.parse().expect("valid topic name"),
        partitions: 1,
        replication: 1,
    };
    // The deletion completes in the background: until then the topic "exists".
    wait_for("the topic created again", Duration::from_secs(60), || {
        matches!(
            rt.block_on(host::kafka::create_topics(
                &kafka_config(),
                std::slice::from_ref(&config)
            ))
            .as_deref(),
            Ok([(_, host::kafka::TopicStatus::Created)])
        )
    });
}

/// Deletes the messages of a partition below `before`, as retention would.
pub fn delete_records(topic: &str, partition: i32, before: i64) {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, rdkafka::Offset::Offset(before))
        .expect("tpl");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let result = rt
        .block_on(admin().delete_records(&tpl, &options()))
        .expect("delete records");
    let low = result.find_partition(topic, partition).expect("the partition");
    assert_eq!(low.offset(), rdkafka::Offset::Offset(before), "{result:?}");
}
