//! Watching files for hot reload: the pipeline file and every plugin file it
//! names. Editors save in many ways (write in chunks, write a temporary file
//! and rename it over, delete and create), so the folders are watched, not the
//! files, and a path is reported only once it has been quiet for the debounce
//! time: one report per logical change, never a half-written file (what is
//! read is then hashed and validated before anything is swapped).

use anyhow::Context as _;
use notify::{RecursiveMode, Watcher as _};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The link a Kubernetes ConfigMap or Secret volume swaps on an update: its
/// files are links through it (`pipeline.toml -> ..data/pipeline.toml`), so
/// no event names them, only `..data` (renamed over a new `..data_tmp`).
const KUBERNETES_DATA: &str = "..data";

/// How long a file must be quiet before it is reloaded.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// The form in which paths are compared: the folder resolved, the file name kept.
pub fn normalize(path: &Path) -> PathBuf {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    match path.file_name() {
        Some(name) => dir.join(name),
        None => dir,
    }
}

/// Whether a file event can mean new content. Reading a file is not a
/// change: the periodic audit opening the check plugins every round once made
/// them look changed 30 s after start. Closing a file written to is one.
pub fn counts_as_change(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind};
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// What the debounce says about the files that changed.
#[derive(Debug, PartialEq, Eq)]
pub enum Due {
    /// This file has been quiet long enough (the longest-quiet one first).
    Now(PathBuf),
    /// The next file is due in this long.
    In(Duration),
    /// Nothing changed.
    Idle,
}

/// `pending` maps each changed file to its last event: a file is reported
/// once no event touched it for `debounce`, so a save in chunks, or a
/// delete and create, is one change.
pub fn due(pending: &HashMap<PathBuf, Instant>, now: Instant, debounce: Duration) -> Due {
    match pending.iter().min_by_key(|(_, at)| **at) {
        None => Due::Idle,
        Some((path, at)) if now.saturating_duration_since(*at) >= debounce => Due::Now(path.clone()),
        Some((_, at)) => Due::In((*at + debounce).saturating_duration_since(now)),
    }
}

pub struct Watcher {
    inner: notify::RecommendedWatcher,
    events: mpsc::UnboundedReceiver<PathBuf>,
    folders: HashSet<PathBuf>,
    files: HashSet<PathBuf>,
    pending: HashMap<PathBuf, Instant>,
    debounce: Duration,
}

