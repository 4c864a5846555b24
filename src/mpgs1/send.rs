//! The send side of a connection: queued messages, their transmission units
//! (whole messages or fragments), the datagrams in flight, acknowledgements,
//! loss and retransmission (PROTOCOL.md §5, §7.3, §7.4, §8; §15 rules 3, 4,
//! 5 and 16).
//!
//! Every message gets its message sequence numbers (`msgseq`) when `send`
//! accepts it, one per unit, consecutive for the fragments of one message.
//! A unit is put on the wire only while its `msgseq` is within `send_window`
//! of the oldest unit that may still be (re)transmitted, so a strict
//! receiver's duplicate window never sees a genuine copy as stale (rule 16).

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use super::seq::{self, Counter};
use super::wire::fragment::{self, FRAGMENT_HEADER_LEN, FragmentHeader};
use super::wire::{MsgType, PayloadWriter};
use crate::event::{Delivery, MessageId};
use crate::time::{Duration, Instant};

/// Packets behind the newest sent one that an ack can still reach.
const ACK_RANGE: u16 = 32;
/// Ack-eliciting datagrams in flight are kept this far inside the ack range,
/// leaving room for ack-only datagrams that push the range forward.
const FLIGHT_LIMIT: u16 = 24;
/// A datagram is suspected lost once one this many sequence numbers newer is
/// acknowledged (QUIC's packet threshold); its reliable content is resent.
const REORDER_THRESHOLD: i32 = 3;
/// Units outstanding per connection stay far below half the ring, so ring
/// distances between them are unambiguous.
pub(crate) const MAX_UNITS: usize = 30_000;

/// Heap bytes per queued message, per unit and per datagram in flight,
/// for [`crate::MemoryBounds`].
pub(crate) const MESSAGE_SIZE: usize = core::mem::size_of::<OutMsg>();
pub(crate) const UNIT_SIZE: usize = core::mem::size_of::<Unit>();
pub(crate) const OUTCOME_SIZE: usize = core::mem::size_of::<Outcome>();
pub(crate) const SENT_PACKET_SIZE: usize = core::mem::size_of::<SentPacket>() + core::mem::size_of::<u64>();

/// What became of a message, for the connection to report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Delivered(MessageId),
    Lost(MessageId),
    /// The connection's own DISCONNECT was acknowledged.
    DisconnectAcked,
    /// A message sent without an outcome report was decided: counted in the
    /// metrics, no event.
    Unreported {
        /// Acknowledged (else lost).
        delivered: bool,
    },
}

impl OutMsg {
    /// Frees a fragmented message's buffer once nothing will be sent from it.
    fn free_heap(&mut self) {
        if let Bytes::Heap(v) = &mut self.data {
            *v = Vec::new();
        }
    }
}

/// Where a queued message's bytes live.
#[derive(Debug)]
#[cfg_attr(feature = "_fuzzing", derive(Clone))]
enum Bytes {
    /// In the connection's [`Arena`], at this absolute offset.
    Arena(u64),
    /// A fragmented message, in its own buffer (freed once decided).
    Heap(Vec<u8>),
}

/// FIFO storage for unfragmented queued messages. Messages are appended at
/// the back and released from the front as they retire in id order, so
/// steady traffic reuses one buffer instead of allocating per message. The
/// dead prefix is dropped once it is at least half the buffer, which keeps
/// compaction amortised O(1) per byte.
#[derive(Debug, Default)]
#[cfg_attr(feature = "_fuzzing", derive(Clone))]
struct Arena {
    buf: Vec<u8>,
    /// Absolute offset of `buf[0]`.
    base: u64,
}

impl Arena {
    fn push(&mut self, data: &[u8]) -> u64 {
        let off = self.base + self.buf.len() as u64;
        self.buf.extend_from_slice(data);
        off
    }

    fn get(&self, off: u64, len: usize) -> &[u8] {
        let start = (off - self.base) as usize;
        &self.buf[start..start + len]
    }

