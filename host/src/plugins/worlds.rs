//! Host bindings for the three worlds of `wit/plugin.wit`, and the glue that
//! lets [`super::Plugin`] drive any of them.

use super::{Plugin, PluginError, PluginState};
use wasmtime::Store;
use wasmtime::component::InstancePre;

/// The version of `wit/plugin.wit`, the contract new plugins are built against.
macro_rules! contract_version {
    () => {
        "0.2.0"
    };
}

/// The contract version of `wit/plugin.wit`.
pub const CONTRACT_VERSION: &str = contract_version!();

mod bindings {
    pub mod generator {
        wasmtime::component::bindgen!({ path: "../wit", world: "generator-plugin" });
    }
    pub mod mapper {
        wasmtime::component::bindgen!({ path: "../wit", world: "mapper-plugin", additional_derives: [PartialEq] });
    }
    pub mod check {
        wasmtime::component::bindgen!({ path: "../wit", world: "check-plugin" });
    }
}

pub mod generator {
    pub use super::bindings::generator::exports::wasm_stream::plugin::generator::Message;
}

pub mod mapper {
    pub use super::bindings::mapper::exports::wasm_stream::plugin::mapper::{Message, Outcome};
    pub use super::bindings::mapper::wasm_stream::plugin::types::{Column, ColumnType, Value};
}

pub mod check {
    pub use super::bindings::check::exports::wasm_stream::plugin::check::{
        Finding, PartitionState, Severity, Snapshot,
    };
}

/// One world of the contract, as the host drives it.
pub trait World: Sized + Send + 'static {
    /// Pre-linked component, cheap to instantiate again after a trap.
    type Pre: Clone + Send + Sync;
    /// What `configure` returns.
    type Configured: PartialEq + Send;
    /// How the pipeline file calls this kind of plugin.
    const KIND: &'static str;
    /// The interface a component of this world exports.
    const EXPORT: &'static str;

    fn pre(pre: InstancePre<PluginState>) -> wasmtime::Result<Self::Pre>;
    fn instantiate(pre: &Self::Pre, store: &mut Store<PluginState>) -> wasmtime::Result<Self>;
    fn configure(
        &self,
        store: &mut Store<PluginState>,
        settings: &str,
    ) -> wasmtime::Result<Result<Self::Configured, String>>;
}

pub type GeneratorWorld = bindings::generator::GeneratorPlugin;
pub type MapperWorld = bindings::mapper::MapperPlugin;
pub type CheckWorld = bindings::check::CheckPlugin;

impl World for GeneratorWorld {
    type Pre = bindings::generator::GeneratorPluginPre<PluginState>;
    type Configured = ();
    const KIND: &'static str = "generator";
    const EXPORT: &'static str = concat!("wasm-stream:plugin/generator@", contract_version!());

    fn pre(pre: InstancePre<PluginState>) -> wasmtime::Result<Self::Pre> {
        Self::Pre::new(pre)
    }
    fn instantiate(pre: &Self::Pre, store: &mut Store<PluginState>) -> wasmtime::Result<Self> {
        pre.instantiate(store)
    }
    fn configure(&self, store: &mut Store<PluginState>, settings: &str) -> wasmtime::Result<Result<(), String>> {
        self.wasm_stream_plugin_generator().call_configure(store, settings)
    }
}

impl World for MapperWorld {
    type Pre = bindings::mapper::MapperPluginPre<PluginState>;
    type Configured = Vec<mapper::Column>;
    const KIND: &'static str = "mapper";
    const EXPORT: &'static str = concat!("wasm-stream:plugin/mapper@", contract_version!());

    fn pre(pre: InstancePre<PluginState>) -> wasmtime::Result<Self::Pre> {
        Self::Pre::new(pre)
    }
    fn instantiate(pre: &Self::Pre, store: &mut Store<PluginState>) -> wasmtime::Result<Self> {
        pre.instantiate(store)
    }
    fn configure(
        &self,
        store: &mut Store<PluginState>,
        settings: &str,
    ) -> wasmtime::Result<Result<Vec<mapper::Column>, String>> {
        self.wasm_stream_plugin_mapper().call_configure(store, settings)
    }
}

impl World for CheckWorld {
    type Pre = bindings::check::CheckPluginPre<PluginState>;
    type Configured = ();
    const KIND: &'static str = "check";
    const EXPORT: &'static str = concat!("wasm-stream:plugin/check@", contract_version!());

    fn pre(pre: InstancePre<PluginState>) -> wasmtime::Result<Self::Pre> {
        Self::Pre::new(pre)
    }
    fn instantiate(pre: &Self::Pre, store: &mut Store<PluginState>) -> wasmtime::Result<Self> {
        pre.instantiate(store)
    }
    fn configure(&self, store: &mut Store<PluginState>, settings: &str) -> wasmtime::Result<Result<(), String>> {
        self.wasm_stream_plugin_check().call_configure(store, settings)
    }
}

impl Plugin<GeneratorWorld> {
    /// What `next(max)` returned, unchecked: the caller holds the plugin to
    /// the contract (at most `max` messages), since only it knows whether to
    /// drop the extra or to report them (`pipeline::generator` does both).
    pub fn next(&mut self, max: u32) -> Result<Vec<generator::Message>, PluginError> {
        self.call(|w, store| w.wasm_stream_plugin_generator().call_next(store, max))
    }
}

impl Plugin<MapperWorld> {
    /// One outcome per message, in order.
    pub fn map_batch(&mut self, messages: &[mapper::Message]) -> Result<Vec<mapper::Outcome>, PluginError> {
        let out = self.call(|w, store| w.wasm_stream_plugin_mapper().call_map_batch(store, messages))?;
        if out.len() != messages.len() {
            return Err(PluginError::Contract {
                name: self.name().to_string(),
                reason: format!(
                    "map-batch returned {} outcomes for {} messages",
                    out.len(),
                    messages.len()
                ),
            });
        }
        Ok(out)
    }
}

impl Plugin<CheckWorld> {
    pub fn run(&mut self, snapshot: &check::Snapshot) -> Result<Vec<check::Finding>, PluginError> {
        self.call(|w, store| w.wasm_stream_plugin_check().call_run(store, snapshot))
    }
}
