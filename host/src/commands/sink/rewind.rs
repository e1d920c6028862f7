//! `host sink rewind|pause|resume`: reprocessing and maintenance of a sink,
//! safe while any number of processes run it.
//!
//! A rewind is one PostgreSQL transaction:
//!
//! 1. it locks the sink's stored offset of every partition it moves (a
//!    partition with nothing stored has no rows or letters and is left
//!    alone, except by `--delete-all`): the same rows each batch write updates
//!    conditionally, so a write in flight either committed before (and the
//!    rewind sees its rows) or waits, then finds the offset moved and rolls
//!    back (its sink starts again from the database);
//! 2. it deletes the dead letters of the rewound offsets (they will be
//!    consumed again), then, in an append sink, the rows whose lineage
//!    (`_kafka_topic`, `_kafka_partition`, `_kafka_offset`) is its topic's
//!    and at or after the new offset,
//!    from every table of the sink (its mapper's declared tables, loaded
//!    for that), children first: the reverse of the declared order, as a
//!    sink's deletes go, so foreign keys hold; an upsert sink keeps its
//!    rows, which the messages consumed again update;
//! 3. it moves the offsets back and bumps the sink's control generation, so
//!    every running process drops what it holds and seeks to the new offsets.
//!
//! So after the commit each message before the new offsets is stored once,
//! and each one after is stored nowhere, and will be once more.

use crate::config::{Pipeline, SinkConfig, SinkMode};
use crate::kafka;
use crate::postgres::lineage::{self, OFFSET_COLUMN, PARTITION_COLUMN, TOPIC_COLUMN};
use crate::postgres::{self, DEAD_LETTERS_TABLE, OFFSETS_TABLE, ident};
use anyhow::{Context as _, bail};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use tokio_postgres::error::SqlState;

/// How many times a rewind's transaction is tried when PostgreSQL breaks a
/// deadlock with a sink's write by aborting it.
const ATTEMPTS: usize = 5;

/// The rewind's PostgreSQL session name (in `pg_stat_activity`).
pub const APPLICATION_NAME: &str = "host-sink-rewind";

/// Where a rewind goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every partition's log start.
    Start,
    /// The first message at or after this time (unix ms) in each partition.
    Time(i64),
    /// These partitions to these offsets (others stay).
    Offsets(BTreeMap<i32, i64>),
}

/// What was asked.
#[derive(Debug, Clone)]
pub struct Request {
    pub sink: String,
    pub target: Target,
    pub dry_run: bool,
    /// For a table without lineage: delete every row, letter and offset of
    /// the sink and start from the start.
    pub delete_all: bool,
}

/// What a rewind did (or, dry, would do) to one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    pub partition: i32,
    /// The next offset stored before (`None`: nothing stored).
    pub stored: Option<i64>,
    /// Where the sink resumes.
    pub resume: i64,
    /// Rows deleted (`None`: an upsert sink, whose rows stay).
    pub rows: Option<i64>,
    pub letters: i64,
}

/// The whole rewind.
#[derive(Debug, Clone)]
pub struct Rewound {
    pub sink: String,
    /// The sink's tables, in the declared order (the first the sink's own).
    pub tables: Vec<String>,
    pub topic: String,
    pub upsert: bool,
    pub dry_run: bool,
    /// `--delete-all`: the rows deleted, all of the tables'.
    pub all_rows: Option<i64>,
    pub partitions: Vec<Moved>,
    /// Partitions with nothing stored, left alone (no rows, no letters).
    pub untouched: Vec<i32>,
}

/// The sink `name` of the pipeline, or an error listing its sinks.
pub fn find_sink<'a>(pipeline: &'a Pipeline, name: &str) -> anyhow::Result<&'a SinkConfig> {
    pipeline.sinks.iter().find(|s| s.name == name).with_context(|| {
        let names: Vec<&str> = pipeline.sinks.iter().map(|s| s.name.as_str()).collect();
        format!(
            "--sink {name:?} is not a sink of {}; its sinks are {names:?}",
            pipeline.path.display()
        )
    })
}

/// Pauses (`true`) or resumes a sink; returns whether it was paused before.
pub async fn set_paused(pipeline: &Pipeline, name: &str, paused: bool) -> anyhow::Result<bool> {
    let sink = find_sink(pipeline, name)?;
    let client = postgres::connect(&pipeline.postgres).await?;
    postgres::ensure_host_tables(&client).await?;
    lineage::set_paused(&client, &sink.name, &sink.table, &sink.topic, paused).await
}

