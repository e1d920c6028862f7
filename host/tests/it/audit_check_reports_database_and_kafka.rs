//! `host check db` and `host check kafka` report what the old demo's test
//! script showed: the database reached over TLS with the row count and last
//! row of each sink table, and the broker reached over TLS with its topics
//! and the partitions of the chosen topic.
use crate::support::{audit, common};

use audit::{consume_once, json_report, produce_json, sink_pipeline};
use common::{create_topic, host_within, unique};
use std::time::Duration;

#[test]
fn db_and_kafka_checks_show_tls_rows_topics_and_partitions() {
    let (topic, table) = (unique("report"), unique("report_rows"));
    create_topic(&topic, 2);
    produce_json(&topic, 0..7);
    let path = sink_pipeline(&topic, &table, "");
    let p = path.to_str().expect("utf-8");
    consume_once(&path, &topic);
    let limit = Duration::from_secs(60);

    let (code, report) = json_report(&["check", p, "db", "--topic", &topic], limit);
    assert_eq!(code, 0, "{report:#}");
    let db = &report["db"];
    assert_eq!(db["reachable"], true);
    assert_eq!(db["database"], "info");
    assert!(
        db["tls_version"].as_str().is_some_and(|v| v.starts_with("TLSv1.")),
        "{db:#}"
    );
    let t = &db["tables"][0];
    assert_eq!(t["table"], table.as_str());
    assert_eq!(t["rows"], 7);
    assert_eq!(t["last_row"]["offset_id"], 6, "{t:#}");
    assert_eq!(t["last_row"]["message_text"], "{\"n\": 6}", "{t:#}");
    assert!(
        report.get("kafka").is_none() && report.get("sync").is_none(),
        "{report:#}"
    );

    // The pipeline declares one partition, Kafka has two: a warning.
    let (code, report) = json_report(&["check", p, "kafka", "--topic", &topic], limit);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["findings"].as_array().map(Vec::len), Some(1), "{report:#}");
    assert_eq!(report["findings"][0]["subject"], topic.as_str());
    assert_eq!(
        report["findings"][0]["message"],
        "the topic has 2 partitions, the pipeline file declares 1"
    );
    let kafka = &report["kafka"];
    assert_eq!(kafka["reachable"], true);
    assert_eq!(kafka["security_protocol"], "ssl");
    let topics: Vec<&str> = kafka["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    assert!(topics.contains(&topic.as_str()), "{kafka:#}");
    assert!(
        !topics.iter().any(|t| t.starts_with("__")),
        "internal topics are left out"
    );
    let detail = &kafka["details"][0];
    assert_eq!(detail["topic"], topic.as_str());
    let partitions: Vec<i64> = detail["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .filter_map(|p| p["partition"].as_i64())
        .collect();
    assert_eq!(partitions, vec![0, 1]);

    // The readable report, as a script sees it.
    let out = host_within(&["check", p, "all", "--topic", &topic], limit);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("reachable over TLS: TLSv1."), "{text}");
    assert!(
        text.contains(&format!("table {table} (sink audited): 7 rows")),
        "{text}"
    );
    assert!(
        text.contains(&format!("topic {topic}: 2 partition(s) (declared 1)")),
        "{text}"
    );
    assert!(text.contains("no [[checks]] in the pipeline file"), "{text}");
}
