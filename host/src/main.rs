//! The `host` command line.

use clap::{Parser, Subcommand, ValueEnum};
use host::audit::{self, Scope, simulate::Case};
use host::config::Pipeline;
use host::pipeline::{self, RunOptions};
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// `host --version`: the crate's version and the commit it was built from
/// (build.rs: `git rev-parse --short HEAD`, `$WASM_STREAM_COMMIT`, or "unknown").
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("WASM_STREAM_COMMIT"), ")");

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
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
    Plugin(host::kit::PluginCommand),
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

/// Which dead letters (`host dead-letters ...`).
#[derive(clap::Args)]
struct LetterArgs {
    /// The pipeline file.
    pipeline: PathBuf,
    /// Only this sink's letters.
    #[arg(long)]
    sink: Option<String>,
    /// Only these letters (repeat --id, or give several).
    #[arg(long = "id", num_args = 1..)]
    ids: Vec<i64>,
    /// Only letters written since this time (2026-11-28T22:00:00Z) or age (30m, 2h, 1d).
    #[arg(long)]
    since: Option<String>,
}

#[derive(Subcommand)]
enum DeadLettersCommand {
    /// One line per dead letter: id, sink, topic/partition, offset, time, replays, reason.
    ///
    /// Example: host dead-letters list pipeline.toml --sink favorite_languages --since 1h
    List {
        #[command(flatten)]
        which: LetterArgs,
        /// Print JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Each dead letter in full: key, payload (text, or hex when not UTF-8), reason, plugin.
    ///
    /// Example: host dead-letters show pipeline.toml --id 42
    Show {
        #[command(flatten)]
        which: LetterArgs,
    },
    /// Run dead letters through the sink's current mapper (the one the
    /// pipeline file names now, with its settings) and store what it maps.
    ///
    /// In one transaction per batch, the rows are written and the letters
    /// they came from removed; letters the mapper still rejects stay, with
    /// the new reason and one more replay. Safe while `host run` writes the
    /// same sink, and while another replay runs.
    ///
    /// Example: host dead-letters replay pipeline.toml --sink favorite_languages
    Replay {
        #[command(flatten)]
        which: LetterArgs,
    },
}

/// Which sink (`host sink ...`).
#[derive(clap::Args)]
struct SinkArgs {
    /// The pipeline file.
    pipeline: PathBuf,
    /// The sink, by its name in the pipeline file.
    #[arg(long)]
    sink: String,
}

#[derive(Subcommand)]
enum SinkCommand {
    /// Consume a sink's messages again from an earlier offset, exactly once.
    ///
    /// For reprocessing after a mapper fix, say.
    ///
    /// In one PostgreSQL transaction, for each partition: the dead letters at
    /// or after the new offset are deleted (they will be consumed again); in
    /// an append sink the rows that came from those offsets are deleted too
    /// (by the lineage columns _kafka_topic, _kafka_partition and
    /// _kafka_offset, which the tables the host creates have); an upsert
    /// sink keeps its rows, which
    /// the messages consumed again update, so its table ends equal to what
    /// the whole topic makes; the stored offsets move back (never forward).
    /// Running sinks notice at once, drop what they hold and go on from the
    /// new offsets; a write they had in flight either committed before the
    /// rewind (and is rewound with the rest) or is rolled back.
    ///
    /// An append table without lineage (made by an older host, or by hand)
    /// is refused: use --to-start --delete-all, which deletes every row of
    /// the table and every dead letter and stored offset of the sink.
    ///
    /// Examples:
    ///   host sink rewind pipeline.toml --sink favorite_languages --to-start --dry-run
    ///   host sink rewind pipeline.toml --sink favorite_languages --to-time 2026-12-01T10:00:00Z
    ///   host sink rewind pipeline.toml --sink favorite_languages --to-offset 0:1200 1:980
    ///   host sink rewind pipeline.toml --sink old_table_sink --to-start --delete-all
    #[command(verbatim_doc_comment, group(clap::ArgGroup::new("to").required(true).args(["to_start", "to_time", "to_offset"])))]
    Rewind {
        #[command(flatten)]
        which: SinkArgs,
        /// Every partition back to the start of its log.
        #[arg(long)]
        to_start: bool,
        /// Each partition back to its first message at or after this RFC 3339 time.
        #[arg(long, value_name = "TIME")]
        to_time: Option<String>,
        /// These partitions back to these offsets (PARTITION:OFFSET, several
        /// allowed); the others stay.
        #[arg(long, value_name = "PARTITION:OFFSET", num_args = 1..)]
        to_offset: Vec<String>,
        /// Print, per partition, where the sink would resume and how many rows
        /// and dead letters would be deleted; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// For a table without lineage: delete all its rows and the sink's dead
        /// letters and offsets, and start from the start (with --to-start).
        #[arg(long)]
        delete_all: bool,
    },
    /// Pause a sink: its processes write nothing until it is resumed.
    ///
    /// Every process running it stops writing within about a second, keeping
    /// its partitions (no rebalance); it stays paused, also across restarts,
    /// until resumed. Rows and dead letters are not touched. `host status`,
    /// /status, the page and the metric wasm_stream_sink_paused say "paused".
    ///
    /// Example: host sink pause pipeline.toml --sink favorite_languages
    Pause {
        #[command(flatten)]
        which: SinkArgs,
    },
    /// Resume a paused sink: its processes go on from the stored offsets.
    ///
    /// Example: host sink resume pipeline.toml --sink favorite_languages
    Resume {
        #[command(flatten)]
        which: SinkArgs,
    },
}

#[derive(Subcommand)]
enum AivenCommand {
    /// Fetch the certificates and connection details of the [aiven] services.
    ///
    /// Writes certs/ca.pem (the project CA), certs/service.cert and
    /// certs/service.key (the Kafka access certificate and key, the key
    /// readable by you only) next to the pipeline file, then prints the
    /// [kafka] and [postgres] sections to paste into it; --write sets them in
    /// the file instead, keeping its comments. The PostgreSQL password is never
    /// printed: the sections read it from PGPASSWORD.
    ///
    /// Needs an [aiven] section (project, kafka_service, pg_service) and an API
    /// token in the variable token_env names (AIVEN_TOKEN by default). Make one
    /// in the Aiven console (User information → Tokens) or with
    /// `avn user access-token create`.
    ///
    /// Example: AIVEN_TOKEN=... host aiven credentials pipeline.toml --write
    Credentials {
        /// The pipeline file.
        pipeline: PathBuf,
        /// Set the [kafka] and [postgres] sections in the pipeline file
        /// instead of printing them.
        #[arg(long)]
        write: bool,
    },
}

/// What `host check` looks at.
#[derive(Clone, Copy, ValueEnum)]
enum CheckWhat {
    /// PostgreSQL: TLS, database, row count and last row of each sink table.
    Db,
    /// Kafka: brokers, topics, partitions.
    Kafka,
    /// Offsets: Kafka's end and committed offsets against the database's, and the check plugins.
    Sync,
    /// All three.
    All,
}

impl From<CheckWhat> for Scope {
    fn from(what: CheckWhat) -> Self {
        match what {
            CheckWhat::Db => Scope::Db,
            CheckWhat::Kafka => Scope::Kafka,
            CheckWhat::Sync => Scope::Sync,
            CheckWhat::All => Scope::All,
        }
    }
}

/// The out-of-sync case `host simulate` makes.
#[derive(Clone, Copy, ValueEnum)]
enum SimulateCase {
    /// The database one ahead of Kafka's committed offset.
    DbAhead,
    /// Kafka's committed offset one ahead of the database.
    KafkaAhead,
}

/// Ends `host` with `code`, after printing `error` when there is one.
#[derive(Debug)]
struct Exit {
    code: u8,
    error: Option<anyhow::Error>,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit code {}", self.code)
    }
}

