//! `host check` and `host simulate` as the binary runs them: the report on
//! stdout (text or JSON), and on a terminal the old demo's numbered menu.

use super::simulate::{self, Case};
use super::{Scope, render};
use crate::cli;
use crate::config::Pipeline;
use crate::plugins::Runtime;
use std::io::IsTerminal as _;
use std::time::Duration;

/// Runs `host check`; returns the exit code (0 all well, 1 findings, 2 a
/// system could not be reached). Without a scope, on a terminal, shows the
/// menu; elsewhere checks everything.
pub async fn check(pipeline: &Pipeline, scope: Option<Scope>, topic: Option<String>, json: bool) -> anyhow::Result<u8> {
    let runtime = Runtime::new()?;
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    if scope.is_none() && interactive && !json {
        return menu(pipeline, &runtime, topic).await;
    }
    let report = super::check(pipeline, &runtime, scope.unwrap_or(Scope::All), topic.as_deref()).await?;
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", render::text(&report));
    }
    Ok(report.exit_code)
}

/// Runs `host simulate` and prints what it did and how to undo it. Without a
/// topic, on a terminal, asks for one.
pub async fn simulate(pipeline: &Pipeline, case: Case, topic: Option<String>, wait: Duration) -> anyhow::Result<()> {
    let topic = match topic {
        Some(t) => t,
        None if std::io::stdin().is_terminal() => cli::choose_topic(pipeline, "put out of sync")?,
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
        None => cli::choose_topic(pipeline, "audit")?,
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
        let scope = match cli::ask_number("Enter your choice: ", 0, 6)? {
            None | Some(0) => return Ok(worst),
            Some(1) => Scope::Db,
            Some(2) => Scope::Kafka,
            Some(3) => Scope::Sync,
            Some(6) => Scope::All,
            Some(n) => {
                let case = if n == 4 { Case::DbAhead } else { Case::KafkaAhead };
                let wait = Duration::from_secs(60);
                if let Err(e) = simulate(pipeline, case, Some(topic.clone()), wait).await {
                    eprintln!("error: {e:#}");
                }
                continue;
            }
        };
        let report = super::check(pipeline, runtime, scope, Some(&topic)).await?;
        println!();
        print!("{}", render::text(&report));
        worst = worst.max(report.exit_code);
    }
}
