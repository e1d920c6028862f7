//! The PostgreSQL connection URL of `postgres.url`, parsed once when the
//! pipeline is loaded: connecting, naming the database and messages all read
//! the parsed form, and a URL with another database or password is made from
//! it rather than by editing text.

use super::names::{DatabaseName, NameError};
use std::fmt;
use tokio_postgres::config::{Config, Host, SslMode};

/// Why a connection URL is refused. The messages follow `postgres.url`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PgUrlError {
    #[error("is not a PostgreSQL URL ({0}); expected postgres://user:password@host:5432/database")]
    Syntax(String),
    #[error("names no database; add it to the path, e.g. postgres://...:5432/info")]
    NoDatabase,
    #[error("the database name {0}")]
    Database(#[from] NameError),
}

/// A checked PostgreSQL connection URL (or libpq `key=value` string) naming a
/// valid database. It may hold a password, so it never prints itself: use
/// [`PgUrl::target`] or [`PgUrl::without_password`] in messages.
#[derive(Clone, PartialEq, Eq)]
pub struct PgUrl {
    /// As written, with a password set by [`PgUrl::with_password`]: kept only
    /// to render the URL again.
    text: String,
    /// What connections are made from.
    config: Config,
    database: DatabaseName,
}

impl PgUrl {
    pub fn parse(text: &str) -> Result<Self, PgUrlError> {
        let config: Config = text
            .parse()
            .map_err(|e: tokio_postgres::Error| PgUrlError::Syntax(e.to_string()))?;
        let database = DatabaseName::new(config.get_dbname().ok_or(PgUrlError::NoDatabase)?)?;
        Ok(Self {
            text: text.to_string(),
            config,
            database,
        })
    }

    /// The connection settings, to connect with (after setting TLS).
    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn database(&self) -> &DatabaseName {
        &self.database
    }

    pub fn user(&self) -> Option<&str> {
        self.config.get_user()
    }

    pub fn ssl_mode(&self) -> SslMode {
        self.config.get_ssl_mode()
    }

    /// The same URL with `password` (percent-encoded in the URL form).
    pub fn with_password(mut self, password: &str) -> Self {
        self.config.password(password.as_bytes());
        self.text = match Parts::parse(&self.text) {
            Some(parts) if parts.user.is_some() => Parts {
                password: Some(&percent_encode(password)),
                ..parts
            }
            .render(&self.database),
            // No user to put it after: the parsed settings hold it.
            Some(_) => self.text,
            // key=value form: a later key wins.
            None => format!("{} password='{}'", self.text, quote_value(password)),
        };
        self
    }

    /// The same URL naming another database.
    pub fn with_database(&self, database: &DatabaseName) -> Self {
        let mut config = self.config.clone();
        config.dbname(database.as_str());
        let text = match Parts::parse(&self.text) {
            Some(parts) => parts.render(database),
            None => format!("{} dbname={database}", self.text),
        };
        Self {
            text,
            config,
            database: database.clone(),
        }
    }

    /// The URL with its password left out, as it may go into a file or a
    /// message; `None` for the `key=value` form.
    pub fn without_password(&self) -> Option<String> {
        Parts::parse(&self.text).map(|parts| {
            Parts {
                password: None,
                ..parts
            }
            .render(&self.database)
        })
    }

    /// `host:port/database`, for messages.
    pub fn target(&self) -> String {
        Self::describe(&self.config)
    }

    /// `host:port/database` of connection settings, for messages (never the password).
    pub fn describe(config: &Config) -> String {
        let host = match config.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            #[cfg(unix)]
            Some(Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        format!("{host}:{port}/{}", config.get_dbname().unwrap_or_default())
    }
}

impl fmt::Debug for PgUrl {
    // Never the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PgUrl").field(&self.target()).finish()
    }
}

/// The parts of a `postgres://user[:password]@host[:port][/database][?query]`
/// URL that are kept when the database or password is swapped.
#[derive(Clone, Copy)]
struct Parts<'a> {
    scheme: &'a str,
    user: Option<&'a str>,
    password: Option<&'a str>,
    host: &'a str,
    query: Option<&'a str>,
}

