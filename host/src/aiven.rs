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

use crate::config::{AivenConfig, TopicConfig};
use crate::error_text::one_line;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use std::fmt;
use std::time::Duration;

/// Attempts per request, the first included.
pub const DEFAULT_ATTEMPTS: u32 = 5;
/// Backoff before the second attempt; it doubles for each further one.
pub const DEFAULT_FIRST_BACKOFF_MS: u64 = 500;
/// Longest backoff between two attempts.
pub const DEFAULT_MAX_BACKOFF_MS: u64 = 8_000;
/// Longest `Retry-After` honoured; a longer one is cut to this.
pub const DEFAULT_MAX_RETRY_AFTER_MS: u64 = 60_000;
/// Deadline of one attempt, from connecting to the end of the response.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 30_000;
/// Longest piece of a response body quoted in an error.
const MAX_QUOTED_CHARS: usize = 300;

const TOKEN_HINT: &str = "make a new token in the Aiven console (User information → Tokens → Generate token) or with `avn user access-token create --description wasm-stream`";

/// How a request is retried. Tests shorten the delays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    pub max_retry_after: Duration,
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: DEFAULT_ATTEMPTS,
            first_backoff: Duration::from_millis(DEFAULT_FIRST_BACKOFF_MS),
            max_backoff: Duration::from_millis(DEFAULT_MAX_BACKOFF_MS),
            max_retry_after: Duration::from_millis(DEFAULT_MAX_RETRY_AFTER_MS),
            request_timeout: Duration::from_millis(DEFAULT_REQUEST_TIMEOUT_MS),
        }
    }
}

impl RetryPolicy {
    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        self.first_backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// Why an Aiven call failed. `action` says what was being done, e.g.
/// `create topic "langs" on service "kafka-demo" of project "demo"`.
#[derive(Debug, thiserror::Error)]
pub enum AivenError {
    #[error(
        "the Aiven API token is not set: {renew}\n  hint: {TOKEN_HINT}; the token is read from {var} only, never from the pipeline file"
    )]
    TokenMissing { var: String, renew: String },
    #[error(
        "the Aiven API token in {var} holds characters an HTTP header cannot carry (a stray newline?)\n  hint: {renew}, with the token alone"
    )]
    TokenMalformed { var: String, renew: String },
    #[error(
        "cannot read the Aiven API token: aiven.token_file {path} {reason}\n  hint: mount the secret holding the token there, readable by the user running the host, or use aiven.token_env"
    )]
    TokenFile { path: String, reason: String },
    #[error("cannot set up the HTTPS client for the Aiven API: {reason}")]
    Setup { reason: String },
    #[error(
        "{action}: Aiven rejected the API token in {var} (401 Unauthorized: {message})\n  hint: the token is wrong, expired or revoked; {TOKEN_HINT}, then {renew}"
    )]
    Unauthorized {
        action: String,
        var: String,
        renew: String,
        message: String,
    },
    #[error(
        "{action}: Aiven refused it (403 Forbidden: {message})\n  hint: the token's user needs the developer, operator or admin role in project {project:?} (Aiven console → the project → Members), and the token must allow this machine's IP address"
    )]
    Forbidden {
        action: String,
        project: String,
        message: String,
    },
    #[error("{action}: {what} was not found (404: {message})\n  hint: {hint}")]
    NotFound {
        action: String,
        what: String,
        message: String,
        hint: String,
    },
    #[error("{action}: it already exists (409: {message})")]
    Conflict { action: String, message: String },
    #[error("{action}: Aiven refused the request ({status}: {message})")]
    Rejected {
        action: String,
        status: u16,
        message: String,
    },
    #[error(
        "{action}: Aiven still answered 429 Too Many Requests after {attempts} attempts\n  hint: something else is using this token heavily; wait a minute and run the command again"
    )]
    RateLimited { action: String, attempts: u32 },
    #[error(
        "{action}: Aiven answered {status} {attempts} times in a row ({message})\n  hint: the API is having trouble; see https://status.aiven.io and run the command again later"
    )]
    Unavailable {
        action: String,
        status: u16,
        attempts: u32,
        message: String,
    },
    #[error(
        "{action}: cannot reach the Aiven API at {url} after {attempts} attempts: {reason}\n  hint: check the network and aiven.api_url"
    )]
    Unreachable {
        action: String,
        url: String,
        attempts: u32,
        reason: String,
    },
    #[error("{action}: unexpected answer from Aiven: {reason}")]
    Unexpected { action: String, reason: String },
    #[error(
        "aiven.{key} {service:?} is a {found} service, not {expected}; set it to the name of your {product} service"
    )]
    WrongServiceType {
        key: &'static str,
        service: String,
        found: String,
        expected: &'static str,
        product: &'static str,
    },
    #[error(
        "service {service:?} has no connection details yet (state {state}); wait until the Aiven console shows it Running, then run the command again"
    )]
    NotReady { service: String, state: String },
    #[error(
        "service {service:?} offers no client-certificate access to Kafka\n  hint: enable it in the Aiven console (the service → Overview → Connection information → Client certificate) or with `avn service update {service} -c kafka_authentication_methods.certificate=true`"
    )]
    NoCertificateAuth { service: String },
}

