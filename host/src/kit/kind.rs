//! The three worlds a component may target, as the kit names them, and how
//! an export list tells which one: shared by `test`, `inspect` and `new`.

use crate::plugins::{CheckWorld, GeneratorWorld, MapperWorld, World};

/// The world a component targets, read from its exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Generator,
    Mapper,
    Check,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Generator, Kind::Mapper, Kind::Check];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Generator => GeneratorWorld::KIND,
            Kind::Mapper => MapperWorld::KIND,
            Kind::Check => CheckWorld::KIND,
        }
    }

    /// The world's name in wit/plugin.wit.
    pub fn world(self) -> &'static str {
        match self {
            Kind::Generator => "generator-plugin",
            Kind::Mapper => "mapper-plugin",
            Kind::Check => "check-plugin",
        }
    }

    /// The interface this host expects the component to export.
    pub fn export(self) -> &'static str {
        match self {
            Kind::Generator => GeneratorWorld::EXPORT,
            Kind::Mapper => MapperWorld::EXPORT,
            Kind::Check => CheckWorld::EXPORT,
        }
    }

    /// The interface name without version, e.g. `wasm-stream:plugin/generator`.
    pub fn unversioned(self) -> &'static str {
        let export = self.export();
        export.split_once('@').map_or(export, |(name, _)| name)
    }
}

/// The contract version this host implements, e.g. `0.2.0`.
pub fn contract_version() -> &'static str {
    crate::plugins::CONTRACT_VERSION
}

/// Which world an export list targets, and at which contract version.
pub fn world_of(exports: &[String]) -> Option<(Kind, String)> {
    Kind::ALL.into_iter().find_map(|kind| {
        exports.iter().find_map(|e| {
            let (name, version) = e.split_once('@').unwrap_or((e.as_str(), ""));
            (name == kind.unversioned()).then(|| (kind, version.to_string()))
        })
    })
}
