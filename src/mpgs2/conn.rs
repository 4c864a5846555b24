//! An MPGS/2 connection after the handshake (MPGS2.md §3–§6.4, stage 1), as
//! a sans-IO state machine over the pure pieces of this module: packet
//! protection, acks, recovery with NewReno and pacing, and the channels of
//! the three `Delivery` modes (0 unreliable, 1 reliable-unordered with a
//! 1 s TTL, 2 reliable-ordered). It receives every frame type of §3.4 and
//! MESSAGE/FRAGMENT of every kind on any channel.
//!
//! `handle_*` in, `poll_*` out: feed [`Connection::handle_datagram`] and
//! [`Connection::handle_timeout`]; drain [`Connection::poll_transmit`] until
//! `None`, then [`Connection::poll_event`]; wait until
//! [`Connection::poll_timeout`]. An early or spurious `handle_timeout` does
//! nothing.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;

use super::ack::AckState;
use super::buf::Writer;
use super::cc::{Controller, NewReno};
use super::channels::{Sender, TxTable};
use super::frame::{ChannelKind, Frame, Frames, MAX_CHANNELS};
use super::handshake::Established;
use super::pacer::Pacer;
use super::protect::{OpenError, Protection};
use super::recovery::{MAX_INFLIGHT_PACKETS, Outcome, Recovery, SentPacket, TimerAction};
use super::recv::{ConnWindow, Incoming, Piece, PieceCost, ReliableRecv, UNREL_REASSEMBLY_BYTES, UnreliableRecv};
use super::reset::{TOKEN_LEN, is_reset};
use super::send::{Chunk, Spare, UnreliableOut};
use super::{CID_LEN, MIN_UDP_PAYLOAD, Side, WireError};
use crate::channel::{ChannelConfig, Oversize};
use crate::event::LossReason;
use crate::time::earliest;
use crate::{Duration, Instant};

/// Type, channel and the longest length varint of an unreliable MESSAGE
/// frame (§4.5 counts 6 with an id; kind 0 has none).
const MESSAGE_FRAME_MAX_OVERHEAD: usize = 6;
/// Channel of `Delivery::Unreliable`.
pub const CH_UNRELIABLE: u8 = crate::channel::UNRELIABLE;
/// Channel of `Delivery::BestEffort`.
pub const CH_BEST_EFFORT: u8 = crate::channel::BEST_EFFORT;
/// Channel of `Delivery::Reliable`.
pub const CH_RELIABLE: u8 = crate::channel::RELIABLE;
/// Keep-alive PING after this long without an ack-eliciting send (§4.1).
pub const KEEP_ALIVE: Duration = Duration::from_millis(250);
/// TTL of the BestEffort channel (§4.3).
pub const BEST_EFFORT_TTL: Duration = crate::channel::BEST_EFFORT_TTL;
/// TTL of unreliable messages (§4.3).
pub const UNRELIABLE_TTL: Duration = crate::channel::DEFAULT_UNRELIABLE_TTL;

/// CLOSE codes (§6.4).
pub mod close_code {
    /// Normal close.
    pub const NORMAL: u16 = 0;
    /// A frame broke §3.4.
    pub const PROTOCOL_VIOLATION: u16 = 2;
    /// A window of §4.3 was exceeded.
    pub const FLOW_VIOLATION: u16 = 3;
}

/// Why a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// We closed with this code.
    Local(u16),
    /// The peer sent CLOSE with this code.
    Peer(u16),
    /// Nothing arrived for the idle timeout.
    IdleTimeout,
    /// A stateless reset matched the peer's token (§6.4).
    StatelessReset,
}

/// What a connection reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnEvent {
    /// A message arrived on `channel`.
    Message {
        /// The channel.
        channel: u8,
        /// The bytes.
        data: Vec<u8>,
    },
    /// Every byte of message `receipt` was acknowledged.
    Delivered(u64),
    /// Message `receipt` will not be delivered, for this reason.
    Lost(u64, LossReason),
    /// The connection ended (exactly once).
    Closed(CloseReason),
}

/// Why [`Connection::try_send`] refused a message; nothing was queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendRefused {
    /// The connection is closing, draining or closed.
    Closed,
    /// Larger than this connection can carry: `max_message_size(ch)` of
    /// §4.5, the smallest of our `max_message_size` and the peer's
    /// `max_message_size`, `recv_window` and `conn_recv_window`.
    TooLarge {
        /// The largest message accepted.
        max: u64,
    },
    /// Not a channel of this connection's configuration.
    UnknownChannel,
}

/// Unreliable messages in flight by receipt: packets outstanding, and
/// whether one was lost. Receipts are taken in increasing order and
/// messages leave in queue order, so entries are appended in key order and
/// found by binary search; a finished entry becomes a hole until it reaches
/// the front. One message costs no tree node allocation and no rebalancing.
#[cfg_attr(feature = "_fuzzing", derive(Clone))]
#[derive(Debug, Default)]
struct UnrelPending {
    /// `(receipt, Some((packets left, lost)))`, receipts increasing;
    /// `None`: finished. The front entry is never a hole.
    q: VecDeque<(u64, Option<(u32, bool)>)>,
}

impl UnrelPending {
    fn index(&self, receipt: u64) -> Option<usize> {
        // Packets are usually acknowledged in the order they left, so the
        // entry sought is usually the front one.
        let i = match self.q.front() {
            Some(&(r, _)) if r == receipt => 0,
            _ => self.q.binary_search_by_key(&receipt, |e| e.0).ok()?,
        };
        self.q[i].1.is_some().then_some(i)
    }

    /// One packet carrying a frame of `receipt` was acked or lost: the
    /// message's fate (`Some(lost)`) once it was its last packet.
    fn on_packet(&mut self, receipt: u64, acked: bool) -> Option<bool> {
        let i = self.index(receipt)?;
        let (left, lost) = self.q[i].1.as_mut()?;
        *left -= 1;
        *lost |= !acked;
        if *left > 0 {
            return None;
        }
        let lost = *lost;
        self.take_at(i);
        Some(lost)
    }

    fn take_at(&mut self, i: usize) -> Option<(u32, bool)> {
        let v = self.q[i].1.take();
        while self.q.front().is_some_and(|e| e.1.is_none()) {
            self.q.pop_front();
        }
        v
    }

    fn insert(&mut self, receipt: u64, v: (u32, bool)) {
        if self.q.back().is_none_or(|b| b.0 < receipt) {
            // The usual case: receipts are taken in increasing order.
            self.q.push_back((receipt, Some(v)));
            return;
        }
        match self.q.binary_search_by_key(&receipt, |e| e.0) {
            Ok(i) => self.q[i].1 = Some(v),
            // At the back, except if a caller ever queues out of order.
            Err(i) => self.q.insert(i, (receipt, Some(v))),
        }
    }

    fn remove(&mut self, receipt: u64) -> Option<(u32, bool)> {
        let i = self.index(receipt)?;
        self.take_at(i)
    }

    fn contains(&self, receipt: u64) -> bool {
        self.index(receipt).is_some()
    }

    /// The receipts held, increasing.
    fn receipts(&self) -> impl Iterator<Item = u64> + '_ {
        self.q.iter().filter(|e| e.1.is_some()).map(|e| e.0)
    }
}

/// Frames of a received packet kept from the validating parse for the pass
/// that acts on them (a packet usually carries one to three).
const PARSED_FRAMES: usize = 8;

/// What one packet carried, for retransmission by frame (§4.2).
#[derive(Clone, Copy, Debug)]
enum Rec {
    Reliable { channel: u8, chunk: Chunk },
    Unreliable { receipt: u64 },
    Ack { largest: u64 },
    ResetToken,
}

/// Heap bytes of one frame record (for `memory_bounds`).
pub(crate) const RECORD_SIZE: usize = core::mem::size_of::<(u64, Rec)>();
/// Heap bytes of one reliable receive channel with its map entry and, for
/// reliable-unordered, its 8,192-bit dedup bitmap (for `memory_bounds`).
pub(crate) const RX_CHANNEL_SIZE: usize =
    2 * (core::mem::size_of::<ReliableRecv>() + 8) + (super::recv::ID_WINDOW as usize / 8);
/// Frame records one packet may carry.
pub(crate) const RECORDS_PER_PACKET: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Open,
    /// Sending CLOSE; ends at the instant.
    Closing(Instant),
    /// Received CLOSE; silent until the instant.
    Draining(Instant),
    Closed,
}

/// What [`Connection::handle_datagram_within`] did with a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// The connection takes no more packets (closed or draining).
    Ignored,
    /// It did not open (the reason, for the caller's drop counters).
    Unopened(OpenError),
    /// It opened and was acted on (a frame that broke the protocol, or a
    /// CLOSE, included).
    Opened,
    /// It opened, but its frames would have held more reassembly bytes
    /// than the room given: discarded unrecorded (counted in
    /// [`Connection::budget_refused`]).
    BudgetRefused,
    /// It opened, but carried reliable frames while the application's
    /// receive queue is full: discarded unrecorded (counted in
    /// [`Connection::recv_refused`]).
    RecvRefused,
}

impl Arrival {
    /// Whether the datagram authenticated (a packet of this connection).
    pub fn opened(self) -> bool {
        matches!(self, Arrival::Opened | Arrival::BudgetRefused | Arrival::RecvRefused)
    }
}

/// Local parameters of a connection.
#[derive(Clone, Debug)]
pub struct ConnConfig {
    /// Our max_ack_delay.
    pub max_ack_delay: Duration,
    /// Largest message we accept.
    pub max_message_size: u64,
    /// Our per-channel receive window.
    pub recv_window: u64,
    /// Our connection-wide receive window.
    pub conn_recv_window: u64,
    /// Our idle timeout in ms (0: none from our side; the smaller wins, §2.3).
    pub idle_timeout_ms: u32,
    /// The channels we send on (§4.3): the three `Delivery` channels and
    /// the configured ones.
    pub channels: Vec<ChannelConfig>,
}

impl Default for ConnConfig {
    fn default() -> Self {
        ConnConfig {
            max_ack_delay: Duration::from_millis(10),
            max_message_size: 1 << 20,
            recv_window: 1 << 20,
            conn_recv_window: 4 << 20,
            idle_timeout_ms: 5_000,
            channels: ChannelConfig::DEFAULTS.to_vec(),
        }
    }
}

/// One MPGS/2 connection.
#[cfg_attr(feature = "_fuzzing", derive(Clone))]
pub struct Connection {
    side: Side,
    state: State,
    prot: Protection,
    rec: Recovery<NewReno>,
    pacer: Pacer,
    pacer_wait: Option<Instant>,
    acks: AckState,
    plpmtu: usize,
    max_unrel_fragments: u8,
    idle_timeout: Option<Duration>,
    last_recv: Instant,
    /// Client: until the first packet from the server opens, the idle
    /// timeout does not end the connection before this instant (the
    /// connect deadline: the server has not confirmed the keys yet).
    idle_floor: Option<Instant>,
    last_eliciting_sent: Instant,
    /// The send side of every channel, in serving order (§4.4).
    tx: TxTable,
    /// The fragment group being sent: its channel and kind, the message and
    /// its next fragment.
    group: Option<(u8, ChannelKind, UnreliableOut, usize)>,
    unrel_rx: UnreliableRecv,
    reliable_rx: BTreeMap<u8, ReliableRecv>,
    rx_kinds: [Option<ChannelKind>; MAX_CHANNELS as usize],
    conn_window: ConnWindow,
    /// The peer's `conn_recv_window` (§2.3): reliable bytes from U onward
    /// over all channels together never exceed it (§4.3).
    peer_conn_window: u64,
    /// `max_message_size(ch)` for sending (§4.5).
    max_send: u64,
    config: ConnConfig,
    records: VecDeque<(u64, Rec)>,
    /// Buffers of unreliable messages that left, for the next ones.
    spare: Spare,
    /// Unreliable receipts: packets outstanding, and whether one was lost.
    unrel_pending: UnrelPending,
    next_receipt: u64,
    probes: u8,
    path_responses: heapless::Vec<[u8; 8], 4>,
    close_code: u16,
    /// CLOSE repeats left (§6.4: 3).
    close_repeats: u8,
    /// When CLOSE last left: repeats are at most one per PTO (§6.4, RFC
    /// 9000 §10.2.1).
    close_sent: Option<Instant>,
    reset_token: Option<[u8; TOKEN_LEN]>,
    /// Server: the token to send in RESET_TOKEN until a packet with it is
    /// acked, and whether such a packet is in flight (resent on loss, §3.4).
    reset_token_out: Option<[u8; TOKEN_LEN]>,
    reset_token_in_flight: bool,
    events: VecDeque<ConnEvent>,
    /// The application leaves more than `recv_queue_bytes` undrained:
    /// packets with reliable frames are refused unrecorded (§4.6).
    recv_blocked: bool,
    /// Packets refused so.
    recv_refused: u64,
    /// Packets that opened (authenticated and new).
    packets_opened: u64,
    /// Packets refused by the endpoint's reassembly budget.
    budget_refused: u64,
    /// Scratch for an ACK's or a timer's outcomes, kept between packets so
    /// that processing one allocates nothing (always empty between calls).
    outcomes: Vec<Outcome>,
}

