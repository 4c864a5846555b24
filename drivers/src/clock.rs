//! The real clock and OS randomness. This is the only file of the workspace
//! that reads them (`clippy.toml` bans `Instant::now`, `SystemTime::now` and
//! `getrandom::fill` elsewhere); every other part takes time and seeds as
//! arguments.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mpgameserver::{Instant, Seed};

/// Wall time for one endpoint: [`Instant`]s are microseconds since the clock
/// was created.
///
/// The drivers create one per endpoint and set
/// `EndpointConfig::unix_time_origin` from [`Clock::unix_time_origin`], so
/// the header's `ctime` follows the system clock at start-up and then only
/// moves forward with the monotonic clock.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: std::time::Instant,
    unix_origin: u64,
}

impl Clock {
    /// A clock whose [`Instant::ZERO`] is now.
    #[allow(clippy::disallowed_methods)] // the one place that reads the clock
    pub fn new() -> Clock {
        let origin = std::time::Instant::now();
        // A system clock set before 1970 gives ctime 0 onwards: receivers ignore ctime.
        let unix_origin = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Clock { origin, unix_origin }
    }

    /// The current time.
    pub fn now(&self) -> Instant {
        Instant::from_micros(u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    /// Unix time, in whole seconds, at [`Instant::ZERO`] of this clock.
    pub fn unix_time_origin(&self) -> u64 {
        self.unix_origin
    }

    /// The `std` instant of `t` (for timers that take one). Instants beyond
    /// what `std` can represent map to a year from the origin.
    pub fn to_std(&self, t: Instant) -> std::time::Instant {
        let far = Duration::from_secs(365 * 24 * 3600);
        self.origin.checked_add(Duration::from_micros(t.as_micros()).min(far)).unwrap_or(self.origin)
    }
}

/// The system clock as Unix time in seconds (for the timestamps of the
/// metrics export; never for the protocol).
#[allow(clippy::disallowed_methods)] // the one place that reads the clock
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) fn unix_time_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// A 32-byte endpoint seed from the operating system's secure random
/// number generator (what production endpoints must use).
#[allow(clippy::disallowed_methods)] // the one place that reads OS randomness
pub fn os_seed() -> Result<Seed, EntropyError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(EntropyError)?;
    Ok(Seed(seed))
}

/// The operating system's random number generator failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntropyError(getrandom::Error);

impl fmt::Display for EntropyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the operating system's random number generator failed ({}): endpoints need it for their keys; check the platform's entropy source",
            self.0
        )
    }
}

impl std::error::Error for EntropyError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_moves_forward_and_maps_back() {
        let clock = Clock::new();
        let a = clock.now();
        let b = clock.now();
        assert!(b >= a);
        assert!(clock.unix_time_origin() > 1_600_000_000, "system clock before 2020?");
        let t = Instant::from_millis(1500);
        assert_eq!(clock.to_std(t) - clock.to_std(Instant::ZERO), Duration::from_millis(1500));
        assert!(clock.to_std(Instant::MAX) > clock.to_std(Instant::from_secs(3600)));
    }

    #[test]
    fn seeds_differ() {
        assert!(os_seed().unwrap() != os_seed().unwrap());
    }
}