    /// Releases every byte before absolute offset `off`.
    fn release_to(&mut self, off: u64) {
        let dead = (off - self.base) as usize;
        if dead == self.buf.len() {
            self.buf.clear();
            self.base = off;
        } else if dead >= 4096 && dead * 2 >= self.buf.len() {
            self.buf.drain(..dead);
            self.base = off;
        }
    }

    fn clear(&mut self) {
        self.base += self.buf.len() as u64;
        self.buf.clear();
    }
}

#[derive(Debug)]
#[cfg_attr(feature = "_fuzzing", derive(Clone))]
struct OutMsg {
    id: u64,
    data: Bytes,
    len: usize,
    kind: MsgType,
    frag_id: u16,
    nfrags: u16,
    acked_units: u16,
    decided: bool,
    /// Whether its outcome becomes a `Delivered`/`Lost` event.
    report: bool,
    /// Absolute number of the message's first unit.
    first_unit: u64,
}

#[derive(Clone, Copy, Debug)]
struct Unit {
    msg: u64,
    frag: u16,
    /// Bytes of message data on the wire (the fragment header included).
    wire_len: u16,
    delivery: Delivery,
    acked: bool,
    /// No further copies will be sent (sent once for `Unreliable`, past its
    /// deadline for `BestEffort`, decided or abandoned for any mode).
    done: bool,
    /// The latest copy was suspected or declared lost: resend it now.
    resend: bool,
    in_flight: u16,
    sends: u32,
    first_sent: Instant,
    last_sent: Instant,
}

#[derive(Clone, Copy, Debug)]
struct SentPacket {
    seq: u16,
    time: Instant,
    /// Index of the first carried unit number in `carried` (absolute).
    carried_start: u64,
    carried_len: u16,
    resolved: bool,
    suspected: bool,
}

/// Retransmission timing the connection computes from its RTT estimate.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timing {
    pub(crate) rto: Duration,
    pub(crate) ack_timeout: Duration,
}

#[derive(Debug)]
#[cfg_attr(feature = "_fuzzing", derive(Clone))]
pub(crate) struct SendState {
    max_payload: usize,
    send_window: u16,
    max_messages: usize,
    max_bytes: usize,
    /// The connection is ending: messages lost from now on are lost
    /// because it closed.
    closing: bool,
    msgseq: Counter,
    frag_ids: Counter,
    next_msg_id: u64,
    messages: VecDeque<OutMsg>,
    msg_base: u64,
    arena: Arena,
    queued_bytes: usize,
    units: VecDeque<Unit>,
    /// Absolute number of `units[0]`; unit `n` has msgseq `base_msgseq + (n − unit_base)`.
    unit_base: u64,
    base_msgseq: u16,
    /// Units before this index have all been sent at least once (or dropped).
    next_unsent: usize,
    /// Units before this index are all acked or done: the send window starts here.
    win_start: usize,
    /// `expire_best_effort` may have retired units at `win_start` or
    /// `next_unsent` without moving them; `fill` advances them first.
    window_stale: bool,
    sent: VecDeque<SentPacket>,
    carried: VecDeque<u64>,
    carried_base: u64,
    /// Message outcomes decided and not yet taken by the connection.
    outcomes: VecDeque<Outcome>,
}

impl SendState {
    pub(crate) fn new(max_payload: usize, send_window: u16, max_messages: usize, max_bytes: usize) -> SendState {
        SendState {
            max_payload,
            send_window,
            max_messages,
            max_bytes,
            closing: false,
            msgseq: Counter::new(),
            frag_ids: Counter::new(),
            next_msg_id: 0,
            messages: VecDeque::new(),
            msg_base: 0,
            arena: Arena::default(),
            queued_bytes: 0,
            units: VecDeque::new(),
            unit_base: 0,
            base_msgseq: 1,
            next_unsent: 0,
            win_start: 0,
            window_stale: false,
            sent: VecDeque::new(),
            carried: VecDeque::new(),
            carried_base: 0,
            outcomes: VecDeque::new(),
        }
    }

    /// Whether an outcome waits.
    #[inline]
    pub(crate) fn has_outcomes(&self) -> bool {
        !self.outcomes.is_empty()
    }

