//! The receive side of MESSAGE and FRAGMENT frames on every channel kind
//! (MPGS2.md §3.4, §4.3, §4.5), as pure structures.
//!
//! * [`Reassembly`]: one message's bytes by offset; duplicate bytes are
//!   dropped by offset.
//! * [`ReliableRecv`]: kinds 2 (reliable-unordered, dedup over
//!   `[H − 8191, H]`) and 3 (reliable-ordered, delivery in id order from E),
//!   with the per-channel `recv_window` and the connection-wide
//!   `conn_recv_window` ([`ConnWindow`]) enforced as FLOW_VIOLATION.
//! * [`UnreliableRecv`]: kinds 0 and 1, with bounded reassembly of
//!   unreliable fragments (the oldest partial goes first), the partial
//!   timeout, and latest-wins on sequenced channels.
//!
//! Buffered messages are charged at their whole `total_len` from their first
//! byte on, which is what the sender's window counts (§4.3), so a peer that
//! sends one byte of many large messages hits the window, not the memory.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

use super::frame::ChannelKind;
use crate::{Duration, Instant};

/// How far ahead of E a reliable-ordered id may be, and the dedup span of
/// reliable-unordered channels (§4.3).
pub const ID_WINDOW: u64 = 8192;
/// How far above H a reliable-unordered id may be (§4.3).
pub const UNORDERED_AHEAD: u64 = 16383;
/// Default cap on unreliable partial reassemblies per connection (§4.3).
pub const UNREL_REASSEMBLY_BYTES: u64 = 256 * 1024;
/// Disjoint byte ranges one partial message may hold. A packet whose pieces
/// could open more is refused whole (unacknowledged, its frames sent again
/// later); pieces that fill gaps never add ranges, so a sender keeps making
/// progress while a hostile one cannot grow the list.
pub const MAX_RANGES: usize = 32;
/// Heap bytes a partial message costs besides its data (its map entry and
/// its range list, allocated whole), charged to the endpoint's reassembly
/// budget with the data so that many tiny partials are bounded too.
pub const PARTIAL_OVERHEAD: u64 = 768;

/// What one piece would cost a receiver (see `charge_of`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PieceCost {
    /// Reassembly-budget bytes it newly takes (a new partial:
    /// `total_len + PARTIAL_OVERHEAD`).
    pub charge: u64,
    /// Ranges its partial holds now (0 for a new one).
    pub ranges: usize,
    /// Whether it may open a range that counts toward [`MAX_RANGES`] (it
    /// goes into a partial and does not merge with one it holds; a whole
    /// message buffered out of order does not count).
    pub adds_range: bool,
}

/// Shortest partial lifetime for unreliable fragments (§4.5).
pub const MIN_PARTIAL_TIMEOUT: Duration = Duration::from_millis(50);

/// Why a frame ends the connection (§3.4, §4.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvError {
    /// CLOSE(PROTOCOL_VIOLATION): `total_len` above `max_message_size` or
    /// different from an earlier frame of the same message.
    ProtocolViolation,
    /// CLOSE(FLOW_VIOLATION): an id outside the window, or more buffered
    /// than `recv_window` / `conn_recv_window`.
    FlowViolation,
}

/// Recovers a 16-bit id as the value nearest `reference` that matches its
/// 16 bits (§4.3, like packet numbers).
pub fn recover_id(reference: u64, wire: u16) -> u64 {
    const WIN: u64 = 1 << 16;
    const HALF: u64 = WIN / 2;
    let candidate = (reference & !(WIN - 1)) | u64::from(wire);
    if reference >= HALF && candidate + HALF <= reference {
        candidate + WIN
    } else if candidate > reference + HALF && candidate >= WIN {
        candidate - WIN
    } else {
        candidate
    }
}

/// A message's data as handed to the application.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// A whole message that arrived in one frame (borrowed from the packet).
    Borrowed(&'a [u8]),
    /// A reassembled or buffered message.
    Owned(Vec<u8>),
}

