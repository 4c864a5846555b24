//! The send side of the reliable channel kinds (MPGS2.md §4.2–§4.5), as a
//! pure structure: message ids, cutting into MESSAGE/FRAGMENT frames by byte
//! offset, retransmission by frame (a lost frame's bytes return to the head
//! of the channel and are re-cut for the current size), the id windows, the
//! peer's per-channel `recv_window`, TTL expiry, and exactly one
//! [`Receipt`] per message.
//!
//! The connection records which frames each packet carried and calls
//! [`ReliableSend::on_acked`] / [`ReliableSend::on_lost`] with them when
//! recovery reports the packet's outcome.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use super::frame::ChannelKind;
use super::recv::{ID_WINDOW, UNORDERED_AHEAD};
use super::varint;
use crate::Instant;

/// Guaranteed single-frame message size on any path: 1200 − 29 − 6 (§4.5).
pub const GUARANTEED_UNFRAGMENTED: usize = 1165;
/// Worst-case short-packet overhead: flags, 8-byte id, 4-byte PN, tag (§4.5).
pub const MAX_PACKET_OVERHEAD: usize = 29;
/// MESSAGE overhead with a 2-byte length (§4.5).
pub const MESSAGE_OVERHEAD: usize = 6;
/// FRAGMENT overhead with the longest varints an unreliable message needs (§4.5).
pub const FRAGMENT_OVERHEAD: usize = 14;

/// `max_unfragmented = PLPMTU − 35` (§4.5).
pub const fn max_unfragmented(plpmtu: usize) -> usize {
    plpmtu - MAX_PACKET_OVERHEAD - MESSAGE_OVERHEAD
}

/// `fragment_payload = PLPMTU − 43` (§4.5).
pub const fn fragment_payload(plpmtu: usize) -> usize {
    plpmtu - MAX_PACKET_OVERHEAD - FRAGMENT_OVERHEAD
}

/// How an unreliable message of `len` bytes leaves (§4.5): `Ok(1)` as one
/// MESSAGE, `Ok(n)` as n fragments of `fragment_payload` bytes (the last
/// shorter), `Err(max)` when it is above `max_unrel_fragments ×
/// fragment_payload` (then promoted or refused by the channel's policy).
pub fn unreliable_fragments(len: usize, plpmtu: usize, max_unrel_fragments: u8) -> Result<usize, usize> {
    if len <= max_unfragmented(plpmtu) {
        return Ok(1);
    }
    let fp = fragment_payload(plpmtu);
    let max = usize::from(max_unrel_fragments) * fp;
    if len > max { Err(max) } else { Ok(len.div_ceil(fp)) }
}

/// The outcome of a message, by the receipt given to
/// [`ReliableSend::push`], reported exactly once (§4.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Receipt {
    /// Every byte was acknowledged.
    Delivered(u64),
    /// Its TTL passed before any byte was sent.
    Expired(u64),
    /// The connection closed first.
    ConnectionClosed(u64),
}

impl Receipt {
    /// The receipt it names.
    pub fn receipt(self) -> u64 {
        match self {
            Receipt::Delivered(r) | Receipt::Expired(r) | Receipt::ConnectionClosed(r) => r,
        }
    }
}

/// One frame to put in a packet: a MESSAGE when `offset == 0 && len ==
/// total_len`, else a FRAGMENT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// The message id (full; its low 16 bits go on the wire).
    pub id: u64,
    /// The message length.
    pub total_len: u64,
    /// First byte of the chunk.
    pub offset: u64,
    /// Bytes in the chunk.
    pub len: u64,
}

impl Chunk {
    /// Whether it goes out as a MESSAGE frame.
    pub fn is_whole(&self) -> bool {
        self.offset == 0 && self.len == self.total_len
    }

    /// Frame bytes for a chunk of `len` data bytes of a `total` message at
    /// `offset` (reliable kinds: type, channel, u16 id, varints).
    pub fn frame_len(total: u64, offset: u64, len: u64) -> usize {
        let v = |x: u64| varint::len(x).unwrap_or(8);
        if offset == 0 && len == total {
            4 + v(len) + len as usize
        } else {
            4 + v(total) + v(offset) + v(len) + len as usize
        }
    }
}

#[cfg_attr(feature = "_fuzzing", derive(Clone))]
#[derive(Debug)]
struct Out {
    id: u64,
    /// What the caller names the message by.
    receipt: u64,
    data: Vec<u8>,
    /// Byte ranges `[s, e)` still to send, ascending (lost ones come back).
    unsent: Ranges,
    acked: u64,
    /// Acked ranges, ascending and merged.
    acked_ranges: Ranges,
    expires: Option<Instant>,
    transmitted: bool,
    done: bool,
    /// It had to wait for a flow window at least once (counted once).
    waited: bool,
}

/// Byte ranges `[s, e)` of one message, ascending; one range (the usual
/// case) lives inline.
type Ranges = smallvec::SmallVec<[(u64, u64); 1]>;

