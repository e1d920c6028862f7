//! A zombie: a host SIGSTOPped inside its transaction, holding the row locks
//! of its partitions' offsets. The host that takes its partitions must store
//! everything while the zombie is still stopped (the sink's session bounds an
//! idle transaction, which frees the locks), and the zombie, continued, must
//! not write its stale batch: every message lands exactly once.
use crate::support::common;

use common::chaos::{SHARED, zombie_scenario};
use std::time::Duration;

#[test]
fn a_stopped_host_is_fenced_and_its_successor_finishes() {
    let outcome = zombie_scenario(SHARED, 4_000, Duration::from_secs(120));
    assert!(outcome.problems.is_empty(), "{}", outcome.problems.join("\n"));
    let t = outcome.tally;
    assert_eq!((t.messages, t.duplicates, t.missing), (4_000, 0, 0), "{t:?}");
}
