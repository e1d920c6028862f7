//! PostgreSQL, through tokio-postgres over TLS (postgres-openssl): connecting,
//! the host's own tables (offsets and dead letters), sink tables made from a
//! mapper's columns, and the one transaction per batch that makes delivery
//! exactly once.

pub mod binary;
#[cfg(test)]
mod copy_format_tests;
pub mod isolate;
pub mod lineage;
pub mod looser;
pub mod upsert;

use crate::config::{PgTls, PostgresConfig};
use crate::plugins::mapper::{Column, ColumnType, Value};
use anyhow::{Context as _, bail};
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use postgres_openssl::MakeTlsConnector;
use std::collections::HashMap;
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, Config, NoTls, Statement};

pub mod keyed;
pub mod tables;

pub use tables::{SinkTable, ensure_sink_tables};

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
    connect_as(cfg, None).await
}

/// Like [`connect`], naming the session (`application_name`, unless the URL
/// sets one) so `pg_stat_activity` tells which process it belongs to.
pub async fn connect_as(cfg: &PostgresConfig, application_name: Option<&str>) -> anyhow::Result<Client> {
    let mut config: Config = cfg.url.config().clone();
    if let Some(name) = application_name
        && config.get_application_name().is_none()
    {
        config.application_name(name);
    }
    let target = describe(&config);
    let hint = "hint: is PostgreSQL running (`scripts/local-stack status`), and are the URL and password right?";
    if cfg.tls == PgTls::Disable {
        config.ssl_mode(SslMode::Disable);
        let (client, connection) = match config.connect(NoTls).await {
            Ok(c) => c,
            Err(e) => {
                return Err(connect_error(
                    e,
                    &config,
                    format!("cannot connect to PostgreSQL at {target}\n  {hint}"),
                ));
            }
        };
        spawn_connection(connection);
        return Ok(client);
    }
    config.ssl_mode(SslMode::Require);
    let mut builder = SslConnector::builder(SslMethod::tls_client())?;
    match &cfg.ca {
        Some(ca) if !ca.is_file() => anyhow::bail!("postgres.ca {}", crate::config::missing_file_hint(ca)),
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
    let (client, connection) = match config.connect(connector).await {
        Ok(c) => c,
        Err(e) => {
            return Err(connect_error(
                e,
                &config,
                format!(
                    "cannot connect to PostgreSQL at {target} over TLS\n  {hint} With a self-signed server certificate, set postgres.ca to its CA (certs/ca.pem)"
                ),
            ));
        }
    };
    spawn_connection(connection);
    Ok(client)
}

/// A failed connect: the permanent refusal (bad password, unknown user or
/// database) when PostgreSQL said so, otherwise `otherwise` with its hint.
fn connect_error(e: tokio_postgres::Error, config: &Config, otherwise: String) -> anyhow::Error {
    let why = refusal(&e, config, &describe(config));
    let e = anyhow::Error::new(e);
    match why {
        Some(why) => e.context(Refused(why)),
        None => e.context(otherwise),
    }
}

/// A connection PostgreSQL refused for a reason waiting does not cure: a
/// wrong password or user, a missing database, a certificate that does not
/// verify. The message names the setting to fix (never the password).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(String);

/// Whether an error is a [`Refused`] connection, not an outage.
pub fn is_permanent(error: &anyhow::Error) -> bool {
    error.downcast_ref::<Refused>().is_some()
}

/// Why PostgreSQL refused a connection for good, or `None` for an outage.
fn refusal(e: &tokio_postgres::Error, config: &Config, target: &str) -> Option<String> {
    use tokio_postgres::error::SqlState;
    let user = config.get_user().unwrap_or_default();
    if let Some(db) = e.as_db_error() {
        let why = match *db.code() {
            SqlState::INVALID_PASSWORD => format!(
                "PostgreSQL at {target} refused the password of user {user:?}\n  hint: check the password in postgres.url, or in the variable or file postgres.password_env or password_file names (`host validate` says which one it came from; on Aiven, the service's avnadmin password)"
            ),
            SqlState::INVALID_AUTHORIZATION_SPECIFICATION => format!(
                "PostgreSQL at {target} refused user {user:?}: {}\n  hint: check the user in postgres.url and that the server accepts it over TLS (pg_hba.conf)",
                db.message()
            ),
            SqlState::INVALID_CATALOG_NAME => format!(
                "PostgreSQL at {target}: {}\n  hint: check the database in postgres.url, or create it with `host provision`",
                db.message()
            ),
            _ => return None,
        };
        return Some(why);
    }
    // A certificate refused on either side; a connection cut mid-handshake
    // (a server restarting) is an outage, not this.
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(cause) = source {
        if let Some(ssl) = cause.downcast_ref::<openssl::ssl::Error>()
            && let Some(stack) = ssl.ssl_error()
            && stack.errors().iter().any(|e| {
                e.reason()
                    .is_some_and(|r| r.contains("certificate") || r.contains("unknown ca"))
            })
        {
            return Some(format!(
                "the TLS handshake with PostgreSQL at {target} failed: {stack}\n  hint: check postgres.ca (the CA that signed the server's certificate; Aiven's ca.pem) and postgres.tls"
            ));
        }
        source = cause.source();
    }
    None
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
    crate::config::PgUrl::describe(config)
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
        );
        {control};",
        offsets = ident(OFFSETS_TABLE),
        dead = ident(DEAD_LETTERS_TABLE),
        control = lineage::control_ddl(),
    );
    batch_ddl(client, &sql)
        .await
        .context("cannot create the host's tables (offsets, dead letters)")
}

