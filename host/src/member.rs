//! Who this process is in its sinks' consumer groups.
//!
//! Each sink joins its group as a Kafka static member (`group.instance.id`),
//! so a restarted process takes its partitions back at once. Every process of
//! a group needs its own id: two with the same one fence each other
//! (`FencedInstanceId`) and only one works at a time. The id of a sink is
//! `<group>-<process name>`, where the process name is
//!
//! - the `--instance-id` flag or `WASM_STREAM_INSTANCE_ID`, when set: stable
//!   across restarts, and the way to name processes on many machines;
//! - otherwise this machine's host name, with `-1`, `-2`, ... for the second,
//!   third, ... process running on it at the same time. A process claims the
//!   lowest free number by locking a file, which the kernel releases when the
//!   process ends (even killed), so a restarted process takes the number it
//!   left, as long as the others kept theirs.

use anyhow::{Context as _, bail};
use std::fs::File;
use std::sync::OnceLock;

/// The variable that names this process, like `--instance-id`.
pub const ENV: &str = "WASM_STREAM_INSTANCE_ID";
/// Processes on one machine that can take a default name.
const MAX_SLOTS: u32 = 256;
/// Longest process name (Kafka ids are strings; keep them readable).
const MAX_NAME_LEN: usize = 200;

struct Identity {
    name: String,
    explicit: bool,
    /// Held for the life of the process: the claim on the default name.
    _lock: Option<File>,
}

static IDENTITY: OnceLock<Identity> = OnceLock::new();

/// This process's name in consumer groups: the claimed one, or the host name
/// when nothing was claimed (commands that join no group).
pub fn name() -> String {
    IDENTITY.get().map_or_else(hostname, |i| i.name.clone())
}

/// Whether the name was given (`--instance-id` or the variable).
pub fn explicit() -> bool {
    IDENTITY.get().is_some_and(|i| i.explicit)
}

/// Fixes this process's name before the pipeline is loaded: `explicit` when
/// given, else the host name with the lowest number no other process on this
/// machine holds. Returns the name. Call it once.
pub fn claim(explicit: Option<&str>) -> anyhow::Result<String> {
    let identity = match explicit.map(str::trim) {
        Some(name) => {
            check_name(name)?;
            Identity {
                name: name.to_string(),
                explicit: true,
                _lock: None,
            }
        }
        None => claim_default(),
    };
    let name = identity.name.clone();
    if IDENTITY.set(identity).is_err() {
        bail!("the process name was already claimed");
    }
    Ok(name)
}

fn check_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty()
        || name.len() > MAX_NAME_LEN
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        bail!(
            "--instance-id (or {ENV}) {name:?} is not a valid name: use 1 to {MAX_NAME_LEN} letters, digits, '.', '_' or '-', e.g. \"$(hostname)-1\""
        );
    }
    Ok(())
}

fn claim_default() -> Identity {
    let host = hostname();
    match claim_slot(&host) {
        Ok((slot, lock)) => Identity {
            name: if slot == 0 { host } else { format!("{host}-{slot}") },
            explicit: false,
            _lock: Some(lock),
        },
        Err(e) => {
            tracing::warn!(
                error = %format!("{e:#}"),
                "cannot tell this process from others on this machine; using the host name as its id (set --instance-id to run several)"
            );
            Identity {
                name: host,
                explicit: false,
                _lock: None,
            }
        }
    }
}

/// Locks the lowest free slot file of this machine and user.
fn claim_slot(host: &str) -> anyhow::Result<(u32, File)> {
    use std::os::unix::fs::MetadataExt as _;
    let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("wasm-stream-members-{uid}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for slot in 0..MAX_SLOTS {
        let path = dir.join(format!("{host}.{slot}.lock"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => return Ok((slot, file)),
            Err(std::fs::TryLockError::WouldBlock) => continue,
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
    }
    bail!("{MAX_SLOTS} processes already run on this machine")
}

/// This machine's name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_claims_on_one_machine_get_different_slots() {
        let host = format!("unit-test-{}", std::process::id());
        let (a, _la) = claim_slot(&host).expect("first slot");
        let (b, lb) = claim_slot(&host).expect("second slot");
        assert_ne!(a, b);
        drop(lb);
        // A freed slot is taken again: a restarted process gets its name back.
        let (c, _lc) = claim_slot(&host).expect("freed slot");
        assert_eq!(b, c);
    }

    #[test]
    fn names_with_spaces_are_refused() {
        assert!(check_name("a b").is_err());
        assert!(check_name("").is_err());
        assert!(check_name("worker-1.eu").is_ok());
    }
}
