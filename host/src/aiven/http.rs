//! The HTTP side of the Aiven client: one request with the retry rules of
//! the module header, and the error a 4xx answer becomes.

use super::{AivenError, Client, Service, token_place};
use crate::error_text::one_line;
use reqwest::header::{AUTHORIZATION, HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;
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

impl Client {
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
    pub(super) async fn call<T: DeserializeOwned>(
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

/// `Retry-After` in seconds (the HTTP-date form falls back to the backoff).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

fn quote(text: &str) -> String {
    let short: String = text.trim().chars().take(MAX_QUOTED_CHARS).collect();
    format!("{short:?}")
}