/// Advisory lock key every host takes around its DDL ("wasm" in ASCII).
const DDL_LOCK: i64 = 0x7761_736d;

/// Runs DDL that may race with another host doing the same: in one
/// transaction under a transaction-level advisory lock, so a second host
/// waits for the first to commit and its `IF NOT EXISTS` then sees the table
/// (without the lock, two concurrent `CREATE TABLE IF NOT EXISTS` can fail
/// with "type ... already exists").
pub(crate) async fn batch_ddl(client: &Client, sql: &str) -> anyhow::Result<()> {
    let wrapped = format!("BEGIN; SELECT pg_advisory_xact_lock({DDL_LOCK}); {sql}; COMMIT;");
    match client.batch_execute(&wrapped).await {
        Ok(()) => Ok(()),
        Err(e) => {
            // An error leaves the explicit transaction open and aborted.
            let _ = client.batch_execute("ROLLBACK").await;
            use tokio_postgres::error::SqlState;
            // Something other than a host (no advisory lock) created it first.
            let raced = [
                SqlState::UNIQUE_VIOLATION,
                SqlState::DUPLICATE_TABLE,
                SqlState::DUPLICATE_OBJECT,
            ];
            match e.code() {
                Some(code) if raced.contains(code) => Ok(()),
                _ => Err(e.into()),
            }
        }
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
        ColumnType::Uuid => "uuid",
        ColumnType::Numeric => "numeric",
        ColumnType::Bytea => "bytea",
        ColumnType::Date => "date",
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
        ColumnType::Uuid => "uuid",
        ColumnType::Numeric => "numeric",
        ColumnType::Bytea => "bytea",
        ColumnType::Date => "date",
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

/// Creates a sink table from a mapper's columns when missing, and checks an
/// existing one fits them. Without a key the table gets a `message_id`
/// serial primary key in front; with one (`mode = "upsert"`) the key is the
/// primary key and `message_id` stays, unique per insert, for the readers
/// that order by it. A column the mapper declares and the table lacks is
/// added when it is nullable; anything else that does not fit is refused with
/// what to do. A table made here also gets the lineage columns and their
/// index (see `lineage`). Returns whether it created the table.
pub async fn ensure_sink_table(
    client: &Client,
    table: &str,
    columns: &[Column],
    key: &[String],
) -> anyhow::Result<bool> {
    for c in columns {
        crate::config::check_name(&c.name, crate::config::MAX_PG_IDENT_LEN, false)
            .map_err(|m| anyhow::anyhow!("the mapper declares an invalid column name: {m}"))?;
    }
    let existed = table_exists(client, table).await?;
    let mut defs: Vec<String> = vec![if key.is_empty() {
        "message_id bigserial PRIMARY KEY".to_string()
    } else {
        "message_id bigserial NOT NULL".to_string()
    }];
    defs.extend(columns.iter().map(column_def));
    // Lineage (see `lineage`): only in tables made here, never added later
    // (the rows already there would have none), but for the topic column.
    defs.extend(lineage::column_defs());
    if !key.is_empty() {
        defs.push(format!(
            "PRIMARY KEY ({})",
            key.iter().map(|k| ident(k)).collect::<Vec<_>>().join(", ")
        ));
    }
    let mut sql = format!("CREATE TABLE IF NOT EXISTS {} ({})", ident(table), defs.join(", "));
    if !existed {
        sql = format!("{sql}; {}", lineage::index_ddl(table));
    }
    batch_ddl(client, &sql)
        .await
        .with_context(|| format!("cannot create table {table:?}"))?;
    if existed {
        lineage::add_topic_column(client, table).await?;
    }

    let rows = client
        .query(
            "SELECT column_name::text, udt_name::text, is_nullable = 'YES', column_default IS NOT NULL,
                    CASE WHEN character_maximum_length IS NOT NULL OR (udt_name = 'numeric' AND numeric_precision IS NOT NULL)
                         THEN format_type(a.atttypid, a.atttypmod) END
             FROM information_schema.columns c
             JOIN pg_attribute a ON a.attrelid = to_regclass(quote_ident(c.table_name)) AND a.attname = c.column_name
             WHERE c.table_schema = current_schema() AND c.table_name = $1",
            &[&table],
        )
        .await
        .with_context(|| format!("cannot read the columns of table {table:?}"))?;
    let existing: Vec<Existing> = rows
        .iter()
        .map(|r| Existing {
            name: r.get(0),
            udt: r.get(1),
            nullable: r.get(2),
            has_default: r.get(3),
            limited: r.get(4),
        })
        .collect();
    let added = schema_changes(table, &existing, columns)?;
    looser::warn(table, &looser::looser(table, &existing, columns, key));
    if !added.is_empty() {
        let sql = format!(
            "ALTER TABLE {} {}",
            ident(table),
            added
                .iter()
                .map(|c| format!("ADD COLUMN IF NOT EXISTS {}", column_def(c)))
                .collect::<Vec<_>>()
                .join(", ")
        );
        batch_ddl(client, &sql)
            .await
            .with_context(|| format!("cannot add columns to table {table:?}"))?;
        let names: Vec<&str> = added.iter().map(|c| c.name.as_str()).collect();
        tracing::info!(table, columns = ?names, "added the mapper's new nullable columns to the table");
    }
    if !key.is_empty() {
        keyed::check_unique_key(client, table, key).await?;
    }
    Ok(!existed)
}

fn column_def(c: &Column) -> String {
    format!(
        "{} {}{}",
        ident(&c.name),
        sql_type(c.kind),
        if c.nullable { "" } else { " NOT NULL" }
    )
}

/// A column of an existing table, as information_schema tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing {
    pub name: String,
    pub udt: String,
    pub nullable: bool,
    pub has_default: bool,
    /// The type with its limit (`character varying(5)`, `numeric(5,2)`)
    /// when it has one.
    pub limited: Option<String>,
}

/// What it takes for `existing` to fit the mapper's `columns`: the columns to
/// add (the mapper's nullable ones the table lacks), or why that cannot be
/// done safely, and what to do.
pub fn schema_changes<'a>(
    table: &str,
    existing: &[Existing],
    columns: &'a [Column],
) -> anyhow::Result<Vec<&'a Column>> {
    let mut added = Vec::new();
    for c in columns {
        match existing.iter().find(|e| e.name == c.name) {
            Some(e) if looser::type_fits(&e.udt, c.kind) => {}
            Some(e) => bail!(
                "table {table:?} has column {:?} of type {}, but the mapper writes {}\n  hint: the host does not change column types; migrate the column yourself (ALTER TABLE {} ALTER COLUMN {} TYPE {} USING ...), keep the mapper's old type, or point the sink at a new table",
                c.name,
                e.udt,
                sql_type(c.kind),
                ident(table),
                ident(&c.name),
                sql_type(c.kind)
            ),
            None if c.nullable => added.push(c),
            None => bail!(
                "table {table:?} has no column {:?}, which the mapper writes as NOT NULL; the host adds only nullable columns, since the rows already there have no value\n  hint: declare the column nullable in the mapper, or add it with a default yourself (ALTER TABLE {} ADD COLUMN {} {} NOT NULL DEFAULT ...)",
                c.name,
                ident(table),
                ident(&c.name),
                sql_type(c.kind)
            ),
        }
    }
    // A NOT NULL column the mapper no longer writes would fail every batch.
    if let Some(e) = existing
        .iter()
        .find(|e| !e.nullable && !e.has_default && !columns.iter().any(|c| c.name == e.name))
    {
        bail!(
            "table {table:?} has column {:?} NOT NULL without a default, and the mapper does not write it\n  hint: keep the column in the mapper, or allow NULL in it (ALTER TABLE {} ALTER COLUMN {} DROP NOT NULL)",
            e.name,
            ident(table),
            ident(&e.name)
        );
    }
    Ok(added)
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

