//! Loss detection and PTO (MPGS2.md §4.1–§4.2; RFC 9002 §6 and Appendix A)
//! for the one packet-number space of 1-RTT packets, with the congestion
//! controller behind [`Controller`].
//!
//! Every sent packet is recorded ([`Recovery::on_sent`]) in a ring indexed
//! by packet number (PNs are consecutive), bounded by
//! `max_inflight_packets`; acked and lost records stay as tombstones until
//! they reach the front, so "acked in between" (persistent congestion) and
//! spurious losses can be seen. Outcomes are reported through a callback,
//! one per packet: the connection re-queues a lost packet's reliable frames
//! (retransmission by frame, §4.2), never the packet.

use alloc::collections::VecDeque;

use super::cc::Controller;
use super::frame::AckFrame;
use super::rtt::RttEstimator;
use crate::{Duration, Instant};

/// Default cap on recorded packets (§4.2, a memory cap).
pub const MAX_INFLIGHT_PACKETS: usize = 4096;
/// kPacketThreshold (RFC 9002 §6.1.1).
pub const PACKET_THRESHOLD: u64 = 3;
/// kPersistentCongestionThreshold (RFC 9002 §7.6.1).
pub const PERSISTENT_CONGESTION_THRESHOLD: u64 = 3;
/// PTO backoff stops doubling here (2^16 × PTO is far beyond any idle timeout).
const MAX_PTO_SHIFT: u32 = 16;

/// What the sender records for one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SentPacket {
    /// When it was sent.
    pub time: Instant,
    /// Its size in bytes (the whole datagram).
    pub size: u32,
    /// It carries a frame that elicits an ack (§3.4).
    pub ack_eliciting: bool,
    /// It counts toward bytes in flight (ack-eliciting frames or PADDING).
    pub in_flight: bool,
    /// A PMTU probe: its loss never reaches the controller (§5, §6.1).
    pub pmtu_probe: bool,
    /// The connection's own reference to the frames it carried.
    pub meta: u64,
}

/// One packet's fate, reported exactly once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Newly acknowledged.
    Acked {
        /// Its packet number.
        pn: u64,
        /// Its record.
        packet: SentPacket,
    },
    /// Declared lost.
    Lost {
        /// Its packet number.
        pn: u64,
        /// Its record.
        packet: SentPacket,
    },
}

/// Why an ACK was refused: it acknowledges a PN never sent, which §3.4
/// makes a PROTOCOL_VIOLATION.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AckOfUnsentPacket;

/// What the loss-detection timer asks for when it fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerAction {
    /// Nothing (early or spurious call).
    None,
    /// Packets were declared lost by time threshold (reported through the
    /// callback).
    Losses,
    /// PTO: send up to this many ack-eliciting probes outside the budget
    /// (the oldest unacked reliable frames, else PING); nothing is lost.
    Probe(u8),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Outstanding,
    AckedNow,
    Acked,
    Lost,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    packet: SentPacket,
    state: State,
}

/// Heap bytes of one sent-packet record (for `memory_bounds`).
pub(crate) const SENT_ENTRY_SIZE: usize = core::mem::size_of::<Entry>();

/// Counters for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecoveryStats {
    /// Packets declared lost.
    pub lost: u64,
    /// Acks that arrived after a loss declaration (and still found the record).
    pub spurious_losses: u64,
    /// PTO expiries.
    pub ptos: u64,
    /// Persistent congestion events.
    pub persistent_congestion: u64,
}

/// RTT, loss detection, PTO and the congestion controller of one connection.
#[cfg_attr(feature = "_fuzzing", derive(Clone))]
#[derive(Debug)]
pub struct Recovery<C> {
    sent: VecDeque<Entry>,
    /// The PN of `sent[0]`.
    first_pn: u64,
    next_pn: u64,
    cap: usize,
    largest_acked: Option<u64>,
    loss_time: Option<Instant>,
    pto_count: u32,
    last_ack_eliciting_sent: Option<Instant>,
    ack_eliciting_in_flight: u32,
    bytes_in_flight: u64,
    /// The peer's max_ack_delay in µs.
    max_ack_delay: u64,
    rtt: RttEstimator,
    cc: C,
    stats: RecoveryStats,
}

