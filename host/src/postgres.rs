//! PostgreSQL, through tokio-postgres over TLS (postgres-openssl): connecting,
//! the host's own tables (offsets and dead letters), sink tables made from a
//! mapper's columns, and the one transaction per batch that makes delivery
//! exactly once.

use crate::config::{PgTls, PostgresConfig};
use crate::plugins::mapper::{Column, ColumnType};
use anyhow::{Context as _, bail};
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use postgres_openssl::MakeTlsConnector;
use std::collections::HashMap;
use tokio_postgres::config::SslMode;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls};

/// Next offset per (table, topic, partition): the truth about what a sink table holds.
pub const OFFSETS_TABLE: &str = "wasm_stream_offsets";
/// Messages a mapper rejected or could not map, with the reason.
pub const DEAD_LETTERS_TABLE: &str = "wasm_stream_dead_letters";

/// Quotes an identifier for SQL. Names are validated at the edge too; quoting
/// keeps SQL safe whatever reaches here.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Connects with TLS as configured; the connection runs on its own task.
pub async fn connect(cfg: &PostgresConfig) -> anyhow::Result<Client> {
    let mut config: Config = cfg.url.parse().context("postgres.url is not a valid connection URL")?;
    let target = describe(&config);
    let hint = "hint: is PostgreSQL running (`scripts/local-stack status`), and are the URL and password right?";
    if cfg.tls == PgTls::Disable {
        config.ssl_mode(SslMode::Disable);
        let (client, connection) = config
            .connect(NoTls)
            .await
            .with_context(|| format!("cannot connect to PostgreSQL at {target}\n  {hint}"))?;
        spawn_connection(connection);
        return Ok(client);
    }
    config.ssl_mode(SslMode::Require);
    let mut builder = SslConnector::builder(SslMethod::tls_client())?;
    match &cfg.ca {
        Some(ca) => builder
            .set_ca_file(ca)
            .with_context(|| format!("cannot read postgres.ca {}", ca.display()))?,
        None => builder.set_default_verify_paths()?,
    }
    let verify = cfg.tls == PgTls::VerifyFull;
    if !verify {
        builder.set_verify(SslVerifyMode::NONE);
    }
    let mut connector = MakeTlsConnector::new(builder.build());
    connector.set_callback(move |c, _| {
        c.set_verify_hostname(verify);
        Ok(())
    });
    let (client, connection) = config.connect(connector).await.with_context(|| {
        format!("cannot connect to PostgreSQL at {target} over TLS\n  {hint} With a self-signed server certificate, set postgres.ca to its CA (certs/ca.pem)")
    })?;
    spawn_connection(connection);
    Ok(client)
}

fn spawn_connection<F>(connection: F)
where
    F: std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "PostgreSQL connection closed");
        }
    });
}

/// `host:port/database` of a connection configuration, for messages (never the password).
pub fn describe(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", config.get_dbname().unwrap_or_default())
}

/// Creates the host's own tables when missing.
pub async fn ensure_host_tables(client: &Client) -> anyhow::Result<()> {
    let sql = format!(
        "CREATE TABLE IF NOT EXISTS {offsets} (
            table_name text NOT NULL,
            topic text NOT NULL,
            partition integer NOT NULL,
            consumer_group text NOT NULL,
            next_offset bigint NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (table_name, topic, partition)
        );
        CREATE TABLE IF NOT EXISTS {dead} (
            id bigserial PRIMARY KEY,
            sink text NOT NULL,
            topic text NOT NULL,
            partition integer NOT NULL,
            \"offset\" bigint NOT NULL,
            key bytea,
            payload bytea,
            reason text NOT NULL,
            plugin text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        );",
        offsets = ident(OFFSETS_TABLE),
        dead = ident(DEAD_LETTERS_TABLE),
    );
    batch_ddl(client, &sql)
        .await
        .context("cannot create the host's tables (offsets, dead letters)")
}