/// Stores where partitions with nothing stored yet start (a sink's `start`
/// of "latest" or a time, resolved once); an offset already stored wins.
pub async fn store_start_offsets(
    client: &Client,
    table: &str,
    topic: &str,
    group: &str,
    starts: &HashMap<i32, i64>,
) -> anyhow::Result<()> {
    let (partitions, offsets): (Vec<i32>, Vec<i64>) = starts.iter().map(|(p, o)| (*p, *o)).unzip();
    client
        .execute(
            &format!(
                "INSERT INTO {} (table_name, topic, partition, next_offset, consumer_group)
                 SELECT $1, $2, p, n, $3 FROM UNNEST($4::int4[], $5::int8[]) AS x(p, n)
                 ON CONFLICT DO NOTHING",
                ident(OFFSETS_TABLE)
            ),
            &[&table, &topic, &group, &partitions, &offsets],
        )
        .await
        .with_context(|| format!("cannot store the start offsets of table {table:?}"))?;
    Ok(())
}

/// Rows of a batch in PostgreSQL's binary `COPY` format, encoded as they are
/// added. Values must fit their columns (the sink checks them first).
pub struct CopyRows {
    kinds: Vec<ColumnType>,
    buf: Vec<u8>,
    /// Where each row starts in `buf`, so a subset can be copied again
    /// when PostgreSQL refuses a row (see `isolate`).
    starts: Vec<usize>,
}