impl<C: Controller> Recovery<C> {
    /// Recovery for a connection whose peer advertised `max_ack_delay`,
    /// recording at most `cap` packets.
    pub fn new(cc: C, max_ack_delay: Duration, cap: usize) -> Recovery<C> {
        Recovery {
            sent: VecDeque::new(),
            first_pn: 0,
            next_pn: 0,
            cap,
            largest_acked: None,
            loss_time: None,
            pto_count: 0,
            last_ack_eliciting_sent: None,
            ack_eliciting_in_flight: 0,
            bytes_in_flight: 0,
            max_ack_delay: max_ack_delay.as_micros() as u64,
            rtt: RttEstimator::new(),
            cc,
            stats: RecoveryStats::default(),
        }
    }

    /// The RTT estimator.
    pub fn rtt(&self) -> &RttEstimator {
        &self.rtt
    }

    /// The RTT estimator, to feed the handshake sample (§4.1).
    pub fn rtt_mut(&mut self) -> &mut RttEstimator {
        &mut self.rtt
    }

    /// The congestion controller.
    pub fn controller(&self) -> &C {
        &self.cc
    }

    /// Bytes in flight.
    pub fn bytes_in_flight(&self) -> u64 {
        self.bytes_in_flight
    }

    /// The largest of our PNs the peer acknowledged (for PN truncation).
    pub fn largest_acked(&self) -> Option<u64> {
        self.largest_acked
    }

    /// The current PTO backoff exponent.
    pub fn pto_count(&self) -> u32 {
        self.pto_count
    }

    /// Counters.
    pub fn stats(&self) -> RecoveryStats {
        self.stats
    }

    /// Records currently held (including tombstones).
    pub fn recorded(&self) -> usize {
        self.sent.len()
    }

    /// The oldest packet number still recorded (the next PN when none is):
    /// frame records of older packets can go.
    pub fn oldest_recorded(&self) -> u64 {
        if self.sent.is_empty() { self.next_pn } else { self.first_pn }
    }

    /// Whether one more packet with data may be recorded (the memory cap).
    pub fn has_room(&self) -> bool {
        self.sent.len() < self.cap
    }

    /// Whether any packet may be recorded: acks, probes and CLOSE may use a
    /// quarter more than the cap, so a full record never silences them.
    pub fn can_record(&self) -> bool {
        self.sent.len() < self.cap + self.cap / 4 + 1
    }

    /// What the window allows to send now: `cwnd − bytes_in_flight`.
    pub fn budget(&self) -> u64 {
        self.cc.window().saturating_sub(self.bytes_in_flight)
    }

    /// `PTO = srtt + max(4·rttvar, 1 ms) + max_ack_delay`, before backoff.
    pub fn pto(&self) -> Duration {
        Duration::from_micros(self.rtt.pto_base(self.max_ack_delay))
    }

    /// Records packet `pn`, which must be the next PN (PNs are consecutive)
    /// and must fit ([`can_record`](Self::can_record)); returns `false` and
    /// records nothing otherwise.
    pub fn on_sent(&mut self, pn: u64, packet: SentPacket) -> bool {
        if pn != self.next_pn || !self.can_record() {
            return false;
        }
        if self.sent.is_empty() {
            self.first_pn = pn;
        }
        self.sent.push_back(Entry { packet, state: State::Outstanding });
        self.next_pn = pn + 1;
        if packet.in_flight {
            self.bytes_in_flight += u64::from(packet.size);
        }
        if packet.ack_eliciting {
            self.ack_eliciting_in_flight += 1;
            self.last_ack_eliciting_sent = Some(packet.time);
        }
        true
    }

