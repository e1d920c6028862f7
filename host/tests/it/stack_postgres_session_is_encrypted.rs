//! The local PostgreSQL behaves like Aiven's: TLS, verified against certs/ca.pem.
use crate::support::common;

use common::{Db, load, write_pipeline};

#[test]
fn the_server_sees_an_encrypted_session() {
    let db = Db::connect();
    let rows = db.query("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]);
    assert_eq!(rows.len(), 1);
    let ssl: bool = rows[0].get(0);
    let version: Option<String> = rows[0].get(1);
    assert!(ssl, "pg_stat_ssl says the session is not encrypted");
    assert!(version.unwrap_or_default().starts_with("TLS"), "TLS version reported");
}

#[test]
fn a_plaintext_connection_is_refused_by_the_server() {
    let path = write_pipeline("");
    let mut pg = load(&path).postgres;
    pg.tls = host::config::PgTls::Disable;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let Err(err) = rt.block_on(host::postgres::connect(&pg)) else {
        panic!("plaintext must be refused")
    };
    let text = format!("{err:#}");
    assert!(text.contains("no encryption") || text.contains("pg_hba.conf"), "{text}");
}

#[test]
fn a_server_certificate_from_another_ca_is_not_trusted() {
    let path = write_pipeline("");
    let mut pg = load(&path).postgres;
    pg.ca = Some(common::repo_root().join("certs/other-ca.pem"));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let Err(err) = rt.block_on(host::postgres::connect(&pg)) else {
        panic!("verification must fail")
    };
    assert!(format!("{err:#}").contains("certificate verify failed"), "{err:#}");
}
