//! Helpers for the tests of the `[http]` server and the status page.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// `GET path` on 127.0.0.1:port: (status code, body); `None` when nothing answers.
pub fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    Some((code, if chunked { dechunk(body) } else { body.to_string() }))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Waits until the server answers `path` with `code`; returns the body.
pub fn wait_for_code(port: u16, path: &str, code: u16, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let last = get(port, path);
        if let Some((c, body)) = &last
            && *c == code
        {
            return body.clone();
        }
        assert!(
            Instant::now() < deadline,
            "GET {path} did not answer {code} within {limit:?}; last answer: {last:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The value of one sample of the metrics text: `name{labels}` exactly as printed.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok()).flatten()
    })
}

/// Rows in a table, 0 when it does not exist yet.
pub fn count_rows(db: &super::common::Db, table: &str) -> i64 {
    let exists = !db
        .query(
            "SELECT 1 FROM information_schema.tables WHERE table_name = $1",
            &[&table],
        )
        .is_empty();
    if !exists {
        return 0;
    }
    db.query(&format!("SELECT count(*) FROM \"{table}\""), &[])[0].get(0)
}

/// Debian's `chromium` (`scripts/local-stack up` installs it), or `$CHROMIUM`.
fn chromium() -> String {
    let bin = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".to_string());
    let found = Command::new(&bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{bin} not found: install it with `scripts/local-stack up` (or apt-get install chromium), or set CHROMIUM"
    );
    bin
}

/// Runs headless Chromium on `url` with `extra` arguments; returns stdout.
pub fn headless(url: &str, extra: &[&str]) -> String {
    let profile = std::env::temp_dir().join(super::common::unique("chromium_profile"));
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
            // Lets the page's script fetch /status and render before the dump.
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("run chromium");
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        out.status.success(),
        "chromium failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `<tr ...>...</tr>` of the dumped DOM whose tag carries `attr="value"`.
pub fn dom_row(dom: &str, attr: &str, value: &str) -> Option<String> {
    let needle = format!(r#" {attr}="{value}""#);
    let mut from = 0;
    while let Some(at) = dom[from..].find("<tr ") {
        let start = from + at;
        let tag_end = start + dom[start..].find('>')?;
        let end = start + dom[start..].find("</tr>")? + "</tr>".len();
        if dom[start..tag_end].contains(&needle) {
            return Some(dom[start..end].to_string());
        }
        from = tag_end;
    }
    None
}

/// Every value of `attr` in `html`, in order.
pub fn attrs(html: &str, attr: &str) -> Vec<String> {
    let needle = format!(r#" {attr}=""#);
    html.match_indices(&needle)
        .filter_map(|(at, _)| {
            let rest = &html[at + needle.len()..];
            rest.find('"').map(|end| rest[..end].to_string())
        })
        .collect()
}

/// The first value of `attr` in `html`.
pub fn attr(html: &str, attr_name: &str) -> Option<String> {
    attrs(html, attr_name).into_iter().next()
}
