//! Host bindings for the three worlds of `wit/plugin.wit`, and the glue that
//! lets [`super::Plugin`] drive any of them. A component built against an
//! older version of the contract (`wit/v0.2.0/plugin.wit`, `wit/v0.1.0/plugin.wit`) is driven through
//! its own bindings, its calls and results converted to the current types in
//! [`super::compat`], so the rest of the host sees one set of types.

use super::compat::v0_1;
use super::compat_v0_2::v0_2;
use super::{Plugin, PluginError, PluginState};
use wasmtime::Store;
use wasmtime::component::InstancePre;

use crate::contract::bindings;
pub use crate::contract::{CONTRACT_VERSION, Version, check, generator, mapper};

/// One world of the contract, as the host drives it.
pub trait World: Sized + Send + 'static {
    /// Pre-linked component, cheap to instantiate again after a trap.
    type Pre: Clone + Send + Sync;
    /// What `configure` returns.
    type Configured: PartialEq + Send;
    /// How the pipeline file calls this kind of plugin.
    const KIND: &'static str;
    /// The interface a component of this world exports, without version.
    const INTERFACE: &'static str;
    /// The interface a component of this world exports, at the current version.
    const EXPORT: &'static str;

    fn pre(pre: InstancePre<PluginState>, version: Version) -> wasmtime::Result<Self::Pre>;
    fn version(pre: &Self::Pre) -> Version;
    fn instantiate(pre: &Self::Pre, store: &mut Store<PluginState>) -> wasmtime::Result<Self>;
    fn configure(
        &self,
        store: &mut Store<PluginState>,
        settings: &str,
    ) -> wasmtime::Result<Result<Self::Configured, String>>;

    /// The exports this host accepts for the world, newest first, e.g.
    /// `wasm-stream:plugin/mapper@0.2.0 or wasm-stream:plugin/mapper@0.1.0`.
    fn accepted() -> String {
        let all: Vec<String> = Version::ALL
            .iter()
            .map(|v| format!("{}@{v}", Self::INTERFACE))
            .collect();
        all.join(" or ")
    }
}

/// A generator instance, of whichever contract version it was built against.
pub enum GeneratorWorld {
    V0_3(bindings::generator::GeneratorPlugin),
    V0_2(v0_2::generator::GeneratorPlugin),
    V0_1(v0_1::generator::GeneratorPlugin),
}

#[derive(Clone)]
pub enum GeneratorPre {
    V0_3(bindings::generator::GeneratorPluginPre<PluginState>),
    V0_2(v0_2::generator::GeneratorPluginPre<PluginState>),
    V0_1(v0_1::generator::GeneratorPluginPre<PluginState>),
}

/// A mapper instance, of whichever contract version it was built against.
pub enum MapperWorld {
    V0_3(bindings::mapper::MapperPlugin),
    V0_2(v0_2::mapper::MapperPlugin),
    V0_1(v0_1::mapper::MapperPlugin),
}

#[derive(Clone)]
pub enum MapperPre {
    V0_3(bindings::mapper::MapperPluginPre<PluginState>),
    V0_2(v0_2::mapper::MapperPluginPre<PluginState>),
    V0_1(v0_1::mapper::MapperPluginPre<PluginState>),
}

/// A check instance, of whichever contract version it was built against.
pub enum CheckWorld {
    V0_3(bindings::check::CheckPlugin),
    V0_2(v0_2::check::CheckPlugin),
    V0_1(v0_1::check::CheckPlugin),
}

#[derive(Clone)]
pub enum CheckPre {
    V0_3(bindings::check::CheckPluginPre<PluginState>),
    V0_2(v0_2::check::CheckPluginPre<PluginState>),
    V0_1(v0_1::check::CheckPluginPre<PluginState>),
}

impl World for GeneratorWorld {
    type Pre = GeneratorPre;
    type Configured = ();
    const KIND: &'static str = "generator";
    const INTERFACE: &'static str = "wasm-stream:plugin/generator";
    const EXPORT: &'static str = concat!("wasm-stream:plugin/generator@", crate::contract::contract_version!());

