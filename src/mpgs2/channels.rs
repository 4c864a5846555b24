//! The send side's channel table (MPGS2.md §4.3–§4.4): one sender per
//! configured channel, kept in serving order (ascending priority, then id),
//! with the deficit round-robin state of each priority.
//!
//! Packet assembly (`conn`) asks [`TxTable::next_turn`] which channel may
//! write next and reports what it wrote with [`TxTable::wrote`] or that the
//! channel has nothing more for this packet with [`TxTable::exhausted`].
//! Within a priority, a channel earns `weight × 64` bytes of credit per
//! visit and writes frames while its credit is positive (a frame may take
//! it below zero; the debt is repaid on later visits), so over time the
//! channels of one priority share the link in proportion to their weights.
//! A channel with messages that has nothing more for the current packet
//! keeps taking its quantum each round (capped), so the packet boundary
//! does not tilt the shares; an idle one loses its credit.
//! A priority is served only when every channel of each smaller priority
//! is exhausted for the packet. Everything is in a fixed order:
//! deterministic.

use alloc::vec::Vec;

use super::frame::{ChannelKind, MAX_CHANNELS};
use super::send::{ReliableSend, UnreliableSend};
use crate::Instant;
use crate::channel::{ChannelConfig, Oversize};

/// Credit per unit of weight per visit (§4.4).
pub const QUANTUM: i64 = 64;
const NONE: u8 = u8::MAX;
/// Credit a channel may save beyond one quantum while it cannot write.
const CREDIT_CAP: i64 = 2 * crate::config::MAX_DATAGRAM as i64;

/// One channel's sender.
#[cfg_attr(feature = "_fuzzing", derive(Clone))]
#[derive(Debug)]
pub enum Sender {
    /// Kinds 0 and 1.
    Unreliable(UnreliableSend),
    /// Kinds 2 and 3.
    Reliable(ReliableSend),
}

impl Sender {
    fn is_empty(&self) -> bool {
        match self {
            Sender::Unreliable(u) => u.is_empty(),
            Sender::Reliable(r) => r.is_empty(),
        }
    }

    fn next_expiry(&self) -> Option<Instant> {
        match self {
            Sender::Unreliable(u) => u.next_expiry(),
            Sender::Reliable(r) => r.next_expiry(),
        }
    }
}

/// One channel of the send side.
#[cfg_attr(feature = "_fuzzing", derive(Clone))]
#[derive(Debug)]
pub struct TxChannel {
    /// Its id.
    pub id: u8,
    /// Its kind.
    pub kind: ChannelKind,
    /// Its priority (0 first).
    pub priority: u8,
    /// Its oversize policy (unreliable kinds).
    pub oversize: Oversize,
    /// Its sender.
    pub sender: Sender,
    /// Oversize messages promoted from it (§4.5).
    pub promoted: u64,
    quantum: i64,
    deficit: i64,
}

/// Every channel of one connection's send side.
#[cfg_attr(feature = "_fuzzing", derive(Clone))]
#[derive(Debug)]
pub struct TxTable {
    /// The channels in serving order: ascending priority, then id.
    pub ch: Vec<TxChannel>,
    /// Channel id → index in `ch` (`NONE`: not configured).
    at: [u8; MAX_CHANNELS as usize],
    /// Per priority present, in order: `[start, end)` in `ch` and the
    /// round-robin position within it.
    groups: heapless::Vec<(u8, u8, u8), 8>,
    /// Per packet: channels with nothing more for it (bit = index).
    done: u64,
    /// The group being served in this packet.
    group: usize,
    /// The one channel holding messages in this packet, when only one does
    /// (`NONE`: several, or none). Alone, it has nobody to share with: it
    /// is served without credit accounting, and it neither saves credit nor
    /// runs into debt, so it meets the next competitor even.
    solo: u8,
}