/// Runs DDL that may race with another host doing the same.
async fn batch_ddl(client: &Client, sql: &str) -> anyhow::Result<()> {
    match client.batch_execute(sql).await {
        Ok(()) => Ok(()),
        // Two hosts creating the same table at once: the loser sees a unique violation.
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn sql_type(kind: ColumnType) -> &'static str {
    match kind {
        ColumnType::Text => "text",
        ColumnType::Integer => "bigint",
        ColumnType::Float => "double precision",
        ColumnType::Boolean => "boolean",
        ColumnType::Timestamp => "timestamptz",
        ColumnType::Json => "jsonb",
    }
}

/// The `udt_name` information_schema reports for each type.
fn udt_name(kind: ColumnType) -> &'static str {
    match kind {
        ColumnType::Text => "text",
        ColumnType::Integer => "int8",
        ColumnType::Float => "float8",
        ColumnType::Boolean => "bool",
        ColumnType::Timestamp => "timestamptz",
        ColumnType::Json => "jsonb",
    }
}

/// Whether a table exists in the connection's current schema.
pub async fn table_exists(client: &Client, table: &str) -> anyhow::Result<bool> {
    let row = client
        .query_opt(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1",
            &[&table],
        )
        .await
        .with_context(|| format!("cannot look up table {table:?}"))?;
    Ok(row.is_some())
}

/// Creates a sink table from a mapper's columns (with a `message_id` serial
/// primary key in front) when missing, and checks an existing one has them.
/// Returns whether it created the table.
pub async fn ensure_sink_table(client: &Client, table: &str, columns: &[Column]) -> anyhow::Result<bool> {
    for c in columns {
        crate::config::check_name(&c.name, crate::config::MAX_PG_IDENT_LEN, false)
            .map_err(|m| anyhow::anyhow!("the mapper declares an invalid column name: {m}"))?;
    }
    let defs: Vec<String> = columns
        .iter()
        .map(|c| {
            format!(
                "{} {}{}",
                ident(&c.name),
                sql_type(c.kind),
                if c.nullable { "" } else { " NOT NULL" }
            )
        })
        .collect();
    let existed = table_exists(client, table).await?;
    let sql = format!(
        "CREATE TABLE IF NOT EXISTS {} (message_id bigserial PRIMARY KEY, {})",
        ident(table),
        defs.join(", ")
    );
    batch_ddl(client, &sql)
        .await
        .with_context(|| format!("cannot create table {table:?}"))?;

    let rows = client
        .query(
            "SELECT column_name, udt_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1",
            &[&table],
        )
        .await?;
    let existing: HashMap<String, String> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    for c in columns {
        match existing.get(&c.name) {
            Some(t) if t == udt_name(c.kind) => {}
            Some(t) => bail!(
                "table {table:?} has column {:?} of type {t}, but the mapper writes {}\n  hint: migrate or drop the table, or point the sink at a new table",
                c.name,
                sql_type(c.kind)
            ),
            None => bail!(
                "table {table:?} has no column {:?}, which the mapper writes\n  hint: add it (ALTER TABLE {} ADD COLUMN {} {}) or point the sink at a new table",
                c.name,
                ident(table),
                ident(&c.name),
                sql_type(c.kind)
            ),
        }
    }
    Ok(!existed)
}

/// The next offsets stored for a table's partitions of a topic.
pub async fn stored_offsets(client: &Client, table: &str, topic: &str) -> anyhow::Result<HashMap<i32, i64>> {
    let rows = client
        .query(
            &format!(
                "SELECT partition, next_offset FROM {} WHERE table_name = $1 AND topic = $2",
                ident(OFFSETS_TABLE)
            ),
            &[&table, &topic],
        )
        .await
        .with_context(|| format!("cannot read the stored offsets of table {table:?}"))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Column values of a batch, one array per column, as sent with `UNNEST`.
pub enum ColumnData {
    Text(Vec<Option<String>>),
    Integer(Vec<Option<i64>>),
    Float(Vec<Option<f64>>),
    Boolean(Vec<Option<bool>>),
}

impl ColumnData {
    pub fn for_type(kind: ColumnType) -> Self {
        match kind {
            ColumnType::Text | ColumnType::Json => Self::Text(Vec::new()),
            ColumnType::Integer | ColumnType::Timestamp => Self::Integer(Vec::new()),
            ColumnType::Float => Self::Float(Vec::new()),
            ColumnType::Boolean => Self::Boolean(Vec::new()),
        }
    }

    fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Self::Text(v) => v,
            Self::Integer(v) => v,
            Self::Float(v) => v,
            Self::Boolean(v) => v,
        }
    }
}

