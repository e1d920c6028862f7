//! Plugins built against an older version of the contract: their bindings,
//! and the conversions between their types and the current ones. Each
//! version's types are a subset of the next one's, so results convert
//! without loss and calls carry nothing an old plugin cannot take. 0.2.0's
//! are in `compat_v0_2`.

use crate::plugins::mapper::{Outcome, TableRows, Value};

/// An older mapper's rows: rows of table 0 (none when there are no rows).
pub fn first_table_rows(rows: Vec<Vec<Value>>) -> Outcome {
    if rows.is_empty() {
        return Outcome::Rows(Vec::new());
    }
    Outcome::Rows(vec![TableRows { table: 0, rows }])
}

/// Version 0.1.0 (`wit/v0.1.0/plugin.wit`): the current contract without the
/// `uuid`, `numeric`, `bytea` and `date` types and the `delete` outcome.
pub mod v0_1 {
    use crate::plugins as cur;

    pub mod generator_bindings {
        wasmtime::component::bindgen!({ path: "../wit/v0.1.0", world: "generator-plugin" });
    }
    pub mod mapper_bindings {
        wasmtime::component::bindgen!({ path: "../wit/v0.1.0", world: "mapper-plugin" });
    }
    pub mod check_bindings {
        wasmtime::component::bindgen!({ path: "../wit/v0.1.0", world: "check-plugin" });
    }

    pub mod generator {
        pub use super::generator_bindings::exports::wasm_stream::plugin::generator::Message;
        pub use super::generator_bindings::{GeneratorPlugin, GeneratorPluginPre};
    }
    pub mod mapper {
        pub use super::mapper_bindings::exports::wasm_stream::plugin::mapper::{Message, Outcome};
        pub use super::mapper_bindings::wasm_stream::plugin::types::{Column, ColumnType, Value};
        pub use super::mapper_bindings::{MapperPlugin, MapperPluginPre};
    }
    pub mod check {
        pub use super::check_bindings::exports::wasm_stream::plugin::check::{
            Finding, PartitionState, Severity, Snapshot,
        };
        pub use super::check_bindings::{CheckPlugin, CheckPluginPre};
    }

    /// A consumed message, for an old mapper (the record did not change).
    pub fn message(m: &cur::mapper::Message) -> mapper::Message {
        mapper::Message {
            topic: m.topic.clone(),
            partition: m.partition,
            offset: m.offset,
            timestamp: m.timestamp,
            key: m.key.clone(),
            payload: m.payload.clone(),
        }
    }

    /// The pipeline's state, for an old check (the record did not change).
    pub fn snapshot(s: &cur::check::Snapshot) -> check::Snapshot {
        check::Snapshot {
            taken_at: s.taken_at,
            partitions: s
                .partitions
                .iter()
                .map(|p| check::PartitionState {
                    sink: p.sink.clone(),
                    topic: p.topic.clone(),
                    partition: p.partition,
                    table: p.table.clone(),
                    consumer_group: p.consumer_group.clone(),
                    end_offset: p.end_offset,
                    committed_offset: p.committed_offset,
                    stored_offset: p.stored_offset,
                    dead_letters: p.dead_letters,
                })
                .collect(),
        }
    }

    impl From<generator::Message> for cur::generator::Message {
        fn from(m: generator::Message) -> Self {
            Self {
                key: m.key,
                payload: m.payload,
            }
        }
    }

    impl From<mapper::ColumnType> for cur::mapper::ColumnType {
        fn from(t: mapper::ColumnType) -> Self {
            use mapper::ColumnType as Old;
            match t {
                Old::Text => Self::Text,
                Old::Integer => Self::Integer,
                Old::Float => Self::Float,
                Old::Boolean => Self::Boolean,
                Old::Timestamp => Self::Timestamp,
                Old::Json => Self::Json,
            }
        }
    }

    impl From<mapper::Column> for cur::mapper::Column {
        fn from(c: mapper::Column) -> Self {
            Self {
                name: c.name,
                kind: c.kind.into(),
                nullable: c.nullable,
            }
        }
    }

    impl From<mapper::Value> for cur::mapper::Value {
        fn from(v: mapper::Value) -> Self {
            use mapper::Value as Old;
            match v {
                Old::Null => Self::Null,
                Old::Text(s) => Self::Text(s),
                Old::Integer(i) => Self::Integer(i),
                Old::Float(f) => Self::Float(f),
                Old::Boolean(b) => Self::Boolean(b),
                Old::Timestamp(us) => Self::Timestamp(us),
                Old::Json(s) => Self::Json(s),
            }
        }
    }

    impl From<mapper::Outcome> for cur::mapper::Outcome {
        fn from(o: mapper::Outcome) -> Self {
            use mapper::Outcome as Old;
            match o {
                Old::Rows(rows) => super::first_table_rows(
                    rows.into_iter()
                        .map(|row| row.into_iter().map(Into::into).collect())
                        .collect(),
                ),
                Old::Rejected(reason) => Self::Rejected(reason),
            }
        }
    }

