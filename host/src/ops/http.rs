//! The `[http]` server of `host run`, `host consume` and `host produce`:
//! `/metrics`, `/health/live`, `/health/ready`, `/status` and the status page
//! at `/`. HTTP/1.1 on hyper; a problem here (the port in use, say) is logged
//! and never stops the pipeline.

use super::http_guard::{self, MAX_BODY_BYTES};
use super::metrics::{self, METRICS};
use super::state;
use super::status;
use crate::config::Pipeline;
use crate::postgres;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

/// The status page: one self-contained file (no CDN), embedded in the binary.
const PAGE: &str = include_str!("status.html");
/// How often Kafka and PostgreSQL are probed, lag computed and throughput sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(2);
/// Longest a request may keep a connection open.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

struct Shared {
    pipeline: Pipeline,
    /// The collector's PostgreSQL session, also used by `/status`.
    pg: Mutex<Option<tokio_postgres::Client>>,
}

/// The running server; dropping it stops it.
pub struct Server {
    pub addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts the server when `[http] listen` is set. A port in use or any other
/// bind error is logged, naming the address and the key to change, and the
/// host goes on without it.
pub async fn start(pipeline: &Pipeline) -> Option<Server> {
    let addr = pipeline.http.listen?;
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(
                "cannot serve metrics and status on {addr}: {e}; the pipeline runs without them\n  hint: set [http] listen in {} to a free address (e.g. \"127.0.0.1:9188\"), or listen = \"\" to turn the server off",
                pipeline.path.display()
            );
            return None;
        }
    };
    let addr = listener.local_addr().unwrap_or(addr);
    // Cleared once every plugin is loaded and the topics exist.
    state::problem(
        "host",
        Some("starting: loading plugins and creating topics".to_string()),
    );
    tracing::info!(%addr, "serving /metrics, /health/live, /health/ready, /status and the status page");
    let shared = Arc::new(Shared {
        pipeline: pipeline.clone(),
        pg: Mutex::new(None),
    });
    let accept = tokio::spawn(accept_loop(listener, shared.clone()));
    let collect = tokio::spawn(collect_loop(shared));
    Some(Server {
        addr,
        tasks: vec![accept, collect],
    })
}

async fn accept_loop(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(http_guard::MAX_CONNECTIONS));
    loop {
        let (mut stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors, say: wait and go on.
                tracing::warn!(error = %e, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Over the cap: say so and close, without a task per connection.
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(http_guard::BUSY_REPLY)).await;
            });
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, std::convert::Infallible>(route(&shared, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(http_guard::HEADER_READ_TIMEOUT)
                .max_buf_size(http_guard::MAX_HEADER_BYTES)
                .serve_connection(TokioIo::new(stream), service);
            if let Ok(Err(e)) = tokio::time::timeout(REQUEST_TIMEOUT, conn).await {
                tracing::debug!(error = %e, "HTTP connection ended");
            }
        });
    }
}

fn reply(code: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = code;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    r
}

fn json(code: StatusCode, value: &impl serde::Serialize) -> Response<Full<Bytes>> {
    match serde_json::to_string_pretty(value) {
        Ok(text) => reply(code, "application/json", text),
        Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", e.to_string()),
    }
}

async fn route(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    METRICS.http_requests.inc();
    let host = req.headers().get(hyper::header::HOST).map(|h| h.to_str().unwrap_or(""));
    if !http_guard::host_allowed(host, &shared.pipeline.http.allowed_hosts) {
        return reply(
            StatusCode::MISDIRECTED_REQUEST,
            "text/plain",
            format!(
                "this server does not answer for host {:?}; to reach it under that name, add the name to [http] allowed_hosts in {}\n",
                host.unwrap_or_default(),
                shared.pipeline.path.display()
            ),
        );
    }
    let body = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if body.is_some_and(|n| n > MAX_BODY_BYTES) || req.headers().contains_key(hyper::header::TRANSFER_ENCODING) {
        return reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            "text/plain",
            format!("requests carry at most {MAX_BODY_BYTES} bytes of body\n"),
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "only GET\n");
    }
    match req.uri().path() {
        "/metrics" => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            METRICS.encode(),
        ),
        "/health/live" => json(StatusCode::OK, &serde_json::json!({ "live": true })),
        "/health/ready" => {
            let why = state::not_ready(&state::lock());
            let code = if why.is_empty() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json(code, &serde_json::json!({ "ready": why.is_empty(), "not_ready": why }))
        }
        "/status" => {
            // The pipeline as it runs now, after any reload.
            let pipeline = state::pipeline().unwrap_or_else(|| shared.pipeline.clone());
            let pg = shared.pg.lock().await;
            let s = status::build(&pipeline, pg.as_ref(), None, None, true).await;
            json(StatusCode::OK, &s)
        }
        "/" | "/index.html" => reply(StatusCode::OK, "text/html; charset=utf-8", PAGE),
        other => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            format!("no page {other:?}; try /, /status, /metrics, /health/live or /health/ready\n"),
        ),
    }
}

