//! The pacer (MPGS2.md §5, RFC 9002 §7.7): releases the congestion window at
//! `5/4 · cwnd / srtt` with bursts of what that rate sends in
//! [`BURST_INTERVAL_MICROS`], at least the initial window and at most
//! [`MAX_BURST_FACTOR`] times it (Decision in MPGS2.md §5), in integer
//! bytes and µs. Control frames, PTO probes and one fragment group bypass it
//! (§4.4); the caller decides which packets ask.

use crate::{Duration, Instant};

/// Tokens are kept in thousandths of a byte, so the integer refill loses
/// no measurable rate between frequent calls.
const SCALE: u128 = 1000;

/// A burst may hold what the window releases in this long (quinn's 2 ms):
/// on a fast path (loopback, a LAN) the bucket then covers hundreds of
/// datagrams, so the sender wakes once per burst instead of once per ten
/// datagrams, and on a slow one it stays at the initial window.
pub const BURST_INTERVAL_MICROS: u64 = 2_000;

/// The largest burst, in initial windows: 25 × 10 datagrams, about quinn's
/// 256.
pub const MAX_BURST_FACTOR: u64 = 25;

/// A token bucket refilled at `5/4 · cwnd / srtt`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pacer {
    /// Thousandths of a byte.
    tokens: u128,
    /// The current burst size, from `min_burst` up to `MAX_BURST_FACTOR ×` it.
    capacity: u64,
    /// The smallest burst (the initial window).
    min_burst: u64,
    last: Option<Instant>,
}

/// `a * b / d`, exact, in 64-bit arithmetic when the operands fit (the
/// usual case; a 128-bit division is a slow library call), else 128-bit.
fn mul_div(a: u64, b: u64, d: u128) -> u128 {
    match (a.checked_mul(b), u64::try_from(d)) {
        (Some(n), Ok(d)) => u128::from(n / d),
        _ => u128::from(a) * u128::from(b) / d,
    }
}

/// [`mul_div`] with 128-bit operands.
fn mul_div_wide(a: u128, b: u128, d: u128) -> u128 {
    match (u64::try_from(a), u64::try_from(b)) {
        (Ok(a), Ok(b)) => mul_div(a, b, d),
        _ => a * b / d,
    }
}

impl Pacer {
    /// A full bucket of `burst` bytes (the initial window).
    pub fn new(burst: u64) -> Pacer {
        Pacer { tokens: u128::from(burst) * SCALE, capacity: burst, min_burst: burst, last: None }
    }

    /// Whole bytes that may leave now.
    pub fn tokens(&self) -> u64 {
        // tokens ≤ capacity · SCALE, so the quotient fits a u64.
        (self.tokens / SCALE) as u64
    }

    /// Changes the burst size (after a PMTU change).
    pub fn set_burst(&mut self, burst: u64) {
        self.min_burst = burst;
        self.capacity = burst;
        self.tokens = self.tokens.min(u128::from(burst) * SCALE);
    }

    /// The burst for `window` and `srtt_micros`: what the pacing rate sends
    /// in `BURST_INTERVAL_MICROS`, within the window and the bounds.
    fn burst_for(&self, window: u64, srtt_micros: u64) -> u64 {
        let by_time = mul_div(window, 5 * BURST_INTERVAL_MICROS, 4 * u128::from(srtt_micros.max(1)));
        let max = self.min_burst.saturating_mul(MAX_BURST_FACTOR).min(window.max(self.min_burst));
        u64::try_from(by_time).unwrap_or(u64::MAX).clamp(self.min_burst, max)
    }

    fn refill(&mut self, now: Instant, window: u64, srtt_micros: u64) {
        self.capacity = self.burst_for(window, srtt_micros);
        if let Some(last) = self.last {
            let elapsed = u128::from(now.saturating_duration_since(last).as_micros() as u64);
            // 5/4 · window bytes per srtt.
            let add = mul_div_wide(elapsed, u128::from(window) * 5 * SCALE, 4 * u128::from(srtt_micros.max(1)));
            self.tokens = (self.tokens + add).min(u128::from(self.capacity) * SCALE);
        }
        self.last = Some(now);
    }

    /// When a packet of `bytes` may leave: `None` for now (and the tokens
    /// are taken), or the instant at which enough tokens will have come.
    pub fn send_time(&mut self, now: Instant, bytes: u64, window: u64, srtt_micros: u64) -> Option<Instant> {
        self.refill(now, window, srtt_micros);
        let need = u128::from(bytes.min(self.capacity)) * SCALE;
        if self.tokens >= need {
            self.tokens -= need;
            return None;
        }
        let missing = need - self.tokens;
        let rate_num = u128::from(window.max(1)) * 5 * SCALE;
        let den = 4 * u128::from(srtt_micros.max(1));
        // Ceiling, so the tokens are there by then.
        let wait = (missing * den).div_ceil(rate_num);
        Some(now + Duration::from_micros(u64::try_from(wait).unwrap_or(u64::MAX)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_paces() {
        let mut p = Pacer::new(12_000);
        let t0 = Instant::from_millis(100);
        let (cwnd, srtt) = (12_000u64, 100_000u64);
        // The initial burst: ten 1200-byte packets at once.
        for _ in 0..10 {
            assert_eq!(p.send_time(t0, 1200, cwnd, srtt), None);
        }
        // Then one packet per 1200 / (5/4 · 12000 / 100 ms) = 8 ms.
        let next = p.send_time(t0, 1200, cwnd, srtt).expect("must wait");
        assert_eq!(next, t0 + Duration::from_millis(8));
        assert_eq!(p.send_time(next - Duration::from_micros(1), 1200, cwnd, srtt), Some(next));
        assert_eq!(p.send_time(next, 1200, cwnd, srtt), None);
        // Never more than the burst after a long idle.
        let later = next + Duration::from_secs(10);
        p.send_time(later, 0, cwnd, srtt);
        assert_eq!(p.tokens(), 12_000);
        p.set_burst(6_000);
        assert_eq!(p.tokens(), 6_000);
    }

    #[test]
    fn burst_grows_with_rate_within_bounds() {
        let mut p = Pacer::new(12_000);
        let t0 = Instant::from_millis(100);
        // Loopback: a 1 MB window at 100 µs srtt; the burst is capped at 25 initial windows.
        p.send_time(t0, 0, 1_000_000, 100);
        p.send_time(t0 + Duration::from_secs(1), 0, 1_000_000, 100);
        assert_eq!(p.tokens(), 300_000);
        // Never more than the window itself.
        p.send_time(t0 + Duration::from_secs(2), 0, 50_000, 100);
        assert_eq!(p.tokens(), 50_000);
        // 20 ms srtt: 2 ms of a 240 KB window is 30 KB.
        p.send_time(t0 + Duration::from_secs(3), 0, 240_000, 20_000);
        assert_eq!(p.tokens(), 30_000);
        // A slow path keeps the initial window.
        p.send_time(t0 + Duration::from_secs(4), 0, 240_000, 200_000);
        assert_eq!(p.tokens(), 12_000);
    }
}