    /// The next decided outcome, oldest first.
    #[inline]
    pub(crate) fn poll_outcome(&mut self) -> Option<Outcome> {
        self.outcomes.pop_front()
    }

    /// Gives back what the drained outcome queue grew beyond its keep.
    pub(crate) fn shrink_outcomes(&mut self) {
        crate::event::shrink_drained(&mut self.outcomes);
    }

    /// Takes the next message sequence number for a message sent outside
    /// the queue: the handshake messages (before anything is queued), or the
    /// final DISCONNECT of a closing connection (after which nothing is).
    pub(crate) fn take_msgseq(&mut self) -> u16 {
        let s = self.msgseq.advance();
        if self.units.is_empty() {
            self.base_msgseq = seq::next(s);
        }
        s
    }

    /// Whether messages lost now are lost because the connection is ending.
    pub(crate) fn is_closing(&self) -> bool {
        self.closing
    }

    /// What refuses a message of `len` bytes when [`has_room`](Self::has_room)
    /// says no: `(queued, limit)` of the first limit it hits (messages,
    /// bytes, or in-flight units).
    pub(crate) fn full_figures(&self, len: usize) -> (usize, usize) {
        if self.messages.len() >= self.max_messages {
            (self.messages.len(), self.max_messages)
        } else if self.queued_bytes + len > self.max_bytes {
            (self.queued_bytes, self.max_bytes)
        } else {
            (self.units.len(), MAX_UNITS)
        }
    }

    /// Whether a message of `len` bytes can be queued now.
    pub(crate) fn has_room(&self, len: usize) -> bool {
        let units = if len <= fragment::max_single(self.max_payload) {
            1
        } else {
            fragment::fragment_count(len, self.max_payload)
        };
        self.messages.len() < self.max_messages
            && self.queued_bytes + len <= self.max_bytes
            && self.units.len() + units <= MAX_UNITS
    }

    /// Queues a message; the caller checked size and room. Its outcome is
    /// an event only if `report`.
    pub(crate) fn push(&mut self, data: &[u8], delivery: Delivery, kind: MsgType, report: bool) -> MessageId {
        let id = self.next_msg_id;
        self.next_msg_id += 1;
        let len = data.len();
        let (frag_id, nfrags, data) = if len <= fragment::max_single(self.max_payload) {
            (0, 1, Bytes::Arena(self.arena.push(data)))
        } else {
            let n = fragment::fragment_count(len, self.max_payload);
            // The caller bounds `len` so that `n` ≤ max_fragments ≤ 8192.
            (self.frag_ids.advance(), u16::try_from(n).unwrap_or(u16::MAX), Bytes::Heap(data.to_vec()))
        };
        if self.units.is_empty() {
            self.base_msgseq = self.msgseq.peek();
        }
        let first_unit = self.unit_base + self.units.len() as u64;
        for frag in 0..nfrags {
            self.msgseq.advance();
            let wire_len = if nfrags == 1 {
                len
            } else {
                FRAGMENT_HEADER_LEN + fragment::fragment_range(len, self.max_payload, usize::from(frag)).len()
            };
            self.units.push_back(Unit {
                msg: id,
                frag,
                // Both forms are at most MAX_PAYLOAD_SIZE (< 2048) bytes.
                wire_len: wire_len as u16,
                delivery,
                acked: false,
                done: false,
                resend: false,
                in_flight: 0,
                sends: 0,
                first_sent: Instant::ZERO,
                last_sent: Instant::ZERO,
            });
        }
        self.queued_bytes += len;
        self.messages.push_back(OutMsg {
            id,
            data,
            len,
            kind,
            frag_id,
            nfrags,
            acked_units: 0,
            decided: false,
            report,
            first_unit,
        });
        MessageId(id)
    }

    /// Bytes of the messages accepted and not yet retired (what counts
    /// against `send_queue_bytes`).
    pub(crate) fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Messages accepted and not yet decided.
    pub(crate) fn queued_messages(&self) -> usize {
        self.messages.iter().filter(|m| !m.decided).count()
    }

