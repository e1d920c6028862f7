//! Two processes given the same instance id: the broker fences the first one
//! out when the second joins. The fenced one must end with an error that says
//! why and how to fix it, not retry forever doing nothing.
mod common;

use common::chaos::SHARED;
use common::{Running, unique};
use std::time::{Duration, Instant};

#[test]
fn a_fenced_sink_exits_non_zero_naming_the_instance_id() {
    let topic = unique("fence");
    let table = unique("fence_rows");
    let path = SHARED.one_sink_pipeline(&topic, 2, &table);
    let path = path.to_str().expect("utf-8 path");
    let id = unique("twin");
    let group = format!("wasm-stream-{table}");
    let mut first = Running::member(path, &topic, &id);
    common::wait_for("the first process to join", Duration::from_secs(60), || {
        SHARED.group_members(&group).len() == 1
    });
    let second = Running::member(path, &topic, &id);

    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = first.child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = first.child.kill();
            panic!("the fenced process did not end\n{}", first.log());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = first.log();
    assert!(!status.success(), "a fenced process must fail: {status}\n{log}");
    assert!(
        log.contains("--instance-id") && log.contains(&id),
        "the error names the id and the fix:\n{log}"
    );
    second.terminate();
}
