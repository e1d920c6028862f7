//! A SIGTERMed host leaves its consumer group as it stops, so the broker gives
//! its partitions to the others at once, instead of keeping them for the
//! static member's session timeout (10 s). Read from the group coordinator.
mod common;

use common::chaos::SHARED;
use common::{Running, unique};
use std::time::{Duration, Instant};

#[test]
fn the_remaining_host_holds_every_partition_once_the_other_stopped() {
    let topic = unique("handover");
    let table = unique("handover_rows");
    let path = SHARED.one_sink_pipeline(&topic, 2, &table);
    let path = path.to_str().expect("utf-8 path");
    let group = format!("wasm-stream-{table}");
    let leaving = Running::member(path, &topic, "leaving");
    let staying = Running::member(path, &topic, "staying");
    common::wait_for("both hosts to hold a partition", Duration::from_secs(60), || {
        let m = SHARED.group_members(&group);
        m.len() == 2 && m.iter().all(|(_, p)| p.len() == 1)
    });

    leaving.terminate();
    // Well within the 10 s session timeout the stopped member would keep.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut members = Vec::new();
    while Instant::now() < deadline {
        members = SHARED.group_members(&group);
        if members.len() == 1 && members[0].1 == vec![0, 1] {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = staying.log();
    staying.terminate();
    assert!(
        members.len() == 1 && members[0].1 == vec![0, 1],
        "the stopped host still holds its partition: {members:?}\n{log}"
    );
}
