//! The plugins a running host holds, for `/status` and the status page: each
//! generator's, mapper's and check's file, world, contract version, hash and
//! load time, from the start, and the last reload that failed (what, when,
//! which bytes) until a later load of that plugin succeeds. Entries are keyed
//! by the part of the pipeline the plugin serves (`sink rows`, `generator
//! langs`, `check sync`), as the plugin metrics are.

use super::state::{self, now_ms};
use crate::plugins::{Plugin, World, content_hash};
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::Path;

#[derive(Debug, Clone, Default, Serialize)]
pub struct PluginLive {
    pub path: String,
    /// Hash of the bytes that run (of the file, for one not loaded).
    pub hash: String,
    /// `generator`, `mapper` or `check` (`None`: not loaded).
    pub world: Option<String>,
    /// The plugin contract version the component targets.
    pub contract: Option<String>,
    /// Unix ms of the load (or of the last successful reload); `None`: not loaded.
    pub loaded_at_ms: Option<u64>,
    /// Why it is not loaded, when it is not.
    pub note: Option<String>,
    pub reload_error: Option<ReloadError>,
}

/// A reload of a plugin that failed; the previous version keeps running.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadError {
    pub message: String,
    pub at_ms: u64,
    /// Hash of the refused bytes, when they could be read.
    pub hash: Option<String>,
}

/// Whether two paths name the same file (as written or once resolved).
fn same_file(a: &Path, b: &Path) -> bool {
    a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}

/// A plugin instance was loaded (at start, by a reload or a changed pipeline file).
pub fn loaded<W: World>(plugin: &Plugin<W>) {
    state::lock().plugins.insert(
        plugin.name().to_string(),
        PluginLive {
            path: plugin.path().display().to_string(),
            hash: plugin.hash().to_string(),
            world: Some(W::KIND.to_string()),
            contract: Some(plugin.version().to_string()),
            loaded_at_ms: Some(now_ms()),
            note: None,
            reload_error: None,
        },
    );
}

/// A plugin the pipeline names that is not loaded (yet), and why; an entry
/// already loaded is left alone.
pub fn declared(name: &str, path: &Path, note: &str) {
    let mut live = state::lock();
    let entry = live.plugins.entry(name.to_string()).or_default();
    if entry.loaded_at_ms.is_some() && same_file(Path::new(&entry.path), path) {
        return;
    }
    entry.path = path.display().to_string();
    entry.hash = file_hash(path);
    entry.world = None;
    entry.contract = None;
    entry.loaded_at_ms = None;
    entry.note = Some(note.to_string());
}

fn file_hash(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| content_hash(&b))
        .unwrap_or_else(|e| format!("unreadable: {e}"))
}

/// The plugin of one unit (`sink rows`) could not be loaded from `path`: a
/// pipeline file that points it at a wrong file, or a new unit whose plugin
/// fails. A unit that never loaded gets an entry that says so.
pub fn refused_unit(name: &str, path: &Path, error: &str) {
    let hash = std::fs::read(path).ok().map(|b| content_hash(&b));
    let mut live = state::lock();
    let entry = live.plugins.entry(name.to_string()).or_insert_with(|| PluginLive {
        path: path.display().to_string(),
        hash: hash.clone().unwrap_or_else(|| "-".to_string()),
        ..Default::default()
    });
    if entry.loaded_at_ms.is_none() {
        entry.note = Some("not loaded: see the last reload error".to_string());
    }
    entry.reload_error = Some(ReloadError {
        message: error.to_string(),
        at_ms: now_ms(),
        hash,
    });
}

/// The changed file at `path` (bytes `hash`, when it could be read) was
/// refused for every plugin loaded from it.
pub fn refused_file(path: &Path, hash: Option<&str>, error: &str) {
    let at_ms = now_ms();
    for p in state::lock().plugins.values_mut() {
        if same_file(Path::new(&p.path), path) {
            p.reload_error = Some(ReloadError {
                message: error.to_string(),
                at_ms,
                hash: hash.map(str::to_string),
            });
        }
    }
}

/// The file at `path` holds the bytes every plugin loaded from it runs again
/// (restored after a refused change): their reload errors clear.
pub fn file_runs(path: &Path) {
    for p in state::lock().plugins.values_mut() {
        if same_file(Path::new(&p.path), path) && p.loaded_at_ms.is_some() {
            p.reload_error = None;
        }
    }
}

/// Keeps only the plugins of these parts of the pipeline (the others were removed).
pub fn retain(names: &BTreeSet<String>) {
    state::lock().plugins.retain(|name, _| names.contains(name));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_reload_shows_until_the_file_runs_again() {
        let dir = std::env::temp_dir().join(format!("plugin_live_{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("p.wasm");
        std::fs::write(&path, b"bytes").expect("write");
        let name = "generator plugin_live_test";
        declared(name, &path, "loading");
        state::lock().plugins.get_mut(name).expect("declared").loaded_at_ms = Some(1);
        refused_file(&path, Some("abc"), "is not a WebAssembly component");
        let e = state::lock().plugins[name].reload_error.clone().expect("an error");
        assert_eq!(e.message, "is not a WebAssembly component", "no stray prefix");
        assert_eq!(e.hash.as_deref(), Some("abc"));
        file_runs(&path);
        assert!(state::lock().plugins[name].reload_error.is_none());
        refused_unit(name, &path, "wrong world");
        assert!(state::lock().plugins[name].reload_error.is_some());
        let others: BTreeSet<String> = state::lock().plugins.keys().filter(|n| *n != name).cloned().collect();
        retain(&others);
        assert!(!state::lock().plugins.contains_key(name));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