impl TxTable {
    /// The senders of `channels` (ids below 64, priorities 0–7, as
    /// `EndpointConfig::validate` ensures; others are ignored), with the
    /// peer's per-channel `recv_window`.
    pub fn new(channels: &[ChannelConfig], peer_recv_window: u64) -> TxTable {
        let mut cfgs: Vec<&ChannelConfig> =
            channels.iter().filter(|c| c.id < MAX_CHANNELS && c.priority <= crate::channel::MAX_PRIORITY).collect();
        cfgs.sort_by_key(|c| (c.priority, c.id));
        cfgs.dedup_by_key(|c| c.id);
        let mut t = TxTable {
            ch: Vec::with_capacity(cfgs.len()),
            at: [NONE; 64],
            groups: heapless::Vec::new(),
            done: 0,
            group: 0,
            solo: NONE,
        };
        for c in cfgs {
            let ttl = c.ttl.unwrap_or(crate::channel::DEFAULT_UNRELIABLE_TTL);
            let sender = match c.kind {
                ChannelKind::Unreliable => Sender::Unreliable(UnreliableSend::new(ttl)),
                ChannelKind::UnreliableSequenced => Sender::Unreliable(UnreliableSend::sequenced(ttl)),
                k => Sender::Reliable(ReliableSend::new(k, peer_recv_window, c.ttl)),
            };
            let i = t.ch.len() as u8;
            t.at[usize::from(c.id)] = i;
            match t.groups.last_mut() {
                Some(g) if t.ch[usize::from(g.0)].priority == c.priority => g.1 = i + 1,
                // At most 8 priorities (0–7).
                _ => {
                    let _ = t.groups.push((i, i + 1, 0));
                }
            }
            t.ch.push(TxChannel {
                id: c.id,
                kind: c.kind,
                priority: c.priority,
                oversize: c.oversize,
                sender,
                promoted: 0,
                quantum: i64::from(c.weight.max(1)) * QUANTUM,
                deficit: 0,
            });
        }
        t
    }

    /// The index of channel `id`.
    #[inline]
    pub fn index(&self, id: u8) -> Option<usize> {
        let i = *self.at.get(usize::from(id))?;
        (i != NONE).then_some(usize::from(i))
    }

    /// Channel `id`.
    #[inline]
    pub fn get_mut(&mut self, id: u8) -> Option<&mut TxChannel> {
        let i = self.index(id)?;
        self.ch.get_mut(i)
    }

    /// The reliable sender of channel `id`.
    #[inline]
    pub fn reliable_mut(&mut self, id: u8) -> Option<&mut ReliableSend> {
        match &mut self.get_mut(id)?.sender {
            Sender::Reliable(r) => Some(r),
            Sender::Unreliable(_) => None,
        }
    }

    /// Whether channel `id` exists and is of a reliable kind.
    pub fn has_reliable(&self, id: u8) -> bool {
        self.index(id).is_some_and(|i| self.ch[i].kind.is_reliable())
    }

    /// Whether no channel has a message queued or in flight.
    pub fn is_empty(&self) -> bool {
        self.ch.iter().all(|c| c.sender.is_empty())
    }

    /// Whether any channel has something to write now: an unreliable
    /// message queued, or reliable bytes new or lost (in flight alone does
    /// not count).
    pub fn has_sendable(&self) -> bool {
        self.ch.iter().any(|c| match &c.sender {
            Sender::Unreliable(u) => !u.is_empty(),
            Sender::Reliable(r) => r.has_sendable(),
        })
    }

