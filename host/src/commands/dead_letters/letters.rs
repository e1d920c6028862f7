//! `host dead-letters list|show|replay`: the messages a sink could not map,
//! and replaying them through the sink's current mapper (after a fix, say).
//!
//! A replay works in batches. Each batch is one transaction: it locks the
//! letters it takes (`FOR UPDATE SKIP LOCKED`, so two replays never take the
//! same letter), maps them, copies the rows into the sink's table, deletes
//! the letters that became rows, and gives the ones still rejected their new
//! reason and one more replay. A crash at any point leaves either all of a
//! batch's effects or none. A running sink never touches existing letters, so
//! replaying while it writes neither doubles nor loses anything.

use crate::config::{Pipeline, SinkConfig};
use crate::pipeline::{self, BatchMapper};
use crate::plugins::mapper::Message;
use crate::plugins::{MapperWorld, Runtime};
use crate::postgres::isolate::{self, Parts, Plan};
use crate::postgres::{self, DEAD_LETTERS_TABLE, ident};
use anyhow::{Context as _, bail};
use serde::Serialize;
use std::collections::HashMap;
use tokio_postgres::Client;

/// Letters taken per replay transaction.
pub const REPLAY_BATCH: i64 = 500;
/// Most letters `list` prints.
pub const LIST_LIMIT: i64 = 1000;

/// Which dead letters a command works on.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only this sink's (default: every sink of the pipeline).
    pub sink: Option<String>,
    /// Only these ids.
    pub ids: Vec<i64>,
    /// Only letters written at or after this time: a timestamp PostgreSQL
    /// understands (`2026-11-28T22:00:00Z`) or an age (`30m`, `2h`, `1d`).
    pub since: Option<String>,
}

/// One dead letter.
#[derive(Debug, Clone, Serialize)]
pub struct Letter {
    pub id: i64,
    pub sink: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    #[serde(skip)]
    pub key: Option<Vec<u8>>,
    #[serde(skip)]
    pub payload: Option<Vec<u8>>,
    pub reason: String,
    pub plugin: String,
    pub created_at: String,
    pub replays: i32,
    pub replayed_at: Option<String>,
}

/// What a replay did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Replayed {
    /// Letters that became rows (and were removed).
    pub stored: u64,
    /// Rows written for them.
    pub rows: u64,
    /// Letters the mapper still rejects (kept, with the new reason).
    pub still_rejected: u64,
}

fn sinks<'a>(pipeline: &'a Pipeline, sel: &Selection) -> anyhow::Result<Vec<&'a SinkConfig>> {
    match &sel.sink {
        None => Ok(pipeline.sinks.iter().collect()),
        Some(name) => match pipeline.sinks.iter().find(|s| &s.name == name) {
            Some(s) => Ok(vec![s]),
            None => {
                let names: Vec<&str> = pipeline.sinks.iter().map(|s| s.name.as_str()).collect();
                bail!(
                    "--sink {name:?} is not a sink of {}; its sinks are {names:?}",
                    pipeline.path.display()
                )
            }
        },
    }
}

/// `--since` as (timestamp, age) for the query.
fn since(sel: &Selection) -> anyhow::Result<(Option<String>, Option<String>)> {
    let Some(text) = sel.since.as_deref().map(str::trim) else {
        return Ok((None, None));
    };
    let unit = text.chars().last().unwrap_or(' ');
    // The last character may take several bytes (`5é`): cut it as a char.
    let number = text.strip_suffix(unit).unwrap_or_default();
    if !number.is_empty() && number.chars().all(|c| c.is_ascii_digit()) {
        let word = match unit {
            's' => "seconds",
            'm' => "minutes",
            'h' => "hours",
            'd' => "days",
            _ => bail!(
                "--since {text:?}: use an age like 30m, 2h or 1d (s, m, h, d), or a time like 2026-11-28T22:00:00Z"
            ),
        };
        return Ok((None, Some(format!("{number} {word}"))));
    }
    Ok((Some(text.to_string()), None))
}

