//! The project CA and the services' connection details: the Kafka
//! certificate listener with its access certificate and key, the PostgreSQL URI.

use super::{AivenError, Client, Service};
use reqwest::{Method, Url};
use serde::Deserialize;
use std::fmt;

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

impl Client {
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
}

fn not_ready(service: &str, raw: &RawService) -> AivenError {
    AivenError::NotReady {
        service: service.to_string(),
        state: raw.state.clone().unwrap_or_else(|| "unknown".into()),
    }
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
