//! The plugin contract as plain types: the Rust bindings `wit/plugin.wit`
//! generates (messages, rows, columns, findings of checks) and the contract's
//! versions. It imports nothing of the crate, so every layer may use it: the
//! engine (`plugins`) runs components against it, `postgres` and `registry`
//! speak its column types, the pipeline moves its rows.

/// The version of `wit/plugin.wit`, the contract new plugins are built against.
macro_rules! contract_version {
    () => {
        "0.3.0"
    };
}
pub(crate) use contract_version;

/// The contract version of `wit/plugin.wit`.
pub const CONTRACT_VERSION: &str = contract_version!();

/// A version of the contract this host runs plugins of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `wit/plugin.wit`.
    V0_3,
    /// `wit/v0.2.0/plugin.wit`: one table, no `schema` in messages.
    V0_2,
    /// `wit/v0.1.0/plugin.wit`: no `uuid`, `numeric`, `bytea`, `date`, no `delete`.
    V0_1,
}

impl Version {
    /// Newest first.
    pub const ALL: [Version; 3] = [Version::V0_3, Version::V0_2, Version::V0_1];

    pub fn as_str(self) -> &'static str {
        match self {
            Version::V0_3 => CONTRACT_VERSION,
            Version::V0_2 => "0.2.0",
            Version::V0_1 => "0.1.0",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == text)
    }

    /// "0.3.0, 0.2.0 and 0.1.0", for messages.
    pub fn supported() -> String {
        let all: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
        match all.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
            _ => all.join(""),
        }
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The generated bindings of the three worlds; the engine instantiates them.
pub mod bindings {
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
    pub use super::bindings::mapper::exports::wasm_stream::plugin::mapper::{
        Message, Outcome, SchemaInfo, Table, TableKey, TableRows,
    };
    pub use super::bindings::mapper::wasm_stream::plugin::types::{Column, ColumnType, Value};
}

pub mod check {
    pub use super::bindings::check::exports::wasm_stream::plugin::check::{
        Finding, PartitionState, Severity, Snapshot,
    };
}