/// Where each partition would go, before the stored offsets are looked at.
async fn targets(pipeline: &Pipeline, sink: &SinkConfig, target: &Target) -> anyhow::Result<BTreeMap<i32, i64>> {
    let (kafka_cfg, group, topic, target) = (
        pipeline.kafka.clone(),
        sink.group.clone(),
        sink.topic.to_string(),
        target.clone(),
    );
    tokio::task::spawn_blocking(move || {
        let consumer = kafka::query_consumer(&kafka_cfg, &group)?;
        let marks = kafka::watermarks(&consumer, &topic)?;
        Ok(match target {
            Target::Start => marks.iter().map(|(p, (low, _))| (*p, *low)).collect(),
            Target::Time(ms) => {
                let partitions: Vec<i32> = marks.keys().copied().collect();
                let found = kafka::offsets_for_time(&consumer, &topic, &partitions, ms)?;
                // No message at or after the time: the end of the partition.
                marks
                    .iter()
                    .map(|(p, (_, high))| (*p, found.get(p).copied().flatten().unwrap_or(*high)))
                    .collect()
            }
            Target::Offsets(wanted) => {
                for (p, o) in &wanted {
                    let Some((low, high)) = marks.get(p) else {
                        let mut all: Vec<i32> = marks.keys().copied().collect();
                        all.sort_unstable();
                        bail!("--to-offset {p}:{o}: topic {topic:?} has no partition {p} (its partitions: {all:?})");
                    };
                    if o < low || o > high {
                        bail!(
                            "--to-offset {p}:{o}: partition {p} of topic {topic:?} holds offsets {low} to {high} (its end); choose one in that range"
                        );
                    }
                }
                wanted
            }
        })
    })
    .await
    .context("the Kafka offset lookup for the rewind panicked or was cancelled")?
}

/// Runs a rewind (or, with `dry_run`, computes it and changes nothing).
pub async fn rewind(pipeline: &Pipeline, request: &Request) -> anyhow::Result<Rewound> {
    let sink = find_sink(pipeline, &request.sink)?;
    let upsert = matches!(sink.mode, SinkMode::Upsert { .. });
    if request.delete_all && request.target != Target::Start {
        bail!("--delete-all starts the sink from the start: use it with --to-start");
    }
    let declared = if upsert && !request.delete_all {
        // Rows stay in an upsert sink: no table is touched.
        vec![sink.table.to_string()]
    } else {
        sink_tables(sink).await?
    };
    let mut client = postgres::connect_as(&pipeline.postgres, Some(APPLICATION_NAME)).await?;
    postgres::ensure_host_tables(&client).await?;
    let targets = targets(pipeline, sink, &request.target).await?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match apply(&mut client, sink, &targets, request, &declared, upsert).await {
            Err(e) if attempt < ATTEMPTS && deadlocked(&e) => {
                tracing::info!(attempt, "the rewind met a sink's write in a deadlock; trying again");
            }
            result => return result,
        }
    }
}

/// The tables of an append sink, in the declared order: its mapper is
/// loaded for them, since only it declares them (see `pipeline::tables`).
async fn sink_tables(sink: &SinkConfig) -> anyhow::Result<Vec<String>> {
    let runtime = crate::plugins::Runtime::new()?;
    let (name, cfg) = (format!("sink {}", sink.name), sink.mapper.clone());
    let plugin = tokio::task::spawn_blocking(move || runtime.load::<crate::plugins::MapperWorld>(&name, &cfg, None))
        .await
        .context("loading the mapper panicked")?
        .with_context(|| format!("cannot load the mapper of sink {} to learn its tables", sink.name))?;
    let tables = crate::pipeline::tables::resolve(sink, plugin.configured()).map_err(anyhow::Error::msg)?;
    Ok(tables.into_iter().map(|t| t.name).collect())
}

fn deadlocked(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<tokio_postgres::Error>())
        .any(|e| e.code() == Some(&SqlState::T_R_DEADLOCK_DETECTED))
}

