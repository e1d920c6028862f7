//! A compiled component and a configured instance of it: its calls under a
//! deadline and a memory cap, and a fresh instance after a trap.

use super::*;

/// A compiled component, ready to be instantiated.
pub struct Compiled<W: World> {
    pub(super) runtime: Runtime,
    pub(super) path: PathBuf,
    pub(super) pre: W::Pre,
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
        if let Some(observer) = &self.runtime.observer {
            observer.call(&self.name, started.elapsed(), result.as_ref().err());
            if let Some((store, _)) = &self.live {
                observer.memory(&self.name, store.data().limits.peak_bytes());
            }
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
