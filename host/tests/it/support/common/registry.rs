//! A private schema registry stand-in (scripts/registry-standin.py) per
//! test, on a free port, so a test can stop and start it (an outage)
//! without touching the stack's shared one on 8081. Killed when dropped.

use super::{repo_root, unique};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const USER: &str = "avnadmin";
pub const PASSWORD: &str = "localdev";

pub struct Registry {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
}

/// The stack's server certificate for the registry, or (before `local-stack
/// up` made one) PostgreSQL's: both name localhost and are signed by certs/ca.pem.
fn server_cert() -> (PathBuf, PathBuf) {
    let certs = repo_root().join("certs");
    let own = certs.join("registry-server.cert");
    if own.exists() {
        (own, certs.join("registry-server.key"))
    } else {
        (certs.join("postgres-server.cert"), certs.join("postgres-server.key"))
    }
}

impl Registry {
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(unique("registry"));
        std::fs::create_dir_all(&dir).expect("registry dir");
        std::fs::write(dir.join("password"), PASSWORD).expect("password file");
        let mut r = Registry {
            child: None,
            port: 0,
            dir,
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let (cert, key) = server_cert();
        let port_file = self.dir.join("port");
        let _ = std::fs::remove_file(&port_file);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("registry.log"))
            .expect("log");
        let child = Command::new("python3")
            .arg(repo_root().join("scripts/registry-standin.py"))
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--port-file")
            .arg(&port_file)
            .arg("--cert")
            .arg(&cert)
            .arg("--key")
            .arg(&key)
            .args(["--user", USER, "--password-env", "STANDIN_PASSWORD"])
            .arg("--data")
            .arg(self.dir.join("schemas.json"))
            .env("STANDIN_PASSWORD", PASSWORD)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start scripts/registry-standin.py");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(text) = std::fs::read_to_string(&port_file)
                && let Ok(port) = text.trim().parse::<u16>()
            {
                self.port = port;
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the registry stand-in did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }

    /// The password file, for `password_file`.
    pub fn password_file(&self) -> PathBuf {
        self.dir.join("password")
    }

    /// The `[schema_registry]` section pointing at this instance.
    pub fn section(&self) -> String {
        format!(
            "[schema_registry]\nurl = \"{}\"\nusername = \"{USER}\"\npassword_file = \"{}\"\nca = \"{}\"\n",
            self.url(),
            self.password_file().display(),
            repo_root().join("certs/ca.pem").display()
        )
    }

    /// An outage: the process ends; `start_again` brings it back on the
    /// same port with the same schemas.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the registry runs already");
        self.spawn();
    }

    /// `curl` against the instance: (HTTP status, body).
    pub fn curl(&self, method: &str, path: &str, body: Option<&str>, auth: bool) -> (u16, String) {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "--max-time", "10", "-X", method, "-w", "\n%{http_code}"])
            .arg("--cacert")
            .arg(repo_root().join("certs/ca.pem"))
            .args(["-H", "Content-Type: application/vnd.schemaregistry.v1+json"]);
        if auth {
            cmd.args(["-u", &format!("{USER}:{PASSWORD}")]);
        }
        if let Some(b) = body {
            cmd.args(["--data-binary", b]);
        }
        let out = cmd.arg(format!("{}{path}", self.url())).output().expect("run curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
        (status.trim().parse().unwrap_or(0), body.to_string())
    }

    /// Registers a schema under a subject; its id.
    pub fn register(&self, subject: &str, schema_type: &str, schema: &str) -> u32 {
        let body = serde_json::json!({"schema": schema, "schemaType": schema_type}).to_string();
        let (status, text) = self.curl("POST", &format!("/subjects/{subject}/versions"), Some(&body), true);
        assert_eq!(status, 200, "register under {subject}: {text}");
        let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        v["id"].as_u64().expect("id") as u32
    }

    /// How many requests each `METHOD /path` got.
    pub fn requests(&self) -> serde_json::Value {
        let (status, text) = self.curl("GET", "/_requests", None, true);
        assert_eq!(status, 200, "{text}");
        serde_json::from_str(&text).expect("JSON")
    }

    /// Requests for the schema of `id` by id.
    pub fn id_requests(&self, id: u32) -> u64 {
        self.requests()[format!("GET /schemas/ids/{id}")].as_u64().unwrap_or(0)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Frames a body in the registry's wire format (magic byte, schema id).
pub fn frame(id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Avro's zig-zag varint of a long.
pub fn avro_long(n: i64, out: &mut Vec<u8>) {
    varint(((n << 1) ^ (n >> 63)) as u64, out);
}

/// A base-128 varint (Protobuf's, and Avro's after zig-zag).
pub fn varint(mut n: u64, out: &mut Vec<u8>) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// Avro's string: its length, then its bytes.
pub fn avro_string(s: &str, out: &mut Vec<u8>) {
    avro_long(s.len() as i64, out);
    out.extend_from_slice(s.as_bytes());
}