fn add_range(v: &mut Ranges, mut s: u64, mut e: u64) -> u64 {
    // Returns the number of bytes newly covered.
    let mut new = e - s;
    let i = v.partition_point(|&(_, re)| re < s);
    while i < v.len() && v[i].0 <= e {
        let (rs, re) = v.remove(i);
        new -= re.min(e).saturating_sub(rs.max(s));
        s = s.min(rs);
        e = e.max(re);
    }
    v.insert(i, (s, e));
    new
}

/// The sender of one reliable channel.
#[cfg_attr(feature = "_fuzzing", derive(Clone))]
#[derive(Debug)]
pub struct ReliableSend {
    kind: ChannelKind,
    /// Messages from U onward, in id order.
    queue: VecDeque<Out>,
    next_id: u64,
    /// Highest id of which a frame was acked (A of §4.3).
    highest_acked: Option<u64>,
    /// Bytes of messages from U onward (what the peer's window counts).
    window_used: u64,
    peer_window: u64,
    ttl: Option<crate::Duration>,
    /// Messages that had to wait for the peer's `recv_window` or
    /// `conn_recv_window` before their first byte could leave.
    window_waits: u64,
    /// Messages not done with bytes still to send (new or lost): what
    /// [`ReliableSend::has_sendable`] answers in O(1).
    sendable: usize,
    /// Buffers of acknowledged messages, emptied, for the next ones
    /// ([`take_buffer`](ReliableSend::take_buffer)).
    spare: Spare,
}

/// Emptied message buffers kept for reuse: a steady stream of small
/// messages then costs no allocation per message (MPGS/1 has its byte
/// arena for the same reason). At most [`SPARE_BUFFERS`] buffers of at most
/// [`SPARE_CAPACITY`] bytes each; larger ones are freed. A kept buffer only
/// serves a message it fits without much waste (at most twice its length
/// plus [`SPARE_SLACK`]), so a queue of small messages never holds large
/// buffers: queued bytes stay within what `memory_bounds` counts.
#[derive(Clone, Debug, Default)]
pub struct Spare(Vec<Vec<u8>>);

/// The waste a kept buffer may bring to a message beside twice its length.
pub const SPARE_SLACK: usize = 64;

/// Buffers a [`Spare`] keeps.
pub const SPARE_BUFFERS: usize = 4;
/// The largest buffer a [`Spare`] keeps, in bytes of capacity: a message
/// that fits one 1,200-byte datagram fits it.
pub const SPARE_CAPACITY: usize = 1280;

impl Spare {
    /// Keeps `buf`, emptied, if it is small and there is room.
    pub fn put(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() <= SPARE_CAPACITY && buf.capacity() > 0 && self.0.len() < SPARE_BUFFERS {
            buf.clear();
            self.0.push(buf);
        }
    }

    /// An empty buffer for `len` bytes: a kept one that holds them with at
    /// most `len + SPARE_SLACK` to spare, else a new one of exactly `len`.
    pub fn take(&mut self, len: usize) -> Vec<u8> {
        let fits = |b: &Vec<u8>| b.capacity() >= len && b.capacity() <= 2 * len + SPARE_SLACK;
        match self.0.iter().rposition(fits) {
            Some(i) => self.0.swap_remove(i),
            None => Vec::with_capacity(len),
        }
    }
}

impl Out {
    /// Not done, with bytes to send.
    fn sendable(&self) -> bool {
        !self.done && !self.unsent.is_empty()
    }
}

impl ReliableSend {
    /// A sender of `kind` (2 or 3); `ttl` for BestEffort (kind 2 only).
    pub fn new(kind: ChannelKind, peer_recv_window: u64, ttl: Option<crate::Duration>) -> ReliableSend {
        ReliableSend {
            kind,
            queue: VecDeque::new(),
            next_id: 0,
            highest_acked: None,
            window_used: 0,
            peer_window: peer_recv_window,
            ttl: if kind == ChannelKind::ReliableOrdered { None } else { ttl },
            window_waits: 0,
            sendable: 0,
            spare: Spare::default(),
        }
    }

    /// An empty buffer for the next message's `len` bytes, reusing the
    /// buffer of an acknowledged one when one fits ([`Spare::take`]).
    pub fn take_buffer(&mut self, len: usize) -> Vec<u8> {
        self.spare.take(len)
    }

    /// Messages queued or in flight.
    pub fn len(&self) -> usize {
        self.queue.iter().filter(|m| !m.done).count()
    }

    /// Whether nothing is queued or in flight: O(1), as every change that
    /// finishes a message pops the finished prefix, so the front message,
    /// if any, is never finished.
    pub fn is_empty(&self) -> bool {
        self.queue.front().is_none_or(|m| m.done)
    }

    /// Whether a message has bytes to send, new or lost (in flight alone is
    /// not enough); it may still wait for a window, an id window or a TTL
    /// check in [`next_chunk_within`](Self::next_chunk_within). O(1).
    pub fn has_sendable(&self) -> bool {
        debug_assert_eq!(self.sendable, self.queue.iter().filter(|m| m.sendable()).count());
        self.sendable > 0
    }

