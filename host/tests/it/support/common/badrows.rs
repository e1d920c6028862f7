//! Rows PostgreSQL refuses for their data: tables with the user's own rules
//! (NOT NULL, CHECK, `numeric(5,2)`, `varchar(5)`, a trigger, a unique index,
//! a foreign key), messages for the json-columns mapper with a few culprits
//! among them, and what the tables must hold afterwards.

use super::{Db, SinkPipeline, unique};
use std::collections::{BTreeMap, BTreeSet};

/// One of the table's rules and a message that breaks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    NotNull,
    Check,
    NumericOverflow,
    VarcharTooLong,
    Trigger,
    Unique,
    ForeignKey,
    /// A row whose write always hits `statement_timeout`. PostgreSQL reports
    /// it as SQLSTATE 57014; the sink's 60 s timeout would make each attempt
    /// take a minute, so a trigger raises that SQLSTATE for the row instead.
    Timeout,
}

pub const RULES: [Rule; 8] = [
    Rule::NotNull,
    Rule::Check,
    Rule::NumericOverflow,
    Rule::VarcharTooLong,
    Rule::Trigger,
    Rule::Unique,
    Rule::ForeignKey,
    Rule::Timeout,
];

/// The mapper's columns: looser than every table below.
pub const SETTINGS: &str = r#"[sinks.settings]
columns = [
  { name = "id", type = "integer" },
  { name = "seq", type = "integer" },
  { name = "v", type = "text", nullable = true },
  { name = "price", type = "numeric", nullable = true },
  { name = "code", type = "text", nullable = true },
  { name = "parent", type = "integer", nullable = true },
]"#;

impl Rule {
    /// The column definitions of a table with this rule (and the objects it needs).
    pub fn create(self, db: &Db, table: &str, keyed: bool) {
        let parent = format!("{table}_parent");
        let (v, price, code, fk) = match self {
            Rule::NotNull => ("text NOT NULL", "numeric", "text", String::new()),
            Rule::Check => (
                "text",
                "numeric CONSTRAINT price_not_negative CHECK (price >= 0)",
                "text",
                String::new(),
            ),
            Rule::NumericOverflow => ("text", "numeric(5,2)", "text", String::new()),
            Rule::VarcharTooLong => ("varchar(5)", "numeric", "text", String::new()),
            Rule::Trigger | Rule::Unique | Rule::Timeout => ("text", "numeric", "text", String::new()),
            Rule::ForeignKey => ("text", "numeric", "text", format!(" REFERENCES \"{parent}\" (id)")),
        };
        if self == Rule::ForeignKey {
            db.execute(&format!(
                "CREATE TABLE \"{parent}\" (id bigint PRIMARY KEY); INSERT INTO \"{parent}\" VALUES (1)"
            ));
        }
        let (message_id, key) = if keyed {
            ("message_id bigserial NOT NULL", ", PRIMARY KEY (id)")
        } else {
            ("message_id bigserial PRIMARY KEY", "")
        };
        db.execute(&format!(
            "CREATE TABLE \"{table}\" ({message_id}, id bigint NOT NULL, seq bigint NOT NULL, v {v}, price {price}, code {code}, parent bigint{fk}{key})"
        ));
        match self {
            Rule::Unique => db.execute(&format!("CREATE UNIQUE INDEX ON \"{table}\" (code)")),
            Rule::Trigger => db.execute(&format!(
                "CREATE FUNCTION \"{table}_guard\"() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN IF NEW.v = 'boom' THEN RAISE EXCEPTION 'value % refused by the guard trigger', NEW.v; END IF; RETURN NEW; END $$;
                 CREATE TRIGGER guard BEFORE INSERT OR UPDATE ON \"{table}\" FOR EACH ROW EXECUTE FUNCTION \"{table}_guard\"()"
            )),
            Rule::Timeout => db.execute(&format!(
                "CREATE FUNCTION \"{table}_slow\"() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN IF NEW.v = 'slow' THEN RAISE EXCEPTION 'canceling statement due to statement timeout' USING ERRCODE = 'query_canceled'; END IF; RETURN NEW; END $$;
                 CREATE TRIGGER slow BEFORE INSERT OR UPDATE ON \"{table}\" FOR EACH ROW EXECUTE FUNCTION \"{table}_slow\"()"
            )),
            _ => {}
        }
    }

    /// The payload of message `seq` with key `id`; a culprit breaks the rule.
    /// `code` is unique per key; a unique culprit takes the code of `clash`,
    /// a key already stored.
    pub fn payload(self, id: i64, seq: i64, culprit: bool, clash: i64) -> String {
        let (mut v, mut price, mut code, mut parent) = (
            "\"ok\"".to_string(),
            "\"1.50\"".to_string(),
            format!("\"c{id}\""),
            "1".to_string(),
        );
        if culprit {
            match self {
                Rule::NotNull => v = "null".into(),
                Rule::Check => price = "\"-1\"".into(),
                Rule::NumericOverflow => price = "\"12345.678\"".into(),
                Rule::VarcharTooLong => v = "\"much too long\"".into(),
                Rule::Trigger => v = "\"boom\"".into(),
                Rule::Timeout => v = "\"slow\"".into(),
                Rule::Unique => code = format!("\"c{clash}\""),
                Rule::ForeignKey => parent = "999".into(),
            }
        }
        format!(r#"{{"id": {id}, "seq": {seq}, "v": {v}, "price": {price}, "code": {code}, "parent": {parent}}}"#)
    }

    /// What PostgreSQL's reason for a culprit says.
    pub fn reason(self) -> &'static str {
        match self {
            Rule::NotNull => "violates not-null constraint",
            Rule::Check => "price_not_negative",
            Rule::NumericOverflow => "numeric field overflow",
            Rule::VarcharTooLong => "value too long for type character varying(5)",
            Rule::Trigger => "refused by the guard trigger",
            Rule::Timeout => "statement timeout",
            Rule::Unique => "duplicate key value violates unique constraint",
            Rule::ForeignKey => "violates foreign key constraint",
        }
    }
}

