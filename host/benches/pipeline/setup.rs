//! The benchmark's surroundings: the local stack's connection settings,
//! pipeline files with unique topic and table names, and cleaning up.

use crate::Args;
use anyhow::Context as _;
use host::config::Pipeline;
use host::plugins::Runtime;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Messages the generator makes, in bytes (the `bench-json` default).
pub const MESSAGE_BYTES: usize = 100;
/// The local stack's PostgreSQL.
pub const PG_HOST_PORT: &str = "localhost:5432";

pub struct Env {
    pub root: PathBuf,
    /// A folder of its own for pipeline files and logs.
    pub dir: PathBuf,
    pub runtime: Runtime,
    /// A pipeline with only the connection sections, for their settings.
    pub base: Pipeline,
    /// Everything made, to clean up.
    pub topics: Vec<String>,
    pub tables: Vec<String>,
    run_id: String,
    counter: AtomicU32,
}

impl Env {
    pub fn new(_args: &Args) -> anyhow::Result<Self> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("host/ is inside the repository")?
            .to_path_buf();
        for plugin in ["bench_json", "json_row"] {
            let path = plugin_path(&root, plugin);
            anyhow::ensure!(
                path.is_file(),
                "{} is missing\n  hint: build the plugins with `scripts/build` (scripts/bench does)",
                path.display()
            );
        }
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH)?.subsec_nanos();
        let run_id = format!("{}{:03}", std::process::id() % 100_000, nanos % 1000);
        let dir = std::env::temp_dir().join(format!("wasm-stream-bench-{run_id}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let base = parse(&dir.join("base.toml"), &connection_sections(&root, PG_HOST_PORT))?;
        Ok(Self {
            root,
            dir,
            runtime: Runtime::new()?,
            base,
            topics: Vec::new(),
            tables: Vec::new(),
            run_id,
            counter: AtomicU32::new(0),
        })
    }

    /// A topic or table name no other run uses.
    pub fn name(&self, what: &str) -> String {
        format!(
            "bench_{}_{}_{what}",
            self.run_id,
            self.counter.fetch_add(1, Ordering::Relaxed)
        )
    }

    pub fn plugin(&self, name: &str) -> PathBuf {
        plugin_path(&self.root, name)
    }

    /// Writes a pipeline file made of the connection sections and `body`,
    /// and loads it. Remembers its topics and tables for the clean-up.
    pub fn pipeline(&mut self, file: &str, body: &str) -> anyhow::Result<Pipeline> {
        self.pipeline_at(file, body, PG_HOST_PORT)
    }

    /// As [`Env::pipeline`], with PostgreSQL reached at `pg` (`host:port`).
    pub fn pipeline_at(&mut self, file: &str, body: &str, pg: &str) -> anyhow::Result<Pipeline> {
        let path = self.dir.join(file);
        let text = format!("{}\n{body}", connection_sections(&self.root, pg));
        std::fs::write(&path, &text).with_context(|| format!("cannot write {}", path.display()))?;
        let pipeline = parse(&path, &text)?;
        self.topics.extend(pipeline.topics.iter().map(|t| t.name.to_string()));
        self.tables.extend(pipeline.sinks.iter().map(|s| s.table.to_string()));
        Ok(pipeline)
    }

    pub async fn pg(&self) -> anyhow::Result<tokio_postgres::Client> {
        host::postgres::connect(&self.base.postgres).await
    }

    /// Drops the tables (with their offsets and dead letters) and deletes the topics.
    pub async fn clean_up(&mut self) -> anyhow::Result<()> {
        self.topics.sort();
        self.topics.dedup();
        self.tables.sort();
        self.tables.dedup();
        let client = self.pg().await?;
        for table in &self.tables {
            client
                .batch_execute(&format!("DROP TABLE IF EXISTS {}", host::postgres::ident(table)))
                .await?;
        }
        let tables: Vec<&str> = self.tables.iter().map(String::as_str).collect();
        client
            .execute(
                &format!(
                    "DELETE FROM {} WHERE table_name = ANY($1)",
                    host::postgres::ident(host::postgres::OFFSETS_TABLE)
                ),
                &[&tables],
            )
            .await
            .ok();
        client
            .execute(
                &format!(
                    "DELETE FROM {} WHERE topic = ANY($1)",
                    host::postgres::ident(host::postgres::DEAD_LETTERS_TABLE)
                ),
                &[&self.topics],
            )
            .await
            .ok();
        if !self.topics.is_empty() {
            let admin: AdminClient<DefaultClientContext> = host::kafka::client_config(&self.base.kafka)?.create()?;
            let names: Vec<&str> = self.topics.iter().map(String::as_str).collect();
            admin.delete_topics(&names, &AdminOptions::new()).await?;
        }
        std::fs::remove_dir_all(&self.dir).ok();
        Ok(())
    }
}

fn plugin_path(root: &Path, name: &str) -> PathBuf {
    root.join("target/wasm32-wasip2/release").join(format!("{name}.wasm"))
}

fn parse(path: &Path, text: &str) -> anyhow::Result<Pipeline> {
    Pipeline::parse(path, text).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The local stack's `[kafka]` and `[postgres]` sections, with absolute paths.
fn connection_sections(root: &Path, pg: &str) -> String {
    let certs = root.join("certs");
    format!(
        r#"[kafka]
bootstrap_servers = "localhost:9093"
security_protocol = "ssl"
ca = "{ca}"
cert = "{cert}"
key = "{key}"

[postgres]
url = "postgres://avnadmin:localdev@{pg}/info?sslmode=require"
ca = "{ca}"
"#,
        ca = certs.join("ca.pem").display(),
        cert = certs.join("service.cert").display(),
        key = certs.join("service.key").display(),
    )
}

/// A `[[topics]]` section.
pub fn topic_section(name: &str, partitions: i32) -> String {
    format!("[[topics]]\nname = \"{name}\"\npartitions = {partitions}\nreplication = 1\n\n")
}
