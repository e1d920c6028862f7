//! The Kubernetes example (deploy/kubernetes/) is valid against the
//! Kubernetes schemas (`scripts/kube-check`: kubernetes-validate, offline,
//! strict), and agrees with the host: the pipeline in its ConfigMap loads
//! with the Secret's files where the pods mount them, the HTTP port, probe
//! paths and scrape annotations are the host's, each pod's instance id is its
//! stable name, and the plugin cache sits on the volume.
//!
//! The tool is installed by `scripts/kube-check install` (from PyPI into
//! .tools/kube); where that cannot be done the test says why and is skipped.
use crate::support::common;

use common::{plugin, repo_root, unique};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn tools() -> PathBuf {
    std::env::var_os("WASM_STREAM_TOOLS").map_or_else(|| repo_root().join(".tools"), PathBuf::from)
}

/// The venv's python (with PyYAML), installing the tool first if needed
/// (once: the tests run in threads); `None` (and why, printed) when it
/// cannot be installed here.
fn tool_python() -> Option<PathBuf> {
    static PYTHON: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    PYTHON.get_or_init(install).clone()
}

fn install() -> Option<PathBuf> {
    let out = Command::new(repo_root().join("scripts/kube-check"))
        .arg("install")
        .output()
        .expect("run scripts/kube-check install");
    if !out.status.success() {
        eprintln!(
            "SKIPPED: scripts/kube-check install failed, so the manifests are not validated here:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    Some(tools().join("kube/bin/python"))
}

/// Every document of a YAML file, as JSON.
fn documents(python: &Path, file: &str) -> Vec<Value> {
    let path = repo_root().join("deploy/kubernetes").join(file);
    let out = Command::new(python)
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
        ])
        .arg(&path)
        .output()
        .expect("run python");
    assert!(out.status.success(), "{file}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{pointer} is not a string in {v}"))
}

fn items<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("{pointer} is not a list"))
}

fn named<'a>(list: &'a [Value], name: &str) -> &'a Value {
    list.iter()
        .find(|x| x["name"] == name)
        .unwrap_or_else(|| panic!("no entry named {name:?}"))
}

#[test]
fn the_manifests_are_valid_kubernetes_objects() {
    if tool_python().is_none() {
        return;
    }
    let out = Command::new(repo_root().join("scripts/kube-check"))
        .output()
        .expect("run scripts/kube-check");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_manifests_agree_with_the_host() {
    let Some(python) = tool_python() else {
        return;
    };
    let set = &documents(&python, "statefulset.yaml")[0];
    let pod = &set["spec"]["template"];
    let container = &items(pod, "/spec/containers")[0];
    let mounts = items(container, "/volumeMounts");
    let volumes = items(pod, "/spec/volumes");
    let mount_of = |volume: &str| PathBuf::from(text(named(mounts, volume), "/mountPath"));

    // The pipeline file the host runs is the ConfigMap's, through its mount.
    let config = &documents(&python, "configmap.yaml")[0];
    assert_eq!(
        text(named(volumes, "pipeline"), "/configMap/name"),
        text(config, "/metadata/name")
    );
    let args: Vec<&str> = items(container, "/args").iter().filter_map(Value::as_str).collect();
    assert_eq!(args[0], "run", "{args:?}");
    assert_eq!(Path::new(args[1]), mount_of("pipeline").join("pipeline.toml"));

    // Load that pipeline with the Secrets' files where the pods mount them,
    // moved into a temporary folder (and the image's plugins to the built ones).
    let secrets = documents(&python, "secret.yaml");
    let root = std::env::temp_dir().join(unique("kube"));
    let local = |p: &Path| root.join(p.strip_prefix("/").expect("absolute"));
    for (volume, secret) in [
        ("kafka-certs", "wasm-stream-kafka"),
        ("postgres-secret", "wasm-stream-postgres"),
    ] {
        let s = secrets
            .iter()
            .find(|s| s["metadata"]["name"] == secret)
            .unwrap_or_else(|| panic!("no Secret {secret}"));
        assert_eq!(text(named(volumes, volume), "/secret/secretName"), secret);
        let dir = local(&mount_of(volume));
        std::fs::create_dir_all(&dir).expect("folder");
        for key in s["stringData"].as_object().expect("stringData").keys() {
            std::fs::write(dir.join(key), "REPLACE-ME\n").expect("write");
        }
    }
    let toml = text(config, "/data/pipeline.toml")
        .replace("\"/etc/", &format!("\"{}/etc/", root.display()))
        .replace(
            "\"/usr/lib/wasm-stream/plugins/",
            &format!("\"{}/", plugin("x").parent().expect("folder").display()),
        );
    let path = local(Path::new(args[1]));
    std::fs::create_dir_all(path.parent().expect("folder")).expect("folder");
    std::fs::write(&path, &toml).expect("write");
    let pipeline = host::config::Pipeline::load(&path).unwrap_or_else(|e| panic!("the ConfigMap's pipeline: {e}"));
    for key in [&pipeline.kafka.ca, &pipeline.kafka.cert, &pipeline.kafka.key] {
        let key = key.as_ref().expect("ssl files");
        assert!(key.is_file(), "{} is not in a mounted Secret", key.display());
    }
    // From the mounted file (a password in the URL too would be refused).
    assert_eq!(
        pipeline.postgres.password_source,
        host::config::SecretSource::File(local(&mount_of("postgres-secret").join("pg-password")))
    );
    for sink in &pipeline.sinks {
        assert!(
            sink.mapper.path.is_file(),
            "{} is not a bundled plugin",
            sink.mapper.path.display()
        );
    }

    // The port the host listens on is the container's, the probes' and the scrape's.
    let listen = pipeline.http.listen.expect("[http] is on");
    assert!(
        listen.ip().is_unspecified(),
        "probes reach the pod's IP, not loopback: {listen}"
    );
    let port = named(items(container, "/ports"), "http")["containerPort"].as_u64();
    assert_eq!(port, Some(u64::from(listen.port())));
    assert_eq!(text(container, "/readinessProbe/httpGet/path"), "/health/ready");
    assert_eq!(text(container, "/livenessProbe/httpGet/path"), "/health/live");
    assert_eq!(text(container, "/readinessProbe/httpGet/port"), "http");
    assert_eq!(text(container, "/livenessProbe/httpGet/port"), "http");
    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], listen.port().to_string());
    assert_eq!(annotations["prometheus.io/path"], "/metrics");

    // Each pod is the static member named after it.
    let env = items(container, "/env");
    assert_eq!(
        text(named(env, host::member::ENV), "/valueFrom/fieldRef/fieldPath"),
        "metadata.name"
    );
    // The cache is a folder the host makes on the volume (the volume's root is
    // open to others, which the host refuses).
    let cache = PathBuf::from(text(named(env, "WASM_STREAM_CACHE_DIR"), "/value"));
    assert_eq!(cache.parent(), Some(mount_of("cache").as_path()));

    // The headless Service governs the set and names the same port.
    let service = &documents(&python, "service.yaml")[0];
    assert_eq!(text(set, "/spec/serviceName"), text(service, "/metadata/name"));
    assert_eq!(service["spec"]["clusterIP"], "None");
    assert_eq!(text(&items(service, "/spec/ports")[0], "/targetPort"), "http");
    assert_eq!(service["spec"]["selector"], pod["metadata"]["labels"]);
    let _ = std::fs::remove_dir_all(&root);
}