/// Probes PostgreSQL and Kafka, computes lag and samples throughput, every
/// [`SAMPLE_EVERY`].
async fn collect_loop(shared: Arc<Shared>) {
    let timeout = shared.pipeline.audit.timeout;
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut ticks = 0u64;
    loop {
        tick.tick().await;
        probe_postgres(&shared, timeout).await;
        // Every fifth tick (10 s): the registry serves every client of a
        // company, and one request a sample would be most of its load here.
        if ticks.is_multiple_of(5) {
            probe_registry(&shared, timeout).await;
        }
        ticks += 1;
        let topics: Vec<String> = {
            let live = state::lock();
            let mut t: Vec<String> = live
                .sinks
                .values()
                .map(|s| s.topic.clone())
                .chain(live.generators.values().map(|g| g.topic.clone()))
                .collect();
            t.sort();
            t.dedup();
            t
        };
        let ends = if topics.is_empty() {
            None
        } else {
            Some(status::end_offsets(&shared.pipeline, topics, timeout).await)
        };
        sample(ends, started.elapsed() < SAMPLE_EVERY * 2);
        let f = state::findings();
        let count = |s: crate::findings::Severity| f.iter().filter(|x| x.severity == s).count() as i64;
        use crate::findings::Severity;
        metrics::audit_counts(count(Severity::Info), count(Severity::Warning), count(Severity::Error));
    }
}

async fn probe_postgres(shared: &Shared, timeout: Duration) {
    let mut pg = shared.pg.lock().await;
    let alive = match pg.as_ref() {
        Some(c) if !c.is_closed() => tokio::time::timeout(timeout, c.simple_query("SELECT 1"))
            .await
            .is_ok_and(|r| r.is_ok()),
        _ => false,
    };
    let result = if alive {
        Ok(())
    } else {
        *pg = None;
        match tokio::time::timeout(timeout, postgres::connect(&shared.pipeline.postgres)).await {
            Ok(Ok(c)) => {
                *pg = Some(c);
                Ok(())
            }
            Ok(Err(e)) => Err(format!("{e:#}")),
            Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
        }
    };
    let mut live = state::lock();
    live.postgres = state::Reach {
        ok: Some(result.is_ok()),
        error: result.err().map(|e| e.replace('\n', " ")),
        checked_at_ms: state::now_ms(),
    };
}

/// Asks the schema registry for its subjects when the running pipeline
/// reads or writes a registry format, so `/health/ready` says when it does
/// not answer (a sink would wait on it) even while no message comes.
async fn probe_registry(shared: &Shared, timeout: Duration) {
    let pipeline = state::pipeline().unwrap_or_else(|| shared.pipeline.clone());
    let uses = pipeline
        .sinks
        .iter()
        .any(|s| s.registry.format.is_registry() || s.registry.key_format.is_registry())
        || pipeline.generators.iter().any(|g| g.encoding.is_some());
    let result = match (&pipeline.schema_registry, uses) {
        (Some(config), true) => match crate::registry::client::Registry::shared(config) {
            Ok(registry) => match tokio::time::timeout(timeout, registry.ping()).await {
                Ok(Ok(_)) => Some(Ok(())),
                Ok(Err(e)) => Some(Err(e.to_string())),
                Err(_) => Some(Err(format!("no answer within {} ms", timeout.as_millis()))),
            },
            Err(e) => Some(Err(e.to_string())),
        },
        _ => None,
    };
    state::lock().registry = match result {
        None => state::Reach::default(),
        Some(result) => state::Reach {
            ok: Some(result.is_ok()),
            error: result.err().map(|e| e.replace('\n', " ")),
            checked_at_ms: state::now_ms(),
        },
    };
}

fn sample(ends: Option<status::EndOffsets>, first: bool) {
    let now = state::now_ms();
    let mut live = state::lock();
    if let Some(ends) = &ends {
        live.kafka = state::Reach {
            ok: Some(ends.is_ok()),
            error: ends.as_ref().err().map(|e| e.replace('\n', " ")),
            checked_at_ms: now,
        };
    }
    for (name, s) in live.sinks.iter_mut() {
        if let Some(Ok(ends)) = &ends
            && let Some(end) = ends.get(&s.topic)
        {
            s.end = end.iter().map(|(p, o)| (*p, *o)).collect();
            for (p, e) in &s.end {
                let stored = s.stored.get(p).copied().unwrap_or(0);
                metrics::lag(name, *p, (e - stored).max(0));
            }
        }
        if let Some((t, rows)) = s.last_sample
            && now > t
        {
            let rate = s.rows.saturating_sub(rows) as f64 * 1000.0 / (now - t) as f64;
            s.throughput.push_back((now, rate));
            while s.throughput.len() > state::HISTORY_SAMPLES {
                s.throughput.pop_front();
            }
        } else if first {
            s.throughput.push_back((now, 0.0));
        }
        s.last_sample = Some((now, s.rows));
    }
}