    /// Queues a message that outcomes name by `receipt`; returns its id.
    pub fn push(&mut self, now: Instant, data: Vec<u8>, receipt: u64) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let len = data.len() as u64;
        self.queue.push_back(Out {
            id,
            receipt,
            data,
            // An empty message is one empty MESSAGE frame.
            unsent: smallvec::smallvec![(0, len)],
            acked: 0,
            acked_ranges: Ranges::new(),
            expires: self.ttl.map(|t| now + t),
            transmitted: false,
            done: false,
            waited: false,
        });
        self.sendable += 1;
        id
    }

    /// Bytes this channel counts against the peer's windows: every message
    /// from U onward whose first byte has left (§4.3).
    pub fn window_used(&self) -> u64 {
        self.window_used
    }

    /// Messages that waited for a flow window before their first byte left.
    pub fn window_waits(&self) -> u64 {
        self.window_waits
    }

    /// Bytes of messages whose first byte has left and that are not fully
    /// acknowledged yet, less their acknowledged bytes (for metrics; walks
    /// the queue).
    pub fn in_flight_bytes(&self) -> u64 {
        self.queue.iter().filter(|m| !m.done && m.transmitted).map(|m| m.data.len() as u64 - m.acked).sum()
    }

    fn oldest_unacked(&self) -> Option<u64> {
        // The front is never done (see `is_empty`).
        debug_assert_eq!(self.queue.front().map(|m| m.id), self.queue.iter().find(|m| !m.done).map(|m| m.id));
        self.queue.front().map(|m| m.id)
    }

    /// When the next message whose first byte has not left expires (TTL
    /// channels): deadlines grow with the id, so the first such message has
    /// the earliest.
    pub fn next_expiry(&self) -> Option<Instant> {
        // Without a TTL nothing expires: no walk (every poll asks).
        self.ttl?;
        self.queue.iter().find(|m| !m.done && !m.transmitted).and_then(|m| m.expires)
    }

    /// Expires messages whose TTL passed before any byte left (§4.3): each
    /// gets `Expired` once and is never sent.
    pub fn expire(&mut self, now: Instant, out: &mut impl FnMut(Receipt)) {
        for m in self.queue.iter_mut() {
            if !m.done && !m.transmitted && m.expires.is_some_and(|t| now >= t) {
                self.sendable -= usize::from(m.sendable());
                m.done = true;
                out(Receipt::Expired(m.receipt));
            }
        }
        self.pop_done();
    }

    fn pop_done(&mut self) {
        while self.queue.front().is_some_and(|m| m.done) {
            if let Some(m) = self.queue.pop_front() {
                if m.transmitted {
                    self.window_used -= m.data.len() as u64;
                }
                self.spare.put(m.data);
            }
        }
    }

    /// The next chunk to send in at most `room` frame bytes, honouring the
    /// id windows and the peer's window; `None` when nothing may go. The
    /// chunk's bytes are then considered in flight.
    pub fn next_chunk(&mut self, now: Instant, room: usize) -> Option<(Chunk, &[u8])> {
        self.next_chunk_within(now, room, u64::MAX)
    }

    /// [`next_chunk`](Self::next_chunk) with `conn_room` bytes left of the
    /// peer's connection-wide `conn_recv_window` beside every other reliable
    /// channel: a message whose first byte has not left enters only if its
    /// whole length fits both windows (§4.3); until then it waits, counted
    /// once in [`window_waits`](Self::window_waits).
    pub fn next_chunk_within(&mut self, now: Instant, room: usize, conn_room: u64) -> Option<(Chunk, &[u8])> {
        let u = self.oldest_unacked()?;
        let window = self.window_used;
        let mut pick = None;
        let mut blocked = None;
        for (i, m) in self.queue.iter().enumerate() {
            if m.done || m.unsent.is_empty() {
                continue;
            }
            if m.expires.is_some_and(|t| now >= t) && !m.transmitted {
                continue; // expire() reports it
            }
            if m.id - u >= ID_WINDOW {
                break;
            }
            if self.kind == ChannelKind::ReliableUnordered
                && m.id.saturating_sub(self.highest_acked.map_or(0, |a| a + 1)) >= UNORDERED_AHEAD
            {
                break;
            }
            if !m.transmitted {
                // The message enters the windows at its first byte sent.
                let len = m.data.len() as u64;
                if window + len > self.peer_window || len > conn_room {
                    blocked = Some(i);
                    break;
                }
            }
            pick = Some(i);
            break;
        }
        if let Some(i) = blocked
            && !self.queue[i].waited
        {
            self.queue[i].waited = true;
            self.window_waits += 1;
        }
        let i = pick?;
        let m = &mut self.queue[i];
        let total = m.data.len() as u64;
        let (s, e) = m.unsent[0];
        // Largest len that fits `room` (usually all of it, at once).
        let mut len = e - s;
        let mut frame = Chunk::frame_len(total, s, len);
        while len > 0 && frame > room {
            len = len.saturating_sub((frame - room) as u64).min(len - 1);
            frame = Chunk::frame_len(total, s, len);
        }
        if frame > room || (len == 0 && total > 0) {
            return None;
        }
        if !m.transmitted {
            self.window_used += total;
            m.transmitted = true;
        }
        let m = &mut self.queue[i];
        if s + len == e {
            if m.unsent.len() == 1 {
                m.unsent.clear();
            } else {
                m.unsent.remove(0);
            }
            self.sendable -= usize::from(m.unsent.is_empty());
        } else {
            m.unsent[0].0 = s + len;
        }
        let chunk = Chunk { id: m.id, total_len: total, offset: s, len };
        Some((chunk, &m.data[s as usize..(s + len) as usize]))
    }

    fn find(&mut self, id: u64) -> Option<&mut Out> {
        let front = self.queue.front()?.id;
        let i = usize::try_from(id.checked_sub(front)?).ok()?;
        self.queue.get_mut(i)
    }

    /// A packet carrying `chunk` was acknowledged.
    pub fn on_acked(&mut self, chunk: Chunk, out: &mut impl FnMut(Receipt)) {
        self.highest_acked = Some(self.highest_acked.map_or(chunk.id, |a| a.max(chunk.id)));
        let Some(m) = self.find(chunk.id) else { return };
        if m.done {
            return;
        }
        let total = m.data.len() as u64;
        if chunk.offset == 0 && chunk.len == total {
            // The whole message in one frame (the usual case): done, with
            // no range to merge.
            m.acked = total;
        } else {
            m.acked += add_range(&mut m.acked_ranges, chunk.offset, chunk.offset + chunk.len);
        }
        if m.acked == total {
            let was = m.sendable();
            m.done = true;
            m.unsent.clear();
            out(Receipt::Delivered(m.receipt));
            self.sendable -= usize::from(was);
        }
        self.pop_done();
    }

    /// A packet carrying `chunk` was declared lost: its bytes that are not
    /// acked go back to the head of the message's unsent ranges.
    pub fn on_lost(&mut self, chunk: Chunk) {
        let Some(m) = self.find(chunk.id) else { return };
        if m.done {
            return;
        }
        let was = m.sendable();
        let (s, e) = (chunk.offset, chunk.offset + chunk.len);
        // Subtract the acked ranges, then add what is left to unsent.
        let mut pieces: Vec<(u64, u64)> = alloc::vec![(s, e)];
        for &(as_, ae) in &m.acked_ranges {
            pieces = pieces
                .into_iter()
                .flat_map(|(ps, pe)| {
                    let left = (ps, pe.min(as_));
                    let right = (ps.max(ae), pe);
                    [left, right].into_iter().filter(|(a, b)| a < b)
                })
                .collect();
        }
        if s == e && m.data.is_empty() {
            pieces.push((0, 0));
        }
        for (ps, pe) in pieces {
            if ps == pe {
                if !m.unsent.contains(&(0, 0)) {
                    m.unsent.insert(0, (0, 0));
                }
            } else {
                add_range(&mut m.unsent, ps, pe);
            }
        }
        let now_sendable = m.sendable();
        self.sendable += usize::from(now_sendable && !was);
    }

    /// The connection closed: every outstanding message gets
    /// `ConnectionClosed` once.
    pub fn close(&mut self, out: &mut impl FnMut(Receipt)) {
        for m in self.queue.iter_mut().filter(|m| !m.done) {
            self.sendable -= usize::from(m.sendable());
            m.done = true;
            out(Receipt::ConnectionClosed(m.receipt));
        }
        self.pop_done();
    }
}