/// Whether a create call made the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    Created,
    AlreadyExists,
}

/// A Kafka topic as Aiven lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    pub partitions: i32,
    pub replication: i32,
}

/// What a client needs to reach Kafka with a client certificate.
#[derive(Clone)]
pub struct KafkaAccess {
    /// `host:port` of the certificate-authenticated listener.
    pub bootstrap_servers: String,
    /// PEM access certificate (`service.cert`).
    pub access_cert: String,
    /// PEM private key (`service.key`): a secret.
    pub access_key: String,
    /// The Karapace schema registry's URL (without password) and user, when
    /// the service has it enabled (`schema_registry` in its user config).
    pub schema_registry: Option<(String, String)>,
}

impl fmt::Debug for KafkaAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaAccess")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .finish_non_exhaustive()
    }
}

/// A PostgreSQL service URI, which holds the password.
#[derive(Clone)]
pub struct ServiceUri(String);

impl ServiceUri {
    /// The URI, password included: never print it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ServiceUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServiceUri(<redacted>)")
    }
}

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

    /// The topics of the Kafka service.
    pub async fn list_topics(&self) -> Result<Vec<TopicInfo>, AivenError> {
        #[derive(Deserialize)]
        struct Reply {
            topics: Vec<Topic>,
        }
        #[derive(Deserialize)]
        struct Topic {
            topic_name: String,
            #[serde(default)]
            partitions: i32,
            #[serde(default)]
            replication: i32,
        }
        let service = &self.config.kafka_service;
        let action = format!("list the topics of service {service:?}");
        let reply: Reply = self
            .call(
                Method::GET,
                &["service", service, "topic"],
                None,
                Some(Service::Kafka),
                &action,
            )
            .await?;
        Ok(reply
            .topics
            .into_iter()
            .map(|t| TopicInfo {
                name: t.topic_name,
                partitions: t.partitions,
                replication: t.replication,
            })
            .collect())
    }

    /// Creates a topic on the Kafka service.
    pub async fn create_topic(&self, topic: &TopicConfig) -> Result<Created, AivenError> {
        let service = &self.config.kafka_service;
        let action = format!("create topic {:?} on service {service:?}", topic.name);
        let body = json!({
            "topic_name": topic.name,
            "partitions": topic.partitions,
            "replication": topic.replication,
        });
        self.create(Service::Kafka, "topic", &body, &action).await
    }

    /// Creates a database on the PostgreSQL service.
    pub async fn create_database(&self, name: &str) -> Result<Created, AivenError> {
        let service = &self.config.pg_service;
        let action = format!("create database {name:?} on service {service:?}");
        let body = json!({ "database": name });
        self.create(Service::Pg, "db", &body, &action).await
    }

    /// `POST .../service/{service}/{what}`; 409 (it exists) is success.
    async fn create(
        &self,
        which: Service,
        what: &str,
        body: &serde_json::Value,
        action: &str,
    ) -> Result<Created, AivenError> {
        let service = self.service_name(which);
        let reply = self
            .call::<serde_json::Value>(
                Method::POST,
                &["service", service, what],
                Some(body),
                Some(which),
                action,
            )
            .await;
        match reply {
            Ok(_) => Ok(Created::Created),
            Err(AivenError::Conflict { .. }) => Ok(Created::AlreadyExists),
            Err(e) => Err(e),
        }
    }

    fn service_name(&self, which: Service) -> &str {
        match which {
            Service::Kafka => &self.config.kafka_service,
            Service::Pg => &self.config.pg_service,
        }
    }

    /// The project's CA certificate (PEM), which signs both services' certificates.
    pub async fn project_ca(&self) -> Result<String, AivenError> {
        #[derive(Deserialize)]
        struct Reply {
            certificate: String,
        }
        let action = format!("read the CA certificate of project {:?}", self.config.project);
        let reply: Reply = self.call(Method::GET, &["kms", "ca"], None, None, &action).await?;
        Ok(reply.certificate)
    }

    /// The Kafka service's certificate listener and access certificate and key.
    pub async fn kafka_access(&self) -> Result<KafkaAccess, AivenError> {
        let service = &self.config.kafka_service;
        let raw = self.service(Service::Kafka, "kafka", "Aiven for Apache Kafka").await?;
        if raw.components.is_empty() && raw.service_uri.as_deref().unwrap_or_default().is_empty() {
            return Err(not_ready(service, &raw));
        }
        let certificate = |c: &&RawComponent| {
            c.component == "kafka" && c.kafka_authentication_method.as_deref().unwrap_or("certificate") == "certificate"
        };
        let listener = raw
            .components
            .iter()
            .filter(certificate)
            .find(|c| c.route.as_deref().is_none_or(|r| r == "dynamic" || r == "public"))
            .or_else(|| raw.components.iter().find(certificate));
        let bootstrap_servers = match (listener, &raw.service_uri) {
            (Some(c), _) => format!("{}:{}", c.host, c.port),
            (None, Some(uri)) if raw.components.is_empty() => uri.clone(),
            _ => {
                return Err(AivenError::NoCertificateAuth {
                    service: service.clone(),
                });
            }
        };
        let info = raw.connection_info.unwrap_or_default();
        let user = raw.users.iter().find(|u| u.username == "avnadmin");
        let schema_registry = info.schema_registry_uri.as_deref().and_then(registry_url).or_else(|| {
            let c = raw.components.iter().find(|c| c.component == "schema_registry")?;
            Some((format!("https://{}:{}", c.host, c.port), "avnadmin".to_string()))
        });
        let access_cert = info
            .kafka_access_cert
            .or_else(|| user.and_then(|u| u.access_cert.clone()));
        let access_key = info
            .kafka_access_key
            .or_else(|| user.and_then(|u| u.access_key.clone()));
        match (access_cert, access_key) {
            (Some(access_cert), Some(access_key)) => Ok(KafkaAccess {
                bootstrap_servers,
                access_cert,
                access_key,
                schema_registry,
            }),
            _ => Err(AivenError::NoCertificateAuth {
                service: service.clone(),
            }),
        }
    }

    /// The PostgreSQL service's URI (`postgres://avnadmin:PASSWORD@host:port/defaultdb?sslmode=require`).
    pub async fn pg_service_uri(&self) -> Result<ServiceUri, AivenError> {
        let raw = self.service(Service::Pg, "pg", "Aiven for PostgreSQL").await?;
        match &raw.service_uri {
            Some(uri) if !uri.is_empty() => Ok(ServiceUri(uri.clone())),
            _ => Err(not_ready(&self.config.pg_service, &raw)),
        }
    }

    async fn service(
        &self,
        which: Service,
        expected: &'static str,
        product: &'static str,
    ) -> Result<RawService, AivenError> {
        #[derive(Deserialize)]
        struct Reply {
            service: RawService,
        }
        let name = self.service_name(which);
        let action = format!("read service {name:?}");
        let reply: Reply = self
            .call(Method::GET, &["service", name], None, Some(which), &action)
            .await?;
        let raw = reply.service;
        if let Some(found) = raw.service_type.as_deref().filter(|t| *t != expected) {
            return Err(AivenError::WrongServiceType {
                key: which.key(),
                service: name.to_string(),
                found: found.to_string(),
                expected,
                product,
            });
        }
        Ok(raw)
    }

    /// `base/project/{project}/{segments...}`, each segment percent-encoded.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty()
                .push("project")
                .push(&self.config.project)
                .extend(segments);
        }
        url
    }

    /// One call with the retry rules of the module header.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&serde_json::Value>,
        service: Option<Service>,
        action: &str,
    ) -> Result<T, AivenError> {
        let url = self.url(segments);
        let retry = &self.retry;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt >= retry.attempts.max(1);
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .header(AUTHORIZATION, self.token.header.clone())
                .timeout(retry.request_timeout);
            if let Some(body) = body {
                request = request.json(body);
            }
            let failure = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let retry_after = retry_after(response.headers());
                    match response.text().await {
                        Ok(text) if status.is_success() => {
                            let text = if text.trim().is_empty() { "null" } else { text.as_str() };
                            // The body may hold secrets (keys, passwords): describe
                            // the mismatch without quoting values.
                            return serde_json::from_str(text).map_err(|e| {
                                let what = e.to_string();
                                let reason = match what.find("missing field") {
                                    Some(at) => what[at..].to_string(),
                                    None => format!(
                                        "the JSON does not have the documented shape (line {}, column {})",
                                        e.line(),
                                        e.column()
                                    ),
                                };
                                AivenError::Unexpected {
                                    action: action.to_string(),
                                    reason,
                                }
                            });
                        }
                        Ok(text) => Failure::Status {
                            status,
                            message: self.message(&text),
                            retry_after,
                        },
                        Err(e) => Failure::Transport(one_line(&e)),
                    }
                }
                Err(e) => Failure::Transport(one_line(&e)),
            };
            let why = match &failure {
                Failure::Status { status, message, .. } => format!("{status}: {message}"),
                Failure::Transport(reason) => self.redact(reason),
            };
            let wait = match failure {
                Failure::Status {
                    status: StatusCode::TOO_MANY_REQUESTS,
                    retry_after,
                    ..
                } => {
                    if last {
                        return Err(AivenError::RateLimited {
                            action: action.to_string(),
                            attempts: attempt,
                        });
                    }
                    retry_after
                        .unwrap_or_else(|| retry.backoff(attempt))
                        .min(retry.max_retry_after)
                }
                Failure::Status { status, message, .. } if status.is_server_error() => {
                    if last {
                        return Err(AivenError::Unavailable {
                            action: action.to_string(),
                            status: status.as_u16(),
                            attempts: attempt,
                            message,
                        });
                    }
                    retry.backoff(attempt)
                }
                Failure::Status { status, message, .. } => return Err(self.permanent(status, message, service, action)),
                Failure::Transport(reason) => {
                    if last {
                        return Err(AivenError::Unreachable {
                            action: action.to_string(),
                            url: self.base.as_str().trim_end_matches('/').to_string(),
                            attempts: attempt,
                            reason: self.redact(&reason),
                        });
                    }
                    retry.backoff(attempt)
                }
            };
            tracing::warn!(
                action,
                attempt,
                wait_ms = wait.as_millis() as u64,
                error = why,
                "Aiven API call failed; retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// The error for a 4xx answer that retrying cannot fix.
    fn permanent(&self, status: StatusCode, message: String, service: Option<Service>, action: &str) -> AivenError {
        let action = action.to_string();
        let project = &self.config.project;
        match status {
            StatusCode::UNAUTHORIZED => {
                let (var, renew) = token_place(&self.config);
                AivenError::Unauthorized {
                    action,
                    var,
                    renew,
                    message,
                }
            }
            StatusCode::FORBIDDEN => AivenError::Forbidden {
                action,
                project: project.clone(),
                message,
            },
            StatusCode::NOT_FOUND => {
                let lower = message.to_ascii_lowercase();
                let service = service.map(|s| (s.key(), self.service_name(s)));
                let project_hint = format!(
                    "check aiven.project in the pipeline file: the Aiven console shows your projects' names at the top of the page; the token's user must be a member of {project:?}"
                );
                let (what, hint) = match service {
                    Some((key, name)) if !lower.contains("project") => (
                        format!("service {name:?} in project {project:?}"),
                        format!(
                            "check aiven.{key} in the pipeline file: it must be the service's name as the Aiven console lists it in project {project:?}"
                        ),
                    ),
                    _ => (format!("project {project:?}"), project_hint),
                };
                AivenError::NotFound {
                    action,
                    what,
                    message,
                    hint,
                }
            }
            StatusCode::CONFLICT => AivenError::Conflict { action, message },
            _ => AivenError::Rejected {
                action,
                status: status.as_u16(),
                message,
            },
        }
    }

    /// The message of an Aiven error body (`{"message": ..., "errors": [...]}`),
    /// or the start of the body, with the token redacted.
    fn message(&self, text: &str) -> String {
        #[derive(Deserialize)]
        struct Body {
            message: Option<String>,
            #[serde(default)]
            errors: Vec<Detail>,
        }
        #[derive(Deserialize)]
        struct Detail {
            message: Option<String>,
        }
        let parsed = serde_json::from_str::<Body>(text).ok().and_then(|b| {
            b.message
                .filter(|m| !m.is_empty())
                .or_else(|| b.errors.into_iter().find_map(|e| e.message))
        });
        let message = match parsed {
            Some(m) => m.chars().take(MAX_QUOTED_CHARS).collect(),
            None if text.trim().is_empty() => "no details".to_string(),
            None => quote(text),
        };
        self.redact(&message)
    }

    fn redact(&self, text: &str) -> String {
        text.replace(&self.token.secret, "<redacted>")
    }
}

