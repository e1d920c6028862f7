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
//!   left, as long as the others kept theirs. The lock files live in
//!   `$XDG_RUNTIME_DIR/wasm-stream-members`, or else in
//!   `/tmp/wasm-stream-members-<uid>`, which must be a real folder of this
//!   user that no one else can write (checked; lock files that are symbolic
//!   links are refused, never followed).

use anyhow::{Context as _, bail};
use std::fs::File;
use std::path::{Path, PathBuf};
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
        None => claim_default()?,
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

fn claim_default() -> anyhow::Result<Identity> {
    let host = hostname();
    Ok(match claim_slot(&host) {
        Ok((slot, lock)) => Identity {
            name: if slot == 0 { host } else { format!("{host}-{slot}") },
            explicit: false,
            _lock: Some(lock),
        },
        Err(SlotError::Unsafe(why)) => bail!("{why}"),
        Err(SlotError::Other(e)) => {
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
    })
}

/// Locks the lowest free slot file of this machine and user.
fn claim_slot(host: &str) -> Result<(u32, File), SlotError> {
    claim_slot_in(&lock_dir(), host)
}

/// Why no slot was claimed.
#[derive(Debug, thiserror::Error)]
enum SlotError {
    /// The folder or a file in it could be another user's trap: refuse to run.
    #[error("{0}")]
    Unsafe(String),
    /// Anything else (a read-only disk, say): run under the host name.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// The folder of the slot files: `$XDG_RUNTIME_DIR/wasm-stream-members` (a
/// folder systemd makes for the user alone), otherwise
/// `<temp dir>/wasm-stream-members-<uid>`, which this process checks.
fn lock_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir.join("wasm-stream-members"),
        _ => std::env::temp_dir().join(format!("wasm-stream-members-{}", uid())),
    }
}

