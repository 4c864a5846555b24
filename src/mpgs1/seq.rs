//! Sequence numbers on the MPGS/1 ring of 65535 values (PROTOCOL.md §6) and
//! the duplicate windows over them (§7.1).
//!
//! The ring is 1..=65535; `0` means "none" and is never a valid number. The
//! modulus is 65535, not 65536, so wrapping `u16` arithmetic is wrong by one
//! across the wrap; everything here uses [`next`] and [`diff`].

/// The successor of `s` on the ring: `s + 1`, with `next(65535) = 1`.
///
/// `next(0)` is `1`, so a counter that starts at "none" yields `1` first.
#[inline]
pub const fn next(s: u16) -> u16 {
    if s == u16::MAX { 1 } else { s + 1 }
}

/// The predecessor of `s` on the ring (`prev(1) = 65535`).
#[inline]
pub const fn prev(s: u16) -> u16 {
    if s <= 1 { u16::MAX } else { s - 1 }
}

/// `s` moved back `n` steps on the ring (`n` may exceed the ring size).
#[inline]
pub const fn back(s: u16, n: u32) -> u16 {
    let v = (s as u32 + 65535 - (n % 65535)) % 65535;
    if v == 0 { 65535 } else { v as u16 }
}

/// `s` moved forward `n` steps on the ring.
#[inline]
pub const fn forward(s: u16, n: u32) -> u16 {
    let v = (s as u32 + (n % 65535)) % 65535;
    if v == 0 { 65535 } else { v as u16 }
}

/// Signed distance from `b` to `a` on the ring, in `-32767..=32767`.
///
/// `a` is newer than `b` when the result is positive. Follows §6 exactly,
/// including for `0` ("none"), which is simply never newer than a real value.
#[inline]
pub const fn diff(a: u16, b: u16) -> i32 {
    let r = a as i32 - b as i32;
    if r > 32767 {
        r - 65535
    } else if r < -32767 {
        r + 65535
    } else {
        r
    }
}

/// A counter handing out ring values: 1, 2, …, 65535, 1, … (never 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    last: u16,
}

impl Counter {
    /// A counter whose first value is `1`.
    pub const fn new() -> Counter {
        Counter { last: 0 }
    }

    /// The next value (never 0).
    #[inline]
    pub fn advance(&mut self) -> u16 {
        self.last = next(self.last);
        self.last
    }

    /// The last value handed out, or 0 if none yet.
    #[inline]
    pub const fn last(&self) -> u16 {
        self.last
    }

    /// The value [`Counter::advance`] will return next.
    #[inline]
    pub const fn peek(&self) -> u16 {
        next(self.last)
    }
}

/// Outcome of [`Window::insert`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Insert {
    /// Not seen before, and now recorded.
    Accepted,
    /// Already recorded: a duplicate.
    Duplicate,
    /// Older than the window can remember; rejected as a possible replay
    /// (§15 rule 6). The reference would have accepted it.
    Stale,
}

/// A duplicate window over ring values: the newest value `cur` and a record
/// of which of the `size` values before it were seen (§7.1).
///
/// The record is a ring bitmap of `64·WORDS` bits indexed by an absolute
/// position that grows by the distance each newer value moves `cur` (the
/// replay-window technique of RFC 6479): accepting a newer value clears only
/// the bits it skips, instead of shifting the whole bitmap, so the 1024-entry
/// message window costs the same per datagram as the 32-entry packet window.
/// The packet window exports its record as the header's `ack_bits` with
/// [`Window::ack_bits`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window<const WORDS: usize> {
    cur: u16,
    size: u16,
    /// Absolute position of `cur`; value `cur − d` lives at bit `(pos − d) mod 64·WORDS`.
    pos: u64,
    bits: [u64; WORDS],
}

/// The 32-entry packet window, which also produces `ack`/`ack_bits`.
pub type PacketWindow = Window<1>;
/// The message (`msgseq`) window: up to 1024 entries (17 words, since the
/// ring needs one bit more than the entries it remembers).
pub type MessageWindow = Window<17>;

impl<const WORDS: usize> Window<WORDS> {
    const BITS: u64 = 64 * WORDS as u64;

    /// An empty window remembering `size` values behind the newest.
    ///
    /// `size` is clamped to `1..=64·WORDS − 1`.
    pub const fn new(size: u16) -> Self {
        let max = (WORDS * 64 - 1) as u16;
        let size = if size == 0 {
            1
        } else if size > max {
            max
        } else {
            size
        };
        Window { cur: 0, size, pos: 0, bits: [0; WORDS] }
    }

    /// The newest accepted value, or 0 when empty.
    #[inline]
    pub const fn newest(&self) -> u16 {
        self.cur
    }

    /// How many values behind the newest the window remembers.
    #[inline]
    pub const fn size(&self) -> u16 {
        self.size
    }

