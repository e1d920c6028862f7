//! Loading the units' plugins: each distinct file compiled once, then one
//! configured instance per unit, whichever its world.

use super::super::plan::{Kind, UnitConfig};
use super::super::reload::normalize;
use super::Supervisor;
use crate::config::{PluginConfig, PluginLimits};
use crate::plugins::{Compiled, GeneratorWorld, MapperWorld, Plugin, PluginError, World};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::task::JoinHandle;

/// A configured plugin instance for a unit, whichever its world.
pub(super) enum Instance {
    Generator(Plugin<GeneratorWorld>),
    Mapper(Plugin<MapperWorld>),
}

impl Instance {
    pub(super) fn path(&self) -> &Path {
        match self {
            Instance::Generator(p) => p.path(),
            Instance::Mapper(p) => p.path(),
        }
    }

    pub(super) fn hash(&self) -> &str {
        match self {
            Instance::Generator(p) => p.hash(),
            Instance::Mapper(p) => p.hash(),
        }
    }

    /// Shows the instance on the status page as the one its unit runs.
    pub(super) fn record(&self) {
        match self {
            Instance::Generator(p) => crate::ops::plugin_live::loaded(p),
            Instance::Mapper(p) => crate::ops::plugin_live::loaded(p),
        }
    }
}

/// A compiled plugin file for the world of one kind of unit.
pub(super) enum AnyCompiled {
    Generator(Compiled<GeneratorWorld>),
    Mapper(Compiled<MapperWorld>),
}

impl AnyCompiled {
    pub(super) fn instantiate(&self, unit: &UnitConfig) -> Result<Instance, PluginError> {
        let name = unit.id().to_string();
        match self {
            AnyCompiled::Generator(c) => c
                .instantiate(&name, unit.plugin(), unit.seed())
                .map(Instance::Generator),
            AnyCompiled::Mapper(c) => c.instantiate(&name, unit.plugin(), None).map(Instance::Mapper),
        }
    }
}

impl Supervisor {
    /// Starts compiling each distinct plugin file (with its limits) once, on
    /// blocking threads of their own.
    pub(super) fn spawn_compiles<'a, W: World>(
        &self,
        configs: impl Iterator<Item = &'a PluginConfig>,
    ) -> Vec<CompileJob<W>> {
        let mut jobs: Vec<CompileJob<W>> = Vec::new();
        for config in configs {
            if jobs.iter().any(|(p, l, _)| *p == config.path && *l == config.limits) {
                continue;
            }
            let (runtime, path, limits) = (self.runtime.clone(), config.path.clone(), config.limits);
            let task = tokio::task::spawn_blocking(move || runtime.compile::<W>(&path, &limits));
            jobs.push((config.path.clone(), config.limits, task));
        }
        jobs
    }

    /// Compiles and configures a unit's plugin from its file, on a blocking thread.
    pub(super) async fn load(&mut self, unit: &UnitConfig) -> anyhow::Result<Instance> {
        let (runtime, unit) = (self.runtime.clone(), unit.clone());
        let instance = tokio::task::spawn_blocking(move || {
            let name = unit.id().to_string();
            match &unit {
                UnitConfig::Generator(g) => runtime
                    .load::<GeneratorWorld>(&name, &g.plugin, g.seed)
                    .map(Instance::Generator),
                UnitConfig::Sink(s) => runtime
                    .load::<MapperWorld>(&name, &s.mapper, None)
                    .map(Instance::Mapper),
            }
        })
        .await??;
        self.running_hashes
            .insert(normalize(instance.path()), instance.hash().to_string());
        Ok(instance)
    }

    pub(super) async fn compile(
        &self,
        kind: Kind,
        path: &Path,
        bytes: &Arc<Vec<u8>>,
        limits: &PluginLimits,
    ) -> Result<AnyCompiled, PluginError> {
        let (runtime, path, bytes, limits) = (self.runtime.clone(), path.to_path_buf(), bytes.clone(), *limits);
        let compile = move || match kind {
            Kind::Generator => runtime
                .compile_bytes::<GeneratorWorld>(&path, &bytes, &limits)
                .map(AnyCompiled::Generator),
            Kind::Sink => runtime
                .compile_bytes::<MapperWorld>(&path, &bytes, &limits)
                .map(AnyCompiled::Mapper),
        };
        match tokio::task::spawn_blocking(compile).await {
            Ok(result) => result,
            Err(e) => Err(PluginError::Trap {
                name: "compiler".into(),
                reason: e.to_string(),
            }),
        }
    }
}

type CompileJob<W> = (PathBuf, PluginLimits, JoinHandle<Result<Compiled<W>, PluginError>>);

pub(super) async fn collect_compiles<W: World>(
    jobs: Vec<CompileJob<W>>,
) -> anyhow::Result<Vec<(PathBuf, PluginLimits, Compiled<W>)>> {
    let mut done = Vec::new();
    for (path, limits, task) in jobs {
        done.push((path, limits, task.await??));
    }
    Ok(done)
}

pub(super) fn find_compiled<'a, W: World>(
    compiled: &'a [(PathBuf, PluginLimits, Compiled<W>)],
    config: &PluginConfig,
) -> &'a Compiled<W> {
    compiled
        .iter()
        .find(|(p, l, _)| *p == config.path && *l == config.limits)
        .map(|(_, _, c)| c)
        .expect("every plugin config was compiled")
}
