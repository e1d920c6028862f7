//! A cache of compiled components, so a large plugin (Python's are 12-20 MB,
//! seconds to compile) compiles once per version, not at every start.
//!
//! Loading compiled code is `unsafe` in wasmtime: a crafted file runs as
//! native code. So the cache only ever reads files this host wrote itself:
//! - the folder is the user's own (`$WASM_STREAM_CACHE_DIR`, else
//!   `$XDG_CACHE_HOME/wasm-stream/compiled`, else `~/.cache/wasm-stream/compiled`),
//!   created with mode 0700, and is used only while it is a real folder owned
//!   by the host's user and closed to everyone else;
//! - an entry is read only when it is a regular file owned by that user and
//!   writable by no one else, written with mode 0600 and renamed into place;
//! - an entry's name is the SHA-256 of the exact component bytes and a hash of
//!   the engine's version and settings, so other bytes or another engine
//!   never match.
//!
//! A write goes to `<entry>.tmp<pid>` and is renamed into place. A process
//! killed mid-write leaves that file: each start removes the temporaries of
//! processes that are gone (and any older than [`STALE_TMP`]), never those of
//! a process still running. Every command waits for its writes
//! ([`WRITES`]) before it exits, so it leaves none and the next run finds
//! the entry.
//!
//! `WASM_STREAM_CACHE_DIR=off` turns the cache off. Linux only (the user is
//! read from /proc/self); elsewhere every start compiles.