    /// Whether packet `pn` is recorded and neither acknowledged nor lost.
    pub fn is_outstanding(&self, pn: u64) -> bool {
        self.index(pn).is_some_and(|i| self.sent[i].state == State::Outstanding)
    }

    fn index(&self, pn: u64) -> Option<usize> {
        let i = usize::try_from(pn.checked_sub(self.first_pn)?).ok()?;
        (i < self.sent.len()).then_some(i)
    }

    fn settle(&mut self, i: usize) {
        let p = self.sent[i].packet;
        if p.in_flight {
            self.bytes_in_flight -= u64::from(p.size);
        }
        if p.ack_eliciting {
            self.ack_eliciting_in_flight -= 1;
        }
    }

    /// Processes an ACK frame (RFC 9002 A.7). `app_limited`: the sender had
    /// less to send than the window allowed (§5: no window growth).
    pub fn on_ack(
        &mut self,
        now: Instant,
        ack: &AckFrame<'_>,
        app_limited: bool,
        out: &mut impl FnMut(Outcome),
    ) -> Result<(), AckOfUnsentPacket> {
        if ack.largest >= self.next_pn {
            return Err(AckOfUnsentPacket);
        }
        self.largest_acked = Some(self.largest_acked.map_or(ack.largest, |l| l.max(ack.largest)));
        // Pass 1: mark what this ACK newly acknowledges.
        let mut largest_newly: Option<(u64, Instant)> = None;
        let mut any_eliciting = false;
        // The span of the ring the newly acked records lie in.
        let (mut first_i, mut last_i) = (usize::MAX, 0);
        let end_pn = self.first_pn + self.sent.len() as u64;
        for (s, e) in ack.ranges() {
            let lo = s.max(self.first_pn);
            let hi = e.min(end_pn.saturating_sub(1));
            if self.sent.is_empty() || lo > hi {
                continue;
            }
            for pn in lo..=hi {
                let i = (pn - self.first_pn) as usize;
                match self.sent[i].state {
                    State::Outstanding => {
                        self.sent[i].state = State::AckedNow;
                        self.settle(i);
                        first_i = first_i.min(i);
                        last_i = last_i.max(i);
                        let p = self.sent[i].packet;
                        any_eliciting |= p.ack_eliciting;
                        if largest_newly.is_none_or(|(l, _)| pn > l) {
                            largest_newly = Some((pn, p.time));
                        }
                    }
                    State::Lost => {
                        // Acked after being declared lost.
                        self.stats.spurious_losses += 1;
                        self.sent[i].state = State::Acked;
                    }
                    State::AckedNow | State::Acked => {}
                }
            }
        }
        let Some((largest_pn, largest_time)) = largest_newly else { return Ok(()) };
        // RTT sample: only when the ACK newly acknowledges its largest PN and
        // something ack-eliciting (RFC 9002 §5.1).
        if largest_pn == ack.largest && any_eliciting {
            let latest = now.saturating_duration_since(largest_time).as_micros() as u64;
            self.rtt.on_sample(now, latest, ack.ack_delay_micros(), self.max_ack_delay);
        }
        // Losses first, then the controller hears of the acks (RFC 9002 A.7).
        self.detect_lost(now, out);
        for i in first_i..=last_i {
            if self.sent[i].state == State::AckedNow {
                self.sent[i].state = State::Acked;
                let p = self.sent[i].packet;
                if p.in_flight {
                    self.cc.on_ack(now, p.time, u64::from(p.size), app_limited, &self.rtt);
                }
                out(Outcome::Acked { pn: self.first_pn + i as u64, packet: p });
            }
        }
        self.pto_count = 0;
        self.pop_settled();
        Ok(())
    }