/// An unreliable message ready to leave: one MESSAGE, or a fragment group
/// that leaves whole in one assembly pass (§4.4, §4.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnreliableOut {
    /// The receipt id the application got.
    pub receipt: u64,
    /// The wire id of a fragment group (`None`: one MESSAGE frame).
    pub fragment_id: Option<u16>,
    /// Sequenced channels: the message id, assigned when it leaves the
    /// queue (§4.3; a group's `fragment_id` is the same id).
    pub seq: Option<u16>,
    /// The message.
    pub data: Vec<u8>,
    /// Data bytes per fragment but the last (`fragment_payload`).
    pub fragment_payload: usize,
}

impl UnreliableOut {
    /// The `(offset, len)` of each fragment, one per datagram.
    pub fn fragments(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        let fp = self.fragment_payload.max(1);
        let n = if self.fragment_id.is_some() { self.data.len().div_ceil(fp) } else { 1 };
        (0..n).map(move |i| {
            let off = i * fp;
            (off, (self.data.len() - off).min(fp))
        })
    }

    /// The number of fragments (1 for a MESSAGE).
    pub fn fragment_count(&self) -> usize {
        if self.fragment_id.is_some() { self.data.len().div_ceil(self.fragment_payload.max(1)) } else { 1 }
    }
}

/// The sender of an unreliable channel (kinds 0 and 1): sent once, TTL
/// (default 100 ms); kind 0 takes a fragmented message's wire id from a
/// per-channel u16 counter when it is queued, kind 1 every message's id when
/// it leaves the queue, and there a newer message replaces the older
/// unsent ones (§4.3).
#[cfg_attr(feature = "_fuzzing", derive(Clone))]
#[derive(Debug)]
pub struct UnreliableSend {
    queue: VecDeque<(UnreliableOut, Instant)>,
    next_fragment_id: u16,
    ttl: crate::Duration,
    sequenced: bool,
}

