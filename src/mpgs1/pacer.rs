//! Datagram pacing: a token bucket with one token per `send_interval` and
//! `send_burst` tokens of depth.

use crate::time::{Duration, Instant, duration_micros};

/// Tolerance: a datagram may leave when a quarter of its token is still
/// missing, so a caller ticking at exactly the send rate (60 Hz against
/// 1/60 s) sends on every tick despite jitter — the reference's strict
/// comparison halves its rate (§16 bug 10).
const EARLY_FRACTION: i64 = 4;

#[derive(Clone, Debug)]
pub(crate) struct Pacer {
    interval: i64,
    depth: i64,
    /// Credit in microseconds at `updated`; one datagram costs `interval`.
    credit: i64,
    updated: Instant,
}

impl Pacer {
    pub(crate) fn new(interval: Duration, burst: u32, now: Instant) -> Pacer {
        let interval = i64::try_from(duration_micros(interval)).unwrap_or(i64::MAX / 4).min(i64::MAX / 1024);
        let depth = interval.saturating_mul(i64::from(burst.max(1)));
        Pacer { interval, depth, credit: depth, updated: now }
    }

    #[inline]
    fn credit_at(&self, now: Instant) -> i64 {
        let elapsed = now.as_micros().saturating_sub(self.updated.as_micros());
        self.credit.saturating_add(i64::try_from(elapsed).unwrap_or(i64::MAX)).min(self.depth)
    }

    fn threshold(&self) -> i64 {
        self.interval - self.interval / EARLY_FRACTION
    }

    /// Whether a datagram may leave at `now`.
    #[cfg(test)]
    pub(crate) fn allows(&self, now: Instant) -> bool {
        self.interval == 0 || self.credit_at(now) >= self.threshold()
    }

    /// The earliest instant at which a datagram may leave.
    #[inline]
    pub(crate) fn ready_at(&self, now: Instant) -> Instant {
        if self.interval == 0 {
            return now;
        }
        let missing = self.threshold() - self.credit_at(now);
        if missing <= 0 { now } else { now + Duration::from_micros(missing as u64) }
    }

    /// Spends one token at `now`.
    pub(crate) fn on_sent(&mut self, now: Instant) {
        if self.interval == 0 {
            return;
        }
        self.credit = self.credit_at(now) - self.interval;
        self.updated = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixty_hz_ticks_send_every_tick_despite_jitter() {
        let mut p = Pacer::new(Duration::from_micros(16_667), 1, Instant::ZERO);
        let mut sent = 0;
        for tick in 0..600u64 {
            // ±2 ms jitter around a 60 Hz grid.
            let jitter = [0i64, 2000, -2000, 1000][(tick % 4) as usize];
            let t = Instant::from_micros((tick as i64 * 16_667 + 5000 + jitter) as u64);
            if p.allows(t) {
                p.on_sent(t);
                sent += 1;
            }
        }
        assert!(sent >= 595, "sent {sent} of 600");
    }

    #[test]
    fn no_faster_than_the_interval_on_average() {
        let mut p = Pacer::new(Duration::from_millis(10), 3, Instant::ZERO);
        let mut sent = 0;
        for us in (0..1_000_000u64).step_by(100) {
            let t = Instant::from_micros(us);
            while p.allows(t) {
                p.on_sent(t);
                sent += 1;
            }
        }
        // 1 s at 100/s, plus the initial burst and tolerance.
        assert!((100..=105).contains(&sent), "{sent}");
        assert!(p.ready_at(Instant::from_secs(1)) > Instant::from_secs(1));
    }

    #[test]
    fn zero_interval_is_unpaced() {
        let mut p = Pacer::new(Duration::ZERO, 1, Instant::ZERO);
        for _ in 0..1000 {
            assert!(p.allows(Instant::ZERO));
            p.on_sent(Instant::ZERO);
        }
    }
}