/// The binary `COPY` header: signature, flags, header extension length.
pub(crate) const COPY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

impl CopyRows {
    /// Empty, with room for `bytes` of encoded rows.
    pub fn with_capacity(columns: &[Column], bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(COPY_HEADER.len() + bytes + 2);
        buf.extend_from_slice(COPY_HEADER);
        Self {
            kinds: columns.iter().map(|c| c.kind).collect(),
            buf,
            starts: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// Adds one row, one value per column in order.
    pub fn push(&mut self, row: Vec<Value>) {
        self.push_ref(&row);
    }

    /// Adds one row, one value per column in order.
    pub fn push_ref(&mut self, row: &[Value]) {
        self.push_values(row.iter());
    }

    /// Adds one row, one value per column in order.
    pub fn push_values<'a>(&mut self, row: impl Iterator<Item = &'a Value>) {
        self.starts.push(self.buf.len());
        let buf = &mut self.buf;
        let count = i16::try_from(self.kinds.len()).unwrap_or(i16::MAX);
        buf.extend_from_slice(&count.to_be_bytes());
        for (kind, value) in self.kinds.iter().zip(row) {
            match (kind, value) {
                (_, Value::Null) => buf.extend_from_slice(&(-1i32).to_be_bytes()),
                // jsonb's binary form: a version byte, then the text.
                (ColumnType::Json, Value::Json(s) | Value::Text(s)) => {
                    field_len(buf, s.len() + 1);
                    buf.push(1);
                    buf.extend_from_slice(s.as_bytes());
                }
                (_, Value::Text(s) | Value::Json(s)) => field(buf, s.as_bytes()),
                (ColumnType::Timestamp, Value::Timestamp(us) | Value::Integer(us)) => match binary::timestamp(*us) {
                    Ok(pg) => field(buf, &pg.to_be_bytes()),
                    Err(_) => refused_field(buf),
                },
                (ColumnType::Float, Value::Integer(i)) => field(buf, &(*i as f64).to_be_bytes()),
                (ColumnType::Numeric, Value::Integer(i)) => numeric_field(buf, &i.to_string()),
                (_, Value::Integer(i) | Value::Timestamp(i)) => field(buf, &i.to_be_bytes()),
                (_, Value::Float(f)) => field(buf, &f.to_be_bytes()),
                (_, Value::Boolean(b)) => field(buf, &[u8::from(*b)]),
                (_, Value::Uuid(s)) => match binary::uuid(s) {
                    Ok(bytes) => field(buf, &bytes),
                    Err(_) => refused_field(buf),
                },
                (_, Value::Numeric(s)) => numeric_field(buf, s),
                (_, Value::Bytea(bytes)) => field(buf, bytes),
                (_, Value::Date(days)) => match binary::date(*days) {
                    Ok(pg_days) => field(buf, &pg_days.to_be_bytes()),
                    Err(_) => refused_field(buf),
                },
            }
        }
    }

    /// The rows as shared bytes (header and rows, no trailer) and where each
    /// row starts: what a write keeps to copy a subset again.
    pub fn freeze(self) -> isolate::Frozen {
        isolate::Frozen::new(bytes::Bytes::from(self.buf), self.starts)
    }

    /// The encoded rows with the trailer, ready to send.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.buf
    }
}

