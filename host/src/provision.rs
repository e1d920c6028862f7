//! `host provision`: creates what a pipeline needs, idempotently, and says so
//! one line per object, as the old demo's helper did:
//!
//! 1. the database named in `postgres.url`, when missing;
//! 2. the host's own tables (offsets, dead letters) and every sink table, with
//!    the columns its mapper plugin declares;
//! 3. every declared topic, with its partition count and replication factor.
//!
//! Topics and the database are made the way `[provision] method` says: `kafka`
//! (the Kafka Admin API, and `CREATE DATABASE` through the server's maintenance
//! database) or `aiven` (Aiven's REST API, see [`crate::aiven`]). Names were
//! checked when the file was loaded, so nothing here sends an unchecked name.
//! A second run finds everything in place and changes nothing.

pub mod credentials;

use crate::aiven::{self, Created};
use crate::config::{DatabaseName, KafkaConfig, Pipeline, PostgresConfig, ProvisionMethod};
use crate::kafka;
use crate::plugins::{MapperWorld, Runtime};
use crate::postgres::SinkTable;
use crate::postgres::{self, DEAD_LETTERS_TABLE, OFFSETS_TABLE, ident};
use anyhow::{Context as _, bail};
use std::collections::HashMap;
use std::fmt;
use tokio_postgres::error::SqlState;

/// Databases tried, in order, to run `CREATE DATABASE` from: PostgreSQL's
/// own, then Aiven's.
const MAINTENANCE_DATABASES: [&str; 2] = ["postgres", "defaultdb"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Database,
    Table,
    Topic,
}

/// What happened to one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub kind: Kind,
    pub name: String,
    pub created: bool,
    /// Where the object lives, for the "created" line.
    pub place: String,
    /// A remark on an existing object that differs from the file.
    pub note: Option<String>,
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Database => "Database",
            Kind::Table => "Table",
            Kind::Topic => "Topic",
        };
        if self.created {
            write!(f, "{kind} {:?} was successfully created {}.", self.name, self.place)
        } else {
            write!(f, "{kind} {:?} already exists", self.name)?;
            match &self.note {
                Some(note) => write!(f, " ({note})."),
                None => write!(f, "."),
            }
        }
    }
}

/// Provisions everything the pipeline declares, calling `report` with each
/// line as soon as the object is in place.
pub async fn run(pipeline: &Pipeline, mut report: impl FnMut(&Line)) -> anyhow::Result<Vec<Line>> {
    let mut lines = Vec::new();
    let mut emit = |line: Line| {
        report(&line);
        lines.push(line);
    };

    // Everything that can fail without touching a server fails first.
    let columns = {
        let pipeline = pipeline.clone();
        tokio::task::spawn_blocking(move || mapper_columns(&pipeline)).await??
    };
    let aiven = match pipeline.provision.method {
        ProvisionMethod::Kafka => None,
        ProvisionMethod::Aiven => {
            let config = pipeline
                .aiven
                .as_ref()
                .context("provision.method = \"aiven\" needs an [aiven] section")?;
            Some(aiven::Client::new(config)?)
        }
    };

    let database = pipeline.postgres.url.database().to_string();
    let (client, created) = ensure_database(&pipeline.postgres, &database, aiven.as_ref())
        .await
        .with_context(|| format!("cannot provision database {database:?}"))?;
    emit(Line {
        kind: Kind::Database,
        name: database.clone(),
        created,
        place: "on PostgreSQL server".into(),
        note: None,
    });

    let in_database = format!("in database {database:?}");
    let mut host_tables = Vec::new();
    for table in [OFFSETS_TABLE, DEAD_LETTERS_TABLE] {
        host_tables.push((table, postgres::table_exists(&client, table).await?));
    }
    postgres::ensure_host_tables(&client).await?;
    for (table, existed) in host_tables {
        emit(table_line(table, !existed, &in_database));
    }
    for (sink, tables) in pipeline.sinks.iter().zip(&columns) {
        // In the mapper's order: a parent before the tables that point at it.
        for table in tables {
            let created = postgres::ensure_sink_table(&client, &table.name, &table.columns, &table.key)
                .await
                .with_context(|| format!("cannot provision table {:?} of sink {}", table.name, sink.name))?;
            emit(table_line(&table.name, created, &in_database));
        }
    }

    let place = "on Kafka server".to_string();
    match &aiven {
        None => {
            let results = kafka::create_topics(&pipeline.kafka, &pipeline.topics).await?;
            let existing: Vec<String> = results
                .iter()
                .filter(|(_, status)| *status == kafka::TopicStatus::AlreadyExists)
                .map(|(name, _)| name.clone())
                .collect();
            let counts = partition_counts(pipeline.kafka.clone(), existing).await;
            for (name, status) in results {
                let created = status == kafka::TopicStatus::Created;
                let partitions = counts.get(&name).copied();
                existing_or_created(&mut emit, pipeline, name, created, &place, partitions);
            }
        }
        Some(client) => {
            let listed = client.list_topics().await?;
            for topic in &pipeline.topics {
                let found = listed.iter().find(|t| t.name == topic.name);
                let created = match found {
                    Some(_) => false,
                    None => client.create_topic(topic).await? == Created::Created,
                };
                let partitions = found.map(|t| t.partitions);
                existing_or_created(&mut emit, pipeline, topic.name.to_string(), created, &place, partitions);
            }
        }
    }
    Ok(lines)
}