    fn msg_index(&self, id: u64) -> Option<usize> {
        let i = id.checked_sub(self.msg_base)?;
        usize::try_from(i).ok().filter(|&i| i < self.messages.len())
    }

    fn unit_msgseq(&self, index: usize) -> u16 {
        seq::forward(self.base_msgseq, index as u32)
    }

    /// Whether a datagram carrying messages may be sent with sequence
    /// number `next_seq`: the oldest datagram still expected to be
    /// acknowledged stays well inside the ack range. Datagrams already
    /// suspected lost (their content is queued again) do not hold the
    /// connection back.
    pub(crate) fn flight_allows(&self, next_seq: u16) -> bool {
        self.sent
            .iter()
            .find(|p| !p.resolved && !p.suspected)
            .is_none_or(|p| seq::diff(next_seq, p.seq) <= i32::from(FLIGHT_LIMIT))
    }

    /// Datagram `seq` is going out: every unresolved datagram more than the
    /// ack range behind it can no longer be acknowledged by a peer that
    /// receives this one, so it is declared lost now rather than at the ack
    /// timeout.
    pub(crate) fn on_datagram_sent(&mut self, seq: u16) -> u64 {
        let mut lost = 0;
        for k in 0..self.sent.len() {
            let (old, resolved) = (self.sent[k].seq, self.sent[k].resolved);
            if seq::diff(seq, old) <= i32::from(ACK_RANGE) {
                break;
            }
            if !resolved {
                self.resolve(k, false);
                lost += 1;
            }
        }
        if lost > 0 {
            self.pop_resolved();
        }
        lost
    }

    fn advance_window(&mut self) {
        self.window_stale = false;
        while self.win_start < self.units.len() {
            let u = &self.units[self.win_start];
            if u.acked || u.done {
                self.win_start += 1;
            } else {
                break;
            }
        }
        while self.next_unsent < self.units.len() {
            let u = &self.units[self.next_unsent];
            if u.sends > 0 || u.done || u.acked {
                self.next_unsent += 1;
            } else {
                break;
            }
        }
    }

    /// Whether a unit is eligible to go out at `now`.
    fn due(&self, u: &Unit, now: Instant, t: Timing) -> bool {
        if u.acked || u.done {
            return false;
        }
        if u.sends == 0 {
            return true;
        }
        if u.delivery == Delivery::BestEffort && now >= u.first_sent + t.ack_timeout {
            // Past its deadline: `expire_best_effort` will retire it.
            return false;
        }
        u.resend || now >= u.last_sent + t.rto
    }

    /// Whether there is a unit to send at `now` (ignoring pacing and datagram room).
    pub(crate) fn has_due(&self, now: Instant, t: Timing) -> bool {
        let end = self.window_end();
        (self.win_start..end).any(|i| self.due(&self.units[i], now, t))
    }

    /// One past the last unit index the send window allows on the wire.
    fn window_end(&self) -> usize {
        (self.win_start + usize::from(self.send_window)).min(self.units.len())
    }

    /// When the next already-sent unit becomes due for a resend by timer
    /// (units due now are reported by [`SendState::has_due`]).
    pub(crate) fn next_resend_time(&self, t: Timing) -> Option<Instant> {
        let end = self.window_end().min(self.next_unsent.max(self.win_start));
        let mut best: Option<Instant> = None;
        for u in self.units.range(self.win_start..end) {
            if u.acked || u.done || u.sends == 0 || u.resend {
                continue;
            }
            let at = u.last_sent + t.rto;
            if u.delivery == Delivery::BestEffort && at >= u.first_sent + t.ack_timeout {
                continue;
            }
            best = Some(best.map_or(at, |b| b.min(at)));
        }
        best
    }

    /// When the next best-effort unit reaches its deadline (see
    /// [`SendState::expire_best_effort`]).
    pub(crate) fn next_best_effort_deadline(&self, t: Timing) -> Option<Instant> {
        // The whole window, not only the units before `next_unsent`: that
        // index advances lazily, so the units of the latest `fill` may lie
        // beyond it, and their deadline must not surface only later (when
        // it may already have passed).
        let end = self.window_end();
        self.units
            .range(self.win_start.min(end)..end)
            .filter(|u| !u.acked && !u.done && u.sends > 0 && u.delivery == Delivery::BestEffort)
            .map(|u| u.first_sent + t.ack_timeout)
            .min()
    }

