//! The schema registry's REST API (Confluent's, which Aiven's Karapace
//! serves), through reqwest with the same TLS stack as the Aiven client:
//! fetch a schema by id (its `references` resolved recursively), the latest
//! version of a subject, register a schema under a subject.
//!
//! Compiled schemas are cached per id for the life of the process, so a
//! sink asks the registry once per id whatever the number of messages
//! ([`Registry::shared`] hands every sink of the process the same client).
//! Unreachable registry or a 5xx is retryable ([`RegistryError::is_retryable`]):
//! sinks wait as for a PostgreSQL outage. An id the registry does not know
//! is permanent: its messages are dead letters.

use super::codec::{CodecError, Compiled, SchemaType};
use crate::config::registry::RegistryConfig;
use crate::error_text::one_line;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

const CONTENT: &str = "application/vnd.schemaregistry.v1+json";
const CONNECT_TIMEOUT_MS: u64 = 5_000;
const REQUEST_TIMEOUT_MS: u64 = 10_000;
/// Deeper reference chains are refused (a cycle would never end).
const MAX_REFERENCE_DEPTH: usize = 16;

#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    #[error("schema registry {url} did not answer ({reason}); retrying")]
    Unreachable { url: String, reason: String },
    #[error("schema registry {url} failed ({status}) on {what}: {message}; retrying")]
    Server {
        url: String,
        status: u16,
        what: String,
        message: String,
    },
    #[error(
        "schema registry {url} refused the credentials ({status}): {message}\n  hint: check schema_registry.username and the password schema_registry.password_env (or _file) names"
    )]
    Refused { url: String, status: u16, message: String },
    #[error("schema id {id} is not in the schema registry {url}: {message}")]
    UnknownId { id: u32, url: String, message: String },
    #[error("subject {subject:?} is not in the schema registry {url}: {message}")]
    UnknownSubject {
        subject: String,
        url: String,
        message: String,
    },
    #[error("the schema registry refused the schema for subject {subject:?}: {message}")]
    Incompatible { subject: String, message: String },
    #[error("the schema registry answered {status} on {what}: {message}")]
    Other { status: u16, what: String, message: String },
    #[error("schema id {id}: {source}")]
    Schema { id: u32, source: CodecError },
    #[error("{0}")]
    Setup(String),
}

impl RegistryError {
    /// Waiting may cure it (an outage), unlike a refusal or an unknown id.
    pub fn is_retryable(&self) -> bool {
        matches!(self, RegistryError::Unreachable { .. } | RegistryError::Server { .. })
    }
}

/// A schema as the registry holds it, compiled.
pub struct Resolved {
    pub id: u32,
    pub compiled: Compiled,
    /// The subjects the schema is registered under (empty when the registry
    /// does not say), for the mapper's `schema-info`.
    pub subjects: Vec<String>,
}

impl Resolved {
    /// The subject to name for a value read under `preferred` (the sink's
    /// subject): that one when the schema is registered there, else the
    /// only one it is registered under, else none.
    pub fn subject(&self, preferred: &str) -> Option<&str> {
        if let Some(s) = self.subjects.iter().find(|s| *s == preferred) {
            return Some(s);
        }
        match self.subjects.as_slice() {
            [only] => Some(only),
            _ => None,
        }
    }
}

/// The latest version of a subject.
pub struct Latest {
    pub subject: String,
    pub version: u32,
    pub schema: Arc<Resolved>,
}

/// The process's clients, by url and user.
type Clients = Mutex<HashMap<(String, Option<String>), Arc<Registry>>>;

/// A client of one registry, with its per-id cache.
pub struct Registry {
    http: reqwest::Client,
    url: String,
    auth: Option<HeaderValue>,
    cache: Mutex<HashMap<u32, Result<Arc<Resolved>, RegistryError>>>,
    /// One fetch at a time, so two sinks wanting one id make one request.
    fetching: tokio::sync::Mutex<()>,
    requests: AtomicU64,
}

