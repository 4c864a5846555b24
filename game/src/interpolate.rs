//! Snapshot interpolation: remote entities drawn a little in the past,
//! between two snapshots the server sent.

use alloc::collections::{BTreeMap, VecDeque};

use mpgameserver::{Duration, Instant};

/// A state that can be blended with another: `self` at `t = 0`, `other` at
/// `t = 1`.
pub trait Interpolate: Sized {
    /// The state a fraction `t` (in `[0, 1]`) of the way to `other`.
    fn interpolate(&self, other: &Self, t: f32) -> Self;
}

impl Interpolate for f32 {
    fn interpolate(&self, other: &f32, t: f32) -> f32 {
        self + (other - self) * t
    }
}

impl Interpolate for f64 {
    fn interpolate(&self, other: &f64, t: f32) -> f64 {
        self + (other - self) * f64::from(t)
    }
}

impl<const N: usize> Interpolate for [f32; N] {
    fn interpolate(&self, other: &[f32; N], t: f32) -> [f32; N] {
        core::array::from_fn(|i| self[i].interpolate(&other[i], t))
    }
}

impl<A: Interpolate, B: Interpolate> Interpolate for (A, B) {
    fn interpolate(&self, other: &(A, B), t: f32) -> (A, B) {
        (self.0.interpolate(&other.0, t), self.1.interpolate(&other.1, t))
    }
}

/// A world of entities by id: those in both snapshots are blended; the
/// others are taken from `other` (an entity appears or vanishes at once).
impl<K: Ord + Clone, V: Interpolate + Clone> Interpolate for BTreeMap<K, V> {
    fn interpolate(&self, other: &BTreeMap<K, V>, t: f32) -> BTreeMap<K, V> {
        other.iter().map(|(k, b)| (k.clone(), self.get(k).map_or_else(|| b.clone(), |a| a.interpolate(b, t)))).collect()
    }
}

/// Snapshots of remote state stamped with the server's tick, played back at
/// a fixed render delay behind the newest estimate of the server's clock
/// and interpolated between the two snapshots around the playback time.
///
/// The delay absorbs jitter and loss: with snapshots every 33 ms, 40 ms of
/// jitter and a lost snapshot now and then, a delay of about 100 ms always
/// has a snapshot on each side. The server's clock is estimated from the
/// arrivals themselves (the least-delayed ones), so the two machines need
/// no synchronised clocks.
///
/// ```
/// use mpgameserver::{Duration, Instant};
/// use mpgameserver_game::SnapshotBuffer;
///
/// // 10 Hz snapshots of an x position moving 10 units per tick, drawn 200 ms late.
/// let mut buf = SnapshotBuffer::new(Duration::from_millis(100), Duration::from_millis(200), 32);
/// for tick in 0..10u64 {
///     // Each arrives 30 ms after the server sent it.
///     buf.push(Instant::from_millis(tick * 100 + 30), tick, tick as f32 * 10.0);
/// }
/// // At 980 ms the server's clock reads about 950 ms; 200 ms earlier it was
/// // half-way between ticks 7 and 8.
/// assert_eq!(buf.sample(Instant::from_millis(980)), Some(75.0));
/// ```
#[derive(Clone, Debug)]
pub struct SnapshotBuffer<T> {
    snapshots: VecDeque<(u64, T)>,
    capacity: usize,
    period_us: i64,
    delay_us: i64,
    /// Estimated server time minus local time, in microseconds.
    offset: Option<i64>,
    stale: u64,
}

impl<T> SnapshotBuffer<T> {
    /// A buffer for snapshots sent every `tick_period`, played `delay`
    /// behind the server, keeping at most `capacity` (at least 2).
    pub fn new(tick_period: Duration, delay: Duration, capacity: usize) -> SnapshotBuffer<T> {
        SnapshotBuffer {
            snapshots: VecDeque::with_capacity(capacity.max(2)),
            capacity: capacity.max(2),
            period_us: (tick_period.as_micros() as i64).max(1),
            delay_us: delay.as_micros() as i64,
            offset: None,
            stale: 0,
        }
    }

    /// Adds the snapshot of server tick `tick`, received at `now`. Returns
    /// false, keeping nothing, for a tick already held or older than every
    /// held one when the buffer is full (a late duplicate or reordering).
    pub fn push(&mut self, now: Instant, tick: u64, state: T) -> bool {
        let sample = (tick as i64).saturating_mul(self.period_us) - now.as_micros() as i64;
        self.offset = Some(match self.offset {
            // A faster arrival than any before: the server is at least this far ahead.
            Some(o) if sample <= o => o - (o - sample) / 64,
            _ => sample,
        });
        let at = self.snapshots.partition_point(|(t, _)| *t < tick);
        if self.snapshots.get(at).is_some_and(|(t, _)| *t == tick) || (at == 0 && self.snapshots.len() == self.capacity)
        {
            self.stale += 1;
            return false;
        }
        self.snapshots.insert(at, (tick, state));
        if self.snapshots.len() > self.capacity {
            self.snapshots.pop_front();
        }
        true
    }

