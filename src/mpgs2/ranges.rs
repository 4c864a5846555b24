//! The receiver's set of packet-number ranges to acknowledge (MPGS2.md
//! §3.4, §4.1; RFC 9000 §13.2).
//!
//! Up to 32 disjoint ranges, kept highest first in a fixed array (no
//! allocation). A packet number that would make a 33rd range drops the
//! lowest range instead (Decision in §4.1, as RFC 9000 §13.2.4 allows:
//! old ranges are the least useful). [`RangeSet::encode_ack`] writes an
//! ACK frame with as many ranges as fit.

use super::WireError;
use super::buf::Writer;
use super::frame::{MAX_ACK_RANGES, types};
use super::varint;

/// Most ranges kept: the first range of an ACK plus 31 more.
pub const MAX_RANGES: usize = MAX_ACK_RANGES + 1;

/// Disjoint, non-adjacent inclusive ranges `(smallest, largest)`, highest
/// first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeSet {
    ranges: [(u64, u64); MAX_RANGES],
    len: usize,
}

impl Default for RangeSet {
    fn default() -> Self {
        RangeSet::new()
    }
}

impl RangeSet {
    /// An empty set.
    pub const fn new() -> RangeSet {
        RangeSet { ranges: [(0, 0); MAX_RANGES], len: 0 }
    }

    /// The ranges, highest first.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.ranges[..self.len].iter().copied()
    }

    /// Number of ranges.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The largest packet number in the set.
    pub fn largest(&self) -> Option<u64> {
        (self.len > 0).then(|| self.ranges[0].1)
    }

    /// Whether `pn` is in the set.
    pub fn contains(&self, pn: u64) -> bool {
        self.iter().any(|(s, e)| s <= pn && pn <= e)
    }

    fn remove_at(&mut self, i: usize) {
        self.ranges.copy_within(i + 1..self.len, i);
        self.len -= 1;
    }

    /// Adds `pn`. Returns `false` when it was present already or fell below
    /// a full set's lowest range (and so was not recorded).
    pub fn insert(&mut self, pn: u64) -> bool {
        // Index of the first range whose largest is below pn.
        let i = self.ranges[..self.len].iter().position(|&(_, e)| e < pn).unwrap_or(self.len);
        if i > 0 && self.ranges[i - 1].0 <= pn {
            return false; // inside range i − 1
        }
        let joins_above = i > 0 && self.ranges[i - 1].0 == pn + 1;
        let joins_below = i < self.len && self.ranges[i].1 + 1 == pn;
        match (joins_above, joins_below) {
            (true, true) => {
                self.ranges[i - 1].0 = self.ranges[i].0;
                self.remove_at(i);
            }
            (true, false) => self.ranges[i - 1].0 = pn,
            (false, true) => self.ranges[i].1 = pn,
            (false, false) => {
                if self.len == MAX_RANGES {
                    if i == self.len {
                        return false;
                    }
                    self.len -= 1; // drop the lowest range
                }
                self.ranges.copy_within(i..self.len, i + 1);
                self.ranges[i] = (pn, pn);
                self.len += 1;
            }
        }
        true
    }

    /// Forgets every packet number below `pn` (§4.1: ranges below the
    /// largest of an ACK the peer has acknowledged are pruned).
    pub fn remove_below(&mut self, pn: u64) {
        while self.len > 0 {
            let last = self.len - 1;
            let (s, e) = self.ranges[last];
            if e < pn {
                self.len -= 1;
            } else {
                self.ranges[last].0 = s.max(pn);
                break;
            }
        }
    }

    /// Encoded size of the ACK frame for the first `n` ranges.
    fn frame_len(&self, ack_delay: u64, n: usize) -> usize {
        let (s0, e0) = self.ranges[0];
        let mut len = 1 + vlen(e0) + vlen(ack_delay) + vlen((n - 1) as u64) + vlen(e0 - s0);
        for k in 1..n {
            let (gap, l) = self.gap_len(k);
            len += vlen(gap) + vlen(l);
        }
        len
    }

    fn gap_len(&self, k: usize) -> (u64, u64) {
        let (s, e) = self.ranges[k];
        // Ranges are disjoint and non-adjacent: prev.smallest ≥ e + 2.
        (self.ranges[k - 1].0 - e - 2, e - s)
    }

    /// Writes an ACK frame (§3.4) with `ack_delay` in units of 8 µs and as
    /// many ranges as fit in the writer, highest first. Returns the number
    /// of ranges written; [`WireError::Truncated`] when not even the first
    /// fits, [`WireError::BadValue`] when the set is empty.
    pub fn encode_ack(&self, ack_delay: u64, w: &mut Writer<'_>) -> Result<usize, WireError> {
        if self.len == 0 {
            return Err(WireError::BadValue);
        }
        let mut n = self.len;
        while self.frame_len(ack_delay, n) > w.remaining() {
            n -= 1;
            if n == 0 {
                return Err(WireError::Truncated);
            }
        }
        let (s0, e0) = self.ranges[0];
        w.put_u8(types::ACK)?;
        w.put_varint(e0)?;
        w.put_varint(ack_delay)?;
        w.put_varint((n - 1) as u64)?;
        w.put_varint(e0 - s0)?;
        for k in 1..n {
            let (gap, l) = self.gap_len(k);
            w.put_varint(gap)?;
            w.put_varint(l)?;
        }
        Ok(n)
    }
}

