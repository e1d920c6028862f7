//! What the status reads from PostgreSQL (rows, dead letters and their
//! reasons, stored offsets, paused sinks) and from Kafka (end offsets).

use super::row_counts;
use super::status::ReasonCount;
use crate::config::Pipeline;
use crate::kafka;
use crate::postgres::{self, DEAD_LETTERS_TABLE, OFFSETS_TABLE, ident};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tokio_postgres::Client;

/// What PostgreSQL holds for the pipeline's sinks.
#[derive(Default)]
pub(super) struct Stored {
    pub(super) rows: HashMap<String, (i64, row_counts::Kind)>,
    /// `None`: the count ran out of time (a huge dead-letter table).
    pub(super) dead: Option<HashMap<String, i64>>,
    pub(super) offsets: HashMap<(String, String), BTreeMap<i32, i64>>,
    pub(super) reasons: HashMap<String, Vec<ReasonCount>>,
    /// (table, topic) of the sinks paused with `host sink pause`.
    pub(super) paused: std::collections::HashSet<(String, String)>,
}

/// Recent dead letters (the last this many of all sinks) whose reasons are counted.
const RECENT_DEAD_LETTERS: i64 = 5000;
/// Reasons shown per sink.
const TOP_REASONS: i64 = 5;

/// The most frequent reasons among the recent dead letters, per sink, by
/// their first line. Lines that differ only in numbers (the offset a trap
/// names, a size) count as one reason, shown as its latest line.
async fn read_reasons(client: &Client) -> Result<HashMap<String, Vec<ReasonCount>>, tokio_postgres::Error> {
    let query = format!(
        "SELECT sink, latest, n FROM (\
           SELECT sink, (array_agg(line ORDER BY id DESC))[1] AS latest, count(*) AS n, \
                  row_number() OVER (PARTITION BY sink ORDER BY count(*) DESC, min(line)) AS rank \
           FROM (SELECT id, sink, left(split_part(reason, E'\\n', 1), 300) AS line FROM {dl} \
                 WHERE id > (SELECT coalesce(max(id), 0) - {RECENT_DEAD_LETTERS} FROM {dl})) recent \
           GROUP BY sink, regexp_replace(line, '[0-9]+', 'N', 'g')) ranked \
         WHERE rank <= {TOP_REASONS} ORDER BY sink, rank",
        dl = ident(DEAD_LETTERS_TABLE)
    );
    let mut out: HashMap<String, Vec<ReasonCount>> = HashMap::new();
    for r in row_counts::bounded(client, &query).await? {
        if let (Some(sink), Some(reason), Some(Ok(count))) = (r.first(), r.get(1), r.get(2).map(|n| n.parse())) {
            out.entry(sink.clone()).or_default().push(ReasonCount {
                reason: reason.clone(),
                count,
            });
        }
    }
    Ok(out)
}

pub(super) async fn read_stored(client: &Client, pipeline: &Pipeline) -> anyhow::Result<Stored> {
    let mut out = Stored::default();
    for s in &pipeline.sinks {
        out.rows
            .insert(s.name.clone(), row_counts::table_rows(client, &s.table).await?);
    }
    out.dead = Some(HashMap::new());
    if postgres::table_exists(client, DEAD_LETTERS_TABLE).await? {
        // Dead letters are few unless something is badly wrong: count them,
        // but never for longer than a status refresh can wait.
        let query = format!("SELECT sink, count(*) FROM {} GROUP BY sink", ident(DEAD_LETTERS_TABLE));
        out.dead = match row_counts::bounded(client, &query).await {
            Ok(rows) => Some(
                rows.into_iter()
                    .filter_map(|r| Some((r.first()?.clone(), r.get(1)?.parse().ok()?)))
                    .collect(),
            ),
            Err(e) => {
                tracing::debug!(error = %e, "dead letter count ran out of time");
                None
            }
        };
        if out.dead.as_ref().is_none_or(|d| d.values().any(|n| *n > 0)) {
            out.reasons = read_reasons(client).await.unwrap_or_else(|e| {
                tracing::debug!(error = %e, "dead letter reasons ran out of time");
                HashMap::new()
            });
        }
    }
    if postgres::table_exists(client, postgres::lineage::CONTROL_TABLE).await? {
        let sql = format!(
            "SELECT table_name, topic FROM {} WHERE paused",
            ident(postgres::lineage::CONTROL_TABLE)
        );
        out.paused = client
            .query(&sql, &[])
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
    }
    if postgres::table_exists(client, OFFSETS_TABLE).await? {
        for r in client
            .query(
                &format!(
                    "SELECT table_name, topic, partition, next_offset FROM {}",
                    ident(OFFSETS_TABLE)
                ),
                &[],
            )
            .await?
        {
            out.offsets
                .entry((r.get(0), r.get(1)))
                .or_default()
                .insert(r.get(2), r.get(3));
        }
    }
    Ok(out)
}

/// Kafka's end offsets per topic and partition, or why Kafka did not answer.
pub type EndOffsets = Result<HashMap<String, HashMap<i32, i64>>, String>;

/// Kafka's end offsets of each topic the pipeline's sinks read.
pub async fn end_offsets(pipeline: &Pipeline, topics: Vec<String>, timeout: Duration) -> EndOffsets {
    let kafka_cfg = pipeline.kafka.clone();
    let work = tokio::task::spawn_blocking(move || {
        let consumer = kafka::query_consumer(&kafka_cfg, "wasm-stream-status")?;
        let mut out = HashMap::new();
        for t in topics {
            out.insert(t.clone(), kafka::end_offsets(&consumer, &t)?);
        }
        anyhow::Ok(out)
    });
    match tokio::time::timeout(timeout, work).await {
        Ok(Ok(Ok(ends))) => Ok(ends),
        Ok(Ok(Err(e))) => Err(format!("{e:#}")),
        Ok(Err(e)) => Err(format!("the Kafka query failed: {e}")),
        Err(_) => Err(format!(
            "no answer from {} within {} ms",
            pipeline.kafka.bootstrap_servers,
            timeout.as_millis()
        )),
    }
}
