//! A uid as academy-py's hybrid exchange writes it in Redis keys
//! (`uuid_to_base32`): RFC 4648 base32 of the 16 uuid bytes, upper case,
//! `=` padding stripped, 26 characters.

use uuid::Uuid;

const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// The 26-character base32 text of a uid.
pub fn encode_uid(uid: &Uuid) -> String {
    let bytes = uid.as_bytes();
    let mut out = String::with_capacity(26);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// The uid of a base32 text written by [`encode_uid`] (or by academy-py);
/// `None` for anything else. Case-sensitive, as Python's `b32decode`.
pub fn decode_uid(text: &str) -> Option<Uuid> {
    let text = text.trim_end_matches('=');
    if text.len() != 26 {
        return None;
    }
    let mut bytes = [0u8; 16];
    let (mut buffer, mut bits, mut n) = (0u32, 0u32, 0usize);
    for c in text.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        buffer = (buffer << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            if n < 16 {
                bytes[n] = (buffer >> bits) as u8;
            }
            n += 1;
        }
        buffer &= (1 << bits) - 1;
    }
    // 26 characters carry 130 bits: the last 2 must be zero (canonical).
    (n == 16 && buffer == 0).then(|| Uuid::from_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_academy_py() {
        // Pairs observed from academy-py's uuid_to_base32.
        for (uid, b32) in [
            (
                "80b78938-3bd9-4a0e-85ec-e2cb02f3a507",
                "QC3YSOB33FFA5BPM4LFQF45FA4",
            ),
            (
                "0f0e0d0c-0b0a-0908-0706-050403020100",
                "B4HA2DALBIEQQBYGAUCAGAQBAA",
            ),
            (
                "269edab5-6d61-4ad2-babc-9bd4290941d2",
                "E2PNVNLNMFFNFOV4TPKCSCKB2I",
            ),
            (
                "00000000-0000-0000-0000-000000000000",
                "AAAAAAAAAAAAAAAAAAAAAAAAAA",
            ),
        ] {
            let uid = Uuid::parse_str(uid).unwrap();
            assert_eq!(encode_uid(&uid), b32);
            assert_eq!(decode_uid(b32), Some(uid));
            assert_eq!(decode_uid(&format!("{b32}======")), Some(uid));
        }
    }

    #[test]
    fn rejects_what_is_not_a_uid() {
        for bad in [
            "",
            "QC3YSOB33FFA5BPM4LFQF45FA",
            "qc3ysob33ffa5bpm4lfqf45fa4",
            "QC3YSOB33FFA5BPM4LFQF45FA1",
            "QC3YSOB33FFA5BPM4LFQF45FA7",
        ] {
            assert_eq!(decode_uid(bad), None, "{bad}");
        }
        for _ in 0..100 {
            let uid = Uuid::new_v4();
            assert_eq!(decode_uid(&encode_uid(&uid)), Some(uid));
        }
    }
}