    /// Stops repeating best-effort units whose deadline passed; reports
    /// messages that are thereby lost.
    pub(crate) fn expire_best_effort(&mut self, now: Instant, t: Timing) {
        let end = self.window_end();
        for i in self.win_start..end {
            let u = self.units[i];
            if u.acked || u.done || u.sends == 0 {
                continue;
            }
            if u.delivery == Delivery::BestEffort && now >= u.first_sent + t.ack_timeout {
                self.units[i].done = true;
                self.window_stale = true;
                if u.in_flight == 0 {
                    self.unit_lost(i);
                }
            }
        }
    }

    /// Fills `w` with due units (resends first, then new ones, in msgseq
    /// order), recording them as carried by datagram `pkt_seq`. Returns
    /// the number of units written and how many of them were resends.
    pub(crate) fn fill(&mut self, w: &mut PayloadWriter<'_>, now: Instant, t: Timing, pkt_seq: u16) -> (usize, usize) {
        // Every other change to `acked`/`done`/`sends` is followed by
        // `advance_window` (directly or through `pop_resolved`).
        if self.window_stale {
            self.advance_window();
        }
        let end = self.window_end();
        let carried_start = self.carried_base + self.carried.len() as u64;
        let mut n = 0usize;
        let mut resends = 0usize;
        // Resends first (units before `next_unsent` have all been sent at
        // least once), then first sends, each in msgseq order.
        // The two runs are contiguous, so one pass covers both; `held`
        // starts afresh where the first sends begin.
        let first_unsent = self.next_unsent.clamp(self.win_start, end);
        // First sends of one message go out in fragment order: once a
        // unit does not fit, the rest of its message waits. Otherwise a
        // small final fragment could leave long before the first one,
        // and the receiver, whose reassembly deadline runs from the
        // first fragment it gets (§8), could expire the message while
        // every fragment ends up acknowledged (rule 5).
        let mut held = None;
        for i in self.win_start..end {
            if i == first_unsent {
                held = None;
            }
            let u = &self.units[i];
            if !self.due(u, now, t) || held == Some(u.msg) {
                continue;
            }
            let (msg, frag, len) = (u.msg, u.frag, usize::from(u.wire_len));
            if !w.fits(len) {
                if w.count() == u8::MAX {
                    break;
                }
                held = Some(msg);
                continue;
            }
            let Some(mi) = self.msg_index(msg) else {
                continue;
            };
            let msgseq = self.unit_msgseq(i);
            let m = &self.messages[mi];
            let data = match &m.data {
                Bytes::Arena(off) => self.arena.get(*off, m.len),
                Bytes::Heap(v) => v.as_slice(),
            };
            let pushed = if m.frag_id == 0 {
                w.push(msgseq, m.kind, data)
            } else {
                let range = fragment::fragment_range(m.len, self.max_payload, usize::from(frag));
                let hdr = FragmentHeader { frag_id: m.frag_id, index: frag + 1, count: m.nfrags };
                let chunk = &data[range];
                w.push_with(msgseq, MsgType::AppFragment, len, |out| {
                    let (h, rest) = out.split_at_mut(FRAGMENT_HEADER_LEN);
                    // `len` = 6 + chunk length, so both halves have the right size.
                    let h: &mut [u8; FRAGMENT_HEADER_LEN] = h.try_into().expect("6-byte split");
                    hdr.emit(h);
                    rest.copy_from_slice(chunk);
                })
            };
            if pushed.is_err() {
                continue;
            }
            let unit = &mut self.units[i];
            if unit.sends == 0 {
                unit.first_sent = now;
            } else {
                resends += 1;
            }
            unit.sends += 1;
            unit.last_sent = now;
            unit.in_flight += 1;
            unit.resend = false;
            if unit.delivery == Delivery::Unreliable {
                unit.done = true;
            }
            self.carried.push_back(self.unit_base + i as u64);
            n += 1;
        }
        if n > 0 {
            self.sent.push_back(SentPacket {
                seq: pkt_seq,
                time: now,
                carried_start,
                carried_len: n as u16,
                resolved: false,
                suspected: false,
            });
        }
        self.advance_window();
        (n, resends)
    }

