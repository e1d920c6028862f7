//! `host plugin test` of a mapper: one call per message, as the sink makes
//! them when a batch fails, and the rows printed per table (a mapper of one
//! table prints as it did before contract 0.3.0).

use super::registry;
use super::render::{render_table, sql_type, value_json, value_text};
use crate::plugins::mapper::{self, Table, TableKey, TableRows};
use crate::plugins::{MapperWorld, Plugin};
use std::fmt::Write as _;

/// What became of one message in `plugin test`.
enum Result1 {
    Rows(Vec<TableRows>),
    Rejected(String),
    /// Delete the rows with these key values.
    Delete(Vec<TableKey>),
    /// The call trapped, timed out or ran out of memory: `host run` dead-letters it.
    Failed(String),
}

/// Why rows break the contract: a table not declared, or a row of another width.
fn broken(tables: &[Table], parts: &[TableRows]) -> Option<String> {
    parts.iter().find_map(|p| match tables.get(p.table as usize) {
        None => Some(format!(
            "rows for table {}, but the mapper declared {} (contract broken)",
            p.table,
            tables.len()
        )),
        Some(t) => p.rows.iter().find(|r| r.len() != t.columns.len()).map(|bad| {
            format!(
                "a row has {} values for {} columns (contract broken)",
                bad.len(),
                t.columns.len()
            )
        }),
    })
}

/// A table as `plugin test` names it: the sink's, or `<sink table>_<name>`.
fn label(t: &Table) -> String {
    match &t.name {
        None => "the sink's table".into(),
        Some(n) => format!("<sink table>_{n}"),
    }
}

/// `shown`: per message, what the schema registry made of its payload (a
/// payload that does not decode never reaches the mapper, as in `host run`).
pub(super) fn run_mapper(
    mut plugin: Plugin<MapperWorld>,
    messages: &[mapper::Message],
    shown: &[registry::Shown],
    json: bool,
) -> String {
    let tables = plugin.configured().clone();
    let results: Vec<Result1> = messages
        .iter()
        .zip(shown)
        .map(|(m, s)| match s {
            registry::Shown::Failed(reason) => Result1::Failed(reason.clone()),
            _ => map_one(&mut plugin, &tables, m),
        })
        .collect();
    let one = tables.len() == 1;
    if json {
        return as_json(&tables, messages, &results, shown, one);
    }
    render_text(&tables, messages, &results, shown, one)
}

/// One message through the mapper, one call so a trap is pinned to its
/// message (as the sink does when a batch fails).
fn map_one(plugin: &mut Plugin<MapperWorld>, tables: &[Table], m: &mapper::Message) -> Result1 {
    match plugin.map_batch(std::slice::from_ref(m)) {
        Ok(mut out) => match out.pop() {
            Some(mapper::Outcome::Rows(parts)) => match broken(tables, &parts) {
                Some(reason) => Result1::Failed(reason),
                None => Result1::Rows(parts),
            },
            Some(mapper::Outcome::Rejected(reason)) => Result1::Rejected(reason),
            Some(mapper::Outcome::Delete(keys)) => match keys.iter().find(|k| k.table as usize >= tables.len()) {
                Some(k) => Result1::Failed(format!(
                    "a delete for table {}, but the mapper declared {} (contract broken)",
                    k.table,
                    tables.len()
                )),
                None => Result1::Delete(keys),
            },
            None => Result1::Failed("no outcome".into()),
        },
        Err(e) => Result1::Failed(e.to_string()),
    }
}

