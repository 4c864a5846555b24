//! The short header and packet numbers (MPGS2.md §3.1, §3.2; RFC 9000 §17.1
//! and Appendix A.2/A.3).
//!
//! ```text
//! flags u8 ‖ dcid[c] ‖ pn[n] ‖ AEAD(frames, ≥ 1 B) ‖ tag[16]
//! flags = 1 0 K 0 0 0 L L      K = key phase, LL = n − 1, bits 4–2 MUST be 0
//! ```
//! The receiver fixes `c` (8 at a server, 0 or 8 at a client), so parsing
//! takes it as an argument.

use super::buf::Reader;
use super::{CID_LEN, MAX_PN, TAG_LEN, WireError};

/// What a datagram's first byte says it is (§2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirstByte {
    /// `0x46` (`F`): MPGS/1, or a HELLO2 inside an MPGS/1 CLIENT_HELLO.
    Mpgs1,
    /// `0x80–0xBF`: an MPGS/2 short header (or a stateless reset).
    Short,
    /// `0xC0–0xFF`: an MPGS/2 long header, S → C only.
    Long,
    /// Anything else: drop and count.
    Other,
}

impl FirstByte {
    /// Classifies a first byte.
    pub const fn of(b: u8) -> FirstByte {
        match b {
            0x46 => FirstByte::Mpgs1,
            0x80..=0xBF => FirstByte::Short,
            0xC0..=0xFF => FirstByte::Long,
            _ => FirstByte::Other,
        }
    }
}

/// Smallest packet: flags, one PN byte, one frame byte, the tag (plus `c`).
pub const MIN_SHORT_PACKET: usize = 1 + 1 + 1 + TAG_LEN;
/// Longest short header: flags, 8-byte id, 4-byte PN.
pub const MAX_SHORT_HEADER: usize = 1 + CID_LEN + 4;

/// A short header (§3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShortHeader {
    /// The key phase bit K (§6.3).
    pub key_phase: bool,
    /// The destination connection id; `None` when the receiver uses `c = 0`.
    pub dcid: Option<[u8; CID_LEN]>,
    /// Bytes of packet number on the wire, 1–4.
    pub pn_len: u8,
    /// The truncated packet number (its low `8 · pn_len` bits).
    pub truncated_pn: u32,
}

impl ShortHeader {
    /// Length of this header on the wire.
    pub fn encoded_len(&self) -> usize {
        1 + if self.dcid.is_some() { CID_LEN } else { 0 } + usize::from(self.pn_len)
    }

    /// Parses the header of a short packet whose receiver uses connection
    /// ids of `cid_len` bytes (0 or 8), and checks that at least one byte of
    /// ciphertext and the tag follow. Returns the header and its length.
    pub fn parse(datagram: &[u8], cid_len: usize) -> Result<(ShortHeader, usize), WireError> {
        let mut r = Reader::new(datagram);
        let flags = r.u8()?;
        if flags & 0xC0 != 0x80 {
            return Err(WireError::UnknownType);
        }
        if flags & 0x1C != 0 {
            return Err(WireError::ReservedBits);
        }
        let dcid = match cid_len {
            0 => None,
            CID_LEN => Some(r.array::<CID_LEN>()?),
            _ => return Err(WireError::BadValue),
        };
        let pn_len = (flags & 0x03) + 1;
        let pn_bytes = r.bytes(usize::from(pn_len))?;
        let truncated_pn = pn_bytes.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
        if r.remaining() < 1 + TAG_LEN {
            return Err(WireError::Truncated);
        }
        Ok((ShortHeader { key_phase: flags & 0x20 != 0, dcid, pn_len, truncated_pn }, r.consumed()))
    }

    /// Writes the header at the start of `out`; returns its length.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, WireError> {
        if !(1..=4).contains(&self.pn_len) || u64::from(self.truncated_pn) >= 1u64 << (8 * self.pn_len) {
            return Err(WireError::BadValue);
        }
        let n = self.encoded_len();
        let dst = out.get_mut(..n).ok_or(WireError::Truncated)?;
        dst[0] = 0x80 | if self.key_phase { 0x20 } else { 0 } | (self.pn_len - 1);
        let mut at = 1;
        if let Some(c) = &self.dcid {
            dst[1..1 + CID_LEN].copy_from_slice(c);
            at += CID_LEN;
        }
        let pn_be = self.truncated_pn.to_be_bytes();
        dst[at..].copy_from_slice(&pn_be[4 - usize::from(self.pn_len)..]);
        Ok(n)
    }
}

