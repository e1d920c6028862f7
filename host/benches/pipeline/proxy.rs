//! A TCP proxy that puts PostgreSQL a round trip away: the bytes of each
//! direction are forwarded half the round-trip time after they were read, in
//! order, with no limit on what is in flight (a long fat pipe, as a managed
//! database in another zone). No root and no `tc` needed; TLS passes through.
//!
//! It counts the client's turns: every time the client sends after the
//! server's last bytes reached it, a new round trip began. Divided by the
//! batches written meanwhile, that is the round trips a batch costs.

use anyhow::Context as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

const CHUNK_BYTES: usize = 64 * 1024;

pub struct Proxy {
    pub port: u16,
    turns: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards each connection to
    /// `upstream` (`host:port`) with `rtt` added to every round trip.
    pub async fn start(upstream: &str, rtt: Duration) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let turns = Arc::new(AtomicU64::new(0));
        let (upstream, counted) = (upstream.to_string(), turns.clone());
        let task = tokio::spawn(async move {
            // Dropped with the accept loop: every connection ends with the proxy.
            let mut connections = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let (upstream, turns) = (upstream.clone(), counted.clone());
                connections.spawn(async move {
                    if let Err(e) = connection(client, &upstream, rtt / 2, turns).await {
                        eprintln!("bench: proxy connection ended: {e:#}");
                    }
                });
                while connections.try_join_next().is_some() {}
            }
        });
        Ok(Self { port, turns, task })
    }

    /// The client's turns so far, over every connection.
    pub fn turns(&self) -> Arc<AtomicU64> {
        self.turns.clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn connection(client: TcpStream, upstream: &str, delay: Duration, turns: Arc<AtomicU64>) -> anyhow::Result<()> {
    let server = TcpStream::connect(upstream)
        .await
        .with_context(|| format!("cannot reach {upstream}"))?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    // True once the server's bytes reached the client: the client's next
    // bytes start a round trip.
    let server_spoke = Arc::new(AtomicBool::new(true));
    let up = {
        let spoke = server_spoke.clone();
        pipe(
            client_read,
            server_write,
            delay,
            move || {
                if spoke.swap(false, Ordering::AcqRel) {
                    turns.fetch_add(1, Ordering::Relaxed);
                }
            },
            || {},
        )
    };
    let down = pipe(
        server_read,
        client_write,
        delay,
        || {},
        move || server_spoke.store(true, Ordering::Release),
    );
    let (a, b) = tokio::join!(up, down);
    a.and(b)
}

/// Forwards `from` to `to`, each chunk `delay` after it was read; `on_read`
/// runs as a chunk is read, `on_written` once it is written.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
    on_read: impl Fn() + Send + 'static,
    on_written: impl Fn() + Send + 'static,
) -> anyhow::Result<()> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            to.write_all(&bytes).await?;
            on_written();
        }
        to.shutdown().await
    });
    let mut buf = vec![0u8; CHUNK_BYTES];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        on_read();
        if tx.send((Instant::now() + delay, buf[..n].to_vec())).is_err() {
            break;
        }
    }
    drop(tx);
    writer.await??;
    Ok(())
}