    fn pre(pre: InstancePre<PluginState>, version: Version) -> wasmtime::Result<Self::Pre> {
        Ok(match version {
            Version::V0_3 => GeneratorPre::V0_3(bindings::generator::GeneratorPluginPre::new(pre)?),
            Version::V0_2 => GeneratorPre::V0_2(v0_2::generator::GeneratorPluginPre::new(pre)?),
            Version::V0_1 => GeneratorPre::V0_1(v0_1::generator::GeneratorPluginPre::new(pre)?),
        })
    }
    fn version(pre: &Self::Pre) -> Version {
        match pre {
            GeneratorPre::V0_3(_) => Version::V0_3,
            GeneratorPre::V0_2(_) => Version::V0_2,
            GeneratorPre::V0_1(_) => Version::V0_1,
        }
    }
    fn instantiate(pre: &Self::Pre, store: &mut Store<PluginState>) -> wasmtime::Result<Self> {
        Ok(match pre {
            GeneratorPre::V0_3(p) => Self::V0_3(p.instantiate(store)?),
            GeneratorPre::V0_2(p) => Self::V0_2(p.instantiate(store)?),
            GeneratorPre::V0_1(p) => Self::V0_1(p.instantiate(store)?),
        })
    }
    fn configure(&self, store: &mut Store<PluginState>, settings: &str) -> wasmtime::Result<Result<(), String>> {
        match self {
            Self::V0_3(w) => w.wasm_stream_plugin_generator().call_configure(store, settings),
            Self::V0_2(w) => w.wasm_stream_plugin_generator().call_configure(store, settings),
            Self::V0_1(w) => w.wasm_stream_plugin_generator().call_configure(store, settings),
        }
    }
}

impl World for MapperWorld {
    type Pre = MapperPre;
    type Configured = Vec<mapper::Table>;
    const KIND: &'static str = "mapper";
    const INTERFACE: &'static str = "wasm-stream:plugin/mapper";
    const EXPORT: &'static str = concat!("wasm-stream:plugin/mapper@", crate::contract::contract_version!());

    fn pre(pre: InstancePre<PluginState>, version: Version) -> wasmtime::Result<Self::Pre> {
        Ok(match version {
            Version::V0_3 => MapperPre::V0_3(bindings::mapper::MapperPluginPre::new(pre)?),
            Version::V0_2 => MapperPre::V0_2(v0_2::mapper::MapperPluginPre::new(pre)?),
            Version::V0_1 => MapperPre::V0_1(v0_1::mapper::MapperPluginPre::new(pre)?),
        })
    }
    fn version(pre: &Self::Pre) -> Version {
        match pre {
            MapperPre::V0_3(_) => Version::V0_3,
            MapperPre::V0_2(_) => Version::V0_2,
            MapperPre::V0_1(_) => Version::V0_1,
        }
    }
    fn instantiate(pre: &Self::Pre, store: &mut Store<PluginState>) -> wasmtime::Result<Self> {
        Ok(match pre {
            MapperPre::V0_3(p) => Self::V0_3(p.instantiate(store)?),
            MapperPre::V0_2(p) => Self::V0_2(p.instantiate(store)?),
            MapperPre::V0_1(p) => Self::V0_1(p.instantiate(store)?),
        })
    }
    fn configure(
        &self,
        store: &mut Store<PluginState>,
        settings: &str,
    ) -> wasmtime::Result<Result<Vec<mapper::Table>, String>> {
        // An older mapper's columns are its one, unnamed table.
        let one = |columns: Vec<mapper::Column>| {
            vec![mapper::Table {
                name: None,
                columns,
                key: None,
            }]
        };
        match self {
            Self::V0_3(w) => w.wasm_stream_plugin_mapper().call_configure(store, settings),
            Self::V0_2(w) => Ok(w
                .wasm_stream_plugin_mapper()
                .call_configure(store, settings)?
                .map(|columns| one(columns.into_iter().map(Into::into).collect()))),
            Self::V0_1(w) => Ok(w
                .wasm_stream_plugin_mapper()
                .call_configure(store, settings)?
                .map(|columns| one(columns.into_iter().map(Into::into).collect()))),
        }
    }
}

impl World for CheckWorld {
    type Pre = CheckPre;
    type Configured = ();
    const KIND: &'static str = "check";
    const INTERFACE: &'static str = "wasm-stream:plugin/check";
    const EXPORT: &'static str = concat!("wasm-stream:plugin/check@", crate::contract::contract_version!());