impl Incoming<'_> {
    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Incoming::Borrowed(b) => b,
            Incoming::Owned(v) => v,
        }
    }
}

/// The bytes of one message, filled by offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reassembly {
    buf: Vec<u8>,
    /// Received byte ranges `[start, end)`, ascending, disjoint, non-adjacent.
    have: Vec<(u64, u64)>,
    received: u64,
    /// When the first byte arrived.
    pub started: Instant,
}

impl Reassembly {
    /// An empty message of `total` bytes.
    pub fn new(total: u64, now: Instant) -> Reassembly {
        // Callers bound `total` by max_message_size and the windows first.
        Reassembly { buf: vec![0; total as usize], have: Vec::with_capacity(MAX_RANGES), received: 0, started: now }
    }

    /// Whether `[offset, offset + len)` would open a new range, and the
    /// ranges held now.
    pub fn adds_range(&self, offset: u64, len: u64) -> (bool, usize) {
        let (s, e) = (offset, offset + len);
        let i = self.have.partition_point(|&(_, re)| re < s);
        (len > 0 && (i == self.have.len() || self.have[i].0 > e), self.have.len())
    }

    /// The message length.
    pub fn total(&self) -> u64 {
        self.buf.len() as u64
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Whether every byte is in.
    pub fn is_complete(&self) -> bool {
        self.received == self.total()
    }

    /// Writes `data` at `offset` (the caller checked `offset + len ≤ total`);
    /// bytes already held are kept (duplicates dropped by offset). Returns
    /// the number of new bytes.
    pub fn insert(&mut self, offset: u64, data: &[u8]) -> u64 {
        let (mut s, mut e) = (offset, offset + data.len() as u64);
        if s == e {
            return 0;
        }
        let mut new = e - s;
        // Merge with every overlapping or adjacent range.
        let i = self.have.partition_point(|&(_, re)| re < s);
        while i < self.have.len() && self.have[i].0 <= e {
            let (rs, re) = self.have.remove(i);
            new -= re.min(e).saturating_sub(rs.max(s));
            s = s.min(rs);
            e = e.max(re);
        }
        self.have.insert(i, (s, e));
        // Copy everything: overlapping bytes are identical in a valid stream,
        // and a peer that changes them only corrupts its own message.
        let at = offset as usize;
        self.buf[at..at + data.len()].copy_from_slice(data);
        self.received += new;
        new
    }

    /// The message, once complete.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// The connection-wide `conn_recv_window` over all reliable channels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnWindow {
    used: u64,
    limit: u64,
    /// Partial messages charged (one per `charge`, one release each).
    partials: u64,
}

impl ConnWindow {
    /// A window of `limit` bytes.
    pub fn new(limit: u64) -> ConnWindow {
        ConnWindow { used: 0, limit, partials: 0 }
    }

    /// Bytes charged now.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Reliable partial messages buffered.
    pub fn partials(&self) -> u64 {
        self.partials
    }

    fn charge(&mut self, n: u64) -> Result<(), RecvError> {
        if self.used + n > self.limit {
            return Err(RecvError::FlowViolation);
        }
        self.used += n;
        self.partials += 1;
        Ok(())
    }

    fn release(&mut self, n: u64) {
        self.used -= n;
        self.partials -= 1;
    }
}

/// One reliable message frame: a MESSAGE is a FRAGMENT with offset 0 and
/// `total_len = len` (§3.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece<'a> {
    /// The 16-bit id on the wire.
    pub id: u16,
    /// The whole message's length.
    pub total_len: u64,
    /// Offset of `data`.
    pub offset: u64,
    /// The bytes.
    pub data: &'a [u8],
}

/// The receive side of a reliable channel (kinds 2 and 3).
#[cfg_attr(feature = "_fuzzing", derive(Clone))]
#[derive(Debug)]
pub struct ReliableRecv {
    ordered: bool,
    max_message_size: u64,
    recv_window: u64,
    /// Ordered: E, the next id to deliver. Unordered: H + 1 (0 before any).
    next: u64,
    /// Unordered: delivered ids over `[H − 8191, H]`, bit `id % 8192`.
    delivered: Vec<u64>,
    /// Messages being reassembled, or complete and waiting for E (ordered).
    partial: BTreeMap<u64, Reassembly>,
    /// Bytes charged here (whole `total_len` per buffered message).
    buffered: u64,
}