#[derive(Deserialize)]
struct Reference {
    name: String,
    subject: String,
    version: i64,
}

#[derive(Deserialize)]
struct SchemaReply {
    schema: String,
    #[serde(default, rename = "schemaType")]
    schema_type: Option<SchemaType>,
    #[serde(default)]
    references: Vec<Reference>,
    // Present on /subjects/{s}/versions/{v}.
    #[serde(default)]
    id: Option<u32>,
    #[serde(default)]
    version: Option<u32>,
}

#[derive(Deserialize)]
struct ErrorReply {
    #[serde(default)]
    message: String,
}

impl Registry {
    /// The process's client for this registry (one per url and user), so
    /// its cache serves every sink and generator.
    pub fn shared(config: &RegistryConfig) -> Result<Arc<Registry>, RegistryError> {
        static ALL: OnceLock<Clients> = OnceLock::new();
        let all = ALL.get_or_init(Default::default);
        let key = (config.url.clone(), config.username.clone());
        let mut all = all.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(r) = all.get(&key) {
            return Ok(r.clone());
        }
        let registry = Arc::new(Registry::new(config)?);
        all.insert(key, registry.clone());
        Ok(registry)
    }

    /// A client of its own (tests; `shared` for the pipeline).
    pub fn new(config: &RegistryConfig) -> Result<Registry, RegistryError> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("wasm-stream-host/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
            .timeout(Duration::from_millis(REQUEST_TIMEOUT_MS));
        if let Some(ca) = &config.ca {
            let pem = std::fs::read(ca).map_err(|e| {
                RegistryError::Setup(format!("schema_registry.ca {} cannot be read: {e}", ca.display()))
            })?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                RegistryError::Setup(format!(
                    "schema_registry.ca {} holds no PEM certificate: {e}",
                    ca.display()
                ))
            })?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder
            .build()
            .map_err(|e| RegistryError::Setup(format!("cannot set up the schema registry client: {e}")))?;
        let auth = match (&config.username, &config.password) {
            (Some(user), Some(password)) => {
                use std::io::Write as _;
                let mut raw = Vec::new();
                let _ = write!(raw, "{user}:{}", password.expose());
                let mut value = HeaderValue::from_str(&format!("Basic {}", base64(&raw))).map_err(|_| {
                    RegistryError::Setup(
                        "schema_registry.username or its password holds characters a header cannot carry".into(),
                    )
                })?;
                value.set_sensitive(true);
                Some(value)
            }
            _ => None,
        };
        Ok(Registry {
            http,
            url: config.url.clone(),
            auth,
            cache: Mutex::new(HashMap::new()),
            fetching: tokio::sync::Mutex::new(()),
            requests: AtomicU64::new(0),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// How many requests this client has made (the benchmark's figure).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The schema of `id` if it was fetched already (hit or permanent miss).
    pub fn cached(&self, id: u32) -> Option<Result<Arc<Resolved>, RegistryError>> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&id)
            .cloned()
    }

    /// The schema of `id`, from the cache or the registry. Permanent
    /// failures are cached too; retryable ones are not.
    pub async fn schema(&self, id: u32) -> Result<Arc<Resolved>, RegistryError> {
        if let Some(known) = self.cached(id) {
            return known;
        }
        let _one = self.fetching.lock().await;
        if let Some(known) = self.cached(id) {
            return known;
        }
        let result = self.fetch(id).await;
        match &result {
            Err(e) if e.is_retryable() => {}
            Err(RegistryError::Refused { .. }) => {}
            _ => {
                self.cache
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(id, result.clone());
            }
        }
        result
    }