/// The rewind's transaction (see the module comment).
async fn apply(
    client: &mut tokio_postgres::Client,
    sink: &SinkConfig,
    targets: &BTreeMap<i32, i64>,
    request: &Request,
    declared: &[String],
    upsert: bool,
) -> anyhow::Result<Rewound> {
    // The offsets and control row are the sink's own table's.
    let (table, topic) = (sink.table.as_str(), sink.topic.as_str());
    let tx = client
        .transaction()
        .await
        .context("cannot begin the rewind transaction")?;
    let partitions: Vec<i32> = targets.keys().copied().collect();
    let offsets: Vec<i64> = targets.values().copied().collect();
    let o = ident(OFFSETS_TABLE);
    // 1. The stored offsets, locked (a dry run only reads them).
    let stored: BTreeMap<i32, (Option<i64>, bool)> = if request.dry_run {
        tx.query(
            &format!("SELECT partition, next_offset FROM {o} WHERE table_name = $1 AND topic = $2"),
            &[&table, &topic],
        )
        .await
        .context("cannot read the sink's stored offsets (dry run)")?
        .iter()
        .map(|r| (r.get(0), (Some(r.get(1)), false)))
        .collect()
    } else if !request.delete_all {
        // Partitions with nothing stored have no rows or letters: they stay
        // as they are, starting where the sink's `start` says.
        tx.query(
            &format!(
                "SELECT partition, next_offset FROM {o}
                 WHERE table_name = $1 AND topic = $2 AND partition = ANY($3)
                 ORDER BY partition FOR UPDATE"
            ),
            &[&table, &topic, &partitions],
        )
        .await
        .context("cannot lock the sink's stored offsets")?
        .iter()
        .map(|r| (r.get(0), (Some(r.get(1)), false)))
        .collect()
    } else {
        tx.query(
            &format!(
                "INSERT INTO {o} AS o (table_name, topic, partition, next_offset, consumer_group)
                 SELECT $1, $2, p, n, $3 FROM UNNEST($4::int4[], $5::int8[]) AS x(p, n) ORDER BY p
                 ON CONFLICT (table_name, topic, partition) DO UPDATE SET updated_at = o.updated_at
                 RETURNING partition, next_offset, xmax = 0"
            ),
            &[&table, &topic, &sink.group, &partitions, &offsets],
        )
        .await
        .context("cannot lock the sink's stored offsets")?
        .iter()
        .map(|r| {
            let inserted: bool = r.get(2);
            (r.get(0), (if inserted { None } else { Some(r.get(1)) }, inserted))
        })
        .collect()
    };
    // Looked at only now, under the locks, so no sink creates or alters a
    // table between the check and the deletes. A table made later is empty
    // of these rows.
    let mut tables = Vec::with_capacity(declared.len());
    for t in declared {
        if !postgres::table_exists(tx.client(), t).await? {
            continue;
        }
        if !upsert && !request.delete_all && !lineage::present(tx.client(), t).await? {
            bail!(
                "sink {:?} appends to table {t:?}, which has no lineage columns ({TOPIC_COLUMN} text, {PARTITION_COLUMN} bigint, {OFFSET_COLUMN} bigint): the rows of the rewound offsets cannot be told apart from the others, so a rewind would store them twice\n  hint: rewind with --to-start --delete-all, which deletes every row of the sink's tables ({}), every dead letter and stored offset of the sink, and starts it from the start of the topic; or point the sink at a new table, which the host creates with lineage",
                sink.name,
                declared.join(", ")
            );
        }
        tables.push(t.clone());
    }
    // Never forward: a target past the stored offset keeps it. Without
    // --delete-all, a partition with nothing stored is left alone.
    let mut moved: Vec<Moved> = targets
        .iter()
        .filter_map(|(p, target)| {
            let before = stored.get(p).and_then(|(s, _)| *s);
            if before.is_none() && !request.delete_all {
                return None;
            }
            Some(Moved {
                partition: *p,
                stored: before,
                resume: before.map_or(*target, |s| s.min(*target)),
                rows: None,
                letters: 0,
            })
        })
        .collect();
    let untouched: Vec<i32> = targets
        .keys()
        .filter(|p| !moved.iter().any(|m| m.partition == **p))
        .copied()
        .collect();
    let d = ident(DEAD_LETTERS_TABLE);
    let mut all_rows = None;
    // 2. Dead letters first (a replay holding some commits its rows before
    // they are looked at), then rows.
    for m in &mut moved {
        let (verb, tail) = if request.dry_run {
            ("SELECT count(*)", "")
        } else {
            ("WITH gone AS (DELETE", " RETURNING 1) SELECT count(*) FROM gone")
        };
        let where_letters =
            format!("FROM {d} WHERE sink = $1 AND topic = $2 AND partition = $3 AND \"offset\" >= $4{tail}");
        m.letters = tx
            .query_one(
                &format!("{verb} {where_letters}"),
                &[&sink.name, &topic, &m.partition, &m.resume],
            )
            .await
            .context("cannot delete the dead letters of the rewound offsets")?
            .get(0);
        if !upsert && !request.delete_all {
            // Children first: the reverse of the declared order.
            let mut rows = 0;
            for t in tables.iter().rev() {
                let sql = format!(
                    "{verb} FROM {} WHERE {}{tail}",
                    ident(t),
                    lineage::rows_from_condition()
                );
                rows += tx
                    .query_one(&sql, &[&topic, &i64::from(m.partition), &m.resume])
                    .await
                    .with_context(|| format!("cannot delete the rows of the rewound offsets from {t:?}"))?
                    .get::<_, i64>(0);
            }
            m.rows = Some(rows);
        }
    }
    if request.delete_all {
        let letters = if request.dry_run {
            format!("SELECT count(*) FROM {d} WHERE sink = $1 AND topic = $2")
        } else {
            format!(
                "WITH gone AS (DELETE FROM {d} WHERE sink = $1 AND topic = $2 RETURNING 1) SELECT count(*) FROM gone"
            )
        };
        let total: i64 = tx
            .query_one(&letters, &[&sink.name, &topic])
            .await
            .context("cannot count or delete the sink's dead letters (--delete-all)")?
            .get(0);
        // Counted per partition above for the offsets past the start; the
        // rest (before the log start) go too.
        let counted: i64 = moved.iter().map(|m| m.letters).sum();
        if let Some(first) = moved.first_mut() {
            first.letters += (total - counted).max(0);
        }
        let mut deleted = 0;
        for t in tables.iter().rev() {
            let rows = if request.dry_run {
                format!("SELECT count(*) FROM {}", ident(t))
            } else {
                format!(
                    "WITH gone AS (DELETE FROM {} RETURNING 1) SELECT count(*) FROM gone",
                    ident(t)
                )
            };
            deleted += tx
                .query_one(&rows, &[])
                .await
                .with_context(|| format!("cannot count or delete the rows of {t:?} (--delete-all)"))?
                .get::<_, i64>(0);
        }
        if !tables.is_empty() {
            all_rows = Some(deleted);
        }
    }
    // 3. The offsets move back, and the running sinks are told.
    if request.dry_run {
        tx.rollback().await.context("cannot roll back the dry run")?;
    } else {
        let partitions: Vec<i32> = moved.iter().map(|m| m.partition).collect();
        let resume: Vec<i64> = moved.iter().map(|m| m.resume).collect();
        tx.execute(
            &format!(
                "UPDATE {o} AS o SET next_offset = x.n, updated_at = now()
                 FROM UNNEST($3::int4[], $4::int8[]) AS x(p, n)
                 WHERE o.table_name = $1 AND o.topic = $2 AND o.partition = x.p"
            ),
            &[&table, &topic, &partitions, &resume],
        )
        .await
        .context("cannot move the stored offsets")?;
        lineage::bump_generation(&tx, &sink.name, table, topic).await?;
        tx.commit().await.context("cannot commit the rewind")?;
    }
    Ok(Rewound {
        sink: sink.name.clone(),
        tables: if tables.is_empty() {
            vec![table.to_string()]
        } else {
            tables.to_vec()
        },
        topic: topic.to_string(),
        upsert,
        dry_run: request.dry_run,
        all_rows,
        partitions: moved,
        untouched,
    })
}

