//! `[[sinks]]`: the topic and table of each sink, its consumer group, its
//! `[sinks.tables]`, and its `mode` and `key`.

use super::bounds::{BATCH_SIZE, FLUSH_INTERVAL_MS};
use super::plugins::{RawLimits, plugin_config};
use super::{
    ConfigError, DEFAULT_BATCH_SIZE, DEFAULT_FLUSH_INTERVAL_MS, MAX_PG_IDENT_LEN, MAX_TOPIC_LEN, PluginConfig,
    PluginLimits, Source, StartAt, TableName, TopicName, check_name, registry,
};
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use toml::Spanned;

#[derive(Debug, Clone, PartialEq)]
pub struct SinkConfig {
    pub name: String,
    pub topic: TopicName,
    pub table: TableName,
    pub group: String,
    /// Kafka static membership (`group.instance.id`): a restarted host takes
    /// its partitions back at once instead of waiting for the session to expire.
    /// Distinct per process: `<group>-<process name>` (see `member`).
    pub instance_id: String,
    pub mapper: PluginConfig,
    pub batch_size: usize,
    pub flush_interval: Duration,
    /// How rows reach the table: appended, or upserted on a key.
    pub mode: SinkMode,
    /// What the sink does when Kafka no longer holds its stored offset.
    pub on_lost_offsets: OnLostOffsets,
    /// Where a partition with nothing stored starts.
    pub start: StartAt,
    /// `format`, `key_format` and `columns = "from_registry"`.
    pub registry: registry::SinkRegistry,
    /// `[sinks.tables]`: the PostgreSQL table of each table the mapper
    /// names (contract 0.3.0), instead of `<table>_<name>`.
    pub tables: TableNames,
}

/// The tables a sink's file names for its mapper's named tables.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TableNames {
    /// The mapper's table name -> the table in PostgreSQL.
    pub names: std::collections::BTreeMap<String, TableName>,
    /// `file:line:column` of each entry, for errors found when the mapper
    /// is loaded.
    pub at: std::collections::BTreeMap<String, String>,
}

/// What a sink does when the offset stored in PostgreSQL is not in Kafka's
/// log any more (`on_lost_offsets` of a `[[sinks]]` entry): past its end (a
/// topic created again, an unclean leader election) or before its start
/// (retention deleted messages that were never stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnLostOffsets {
    /// Stop, naming the partitions and the statement to run (the default).
    #[default]
    Stop,
    /// Go on, skipping what cannot be stored, and count it.
    Skip,
}

/// How a sink writes rows (`mode` and `key` of a `[[sinks]]` entry).
#[derive(Debug, Clone, Eq, Default)]
pub enum SinkMode {
    /// Every row is a new row (the default).
    #[default]
    Append,
    /// A row replaces the one with the same key; a delete removes it.
    Upsert {
        /// The key columns, in the order the file gives them (the order of a
        /// mapper's delete values).
        key: Vec<String>,
        /// `file:line:column` of the `key` setting, for errors found when
        /// the mapper is loaded.
        at: String,
    },
}

// Where `key` stands in the file is not part of the mode: an edit above it
// must not look like a change of mode.
impl PartialEq for SinkMode {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key() && matches!(self, SinkMode::Upsert { .. }) == matches!(other, SinkMode::Upsert { .. })
    }
}

impl SinkMode {
    /// The key columns; empty in append mode.
    pub fn key(&self) -> &[String] {
        match self {
            SinkMode::Append => &[],
            SinkMode::Upsert { key, .. } => key,
        }
    }

    /// `file:line:column` of the `key` setting; `None` in append mode.
    pub fn at(&self) -> Option<&str> {
        match self {
            SinkMode::Append => None,
            SinkMode::Upsert { at, .. } => Some(at),
        }
    }

