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
            let now = Instant::now();
            if let Some(path) = self
                .pending
                .iter()
                .find(|(_, at)| now.duration_since(**at) >= self.debounce)
                .map(|(p, _)| p.clone())
            {
                self.pending.remove(&path);
                return path;
            }
            let wait = self
                .pending
                .values()
                .map(|at| (*at + self.debounce).saturating_duration_since(now))
                .min();
            tokio::select! {
                event = self.events.recv() => match event {
                    Some(path) => {
                        let path = normalize(&path);
                        if self.files.contains(&path) {
                            self.pending.insert(path, Instant::now());
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
