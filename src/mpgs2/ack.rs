//! When to acknowledge (MPGS2.md §4.1; RFC 9000 §13.2): the receiver's
//! ranges, the ack timer and the ack delay.
//!
//! An ACK is due once the oldest unacknowledged ack-eliciting packet is
//! `max_ack_delay` old, at once when an ack-eliciting packet arrives out of
//! order or after a gap, and at once when 8 ack-eliciting packets are
//! unacknowledged. A packet that leaves anyway carries the current ACK when a
//! packet arrived since the last ACK was written, or while an ack-eliciting
//! packet's ACK is not known to have arrived; an unchanged ACK of
//! non-eliciting packets only is not repeated (Decision in MPGS2.md §4.1).

use super::WireError;
use super::buf::Writer;
use super::frame::ACK_DELAY_UNIT_MICROS;
use super::ranges::RangeSet;
use crate::{Duration, Instant};

/// Ack-eliciting packets that make an ACK due at once (§4.1).
pub const ACK_ELICITING_THRESHOLD: u32 = 8;

/// The receive side's acknowledgement state.
#[derive(Clone, Debug)]
pub struct AckState {
    ranges: RangeSet,
    largest_recv_time: Option<Instant>,
    unacked_eliciting: u32,
    oldest_unacked: Option<Instant>,
    immediate: bool,
    /// A packet number was recorded since the last ACK was written.
    news: bool,
    /// The largest ack-eliciting packet number recorded.
    largest_eliciting: Option<u64>,
    /// The largest `largest` of our ACKs that the peer acknowledged: it knows
    /// we hold every packet number up to it that we recorded.
    confirmed: Option<u64>,
    max_ack_delay: Duration,
}

impl AckState {
    /// State for an endpoint that advertised `max_ack_delay`.
    pub fn new(max_ack_delay: Duration) -> AckState {
        AckState {
            ranges: RangeSet::new(),
            largest_recv_time: None,
            unacked_eliciting: 0,
            oldest_unacked: None,
            immediate: false,
            news: false,
            largest_eliciting: None,
            confirmed: None,
            max_ack_delay,
        }
    }

    /// The ranges to acknowledge.
    pub fn ranges(&self) -> &RangeSet {
        &self.ranges
    }

    /// Records an authenticated packet (after the replay window accepted it).
    pub fn on_packet(&mut self, now: Instant, pn: u64, ack_eliciting: bool) {
        let largest = self.ranges.largest();
        let in_order = largest.is_none_or(|l| pn == l + 1);
        if largest.is_none_or(|l| pn > l) {
            self.largest_recv_time = Some(now);
        }
        let new = self.ranges.insert(pn);
        self.news |= new;
        if new && ack_eliciting {
            self.largest_eliciting = Some(self.largest_eliciting.map_or(pn, |l| l.max(pn)));
        }
        if ack_eliciting {
            self.unacked_eliciting += 1;
            self.oldest_unacked.get_or_insert(now);
            if !in_order || self.unacked_eliciting >= ACK_ELICITING_THRESHOLD {
                self.immediate = true;
            }
        }
    }

    /// When an ACK must leave: `None` when none is owed.
    pub fn deadline(&self) -> Option<Instant> {
        let oldest = self.oldest_unacked?;
        Some(if self.immediate { oldest } else { oldest.saturating_add(self.max_ack_delay) })
    }

    /// Whether an ACK is owed by `now`.
    pub fn is_due(&self, now: Instant) -> bool {
        self.deadline().is_some_and(|d| now >= d)
    }

    /// Whether an ACK not yet due should ride on a packet that leaves
    /// anyway (§4.1): when a packet arrived since the last ACK was written,
    /// or while the peer may still be waiting for the ACK of an
    /// ack-eliciting packet (none of our ACKs covering it has been
    /// acknowledged yet, so the last one may have been lost). An unchanged
    /// ACK of non-eliciting packets only is not repeated.
    pub fn has_news(&self) -> bool {
        if self.ranges.is_empty() {
            return false;
        }
        self.news || self.largest_eliciting.is_some_and(|e| self.confirmed.is_none_or(|c| e > c))
    }