    /// Checks that every key column is one the mapper declares.
    pub fn check_columns(&self, sink: &str, columns: &[crate::contract::mapper::Column]) -> Result<(), String> {
        let SinkMode::Upsert { key, at } = self else {
            return Ok(());
        };
        use crate::contract::mapper::ColumnType;
        let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        // The staging table has a column of the host's own by that name.
        let flag = super::names::DELETE_COLUMN;
        if names.contains(&flag) {
            return Err(format!(
                "{at}: sink {sink:?} upserts through a staging table with a column {flag:?} of its own, and its mapper declares a column of that name\n  hint: rename the mapper's column"
            ));
        }
        for k in key {
            let Some(column) = columns.iter().find(|c| &c.name == k) else {
                return Err(format!(
                    "{at}: sinks.key {k:?} of sink {sink:?} is not a column of its mapper (columns: {})\n  hint: name columns the mapper declares in key, or change the mapper's settings so it declares {k:?}",
                    names.join(", ")
                ));
            };
            // Equal values must look equal to the host, which keeps one
            // operation per key and batch: PostgreSQL's equality of these
            // types is coarser than their text (1.0 = 1, key order in JSON).
            let refused = match column.kind {
                ColumnType::Json => "jsonb",
                ColumnType::Float => "double precision",
                ColumnType::Numeric => "numeric",
                _ => continue,
            };
            return Err(format!(
                "{at}: sinks.key {k:?} of sink {sink:?} is a {refused} column, which cannot be a key\n  hint: key on text, integer, uuid, date, timestamp, boolean or bytea columns; have the mapper write this value as text if it identifies the row"
            ));
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSink {
    name: Spanned<String>,
    topic: Spanned<String>,
    table: Spanned<String>,
    mapper: Spanned<String>,
    group: Option<Spanned<String>>,
    instance_id: Option<Spanned<String>>,
    batch_size: Option<Spanned<usize>>,
    flush_interval_ms: Option<Spanned<u64>>,
    mode: Option<Spanned<String>>,
    key: Option<Spanned<Vec<Spanned<String>>>>,
    on_lost_offsets: Option<Spanned<String>>,
    start: Option<Spanned<String>>,
    format: Option<Spanned<String>>,
    key_format: Option<Spanned<String>>,
    subject: Option<Spanned<String>>,
    #[serde(default)]
    tables: std::collections::BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    settings: toml::Table,
    #[serde(default)]
    limits: RawLimits,
}

/// Two sinks in one consumer group would split the topic's partitions
/// between their tables (each table silently missing the rest), or, with the
/// same member id, fence each other.
fn shared_group_message(group: &str, sink: &str, other: &str, other_at: &str) -> String {
    format!(
        "sinks.group {group:?} of sink {sink:?} is also the group of sink {other:?} ({other_at}); Kafka would give each sink only part of the topic's partitions, so each table would miss the messages of the other's\n  hint: give each sink its own group, or leave group out (the default, \"wasm-stream-<table>\", differs per table)"
    )
}

/// `mode` and `key` of a sink: `key` is required for upsert and refused for
/// append, each name a valid column name, none twice.
fn check_mode(
    src: &Source<'_>,
    name: &Spanned<String>,
    mode: Option<&Spanned<String>>,
    key: Option<&Spanned<Vec<Spanned<String>>>>,
) -> Result<SinkMode, ConfigError> {
    let upsert = match mode.map(|m| m.get_ref().as_str()) {
        None | Some("append") => false,
        Some("upsert") => true,
        Some(other) => {
            let span = mode.map_or(0..0, Spanned::span);
            return Err(src.error(
                span,
                format!("sinks.mode {other:?} is not a mode; use \"append\" (the default: every message adds rows) or \"upsert\" (rows replace those with the same key; needs key = [\"column\", ...])"),
            ));
        }
    };
    match (upsert, key) {
        (false, None) => Ok(SinkMode::Append),
        (false, Some(k)) => Err(src.error(
            k.span(),
            format!(
                "sinks.key is set but sink {:?} appends; add mode = \"upsert\" to write rows by key, or remove key",
                name.get_ref()
            ),
        )),
        (true, None) => Err(src.error(
            mode.map_or(0..0, Spanned::span),
            format!(
                "sink {:?} has mode = \"upsert\" but no key; add key = [\"column\", ...] naming the columns that identify a row",
                name.get_ref()
            ),
        )),
        (true, Some(k)) => {
            if k.get_ref().is_empty() {
                return Err(src.error(
                    k.span(),
                    "sinks.key is empty; name at least one column, e.g. key = [\"id\"]",
                ));
            }
            let mut names: Vec<String> = Vec::new();
            for column in k.get_ref() {
                check_name(column.get_ref(), MAX_PG_IDENT_LEN, false)
                    .map_err(|m| src.error(column.span(), format!("sinks.key: {m}")))?;
                if names.contains(column.get_ref()) {
                    return Err(src.error(
                        column.span(),
                        format!("sinks.key names {:?} twice; name each column once", column.get_ref()),
                    ));
                }
                names.push(column.get_ref().clone());
            }
            Ok(SinkMode::Upsert {
                key: names,
                at: src.location(k.span()),
            })
        }
    }
}

/// `[[sinks]]`, in the file's order: `unique` takes each name, `known_topic`
/// finds its topic; no two sinks share a table or a consumer group.
pub(super) fn check_sinks(
    src: &Source<'_>,
    raw: Vec<RawSink>,
    unique: &mut impl FnMut(&Spanned<String>, &str) -> Result<String, ConfigError>,
    known_topic: &impl Fn(&Spanned<String>, &str) -> Result<TopicName, ConfigError>,
    defaults: PluginLimits,
    has_registry: bool,
) -> Result<Vec<SinkConfig>, ConfigError> {
    let mut sinks = Vec::new();
    let mut tables = HashSet::new();
    // Group -> (sink, where its group comes from), to refuse a shared group.
    let mut groups: HashMap<String, (String, std::ops::Range<usize>)> = HashMap::new();
    for s in raw {
        let name = unique(&s.name, "sinks")?;
        let topic = known_topic(&s.topic, "sinks")?;
        let table = TableName::new(s.table.get_ref().as_str())
            .map_err(|m| src.error(s.table.span(), format!("sinks.table: {m}")))?;
        if !tables.insert(table.clone()) {
            return Err(src.error(
                s.table.span(),
                format!(
                    "sinks.table {:?} is written by two sinks; give each sink its own table",
                    s.table.get_ref()
                ),
            ));
        }
        let group = match &s.group {
            Some(g) => {
                check_name(g.get_ref(), MAX_TOPIC_LEN, true)
                    .map_err(|m| src.error(g.span(), format!("sinks.group: {m}")))?;
                g.get_ref().clone()
            }
            // Offsets are kept per table, so the group follows the table too.
            None => format!("wasm-stream-{}", s.table.get_ref()),
        };
        let group_span = s.group.as_ref().map_or_else(|| s.name.span(), Spanned::span);
        if let Some((other, span)) = groups.get(&group) {
            return Err(src.error(
                group_span,
                shared_group_message(&group, s.name.get_ref(), other, &src.location(span.clone())),
            ));
        }
        groups.insert(group.clone(), (s.name.get_ref().clone(), group_span));
        let instance_id = match &s.instance_id {
            Some(id) if id.get_ref().trim().is_empty() => {
                return Err(src.error(
                    id.span(),
                    "sinks.instance_id is empty; leave it out for the default <group>-<hostname>",
                ));
            }
            // `--instance-id` names this one process: it wins over the file.
            Some(_) if crate::member::explicit() => format!("{group}-{}", crate::member::name()),
            Some(id) => id.get_ref().clone(),
            None => format!("{group}-{}", crate::member::name()),
        };
        let batch_size = BATCH_SIZE.or(src, "sinks.batch_size", s.batch_size.as_ref(), DEFAULT_BATCH_SIZE)?;
        let flush_interval_ms = FLUSH_INTERVAL_MS.or(
            src,
            "sinks.flush_interval_ms",
            s.flush_interval_ms.as_ref(),
            DEFAULT_FLUSH_INTERVAL_MS,
        )?;
        let raw_registry = registry::RawSinkRegistry {
            format: &s.format,
            key_format: &s.key_format,
            subject: &s.subject,
        };
        let registry = registry::check_sink(
            src,
            &raw_registry,
            s.topic.get_ref(),
            &s.settings,
            s.mapper.span(),
            has_registry,
        )?;
        let mapper = plugin_config(src, &s.mapper, &s.settings, s.limits.over(src, "sinks", defaults)?)?;
        let mode = check_mode(src, &s.name, s.mode.as_ref(), s.key.as_ref())?;
        let on_lost_offsets = match s.on_lost_offsets.as_ref().map(|v| (v.get_ref().as_str(), v.span())) {
            None | Some(("stop", _)) => OnLostOffsets::Stop,
            Some(("skip", _)) => OnLostOffsets::Skip,
            Some((other, span)) => {
                return Err(src.error(
                    span,
                    format!("sinks.on_lost_offsets {other:?} is not a choice; use \"stop\" (the default: the sink stops and names the statement to run) or \"skip\" (it goes on past the messages Kafka no longer holds, and counts them)"),
                ));
            }
        };
        let start = match &s.start {
            None => StartAt::Earliest,
            Some(v) => StartAt::parse(v.get_ref()).map_err(|m| src.error(v.span(), m))?,
        };
        let mut names = TableNames::default();
        for (mapper_name, pg) in &s.tables {
            let located = |m: String| src.error(pg.span(), format!("sinks.tables.{mapper_name}: {m}"));
            check_name(mapper_name, MAX_PG_IDENT_LEN, false)
                .map_err(|m| located(format!("the mapper's table name {m}")))?;
            let pg_table = TableName::new(pg.get_ref().as_str()).map_err(|m| located(m.to_string()))?;
            // `tables` holds every sink's table and the names given so far.
            if !tables.insert(pg_table.clone()) {
                return Err(located(format!(
                    "table {:?} is written by the sink's other table or another sink; give each table its own name",
                    pg.get_ref()
                )));
            }
            names.at.insert(mapper_name.clone(), src.location(pg.span()));
            names.names.insert(mapper_name.clone(), pg_table);
        }
        sinks.push(SinkConfig {
            name,
            topic,
            table,
            group,
            instance_id,
            mapper,
            batch_size,
            flush_interval: Duration::from_millis(flush_interval_ms),
            mode,
            on_lost_offsets,
            start,
            registry,
            tables: names,
        });
    }
    Ok(sinks)
}

#[cfg(test)]
mod mode_tests {
    use super::*;
    use crate::config::Pipeline;
    use std::path::Path;

    fn parse(sink: &str) -> Result<Pipeline, String> {
        let text = format!(
            "[kafka]\nbootstrap_servers = \"localhost:9092\"\nsecurity_protocol = \"plaintext\"\n\
             [postgres]\nurl = \"postgres://u@localhost/db\"\ntls = \"disable\"\n\
             [[topics]]\nname = \"t\"\n\
             [[sinks]]\nname = \"s\"\ntopic = \"t\"\ntable = \"rows\"\nmapper = \"m.wasm\"\n{sink}"
        );
        Pipeline::parse(Path::new("p.toml"), &text).map_err(|e| e.to_string())
    }

    fn column(name: &str) -> crate::contract::mapper::Column {
        crate::contract::mapper::Column {
            name: name.into(),
            kind: crate::contract::mapper::ColumnType::Text,
            nullable: false,
        }
    }

    #[test]
    fn a_sink_appends_by_default() {
        let p = parse("").unwrap();
        assert_eq!(p.sinks[0].mode, SinkMode::Append);
        assert_eq!(parse("mode = \"append\"").unwrap().sinks[0].mode, SinkMode::Append);
    }

    #[test]
    fn start_is_earliest_by_default_and_a_wrong_choice_is_located() {
        assert_eq!(parse("").unwrap().sinks[0].start, StartAt::Earliest);
        assert_eq!(parse("start = \"latest\"").unwrap().sinks[0].start, StartAt::Latest);
        assert_eq!(
            parse("start = \"1970-01-01T00:00:02Z\"").unwrap().sinks[0].start,
            StartAt::Time(2000)
        );
        let e = parse("start = \"yesterday\"").unwrap_err();
        assert!(
            e.starts_with("p.toml:14:9: ") && e.contains("sinks.start") && e.contains("RFC 3339"),
            "{e}"
        );
    }

    #[test]
    fn on_lost_offsets_stops_by_default_and_a_wrong_choice_is_located() {
        assert_eq!(parse("").unwrap().sinks[0].on_lost_offsets, OnLostOffsets::Stop);
        assert_eq!(
            parse("on_lost_offsets = \"skip\"").unwrap().sinks[0].on_lost_offsets,
            OnLostOffsets::Skip
        );
        let e = parse("on_lost_offsets = \"earliest\"").unwrap_err();
        assert!(
            e.starts_with("p.toml:14:19: ") && e.contains("\"stop\"") && e.contains("\"skip\""),
            "{e}"
        );
    }

    #[test]
    fn upsert_takes_its_key_in_order_and_locates_it() {
        let p = parse("mode = \"upsert\"\nkey = [\"b\", \"a\"]").unwrap();
        assert_eq!(p.sinks[0].mode.key(), ["b", "a"]);
        let SinkMode::Upsert { at, .. } = &p.sinks[0].mode else {
            panic!("not upsert")
        };
        assert_eq!(at, "p.toml:15:7");
    }

    #[test]
    fn mode_and_key_errors_name_the_line_and_the_fix() {
        let e = parse("mode = \"upsert\"").unwrap_err();
        assert!(e.starts_with("p.toml:14:8: ") && e.contains("key = [\"column\""), "{e}");
        let e = parse("key = [\"id\"]").unwrap_err();
        assert!(
            e.starts_with("p.toml:14:7: ") && e.contains("add mode = \"upsert\""),
            "{e}"
        );
        let e = parse("mode = \"merge\"").unwrap_err();
        assert!(e.contains("\"append\"") && e.contains("\"upsert\""), "{e}");
        let e = parse("mode = \"upsert\"\nkey = []").unwrap_err();
        assert!(e.contains("sinks.key is empty"), "{e}");
        let e = parse("mode = \"upsert\"\nkey = [\"id\", \"id\"]").unwrap_err();
        assert!(e.starts_with("p.toml:15:14: ") && e.contains("twice"), "{e}");
        let e = parse("mode = \"upsert\"\nkey = [\"Id\"]").unwrap_err();
        assert!(e.contains("sinks.key") && e.contains("\"id\""), "{e}");
    }

    #[test]
    fn a_key_the_mapper_does_not_declare_is_refused_with_its_location() {
        let p = parse("mode = \"upsert\"\nkey = [\"id\"]").unwrap();
        let mode = &p.sinks[0].mode;
        assert!(mode.check_columns("s", &[column("id"), column("v")]).is_ok());
        let e = mode.check_columns("s", &[column("v")]).unwrap_err();
        assert!(e.starts_with("p.toml:15:7: sinks.key \"id\" of sink \"s\""), "{e}");
        assert!(e.contains("columns: v") && e.contains("hint:"), "{e}");
        assert!(SinkMode::Append.check_columns("s", &[]).is_ok());
        let json = crate::contract::mapper::Column {
            kind: crate::contract::mapper::ColumnType::Json,
            ..column("id")
        };
        let e = mode.check_columns("s", &[json]).unwrap_err();
        assert!(e.contains("is a jsonb column, which cannot be a key"), "{e}");
        let e = mode
            .check_columns("s", &[column("id"), column("wasm_stream_delete")])
            .unwrap_err();
        assert!(
            e.starts_with("p.toml:15:7: sink \"s\" upserts") && e.contains("rename"),
            "{e}"
        );
    }

    #[test]
    fn moving_the_key_in_the_file_is_not_a_change_of_mode() {
        let a = SinkMode::Upsert {
            key: vec!["id".into()],
            at: "p.toml:1:1".into(),
        };
        let b = SinkMode::Upsert {
            key: vec!["id".into()],
            at: "p.toml:9:1".into(),
        };
        assert_eq!(a, b);
        assert_ne!(a, SinkMode::Append);
    }
}
