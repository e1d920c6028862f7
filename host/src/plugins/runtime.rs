//! The engine: one wasmtime [`Engine`] configured here, the linker with WASI,
//! the epoch ticker and the compiled-code cache; it compiles components and
//! makes the stores instances run in.

use super::*;

/// The engine, the linker with WASI, and the epoch ticker. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    linker: Arc<Linker<PluginState>>,
    /// Compiled components of earlier runs (see `cache`); `None` when off.
    cache: Option<cache::Cache>,
    /// Components compiled (not read from the cache) by this runtime.
    compiles: Arc<std::sync::atomic::AtomicU64>,
    /// Told about every call (the host's metrics); `None`: nobody watches.
    pub(super) observer: Option<Arc<dyn Observer>>,
}

impl Runtime {
    /// This runtime, telling `observer` about every call of its plugins.
    pub fn observed_by(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = Some(observer);
        self
    }

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
            observer: None,
        })
    }

    pub(super) fn store(&self, limits: &PluginLimits, seed: Option<u64>) -> Store<PluginState> {
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
    pub(super) fn instantiate_bare(&self, bytes: &[u8], memory_limit_bytes: usize) -> wasmtime::Result<()> {
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
