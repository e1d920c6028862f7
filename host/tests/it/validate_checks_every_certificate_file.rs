//! `host validate` connects nowhere, yet checks every file the pipeline
//! names: it exists, is readable, and certificates and keys parse and match.
use crate::support::common;

use common::{host, repo_root, unique};

fn pipeline(ca: &str, cert: &str, key: &str, pg_ca: &str) -> String {
    let dir = std::env::temp_dir().join(unique("validate"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("pipeline.toml");
    std::fs::write(
        &path,
        format!(
            r#"[kafka]
bootstrap_servers = "localhost:1"
security_protocol = "ssl"
ca = "{ca}"
cert = "{cert}"
key = "{key}"

[postgres]
url = "postgres://avnadmin:localdev@localhost:1/info"
ca = "{pg_ca}"
"#
        ),
    )
    .expect("write");
    path.to_string_lossy().into_owned()
}

fn certs(name: &str) -> String {
    repo_root().join("certs").join(name).to_string_lossy().into_owned()
}

fn validate(path: &str) -> (bool, String) {
    let out = host(&["validate", path]);
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn good_files_pass_and_each_bad_one_is_named() {
    let (ca, cert, key) = (certs("ca.pem"), certs("service.cert"), certs("service.key"));
    let (ok, err) = validate(&pipeline(&ca, &cert, &key, &ca));
    assert!(ok, "the local stack's files are fine: {err}");

    let missing = certs("no-such-ca.pem");
    let (ok, err) = validate(&pipeline(&missing, &cert, &key, &ca));
    assert!(
        !ok && err.contains("kafka.ca") && err.contains("does not exist"),
        "{err}"
    );

    let (ok, err) = validate(&pipeline(&ca, &cert, &key, &missing));
    assert!(
        !ok && err.contains("postgres.ca") && err.contains("does not exist"),
        "{err}"
    );

    // A key where a certificate belongs.
    let (ok, err) = validate(&pipeline(&key, &cert, &key, &ca));
    assert!(
        !ok && err.contains("kafka.ca") && err.contains("no PEM certificate"),
        "{err}"
    );

    // A key of another certificate; its contents never appear.
    let other_key = certs("other-client.key");
    let (ok, err) = validate(&pipeline(&ca, &cert, &other_key, &ca));
    assert!(
        !ok && err.contains("kafka.key") && err.contains("does not belong"),
        "{err}"
    );
    assert!(!err.contains("PRIVATE KEY"), "{err}");

    // A certificate where the key belongs.
    let (ok, err) = validate(&pipeline(&ca, &cert, &cert, &ca));
    assert!(!ok && err.contains("kafka.key") && err.contains("private key"), "{err}");
}
