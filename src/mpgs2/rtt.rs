//! The RTT estimator (MPGS2.md §4.1; RFC 9002 §5), in integer µs.

use crate::{Duration, Instant};

/// RTT before any sample: 333 ms (RFC 9002 §6.2.2).
pub const INITIAL_RTT_MICROS: u64 = 333_000;
/// Timer granularity: 1 ms (RFC 9002 §6.1.2).
pub const GRANULARITY_MICROS: u64 = 1_000;
/// How long a `min_rtt` stands before a later sample may replace it (§4.1).
pub const MIN_RTT_WINDOW: Duration = Duration::from_secs(10);

/// `srtt`, `rttvar`, `min_rtt` and `latest_rtt`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RttEstimator {
    latest: u64,
    srtt: u64,
    rttvar: u64,
    min: u64,
    min_set_at: Instant,
    has_sample: bool,
    first_sample_at: Option<Instant>,
    reset_min: bool,
}

impl Default for RttEstimator {
    fn default() -> Self {
        RttEstimator::new()
    }
}

impl RttEstimator {
    /// Before any sample: `srtt = 333 ms`, `rttvar = 166.5 ms`.
    pub const fn new() -> RttEstimator {
        RttEstimator {
            latest: 0,
            srtt: INITIAL_RTT_MICROS,
            rttvar: INITIAL_RTT_MICROS / 2,
            min: 0,
            min_set_at: Instant::ZERO,
            has_sample: false,
            first_sample_at: None,
            reset_min: false,
        }
    }

    /// Smoothed RTT in µs.
    pub fn srtt(&self) -> u64 {
        self.srtt
    }

    /// RTT variation in µs.
    pub fn rttvar(&self) -> u64 {
        self.rttvar
    }

    /// Minimum RTT in µs (0 before any sample).
    pub fn min_rtt(&self) -> u64 {
        self.min
    }

    /// The latest sample in µs (0 before any).
    pub fn latest(&self) -> u64 {
        self.latest
    }

    /// When the first sample was taken (persistent congestion only counts
    /// packets sent after it, RFC 9002 §7.6.2).
    pub fn first_sample_at(&self) -> Option<Instant> {
        self.first_sample_at
    }

    /// Whether any sample was taken.
    pub fn has_sample(&self) -> bool {
        self.has_sample
    }

    /// `srtt + max(4 · rttvar, 1 ms) + max_ack_delay`: the PTO before backoff
    /// (RFC 9002 §6.2.1), and the base of the persistent-congestion span.
    pub fn pto_base(&self, max_ack_delay_micros: u64) -> u64 {
        self.srtt + (4 * self.rttvar).max(GRANULARITY_MICROS) + max_ack_delay_micros
    }

    /// `max(9/8 · max(srtt, latest_rtt), 1 ms)` (RFC 9002 §6.1.2).
    pub fn loss_delay(&self) -> u64 {
        (self.srtt.max(self.latest) * 9 / 8).max(GRANULARITY_MICROS)
    }

    /// After persistent congestion the next sample sets `min_rtt` afresh
    /// (§4.1, RFC 9002 §5.2).
    pub fn reset_min_rtt(&mut self) {
        self.reset_min = true;
    }

    /// Takes one sample: `latest_rtt` and the peer's reported `ack_delay`
    /// (0 for the handshake sample), with the peer's `max_ack_delay`.
    pub fn on_sample(&mut self, now: Instant, latest_rtt: u64, ack_delay: u64, max_ack_delay: u64) {
        self.latest = latest_rtt;
        // min_rtt ignores ack delay; a minimum older than the window, or the
        // first sample after persistent congestion, is replaced.
        let expired = now.saturating_duration_since(self.min_set_at) > MIN_RTT_WINDOW;
        if !self.has_sample || self.reset_min || expired || latest_rtt <= self.min {
            self.min = latest_rtt;
            self.min_set_at = now;
            self.reset_min = false;
        }
        if !self.has_sample {
            self.has_sample = true;
            self.first_sample_at = Some(now);
            self.srtt = latest_rtt;
            self.rttvar = latest_rtt / 2;
            return;
        }
        let ad = ack_delay.min(max_ack_delay);
        let adjusted = if latest_rtt >= self.min + ad { latest_rtt - ad } else { latest_rtt };
        // RFC 9002 erratum 7539: rttvar uses the previous srtt.
        self.rttvar = (3 * self.rttvar + self.srtt.abs_diff(adjusted)) / 4;
        self.srtt = (7 * self.srtt + adjusted) / 8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc9002_estimator() {
        let mut r = RttEstimator::new();
        assert_eq!((r.srtt(), r.rttvar()), (333_000, 166_500));
        assert_eq!(r.pto_base(10_000), 333_000 + 666_000 + 10_000);
        let t = Instant::from_secs(1);
        // Handshake sample: no ack delay.
        r.on_sample(t, 100_000, 0, 25_000);
        assert_eq!((r.srtt(), r.rttvar(), r.min_rtt()), (100_000, 50_000, 100_000));
        // latest 130 ms with 30 ms ack delay, capped at max_ack_delay 25 ms;
        // 130 ≥ min_rtt + 25, so adjusted = 105 ms.
        r.on_sample(t, 130_000, 30_000, 25_000);
        assert_eq!(r.rttvar(), (3 * 50_000 + 5_000) / 4);
        assert_eq!(r.srtt(), (7 * 100_000 + 105_000) / 8);
        assert_eq!(r.min_rtt(), 100_000, "min_rtt never adjusted");
        // An ack delay that would push below min_rtt is not subtracted.
        let (s, v) = (r.srtt(), r.rttvar());
        r.on_sample(t, 110_000, 20_000, 25_000);
        assert_eq!(r.srtt(), (7 * s + 110_000) / 8);
        assert_eq!(r.rttvar(), (3 * v + s.abs_diff(110_000)) / 4);
        assert_eq!(r.loss_delay(), r.srtt().max(110_000) * 9 / 8);
        // Lower sample lowers min_rtt; after 10 s a higher one replaces it.
        r.on_sample(t, 90_000, 0, 25_000);
        assert_eq!(r.min_rtt(), 90_000);
        r.on_sample(t + Duration::from_secs(5), 150_000, 0, 25_000);
        assert_eq!(r.min_rtt(), 90_000);
        r.on_sample(t + Duration::from_secs(11), 150_000, 0, 25_000);
        assert_eq!(r.min_rtt(), 150_000);
        r.reset_min_rtt();
        r.on_sample(t + Duration::from_secs(12), 200_000, 0, 25_000);
        assert_eq!(r.min_rtt(), 200_000);
        assert_eq!(r.first_sample_at(), Some(t));
        assert!(r.has_sample());
        assert_eq!(r.latest(), 200_000);
    }

    #[test]
    fn loss_delay_floor() {
        let mut r = RttEstimator::new();
        r.on_sample(Instant::ZERO, 100, 0, 0);
        assert_eq!(r.loss_delay(), GRANULARITY_MICROS);
    }
}