/// A topic of `count` messages for `rule`, with `culprits` among them at
/// random offsets (never the first `keys` ones, so a unique culprit's clash
/// is stored before it): the messages' (id, seq, culprit) in offset order.
/// Keyed: ids repeat every `keys` messages, so later messages update rows.
pub struct Plan {
    pub rule: Rule,
    pub keyed: bool,
    pub topic: String,
    pub table: String,
    pub messages: Vec<(i64, i64, bool)>,
}

impl Plan {
    pub fn new(rule: Rule, keyed: bool, count: i64, culprits: usize, keys: i64, random: &mut super::Random) -> Self {
        let name = format!(
            "bad_{}_{}",
            format!("{rule:?}").to_lowercase(),
            if keyed { "upsert" } else { "append" }
        );
        let mut bad = BTreeSet::new();
        while bad.len() < culprits {
            let seq = keys + random.below((count - keys) as u64) as i64;
            // Not next to another: a unique culprit clashes with the message before it.
            if !bad.contains(&(seq - 1)) && !bad.contains(&(seq + 1)) {
                bad.insert(seq);
            }
        }
        let messages = (0..count)
            .map(|seq| (if keyed { seq % keys } else { seq }, seq, bad.contains(&seq)))
            .collect();
        Self {
            rule,
            keyed,
            topic: unique(&name),
            table: unique(&format!("{name}_rows")),
            messages,
        }
    }

    /// Creates the topic and the table, produces the messages (Kafka key:
    /// the id) and writes the pipeline.
    pub fn prepare(&self, db: &Db, batch_size: usize) -> std::path::PathBuf {
        super::create_topic(&self.topic, 1);
        self.rule.create(db, &self.table, self.keyed);
        let produced: Vec<super::Keyed> = self
            .messages
            .iter()
            .map(|(id, seq, culprit)| {
                // A unique culprit takes the code of the key before its own.
                let clash = if *id > 0 { id - 1 } else { id + 1 };
                let payload = self.rule.payload(*id, *seq, *culprit, clash);
                (0, id.to_string().into_bytes(), Some(payload.into_bytes()))
            })
            .collect();
        super::produce_keyed(&self.topic, &produced);
        // Its own sink name: a replay elsewhere selects letters by sink name.
        let mut pipeline = SinkPipeline::new(&self.topic, &self.table, "json_columns")
            .name(&unique("bad_sink"))
            .batch_size(batch_size)
            .extra(SETTINGS);
        if self.keyed {
            pipeline = pipeline.upsert(&["id"]);
        }
        pipeline.write()
    }

    pub fn culprits(&self) -> Vec<i64> {
        self.messages.iter().filter(|m| m.2).map(|m| m.1).collect()
    }

    /// Asserts each culprit is a dead letter with PostgreSQL's reason, every
    /// other message is in the table (the last per key, keyed) exactly once,
    /// and the stored offset is the end of the topic.
    pub fn assert_stored(&self, db: &Db) {
        let what = format!("{:?} {}", self.rule, if self.keyed { "upsert" } else { "append" });
        let letters = db.dead_letters(&self.topic);
        let offsets: Vec<i64> = letters.iter().map(|l| l.0).collect();
        assert_eq!(offsets, self.culprits(), "{what}: the dead letters are the culprits");
        for (offset, payload, reason) in &letters {
            assert!(
                reason.starts_with("PostgreSQL refused the row: ") && reason.contains(self.rule.reason()),
                "{what}: offset {offset}: {reason}"
            );
            assert!(payload.is_some(), "{what}: the letter keeps its payload");
        }
        let rows: Vec<(i64, i64)> = db
            .query(&format!("SELECT id, seq FROM \"{}\" ORDER BY seq", self.table), &[])
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let expected: Vec<(i64, i64)> = if self.keyed {
            // The last message of each key that is not a culprit.
            let mut last: BTreeMap<i64, i64> = BTreeMap::new();
            for (id, seq, culprit) in &self.messages {
                if !culprit {
                    last.insert(*id, *seq);
                }
            }
            let mut rows: Vec<(i64, i64)> = last.into_iter().collect();
            rows.sort_by_key(|r| r.1);
            rows
        } else {
            self.messages.iter().filter(|m| !m.2).map(|m| (m.0, m.1)).collect()
        };
        assert_eq!(rows.len(), expected.len(), "{what}: row count");
        assert!(rows == expected, "{what}: the rows are every message but the culprits");
        let stored = db.query(
            "SELECT next_offset FROM wasm_stream_offsets WHERE table_name = $1 AND topic = $2",
            &[&self.table, &self.topic],
        );
        let next: Vec<i64> = stored.iter().map(|r| r.get(0)).collect();
        assert_eq!(
            next,
            [self.messages.len() as i64],
            "{what}: the stored offset is the end"
        );
    }
}
