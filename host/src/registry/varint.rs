//! Zig-zag variable-length integers, as Avro writes int and long and as the
//! registry's Protobuf framing writes message indexes.

/// Reads one zig-zag varint from the front of `buf`, advancing it. `None`
/// when the bytes end inside the number or it runs past 64 bits.
#[inline]
pub fn read_zigzag(buf: &mut &[u8]) -> Option<i64> {
    let mut value: u64 = 0;
    let mut shift = 0u32;
    loop {
        let (&byte, rest) = buf.split_first()?;
        *buf = rest;
        if shift == 63 && byte > 1 {
            return None;
        }
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

/// Appends `value` as a zig-zag varint.
#[inline]
pub fn write_zigzag(value: i64, out: &mut Vec<u8>) {
    let mut n = ((value << 1) ^ (value >> 63)) as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_round_trips_the_edges() {
        for v in [
            0,
            -1,
            1,
            -64,
            63,
            64,
            i32::MIN as i64,
            i32::MAX as i64,
            i64::MIN,
            i64::MAX,
        ] {
            let mut out = Vec::new();
            write_zigzag(v, &mut out);
            let mut buf = &out[..];
            assert_eq!(read_zigzag(&mut buf), Some(v));
            assert!(buf.is_empty());
        }
        let mut out = Vec::new();
        write_zigzag(-1, &mut out);
        assert_eq!(out, [1]);
        out.clear();
        write_zigzag(64, &mut out);
        assert_eq!(out, [0x80, 1]);
    }

    #[test]
    fn a_cut_or_overlong_varint_is_none() {
        assert_eq!(read_zigzag(&mut &[0x80u8][..]), None);
        assert_eq!(read_zigzag(&mut &[][..]), None);
        assert_eq!(read_zigzag(&mut &[0xffu8; 11][..]), None);
    }
}
