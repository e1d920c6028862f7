//! The schema registry's wire format (Confluent's, which Karapace and every
//! registry-aware client use): one magic byte 0, the schema id as a 4-byte
//! big-endian integer, then the encoded value. For Protobuf the value starts
//! with the message indexes, which the Protobuf codec reads, not this module.

use super::varint::{read_zigzag, write_zigzag};

/// The first byte of every registry-framed message.
pub const MAGIC: u8 = 0;

/// Bytes before the body: the magic byte and the 4-byte schema id.
pub const HEADER_LEN: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("the value is empty, but a schema registry value starts with the magic byte 0 and a 4-byte schema id")]
    Empty,
    #[error(
        "the value starts with byte {0}, not the magic byte 0 of the schema registry's wire format (is the topic plain JSON? then use format = \"raw\")"
    )]
    WrongMagic(u8),
    #[error(
        "the value has {len} bytes, fewer than the 5 of the schema registry's header (magic byte 0 and a 4-byte schema id)"
    )]
    Truncated { len: usize },
}

/// Splits a framed value into its schema id and the rest (the encoded body).
pub fn split(bytes: &[u8]) -> Result<(u32, &[u8]), WireError> {
    match bytes {
        [] => Err(WireError::Empty),
        [first, ..] if *first != MAGIC => Err(WireError::WrongMagic(*first)),
        [_, a, b, c, d, rest @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), rest)),
        _ => Err(WireError::Truncated { len: bytes.len() }),
    }
}

/// Frames an encoded body with the magic byte and the schema id.
pub fn frame(id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    frame_into(id, body, &mut out);
    out
}

/// Like [`frame`], appending to a buffer the caller reuses.
pub fn frame_into(id: u32, body: &[u8], out: &mut Vec<u8>) {
    out.push(MAGIC);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(body);
}

/// Reads the Protobuf message indexes at the front of a body (a zig-zag
/// varint count, then that many zig-zag varint indexes; a lone 0 means
/// `[0]`, the file's first message), advancing `body` past them.
pub fn read_message_indexes(body: &mut &[u8]) -> Result<Vec<usize>, MessageIndexError> {
    let count = read_zigzag(body).ok_or(MessageIndexError::Truncated)?;
    if count == 0 {
        return Ok(vec![0]);
    }
    // A real path is a few levels deep; a huge count is garbage, not a path.
    if !(1..=MAX_MESSAGE_DEPTH).contains(&count) {
        return Err(MessageIndexError::BadCount(count));
    }
    (0..count)
        .map(|_| match read_zigzag(body) {
            Some(i) if i >= 0 => Ok(i as usize),
            Some(i) => Err(MessageIndexError::Negative(i)),
            None => Err(MessageIndexError::Truncated),
        })
        .collect()
}

/// Writes message indexes as [`read_message_indexes`] reads them (`[0]` as
/// the single byte 0, as Confluent's serializers do).
pub fn write_message_indexes(indexes: &[usize], out: &mut Vec<u8>) {
    if indexes == [0] {
        out.push(0);
        return;
    }
    write_zigzag(indexes.len() as i64, out);
    for &i in indexes {
        write_zigzag(i as i64, out);
    }
}

/// The deepest message nesting the indexes may name.
const MAX_MESSAGE_DEPTH: i64 = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageIndexError {
    #[error("the Protobuf message indexes after the schema id end early")]
    Truncated,
    #[error("the Protobuf message index count is {0}, not between 0 and 64 (is the value Protobuf?)")]
    BadCount(i64),
    #[error("a Protobuf message index is negative ({0})")]
    Negative(i64),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_indexes_round_trip_and_a_lone_zero_is_the_first_message() {
        for indexes in [vec![0], vec![1], vec![1, 0], vec![2, 3, 70]] {
            let mut out = Vec::new();
            write_message_indexes(&indexes, &mut out);
            out.push(0xaa);
            let mut body = &out[..];
            assert_eq!(read_message_indexes(&mut body), Ok(indexes));
            assert_eq!(body, [0xaa]);
        }
        let mut out = Vec::new();
        write_message_indexes(&[0], &mut out);
        assert_eq!(out, [0]);
        out.clear();
        write_message_indexes(&[1, 0], &mut out);
        assert_eq!(out, [4, 2, 0]);
        // The long form of [0] reads the same.
        assert_eq!(read_message_indexes(&mut &[2u8, 0][..]), Ok(vec![0]));
    }

    #[test]
    fn broken_message_indexes_are_refused() {
        assert_eq!(read_message_indexes(&mut &[][..]), Err(MessageIndexError::Truncated));
        assert_eq!(
            read_message_indexes(&mut &[4u8, 2][..]),
            Err(MessageIndexError::Truncated)
        );
        assert_eq!(
            read_message_indexes(&mut &[1u8][..]),
            Err(MessageIndexError::BadCount(-1))
        );
        assert_eq!(
            read_message_indexes(&mut &[2u8, 1][..]),
            Err(MessageIndexError::Negative(-1))
        );
        assert_eq!(
            read_message_indexes(&mut &[0xfeu8, 1][..]),
            Err(MessageIndexError::BadCount(127))
        );
    }

    #[test]
    fn frame_then_split_gives_back_the_id_and_body() {
        let framed = frame(0x0102_0304, b"body");
        assert_eq!(framed, [0, 1, 2, 3, 4, b'b', b'o', b'd', b'y']);
        assert_eq!(split(&framed), Ok((0x0102_0304, &b"body"[..])));
    }

    #[test]
    fn an_empty_body_after_the_header_is_allowed() {
        assert_eq!(split(&frame(7, b"")), Ok((7, &b""[..])));
        assert_eq!(split(&frame(u32::MAX, b"x")), Ok((u32::MAX, &b"x"[..])));
    }

    #[test]
    fn empty_wrong_magic_and_truncated_values_are_refused() {
        assert_eq!(split(b""), Err(WireError::Empty));
        assert_eq!(split(b"{\"a\":1}"), Err(WireError::WrongMagic(b'{')));
        assert_eq!(split(&[0, 0, 0, 1]), Err(WireError::Truncated { len: 4 }));
        assert_eq!(split(&[0]), Err(WireError::Truncated { len: 1 }));
        let message = WireError::WrongMagic(b'{').to_string();
        assert!(message.contains("byte 123") && message.contains("raw"), "{message}");
    }
}
