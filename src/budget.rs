//! The reassembly budget: bytes every connection of an endpoint together,
//! and the connections from one address together, may hold for
//! reassembling fragmented messages. The endpoint owns the totals (the
//! per-address share lives in the admission state);
//! a connection gets a [`Room`] by value with each input and the endpoint
//! books the change in its bytes afterwards.

/// What one connection may hold while it handles one input: the room the
/// endpoint-wide and its address's budgets leave beside what every *other*
/// connection holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Room {
    total: usize,
    address: usize,
}

impl Room {
    /// The room beside what the other connections hold: `total` of the
    /// endpoint-wide budget, `address` of its address's.
    pub(crate) fn new(total: usize, address: usize) -> Room {
        Room { total, address }
    }

    /// Bytes a connection that now holds `own` may still take.
    #[inline]
    pub(crate) fn left(&self, own: usize) -> usize {
        self.total.saturating_sub(own).min(self.address.saturating_sub(own))
    }
}

/// The endpoint-wide total.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Budget {
    held: usize,
}

impl Budget {
    /// Bytes held by every connection together.
    pub(crate) fn held(&self) -> usize {
        self.held
    }

    /// Bytes of `cap` left beside the other connections, for one that holds `own`.
    pub(crate) fn beside(&self, cap: usize, own: usize) -> usize {
        cap.saturating_sub(self.held.saturating_sub(own))
    }

    /// One connection went from `before` to `after` bytes.
    pub(crate) fn changed(&mut self, before: usize, after: usize) {
        self.held = self.held.saturating_sub(before).saturating_add(after);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_is_what_the_tighter_budget_leaves() {
        // 100 left endpoint-wide and 40 for the address; the connection
        // holds 10, so it may grow to 50 in all.
        let r = Room::new(110, 50);
        assert_eq!(r.left(10), 40);
        assert_eq!(r.left(50), 0);
        assert_eq!(r.left(0), 50);
        let mut b = Budget::default();
        b.changed(0, 30);
        b.changed(10, 0);
        assert_eq!((b.held(), b.beside(25, 20)), (20, 25));
        assert_eq!(b.beside(25, 0), 5);
    }
}