use sha2::Digest as _;
use std::hash::{Hash as _, Hasher as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use wasmtime::Engine;
use wasmtime::component::Component;

/// Whether this process opened a cache before (see [`Cache::at`]).
static OPENED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// Entries kept; the oldest beyond this are deleted when one is added.
const MAX_ENTRIES: usize = 64;
/// A temporary file older than this was left by a host that exited mid-write
/// (even if its pid now names another process).
const STALE_TMP: Duration = Duration::from_secs(600);

#[derive(Clone)]
pub struct Cache {
    dir: PathBuf,
    engine_key: String,
    uid: u32,
}

impl Cache {
    /// The cache in its usual folder, or `None` when it is off or the folder is not safe.
    pub fn open(engine: &Engine) -> Option<Self> {
        let dir = match std::env::var_os("WASM_STREAM_CACHE_DIR") {
            Some(v) if v == "off" => return None,
            Some(v) => PathBuf::from(v),
            None => match (std::env::var_os("XDG_CACHE_HOME"), std::env::var_os("HOME")) {
                (Some(x), _) if !x.is_empty() => PathBuf::from(x).join("wasm-stream/compiled"),
                (_, Some(h)) if !h.is_empty() => PathBuf::from(h).join(".cache/wasm-stream/compiled"),
                _ => return None,
            },
        };
        Self::at(&dir, engine)
    }

    /// The cache in `dir`, created if missing; `None` when the folder is not safe.
    pub fn at(dir: &Path, engine: &Engine) -> Option<Self> {
        let uid = own_uid()?;
        if !dir.exists() {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            set_dir_mode(&mut builder);
            if let Err(e) = builder.create(dir) {
                tracing::debug!(dir = %dir.display(), error = %e, "no compiled-code cache");
                return None;
            }
        }
        if !private(dir, uid, true) {
            tracing::warn!(
                dir = %dir.display(),
                "compiled-code cache not used: the folder must be yours and closed to others (chmod 700)"
            );
            return None;
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        let cache = Self {
            dir: dir.to_path_buf(),
            engine_key: format!("{:016x}", hasher.finish()),
            uid,
        };
        // Before this process's first cache write, no temporary carrying its
        // pid is its own: a container restarted mid-write can get the same pid.
        let first_open = !OPENED.swap(true, std::sync::atomic::Ordering::Relaxed);
        cache.remove_stale_temporaries(first_open);
        Some(cache)
    }

    /// The folder the entries are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Removes the partial writes of processes that are gone (killed while
    /// writing) and any older than [`STALE_TMP`].
    fn remove_stale_temporaries(&self, first_open: bool) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(pid) = temporary_of(&path) else {
                continue;
            };
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| m.elapsed().ok())
                .is_some_and(|age| age > STALE_TMP);
            if old || !running(pid) || (first_open && pid == std::process::id()) {
                tracing::debug!(path = %path.display(), "removing a partial compiled-code cache entry");
                let _ = std::fs::remove_file(&path);
            }
        }
    }

    fn entry(&self, bytes: &[u8]) -> PathBuf {
        let digest = sha2::Sha256::digest(bytes);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{hex}-{}.cwasm", self.engine_key))
    }

    /// The compiled form of `bytes`, when this host stored it before.
    pub fn load(&self, engine: &Engine, bytes: &[u8]) -> Option<Component> {
        let path = self.entry(bytes);
        if !private(&path, self.uid, false) {
            return None;
        }
        // SAFETY: the file is one this host's user wrote (checked above: a
        // regular file owned by the user, writable by no one else, in a folder
        // only the user can write), under a name made of the exact bytes'
        // SHA-256 and this engine's compatibility hash, by `store` below,
        // which only writes what wasmtime serialized.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "unusable compiled-code cache entry; compiling instead");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Keeps the compiled form of `bytes`; failures only cost a compile later.
    pub fn store(&self, bytes: &[u8], component: &Component) {
        let path = self.entry(bytes);
        let result = component.serialize().and_then(|code| {
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            write_private(&tmp, &code)?;
            std::fs::rename(&tmp, &path).inspect_err(|_| {
                let _ = std::fs::remove_file(&tmp);
            })?;
            Ok(())
        });
        match result {
            Ok(()) => self.prune(),
            Err(e) => tracing::debug!(path = %path.display(), error = %e, "cannot store compiled code"),
        }
    }

    fn prune(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
        for entry in entries.flatten() {
            let (path, Ok(modified)) = (entry.path(), entry.metadata().and_then(|m| m.modified())) else {
                continue;
            };
            if path.extension().is_some_and(|x| x == "cwasm") {
                files.push((modified, path));
            }
        }
        self.remove_stale_temporaries(false);
        if files.len() <= MAX_ENTRIES {
            return;
        }
        files.sort();
        for (_, path) in &files[..files.len() - MAX_ENTRIES] {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Cache writes still under way, so a command can wait for them before it
/// exits (a write cut short by the exit only costs a compile).
#[derive(Clone, Default)]
pub struct Writes(Arc<(Mutex<usize>, Condvar)>);

/// This process's cache writes.
pub static WRITES: std::sync::LazyLock<Writes> = std::sync::LazyLock::new(Writes::default);

/// One write under way; dropping it ends it.
pub struct Writing(Writes);

impl Writes {
    pub fn begin(&self) -> Writing {
        let (count, _) = &*self.0;
        *count.lock().unwrap_or_else(std::sync::PoisonError::into_inner) += 1;
        Writing(self.clone())
    }

    /// Waits until no write is under way, at most `limit`; false when one still is.
    pub fn wait(&self, limit: Duration) -> bool {
        let (count, done) = &*self.0;
        let guard = count.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (guard, _) = done
            .wait_timeout_while(guard, limit, |n| *n > 0)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard == 0
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        let (count, done) = &*(self.0).0;
        let mut n = count.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *n = n.saturating_sub(1);
        done.notify_all();
    }
}

/// The pid in a temporary entry's name (`<entry>.tmp<pid>`).
fn temporary_of(path: &Path) -> Option<u32> {
    path.extension()?.to_str()?.strip_prefix("tmp")?.parse().ok()
}

/// Whether process `pid` runs (as far as this host can see: its /proc).
fn running(pid: u32) -> bool {
    pid == std::process::id() || Path::new("/proc").join(pid.to_string()).exists()
}

#[cfg(target_os = "linux")]
fn own_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt as _;
    // /proc/self belongs to the process's effective user.
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

#[cfg(not(target_os = "linux"))]
fn own_uid() -> Option<u32> {
    None
}

#[cfg(unix)]
fn set_dir_mode(builder: &mut std::fs::DirBuilder) {
    use std::os::unix::fs::DirBuilderExt as _;
    builder.mode(0o700);
}

#[cfg(not(unix))]
fn set_dir_mode(_: &mut std::fs::DirBuilder) {}

/// A real folder (`dir`) or regular file owned by `uid` that no one else can
/// write (nor, for a folder, enter).
#[cfg(unix)]
fn private(path: &Path, uid: u32, dir: bool) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return false;
    };
    let kind_ok = if dir { meta.is_dir() } else { meta.is_file() };
    let closed = if dir { 0o077 } else { 0o022 };
    kind_ok && meta.uid() == uid && meta.mode() & closed == 0
}

#[cfg(not(unix))]
fn private(_: &Path, _: u32, _: bool) -> bool {
    false
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(_: &Path, _: &[u8]) -> std::io::Result<()> {
    Err(std::io::Error::other("no compiled-code cache on this platform"))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn temp_dir(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("wasm-stream-cache-{name}-{}", std::process::id()))
    }

    fn component_bytes() -> Option<Vec<u8>> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/release/langs.wasm");
        std::fs::read(path).ok()
    }

    #[test]
    fn a_stored_component_loads_and_other_bytes_do_not_match() {
        let Some(bytes) = component_bytes() else {
            eprintln!("skipped: build the plugins first");
            return;
        };
        let engine = Engine::default();
        let dir = temp_dir("roundtrip");
        let _ = std::fs::remove_dir_all(&dir);
        let cache = Cache::at(&dir, &engine).expect("a fresh folder is private");
        assert!(cache.load(&engine, &bytes).is_none());
        let component = Component::new(&engine, &bytes).expect("compiles");
        cache.store(&bytes, &component);
        assert!(cache.load(&engine, &bytes).is_some());
        let mut other = bytes.clone();
        other.push(0);
        assert!(cache.load(&engine, &other).is_none());

        // An entry others could have written is never read.
        let entry = cache.entry(&bytes);
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        assert!(cache.load(&engine, &bytes).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn partial_writes_of_gone_processes_are_removed_at_open() {
        let engine = Engine::default();
        let dir = temp_dir("partial");
        let _ = std::fs::remove_dir_all(&dir);
        Cache::at(&dir, &engine).expect("a fresh folder is private");
        let mut gone = std::process::Command::new("true").spawn().expect("spawn");
        gone.wait().expect("wait");
        let dead = dir.join(format!("a.tmp{}", gone.id()));
        let mine = dir.join(format!("b.tmp{}", std::process::id()));
        let entry = dir.join("c.cwasm");
        for path in [&dead, &mine, &entry] {
            std::fs::write(path, b"x").expect("write");
        }
        Cache::at(&dir, &engine).expect("still private");
        assert!(!dead.exists(), "a gone process's partial write is removed");
        assert!(
            mine.exists() && entry.exists(),
            "a running process's write and entries stay"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn waiting_for_writes_ends_when_the_last_ends() {
        let writes = Writes::default();
        assert!(writes.wait(Duration::ZERO));
        let writing = writes.begin();
        assert!(!writes.wait(Duration::from_millis(10)));
        let waiter = {
            let writes = writes.clone();
            std::thread::spawn(move || writes.wait(Duration::from_secs(60)))
        };
        drop(writing);
        assert!(waiter.join().expect("joins"));
    }

    #[test]
    fn a_folder_open_to_others_is_not_used() {
        let engine = Engine::default();
        let dir = temp_dir("open");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        assert!(Cache::at(&dir, &engine).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
