//! Terminal prompts shared by the commands: the old demo's numbered menus.

use crate::config::Pipeline;
use anyhow::Context as _;
use std::io::{BufRead as _, Write as _};

/// Asks for a number from `min` to `max` until one is given; `None` at the
/// end of input.
pub fn ask_number(prompt: &str, min: usize, max: usize) -> anyhow::Result<Option<usize>> {
    let stdin = std::io::stdin();
    loop {
        print!("{prompt}");
        std::io::stdout().flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line).context("cannot read the choice")? == 0 {
            return Ok(None);
        }
        match line.trim().parse::<usize>() {
            Ok(n) if (min..=max).contains(&n) => return Ok(Some(n)),
            _ => println!("Please enter a number from {min} to {max}."),
        }
    }
}

/// The old demo's numbered topic menu, over the topics the sinks consume.
/// `purpose` ends the prompt: "Enter the number of the topic to {purpose}".
pub fn choose_topic(pipeline: &Pipeline, purpose: &str) -> anyhow::Result<String> {
    let mut topics: Vec<&str> = pipeline.sinks.iter().map(|s| s.topic.as_str()).collect();
    topics.dedup();
    if topics.is_empty() {
        anyhow::bail!(
            "{} declares no sinks, so there is no topic to {purpose}",
            pipeline.path.display()
        );
    }
    println!("Topics:");
    for (i, t) in topics.iter().enumerate() {
        println!("{}. {t}", i + 1);
    }
    let prompt = format!("Enter the number of the topic to {purpose}: ");
    match ask_number(&prompt, 1, topics.len())? {
        Some(n) => Ok(topics[n - 1].to_string()),
        None => anyhow::bail!("no topic chosen"),
    }
}
