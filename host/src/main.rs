//! The `host` command line: parses it, starts logging and the async runtime,
//! and hands each command to its module of `host::commands`.

use clap::Parser;
use host::commands::{Cli, Command, Exit, aiven, check, dead_letters, run, setup, sink, status};
use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::time::Duration;

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
            pipeline,
            once,
            no_watch,
            instance_id,
        } => run::run(&pipeline, once, no_watch, instance_id.as_deref()).await,
        Command::Produce {
            pipeline,
            topic,
            quiet,
            stdin,
        } => run::produce(&pipeline, topic, quiet, stdin).await,
        Command::Consume {
            pipeline,
            topic,
            once,
            quiet,
            instance_id,
        } => run::consume(&pipeline, topic, once, quiet, instance_id.as_deref()).await,
        Command::Validate { pipeline } => setup::validate(&pipeline).await,
        Command::Provision { pipeline } => setup::provision(&pipeline).await,
        Command::Check {
            pipeline,
            what,
            topic,
            json,
        } => check::check(&pipeline, what, topic, json).await,
        Command::Simulate {
            pipeline,
            case,
            topic,
            wait_secs,
        } => check::simulate(&pipeline, case, topic, Duration::from_secs(wait_secs)).await,
        Command::DeadLetters(command) => dead_letters::execute(command).await,
        Command::Sink(command) => sink::execute(command).await,
        Command::Status { pipeline, json } => status::status(&pipeline, json).await,
        Command::Probe { url, timeout_secs } => status::probe(&url, Duration::from_secs(timeout_secs)).await,
        Command::Plugin(command) => match tokio::task::spawn_blocking(move || host::kit::execute(command)).await? {
            Ok(0) => Ok(()),
            Ok(code) => Err(Exit { code, error: None }.into()),
            Err(failure) => Err(Exit {
                code: failure.code,
                error: Some(failure.error),
            }
            .into()),
        },
        Command::Aiven(command) => aiven::execute(command).await,
    }
}
