//! Every script (`scripts/*`, `.ci/run`) answers `--help` at once: it prints
//! its usage and exits 0 without building or starting anything (here cargo,
//! rustup, java and the other tools the scripts run are stubs that fail when
//! called). `scripts/bench --help` is the script's own text, so it must list
//! exactly the options of the benchmark binary (host/benches/pipeline/main.rs),
//! which only `cargo bench` compiles.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ is inside the repository")
        .to_path_buf()
}

/// A folder of stand-ins for every tool a script could start or build with,
/// one per call: the tests of this file run at once in one process, and each
/// removes its folder when done (a folder per process was removed under the
/// other test once).
fn stub_tools() -> PathBuf {
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("scripts-help-stubs-{}-{call}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create stub folder");
    for tool in [
        "cargo",
        "rustup",
        "rustc",
        "java",
        "mvn",
        "psql",
        "pg_ctlcluster",
        "pg_lsclusters",
        "apt-get",
        "kcat",
        "node",
        "npm",
        "openssl",
        "podman",
        "debootstrap",
    ] {
        let path = dir.join(tool);
        std::fs::write(&path, format!("#!/bin/sh\necho \"STUB {tool} CALLED\" >&2\nexit 97\n")).expect("write stub");
        let mut perms = std::fs::metadata(&path).expect("stub metadata").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&path, perms).expect("make stub executable");
    }
    dir
}

/// `script --help` with the stubs first on PATH: (stdout, stderr).
fn help(script: &Path, stubs: &Path) -> (String, String) {
    let path = format!("{}:{}", stubs.display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new(script)
        .arg("--help")
        .env("PATH", path)
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap_or_else(|e| panic!("run {} --help: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{} --help exited with {}:\n{stdout}{stderr}",
        script.display(),
        out.status
    );
    (stdout, stderr)
}

fn scripts() -> Vec<PathBuf> {
    let root = repo_root();
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(root.join("scripts"))
        .expect("read scripts/")
        .map(|e| e.expect("scripts/ entry").path())
        .filter(|p| p.is_file())
        .collect();
    scripts.sort();
    scripts.push(root.join(".ci/run"));
    scripts
}

#[test]
fn every_script_prints_its_usage_without_running_anything() {
    let stubs = stub_tools();
    let scripts = scripts();
    assert!(scripts.len() >= 8, "{scripts:?}");
    for script in &scripts {
        let (stdout, stderr) = help(script, &stubs);
        let text = format!("{stdout}{stderr}");
        assert!(
            !text.contains("STUB "),
            "{} --help ran a tool:\n{text}",
            script.display()
        );
        let name = script.file_name().and_then(|n| n.to_str()).expect("script name");
        assert!(
            text.contains(name) && text.lines().count() >= 2,
            "{} --help printed no usage:\n{text}",
            script.display()
        );
    }
    let _ = std::fs::remove_dir_all(&stubs);
}

/// `--options` in `text`.
fn options(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(str::to_string)
        .collect()
}

#[test]
fn bench_help_lists_the_benchmark_binarys_options() {
    let source = std::fs::read_to_string(repo_root().join("host/benches/pipeline/main.rs"))
        .expect("read host/benches/pipeline/main.rs");
    let usage = source
        .split("const USAGE: &str = \"")
        .nth(1)
        .and_then(|rest| rest.split("\";").next())
        .expect("host/benches/pipeline/main.rs defines const USAGE");
    // The options its parser matches: `"--name" =>`.
    let parsed: BTreeSet<String> = source
        .lines()
        .filter_map(|l| l.trim().strip_prefix('"'))
        .filter_map(|l| l.split_once("\" =>").map(|(o, _)| o.to_string()))
        .filter(|o| o.starts_with("--") && o != "--bench")
        .collect();
    let mut in_usage = options(usage);
    assert_eq!(
        parsed, in_usage,
        "the benchmark's USAGE and the options its parser matches differ"
    );

    let stubs = stub_tools();
    let (stdout, _) = help(&repo_root().join("scripts/bench"), &stubs);
    let _ = std::fs::remove_dir_all(&stubs);
    let mut in_script = options(&stdout);
    in_script.remove("--help");
    in_usage.remove("--help");
    assert_eq!(
        in_script, in_usage,
        "scripts/bench --help and the benchmark's options (host/benches/pipeline/main.rs) differ: update the script's header"
    );
    // The value lists (partitions, parts, sink modes) as the binary spells them.
    for list in usage
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == ','))
        .filter(|w| w.contains(',') && !w.ends_with(','))
    {
        assert!(
            stdout.contains(list),
            "scripts/bench --help does not list {list:?} like the benchmark's usage does:\n{stdout}"
        );
    }
}
