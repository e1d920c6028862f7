//! The ways to run the host in production: `host --version` names the commit
//! it was built from; the systemd unit (deploy/wasm-stream@.service) passes
//! `systemd-analyze verify` with its sandbox in place; the container image
//! (Containerfile, scripts/image) runs the demo's plugins against the local
//! stack, stores every message once, answers /health/ready from outside, and
//! on SIGTERM exits 0 having left its consumer group.
//!
//! `harness = false` (host/Cargo.toml): a test whose tool cannot run on this
//! machine (no podman, no systemd-analyze) is reported `ignored` with the
//! reason, so scripts/test counts it as skipped, never as passed. That is why
//! it is a binary of its own beside `it`, the one of every other area.
// The helpers of the `it` binary (host/tests/it/support), only some used here.
#[allow(dead_code)]
#[path = "it/support/common/mod.rs"]
mod common;
mod harness_support;
#[allow(dead_code)]
#[path = "it/support/ops.rs"]
mod ops;

use common::chaos::SHARED;
use common::{Db, assert_each_offset_once, repo_root, unique, wait_for};
use harness_support::{Outcome, Test};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output};
use std::time::{Duration, Instant};

const TESTS: &[Test] = &[
    (
        "host_version_names_the_commit_it_was_built_from",
        version_names_the_commit,
    ),
    ("systemd_unit_passes_verify_with_its_sandbox", unit_passes_verify),
    (
        "container_stores_every_message_once_and_leaves_its_group_on_sigterm",
        container_runs_the_pipeline,
    ),
];

fn main() -> ExitCode {
    harness_support::main(TESTS)
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("start {cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn version_names_the_commit() -> Outcome {
    let out = run(Command::new(env!("CARGO_BIN_EXE_host")).arg("--version"));
    assert!(out.status.success(), "host --version: {}", text(&out));
    let head = run(Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(repo_root()));
    let commit = match String::from_utf8_lossy(&head.stdout).trim() {
        c if head.status.success() && !c.is_empty() => c.to_string(),
        _ => "unknown".to_string(),
    };
    let expected = format!("host {} (commit {commit})\n", env!("CARGO_PKG_VERSION"));
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
    Outcome::Passed
}

/// `key=value` lines of a unit file's [Service] section.
fn service_settings(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .skip_while(|l| l.trim() != "[Service]")
        .skip(1)
        .take_while(|l| !l.starts_with('['))
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn unit_passes_verify() -> Outcome {
    if run(Command::new("sh").args(["-c", "command -v systemd-analyze"]))
        .stdout
        .is_empty()
    {
        return Outcome::Skipped("systemd-analyze not found (apt-get install systemd)".into());
    }
    let unit = std::fs::read_to_string(repo_root().join("deploy/wasm-stream@.service"))
        .expect("read deploy/wasm-stream@.service");
    let settings = service_settings(&unit);
    let has = |key: &str, value: &str| settings.iter().any(|(k, v)| k == key && v.contains(value));
    for (key, value) in [
        ("Restart", "on-failure"),
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("CacheDirectory", "wasm-stream"),
        ("Environment", "WASM_STREAM_CACHE_DIR=%C/wasm-stream"),
        ("EnvironmentFile", "/etc/wasm-stream/"),
        ("ExecStart", "--instance-id %i"),
        ("User", "wasm-stream"),
    ] {
        assert!(has(key, value), "the unit has no {key}={value}...:\n{unit}");
    }
    // verify checks that ExecStart's program exists: point it at this build.
    let dir = std::env::temp_dir().join(unique("unit"));
    std::fs::create_dir_all(&dir).expect("create unit folder");
    let local = unit.replace("/usr/local/bin/host", env!("CARGO_BIN_EXE_host"));
    std::fs::write(dir.join("wasm-stream@.service"), local).expect("write unit");
    let instance = dir.join("wasm-stream@test-1.service");
    let out = run(Command::new("systemd-analyze").arg("verify").arg(&instance));
    // It exits 0 over unknown keys and bad values, only saying so.
    let said = text(&out);
    assert!(
        out.status.success() && !said.contains("wasm-stream@"),
        "systemd-analyze verify found problems:\n{said}"
    );
    let security = run(Command::new("systemd-analyze")
        .args(["security", "--offline=yes"])
        .arg(&instance));
    let _ = std::fs::remove_dir_all(&dir);
    // The sandbox's summary, where this systemd has offline analysis (252+).
    if let Some(line) = text(&security).lines().find(|l| l.contains("Overall exposure level")) {
        eprintln!("{line}");
        let score: f64 = line
            .split(':')
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no score in {line:?}"));
        assert!(score < 3.0, "the unit's sandbox loosened: {line}");
    }
    Outcome::Passed
}

/// podman with the arguments `scripts/image` found to work on this machine
/// (target/image/podman-args: the global ones, then those of `run`).
struct Podman {
    global: Vec<String>,
    run: Vec<String>,
}

impl Podman {
    fn read() -> Self {
        let path = repo_root().join("target/image/podman-args");
        let args = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let mut lines = args.lines().map(|l| l.split_whitespace().map(str::to_string).collect());
        Self {
            global: lines.next().unwrap_or_default(),
            run: lines.next().unwrap_or_default(),
        }
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("podman");
        c.args(&self.global);
        c
    }
}

/// A container and its cache volume, removed when dropped (pass or fail).
struct Container<'a> {
    podman: &'a Podman,
    name: String,
    volume: String,
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = self
            .podman
            .cmd()
            .args(["rm", "-f", "-v", "-t", "0", &self.name])
            .output();
        let _ = self.podman.cmd().args(["volume", "rm", "-f", &self.volume]).output();
    }
}

