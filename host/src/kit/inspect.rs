//! `host plugin inspect`: what a component is, and whether this host runs it.

use super::kind::{Kind, contract_version, world_of};
use crate::config::PluginLimits;
use crate::plugins::{CheckWorld, GeneratorWorld, MapperWorld, Runtime, Version, content_hash};
use anyhow::Context as _;
use std::path::Path;
use std::time::Instant;

/// Prints the report; returns 0 when the host would load the component, 1 when not.
pub fn run(path: &Path) -> anyhow::Result<u8> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let runtime = Runtime::new()?;
    let limits = PluginLimits::default();
    println!("plugin:   {}", path.display());
    println!("size:     {} bytes", bytes.len());
    println!("hash:     {} (the hash the reload log prints)", content_hash(&bytes));
    let started = Instant::now();
    let component = match runtime.component_with(path, &bytes, &limits, false) {
        Ok(c) => c,
        Err(e) => {
            println!("refused:  {e}");
            return Ok(1);
        }
    };
    println!("compile:  {} ms", started.elapsed().as_millis());
    let exports = runtime.exports(&component);
    let mut refusals = Vec::new();
    match world_of(&exports) {
        Some((kind, version)) => {
            let known = Version::parse(&version);
            println!("world:    {} (exports {}@{version})", kind.world(), kind.unversioned());
            println!(
                "contract: {version}{}",
                match known {
                    Some(Version::V0_3) => " (the version of this host's wit/plugin.wit)".to_string(),
                    Some(_) => format!(
                        " (an older version this host still runs; rebuild against wit/plugin.wit, version {}, for its new types and outcomes)",
                        contract_version()
                    ),
                    None => format!(
                        " -- this host runs versions {}; rebuild against its wit/plugin.wit",
                        Version::supported()
                    ),
                }
            );
            if known.is_some() {
                // Link it as the pipeline would, to catch anything else.
                let linked = match kind {
                    Kind::Generator => runtime
                        .prepare::<GeneratorWorld>(path, &component, String::new())
                        .map(drop),
                    Kind::Mapper => runtime
                        .prepare::<MapperWorld>(path, &component, String::new())
                        .map(drop),
                    Kind::Check => runtime.prepare::<CheckWorld>(path, &component, String::new()).map(drop),
                };
                if let Err(e) = linked {
                    refusals.push(e.to_string());
                }
            } else {
                refusals.push(format!(
                    "contract version {version} is not one this host runs ({})",
                    Version::supported()
                ));
            }
        }
        None => {
            println!("world:    none of generator-plugin, mapper-plugin, check-plugin");
            refusals.push(format!("it exports [{}], no plugin interface", exports.join(", ")));
        }
    }
    println!("exports:");
    for e in &exports {
        println!("  {e}");
    }
    println!("imports:");
    for i in runtime.imports(&component) {
        println!(
            "  {} {}",
            i.name,
            if i.provided {
                "(provided)"
            } else {
                "(NOT provided by this host)"
            }
        );
    }
    if refusals.is_empty() {
        println!("verdict:  loads in this host");
        Ok(0)
    } else {
        // A refusal may repeat what the lines above say; it is the one that counts.
        refusals.dedup();
        for r in refusals {
            println!("verdict:  refused: {r}");
        }
        Ok(1)
    }
}
