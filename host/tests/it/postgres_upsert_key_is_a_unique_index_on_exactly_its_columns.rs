//! `mode = "upsert"` needs `ON CONFLICT (key)` to find a unique index on
//! exactly the key columns; the host's check must agree with PostgreSQL's.

use crate::support::common;

use common::{Db, load, unique, write_pipeline};

fn check(table: &str, key: &[&str]) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let pg = load(&write_pipeline("")).postgres;
    let key: Vec<String> = key.iter().map(|k| k.to_string()).collect();
    rt.block_on(async {
        let client = host::postgres::connect(&pg).await?;
        host::postgres::keyed::check_unique_key(&client, table, &key).await
    })
}

#[test]
fn included_columns_of_a_unique_index_are_not_part_of_its_key() {
    let db = Db::connect();
    let table = unique("upsert_include");
    db.execute(&format!(
        "CREATE TABLE \"{table}\" (id text NOT NULL, v text, UNIQUE (id) INCLUDE (v))"
    ));
    // PostgreSQL: the index serves ON CONFLICT (id), not ON CONFLICT (id, v).
    db.execute(&format!(
        "INSERT INTO \"{table}\" (id, v) VALUES ('a', 'x') ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v"
    ));
    assert!(
        check(&table, &["id"]).is_ok(),
        "a unique index on (id) INCLUDE (v) is a key on id"
    );
    let e = check(&table, &["id", "v"]).expect_err("no unique index on (id, v)");
    assert!(
        format!("{e:#}").contains("no primary key or unique constraint on (id, v)"),
        "{e:#}"
    );
    db.execute(&format!("DROP TABLE \"{table}\""));
}