/// The insert statement of a sink table: all rows of a batch in one statement.
pub fn insert_rows_sql(table: &str, columns: &[Column]) -> String {
    let names: Vec<String> = columns.iter().map(|c| ident(&c.name)).collect();
    let arrays: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let array = match c.kind {
                ColumnType::Text | ColumnType::Json => "text[]",
                ColumnType::Integer | ColumnType::Timestamp => "int8[]",
                ColumnType::Float => "float8[]",
                ColumnType::Boolean => "bool[]",
            };
            format!("${}::{array}", i + 1)
        })
        .collect();
    let selects: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| match c.kind {
            ColumnType::Json => format!("c{i}::jsonb"),
            // Microseconds since the epoch, converted exactly.
            ColumnType::Timestamp => format!("'epoch'::timestamptz + c{i} * interval '1 microsecond'"),
            _ => format!("c{i}"),
        })
        .collect();
    let aliases: Vec<String> = (0..columns.len()).map(|i| format!("c{i}")).collect();
    format!(
        "INSERT INTO {} ({}) SELECT {} FROM UNNEST({}) AS u({})",
        ident(table),
        names.join(", "),
        selects.join(", "),
        arrays.join(", "),
        aliases.join(", ")
    )
}

/// A message that could not be mapped.
pub struct DeadLetter {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub reason: String,
}

/// Everything one batch writes, in one transaction.
pub struct Batch<'a> {
    pub sink: &'a str,
    pub table: &'a str,
    pub topic: &'a str,
    pub group: &'a str,
    pub plugin: &'a str,
    pub insert_sql: &'a str,
    pub columns: Vec<ColumnData>,
    pub row_count: usize,
    pub dead_letters: Vec<DeadLetter>,
    /// Per partition: the next offset the database held when the batch was
    /// read (`None`: nothing stored yet) and the next offset after it.
    pub offsets: HashMap<i32, (Option<i64>, i64)>,
}

/// How a batch write ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    Committed,
    /// Another consumer moved a partition's stored offset first: the batch
    /// was rolled back and the sink must restart from the stored offsets.
    Fenced {
        partition: i32,
    },
}

/// Writes rows, dead letters and next offsets in one transaction. The offset
/// update is conditional on the offset the batch started from, which fences a
/// consumer that lost its partition to another.
pub async fn write_batch(client: &mut Client, batch: &Batch<'_>) -> anyhow::Result<Written> {
    let tx = client.transaction().await?;
    if batch.row_count > 0 {
        let params: Vec<&(dyn ToSql + Sync)> = batch.columns.iter().map(ColumnData::as_sql).collect();
        tx.execute(batch.insert_sql, &params)
            .await
            .with_context(|| format!("cannot insert rows into {:?}", batch.table))?;
    }
    if !batch.dead_letters.is_empty() {
        let d = &batch.dead_letters;
        let partitions: Vec<i32> = d.iter().map(|x| x.partition).collect();
        let offsets: Vec<i64> = d.iter().map(|x| x.offset).collect();
        let keys: Vec<Option<&[u8]>> = d.iter().map(|x| x.key.as_deref()).collect();
        let payloads: Vec<Option<&[u8]>> = d.iter().map(|x| x.payload.as_deref()).collect();
        let reasons: Vec<&str> = d.iter().map(|x| x.reason.as_str()).collect();
        let sql = format!(
            "INSERT INTO {} (sink, topic, plugin, partition, \"offset\", key, payload, reason)
             SELECT $1, $2, $3, * FROM UNNEST($4::int4[], $5::int8[], $6::bytea[], $7::bytea[], $8::text[])",
            ident(DEAD_LETTERS_TABLE)
        );
        tx.execute(
            &sql,
            &[
                &batch.sink,
                &batch.topic,
                &batch.plugin,
                &partitions,
                &offsets,
                &keys,
                &payloads,
                &reasons,
            ],
        )
        .await
        .context("cannot write dead letters")?;
    }
    let update = format!(
        "UPDATE {} SET next_offset = $4, consumer_group = $5, updated_at = now()
         WHERE table_name = $1 AND topic = $2 AND partition = $3 AND next_offset = $6",
        ident(OFFSETS_TABLE)
    );
    let insert = format!(
        "INSERT INTO {} (table_name, topic, partition, next_offset, consumer_group) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT DO NOTHING",
        ident(OFFSETS_TABLE)
    );
    for (partition, (old, new)) in &batch.offsets {
        let changed = match old {
            Some(old) => {
                tx.execute(
                    &update,
                    &[&batch.table, &batch.topic, partition, new, &batch.group, old],
                )
                .await?
            }
            None => {
                tx.execute(&insert, &[&batch.table, &batch.topic, partition, new, &batch.group])
                    .await?
            }
        };
        if changed != 1 {
            tx.rollback().await?;
            return Ok(Written::Fenced { partition: *partition });
        }
    }
    tx.commit().await.context("cannot commit the batch")?;
    Ok(Written::Committed)
}

