//! A write that keeps failing for a reason that is not the rows' fault (a
//! trigger reporting a serialization failure while a gate row exists): the
//! sink retries the batch whole, pausing longer each time (no tight loop),
//! and once it has gone 30 s without a commit it says so on /status and in
//! `wasm_stream_sink_stuck_seconds`. Once the cause is gone, every message is
//! stored exactly once, no dead letter, and the sink is no longer stuck.
use crate::support::{common, ops};

use common::{Db, Running, SinkPipeline, create_topic, produce_keyed, unique, wait_for};
use ops::{count_rows, free_port, get, sample};
use std::time::Duration;

const COUNT: i64 = 200;

#[test]
fn a_sink_whose_writes_keep_failing_backs_off_and_says_so() {
    let topic = unique("stuck");
    let table = unique("stuck_rows");
    let sink = unique("stuck_sink");
    let port = free_port();
    create_topic(&topic, 1);
    let db = Db::connect();
    db.execute(&format!(
        "CREATE TABLE \"{table}\" (message_id bigserial PRIMARY KEY, seq bigint NOT NULL);
         CREATE TABLE \"{table}_gate\" (closed boolean);
         INSERT INTO \"{table}_gate\" VALUES (true);
         CREATE FUNCTION \"{table}_gate\"() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN IF EXISTS (SELECT 1 FROM \"{table}_gate\") THEN
           RAISE EXCEPTION 'the gate is closed' USING ERRCODE = 'serialization_failure';
         END IF; RETURN NEW; END $$;
         CREATE TRIGGER gate BEFORE INSERT ON \"{table}\" FOR EACH ROW EXECUTE FUNCTION \"{table}_gate\"()"
    ));
    let messages: Vec<common::Keyed> = (0..COUNT)
        .map(|seq| {
            (
                0,
                seq.to_string().into_bytes(),
                Some(format!(r#"{{"seq": {seq}}}"#).into_bytes()),
            )
        })
        .collect();
    produce_keyed(&topic, &messages);
    let path = SinkPipeline::new(&topic, &table, "json_columns")
        .name(&sink)
        .batch_size(50)
        .extra("[sinks.settings]\ncolumns = [{ name = \"seq\", type = \"integer\" }]")
        .extra(&format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n\n[audit]\ninterval_ms = 0"
        ))
        .write();
    let host = Running::start(&["run", path.to_str().expect("utf-8"), "--no-watch"]);

    let status = || get(port, "/status").map(|(_, body)| body).unwrap_or_default();
    wait_for("the sink stuck on /status", Duration::from_secs(90), || {
        status().contains("no batch committed for")
    });
    let body = status();
    assert!(body.contains("the gate is closed"), "the cause is shown: {body}");
    let metrics = get(port, "/metrics").expect("metrics").1;
    let stuck = sample(&metrics, &format!("wasm_stream_sink_stuck_seconds{{sink=\"{sink}\"}}")).expect("stuck gauge");
    assert!(stuck >= 30.0, "stuck for {stuck} s\n{metrics}");
    let rewinds =
        sample(&metrics, &format!("wasm_stream_sink_rewinds_total{{sink=\"{sink}\"}}")).expect("rewinds counter");
    // Pauses of 0.1 s doubling to 5 s: about a dozen attempts in 30 s; a
    // tight loop makes dozens to thousands (61 on the shared test machine).
    assert!(rewinds < 25.0, "{rewinds} rewinds in {stuck} s: no backoff?");
    assert_eq!(count_rows(&db, &table), 0);

    db.execute(&format!("DELETE FROM \"{table}_gate\""));
    wait_for("every message stored", Duration::from_secs(60), || {
        count_rows(&db, &table) == COUNT
    });
    wait_for("no longer stuck", Duration::from_secs(30), || {
        !status().contains("no batch committed for")
    });
    let metrics = get(port, "/metrics").expect("metrics").1;
    let stuck = sample(&metrics, &format!("wasm_stream_sink_stuck_seconds{{sink=\"{sink}\"}}"));
    assert_eq!(stuck, Some(0.0));
    let log = host.terminate();
    let seqs: Vec<i64> = db
        .query(&format!("SELECT seq FROM \"{table}\" ORDER BY seq"), &[])
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(seqs, (0..COUNT).collect::<Vec<_>>(), "every message once");
    assert!(db.dead_letters(&topic).is_empty(), "not the rows' fault: no letter");
    assert!(log.contains("sink stuck"), "the warning:\n{log}");
}