    async fn fetch(&self, id: u32) -> Result<Arc<Resolved>, RegistryError> {
        let what = format!("schema id {id}");
        let reply: SchemaReply = match self.call(Method::GET, &format!("schemas/ids/{id}"), None, &what).await {
            Err(RegistryError::Other {
                status: 404, message, ..
            }) => {
                return Err(RegistryError::UnknownId {
                    id,
                    url: self.url.clone(),
                    message,
                });
            }
            other => other?,
        };
        let kind = reply.schema_type.unwrap_or_default();
        let references = self.references(&reply.references, 0).await?;
        let compiled =
            Compiled::parse(kind, &reply.schema, &references).map_err(|source| RegistryError::Schema { id, source })?;
        let subjects = self.subjects_of(id).await?;
        Ok(Arc::new(Resolved { id, compiled, subjects }))
    }

    /// The subjects `id` is registered under (`GET /schemas/ids/{id}/versions`).
    /// A registry that does not answer it (an older one) gives none; only an
    /// outage is an error, so the caller retries.
    async fn subjects_of(&self, id: u32) -> Result<Vec<String>, RegistryError> {
        #[derive(Deserialize)]
        struct Version {
            subject: String,
        }
        let what = format!("the subjects of schema id {id}");
        match self
            .call::<Vec<Version>>(Method::GET, &format!("schemas/ids/{id}/versions"), None, &what)
            .await
        {
            Ok(versions) => {
                let mut subjects: Vec<String> = versions.into_iter().map(|v| v.subject).collect();
                subjects.dedup();
                Ok(subjects)
            }
            Err(e) if e.is_retryable() || matches!(e, RegistryError::Refused { .. }) => Err(e),
            Err(e) => {
                tracing::debug!(id, error = %e, "the registry does not say which subjects hold a schema");
                Ok(Vec::new())
            }
        }
    }

    /// The texts a schema references, each after the ones it references.
    async fn references(&self, refs: &[Reference], depth: usize) -> Result<Vec<(String, String)>, RegistryError> {
        let mut out = Vec::new();
        for r in refs {
            if depth >= MAX_REFERENCE_DEPTH {
                return Err(RegistryError::Setup(format!(
                    "schema reference {:?} is nested more than {MAX_REFERENCE_DEPTH} deep (a cycle?)",
                    r.name
                )));
            }
            let version = if r.version < 0 {
                "latest".to_string()
            } else {
                r.version.to_string()
            };
            let what = format!("reference {:?} (subject {:?} version {version})", r.name, r.subject);
            let path = format!("subjects/{}/versions/{version}", encode_segment(&r.subject));
            let reply: SchemaReply = self.call(Method::GET, &path, None, &what).await?;
            let nested = Box::pin(self.references(&reply.references, depth + 1)).await?;
            for n in nested {
                if !out.iter().any(|(name, _)| *name == n.0) {
                    out.push(n);
                }
            }
            if !out.iter().any(|(name, _)| *name == r.name) {
                out.push((r.name.clone(), reply.schema));
            }
        }
        Ok(out)
    }

    /// The latest version of `subject`, compiled (and cached by its id).
    pub async fn latest(&self, subject: &str) -> Result<Latest, RegistryError> {
        let what = format!("the latest version of subject {subject:?}");
        let path = format!("subjects/{}/versions/latest", encode_segment(subject));
        let reply: SchemaReply = match self.call(Method::GET, &path, None, &what).await {
            Err(RegistryError::Other {
                status: 404, message, ..
            }) => {
                return Err(RegistryError::UnknownSubject {
                    subject: subject.to_string(),
                    url: self.url.clone(),
                    message,
                });
            }
            other => other?,
        };
        let id = reply
            .id
            .ok_or_else(|| RegistryError::Setup(format!("the registry's answer for {what} has no id")))?;
        let version = reply.version.unwrap_or(0);
        let schema = match self.cached(id) {
            Some(Ok(known)) => known,
            _ => {
                let kind = reply.schema_type.unwrap_or_default();
                let references = self.references(&reply.references, 0).await?;
                let compiled = Compiled::parse(kind, &reply.schema, &references)
                    .map_err(|source| RegistryError::Schema { id, source })?;
                let subjects = self.subjects_of(id).await?;
                let resolved = Arc::new(Resolved { id, compiled, subjects });
                self.cache
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(id, Ok(resolved.clone()));
                resolved
            }
        };
        Ok(Latest {
            subject: subject.to_string(),
            version,
            schema,
        })
    }