    /// Whether `s` would be accepted, without recording it.
    #[inline]
    pub fn check(&self, s: u16) -> Insert {
        if s == 0 {
            return Insert::Stale;
        }
        if self.cur == 0 {
            return Insert::Accepted;
        }
        let d = diff(self.cur, s);
        if d < 0 {
            Insert::Accepted
        } else if d == 0 {
            Insert::Duplicate
        } else if d as u32 <= self.size as u32 {
            if self.get(self.pos - d as u64) { Insert::Duplicate } else { Insert::Accepted }
        } else {
            Insert::Stale
        }
    }

    /// Records `s` and reports whether it was new (§7.1).
    ///
    /// `0` is never a valid value and is reported as [`Insert::Stale`].
    #[inline]
    pub fn insert(&mut self, s: u16) -> Insert {
        let verdict = self.check(s);
        if verdict != Insert::Accepted {
            return verdict;
        }
        if self.cur == 0 {
            // Start far enough from zero that `pos − d` never underflows.
            self.pos = Self::BITS;
            self.cur = s;
            self.set(self.pos);
            return verdict;
        }
        let d = diff(self.cur, s);
        if d < 0 {
            let n = (-d) as u64;
            if n >= Self::BITS {
                self.bits = [0; WORDS];
            } else {
                self.clear_range(self.pos + 1, self.pos + n);
            }
            self.pos += n;
            self.cur = s;
            self.set(self.pos);
        } else {
            self.set(self.pos - d as u64);
        }
        verdict
    }

    /// The header `ack_bits` for this window: bit `0x8000_0000 >> (d − 1)`
    /// means `newest − d` was received, for `d` in 1..=32.
    #[inline]
    pub fn ack_bits(&self) -> u32 {
        if self.cur == 0 {
            return 0;
        }
        // Rotate so that `cur − d` lands on bit `64 − d` of word 0's image.
        let word = (self.pos / 64) as usize % WORDS;
        let lo = self.bits[word];
        let prev = self.bits[(word + WORDS - 1) % WORDS];
        let shift = (self.pos % 64) as u32;
        // The 64 bits ending at `pos`: bit 63 is `pos`, bit 63 − k is `pos − k`.
        let window = if shift == 63 { lo } else { (lo << (63 - shift)) | (prev >> (shift + 1)) };
        // Bits 62..=31 are d = 1..=32; mask d > size.
        let bits = (window >> 31) as u32;
        if self.size >= 32 { bits } else { bits & !(u32::MAX >> self.size) }
    }

    #[inline]
    fn get(&self, p: u64) -> bool {
        let i = p % Self::BITS;
        self.bits[(i / 64) as usize] & (1u64 << (i % 64)) != 0
    }

    #[inline]
    fn set(&mut self, p: u64) {
        let i = p % Self::BITS;
        self.bits[(i / 64) as usize] |= 1u64 << (i % 64);
    }