fn render_text(
    tables: &[Table],
    messages: &[mapper::Message],
    results: &[Result1],
    shown: &[registry::Shown],
    one: bool,
) -> String {
    let mut out = String::new();
    for (i, t) in tables.iter().enumerate() {
        if !one {
            let _ = writeln!(out, "table {i}: {}", label(t));
            if let Some(key) = &t.key {
                let _ = writeln!(out, "key: {}", key.join(", "));
            }
        }
        out.push_str("columns:\n");
        for c in &t.columns {
            let _ = writeln!(
                out,
                "  {} {}{}",
                c.name,
                sql_type(c.kind),
                if c.nullable { "" } else { " not null" }
            );
        }
        let mut grid = vec![
            std::iter::once("offset".to_string())
                .chain(t.columns.iter().map(|c| c.name.clone()))
                .collect::<Vec<_>>(),
        ];
        for (m, r) in messages.iter().zip(results) {
            if let Result1::Rows(parts) = r {
                for row in parts.iter().filter(|p| p.table as usize == i).flat_map(|p| &p.rows) {
                    grid.push(
                        std::iter::once(m.offset.to_string())
                            .chain(row.iter().map(value_text))
                            .collect(),
                    );
                }
            }
        }
        let _ = writeln!(out, "rows: {}", grid.len() - 1);
        out.push_str(&render_table(&grid));
    }
    out.push_str(&registry::section(messages.iter().map(|m| m.offset), shown));
    let (mut problems, mut deletes) = (String::new(), String::new());
    for (m, r) in messages.iter().zip(results) {
        match r {
            Result1::Rows(_) => {}
            Result1::Rejected(reason) => {
                let _ = writeln!(problems, "offset {}: rejected: {reason}", m.offset);
            }
            Result1::Delete(keys) => {
                for k in keys {
                    let values: Vec<String> = k.key.iter().map(value_text).collect();
                    let table = if one {
                        String::new()
                    } else {
                        format!("table {}, ", k.table)
                    };
                    let _ = writeln!(deletes, "offset {}: {table}key {}", m.offset, values.join(", "));
                }
            }
            Result1::Failed(reason) => {
                let _ = writeln!(
                    problems,
                    "offset {}: failed (dead-lettered by `host run`): {reason}",
                    m.offset
                );
            }
        }
    }
    if !deletes.is_empty() {
        out.push_str("deletes (applied by a sink with mode = \"upsert\"):\n");
        for line in deletes.lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    if !problems.is_empty() {
        out.push_str("rejections:\n");
        for line in problems.lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}

/// The `--json` output: `columns` and plain rows for a mapper of one table,
/// as before 0.3.0; `tables` and rows tagged with their table otherwise.
fn as_json(
    tables: &[Table],
    messages: &[mapper::Message],
    results: &[Result1],
    shown: &[registry::Shown],
    one: bool,
) -> String {
    let columns_json = |t: &Table| -> Vec<serde_json::Value> {
        t.columns
            .iter()
            .map(|c| serde_json::json!({"name": c.name, "type": sql_type(c.kind), "nullable": c.nullable}))
            .collect()
    };
    let values = |row: &[mapper::Value]| row.iter().map(value_json).collect::<Vec<_>>();
    let outcomes: Vec<_> = messages
        .iter()
        .zip(results)
        .map(|(m, r)| match r {
            Result1::Rows(parts) if one => serde_json::json!({
                "offset": m.offset,
                "rows": parts.iter().flat_map(|p| &p.rows).map(|row| values(row)).collect::<Vec<_>>(),
            }),
            Result1::Rows(parts) => serde_json::json!({
                "offset": m.offset,
                "rows": parts
                    .iter()
                    .map(|p| serde_json::json!({"table": p.table, "rows": p.rows.iter().map(|row| values(row)).collect::<Vec<_>>()}))
                    .collect::<Vec<_>>(),
            }),
            Result1::Rejected(reason) => serde_json::json!({"offset": m.offset, "rejected": reason}),
            Result1::Delete(keys) if one => {
                serde_json::json!({"offset": m.offset, "delete": keys.iter().flat_map(|k| values(&k.key)).collect::<Vec<_>>()})
            }
            Result1::Delete(keys) => serde_json::json!({
                "offset": m.offset,
                "delete": keys.iter().map(|k| serde_json::json!({"table": k.table, "key": values(&k.key)})).collect::<Vec<_>>(),
            }),
            Result1::Failed(reason) => serde_json::json!({"offset": m.offset, "failed": reason}),
        })
        .zip(shown)
        .map(|(mut outcome, s)| {
            registry::annotate(&mut outcome, s);
            outcome
        })
        .collect();
    let doc = if one {
        serde_json::json!({"columns": columns_json(&tables[0]), "messages": outcomes})
    } else {
        let tables: Vec<_> = tables
            .iter()
            .map(|t| serde_json::json!({"name": t.name, "key": t.key, "columns": columns_json(t)}))
            .collect();
        serde_json::json!({"tables": tables, "messages": outcomes})
    };
    format!("{}\n", serde_json::to_string_pretty(&doc).unwrap_or_default())
}
