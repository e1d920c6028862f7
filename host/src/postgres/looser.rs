//! A mapper looser than its table: it may write what the table's own rules
//! refuse (NULL in a NOT NULL column, a text longer than a `varchar(n)`, a
//! number too large for a `numeric(p,s)`). The table's rules are the user's:
//! the host never drops or loosens them. The sink starts, says so once at
//! warning level with the statement that would relax the table, and the
//! messages that break a rule become dead letters (`isolate`); after the
//! statement is run, `host dead-letters replay` stores them.

use super::{Existing, ident};
use crate::contract::mapper::{Column, ColumnType};

/// One way a mapper is looser than its table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Looser {
    pub column: String,
    pub why: String,
    /// The statement that would make the table take what the mapper writes.
    pub relax: String,
}

/// Whether a table column of type `udt` takes what the mapper writes as
/// `kind` in binary `COPY`: the same type, or a text type with a length
/// limit for text.
pub fn type_fits(udt: &str, kind: ColumnType) -> bool {
    udt == super::udt_name(kind) || (kind == ColumnType::Text && matches!(udt, "varchar" | "bpchar"))
}

/// The ways the mapper's `columns` are looser than the table's existing
/// columns; the `key` columns are left out (a row without its key is a dead
/// letter before it reaches PostgreSQL).
pub fn looser(table: &str, existing: &[Existing], columns: &[Column], key: &[String]) -> Vec<Looser> {
    let mut found = Vec::new();
    for c in columns.iter().filter(|c| !key.contains(&c.name)) {
        let Some(e) = existing.iter().find(|e| e.name == c.name) else {
            continue;
        };
        let alter = format!("ALTER TABLE {} ALTER COLUMN {}", ident(table), ident(&c.name));
        if c.nullable && !e.nullable {
            found.push(Looser {
                column: c.name.clone(),
                why: "NOT NULL in the table, nullable in the mapper: a NULL there is refused".into(),
                relax: format!("{alter} DROP NOT NULL;"),
            });
        }
        if let Some(limited) = &e.limited
            && type_fits(&e.udt, c.kind)
        {
            found.push(Looser {
                column: c.name.clone(),
                why: format!(
                    "{limited} in the table, {} in the mapper: a value that does not fit is refused",
                    super::sql_type(c.kind)
                ),
                relax: format!("{alter} TYPE {};", super::sql_type(c.kind)),
            });
        }
    }
    found
}

/// Says once, at warning level, how the mapper is looser than `table`.
pub fn warn(table: &str, found: &[Looser]) {
    for l in found {
        tracing::warn!(
            table,
            column = l.column,
            statement = l.relax,
            "the mapper is looser than the table: column {:?} is {}; such messages become dead letters with PostgreSQL's reason. The host never loosens a table; to let it take them, run: {}  then `host dead-letters replay`",
            l.column,
            l.why,
            l.relax
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn existing(name: &str, udt: &str, nullable: bool, limited: Option<&str>) -> Existing {
        Existing {
            name: name.into(),
            udt: udt.into(),
            nullable,
            has_default: false,
            limited: limited.map(str::to_string),
        }
    }

    fn column(name: &str, kind: ColumnType, nullable: bool) -> Column {
        Column {
            name: name.into(),
            kind,
            nullable,
        }
    }

    #[test]
    fn a_nullable_mapper_column_over_not_null_names_the_statement() {
        let table = [
            existing("email", "text", false, None),
            existing("id", "text", false, None),
        ];
        let columns = [
            column("email", ColumnType::Text, true),
            column("id", ColumnType::Text, true),
        ];
        let found = looser("t", &table, &columns, &["id".into()]);
        assert_eq!(found.len(), 1, "the key is left out: {found:?}");
        assert_eq!(found[0].column, "email");
        assert_eq!(
            found[0].relax,
            "ALTER TABLE \"t\" ALTER COLUMN \"email\" DROP NOT NULL;"
        );
    }

    #[test]
    fn limited_types_are_taken_and_named_with_their_statement() {
        let table = [
            existing("name", "varchar", true, Some("character varying(5)")),
            existing("price", "numeric", true, Some("numeric(5,2)")),
            existing("free", "numeric", true, None),
        ];
        let columns = [
            column("name", ColumnType::Text, true),
            column("price", ColumnType::Numeric, true),
            column("free", ColumnType::Numeric, true),
        ];
        let found = looser("t", &table, &columns, &[]);
        let relax: Vec<&str> = found.iter().map(|l| l.relax.as_str()).collect();
        assert_eq!(
            relax,
            [
                "ALTER TABLE \"t\" ALTER COLUMN \"name\" TYPE text;",
                "ALTER TABLE \"t\" ALTER COLUMN \"price\" TYPE numeric;"
            ]
        );
        assert!(type_fits("varchar", ColumnType::Text) && type_fits("bpchar", ColumnType::Text));
        assert!(!type_fits("varchar", ColumnType::Json) && !type_fits("int4", ColumnType::Integer));
    }
}
