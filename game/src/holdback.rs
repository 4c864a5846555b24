//! Application-level ordering over an exactly-once but unordered channel
//! (MPGS/1's `Reliable`): number the messages, hold back the early ones.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

/// Releases numbered items in number order, each once: an item that
/// arrives early waits until every earlier one has arrived.
///
/// MPGS/1's `Reliable` delivers every message exactly once but not in
/// order; number them at the sender (0, 1, 2, ...) and pass them through a
/// `HoldBack` to get send order (a chat, a list of events). MPGS/2's
/// ordered channels will make this unnecessary.
///
/// The number of held items is bounded by `capacity`: beyond it, an item
/// is refused (counted) rather than held, since only a broken or hostile
/// sender gets that far ahead.
///
/// ```
/// use mpgameserver_game::HoldBack;
///
/// let mut chat = HoldBack::new(64);
/// assert!(chat.push(1, "world").is_empty()); // early: held
/// assert_eq!(chat.push(0, "hello"), ["hello", "world"]);
/// assert!(chat.push(0, "hello").is_empty()); // a repeat: ignored
/// ```
#[derive(Clone, Debug)]
pub struct HoldBack<T> {
    next: u64,
    held: BTreeMap<u64, T>,
    capacity: usize,
    refused: u64,
}

impl<T> HoldBack<T> {
    /// Expects item 0 first; holds at most `capacity` early items.
    pub fn new(capacity: usize) -> HoldBack<T> {
        HoldBack::starting_at(0, capacity)
    }

    /// Expects item `next` first (joining a stream already under way);
    /// earlier items are ignored.
    pub fn starting_at(next: u64, capacity: usize) -> HoldBack<T> {
        HoldBack { next, held: BTreeMap::new(), capacity, refused: 0 }
    }

    /// Takes item `seq`; returns the items now in order (possibly none).
    pub fn push(&mut self, seq: u64, item: T) -> Vec<T> {
        let mut out = Vec::new();
        if seq < self.next || self.held.contains_key(&seq) {
            return out;
        }
        if seq > self.next {
            if self.held.len() >= self.capacity {
                self.refused += 1;
            } else {
                self.held.insert(seq, item);
            }
            return out;
        }
        out.push(item);
        self.next += 1;
        while let Some(item) = self.held.remove(&self.next) {
            out.push(item);
            self.next += 1;
        }
        out
    }

    /// The number of the next item to release.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Items waiting for an earlier one.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Early items refused because `capacity` were held.
    pub fn refused(&self) -> u64 {
        self.refused
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::quickcheck;

    quickcheck! {
        // Any arrival order with repeats gives every item once, in order.
        fn any_order_comes_out_sorted(order: Vec<u8>) -> bool {
            let n = order.iter().map(|&k| u64::from(k) + 1).max().unwrap_or(0);
            let mut h = HoldBack::new(256);
            let mut out = Vec::new();
            for &k in order.iter().chain(&order) {
                out.extend(h.push(u64::from(k), u64::from(k)));
            }
            for k in 0..n {
                out.extend(h.push(k, k));
            }
            out == (0..n).collect::<Vec<_>>() && h.held() == 0
        }
    }

    #[test]
    fn capacity_bounds_what_is_held() {
        let mut h = HoldBack::new(2);
        assert!(h.push(5, ()).is_empty() && h.push(6, ()).is_empty() && h.push(7, ()).is_empty());
        assert_eq!((h.held(), h.refused()), (2, 1));
    }

    #[test]
    fn a_late_joiner_starts_where_the_stream_is() {
        let mut h = HoldBack::starting_at(10, 8);
        assert!(h.push(3, 'x').is_empty());
        assert!(h.push(11, 'b').is_empty());
        assert_eq!(h.push(10, 'a'), ['a', 'b']);
        assert_eq!(h.next(), 12);
    }
}