impl<'a> Parts<'a> {
    /// `None` for the key=value form (`host=... dbname=...`).
    fn parse(url: &'a str) -> Option<Self> {
        let (scheme, rest) = url.split_once("://")?;
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (userinfo, rest) = match rest.rfind('@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let host = rest.split_once('/').map_or(rest, |(host, _database)| host);
        let (user, password) = match userinfo.map(|u| u.split_once(':')) {
            Some(Some((u, p))) => (Some(u), Some(p)),
            Some(None) => (userinfo, None),
            None => (None, None),
        };
        Some(Self {
            scheme,
            user,
            password,
            host,
            query,
        })
    }

    fn render(&self, database: &DatabaseName) -> String {
        let mut out = format!("{}://", self.scheme);
        if let Some(user) = self.user {
            out.push_str(user);
            if let Some(p) = self.password {
                out.push(':');
                out.push_str(p);
            }
            out.push('@');
        }
        out.push_str(self.host);
        out.push('/');
        out.push_str(database);
        if let Some(q) = self.query {
            out.push('?');
            out.push_str(q);
        }
        out
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A value for libpq's `key='value'` form.
fn quote_value(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\'', "\\'")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> PgUrl {
        PgUrl::parse(text).expect("valid URL")
    }

    fn db(name: &str) -> DatabaseName {
        DatabaseName::new(name).expect("valid name")
    }

    #[test]
    fn a_url_is_parsed_once_into_its_parts() {
        let u = url("postgres://avnadmin:secret@pg.example.com:24947/info?sslmode=require");
        assert_eq!(u.database(), "info");
        assert_eq!(u.user(), Some("avnadmin"));
        assert_eq!(u.ssl_mode(), SslMode::Require);
        assert_eq!(u.config().get_password(), Some(&b"secret"[..]));
        assert_eq!(u.target(), "pg.example.com:24947/info");
        assert_eq!(PgUrl::describe(u.config()), u.target());
    }

    #[test]
    fn the_password_never_shows() {
        let u = url("postgres://avnadmin:secret@localhost:5432/info");
        assert_eq!(format!("{u:?}"), "PgUrl(\"localhost:5432/info\")");
        assert_eq!(
            u.without_password().as_deref(),
            Some("postgres://avnadmin@localhost:5432/info")
        );
    }

    #[test]
    fn bad_urls_are_refused_with_the_reason() {
        assert!(matches!(
            PgUrl::parse("postgres://u@h:notaport/db"),
            Err(PgUrlError::Syntax(_))
        ));
        assert_eq!(PgUrl::parse("postgres://u@localhost"), Err(PgUrlError::NoDatabase));
        let e = PgUrl::parse("postgres://u@localhost/Info").unwrap_err();
        assert!(matches!(e, PgUrlError::Database(_)));
        assert!(
            e.to_string().starts_with("the database name \"Info\" must start with"),
            "{e}"
        );
    }

    #[test]
    fn a_password_from_the_environment_is_encoded_into_the_url() {
        let u = url("postgres://avnadmin:old@localhost:5432/info?sslmode=require").with_password("p@ss:w/rd");
        assert_eq!(u.config().get_password(), Some(&b"p@ss:w/rd"[..]));
        assert_eq!(
            u.text,
            "postgres://avnadmin:p%40ss%3Aw%2Frd@localhost:5432/info?sslmode=require"
        );
        // The text still parses to the same settings.
        assert_eq!(url(&u.text), u);
        let no_user = url("postgres://localhost/info").with_password("pw");
        assert_eq!(no_user.config().get_password(), Some(&b"pw"[..]));
    }

    #[test]
    fn another_database_keeps_everything_else() {
        let u = url("postgres://avnadmin:pw@localhost:5432/info?sslmode=require");
        let other = u.with_database(&db("defaultdb"));
        assert_eq!(other.database(), "defaultdb");
        assert_eq!(other.config().get_dbname(), Some("defaultdb"));
        assert_eq!(other.config().get_password(), Some(&b"pw"[..]));
        assert_eq!(other.ssl_mode(), SslMode::Require);
        assert_eq!(
            other.text,
            "postgres://avnadmin:pw@localhost:5432/defaultdb?sslmode=require"
        );
        assert_eq!(u.database(), "info", "the original is unchanged");
    }

    #[test]
    fn the_key_value_form_is_understood_too() {
        let u = url("host=localhost port=5432 user=avnadmin dbname=info");
        assert_eq!(u.target(), "localhost:5432/info");
        assert_eq!(u.without_password(), None);
        let other = u.with_database(&db("postgres")).with_password("it's");
        assert_eq!(other.config().get_dbname(), Some("postgres"));
        assert_eq!(url(&other.text), other);
        assert_eq!(other.config().get_password(), Some(&b"it's"[..]));
    }
}