    /// Registers `text` under `subject` (the registry answers the existing
    /// id when it holds it already); a refusal names the subject and the
    /// registry's reason.
    pub async fn register(&self, subject: &str, kind: SchemaType, text: &str) -> Result<u32, RegistryError> {
        #[derive(Deserialize)]
        struct Registered {
            id: u32,
        }
        let mut body = serde_json::json!({ "schema": text });
        if kind != SchemaType::Avro {
            body["schemaType"] = serde_json::to_value(kind).unwrap_or_default();
        }
        let what = format!("registering a schema under subject {subject:?}");
        let path = format!("subjects/{}/versions", encode_segment(subject));
        match self.call::<Registered>(Method::POST, &path, Some(body), &what).await {
            Ok(r) => Ok(r.id),
            Err(RegistryError::Other {
                status: 409 | 422,
                message,
                ..
            }) => Err(RegistryError::Incompatible {
                subject: subject.to_string(),
                message,
            }),
            Err(e) => Err(e),
        }
    }

    /// Whether the registry answers (and takes the credentials): `host
    /// validate` and `/health/ready`.
    pub async fn ping(&self) -> Result<usize, RegistryError> {
        let subjects: Vec<String> = self.call(Method::GET, "subjects", None, "the list of subjects").await?;
        Ok(subjects.len())
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
        what: &str,
    ) -> Result<T, RegistryError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut request = self
            .http
            .request(method, format!("{}/{path}", self.url))
            .header(ACCEPT, CONTENT);
        if let Some(auth) = &self.auth {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        if let Some(body) = body {
            request = request
                .header(CONTENT_TYPE, CONTENT)
                .body(serde_json::to_vec(&body).unwrap_or_default());
        }
        let response = request.send().await.map_err(|e| RegistryError::Unreachable {
            url: self.url.clone(),
            reason: one_line(&e),
        })?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| RegistryError::Unreachable {
            url: self.url.clone(),
            reason: one_line(&e),
        })?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| RegistryError::Other {
                status: status.as_u16(),
                what: what.to_string(),
                message: format!("the answer is not the JSON expected: {e}"),
            });
        }
        let message = serde_json::from_slice::<ErrorReply>(&bytes)
            .map(|r| r.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned());
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => RegistryError::Refused {
                url: self.url.clone(),
                status: status.as_u16(),
                message,
            },
            s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => RegistryError::Server {
                url: self.url.clone(),
                status: s.as_u16(),
                what: what.to_string(),
                message,
            },
            s => RegistryError::Other {
                status: s.as_u16(),
                what: what.to_string(),
                message,
            },
        })
    }
}

/// A subject in a URL path (subjects may hold `/`, `:` and other characters).
fn encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Standard base64 with padding (basic auth).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_with_padding() {
        assert_eq!(base64(b"avnadmin:localdev"), "YXZuYWRtaW46bG9jYWxkZXY=");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
        assert_eq!(base64(b""), "");
    }

    #[test]
    fn subjects_are_escaped_in_paths() {
        assert_eq!(encode_segment("langs-value"), "langs-value");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn only_outages_are_retryable() {
        let url = "https://r".to_string();
        assert!(
            RegistryError::Unreachable {
                url: url.clone(),
                reason: "refused".into()
            }
            .is_retryable()
        );
        assert!(
            !RegistryError::UnknownId {
                id: 1,
                url,
                message: "Schema not found".into()
            }
            .is_retryable()
        );
    }
}
