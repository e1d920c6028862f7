//! `host provision` against the local stack: it creates the database, the
//! tables and the topics, a second run changes nothing, the default pipeline
//! shape then runs on what was provisioned, and failures name the object.
//! (Invalid names are refused before any call: `aiven_client_contract.rs`.)
use crate::support::common;

use common::{Db, connection_sections, host, host_ok, plugin, unique};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tokio_postgres::error::SqlState;

/// A pipeline whose `[postgres]` URL names `database`.
fn pipeline_in(database: &str, body: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique("provision"));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    let path = dir.join("pipeline.toml");
    let sections = connection_sections().replace("/info?", &format!("/{database}?"));
    std::fs::write(&path, format!("{sections}\n{body}")).expect("write pipeline");
    path
}

fn stdout_lines(out: &std::process::Output) -> Vec<String> {
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Runs one query in the database the pipeline file names.
fn query_pipeline_db(
    path: &Path,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Vec<tokio_postgres::Row> {
    let pipeline = common::load(path);
    let rt = runtime();
    let client = rt
        .block_on(host::postgres::connect(&pipeline.postgres))
        .expect("connect to the provisioned database");
    rt.block_on(client.query(sql, params))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// What provisioning made: object ids of the database and tables, and the
/// partition count of each topic. Equal snapshots mean nothing was remade.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    database_oid: Option<u32>,
    tables: BTreeMap<String, u32>,
    partitions: BTreeMap<String, usize>,
}

fn snapshot(path: &Path, database: &str, topics: &[&str]) -> Snapshot {
    let info = Db::connect();
    let database_oid = info
        .query("SELECT oid FROM pg_database WHERE datname = $1", &[&database])
        .first()
        .map(|r| r.get(0));
    let rows = query_pipeline_db(
        path,
        "SELECT c.relname::text, c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = current_schema() AND c.relkind = 'r'",
        &[],
    );
    let pipeline = common::load(path);
    let tables = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let consumer = host::kafka::query_consumer(&pipeline.kafka, &unique("meta")).expect("consumer");
    let partitions = topics
        .iter()
        .map(|t| {
            let n = host::kafka::partitions(&consumer, t).expect("topic metadata").len();
            (t.to_string(), n)
        })
        .collect();
    Snapshot {
        database_oid,
        tables,
        partitions,
    }
}

fn columns(path: &Path, table: &str) -> Vec<(String, String)> {
    query_pipeline_db(
        path,
        "SELECT column_name::text, udt_name::text FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
        &[&table],
    )
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

fn row_counts(path: &Path, table: &str) -> (i64, i64) {
    let sql = format!("SELECT count(*), count(DISTINCT (partition_id, offset_id)) FROM \"{table}\"");
    let rows = query_pipeline_db(path, &sql, &[]);
    (rows[0].get(0), rows[0].get(1))
}

/// Drops what a test provisioned, whatever happened.
struct Cleanup {
    database: String,
    topics: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        drop_database(&self.database);
        let rt = runtime();
        let admin: AdminClient<DefaultClientContext> = host::kafka::client_config(&common::kafka_config())
            .expect("client config")
            .create()
            .expect("admin client");
        let names: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        let _ = rt.block_on(admin.delete_topics(&names, &AdminOptions::new()));
    }
}

/// Drops a database other sessions may still use. FORCE ends the sessions of
/// our role, but not an autovacuum worker (a fresh database's catalogs and
/// offset rows draw one soon): on PostgreSQL 15 a role without
/// pg_signal_backend is refused (42501) until the worker is done, so that,
/// and a session still closing (55006), is waited out.
fn drop_database(database: &str) {
    let db = Db::connect();
    let sql = format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let Err(e) = db.try_execute(&sql) else { return };
        let passing =
            matches!(e.code(), Some(c) if *c == SqlState::INSUFFICIENT_PRIVILEGE || *c == SqlState::OBJECT_IN_USE);
        if !passing || std::time::Instant::now() > deadline {
            let text = format!("{sql}: {}", host::error_text::one_line(&e));
            // A second panic while the test's own unwinds would abort and hide it.
            if std::thread::panicking() {
                eprintln!("cleanup: {text}");
                return;
            }
            panic!("{text}");
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

#[test]
fn provision_twice_then_the_pipeline_runs_on_what_was_provisioned() {
    let database = unique("prov_db");
    let (langs, cars) = (unique("prov_langs"), unique("prov_cars"));
    let (langs_table, cars_table) = (unique("prov_favorite_languages"), unique("prov_favorite_cars"));
    let _cleanup = Cleanup {
        database: database.clone(),
        topics: vec![langs.clone(), cars.clone()],
    };
    let path = pipeline_in(
        &database,
        &format!(
            r#"
[[topics]]
name = "{langs}"
partitions = 3
replication = 1

[[topics]]
name = "{cars}"
partitions = 2

[[generators]]
name = "langs"
topic = "{langs}"
plugin = "{langs_plugin}"
interval_ms = 0
count = 30
seed = 7

[[generators]]
name = "cars"
topic = "{cars}"
plugin = "{cars_plugin}"
interval_ms = 0
count = 12
seed = 8

[[sinks]]
name = "favorite_languages"
topic = "{langs}"
table = "{langs_table}"
mapper = "{mapper}"

[[sinks]]
name = "favorite_cars"
topic = "{cars}"
table = "{cars_table}"
mapper = "{mapper}"
"#,
            langs_plugin = plugin("langs").display(),
            cars_plugin = plugin("cars").display(),
            mapper = plugin("json_row").display(),
        ),
    );
    let arg = path.to_str().expect("utf-8 path");

    let mut created = vec![
        format!("Database \"{database}\" was successfully created on PostgreSQL server."),
        format!("Topic \"{langs}\" was successfully created on Kafka server."),
        format!("Topic \"{cars}\" was successfully created on Kafka server."),
    ];
    let mut existing = vec![
        format!("Database \"{database}\" already exists."),
        format!("Topic \"{langs}\" already exists."),
        format!("Topic \"{cars}\" already exists."),
    ];
    for table in [
        "wasm_stream_offsets",
        "wasm_stream_dead_letters",
        &langs_table,
        &cars_table,
    ] {
        created.push(format!(
            "Table \"{table}\" was successfully created in database \"{database}\"."
        ));
        existing.push(format!("Table \"{table}\" already exists."));
    }
    created.sort();
    existing.sort();

    let first = host_ok(&["provision", arg]);
    assert_eq!(stdout_lines(&first), created, "first run");
    let topics = [langs.as_str(), cars.as_str()];
    let before = snapshot(&path, &database, &topics);

    let second = host_ok(&["provision", arg]);
    assert_eq!(stdout_lines(&second), existing, "second run");
    let after = snapshot(&path, &database, &topics);
    assert_eq!(before, after, "the second run changed something");

    assert!(after.database_oid.is_some(), "database {database} exists");
    assert_eq!(after.partitions[&langs], 3, "partitions of {langs}");
    assert_eq!(after.partitions[&cars], 2, "partitions of {cars}");
    let expected_columns: Vec<(String, String)> = [
        ("message_id", "int8"),
        ("message_text", "text"),
        ("message_time", "timestamptz"),
        ("offset_id", "int8"),
        ("partition_id", "int8"),
        // Lineage: the message each row came from (README "Reprocessing").
        ("_kafka_topic", "text"),
        ("_kafka_partition", "int8"),
        ("_kafka_offset", "int8"),
    ]
    .iter()
    .map(|(c, t)| (c.to_string(), t.to_string()))
    .collect();
    assert_eq!(columns(&path, &langs_table), expected_columns);
    assert_eq!(columns(&path, &cars_table), expected_columns);

    host_ok(&["run", arg, "--once"]);
    assert_eq!(row_counts(&path, &langs_table), (30, 30), "rows of {langs_table}");
    assert_eq!(row_counts(&path, &cars_table), (12, 12), "rows of {cars_table}");
}

#[test]
fn a_topic_that_cannot_be_made_fails_naming_it() {
    // One broker cannot hold three replicas.
    let topic = unique("prov_unmakeable");
    let path = pipeline_in(
        "info",
        &format!("[[topics]]\nname = \"{topic}\"\npartitions = 1\nreplication = 3\n"),
    );
    let out = host(&["provision", path.to_str().expect("utf-8 path")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "provision must fail: {stderr}");
    assert!(
        stderr.contains(&format!("cannot create topic \"{topic}\"")),
        "the error names the topic: {stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Database \"info\" already exists."), "{stdout}");
}

#[test]
fn an_invalid_database_name_is_refused_at_load() {
    let path = pipeline_in("Info-db", "");
    let out = host(&["provision", path.to_str().expect("utf-8 path")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let line = std::fs::read_to_string(&path)
        .expect("read")
        .lines()
        .position(|l| l.starts_with("url ="))
        .expect("url line")
        + 1;
    assert!(
        stderr.contains(&format!("{}:{line}:", path.display()))
            && stderr.contains("postgres.url: the database name \"Info-db\" must start with a lowercase letter"),
        "{stderr}"
    );
}
