//! Secrets from pipeline.toml, an environment variable or a file: one source
//! each, errors that name the key, the line and the variable or file, and
//! never the value. The environment is only read (tests run in threads):
//! `HOME` is a variable that is set, a unique name one that is not.

use super::*;

const SECRET: &str = "S3cret-Value-9";

fn head(postgres: &str) -> String {
    format!(
        "[kafka]\nbootstrap_servers = \"localhost:9092\"\nsecurity_protocol = \"plaintext\"\n\n[postgres]\n{postgres}\n"
    )
}

fn parse_in(dir: &Path, text: &str) -> Result<Pipeline, String> {
    Pipeline::parse(&dir.join("pipeline.toml"), text).map_err(|e| e.to_string())
}

fn parse(text: &str) -> Result<Pipeline, String> {
    parse_in(Path::new("/nowhere"), text)
}

/// A fresh folder for secret files.
fn folder(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wasm-stream-secrets-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn unset_var() -> String {
    format!("WASM_STREAM_TEST_UNSET_{}", std::process::id())
}

#[test]
fn a_password_file_is_read_trimmed_of_its_newline_and_named_as_the_source() {
    let dir = folder("pw");
    std::fs::write(dir.join("pg-password"), format!("{SECRET}\n")).expect("write");
    let p = parse_in(
        &dir,
        &head("url = \"postgres://u@localhost/db\"\npassword_file = \"pg-password\""),
    )
    .expect("valid");
    assert_eq!(p.postgres.url.config().get_password(), Some(SECRET.as_bytes()));
    assert_eq!(p.postgres.password_source, SecretSource::File(dir.join("pg-password")));
    assert_eq!(p.postgres.url_source, SecretSource::Inline);
    // Only the trailing newlines go: a space may belong to the password.
    std::fs::write(dir.join("pg-password"), format!(" {SECRET} \r\n\n")).expect("write");
    let p = parse_in(
        &dir,
        &head("url = \"postgres://u@localhost/db\"\npassword_file = \"pg-password\""),
    )
    .expect("valid");
    assert_eq!(
        p.postgres.url.config().get_password(),
        Some(format!(" {SECRET} ").as_bytes())
    );
    let debug = format!("{p:?}");
    assert!(!debug.contains(SECRET), "the password is in Debug: {debug}");
}

#[test]
fn a_password_env_names_its_variable_as_the_source() {
    let p = parse(&head("url = \"postgres://u@localhost/db\"\npassword_env = \"HOME\"")).expect("valid");
    let home = std::env::var("HOME").expect("HOME is set");
    assert_eq!(p.postgres.url.config().get_password(), Some(home.as_bytes()));
    assert_eq!(p.postgres.password_source.to_string(), "env HOME");
}

#[test]
fn the_url_may_come_from_a_file_or_a_variable_with_its_password() {
    let dir = folder("url");
    std::fs::write(
        dir.join("pg-url"),
        format!("postgres://u:{SECRET}@localhost:5432/info?sslmode=require\n"),
    )
    .expect("write");
    let p = parse_in(&dir, &head("url_file = \"pg-url\"")).expect("valid");
    assert_eq!(p.postgres.url.database().as_str(), "info");
    assert_eq!(p.postgres.url.config().get_password(), Some(SECRET.as_bytes()));
    assert_eq!(p.postgres.url_source, SecretSource::File(dir.join("pg-url")));
    assert_eq!(
        p.postgres.password_source.to_string(),
        format!("in postgres.url (file {})", dir.join("pg-url").display())
    );
    // A URL from a file that is not one says so without quoting it.
    std::fs::write(
        dir.join("bad-url"),
        format!("postgres://u:{SECRET}@localhost:99999999/db\n"),
    )
    .expect("write");
    let e = parse_in(&dir, &head("url_file = \"bad-url\"")).unwrap_err();
    assert!(e.contains(":6:12: postgres.url (from file "), "{e}");
    assert!(!e.contains(SECRET), "{e}");
}

#[test]
fn an_inline_password_is_reported_as_in_the_url_and_none_as_none() {
    let p = parse(&head("url = \"postgres://u:pw@localhost/db\"")).expect("valid");
    assert_eq!(
        p.postgres.password_source.to_string(),
        "in postgres.url (pipeline.toml)"
    );
    let p = parse(&head("url = \"postgres://u@localhost/db\"")).expect("valid");
    assert_eq!(p.postgres.password_source, SecretSource::None);
    let sources = p.secret_sources();
    assert_eq!(sources[0], ("postgres.url", SecretSource::Inline));
    assert_eq!(sources[1].1.to_string(), "none");
}

#[test]
fn two_sources_of_one_secret_are_refused_naming_both_keys_and_lines() {
    let dir = folder("two");
    std::fs::write(dir.join("pw"), SECRET).expect("write");
    let e = parse_in(
        &dir,
        &head("url = \"postgres://u@localhost/db\"\npassword_env = \"HOME\"\npassword_file = \"pw\""),
    )
    .unwrap_err();
    assert!(
        e.contains("pipeline.toml:8:17: postgres.password_file and postgres.password_env (")
            && e.contains("pipeline.toml:7:16)")
            && e.contains("keep one"),
        "{e}"
    );
    let e = parse_in(&dir, &head("url_file = \"pw\"\nurl = \"postgres://u@localhost/db\"")).unwrap_err();
    assert!(
        e.contains(":7:7: postgres.url and postgres.url_file (") && e.contains("pipeline.toml:6:12)"),
        "{e}"
    );
    // A password in the URL and one from a variable: which one wins would be a guess.
    let e = parse(&head("url = \"postgres://u:pw@localhost/db\"\npassword_env = \"HOME\"")).unwrap_err();
    assert!(
        e.contains(":7:16: postgres.password_env and postgres.url (") && e.contains("remove the password from the URL"),
        "{e}"
    );
    let e = parse(&head(
        "url = \"postgres://u@localhost/db\"\n[aiven]\nproject = \"p\"\nkafka_service = \"k\"\npg_service = \"g\"\ntoken_env = \"T\"\ntoken_file = \"t\"",
    ))
    .unwrap_err();
    assert!(e.contains("aiven.token_file and aiven.token_env ("), "{e}");
}

#[test]
fn an_unset_variable_is_an_error_naming_it_the_key_the_line_and_the_fix() {
    let var = unset_var();
    let e = parse(&head(&format!(
        "url = \"postgres://u@localhost/db\"\npassword_env = \"{var}\""
    )))
    .unwrap_err();
    assert!(
        e.starts_with("/nowhere/pipeline.toml:7:16: postgres.password_env names")
            && e.contains(&format!("{var:?}, which is not set"))
            && e.contains("hint: export")
            && e.contains("password_file"),
        "{e}"
    );
    let e = parse(&head(&format!("url_env = \"{var}\""))).unwrap_err();
    assert!(
        e.contains(":6:11: postgres.url_env names") && e.contains("not set"),
        "{e}"
    );
    let e = parse(&head(
        "url = \"postgres://u@localhost/db\"\npassword_env = \"not a name\"",
    ))
    .unwrap_err();
    assert!(e.contains("is not an environment variable name"), "{e}");
}

#[test]
fn a_missing_or_empty_file_is_an_error_naming_it_the_key_and_the_line() {
    let dir = folder("missing");
    let e = parse_in(
        &dir,
        &head("url = \"postgres://u@localhost/db\"\npassword_file = \"nope/pw\""),
    )
    .unwrap_err();
    let path = dir.join("nope/pw");
    assert!(
        e.contains(":7:17: postgres.password_file ")
            && e.contains(&format!("{} does not exist", path.display()))
            && e.contains("hint: mount the secret"),
        "{e}"
    );
    std::fs::write(dir.join("empty"), "\n").expect("write");
    let e = parse_in(
        &dir,
        &head("url = \"postgres://u@localhost/db\"\npassword_file = \"empty\""),
    )
    .unwrap_err();
    assert!(e.contains("is empty"), "{e}");
    let e = parse_in(
        &dir,
        &head(
            "url = \"postgres://u@localhost/db\"\n[aiven]\nproject = \"p\"\nkafka_service = \"k\"\npg_service = \"g\"\ntoken_file = \"token\"",
        ),
    )
    .unwrap_err();
    assert!(
        e.contains(":11:14: aiven.token_file ") && e.contains("does not exist"),
        "{e}"
    );
}

#[test]
fn no_url_at_all_says_which_keys_can_give_it() {
    let e = parse(&head("tls = \"disable\"")).unwrap_err();
    assert!(
        e.starts_with("/nowhere/pipeline.toml:5:1: [postgres] has no url") && e.contains("url_env"),
        "{e}"
    );
}

#[test]
fn interpolation_is_refused_with_the_keys_that_do_it() {
    let e = parse(&head("url = \"postgres://u:${PG_PASSWORD}@localhost/db\"")).unwrap_err();
    assert!(
        e.contains(":6:7: postgres.url holds \"${PG_PASSWORD}\"") && e.contains("postgres.url_env"),
        "{e}"
    );
    // What follows `${` is shown only when it is a variable's name.
    let e = parse(&head(&format!("url = \"postgres://u:x${{{SECRET}!}}@localhost/db\""))).unwrap_err();
    assert!(!e.contains(SECRET), "{e}");
}

#[test]
fn the_aiven_token_file_is_its_source() {
    let dir = folder("aiven");
    std::fs::write(dir.join("token"), format!("{SECRET}\n")).expect("write");
    let p = parse_in(
        &dir,
        &head(
            "url = \"postgres://u@localhost/db\"\n[aiven]\nproject = \"p\"\nkafka_service = \"k\"\npg_service = \"g\"\ntoken_file = \"token\"",
        ),
    )
    .expect("valid");
    let aiven = p.aiven.as_ref().expect("aiven");
    assert_eq!(aiven.token_file.as_deref(), Some(dir.join("token").as_path()));
    assert_eq!(
        p.secret_sources().last().map(|(k, s)| (*k, s.to_string())),
        Some(("aiven token", format!("file {}", dir.join("token").display())))
    );
    assert!(!format!("{p:?}").contains(SECRET));
}

#[test]
fn a_kafka_key_passphrase_comes_from_a_variable_or_a_file_and_never_shows() {
    let dir = folder("keypass");
    std::fs::write(dir.join("pass"), format!("{SECRET}\n")).expect("write");
    let text = |key_lines: &str| {
        format!(
            "[kafka]\nbootstrap_servers = \"localhost:9093\"\nca = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"k.pem\"\n{key_lines}\n[postgres]\nurl = \"postgres://u@localhost/db\"\n"
        )
    };
    let p = parse_in(&dir, &text("key_password_file = \"pass\"")).expect("valid");
    assert_eq!(p.kafka.key_password.as_ref().map(Secret::expose), Some(SECRET));
    assert_eq!(p.kafka.key_password_source, SecretSource::File(dir.join("pass")));
    assert!(!format!("{p:?}").contains(SECRET), "the passphrase is in Debug");
    let p = parse_in(&dir, &text("key_password_env = \"HOME\"")).expect("valid");
    assert_eq!(p.kafka.key_password_source.to_string(), "env HOME");
    let e = parse_in(&dir, &text("key_password_env = \"HOME\"\nkey_password_file = \"pass\"")).unwrap_err();
    assert!(
        e.contains(":7:21: kafka.key_password_file and kafka.key_password_env ("),
        "{e}"
    );
    let p = parse_in(&dir, &text("")).expect("valid");
    assert_eq!(p.kafka.key_password, None);
    assert_eq!(p.kafka.key_password_source, SecretSource::None);
}