    /// Declares lost every outstanding packet below the largest acked one
    /// that passed the packet or time threshold, and sets the loss timer for
    /// the rest (RFC 9002 A.10).
    fn detect_lost(&mut self, now: Instant, out: &mut impl FnMut(Outcome)) {
        self.loss_time = None;
        let Some(largest) = self.largest_acked else { return };
        let end = self.index(largest).map_or(self.sent.len(), |i| i + 1);
        // Nothing outstanding up to the largest acked (the usual case): no
        // loss to declare, no timer to set, nothing for the controller.
        if !self.sent.range(..end).any(|e| e.state == State::Outstanding) {
            return;
        }
        let loss_delay = self.rtt.loss_delay();
        let lost_send_time = now.as_micros().checked_sub(loss_delay);
        let pc_span = PERSISTENT_CONGESTION_THRESHOLD * self.rtt.pto_base(self.max_ack_delay);
        let first_sample = self.rtt.first_sample_at();
        let mut run_start: Option<Instant> = None;
        let mut persistent = false;
        let mut largest_lost_sent: Option<Instant> = None;
        let mut lost_bytes = 0u64;
        for i in 0..end {
            let pn = self.first_pn + i as u64;
            let e = self.sent[i];
            match e.state {
                State::AckedNow | State::Acked => {
                    run_start = None;
                    continue;
                }
                State::Lost => {
                    if e.packet.ack_eliciting && first_sample.is_some_and(|f| e.packet.time > f) {
                        run_start.get_or_insert(e.packet.time);
                    }
                    continue;
                }
                State::Outstanding => {}
            }
            let by_time = lost_send_time.is_some_and(|t| e.packet.time.as_micros() <= t);
            if by_time || largest >= pn + PACKET_THRESHOLD {
                self.sent[i].state = State::Lost;
                self.settle(i);
                self.stats.lost += 1;
                if e.packet.in_flight && !e.packet.pmtu_probe {
                    lost_bytes += u64::from(e.packet.size);
                    largest_lost_sent = Some(largest_lost_sent.map_or(e.packet.time, |t| t.max(e.packet.time)));
                }
                if e.packet.ack_eliciting && first_sample.is_some_and(|f| e.packet.time > f) {
                    let start = *run_start.get_or_insert(e.packet.time);
                    if e.packet.time.saturating_duration_since(start).as_micros() as u64 > pc_span {
                        persistent = true;
                    }
                }
                out(Outcome::Lost { pn, packet: e.packet });
            } else {
                let at = e.packet.time + Duration::from_micros(loss_delay);
                self.loss_time = Some(self.loss_time.map_or(at, |t| t.min(at)));
            }
        }
        if let Some(sent) = largest_lost_sent {
            self.cc.on_congestion(now, sent, lost_bytes, persistent, &self.rtt);
        }
        if persistent {
            self.stats.persistent_congestion += 1;
            self.rtt.reset_min_rtt();
        }
    }

    fn pop_settled(&mut self) {
        while let Some(e) = self.sent.front() {
            // Lost records stay while packets after them are outstanding, so
            // a late ack still counts as a spurious loss; everything settled
            // at the front goes.
            if e.state == State::Outstanding {
                break;
            }
            self.sent.pop_front();
            self.first_pn += 1;
        }
    }

    /// When the loss-detection timer fires: the loss time, else the PTO
    /// from the last ack-eliciting send while any is in flight (RFC 9002
    /// A.8), else `None`.
    pub fn timeout(&self) -> Option<Instant> {
        if self.loss_time.is_some() {
            return self.loss_time;
        }
        if self.ack_eliciting_in_flight == 0 {
            return None;
        }
        let base = self.rtt.pto_base(self.max_ack_delay);
        let backoff = base.saturating_mul(1u64 << self.pto_count.min(MAX_PTO_SHIFT));
        self.last_ack_eliciting_sent.map(|t| t.saturating_add(Duration::from_micros(backoff)))
    }

    /// Whether [`timeout`](Self::timeout) is the PTO timer (not the loss
    /// timer, and armed).
    pub fn pto_armed(&self) -> bool {
        self.loss_time.is_none() && self.ack_eliciting_in_flight > 0
    }