/// Connects and makes sure the dead-letter table has the replay columns.
pub async fn connect(pipeline: &Pipeline) -> anyhow::Result<Client> {
    let client = postgres::connect(&pipeline.postgres).await?;
    postgres::ensure_host_tables(&client).await?;
    let has = client
        .query_opt(
            "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1 AND column_name = 'replays'",
            &[&DEAD_LETTERS_TABLE],
        )
        .await?
        .is_some();
    if !has {
        let sql = format!(
            "ALTER TABLE {} ADD COLUMN IF NOT EXISTS replays integer NOT NULL DEFAULT 0,
             ADD COLUMN IF NOT EXISTS replayed_at timestamptz",
            ident(DEAD_LETTERS_TABLE)
        );
        postgres::batch_ddl(&client, &sql)
            .await
            .context("cannot add the replay columns to the dead-letter table")?;
    }
    Ok(client)
}

const COLUMNS: &str = "id, sink, topic, partition, \"offset\", key, payload, reason, plugin, created_at::text, replays, replayed_at::text";

fn letter(r: &tokio_postgres::Row) -> Letter {
    Letter {
        id: r.get(0),
        sink: r.get(1),
        topic: r.get(2),
        partition: r.get(3),
        offset: r.get(4),
        key: r.get(5),
        payload: r.get(6),
        reason: r.get(7),
        plugin: r.get(8),
        created_at: r.get(9),
        replays: r.get(10),
        replayed_at: r.get(11),
    }
}

/// The filter every command shares: `$1` sinks, `$2` ids, `$3` timestamp, `$4` age.
const WHERE: &str = "sink = ANY($1) AND (cardinality($2::int8[]) = 0 OR id = ANY($2))
    AND ($3::text IS NULL OR created_at >= $3::text::timestamptz)
    AND ($4::text IS NULL OR created_at >= now() - $4::text::interval)";

fn since_error(e: tokio_postgres::Error, sel: &Selection) -> anyhow::Error {
    match &sel.since {
        Some(s) if e.as_db_error().is_some_and(|d| d.code().code().starts_with("22")) => anyhow::anyhow!(
            "--since {s:?} is not a time PostgreSQL understands ({})\n  hint: use e.g. 2026-11-28T22:00:00Z, \"2026-11-28 22:00\", or an age like 30m, 2h, 1d",
            e.as_db_error().map_or(String::new(), |d| d.message().to_string())
        ),
        _ => anyhow::Error::new(e).context("cannot read the dead letters"),
    }
}

/// The selected letters, oldest first (at most `limit`).
pub async fn list(client: &Client, pipeline: &Pipeline, sel: &Selection, limit: i64) -> anyhow::Result<Vec<Letter>> {
    let names: Vec<String> = sinks(pipeline, sel)?.iter().map(|s| s.name.clone()).collect();
    let (ts, age) = since(sel)?;
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM {} WHERE {WHERE} ORDER BY id LIMIT $5",
                ident(DEAD_LETTERS_TABLE)
            ),
            &[&names, &sel.ids, &ts, &age, &limit],
        )
        .await
        .map_err(|e| since_error(e, sel))?;
    Ok(rows.iter().map(letter).collect())
}

