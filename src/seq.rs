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

/// A duplicate window over ring values: the newest value `cur` and a bitmap of
/// the `size` values before it (§7.1).
///
/// `WORDS` 64-bit words hold the bitmap; bit `d − 1` (counting from bit 0 of
/// word 0) records `cur − d`. The packet window (`size = 32`) exports the
/// bitmap as the header's `ack_bits` with [`Window::ack_bits`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window<const WORDS: usize> {
    cur: u16,
    size: u16,
    bits: [u64; WORDS],
}

/// The 32-entry packet window, which also produces `ack`/`ack_bits`.
pub type PacketWindow = Window<1>;
/// The message (`msgseq`) window: up to 1024 entries.
pub type MessageWindow = Window<16>;

impl<const WORDS: usize> Window<WORDS> {
    /// An empty window remembering `size` values behind the newest.
    ///
    /// `size` is clamped to `1..=64·WORDS`.
    pub const fn new(size: u16) -> Self {
        let max = (WORDS * 64) as u16;
        let size = if size == 0 {
            1
        } else if size > max {
            max
        } else {
            size
        };
        Window {
            cur: 0,
            size,
            bits: [0; WORDS],
        }
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
            if self.get(d as usize - 1) {
                Insert::Duplicate
            } else {
                Insert::Accepted
            }
        } else {
            Insert::Stale
        }
    }

    /// Records `s` and reports whether it was new (§7.1).
    ///
    /// `0` is never a valid value and is reported as [`Insert::Stale`].
    pub fn insert(&mut self, s: u16) -> Insert {
        let verdict = self.check(s);
        if verdict != Insert::Accepted {
            return verdict;
        }
        if self.cur == 0 {
            self.cur = s;
            return verdict;
        }
        let d = diff(self.cur, s);
        if d < 0 {
            let n = (-d) as u32;
            self.shift_up(n);
            if n <= self.size as u32 {
                self.set(n as usize - 1);
            }
            self.cur = s;
        } else {
            self.set(d as usize - 1);
        }
        verdict
    }

    /// The header `ack_bits` for this window: bit `0x8000_0000 >> (d − 1)`
    /// means `newest − d` was received, for `d` in 1..=32.
    #[inline]
    pub fn ack_bits(&self) -> u32 {
        // Bits 0..32 of word 0 hold d = 1..=32 from the low end; the header
        // wants d = 1 at the top.
        (self.bits[0] as u32).reverse_bits()
    }

    #[inline]
    fn get(&self, i: usize) -> bool {
        self.bits[i / 64] & (1u64 << (i % 64)) != 0
    }

    #[inline]
    fn set(&mut self, i: usize) {
        self.bits[i / 64] |= 1u64 << (i % 64);
    }

    /// Moves every recorded bit `n` positions further from `cur`, forgetting
    /// what falls beyond `size`.
    fn shift_up(&mut self, n: u32) {
        let n = n as usize;
        if n >= self.size as usize {
            self.bits = [0; WORDS];
            return;
        }
        let (words, bits) = (n / 64, n % 64);
        for i in (0..WORDS).rev() {
            let mut v = 0u64;
            if i >= words {
                v = self.bits[i - words] << bits;
                if bits != 0 && i > words {
                    v |= self.bits[i - words - 1] >> (64 - bits);
                }
            }
            self.bits[i] = v;
        }
        // Clear the bits at or beyond `size`.
        let size = self.size as usize;
        for i in 0..WORDS {
            let lo = i * 64;
            if lo >= size {
                self.bits[i] = 0;
            } else if size - lo < 64 {
                self.bits[i] &= (1u64 << (size - lo)) - 1;
            }
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
                }
            }
            true
        }
    }
}
