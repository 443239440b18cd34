//! Salesforce record ids.
//!
//! A record id is 15 case-sensitive characters (3-character key prefix of the object, then an
//! opaque part) plus a 3-character case-insensitive suffix that encodes which of the first 15
//! characters are upper-case letters (the documented 15→18 conversion). The emulator puts the row
//! index in base 62 into the opaque part, so the id of row `i` is a pure function of (object, i)
//! and ids sort in row order.

const B62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const SUFFIX: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
/// Fixed "pod" characters between the key prefix and the row number.
const POD: &str = "8d";
const DIGITS: usize = 10;

/// The checksum suffix of a 15-character id.
pub fn suffix(id15: &[u8]) -> [u8; 3] {
    let mut out = [b'A'; 3];
    for (chunk, slot) in id15.chunks(5).zip(out.iter_mut()) {
        let mut n = 0usize;
        for (bit, c) in chunk.iter().enumerate() {
            if c.is_ascii_uppercase() {
                n |= 1 << bit;
            }
        }
        *slot = SUFFIX[n];
    }
    out
}

/// The 18-character id of row `index` of the object whose key prefix is `prefix`.
pub fn make(prefix: &str, index: u64) -> String {
    let mut b = [b'0'; 18];
    let p = prefix.as_bytes();
    b[..3.min(p.len())].copy_from_slice(&p[..3.min(p.len())]);
    b[3..5].copy_from_slice(POD.as_bytes());
    let mut n = index;
    for slot in b[5..5 + DIGITS].iter_mut().rev() {
        *slot = B62[(n % 62) as usize];
        n /= 62;
    }
    let suf = suffix(&b[..15]);
    b[15..].copy_from_slice(&suf);
    String::from_utf8(b.to_vec()).unwrap_or_default()
}

/// Normalises a 15- or 18-character id to its 18-character form; `None` if it is not an id.
pub fn to18(id: &str) -> Option<String> {
    let b = id.as_bytes();
    if !(b.len() == 15 || b.len() == 18) || !b.iter().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let suf = suffix(&b[..15]);
    if b.len() == 18 && !b[15..].eq_ignore_ascii_case(&suf) {
        return None;
    }
    let mut s = String::from(&id[..15]);
    s.extend(suf.iter().map(|&c| c as char));
    Some(s)
}

/// Splits an id of this emulator into (key prefix, row index).
pub fn parse(id: &str) -> Option<(String, u64)> {
    let id18 = to18(id)?;
    if &id18[3..5] != POD {
        return None;
    }
    let mut n: u64 = 0;
    for c in id18[5..15].bytes() {
        let d = B62.iter().position(|&x| x == c)? as u64;
        n = n.checked_mul(62)?.checked_add(d)?;
    }
    Some((id18[..3].to_string(), n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_carry_the_documented_checksum() {
        let id = make("001", 123_456_789);
        assert_eq!(id.len(), 18);
        assert_eq!(parse(&id), Some(("001".to_string(), 123_456_789)));
        assert_eq!(parse(&id[..15]), Some(("001".to_string(), 123_456_789)));
        assert_eq!(to18(&id[..15]).as_deref(), Some(id.as_str()));
        // A known real-world pair: 001A0000006Vm9r -> 001A0000006Vm9rIAC.
        assert_eq!(
            to18("001A0000006Vm9r").as_deref(),
            Some("001A0000006Vm9rIAC")
        );
        assert!(make("001", 5) < make("001", 62));
    }
}
