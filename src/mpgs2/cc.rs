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

    /// In-flight packets of `lost_bytes` together were declared lost;
    /// `largest_lost_sent` is when the newest of them was sent. `persistent`
    /// after persistent congestion (RFC 9002 §7.6).
    fn on_congestion(
        &mut self,
        now: Instant,
        largest_lost_sent: Instant,
        lost_bytes: u64,
        persistent: bool,
        rtt: &RttEstimator,
    );

    /// The path MTU changed (§6.1).
    fn on_mtu(&mut self, max_datagram_size: u64);
}

/// A loss is random, not congestion, while the lost share of the bytes
/// acknowledged or lost over the current and the previous round stays
/// under 1/50 (2 %)...
const RANDOM_LOSS_DIVISOR: u64 = 50;
/// ...and fewer than this many full packets were lost in them (a round of
/// ten packets losing one is no evidence either way; the window is cut).
const RANDOM_LOSS_MAX_PACKETS: u64 = 3;

/// RFC 9002 §7 NewReno, with the random-loss rule of MPGS2.md §5: a loss
/// that comes without queueing delay and without a high loss rate does not
/// cut the window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewReno {
    mds: u64,
    window: u64,
    ssthresh: u64,
    recovery_start: Option<Instant>,
    /// Bytes acked in congestion avoidance since the window last grew.
    acked_in_ca: u64,
    /// Loss accounting: when the current round (one srtt) began, and the
    /// (acked, lost) bytes of the current and of the previous round.
    round_start: Option<Instant>,
    round: (u64, u64),
    prev_round: (u64, u64),
    /// Losses judged random (no cut), for the tests and the trace.
    random_losses: u64,
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
            round_start: None,
            round: (0, 0),
            prev_round: (0, 0),
            random_losses: 0,
        }
    }

    /// Congestion events judged random loss (the window was not cut).
    pub fn random_losses(&self) -> u64 {
        self.random_losses
    }

    /// Starts a new loss-accounting round when one srtt has passed.
    fn roll_round(&mut self, now: Instant, rtt: &RttEstimator) {
        let start = *self.round_start.get_or_insert(now);
        if now.saturating_duration_since(start).as_micros() as u64 >= rtt.srtt().max(1) {
            self.prev_round = self.round;
            self.round = (0, 0);
            self.round_start = Some(now);
        }
    }

    /// Whether a loss is congestion (MPGS2.md §5, "Decision (random loss in
    /// NewReno mode)"): the latest RTT sample shows a queue of more than
    /// `T = clamp(min_rtt / 4, 5 ms, 25 ms)`, or at least 3 packets and 2 %
    /// of the bytes of the last two rounds were lost. Before any RTT sample
    /// every loss is congestion.
    fn is_congestion(&self, rtt: &RttEstimator) -> bool {
        if !rtt.has_sample() {
            return true;
        }
        let min = rtt.min_rtt();
        let target = (min / 4).clamp(5_000, 25_000);
        if rtt.latest().saturating_sub(min) > target {
            return true;
        }
        let lost = self.round.1 + self.prev_round.1;
        let total = lost + self.round.0 + self.prev_round.0;
        lost >= RANDOM_LOSS_MAX_PACKETS * self.mds && lost * RANDOM_LOSS_DIVISOR >= total
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

    fn on_ack(&mut self, now: Instant, sent: Instant, bytes: u64, app_limited: bool, rtt: &RttEstimator) {
        self.roll_round(now, rtt);
        self.round.0 += bytes;
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

    fn on_congestion(
        &mut self,
        now: Instant,
        largest_lost_sent: Instant,
        lost_bytes: u64,
        persistent: bool,
        rtt: &RttEstimator,
    ) {
        self.roll_round(now, rtt);
        self.round.1 += lost_bytes;
        if !persistent && !self.in_recovery(largest_lost_sent) && !self.is_congestion(rtt) {
            // Random loss: the frames are re-queued by recovery, the window
            // stays (MPGS2.md §5).
            self.random_losses += 1;
            return;
        }
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
        r.on_congestion(t(20), t(15), 1200, false, &rtt);
        assert_eq!((r.window(), r.ssthresh()), (6_600, 6_600));
        // A second loss of a packet sent before recovery began: no new cut.
        r.on_congestion(t(25), t(19), 1200, false, &rtt);
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
        r.on_congestion(t(50), t(45), 1200, false, &rtt);
        assert_eq!(r.window(), 3_900);
        r.on_congestion(t(60), t(55), 1200, false, &rtt);
        assert_eq!(r.window(), 2_400, "never below the minimum window");
        // Persistent congestion: minimum window, and the next loss cuts anew.
        r.on_ack(t(70), t(65), 12_000, false, &rtt);
        r.on_congestion(t(80), t(75), 1200, true, &rtt);
        assert_eq!(r.window(), 2_400);
        r.on_mtu(1400);
        assert_eq!(r.window(), 2_800);
    }

    /// A 100 ms path: min_rtt 100 ms, latest sample `latest_ms`.
    fn path(latest_ms: u64) -> RttEstimator {
        let mut rtt = RttEstimator::new();
        rtt.on_sample(Instant::from_millis(100), 100_000, 0, 0);
        rtt.on_sample(Instant::from_millis(101), latest_ms * 1000, 0, 0);
        rtt
    }

    #[test]
    fn random_loss_without_queueing_keeps_the_window() {
        // Found by the 10 MB scenario (tests/sim/mpgs2_scen.rs): one loss
        // in 200 packets halved the window every round trip, and a 20
        // Mbit/s, 100 ms path carried 8 % of its capacity.
        let t = |ms| Instant::from_millis(ms);
        let mut r = NewReno::new(1200);
        let quiet = path(102);
        for k in 0..400 {
            r.on_ack(t(200 + k / 4), t(100 + k / 4), 1200, false, &quiet);
        }
        let w = r.window();
        assert_eq!(w, 12_000 + 400 * 1200, "slow start");
        // One packet of 400 lost, no queue: random, no cut, no recovery.
        r.on_congestion(t(300), t(250), 1200, false, &quiet);
        assert_eq!((r.window(), r.random_losses()), (w, 1));
        assert!(r.in_slow_start());
        // The same loss with 30 ms of queueing (T = 25 ms): congestion.
        let queued = path(130);
        let mut q = r.clone();
        q.on_congestion(t(301), t(251), 1200, false, &queued);
        assert_eq!(q.window(), w / 2);
        // Three packets and 2 % of the bytes lost without a queue: congestion.
        let mut heavy = r.clone();
        heavy.on_congestion(t(302), t(252), 9 * 1200, false, &quiet);
        assert_eq!(heavy.window(), w / 2);
        // Persistent congestion is never random.
        let mut p = r.clone();
        p.on_congestion(t(303), t(253), 1200, true, &quiet);
        assert_eq!(p.window(), 2_400);
        // The rounds roll over: old losses stop counting after two srtt.
        for k in 0..400 {
            r.on_ack(t(500 + k), t(400 + k), 1200, false, &quiet);
        }
        let w = r.window();
        r.on_congestion(t(900), t(850), 2 * 1200, false, &quiet);
        assert_eq!(r.window(), w, "the loss at 300 ms has rolled out: 2 packets, not 3");
    }
}
