//! Rows of a batch encoded in PostgreSQL's binary `COPY` format as the
//! mapper's values come in.

use super::{binary, isolate};
use crate::contract::mapper::{Column, ColumnType, Value};

/// Rows of a batch in PostgreSQL's binary `COPY` format, encoded as they are
/// added. Values must fit their columns (the sink checks them first).
pub struct CopyRows {
    kinds: Vec<ColumnType>,
    buf: Vec<u8>,
    /// Where each row starts in `buf`, so a subset can be copied again
    /// when PostgreSQL refuses a row (see `isolate`).
    starts: Vec<usize>,
}

/// The binary `COPY` header: signature, flags, header extension length.
pub(crate) const COPY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

impl CopyRows {
    /// Empty, with room for `bytes` of encoded rows.
    pub fn with_capacity(columns: &[Column], bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(COPY_HEADER.len() + bytes + 2);
        buf.extend_from_slice(COPY_HEADER);
        Self {
            kinds: columns.iter().map(|c| c.kind).collect(),
            buf,
            starts: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// Adds one row, one value per column in order.
    pub fn push(&mut self, row: Vec<Value>) {
        self.push_ref(&row);
    }

    /// Adds one row, one value per column in order.
    pub fn push_ref(&mut self, row: &[Value]) {
        self.push_values(row.iter());
    }

    /// Adds one row, one value per column in order.
    pub fn push_values<'a>(&mut self, row: impl Iterator<Item = &'a Value>) {
        self.starts.push(self.buf.len());
        let buf = &mut self.buf;
        let count = i16::try_from(self.kinds.len()).unwrap_or(i16::MAX);
        buf.extend_from_slice(&count.to_be_bytes());
        for (kind, value) in self.kinds.iter().zip(row) {
            match (kind, value) {
                (_, Value::Null) => buf.extend_from_slice(&(-1i32).to_be_bytes()),
                // jsonb's binary form: a version byte, then the text.
                (ColumnType::Json, Value::Json(s) | Value::Text(s)) => {
                    field_len(buf, s.len() + 1);
                    buf.push(1);
                    buf.extend_from_slice(s.as_bytes());
                }
                (_, Value::Text(s) | Value::Json(s)) => field(buf, s.as_bytes()),
                (ColumnType::Timestamp, Value::Timestamp(us) | Value::Integer(us)) => match binary::timestamp(*us) {
                    Ok(pg) => field(buf, &pg.to_be_bytes()),
                    Err(_) => refused_field(buf),
                },
                (ColumnType::Float, Value::Integer(i)) => field(buf, &(*i as f64).to_be_bytes()),
                (ColumnType::Numeric, Value::Integer(i)) => numeric_field(buf, &i.to_string()),
                (_, Value::Integer(i) | Value::Timestamp(i)) => field(buf, &i.to_be_bytes()),
                (_, Value::Float(f)) => field(buf, &f.to_be_bytes()),
                (_, Value::Boolean(b)) => field(buf, &[u8::from(*b)]),
                (_, Value::Uuid(s)) => match binary::uuid(s) {
                    Ok(bytes) => field(buf, &bytes),
                    Err(_) => refused_field(buf),
                },
                (_, Value::Numeric(s)) => numeric_field(buf, s),
                (_, Value::Bytea(bytes)) => field(buf, bytes),
                (_, Value::Date(days)) => match binary::date(*days) {
                    Ok(pg_days) => field(buf, &pg_days.to_be_bytes()),
                    Err(_) => refused_field(buf),
                },
            }
        }
    }

    /// The rows as shared bytes (header and rows, no trailer) and where each
    /// row starts: what a write keeps to copy a subset again.
    pub fn freeze(self) -> isolate::Frozen {
        isolate::Frozen::new(bytes::Bytes::from(self.buf), self.starts)
    }

    /// The encoded rows with the trailer, ready to send.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.buf
    }
}

fn numeric_field(buf: &mut Vec<u8>, text: &str) {
    match binary::numeric(text) {
        Ok(bytes) => field(buf, &bytes),
        Err(_) => refused_field(buf),
    }
}

/// A field PostgreSQL refuses (a 3-byte value fits none of the types that
/// need one), written for a value the sink's checks should have stopped:
/// the batch fails loudly instead of storing something else.
fn refused_field(buf: &mut Vec<u8>) {
    tracing::error!("a value reached COPY unchecked; PostgreSQL will refuse the batch");
    field(buf, &[0xff, 0xff, 0xff]);
}

