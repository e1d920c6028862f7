//! `host sink rewind|pause|resume`: the clap arguments and the command;
//! [`rewind`] does the work in PostgreSQL.

pub mod rewind;

use crate::config::Pipeline;
use clap::Subcommand;
use std::path::PathBuf;

/// Which sink (`host sink ...`).
#[derive(clap::Args)]
pub struct SinkArgs {
    /// The pipeline file.
    pipeline: PathBuf,
    /// The sink, by its name in the pipeline file.
    #[arg(long)]
    sink: String,
}

#[derive(Subcommand)]
pub enum SinkCommand {
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

/// `host sink rewind|pause|resume`.
pub async fn execute(command: SinkCommand) -> anyhow::Result<()> {
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
                    crate::config::rfc3339_ms(&t).map_err(|why| anyhow::anyhow!("--to-time: {why}"))?,
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