fn numeric_field(buf: &mut Vec<u8>, text: &str) {
    match binary::numeric(text) {
        Ok(bytes) => field(buf, &bytes),
        Err(_) => refused_field(buf),
    }
}

/// A field PostgreSQL refuses (a 3-byte value fits none of the types that
/// need one), written for a value the sink's checks should have stopped:
/// the batch fails loudly instead of storing something else.
fn refused_field(buf: &mut Vec<u8>) {
    tracing::error!("a value reached COPY unchecked; PostgreSQL will refuse the batch");
    field(buf, &[0xff, 0xff, 0xff]);
}

fn field_len(buf: &mut Vec<u8>, len: usize) {
    buf.extend_from_slice(&i32::try_from(len).unwrap_or(i32::MAX).to_be_bytes());
}

fn field(buf: &mut Vec<u8>, bytes: &[u8]) {
    field_len(buf, bytes.len());
    buf.extend_from_slice(bytes);
}

/// The statements a sink runs for every batch, prepared once per connection
/// (each unprepared statement costs a round trip more).
pub struct SinkStatements {
    /// One per table of the sink, in the declared order.
    tables: Vec<TableStatements>,
    update_offset: Statement,
    insert_offset: Statement,
}

/// The statements that write one table of a sink.
pub struct TableStatements {
    /// The table's name, for messages.
    table: String,
    copy: Statement,
    /// With a key (`mode = "upsert"`): rows go through a staging table.
    keyed: Option<keyed::Statements>,
}

impl SinkStatements {
    /// Prepares the statements that write the sink's `tables`; for the ones
    /// with a key, also creates the session's staging tables.
    pub async fn prepare(client: &Client, tables: &[SinkTable]) -> anyhow::Result<Self> {
        let update_offset = format!(
            "UPDATE {} SET next_offset = $4, consumer_group = $5, updated_at = now()
             WHERE table_name = $1 AND topic = $2 AND partition = $3 AND next_offset = $6",
            ident(OFFSETS_TABLE)
        );
        let insert_offset = format!(
            "INSERT INTO {} (table_name, topic, partition, next_offset, consumer_group) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT DO NOTHING",
            ident(OFFSETS_TABLE)
        );
        let mut prepared = Vec::with_capacity(tables.len());
        for (i, t) in tables.iter().enumerate() {
            let written = t.written();
            let names: Vec<String> = written.iter().map(|c| ident(&c.name)).collect();
            let copy = format!("COPY {} ({}) FROM STDIN BINARY", ident(&t.name), names.join(", "));
            let context = || format!("cannot prepare the statements that write table {:?}", t.name);
            prepared.push(TableStatements {
                table: t.name.clone(),
                copy: client.prepare(&copy).await.with_context(context)?,
                keyed: if t.key.is_empty() {
                    None
                } else {
                    Some(keyed::Statements::prepare(client, &t.name, &written, &t.key, &keyed::stage_table(i)).await?)
                },
            });
        }
        let context = || "cannot prepare the statements that write the offsets".to_string();
        Ok(Self {
            tables: prepared,
            update_offset: client.prepare(&update_offset).await.with_context(context)?,
            insert_offset: client.prepare(&insert_offset).await.with_context(context)?,
        })
    }
}