impl core::fmt::Debug for Connection {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Connection").field("side", &self.side).field("state", &self.state).finish_non_exhaustive()
    }
}

impl Connection {
    /// A connection from a finished handshake, at `now`.
    pub fn new(side: Side, est: Established, config: ConnConfig, now: Instant) -> Connection {
        let peer = est.peer_params;
        let (peer_cid, local_cid_len) = match side {
            Side::Client => (Some(est.server_cid), if est.client_cid.is_some() { CID_LEN } else { 0 }),
            Side::Server => (est.client_cid, CID_LEN),
        };
        let local = super::tlv::TransportParams { idle_timeout_ms: Some(config.idle_timeout_ms), ..Default::default() };
        let idle_ms = super::tlv::TransportParams::negotiated_idle_timeout_ms(&local, &peer);
        let peer_mad = Duration::from_millis(u64::from(peer.max_ack_delay_ms()));
        let plpmtu = MIN_UDP_PAYLOAD;
        Connection {
            side,
            state: State::Open,
            prot: Protection::new(est.schedule.into_protection(), peer_cid, local_cid_len),
            rec: Recovery::new(NewReno::new(plpmtu as u64), peer_mad, MAX_INFLIGHT_PACKETS),
            pacer: Pacer::new(NewReno::initial_window(plpmtu as u64)),
            pacer_wait: None,
            acks: AckState::new(config.max_ack_delay),
            plpmtu,
            max_unrel_fragments: peer.max_unrel_fragments(),
            idle_timeout: idle_ms.map(|ms| Duration::from_millis(u64::from(ms))),
            last_recv: now,
            idle_floor: None,
            last_eliciting_sent: now,
            tx: TxTable::new(&config.channels, u64::from(peer.recv_window())),
            group: None,
            unrel_rx: UnreliableRecv::new(config.max_message_size, UNREL_REASSEMBLY_BYTES),
            reliable_rx: BTreeMap::new(),
            rx_kinds: [None; MAX_CHANNELS as usize],
            conn_window: ConnWindow::new(config.conn_recv_window),
            peer_conn_window: u64::from(peer.conn_recv_window()),
            max_send: config
                .max_message_size
                .min(u64::from(peer.max_message_size()))
                .min(u64::from(peer.recv_window()))
                .min(u64::from(peer.conn_recv_window())),
            config,
            records: VecDeque::new(),
            spare: Spare::default(),
            unrel_pending: UnrelPending::default(),
            next_receipt: 0,
            probes: 0,
            path_responses: heapless::Vec::new(),
            close_code: 0,
            close_repeats: 3,
            close_sent: None,
            reset_token: None,
            reset_token_out: None,
            reset_token_in_flight: false,
            events: VecDeque::new(),
            recv_blocked: false,
            recv_refused: 0,
            packets_opened: 0,
            budget_refused: 0,
            outcomes: Vec::new(),
        }
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Whether the connection is open (not closing, draining or closed).
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open)
    }

    /// Packets that opened so far (authenticated, not replays).
    pub fn packets_opened(&self) -> u64 {
        self.packets_opened
    }

    /// Sends an ack-eliciting packet at the next `poll_transmit` even when
    /// nothing else is due (the client's key confirmation, §2.1).
    pub fn ping(&mut self) {
        if matches!(self.state, State::Open) {
            self.probes = self.probes.max(1);
        }
    }

    /// Feeds the handshake's RTT sample (§4.1): taken by the caller only when
    /// the hello it times was sent once (Karn's rule). Ignored once an ACK
    /// has given a sample.
    pub fn handshake_rtt(&mut self, now: Instant, rtt: Duration) {
        if !self.rec.rtt().has_sample() {
            self.rec.rtt_mut().on_sample(now, crate::time::duration_micros(rtt), 0, 0);
        }
    }

    /// `(srtt, rttvar, latest)` in µs, and whether any sample was taken.
    pub fn rtt(&self) -> (u64, u64, u64, bool) {
        let r = self.rec.rtt();
        (r.srtt(), r.rttvar(), r.latest(), r.has_sample())
    }

    /// The stateless reset token the server sent (client side), to check
    /// datagrams that fail to open (§6.4).
    pub fn set_reset_token(&mut self, token: [u8; TOKEN_LEN]) {
        self.reset_token = Some(token);
    }

    /// Server: sends RESET_TOKEN with `token` in the next packets until one
    /// of them is acknowledged (§6.4).
    pub fn send_reset_token(&mut self, token: [u8; TOKEN_LEN]) {
        if self.side == Side::Server {
            self.reset_token_out = Some(token);
        }
    }

    /// An empty buffer for a message of `len` bytes to `channel`, to fill
    /// and hand to [`try_send`](Self::try_send): the buffer of a message
    /// that has gone (acknowledged, or sent unreliably) when one fits, so
    /// that a steady stream of small messages allocates nothing per message.
    pub fn buffer_for(&mut self, channel: u8, len: usize) -> Vec<u8> {
        match self.tx.index(channel).map(|i| &mut self.tx.ch[i].sender) {
            Some(Sender::Reliable(r)) => r.take_buffer(len),
            _ => self.spare.take(len),
        }
    }

    /// Queues a message on channel `channel`; returns its receipt id, or
    /// `None` when [`try_send`](Self::try_send) refuses it.
    pub fn send(&mut self, now: Instant, channel: u8, data: Vec<u8>) -> Option<u64> {
        self.try_send(now, channel, data).ok()
    }

    /// Queues a message on channel `channel`; returns its receipt id. An
    /// unreliable message too large for unreliable fragments is promoted or
    /// refused by its channel's oversize policy (§4.5); on a sequenced
    /// channel it replaces the messages still waiting there, each reported
    /// `Lost(Superseded)`.
    pub fn try_send(&mut self, now: Instant, channel: u8, data: Vec<u8>) -> Result<u64, SendRefused> {
        if !matches!(self.state, State::Open) {
            return Err(SendRefused::Closed);
        }
        let i = self.tx.index(channel).ok_or(SendRefused::UnknownChannel)?;
        let max = self.max_size_at(i);
        if data.len() as u64 > max {
            return Err(SendRefused::TooLarge { max });
        }
        let receipt = self.next_receipt;
        let oversize = super::send::unreliable_fragments(data.len(), self.plpmtu, self.max_unrel_fragments).is_err();
        let (plpmtu, frags) = (self.plpmtu, self.max_unrel_fragments);
        let c = &mut self.tx.ch[i];
        let target = match (&mut c.sender, oversize, c.oversize) {
            (Sender::Unreliable(u), false, _) => {
                let events = &mut self.events;
                // Checked above: it fits unreliable fragments.
                let _ = u.push_superseding(now, receipt, data, plpmtu, frags, &mut |r| {
                    events.push_back(ConnEvent::Lost(r, LossReason::Superseded));
                });
                self.next_receipt += 1;
                return Ok(receipt);
            }
            (Sender::Unreliable(_), true, Oversize::PromoteTo(to)) => {
                c.promoted += 1;
                to
            }
            _ => channel,
        };
        // `max_size_at` let an oversize message through only with a
        // reliable target that exists.
        let r = self.tx.reliable_mut(target).ok_or(SendRefused::UnknownChannel)?;
        r.push(now, data, receipt);
        self.next_receipt += 1;
        Ok(receipt)
    }

    /// The largest message channel index `i` accepts (§4.5).
    fn max_size_at(&self, i: usize) -> u64 {
        let c = &self.tx.ch[i];
        match c.oversize {
            _ if c.kind.is_reliable() => self.max_send,
            Oversize::PromoteTo(to) if self.tx.has_reliable(to) => self.max_send,
            _ => {
                let fp = super::send::fragment_payload(self.plpmtu) as u64;
                self.max_send.min(u64::from(self.max_unrel_fragments) * fp)
            }
        }
    }

    /// The largest message [`try_send`](Self::try_send) accepts on the
    /// `Delivery::Reliable` channel (§4.5).
    pub fn max_message_size(&self) -> u64 {
        self.max_send
    }

    /// `max_message_size(ch)` of §4.5, or `None` for an unknown channel.
    pub fn max_message_size_on(&self, channel: u8) -> Option<u64> {
        self.tx.index(channel).map(|i| self.max_size_at(i))
    }

    /// `max_unfragmented(ch)` of §4.5: the largest message that leaves as
    /// one frame in one datagram now.
    pub fn max_unfragmented(&self) -> usize {
        super::send::max_unfragmented(self.plpmtu)
    }

    /// Channel `channel`'s bytes in flight (sent, not acknowledged; reliable
    /// kinds) and oversize messages promoted from it.
    pub fn channel_state(&self, channel: u8) -> Option<(u64, u64)> {
        let c = &self.tx.ch[self.tx.index(channel)?];
        let in_flight = match &c.sender {
            Sender::Reliable(r) => r.in_flight_bytes(),
            Sender::Unreliable(_) => 0,
        };
        Some((in_flight, c.promoted))
    }

    /// While `on`, packets carrying reliable frames are refused unrecorded
    /// (§4.6: the application leaves more than `recv_queue_bytes`
    /// undrained); counted in [`recv_refused`](Self::recv_refused).
    pub fn set_recv_blocked(&mut self, on: bool) {
        self.recv_blocked = on;
    }

    /// Packets refused while the receive queue was over its bound.
    pub fn recv_refused(&self) -> u64 {
        self.recv_refused
    }

    /// Reliable messages that had to wait for the peer's `recv_window` or
    /// `conn_recv_window` before their first byte could leave (§4.3).
    pub fn flow_blocked(&self) -> u64 {
        self.tx.window_waits()
    }

    /// Reliable bytes counted against the peer's `conn_recv_window` now.
    pub fn conn_window_used(&self) -> u64 {
        self.tx.window_used()
    }

    /// Starts closing with `code` (§6.4): CLOSE goes out, then the connection
    /// ends after 3 × PTO.
    pub fn close(&mut self, now: Instant, code: u16) {
        if !matches!(self.state, State::Open) {
            return;
        }
        self.close_code = code;
        self.state = State::Closing(now + self.rec.pto() * 3);
        self.probes = 1;
        self.finish_messages();
        self.events.push_back(ConnEvent::Closed(CloseReason::Local(code)));
    }

    fn finish_messages(&mut self) {
        let closed = LossReason::ConnectionClosed;
        let events = &mut self.events;
        for c in &mut self.tx.ch {
            match &mut c.sender {
                Sender::Reliable(r) => r.close(&mut |x| events.push_back(ConnEvent::Lost(x.receipt(), closed))),
                Sender::Unreliable(u) => u.clear(&mut |r| events.push_back(ConnEvent::Lost(r, closed))),
            }
        }
        let pending = core::mem::take(&mut self.unrel_pending);
        for receipt in pending.receipts() {
            self.events.push_back(ConnEvent::Lost(receipt, closed));
        }
        // A group being sent is in `pending` already (reported above).
        if let Some((_, _, g, _)) = self.group.take()
            && !pending.contains(g.receipt)
        {
            self.events.push_back(ConnEvent::Lost(g.receipt, closed));
        }
    }

    fn fail(&mut self, now: Instant, code: u16) {
        self.close(now, code);
    }

    /// Client: the idle timeout does not close the connection before `t`
    /// unless a packet from the server opens first (after which the idle
    /// timeout alone applies). The session sets its connect deadline here:
    /// the client's key confirmation may need as long as the handshake was
    /// given to get through (MPGS2.md §2.5).
    pub fn hold_open_until(&mut self, t: Instant) {
        self.idle_floor = Some(t);
    }

    /// When the idle timeout closes the connection.
    fn idle_deadline(&self) -> Option<Instant> {
        let t = self.last_recv + self.idle_timeout?;
        Some(self.idle_floor.map_or(t, |f| t.max(f)))
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<ConnEvent> {
        self.events.pop_front()
    }

    /// Whether an event waits for [`poll_event`](Self::poll_event).
    #[inline]
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// When [`handle_timeout`](Self::handle_timeout) has work next: the
    /// loss and PTO timer, the idle timeout, the old receive key's discard,
    /// unreliable partials, message TTLs and the end of closing or draining.
    /// Deadlines that only a send can meet (ack delay, keep-alive, pacing,
    /// pending probes) are [`next_transmit`](Self::next_transmit)'s, so after
    /// `handle_timeout(t)` every timer here is later than `t`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Closed => return None,
            State::Closing(t) | State::Draining(t) => return Some(t),
            State::Open => {}
        }
        // A PTO whose probes wait to be sent restarts when they leave.
        let rec = self.rec.timeout().filter(|_| !(self.probes > 0 && self.rec.pto_armed()));
        let t = earliest(rec, self.idle_deadline());
        let t = earliest(t, self.prot.timeout());
        let t = earliest(t, self.unrel_rx.timeout(Duration::from_micros(self.rec.rtt().srtt())));
        earliest(t, self.tx.next_expiry())
    }

    /// When [`poll_transmit`](Self::poll_transmit) has a datagram to send
    /// next, if nothing arrives before: `now` or earlier when one is due,
    /// `None` when only an input (an ACK) can make one due.
    pub fn next_transmit(&self, now: Instant) -> Option<Instant> {
        match self.state {
            State::Closing(_) => return (self.probes > 0).then_some(now),
            State::Open => {}
            State::Draining(_) | State::Closed => return None,
        }
        if !self.rec.can_record() {
            return None; // the record is full even for control packets: wait for acks
        }
        if self.probes > 0
            || self.group.is_some()
            || !self.path_responses.is_empty()
            || (self.reset_token_out.is_some() && !self.reset_token_in_flight)
        {
            return Some(now);
        }
        let data = (!self.nothing_sendable() && self.rec.budget() >= self.plpmtu as u64 && self.rec.has_room())
            .then(|| self.pacer_wait.filter(|&t| t > now).unwrap_or(now));
        earliest(earliest(data, self.acks.deadline()), Some(self.last_eliciting_sent + KEEP_ALIVE))
    }

    /// Runs timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Closed => return,
            State::Closing(t) | State::Draining(t) => {
                if now >= t {
                    self.state = State::Closed;
                }
                return;
            }
            State::Open => {}
        }
        if self.idle_deadline().is_some_and(|t| now >= t) {
            self.state = State::Closed;
            self.finish_messages();
            self.events.push_back(ConnEvent::Closed(CloseReason::IdleTimeout));
            return;
        }
        let mut outcomes = core::mem::take(&mut self.outcomes);
        if let TimerAction::Probe(n) = self.rec.on_timeout(now, &mut |o| outcomes.push(o)) {
            self.probes = n;
            self.queue_probe_data(n);
        }
        self.apply(&mut outcomes);
        self.outcomes = outcomes;
        self.prot.handle_timeout(now);
        self.unrel_rx.handle_timeout(now, Duration::from_micros(self.rec.rtt().srtt()));
        let events = &mut self.events;
        for c in &mut self.tx.ch {
            match &mut c.sender {
                Sender::Unreliable(u) => {
                    u.expire(now, &mut |r| events.push_back(ConnEvent::Lost(r, LossReason::Expired)))
                }
                Sender::Reliable(r) => {
                    r.expire(now, &mut |x| events.push_back(ConnEvent::Lost(x.receipt(), LossReason::Expired)))
                }
            }
        }
    }

    /// PTO probes carry the oldest unacknowledged reliable frames, else a
    /// PING (§4.1): the reliable chunks of the oldest `packets` packets still
    /// in flight go back to the head of their channels' unsent bytes. The
    /// originals stay in flight (an ACK of either copy counts; the receiver
    /// drops duplicate bytes by offset), so a tail message lost under loss
    /// leaves again at the PTO instead of after an ACK of a PING declares it
    /// lost.
    fn queue_probe_data(&mut self, packets: u8) {
        let mut left = packets;
        let mut last = None;
        for &(pn, r) in &self.records {
            let Rec::Reliable { channel, chunk } = r else { continue };
            if !self.rec.is_outstanding(pn) {
                continue;
            }
            if last != Some(pn) {
                if left == 0 {
                    break;
                }
                left -= 1;
                last = Some(pn);
            }
            if let Some(r) = self.tx.reliable_mut(channel) {
                r.on_lost(chunk);
            }
        }
    }

    /// Acts on `outcomes` and empties it (its capacity is kept).
    fn apply(&mut self, outcomes: &mut Vec<Outcome>) {
        // Records are in PN order and a packet's records are contiguous;
        // outcomes come in runs of increasing PN (the losses, then the
        // acks), so a cursor walks the records once per run instead of a
        // search per packet. `on_record` never touches `records`, so they
        // are read in place, without a copy.
        let mut k = 0;
        let mut last: Option<u64> = None;
        for o in outcomes.drain(..) {
            let (pn, acked) = match o {
                Outcome::Acked { pn, .. } => (pn, true),
                Outcome::Lost { pn, .. } => (pn, false),
            };
            if last.is_none_or(|l| pn < l) {
                // Usually the oldest records are this packet's: no search.
                k = if self.records.front().is_none_or(|(p, _)| *p >= pn) {
                    0
                } else {
                    self.records.partition_point(|(p, _)| *p < pn)
                };
            } else {
                while self.records.get(k).is_some_and(|(p, _)| *p < pn) {
                    k += 1;
                }
            }
            last = Some(pn);
            while let Some(&(p, r)) = self.records.get(k)
                && p == pn
            {
                self.on_record(r, acked);
                k += 1;
            }
        }
        let oldest = self.rec.oldest_recorded();
        while self.records.front().is_some_and(|(p, _)| *p < oldest) {
            self.records.pop_front();
        }
    }

    fn on_record(&mut self, r: Rec, acked: bool) {
        match r {
            Rec::Reliable { channel, chunk } => {
                let events = &mut self.events;
                let Some(r) = self.tx.reliable_mut(channel) else { return };
                if acked {
                    r.on_acked(chunk, &mut |x| events.push_back(ConnEvent::Delivered(x.receipt())));
                } else {
                    r.on_lost(chunk);
                }
            }
            Rec::Unreliable { receipt } => {
                if let Some(lost) = self.unrel_pending.on_packet(receipt, acked) {
                    self.events.push_back(if lost {
                        ConnEvent::Lost(receipt, LossReason::PacketLost)
                    } else {
                        ConnEvent::Delivered(receipt)
                    });
                }
            }
            Rec::Ack { largest } => {
                if acked {
                    self.acks.on_ack_acked(largest);
                }
            }
            Rec::ResetToken => {
                if acked {
                    self.reset_token_out = None;
                }
                self.reset_token_in_flight = false;
            }
        }
    }

    /// Takes one datagram addressed to this connection (decrypted in place).
    pub fn handle_datagram(&mut self, now: Instant, datagram: &mut [u8]) -> Arrival {
        self.handle_datagram_within(now, datagram, u64::MAX)
    }

    /// Bytes held for reassembly: buffered reliable messages (at their whole
    /// length, as the windows count them) and unreliable partials, each
    /// partial with its bookkeeping (`recv::PARTIAL_OVERHEAD`).
    pub fn reassembly_bytes(&self) -> u64 {
        let partials = self.conn_window.partials() + self.unrel_rx.partials();
        self.conn_window.used() + self.unrel_rx.used() + partials * super::recv::PARTIAL_OVERHEAD
    }

    /// Packets refused because their reassembly bytes did not fit the room
    /// the endpoint's budget left ([`handle_datagram_within`](Self::handle_datagram_within)).
    pub fn budget_refused(&self) -> u64 {
        self.budget_refused
    }

    /// Like [`handle_datagram`](Self::handle_datagram), with at most `room`
    /// more bytes of reassembly (the endpoint's reassembly budget, per
    /// connection, per address and in total). A packet whose frames would
    /// start buffering more is discarded unrecorded, hence unacknowledged,
    /// and its reliable frames come again in later packets (§4.6); counted
    /// in [`budget_refused`](Self::budget_refused).
    pub fn handle_datagram_within(&mut self, now: Instant, datagram: &mut [u8], room: u64) -> Arrival {
        if matches!(self.state, State::Closed | State::Draining(_)) {
            return Arrival::Ignored;
        }
        let pto = self.rec.pto();
        let opened = match self.prot.open(now, pto, datagram) {
            Ok(o) => o,
            Err(e @ (OpenError::Malformed(_) | OpenError::AuthFailed)) => {
                if self.reset_token.is_some_and(|t| is_reset(datagram, &t)) {
                    // While closing, `Closed` was reported already and the
                    // messages finished: the reset only ends the closing
                    // period (§6.4, exactly one event).
                    if matches!(self.state, State::Open) {
                        self.finish_messages();
                        self.events.push_back(ConnEvent::Closed(CloseReason::StatelessReset));
                    }
                    self.state = State::Closed;
                }
                return Arrival::Unopened(e);
            }
            Err(e) => return Arrival::Unopened(e),
        };
        self.packets_opened += 1;
        self.last_recv = now;
        self.idle_floor = None;
        if let State::Closing(_) = self.state {
            // Answer with CLOSE again (§6.4), at most 3 times and at most
            // once per PTO, however many packets arrive.
            if self.close_repeats > 0 && self.probes == 0 && self.close_sent.is_none_or(|t| now >= t + pto) {
                self.close_repeats -= 1;
                self.probes = 1;
            }
            return Arrival::Opened;
        }
        let payload = &datagram[opened.payload];
        let mut eliciting = false;
        // What the packet would make us hold, and how many byte ranges it
        // could open in partial messages (conservatively: all of them in the
        // fullest partial it touches), before anything is recorded.
        let (mut need, mut adds, mut fullest) = (0u64, 0usize, 0usize);
        // The frames parsed here are kept for the pass that acts on them; a
        // packet with more than the list holds is parsed again instead.
        let mut parsed: heapless::Vec<Frame<'_>, PARSED_FRAMES> = heapless::Vec::new();
        let mut overflow = false;
        let mut reliable = false;
        for f in Frames::new(payload) {
            match f {
                Ok(f) => {
                    overflow |= parsed.push(f).is_err();
                    eliciting |= f.is_ack_eliciting();
                    reliable |=
                        matches!(f, Frame::Message { kind, .. } | Frame::Fragment { kind, .. } if kind.is_reliable());
                    let cost = self.charge_of(&f);
                    need = need.saturating_add(cost.charge);
                    adds += usize::from(cost.adds_range);
                    fullest = fullest.max(cost.ranges);
                }
                Err(_) => {
                    self.fail(now, close_code::PROTOCOL_VIOLATION);
                    return Arrival::Opened;
                }
            }
        }
        if need > room || (adds > 0 && fullest + adds > super::recv::MAX_RANGES) {
            self.budget_refused += 1;
            return Arrival::BudgetRefused;
        }
        if reliable && self.recv_blocked {
            // Unrecorded, hence unacknowledged: resent once the application
            // has drained its events (§4.6).
            self.recv_refused += 1;
            return Arrival::RecvRefused;
        }
        self.acks.on_packet(now, opened.pn, eliciting);
        // Messages become events as their frames are read; a packet that
        // breaks the protocol, or closes, delivers none of them.
        let mark = self.events.len();
        let done = if overflow {
            self.frames_in(now, pto, Frames::new(payload))
        } else {
            self.frames_in(now, pto, parsed.iter().copied().map(Ok))
        };
        if let Err(stop) = done {
            self.unsay_messages(mark);
            if let Some(code) = stop {
                self.fail(now, code);
            }
        }
        Arrival::Opened
    }

    /// Takes back the `Message` events queued from index `mark` on (the
    /// other events stay, in order): a packet that broke the protocol or
    /// closed.
    #[cold]
    fn unsay_messages(&mut self, mark: usize) {
        let mut i = 0;
        self.events.retain(|e| {
            i += 1;
            i <= mark || !matches!(e, ConnEvent::Message { .. })
        });
    }

    /// Acts on a validated packet's frames, its messages queued as events;
    /// `Err(Some(code))`: the connection must fail with `code`; `Err(None)`:
    /// stop here (CLOSE).
    fn frames_in<'a>(
        &mut self,
        now: Instant,
        pto: Duration,
        frames: impl Iterator<Item = Result<Frame<'a>, WireError>>,
    ) -> Result<(), Option<u16>> {
        let peer = self.side.peer();
        for f in frames {
            // Validated in the pass above.
            let Ok(f) = f else { return Err(None) };
            if !f.allowed_from(peer) {
                return Err(Some(close_code::PROTOCOL_VIOLATION));
            }
            let res = match f {
                Frame::Ack(a) => {
                    let mut outcomes = core::mem::take(&mut self.outcomes);
                    let app_limited = self.nothing_to_send();
                    let acked = self.rec.on_ack(now, &a, app_limited, &mut |o| outcomes.push(o));
                    if acked.is_ok() {
                        self.apply(&mut outcomes);
                    }
                    outcomes.clear();
                    self.outcomes = outcomes;
                    acked.map_err(|_| close_code::PROTOCOL_VIOLATION)
                }
                Frame::Close { code, .. } => {
                    self.state = State::Draining(now + pto * 3);
                    self.finish_messages();
                    self.events.push_back(ConnEvent::Closed(CloseReason::Peer(code)));
                    return Err(None);
                }
                Frame::PathChallenge(d) => {
                    let _ = self.path_responses.push(d);
                    Ok(())
                }
                Frame::ResetToken(t) => {
                    self.reset_token = Some(t);
                    Ok(())
                }
                Frame::Message { kind, channel, id, data } => self.receive(
                    now,
                    kind,
                    channel,
                    id,
                    Piece { id: id.unwrap_or(0), total_len: data.len() as u64, offset: 0, data },
                    true,
                ),
                Frame::Fragment { kind, channel, id, total_len, offset, data } => {
                    self.receive(now, kind, channel, Some(id), Piece { id, total_len, offset, data }, false)
                }
                _ => Ok(()),
            };
            res.map_err(Some)?;
        }
        Ok(())
    }

    /// Reassembly bytes frame `f` would start holding (see `recv`).
    fn charge_of(&self, f: &Frame<'_>) -> PieceCost {
        match *f {
            Frame::Message { kind, channel, id, data } if kind.is_reliable() => {
                let p = Piece { id: id.unwrap_or(0), total_len: data.len() as u64, offset: 0, data };
                self.reliable_charge(kind, channel, &p)
            }
            Frame::Fragment { kind, channel, id, total_len, offset, data } => {
                if kind.is_reliable() {
                    self.reliable_charge(kind, channel, &Piece { id, total_len, offset, data })
                } else {
                    self.unrel_rx.charge_of(channel, kind, id, total_len, offset, data.len() as u64)
                }
            }
            _ => PieceCost::default(),
        }
    }

    fn reliable_charge(&self, kind: ChannelKind, channel: u8, p: &Piece<'_>) -> PieceCost {
        match self.reliable_rx.get(&channel) {
            Some(rx) => rx.charge_of(p),
            // A new channel (E = 0, no H yet): it buffers unless the piece is
            // a whole message delivered at once.
            None => {
                let whole = p.offset == 0 && p.data.len() as u64 == p.total_len;
                let in_order = kind != ChannelKind::ReliableOrdered || p.id == 0;
                if (whole && in_order) || p.total_len > self.config.max_message_size {
                    PieceCost::default()
                } else {
                    PieceCost { charge: p.total_len + super::recv::PARTIAL_OVERHEAD, ranges: 0, adds_range: !whole }
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn receive(
        &mut self,
        now: Instant,
        kind: ChannelKind,
        channel: u8,
        id: Option<u16>,
        p: Piece<'_>,
        whole: bool,
    ) -> Result<(), u16> {
        // The first frame on a channel fixes its kind (per direction, §3.4).
        match self.rx_kinds[usize::from(channel)] {
            Some(k) if k != kind => return Err(close_code::PROTOCOL_VIOLATION),
            Some(_) => {}
            None => self.rx_kinds[usize::from(channel)] = Some(kind),
        }
        let events = &mut self.events;
        let mut deliver = |m: Incoming<'_>| events.push_back(ConnEvent::Message { channel, data: m.bytes().to_vec() });
        let err = |e: super::recv::RecvError| match e {
            super::recv::RecvError::ProtocolViolation => close_code::PROTOCOL_VIOLATION,
            super::recv::RecvError::FlowViolation => close_code::FLOW_VIOLATION,
        };
        if kind.is_reliable() {
            let (mms, win) = (self.config.max_message_size, self.config.recv_window);
            let rx = self.reliable_rx.entry(channel).or_insert_with(|| ReliableRecv::new(kind, mms, win));
            rx.on_piece(now, p, &mut self.conn_window, &mut deliver).map_err(err)
        } else if whole {
            self.unrel_rx.on_message(channel, kind, id, p.data, &mut deliver);
            Ok(())
        } else {
            self.unrel_rx
                .on_fragment(now, channel, kind, p.id, p.total_len, p.offset, p.data, &mut deliver)
                .map_err(err)
        }
    }

    /// Nothing queued nor in flight (the congestion controller's
    /// application-limited test).
    fn nothing_to_send(&self) -> bool {
        self.group.is_none() && self.tx.is_empty()
    }

    /// Nothing that a packet could carry now: in-flight data alone does
    /// not make a connection ready to send (it would be polled for nothing
    /// until the ack).
    fn nothing_sendable(&self) -> bool {
        self.group.is_none() && !self.tx.has_sendable()
    }

    /// Writes the next datagram into `buf` (at least 1200 bytes) and returns
    /// its length, or `None` when nothing is due now.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        let closing = matches!(self.state, State::Closing(_));
        if !closing && !matches!(self.state, State::Open) {
            return None;
        }
        let buf = buf.get_mut(..self.plpmtu)?;
        if !self.rec.can_record() {
            return None; // the record is full even for control packets: wait for acks
        }
        let largest_acked = self.rec.largest_acked();
        let begun = match self.prot.begin(largest_acked, buf) {
            Ok(b) => b,
            Err(super::protect::SealError::KeyExhausted | super::protect::SealError::PacketNumbersExhausted) => {
                // Stage 1 does not initiate key updates: the connection ends (§8).
                if matches!(self.state, State::Open) {
                    self.finish_messages();
                    self.events.push_back(ConnEvent::Closed(CloseReason::Local(close_code::NORMAL)));
                }
                self.state = State::Closed;
                return None;
            }
            Err(_) => return None,
        };
        let (hl, room) = (begun.header_len, begun.max_payload);
        let pn = begun.pn;
        let mut recs: heapless::Vec<Rec, 64> = heapless::Vec::new();
        let mut eliciting = false;
        let written = {
            let (_, rest) = buf.split_at_mut(hl);
            let mut w = Writer::new(&mut rest[..room]);
            if closing {
                if self.probes == 0 {
                    return None;
                }
                self.probes -= 1;
                Frame::Close { code: self.close_code, reason: b"" }.emit(&mut w).ok()?;
                self.close_sent = Some(now);
            } else {
                let ack_due = self.acks.is_due(now);
                let probe = self.probes > 0;
                let keep_alive = now >= self.last_eliciting_sent + KEEP_ALIVE;
                let budget_ok = self.rec.budget() >= self.plpmtu as u64 && self.rec.has_room();
                let has_data = !self.nothing_sendable();
                let pace_ok = |s: &mut Self| {
                    let wnd = s.rec.controller().window();
                    match s.pacer.send_time(now, s.plpmtu as u64, wnd, s.rec.rtt().srtt()) {
                        None => true,
                        Some(t) => {
                            s.pacer_wait = Some(t);
                            false
                        }
                    }
                };
                let in_group = self.group.is_some();
                let send_data = has_data && (in_group || probe || (budget_ok && pace_ok(self)));
                let token = self.reset_token_out.filter(|_| !self.reset_token_in_flight);
                if !(ack_due || probe || keep_alive || send_data || token.is_some() || !self.path_responses.is_empty())
                {
                    return None;
                }
                // A fragment of a group fills a datagram on its own, so it goes
                // first; then a due ACK, control frames and other data; an ACK
                // not yet due rides along if it still fits and has news.
                let mut filled = false;
                if send_data && in_group {
                    eliciting |= self.fill(now, &mut w, &mut recs);
                    filled = true;
                }
                let mut ack_written = false;
                if ack_due && let Ok(largest) = self.acks.write(now, &mut w) {
                    let _ = recs.push(Rec::Ack { largest });
                    ack_written = true;
                }
                if let Some(t) = token
                    && Frame::ResetToken(t).emit(&mut w).is_ok()
                {
                    eliciting = true;
                    self.reset_token_in_flight = true;
                    let _ = recs.push(Rec::ResetToken);
                }
                while let Some(d) = self.path_responses.last().copied() {
                    if Frame::PathResponse(d).emit(&mut w).is_err() {
                        break; // next packet
                    }
                    self.path_responses.pop();
                    eliciting = true;
                }
                if send_data && !filled {
                    eliciting |= self.fill(now, &mut w, &mut recs);
                }
                if (probe || keep_alive) && !eliciting && Frame::Ping.emit(&mut w).is_ok() {
                    eliciting = true;
                }
                // Only on a packet that goes anyway: writing an ACK clears the
                // ack timer, so a packet carrying nothing else must not exist.
                // And only when a packet arrived since the last ACK: an
                // unchanged ACK is not repeated (§4.1).
                if !ack_written
                    && eliciting
                    && self.acks.has_news()
                    && let Ok(largest) = self.acks.write(now, &mut w)
                {
                    let _ = recs.push(Rec::Ack { largest });
                }
                if probe {
                    self.probes -= 1;
                }
            }
            w.len()
        };
        if written == 0 {
            return None;
        }
        let len = self.prot.finish(begun, buf, written).ok()?;
        let meta = pn;
        // By reference (moving the 64-entry array into an iterator would
        // copy all of it, 2.5 KB, for the one or two records a packet has),
        // and one push each (`extend` from a mapped iterator is slower).
        for &r in &recs {
            self.records.push_back((pn, r));
        }
        let packet = SentPacket {
            time: now,
            size: len as u32,
            ack_eliciting: eliciting,
            in_flight: eliciting,
            pmtu_probe: false,
            meta,
        };
        self.rec.on_sent(pn, packet);
        if eliciting {
            self.last_eliciting_sent = now;
        }
        Some(len)
    }

    /// Fills data frames; returns whether any was written.
    fn fill(&mut self, now: Instant, w: &mut Writer<'_>, recs: &mut heapless::Vec<Rec, 64>) -> bool {
        // An unreliable fragment group sends one fragment per datagram.
        if let Some((channel, kind, g, next)) = self.group.take() {
            // The group's fragments are computed, not listed: no allocation
            // per datagram.
            let Some((off, len)) = g.fragments().nth(next) else { return false };
            let f = Frame::Fragment {
                kind,
                channel,
                id: g.fragment_id.unwrap_or(0),
                total_len: g.data.len() as u64,
                offset: off as u64,
                data: &g.data[off..off + len],
            };
            if f.emit(w).is_err() {
                // Cannot happen with the fragment first in the packet; if it
                // did, the whole group is lost, reported once.
                if self.unrel_pending.remove(g.receipt).is_some() {
                    self.events.push_back(ConnEvent::Lost(g.receipt, LossReason::PacketLost));
                }
                return false;
            }
            let _ = recs.push(Rec::Unreliable { receipt: g.receipt });
            if next + 1 < g.fragment_count() {
                self.group = Some((channel, kind, g, next + 1));
            }
            return true;
        }
        // Channels by priority, deficit round-robin by weight within one (§4.4).
        let start = w.len();
        self.tx.begin_packet();
        while let Some(i) = self.tx.next_turn() {
            if recs.is_full() || w.remaining() < 8 {
                break;
            }
            let wrote = match self.tx.ch[i].sender {
                Sender::Unreliable(_) => self.fill_unreliable(now, i, w, recs),
                Sender::Reliable(_) => self.fill_reliable(now, i, w, recs),
            };
            match wrote {
                Some(n) => self.tx.wrote(i, n.max(1)),
                None => self.tx.exhausted(i),
            }
        }
        if w.is_empty() && self.group.is_some() {
            // A fragment group started and nothing else was written: its
            // first fragment takes this packet (never an empty datagram and
            // a wait for the next input).
            return self.fill(now, w, recs);
        }
        // A fragment group that started here charged its channel but wrote
        // nothing yet: only bytes written make the packet ack-eliciting.
        w.len() > start
    }

    /// Writes the next message of unreliable channel `i`; the bytes it
    /// takes (a fragment group's whole length, sent from the next datagram
    /// on), or `None` when nothing more fits this packet.
    fn fill_unreliable(
        &mut self,
        now: Instant,
        i: usize,
        w: &mut Writer<'_>,
        recs: &mut heapless::Vec<Rec, 64>,
    ) -> Option<usize> {
        let (channel, kind) = (self.tx.ch[i].id, self.tx.ch[i].kind);
        let Sender::Unreliable(u) = &mut self.tx.ch[i].sender else { return None };
        // A whole message that does not fit this packet waits for the next one
        // (an empty packet always holds max_unfragmented); one group at a time.
        let group = u.peek_is_group();
        if (group && self.group.is_some())
            || (!group && u.peek_len().is_some_and(|l| l + MESSAGE_FRAME_MAX_OVERHEAD > w.remaining()))
        {
            return None;
        }
        let events = &mut self.events;
        let m = u.pop(now, &mut |r| events.push_back(ConnEvent::Lost(r, LossReason::Expired)))?;
        if m.fragment_id.is_some() {
            let n = m.fragment_count() as u32;
            let len = m.data.len();
            self.unrel_pending.insert(m.receipt, (n, false));
            self.group = Some((channel, kind, m, 0));
            return Some(len); // starts with the next datagram
        }
        let id = if kind == ChannelKind::UnreliableSequenced { Some(m.seq.unwrap_or(0)) } else { None };
        let f = Frame::Message { kind, channel, id, data: &m.data };
        let before = w.len();
        if f.emit(w).is_err() {
            // Checked by peek_len above; reported rather than dropped silently.
            self.events.push_back(ConnEvent::Lost(m.receipt, LossReason::PacketLost));
            return None;
        }
        self.unrel_pending.insert(m.receipt, (1, false));
        let _ = recs.push(Rec::Unreliable { receipt: m.receipt });
        self.spare.put(m.data);
        Some(w.len() - before)
    }

    /// Writes the next chunk of reliable channel `i`; its frame bytes, or
    /// `None` when nothing more may go in this packet.
    fn fill_reliable(
        &mut self,
        now: Instant,
        i: usize,
        w: &mut Writer<'_>,
        recs: &mut heapless::Vec<Rec, 64>,
    ) -> Option<usize> {
        // What the peer's conn_recv_window leaves beside every channel.
        let conn_room = self.peer_conn_window.saturating_sub(self.tx.window_used());
        let (ch, kind) = (self.tx.ch[i].id, self.tx.ch[i].kind);
        let Sender::Reliable(r) = &mut self.tx.ch[i].sender else { return None };
        let (chunk, data) = r.next_chunk_within(now, w.remaining(), conn_room)?;
        let f = if chunk.is_whole() {
            Frame::Message { kind, channel: ch, id: Some(chunk.id as u16), data }
        } else {
            Frame::Fragment {
                kind,
                channel: ch,
                id: chunk.id as u16,
                total_len: chunk.total_len,
                offset: chunk.offset,
                data,
            }
        };
        let before = w.len();
        if f.emit(w).is_err() {
            r.on_lost(chunk);
            return None;
        }
        let _ = recs.push(Rec::Reliable { channel: ch, chunk });
        Some(w.len() - before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpgs2::cookie::CookieKeys;
    use crate::mpgs2::handshake::{ClientHandshake, ClientOffer, ServerAnswer, ServerPolicy, server_answer};
    use crate::mpgs2::tlv::TransportParams;
    use crate::{Rng, Seed, ServerKey};
    use alloc::vec;

    fn pair(seed: u64) -> (Connection, Connection) {
        pair_with(seed, TransportParams::default(), ConnConfig::default())
    }

    /// A pair whose client advertises `client_params` and runs with
    /// `client_config`.
    fn pair_with(seed: u64, client_params: TransportParams, client_config: ConnConfig) -> (Connection, Connection) {
        let mut rng = Rng::new(Seed::from_u64(seed));
        let root = ServerKey::generate(&mut rng);
        let cookies = CookieKeys::new(Instant::ZERO, &mut rng);
        let offer = ClientOffer { protocol_id: 1, versions: &[2], suites: &[1], recv_cid: None, params: client_params };
        let client = ClientHandshake::new(&offer, &mut rng).expect("fits");
        let policy = ServerPolicy {
            protocol_id: 1,
            versions: &[2],
            suites: &[1],
            params: TransportParams::DEFAULTS,
            require_cookie: false,
        };
        let from = "192.0.2.1:9".parse().expect("address");
        let Ok(ServerAnswer::Accept { server_hello, established, .. }) =
            server_answer(Instant::ZERO, &policy, &root, &cookies, from, client.hello(), [7; 8], &mut rng)
        else {
            panic!("accept")
        };
        let c_est = client.on_server_hello(&server_hello, &[root.public_key()]).expect("verifies");
        let c = Connection::new(Side::Client, c_est, client_config, Instant::ZERO);
        let s = Connection::new(Side::Server, established, ConnConfig::default(), Instant::ZERO);
        (c, s)
    }

    /// A two-sided in-memory run: `loss_permille` of datagrams dropped by a
    /// seeded coin, 20 ms one-way delay. Returns what each side received and
    /// the receipts of each side, plus a digest of every datagram.
    struct Run {
        got: [Vec<(u8, Vec<u8>)>; 2],
        delivered: [Vec<u64>; 2],
        lost: [Vec<u64>; 2],
        closed: [Vec<CloseReason>; 2],
        digest: u64,
        end: Instant,
        client_token: Option<[u8; TOKEN_LEN]>,
        server_token_pending: bool,
    }

    /// Network impairments, in permille and ms.
    #[derive(Clone, Copy)]
    struct Net {
        loss: u32,
        dup: u32,
        corrupt: u32,
        jitter_ms: u32,
    }

    fn run(seed: u64, loss_permille: u32, msgs: &[(u8, Vec<u8>)], until: Duration) -> Run {
        run_net(seed, Net { loss: loss_permille, dup: 0, corrupt: 0, jitter_ms: 0 }, msgs, until)
    }

    fn run_net(seed: u64, net: Net, msgs: &[(u8, Vec<u8>)], until: Duration) -> Run {
        let (c, s) = pair(seed);
        let mut conns = [c, s];
        let mut rng = Rng::new(Seed::from_u64(seed ^ 0xABCD));
        // (arrival, sequence) → (receiver, bytes): reordering by jitter, ties by sequence.
        let mut wire: BTreeMap<(Instant, u64), (usize, Vec<u8>)> = BTreeMap::new();
        let mut seq = 0u64;
        let mut out = Run {
            got: [vec![], vec![]],
            delivered: [vec![], vec![]],
            lost: [vec![], vec![]],
            closed: [vec![], vec![]],
            digest: 0,
            end: Instant::ZERO,
            client_token: None,
            server_token_pending: true,
        };
        let mut now = Instant::ZERO;
        conns[1].send_reset_token([0x77; TOKEN_LEN]);
        for (ch, m) in msgs {
            conns[0].send(now, *ch, m.clone()).expect("queued");
            conns[1].send(now, *ch, m.clone()).expect("queued");
        }
        let delay = Duration::from_millis(20);
        let mut buf = [0u8; 1500];
        for _ in 0..200_000 {
            for (i, c) in conns.iter_mut().enumerate() {
                while let Some(n) = c.poll_transmit(now, &mut buf) {
                    for b in &buf[..n] {
                        out.digest = out.digest.wrapping_mul(0x100000001b3) ^ u64::from(*b);
                    }
                    if rng.u32() % 1000 < net.loss {
                        continue;
                    }
                    let copies = if rng.u32() % 1000 < net.dup { 2 } else { 1 };
                    for _ in 0..copies {
                        let mut d = buf[..n].to_vec();
                        if rng.u32() % 1000 < net.corrupt {
                            let at = rng.u32() as usize % n;
                            d[at] ^= 1 << (rng.u32() % 8);
                        }
                        let jitter = Duration::from_millis(u64::from(rng.u32() % (net.jitter_ms + 1)));
                        wire.insert((now + delay + jitter, seq), (1 - i, d));
                        seq += 1;
                    }
                }
                while let Some(e) = c.poll_event() {
                    match e {
                        ConnEvent::Message { channel, data } => out.got[i].push((channel, data)),
                        ConnEvent::Delivered(r) => out.delivered[i].push(r),
                        ConnEvent::Lost(r, _) => out.lost[i].push(r),
                        ConnEvent::Closed(r) => out.closed[i].push(r),
                    }
                }
            }
            let next_wire = wire.keys().next().map(|k| k.0);
            // Transmit times still ahead count as timers, as in the session.
            let next_timer = conns
                .iter()
                .flat_map(|c| [c.poll_timeout(), c.next_transmit(now).filter(|&t| t > now)])
                .flatten()
                .min();
            let Some(next) = [next_wire, next_timer].into_iter().flatten().min() else { break };
            if next > Instant::ZERO + until {
                break;
            }
            now = now.max(next);
            while wire.keys().next().is_some_and(|k| k.0 <= now) {
                let Some((_, (to, mut d))) = wire.pop_first() else { break };
                conns[to].handle_datagram(now, &mut d);
            }
            for c in conns.iter_mut() {
                c.handle_timeout(now);
            }
            let reliable = msgs.iter().filter(|m| m.0 == CH_RELIABLE).count();
            let all_done = (0..2).all(|i| out.delivered[i].len() + out.lost[i].len() == msgs.len())
                && (0..2).all(|i| out.got[i].iter().filter(|m| m.0 == CH_RELIABLE).count() == reliable);
            if all_done && wire.is_empty() {
                break;
            }
        }
        out.end = now;
        out.client_token = conns[0].reset_token;
        out.server_token_pending = conns[1].reset_token_out.is_some();
        out
    }

    fn messages(n: usize, seed: u64) -> Vec<(u8, Vec<u8>)> {
        let mut rng = Rng::new(Seed::from_u64(seed));
        (0..n)
            .map(|i| {
                let len = (rng.u32() % 4000) as usize;
                let ch = [CH_RELIABLE, CH_BEST_EFFORT, CH_RELIABLE, CH_UNRELIABLE][i % 4];
                (ch, (0..len).map(|k| (i + k) as u8).collect())
            })
            .collect()
    }

    #[test]
    fn reliable_exactly_once_in_order_under_loss() {
        let msgs = messages(120, 5);
        for (seed, loss) in [(1u64, 0u32), (2, 100), (3, 300)] {
            let r = run(seed, loss, &msgs, Duration::from_secs(120));
            assert!(r.end < Instant::from_secs(60), "seed {seed} loss {loss}: finished in {}", r.end);
            for side in 0..2 {
                let reliable: Vec<&Vec<u8>> = msgs.iter().filter(|m| m.0 == CH_RELIABLE).map(|m| &m.1).collect();
                let got: Vec<&Vec<u8>> = r.got[side].iter().filter(|m| m.0 == CH_RELIABLE).map(|m| &m.1).collect();
                assert_eq!(got, reliable, "seed {seed} loss {loss}: Reliable in send order, exactly once");
                // Every message got exactly one receipt.
                let mut all: Vec<u64> = r.delivered[side].iter().chain(&r.lost[side]).copied().collect();
                all.sort_unstable();
                assert_eq!(
                    all,
                    (0..msgs.len() as u64).collect::<Vec<_>>(),
                    "seed {seed} loss {loss}: one receipt each"
                );
                // Reliable messages are all Delivered.
                let rel_receipts: Vec<u64> =
                    msgs.iter().enumerate().filter(|(_, m)| m.0 == CH_RELIABLE).map(|(i, _)| i as u64).collect();
                assert!(rel_receipts.iter().all(|r_| r.delivered[side].contains(r_)), "seed {seed} loss {loss}");
                assert!(r.closed[side].is_empty());
            }
            for side in 0..2 {
                let peer = 1 - side;
                // Delivered ⇒ received (ground truth), on every channel.
                for &d in &r.delivered[side] {
                    let m = &msgs[d as usize];
                    assert!(r.got[peer].iter().any(|g| g == m), "seed {seed}: receipt {d} Delivered but not received");
                }
                // Unreliable and BestEffort: a duplicate-free subset.
                let mut seen = alloc::collections::BTreeSet::new();
                for g in &r.got[peer] {
                    assert!(msgs.contains(g), "only sent messages arrive");
                    assert!(seen.insert(g.clone()) || g.1.is_empty(), "seed {seed}: duplicate {:?}", g.0);
                }
            }
        }
    }

    /// Many seeds with 0–50 % loss, duplication, reordering and corruption:
    /// Reliable messages arrive exactly once and in send order, every message
    /// gets exactly one receipt, Delivered implies received.
    #[test]
    fn seeds_sweep_under_impairments() {
        for seed in 0..40u64 {
            let net = Net { loss: (seed as u32 * 13) % 500, dup: 50, corrupt: 20, jitter_ms: (seed as u32 % 4) * 10 };
            let msgs = messages(24, 100 + seed);
            let r = run_net(seed, net, &msgs, Duration::from_secs(300));
            let reliable: Vec<&Vec<u8>> = msgs.iter().filter(|m| m.0 == CH_RELIABLE).map(|m| &m.1).collect();
            for side in 0..2 {
                let got: Vec<&Vec<u8>> = r.got[side].iter().filter(|m| m.0 == CH_RELIABLE).map(|m| &m.1).collect();
                assert_eq!(got, reliable, "seed {seed}: Reliable exactly once, in order");
                let mut all: Vec<u64> = r.delivered[side].iter().chain(&r.lost[side]).copied().collect();
                all.sort_unstable();
                assert_eq!(all, (0..msgs.len() as u64).collect::<Vec<_>>(), "seed {seed}: one receipt each");
                for &d in &r.delivered[side] {
                    assert!(r.got[1 - side].contains(&msgs[d as usize]), "seed {seed}: Delivered ⇒ received");
                }
                assert!(r.closed[side].is_empty(), "seed {seed}: {:?}", r.closed[side]);
            }
            assert_eq!(r.client_token, Some([0x77; TOKEN_LEN]), "seed {seed}: RESET_TOKEN arrived");
            assert!(!r.server_token_pending, "seed {seed}: and was acknowledged");
        }
    }

    /// 1 MiB on the Reliable channel over a clean 40 ms RTT path: slow start
    /// and pacing finish it in a handful of round trips, not seconds.
    #[test]
    fn one_mebibyte_reliable_is_fast_on_a_clean_path() {
        let big: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
        let r = run(15, 0, &[(CH_RELIABLE, big.clone())], Duration::from_secs(30));
        assert_eq!(r.got[1].len(), 1);
        assert!(r.got[1][0].1 == big);
        assert_eq!(r.delivered[0], [0]);
        assert!(r.end < Instant::from_millis(1_500), "took {}", r.end);
    }

    quickcheck::quickcheck! {
        /// A hostile peer with valid keys: arbitrary payloads and arbitrary
        /// well-formed frames, sealed and fed in; unsealed junk too. Nothing
        /// panics, and the connection either stays open or closes once.
        fn hostile_peer_never_panics(
            payloads: Vec<Vec<u8>>,
            frames_in: Vec<crate::mpgs2::frame::tests::OwnedFrame>,
            junk: Vec<Vec<u8>>
        ) -> bool {
            let (mut c, mut s) = pair(21);
            let mut now = Instant::from_millis(1);
            let mut buf = [0u8; 1500];
            let mut closes = 0;
            let mut feed = |s: &mut Connection, d: &mut [u8], now: Instant, closes: &mut u32| {
                s.handle_datagram(now, d);
                while s.poll_transmit(now, &mut buf).is_some() {}
                while let Some(e) = s.poll_event() {
                    if matches!(e, ConnEvent::Closed(_)) {
                        *closes += 1;
                    }
                }
                s.handle_timeout(now);
            };
            for p in payloads.iter().filter(|p| !p.is_empty() && p.len() < 1100) {
                let mut d = raw(&mut c, now, p);
                feed(&mut s, &mut d, now, &mut closes);
                now += Duration::from_millis(3);
            }
            for f in &frames_in {
                let f = f.borrow();
                if f.encoded_len() > 1100 {
                    continue;
                }
                let mut d = raw(&mut c, now, &frames(&[f]));
                feed(&mut s, &mut d, now, &mut closes);
                now += Duration::from_millis(3);
            }
            for j in &junk {
                let mut d = j.clone();
                feed(&mut s, &mut d, now, &mut closes);
            }
            closes <= 1
        }
    }

    #[test]
    fn deterministic() {
        let msgs = messages(40, 6);
        let a = run(9, 200, &msgs, Duration::from_secs(60));
        let b = run(9, 200, &msgs, Duration::from_secs(60));
        assert_eq!(a.digest, b.digest);
        assert_eq!(a.end, b.end);
    }

    #[test]
    fn close_and_idle() {
        let (mut c, mut s) = pair(3);
        let mut buf = [0u8; 1500];
        let now = Instant::from_millis(5);
        c.close(now, close_code::NORMAL);
        assert_eq!(c.poll_event(), Some(ConnEvent::Closed(CloseReason::Local(0))));
        let n = c.poll_transmit(now, &mut buf).expect("CLOSE");
        s.handle_datagram(now, &mut buf[..n]);
        assert_eq!(s.poll_event(), Some(ConnEvent::Closed(CloseReason::Peer(0))));
        assert!(s.poll_transmit(now, &mut buf).is_none(), "draining sends nothing");
        let t = s.poll_timeout().expect("drain end");
        s.handle_timeout(t);
        assert!(s.is_closed());
        // Idle: nothing received for 5 s.
        let (mut c, _) = pair(4);
        let mut t = Instant::ZERO;
        while !c.is_closed() {
            while c.poll_transmit(t, &mut buf).is_some() {}
            t = c.poll_timeout().expect("timer");
            c.handle_timeout(t);
        }
        assert_eq!(t, Instant::from_secs(5));
        let ev: Vec<_> = core::iter::from_fn(|| c.poll_event()).collect();
        assert_eq!(ev, [ConnEvent::Closed(CloseReason::IdleTimeout)]);
    }

    /// Seals `payload` as the next packet of `c` (a scripted peer of a later
    /// stage), keeping its recovery in step.
    fn raw(c: &mut Connection, now: Instant, payload: &[u8]) -> Vec<u8> {
        let mut buf = [0u8; 1500];
        let b = c.prot.begin(c.rec.largest_acked(), &mut buf[..1200]).expect("room");
        buf[b.header_len..b.header_len + payload.len()].copy_from_slice(payload);
        let n = c.prot.finish(b, &mut buf, payload.len()).expect("sealed");
        let p =
            SentPacket { time: now, size: n as u32, ack_eliciting: true, in_flight: true, pmtu_probe: false, meta: 0 };
        assert!(c.rec.on_sent(b.pn, p));
        buf[..n].to_vec()
    }

    fn frames(fs: &[Frame<'_>]) -> Vec<u8> {
        let mut out = vec![0u8; 1200];
        let mut w = Writer::new(&mut out);
        for f in fs {
            f.emit(&mut w).expect("fits");
        }
        let n = w.len();
        out.truncate(n);
        out
    }

    #[test]
    fn later_stage_peer_is_served_without_a_close() {
        let (mut c, mut s) = pair(11);
        let now = Instant::from_millis(1);
        let payload = frames(&[
            Frame::KeyUpdate,
            Frame::Auth([1; 16]),
            Frame::PathChallenge([9; 8]),
            Frame::Message { kind: ChannelKind::UnreliableSequenced, channel: 5, id: Some(3), data: b"seq" },
            Frame::Fragment { kind: ChannelKind::Unreliable, channel: 9, id: 1, total_len: 4, offset: 2, data: b"cd" },
            Frame::Fragment { kind: ChannelKind::Unreliable, channel: 9, id: 1, total_len: 4, offset: 0, data: b"ab" },
            Frame::Message { kind: ChannelKind::ReliableUnordered, channel: 40, id: Some(0), data: b"ru" },
            Frame::Ping,
            Frame::Padding { len: 10 },
        ]);
        let mut d = raw(&mut c, now, &payload);
        s.handle_datagram(now, &mut d);
        let ev: Vec<_> = core::iter::from_fn(|| s.poll_event()).collect();
        assert_eq!(
            ev,
            [
                ConnEvent::Message { channel: 5, data: b"seq".to_vec() },
                ConnEvent::Message { channel: 9, data: b"abcd".to_vec() },
                ConnEvent::Message { channel: 40, data: b"ru".to_vec() },
            ]
        );
        // The answer carries PATH_RESPONSE with the same bytes (and an ACK).
        let mut buf = [0u8; 1500];
        let n = s.poll_transmit(now, &mut buf).expect("response");
        let o = c.prot.open(now, Duration::from_millis(100), &mut buf[..n]).expect("opens");
        let got: Vec<_> = Frames::new(&buf[o.payload]).collect::<Result<_, _>>().expect("valid");
        assert!(got.contains(&Frame::PathResponse([9; 8])));
        assert!(got.iter().any(|f| matches!(f, Frame::Ack(_))));
        // A later sequenced id on channel 5 is delivered, an older one is not.
        let mut d = raw(
            &mut c,
            now,
            &frames(&[Frame::Message {
                kind: ChannelKind::UnreliableSequenced,
                channel: 5,
                id: Some(2),
                data: b"old",
            }]),
        );
        s.handle_datagram(now, &mut d);
        assert!(s.poll_event().is_none());
        // A frame of another kind on channel 5: PROTOCOL_VIOLATION.
        let mut d = raw(
            &mut c,
            now,
            &frames(&[Frame::Message { kind: ChannelKind::ReliableOrdered, channel: 5, id: Some(0), data: b"x" }]),
        );
        s.handle_datagram(now, &mut d);
        assert_eq!(s.poll_event(), Some(ConnEvent::Closed(CloseReason::Local(close_code::PROTOCOL_VIOLATION))));
        let n = s.poll_transmit(now, &mut buf).expect("CLOSE");
        c.handle_datagram(now, &mut buf[..n]);
        assert_eq!(c.poll_event(), Some(ConnEvent::Closed(CloseReason::Peer(close_code::PROTOCOL_VIOLATION))));
        // RESET_TOKEN from a client is a frame in the wrong direction.
        let (mut c, mut s) = pair(12);
        let mut d = raw(&mut c, now, &frames(&[Frame::ResetToken([0; 16])]));
        s.handle_datagram(now, &mut d);
        assert_eq!(s.poll_event(), Some(ConnEvent::Closed(CloseReason::Local(close_code::PROTOCOL_VIOLATION))));
    }

    #[test]
    fn a_packet_that_closes_or_breaks_the_protocol_delivers_none_of_its_messages() {
        let now = Instant::from_millis(1);
        let msg = |channel, data| Frame::Message { kind: ChannelKind::Unreliable, channel, id: None, data };
        // Messages before a CLOSE in the same packet: only the close.
        let (mut c, mut s) = pair(21);
        let mut d = raw(&mut c, now, &frames(&[msg(0, b"a"), msg(0, b"b"), Frame::Close { code: 1, reason: b"" }]));
        s.handle_datagram(now, &mut d);
        let ev: Vec<_> = core::iter::from_fn(|| s.poll_event()).collect();
        assert_eq!(ev, [ConnEvent::Closed(CloseReason::Peer(1))]);
        // A message, then a frame that breaks the protocol: only the close,
        // while the events of earlier packets stay, in order.
        let (mut c, mut s) = pair(22);
        let mut d = raw(&mut c, now, &frames(&[msg(0, b"first")]));
        s.handle_datagram(now, &mut d);
        let bad = Frame::Message { kind: ChannelKind::ReliableOrdered, channel: 0, id: Some(0), data: b"x" };
        let mut d = raw(&mut c, now, &frames(&[msg(0, b"lost"), bad]));
        s.handle_datagram(now, &mut d);
        let ev: Vec<_> = core::iter::from_fn(|| s.poll_event()).collect();
        assert_eq!(
            ev,
            [
                ConnEvent::Message { channel: 0, data: b"first".to_vec() },
                ConnEvent::Closed(CloseReason::Local(close_code::PROTOCOL_VIOLATION)),
            ]
        );
    }

    #[test]
    fn oversize_unreliable_is_promoted_to_best_effort() {
        let big: Vec<u8> = (0..30_000).map(|i| i as u8).collect();
        let r = run(13, 0, &[(CH_UNRELIABLE, big.clone())], Duration::from_secs(10));
        assert_eq!(r.got[1], [(CH_BEST_EFFORT, big.clone())]);
        assert_eq!(r.delivered[0], [0]);
        // 18,512 bytes still go as 16 unreliable fragments on channel 0.
        let edge: Vec<u8> = (0..18_512).map(|i| (i * 3) as u8).collect();
        let r = run(14, 0, &[(CH_UNRELIABLE, edge.clone())], Duration::from_secs(10));
        assert_eq!(r.got[1], [(CH_UNRELIABLE, edge)]);
        assert_eq!(r.delivered[0], [0]);
    }

    #[test]
    fn stateless_reset_closes_once() {
        let (mut c, _) = pair(5);
        let token = [0x5A; TOKEN_LEN];
        c.send(Instant::ZERO, CH_RELIABLE, b"pending".to_vec()).expect("queued");
        c.set_reset_token(token);
        let mut rng = Rng::new(Seed::from_u64(1));
        let mut reset = [0u8; 64];
        let n = crate::mpgs2::reset::emit_reset(40, &token, &mut rng, &mut reset).expect("answers");
        // A datagram that fails to open but does not end in the token: ignored.
        let mut junk = reset;
        junk[n - 1] ^= 1;
        c.handle_datagram(Instant::ZERO, &mut junk[..n]);
        assert!(c.poll_event().is_none());
        c.handle_datagram(Instant::ZERO, &mut reset[..n]);
        let ev: Vec<_> = core::iter::from_fn(|| c.poll_event()).collect();
        assert_eq!(
            ev,
            [ConnEvent::Lost(0, LossReason::ConnectionClosed), ConnEvent::Closed(CloseReason::StatelessReset)]
        );
        assert!(c.is_closed());
        c.handle_datagram(Instant::ZERO, &mut reset[..n]);
        assert!(c.poll_event().is_none(), "exactly once");
    }

    /// The peer's `conn_recv_window` holds on the send side (§4.3): a server
    /// sending on both reliable channels to a client that advertises a
    /// connection window smaller than two channel windows never makes the
    /// client buffer more than it allows (no FLOW_VIOLATION), the messages
    /// that had to wait are counted, and everything is delivered.
    #[test]
    fn conn_recv_window_is_enforced_on_the_send_side() {
        let params = TransportParams {
            recv_window: Some(80_000),
            conn_recv_window: Some(100_000),
            max_message_size: Some(70_000),
            ..TransportParams::default()
        };
        let config = ConnConfig {
            recv_window: 80_000,
            conn_recv_window: 100_000,
            max_message_size: 70_000,
            ..Default::default()
        };
        let (mut c, mut s) = pair_with(31, params, config);
        assert_eq!(s.max_message_size(), 70_000);
        let now = Instant::ZERO;
        // Too large for the peer: refused with its limit, nothing queued.
        assert_eq!(s.try_send(now, CH_RELIABLE, vec![0; 70_001]), Err(SendRefused::TooLarge { max: 70_000 }));
        assert_eq!(s.try_send(now, 9, vec![0; 1]), Err(SendRefused::UnknownChannel));
        let msgs: Vec<(u8, Vec<u8>)> =
            (0..6u8).map(|i| ([CH_RELIABLE, CH_BEST_EFFORT][usize::from(i % 2)], vec![i; 60_000])).collect();
        for (ch, m) in &msgs {
            s.try_send(now, *ch, m.clone()).expect("queued");
        }
        let mut buf = [0u8; 1500];
        let mut t = now;
        let mut got = Vec::new();
        let mut max_used = 0;
        for _ in 0..100_000 {
            while let Some(n) = s.poll_transmit(t, &mut buf) {
                max_used = max_used.max(s.conn_window_used());
                c.handle_datagram(t + Duration::from_millis(10), &mut buf[..n]);
            }
            while let Some(n) = c.poll_transmit(t, &mut buf) {
                s.handle_datagram(t + Duration::from_millis(10), &mut buf[..n]);
            }
            while let Some(e) = c.poll_event() {
                assert!(!matches!(e, ConnEvent::Closed(_)), "{e:?}");
                if let ConnEvent::Message { data, .. } = e {
                    got.push(data);
                }
            }
            while s.poll_event().is_some() {}
            if got.len() == msgs.len() {
                break;
            }
            t += Duration::from_millis(1);
            c.handle_timeout(t);
            s.handle_timeout(t);
        }
        assert_eq!(got.len(), msgs.len(), "every message arrived");
        assert!(max_used <= 100_000, "{max_used} bytes counted against a 100,000-byte window");
        assert!(s.flow_blocked() >= 4, "blocked sends waited and were counted: {}", s.flow_blocked());
    }

    /// The endpoint's reassembly budget (§4.6): a packet that would start
    /// buffering more than the room left is discarded unrecorded (so not
    /// acknowledged), counted, and its frames arrive later in new packets.
    #[test]
    fn reassembly_budget_refuses_packets_unacknowledged() {
        let (mut c, mut s) = pair(33);
        let msg: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        c.send(Instant::ZERO, CH_RELIABLE, msg.clone()).expect("queued");
        let mut buf = [0u8; 1500];
        let mut t = Instant::ZERO;
        // First with 1,000 bytes of room: every fragment of the message is refused.
        let mut refused = 0;
        while let Some(n) = c.poll_transmit(t, &mut buf) {
            s.handle_datagram_within(t, &mut buf[..n], 1_000);
            refused += 1;
        }
        assert_eq!(s.budget_refused(), refused);
        assert_eq!(s.reassembly_bytes(), 0);
        assert!(s.poll_event().is_none());
        assert!(!s.acks.is_due(t + Duration::from_secs(1)), "nothing recorded, nothing to acknowledge");
        // Then with room: the retransmissions (new packets) deliver it.
        let mut got = None;
        for _ in 0..10_000 {
            t += Duration::from_millis(5);
            c.handle_timeout(t);
            s.handle_timeout(t);
            while let Some(n) = c.poll_transmit(t, &mut buf) {
                s.handle_datagram_within(t, &mut buf[..n], 1 << 20);
                assert!(s.reassembly_bytes() <= 10_000 + crate::mpgs2::recv::PARTIAL_OVERHEAD);
            }
            while let Some(n) = s.poll_transmit(t, &mut buf) {
                c.handle_datagram(t, &mut buf[..n]);
            }
            if let Some(ConnEvent::Message { data, .. }) = s.poll_event() {
                got = Some(data);
                break;
            }
        }
        assert_eq!(got, Some(msg));
        assert_eq!(s.reassembly_bytes(), 0);
    }

    /// While closing, CLOSE is repeated at most once per PTO, and at most 3
    /// times, however many packets the peer sends (§6.4, RFC 9000 §10.2.1).
    /// A PTO probe carries the oldest unacknowledged reliable frames
    /// (§4.1): a tail message whose packets were all lost arrives with the
    /// first probe, without waiting for an ACK of a PING to declare it lost,
    /// and still gets exactly one receipt.
    #[test]
    fn pto_probes_carry_the_oldest_unacked_reliable_data() {
        let (mut c, mut s) = pair(7);
        let mut buf = [0u8; 1500];
        let receipt = c.send(Instant::ZERO, CH_RELIABLE, b"tail".to_vec()).expect("queued");
        let mut lost = 0;
        while c.poll_transmit(Instant::ZERO, &mut buf).is_some() {
            lost += 1; // every datagram of the first flight is lost
        }
        assert!(lost >= 1);
        let t = c.poll_timeout().expect("the PTO is armed");
        c.handle_timeout(t);
        assert_eq!(c.rec.pto_count(), 1, "the PTO fired");
        let n = c.poll_transmit(t, &mut buf).expect("a probe");
        s.handle_datagram(t, &mut buf[..n]);
        let got: Vec<_> = core::iter::from_fn(|| s.poll_event()).collect();
        assert_eq!(got, [ConnEvent::Message { channel: CH_RELIABLE, data: b"tail".to_vec() }], "the first probe");
        // The server's ACK settles both copies: one receipt.
        let (mut t, mut receipts) = (t, Vec::new());
        while receipts.is_empty() {
            t = s.next_transmit(t).expect("an ACK is due").max(t);
            let n = s.poll_transmit(t, &mut buf).expect("the ACK");
            c.handle_datagram(t, &mut buf[..n]);
            receipts.extend(core::iter::from_fn(|| c.poll_event()));
        }
        assert_eq!(receipts, [ConnEvent::Delivered(receipt)]);
    }

    /// `hold_open_until`: the idle timeout does not end a client before its
    /// connect deadline while nothing from the server has opened, and
    /// applies alone once something has.
    #[test]
    fn the_idle_timeout_waits_for_the_connect_deadline_until_the_server_answers() {
        let mut buf = [0u8; 1500];
        let (mut c, _) = pair(8);
        c.hold_open_until(Instant::from_secs(20));
        let mut t = Instant::ZERO;
        while !c.is_closed() {
            while c.poll_transmit(t, &mut buf).is_some() {}
            t = c.poll_timeout().expect("timer");
            c.handle_timeout(t);
        }
        assert_eq!(t, Instant::from_secs(20), "not at the 5 s idle timeout");
        // A packet from the server opens at 1 s: the idle timeout alone.
        let (mut c, mut s) = pair(9);
        c.hold_open_until(Instant::from_secs(20));
        s.ping();
        let n = s.poll_transmit(Instant::from_secs(1), &mut buf).expect("a PING");
        c.handle_datagram(Instant::from_secs(1), &mut buf[..n]);
        let mut t = Instant::from_secs(1);
        while !c.is_closed() {
            while c.poll_transmit(t, &mut buf).is_some() {}
            t = c.poll_timeout().expect("timer");
            c.handle_timeout(t);
        }
        assert_eq!(t, Instant::from_secs(6));
    }

    #[test]
    fn close_repeats_at_most_once_per_pto() {
        let (mut c, mut s) = pair(32);
        let mut buf = [0u8; 1500];
        let mut t = Instant::from_millis(1);
        s.close(t, close_code::NORMAL);
        assert!(s.poll_transmit(t, &mut buf).is_some(), "the first CLOSE");
        let pto = s.rec.pto();
        let mut repeats = 0;
        // 20 packets per PTO for 3 PTOs (the closing period).
        let step = pto / 20;
        while !s.is_closed() {
            let mut d = raw(&mut c, t, &frames(&[Frame::Ping]));
            s.handle_datagram(t, &mut d);
            while s.poll_transmit(t, &mut buf).is_some() {
                repeats += 1;
            }
            t += step;
            s.handle_timeout(t);
        }
        // At 20 packets per PTO over 3 PTOs: one repeat per PTO after the
        // first CLOSE, so at most 3 (never one per packet).
        assert!((2..=3).contains(&repeats), "{repeats} repeats");
    }

    /// Found by the `mpgs2_conn` fuzz target: a stateless reset that arrives
    /// while the connection is closing reported a second `Closed`.
    #[test]
    fn stateless_reset_while_closing_closes_once() {
        let (mut c, _) = pair(6);
        let token = [0x5B; TOKEN_LEN];
        c.set_reset_token(token);
        let now = Instant::from_millis(3);
        c.send(now, CH_RELIABLE, b"pending".to_vec()).expect("queued");
        c.close(now, close_code::PROTOCOL_VIOLATION);
        let ev: Vec<_> = core::iter::from_fn(|| c.poll_event()).collect();
        assert_eq!(ev, [ConnEvent::Lost(0, LossReason::ConnectionClosed), ConnEvent::Closed(CloseReason::Local(2))]);
        let mut reset = [0u8; 64];
        let n =
            crate::mpgs2::reset::emit_reset(40, &token, &mut Rng::new(Seed::from_u64(2)), &mut reset).expect("answers");
        c.handle_datagram(now, &mut reset[..n]);
        assert!(c.poll_event().is_none(), "exactly one Closed");
        assert!(c.is_closed(), "the reset ends the closing period");
        assert_eq!(c.poll_timeout(), None);
    }

    /// Found by the `mpgs2_conn` fuzz target: closing while an unreliable
    /// fragment group was being sent reported its receipt `Lost` twice.
    #[test]
    fn close_during_a_fragment_group_loses_it_once() {
        let (_, mut s) = pair(7);
        let now = Instant::from_millis(1);
        let mut buf = [0u8; 1500];
        let r = s.send(now, CH_UNRELIABLE, vec![7; 1280]).expect("two unreliable fragments");
        let _ = s.poll_transmit(now, &mut buf);
        assert!(s.group.is_some(), "the group is being sent");
        s.close(now, close_code::NORMAL);
        let ev: Vec<_> = core::iter::from_fn(|| s.poll_event()).collect();
        assert_eq!(ev, [ConnEvent::Lost(r, LossReason::ConnectionClosed), ConnEvent::Closed(CloseReason::Local(0))]);
    }

    /// A pair whose client sends on `extra` channels besides the defaults.
    fn pair_channels(seed: u64, extra: &[ChannelConfig]) -> (Connection, Connection) {
        let mut cfg = ConnConfig::default();
        cfg.channels.extend_from_slice(extra);
        pair_with(seed, TransportParams::default(), cfg)
    }

    /// Feeds every datagram `from` has for `now` to `to`; the messages `to`
    /// delivered.
    fn pump(from: &mut Connection, to: &mut Connection, now: Instant) -> Vec<(u8, Vec<u8>)> {
        let mut buf = [0u8; 1500];
        for _ in 0..10_000 {
            match from.poll_transmit(now, &mut buf) {
                Some(n) => {
                    to.handle_datagram(now, &mut buf[..n]);
                }
                // A datagram may still be due now (a fragment group that
                // started in a packet of other frames).
                None if from.next_transmit(now).is_some_and(|t| t <= now) => {
                    if from.poll_transmit(now, &mut buf).map(|n| to.handle_datagram(now, &mut buf[..n])).is_none() {
                        break;
                    }
                }
                None => break,
            }
        }
        core::iter::from_fn(|| to.poll_event())
            .filter_map(|e| match e {
                ConnEvent::Message { channel, data } => Some((channel, data)),
                _ => None,
            })
            .collect()
    }

    /// §4.4: a priority-0 message leaves in the very next packet, however
    /// much a lower priority has queued, and the lower one gets the rest.
    #[test]
    fn priority_zero_leaves_in_the_next_packet() {
        let bulk = ChannelConfig::new(3, ChannelKind::ReliableUnordered).with_priority(6);
        let (mut c, mut s) = pair_channels(31, &[bulk]);
        let now = Instant::from_millis(1);
        for k in 0..40u8 {
            c.send(now, 3, vec![k; 3000]).expect("queued");
        }
        let mut buf = [0u8; 1500];
        for _ in 0..3 {
            let n = c.poll_transmit(now, &mut buf).expect("bulk within the initial window");
            s.handle_datagram(now, &mut buf[..n]);
        }
        c.send(now, CH_RELIABLE, b"urgent".to_vec()).expect("queued");
        let n = c.poll_transmit(now, &mut buf).expect("the window has room");
        s.handle_datagram(now, &mut buf[..n]);
        let got: Vec<_> = core::iter::from_fn(|| s.poll_event()).collect();
        assert!(got.contains(&ConnEvent::Message { channel: CH_RELIABLE, data: b"urgent".to_vec() }), "{got:?}");
    }

    /// A sequenced channel: a newer queued message supersedes the unsent
    /// older one (`Lost(Superseded)`), ids are given at transmission, and
    /// the receiver delivers only rising ids.
    #[test]
    fn sequenced_send_side() {
        let seq = ChannelConfig::new(3, ChannelKind::UnreliableSequenced);
        let (mut c, mut s) = pair_channels(32, &[seq]);
        let now = Instant::from_millis(1);
        let a = c.send(now, 3, b"a".to_vec()).expect("queued");
        let b = c.send(now, 3, b"b".to_vec()).expect("queued");
        assert_eq!(c.poll_event(), Some(ConnEvent::Lost(a, LossReason::Superseded)));
        assert_eq!(pump(&mut c, &mut s, now), [(3, b"b".to_vec())]);
        // A big one goes as a fragment group, whole, with the next id.
        let big: Vec<u8> = (0..4000).map(|i| i as u8).collect();
        c.send(now, 3, big.clone()).expect("queued");
        let got = pump(&mut c, &mut s, now);
        assert!(got.len() == 1 && got[0] == (3, big), "{} messages", got.len());
        let _ = b;
    }

    /// Hostile frames on channels: an ordered id beyond the window and an
    /// unordered id too far ahead end the connection with FLOW_VIOLATION;
    /// overlapping and repeated fragments deliver the message once.
    #[test]
    fn hostile_channel_frames() {
        let now = Instant::from_millis(1);
        for (kind, id) in [(ChannelKind::ReliableOrdered, 8192u16), (ChannelKind::ReliableUnordered, 16384)] {
            let (mut c, mut s) = pair(33);
            let mut d = raw(&mut c, now, &frames(&[Frame::Message { kind, channel: 7, id: Some(id), data: b"x" }]));
            s.handle_datagram(now, &mut d);
            assert_eq!(s.poll_event(), Some(ConnEvent::Closed(CloseReason::Local(close_code::FLOW_VIOLATION))));
        }
        let (mut c, mut s) = pair(34);
        let f = |offset: u64, data: &'static [u8]| Frame::Fragment {
            kind: ChannelKind::ReliableOrdered,
            channel: 8,
            id: 0,
            total_len: 6,
            offset,
            data,
        };
        for fs in [&[f(0, b"abc"), f(2, b"cd")][..], &[f(1, b"bcd"), f(0, b"ab")], &[f(3, b"def"), f(0, b"abcdef")]] {
            let mut d = raw(&mut c, now, &frames(fs));
            s.handle_datagram(now, &mut d);
        }
        let ev: Vec<_> = core::iter::from_fn(|| s.poll_event()).collect();
        assert_eq!(ev, [ConnEvent::Message { channel: 8, data: b"abcdef".to_vec() }], "once, intact");
        // The same message again, whole: a duplicate below E.
        let mut d = raw(&mut c, now, &frames(&[f(0, b"abcdef")]));
        s.handle_datagram(now, &mut d);
        assert!(s.poll_event().is_none());
        // A total_len that differs from an earlier frame's: PROTOCOL_VIOLATION.
        let g = |total_len: u64| Frame::Fragment {
            kind: ChannelKind::ReliableOrdered,
            channel: 8,
            id: 1,
            total_len,
            offset: 0,
            data: b"zz",
        };
        let mut d = raw(&mut c, now, &frames(&[g(10), g(12)]));
        s.handle_datagram(now, &mut d);
        assert_eq!(s.poll_event(), Some(ConnEvent::Closed(CloseReason::Local(close_code::PROTOCOL_VIOLATION))));
    }

    /// §4.6: while the receive queue is over its bound, packets with
    /// reliable frames are refused unrecorded (so resent later), packets
    /// without them are processed; once drained, the message arrives.
    #[test]
    fn a_full_receive_queue_refuses_reliable_packets() {
        let (mut c, mut s) = pair(35);
        let now = Instant::from_millis(1);
        s.set_recv_blocked(true);
        c.send(now, CH_RELIABLE, b"later".to_vec()).expect("queued");
        assert!(pump(&mut c, &mut s, now).is_empty());
        assert_eq!(s.recv_refused(), 1);
        c.send(now, CH_UNRELIABLE, b"now".to_vec()).expect("queued");
        let t = now + Duration::from_millis(30);
        assert_eq!(pump(&mut c, &mut s, t), [(CH_UNRELIABLE, b"now".to_vec())], "unreliable-only packets pass");
        s.set_recv_blocked(false);
        // The reliable message comes again (loss detection or PTO).
        let mut t = t;
        let mut got = Vec::new();
        while got.is_empty() && t < Instant::from_secs(3) {
            t = [c.poll_timeout(), s.poll_timeout()].into_iter().flatten().min().unwrap_or(t).max(t);
            c.handle_timeout(t);
            s.handle_timeout(t);
            got = pump(&mut c, &mut s, t);
            let _ = pump(&mut s, &mut c, t);
            t += Duration::from_millis(1);
        }
        assert_eq!(got, [(CH_RELIABLE, b"later".to_vec())]);
    }
}
