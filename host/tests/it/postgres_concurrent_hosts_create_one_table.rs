//! Several hosts starting at once on a new table (scale-out, a restarted
//! deployment) all create it with `CREATE TABLE IF NOT EXISTS`; without
//! serialising, PostgreSQL refuses all but one with "type ... already
//! exists" and those hosts exit. Each must instead find the table made.

use crate::support::common;

use common::{Db, load, unique, write_pipeline};
use host::plugins::mapper::{Column, ColumnType};

const HOSTS: usize = 6;

#[test]
fn hosts_creating_the_same_table_at_once_all_succeed() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let pg = load(&write_pipeline("")).postgres;
    let columns = vec![
        Column {
            name: "text".into(),
            kind: ColumnType::Text,
            nullable: false,
        },
        Column {
            name: "extra".into(),
            kind: ColumnType::Integer,
            nullable: true,
        },
    ];
    let db = Db::connect();
    for round in 0..8 {
        let table = unique(&format!("race_{round}"));
        let results = rt.block_on(async {
            let mut clients = Vec::new();
            for _ in 0..HOSTS {
                clients.push(host::postgres::connect(&pg).await.expect("connect"));
            }
            let calls = clients.iter().map(|c| async {
                host::postgres::ensure_host_tables(c).await?;
                host::postgres::ensure_sink_table(c, &table, &columns, &[]).await
            });
            futures_util::future::join_all(calls).await
        });
        let failed: Vec<String> = results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .map(|e| format!("{e:#}"))
            .collect();
        assert!(
            failed.is_empty(),
            "round {round}: {} of {HOSTS} hosts failed: {failed:?}",
            failed.len()
        );
        let created = results.iter().filter(|r| matches!(r, Ok(true))).count();
        assert!(created >= 1, "round {round}: no host reports creating {table}");
        let cols: Vec<String> = db
            .query(
                "SELECT column_name::text FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
                &[&table],
            )
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(
            cols,
            [
                "message_id",
                "text",
                "extra",
                "_kafka_topic",
                "_kafka_partition",
                "_kafka_offset"
            ],
            "round {round}"
        );
        db.execute(&format!("DROP TABLE \"{table}\""));
    }
}