/// Runs the selected letters through each sink's current mapper (as the
/// pipeline file names it now), batch by batch.
pub async fn replay(
    client: &mut Client,
    pipeline: &Pipeline,
    sel: &Selection,
    mut progress: impl FnMut(&str, &Replayed),
) -> anyhow::Result<Replayed> {
    let runtime = Runtime::new()?;
    let (ts, age) = since(sel)?;
    let mut total = Replayed::default();
    for sink in sinks(pipeline, sel)? {
        let (rt, name, cfg) = (runtime.clone(), format!("sink {}", sink.name), sink.mapper.clone());
        let plugin = tokio::task::spawn_blocking(move || rt.load::<MapperWorld>(&name, &cfg, None))
            .await?
            .with_context(|| format!("cannot load the mapper of sink {}", sink.name))?;
        let mut tables = pipeline::tables::resolve(sink, plugin.configured()).map_err(anyhow::Error::msg)?;
        // Replayed rows go through the whole batch's isolation of one table.
        if tables.len() > 1 {
            anyhow::bail!(
                "the mapper of sink {} writes {} tables; `dead-letters replay` writes one table's rows only\n  hint: produce the messages again (`host produce --stdin`), or replay with a mapper of one table",
                sink.name,
                tables.len()
            );
        }
        // A replayed message is older than what the table holds by its key:
        // writing it would undo later updates.
        if !sink.mode.key().is_empty() {
            anyhow::bail!(
                "sink {} upserts by key; replaying its dead letters would overwrite newer rows with older messages\n  hint: fix the mapper and produce the messages again, or replay into an append sink",
                sink.name
            );
        }
        // Replayed rows carry their message's lineage too, so a rewind
        // deletes them with the others of their offsets.
        postgres::ensure_sink_tables(client, &mut tables).await?;
        let written = tables[0].written();
        let tables: std::sync::Arc<[postgres::SinkTable]> = tables.into();
        let names: Vec<&str> = written.iter().map(|c| c.name.as_str()).collect();
        let copy = format!(
            "COPY {} ({}) FROM STDIN BINARY",
            ident(&sink.table),
            names.iter().map(|n| ident(n)).collect::<Vec<_>>().join(", ")
        );
        let copy = client
            .prepare(&copy)
            .await
            .with_context(|| format!("cannot prepare the copy into {:?}", sink.table))?;
        let select = format!(
            "SELECT {COLUMNS} FROM {} WHERE {WHERE} AND id > $5 ORDER BY id LIMIT $6 FOR UPDATE SKIP LOCKED",
            ident(DEAD_LETTERS_TABLE)
        );
        let mut mapper: Box<dyn BatchMapper> = Box::new(plugin);
        let sink_names = vec![sink.name.clone()];
        let mut cursor = 0i64;
        let mut done = Replayed::default();
        loop {
            let tx = client.transaction().await?;
            let rows = tx
                .query(&select, &[&sink_names, &sel.ids, &ts, &age, &cursor, &REPLAY_BATCH])
                .await
                .map_err(|e| since_error(e, sel))?;
            if rows.is_empty() {
                tx.rollback().await?;
                break;
            }
            let letters: Vec<Letter> = rows.iter().map(letter).collect();
            cursor = letters.iter().map(|l| l.id).max().unwrap_or(cursor);
            let messages: Vec<Message> = letters
                .iter()
                .map(|l| Message {
                    topic: l.topic.clone(),
                    partition: l.partition,
                    offset: l.offset,
                    // Not kept with the letter.
                    timestamp: None,
                    key: l.key.clone(),
                    payload: l.payload.clone(),
                    schema: None,
                })
                .collect();
            let (m, mapped) = pipeline::map_messages(mapper, tables.clone(), messages, false).await?;
            mapper = m;
            let mapped = mapped?;
            // Which letters are still rejected, by their place in the batch:
            // the mapper's dead letters come in message order, one at most
            // per message (letters of one sink may come from several topics,
            // so a partition and offset alone do not tell them apart).
            let mut rejected: HashMap<usize, String> = HashMap::new();
            let mut at = 0;
            for d in mapped.dead_letters {
                while letters
                    .get(at)
                    .is_some_and(|l| (l.partition, l.offset) != (d.partition, d.offset))
                {
                    at += 1;
                }
                rejected.insert(at, d.reason);
                at += 1;
            }
            // The rows, without the ones PostgreSQL refuses: their letters
            // stay, with PostgreSQL's reason.
            let Some(table) = mapped.tables.into_iter().next() else {
                bail!("a replay writes one table's rows");
            };
            let of_row = match &table.parts {
                Parts::Rows(of_row) => of_row.as_slice(),
                Parts::Keyed(..) => bail!("a replay writes an append sink's rows only"),
            };
            let rows = table.rows.freeze();
            let plan = Plan::Copy {
                copy: &copy,
                of_row,
                rows: &rows,
            };
            let culprits = isolate::write_isolating(&tx, &[plan], None)
                .await
                .with_context(|| format!("cannot copy the replayed rows into {:?}", sink.table))?;
            let refused_rows = table.parts.rows_of(&culprits.iter().map(|c| c.0).collect::<Vec<_>>());
            for (message, reason) in culprits {
                rejected.insert(message as usize, reason);
            }
            let (mut stored_ids, mut kept_ids, mut kept_reasons) = (Vec::new(), Vec::new(), Vec::new());
            for (i, l) in letters.iter().enumerate() {
                match rejected.remove(&i) {
                    Some(reason) => {
                        kept_ids.push(l.id);
                        kept_reasons.push(reason);
                    }
                    None => stored_ids.push(l.id),
                }
            }
            let rows_written = (rows.len() as u64).saturating_sub(refused_rows);
            tx.execute(
                &format!("DELETE FROM {} WHERE id = ANY($1)", ident(DEAD_LETTERS_TABLE)),
                &[&stored_ids],
            )
            .await?;
            tx.execute(
                &format!(
                    "UPDATE {t} SET reason = k.reason, plugin = $3, replays = replays + 1, replayed_at = now()
                     FROM UNNEST($1::int8[], $2::text[]) AS k(id, reason) WHERE {t}.id = k.id",
                    t = ident(DEAD_LETTERS_TABLE)
                ),
                &[&kept_ids, &kept_reasons, &mapped.plugin],
            )
            .await?;
            tx.commit().await.context("cannot commit the replayed batch")?;
            done.stored += stored_ids.len() as u64;
            done.rows += rows_written;
            done.still_rejected += kept_ids.len() as u64;
            progress(&sink.name, &done);
        }
        total.stored += done.stored;
        total.rows += done.rows;
        total.still_rejected += done.still_rejected;
    }
    Ok(total)
}

