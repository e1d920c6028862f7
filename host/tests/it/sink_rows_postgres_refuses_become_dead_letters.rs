//! Rows PostgreSQL refuses for their data (NOT NULL, CHECK, `numeric(5,2)`,
//! `varchar(5)`, a trigger that raises, a unique index, a foreign key, a row
//! whose write reports `statement_timeout`), in
//! append and upsert sinks: a few culprits at random offsets among a few
//! thousand messages become dead letters with PostgreSQL's reason, every
//! other message is stored, and the stored offset reaches the end; one run
//! of each mode (a foreign key in append, a unique index in upsert) is
//! SIGKILLed on the way.
use crate::support::common;

use common::badrows::{Plan, RULES, Rule};
use common::{Db, Random, consume_through_sigkills, host_ok};

const MESSAGES: i64 = 2_000;
const CULPRITS: usize = 5;
const BATCH: usize = 500;
/// Keys of the upsert sinks: each is updated a few times.
const KEYS: i64 = 600;

fn run(keyed: bool) {
    let db = Db::connect();
    let mut random = Random::new();
    for rule in RULES {
        let plan = Plan::new(rule, keyed, MESSAGES, CULPRITS, KEYS, &mut random);
        let path = plan.prepare(&db, BATCH);
        let path = path.to_str().expect("utf-8");
        // One run of each mode is SIGKILLed twice on the way.
        let killed = if keyed { Rule::Unique } else { Rule::ForeignKey };
        if rule == killed {
            // Killed while it writes; the next run resumes from what PostgreSQL holds.
            let table = plan.table.clone();
            let rows = || db.query(&format!("SELECT count(*) FROM \"{table}\""), &[])[0].get::<_, i64>(0);
            consume_through_sigkills(path, 2, &mut random, rows);
        } else {
            let out = host_ok(&["consume", path, "--once", "--quiet"]);
            // A figure for RELIABILITY.md, not an assertion: the longest
            // time from a batch's write to the commit of the rest of it.
            let log = String::from_utf8_lossy(&out.stderr);
            let ms = log
                .split(" ms=")
                .skip(1)
                .filter_map(|t| t.split(' ').next()?.parse::<u64>().ok())
                .max();
            println!("figure: {rule:?} keyed={keyed}: longest batch with culprits {ms:?} ms");
        }
        plan.assert_stored(&db);
    }
}

#[test]
fn append_sinks_dead_letter_exactly_the_rows_postgres_refuses() {
    run(false);
}

#[test]
fn upsert_sinks_dead_letter_exactly_the_rows_postgres_refuses() {
    run(true);
}