impl std::error::Error for Exit {}

/// `host check`: its exit code, and 2 when it could not even start.
async fn check(path: &Path, what: Option<CheckWhat>, topic: Option<String>, json: bool) -> anyhow::Result<()> {
    let result = match Pipeline::load(path) {
        Ok(pipeline) => audit::command::check(&pipeline, what.map(Scope::from), topic, json).await,
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(0) => Ok(()),
        Ok(code) => Err(Exit { code, error: None }.into()),
        Err(error) => Err(Exit {
            code: 2,
            error: Some(error),
        }
        .into()),
    }
}

fn main() -> ExitCode {
    host::alloc::tune();
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(execute(cli.command));
    // A plugin compiled just before the end: its compiled code reaches the
    // cache whole, so the next command does not compile it again.
    host::plugins::finish_cache_writes(host::plugins::CACHE_WRITE_WAIT);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => match e.downcast::<Exit>() {
            Ok(exit) => {
                if let Some(error) = exit.error {
                    eprintln!("error: {error:#}");
                }
                ExitCode::from(exit.code)
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

async fn execute(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run {
            pipeline: path,
            once,
            no_watch,
            instance_id,
        } => {
            host::member::claim(instance_id.as_deref())?;
            let pipeline = Pipeline::load(&path)?;
            let options = RunOptions {
                generators: true,
                sinks: true,
                once,
                watch: !no_watch,
                ..Default::default()
            };
            pipeline::run(&pipeline, options).await
        }
        Command::Produce {
            pipeline: path,
            topic,
            quiet,
            stdin,
        } => {
            let pipeline = Pipeline::load(&path)?;
            if let (true, Some(topic)) = (stdin, &topic) {
                let produced = host::kafka::stdin::produce(&pipeline.kafka, topic)?;
                let noun = if produced == 1 { "message" } else { "messages" };
                eprintln!("produced {produced} {noun} to {topic:?}");
                return Ok(());
            }
            let options = RunOptions {
                generators: true,
                topic,
                echo_produced: !quiet,
                once: true,
                ..Default::default()
            };
            pipeline::run(&pipeline, options).await
        }
        Command::Consume {
            pipeline: path,
            topic,
            once,
            quiet,
            instance_id,
        } => {
            host::member::claim(instance_id.as_deref())?;
            let pipeline = Pipeline::load(&path)?;
            let topic = match topic {
                Some(t) => Some(t),
                None if std::io::stdin().is_terminal() => Some(host::cli::choose_topic(&pipeline, "consume")?),
                None => None,
            };
            let options = RunOptions {
                sinks: true,
                topic,
                once,
                echo_consumed: !quiet,
                ..Default::default()
            };
            pipeline::run(&pipeline, options).await
        }
        Command::Validate { pipeline: path } => {
            let mut pipeline = Pipeline::load(&path)?;
            // Whether the registry answers; `from_registry` columns need it.
            let registry_line = host::pipeline::registry_columns::check(&mut pipeline).await?;
            let sources = pipeline.secret_sources();
            let report = tokio::task::spawn_blocking(move || {
                let mut lines = pipeline::validate_plugins(&pipeline)?;
                lines.extend(host::tls::check_files(&pipeline)?);
                lines.extend(audit::validate_checks(&pipeline)?);
                anyhow::Ok(lines)
            })
            .await??;
            println!("{}: ok", path.display());
            for line in report.into_iter().chain(registry_line) {
                println!("  {line}");
            }
            // Where each secret came from, never its value.
            for (secret, source) in sources {
                println!("  secret {secret}: {source}");
            }
            Ok(())
        }
        Command::Provision { pipeline: path } => {
            let mut pipeline = Pipeline::load(&path)?;
            host::pipeline::registry_columns::resolve(&mut pipeline).await?;
            host::provision::run(&pipeline, |line| println!("{line}")).await?;
            Ok(())
        }
        Command::Check {
            pipeline: path,
            what,
            topic,
            json,
        } => check(&path, what, topic, json).await,
        Command::Simulate {
            pipeline: path,
            case,
            topic,
            wait_secs,
        } => {
            let pipeline = Pipeline::load(&path)?;
            let case = match case {
                SimulateCase::DbAhead => Case::DbAhead,
                SimulateCase::KafkaAhead => Case::KafkaAhead,
            };
            audit::command::simulate(&pipeline, case, topic, Duration::from_secs(wait_secs)).await
        }
        Command::DeadLetters(command) => dead_letters(command).await,
        Command::Sink(command) => sink_command(command).await,
        Command::Status { pipeline: path, json } => status(&path, json).await,
        Command::Probe { url, timeout_secs } => probe(&url, Duration::from_secs(timeout_secs)).await,
        Command::Plugin(command) => match tokio::task::spawn_blocking(move || host::kit::execute(command)).await? {
            Ok(0) => Ok(()),
            Ok(code) => Err(Exit { code, error: None }.into()),
            Err(failure) => Err(Exit {
                code: failure.code,
                error: Some(failure.error),
            }
            .into()),
        },
        Command::Aiven(AivenCommand::Credentials { pipeline: path, write }) => {
            let pipeline = Pipeline::load(&path)?;
            host::provision::credentials::run(&pipeline, write, &mut std::io::stdout()).await
        }
    }
}

fn selection(which: &LetterArgs) -> host::ops::dead_letters::Selection {
    host::ops::dead_letters::Selection {
        sink: which.sink.clone(),
        ids: which.ids.clone(),
        since: which.since.clone(),
    }
}

/// `host dead-letters list|show|replay`.
async fn dead_letters(command: DeadLettersCommand) -> anyhow::Result<()> {
    use host::ops::dead_letters as dl;
    let which = match &command {
        DeadLettersCommand::List { which, .. }
        | DeadLettersCommand::Show { which }
        | DeadLettersCommand::Replay { which } => which,
    };
    let pipeline = Pipeline::load(&which.pipeline)?;
    let sel = selection(which);
    let mut client = dl::connect(&pipeline).await?;
    match command {
        DeadLettersCommand::List { json, .. } => {
            let letters = dl::list(&client, &pipeline, &sel, dl::LIST_LIMIT).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&letters)?);
            } else {
                print!("{}", dl::render_list(&letters));
            }
        }
        DeadLettersCommand::Show { .. } => {
            let letters = dl::list(&client, &pipeline, &sel, dl::LIST_LIMIT).await?;
            print!("{}", dl::render_show(&letters));
        }
        DeadLettersCommand::Replay { .. } => {
            let done = dl::replay(&mut client, &pipeline, &sel, |sink, so_far| {
                tracing::info!(
                    sink,
                    stored = so_far.stored,
                    still_rejected = so_far.still_rejected,
                    "replaying"
                );
            })
            .await?;
            println!(
                "Replayed: {} letter(s) stored as {} row(s) and removed; {} still rejected (kept, with the new reason).",
                done.stored, done.rows, done.still_rejected
            );
        }
    }
    Ok(())
}