    /// The earliest TTL deadline of any channel.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.ch.iter().filter_map(|c| c.sender.next_expiry()).min()
    }

    /// Reliable bytes counted against the peer's `conn_recv_window`.
    pub fn window_used(&self) -> u64 {
        self.ch
            .iter()
            .map(|c| match &c.sender {
                Sender::Reliable(r) => r.window_used(),
                Sender::Unreliable(_) => 0,
            })
            .sum()
    }

    /// Reliable messages that waited for a flow window.
    pub fn window_waits(&self) -> u64 {
        self.ch
            .iter()
            .map(|c| match &c.sender {
                Sender::Reliable(r) => r.window_waits(),
                Sender::Unreliable(_) => 0,
            })
            .sum()
    }

    /// Starts a packet: every channel may write again, from the first
    /// priority. Channels with nothing queued or in flight are exhausted
    /// from the start (they lose any saved credit, as an idle queue does in
    /// DRR); with at most one channel left the packet takes the fast path.
    pub fn begin_packet(&mut self) {
        self.group = 0;
        let (mut live, mut last) = (0u32, NONE);
        let mut idle = 0u64;
        for (i, c) in self.ch.iter_mut().enumerate() {
            if c.sender.is_empty() {
                idle |= 1 << i;
            } else {
                live += 1;
                last = i as u8;
            }
        }
        if live <= 1 {
            for i in 0..self.ch.len() {
                if idle & (1 << i) != 0 {
                    let c = &mut self.ch[i];
                    c.deficit = c.deficit.min(0);
                }
            }
            if live == 1 {
                self.ch[usize::from(last)].deficit = 0;
            }
            self.done = idle;
            self.solo = last;
        } else {
            // Several channels share the packet: the full DRR, which visits
            // idle channels too (and clears their credit then).
            self.done = 0;
            self.solo = NONE;
        }
    }

    /// The channel (index) whose turn it is to write, or `None` when every
    /// channel is exhausted for this packet. Credit is added here, so the
    /// returned channel's credit is positive.
    pub fn next_turn(&mut self) -> Option<usize> {
        if self.solo != NONE || self.done == self.all() {
            let i = usize::from(self.solo);
            return (self.solo != NONE && self.done & (1 << i) == 0).then_some(i);
        }
        while let Some(&(start, end, _)) = self.groups.get(self.group) {
            let (start, end) = (usize::from(start), usize::from(end));
            let mask = if end - start >= 64 { u64::MAX } else { ((1u64 << (end - start)) - 1) << start };
            if self.done & mask == mask {
                self.group += 1;
                continue;
            }
            self.skip_empty_rounds(start, end);
            // Visit channels from the cursor on; each visit adds a quantum.
            // After the skip above, some live channel reaches positive
            // credit within this round, so this ends.
            loop {
                let g = self.groups[self.group];
                let i = start + usize::from(g.2);
                let c = &mut self.ch[i];
                if self.done & (1 << i) == 0 {
                    if c.deficit > 0 {
                        return Some(i);
                    }
                    c.deficit += c.quantum;
                    if c.deficit > 0 {
                        return Some(i);
                    }
                } else if !c.sender.is_empty() {
                    // A channel with messages that cannot write more in
                    // this packet still takes its quantum in each round the
                    // others take theirs (so the shares hold however the
                    // packet is cut), up to a cap (so one blocked for long
                    // by a flow window does not burst when it opens).
                    c.deficit = (c.deficit + c.quantum).min(c.quantum + CREDIT_CAP);
                }
                self.advance();
            }
        }
        None
    }

    /// Adds at once the quanta of the full rounds in which no live channel
    /// of the group `start..end` would reach positive credit, exactly as
    /// visiting them one by one would (a 1,140 B frame on a weight-1
    /// channel would otherwise take 18 rounds of 64 B visits).
    fn skip_empty_rounds(&mut self, start: usize, end: usize) {
        // The usual case: the channel at the cursor turns positive on this visit.
        let at = start + usize::from(self.groups[self.group].2);
        if self.done & (1 << at) == 0 && self.ch[at].deficit + self.ch[at].quantum > 0 {
            return;
        }
        // Rounds until the first live channel turns positive: r = ⌊−d / q⌋ + 1
        // for a live channel at deficit d ≤ 0 (0 when one is positive).
        let mut rounds = i64::MAX;
        for i in start..end {
            if self.done & (1 << i) == 0 {
                let c = &self.ch[i];
                let r = if c.deficit > 0 { 0 } else { -c.deficit / c.quantum + 1 };
                rounds = rounds.min(r);
                if rounds <= 1 {
                    return;
                }
            }
        }
        let k = rounds - 1;
        for i in start..end {
            let c = &mut self.ch[i];
            if self.done & (1 << i) == 0 {
                c.deficit += k * c.quantum;
            } else if !c.sender.is_empty() {
                c.deficit = (c.deficit.saturating_add(k.saturating_mul(c.quantum))).min(c.quantum + CREDIT_CAP);
            }
        }
    }

    /// Every channel's bit.
    #[inline]
    fn all(&self) -> u64 {
        if self.ch.len() >= 64 { u64::MAX } else { (1u64 << self.ch.len()) - 1 }
    }

    fn advance(&mut self) {
        let g = &mut self.groups[self.group];
        let n = g.1 - g.0;
        g.2 = (g.2 + 1) % n;
    }

    /// Channel `i` wrote a frame of `bytes`: its credit goes down, and once
    /// spent the turn moves on.
    pub fn wrote(&mut self, i: usize, bytes: usize) {
        if self.solo != NONE {
            return; // alone: no accounting
        }
        let c = &mut self.ch[i];
        c.deficit -= i64::try_from(bytes).unwrap_or(i64::MAX);
        if c.deficit <= 0 {
            self.advance();
        }
    }

    /// Channel `i` has nothing more for this packet. A channel with nothing
    /// queued loses its credit (DRR: an idle queue does not save up).
    pub fn exhausted(&mut self, i: usize) {
        self.done |= 1 << i;
        if self.solo != NONE {
            return;
        }
        let c = &mut self.ch[i];
        if c.sender.is_empty() {
            c.deficit = c.deficit.min(0);
        }
        self.advance();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With one channel holding messages, the packet goes straight to it
    /// and it neither saves credit nor runs into debt; idle channels are
    /// never asked; with none, nobody is.
    #[test]
    fn a_channel_alone_is_served_without_accounting() {
        let cfgs = [
            ChannelConfig::new(3, ChannelKind::ReliableUnordered).with_weight(3),
            ChannelConfig::new(4, ChannelKind::ReliableUnordered),
        ];
        let mut t = TxTable::new(&cfgs, 1 << 20);
        t.begin_packet();
        assert_eq!(t.next_turn(), None, "every channel idle");
        t.reliable_mut(4).expect("reliable").push(Instant::ZERO, alloc::vec![0; 10], 0);
        let four = t.index(4).expect("configured");
        for _ in 0..3 {
            t.begin_packet();
            for _ in 0..5 {
                assert_eq!(t.next_turn(), Some(four), "only channel 4 has messages");
                t.wrote(four, 1000);
            }
            t.exhausted(four);
            assert_eq!(t.next_turn(), None);
            assert_eq!(t.ch[four].deficit, 0, "alone: no debt for 5,000 B");
        }
        // A second channel joins: the full DRR, both from even credit.
        t.reliable_mut(3).expect("reliable").push(Instant::ZERO, alloc::vec![0; 10], 1);
        t.begin_packet();
        let first = t.next_turn().expect("a turn");
        t.wrote(first, 500);
        let second = t.next_turn().expect("a turn");
        assert_ne!(first, second, "the one that wrote 500 B on 64 B of credit gives way");
    }

    /// Two saturated channels of weights 3 and 1 in one priority and one of
    /// a later priority: bytes written follow 3 : 1, and the later priority
    /// writes only when both are exhausted.
    #[test]
    fn drr_shares_by_weight_and_priorities_are_strict() {
        let cfgs = [
            ChannelConfig::new(3, ChannelKind::ReliableUnordered).with_priority(1).with_weight(3),
            ChannelConfig::new(4, ChannelKind::ReliableUnordered).with_priority(1),
            ChannelConfig::new(5, ChannelKind::ReliableUnordered).with_priority(2),
            ChannelConfig::new(6, ChannelKind::Unreliable),
        ];
        let mut t = TxTable::new(&cfgs, 1 << 20);
        assert_eq!(t.ch.iter().map(|c| c.id).collect::<Vec<_>>(), [6, 3, 4, 5], "priority, then id");
        // The reliable channels hold a message each (never taken here): they
        // are not idle.
        for id in [3, 4, 5] {
            t.reliable_mut(id).expect("reliable").push(Instant::ZERO, alloc::vec![0], 0);
        }
        let mut bytes = [0usize; 4];
        for _ in 0..1000 {
            t.begin_packet();
            let mut room = 1200usize;
            let mut out = [false; 4];
            while let Some(i) = t.next_turn() {
                if t.ch[i].id == 6 {
                    out[i] = true;
                    t.exhausted(i); // nothing to send on the priority-0 channel
                    continue;
                }
                if t.ch[i].id == 5 {
                    assert!(out[1] && out[2], "priority 2 runs only once priority 1 has nothing more");
                }
                let frame = 500.min(room);
                if frame < 100 {
                    out[i] = true;
                    t.exhausted(i);
                    continue;
                }
                room -= frame;
                bytes[i] += frame;
                t.wrote(i, frame);
            }
        }
        let ratio = bytes[1] as f64 / bytes[2] as f64;
        assert!((2.7..=3.3).contains(&ratio), "3 : 1 ± 10 %: {bytes:?} ({ratio})");
    }
}