/// Makes the session's commits asynchronous (`synchronous_commit = off`): a
/// commit returns before its WAL reaches the disk, and a crash of PostgreSQL
/// can lose the last few hundred milliseconds of commits. A sink can afford
/// it: rows and offsets go together, so a lost commit loses both, and the
/// sink's next conditional offset update fails and sends it back to the
/// offsets that survived. [`flush_commits`] makes them durable when the sink
/// stops.
pub async fn asynchronous_commits(client: &Client) -> anyhow::Result<()> {
    // The bounds keep a paused or hung sink (SIGSTOP, a frozen machine) from
    // blocking the process that took its partitions: its open transaction is
    // ended by the server, its row locks freed, and its late conditional
    // offset update then fails, so it rewinds instead of writing.
    client
        .batch_execute(&format!(
            "SET synchronous_commit = off; \
             SET idle_in_transaction_session_timeout = {}; \
             SET lock_timeout = {}; \
             SET statement_timeout = {}",
            SINK_IDLE_IN_TRANSACTION_TIMEOUT.as_millis(),
            SINK_LOCK_TIMEOUT.as_millis(),
            SINK_STATEMENT_TIMEOUT.as_millis()
        ))
        .await
        .context("cannot set synchronous_commit and the timeouts of the sink's session")
}

/// A sink's transaction is written back to back; this long idle inside one
/// means the process is paused or hung, and the server ends the session.
pub const SINK_IDLE_IN_TRANSACTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Longest wait for a row lock (another writer's offsets): longer than the
/// idle bound, so a successor waits out a paused writer once, then proceeds.
pub const SINK_LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Longest statement of a sink (a batch's COPY, an offset update).
pub const SINK_STATEMENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Waits until every commit of the session is on disk: a synchronous
/// transaction that touches the sink's offsets flushes the WAL before it.
pub async fn flush_commits(client: &mut Client, table: &str, topic: &str) -> anyhow::Result<()> {
    let tx = client.transaction().await?;
    tx.batch_execute("SET LOCAL synchronous_commit = on").await?;
    tx.execute(
        &format!(
            "UPDATE {} SET updated_at = now() WHERE table_name = $1 AND topic = $2",
            ident(OFFSETS_TABLE)
        ),
        &[&table, &topic],
    )
    .await?;
    tx.commit().await.context("cannot flush the sink's commits")
}

/// A message that could not be mapped.
pub struct DeadLetter {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub reason: String,
}

/// The key and payload of a message, kept for a dead letter.
pub type Source = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Everything one batch writes, in one transaction.
pub struct Batch {
    pub sink: String,
    pub table: String,
    pub topic: String,
    pub group: String,
    pub plugin: String,
    /// The rows of each table of the sink, in the declared order.
    pub tables: Vec<TableBatch>,
    /// `(partition, offset)` of every message, and its key and payload
    /// (`None` for the ones already dead letters): for the refused ones.
    pub positions: Vec<(i32, i64)>,
    pub sources: Vec<Source>,
    pub dead_letters: Vec<DeadLetter>,
    /// Per partition: the next offset the database held when the batch was
    /// read (`None`: nothing stored yet) and the next offset after it.
    pub offsets: HashMap<i32, (Option<i64>, i64)>,
}

/// The rows of one table in a batch.
pub struct TableBatch {
    pub rows: isolate::Frozen,
    /// Which message each row came from, to leave out the ones PostgreSQL refuses.
    pub parts: isolate::Parts,
    /// How many deletes the mapper asked for (keyed sinks): with none, the
    /// table needs no `DELETE`.
    pub deletes: usize,
}

/// How a batch write ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    /// Stored; the messages and rows PostgreSQL refused are dead letters.
    Committed(RowsRefused),
    /// Another consumer moved a partition's stored offset first: the batch
    /// was rolled back and the sink must restart from the stored offsets.
    Fenced { partition: i32 },
}

/// Messages of a batch PostgreSQL refused (see [`isolate`]), now dead
/// letters, and their rows.
#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
pub struct RowsRefused {
    pub letters: u64,
    pub rows: u64,
}

/// Writes rows (binary `COPY`), dead letters and next offsets in one
/// transaction. The offset update is conditional on the offset the batch
/// started from, which fences a consumer that lost its partition to another.
/// When PostgreSQL refuses rows for their data, the batch is written again
/// without them, and their messages become dead letters ([`isolate`]).
pub async fn write_batch(client: &mut Client, statements: &SinkStatements, batch: Batch) -> anyhow::Result<Written> {
    let started = std::time::Instant::now();
    match write_whole(client, statements, &batch).await {
        Err(e) => match isolate::row_refusal(&e).map(isolate::reason) {
            Some(reason) => isolate::salvage(client, statements, batch, reason, started).await,
            None => Err(e),
        },
        written => written,
    }
}

/// The conditional offset updates of a batch; `Some(partition)` when one
/// found another consumer's offset (fenced).
async fn update_offsets(
    tx: &tokio_postgres::Transaction<'_>,
    statements: &SinkStatements,
    batch: &Batch,
) -> Result<Option<i32>, tokio_postgres::Error> {
    // One round trip for all partitions: the updates are sent together.
    let updates = batch.offsets.iter().map(|(partition, (old, new))| {
        let (table, topic, group) = (&batch.table, &batch.topic, &batch.group);
        async move {
            let changed = match old {
                Some(old) => {
                    tx.execute(&statements.update_offset, &[table, topic, partition, new, group, old])
                        .await?
                }
                None => {
                    tx.execute(&statements.insert_offset, &[table, topic, partition, new, group])
                        .await?
                }
            };
            Ok::<_, tokio_postgres::Error>((*partition, changed))
        }
    });
    let updated = futures_util::future::try_join_all(updates).await?;
    Ok(updated.into_iter().find(|(_, changed)| *changed != 1).map(|(p, _)| p))
}

/// Inserts dead letters, in one statement.
async fn insert_dead_letters(
    tx: &tokio_postgres::Transaction<'_>,
    sink: &str,
    topic: &str,
    plugin: &str,
    d: &[DeadLetter],
) -> anyhow::Result<()> {
    if d.is_empty() {
        return Ok(());
    }
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
            &sink,
            &topic,
            &plugin,
            &partitions,
            &offsets,
            &keys,
            &payloads,
            &reasons,
        ],
    )
    .await
    .context("cannot write dead letters")?;
    Ok(())
}

