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
    let dir = members_dir();
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

/// A process's claim on one `group.instance.id` on this machine: a locked
/// file `id.<id>.<pid>.lock` beside the slot files, released by the kernel
/// when the process ends (even killed). It tells a fenced sink whether the
/// process that fenced it runs on this machine: a real duplicate, not a
/// coordinator that lost track of its own member after a restart.
pub struct IdHold {
    dir: std::path::PathBuf,
    prefix: String,
    _lock: Option<File>,
}

impl IdHold {
    /// Claims `id` for this process; a claim that cannot be made (an
    /// unwritable temporary folder) only loses the check.
    pub fn claim(id: &str) -> Self {
        let dir = members_dir();
        let prefix = format!("id.{}.", escape(id));
        let lock = std::fs::create_dir_all(&dir).ok().and_then(|()| {
            let path = dir.join(format!("{prefix}{}.lock", std::process::id()));
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .ok()?;
            file.try_lock().ok().map(|()| file)
        });
        if lock.is_none() {
            tracing::debug!(id, "cannot claim the instance id on this machine; a fence is judged by its repetition only");
        }
        Self {
            dir,
            prefix,
            _lock: lock,
        }
    }

    /// The process ids of other running processes on this machine that
    /// claimed the same id. Files of ended processes are removed.
    pub fn others(&self) -> Vec<u32> {
        let own = std::process::id();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut others = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix(&self.prefix))
                .and_then(|n| n.strip_suffix(".lock"))
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if pid == own {
                continue;
            }
            let Ok(file) = std::fs::OpenOptions::new().write(true).open(entry.path()) else {
                continue;
            };
            match file.try_lock() {
                Err(std::fs::TryLockError::WouldBlock) => others.push(pid),
                // Free: its process ended.
                Ok(()) => {
                    let _ = std::fs::remove_file(entry.path());
                }
                Err(std::fs::TryLockError::Error(_)) => {}
            }
        }
        others.sort_unstable();
        others
    }
}

/// An instance id as a file name: `%XX` for bytes other than letters,
/// digits, `_` and `-` (a dot separates the name's parts).
fn escape(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Where the claim files of this machine and user live.
fn members_dir() -> std::path::PathBuf {
    use std::os::unix::fs::MetadataExt as _;
    let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0);
    std::env::temp_dir().join(format!("wasm-stream-members-{uid}"))
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
    fn a_second_claim_of_an_id_is_seen_and_a_released_one_is_not() {
        let id = format!("unit test/{}", std::process::id());
        let ours = IdHold::claim(&id);
        assert!(ours.others().is_empty());
        // Another process's claim, made here by hand under a made-up pid.
        let path = members_dir().join(format!("{}{}.lock", ours.prefix, u32::MAX));
        let file = std::fs::File::create(&path).expect("claim file");
        file.try_lock().expect("lock");
        // flock locks belong to the open file: this one is "another process".
        assert_eq!(ours.others(), vec![u32::MAX]);
        drop(file);
        assert!(ours.others().is_empty());
        assert!(!path.exists(), "the file of an ended claim is removed");
    }

    #[test]
    fn names_with_spaces_are_refused() {
        assert!(check_name("a b").is_err());
        assert!(check_name("").is_err());
        assert!(check_name("worker-1.eu").is_ok());
    }
}
