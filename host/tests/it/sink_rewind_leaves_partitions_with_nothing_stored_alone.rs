//! `host sink rewind` on partitions the sink has stored nothing for: they
//! have no rows and no dead letters, so the rewind leaves them alone (it
//! stores no offset), and the sink later starts them where its `start`
//! says; storing the rewind's target there would skip the messages before it.
use crate::support::{common, rewind};

use common::{Db, Keyed, SinkPipeline, create_topic, host_ok, produce_keyed, unique};
use rewind::{count, sink_ok, stored};

#[test]
fn a_rewind_before_anything_is_stored_moves_no_partition() {
    let topic = unique("rewind_fresh");
    let table = unique("rewind_fresh_rows");
    create_topic(&topic, 2);
    let messages: Vec<Keyed> = (0..20)
        .map(|i| {
            (
                i % 2,
                format!("k{i}").into_bytes(),
                Some(format!("{{\"i\": {i}}}").into_bytes()),
            )
        })
        .collect();
    produce_keyed(&topic, &messages);
    let path = SinkPipeline::new(&topic, &table, "json_row").write();
    let path = path.to_str().expect("utf-8 path");
    let db = Db::connect();

    let dry = sink_ok(&["rewind", path, "--sink", "rows", "--to-offset", "0:5", "--dry-run"]);
    assert!(dry.contains("nothing stored"), "the dry run says so: {dry}");
    let out = sink_ok(&["rewind", path, "--sink", "rows", "--to-offset", "0:5"]);
    assert!(out.contains("nothing stored"), "the rewind says so: {out}");
    assert_eq!(stored(&db, &table), vec![], "no offset stored by the rewind");

    // The sink starts from its start (the earliest): every message is stored.
    host_ok(&["run", path, "--once"]);
    assert_eq!(count(&db, &table), 20, "no message skipped");
    assert_eq!(stored(&db, &table), vec![(0, 10), (1, 10)]);
}