/// Bytes of packet number to send `pn` with (§3.2): the smallest `n` with
/// `2 · (pn − largest_acked) < 2^(8n)`; 4 before the peer has acked
/// anything. `None` when even 4 bytes cannot carry it (the sender must not
/// run that far ahead of its acks).
pub fn pn_encode_len(pn: u64, largest_acked: Option<u64>) -> Option<u8> {
    let Some(acked) = largest_acked else { return Some(4) };
    let span = pn.checked_sub(acked)?.checked_mul(2)?;
    (1u8..=4).find(|n| span < 1u64 << (8 * n))
}

/// The low `8 · n` bits of `pn`.
pub fn pn_truncate(pn: u64, n: u8) -> u32 {
    // n ≤ 4, so the masked value fits 32 bits.
    (pn & ((1u64 << (8 * u32::from(n.clamp(1, 4)))) - 1)) as u32
}

/// Recovers a full packet number (RFC 9000 A.3): the value closest to
/// `largest + 1` (0 before any packet authenticated) whose low `8 · n` bits
/// are `truncated`. `None` when the result would reach 2^62.
pub fn pn_decode(largest: Option<u64>, truncated: u32, n: u8) -> Option<u64> {
    let n = u32::from(n.clamp(1, 4));
    let expected = largest.map_or(0, |l| l + 1);
    let win = 1u64 << (8 * n);
    let hwin = win / 2;
    let mask = win - 1;
    let candidate = (expected & !mask) | u64::from(truncated);
    let pn = if expected >= hwin && candidate <= expected - hwin && candidate < (1u64 << 62) - win {
        candidate + win
    } else if candidate > expected + hwin && candidate >= win {
        candidate - win
    } else {
        candidate
    };
    (pn <= MAX_PN).then_some(pn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use quickcheck::quickcheck;

    #[test]
    fn rfc9000_a3_example() {
        // RFC 9000 A.3: largest 0xa82f30ea, 16-bit 0x9b32 → 0xa82f9b32.
        assert_eq!(pn_decode(Some(0xa82f_30ea), 0x9b32, 2), Some(0xa82f_9b32));
    }

    #[test]
    fn rfc9000_a2_examples() {
        // RFC 9000 A.2 / §17.1: acked 0xabe8b3, sending 0xac5c02 → 16 bits;
        // sending 0xace8fe → 24 bits.
        assert_eq!(pn_encode_len(0xac5c02, Some(0xabe8b3)), Some(2));
        assert_eq!(pn_encode_len(0xace8fe, Some(0xabe8b3)), Some(3));
        assert_eq!(pn_encode_len(0, None), Some(4));
        assert_eq!(pn_encode_len(127, Some(0)), Some(1));
        assert_eq!(pn_encode_len(128, Some(0)), Some(2));
        assert_eq!(pn_encode_len(1 << 31, Some(0)), None);
        assert_eq!(pn_encode_len(5, Some(6)), None);
        assert_eq!(pn_truncate(0xa82f_9b32, 2), 0x9b32);
    }

    #[test]
    fn decode_edges() {
        // Before any packet: expected 0.
        assert_eq!(pn_decode(None, 0, 1), Some(0));
        assert_eq!(pn_decode(None, 0x12345678, 4), Some(0x12345678));
        // Wrap forward and backward.
        assert_eq!(pn_decode(Some(0xFF), 0x00, 1), Some(0x100));
        assert_eq!(pn_decode(Some(0x100), 0xFF, 1), Some(0xFF));
        // Never at or above 2^62: the nearest candidate to 2^62 is 2^62 itself.
        assert_eq!(pn_decode(Some(MAX_PN), 0, 1), None);
        assert_eq!(pn_decode(Some(MAX_PN - 0x80), 0x00, 1), Some(MAX_PN - 0xFF));
        assert_eq!(pn_decode(Some(MAX_PN - 1), 0xFF, 1), Some(MAX_PN));
    }

    #[test]
    fn header_layout_and_refusals() {
        let h = ShortHeader { key_phase: true, dcid: Some([1, 2, 3, 4, 5, 6, 7, 8]), pn_len: 2, truncated_pn: 0x9b32 };
        let mut out = [0u8; 64];
        assert_eq!(h.emit(&mut out), Ok(11));
        assert_eq!(h.encoded_len(), 11);
        assert_eq!(ShortHeader::parse(&out[..MIN_SHORT_PACKET + 9], 8).map(|p| p.1), Ok(11), "smallest packet");
        assert_eq!(&out[..11], &[0xA1, 1, 2, 3, 4, 5, 6, 7, 8, 0x9b, 0x32]);
        assert_eq!(ShortHeader::parse(&out[..11 + 17], 8), Ok((h, 11)));
        assert_eq!(ShortHeader::parse(&out[..11 + 16], 8), Err(WireError::Truncated), "no ciphertext byte");
        for bit in [0x04, 0x08, 0x10] {
            let mut bad = out;
            bad[0] |= bit;
            assert_eq!(ShortHeader::parse(&bad, 8), Err(WireError::ReservedBits));
        }
        let mut long = out;
        long[0] = 0xC1;
        assert_eq!(ShortHeader::parse(&long, 8), Err(WireError::UnknownType));
        assert_eq!(ShortHeader::parse(&out, 3), Err(WireError::BadValue));
        let bad = ShortHeader { pn_len: 1, truncated_pn: 0x100, ..h };
        assert_eq!(bad.emit(&mut out), Err(WireError::BadValue));
        let c0 = ShortHeader { key_phase: false, dcid: None, pn_len: 4, truncated_pn: 7 };
        assert_eq!(c0.emit(&mut out), Ok(5));
        assert_eq!(ShortHeader::parse(&out[..5 + 17], 0), Ok((c0, 5)));
        assert_eq!(FirstByte::of(b'F'), FirstByte::Mpgs1);
        assert_eq!(FirstByte::of(0x80), FirstByte::Short);
        assert_eq!(FirstByte::of(0xBF), FirstByte::Short);
        assert_eq!(FirstByte::of(0xC0), FirstByte::Long);
        assert_eq!(FirstByte::of(0x00), FirstByte::Other);
        assert_eq!(FirstByte::of(0x7F), FirstByte::Other);
    }

    quickcheck! {
        fn pn_roundtrip_inside_half_window(largest_acked: u64, ahead: u32, received_ahead: u16) -> bool {
            // The sender picks n from its largest acked; the receiver's largest
            // authenticated PN is at least that (and below pn: no reordering
            // here), and recovers pn exactly.
            let acked = largest_acked % (MAX_PN / 2);
            let pn = acked + 1 + u64::from(ahead % (1 << 30));
            let Some(n) = pn_encode_len(pn, Some(acked)) else { return true };
            let largest = (acked + u64::from(received_ahead)).min(pn - 1);
            pn_decode(Some(largest), pn_truncate(pn, n), n) == Some(pn)
        }

        fn pn_decode_matches_bits_and_stays_near(largest: u64, truncated: u32, n: u8) -> bool {
            let n = n % 4 + 1;
            let largest = largest % MAX_PN;
            let truncated = pn_truncate(u64::from(truncated), n);
            match pn_decode(Some(largest), truncated, n) {
                Some(pn) => {
                    let win = 1u64 << (8 * n);
                    pn_truncate(pn, n) == truncated && pn.abs_diff(largest + 1) <= win / 2 + win / 2
                }
                // Only next to 2^62 may the nearest candidate be out of range.
                None => largest > MAX_PN - (1 << 32),
            }
        }

        fn header_parse_then_emit(bytes: Vec<u8>, c8: bool) -> bool {
            let c = if c8 { CID_LEN } else { 0 };
            match ShortHeader::parse(&bytes, c) {
                Ok((h, n)) => {
                    let mut out = [0u8; MAX_SHORT_HEADER];
                    h.emit(&mut out) == Ok(n) && out[..n] == bytes[..n]
                }
                Err(_) => true,
            }
        }
    }
}
