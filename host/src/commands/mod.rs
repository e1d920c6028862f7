//! The `host` commands: the clap definitions (`Cli`, `Command`; the help
//! text comes from their doc comments) and what each command does, one
//! module per command group. `main.rs` parses, starts logging and dispatches.

pub mod aiven;
pub mod check;
pub mod dead_letters;
mod prompt;
pub mod run;
pub mod setup;
pub mod sink;
pub mod status;

use aiven::AivenCommand;
use check::{CheckWhat, SimulateCase};
use clap::{Parser, Subcommand};
use dead_letters::DeadLettersCommand;
use sink::SinkCommand;
use std::path::PathBuf;

/// `host --version`: the crate's version and the commit it was built from
/// (build.rs: `git rev-parse --short HEAD`, `$WASM_STREAM_COMMIT`, or "unknown").
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("WASM_STREAM_COMMIT"), ")");

/// Runs Kafka -> PostgreSQL pipelines whose logic lives in WebAssembly plugins.
///
/// A pipeline file (pipeline.toml) names the Kafka and PostgreSQL services,
/// the topics, the generator plugins that produce messages, and the sinks that
/// map each consumed message to table rows through a mapper plugin. Every
/// message lands in PostgreSQL exactly once: rows and Kafka offsets are written
/// in one transaction.
///
/// Start with `scripts/demo`, which brings up a local Kafka and PostgreSQL and
/// runs the default pipeline. Logs go to stderr; set RUST_LOG=debug for more.
#[derive(Parser)]
#[command(name = "host", version = VERSION, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run generators and sinks until Ctrl-C or SIGTERM (or, with --once, until done).
    ///
    /// Creates the declared topics and the sink tables that are missing. On
    /// Ctrl-C or SIGTERM it stops producing, writes the batch in flight and
    /// flushes the producer, so nothing is lost; a crash loses nothing either,
    /// since sinks resume from the offsets stored in PostgreSQL.
    ///
    /// While it runs, it watches the pipeline file and every plugin file it
    /// names: a changed plugin is compiled, checked and swapped in at a batch
    /// boundary; a changed pipeline file is validated in full, then applied as
    /// a difference (generators and sinks added, removed or changed). A bad
    /// change is logged and the running version keeps going.
    ///
    /// Example: host run pipeline.toml --once
    Run {
        /// The pipeline file.
        pipeline: PathBuf,
        /// Exit when every generator has produced its count and every sink has
        /// caught up with the end of its topic.
        #[arg(long)]
        once: bool,
        /// Do not watch the pipeline file and plugins for changes.
        #[arg(long)]
        no_watch: bool,
        /// This process's name in its sinks' consumer groups; see `host consume --help`.
        #[arg(long, env = "WASM_STREAM_INSTANCE_ID")]
        instance_id: Option<String>,
    },
    /// Run only the generators, printing each message sent (`Sending: {...}`).
    ///
    /// With --stdin, produce hand-made messages instead: each line of stdin
    /// to --topic, either the payload as it is or a JSON line of `payload`
    /// (null: a tombstone), `key`, `partition` and `timestamp` (ms), as
    /// `host plugin test --input` takes them.
    ///
    /// Example: host produce pipeline.toml --topic langs
    ///
    /// Example: printf '%s\n' '{"a": 1}' '{"payload": null, "key": "k"}' | host produce pipeline.toml --topic t --stdin
    Produce {
        /// The pipeline file.
        pipeline: PathBuf,
        /// Only the generators of this topic (with --stdin: the topic to produce to).
        #[arg(long)]
        topic: Option<String>,
        /// Print a progress line every few seconds instead of every message
        /// (for high rates).
        #[arg(long, short)]
        quiet: bool,
        /// Produce the lines of stdin to --topic, not the generators' messages.
        #[arg(long, requires = "topic")]
        stdin: bool,
    },
    /// Run only the sinks, printing each message stored (`Received: {...}`).
    ///
    /// Without --topic, on a terminal, it asks which topic to consume.
    ///
    /// Example: host consume pipeline.toml --topic langs
    Consume {
        /// The pipeline file.
        pipeline: PathBuf,
        /// Only the sinks of this topic.
        #[arg(long)]
        topic: Option<String>,
        /// Exit once the sinks have caught up with the end of their topics.
        #[arg(long)]
        once: bool,
        /// Do not print each message.
        #[arg(long, short)]
        quiet: bool,
        /// This process's name in its sinks' consumer groups (each sink joins
        /// as the static member <group>-<name>). Every process of a group needs
        /// its own; keep it across restarts so a restarted process takes its
        /// partitions back at once. Default: the host name, with -1, -2, ...
        /// for further processes running at the same time on this machine.
        #[arg(long, env = "WASM_STREAM_INSTANCE_ID")]
        instance_id: Option<String>,
    },
    /// Check the pipeline file and load every plugin, without connecting anywhere.
    ///
    /// Reports each plugin with its hash and, for mappers, the columns it writes.
    /// Exits non-zero with the file, line and fix when something is wrong.
    ///
    /// Example: host validate pipeline.toml
    Validate {
        /// The pipeline file.
        pipeline: PathBuf,
    },
    /// Create the database, the tables and the topics the pipeline needs.
    ///
    /// Makes, when missing: the database named in postgres.url, the host's
    /// offsets and dead-letter tables, every sink table (with the columns its
    /// mapper declares) and every declared topic (with its partitions and
    /// replication). Prints one line per object, e.g.
    /// `Topic "langs" was successfully created on Kafka server.` or
    /// `Table "favorite_languages" already exists.`; a second run changes
    /// nothing. Exits non-zero naming the object that could not be made.
    ///
    /// [provision] method = "kafka" (default) uses the Kafka Admin API and
    /// CREATE DATABASE; method = "aiven" uses Aiven's REST API, with the
    /// project and services of the [aiven] section and the token from the
    /// variable its token_env names (AIVEN_TOKEN by default).
    ///
    /// Example: host provision pipeline.toml
    Provision {
        /// The pipeline file.
        pipeline: PathBuf,
    },
    /// Audit the pipeline: PostgreSQL, Kafka, and whether their offsets agree.
    ///
    /// db: PostgreSQL reachable over TLS (the version and cipher from
    /// pg_stat_ssl), the database, and per sink table the row count and the
    /// last row. kafka: the brokers reachable over TLS, the topics visible, and
    /// the partitions of the chosen topic (or of every declared topic). sync:
    /// per topic and partition, Kafka's end offset, the committed offset of the
    /// sink's consumer group, the next offset stored in PostgreSQL, the lag
    /// (end - stored: messages waiting to be stored) and the dead letters;
    /// then every check plugin of [[checks]] (sync-audit, dead-letter-audit or
    /// your own) judges that snapshot and reports findings, and each
    /// partition's verdict is the headline of the most severe finding about it
    /// (sync-audit: in sync, or which side is ahead and by how many). all (the
    /// default) does the three.
    ///
    /// Without a mode, on a terminal, it shows the old demo's numbered menu,
    /// which can also simulate the two out-of-sync cases (see `host simulate`).
    ///
    /// Exit code: 0 all is well; 1 a finding of severity warning or error;
    /// 2 a system could not be reached (each request waits at most
    /// [audit] timeout_ms) or the check could not start.
    ///
    /// Example: host check pipeline.toml sync --topic langs --json
    Check {
        /// The pipeline file.
        pipeline: PathBuf,
        /// What to check.
        #[arg(value_enum)]
        what: Option<CheckWhat>,
        /// Only this topic (its sinks and partitions).
        #[arg(long)]
        topic: Option<String>,
        /// Print the report as JSON (for scripts).
        #[arg(long)]
        json: bool,
    },
    /// Put a topic out of sync on purpose, as the old demo's options 4 and 5 did.
    ///
    /// db-ahead moves the Kafka committed offset of the sink's consumer group
    /// one back, so the database holds a message Kafka does not know was
    /// stored ("saved in the database but not committed to Kafka"); kafka-ahead
    /// moves it one forward ("committed to Kafka but not saved"). No data
    /// changes, and the move is relative to the current committed offset, so
    /// one case and then the other returns to normal. It refuses when nothing
    /// is stored yet for the topic.
    ///
    /// Both cases heal by themselves: PostgreSQL holds the truth, so the next
    /// `host run` (or `host consume`) resumes from the offset stored there and
    /// commits it to Kafka. `host check sync` shows the state before and after.
    ///
    /// Stop the host first: Kafka takes a commit from outside a consumer group
    /// only while the group has no members. A host that stopped normally has
    /// left; a killed one stays a member for its session timeout (10 s), which
    /// this waits out (up to --wait-secs).
    ///
    /// Example: host simulate pipeline.toml db-ahead --topic langs
    Simulate {
        /// The pipeline file.
        pipeline: PathBuf,
        /// Which side ends up one ahead.
        #[arg(value_enum)]
        case: SimulateCase,
        /// The topic whose sink's committed offset moves.
        #[arg(long)]
        topic: Option<String>,
        /// How long to wait for the consumer group to have no members.
        #[arg(long, default_value_t = 60)]
        wait_secs: u64,
    },
    /// Helpers for Aiven's hosted Kafka and PostgreSQL.
    #[command(subcommand)]
    Aiven(AivenCommand),
    /// List, show and replay the messages a sink could not map.
    #[command(subcommand, name = "dead-letters")]
    DeadLetters(DeadLettersCommand),
    /// Reprocess a sink's messages (rewind), or pause and resume it; safe
    /// while `host run` runs the sink in any number of processes.
    ///
    /// The state lives in PostgreSQL: every running process of the sink
    /// obeys within about a second, and a paused sink stays paused across
    /// restarts. README "Reprocessing" tells what each command does to rows,
    /// offsets and dead letters.
    ///
    /// Where a partition with nothing stored yet starts is the sink's `start`
    /// key in the pipeline file: "earliest" (the default), "latest" or an
    /// RFC 3339 time (start = "2026-12-01T10:00:00Z").
    ///
    /// Examples:
    ///   host sink pause pipeline.toml --sink favorite_languages
    ///   host sink resume pipeline.toml --sink favorite_languages
    ///   host sink rewind pipeline.toml --sink favorite_languages --to-time 2026-12-01T10:00:00Z --dry-run
    ///   host sink rewind pipeline.toml --sink favorite_languages --to-start
    ///   host sink rewind pipeline.toml --sink favorite_languages --to-offset 0:1200 1:980
    #[command(subcommand, verbatim_doc_comment)]
    Sink(SinkCommand),
    /// Print the status the running host's page shows: per sink the rows
    /// stored, dead letters, offsets, lag and throughput; the generators,
    /// plugins and latest audit findings; and whether the host is ready.
    ///
    /// Asks the host at [http] listen; when none answers, asks PostgreSQL and
    /// Kafka directly. Exit code: 0 ready, 1 running but not ready, 2 not running.
    ///
    /// Example: host status pipeline.toml --json
    Status {
        /// The pipeline file.
        pipeline: PathBuf,
        /// Print the status as JSON (the host's /status).
        #[arg(long)]
        json: bool,
    },
    /// Write, test and inspect plugins, with no Kafka and no PostgreSQL (see PLUGINS.md).
    #[command(subcommand)]
    Plugin(crate::kit::PluginCommand),
    /// Exit 0 when a running host's health endpoint answers 2xx, else 1.
    ///
    /// For health checks where no curl is at hand (the container image's
    /// HEALTHCHECK). Prints one line either way.
    ///
    /// Example: host probe http://127.0.0.1:9187/health/ready
    Probe {
        /// The URL to ask.
        #[arg(default_value = "http://127.0.0.1:9187/health/live")]
        url: String,
        /// Longest wait for the answer, in seconds.
        #[arg(long, default_value_t = 5)]
        timeout_secs: u64,
    },
}

/// Ends `host` with `code`, after printing `error` when there is one.
#[derive(Debug)]
pub struct Exit {
    pub code: u8,
    pub error: Option<anyhow::Error>,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit code {}", self.code)
    }
}

impl std::error::Error for Exit {}