fn uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// Creates `dir` for this user alone, or checks that an existing one is a
/// real folder (not a link), owned by this user and writable by no one else:
/// in a shared temp folder anyone could have made it first.
fn prepare_dir(dir: &Path) -> Result<(), SlotError> {
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(anyhow::Error::new(e)
                .context(format!("cannot create {}", dir.display()))
                .into());
        }
    }
    let meta = std::fs::symlink_metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    let d = dir.display();
    let fix = "or set XDG_RUNTIME_DIR to a folder of your own, or name the process with --instance-id";
    if !meta.file_type().is_dir() {
        return Err(SlotError::Unsafe(format!(
            "the member lock folder {d} is not a folder (a symbolic link or a file someone put there)
  hint: remove it (rm {d}) and start again, {fix}"
        )));
    }
    if meta.uid() != uid() {
        return Err(SlotError::Unsafe(format!(
            "the member lock folder {d} belongs to user id {}, not to this user ({})
  hint: remove it as its owner or as root (rm -r {d}) and start again, {fix}",
            meta.uid(),
            uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(SlotError::Unsafe(format!(
            "the member lock folder {d} is writable by other users (mode {:o})
  hint: chmod 700 {d}, {fix}",
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

/// Opens (creating, 0600) a lock file; a link planted in its place is
/// refused, not followed.
fn open_lock_file(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

fn claim_slot_in(dir: &Path, host: &str) -> Result<(u32, File), SlotError> {
    prepare_dir(dir)?;
    for slot in 0..MAX_SLOTS {
        let path = dir.join(format!("{host}.{slot}.lock"));
        let file = open_lock_file(&path);
        let file = match file {
            Ok(f) => f,
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(SlotError::Unsafe(format!(
                    "{} is a symbolic link, not a lock file
  hint: remove it (rm {}) and start again",
                    path.display(),
                    path.display()
                )));
            }
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("cannot open {}", path.display()))
                    .into());
            }
        };
        match file.try_lock() {
            Ok(()) => return Ok((slot, file)),
            Err(std::fs::TryLockError::WouldBlock) => continue,
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("cannot lock {}", path.display()))
                    .into());
            }
        }
    }
    Err(anyhow::anyhow!("{MAX_SLOTS} processes already run on this machine").into())
}

/// A process's claim on one `group.instance.id` on this machine: a locked
/// file `id.<id>.<pid>.lock` beside the slot files, released by the kernel
/// when the process ends (even killed). It tells a fenced sink whether the
/// process that fenced it runs on this machine: a real duplicate, not a
/// coordinator that lost track of its own member after a restart.
pub struct IdHold {
    dir: PathBuf,
    prefix: String,
    _lock: Option<File>,
}

impl IdHold {
    /// Claims `id` for this process; a claim that cannot be made (an
    /// unwritable temporary folder) only loses the check.
    pub fn claim(id: &str) -> Self {
        let dir = lock_dir();
        let prefix = format!("id.{}.", escape(id));
        let lock = prepare_dir(&dir).ok().and_then(|()| {
            let path = dir.join(format!("{prefix}{}.lock", std::process::id()));
            let file = open_lock_file(&path).ok()?;
            file.try_lock().ok().map(|()| file)
        });
        if lock.is_none() {
            tracing::debug!(
                id,
                "cannot claim the instance id on this machine; a fence is judged by its repetition only"
            );
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
        use std::os::unix::fs::OpenOptionsExt as _;
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
            let Ok(file) = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(entry.path())
            else {
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
        let path = ours.dir.join(format!("{}{}.lock", ours.prefix, u32::MAX));
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

    fn scratch(what: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("member-test-{what}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch folder");
        dir
    }

    fn unsafe_reason(r: Result<(u32, File), SlotError>) -> String {
        match r {
            Err(SlotError::Unsafe(why)) => why,
            Err(SlotError::Other(e)) => panic!("expected a refusal, got {e:#}"),
            Ok((slot, _)) => panic!("expected a refusal, got slot {slot}"),
        }
    }

    #[test]
    fn a_fresh_lock_folder_is_the_owners_alone() {
        use std::os::unix::fs::MetadataExt as _;
        let dir = scratch("fresh").join("members");
        let (slot, _lock) = claim_slot_in(&dir, "h").expect("slot");
        assert_eq!(slot, 0);
        let meta = std::fs::symlink_metadata(&dir).expect("stat");
        assert_eq!(meta.mode() & 0o777, 0o700);
        let file = std::fs::symlink_metadata(dir.join("h.0.lock")).expect("stat");
        assert_eq!(file.mode() & 0o777, 0o600);
        let _ = std::fs::remove_dir_all(dir.parent().expect("scratch"));
    }

    #[test]
    fn a_lock_folder_writable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = scratch("mode").join("members");
        std::fs::create_dir(&dir).expect("dir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let why = unsafe_reason(claim_slot_in(&dir, "h"));
        assert!(
            why.contains("writable by other users") && why.contains("chmod 700"),
            "{why}"
        );
        assert!(!dir.join("h.0.lock").exists(), "nothing was written there");
        let _ = std::fs::remove_dir_all(dir.parent().expect("scratch"));
    }

    #[test]
    fn a_lock_folder_of_another_user_is_refused() {
        let dir = scratch("owner").join("members");
        std::fs::create_dir(&dir).expect("dir");
        // Only root can give a folder away; others test the mode case above.
        if uid() != 0 {
            return;
        }
        std::os::unix::fs::chown(&dir, Some(65534), None).expect("chown");
        let why = unsafe_reason(claim_slot_in(&dir, "h"));
        assert!(
            why.contains("belongs to user id 65534") && why.contains("rm -r"),
            "{why}"
        );
        let _ = std::fs::remove_dir_all(dir.parent().expect("scratch"));
    }

    #[test]
    fn symbolic_links_are_refused_not_followed() {
        let root = scratch("links");
        let elsewhere = root.join("elsewhere");
        std::fs::create_dir(&elsewhere).expect("dir");
        // The folder itself is a link.
        let dir = root.join("members");
        std::os::unix::fs::symlink(&elsewhere, &dir).expect("symlink");
        let why = unsafe_reason(claim_slot_in(&dir, "h"));
        assert!(why.contains("not a folder"), "{why}");
        // A lock file is a link to a file of the victim's.
        let dir = root.join("members2");
        std::fs::create_dir(&dir).expect("dir");
        let victim = root.join("victim");
        std::fs::write(&victim, "keep me").expect("victim");
        std::os::unix::fs::symlink(&victim, dir.join("h.0.lock")).expect("symlink");
        let why = unsafe_reason(claim_slot_in(&dir, "h"));
        assert!(why.contains("is a symbolic link"), "{why}");
        assert_eq!(std::fs::read_to_string(&victim).expect("read"), "keep me");
        let _ = std::fs::remove_dir_all(&root);
    }
}
