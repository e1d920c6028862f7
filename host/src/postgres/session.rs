//! Connecting to PostgreSQL over TLS (or not, as configured), the refusals
//! that waiting does not cure, and the settings of a sink's session.

use super::{OFFSETS_TABLE, ident};
use crate::config::{PgTls, PostgresConfig};
use anyhow::Context as _;
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use postgres_openssl::MakeTlsConnector;
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, Config, NoTls};

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