    /// Clears positions `from..to` (fewer than `BITS` of them) a word at a
    /// time, so a peer jumping far ahead costs at most `WORDS + 1` writes.
    fn clear_range(&mut self, from: u64, to: u64) {
        let mut p = from;
        while p < to {
            let i = p % Self::BITS;
            let bit = i % 64;
            let n = (64 - bit).min(to - p);
            let mask = if n == 64 { u64::MAX } else { ((1u64 << n) - 1) << bit };
            self.bits[(i / 64) as usize] &= !mask;
            p += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::quickcheck;

    #[test]
    fn ring_examples_of_section_6() {
        assert_eq!(next(65535), 1);
        assert_eq!(next(0), 1);
        assert_eq!(diff(1, 65535), 1);
        assert_eq!(diff(0x000A, 0xFFF0), 25);
        assert_eq!(diff(0xFFF0, 0x000A), -25);
        assert_eq!(diff(100, 65500), 135);
        assert_eq!(diff(32768, 1), 32767);
        assert_eq!(diff(32769, 1), -32767);
        assert_eq!(diff(0, 5), -5);
        assert_eq!(back(1, 1), 65535);
        assert_eq!(back(5, 2), 3);
        assert_eq!(forward(65535, 1), 1);
        assert_eq!(forward(65534, 3), 2);
        assert_eq!(prev(1), 65535);
    }

    /// The `seqnum` and `ack_bits_examples` entries of the reference's vectors.
    #[test]
    fn reference_vectors_seqnum_and_ack_bits() {
        let v = crate::mpgs1::wire::testutil::vectors();
        let sn = &v["seqnum"];
        assert_eq!(i64::from(next(65535)), sn["after_65535"].as_i64().unwrap());
        assert_eq!(i64::from(diff(1, 65535)), sn["diff(1,65535)"].as_i64().unwrap());
        assert_eq!(i64::from(diff(0x000A, 0xFFF0)), sn["diff(0x000A,0xFFF0)"].as_i64().unwrap());
        assert_eq!(i64::from(diff(0xFFF0, 0x000A)), sn["diff(0xFFF0,0x000A)"].as_i64().unwrap());
        let examples = v["ack_bits_examples"].as_array().unwrap();
        assert_eq!(examples.len(), 4);
        for ex in examples {
            let mut w = PacketWindow::new(32);
            for s in ex["received_in_order"].as_array().unwrap() {
                assert_eq!(w.insert(s.as_u64().unwrap() as u16), Insert::Accepted);
            }
            assert_eq!(u64::from(w.newest()), ex["hdr_ack"].as_u64().unwrap(), "{ex}");
            assert_eq!(std::format!("{:08X}", w.ack_bits()), ex["hdr_ack_bits"].as_str().unwrap(), "{ex}");
        }
    }

    #[test]
    fn counter_skips_zero() {
        let mut c = Counter::new();
        assert_eq!(c.advance(), 1);
        c.last = 65534;
        assert_eq!(c.advance(), 65535);
        assert_eq!(c.advance(), 1);
    }

    fn packets(seqs: &[u16]) -> PacketWindow {
        let mut w = PacketWindow::new(32);
        for &s in seqs {
            assert_eq!(w.insert(s), Insert::Accepted, "{s}");
        }
        w
    }

    #[test]
    fn ack_bits_examples_of_section_7_2() {
        let cases: [(&[u16], u16, u32); 6] = [
            (&[10, 11, 12], 12, 0xC000_0000),
            (&[10, 12, 11], 12, 0xC000_0000),
            (&[10, 12], 12, 0x4000_0000),
            (&[7, 8, 9, 10, 12], 12, 0x7800_0000),
            (&[65534, 65535, 1, 2], 2, 0xE000_0000),
            (&[5, 40], 40, 0),
        ];
        for (seqs, ack, bits) in cases {
            let w = packets(seqs);
            assert_eq!((w.newest(), w.ack_bits()), (ack, bits), "{seqs:?}");
        }
    }

    #[test]
    fn window_rejects_duplicates_and_stale() {
        let mut w = packets(&[100, 101]);
        assert_eq!(w.insert(101), Insert::Duplicate);
        assert_eq!(w.insert(100), Insert::Duplicate);
        assert_eq!(w.insert(69), Insert::Accepted); // 101 − 69 = 32: the oldest slot
        assert_eq!(w.insert(68), Insert::Stale); // 33 behind: beyond the window
    }

    #[test]
    fn window_edge_at_size() {
        let mut w = packets(&[100]);
        assert_eq!(w.insert(68), Insert::Accepted); // d = 32: inside
        assert_eq!(w.insert(67), Insert::Stale); // d = 33: beyond
        assert_eq!(w.insert(68), Insert::Duplicate);
        assert_eq!(w.insert(0), Insert::Stale);
    }

    #[test]
    fn message_window_spans_words() {
        let mut w = MessageWindow::new(1024);
        assert_eq!(w.insert(5000), Insert::Accepted);
        assert_eq!(w.insert(5000 - 1000), Insert::Accepted);
        assert_eq!(w.insert(5000 + 70), Insert::Accepted);
        // 4000 is now 1070 behind: stale.
        assert_eq!(w.insert(4000), Insert::Stale);
        assert_eq!(w.insert(5000), Insert::Duplicate);
        assert_eq!(w.insert(5000 - 953), Insert::Accepted);
        assert_eq!(w.insert(5000 - 953), Insert::Duplicate);
        assert_eq!(w.insert(5000 + 70 - 1024), Insert::Accepted);
        assert_eq!(w.insert(5000 + 70 - 1025), Insert::Stale);
    }

    /// A model of the window: the set of accepted values and the newest.
    fn model_insert(seen: &mut std::vec::Vec<u16>, cur: &mut u16, size: i32, s: u16) -> Insert {
        if s == 0 {
            return Insert::Stale;
        }
        if *cur != 0 {
            let d = diff(*cur, s);
            if d > size {
                return Insert::Stale;
            }
            if d >= 0 && seen.contains(&s) {
                return Insert::Duplicate;
            }
        }
        if *cur == 0 || diff(s, *cur) > 0 {
            *cur = s;
        }
        // Forget what is now beyond the window.
        let c = *cur;
        seen.retain(|&v| diff(c, v) <= size && diff(c, v) >= 0);
        seen.push(s);
        Insert::Accepted
    }

    quickcheck! {
        fn window_matches_model(start: u16, steps: std::vec::Vec<(i16, bool)>) -> bool {
            for size in [32u16, 1024] {
                let mut w = MessageWindow::new(size);
                let mut seen = std::vec::Vec::new();
                let mut cur = 0u16;
                let mut base = start.max(1);
                for &(delta, jump) in &steps {
                    let s = if jump {
                        base = forward(base, u32::from(delta.unsigned_abs()) % 2048);
                        base
                    } else {
                        back(base, u32::from(delta.unsigned_abs()) % 1100)
                    };
                    let got = w.insert(s);
                    let want = model_insert(&mut seen, &mut cur, i32::from(size), s);
                    if got != want || w.newest() != cur {
                        return false;
                    }
                    // ack_bits: bit 0x8000_0000 >> (d − 1) iff cur − d was seen.
                    let mut bits = 0u32;
                    for d in 1..=32u32.min(u32::from(size)) {
                        if seen.contains(&back(cur, d)) {
                            bits |= 0x8000_0000 >> (d - 1);
                        }
                    }
                    if w.ack_bits() != bits {
                        return false;
                    }
                }
            }
            true
        }
    }
}
