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
mod limits;
pub mod output;
pub mod trap_text;
mod worlds;

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

/// The engine, the linker with WASI, and the epoch ticker. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    linker: Arc<Linker<PluginState>>,
    /// Compiled components of earlier runs (see `cache`); `None` when off.
    cache: Option<cache::Cache>,
    /// Components compiled (not read from the cache) by this runtime.
    compiles: Arc<std::sync::atomic::AtomicU64>,
}

impl Runtime {
    pub fn new() -> anyhow::Result<Self> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        deadline::shadow_poll(&mut linker)?;
        let weak = engine.weak();
        std::thread::Builder::new().name("plugin-epoch".into()).spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })?;
        Ok(Self {
            cache: cache::Cache::open(&engine),
            engine,
            linker: Arc::new(linker),
            compiles: Arc::default(),
        })
    }

    fn store(&self, limits: &PluginLimits, seed: Option<u64>) -> Store<PluginState> {
        let stderr = MemoryOutputPipe::new(STDERR_CAPTURE_BYTES);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stderr(stderr.clone());
        if let Some(seed) = seed {
            wasi.secure_random(rand::rngs::StdRng::seed_from_u64(seed));
            wasi.insecure_random(rand::rngs::StdRng::seed_from_u64(seed ^ 0x5eed));
            wasi.insecure_random_seed(u128::from(seed));
        }
        let state = PluginState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limits: limits::SandboxLimits::new(limits.memory_limit_bytes),
            stderr,
            deadline: None,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        // What one call may hand the host (128 MiB unless set).
        store.set_hostcall_fuel(limits.max_output_bytes);
        store
    }

    /// Instantiates component bytes that export nothing in a plugin store
    /// (the limits' tests: hostile shapes no plugin world can carry).
    #[cfg(test)]
    fn instantiate_bare(&self, bytes: &[u8], memory_limit_bytes: usize) -> wasmtime::Result<()> {
        let limits = PluginLimits {
            memory_limit_bytes,
            ..PluginLimits::default()
        };
        let component = Component::new(&self.engine, bytes)?;
        let mut store = self.store(&limits, None);
        store.set_epoch_deadline(u64::MAX / 2);
        self.linker.instantiate(&mut store, &component)?;
        Ok(())
    }

    /// Reads and compiles a component, checking that it targets world `W`.
    pub fn compile<W: World>(&self, path: &Path, limits: &PluginLimits) -> Result<Compiled<W>, PluginError> {
        let bytes = std::fs::read(path).map_err(|error| PluginError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        self.compile_bytes(path, &bytes, limits)
    }

    /// Compiles component bytes read from `path` (used in messages).
    pub fn compile_bytes<W: World>(
        &self,
        path: &Path,
        bytes: &[u8],
        limits: &PluginLimits,
    ) -> Result<Compiled<W>, PluginError> {
        let started = Instant::now();
        let component = self.component(path, bytes, limits)?;
        let compiled = self
            .prepare::<W>(path, &component, content_hash(bytes))
            .map_err(|e| match e {
                // The bytes tell the language, and so the build command.
                PluginError::WrongWorld {
                    path,
                    kind,
                    found,
                    expected,
                    ..
                } => PluginError::WrongWorld {
                    hint: file_kind::wrong_world_hint(bytes, &format!("{kind}-plugin")),
                    path,
                    kind,
                    found,
                    expected,
                },
                other => other,
            })?;
        let compile_ms = started.elapsed().as_millis();
        // Large components (Python's are 12-20 MB) take seconds: worth a line.
        let contract = compiled.version().as_str();
        if compile_ms >= SLOW_COMPILE_MS {
            tracing::info!(path = %path.display(), bytes = bytes.len(), compile_ms, hash = compiled.hash, contract, "compiled plugin");
        } else {
            tracing::debug!(path = %path.display(), bytes = bytes.len(), compile_ms, hash = compiled.hash, contract, "compiled plugin");
        }
        Ok(compiled)
    }

    /// Compiles component bytes, whatever world they target, within the
    /// size and time limits.
    pub fn component(&self, path: &Path, bytes: &[u8], limits: &PluginLimits) -> Result<Component, PluginError> {
        self.component_with(path, bytes, limits, true)
    }

    /// As [`Runtime::component`]; `use_cache: false` always compiles (to time it).
    pub fn component_with(
        &self,
        path: &Path,
        bytes: &[u8],
        limits: &PluginLimits,
        use_cache: bool,
    ) -> Result<Component, PluginError> {
        if bytes.len() > limits.max_plugin_bytes {
            return Err(PluginError::TooLarge {
                path: path.to_path_buf(),
                size: bytes.len(),
                max: limits.max_plugin_bytes,
            });
        }
        // Compile on a thread of its own so a pathological input cannot hold
        // the caller past the time limit (the thread is left to finish).
        // Small components compile in well under a second: only large ones
        // (Python's, JavaScript's) are worth the cache.
        let cache = self
            .cache
            .as_ref()
            .filter(|_| use_cache && bytes.len() >= MIN_CACHED_BYTES);
        if let Some(component) = cache.and_then(|c| c.load(&self.engine, bytes)) {
            tracing::debug!(path = %path.display(), "compiled code from the cache");
            return Ok(component);
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let (engine, owned, cache) = (self.engine.clone(), bytes.to_vec(), cache.cloned());
        self.compiles.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        std::thread::Builder::new()
            .name("plugin-compile".into())
            .spawn(move || {
                let result = Component::new(&engine, &owned);
                let keep = result.as_ref().ok().cloned();
                // Counted before the answer, so a caller that then waits for
                // the writes cannot miss this one.
                let writing = cache.is_some().then(|| cache::WRITES.begin());
                let _ = tx.send(result);
                // After the answer, so the caller does not wait for the write.
                if let (Some(cache), Some(component)) = (cache, keep) {
                    cache.store(&owned, &component);
                }
                drop(writing);
            })
            .map_err(|e| PluginError::Instantiate {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        match rx.recv_timeout(limits.compile_timeout) {
            Ok(result) => result.map_err(|e| {
                let (what, hint) = file_kind::not_a_component(bytes, &format!("{e:#}"));
                PluginError::NotComponent {
                    path: path.to_path_buf(),
                    what,
                    hint,
                }
            }),
            Err(_) => Err(PluginError::CompileTimeout {
                path: path.to_path_buf(),
                timeout_ms: limits.compile_timeout.as_millis(),
            }),
        }
    }

    /// How many components this runtime compiled (rather than read from the cache).
    pub fn compiles(&self) -> u64 {
        self.compiles.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The compiled-code cache's folder, when the cache is on.
    pub fn cache_dir(&self) -> Option<&Path> {
        self.cache.as_ref().map(cache::Cache::dir)
    }

    /// The names a component exports.
    pub fn exports(&self, component: &Component) -> Vec<String> {
        component
            .component_type()
            .exports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect()
    }

    /// What a component imports, and whether the host provides each.
    pub fn imports(&self, component: &Component) -> Vec<Import> {
        component
            .component_type()
            .imports(&self.engine)
            .map(|(name, _)| Import {
                provided: host_provides(name),
                name: name.to_string(),
            })
            .collect()
    }

    /// Checks a compiled component against world `W` and links it.
    pub fn prepare<W: World>(
        &self,
        path: &Path,
        component: &Component,
        hash: String,
    ) -> Result<Compiled<W>, PluginError> {
        let exports = self.exports(component);
        let version = exports.iter().find_map(|e| {
            let (name, version) = e.split_once('@').unwrap_or((e.as_str(), ""));
            (name == W::INTERFACE).then_some(version)
        });
        let version = match version {
            None => {
                return Err(PluginError::WrongWorld {
                    path: path.to_path_buf(),
                    kind: W::KIND,
                    found: exports.join(", "),
                    expected: W::accepted(),
                    hint: "is it configured in the wrong section of the pipeline file?".into(),
                });
            }
            Some(v) => Version::parse(v).ok_or_else(|| PluginError::UnsupportedVersion {
                path: path.to_path_buf(),
                kind: W::KIND,
                found: if v.is_empty() { "(none)".into() } else { v.to_string() },
            })?,
        };
        let missing: Vec<String> = self
            .imports(component)
            .into_iter()
            .filter(|i| !i.provided)
            .map(|i| i.name)
            .collect();
        if !missing.is_empty() {
            return Err(PluginError::UnsupportedImport {
                path: path.to_path_buf(),
                imports: missing.join(", "),
            });
        }
        let instantiate = |e: wasmtime::Error| PluginError::Instantiate {
            path: path.to_path_buf(),
            reason: format!("{e:#}"),
        };
        let pre = self.linker.instantiate_pre(component).map_err(instantiate)?;
        let pre = W::pre(pre, version).map_err(instantiate)?;
        Ok(Compiled {
            runtime: self.clone(),
            path: path.to_path_buf(),
            pre,
            hash,
        })
    }

    /// Compiles, instantiates and configures a plugin as the pipeline file describes it.
    pub fn load<W: World>(
        &self,
        name: &str,
        config: &PluginConfig,
        seed: Option<u64>,
    ) -> Result<Plugin<W>, PluginError> {
        self.compile::<W>(&config.path, &config.limits)?
            .instantiate(name, config, seed)
    }
}

/// A compiled component, ready to be instantiated.
pub struct Compiled<W: World> {
    runtime: Runtime,
    path: PathBuf,
    pre: W::Pre,
    /// A hash of the component's bytes, to tell versions apart in logs.
    pub hash: String,
}

impl<W: World> Compiled<W> {
    /// The contract version the component was built against.
    pub fn version(&self) -> Version {
        W::version(&self.pre)
    }

    /// Makes a configured instance. `name` says which part of the pipeline it serves.
    pub fn instantiate(&self, name: &str, config: &PluginConfig, seed: Option<u64>) -> Result<Plugin<W>, PluginError> {
        let mut plugin = Plugin {
            runtime: self.runtime.clone(),
            name: name.to_string(),
            path: self.path.clone(),
            hash: self.hash.clone(),
            pre: self.pre.clone(),
            settings: config.settings.clone(),
            limits: config.limits,
            seed,
            restarts: 0,
            live: None,
            configured: None,
        };
        plugin.start()?;
        Ok(plugin)
    }
}

/// A configured, sandboxed instance of a plugin.
pub struct Plugin<W: World> {
    runtime: Runtime,
    name: String,
    path: PathBuf,
    hash: String,
    pre: W::Pre,
    settings: String,
    limits: PluginLimits,
    seed: Option<u64>,
    /// Instances started after the first (each after a trap).
    restarts: u64,
    live: Option<(Store<PluginState>, W)>,
    configured: Option<W::Configured>,
}

impl<W: World> Plugin<W> {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn limits(&self) -> &PluginLimits {
        &self.limits
    }

    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The contract version the component was built against.
    pub fn version(&self) -> Version {
        W::version(&self.pre)
    }

    /// What `configure` returned (a mapper's columns).
    pub fn configured(&self) -> &W::Configured {
        self.configured
            .as_ref()
            .expect("a plugin is configured when it is loaded")
    }

    /// How many times a fresh instance replaced one that failed.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// The seed of the current instance: the configured one for the first,
    /// then one derived from it per restart, so a seeded generator restarted
    /// after a trap goes on with new messages (reproducibly) instead of
    /// replaying the ones it already made.
    fn instance_seed(&self) -> Option<u64> {
        self.seed.map(|s| s ^ self.restarts.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    /// Instantiates and configures a fresh instance.
    fn start(&mut self) -> Result<(), PluginError> {
        let mut store = self.runtime.store(&self.limits, self.instance_seed());
        store.set_epoch_deadline(self.deadline_ticks());
        store.data_mut().deadline = Some(Instant::now() + self.limits.call_timeout);
        let instance = W::instantiate(&self.pre, &mut store).map_err(|e| PluginError::Instantiate {
            path: self.path.clone(),
            reason: format!("{e:#}"),
        })?;
        let configured = match instance.configure(&mut store, &self.settings) {
            Ok(Ok(c)) => c,
            Ok(Err(message)) => {
                return Err(PluginError::Configure {
                    name: self.name.clone(),
                    message,
                });
            }
            Err(e) => return Err(self.classify(&store, e)),
        };
        if let Some(old) = &self.configured
            && *old != configured
        {
            return Err(PluginError::Contract {
                name: self.name.clone(),
                reason: "configure returned something else after a restart".into(),
            });
        }
        self.configured = Some(configured);
        self.live = Some((store, instance));
        Ok(())
    }

    fn deadline_ticks(&self) -> u64 {
        (self.limits.call_timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64 + 1
    }

    /// Calls into the plugin under its deadline. A trap drops the instance; the
    /// next call starts a fresh one.
    pub fn call<R>(
        &mut self,
        f: impl FnOnce(&W, &mut Store<PluginState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        if self.live.is_none() {
            self.restarts += 1;
            self.start()?;
        }
        let ticks = self.deadline_ticks();
        let (store, instance) = self.live.as_mut().expect("started above");
        store.set_epoch_deadline(ticks);
        let started = Instant::now();
        store.data_mut().deadline = Some(started + self.limits.call_timeout);
        let result = match f(instance, store) {
            Ok(r) => Ok(r),
            Err(e) => {
                let (store, _) = self.live.take().expect("live during the call");
                Err(self.classify(&store, e))
            }
        };
        crate::ops::metrics::plugin_call(&self.name, started.elapsed(), result.as_ref().err());
        if let Some((store, _)) = &self.live {
            crate::ops::metrics::plugin_memory(&self.name, store.data().limits.peak_bytes());
        }
        result
    }

    fn classify(&self, store: &Store<PluginState>, e: wasmtime::Error) -> PluginError {
        let name = self.name.clone();
        if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) || e.is::<deadline::DeadlineExceeded>() {
            return PluginError::Timeout {
                name,
                timeout_ms: self.limits.call_timeout.as_millis(),
            };
        }
        let text = format!("{e:#}");
        // wasmtime's error for spent hostcall fuel is private: its message it is.
        if text.contains("too much data is being copied between the host and the guest") {
            return PluginError::OutputTooLarge {
                name,
                limit_bytes: self.limits.max_output_bytes,
            };
        }
        if e.is::<limits::OverMemoryLimit>() || text.contains("memory allocation") {
            return PluginError::OutOfMemory {
                name,
                limit_bytes: self.limits.memory_limit_bytes,
            };
        }
        let reason = trap_text::reason(&e, &store.data().stderr.contents());
        PluginError::Trap { name, reason }
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

/// A short, stable hash of a plugin's bytes (FNV-1a, 64 bits), for logs.
pub fn content_hash(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("{hash:016x}")
}
