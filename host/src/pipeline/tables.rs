//! The tables of a sink: its mapper's declared tables (contract 0.3.0)
//! resolved against the pipeline file. The unnamed table is the sink's
//! `table`; a table named `n` is `<sink table>_<n>`, or the table the
//! sink's `[sinks.tables]` gives for `n`. In an upsert sink the
//! unnamed table's key is the sink's `key` (the mapper may repeat it, not
//! change it), and every named table needs a key of its own, declared by
//! the mapper. An append sink ignores declared keys.

use crate::config::{MAX_PG_IDENT_LEN, SinkConfig, SinkMode, check_name};
use crate::plugins::mapper::{Column, ColumnType, Table};
use crate::postgres::SinkTable;

/// The sink's tables in the mapper's order, or why they do not fit the
/// sink: the message names the sink, the table and the fix.
pub fn resolve(sink: &SinkConfig, declared: &[Table]) -> Result<Vec<SinkTable>, String> {
    let name = &sink.name;
    let unnamed = declared.iter().filter(|t| t.name.is_none()).count();
    if unnamed != 1 {
        return Err(format!(
            "the mapper of sink {name:?} declares {} tables without a name ({} in all); exactly one table is unnamed: the sink's table {:?}\n  hint: give the other tables names in the mapper's configure (they become {:?}_<name>)",
            unnamed,
            declared.len(),
            &*sink.table,
            &*sink.table
        ));
    }
    let mut tables: Vec<SinkTable> = Vec::with_capacity(declared.len());
    for t in declared {
        let full = match &t.name {
            None => sink.table.to_string(),
            Some(n) if sink.tables.names.contains_key(n) => sink.tables.names[n].to_string(),
            Some(n) => {
                check_name(n, MAX_PG_IDENT_LEN, false)
                    .map_err(|e| format!("the mapper of sink {name:?} names a table {e}"))?;
                let full = format!("{}_{n}", &*sink.table);
                check_name(&full, MAX_PG_IDENT_LEN, false).map_err(|e| {
                    format!("the mapper of sink {name:?} names a table {n:?}, whose full name {e}\n  hint: shorten the sink's table or the mapper's table name")
                })?;
                full
            }
        };
        if tables.iter().any(|x| x.name == full) {
            return Err(format!(
                "the mapper of sink {name:?} declares table {full:?} twice; name each table once"
            ));
        }
        if t.columns.is_empty() {
            return Err(format!(
                "the mapper of sink {name:?} declares table {full:?} without columns"
            ));
        }
        let key = match (&sink.mode, &t.name, &t.key) {
            (SinkMode::Append, ..) => Vec::new(),
            (SinkMode::Upsert { key, .. }, None, None) => key.clone(),
            (SinkMode::Upsert { key, at }, None, Some(declared)) if declared != key => {
                return Err(format!(
                    "{at}: sinks.key of sink {name:?} is [{}], but its mapper declares the key [{}] for table {full:?}\n  hint: make them the same, or drop one of them",
                    key.join(", "),
                    declared.join(", ")
                ));
            }
            (SinkMode::Upsert { .. }, _, Some(declared)) => declared.clone(),
            (SinkMode::Upsert { at, .. }, Some(_), None) => {
                return Err(format!(
                    "{at}: sink {name:?} upserts, and its mapper declares table {full:?} without a key; every table of an upsert sink needs one\n  hint: declare the key of {full:?} in the mapper's configure (the columns that identify a row), or make the sink an append sink"
                ));
            }
        };
        if !key.is_empty() {
            check_key(sink, &full, &t.columns, &key)?;
        }
        tables.push(SinkTable {
            name: full,
            columns: t.columns.clone(),
            key,
            lineage: false,
        });
    }
    if let Some((unknown, at)) = sink
        .tables
        .at
        .iter()
        .find(|(n, _)| !declared.iter().any(|t| t.name.as_deref() == Some(n.as_str())))
    {
        let named: Vec<&str> = declared.iter().filter_map(|t| t.name.as_deref()).collect();
        return Err(format!(
            "{at}: sinks.tables.{unknown} of sink {name:?}: its mapper declares no table {unknown:?} (it names {})\n  hint: use one of those names, or drop the entry",
            if named.is_empty() {
                "none: it writes the sink's table only".to_string()
            } else {
                named.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")
            }
        ));
    }
    Ok(tables)
}

