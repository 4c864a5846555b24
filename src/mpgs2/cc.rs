//! Congestion control behind a small internal interface (MPGS2.md §5), and
//! its stage-1 implementation: RFC 9002 §7 NewReno with
//! `max_datagram_size = PLPMTU`, in integer bytes and µs.
//!
//! [`Recovery`](super::recovery::Recovery) drives the controller; stage 3
//! replaces [`NewReno`] by the delay-based controller of §5 through the same
//! trait.

use super::MIN_UDP_PAYLOAD;
use super::rtt::RttEstimator;
use crate::Instant;

/// What recovery tells a congestion controller, and what it asks back.
pub trait Controller {
    /// Bytes that may be in flight.
    fn window(&self) -> u64;

    /// An in-flight packet of `bytes` was newly acknowledged. `app_limited`:
    /// the sender did not fill the window when it sent (§5: no increase).
    fn on_ack(&mut self, now: Instant, sent: Instant, bytes: u64, app_limited: bool, rtt: &RttEstimator);

    /// In-flight packets were declared lost; `largest_lost_sent` is when the
    /// newest of them was sent. `persistent` after persistent congestion
    /// (RFC 9002 §7.6).
    fn on_congestion(&mut self, now: Instant, largest_lost_sent: Instant, persistent: bool);

    /// The path MTU changed (§6.1).
    fn on_mtu(&mut self, max_datagram_size: u64);
}

/// RFC 9002 §7 NewReno.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewReno {
    mds: u64,
    window: u64,
    ssthresh: u64,
    recovery_start: Option<Instant>,
    /// Bytes acked in congestion avoidance since the window last grew.
    acked_in_ca: u64,
}

impl Default for NewReno {
    fn default() -> Self {
        NewReno::new(MIN_UDP_PAYLOAD as u64)
    }
}

impl NewReno {
    /// A controller for `max_datagram_size` (the PLPMTU).
    pub fn new(max_datagram_size: u64) -> NewReno {
        NewReno {
            mds: max_datagram_size,
            window: Self::initial_window(max_datagram_size),
            ssthresh: u64::MAX,
            recovery_start: None,
            acked_in_ca: 0,
        }
    }

    /// `min(10 · mds, max(14,720, 2 · mds))` (RFC 9002 §7.2).
    pub fn initial_window(mds: u64) -> u64 {
        (10 * mds).min(14_720.max(2 * mds))
    }

    /// `2 · mds`.
    pub fn minimum_window(&self) -> u64 {
        2 * self.mds
    }

    /// The slow-start threshold (`u64::MAX` until the first loss).
    pub fn ssthresh(&self) -> u64 {
        self.ssthresh
    }

    /// Whether the controller is in slow start.
    pub fn in_slow_start(&self) -> bool {
        self.window < self.ssthresh
    }

    fn in_recovery(&self, sent: Instant) -> bool {
        self.recovery_start.is_some_and(|start| sent <= start)
    }
}

impl Controller for NewReno {
    fn window(&self) -> u64 {
        self.window
    }

    fn on_ack(&mut self, _now: Instant, sent: Instant, bytes: u64, app_limited: bool, _rtt: &RttEstimator) {
        // No increase for packets sent before the recovery period began, nor
        // while application-limited (RFC 9002 §7.3.2, §7.8).
        if self.in_recovery(sent) || app_limited {
            return;
        }
        if self.in_slow_start() {
            self.window += bytes;
            return;
        }
        // Congestion avoidance: one mds per window acknowledged.
        self.acked_in_ca += bytes;
        if self.acked_in_ca >= self.window {
            self.acked_in_ca -= self.window;
            self.window += self.mds;
        }
    }

    fn on_congestion(&mut self, now: Instant, largest_lost_sent: Instant, persistent: bool) {
        if !self.in_recovery(largest_lost_sent) {
            // A new recovery period (RFC 9002 §7.3.2; kLossReductionFactor 1/2).
            self.recovery_start = Some(now);
            self.ssthresh = (self.window / 2).max(self.minimum_window());
            self.window = self.ssthresh;
            self.acked_in_ca = 0;
        }
        if persistent {
            self.window = self.minimum_window();
            self.recovery_start = None;
            self.acked_in_ca = 0;
        }
    }

    fn on_mtu(&mut self, max_datagram_size: u64) {
        self.mds = max_datagram_size;
        self.window = self.window.max(self.minimum_window());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows() {
        assert_eq!(NewReno::initial_window(1200), 12_000);
        assert_eq!(NewReno::initial_window(1472), 14_720);
        assert_eq!(NewReno::initial_window(9000), 18_000);
        let r = NewReno::default();
        assert_eq!((r.window(), r.minimum_window()), (12_000, 2_400));
    }

    #[test]
    fn slow_start_recovery_avoidance_persistent() {
        let rtt = RttEstimator::new();
        let mut r = NewReno::new(1200);
        let t = |ms| Instant::from_millis(ms);
        // Slow start: the window grows by the bytes acked.
        r.on_ack(t(10), t(0), 1200, false, &rtt);
        assert_eq!(r.window(), 13_200);
        // App-limited: no growth.
        r.on_ack(t(10), t(0), 1200, true, &rtt);
        assert_eq!(r.window(), 13_200);
        // A loss halves it and starts recovery at t(20).
        r.on_congestion(t(20), t(15), false);
        assert_eq!((r.window(), r.ssthresh()), (6_600, 6_600));
        // A second loss of a packet sent before recovery began: no new cut.
        r.on_congestion(t(25), t(19), false);
        assert_eq!(r.window(), 6_600);
        // Acks of packets sent before recovery began do not grow it.
        r.on_ack(t(30), t(18), 1200, false, &rtt);
        assert_eq!(r.window(), 6_600);
        // Congestion avoidance: one mds per window acknowledged.
        for _ in 0..5 {
            r.on_ack(t(40), t(21), 1200, false, &rtt);
        }
        assert_eq!(r.window(), 6_600, "5 × 1200 < 6600");
        r.on_ack(t(40), t(21), 1200, false, &rtt);
        assert_eq!(r.window(), 7_800);
        // A loss after recovery: a new cut.
        r.on_congestion(t(50), t(45), false);
        assert_eq!(r.window(), 3_900);
        r.on_congestion(t(60), t(55), false);
        assert_eq!(r.window(), 2_400, "never below the minimum window");
        // Persistent congestion: minimum window, and the next loss cuts anew.
        r.on_ack(t(70), t(65), 12_000, false, &rtt);
        r.on_congestion(t(80), t(75), true);
        assert_eq!(r.window(), 2_400);
        r.on_mtu(1400);
        assert_eq!(r.window(), 2_800);
    }
}