enum Failure {
    Status {
        status: StatusCode,
        message: String,
        retry_after: Option<Duration>,
    },
    Transport(String),
}

fn not_ready(service: &str, raw: &RawService) -> AivenError {
    AivenError::NotReady {
        service: service.to_string(),
        state: raw.state.clone().unwrap_or_else(|| "unknown".into()),
    }
}

/// `Retry-After` in seconds (the HTTP-date form falls back to the backoff).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

fn quote(text: &str) -> String {
    let short: String = text.trim().chars().take(MAX_QUOTED_CHARS).collect();
    format!("{short:?}")
}

// ---- Aiven's service shape (only the fields used) ----

#[derive(Deserialize)]
struct RawService {
    service_type: Option<String>,
    state: Option<String>,
    service_uri: Option<String>,
    #[serde(default)]
    components: Vec<RawComponent>,
    connection_info: Option<RawConnectionInfo>,
    #[serde(default)]
    users: Vec<RawUser>,
}

#[derive(Deserialize)]
struct RawComponent {
    component: String,
    host: String,
    port: u16,
    route: Option<String>,
    kafka_authentication_method: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawConnectionInfo {
    kafka_access_cert: Option<String>,
    kafka_access_key: Option<String>,
    /// `https://avnadmin:PASSWORD@host:port`.
    schema_registry_uri: Option<String>,
}

/// The registry URI's URL without the password, and its user.
fn registry_url(uri: &str) -> Option<(String, String)> {
    let mut url = Url::parse(uri).ok()?;
    let user = if url.username().is_empty() {
        "avnadmin".to_string()
    } else {
        url.username().to_string()
    };
    url.set_password(None).ok()?;
    url.set_username("").ok()?;
    Some((url.as_str().trim_end_matches('/').to_string(), user))
}

#[derive(Deserialize)]
struct RawUser {
    username: String,
    access_cert: Option<String>,
    access_key: Option<String>,
}