/// What an upsert needs of a table's key: columns of the table, each once,
/// of a type whose equality the host can tell (see `SinkMode::check_columns`).
fn check_key(sink: &SinkConfig, table: &str, columns: &[Column], key: &[String]) -> Result<(), String> {
    if table == &*sink.table {
        // The sink's own table: the pipeline file's key, with its location.
        return sink.mode.check_columns(&sink.name, columns);
    }
    let name = &sink.name;
    let flag = crate::postgres::keyed::DELETE_COLUMN;
    if columns.iter().any(|c| c.name == flag) {
        return Err(format!(
            "sink {name:?} upserts table {table:?} through a staging table with a column {flag:?} of its own, and its mapper declares a column of that name\n  hint: rename the mapper's column"
        ));
    }
    for (i, k) in key.iter().enumerate() {
        if key[..i].contains(k) {
            return Err(format!(
                "the mapper of sink {name:?} names key column {k:?} of table {table:?} twice"
            ));
        }
        let Some(column) = columns.iter().find(|c| &c.name == k) else {
            return Err(format!(
                "the mapper of sink {name:?} declares key column {k:?} for table {table:?}, which is not one of its columns ({})",
                columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
            ));
        };
        let refused = match column.kind {
            ColumnType::Json => "jsonb",
            ColumnType::Float => "double precision",
            ColumnType::Numeric => "numeric",
            _ => continue,
        };
        return Err(format!(
            "the mapper of sink {name:?} keys table {table:?} on {k:?}, a {refused} column, which cannot be a key\n  hint: key on text, integer, uuid, date, timestamp, boolean or bytea columns"
        ));
    }
    Ok(())
}

