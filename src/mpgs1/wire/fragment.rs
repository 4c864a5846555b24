//! APP_FRAGMENT data (PROTOCOL.md §8): the 6-byte fragment header, and our
//! sender's split of a large message into chunks.
//!
//! The split (normative, §8 "Our sender"):
//!
//! ```text
//! MAX_SINGLE    = MAX_PAYLOAD_SIZE - 2     largest message sent unfragmented
//! FRAG_TAIL_MAX = MAX_PAYLOAD_SIZE - 8     largest chunk that fits (6 B header + 2 B msgseq)
//! FRAG_CHUNK    = min(1024, FRAG_TAIL_MAX)
//! while remaining > FRAG_TAIL_MAX: cut FRAG_CHUNK; the final chunk is the remainder
//! ```
//!
//! It is computed in closed form: a message of `len > MAX_SINGLE` bytes
//! has `k = ceil((len − FRAG_TAIL_MAX) / FRAG_CHUNK)` full chunks and one
//! final chunk of `len − k·FRAG_CHUNK` bytes. The final chunk lies in
//! `(FRAG_TAIL_MAX − FRAG_CHUNK)..=FRAG_TAIL_MAX` exclusive of its lower
//! bound: 403..=1426 at MTU 1500, so never the 1427 that the reference
//! cannot send.

use core::ops::Range;

use super::WireError;

pub use crate::config::fragments::FRAGMENT_HEADER_LEN;

/// The header at the start of every APP_FRAGMENT message's data (§8).
///
/// [`FragmentHeader::parse`] checks only the length; the receiver's value
/// rules are in [`FragmentHeader::is_valid`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragmentHeader {
    /// Identifies the fragmented message; on the 1..=65535 ring, never 0 from us.
    pub frag_id: u16,
    /// Position of this fragment, **1-based**.
    pub index: u16,
    /// Total number of fragments of the message.
    pub count: u16,
}

impl FragmentHeader {
    /// Splits APP_FRAGMENT message data into its header and chunk.
    /// [`WireError::Truncated`] when `data` is shorter than 6 bytes.
    #[inline]
    pub fn parse(data: &[u8]) -> Result<(FragmentHeader, &[u8]), WireError> {
        let (h, chunk) = data.split_first_chunk::<FRAGMENT_HEADER_LEN>().ok_or(WireError::Truncated)?;
        Ok((
            FragmentHeader {
                frag_id: u16::from_be_bytes([h[0], h[1]]),
                index: u16::from_be_bytes([h[2], h[3]]),
                count: u16::from_be_bytes([h[4], h[5]]),
            },
            chunk,
        ))
    }

    /// Writes the 6 header bytes.
    #[inline]
    pub fn emit(&self, out: &mut [u8; FRAGMENT_HEADER_LEN]) {
        let [f0, f1] = self.frag_id.to_be_bytes();
        let [i0, i1] = self.index.to_be_bytes();
        let [c0, c1] = self.count.to_be_bytes();
        *out = [f0, f1, i0, i1, c0, c1];
    }

    /// The header checks of our receiver (§8 "Our receiver"): `frag_id ≠ 0`,
    /// `2 ≤ count ≤ max_fragments` and `1 ≤ index ≤ count`. The chunk and
    /// size checks are the caller's.
    #[inline]
    pub const fn is_valid(&self, max_fragments: usize) -> bool {
        self.frag_id != 0
            && self.count >= 2
            && self.count as usize <= max_fragments
            && self.index >= 1
            && self.index <= self.count
    }
}

pub use crate::config::fragments::{frag_chunk, frag_tail_max, fragment_count, max_single};