/// What the server says about the current session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub database: String,
    pub server_version: String,
    /// TLS version and cipher from `pg_stat_ssl`; `None` when the session is
    /// not encrypted.
    pub tls: Option<(String, String)>,
}

/// Reads the session's database, server version and TLS state, as the
/// server sees them.
pub async fn session_info(client: &Client) -> anyhow::Result<SessionInfo> {
    let row = client
        .query_one(
            "SELECT current_database()::text, current_setting('server_version'), s.ssl, s.version, s.cipher
             FROM pg_stat_ssl s WHERE s.pid = pg_backend_pid()",
            &[],
        )
        .await
        .context("cannot read the session's TLS state from pg_stat_ssl")?;
    let ssl: bool = row.get(2);
    let tls = match (ssl, row.get::<_, Option<String>>(3), row.get::<_, Option<String>>(4)) {
        (true, Some(version), Some(cipher)) => Some((version, cipher)),
        (true, version, cipher) => Some((version.unwrap_or_default(), cipher.unwrap_or_default())),
        (false, _, _) => None,
    };
    Ok(SessionInfo {
        database: row.get(0),
        server_version: row.get(1),
        tls,
    })
}

/// The row count of a sink table and its last row (highest `message_id`) as
/// JSON; `None` when the table does not exist.
pub async fn table_summary(client: &Client, table: &str) -> anyhow::Result<Option<(i64, Option<serde_json::Value>)>> {
    if !table_exists(client, table).await? {
        return Ok(None);
    }
    let t = ident(table);
    let count: i64 = client
        .query_one(&format!("SELECT count(*) FROM {t}"), &[])
        .await
        .with_context(|| format!("cannot count the rows of table {table:?}"))?
        .get(0);
    let last = client
        .query_opt(
            &format!("SELECT row_to_json(t) FROM {t} AS t ORDER BY t.message_id DESC LIMIT 1"),
            &[],
        )
        .await
        .with_context(|| format!("cannot read the last row of table {table:?} (by message_id)"))?
        .map(|r| r.get(0));
    Ok(Some((count, last)))
}

/// The dead letters of a sink per partition of its topic (none when the
/// host's tables do not exist yet).
pub async fn dead_letter_counts(client: &Client, sink: &str, topic: &str) -> anyhow::Result<HashMap<i32, i64>> {
    if !table_exists(client, DEAD_LETTERS_TABLE).await? {
        return Ok(HashMap::new());
    }
    let rows = client
        .query(
            &format!(
                "SELECT partition, count(*) FROM {} WHERE sink = $1 AND topic = $2 GROUP BY partition",
                ident(DEAD_LETTERS_TABLE)
            ),
            &[&sink, &topic],
        )
        .await
        .with_context(|| format!("cannot count the dead letters of sink {sink:?}"))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