/// `host sink rewind|pause|resume`.
async fn sink_command(command: SinkCommand) -> anyhow::Result<()> {
    use host::ops::rewind;
    match command {
        SinkCommand::Pause { which } => {
            let pipeline = Pipeline::load(&which.pipeline)?;
            let was = rewind::set_paused(&pipeline, &which.sink, true).await?;
            println!(
                "sink {}: paused{}; its running processes stop writing within about a second and keep their partitions",
                which.sink,
                if was { " (it was already)" } else { "" }
            );
        }
        SinkCommand::Resume { which } => {
            let pipeline = Pipeline::load(&which.pipeline)?;
            let was = rewind::set_paused(&pipeline, &which.sink, false).await?;
            println!(
                "sink {}: {}",
                which.sink,
                if was {
                    "resumed; its running processes go on from the stored offsets"
                } else {
                    "was not paused"
                }
            );
        }
        SinkCommand::Rewind {
            which,
            to_start,
            to_time,
            to_offset,
            dry_run,
            delete_all,
        } => {
            let target = match (to_start, to_time) {
                (true, _) => rewind::Target::Start,
                (false, Some(t)) => rewind::Target::Time(
                    host::config::rfc3339_ms(&t).map_err(|why| anyhow::anyhow!("--to-time: {why}"))?,
                ),
                (false, None) => rewind::Target::Offsets(partition_offsets(&to_offset)?),
            };
            let pipeline = Pipeline::load(&which.pipeline)?;
            let request = rewind::Request {
                sink: which.sink,
                target,
                dry_run,
                delete_all,
            };
            let done = rewind::rewind(&pipeline, &request).await?;
            print!("{}", rewind::render(&done));
        }
    }
    Ok(())
}