    fn unit_by_abs(&self, abs: u64) -> Option<usize> {
        let i = abs.checked_sub(self.unit_base)?;
        usize::try_from(i).ok().filter(|&i| i < self.units.len())
    }

    /// Processes a received `ack`/`ack_bits`. Returns the RTT sample of the
    /// newest newly acknowledged datagram, if any.
    pub(crate) fn on_ack(&mut self, ack: u16, ack_bits: u32, now: Instant) -> Option<Duration> {
        if ack == 0 {
            return None;
        }
        let mut rtt = None;
        let mut acked_any = false;
        for k in 0..self.sent.len() {
            let p = &self.sent[k];
            if p.resolved {
                continue;
            }
            let (p_seq, p_time, p_suspected) = (p.seq, p.time, p.suspected);
            let d = seq::diff(ack, p_seq);
            let acked =
                d == 0 || (1..=i32::from(ACK_RANGE)).contains(&d) && ack_bits & (0x8000_0000u32 >> (d - 1)) != 0;
            if acked {
                if d == 0 {
                    rtt = Some(now - p_time);
                }
                acked_any = true;
                self.resolve(k, true);
            } else if d >= REORDER_THRESHOLD && !p_suspected {
                self.sent[k].suspected = true;
                self.mark_resend(k);
            }
        }
        if acked_any {
            self.pop_resolved();
        }
        rtt
    }

    /// Declares lost every datagram unacknowledged for `ack_timeout`.
    /// Returns how many were lost.
    pub(crate) fn detect_timeouts(&mut self, now: Instant, t: Timing) -> u64 {
        let mut lost = 0;
        for k in 0..self.sent.len() {
            let p = self.sent[k];
            if !p.resolved && now >= p.time + t.ack_timeout {
                self.resolve(k, false);
                lost += 1;
            }
        }
        if lost > 0 {
            self.pop_resolved();
        }
        lost
    }

    /// When the oldest unresolved datagram times out.
    pub(crate) fn next_packet_timeout(&self, t: Timing) -> Option<Instant> {
        self.sent.iter().find(|p| !p.resolved).map(|p| p.time + t.ack_timeout)
    }

    fn mark_resend(&mut self, k: usize) {
        let p = self.sent[k];
        let start = (p.carried_start - self.carried_base) as usize;
        for j in start..start + usize::from(p.carried_len) {
            let abs = self.carried[j];
            if let Some(i) = self.unit_by_abs(abs) {
                let u = &mut self.units[i];
                // Only if this datagram holds the latest copy.
                if !u.acked && !u.done && u.last_sent <= p.time {
                    u.resend = true;
                }
            }
        }
    }

    // Inlined into `on_ack`, which calls it for every acknowledged
    // datagram: the queues' fields then stay loaded across the loop
    // instead of being reloaded by each call's prologue.
    #[inline(always)]
    fn resolve(&mut self, k: usize, acked: bool) {
        self.sent[k].resolved = true;
        let p = self.sent[k];
        let start = (p.carried_start - self.carried_base) as usize;
        for j in start..start + usize::from(p.carried_len) {
            let Some(i) = self.unit_by_abs(self.carried[j]) else {
                continue;
            };
            let u = &mut self.units[i];
            u.in_flight = u.in_flight.saturating_sub(1);
            if u.acked {
                continue;
            }
            if acked {
                u.acked = true;
                let msg = u.msg;
                if let Some(mi) = self.msg_index(msg) {
                    let m = &mut self.messages[mi];
                    m.acked_units += 1;
                    if m.acked_units == m.nfrags && !m.decided {
                        m.decided = true;
                        let outcome = if m.kind == MsgType::Disconnect {
                            Outcome::DisconnectAcked
                        } else if !m.report {
                            Outcome::Unreported { delivered: true }
                        } else {
                            Outcome::Delivered(MessageId(m.id))
                        };
                        self.queued_bytes -= m.len;
                        m.free_heap();
                        self.outcomes.push_back(outcome);
                    }
                }
            } else if u.done {
                if u.in_flight == 0 {
                    self.unit_lost(i);
                }
            } else if u.last_sent <= p.time {
                u.resend = true;
            }
        }
    }