impl ReliableRecv {
    /// A receiver for a channel of `kind` (2 or 3).
    pub fn new(kind: ChannelKind, max_message_size: u64, recv_window: u64) -> ReliableRecv {
        let ordered = kind == ChannelKind::ReliableOrdered;
        ReliableRecv {
            ordered,
            max_message_size,
            recv_window,
            next: 0,
            delivered: if ordered { Vec::new() } else { vec![0; (ID_WINDOW / 64) as usize] },
            partial: BTreeMap::new(),
            buffered: 0,
        }
    }

    /// Bytes buffered on this channel.
    pub fn buffered(&self) -> u64 {
        self.buffered
    }

    fn bit(id: u64) -> (usize, u64) {
        let i = id % ID_WINDOW;
        ((i / 64) as usize, 1 << (i % 64))
    }

    fn is_delivered(&self, id: u64) -> bool {
        let (w, m) = Self::bit(id);
        self.delivered[w] & m != 0
    }

    /// Unordered: moves H up to `id`, clearing the bits that slide in and
    /// dropping partials that fall below the window.
    fn raise_h(&mut self, id: u64, conn: &mut ConnWindow) {
        let h_plus_1 = self.next;
        if id < h_plus_1 {
            return;
        }
        if id + 1 - h_plus_1 >= ID_WINDOW {
            self.delivered.fill(0);
        } else {
            for x in h_plus_1..=id {
                let (w, m) = Self::bit(x);
                self.delivered[w] &= !m;
            }
        }
        self.next = id + 1;
        let floor = (id + 1).saturating_sub(ID_WINDOW);
        while let Some(entry) = self.partial.first_entry() {
            if *entry.key() >= floor {
                break;
            }
            let r = entry.remove();
            self.buffered -= r.total();
            conn.release(r.total());
        }
    }

    /// What [`on_piece`](Self::on_piece) would do with `p`: a new buffered
    /// message costs `total_len + PARTIAL_OVERHEAD`; a duplicate, a whole
    /// message delivered at once or a frame that ends the connection costs
    /// nothing.
    pub fn charge_of(&self, p: &Piece<'_>) -> PieceCost {
        let none = PieceCost::default();
        if p.total_len > self.max_message_size {
            return none;
        }
        let id = if self.ordered { recover_id(self.next, p.id) } else { recover_id(self.next.saturating_sub(1), p.id) };
        if self.ordered {
            if id < self.next {
                return none;
            }
        } else if let Some(h) = self.next.checked_sub(1)
            && (id + ID_WINDOW <= h || (id <= h && self.is_delivered(id)))
        {
            return none;
        }
        if let Some(r) = self.partial.get(&id) {
            let (adds_range, ranges) = r.adds_range(p.offset, p.data.len() as u64);
            return PieceCost { charge: 0, ranges, adds_range };
        }
        let whole = p.offset == 0 && p.data.len() as u64 == p.total_len;
        if whole && (!self.ordered || id == self.next) {
            return none;
        }
        // A whole message buffered out of order holds its one range.
        PieceCost { charge: p.total_len + PARTIAL_OVERHEAD, ranges: 0, adds_range: !whole }
    }