    /// Writes the current ACK frame (if any range is held and it fits);
    /// returns the `largest` it acknowledges, which the caller records with
    /// the packet so that [`on_ack_acked`](Self::on_ack_acked) can prune.
    /// Writing clears the ack timer.
    pub fn write(&mut self, now: Instant, w: &mut Writer<'_>) -> Result<u64, WireError> {
        let largest = self.ranges.largest().ok_or(WireError::BadValue)?;
        let delay = self.largest_recv_time.map_or(0, |t| now.saturating_duration_since(t).as_micros() as u64);
        self.ranges.encode_ack(delay / ACK_DELAY_UNIT_MICROS, w)?;
        self.news = false;
        self.unacked_eliciting = 0;
        self.oldest_unacked = None;
        self.immediate = false;
        Ok(largest)
    }

    /// The peer acknowledged a packet that carried an ACK with `largest`:
    /// ranges below it need not be sent again (§4.1).
    pub fn on_ack_acked(&mut self, largest: u64) {
        self.ranges.remove_below(largest);
        self.confirmed = Some(self.confirmed.map_or(largest, |c| c.max(largest)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpgs2::buf::Reader;
    use crate::mpgs2::frame::Frame;

    const MAD: Duration = Duration::from_millis(10);

    #[test]
    fn timer_rules() {
        let t = Instant::from_millis(100);
        let mut a = AckState::new(MAD);
        assert_eq!(a.deadline(), None);
        a.on_packet(t, 0, false);
        assert_eq!(a.deadline(), None, "non-eliciting packets owe no ACK");
        a.on_packet(t, 1, true);
        assert_eq!(a.deadline(), Some(t + MAD));
        assert!(!a.is_due(t + MAD - Duration::from_micros(1)));
        assert!(a.is_due(t + MAD));
        // A gap: at once.
        a.on_packet(t + Duration::from_millis(1), 3, true);
        assert_eq!(a.deadline(), Some(t));
        let mut buf = [0u8; 64];
        let mut w = Writer::new(&mut buf);
        let now = t + Duration::from_millis(2);
        assert_eq!(a.write(now, &mut w), Ok(3));
        let n = w.len();
        let Ok(Frame::Ack(f)) = Frame::parse(&mut Reader::new(&buf[..n])) else { panic!("ack") };
        assert_eq!(f.ack_delay_micros(), 1000, "from the receipt of the largest");
        assert_eq!(f.ranges().collect::<alloc::vec::Vec<_>>(), [(3, 3), (0, 1)]);
        assert_eq!(a.deadline(), None, "writing clears the timer");
        // Eight in order: at once.
        for pn in 4..12 {
            a.on_packet(now, pn, true);
        }
        assert_eq!(a.deadline(), Some(now));
        // Reordered arrival: at once.
        let mut b = AckState::new(MAD);
        b.on_packet(t, 5, true);
        b.write(t, &mut Writer::new(&mut buf)).expect("fits");
        b.on_packet(t, 4, true);
        assert_eq!(b.deadline(), Some(t));
        // Pruning after our ACK was acknowledged.
        a.on_ack_acked(3);
        assert_eq!(a.ranges().iter().last(), Some((3, 11)));
        assert_eq!(AckState::new(MAD).write(t, &mut Writer::new(&mut buf)), Err(WireError::BadValue));
    }

    #[test]
    fn an_unchanged_ack_rides_again_only_while_an_eliciting_packet_is_unconfirmed() {
        let t = Instant::from_millis(100);
        let mut a = AckState::new(MAD);
        let mut buf = [0u8; 64];
        assert!(!a.has_news(), "nothing received, nothing to tell");
        a.on_packet(t, 0, false);
        assert!(a.has_news(), "a non-eliciting packet is news too (the peer prunes on its ack)");
        a.write(t, &mut Writer::new(&mut buf)).expect("fits");
        assert!(!a.has_news(), "an unchanged ACK of non-eliciting packets does not ride again");
        a.on_packet(t, 0, true);
        assert!(!a.has_news(), "a duplicate PN is no news");
        a.on_packet(t, 1, true);
        assert!(a.has_news());
        a.write(t, &mut Writer::new(&mut buf)).expect("fits");
        assert!(a.has_news(), "packet 1 elicits an ACK the peer has not confirmed: it rides again");
        a.on_ack_acked(0);
        assert!(a.has_news(), "an ACK below packet 1 confirmed: still unconfirmed");
        a.on_ack_acked(1);
        assert!(!a.has_news(), "confirmed: no more repeats");
        a.on_packet(t, 2, false);
        assert!(a.has_news());
        a.write(t, &mut Writer::new(&mut buf)).expect("fits");
        assert!(!a.has_news());
    }
}