/// The batch in one go: the fast path.
async fn write_whole(client: &mut Client, statements: &SinkStatements, batch: &Batch) -> anyhow::Result<Written> {
    let tx = client.transaction().await?;
    // The end of the copies and the offset updates go out together (one
    // round trip); the commit waits for the updates' row counts.
    let copied = tables::write_tables(&tx, &statements.tables, &batch.tables);
    insert_dead_letters(&tx, &batch.sink, &batch.topic, &batch.plugin, &batch.dead_letters).await?;
    let (copied, fenced) = futures_util::future::join(copied, update_offsets(&tx, statements, batch)).await;
    copied.with_context(|| format!("cannot copy rows into {:?}", batch.table))?;
    if let Some(partition) = fenced? {
        tx.rollback().await?;
        return Ok(Written::Fenced { partition });
    }
    tx.commit().await.context("cannot commit the batch")?;
    Ok(Written::Committed(RowsRefused::default()))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, kind: ColumnType, nullable: bool) -> Column {
        Column {
            name: name.into(),
            kind,
            nullable,
        }
    }

    fn existing(name: &str, udt: &str, nullable: bool) -> Existing {
        Existing {
            name: name.into(),
            udt: udt.into(),
            nullable,
            has_default: false,
            limited: None,
        }
    }

    #[test]
    fn a_new_nullable_column_is_added_and_nothing_else() {
        let table = [
            Existing {
                has_default: true,
                ..existing("message_id", "int8", false)
            },
            existing("id", "text", false),
        ];
        let columns = [
            column("id", ColumnType::Text, false),
            column("extra", ColumnType::Integer, true),
        ];
        let added = schema_changes("t", &table, &columns).unwrap();
        assert_eq!(added, vec![&columns[1]]);
        assert!(schema_changes("t", &table, &columns[..1]).unwrap().is_empty());
    }

    #[test]
    fn unsafe_changes_are_refused_naming_table_column_and_fix() {
        let table = [existing("id", "text", false), existing("n", "int8", true)];
        let retyped = [
            column("id", ColumnType::Text, false),
            column("n", ColumnType::Text, true),
        ];
        let e = schema_changes("t", &table, &retyped).unwrap_err().to_string();
        assert!(
            e.contains("table \"t\" has column \"n\" of type int8") && e.contains("ALTER COLUMN"),
            "{e}"
        );
        let not_null = [
            column("id", ColumnType::Text, false),
            column("m", ColumnType::Text, false),
        ];
        let e = schema_changes("t", &table, &not_null).unwrap_err().to_string();
        assert!(e.contains("no column \"m\"") && e.contains("nullable"), "{e}");
        let dropped = [column("n", ColumnType::Integer, true)];
        let e = schema_changes("t", &table, &dropped).unwrap_err().to_string();
        assert!(
            e.contains("column \"id\" NOT NULL") && e.contains("DROP NOT NULL"),
            "{e}"
        );
    }
}