    /// Takes one frame; delivers every message it completes, in order on an
    /// ordered channel, through `deliver`.
    pub fn on_piece<'a>(
        &mut self,
        now: Instant,
        p: Piece<'a>,
        conn: &mut ConnWindow,
        deliver: &mut impl FnMut(Incoming<'a>),
    ) -> Result<(), RecvError> {
        if p.total_len > self.max_message_size {
            return Err(RecvError::ProtocolViolation);
        }
        let id = if self.ordered { recover_id(self.next, p.id) } else { recover_id(self.next.saturating_sub(1), p.id) };
        // Window checks (§4.3).
        if self.ordered {
            if id < self.next {
                return Ok(()); // duplicate
            }
            if id - self.next >= ID_WINDOW {
                return Err(RecvError::FlowViolation);
            }
        } else {
            let h = self.next.checked_sub(1);
            if let Some(h) = h {
                if id + ID_WINDOW <= h || (id <= h && self.is_delivered(id)) {
                    return Ok(()); // duplicate or below the window
                }
                if id > h && id - h > UNORDERED_AHEAD {
                    return Err(RecvError::FlowViolation);
                }
            } else if id > UNORDERED_AHEAD {
                return Err(RecvError::FlowViolation);
            }
        }
        if let Some(r) = self.partial.get(&id) {
            if r.total() != p.total_len {
                return Err(RecvError::ProtocolViolation);
            }
        } else {
            let whole = p.offset == 0 && p.data.len() as u64 == p.total_len;
            let in_order = !self.ordered || id == self.next;
            if whole && in_order {
                // Fast path: no buffering.
                if !self.ordered {
                    self.raise_h(id, conn);
                    let (w, m) = Self::bit(id);
                    self.delivered[w] |= m;
                } else {
                    self.next += 1;
                }
                deliver(Incoming::Borrowed(p.data));
                if self.ordered {
                    self.drain_ordered(conn, deliver);
                }
                return Ok(());
            }
            if self.buffered + p.total_len > self.recv_window {
                return Err(RecvError::FlowViolation);
            }
            conn.charge(p.total_len)?;
            self.buffered += p.total_len;
            self.partial.insert(id, Reassembly::new(p.total_len, now));
        }
        if !self.ordered {
            self.raise_h(id, conn);
        }
        let Some(r) = self.partial.get_mut(&id) else { return Ok(()) };
        r.insert(p.offset, p.data);
        if !r.is_complete() {
            return Ok(());
        }
        if self.ordered {
            self.drain_ordered(conn, deliver);
        } else if let Some(r) = self.partial.remove(&id) {
            self.buffered -= r.total();
            conn.release(r.total());
            let (w, m) = Self::bit(id);
            self.delivered[w] |= m;
            deliver(Incoming::Owned(r.into_bytes()));
        }
        Ok(())
    }

    fn drain_ordered<'a>(&mut self, conn: &mut ConnWindow, deliver: &mut impl FnMut(Incoming<'a>)) {
        while self.partial.get(&self.next).is_some_and(Reassembly::is_complete) {
            if let Some(r) = self.partial.remove(&self.next) {
                self.buffered -= r.total();
                conn.release(r.total());
                self.next += 1;
                deliver(Incoming::Owned(r.into_bytes()));
            }
        }
    }

    /// Releases everything (connection closed).
    pub fn clear(&mut self, conn: &mut ConnWindow) {
        for (_, r) in core::mem::take(&mut self.partial) {
            conn.release(r.total());
        }
        self.buffered = 0;
    }
}

/// The receive side of the unreliable kinds (0 and 1) of one connection:
/// whole messages are delivered on arrival (sequenced: only if newer than
/// the newest delivered); fragments are reassembled within
/// `unrel_reassembly_bytes` over all channels, the oldest partial dropped
/// first, and dropped after `max(2·srtt, 50 ms)` (§4.5).
#[cfg_attr(feature = "_fuzzing", derive(Clone))]
#[derive(Debug)]
pub struct UnreliableRecv {
    max_message_size: u64,
    cap: u64,
    used: u64,
    /// (channel, id) → partial.
    partial: BTreeMap<(u8, u64), Reassembly>,
    /// Per channel: highest id seen (reference for recovery), newest
    /// delivered sequenced id.
    refs: [(Option<u64>, Option<u64>); 64],
    /// Partials dropped (timeout, cap, superseded).
    pub dropped_partials: u64,
}