impl Container<'_> {
    fn logs(&self) -> String {
        text(&run(self.podman.cmd().args(["logs", &self.name])))
    }
}

/// Label of the containers this test starts: the test process's id.
const PID_LABEL: &str = "wasm-stream.test-pid";

/// Removes containers a killed run of this test left (their process is gone).
fn remove_leftovers(podman: &Podman) {
    let out = run(podman.cmd().args([
        "ps",
        "-a",
        "--filter",
        &format!("label={PID_LABEL}"),
        "--format",
        &format!("{{{{.Names}}}} {{{{index .Labels \"{PID_LABEL}\"}}}}"),
    ]));
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some((name, pid)) = line.split_once(' ')
            && !Path::new("/proc").join(pid.trim()).exists()
        {
            let _ = podman.cmd().args(["rm", "-f", "-v", "-t", "0", name]).output();
        }
    }
}

/// The local stack's certificates, owned by the image's user (10001), or why
/// they cannot be (not root).
fn certs_for_the_image() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(unique("image_certs"));
    std::fs::create_dir_all(&dir).expect("create certs folder");
    for name in ["ca.pem", "service.cert", "service.key"] {
        std::fs::copy(repo_root().join("certs").join(name), dir.join(name)).expect("copy certificate");
    }
    let out = run(Command::new("chown").args(["-R", "10001:10001"]).arg(&dir));
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(format!(
            "cannot hand the certificates to the image's user 10001: {}",
            text(&out).trim()
        ));
    }
    Ok(dir)
}