fn table_line(table: &str, created: bool, place: &str) -> Line {
    Line {
        kind: Kind::Table,
        name: table.to_string(),
        created,
        place: place.to_string(),
        note: None,
    }
}

/// The line of a topic; an existing one whose partition count differs from
/// the file's gets a note (Kafka never shrinks a topic, so nothing is changed).
fn existing_or_created(
    emit: &mut impl FnMut(Line),
    pipeline: &Pipeline,
    name: String,
    created: bool,
    place: &str,
    partitions: Option<i32>,
) {
    let declared = pipeline.topic(&name).map(|t| t.partitions);
    let note = match (partitions, declared) {
        (Some(actual), Some(declared)) if !created && actual > 0 && actual != declared => Some(format!(
            "it has {actual} partition(s), the file declares {declared}; provision changes no existing topic"
        )),
        _ => None,
    };
    emit(Line {
        kind: Kind::Topic,
        name,
        created,
        place: place.to_string(),
        note,
    });
}

/// Partition counts of existing topics, from the broker's metadata. Only for
/// notes, so a failure just leaves the map short.
async fn partition_counts(cfg: KafkaConfig, topics: Vec<String>) -> HashMap<String, i32> {
    if topics.is_empty() {
        return HashMap::new();
    }
    let read = move || -> anyhow::Result<HashMap<String, i32>> {
        let consumer = kafka::query_consumer(&cfg, "wasm-stream-provision")?;
        topics
            .into_iter()
            .map(|t| {
                let n = kafka::partitions(&consumer, &t)?.len();
                Ok((t, i32::try_from(n).unwrap_or(i32::MAX)))
            })
            .collect()
    };
    match tokio::task::spawn_blocking(read).await {
        Ok(Ok(counts)) => counts,
        Ok(Err(e)) => {
            tracing::debug!(error = %format!("{e:#}"), "cannot read partition counts");
            HashMap::new()
        }
        Err(e) => {
            tracing::debug!(error = %e, "cannot read partition counts");
            HashMap::new()
        }
    }
}

/// The tables of every sink's mapper, in sink order.
fn mapper_columns(pipeline: &Pipeline) -> anyhow::Result<Vec<Vec<SinkTable>>> {
    if pipeline.sinks.is_empty() {
        return Ok(Vec::new());
    }
    let runtime = Runtime::new()?;
    pipeline
        .sinks
        .iter()
        .map(|s| {
            let plugin = runtime.load::<MapperWorld>(&format!("sink {}", s.name), &s.mapper, None)?;
            crate::pipeline::tables::resolve(s, plugin.configured()).map_err(anyhow::Error::msg)
        })
        .collect()
}

/// Connects to the configured database, creating it first when the server
/// says it does not exist. Returns the connection and whether it was created.
async fn ensure_database(
    cfg: &PostgresConfig,
    database: &str,
    aiven: Option<&aiven::Client>,
) -> anyhow::Result<(tokio_postgres::Client, bool)> {
    let missing = match postgres::connect(cfg).await {
        Ok(client) => return Ok((client, false)),
        Err(e) if is_missing_database(&e) => e,
        Err(e) => return Err(e),
    };
    tracing::debug!(error = %format!("{missing:#}"), "the database does not exist yet");
    let created = match aiven {
        Some(client) => client.create_database(database).await? == Created::Created,
        None => create_database_sql(cfg, database).await?,
    };
    let client = postgres::connect(cfg).await?;
    Ok((client, created))
}

fn is_missing_database(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<tokio_postgres::Error>())
        .any(|e| e.code() == Some(&SqlState::INVALID_CATALOG_NAME))
}

/// `CREATE DATABASE` from the server's maintenance database, after checking
/// `pg_database`. Returns whether it created the database.
async fn create_database_sql(cfg: &PostgresConfig, database: &str) -> anyhow::Result<bool> {
    let mut failures = Vec::new();
    let mut maintenance = None;
    for name in MAINTENANCE_DATABASES {
        let other = PostgresConfig {
            url: cfg.url.with_database(&DatabaseName::new(name)?),
            ..cfg.clone()
        };
        match postgres::connect(&other).await {
            Ok(client) => {
                maintenance = Some(client);
                break;
            }
            Err(e) => failures.push(format!("{name}: {}", e.root_cause())),
        }
    }
    let Some(client) = maintenance else {
        bail!(
            "it does not exist, and no maintenance database to create it from could be reached ({})\n  hint: create it by hand (CREATE DATABASE {}), or in the Aiven console (the PostgreSQL service → Databases)",
            failures.join("; "),
            ident(database)
        );
    };
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&database])
        .await
        .context("cannot read pg_database")?
        .is_some();
    if exists {
        return Ok(false);
    }
    match client.batch_execute(&format!("CREATE DATABASE {}", ident(database))).await {
        Ok(()) => Ok(true),
        Err(e) if e.code() == Some(&SqlState::DUPLICATE_DATABASE) => Ok(false),
        Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => Err(anyhow::Error::new(e).context(
            "the user may not create databases\n  hint: grant it CREATEDB, create the database by hand, or use [provision] method = \"aiven\"",
        )),
        Err(e) => Err(anyhow::Error::new(e).context("CREATE DATABASE failed")),
    }
}
