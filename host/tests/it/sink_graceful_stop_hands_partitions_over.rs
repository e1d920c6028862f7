//! A SIGTERMed host leaves its consumer group as it stops, so the broker gives
//! its partitions to the others at once, instead of keeping them for the
//! static member's session timeout (10 s). Read from the group coordinator.
use crate::support::common;

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
    let mut leaving = Running::member(path, &topic, "leaving");
    let mut staying = Running::member(path, &topic, "staying");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m = SHARED.group_members(&group);
        if m.len() == 2 && m.iter().all(|(_, p)| p.len() == 1) {
            break;
        }
        // A host that ended by itself will not join: say why at once.
        for (name, host) in [("leaving", &mut leaving), ("staying", &mut staying)] {
            if let Some(status) = host.child.try_wait().expect("wait") {
                panic!("host {name:?} ended by itself ({status}):\n{}", host.log());
            }
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for both hosts to hold a partition\n{}\n--- leaving:\n{}\n--- staying:\n{}",
            SHARED.describe_group(&group),
            leaving.log(),
            staying.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

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
