//! A fixed-timestep clock: simulation ticks at a constant rate, whatever
//! the frame rate.

use core::fmt;

use mpgameserver::{Duration, Instant};

/// Highest tick rate a [`TickClock`] accepts.
pub const MAX_TICK_HZ: u32 = 1000;

/// A tick rate of zero or above [`MAX_TICK_HZ`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TickRateError {
    /// The rate asked for.
    pub hz: u32,
}

impl fmt::Display for TickRateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tick rate {} Hz is out of range: use 1 to {MAX_TICK_HZ} ticks per second", self.hz)
    }
}

impl core::error::Error for TickRateError {}

/// A fixed-timestep clock ("fix your timestep"): call
/// [`advance`](TickClock::advance) each frame with the current time and run
/// that many simulation ticks of [`period`](TickClock::period) each; draw
/// with [`alpha`](TickClock::alpha), the fraction of a tick since the last
/// one.
///
/// After a stall (a slow frame, a suspended process) it runs at most
/// `max_catch_up` ticks at once and drops the rest, counted in
/// [`skipped`](TickClock::skipped), instead of spiralling.
#[derive(Clone, Debug)]
pub struct TickClock {
    period: Duration,
    /// When the next tick is due.
    next: Instant,
    tick: u64,
    max_catch_up: u32,
    skipped: u64,
}

impl TickClock {
    /// A clock ticking `hz` times a second, its first tick due one period
    /// after `start`. It catches up at most 8 ticks at once.
    pub fn new(hz: u32, start: Instant) -> Result<TickClock, TickRateError> {
        if hz == 0 || hz > MAX_TICK_HZ {
            return Err(TickRateError { hz });
        }
        let period = Duration::from_micros(1_000_000 / u64::from(hz));
        Ok(TickClock { period, next: start + period, tick: 0, max_catch_up: 8, skipped: 0 })
    }

    /// Sets how many ticks one `advance` runs at most (at least 1).
    pub fn with_max_catch_up(mut self, ticks: u32) -> TickClock {
        self.max_catch_up = ticks.max(1);
        self
    }

    /// The ticks due at `now` (and counts them as run). An earlier `now`
    /// than already seen gives 0.
    pub fn advance(&mut self, now: Instant) -> u32 {
        let mut n = 0;
        while self.next <= now {
            if n == self.max_catch_up {
                // Too far behind: skip to the tick due now.
                let behind = ((now - self.next).as_micros() / self.period.as_micros().max(1)) as u64 + 1;
                self.skipped += behind;
                self.tick += behind;
                self.next += self.period * u32::try_from(behind).unwrap_or(u32::MAX);
                break;
            }
            n += 1;
            self.tick += 1;
            self.next += self.period;
        }
        n
    }

    /// Ticks run or skipped since the start.
    pub fn tick(&self) -> u64 {
        self.tick
    }

    /// Ticks dropped by the catch-up bound.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// The length of a tick.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The period in seconds, for physics code.
    pub fn dt_secs(&self) -> f32 {
        self.period.as_micros() as f32 / 1e6
    }

    /// When the next tick is due.
    pub fn next_tick(&self) -> Instant {
        self.next
    }

    /// How far `now` is between the last tick and the next, in `[0, 1]`:
    /// draw `previous.interpolate(&current, alpha)`.
    pub fn alpha(&self, now: Instant) -> f32 {
        let last = self.next - self.period;
        let into = now.saturating_duration_since(last).as_micros() as f32;
        (into / self.period.as_micros().max(1) as f32).clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_at_a_fixed_rate_whatever_the_frame_rate() {
        let mut c = TickClock::new(30, Instant::ZERO).unwrap();
        // 144 Hz frames for one second: exactly 30 ticks.
        let total: u32 = (1..=144u64).map(|f| c.advance(Instant::from_micros(f * 1_000_000 / 144))).sum();
        assert_eq!(total, 30);
        assert_eq!(c.tick(), 30);
        // 10 Hz frames: 3 ticks per frame.
        let mut c = TickClock::new(30, Instant::ZERO).unwrap();
        assert_eq!(c.advance(Instant::from_millis(100)), 3);
        assert_eq!(c.advance(Instant::from_millis(50)), 0, "time going back runs nothing");
    }

    #[test]
    fn a_stall_catches_up_a_bounded_number_of_ticks() {
        let mut c = TickClock::new(60, Instant::ZERO).unwrap().with_max_catch_up(4);
        assert_eq!(c.advance(Instant::from_secs(10)), 4);
        assert_eq!(c.tick(), 600);
        assert_eq!(c.skipped(), 596);
        assert_eq!(c.advance(Instant::from_secs(10)), 0);
        assert!(c.next_tick() > Instant::from_secs(10));
    }

    #[test]
    fn alpha_runs_from_zero_to_one_between_ticks() {
        let mut c = TickClock::new(10, Instant::ZERO).unwrap();
        assert_eq!(c.advance(Instant::from_millis(100)), 1);
        assert_eq!(c.alpha(Instant::from_millis(100)), 0.0);
        assert!((c.alpha(Instant::from_millis(150)) - 0.5).abs() < 1e-6);
        assert_eq!(c.alpha(Instant::from_millis(400)), 1.0);
        assert!((c.dt_secs() - 0.1).abs() < 1e-6);
    }

    #[test]
    fn rates_out_of_range_are_refused() {
        assert_eq!(TickClock::new(0, Instant::ZERO).unwrap_err(), TickRateError { hz: 0 });
        assert!(TickClock::new(MAX_TICK_HZ + 1, Instant::ZERO).is_err());
    }
}
