//! Aiven's REST API (`https://api.aiven.io/v1`), through reqwest: the few
//! calls the host needs. List and create Kafka topics, create a PostgreSQL
//! database, read the project CA and a service's connection details.
//!
//! Every request carries `authorization: aivenv1 <token>`. The token comes
//! only from the environment variable named by `aiven.token_env`, or the file
//! `aiven.token_file` names (read when the client is made); it is marked
//! sensitive in the header, kept out of every `Debug` and error message, and
//! redacted from any response text quoted in an error.
//!
//! Retries: 429 waits for `Retry-After` (capped), 5xx answers and transport
//! failures (timeouts, refused or dropped connections) back off exponentially
//! (capped), for a few attempts, then fail with a clear message. 401, 403, 404
//! and other 4xx answers are permanent and say what to fix. 409 means the
//! object already exists, which the create calls report as such.

use crate::config::AivenConfig;
use crate::error_text::one_line;
use reqwest::Url;
use reqwest::header::HeaderValue;
use std::fmt;

mod error;
mod http;
mod services;
mod topics;
pub use error::AivenError;
pub use http::{
    DEFAULT_ATTEMPTS, DEFAULT_FIRST_BACKOFF_MS, DEFAULT_MAX_BACKOFF_MS, DEFAULT_MAX_RETRY_AFTER_MS,
    DEFAULT_REQUEST_TIMEOUT_MS, RetryPolicy,
};
pub use services::{KafkaAccess, ServiceUri};
pub use topics::{Created, TopicInfo};

/// The token and the header made from it; never printed.
struct Token {
    secret: String,
    header: HeaderValue,
}

/// A client for one Aiven project and its Kafka and PostgreSQL services.
pub struct Client {
    http: reqwest::Client,
    base: Url,
    config: AivenConfig,
    token: Token,
    retry: RetryPolicy,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .field("project", &self.config.project)
            .field("token_env", &self.config.token_env)
            .field("token_file", &self.config.token_file)
            .field("token", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Where the token is read from, and how to put a new one there, for messages.
fn token_place(config: &AivenConfig) -> (String, String) {
    match &config.token_file {
        Some(path) => {
            let path = path.display();
            (
                format!("the file {path} (aiven.token_file)"),
                format!("write the token into {path}"),
            )
        }
        None => {
            let var = &config.token_env;
            (var.clone(), format!("export {var}=<token>"))
        }
    }
}

/// Which service a call is about, for 404 messages.
#[derive(Clone, Copy)]
enum Service {
    Kafka,
    Pg,
}

impl Service {
    fn key(self) -> &'static str {
        match self {
            Service::Kafka => "kafka_service",
            Service::Pg => "pg_service",
        }
    }
}

impl Client {
    /// A client whose token is read from the file `aiven.token_file` names,
    /// or else the variable `aiven.token_env` names.
    pub fn new(config: &AivenConfig) -> Result<Self, AivenError> {
        let token = match &config.token_file {
            Some(path) => std::fs::read_to_string(path).map_err(|e| AivenError::TokenFile {
                path: path.display().to_string(),
                reason: match e.kind() {
                    std::io::ErrorKind::NotFound => "does not exist".into(),
                    std::io::ErrorKind::PermissionDenied => "is not readable by this user".into(),
                    _ => format!("cannot be read ({e})"),
                },
            })?,
            None => std::env::var(&config.token_env).unwrap_or_default(),
        };
        Self::with_token(config, token.trim())
    }

    /// A client with the given token.
    pub fn with_token(config: &AivenConfig, token: &str) -> Result<Self, AivenError> {
        let (var, renew) = token_place(config);
        if token.is_empty() {
            return Err(AivenError::TokenMissing { var, renew });
        }
        let mut header = HeaderValue::from_str(&format!("aivenv1 {token}"))
            .map_err(|_| AivenError::TokenMalformed { var, renew })?;
        header.set_sensitive(true);
        let base = Url::parse(&format!("{}/v1/", config.api_url)).map_err(|e| AivenError::Setup {
            reason: format!("aiven.api_url {:?} is not a URL: {e}", config.api_url),
        })?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("wasm-stream-host/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| AivenError::Setup { reason: one_line(&e) })?;
        Ok(Self {
            http,
            base,
            config: config.clone(),
            token: Token {
                secret: token.to_string(),
                header,
            },
            retry: RetryPolicy::default(),
        })
    }

    /// Replaces the retry policy (tests use short delays).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    fn service_name(&self, which: Service) -> &str {
        match which {
            Service::Kafka => &self.config.kafka_service,
            Service::Pg => &self.config.pg_service,
        }
    }
}
