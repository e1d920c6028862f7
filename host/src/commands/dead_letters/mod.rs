//! `host dead-letters list|show|replay`: the clap arguments and the command;
//! [`letters`] reads, prints and replays the letters.

pub mod letters;

use crate::config::Pipeline;
use clap::Subcommand;
use std::path::PathBuf;

/// Which dead letters (`host dead-letters ...`).
#[derive(clap::Args)]
pub struct LetterArgs {
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
pub enum DeadLettersCommand {
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

fn selection(which: &LetterArgs) -> letters::Selection {
    letters::Selection {
        sink: which.sink.clone(),
        ids: which.ids.clone(),
        since: which.since.clone(),
    }
}

/// `host dead-letters list|show|replay`.
pub async fn execute(command: DeadLettersCommand) -> anyhow::Result<()> {
    use letters as dl;
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