    /// The newest snapshot: its tick and state.
    pub fn latest(&self) -> Option<(u64, &T)> {
        self.snapshots.back().map(|(t, s)| (*t, s))
    }

    /// Snapshots held.
    pub fn len(&self) -> usize {
        self.snapshots.len()
    }

    /// Whether no snapshot arrived yet.
    pub fn is_empty(&self) -> bool {
        self.snapshots.is_empty()
    }

    /// Snapshots refused by [`push`](SnapshotBuffer::push).
    pub fn stale(&self) -> u64 {
        self.stale
    }

    /// The server tick shown at `now` (fractional), once a snapshot arrived.
    pub fn playback_tick(&self, now: Instant) -> Option<f64> {
        let offset = self.offset?;
        let target = now.as_micros() as i64 + offset - self.delay_us;
        Some(target as f64 / self.period_us as f64)
    }

    /// The state to draw at `now`: interpolated between the snapshots
    /// around the playback tick; the newest one if the playback tick is
    /// past it (snapshots stopped coming), the oldest if before it.
    pub fn sample(&self, now: Instant) -> Option<T>
    where
        T: Interpolate + Clone,
    {
        let target = self.playback_tick(now)?;
        let after = self.snapshots.partition_point(|(t, _)| (*t as f64) <= target);
        match (after.checked_sub(1).and_then(|i| self.snapshots.get(i)), self.snapshots.get(after)) {
            (Some((ta, a)), Some((tb, b))) => {
                let t = ((target - *ta as f64) / (*tb - *ta) as f64) as f32;
                Some(a.interpolate(b, t.clamp(0.0, 1.0)))
            }
            (Some((_, a)), None) => Some(a.clone()),
            (None, Some((_, b))) => Some(b.clone()),
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use quickcheck::quickcheck;

    fn buf() -> SnapshotBuffer<f32> {
        SnapshotBuffer::new(Duration::from_millis(50), Duration::from_millis(100), 16)
    }

    #[test]
    fn plays_back_behind_the_newest_and_interpolates() {
        let mut b = buf();
        assert_eq!(b.sample(Instant::ZERO), None);
        for tick in 0..6u64 {
            assert!(b.push(Instant::from_millis(tick * 50 + 20), tick, tick as f32));
        }
        // Server ≈ local + 20 ms behind → at 270 ms the server is at 250 ms (tick 5), playback at tick 3.
        assert_eq!(b.playback_tick(Instant::from_millis(270)), Some(3.0));
        assert_eq!(b.sample(Instant::from_millis(270)), Some(3.0));
        assert_eq!(b.sample(Instant::from_millis(295)), Some(3.5));
        // Past the newest: hold it. Before the oldest: the oldest.
        assert_eq!(b.sample(Instant::from_secs(5)), Some(5.0));
        assert_eq!(b.sample(Instant::ZERO), Some(0.0));
    }

    #[test]
    fn duplicates_and_hopelessly_late_snapshots_are_refused() {
        let mut b = SnapshotBuffer::new(Duration::from_millis(50), Duration::from_millis(100), 2);
        assert!(b.push(Instant::ZERO, 5, 0.0));
        assert!(!b.push(Instant::ZERO, 5, 1.0));
        assert!(b.push(Instant::ZERO, 7, 0.0));
        assert!(b.push(Instant::ZERO, 6, 0.0), "reordered, still useful");
        assert_eq!(b.len(), 2);
        assert!(!b.push(Instant::ZERO, 1, 0.0), "older than every held one");
        assert_eq!(b.stale(), 2);
        assert_eq!(b.latest(), Some((7, &0.0)));
    }

    #[test]
    fn worlds_blend_common_entities_and_take_new_ones() {
        let a: BTreeMap<u8, (f32, f32)> = [(1, (0.0, 0.0)), (2, (5.0, 5.0))].into();
        let b: BTreeMap<u8, (f32, f32)> = [(1, (10.0, 20.0)), (3, (1.0, 1.0))].into();
        let m = a.interpolate(&b, 0.25);
        assert_eq!(m.into_iter().collect::<Vec<_>>(), [(1, (2.5, 5.0)), (3, (1.0, 1.0))]);
        assert_eq!([0.0f32, 4.0].interpolate(&[2.0, 0.0], 0.5), [1.0, 2.0]);
    }

    quickcheck! {
        // Whatever the arrival order, jitter and loss, a sample of a
        // monotone signal lies within the range of what was received.
        fn samples_stay_within_what_was_received(arrivals: Vec<(u8, u8)>, at: u16) -> bool {
            let mut b = buf();
            let mut lo = f32::MAX;
            let mut hi = f32::MIN;
            for (tick, jitter) in arrivals {
                let tick = u64::from(tick);
                let v = tick as f32 * 2.0;
                if b.push(Instant::from_millis(tick * 50 + u64::from(jitter)), tick, v) {
                    lo = lo.min(v);
                    hi = hi.max(v);
                }
            }
            match b.sample(Instant::from_millis(u64::from(at))) {
                None => b.is_empty(),
                Some(v) => lo <= v && v <= hi,
            }
        }
    }
}
