//! A seeded generator produces the same bytes on two runs; another seed does not.
use crate::support::common;

use common::{create_topic, host_ok, plugin, read_topic, unique, write_pipeline};

fn produce(seed: u64) -> Vec<Option<Vec<u8>>> {
    let topic = unique("seeded");
    create_topic(&topic, 1);
    let path = write_pipeline(&format!(
        "[[topics]]\nname = \"{topic}\"\n\n[[generators]]\nname = \"g\"\ntopic = \"{topic}\"\nplugin = \"{}\"\ncount = 200\nseed = {seed}\n",
        plugin("cars").display()
    ));
    host_ok(&["produce", path.to_str().expect("utf-8"), "--quiet"]);
    read_topic(&topic).into_iter().map(|m| m.payload).collect()
}

#[test]
fn the_same_seed_gives_the_same_bytes() {
    let first = produce(7);
    let second = produce(7);
    assert_eq!(first.len(), 200);
    assert_eq!(first, second);
    let distinct: std::collections::HashSet<_> = first.iter().collect();
    assert!(distinct.len() > 5, "the messages vary: {} distinct", distinct.len());
    assert_ne!(first, produce(8), "another seed gives other messages");
}