    /// Unit `i` will never be acknowledged: its message is lost.
    fn unit_lost(&mut self, i: usize) {
        let msg = self.units[i].msg;
        self.decide_lost(msg);
    }

    fn decide_lost(&mut self, msg: u64) {
        let Some(mi) = self.msg_index(msg) else {
            return;
        };
        let m = &mut self.messages[mi];
        if m.decided {
            return;
        }
        m.decided = true;
        self.queued_bytes -= m.len;
        m.free_heap();
        let internal = m.kind == MsgType::Disconnect;
        let report_it = m.report;
        // Stop every other unit of the message (they are contiguous).
        let first = m.first_unit.saturating_sub(self.unit_base) as usize;
        let last = (m.first_unit + u64::from(m.nfrags)).saturating_sub(self.unit_base) as usize;
        for i in first..last.min(self.units.len()) {
            self.units[i].done = true;
        }
        if !internal {
            self.outcomes.push_back(if report_it {
                Outcome::Lost(MessageId(msg))
            } else {
                Outcome::Unreported { delivered: false }
            });
        }
    }

    /// Removes resolved datagrams and finished units/messages from the
    /// fronts of their queues.
    fn pop_resolved(&mut self) {
        // Each queue's finished prefix is measured, then dropped at once.
        let packets = self.sent.iter().take_while(|p| p.resolved).count();
        let carried: usize = self.sent.range(..packets).map(|p| usize::from(p.carried_len)).sum();
        self.sent.drain(..packets);
        self.carried.drain(..carried.min(self.carried.len()));
        self.carried_base += carried as u64;
        let units = self.units.iter().take_while(|u| u.acked || u.done && u.in_flight == 0).count();
        if units > 0 {
            self.units.drain(..units);
            self.unit_base += units as u64;
            // `units` ≤ MAX_UNITS < the ring size.
            self.base_msgseq = seq::forward(self.base_msgseq, units as u32);
            self.win_start = self.win_start.saturating_sub(units);
            self.next_unsent = self.next_unsent.saturating_sub(units);
        }
        while let Some(m) = self.messages.front() {
            if !m.decided {
                break;
            }
            if let Bytes::Arena(off) = m.data {
                self.arena.release_to(off + m.len as u64);
            }
            self.messages.pop_front();
            self.msg_base += 1;
        }
        // Keep `has_due` and `fill` looking at the same window.
        self.advance_window();
    }

    /// Abandons every message not yet sent (local disconnect): each is
    /// reported lost. Units in flight keep their chance to be acknowledged.
    pub(crate) fn drop_unsent(&mut self) {
        self.closing = true;
        let mut sent_any = alloc::vec![false; self.messages.len()];
        for u in &self.units {
            if let (true, Some(mi)) = (u.sends > 0, self.msg_index(u.msg)) {
                sent_any[mi] = true;
            }
        }
        let ids: Vec<u64> =
            self.messages.iter().zip(&sent_any).filter(|(m, sent)| !m.decided && !**sent).map(|(m, _)| m.id).collect();
        for id in ids {
            self.decide_lost(id);
        }
        // Nothing more is retransmitted; in-flight copies may still be acked.
        for u in self.units.iter_mut() {
            u.done = true;
        }
        self.pop_resolved();
    }

    /// Reports every undecided message lost (the connection is closing).
    pub(crate) fn abandon(&mut self) {
        self.closing = true;
        let ids: Vec<u64> = self.messages.iter().filter(|m| !m.decided).map(|m| m.id).collect();
        for id in ids {
            self.decide_lost(id);
        }
        self.units.clear();
        self.messages.clear();
        self.arena.clear();
        self.sent.clear();
        self.carried.clear();
        self.win_start = 0;
        self.next_unsent = 0;
    }
}