/// What a rewind did, or would do, in lines for the terminal.
pub fn render(r: &Rewound) -> String {
    let (would, rows_verb) = if r.dry_run {
        ("would ", "would go")
    } else {
        ("", "deleted")
    };
    let mut out = format!(
        "{}sink {} ({} into {} {}, topic {:?}):\n",
        if r.dry_run { "dry run, nothing changed: " } else { "" },
        r.sink,
        if r.upsert { "upsert" } else { "append" },
        if r.tables.len() == 1 { "table" } else { "tables" },
        r.tables.join(", "),
        r.topic
    );
    for m in &r.partitions {
        let from = m.stored.map_or("nothing stored".to_string(), |s| format!("stored {s}"));
        let rows = match m.rows {
            Some(n) => format!("{n} row(s) {rows_verb}"),
            None if r.all_rows.is_some() => "rows: see below".to_string(),
            None => "rows stay (re-applied by key)".to_string(),
        };
        let _ = writeln!(
            out,
            "  partition {}: {from}, {would}resume{} at {}; {rows}; {} dead letter(s) {rows_verb}",
            m.partition,
            if r.dry_run { "" } else { "s" },
            m.resume,
            m.letters
        );
    }
    if !r.untouched.is_empty() {
        let _ = writeln!(
            out,
            "  partition(s) {:?}: nothing stored, {}left alone (they start where the sink's start says)",
            r.untouched,
            if r.dry_run { "would be " } else { "" }
        );
    }
    if let Some(all) = r.all_rows {
        let _ = writeln!(
            out,
            "  --delete-all: all {all} row(s) of {} {rows_verb}, and every dead letter and stored offset of the sink",
            r.tables.join(", ")
        );
    }
    out
}