/// The binary COPY encoding (a module of its own so it merges beside other tests).
#[cfg(test)]
mod copy_tests {
    use super::*;

    fn column(name: &str, kind: ColumnType) -> Column {
        Column {
            name: name.into(),
            kind,
            nullable: true,
        }
    }

    /// The fields of the one row of a finished COPY: each `None` for NULL.
    fn fields(bytes: &[u8]) -> Vec<Option<Vec<u8>>> {
        assert_eq!(&bytes[..COPY_HEADER.len()], COPY_HEADER);
        assert_eq!(&bytes[bytes.len() - 2..], &(-1i16).to_be_bytes(), "trailer");
        let mut at = COPY_HEADER.len();
        let count = i16::from_be_bytes([bytes[at], bytes[at + 1]]);
        at += 2;
        let mut out = Vec::new();
        for _ in 0..count {
            let len = i32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
            at += 4;
            if len < 0 {
                out.push(None);
            } else {
                out.push(Some(bytes[at..at + len as usize].to_vec()));
                at += len as usize;
            }
        }
        assert_eq!(at, bytes.len() - 2, "nothing after the row");
        out
    }

    #[test]
    fn new_types_encode_in_postgres_binary_copy_format() {
        let columns = [
            column("u", ColumnType::Uuid),
            column("n", ColumnType::Numeric),
            column("i", ColumnType::Numeric),
            column("b", ColumnType::Bytea),
            column("d", ColumnType::Date),
            column("e", ColumnType::Bytea),
            column("z", ColumnType::Uuid),
        ];
        let mut rows = CopyRows::with_capacity(&columns, 0);
        rows.push(vec![
            Value::Uuid("0b7e5a3c-1234-4abc-8def-001122334455".into()),
            Value::Numeric("-12.50".into()),
            Value::Integer(10_000),
            Value::Bytea(vec![0, 0xff, b'\\']),
            Value::Date(0),
            Value::Bytea(Vec::new()),
            Value::Null,
        ]);
        assert_eq!(rows.len(), 1);
        let f = fields(&rows.finish());
        assert_eq!(
            f[0].as_deref(),
            Some(
                &[
                    0x0b, 0x7e, 0x5a, 0x3c, 0x12, 0x34, 0x4a, 0xbc, 0x8d, 0xef, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55
                ][..]
            )
        );
        // ndigits 2, weight 0, negative, dscale 2, digits 12 and 5000.
        assert_eq!(
            f[1].as_deref(),
            Some(&[0, 2, 0, 0, 0x40, 0, 0, 2, 0, 12, 0x13, 0x88][..])
        );
        // An integer in a numeric column: 10000 is one digit of weight 1.
        assert_eq!(f[2].as_deref(), Some(&[0, 1, 0, 1, 0, 0, 0, 0, 0, 1][..]));
        assert_eq!(
            f[3].as_deref(),
            Some(&[0, 0xff, b'\\'][..]),
            "bytea: the bytes as they are"
        );
        // 1970-01-01 is 10957 days before 2000-01-01.
        assert_eq!(f[4].as_deref(), Some(&(-10_957i32).to_be_bytes()[..]));
        assert_eq!(f[5].as_deref(), Some(&[][..]), "an empty bytea is not NULL");
        assert_eq!(f[6], None);
    }

    #[test]
    fn the_new_types_have_their_postgres_names() {
        let names: Vec<(&str, &str)> = [
            ColumnType::Uuid,
            ColumnType::Numeric,
            ColumnType::Bytea,
            ColumnType::Date,
        ]
        .into_iter()
        .map(|k| (sql_type(k), udt_name(k)))
        .collect();
        assert_eq!(
            names,
            [
                ("uuid", "uuid"),
                ("numeric", "numeric"),
                ("bytea", "bytea"),
                ("date", "date")
            ]
        );
    }
}