    impl From<check::Severity> for cur::check::Severity {
        fn from(s: check::Severity) -> Self {
            use check::Severity as Old;
            match s {
                Old::Info => Self::Info,
                Old::Warning => Self::Warning,
                Old::Error => Self::Error,
            }
        }
    }

    impl From<check::Finding> for cur::check::Finding {
        fn from(f: check::Finding) -> Self {
            Self {
                severity: f.severity.into(),
                subject: f.subject,
                message: f.message,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::v0_1;
    use crate::plugins::{check, generator, mapper};

    #[test]
    fn old_columns_and_values_convert_to_the_same_current_ones() {
        let old = v0_1::mapper::Column {
            name: "doc".into(),
            kind: v0_1::mapper::ColumnType::Json,
            nullable: true,
        };
        assert_eq!(
            mapper::Column::from(old),
            mapper::Column {
                name: "doc".into(),
                kind: mapper::ColumnType::Json,
                nullable: true
            }
        );
        use v0_1::mapper::ColumnType as Old;
        let kinds: Vec<mapper::ColumnType> = [Old::Text, Old::Integer, Old::Float, Old::Boolean, Old::Timestamp]
            .into_iter()
            .map(Into::into)
            .collect();
        use mapper::ColumnType as New;
        assert_eq!(
            kinds,
            [New::Text, New::Integer, New::Float, New::Boolean, New::Timestamp]
        );

        let old = v0_1::mapper::Outcome::Rows(vec![vec![
            v0_1::mapper::Value::Null,
            v0_1::mapper::Value::Text("t".into()),
            v0_1::mapper::Value::Integer(-7),
            v0_1::mapper::Value::Float(1.5),
            v0_1::mapper::Value::Boolean(true),
            v0_1::mapper::Value::Timestamp(1_700_000_000_000_000),
            v0_1::mapper::Value::Json("{}".into()),
        ]]);
        assert_eq!(
            mapper::Outcome::from(old),
            mapper::Outcome::Rows(vec![mapper::TableRows {
                table: 0,
                rows: vec![vec![
                    mapper::Value::Null,
                    mapper::Value::Text("t".into()),
                    mapper::Value::Integer(-7),
                    mapper::Value::Float(1.5),
                    mapper::Value::Boolean(true),
                    mapper::Value::Timestamp(1_700_000_000_000_000),
                    mapper::Value::Json("{}".into()),
                ]]
            }])
        );
        assert_eq!(
            mapper::Outcome::from(v0_1::mapper::Outcome::Rejected("no".into())),
            mapper::Outcome::Rejected("no".into())
        );
    }

    #[test]
    fn messages_snapshots_and_findings_cross_unchanged() {
        let m = mapper::Message {
            topic: "t".into(),
            partition: 3,
            offset: 9,
            timestamp: Some(5),
            key: Some(b"k".to_vec()),
            payload: None,
            schema: None,
        };
        let old = v0_1::message(&m);
        assert_eq!(
            (
                old.topic,
                old.partition,
                old.offset,
                old.timestamp,
                old.key,
                old.payload
            ),
            (m.topic, m.partition, m.offset, m.timestamp, m.key, m.payload)
        );

        let g = generator::Message::from(v0_1::generator::Message {
            key: None,
            payload: b"p".to_vec(),
        });
        assert_eq!((g.key, g.payload), (None, b"p".to_vec()));

        let s = check::Snapshot {
            taken_at: 1,
            partitions: vec![check::PartitionState {
                sink: "s".into(),
                topic: "t".into(),
                partition: 2,
                table: "x".into(),
                consumer_group: "g".into(),
                end_offset: Some(10),
                committed_offset: None,
                stored_offset: Some(8),
                dead_letters: 1,
            }],
        };
        let old = v0_1::snapshot(&s);
        let p = &old.partitions[0];
        assert_eq!(old.taken_at, 1);
        assert_eq!(
            (
                p.sink.as_str(),
                p.topic.as_str(),
                p.partition,
                p.table.as_str(),
                p.consumer_group.as_str()
            ),
            ("s", "t", 2, "x", "g")
        );
        assert_eq!(
            (p.end_offset, p.committed_offset, p.stored_offset, p.dead_letters),
            (Some(10), None, Some(8), 1)
        );

        let f = check::Finding::from(v0_1::check::Finding {
            severity: v0_1::check::Severity::Warning,
            subject: "a".into(),
            message: "b".into(),
        });
        assert!(matches!(f.severity, check::Severity::Warning));
        assert_eq!((f.subject.as_str(), f.message.as_str()), ("a", "b"));
    }
}