impl UnreliableSend {
    /// A kind-0 sender whose messages expire after `ttl`.
    pub fn new(ttl: crate::Duration) -> UnreliableSend {
        UnreliableSend { queue: VecDeque::new(), next_fragment_id: 0, ttl, sequenced: false }
    }

    /// A kind-1 (unreliable-sequenced) sender whose messages expire after `ttl`.
    pub fn sequenced(ttl: crate::Duration) -> UnreliableSend {
        UnreliableSend { sequenced: true, ..UnreliableSend::new(ttl) }
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Queues a message for the current `plpmtu`; `Err(max)` when it is
    /// larger than `max_unrel_fragments × fragment_payload` (the channel's
    /// policy then promotes or refuses it, §4.5). Nothing is queued on `Err`.
    /// On a sequenced channel every older waiting message is superseded and
    /// reported through `superseded` (by receipt).
    pub fn push(
        &mut self,
        now: Instant,
        receipt: u64,
        data: Vec<u8>,
        plpmtu: usize,
        max_unrel_fragments: u8,
    ) -> Result<(), usize> {
        self.push_superseding(now, receipt, data, plpmtu, max_unrel_fragments, &mut |_| {})
    }

    /// [`push`](Self::push), reporting superseded messages.
    pub fn push_superseding(
        &mut self,
        now: Instant,
        receipt: u64,
        data: Vec<u8>,
        plpmtu: usize,
        max_unrel_fragments: u8,
        superseded: &mut impl FnMut(u64),
    ) -> Result<(), usize> {
        let n = unreliable_fragments(data.len(), plpmtu, max_unrel_fragments)?;
        let grouped = n > 1 || data.len() > max_unfragmented(plpmtu);
        let fragment_id = if grouped && !self.sequenced {
            let id = self.next_fragment_id;
            self.next_fragment_id = id.wrapping_add(1);
            Some(id)
        } else if grouped {
            Some(0) // the id is assigned when it leaves
        } else {
            None
        };
        if self.sequenced {
            for (m, _) in self.queue.drain(..) {
                superseded(m.receipt);
            }
        }
        let out = UnreliableOut { receipt, fragment_id, seq: None, data, fragment_payload: fragment_payload(plpmtu) };
        self.queue.push_back((out, now + self.ttl));
        Ok(())
    }

    /// The next message to send, after reporting expired ones through
    /// `expired` (each once, by receipt id).
    pub fn pop(&mut self, now: Instant, expired: &mut impl FnMut(u64)) -> Option<UnreliableOut> {
        while let Some((mut m, deadline)) = self.queue.pop_front() {
            if now >= deadline {
                expired(m.receipt);
                continue;
            }
            if self.sequenced {
                let id = self.next_fragment_id;
                self.next_fragment_id = id.wrapping_add(1);
                m.seq = Some(id);
                if m.fragment_id.is_some() {
                    m.fragment_id = Some(id);
                }
            }
            return Some(m);
        }
        None
    }

    /// Reports (by receipt id) and drops the messages whose TTL has passed.
    /// Deadlines are in queue order (one TTL, pushes in time order), so the
    /// expired ones are a prefix.
    pub fn expire(&mut self, now: Instant, expired: &mut impl FnMut(u64)) {
        while self.queue.front().is_some_and(|(_, d)| now >= *d) {
            if let Some((m, _)) = self.queue.pop_front() {
                expired(m.receipt);
            }
        }
    }

    /// Reports every waiting message (by receipt) and empties the queue.
    pub fn clear(&mut self, out: &mut impl FnMut(u64)) {
        for (m, _) in self.queue.drain(..) {
            out(m.receipt);
        }
    }

    /// When the oldest waiting message expires.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.queue.front().map(|(_, d)| *d)
    }

    /// Whether the next message is a fragment group.
    pub fn peek_is_group(&self) -> bool {
        self.queue.front().is_some_and(|(m, _)| m.fragment_id.is_some())
    }

    /// The size of the next message's first datagram payload, so assembly
    /// can check the budget covers it (§4.4), or `None`.
    pub fn peek_len(&self) -> Option<usize> {
        self.queue.front().map(|(m, _)| m.fragments().next().map_or(0, |(_, l)| l))
    }