/// The names of a sink's tables, for reports (`host validate`).
pub fn describe(tables: &[SinkTable]) -> String {
    tables
        .iter()
        .map(|t| {
            let columns: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
            format!("{} ({})", t.name, columns.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, kind: ColumnType) -> Column {
        Column {
            name: name.into(),
            kind,
            nullable: false,
        }
    }

    fn table(name: Option<&str>, key: Option<&[&str]>) -> Table {
        Table {
            name: name.map(Into::into),
            columns: vec![column("order_id", ColumnType::Integer), column("v", ColumnType::Float)],
            key: key.map(|k| k.iter().map(|s| s.to_string()).collect()),
        }
    }

    fn sink(upsert: Option<&[&str]>) -> SinkConfig {
        let text = "[kafka]\nbootstrap_servers = \"localhost:9092\"\nsecurity_protocol = \"plaintext\"\n\
             [postgres]\nurl = \"postgres://u@localhost/db\"\ntls = \"disable\"\n\
             [[topics]]\nname = \"t\"\n\
             [[sinks]]\nname = \"s\"\ntopic = \"t\"\ntable = \"shop\"\nmapper = \"m.wasm\"\n";
        let mut p = crate::config::Pipeline::parse(std::path::Path::new("p.toml"), text).expect("parses");
        let mut s = p.sinks.remove(0);
        if let Some(k) = upsert {
            s.mode = SinkMode::Upsert {
                key: k.iter().map(|s| s.to_string()).collect(),
                at: "pipeline.toml:5:7".into(),
            };
        }
        s
    }

    #[test]
    fn named_tables_take_the_sink_table_as_prefix_in_declared_order() {
        let t = resolve(&sink(None), &[table(None, None), table(Some("items"), Some(&["v"]))]).unwrap();
        let names: Vec<&str> = t.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["shop", "shop_items"]);
        assert!(t.iter().all(|t| t.key.is_empty()), "an append sink ignores keys");
    }

    /// A sink whose file gives `[sinks.tables]` lines.
    fn sink_with_tables(lines: &str) -> Result<SinkConfig, String> {
        let text = format!(
            "[kafka]\nbootstrap_servers = \"localhost:9092\"\nsecurity_protocol = \"plaintext\"\n\
             [postgres]\nurl = \"postgres://u@localhost/db\"\ntls = \"disable\"\n\
             [[topics]]\nname = \"t\"\n\
             [[sinks]]\nname = \"s\"\ntopic = \"t\"\ntable = \"shop\"\nmapper = \"m.wasm\"\n\
             [sinks.tables]\n{lines}\n"
        );
        crate::config::Pipeline::parse(std::path::Path::new("p.toml"), &text)
            .map(|mut p| p.sinks.remove(0))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_file_may_name_the_table_of_a_named_mapper_table() {
        let s = sink_with_tables("items = \"order_items\"").unwrap();
        let t = resolve(&s, &[table(None, None), table(Some("items"), None)]).unwrap();
        let names: Vec<&str> = t.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["shop", "order_items"]);
        // A name the mapper does not declare: located, with the names it has.
        let e = resolve(&s, &[table(None, None), table(Some("lines"), None)]).unwrap_err();
        assert!(
            e.starts_with("p.toml:15:9: sinks.tables.items") && e.contains("\"lines\""),
            "{e}"
        );
        // Bad or clashing names are refused where they stand.
        let e = sink_with_tables("items = \"Order Items\"").unwrap_err();
        assert!(e.starts_with("p.toml:15:9: sinks.tables.items:"), "{e}");
        let e = sink_with_tables("items = \"shop\"").unwrap_err();
        assert!(e.contains("its own name"), "{e}");
        let e = sink_with_tables("a = \"x\"\nb = \"x\"").unwrap_err();
        assert!(e.starts_with("p.toml:16:5: sinks.tables.b"), "{e}");
    }

    #[test]
    fn exactly_one_table_is_unnamed_and_names_are_valid_and_distinct() {
        let e = resolve(&sink(None), &[table(Some("a"), None)]).unwrap_err();
        assert!(e.contains("0 tables without a name"), "{e}");
        let e = resolve(&sink(None), &[table(None, None), table(None, None)]).unwrap_err();
        assert!(e.contains("2 tables without a name"), "{e}");
        let e = resolve(&sink(None), &[table(None, None), table(Some("Items"), None)]).unwrap_err();
        assert!(e.contains("names a table") && e.contains("lowercase"), "{e}");
        let e = resolve(
            &sink(None),
            &[table(None, None), table(Some("a"), None), table(Some("a"), None)],
        )
        .unwrap_err();
        assert!(e.contains("\"shop_a\" twice"), "{e}");
        let long = "x".repeat(60);
        let e = resolve(&sink(None), &[table(None, None), table(Some(&long), None)]).unwrap_err();
        assert!(e.contains("full name") && e.contains("hint: shorten"), "{e}");
    }

    #[test]
    fn upsert_keys_come_from_the_sink_for_its_table_and_from_the_mapper_for_the_others() {
        let t = resolve(
            &sink(Some(&["order_id"])),
            &[table(None, None), table(Some("items"), Some(&["order_id"]))],
        )
        .unwrap();
        assert_eq!(t[0].key, ["order_id"]);
        assert_eq!(t[1].key, ["order_id"]);
        let e = resolve(
            &sink(Some(&["order_id"])),
            &[table(None, None), table(Some("items"), None)],
        )
        .unwrap_err();
        assert!(
            e.contains("pipeline.toml:5:7") && e.contains("\"shop_items\" without a key"),
            "{e}"
        );
        let e = resolve(&sink(Some(&["order_id"])), &[table(None, Some(&["v"]))]).unwrap_err();
        assert!(
            e.contains("sinks.key of sink \"s\" is [order_id]") && e.contains("[v]"),
            "{e}"
        );
        let e = resolve(
            &sink(Some(&["order_id"])),
            &[table(None, None), table(Some("i"), Some(&["v"]))],
        )
        .unwrap_err();
        assert!(e.contains("double precision column"), "{e}");
        let e = resolve(
            &sink(Some(&["order_id"])),
            &[table(None, None), table(Some("i"), Some(&["nope"]))],
        )
        .unwrap_err();
        assert!(e.contains("not one of its columns (order_id, v)"), "{e}");
    }
}