fn field_len(buf: &mut Vec<u8>, len: usize) {
    buf.extend_from_slice(&i32::try_from(len).unwrap_or(i32::MAX).to_be_bytes());
}

fn field(buf: &mut Vec<u8>, bytes: &[u8]) {
    field_len(buf, bytes.len());
    buf.extend_from_slice(bytes);
}

/// The binary COPY encoding (a module of its own so it merges beside other tests).
#[cfg(test)]
mod copy_tests {
    use super::*;
    use crate::postgres::{sql_type, udt_name};

    fn column(name: &str, kind: ColumnType) -> Column {
        Column {
            name: name.into(),
            kind,
            nullable: true,
        }
    }

    /// The fields of the one row of a finished COPY: each `None` for NULL.
    fn fields(bytes: &[u8]) -> Vec<Option<Vec<u8>>> {
        assert_eq!(&bytes[..COPY_HEADER.len()], COPY_HEADER);
        assert_eq!(&bytes[bytes.len() - 2..], &(-1i16).to_be_bytes(), "trailer");
        let mut at = COPY_HEADER.len();
        let count = i16::from_be_bytes([bytes[at], bytes[at + 1]]);
        at += 2;
        let mut out = Vec::new();
        for _ in 0..count {
            let len = i32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
            at += 4;
            if len < 0 {
                out.push(None);
            } else {
                out.push(Some(bytes[at..at + len as usize].to_vec()));
                at += len as usize;
            }
        }
        assert_eq!(at, bytes.len() - 2, "nothing after the row");
        out
    }

    #[test]
    fn new_types_encode_in_postgres_binary_copy_format() {
        let columns = [
            column("u", ColumnType::Uuid),
            column("n", ColumnType::Numeric),
            column("i", ColumnType::Numeric),
            column("b", ColumnType::Bytea),
            column("d", ColumnType::Date),
            column("e", ColumnType::Bytea),
            column("z", ColumnType::Uuid),
        ];
        let mut rows = CopyRows::with_capacity(&columns, 0);
        rows.push(vec![
            Value::Uuid("0b7e5a3c-1234-4abc-8def-001122334455".into()),
            Value::Numeric("-12.50".into()),
            Value::Integer(10_000),
            Value::Bytea(vec![0, 0xff, b'\\']),
            Value::Date(0),
            Value::Bytea(Vec::new()),
            Value::Null,
        ]);
        assert_eq!(rows.len(), 1);
        let f = fields(&rows.finish());
        assert_eq!(
            f[0].as_deref(),
            Some(
                &[
                    0x0b, 0x7e, 0x5a, 0x3c, 0x12, 0x34, 0x4a, 0xbc, 0x8d, 0xef, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55
                ][..]
            )
        );
        // ndigits 2, weight 0, negative, dscale 2, digits 12 and 5000.
        assert_eq!(
            f[1].as_deref(),
            Some(&[0, 2, 0, 0, 0x40, 0, 0, 2, 0, 12, 0x13, 0x88][..])
        );
        // An integer in a numeric column: 10000 is one digit of weight 1.
        assert_eq!(f[2].as_deref(), Some(&[0, 1, 0, 1, 0, 0, 0, 0, 0, 1][..]));
        assert_eq!(
            f[3].as_deref(),
            Some(&[0, 0xff, b'\\'][..]),
            "bytea: the bytes as they are"
        );
        // 1970-01-01 is 10957 days before 2000-01-01.
        assert_eq!(f[4].as_deref(), Some(&(-10_957i32).to_be_bytes()[..]));
        assert_eq!(f[5].as_deref(), Some(&[][..]), "an empty bytea is not NULL");
        assert_eq!(f[6], None);
    }

    #[test]
    fn the_new_types_have_their_postgres_names() {
        let names: Vec<(&str, &str)> = [
            ColumnType::Uuid,
            ColumnType::Numeric,
            ColumnType::Bytea,
            ColumnType::Date,
        ]
        .into_iter()
        .map(|k| (sql_type(k), udt_name(k)))
        .collect();
        assert_eq!(
            names,
            [
                ("uuid", "uuid"),
                ("numeric", "numeric"),
                ("bytea", "bytea"),
                ("date", "date")
            ]
        );
    }
}
