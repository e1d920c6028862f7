//! `host check` and `host simulate` as the binary runs them: the report on
//! stdout (text or JSON), and on a terminal the old demo's numbered menu.

use super::Exit;
use super::prompt;
use crate::audit::simulate::{self, Case};
use crate::audit::{self, Scope, render};
use crate::config::Pipeline;
use crate::plugins::Runtime;
use clap::ValueEnum;
use std::io::IsTerminal as _;
use std::path::Path;
use std::time::Duration;

/// What `host check` looks at.
#[derive(Clone, Copy, ValueEnum)]
pub enum CheckWhat {
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
pub enum SimulateCase {
    /// The database one ahead of Kafka's committed offset.
    DbAhead,
    /// Kafka's committed offset one ahead of the database.
    KafkaAhead,
}

/// `host check`: its exit code, and 2 when it could not even start.
pub async fn check(path: &Path, what: Option<CheckWhat>, topic: Option<String>, json: bool) -> anyhow::Result<()> {
    let result = match Pipeline::load(path) {
        Ok(pipeline) => check_pipeline(&pipeline, what.map(Scope::from), topic, json).await,
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

/// `host simulate`.
pub async fn simulate(path: &Path, case: SimulateCase, topic: Option<String>, wait: Duration) -> anyhow::Result<()> {
    let pipeline = Pipeline::load(path)?;
    let case = match case {
        SimulateCase::DbAhead => Case::DbAhead,
        SimulateCase::KafkaAhead => Case::KafkaAhead,
    };
    simulate_pipeline(&pipeline, case, topic, wait).await
}

/// Runs `host check`; returns the exit code (0 all well, 1 findings, 2 a
/// system could not be reached). Without a scope, on a terminal, shows the
/// menu; elsewhere checks everything.
async fn check_pipeline(
    pipeline: &Pipeline,
    scope: Option<Scope>,
    topic: Option<String>,
    json: bool,
) -> anyhow::Result<u8> {
    let runtime = Runtime::new()?;
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    if scope.is_none() && interactive && !json {
        return menu(pipeline, &runtime, topic).await;
    }
    let report = audit::check(pipeline, &runtime, scope.unwrap_or(Scope::All), topic.as_deref()).await?;
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", render::text(&report));
    }
    Ok(report.exit_code)
}

/// Runs `host simulate` and prints what it did and how to undo it. Without a
/// topic, on a terminal, asks for one.
async fn simulate_pipeline(
    pipeline: &Pipeline,
    case: Case,
    topic: Option<String>,
    wait: Duration,
) -> anyhow::Result<()> {
    let topic = match topic {
        Some(t) => t,
        None if std::io::stdin().is_terminal() => prompt::choose_topic(pipeline, "put out of sync")?,
        None => anyhow::bail!("say which topic to put out of sync with --topic"),
    };
    let moves = simulate::simulate(pipeline, case, &topic, wait, |note| eprintln!("{note}")).await?;
    println!("{}", simulate::summary(pipeline, case, &topic, &moves));
    Ok(())
}

/// The old demo's test menu, for one topic, until 0 or the end of input.
/// Returns the highest exit code of the checks run.
async fn menu(pipeline: &Pipeline, runtime: &Runtime, topic: Option<String>) -> anyhow::Result<u8> {
    let topic = match topic {
        Some(t) => t,
        None => prompt::choose_topic(pipeline, "audit")?,
    };
    let mut worst = 0;
    loop {
        println!();
        println!("Audit of topic {topic} ({}):", pipeline.path.display());
        println!("1. Check the database connection and show the last row");
        println!("2. Check the Kafka connection, list topics and partitions");
        println!("3. Compare Kafka's end and committed offsets with the database's: lag, in sync?");
        println!("4. Simulate: saved in the database but not committed to Kafka");
        println!("5. Simulate: committed to Kafka but not saved in the database");
        println!("6. All checks (1 to 3)");
        println!("0. Quit");
        let scope = match prompt::ask_number("Enter your choice: ", 0, 6)? {
            None | Some(0) => return Ok(worst),
            Some(1) => Scope::Db,
            Some(2) => Scope::Kafka,
            Some(3) => Scope::Sync,
            Some(6) => Scope::All,
            Some(n) => {
                let case = if n == 4 { Case::DbAhead } else { Case::KafkaAhead };
                let wait = Duration::from_secs(60);
                if let Err(e) = simulate_pipeline(pipeline, case, Some(topic.clone()), wait).await {
                    eprintln!("error: {e:#}");
                }
                continue;
            }
        };
        let report = audit::check(pipeline, runtime, scope, Some(&topic)).await?;
        println!();
        print!("{}", render::text(&report));
        worst = worst.max(report.exit_code);
    }
}
