//! `host plugin ...`: the plugin author's loop without Kafka or PostgreSQL.
//! `test` runs one component under the pipeline's sandbox and limits and
//! prints what it makes, `inspect` says what a component is and whether this
//! host can run it, `new` (in [`scaffold`]) writes a project.
//!
//! Exit codes of `test`: 0 all went as expected, 1 the output differs from
//! `--expect`, 2 the plugin cannot load or the input is unusable.
//!
//! A command module: it uses the engine in `crate::plugins`, which knows
//! nothing of it.

mod check_test;
mod generator;
pub mod inspect;
mod kind;
mod mapper_test;
mod messages;
mod plugin_test;
pub mod registry;
mod render;
pub mod scaffold;

pub use kind::{Kind, contract_version, world_of};
pub use messages::read_messages;
pub use plugin_test::{TestArgs, diff};
pub use render::{bytea_text, date_text, timestamp_text};

use std::path::PathBuf;

/// `host plugin ...`
#[derive(clap::Subcommand)]
pub enum PluginCommand {
    /// Run a plugin once, with no Kafka and no PostgreSQL, under the same
    /// sandbox and limits as a pipeline, and print what it makes.
    ///
    /// The world is read from the component. A generator prints --count
    /// messages, one payload a line; with --calls N it is called N times for
    /// --count messages each, as `host run` calls it, and a call that fails
    /// is named. A mapper maps each line of --input (a
    /// payload per line, or JSON lines such as {"payload": "...", "key": "k",
    /// "partition": 0, "offset": 7, "timestamp": 1700000000000}; bytes that
    /// are not text as "payload_base64" or "key_base64") and prints
    /// its columns, the rows as a table and each rejection with its reason.
    /// With --registry URL its payloads are in the schema registry's wire
    /// format: each is decoded to JSON (its schema fetched by id) before the
    /// mapper sees it, as a sink with `format = "avro"` does, and the output
    /// shows the schema id and the decoded JSON. A check judges the --snapshot (JSON of the snapshot record of
    /// wit/plugin.wit) and prints its findings.
    ///
    /// With --expect FILE the output is compared with the file: a difference
    /// is printed and the exit code is 1, so plugins can be tested in CI.
    /// Exit code 2: the plugin cannot load (wrong world, trap in configure,
    /// refused settings), the input cannot be read, or a generator call fails.
    ///
    /// Compiled code is kept in the cache `host run` uses, so a large
    /// (Python, JavaScript) component compiles once per version.
    ///
    /// Example: host plugin test my_generator.wasm --count 5 --seed 1
    Test(Box<TestArgs>),
    /// Say what a component is: the world and contract version it targets,
    /// its imports and whether this host provides each, its size, the hash
    /// the reload log prints, and how long it takes to compile.
    ///
    /// Exit code 1 when the host would refuse it.
    ///
    /// Example: host plugin inspect target/wasm32-wasip2/release/langs.wasm
    Inspect {
        /// The component (.wasm).
        plugin: PathBuf,
    },
    /// Write a new plugin project (outside this repository) that builds
    /// with its language's usual command.
    ///
    /// Example: host plugin new generator my-gen --lang rust --dir ~/src
    New(scaffold::NewArgs),
}

/// Why a command failed, and with which exit code.
#[derive(Debug, thiserror::Error)]
#[error("{error:#}")]
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

fn unusable(error: anyhow::Error) -> Failure {
    Failure { code: 2, error }
}

/// Runs a `host plugin` command; returns its exit code (0 or 1).
pub fn execute(command: PluginCommand) -> Result<u8, Failure> {
    match command {
        PluginCommand::Test(args) => plugin_test::test(&args),
        PluginCommand::Inspect { plugin } => inspect::run(&plugin).map_err(unusable),
        PluginCommand::New(args) => scaffold::run(&args).map(|()| 0).map_err(unusable),
    }
}

#[cfg(test)]
mod prop_tests;
