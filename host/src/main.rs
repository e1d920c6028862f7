//! The `host` command line.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use host::config::Pipeline;
use host::pipeline::{self, RunOptions};
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

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
#[command(name = "host", version, propagate_version = true)]
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
    /// Example: host run pipeline.toml --once
    Run {
        /// The pipeline file.
        pipeline: PathBuf,
        /// Exit when every generator has produced its count and every sink has
        /// caught up with the end of its topic.
        #[arg(long)]
        once: bool,
    },
    /// Run only the generators, printing each message sent (`Sending: {...}`).
    ///
    /// Example: host produce pipeline.toml --topic langs
    Produce {
        /// The pipeline file.
        pipeline: PathBuf,
        /// Only the generators of this topic.
        #[arg(long)]
        topic: Option<String>,
        /// Print a progress line every few seconds instead of every message
        /// (for high rates).
        #[arg(long, short)]
        quiet: bool,
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
    /// Helpers for Aiven's hosted Kafka and PostgreSQL.
    #[command(subcommand)]
    Aiven(AivenCommand),
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
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
        Command::Run { pipeline: path, once } => {
            let pipeline = Pipeline::load(&path)?;
            let options = RunOptions {
                generators: true,
                sinks: true,
                once,
                ..Default::default()
            };
            pipeline::run(&pipeline, options).await
        }
        Command::Produce {
            pipeline: path,
            topic,
            quiet,
        } => {
            let pipeline = Pipeline::load(&path)?;
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
        } => {
            let pipeline = Pipeline::load(&path)?;
            let topic = match topic {
                Some(t) => Some(t),
                None if std::io::stdin().is_terminal() => Some(choose_topic(&pipeline)?),
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
            let pipeline = Pipeline::load(&path)?;
            let report = tokio::task::spawn_blocking(move || pipeline::validate_plugins(&pipeline)).await??;
            println!("{}: ok", path.display());
            for line in report {
                println!("  {line}");
            }
            Ok(())
        }
        Command::Provision { pipeline: path } => {
            let pipeline = Pipeline::load(&path)?;
            host::provision::run(&pipeline, |line| println!("{line}")).await?;
            Ok(())
        }
        Command::Aiven(AivenCommand::Credentials { pipeline: path, write }) => {
            let pipeline = Pipeline::load(&path)?;
            host::provision::credentials::run(&pipeline, write, &mut std::io::stdout()).await
        }
    }
}

/// The old demo's numbered topic menu.
fn choose_topic(pipeline: &Pipeline) -> anyhow::Result<String> {
    let mut topics: Vec<&str> = pipeline.sinks.iter().map(|s| s.topic.as_str()).collect();
    topics.dedup();
    if topics.is_empty() {
        anyhow::bail!(
            "{} declares no sinks, so there is nothing to consume",
            pipeline.path.display()
        );
    }
    println!("Topics:");
    for (i, t) in topics.iter().enumerate() {
        println!("{}. {t}", i + 1);
    }
    let stdin = std::io::stdin();
    loop {
        print!("Enter the number of the topic to consume: ");
        std::io::stdout().flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line).context("cannot read the choice")? == 0 {
            anyhow::bail!("no topic chosen");
        }
        match line.trim().parse::<usize>() {
            Ok(n) if (1..=topics.len()).contains(&n) => return Ok(topics[n - 1].to_string()),
            _ => println!("Please enter a number from 1 to {}.", topics.len()),
        }
    }
}