    fn pre(pre: InstancePre<PluginState>, version: Version) -> wasmtime::Result<Self::Pre> {
        Ok(match version {
            Version::V0_3 => CheckPre::V0_3(bindings::check::CheckPluginPre::new(pre)?),
            Version::V0_2 => CheckPre::V0_2(v0_2::check::CheckPluginPre::new(pre)?),
            Version::V0_1 => CheckPre::V0_1(v0_1::check::CheckPluginPre::new(pre)?),
        })
    }
    fn version(pre: &Self::Pre) -> Version {
        match pre {
            CheckPre::V0_3(_) => Version::V0_3,
            CheckPre::V0_2(_) => Version::V0_2,
            CheckPre::V0_1(_) => Version::V0_1,
        }
    }
    fn instantiate(pre: &Self::Pre, store: &mut Store<PluginState>) -> wasmtime::Result<Self> {
        Ok(match pre {
            CheckPre::V0_3(p) => Self::V0_3(p.instantiate(store)?),
            CheckPre::V0_2(p) => Self::V0_2(p.instantiate(store)?),
            CheckPre::V0_1(p) => Self::V0_1(p.instantiate(store)?),
        })
    }
    fn configure(&self, store: &mut Store<PluginState>, settings: &str) -> wasmtime::Result<Result<(), String>> {
        match self {
            Self::V0_3(w) => w.wasm_stream_plugin_check().call_configure(store, settings),
            Self::V0_2(w) => w.wasm_stream_plugin_check().call_configure(store, settings),
            Self::V0_1(w) => w.wasm_stream_plugin_check().call_configure(store, settings),
        }
    }
}

impl Plugin<GeneratorWorld> {
    /// What `next(max)` returned, unchecked: the caller holds the plugin to
    /// the contract (at most `max` messages), since only it knows whether to
    /// drop the extra or to report them (`pipeline::generator` does both).
    pub fn next(&mut self, max: u32) -> Result<Vec<generator::Message>, PluginError> {
        self.call(|w, store| match w {
            GeneratorWorld::V0_3(w) => w.wasm_stream_plugin_generator().call_next(store, max),
            GeneratorWorld::V0_2(w) => Ok(w
                .wasm_stream_plugin_generator()
                .call_next(store, max)?
                .into_iter()
                .map(Into::into)
                .collect()),
            GeneratorWorld::V0_1(w) => Ok(w
                .wasm_stream_plugin_generator()
                .call_next(store, max)?
                .into_iter()
                .map(Into::into)
                .collect()),
        })
    }
}

impl Plugin<MapperWorld> {
    /// One outcome per message, in order.
    pub fn map_batch(&mut self, messages: &[mapper::Message]) -> Result<Vec<mapper::Outcome>, PluginError> {
        let out = self.call(|w, store| match w {
            MapperWorld::V0_3(w) => w.wasm_stream_plugin_mapper().call_map_batch(store, messages),
            MapperWorld::V0_2(w) => {
                let old: Vec<_> = messages.iter().map(v0_2::message).collect();
                Ok(w.wasm_stream_plugin_mapper()
                    .call_map_batch(store, &old)?
                    .into_iter()
                    .map(Into::into)
                    .collect())
            }
            MapperWorld::V0_1(w) => {
                // A copy of the batch in the old types: the price of an old plugin.
                let old: Vec<_> = messages.iter().map(v0_1::message).collect();
                Ok(w.wasm_stream_plugin_mapper()
                    .call_map_batch(store, &old)?
                    .into_iter()
                    .map(Into::into)
                    .collect())
            }
        })?;
        if out.len() != messages.len() {
            return Err(PluginError::Contract {
                name: self.name().to_string(),
                reason: format!(
                    "map-batch returned {} for {}",
                    super::trap_text::plural(out.len() as u64, "outcome", "outcomes"),
                    super::trap_text::plural(messages.len() as u64, "message", "messages")
                ),
            });
        }
        Ok(out)
    }
}

impl Plugin<CheckWorld> {
    pub fn run(&mut self, snapshot: &check::Snapshot) -> Result<Vec<check::Finding>, PluginError> {
        self.call(|w, store| match w {
            CheckWorld::V0_3(w) => w.wasm_stream_plugin_check().call_run(store, snapshot),
            CheckWorld::V0_2(w) => Ok(w
                .wasm_stream_plugin_check()
                .call_run(store, &v0_2::snapshot(snapshot))?
                .into_iter()
                .map(Into::into)
                .collect()),
            CheckWorld::V0_1(w) => Ok(w
                .wasm_stream_plugin_check()
                .call_run(store, &v0_1::snapshot(snapshot))?
                .into_iter()
                .map(Into::into)
                .collect()),
        })
    }
}
