//! The 1,024-bit replay window (MPGS2.md §3.2).
//!
//! Two steps, so that only authenticated packets move it (the netcode #86
//! lesson): [`ReplayWindow::check`] before decryption skips useless AEAD
//! work on duplicates and stale packets, and [`ReplayWindow::mark`] after the
//! tag has verified records the packet number.

/// Bits in the window.
pub const WINDOW_BITS: u64 = 1024;
const WORDS: usize = (WINDOW_BITS / 64) as usize;

/// Received packet numbers: the largest authenticated one and a bitmap of
/// it and the 1,023 below (Decision in §3.2: the window covers
/// `[largest − 1023, largest]`; anything older is refused).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    largest: Option<u64>,
    /// Bit `pn % 1024` is set when `pn` (inside the window) was received.
    bits: [u64; WORDS],
}

/// What [`ReplayWindow::check`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replay {
    /// Not seen: worth opening.
    Fresh,
    /// Seen already.
    Duplicate,
    /// Older than the window: treated as a replay.
    TooOld,
}

impl ReplayWindow {
    /// An empty window.
    pub const fn new() -> ReplayWindow {
        ReplayWindow { largest: None, bits: [0; WORDS] }
    }

    /// The largest authenticated packet number, the reference for packet
    /// number recovery (§3.2).
    pub fn largest(&self) -> Option<u64> {
        self.largest
    }

    fn bit(pn: u64) -> (usize, u64) {
        let i = pn % WINDOW_BITS;
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    /// Step 1, before decryption: whether `pn` may be new. Reads only.
    pub fn check(&self, pn: u64) -> Replay {
        let Some(largest) = self.largest else { return Replay::Fresh };
        if pn > largest {
            return Replay::Fresh;
        }
        if largest - pn >= WINDOW_BITS {
            return Replay::TooOld;
        }
        let (w, m) = Self::bit(pn);
        if self.bits[w] & m != 0 { Replay::Duplicate } else { Replay::Fresh }
    }

    /// Step 2, after the tag verified: records `pn`. Returns whether it is
    /// the new largest (which §6.2 and key updates care about). A `pn` that
    /// [`check`](Self::check) would refuse leaves the window unchanged.
    pub fn mark(&mut self, pn: u64) -> bool {
        if self.check(pn) != Replay::Fresh {
            return false;
        }
        let newest = match self.largest {
            Some(largest) if pn <= largest => false,
            Some(largest) => {
                // Clear the bits of the PNs the window slides over.
                let shift = pn - largest;
                if shift >= WINDOW_BITS {
                    self.bits = [0; WORDS];
                } else {
                    for p in largest + 1..=pn {
                        let (w, m) = Self::bit(p);
                        self.bits[w] &= !m;
                    }
                }
                self.largest = Some(pn);
                true
            }
            None => {
                self.largest = Some(pn);
                true
            }
        };
        let (w, m) = Self::bit(pn);
        self.bits[w] |= m;
        newest
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeSet;
    use alloc::vec::Vec;
    use quickcheck::quickcheck;

    #[test]
    fn basics() {
        let mut w = ReplayWindow::new();
        assert_eq!(w.check(5), Replay::Fresh);
        // Checking alone changes nothing: a forged packet that fails its tag
        // must not move the window.
        assert_eq!(w.check(5), Replay::Fresh);
        assert_eq!(w.largest(), None);
        assert!(w.mark(5));
        assert_eq!(w.check(5), Replay::Duplicate);
        assert!(!w.mark(5));
        assert_eq!(w.check(3), Replay::Fresh);
        assert!(!w.mark(3), "not the largest");
        assert_eq!(w.check(3), Replay::Duplicate);
        assert!(w.mark(5 + 1023));
        assert_eq!(w.check(5), Replay::Duplicate, "still inside: largest − 1023");
        assert_eq!(w.check(4), Replay::TooOld);
        assert_eq!(w.check(6), Replay::Fresh);
        assert!(w.mark(5 + 1024));
        assert_eq!(w.check(5), Replay::TooOld);
        assert!(w.mark(1 << 40));
        assert_eq!(w.check((1 << 40) - 1), Replay::Fresh, "a big jump clears the map");
        assert_eq!(w.check(5 + 1024), Replay::TooOld);
    }

    quickcheck! {
        /// Against a model that remembers every PN.
        fn matches_model(steps: Vec<(u16, bool)>) -> bool {
            let mut w = ReplayWindow::new();
            let mut seen = BTreeSet::new();
            let mut largest: Option<u64> = None;
            let mut base = 0u64;
            for (d, jump) in steps {
                if jump {
                    base += u64::from(d);
                }
                let pn = base + u64::from(d % 2048);
                let expect = match largest {
                    Some(l) if pn <= l && l - pn >= WINDOW_BITS => Replay::TooOld,
                    _ if seen.contains(&pn) => Replay::Duplicate,
                    _ => Replay::Fresh,
                };
                if w.check(pn) != expect {
                    return false;
                }
                if expect == Replay::Fresh {
                    let newest = largest.is_none_or(|l| pn > l);
                    if w.mark(pn) != newest {
                        return false;
                    }
                    seen.insert(pn);
                    largest = Some(largest.map_or(pn, |l| l.max(pn)));
                }
                if w.largest() != largest {
                    return false;
                }
            }
            true
        }
    }
}