    /// Runs the timer (RFC 9002 A.9); an early or spurious call does nothing.
    ///
    /// Every timer due by `now` runs: the PTO deadline can pass while the
    /// loss timer hides it, so when the loss timer fires and the PTO it
    /// uncovers is already due, the PTO fires too (`Probe`, with the losses
    /// reported). Afterwards [`timeout`](Self::timeout) is later than `now`
    /// or is the PTO whose probes the caller sends next.
    pub fn on_timeout(&mut self, now: Instant, out: &mut impl FnMut(Outcome)) -> TimerAction {
        let Some(t) = self.timeout() else { return TimerAction::None };
        if now < t {
            return TimerAction::None;
        }
        if self.loss_time.is_some() {
            self.detect_lost(now, out);
            self.pop_settled();
            // `detect_lost` leaves the loss timer unset or later than `now`.
            if !(self.pto_armed() && self.timeout().is_some_and(|t| t <= now)) {
                return TimerAction::Losses;
            }
        }
        self.pto_count += 1;
        self.stats.ptos += 1;
        TimerAction::Probe(2)
    }

    /// The path MTU changed: tell the controller.
    pub fn on_mtu(&mut self, mtu: u64) {
        self.cc.on_mtu(mtu);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpgs2::buf::{Reader, Writer};
    use crate::mpgs2::cc::NewReno;
    use crate::mpgs2::frame::Frame;
    use crate::mpgs2::ranges::RangeSet;
    use alloc::vec::Vec;
    use quickcheck::quickcheck;

    const MAD: Duration = Duration::from_millis(25);

    fn ms(v: u64) -> Instant {
        Instant::from_millis(v)
    }

    fn pkt(t: Instant) -> SentPacket {
        SentPacket { time: t, size: 1200, ack_eliciting: true, in_flight: true, pmtu_probe: false, meta: 0 }
    }

    /// An ACK frame for `pns` with `delay_units` × 8 µs, built by the range set.
    fn ack_bytes(pns: &[u64], delay_units: u64) -> Vec<u8> {
        let mut r = RangeSet::new();
        for &p in pns {
            r.insert(p);
        }
        let mut buf = [0u8; 512];
        let mut w = Writer::new(&mut buf);
        r.encode_ack(delay_units, &mut w).expect("fits");
        let n = w.len();
        buf[..n].to_vec()
    }

    fn ack(rec: &mut Recovery<NewReno>, now: Instant, pns: &[u64], delay_units: u64) -> Vec<Outcome> {
        let bytes = ack_bytes(pns, delay_units);
        let Ok(Frame::Ack(a)) = Frame::parse(&mut Reader::new(&bytes)) else { panic!("ack parses") };
        let mut out = Vec::new();
        rec.on_ack(now, &a, false, &mut |o| out.push(o)).expect("valid ack");
        out
    }

    fn lost(out: &[Outcome]) -> Vec<u64> {
        out.iter().filter_map(|o| if let Outcome::Lost { pn, .. } = o { Some(*pn) } else { None }).collect()
    }

    fn acked(out: &[Outcome]) -> Vec<u64> {
        out.iter().filter_map(|o| if let Outcome::Acked { pn, .. } = o { Some(*pn) } else { None }).collect()
    }

    fn new() -> Recovery<NewReno> {
        Recovery::new(NewReno::new(1200), MAD, MAX_INFLIGHT_PACKETS)
    }

    #[test]
    fn clean_acks_grow_the_window_and_sample_rtt() {
        let mut r = new();
        for pn in 0..10 {
            assert!(r.on_sent(pn, pkt(ms(0))));
        }
        assert_eq!(r.bytes_in_flight(), 12_000);
        assert_eq!(r.budget(), 0);
        let out = ack(&mut r, ms(100), &(0..10).collect::<Vec<_>>(), 1250);
        assert_eq!(acked(&out), (0..10).collect::<Vec<_>>());
        assert_eq!(r.rtt().srtt(), 100_000, "the first sample ignores ack delay");
        assert_eq!(r.bytes_in_flight(), 0);
        assert_eq!(r.controller().window(), 24_000, "slow start doubles per RTT");
        assert_eq!(r.recorded(), 0);
        assert_eq!(r.timeout(), None);
        // The handshake sample goes in directly (it has no ACK frame).
        let mut h = new();
        h.rtt_mut().on_sample(ms(0), 40_000, 0, 25_000);
        assert_eq!(h.rtt().srtt(), 40_000);
        // A duplicate ACK changes nothing.
        assert!(ack(&mut r, ms(101), &[9], 0).is_empty());
        assert_eq!(r.rtt().srtt(), 100_000);
    }

    #[test]
    fn packet_threshold() {
        let mut r = new();
        for pn in 0..6 {
            r.on_sent(pn, pkt(ms(pn)));
        }
        let out = ack(&mut r, ms(50), &[3, 4, 5], 0);
        assert_eq!(lost(&out), [0, 1, 2], "largest_acked − pn ≥ 3");
        assert_eq!(acked(&out), [3, 4, 5]);
        assert_eq!(r.controller().window(), 6_000, "one congestion event halves 12,000");
        assert_eq!(r.stats().lost, 3);
        // A late ack of a lost packet is spurious (its record is gone by now).
        let out = ack(&mut r, ms(60), &[0], 0);
        assert!(out.is_empty());
    }

    #[test]
    fn time_threshold_and_loss_timer() {
        let mut r = new();
        r.on_sent(0, pkt(ms(0)));
        r.on_sent(1, pkt(ms(10)));
        let out = ack(&mut r, ms(110), &[1], 0);
        assert!(lost(&out).is_empty(), "one PN behind: not yet lost");
        // latest = 100 ms = srtt; loss_delay = 112.5 ms from the send of PN 0.
        assert_eq!(r.timeout(), Some(ms(0) + Duration::from_micros(112_500)));
        let mut out = Vec::new();
        assert_eq!(r.on_timeout(ms(112), &mut |o| out.push(o)), TimerAction::None, "early");
        assert_eq!(r.on_timeout(ms(113), &mut |o| out.push(o)), TimerAction::Losses);
        assert_eq!(lost(&out), [0]);
        assert_eq!(r.timeout(), None);
    }

    /// The PTO deadline passes while the loss timer hides it: the loss
    /// timer's call runs both, so no timer is left in the past (a caller
    /// asking for the next timer after `on_timeout(t)` gets a later one).
    #[test]
    fn a_pto_due_under_the_loss_timer_fires_with_it() {
        let mut r = new();
        r.on_sent(0, pkt(ms(0)));
        r.on_sent(1, pkt(ms(10)));
        r.on_sent(2, pkt(ms(100)));
        assert!(lost(&ack(&mut r, ms(110), &[1], 0)).is_empty());
        let loss_at = ms(0) + Duration::from_micros(112_500);
        assert_eq!(r.timeout(), Some(loss_at), "the loss timer hides the PTO");
        // srtt 100 ms, rttvar 50 ms: PTO = 100 + 200 + 25 ms after PN 2.
        let pto_at = ms(100) + Duration::from_micros(r.rtt().pto_base(25_000));
        assert_eq!(pto_at, ms(425));
        // A late call (a loaded game loop): both deadlines are behind it.
        let mut out = Vec::new();
        assert_eq!(r.on_timeout(ms(500), &mut |o| out.push(o)), TimerAction::Probe(2));
        assert_eq!(lost(&out), [0], "PN 0 by time (PN 2 is past the largest acked)");
        assert_eq!(r.pto_count(), 1);
        // An on-time call of the loss timer alone still reports only losses.
        let mut r = new();
        r.on_sent(0, pkt(ms(0)));
        r.on_sent(1, pkt(ms(10)));
        r.on_sent(2, pkt(ms(100)));
        ack(&mut r, ms(110), &[1], 0);
        let mut out = Vec::new();
        assert_eq!(r.on_timeout(ms(113), &mut |o| out.push(o)), TimerAction::Losses);
        assert_eq!(lost(&out), [0]);
        assert_eq!(r.timeout(), Some(pto_at));
        assert_eq!(r.pto_count(), 0);
    }

    #[test]
    fn pto_backoff_and_reset() {
        let mut r = new();
        r.on_sent(0, pkt(ms(0)));
        // Before any sample: PTO = 333 + 4 · 166.5 + 25 ms.
        let pto = 333_000 + 666_000 + 25_000;
        assert_eq!(r.timeout(), Some(Instant::from_micros(pto)));
        let mut out = Vec::new();
        assert_eq!(r.on_timeout(Instant::from_micros(pto), &mut |o| out.push(o)), TimerAction::Probe(2));
        assert!(out.is_empty(), "a PTO declares nothing lost");
        assert_eq!(r.timeout(), Some(Instant::from_micros(2 * pto)));
        // Probes are sent (recorded like any packet); the PTO runs from them.
        r.on_sent(1, pkt(Instant::from_micros(pto)));
        assert_eq!(r.timeout(), Some(Instant::from_micros(pto + 2 * pto)));
        r.on_timeout(Instant::from_micros(3 * pto), &mut |o| out.push(o));
        assert_eq!(r.pto_count(), 2);
        // An ACK that newly acknowledges something resets pto_count.
        let out = ack(&mut r, Instant::from_micros(3 * pto + 1000), &[1], 0);
        assert_eq!(acked(&out), [1]);
        assert_eq!(r.pto_count(), 0);
        assert_eq!(r.stats().ptos, 2);
        assert_eq!(r.largest_acked(), Some(1));
        assert_eq!(r.pto(), Duration::from_micros(r.rtt().pto_base(25_000)));
    }

    #[test]
    fn persistent_congestion_collapses_the_window() {
        let mut r = new();
        r.on_sent(0, pkt(ms(0)));
        ack(&mut r, ms(100), &[0], 0);
        // srtt 100 ms, rttvar 50 ms: span = 3 · (100 + 200 + 25) ms = 975 ms.
        assert_eq!(r.rtt().pto_base(25_000), 325_000);
        // PNs 1..=12 sent 100 ms apart (1.1 s span), then PN 13 acked.
        for pn in 1..=13 {
            r.on_sent(pn, pkt(ms(100 + (pn - 1) * 100)));
        }
        let out = ack(&mut r, ms(1_400), &[13], 0);
        // 11 and 12 by time: sent ≥ 9/8 · 100 ms before the ack.
        assert_eq!(lost(&out), (1..=12).collect::<Vec<_>>());
        assert_eq!(r.stats().persistent_congestion, 1);
        // The minimum window, then (RFC 9002 B.8: recovery ends with persistent
        // congestion) the ack of PN 13 grows it in slow start.
        assert_eq!(r.controller().window(), 2_400 + 1_200);
    }

    #[test]
    fn no_persistent_congestion_when_acked_in_between() {
        let mut r = new();
        r.on_sent(0, pkt(ms(0)));
        ack(&mut r, ms(100), &[0], 0);
        for pn in 1..=13 {
            r.on_sent(pn, pkt(ms(100 + (pn - 1) * 100)));
        }
        // PN 6 acked: the lost runs 1..=5 and 7..=12 each span < 975 ms.
        let out = ack(&mut r, ms(1_400), &[6, 13], 0);
        assert_eq!(lost(&out), [1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12]);
        assert_eq!(r.stats().persistent_congestion, 0);
        // 13,200 halved; the acks of 6 and 13 were sent before recovery began.
        assert_eq!(r.controller().window(), 6_600);
    }

    #[test]
    fn refusals_and_caps() {
        let mut r = Recovery::new(NewReno::new(1200), MAD, 4);
        for pn in 0..4 {
            assert!(r.on_sent(pn, pkt(ms(0))));
        }
        assert!(!r.has_room());
        assert!(r.can_record(), "control packets may use a quarter more");
        let ack_only = SentPacket { ack_eliciting: false, in_flight: false, ..pkt(ms(0)) };
        assert!(r.on_sent(4, ack_only) && r.on_sent(5, ack_only), "4 + 4/4 + 1 records at most");
        assert!(!r.can_record());
        assert!(!r.on_sent(6, pkt(ms(0))), "the hard cap holds");
        assert!(!r.on_sent(7, pkt(ms(0))));
        let bytes = ack_bytes(&[6], 0);
        let Ok(Frame::Ack(a)) = Frame::parse(&mut Reader::new(&bytes)) else { panic!("parses") };
        assert_eq!(r.on_ack(ms(1), &a, false, &mut |_| {}), Err(AckOfUnsentPacket));
        // Ack-only packets are not in flight and arm no PTO.
        let mut r = new();
        r.on_sent(0, SentPacket { ack_eliciting: false, in_flight: false, ..pkt(ms(0)) });
        assert_eq!((r.bytes_in_flight(), r.timeout()), (0, None));
        // A lost PMTU probe does not reach the controller.
        let mut r = new();
        r.on_sent(0, SentPacket { pmtu_probe: true, ..pkt(ms(0)) });
        for pn in 1..4 {
            r.on_sent(pn, pkt(ms(1)));
        }
        let out = ack(&mut r, ms(50), &[1, 2, 3], 0);
        assert_eq!(lost(&out), [0]);
        assert_eq!(r.controller().window(), 12_000 + 3 * 1200);
        r.on_mtu(1400);
        assert_eq!(r.controller().minimum_window(), 2_800);
    }

    quickcheck! {
        /// Random send/ack/timeout traces: every packet gets at most one
        /// outcome, bytes in flight equals the outstanding in-flight bytes,
        /// and only packets that were sent are reported.
        fn random_traces_are_consistent(steps: Vec<(u8, u16, bool)>) -> bool {
            let mut r = new();
            let mut now = 0u64;
            let mut next = 0u64;
            let mut fate: Vec<u8> = Vec::new(); // 0 outstanding, 1 acked, 2 lost
            for (op, arg, flag) in steps {
                now += u64::from(arg % 50) * 1000;
                let t = Instant::from_micros(now);
                let mut out = Vec::new();
                match op % 3 {
                    0 => {
                        for _ in 0..=(arg % 4) {
                            let p = SentPacket { ack_eliciting: flag || next.is_multiple_of(2), in_flight: true, ..pkt(t) };
                            if r.on_sent(next, p) {
                                fate.push(0);
                                next += 1;
                            }
                        }
                    }
                    1 if next > 0 => {
                        let hi = u64::from(arg) % next;
                        let pns: Vec<u64> = (hi.saturating_sub(u64::from(arg % 7))..=hi).filter(|p| p % 3 != 0 || flag).collect();
                        if pns.is_empty() { continue; }
                        let bytes = ack_bytes(&pns, u64::from(arg % 100));
                        let Ok(Frame::Ack(a)) = Frame::parse(&mut Reader::new(&bytes)) else { return false };
                        if r.on_ack(t, &a, false, &mut |o| out.push(o)).is_err() { return false; }
                    }
                    _ => {
                        if let Some(at) = r.timeout() {
                            r.on_timeout(at.max(t), &mut |o| out.push(o));
                        }
                    }
                }
                for o in out {
                    let (pn, f) = match o { Outcome::Acked { pn, .. } => (pn, 1), Outcome::Lost { pn, .. } => (pn, 2) };
                    let Some(slot) = fate.get_mut(pn as usize) else { return false };
                    if *slot != 0 { return false; }
                    *slot = f;
                }
                let outstanding = fate.iter().filter(|&&f| f == 0).count() as u64;
                if r.bytes_in_flight() != outstanding * 1200 { return false; }
                if r.controller().window() < 2400 { return false; }
            }
            true
        }
    }
}
