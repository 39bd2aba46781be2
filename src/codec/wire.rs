//! The Confluent wire format around an Avro datum: magic byte 0, the schema id as a
//! 4-byte big-endian integer, then the datum; pure.

/// The magic byte that starts every Confluent-framed record.
pub const MAGIC: u8 = 0;
/// Bytes before the datum.
pub const HEADER_LEN: usize = 5;

/// Clears `out` and writes the header for `schema_id`; the datum is appended after.
pub fn start(out: &mut Vec<u8>, schema_id: u32) {
    out.clear();
    out.push(MAGIC);
    out.extend_from_slice(&schema_id.to_be_bytes());
}

/// Splits a framed record into its schema id and datum; `None` if it is not one.
pub fn split(record: &[u8]) -> Option<(u32, &[u8])> {
    if record.len() < HEADER_LEN || record[0] != MAGIC {
        return None;
    }
    let id = u32::from_be_bytes([record[1], record[2], record[3], record[4]]);
    Some((id, &record[HEADER_LEN..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let mut out = vec![9, 9, 9];
        start(&mut out, 0x0102_0304);
        out.push(42);
        assert_eq!(out, [0, 1, 2, 3, 4, 42]);
        assert_eq!(split(&out), Some((0x0102_0304, &[42][..])));
        assert_eq!(split(&[1, 0, 0, 0, 1]), None);
        assert_eq!(split(&[0, 0]), None);
    }
}