/// Bytes as text when they are UTF-8, else as hex.
pub fn printable(bytes: Option<&[u8]>) -> String {
    match bytes {
        None => "(none)".into(),
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => format!("{s:?}"),
            Err(_) => {
                let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
                format!("0x{hex} ({} bytes, not UTF-8)", b.len())
            }
        },
    }
}

/// `host dead-letters list`: one line per letter.
pub fn render_list(letters: &[Letter]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>8}  {:<20} {:<24} {:>10}  {:<19}  {:>7}  REASON",
        "ID", "SINK", "TOPIC/PARTITION", "OFFSET", "CREATED", "REPLAYS"
    );
    for l in letters {
        let mut reason = l.reason.replace('\n', " ");
        if reason.chars().count() > 80 {
            reason = reason.chars().take(77).collect::<String>() + "...";
        }
        let _ = writeln!(
            out,
            "{:>8}  {:<20} {:<24} {:>10}  {:<19}  {:>7}  {reason}",
            l.id,
            l.sink,
            format!("{}/{}", l.topic, l.partition),
            l.offset,
            l.created_at.chars().take(19).collect::<String>(),
            l.replays
        );
    }
    let _ = writeln!(out, "{} dead letter(s)", letters.len());
    out
}

/// `host dead-letters show`: each letter in full.
pub fn render_show(letters: &[Letter]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for l in letters {
        let _ = writeln!(out, "Dead letter {}", l.id);
        let _ = writeln!(out, "  sink:      {}", l.sink);
        let _ = writeln!(out, "  message:   {}/{} offset {}", l.topic, l.partition, l.offset);
        let _ = writeln!(out, "  key:       {}", printable(l.key.as_deref()));
        let _ = writeln!(out, "  payload:   {}", printable(l.payload.as_deref()));
        let _ = writeln!(out, "  reason:    {}", l.reason);
        let _ = writeln!(out, "  plugin:    {}", l.plugin);
        let _ = writeln!(out, "  created:   {}", l.created_at);
        let _ = writeln!(
            out,
            "  replays:   {}{}",
            l.replays,
            l.replayed_at
                .as_deref()
                .map(|t| format!(" (last {t})"))
                .unwrap_or_default()
        );
        out.push('\n');
    }
    if letters.is_empty() {
        out.push_str("no dead letter matches\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn since_of(text: &str) -> Result<(Option<String>, Option<String>), String> {
        since(&Selection {
            since: Some(text.into()),
            ..Selection::default()
        })
        .map_err(|e| e.to_string())
    }

    /// `--since 5é` panicked: the unit was cut off byte-wise, inside `é`.
    #[test]
    fn an_age_whose_unit_is_not_ascii_is_refused_not_cut_inside_a_character() {
        let e = since_of("5é").unwrap_err();
        assert!(e.starts_with("--since \"5é\": use an age like 30m"), "{e}");
        assert_eq!(since_of("30m"), Ok((None, Some("30 minutes".into()))));
        assert_eq!(since_of(" 2d "), Ok((None, Some("2 days".into()))));
        assert_eq!(
            since_of("2026-11-28T22:00:00Z"),
            Ok((Some("2026-11-28T22:00:00Z".into()), None))
        );
        // Not an age: PostgreSQL judges it as a time (and says so if not).
        assert_eq!(since_of("é"), Ok((Some("é".into()), None)));
        assert_eq!(since_of(""), Ok((Some(String::new()), None)));
    }

    proptest! {
        #![proptest_config(proptest::test_runner::Config { failure_persistence: None, ..Default::default() })]

        #[test]
        fn any_since_is_an_age_a_time_or_an_error(text in prop_oneof![any::<String>(), "[0-9]{0,3}\\PC{0,2}"]) {
            let _ = since_of(&text);
        }
    }
}
