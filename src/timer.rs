//! A connection's timers as a fixed table indexed by an enum (the shape of
//! quinn-proto's `connection/timer.rs`): each protocol version names its
//! timers with an enum, and the connection's next deadline is the earliest
//! armed entry. An early or spurious check finds nothing expired.

use core::marker::PhantomData;

use crate::time::Instant;

/// A timer name: an enum whose variants index the table.
pub(crate) trait TimerKind: Copy + 'static {
    /// Every variant, in index order.
    const ALL: &'static [Self];
    /// This variant's index, below `ALL.len()`.
    fn index(self) -> usize;
}

/// `N` optional deadlines, one per variant of `T`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TimerTable<T, const N: usize> {
    at: [Option<Instant>; N],
    kind: PhantomData<T>,
}

impl<T: TimerKind, const N: usize> TimerTable<T, N> {
    /// A table with every timer stopped.
    pub(crate) fn new() -> Self {
        debug_assert_eq!(T::ALL.len(), N, "one entry per timer");
        TimerTable { at: [None; N], kind: PhantomData }
    }

    /// Arms `timer` at `when`, or stops it with `None`.
    #[inline]
    pub(crate) fn set(&mut self, timer: T, when: Option<Instant>) {
        self.at[timer.index()] = when;
    }

    /// When `timer` fires, if armed.
    #[inline]
    pub(crate) fn get(&self, timer: T) -> Option<Instant> {
        self.at[timer.index()]
    }

    /// Whether `timer` is armed and due at `now`.
    #[inline]
    pub(crate) fn expired(&self, timer: T, now: Instant) -> bool {
        self.get(timer).is_some_and(|t| t <= now)
    }

    /// Stops every timer.
    pub(crate) fn stop_all(&mut self) {
        self.at = [None; N];
    }

    /// The earliest armed deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.at.iter().flatten().copied().min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum T {
        A,
        B,
    }

    impl TimerKind for T {
        const ALL: &'static [T] = &[T::A, T::B];
        fn index(self) -> usize {
            self as usize
        }
    }

    #[test]
    fn next_is_the_earliest_armed_timer() {
        let mut t = TimerTable::<T, 2>::new();
        assert_eq!(t.next(), None);
        t.set(T::B, Some(Instant::from_secs(3)));
        t.set(T::A, Some(Instant::from_secs(5)));
        assert_eq!(t.next(), Some(Instant::from_secs(3)));
        assert!(!t.expired(T::A, Instant::from_secs(4)), "an early check finds nothing");
        assert!(t.expired(T::B, Instant::from_secs(3)));
        t.set(T::B, None);
        assert_eq!(t.next(), Some(Instant::from_secs(5)));
        t.stop_all();
        assert_eq!(t.next(), None);
        assert_eq!(T::ALL.len(), 2);
    }
}