impl UnreliableRecv {
    /// A receiver bounded by `cap` bytes of partial reassemblies.
    pub fn new(max_message_size: u64, cap: u64) -> UnreliableRecv {
        UnreliableRecv {
            max_message_size,
            cap,
            used: 0,
            partial: BTreeMap::new(),
            refs: [(None, None); 64],
            dropped_partials: 0,
        }
    }

    /// Bytes held in partial reassemblies.
    pub fn used(&self) -> u64 {
        self.used
    }

    fn drop_partial(&mut self, key: (u8, u64)) {
        if let Some(r) = self.partial.remove(&key) {
            self.used -= r.total();
            self.dropped_partials += 1;
        }
    }

    /// A whole message on channel `ch` of `kind`; `id` for kind 1.
    pub fn on_message<'a>(
        &mut self,
        ch: u8,
        kind: ChannelKind,
        id: Option<u16>,
        data: &'a [u8],
        deliver: &mut impl FnMut(Incoming<'a>),
    ) {
        match (kind, id) {
            (ChannelKind::UnreliableSequenced, Some(wire)) => {
                let id = self.observe(ch, wire);
                if self.accept_sequenced(ch, id) {
                    deliver(Incoming::Borrowed(data));
                }
            }
            _ => deliver(Incoming::Borrowed(data)),
        }
    }

    fn observe(&mut self, ch: u8, wire: u16) -> u64 {
        let slot = &mut self.refs[usize::from(ch % 64)];
        let id = recover_id(slot.0.unwrap_or(0), wire);
        slot.0 = Some(slot.0.map_or(id, |h| h.max(id)));
        id
    }

    /// Sequenced: deliver only ids above the newest delivered; drop older
    /// partials of the channel (latest wins).
    fn accept_sequenced(&mut self, ch: u8, id: u64) -> bool {
        let slot = &mut self.refs[usize::from(ch % 64)];
        if slot.1.is_some_and(|d| id <= d) {
            return false;
        }
        slot.1 = Some(id);
        let stale: Vec<(u8, u64)> = self.partial.range((ch, 0)..=(ch, id)).map(|(k, _)| *k).collect();
        for k in stale {
            self.drop_partial(k);
        }
        true
    }

    /// What [`on_fragment`](Self::on_fragment) would do with a fragment, as
    /// [`ReliableRecv::charge_of`].
    pub fn charge_of(
        &self,
        ch: u8,
        kind: ChannelKind,
        wire_id: u16,
        total_len: u64,
        offset: u64,
        len: u64,
    ) -> PieceCost {
        let none = PieceCost::default();
        if total_len > self.max_message_size || total_len > self.cap {
            return none;
        }
        let slot = self.refs[usize::from(ch % 64)];
        let id = recover_id(slot.0.unwrap_or(0), wire_id);
        if kind == ChannelKind::UnreliableSequenced && slot.1.is_some_and(|d| id <= d) {
            return none;
        }
        match self.partial.get(&(ch, id)) {
            Some(r) => {
                let (adds_range, ranges) = r.adds_range(offset, len);
                PieceCost { charge: 0, ranges, adds_range }
            }
            None => PieceCost { charge: total_len + PARTIAL_OVERHEAD, ranges: 0, adds_range: true },
        }
    }

    /// Partial messages held.
    pub fn partials(&self) -> u64 {
        self.partial.len() as u64
    }

