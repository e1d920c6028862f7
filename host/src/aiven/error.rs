//! What an Aiven call can fail with: each message says what was being done
//! and what to fix.

const TOKEN_HINT: &str = "make a new token in the Aiven console (User information → Tokens → Generate token) or with `avn user access-token create --description wasm-stream`";

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