    /// Bytes waiting.
    pub fn queued_bytes(&self) -> u64 {
        self.queue.iter().map(|(m, _)| m.data.len() as u64).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Duration;
    use crate::mpgs2::recv::{ConnWindow, Incoming, Piece, ReliableRecv};
    use alloc::vec::Vec;
    use quickcheck::quickcheck;

    #[test]
    fn size_constants() {
        assert_eq!(max_unfragmented(1200), GUARANTEED_UNFRAGMENTED);
        assert_eq!(fragment_payload(1200), 1157);
        assert_eq!(unreliable_fragments(1165, 1200, 16), Ok(1));
        assert_eq!(unreliable_fragments(1166, 1200, 16), Ok(2));
        assert_eq!(unreliable_fragments(18_512, 1200, 16), Ok(16), "§4.5: 18,512 B at 1200");
        assert_eq!(unreliable_fragments(18_513, 1200, 16), Err(18_512));
        assert_eq!(Chunk::frame_len(5, 0, 5), 10);
        assert_eq!(Chunk::frame_len(300, 100, 5), 4 + 2 + 2 + 1 + 5);
    }

    /// An acknowledged message's buffer serves the next message: its
    /// allocation is reused (same address), at most `SPARE_BUFFERS` are kept,
    /// and a buffer above `SPARE_CAPACITY` is freed, not kept.
    #[test]
    fn acknowledged_buffers_are_reused_within_bounds() {
        let mut s = ReliableSend::new(ChannelKind::ReliableOrdered, 1 << 20, None);
        let t = Instant::ZERO;
        assert_eq!(s.take_buffer(0).capacity(), 0, "nothing kept yet: a new, empty buffer");
        let first = alloc::vec![7u8; 100];
        let addr = first.as_ptr();
        s.push(t, first, 0);
        let (c, _) = s.next_chunk(t, 1000).map(|(c, d)| (c, d.len())).expect("chunk");
        let mut out = Vec::new();
        s.on_acked(c, &mut |r| out.push(r));
        assert_eq!(out, [Receipt::Delivered(0)]);
        let mut again = s.take_buffer(50);
        assert!(again.is_empty() && again.capacity() >= 100);
        assert_eq!(again.as_ptr(), addr, "the acknowledged message's allocation");
        again.extend_from_slice(&[1; 50]);
        s.push(t, again, 1);
        // Ten acknowledged messages, two of them too large to keep.
        for i in 0..10u64 {
            let len = if i % 5 == 0 { SPARE_CAPACITY + 1 } else { 64 };
            s.push(t, alloc::vec![0u8; len], 2 + i);
        }
        let chunks: Vec<_> = core::iter::from_fn(|| s.next_chunk(t, 2000).map(|(c, _)| c)).collect();
        assert_eq!(chunks.len(), 11);
        for c in chunks {
            s.on_acked(c, &mut |r| out.push(r));
        }
        assert_eq!(out.len(), 12);
        assert!(s.is_empty());
        assert_eq!(s.spare.0.len(), SPARE_BUFFERS);
        assert!(s.spare.0.iter().all(|b| b.is_empty() && b.capacity() <= SPARE_CAPACITY));
        // A kept buffer serves a message it fits without much waste only:
        // a queue of tiny messages must not hold large buffers.
        let mut spare = Spare::default();
        spare.put(Vec::with_capacity(1000));
        assert_eq!(spare.take(10).capacity(), 10, "1,000 bytes for 10: a new buffer of exactly 10");
        assert_eq!(spare.take(1001).capacity(), 1001, "too small: a new buffer");
        assert_eq!(spare.0.len(), 1, "the kept buffer stays for a message it fits");
        assert_eq!(spare.take(468).capacity(), 1000, "1,000 ≤ 2 × 468 + SPARE_SLACK");
        assert!(spare.0.is_empty());
    }

    /// In flight alone is not sendable: a connection whose reliable data is
    /// all out waits for acks instead of being polled for nothing; a loss
    /// makes it sendable again, and the count follows every change (the
    /// debug assertion in `has_sendable` checks it against the queue).
    #[test]
    fn sendable_means_bytes_to_send_not_bytes_in_flight() {
        let mut s = ReliableSend::new(ChannelKind::ReliableOrdered, 1 << 20, None);
        let t = Instant::ZERO;
        assert!(!s.has_sendable() && s.is_empty());
        s.push(t, alloc::vec![1; 100], 0);
        s.push(t, Vec::new(), 1);
        assert!(s.has_sendable());
        let (a, _) = s.next_chunk(t, 60).map(|(c, d)| (c, d.len())).expect("chunk");
        assert!(s.has_sendable(), "the rest of message 0 and message 1 wait");
        let (b, _) = s.next_chunk(t, 1000).map(|(c, d)| (c, d.len())).expect("chunk");
        let (c, _) = s.next_chunk(t, 1000).map(|(c, d)| (c, d.len())).expect("chunk");
        assert!(!s.has_sendable() && !s.is_empty(), "all in flight: nothing to send, not empty");
        s.on_lost(b);
        s.on_lost(c);
        assert!(s.has_sendable());
        let mut out = Vec::new();
        s.on_acked(b, &mut |r| out.push(r));
        s.on_acked(c, &mut |r| out.push(r));
        assert!(
            s.has_sendable(),
            "message 0's first chunk is still in flight and unacked, the lost bytes were acked late"
        );
        let again: Vec<_> = core::iter::from_fn(|| s.next_chunk(t, 1000).map(|(c, _)| c)).collect();
        assert!(!s.has_sendable());
        s.on_acked(a, &mut |r| out.push(r));
        for c in again {
            s.on_acked(c, &mut |r| out.push(r));
        }
        assert!(s.is_empty() && !s.has_sendable(), "{out:?}");
        assert_eq!(out.len(), 2, "each message delivered once: {out:?}");
        s.push(t, alloc::vec![2; 10], 2);
        s.close(&mut |_| {});
        assert!(s.is_empty() && !s.has_sendable(), "a close ends what was sendable");
    }

    #[test]
    fn cut_ack_lose_resend() {
        let mut s = ReliableSend::new(ChannelKind::ReliableOrdered, 1 << 20, None);
        let t = Instant::ZERO;
        let a = s.push(t, (0..100u8).collect(), 0);
        let b = s.push(t, b"tiny".to_vec(), 1);
        let (c1, d1) = s.next_chunk(t, 50).map(|(c, d)| (c, d.to_vec())).expect("chunk");
        assert_eq!((c1.id, c1.offset, c1.len), (a, 0, 42), "4 + 2 + 1 + 1 + 42 = 50 bytes");
        assert_eq!(d1[..], (0..42u8).collect::<Vec<_>>()[..]);
        let (c2, _) = s.next_chunk(t, 1000).expect("chunk");
        assert_eq!((c2.offset, c2.len), (42, 58));
        let (c3, _) = s.next_chunk(t, 1000).expect("chunk");
        assert_eq!((c3.id, c3.len, c3.is_whole()), (b, 4, true));
        assert!(s.next_chunk(t, 1000).is_none(), "everything in flight");
        let mut receipts = Vec::new();
        s.on_acked(c3, &mut |r| receipts.push(r));
        assert_eq!(receipts, [Receipt::Delivered(b)]);
        // c1 lost: its bytes come back and are re-cut for the room given now.
        s.on_lost(c1);
        let (r1, _) = s.next_chunk(t, 30).expect("resend");
        assert_eq!((r1.id, r1.offset), (a, 0));
        let (r2, _) = s.next_chunk(t, 1000).expect("resend rest");
        assert_eq!(r2.offset + r2.len, 42);
        s.on_acked(c2, &mut |r| receipts.push(r));
        s.on_acked(r2, &mut |r| receipts.push(r));
        s.on_acked(r1, &mut |r| receipts.push(r));
        // A late ack of the "lost" original changes nothing.
        s.on_acked(c1, &mut |r| receipts.push(r));
        assert_eq!(receipts, [Receipt::Delivered(b), Receipt::Delivered(a)]);
        assert!(s.is_empty());
    }

    #[test]
    fn ttl_windows_and_close() {
        let mut s = ReliableSend::new(ChannelKind::ReliableUnordered, 10, Some(Duration::from_millis(100)));
        let t = Instant::ZERO;
        let a = s.push(t, alloc::vec![1; 8], 0);
        let b = s.push(t, alloc::vec![2; 8], 1);
        let (c, _) = s.next_chunk(t, 100).expect("a");
        assert_eq!(c.id, a);
        assert!(s.next_chunk(t, 100).is_none(), "b would exceed the peer's 10-byte window");
        let later = t + Duration::from_millis(100);
        let mut receipts = Vec::new();
        s.expire(later, &mut |r| receipts.push(r));
        assert_eq!(receipts, [Receipt::Expired(b)], "a was transmitted: it cannot expire");
        s.close(&mut |r| receipts.push(r));
        assert_eq!(receipts, [Receipt::Expired(b), Receipt::ConnectionClosed(a)]);
        s.close(&mut |r| receipts.push(r));
        assert_eq!(receipts.len(), 2, "exactly once");
        // Ordered channels ignore a TTL; empty messages go as one empty frame.
        let mut o = ReliableSend::new(ChannelKind::ReliableOrdered, 1 << 20, Some(Duration::from_millis(1)));
        let e = o.push(t, Vec::new(), 0);
        o.expire(later, &mut |r| receipts.push(r));
        let (c, d) = o.next_chunk(later, 100).expect("empty message");
        assert_eq!((c.id, c.len, d.len(), c.is_whole()), (e, 0, 0, true));
        o.on_lost(c);
        let (c, _) = o.next_chunk(later, 100).expect("resent");
        o.on_acked(c, &mut |r| receipts.push(r));
        assert_eq!(receipts.last(), Some(&Receipt::Delivered(e)));
    }

    #[test]
    fn unreliable_groups_and_ttl() {
        let mut u = UnreliableSend::new(crate::Duration::from_millis(100));
        let t = Instant::ZERO;
        u.push(t, 1, alloc::vec![1; 100], 1200, 16).expect("fits");
        u.push(t, 2, alloc::vec![2; 3000], 1200, 16).expect("fits");
        assert_eq!(u.push(t, 3, alloc::vec![3; 18_513], 1200, 16), Err(18_512));
        assert_eq!(u.len(), 2, "nothing queued on Err");
        assert_eq!(u.peek_len(), Some(100));
        let mut expired = Vec::new();
        let a = u.pop(t, &mut |r| expired.push(r)).expect("one");
        assert_eq!((a.fragment_id, a.fragments().collect::<Vec<_>>()), (None, alloc::vec![(0, 100)]));
        let b = u.pop(t, &mut |r| expired.push(r)).expect("two");
        assert_eq!(b.fragment_id, Some(0));
        assert_eq!(b.fragments().collect::<Vec<_>>(), [(0, 1157), (1157, 1157), (2314, 686)]);
        u.push(t, 4, alloc::vec![4; 10], 1200, 16).expect("fits");
        u.push(t, 5, alloc::vec![5; 1500], 1200, 16).expect("fits");
        assert!(u.pop(t + crate::Duration::from_millis(100), &mut |r| expired.push(r)).is_none());
        assert_eq!(expired, [4, 5]);
        assert!(u.is_empty());
        // The fragment counter moved on even though 5 expired.
        u.push(t, 6, alloc::vec![6; 1500], 1200, 16).expect("fits");
        assert_eq!(u.pop(t, &mut |_| {}).map(|m| m.fragment_id), Some(Some(2)));
    }

    #[test]
    fn sequenced_supersedes_and_numbers_at_transmission() {
        let mut u = UnreliableSend::sequenced(crate::Duration::from_millis(100));
        let t = Instant::ZERO;
        let mut gone = Vec::new();
        u.push_superseding(t, 1, alloc::vec![1; 10], 1200, 16, &mut |r| gone.push(r)).expect("fits");
        u.push_superseding(t, 2, alloc::vec![2; 3000], 1200, 16, &mut |r| gone.push(r)).expect("fits");
        assert_eq!(gone, [1], "the newer message replaced the unsent older one");
        assert_eq!(u.len(), 1);
        let m = u.pop(t, &mut |_| {}).expect("the group");
        assert_eq!((m.receipt, m.seq, m.fragment_id), (2, Some(0), Some(0)), "a group's id is its sequence id");
        u.push_superseding(t, 3, alloc::vec![3; 10], 1200, 16, &mut |r| gone.push(r)).expect("fits");
        let m = u.pop(t, &mut |_| {}).expect("one");
        assert_eq!((m.receipt, m.seq, m.fragment_id), (3, Some(1), None), "ids rise at transmission");
        u.push_superseding(t, 4, alloc::vec![4; 10], 1200, 16, &mut |r| gone.push(r)).expect("fits");
        u.clear(&mut |r| gone.push(r));
        assert_eq!(gone, [1, 4]);
    }

    quickcheck! {
        /// Sender and receiver over a lossy, duplicating, reordering "network"
        /// of frames: every message is delivered exactly once and in order,
        /// and every sender receipt is Delivered exactly once.
        fn exactly_once_in_order(sizes: Vec<u16>, fate: Vec<u8>, room: u16) -> bool {
            let t = Instant::ZERO;
            let room = 20 + usize::from(room % 1200);
            let mut s = ReliableSend::new(ChannelKind::ReliableOrdered, 1 << 20, None);
            let msgs: Vec<Vec<u8>> = sizes.iter().take(30).enumerate()
                .map(|(i, n)| (0..usize::from(*n % 3000)).map(|k| (i * 31 + k) as u8).collect()).collect();
            for (i, m) in msgs.iter().enumerate() {
                s.push(t, m.clone(), i as u64);
            }
            let mut r = ReliableRecv::new(ChannelKind::ReliableOrdered, 1 << 20, 1 << 20);
            let mut conn = ConnWindow::new(1 << 22);
            let mut got: Vec<Vec<u8>> = Vec::new();
            let mut receipts = Vec::new();
            let mut in_flight: Vec<(Chunk, Vec<u8>)> = Vec::new();
            let mut f = fate.iter().cycle();
            for round in 0..10_000usize {
                while let Some((c, d)) = s.next_chunk(t, room) {
                    in_flight.push((c, d.to_vec()));
                }
                if in_flight.is_empty() {
                    break;
                }
                // Deliver in a scrambled order; each frame is lost, duplicated or delivered.
                let n = in_flight.len();
                let k = (usize::from(*f.next().unwrap_or(&0)) + round) % n;
                in_flight.rotate_left(k);
                for (c, d) in core::mem::take(&mut in_flight) {
                    let roll = (usize::from(f.next().copied().unwrap_or(0)) + round + c.offset as usize) % 10;
                    if roll < 3 {
                        s.on_lost(c);
                        continue;
                    }
                    let copies = if roll == 9 { 2 } else { 1 };
                    for _ in 0..copies {
                        let p = Piece { id: c.id as u16, total_len: c.total_len, offset: c.offset, data: &d };
                        if r.on_piece(t, p, &mut conn, &mut |m: Incoming<'_>| got.push(m.bytes().to_vec())).is_err() {
                            return false;
                        }
                    }
                    s.on_acked(c, &mut |x| receipts.push(x));
                }
            }
            let expected: Vec<Receipt> = (0..msgs.len() as u64).map(Receipt::Delivered).collect();
            receipts.sort_by_key(|r| match r { Receipt::Delivered(i) | Receipt::Expired(i) | Receipt::ConnectionClosed(i) => *i });
            got == msgs && receipts == expected && s.is_empty() && conn.used() == 0
        }
    }
}