impl Watcher {
    pub fn new(debounce: Duration) -> anyhow::Result<Self> {
        let (tx, events) = mpsc::unbounded_channel();
        let inner = notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) if counts_as_change(&event.kind) => {
                for path in event.paths {
                    let _ = tx.send(path);
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "file watcher error"),
        })
        .context("cannot start the file watcher")?;
        Ok(Self {
            inner,
            events,
            folders: HashSet::new(),
            files: HashSet::new(),
            pending: HashMap::new(),
            debounce,
        })
    }

    /// Watches exactly these files (their folders, that is), from now on.
    pub fn watch_files(&mut self, files: impl IntoIterator<Item = PathBuf>) {
        self.files = files.into_iter().map(|f| normalize(&f)).collect();
        let wanted: HashSet<PathBuf> = self
            .files
            .iter()
            .filter_map(|f| f.parent().map(Path::to_path_buf))
            .collect();
        for folder in wanted.difference(&self.folders.clone()) {
            match self.inner.watch(folder, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.folders.insert(folder.clone());
                }
                Err(e) => {
                    tracing::warn!(folder = %folder.display(), error = %e, "cannot watch folder; changes there are not reloaded")
                }
            }
        }
    }

    /// The next file that changed and has since been quiet for the debounce time.
    pub async fn next(&mut self) -> PathBuf {
        loop {
            let wait = match due(&self.pending, Instant::now(), self.debounce) {
                Due::Now(path) => {
                    self.pending.remove(&path);
                    return path;
                }
                Due::In(wait) => Some(wait),
                Due::Idle => None,
            };
            tokio::select! {
                event = self.events.recv() => match event {
                    Some(path) => {
                        let path = normalize(&path);
                        let now = Instant::now();
                        if self.files.contains(&path) {
                            self.pending.insert(path, now);
                        } else if path.file_name().is_some_and(|n| n == KUBERNETES_DATA) {
                            // A Kubernetes ConfigMap or Secret volume was updated:
                            // every file in it may have changed (an unchanged one
                            // is then found equal and left alone).
                            for file in self.files.iter().filter(|f| f.parent() == path.parent()) {
                                self.pending.insert(file.clone(), now);
                            }
                        }
                    }
                    None => std::future::pending::<()>().await,
                },
                _ = tokio::time::sleep(wait.unwrap_or(Duration::from_secs(3600))) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{
        AccessKind, AccessMode, CreateKind, DataChange, EventKind, ModifyKind, RemoveKind, RenameMode,
    };

    const D: Duration = Duration::from_millis(300);

    #[test]
    fn nothing_pending_is_idle() {
        assert_eq!(due(&HashMap::new(), Instant::now(), D), Due::Idle);
    }

    #[test]
    fn a_file_is_due_once_quiet_for_the_debounce_time() {
        let t0 = Instant::now();
        let pending = HashMap::from([(PathBuf::from("/p/a.wasm"), t0)]);
        assert_eq!(due(&pending, t0, D), Due::In(D));
        assert_eq!(
            due(&pending, t0 + Duration::from_millis(100), D),
            Due::In(Duration::from_millis(200))
        );
        assert_eq!(due(&pending, t0 + D, D), Due::Now(PathBuf::from("/p/a.wasm")));
        assert_eq!(due(&pending, t0 + D * 10, D), Due::Now(PathBuf::from("/p/a.wasm")));
    }

    #[test]
    fn a_new_event_pushes_the_file_back() {
        let t0 = Instant::now();
        // Written in chunks: the last chunk's event counts.
        let last_chunk = t0 + Duration::from_millis(250);
        let pending = HashMap::from([(PathBuf::from("/p/a.wasm"), last_chunk)]);
        assert_eq!(due(&pending, t0 + D, D), Due::In(Duration::from_millis(250)));
    }

    #[test]
    fn the_longest_quiet_file_comes_first() {
        let t0 = Instant::now();
        let pending = HashMap::from([
            (PathBuf::from("/p/late.wasm"), t0 + Duration::from_millis(50)),
            (PathBuf::from("/p/early.wasm"), t0),
            (PathBuf::from("/p/later.wasm"), t0 + Duration::from_millis(400)),
        ]);
        assert_eq!(due(&pending, t0 + D * 2, D), Due::Now(PathBuf::from("/p/early.wasm")));
        assert_eq!(
            due(&pending, t0 + Duration::from_millis(100), D),
            Due::In(Duration::from_millis(200))
        );
    }

    #[test]
    fn reading_a_file_is_not_a_change() {
        for kind in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Open(AccessMode::Read)),
            EventKind::Access(AccessKind::Read),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Access(AccessKind::Any),
        ] {
            assert!(!counts_as_change(&kind), "{kind:?}");
        }
    }

    #[test]
    fn writing_creating_renaming_and_removing_are_changes() {
        for kind in [
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Remove(RemoveKind::File),
            EventKind::Any,
            EventKind::Other,
        ] {
            assert!(counts_as_change(&kind), "{kind:?}");
        }
    }

    /// A ConfigMap volume updated the way the kubelet does it (its atomic
    /// writer): the new files in a new folder, a new `..data_tmp` link to it
    /// renamed over `..data`. The file the host watches is a link through
    /// `..data`, which no event names.
    #[tokio::test]
    async fn a_kubernetes_configmap_update_is_a_change_of_its_files() {
        use std::os::unix::fs::symlink;
        let dir = std::env::temp_dir().join(format!("wasm-stream-configmap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("..v1")).expect("folder");
        std::fs::write(dir.join("..v1/pipeline.toml"), "v1").expect("write");
        symlink("..v1", dir.join("..data")).expect("link");
        symlink("..data/pipeline.toml", dir.join("pipeline.toml")).expect("link");

        let mut watcher = Watcher::new(Duration::from_millis(50)).expect("watcher");
        watcher.watch_files([dir.join("pipeline.toml")]);
        std::fs::create_dir_all(dir.join("..v2")).expect("folder");
        std::fs::write(dir.join("..v2/pipeline.toml"), "v2").expect("write");
        symlink("..v2", dir.join("..data_tmp")).expect("link");
        std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).expect("swap");

        let changed = tokio::time::timeout(Duration::from_secs(10), watcher.next())
            .await
            .expect("the update is seen");
        assert_eq!(changed, normalize(&dir.join("pipeline.toml")));
        assert_eq!(std::fs::read_to_string(&changed).expect("read"), "v2");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn paths_are_compared_with_the_folder_resolved() {
        let dir = std::env::temp_dir();
        let resolved = dir.canonicalize().expect("temp dir");
        assert_eq!(normalize(&dir.join("x.wasm")), resolved.join("x.wasm"));
        assert_eq!(normalize(&dir.join(".").join("x.wasm")), resolved.join("x.wasm"));
        // A folder that does not exist is kept as written.
        assert_eq!(
            normalize(Path::new("/nowhere/at/all/x.wasm")),
            PathBuf::from("/nowhere/at/all/x.wasm")
        );
        // A bare file name is in the current folder.
        let here = Path::new(".").canonicalize().expect("current dir");
        assert_eq!(normalize(Path::new("x.wasm")), here.join("x.wasm"));
    }
}