fn vlen(v: u64) -> usize {
    varint::len(v).unwrap_or(8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpgs2::buf::Reader;
    use crate::mpgs2::frame::Frame;
    use alloc::collections::BTreeSet;
    use alloc::vec::Vec;
    use quickcheck::quickcheck;

    /// Maximal runs of a set, highest first.
    fn runs(set: &BTreeSet<u64>) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for &pn in set.iter().rev() {
            match out.last_mut() {
                Some((s, _)) if *s == pn + 1 => *s = pn,
                _ => out.push((pn, pn)),
            }
        }
        out
    }

    #[test]
    fn insert_merge_and_bound() {
        let mut r = RangeSet::new();
        assert!(r.insert(5));
        assert!(r.insert(7));
        assert!(!r.insert(5));
        assert_eq!(r.iter().collect::<Vec<_>>(), [(7, 7), (5, 5)]);
        assert!(r.insert(6));
        assert_eq!(r.iter().collect::<Vec<_>>(), [(5, 7)]);
        assert!(r.insert(4) && r.insert(8));
        assert_eq!(r.iter().collect::<Vec<_>>(), [(4, 8)]);
        // Fill to 32 ranges; a 33rd drops the lowest.
        let mut r = RangeSet::new();
        for k in 0..32u64 {
            r.insert(100 + 2 * k);
        }
        assert_eq!(r.len(), 32);
        assert!(!r.insert(50), "below a full set");
        assert!(r.insert(200));
        assert_eq!(r.len(), 32);
        assert!(!r.contains(100));
        assert!(r.contains(102) && r.contains(200));
        r.remove_below(150);
        assert_eq!(r.iter().last(), Some((150, 150)));
        r.remove_below(1000);
        assert!(r.is_empty());
        assert_eq!(r.largest(), None);
    }

    #[test]
    fn ack_encoding_truncates_lowest_ranges() {
        let mut r = RangeSet::new();
        for pn in [1u64, 2, 3, 10, 11, 20, 100] {
            r.insert(pn);
        }
        let mut buf = [0u8; 64];
        let mut w = Writer::new(&mut buf);
        assert_eq!(r.encode_ack(5, &mut w), Ok(4));
        let n = w.len();
        let Ok(Frame::Ack(a)) = Frame::parse(&mut Reader::new(&buf[..n])) else { panic!("parses") };
        assert_eq!(a.ranges().collect::<Vec<_>>(), r.iter().collect::<Vec<_>>());
        assert_eq!(a.ack_delay, 5);
        // Room for the first two ranges only (6 + 3 bytes).
        let mut small = [0u8; 9];
        let mut w = Writer::new(&mut small);
        assert_eq!(r.encode_ack(5, &mut w), Ok(2));
        let n = w.len();
        let Ok(Frame::Ack(a)) = Frame::parse(&mut Reader::new(&small[..n])) else { panic!("parses") };
        assert_eq!(a.ranges().collect::<Vec<_>>(), [(100, 100), (20, 20)]);
        assert_eq!(r.encode_ack(5, &mut Writer::new(&mut [0u8; 3])), Err(WireError::Truncated));
        assert_eq!(RangeSet::new().encode_ack(0, &mut Writer::new(&mut buf)), Err(WireError::BadValue));
    }

    quickcheck! {
        /// Against a BTreeSet model that drops its lowest run when a 33rd appears.
        fn matches_model(pns: Vec<u16>, prune: Option<u16>) -> bool {
            let mut r = RangeSet::new();
            let mut model = BTreeSet::new();
            for pn in pns {
                let pn = u64::from(pn % 512);
                let before = model.clone();
                model.insert(pn);
                let mut rs = runs(&model);
                if rs.len() > MAX_RANGES {
                    let (s, e) = rs.pop().expect("non-empty");
                    for x in s..=e {
                        model.remove(&x);
                    }
                }
                let changed = model != before;
                if r.insert(pn) != changed {
                    return false;
                }
                if r.iter().collect::<Vec<_>>() != runs(&model) {
                    return false;
                }
            }
            if let Some(p) = prune {
                let p = u64::from(p % 512);
                r.remove_below(p);
                model.retain(|&x| x >= p);
            }
            if r.iter().collect::<Vec<_>>() != runs(&model) {
                return false;
            }
            // The ACK frame round-trips to the same ranges.
            if r.is_empty() {
                return true;
            }
            let mut buf = [0u8; 512];
            let mut w = Writer::new(&mut buf);
            let n = r.encode_ack(3, &mut w).expect("fits");
            let len = w.len();
            match Frame::parse(&mut Reader::new(&buf[..len])) {
                Ok(Frame::Ack(a)) => n == r.len() && a.ranges().collect::<Vec<_>>() == runs(&model),
                _ => false,
            }
        }
    }
}