fn container_runs_the_pipeline() -> Outcome {
    let tag = "localhost/wasm-stream:test";
    let build = run(Command::new(repo_root().join("scripts/image")).args([
        "--tag",
        tag,
        "--host-binary",
        env!("CARGO_BIN_EXE_host"),
    ]));
    match build.status.code() {
        Some(0) => {}
        // The script's "podman cannot be installed or run here".
        Some(3) => {
            let said = String::from_utf8_lossy(&build.stderr).into_owned();
            let why = said
                .lines()
                .rfind(|l| l.contains("cannot use podman"))
                .unwrap_or(said.trim());
            return Outcome::Skipped(why.to_string());
        }
        _ => panic!("scripts/image failed:\n{}", text(&build)),
    }
    let podman = Podman::read();
    remove_leftovers(&podman);
    let config = |field: &str| text(&run(podman.cmd().args(["image", "inspect", "--format", field, tag])));
    let healthcheck = config("{{json .Config.Healthcheck}}");
    assert!(
        healthcheck.contains("probe") && healthcheck.contains("/health/live"),
        "the image's HEALTHCHECK does not probe /health/live: {healthcheck}"
    );
    assert_eq!(
        config("{{.Config.User}}").trim(),
        "wasm-stream",
        "the image runs as root"
    );

    let (topic, table) = (unique("image_langs"), unique("image_rows"));
    let port = ops::free_port();
    let count = 40;
    let pipeline_dir = std::env::temp_dir().join(unique("image_pipeline"));
    std::fs::create_dir_all(&pipeline_dir).expect("create pipeline folder");
    let pipeline = pipeline_dir.join("pipeline.toml");
    // Paths as the image lays them out: plugins in /usr/lib/wasm-stream/plugins,
    // certificates beside the pipeline file in /etc/wasm-stream.
    std::fs::write(
        &pipeline,
        format!(
            r#"[kafka]
bootstrap_servers = "localhost:9093"
security_protocol = "ssl"
ca = "certs/ca.pem"
cert = "certs/service.cert"
key = "certs/service.key"

[postgres]
url = "postgres://avnadmin:localdev@localhost:5432/info?sslmode=require"
ca = "certs/ca.pem"

[http]
listen = "127.0.0.1:{port}"

[[topics]]
name = "{topic}"
partitions = 2
replication = 1

[[generators]]
name = "langs"
topic = "{topic}"
plugin = "/usr/lib/wasm-stream/plugins/langs.wasm"
interval_ms = 20
count = {count}

[[sinks]]
name = "rows"
topic = "{topic}"
table = "{table}"
mapper = "/usr/lib/wasm-stream/plugins/json_row.wasm"
"#
        ),
    )
    .expect("write pipeline");
    let certs = match certs_for_the_image() {
        Ok(dir) => dir,
        Err(why) => return Outcome::Skipped(why),
    };
    // The image's own pipeline.toml names plugins the image has.
    let validated = run(podman
        .cmd()
        .args(["run", "--rm", "--network", "none", "--no-healthcheck"])
        .args(&podman.run)
        .args(["-v", &format!("{}:/etc/wasm-stream/certs:ro", certs.display())])
        .args([tag, "validate", "/etc/wasm-stream/pipeline.toml"]));
    assert!(
        validated.status.success(),
        "the image's pipeline.toml does not validate: {}",
        text(&validated)
    );

    let container = Container {
        podman: &podman,
        name: unique("wasm_stream_test"),
        volume: unique("wasm_stream_test_cache"),
    };
    let mount = |from: &Path, to: &str| format!("{}:{to}:ro", from.display());
    let started = run(podman
        .cmd()
        .args(["run", "-d", "--name", &container.name, "--network", "host"])
        .args(["--label", &format!("{PID_LABEL}={}", std::process::id())])
        .args(&podman.run)
        .args(["-e", "WASM_STREAM_INSTANCE_ID=image-test"])
        .args(["-v", &mount(&certs, "/etc/wasm-stream/certs")])
        .args(["-v", &mount(&pipeline, "/etc/wasm-stream/pipeline.toml")])
        .args(["-v", &format!("{}:/var/cache/wasm-stream", container.volume)])
        // The image's check, on this test's port.
        .args([
            "--health-cmd",
            &format!(r#"["/usr/local/bin/host", "probe", "http://127.0.0.1:{port}/health/live"]"#),
        ])
        .arg(tag));
    assert!(started.status.success(), "podman run: {}", text(&started));

    // Ready, seen from outside the container.
    let deadline = Instant::now() + Duration::from_secs(120);
    while ops::get(port, "/health/ready").map(|(code, _)| code) != Some(200) {
        let state = text(&run(podman.cmd().args([
            "inspect",
            "--format",
            "{{.State.Status}}",
            &container.name,
        ])));
        assert!(
            state.trim() == "running",
            "the container ended ({state}):\n{}",
            container.logs()
        );
        assert!(
            Instant::now() < deadline,
            "not ready within 120 s:\n{}",
            container.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let health = run(podman.cmd().args(["healthcheck", "run", &container.name]));
    assert!(health.status.success(), "the health check failed: {}", text(&health));

    let db = Db::connect();
    let stored = || {
        db.query(&format!("SELECT count(*) FROM \"{table}\""), &[])
            .first()
            .map_or(0, |r| r.get::<_, i64>(0))
    };
    wait_for("every message stored", Duration::from_secs(120), || {
        db.query("SELECT 1 FROM pg_tables WHERE tablename = $1", &[&table])
            .len()
            == 1
            && stored() >= count
    });
    let offsets = db.offsets(&table);
    let ends = SHARED.end_offsets(&topic);
    for (partition, end) in &ends {
        assert_each_offset_once(&offsets, i64::from(*partition), *end);
    }
    assert_eq!(ends.values().sum::<i64>(), count, "{}", container.logs());

    // SIGTERM: a clean stop that leaves the group.
    let group = format!("wasm-stream-{table}");
    assert_eq!(
        SHARED.group_members(&group).len(),
        1,
        "{}",
        SHARED.describe_group(&group)
    );
    let killed = run(podman.cmd().args(["kill", "--signal", "TERM", &container.name]));
    assert!(killed.status.success(), "podman kill: {}", text(&killed));
    let waited = run(Command::new("timeout")
        .args(["60", "podman"])
        .args(&podman.global)
        .args(["wait", &container.name]));
    assert_eq!(
        String::from_utf8_lossy(&waited.stdout).trim(),
        "0",
        "the host did not exit 0 on SIGTERM ({}):\n{}",
        text(&waited),
        container.logs()
    );
    // A member that left is gone at once; one that did not stays for its
    // session timeout (10 s).
    let members = SHARED.group_members(&group);
    assert!(
        members.is_empty(),
        "still in the group after SIGTERM: {members:?}\n{}",
        container.logs()
    );
    assert_eq!(stored(), count, "rows changed after the stop");

    // The host made its cache folder in the volume: its user's, closed to
    // others (only large plugins, like Python's, are cached; these are small).
    let cache = run(podman
        .cmd()
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "--no-healthcheck",
            "--entrypoint",
            "stat",
        ])
        .args(&podman.run)
        .args(["-v", &format!("{}:/var/cache/wasm-stream", container.volume), tag])
        .args(["-c", "%u %a", "/var/cache/wasm-stream/compiled"]));
    assert_eq!(
        String::from_utf8_lossy(&cache.stdout).trim(),
        "10001 700",
        "no cache folder of the image's user in the volume: {}",
        text(&cache)
    );
    drop(container);
    let _ = std::fs::remove_dir_all(&certs);
    let _ = std::fs::remove_dir_all(&pipeline_dir);
    Outcome::Passed
}
