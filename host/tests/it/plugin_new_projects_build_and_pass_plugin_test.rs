//! `host plugin new` writes projects that build with their language's one
//! command, outside this repository, and pass `host plugin test`; it refuses
//! invalid names and folders that are not empty.
//!
//! Rust: `cargo build --release` in each project, into the repository's
//! target/ (crates from the registry cache; the template's release profile is
//! the plugins workspace's, so serde and wit-bindgen compiled by
//! scripts/build are used again and only the projects themselves compile).
//! Python and JavaScript: when this host was built with their templates
//! (host/templates/python, .../javascript), with the tools
//! `scripts/plugin-tools install` put in `.tools/`; the build command is the
//! first line of the project's README.md that runs componentize-py or
//! componentize-js.
use crate::support::common;

use common::{host, repo_root, unique};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn new_project(kind: &str, lang: &str, name: &str, dir: &Path) -> PathBuf {
    let out = host(&[
        "plugin",
        "new",
        kind,
        name,
        "--lang",
        lang,
        "--dir",
        dir.to_str().expect("utf-8"),
    ]);
    assert!(
        out.status.success(),
        "plugin new {kind} {name} --lang {lang}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root = dir.join(name);
    assert_eq!(
        std::fs::read_to_string(root.join("wit/plugin.wit")).expect("wit written"),
        std::fs::read_to_string(repo_root().join("wit/plugin.wit")).expect("repo wit"),
        "the project's contract is the host's"
    );
    assert!(root.join("README.md").is_file());
    root
}

/// `host plugin test` arguments that exercise a plugin of `kind` made from a template.
fn test_args(kind: &str, project: &Path) -> Vec<String> {
    match kind {
        "generator" => vec!["--count".into(), "3".into(), "--seed".into(), "1".into()],
        "mapper" => {
            let samples = project.join("samples/messages.txt");
            let input = if samples.is_file() {
                samples
            } else {
                let p = project.join("kit-test-input.txt");
                std::fs::write(&p, "{\"a\": 1}\n").expect("write input");
                p
            };
            vec!["--input".into(), input.display().to_string()]
        }
        _ => {
            let samples = project.join("samples/snapshot.json");
            let snapshot = if samples.is_file() {
                samples
            } else {
                let p = project.join("kit-test-snapshot.json");
                std::fs::write(&p, r#"{"taken_at": 0, "partitions": []}"#).expect("write snapshot");
                p
            };
            vec!["--snapshot".into(), snapshot.display().to_string()]
        }
    }
}

fn plugin_test(wasm: &Path, kind: &str, project: &Path) -> String {
    let mut args = vec!["plugin".to_string(), "test".into(), wasm.display().to_string()];
    args.extend(test_args(kind, project));
    // Not the compile limit under test: four projects compile at once here,
    // and an 18 MB component alone can take the default 60 s on a busy machine.
    args.extend(["--compile-timeout-ms".into(), "600000".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = host(&args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "host {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn rust_projects_build_with_cargo_and_pass_plugin_test() {
    let dir = std::env::temp_dir().join(unique("plugin_new"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // The plugins' target folder: their crates are compiled already, so only
    // the projects themselves (outside the repository) compile.
    let target = repo_root().join("target");
    for kind in ["generator", "mapper", "check"] {
        let name = format!("my-{kind}");
        let project = new_project(kind, "rust", &name, &dir);
        let started = Instant::now();
        let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--release"])
            .current_dir(&project)
            .env("CARGO_TARGET_DIR", &target)
            .output()
            .expect("run cargo");
        assert!(
            out.status.success(),
            "cargo build --release of the {kind} project: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("{kind}: cargo build --release took {:?}", started.elapsed());
        let wasm = target.join(format!("wasm32-wasip2/release/my_{kind}.wasm"));
        let output = plugin_test(&wasm, kind, &project);
        match kind {
            "generator" => assert_eq!(output.lines().count(), 3, "{output}"),
            "mapper" => {
                assert!(output.contains("rows: 2"), "{output}");
                assert!(
                    output.contains("offset 2: rejected: the payload is not JSON"),
                    "{output}"
                );
            }
            _ => assert!(output.contains("warning readings/0: 4000 messages wait"), "{output}"),
        }
    }
}

#[test]
fn invalid_names_and_non_empty_folders_are_refused() {
    let dir = std::env::temp_dir().join(unique("plugin_new_refused"));
    std::fs::create_dir_all(dir.join("taken")).expect("temp dir");
    std::fs::write(dir.join("taken/keep.txt"), "mine").expect("write");
    let d = dir.to_str().expect("utf-8");
    let out = host(&["plugin", "new", "generator", "taken", "--dir", d]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already exists and is not empty"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("taken/keep.txt")).expect("kept"),
        "mine"
    );
    for bad in ["My Plugin", "../escape", "9lives"] {
        let out = host(&["plugin", "new", "mapper", bad, "--dir", d]);
        assert!(!out.status.success(), "{bad}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("invalid plugin name"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(!dir.join("escape").exists() && !std::env::temp_dir().join("escape").exists());
}

/// The build command of a Python or JavaScript project: the first line of
/// its README that runs componentize-py or componentize-js.
/// The one build command the project's README gives: the first line after "Build (one command".
fn build_command(project: &Path) -> String {
    let readme = std::fs::read_to_string(project.join("README.md")).expect("README");
    readme
        .lines()
        .skip_while(|l| !l.starts_with("Build (one command"))
        .skip(1)
        .map(|l| l.trim().trim_start_matches("$ "))
        .find(|l| !l.is_empty())
        .unwrap_or_else(|| panic!("{}: no build command in README.md", project.display()))
        .to_string()
}

fn newest_wasm(project: &Path) -> PathBuf {
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
    let mut stack = vec![project.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir").flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "wasm") {
                found.push((entry.metadata().and_then(|m| m.modified()).expect("mtime"), p));
            }
        }
    }
    found.sort();
    found.pop().map(|(_, p)| p).expect("the build made a .wasm")
}

/// Python and JavaScript projects, each in its own test so the two languages
/// build at the same time.
#[test]
fn python_projects_build_with_componentize_py_and_pass_plugin_test() {
    language_projects_build_and_pass_plugin_test("python", ".tools/python/bin");
}

#[test]
fn javascript_projects_build_with_componentize_js_and_pass_plugin_test() {
    language_projects_build_and_pass_plugin_test("javascript", ".tools/node/node_modules/.bin");
}

fn language_projects_build_and_pass_plugin_test(lang: &str, tools: &str) {
    let root = repo_root();
    if !root.join("host/templates").join(lang).is_dir() {
        eprintln!("skipped {lang}: this host has no {lang} templates");
        return;
    }
    let status = Command::new(root.join("scripts/plugin-tools"))
        .args(["install", lang])
        .status()
        .expect("run scripts/plugin-tools");
    assert!(status.success(), "scripts/plugin-tools install {lang}");
    let path = format!(
        "{}:{}",
        root.join(tools).display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let dir = std::env::temp_dir().join(unique(&format!("plugin_new_{lang}")));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for kind in ["generator", "mapper", "check"] {
        if !root.join("host/templates").join(lang).join(kind).is_dir() {
            eprintln!("skipped {lang} {kind}: no template");
            continue;
        }
        let project = new_project(kind, lang, &format!("my-{kind}"), &dir);
        // The README's one-time install step, done with the repository's pinned tools
        // (the same versions the templates pin) instead of a fresh download.
        let (link, target) = match lang {
            "python" => (".venv", root.join(".tools/python")),
            _ => ("node_modules", root.join(".tools/node/node_modules")),
        };
        std::os::unix::fs::symlink(&target, project.join(link)).expect("link the tools");
        let command = build_command(&project);
        let started = Instant::now();
        let out = Command::new("sh")
            .args(["-c", &command])
            .current_dir(&project)
            .env("PATH", &path)
            .output()
            .expect("run the build command");
        assert!(
            out.status.success(),
            "{lang} {kind}: `{command}` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("{lang} {kind}: `{command}` took {:?}", started.elapsed());
        plugin_test(&newest_wasm(&project), kind, &project);
    }
}
