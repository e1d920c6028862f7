//! The plugin runtime: one wasmtime [`Engine`] configured here, and
//! [`Plugin`], a sandboxed instance of one component targeting one world of
//! `wit/plugin.wit`. The rest of the host sees `Plugin::load` and typed calls.
//!
//! Sandbox: no preopened directories, no environment, no sockets, stdout
//! discarded and stderr captured (so a panic message becomes the reason of a
//! dead letter). Each call has a deadline (epoch interruption, the epoch
//! ticked by a thread of its own so a spinning guest cannot stop it, and
//! `deadline` for a guest waiting in WASI) and each instance a memory cap. A plugin that traps is re-instantiated and
//! re-configured before its next call.

mod cache;
mod compat;
mod compat_v0_2;
mod deadline;
mod file_kind;
mod instance;
mod limits;
mod observe;
pub mod output;
mod runtime;
pub mod trap_text;
mod worlds;

pub use crate::digest::content_hash;
pub use instance::{Compiled, Plugin};
pub use observe::Observer;
pub use runtime::Runtime;
pub use worlds::{CONTRACT_VERSION, CheckWorld, GeneratorWorld, MapperWorld, Version, World, check, generator, mapper};

use crate::config::{PluginConfig, PluginLimits};
use rand::SeedableRng as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, Trap};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// How often the epoch advances; call deadlines are counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Components at least this large are kept in the compiled-code cache.
const MIN_CACHED_BYTES: usize = 1 << 20;
/// How long a command waits, before it exits, for its compiled code to
/// reach the cache (see [`finish_cache_writes`]).
pub const CACHE_WRITE_WAIT: Duration = Duration::from_secs(120);
/// Compilations at least this long are logged at info level.
const SLOW_COMPILE_MS: u128 = 500;
/// How much of a plugin's stderr is kept for error messages.
const STDERR_CAPTURE_BYTES: usize = 4096;

/// Why a plugin could not be loaded or called.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error(
        "cannot read plugin {}: {error}\n  hint: a relative plugin path is resolved from the pipeline file's folder; fix the path, or build the plugin first (`cargo build --release` in its project, `scripts/build` for the plugins of the wasm-stream repository)",
        shown(path)
    )]
    Read { path: PathBuf, error: std::io::Error },
    #[error("plugin {path} did not compile within {timeout_ms} ms (limits.compile_timeout_ms)")]
    CompileTimeout { path: PathBuf, timeout_ms: u128 },
    #[error("plugin {path} is {size} bytes, over the limit of {max} bytes (plugins.max_plugin_bytes)")]
    TooLarge { path: PathBuf, size: usize, max: usize },
    /// `what` and `hint` fit the file (see `file_kind`).
    #[error("{path} is not a WebAssembly component: {what}\n  hint: {hint}")]
    NotComponent { path: PathBuf, what: String, hint: String },
    #[error("{path} is not a {kind} plugin: it exports [{found}], but a {kind} must export {expected}\n  hint: {hint}")]
    WrongWorld {
        path: PathBuf,
        kind: &'static str,
        found: String,
        expected: String,
        hint: String,
    },
    #[error(
        "{path} is a {kind} plugin for version {found} of the plugin contract, which this host does not run: it runs versions {supported}\n  hint: rebuild the plugin against the wit/plugin.wit of this host (version {current}; `host plugin new` writes a project that has it), or run it with a host of its version; `host plugin inspect` shows the version a component targets",
        supported = Version::supported(),
        current = CONTRACT_VERSION
    )]
    UnsupportedVersion {
        path: PathBuf,
        kind: &'static str,
        found: String,
    },
    #[error(
        "plugin {path} imports {imports}, which the host does not provide: plugins get only wasi:cli, wasi:clocks, wasi:filesystem, wasi:io, wasi:random and wasi:sockets (with nothing granted)\n  hint: build the plugin without it: target one world of wit/plugin.wit alone, and drop the code or library that uses it (componentize-js: `--disable http`; Rust: a crate that pulls in wasi:http); `host plugin inspect` lists the imports"
    )]
    UnsupportedImport { path: PathBuf, imports: String },
    #[error(
        "{path} is not a plugin of this host: it exports [{found}], but a plugin exports one of the generator, mapper or check interfaces of wit/plugin.wit\n  hint: build it against the wit/plugin.wit of this host (`host plugin new` writes a project that does)"
    )]
    NoWorld { path: PathBuf, found: String },
    #[error("plugin {path} cannot be instantiated: {reason}")]
    Instantiate { path: PathBuf, reason: String },
    #[error("plugin {name} refused its settings: {message}\n  hint: fix the [settings] of {name} in the pipeline file")]
    Configure { name: String, message: String },
    #[error("plugin {name} did not return within its deadline of {timeout_ms} ms (limits.call_timeout_ms)")]
    Timeout { name: String, timeout_ms: u128 },
    #[error("plugin {name} went over its memory limit of {limit_bytes} bytes (limits.memory_limit_bytes)")]
    OutOfMemory { name: String, limit_bytes: usize },
    #[error(
        "plugin {name} returned more than {limit_bytes} bytes for one batch (limits.max_output_bytes)\n  hint: make the rows smaller, lower the sink's batch_size, or raise max_output_bytes in the plugin's limits"
    )]
    OutputTooLarge { name: String, limit_bytes: usize },
    #[error("plugin {name} trapped: {reason}")]
    Trap { name: String, reason: String },
    #[error("plugin {name} broke the contract: {reason}")]
    Contract { name: String, reason: String },
}

/// Per-store state: WASI with nothing granted, and the memory cap.
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: limits::SandboxLimits,
    stderr: MemoryOutputPipe,
    /// When the current call (or `configure`) must end; WASI waits stop there.
    deadline: Option<Instant>,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A path as the user can find it: absolute when it can be made so.
fn shown(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

/// One import of a component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    pub name: String,
    /// Whether the host's linker defines it.
    pub provided: bool,
}

/// The WASI 0.2 interfaces the linker defines (`wasmtime_wasi::p2::add_to_linker_sync`).
const PROVIDED_INTERFACES: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:sockets/network",
    "wasi:sockets/instance-network",
    "wasi:sockets/udp",
    "wasi:sockets/udp-create-socket",
    "wasi:sockets/tcp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/ip-name-lookup",
];

/// Whether the host defines an import (`wasi:io/streams@0.2.3`: any 0.2.x).
fn host_provides(import: &str) -> bool {
    let (interface, version) = import.split_once('@').unwrap_or((import, ""));
    if interface == "wasm-stream:plugin/types" {
        // Types only, no functions: the world's exports use them.
        return Version::parse(version).is_some();
    }
    PROVIDED_INTERFACES.contains(&interface) && (version.is_empty() || version.starts_with("0.2."))
}

/// Waits (at most `limit`) for this process's compiled-code cache writes:
/// every command calls it before it exits, so the next run finds the entry
/// and no partial file is left. False when a write is still under way.
pub fn finish_cache_writes(limit: Duration) -> bool {
    cache::WRITES.wait(limit)
}
