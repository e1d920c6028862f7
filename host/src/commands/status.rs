//! `host status` and `host probe`: asking a running host (or, for the
//! status, PostgreSQL and Kafka directly) how it is doing.

use super::Exit;
use crate::config::Pipeline;
use std::path::Path;
use std::time::Duration;

/// `host probe`: exit 0 when `url` answers 2xx within `timeout`, else 1.
pub async fn probe(url: &str, timeout: Duration) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().timeout(timeout).build()?;
    let failure = match client.get(url).send().await {
        Ok(r) if r.status().is_success() => {
            println!("{url}: {}", r.status());
            return Ok(());
        }
        Ok(r) => anyhow::anyhow!("{url} answered {}", r.status()),
        Err(e) => anyhow::Error::new(e).context(format!("no answer from {url}")),
    };
    Err(Exit {
        code: 1,
        error: Some(failure),
    }
    .into())
}

/// `host status`: the running host's /status, or PostgreSQL and Kafka asked directly.
pub async fn status(path: &Path, json: bool) -> anyhow::Result<()> {
    use crate::ops::status;
    let pipeline = Pipeline::load(path)?;
    let from_host = match pipeline.http.listen {
        Some(addr) => {
            let host = if addr.ip().is_unspecified() {
                format!("127.0.0.1:{}", addr.port())
            } else {
                addr.to_string()
            };
            let url = format!("http://{host}/status");
            let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
            match client.get(&url).send().await {
                Ok(r) => r.json::<status::Status>().await.ok(),
                Err(_) => None,
            }
        }
        None => None,
    };
    let s = match from_host {
        Some(s) => s,
        None => status::offline(&pipeline).await,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print!("{}", status::render(&s));
    }
    let code = match (s.host_running, s.ready) {
        (true, true) => 0,
        (true, false) => 1,
        (false, _) => 2,
    };
    if code == 0 {
        Ok(())
    } else {
        Err(Exit { code, error: None }.into())
    }
}