/// The byte range of the message held by fragment `i` (0-based, so its
/// header `index` is `i + 1`), in O(1). Consistent with
/// [`fragment_count`]: the ranges for `0..count` are non-empty (for
/// `len > 0`), contiguous and cover `0..len`. An `i ≥ count` gives the empty
/// range `len..len`.
#[inline]
pub const fn fragment_range(len: usize, max_payload: usize, i: usize) -> Range<usize> {
    let count = fragment_count(len, max_payload);
    if i >= count {
        return len..len;
    }
    if count == 1 {
        return 0..len;
    }
    let chunk = frag_chunk(max_payload);
    // `i < count`, so `i * chunk <= (count - 1) * chunk < len`.
    let start = i * chunk;
    if i + 1 == count { start..len } else { start..start + chunk }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{hex, vectors};
    use super::*;
    use quickcheck::quickcheck;
    use std::vec::Vec;

    const MAX: usize = 1434;
    /// `MAX_PAYLOAD_SIZE` at MTU 576: 576 − 28 − 20 − 16 − 2.
    const MAX_576: usize = 510;

    fn lens(len: usize, max: usize) -> Vec<usize> {
        (0..fragment_count(len, max)).map(|i| fragment_range(len, max, i).len()).collect()
    }

    #[test]
    fn constants_at_mtu_1500() {
        assert_eq!(max_single(MAX), 1432);
        assert_eq!(frag_tail_max(MAX), 1426);
        assert_eq!(frag_chunk(MAX), 1024);
        assert_eq!(frag_chunk(MAX_576), 502);
        assert_eq!(frag_chunk(8), 0);
        assert_eq!(fragment_count(5000, 8), 0);
        assert_eq!(fragment_range(5000, 8, 0), 5000..5000);
    }

    /// §8: our split examples.
    #[test]
    fn split_examples() {
        assert_eq!(lens(1432, MAX), [1432]);
        assert_eq!(lens(1433, MAX), [1024, 409]);
        assert_eq!(lens(1434, MAX), [1024, 410]);
        assert_eq!(lens(2451, MAX), [1024, 1024, 403]);
        assert_eq!(lens(3000, MAX), [1024, 1024, 952]);
        assert_eq!(fragment_range(3000, MAX, 1), 1024..2048);
        assert_eq!(fragment_range(3000, MAX, 2), 2048..3000);
        assert_eq!(fragment_range(3000, MAX, 3), 3000..3000);
    }

    /// §17 `fragments_3000_bytes`: headers and chunk lengths.
    #[test]
    fn vector_3000_bytes() {
        let v = vectors();
        let frags = v["fragments_3000_bytes"].as_array().expect("array");
        assert_eq!(frags.len(), fragment_count(3000, MAX));
        let message = [0u8; 3000];
        for (i, f) in frags.iter().enumerate() {
            assert_eq!(f["type"].as_u64(), Some(7));
            assert_eq!(f["msgseq"].as_u64(), Some(i as u64 + 1));
            let want_hdr = hex(f["frag_hdr"].as_str().expect("hex"));
            let h = FragmentHeader { frag_id: 1, index: i as u16 + 1, count: frags.len() as u16 };
            assert!(h.is_valid(8192));
            let mut out = [0u8; FRAGMENT_HEADER_LEN];
            h.emit(&mut out);
            assert_eq!(&out[..], &want_hdr[..]);
            let range = fragment_range(3000, MAX, i);
            assert_eq!(Some(range.len() as u64), f["data_len"].as_u64());
            // Header ‖ chunk parses back.
            let mut data = out.to_vec();
            data.extend_from_slice(&message[range.clone()]);
            let (parsed, chunk) = FragmentHeader::parse(&data).expect("valid");
            assert_eq!(parsed, h);
            assert_eq!(chunk.len(), range.len());
        }
    }

    #[test]
    fn header_validity() {
        let h = |frag_id, index, count| FragmentHeader { frag_id, index, count };
        assert!(h(1, 1, 2).is_valid(8192));
        assert!(h(65535, 8192, 8192).is_valid(8192));
        assert!(!h(0, 1, 2).is_valid(8192));
        assert!(!h(1, 1, 1).is_valid(8192));
        assert!(!h(1, 0, 2).is_valid(8192));
        assert!(!h(1, 3, 2).is_valid(8192));
        assert!(!h(1, 1, 8193).is_valid(8192));
        assert_eq!(FragmentHeader::parse(&[0; 5]), Err(WireError::Truncated));
        let bytes = hex("000100020003");
        let (p, chunk) = FragmentHeader::parse(&bytes).expect("valid");
        assert_eq!(p, h(1, 2, 3));
        assert!(chunk.is_empty());
    }

    /// Every message size up to 8 MiB splits into fragments that each fit a
    /// datagram, with the final chunk in `403..=1426` (never 1427) at MTU
    /// 1500, and likewise at MTU 576.
    #[test]
    fn every_size_up_to_8_mib_fits() {
        for max in [MAX, MAX_576] {
            let tail = frag_tail_max(max);
            let chunk = frag_chunk(max);
            for len in 0..=8 << 20 {
                let count = fragment_count(len, max);
                if len <= max_single(max) {
                    assert_eq!(count, 1);
                    assert_eq!(fragment_range(len, max, 0), 0..len);
                    continue;
                }
                assert!(count >= 2, "{len}");
                let last = fragment_range(len, max, count - 1);
                assert_eq!(last.end, len);
                assert_eq!(last.start, (count - 1) * chunk);
                assert!(!last.is_empty() && last.len() <= tail, "{len}");
                assert!(last.len() > tail - chunk, "{len}");
                assert!(last.len() + FRAGMENT_HEADER_LEN + 2 <= max);
                assert_ne!(last.len(), 1427);
                assert_eq!(fragment_range(len, max, 0), 0..chunk);
                assert!(chunk + FRAGMENT_HEADER_LEN + 2 <= max);
            }
            if max == MAX {
                // 8 MiB is exactly the reference's 8192-fragment limit.
                assert_eq!(fragment_count(8 << 20, max), 8192);
            }
        }
    }

    /// The O(1) plan equals the literal loop of §8.
    fn loop_split(len: usize, max: usize) -> Vec<usize> {
        if len <= max_single(max) {
            return std::vec![len];
        }
        let mut out = Vec::new();
        let mut remaining = len;
        while remaining > frag_tail_max(max) {
            out.push(frag_chunk(max));
            remaining -= frag_chunk(max);
        }
        out.push(remaining);
        out
    }

    #[test]
    fn tiny_payloads_match_loop() {
        for max in 9..40 {
            assert_eq!(frag_chunk(max), max - 8);
            for len in 0..500 {
                assert_eq!(lens(len, max), loop_split(len, max), "{len} {max}");
            }
        }
    }

    quickcheck! {
        fn parse_never_panics(data: Vec<u8>) -> bool {
            match FragmentHeader::parse(&data) {
                Ok((_, chunk)) => chunk.len() + FRAGMENT_HEADER_LEN == data.len(),
                Err(e) => e == WireError::Truncated && data.len() < FRAGMENT_HEADER_LEN,
            }
        }

        fn emit_parse_round_trip(frag_id: u16, index: u16, count: u16) -> bool {
            let h = FragmentHeader { frag_id, index, count };
            let mut out = [0u8; FRAGMENT_HEADER_LEN];
            h.emit(&mut out);
            FragmentHeader::parse(&out) == Ok((h, &[][..]))
        }

        fn plan_matches_loop(len: u32, mtu: u16) -> bool {
            let len = len as usize % (1 << 20);
            let max = 100 + usize::from(mtu % 1400);
            lens(len, max) == loop_split(len, max)
                && (0..fragment_count(len, max))
                    .all(|i| fragment_range(len, max, i).start
                        == if i == 0 { 0 } else { fragment_range(len, max, i - 1).end })
        }
    }
}
