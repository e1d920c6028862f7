//! Hot reload of the pipeline file: adding a generator starts messages on its
//! topic, removing it stops them, changing its interval changes its rate, and
//! a file with an error leaves the running pipeline unchanged.
use crate::support::common;

use common::{Running, connection_sections, plugin, replace_atomically, topic_size, unique, wait_for};
use std::time::Duration;

fn generator(name: &str, topic: &str, interval_ms: u64) -> String {
    format!(
        "[[generators]]\nname = \"{name}\"\ntopic = \"{topic}\"\nplugin = \"{}\"\ninterval_ms = {interval_ms}\n\n",
        plugin("cars").display()
    )
}

fn topics(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("[[topics]]\nname = \"{n}\"\n\n"))
        .collect()
}

/// Messages added to a topic over `window`.
fn rate(topic: &str, window: Duration) -> i64 {
    let before = topic_size(topic);
    std::thread::sleep(window);
    topic_size(topic) - before
}

#[test]
fn generators_are_added_changed_and_removed_while_running() {
    let (a, b) = (unique("live_a"), unique("live_b"));
    let dir = std::env::temp_dir().join(unique("live"));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("pipeline.toml");
    let head = format!("{}\n{}", connection_sections(), topics(&[&a, &b]));
    std::fs::write(&path, format!("{head}{}", generator("a", &a, 20))).expect("write");
    let host = Running::start(&["run", path.to_str().expect("utf-8")]);
    wait_for("messages on a", Duration::from_secs(30), || topic_size(&a) > 0);

    // Added: messages start on b.
    replace_atomically(
        &path,
        format!("{head}{}{}", generator("a", &a, 20), generator("b", &b, 20)).as_bytes(),
    );
    wait_for("messages on b", Duration::from_secs(30), || topic_size(&b) > 10);

    // Changed: a slows from 50 to 5 messages a second.
    let fast = rate(&a, Duration::from_secs(2));
    replace_atomically(
        &path,
        format!("{head}{}{}", generator("a", &a, 200), generator("b", &b, 20)).as_bytes(),
    );
    std::thread::sleep(Duration::from_secs(1));
    let slow = rate(&a, Duration::from_secs(2));
    assert!(
        fast >= 60 && (5..=15).contains(&slow),
        "a's rate went from {fast} to {slow} per 2 s"
    );

    // Removed: b stops.
    replace_atomically(&path, format!("{head}{}", generator("a", &a, 200)).as_bytes());
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(rate(&b, Duration::from_secs(2)), 0, "b stopped");

    // A broken file: nothing changes, a keeps its pace.
    replace_atomically(
        &path,
        format!("{head}{}[[generators]\nname = \"c\"\n", generator("a", &a, 20)).as_bytes(),
    );
    std::thread::sleep(Duration::from_secs(1));
    let still = rate(&a, Duration::from_secs(2));
    assert!(
        (5..=15).contains(&still),
        "the running pipeline kept its settings: {still} per 2 s"
    );
    assert_eq!(rate(&b, Duration::from_secs(1)), 0, "b stays stopped");

    let log = host.terminate();
    assert!(log.contains("the running pipeline is unchanged"), "{log}");
    assert!(log.contains("pipeline.toml:"), "the error is located: {log}");
}
