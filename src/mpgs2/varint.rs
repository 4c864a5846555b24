//! QUIC variable-length integers (RFC 9000 §16), shortest form enforced.
//!
//! The two most significant bits of the first byte give the length (1, 2, 4
//! or 8 bytes); the rest is the value, big-endian, so values up to 2^62 − 1
//! fit. MPGS/2 senders MUST use the shortest form and receivers refuse any
//! other (MPGS2.md, conventions), so [`decode`] and [`encode`] are exact
//! inverses over every byte string [`decode`] accepts.

use super::WireError;

/// The largest value a varint holds: 2^62 − 1.
pub const MAX: u64 = (1 << 62) - 1;

/// Encoded length of `v`: 1, 2, 4 or 8 bytes; `None` above [`MAX`].
#[inline]
pub const fn len(v: u64) -> Option<usize> {
    if v < 1 << 6 {
        Some(1)
    } else if v < 1 << 14 {
        Some(2)
    } else if v < 1 << 30 {
        Some(4)
    } else if v <= MAX {
        Some(8)
    } else {
        None
    }
}

/// Writes `v` in its shortest form at the start of `out` and returns the
/// number of bytes written.
///
/// [`WireError::BadValue`] above [`MAX`], [`WireError::Truncated`] when
/// `out` is too short; nothing is written on error.
#[inline]
pub fn encode(v: u64, out: &mut [u8]) -> Result<usize, WireError> {
    // One fixed-size store per length (a copy of a run-time length would be
    // a `memcpy` call on every frame field). The length prefix: 00, 01, 10,
    // 11 for 1, 2, 4, 8 bytes.
    let n = len(v).ok_or(WireError::BadValue)?;
    match n {
        1 => *out.first_mut().ok_or(WireError::Truncated)? = v as u8,
        2 => {
            let dst: &mut [u8; 2] = out.first_chunk_mut().ok_or(WireError::Truncated)?;
            *dst = (v as u16 | 0x4000).to_be_bytes();
        }
        4 => {
            let dst: &mut [u8; 4] = out.first_chunk_mut().ok_or(WireError::Truncated)?;
            *dst = (v as u32 | 0x8000_0000).to_be_bytes();
        }
        _ => {
            let dst: &mut [u8; 8] = out.first_chunk_mut().ok_or(WireError::Truncated)?;
            *dst = (v | 0xC000_0000_0000_0000).to_be_bytes();
        }
    }
    Ok(n)
}

/// Reads one varint from the start of `input`; returns the value and the
/// number of bytes it took.
///
/// [`WireError::Truncated`] when `input` ends inside it,
/// [`WireError::NonMinimalVarint`] when a shorter form would do.
#[inline]
pub fn decode(input: &[u8]) -> Result<(u64, usize), WireError> {
    // One fixed-size load per length, the prefix masked off; the shortest
    // form holds a value at or above the next shorter form's limit.
    let first = *input.first().ok_or(WireError::Truncated)?;
    let (v, n, min) = match first >> 6 {
        0 => return Ok((u64::from(first), 1)),
        1 => {
            let b: &[u8; 2] = input.first_chunk().ok_or(WireError::Truncated)?;
            (u64::from(u16::from_be_bytes(*b) & 0x3FFF), 2, 1 << 6)
        }
        2 => {
            let b: &[u8; 4] = input.first_chunk().ok_or(WireError::Truncated)?;
            (u64::from(u32::from_be_bytes(*b) & 0x3FFF_FFFF), 4, 1 << 14)
        }
        _ => {
            let b: &[u8; 8] = input.first_chunk().ok_or(WireError::Truncated)?;
            (u64::from_be_bytes(*b) & MAX, 8, 1 << 30)
        }
    };
    if v < min {
        return Err(WireError::NonMinimalVarint);
    }
    Ok((v, n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use quickcheck::quickcheck;

    #[test]
    fn rfc9000_a1_examples() {
        // RFC 9000 A.1 (the 8-, 4-, 2- and 1-byte examples).
        let cases: [(&[u8], u64); 4] = [
            (&[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c], 151_288_809_941_952_652),
            (&[0x9d, 0x7f, 0x3e, 0x7d], 494_878_333),
            (&[0x7b, 0xbd], 15_293),
            (&[0x25], 37),
        ];
        for (bytes, v) in cases {
            assert_eq!(decode(bytes), Ok((v, bytes.len())));
            let mut out = [0u8; 8];
            assert_eq!(encode(v, &mut out), Ok(bytes.len()));
            assert_eq!(&out[..bytes.len()], bytes);
        }
        // RFC 9000 A.1 notes 0x4025 decodes to 37 in a two-byte form: not the
        // shortest, so MPGS/2 refuses it.
        assert_eq!(decode(&[0x40, 0x25]), Err(WireError::NonMinimalVarint));
    }

    #[test]
    fn boundaries_and_errors() {
        assert_eq!(len(63), Some(1));
        assert_eq!(len(64), Some(2));
        assert_eq!(len(16_383), Some(2));
        assert_eq!(len(16_384), Some(4));
        assert_eq!(len((1 << 30) - 1), Some(4));
        assert_eq!(len(1 << 30), Some(8));
        assert_eq!(len(MAX), Some(8));
        assert_eq!(len(MAX + 1), None);
        let mut out = [0u8; 8];
        assert_eq!(encode(MAX + 1, &mut out), Err(WireError::BadValue));
        assert_eq!(encode(64, &mut out[..1]), Err(WireError::Truncated));
        assert_eq!(decode(&[]), Err(WireError::Truncated));
        assert_eq!(decode(&[0x80, 0, 0]), Err(WireError::Truncated));
        assert_eq!(decode(&[0xc0, 0, 0, 0, 0x3f, 0xff, 0xff, 0xff]), Err(WireError::NonMinimalVarint));
        // Each length's smallest value decodes, the one below it does not.
        assert_eq!(decode(&[0x40, 0x40]), Ok((64, 2)));
        assert_eq!(decode(&[0x40, 0x3f]), Err(WireError::NonMinimalVarint));
        assert_eq!(decode(&[0x80, 0, 0x40, 0]), Ok((16_384, 4)));
        assert_eq!(decode(&[0x80, 0, 0x3f, 0xff]), Err(WireError::NonMinimalVarint));
        assert_eq!(decode(&[0xc0, 0, 0, 0, 0x40, 0, 0, 0]), Ok((1 << 30, 8)));
        assert_eq!(decode(&[0xff; 8]), Ok((MAX, 8)));
    }

    quickcheck! {
        fn encode_then_decode_is_identity(v: u64) -> bool {
            let v = v & MAX;
            let mut out = [0u8; 8];
            let n = encode(v, &mut out).expect("in range");
            n == len(v).expect("in range") && decode(&out[..n]) == Ok((v, n))
        }

        fn decode_then_encode_is_identity(bytes: Vec<u8>) -> bool {
            match decode(&bytes) {
                Ok((v, n)) => {
                    let mut out = [0u8; 8];
                    encode(v, &mut out) == Ok(n) && out[..n] == bytes[..n]
                }
                Err(_) => true,
            }
        }
    }
}
