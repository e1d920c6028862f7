//! Plugins built against version 0.2.0 of the contract
//! (`wit/v0.2.0/plugin.wit`): their bindings and the conversions to the
//! current types. A 0.2.0 mapper writes one table: its rows and deletes
//! become those of table 0, the unnamed table (the sink's `table`).

/// Version 0.2.0: the current contract with one table per mapper and no
/// `schema` in messages.
pub mod v0_2 {
    use crate::plugins as cur;

    pub mod generator_bindings {
        wasmtime::component::bindgen!({ path: "../wit/v0.2.0", world: "generator-plugin" });
    }
    pub mod mapper_bindings {
        wasmtime::component::bindgen!({ path: "../wit/v0.2.0", world: "mapper-plugin" });
    }
    pub mod check_bindings {
        wasmtime::component::bindgen!({ path: "../wit/v0.2.0", world: "check-plugin" });
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

    /// A consumed message, for a 0.2.0 mapper (without `schema`).
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

    /// The pipeline's state, for a 0.2.0 check (the record did not change).
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
                Old::Uuid => Self::Uuid,
                Old::Numeric => Self::Numeric,
                Old::Bytea => Self::Bytea,
                Old::Date => Self::Date,
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
                Old::Uuid(s) => Self::Uuid(s),
                Old::Numeric(s) => Self::Numeric(s),
                Old::Bytea(b) => Self::Bytea(b),
                Old::Date(d) => Self::Date(d),
            }
        }
    }

    impl From<mapper::Outcome> for cur::mapper::Outcome {
        fn from(o: mapper::Outcome) -> Self {
            use mapper::Outcome as Old;
            match o {
                Old::Rows(rows) => cur::compat::first_table_rows(
                    rows.into_iter()
                        .map(|row| row.into_iter().map(Into::into).collect())
                        .collect(),
                ),
                Old::Rejected(reason) => Self::Rejected(reason),
                Old::Delete(key) => Self::Delete(vec![cur::mapper::TableKey {
                    table: 0,
                    key: key.into_iter().map(Into::into).collect(),
                }]),
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
    use super::v0_2;
    use crate::plugins::mapper;

    #[test]
    fn a_0_2_outcome_becomes_the_same_rows_and_deletes_of_table_0() {
        let old = v0_2::mapper::Outcome::Rows(vec![vec![
            v0_2::mapper::Value::Uuid("u".into()),
            v0_2::mapper::Value::Numeric("1.5".into()),
            v0_2::mapper::Value::Bytea(vec![1]),
            v0_2::mapper::Value::Date(3),
        ]]);
        assert_eq!(
            mapper::Outcome::from(old),
            mapper::Outcome::Rows(vec![mapper::TableRows {
                table: 0,
                rows: vec![vec![
                    mapper::Value::Uuid("u".into()),
                    mapper::Value::Numeric("1.5".into()),
                    mapper::Value::Bytea(vec![1]),
                    mapper::Value::Date(3),
                ]]
            }])
        );
        assert_eq!(
            mapper::Outcome::from(v0_2::mapper::Outcome::Rows(Vec::new())),
            mapper::Outcome::Rows(Vec::new()),
            "no rows: no table"
        );
        assert_eq!(
            mapper::Outcome::from(v0_2::mapper::Outcome::Delete(vec![v0_2::mapper::Value::Integer(7)])),
            mapper::Outcome::Delete(vec![mapper::TableKey {
                table: 0,
                key: vec![mapper::Value::Integer(7)]
            }])
        );
    }
}
