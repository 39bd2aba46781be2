//! Formats a record's position and txid headers without the formatting machinery,
//! which cost more than the rest of a record's headers.

use crate::checkpoint::Position;

/// Appends `position` as its `Display` form (`X/Y#index`, the LSN's halves in upper-case
/// hex) without the formatting machinery, which cost more than the rest of a record's
/// headers.
pub(super) fn push_position(out: &mut String, position: Position) {
    let lsn = position.commit_lsn.0;
    push_hex(out, (lsn >> 32) as u32);
    out.push('/');
    push_hex(out, (lsn & 0xFFFF_FFFF) as u32);
    out.push('#');
    push_decimal(out, position.index);
}

fn push_hex(out: &mut String, value: u32) {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut buf = [0u8; 8];
    let mut at = buf.len();
    let mut v = value;
    loop {
        at -= 1;
        buf[at] = DIGITS[(v & 0xF) as usize];
        v >>= 4;
        if v == 0 {
            break;
        }
    }
    buf[at..].iter().for_each(|&b| out.push(char::from(b)));
}

pub(super) fn push_decimal(out: &mut String, value: u64) {
    // Writing into a String cannot fail.
    let _ = crate::codec::temporal::write_padded(out, value, 1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::lsn::Lsn;

    #[test]
    fn position_headers_read_as_positions_display() {
        let cases = [
            (0u64, 0u64),
            (0x1_6B37_4D48, 7),
            (u64::MAX, u64::from(u32::MAX)),
            (0x20, u64::from(u32::MAX) + 1),
            (u64::MAX, u64::MAX),
            (0xABCD_0000_0000, 10),
            (0x10, 1_000_000),
        ];
        for (lsn, index) in cases {
            let position = Position {
                commit_lsn: Lsn(lsn),
                index,
            };
            let mut out = String::new();
            push_position(&mut out, position);
            assert_eq!(out, position.to_string());
            let mut txid = String::new();
            push_decimal(&mut txid, index);
            assert_eq!(txid, index.to_string());
        }
    }
}