/// `--to-offset PARTITION:OFFSET ...`, each partition once.
fn partition_offsets(args: &[String]) -> anyhow::Result<std::collections::BTreeMap<i32, i64>> {
    let mut out = std::collections::BTreeMap::new();
    for arg in args {
        let parsed = arg
            .split_once(':')
            .and_then(|(p, o)| Some((p.trim().parse::<i32>().ok()?, o.trim().parse::<i64>().ok()?)))
            .filter(|(p, o)| *p >= 0 && *o >= 0);
        let Some((p, o)) = parsed else {
            anyhow::bail!("--to-offset {arg:?}: write PARTITION:OFFSET, e.g. 0:1200");
        };
        if out.insert(p, o).is_some() {
            anyhow::bail!("--to-offset names partition {p} twice");
        }
    }
    Ok(out)
}

/// `host probe`: exit 0 when `url` answers 2xx within `timeout`, else 1.
async fn probe(url: &str, timeout: Duration) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().timeout(timeout).build()?;
    let failure = match client.get(url).send().await {
        Ok(r) if r.status().is_success() => {
            println!("{url}: {}", r.status());
            return Ok(());
        }
        Ok(r) => anyhow::anyhow!("{url} answered {}", r.status()),
        Err(e) => anyhow::Error::new(e).context(format!("no answer from {url}")),
    };
    Err(Exit {
        code: 1,
        error: Some(failure),
    }
    .into())
}

/// `host status`: the running host's /status, or PostgreSQL and Kafka asked directly.
async fn status(path: &Path, json: bool) -> anyhow::Result<()> {
    use host::ops::status;
    let pipeline = Pipeline::load(path)?;
    let from_host = match pipeline.http.listen {
        Some(addr) => {
            let host = if addr.ip().is_unspecified() {
                format!("127.0.0.1:{}", addr.port())
            } else {
                addr.to_string()
            };
            let url = format!("http://{host}/status");
            let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
            match client.get(&url).send().await {
                Ok(r) => r.json::<status::Status>().await.ok(),
                Err(_) => None,
            }
        }
        None => None,
    };
    let s = match from_host {
        Some(s) => s,
        None => status::offline(&pipeline).await,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print!("{}", status::render(&s));
    }
    let code = match (s.host_running, s.ready) {
        (true, true) => 0,
        (true, false) => 1,
        (false, _) => 2,
    };
    if code == 0 {
        Ok(())
    } else {
        Err(Exit { code, error: None }.into())
    }
}