    /// An unreliable FRAGMENT.
    #[allow(clippy::too_many_arguments)]
    pub fn on_fragment(
        &mut self,
        now: Instant,
        ch: u8,
        kind: ChannelKind,
        wire_id: u16,
        total_len: u64,
        offset: u64,
        data: &[u8],
        deliver: &mut impl FnMut(Incoming<'_>),
    ) -> Result<(), RecvError> {
        if total_len > self.max_message_size {
            return Err(RecvError::ProtocolViolation);
        }
        let id = self.observe(ch, wire_id);
        let key = (ch, id);
        if kind == ChannelKind::UnreliableSequenced && self.refs[usize::from(ch % 64)].1.is_some_and(|d| id <= d) {
            return Ok(()); // superseded
        }
        match self.partial.get(&key) {
            Some(r) if r.total() != total_len => return Err(RecvError::ProtocolViolation),
            Some(_) => {}
            None => {
                if total_len > self.cap {
                    return Ok(()); // can never fit: drop, as a loss
                }
                // Make room: the oldest partial goes first.
                while self.used + total_len > self.cap {
                    let Some(oldest) = self.partial.iter().min_by_key(|(_, r)| r.started).map(|(k, _)| *k) else {
                        break;
                    };
                    self.drop_partial(oldest);
                }
                self.used += total_len;
                self.partial.insert(key, Reassembly::new(total_len, now));
            }
        }
        let Some(r) = self.partial.get_mut(&key) else { return Ok(()) };
        r.insert(offset, data);
        if r.is_complete()
            && let Some(r) = self.partial.remove(&key)
        {
            self.used -= r.total();
            if kind != ChannelKind::UnreliableSequenced || self.accept_sequenced(ch, id) {
                deliver(Incoming::Owned(r.into_bytes()));
            }
        }
        Ok(())
    }

    /// The partial timeout for the current `srtt`: `max(2·srtt, 50 ms)`.
    pub fn partial_timeout(srtt: Duration) -> Duration {
        (srtt * 2).max(MIN_PARTIAL_TIMEOUT)
    }

    /// When the oldest partial expires.
    pub fn timeout(&self, srtt: Duration) -> Option<Instant> {
        let oldest = self.partial.values().map(|r| r.started).min()?;
        Some(oldest + Self::partial_timeout(srtt))
    }

    /// Drops partials older than the timeout; early calls do nothing.
    pub fn handle_timeout(&mut self, now: Instant, srtt: Duration) {
        let limit = Self::partial_timeout(srtt);
        let expired: Vec<(u8, u64)> = self
            .partial
            .iter()
            .filter(|(_, r)| now.saturating_duration_since(r.started) >= limit)
            .map(|(k, _)| *k)
            .collect();
        for k in expired {
            self.drop_partial(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use quickcheck::quickcheck;

    fn collect<'a>(out: &'a mut Vec<Vec<u8>>) -> impl FnMut(Incoming<'_>) + 'a {
        move |m| out.push(m.bytes().to_vec())
    }

    #[test]
    fn id_recovery() {
        assert_eq!(recover_id(0, 0), 0);
        assert_eq!(recover_id(0, 5), 5);
        assert_eq!(recover_id(65_535, 0), 65_536);
        assert_eq!(recover_id(65_536, 65_535), 65_535);
        assert_eq!(recover_id(100_000, (100_000u64 % 65_536) as u16), 100_000);
        assert_eq!(recover_id(0, 40_000), 40_000, "nothing below 0");
    }

    #[test]
    fn reassembly_by_offset() {
        let mut r = Reassembly::new(10, Instant::ZERO);
        assert_eq!(r.insert(4, b"4567"), 4);
        assert_eq!(r.insert(2, b"2345"), 2, "duplicate bytes dropped by offset");
        assert_eq!(r.insert(8, b"89"), 2);
        assert!(!r.is_complete());
        assert_eq!(r.insert(0, b"01"), 2);
        assert!(r.is_complete());
        assert_eq!(r.received(), 10);
        assert_eq!(r.into_bytes(), b"0123456789");
    }

    #[test]
    fn ordered_channel() {
        let mut conn = ConnWindow::new(1 << 20);
        let mut r = ReliableRecv::new(ChannelKind::ReliableOrdered, 1 << 20, 1 << 16);
        let mut got = Vec::new();
        let t = Instant::ZERO;
        let p = |id, total, offset, data| Piece { id, total_len: total, offset, data };
        // id 1 arrives before id 0: buffered.
        r.on_piece(t, p(1, 2, 0, b"bb"), &mut conn, &mut collect(&mut got)).expect("ok");
        assert!(got.is_empty());
        assert_eq!((r.buffered(), conn.used()), (2, 2));
        // id 0 in two fragments.
        r.on_piece(t, p(0, 4, 2, b"a2"), &mut conn, &mut collect(&mut got)).expect("ok");
        r.on_piece(t, p(0, 4, 0, b"a1"), &mut conn, &mut collect(&mut got)).expect("ok");
        assert_eq!(got, [b"a1a2".to_vec(), b"bb".to_vec()]);
        assert_eq!((r.buffered(), conn.used()), (0, 0));
        // Duplicates below E are dropped.
        r.on_piece(t, p(0, 4, 0, b"a1"), &mut conn, &mut collect(&mut got)).expect("ok");
        assert_eq!(got.len(), 2);
        // id − E ≥ 8192: FLOW_VIOLATION; total_len changes or above max: PROTOCOL_VIOLATION.
        assert_eq!(
            r.on_piece(t, p(2 + 8192, 1, 0, b"x"), &mut conn, &mut collect(&mut got)),
            Err(RecvError::FlowViolation)
        );
        r.on_piece(t, p(3, 4, 0, b"x"), &mut conn, &mut collect(&mut got)).expect("ok");
        assert_eq!(
            r.on_piece(t, p(3, 5, 1, b"y"), &mut conn, &mut collect(&mut got)),
            Err(RecvError::ProtocolViolation)
        );
        assert_eq!(
            r.on_piece(t, p(4, 1 << 21, 0, b"y"), &mut conn, &mut collect(&mut got)),
            Err(RecvError::ProtocolViolation)
        );
        // Window: 64 KiB per channel.
        assert_eq!(
            r.on_piece(t, p(5, 65_533, 0, b"z"), &mut conn, &mut collect(&mut got)),
            Err(RecvError::FlowViolation)
        );
        r.clear(&mut conn);
        assert_eq!(conn.used(), 0);
    }

    #[test]
    fn unordered_channel_dedups_and_bounds() {
        let mut conn = ConnWindow::new(10);
        let mut r = ReliableRecv::new(ChannelKind::ReliableUnordered, 1 << 20, 1 << 20);
        let mut got = Vec::new();
        let t = Instant::ZERO;
        let p = |id, total, offset, data| Piece { id, total_len: total, offset, data };
        r.on_piece(t, p(2, 1, 0, b"c"), &mut conn, &mut collect(&mut got)).expect("ok");
        r.on_piece(t, p(0, 1, 0, b"a"), &mut conn, &mut collect(&mut got)).expect("ok");
        r.on_piece(t, p(2, 1, 0, b"c"), &mut conn, &mut collect(&mut got)).expect("ok");
        assert_eq!(got, [b"c".to_vec(), b"a".to_vec()], "delivered on arrival, once");
        // The connection window (10 bytes) caps partials over all channels.
        r.on_piece(t, p(3, 8, 0, b"d"), &mut conn, &mut collect(&mut got)).expect("ok");
        assert_eq!(r.on_piece(t, p(4, 3, 0, b"e"), &mut conn, &mut collect(&mut got)), Err(RecvError::FlowViolation));
        // id − H > 16383: FLOW_VIOLATION.
        assert_eq!(
            r.on_piece(t, p(3 + 16384, 1, 0, b"f"), &mut conn, &mut collect(&mut got)),
            Err(RecvError::FlowViolation)
        );
        // Far ahead but inside: H moves, old partial 3 falls below H − 8191 and is released.
        r.on_piece(t, p(3 + 16383, 1, 0, b"g"), &mut conn, &mut collect(&mut got)).expect("ok");
        assert_eq!(conn.used(), 0);
        // An id below H − 8191 is a duplicate.
        r.on_piece(t, p(5, 1, 0, b"h"), &mut conn, &mut collect(&mut got)).expect("ok");
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn unreliable_fragments_and_sequenced() {
        assert_eq!(UnreliableRecv::new(1 << 20, UNREL_REASSEMBLY_BYTES).used(), 0);
        let mut u = UnreliableRecv::new(1 << 20, 100);
        let mut got = Vec::new();
        let t0 = Instant::from_millis(10);
        u.on_message(0, ChannelKind::Unreliable, None, b"m", &mut collect(&mut got));
        u.on_fragment(t0, 0, ChannelKind::Unreliable, 7, 6, 3, b"def", &mut collect(&mut got)).expect("ok");
        u.on_fragment(t0, 0, ChannelKind::Unreliable, 7, 6, 0, b"abc", &mut collect(&mut got)).expect("ok");
        assert_eq!(got, [b"m".to_vec(), b"abcdef".to_vec()]);
        // The cap: a 60-byte partial then an 80-byte one evicts the first.
        u.on_fragment(t0, 1, ChannelKind::Unreliable, 1, 60, 0, b"x", &mut collect(&mut got)).expect("ok");
        u.on_fragment(t0, 1, ChannelKind::Unreliable, 2, 80, 0, b"y", &mut collect(&mut got)).expect("ok");
        assert_eq!((u.used(), u.dropped_partials), (80, 1));
        // Timeout: max(2·srtt, 50 ms).
        let srtt = Duration::from_millis(10);
        assert_eq!(u.timeout(srtt), Some(t0 + Duration::from_millis(50)));
        u.handle_timeout(t0 + Duration::from_millis(49), srtt);
        assert_eq!(u.used(), 80);
        u.handle_timeout(t0 + Duration::from_millis(50), srtt);
        assert_eq!((u.used(), u.timeout(srtt)), (0, None));
        // Sequenced: only newer ids; a completed newer id supersedes older partials.
        got.clear();
        u.on_fragment(t0, 2, ChannelKind::UnreliableSequenced, 5, 2, 0, b"5", &mut collect(&mut got)).expect("ok");
        u.on_message(2, ChannelKind::UnreliableSequenced, Some(6), b"six", &mut collect(&mut got));
        u.on_message(2, ChannelKind::UnreliableSequenced, Some(4), b"four", &mut collect(&mut got));
        u.on_fragment(t0, 2, ChannelKind::UnreliableSequenced, 5, 2, 1, b"5", &mut collect(&mut got)).expect("ok");
        assert_eq!(got, [b"six".to_vec()]);
        assert_eq!(u.used(), 0);
        assert_eq!(
            u.on_fragment(t0, 3, ChannelKind::Unreliable, 1, 1 << 21, 0, b"z", &mut collect(&mut got)),
            Err(RecvError::ProtocolViolation)
        );
    }

    quickcheck! {
        /// Ordered delivery: any arrival order, duplication and fragmentation
        /// of 20 messages yields each message exactly once, in id order.
        fn ordered_exact_sequence(order: Vec<(u8, u8)>, cut: u8) -> bool {
            let msgs: Vec<Vec<u8>> = (0..20u8).map(|i| (0..(i as usize * 7 % 23)).map(|k| i ^ k as u8).collect()).collect();
            let cut = usize::from(cut % 5) + 1;
            let mut pieces = Vec::new();
            for (id, m) in msgs.iter().enumerate() {
                if m.is_empty() {
                    pieces.push((id as u16, 0usize, 0usize));
                }
                let mut off = 0;
                while off < m.len() {
                    let end = (off + cut).min(m.len());
                    pieces.push((id as u16, off, end));
                    off = end;
                }
            }
            // Deliver a random order (with duplicates), then everything once more.
            let mut seq: Vec<usize> = order.iter().map(|(a, _)| usize::from(*a) % pieces.len()).collect();
            seq.extend(0..pieces.len());
            let mut conn = ConnWindow::new(1 << 20);
            let mut r = ReliableRecv::new(ChannelKind::ReliableOrdered, 1 << 20, 1 << 20);
            let mut got = Vec::new();
            for i in seq {
                let (id, s, e) = pieces[i];
                let m = &msgs[usize::from(id)];
                let piece = Piece { id, total_len: m.len() as u64, offset: s as u64, data: &m[s..e] };
                if r.on_piece(Instant::ZERO, piece, &mut conn, &mut collect(&mut got)).is_err() {
                    return false;
                }
            }
            got == msgs && conn.used() == 0 && r.buffered() == 0
        }
    }
}
