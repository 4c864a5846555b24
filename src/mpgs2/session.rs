//! MPGS/2 behind the endpoint's [`crate::session::Session`] interface: the
//! handshake phases around [`super::conn::Connection`] and the mapping of
//! its receipts and events onto the crate's [`Event`]s.
//!
//! * Client: sends its HELLO2 (resent byte-identical at 250 ms doubling to
//!   1 s, §2.1), follows one HELLO_RETRY, ends the attempt on REJECT, and
//!   on a SERVER_HELLO that verifies against either hello variant derives
//!   the keys, reports `Connected` and sends a PING at once (the server's
//!   key confirmation).
//! * Server: a pending entry (§2.5): the stored SERVER_HELLO, sent again
//!   for every byte-identical resend the endpoint matches to it, and the
//!   connection, silent until the first 1-RTT packet opens (key
//!   confirmation, §2.1); then `Connected`. The entry lives 5 s.
//!
//! The connection's datagrams are sealed and opened by `conn` (and its
//! `protect`); this layer only moves bytes and events.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::net::SocketAddr;

use super::conn::{self, Arrival, CH_BEST_EFFORT, CH_UNRELIABLE, CloseReason, ConnConfig, ConnEvent};
use super::handshake::{ClientHandshake, ClientOffer, Established, HandshakeError};
use super::hello::{LongType, SERVER_HELLO_LEN};
use super::protect::OpenError;
use super::reset::TOKEN_LEN;
use super::tlv::TransportParams;
use super::{RANDOM_LEN, Side};
use crate::budget::Room;
use crate::channel::{ChannelConfig, ChannelMetrics, DelayHistogram};
use crate::config::{EndpointConfig, MAX_DATAGRAM};
use crate::error::SendError;
use crate::event::{
    ConnectFailure, ConnectionId, Delivery, DisconnectReason, Event, LossReason, MessageId, SendOptions,
};
use crate::keys::PublicKey;
use crate::rng::Rng;
use crate::state::{ConnectionState, Role};
use crate::stats::{ConnectionMetrics, DropReason, EndpointEvent};
use crate::time::{Duration, Instant};

/// How long a client that may fall back to MPGS/1 waits for any MPGS/2
/// reply first (§2.9).
const FALLBACK_AFTER: Duration = Duration::from_secs(1);
/// First resend of a HELLO2 (§2.1).
const HELLO_RESEND_FIRST: Duration = Duration::from_millis(250);
/// Longest interval between HELLO2 resends (§2.1).
const HELLO_RESEND_MAX: Duration = Duration::from_secs(1);
/// How long a server keeps a pending entry (§2.5).
pub(crate) const PENDING_LIFETIME: Duration = Duration::from_secs(5);
/// Versions a client offers (stage 1 speaks only 2).
pub(crate) const VERSIONS: [u8; 1] = [super::VERSION];
/// Suites in preference order: AES-128-GCM first (§2.9).
pub(crate) const SUITES: [u8; 2] = [super::tlv::SUITE_AES128, super::tlv::SUITE_AES256];
/// Longest unpadded SERVER_HELLO a pending entry stores (230 B with
/// identity kind 0 and all seven parameters, §2.5).
const STORED_REPLY_MAX: usize = 400;

/// Heap bytes of one boxed MPGS/2 connection (for `memory_bounds`).
pub(crate) const CONNECTION_SIZE: usize = core::mem::size_of::<Connection>();
/// Heap bytes per sending channel, at the session and in the connection's
/// table, with a delay histogram (for `memory_bounds`).
pub(crate) const CHANNEL_SIZE: usize =
    core::mem::size_of::<ChanStats>() + core::mem::size_of::<super::channels::TxChannel>() + 33 * 4 * 4 + 64;
/// Heap bytes of the emptied message buffers a sending channel keeps for
/// reuse (a reliable channel's own; the unreliable ones share the
/// connection's, bounded the same): send side, for `memory_bounds`.
pub(crate) const CHANNEL_SPARE_SIZE: usize =
    super::send::SPARE_BUFFERS * (super::send::SPARE_CAPACITY + core::mem::size_of::<Vec<u8>>());
/// The `Delivery::Reliable` channel: channels up to it take the
/// connection's default for receipts.
const CH_RELIABLE_ID: u8 = conn::CH_RELIABLE;
/// Heap bytes per message accepted by `send` besides its data: its
/// `outstanding` entry, its sender record with range lists, and the slack
/// of a reused buffer (which also holds up to twice the data: within the
/// send arena's 4 × `send_queue_bytes`).
pub(crate) const MESSAGE_OVERHEAD: usize =
    2 * (8 + core::mem::size_of::<Outstanding>()) + 160 + super::send::SPARE_SLACK;

/// What identifies a pending entry (§2.5): the source address, the
/// `client_random` and SHA-256 of the HELLO2 message data.
pub(crate) type PendingKey = (SocketAddr, [u8; RANDOM_LEN], [u8; 32]);

/// The transport parameters this endpoint advertises and the connection's
/// local settings, from the endpoint configuration.
pub(crate) fn local_params(cfg: &EndpointConfig) -> (TransportParams, ConnConfig) {
    let idle_ms = u32::try_from(cfg.connection_timeout.as_millis()).unwrap_or(u32::MAX);
    let mms = u32::try_from(cfg.max_message_size).unwrap_or(u32::MAX);
    // EndpointConfig::max_ack_delay, in whole ms as the parameter carries it
    // (1..=255; Decision in MPGS2.md §4.1).
    let mad_ms = cfg.max_ack_delay.as_micros().div_ceil(1000).clamp(1, 255) as u8;
    // The windows fit the reassembly budget of one connection, so a peer
    // that keeps to them is never refused by it for reliable data alone;
    // `validate` keeps `max_reassembly_bytes ≥ max_message_size`, so one
    // maximal message always fits both (§4.5 max_message_size(ch)).
    let budget = u32::try_from(cfg.max_reassembly_bytes).unwrap_or(u32::MAX);
    let conn_recv_window = (4u32 << 20).min(budget).max(mms);
    let recv_window = (1u32 << 20).max(mms).min(conn_recv_window);
    let conn = ConnConfig {
        max_message_size: u64::from(mms),
        idle_timeout_ms: idle_ms,
        max_ack_delay: Duration::from_millis(u64::from(mad_ms)),
        recv_window: u64::from(recv_window),
        conn_recv_window: u64::from(conn_recv_window),
        channels: ChannelConfig::DEFAULTS.iter().chain(cfg.channels.iter()).cloned().collect(),
    };
    let params = TransportParams {
        idle_timeout_ms: Some(idle_ms),
        max_message_size: Some(mms),
        max_ack_delay_ms: Some(mad_ms),
        recv_window: Some(recv_window),
        conn_recv_window: Some(conn_recv_window),
        ..TransportParams::DEFAULTS
    };
    (params, conn)
}

/// Whether an MPGS/1 SERVER_HELLO (header `hdr`) is signed by `pinned` and
/// carries MPGS/2's downgrade sentinel in its salt (§2.9).
fn has_sentinel(hdr: &crate::mpgs1::wire::Header, datagram: &[u8], pinned: &PublicKey) -> bool {
    use crate::mpgs1::wire::handshake::{parse_server_blob, parse_server_hello};
    let Ok(msg) = crate::mpgs1::crc_message(hdr, datagram) else { return false };
    let Ok(sh) = parse_server_hello(msg.data) else { return false };
    let Ok(blob) = parse_server_blob(sh.blob) else { return false };
    let n = super::DOWNGRADE_SENTINEL.len();
    blob.salt[blob.salt.len() - n..] == super::DOWNGRADE_SENTINEL && pinned.verify(sh.blob, sh.signature)
}

/// The public state of a connection whose keys are confirmed.
#[inline]
fn open_state(c: &conn::Connection) -> ConnectionState {
    if c.is_open() {
        ConnectionState::Connected
    } else if c.is_closed() {
        ConnectionState::Closed
    } else {
        ConnectionState::Closing
    }
}

/// A connection's reassembly bytes.
#[inline]
fn conn_reassembly(c: &conn::Connection) -> usize {
    usize::try_from(c.reassembly_bytes()).unwrap_or(usize::MAX)
}

/// A client's attempt before its keys exist.
#[cfg_attr(feature = "_fuzzing", derive(Clone))]
struct Hello {
    hs: ClientHandshake,
    pinned: PublicKey,
    next_send: Instant,
    interval: Duration,
    deadline: Instant,
    /// Sends of the current variant, and when it was first sent.
    sends: u32,
    first_sent: Instant,
    /// A SERVER_HELLO failed the signature or identity check.
    bad_signature: bool,
    rng: Rng,
    /// Any MPGS/2 reply (HELLO_RETRY, REJECT or SERVER_HELLO) arrived.
    replied: bool,
    /// When to fall back to MPGS/1 if no MPGS/2 reply came by then
    /// (`allow_v1_fallback`, §2.9); `None` once fallen back or not allowed.
    fallback_at: Option<Instant>,
    /// The MPGS/1 attempt of a fallback, while it handshakes (no HELLO2 is
    /// sent meanwhile, §2.2).
    v1: Option<Box<crate::mpgs1::Connection>>,
    /// A signed MPGS/1 SERVER_HELLO carried the downgrade sentinel (§2.9).
    downgrade: bool,
}

/// A server's pending entry.
#[cfg_attr(feature = "_fuzzing", derive(Clone))]
struct Pending {
    reply: heapless::Vec<u8, STORED_REPLY_MAX>,
    due: bool,
    sends: u32,
    first_sent: Instant,
    expires: Instant,
}

#[cfg_attr(feature = "_fuzzing", derive(Clone))]
#[allow(clippy::large_enum_variant, reason = "one per connection; a box would cost an allocation per pending entry")]
// A plain tag byte: the phase is matched several times per datagram, and a
// tag hidden in a niche of `Pending` costs a decode at every match.
#[repr(u8)]
enum Phase {
    Hello(Box<Hello>),
    Pending(Pending),
    /// The keys are confirmed (server) or derived (client).
    Open,
    /// The attempt failed or the entry expired, before any connection.
    Failed,
}

/// The connection, once there is one: an `Option` with a plain tag byte.
/// `Option<conn::Connection>` keeps its tag in a 16-byte niche of the
/// connection, compared whole at every look, and the session looks at it
/// a score of times per datagram.
#[cfg_attr(feature = "_fuzzing", derive(Clone))]
#[allow(clippy::large_enum_variant, reason = "the one connection of this session, inline as before")]
#[repr(u8)]
enum Inner {
    Absent,
    Present(conn::Connection),
}

impl Inner {
    #[inline]
    fn get(&self) -> Option<&conn::Connection> {
        match self {
            Inner::Present(c) => Some(c),
            Inner::Absent => None,
        }
    }

    #[inline]
    fn get_mut(&mut self) -> Option<&mut conn::Connection> {
        match self {
            Inner::Present(c) => Some(c),
            Inner::Absent => None,
        }
    }
}

/// A message accepted by `send`, until its outcome is known.
#[derive(Clone, Copy, Debug)]
struct Outstanding {
    id: MessageId,
    len: usize,
    report: bool,
    /// Index in `Connection::chan`.
    chan: u8,
    sent: Instant,
}

/// Outstanding messages by the connection's receipt, which increases by
/// one per accepted message: a window from the oldest receipt not yet
/// decided, so accepting and deciding a message cost no tree node.
#[cfg_attr(feature = "_fuzzing", derive(Clone))]
#[derive(Debug, Default)]
struct Window {
    base: u64,
    q: VecDeque<Option<Outstanding>>,
    live: usize,
}

impl Window {
    fn insert(&mut self, receipt: u64, o: Outstanding) {
        if self.q.is_empty() {
            self.base = receipt;
        }
        // Receipts are handed out in increasing order; a gap (a receipt
        // never given to this layer) stays a hole.
        let Some(i) = receipt.checked_sub(self.base).and_then(|i| usize::try_from(i).ok()) else { return };
        while self.q.len() < i {
            self.q.push_back(None);
        }
        if i == self.q.len() {
            self.q.push_back(Some(o));
            self.live += 1;
        }
    }

    fn remove(&mut self, receipt: u64) -> Option<Outstanding> {
        let i = usize::try_from(receipt.checked_sub(self.base)?).ok()?;
        let o = self.q.get_mut(i)?.take()?;
        self.live -= 1;
        while self.q.front().is_some_and(Option::is_none) {
            self.q.pop_front();
            self.base += 1;
        }
        Some(o)
    }

    fn len(&self) -> usize {
        self.live
    }
}

/// One sending channel's accounting at the session: its queue limit, what
/// is queued, and its counters.
#[cfg_attr(feature = "_fuzzing", derive(Clone))]
#[derive(Debug)]
struct ChanStats {
    id: u8,
    queue_limit: usize,
    receipts: bool,
    queued: usize,
    /// A send was refused by the queue limit: `Writable` once below half.
    full: bool,
    m: ChannelMetrics,
    delays: Option<DelayHistogram>,
}

/// One MPGS/2 connection as the endpoint sees it.
#[cfg_attr(feature = "_fuzzing", derive(Clone))]
pub(crate) struct Connection {
    id: ConnectionId,
    role: Role,
    remote: SocketAddr,
    phase: Phase,
    conn: Inner,
    conn_config: ConnConfig,
    events: VecDeque<Event>,
    endpoint_events: VecDeque<EndpointEvent>,
    metrics: ConnectionMetrics,
    reports: bool,
    /// Client: messages accepted before the keys exist, sent once they do.
    early: VecDeque<(u8, Vec<u8>, Outstanding)>,
    /// By the connection's receipt.
    outstanding: Window,
    /// The sending channels' accounting, and channel id → index.
    chan: Vec<ChanStats>,
    chan_at: [u8; 64],
    /// Channels (bits) refused by a connection-wide send limit: `Writable`
    /// once the connection is below half of every limit.
    conn_full: u64,
    /// Bytes of `Message` events handed to the endpoint and not yet taken
    /// by the application (§4.6).
    undrained: usize,
    pending_bytes: usize,
    next_id: u64,
    queue_messages: usize,
    queue_bytes: usize,
    connected: bool,
    /// [`Connection::state`], brought up to date before every call that can
    /// change the phase or the connection's state returns (the endpoint
    /// asks before and after every call, twice per datagram). Code inside
    /// such a call asks [`Connection::current_state`] instead.
    state: ConnectionState,
    /// [`Connection::reassembly_bytes`], kept current the same way: only
    /// an arriving datagram and the timers change it.
    reassembly: usize,
    /// `poll_transmit` found nothing to send at this instant, and no input
    /// came since: a send due by then waits for one.
    idle_at: Option<Instant>,
    now: Instant,
    server_key: Option<PublicKey>,
    /// Server: the key of the pending entry it was made from.
    pending_key: Option<PendingKey>,
}

impl core::fmt::Debug for Connection {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("mpgs2::Connection")
            .field("id", &self.id)
            .field("role", &self.role)
            .field("remote", &self.remote)
            .field("state", &self.current_state())
            .finish_non_exhaustive()
    }
}

impl Connection {
    fn base(id: ConnectionId, role: Role, remote: SocketAddr, now: Instant, cfg: &EndpointConfig) -> Connection {
        let mut c = Connection::bare(id, role, remote, now, cfg);
        for ch in ChannelConfig::DEFAULTS.iter().chain(cfg.channels.iter()) {
            if let Some(slot) = c.chan_at.get_mut(usize::from(ch.id)) {
                *slot = c.chan.len() as u8;
                c.chan.push(ChanStats {
                    id: ch.id,
                    queue_limit: ch.queue_limit,
                    receipts: ch.receipts,
                    queued: 0,
                    full: false,
                    m: ChannelMetrics::default(),
                    delays: None,
                });
            }
        }
        c
    }

    fn bare(id: ConnectionId, role: Role, remote: SocketAddr, now: Instant, cfg: &EndpointConfig) -> Connection {
        Connection {
            id,
            role,
            remote,
            phase: Phase::Failed,
            conn: Inner::Absent,
            conn_config: local_params(cfg).1,
            events: VecDeque::new(),
            endpoint_events: VecDeque::new(),
            metrics: ConnectionMetrics::default(),
            reports: true,
            early: VecDeque::new(),
            outstanding: Window::default(),
            chan: Vec::new(),
            chan_at: [u8::MAX; 64],
            conn_full: 0,
            undrained: 0,
            pending_bytes: 0,
            next_id: 0,
            queue_messages: cfg.send_queue_messages,
            queue_bytes: cfg.send_queue_bytes,
            connected: false,
            state: ConnectionState::Closed,
            reassembly: 0,
            idle_at: None,
            now,
            server_key: None,
            pending_key: None,
        }
    }

    /// A client's attempt to reach `remote`, whose SERVER_HELLO must be
    /// signed by `pinned`. `Err(OfferTooLarge)` if the offer does not fit a
    /// HELLO2 (the only way building the first hello can fail).
    pub(crate) fn client(
        id: ConnectionId,
        remote: SocketAddr,
        now: Instant,
        cfg: &EndpointConfig,
        mut rng: Rng,
        pinned: PublicKey,
    ) -> Result<Connection, crate::error::ConnectError> {
        let (params, _) = local_params(cfg);
        let offer =
            ClientOffer { protocol_id: cfg.protocol_id, versions: &VERSIONS, suites: &SUITES, recv_cid: None, params };
        // `ClientHandshake::new` fails only with `Malformed`: the offer
        // does not fit a HELLO2 (it parses no reply, so no other error).
        let hs = ClientHandshake::new(&offer, &mut rng).map_err(|_| crate::error::ConnectError::OfferTooLarge)?;
        let mut c = Connection::base(id, Role::Client, remote, now, cfg);
        c.phase = Phase::Hello(Box::new(Hello {
            hs,
            pinned,
            next_send: now,
            interval: HELLO_RESEND_FIRST,
            deadline: now + cfg.connect_timeout,
            sends: 0,
            first_sent: now,
            bad_signature: false,
            rng,
            replied: false,
            fallback_at: cfg.allow_v1_fallback.then(|| now + FALLBACK_AFTER),
            v1: None,
            downgrade: false,
        }));
        c.refresh();
        Ok(c)
    }

    /// A server's pending entry for an accepted HELLO2: `server_hello` is
    /// the padded reply (sent at once), `token` the stateless reset token
    /// of its connection id (the endpoint's table routes that id).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn server(
        id: ConnectionId,
        remote: SocketAddr,
        now: Instant,
        cfg: &EndpointConfig,
        est: Established,
        server_hello: &[u8],
        key: PendingKey,
        token: [u8; TOKEN_LEN],
    ) -> Connection {
        let mut c = Connection::base(id, Role::Server, remote, now, cfg);
        c.pending_key = Some(key);
        let mut inner = conn::Connection::new(Side::Server, est, c.conn_config.clone(), now);
        inner.send_reset_token(token);
        c.conn = Inner::Present(inner);
        // The unpadded reply: padding is all zero (§2.5), written again on send.
        let end = server_hello.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        let reply = heapless::Vec::from_slice(&server_hello[..end]).unwrap_or_default();
        // As long as MPGS/1 gives a half-open handshake, and never less
        // than the spec's 5 s (MPGS2.md §2.5).
        let expires = now + PENDING_LIFETIME.max(cfg.handshake_timeout);
        c.phase = Phase::Pending(Pending { reply, due: true, sends: 0, first_sent: now, expires });
        c.refresh();
        c
    }

    /// Server: the key of the pending entry this connection was made from.
    pub(crate) fn pending_key(&self) -> Option<&PendingKey> {
        self.pending_key.as_ref()
    }

    /// Server, pending: a byte-identical HELLO2 resend arrived; answer it
    /// with the stored SERVER_HELLO (no new ECDH). False once confirmed.
    pub(crate) fn resend_reply(&mut self) -> bool {
        match &mut self.phase {
            Phase::Pending(p) => {
                p.due = true;
                self.idle_at = None;
                true
            }
            _ => false,
        }
    }

    pub(crate) fn remote(&self) -> SocketAddr {
        self.remote
    }

    pub(crate) fn role(&self) -> Role {
        self.role
    }

    /// The public state, as of the end of the last call (a field: see
    /// `state` above).
    #[inline]
    pub(crate) fn state(&self) -> ConnectionState {
        debug_assert_eq!(self.state, self.current_state(), "the cached state is stale");
        self.state
    }

    /// The public state, from the phase and the connection.
    fn current_state(&self) -> ConnectionState {
        match (&self.phase, self.conn.get()) {
            (Phase::Hello(_) | Phase::Pending(_), _) => ConnectionState::Connecting,
            (Phase::Failed, _) | (Phase::Open, None) => ConnectionState::Closed,
            (Phase::Open, Some(c)) => open_state(c),
        }
    }

    /// After an input that may have changed the phase, the connection or
    /// its state (the hot paths update the cached fields themselves).
    fn refresh(&mut self) {
        self.state = self.current_state();
        self.reassembly = self.current_reassembly();
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.connected
    }

    #[inline]
    pub(crate) fn is_closed(&self) -> bool {
        self.state() == ConnectionState::Closed
    }

    /// Bytes held for reassembly (buffered reliable messages at their whole
    /// length, unreliable partials), booked into the endpoint's reassembly
    /// budget as MPGS/1's are.
    #[inline]
    pub(crate) fn reassembly_bytes(&self) -> usize {
        debug_assert_eq!(self.reassembly, self.current_reassembly(), "the cached reassembly bytes are stale");
        self.reassembly
    }

    /// The reassembly bytes, from the connection.
    fn current_reassembly(&self) -> usize {
        self.conn.get().map_or(0, conn_reassembly)
    }

    pub(crate) fn token(&self) -> Option<u32> {
        None
    }

    pub(crate) fn server_key(&self) -> Option<&PublicKey> {
        self.server_key.as_ref()
    }

    pub(crate) fn metrics(&self) -> &ConnectionMetrics {
        &self.metrics
    }

    pub(crate) fn pending_messages(&self) -> usize {
        self.outstanding.len() + self.early.len()
    }

    /// The application took a `Message` event of `len` bytes of this
    /// connection from the endpoint (§4.6).
    pub(crate) fn drained(&mut self, len: usize) {
        self.undrained = self.undrained.saturating_sub(len);
    }

    /// Channel `channel`'s metrics, if it is a sending channel here.
    pub(crate) fn channel_metrics(&self, channel: u8) -> Option<ChannelMetrics> {
        let s = self.chan.get(usize::from(*self.chan_at.get(usize::from(channel))?))?;
        let mut m = s.m;
        m.queued_bytes = s.queued;
        if let Some((in_flight, promoted)) = self.conn.get().and_then(|c| c.channel_state(channel)) {
            m.in_flight_bytes = usize::try_from(in_flight).unwrap_or(usize::MAX);
            m.promoted = promoted;
        }
        if let Some(h) = &s.delays {
            m.delay_mean = h.mean();
            m.delay_p50 = h.quantile(500);
            m.delay_p99 = h.quantile(990);
        }
        Some(m)
    }

    /// `max_message_size(ch)` of §4.5 once the peer's limits are known.
    pub(crate) fn max_message_size(&self, channel: u8) -> Option<usize> {
        let m = self.conn.get()?.max_message_size_on(channel)?;
        Some(usize::try_from(m).unwrap_or(usize::MAX))
    }

    /// `max_unfragmented(ch)` of §4.5 once the connection exists.
    pub(crate) fn max_unfragmented(&self) -> Option<usize> {
        self.conn.get().map(conn::Connection::max_unfragmented)
    }

    pub(crate) fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    pub(crate) fn reports_outcomes(&self) -> bool {
        self.reports
    }

    pub(crate) fn set_outcome_reports(&mut self, on: bool) {
        self.reports = on;
    }

    pub(crate) fn events(&mut self) -> &mut VecDeque<Event> {
        &mut self.events
    }

    pub(crate) fn endpoint_events(&mut self) -> &mut VecDeque<EndpointEvent> {
        &mut self.endpoint_events
    }

    fn input(&mut self, now: Instant) {
        self.idle_at = None;
        if now > self.now {
            self.now = now;
        }
    }

    /// A datagram routed to this connection (a long header at a client, a
    /// short header on either side).
    pub(crate) fn handle_datagram(
        &mut self,
        now: Instant,
        datagram: &mut [u8],
        cfg: &EndpointConfig,
        room: Room,
    ) -> Result<(), DropReason> {
        self.input(now);
        let first = *datagram.first().ok_or(DropReason::Malformed)?;
        let long = first >= 0xC0;
        let r = match (&mut self.phase, long) {
            (Phase::Hello(_), true) => {
                let r = self.on_long(now, datagram);
                self.refresh();
                r
            }
            (Phase::Hello(_), false) | (Phase::Pending(_) | Phase::Open | Phase::Failed, true) => {
                Err(DropReason::Unexpected)
            }
            (phase @ (Phase::Pending(_) | Phase::Open), false) => {
                let open = matches!(phase, Phase::Open);
                self.on_short(now, datagram, cfg, room, open)
            }
            (Phase::Failed, false) => Err(DropReason::Unexpected),
        };
        // `on_short` and `on_long` updated the state; moving the events
        // changes neither the phase nor the connection.
        self.drain();
        r
    }

    /// An MPGS/1 datagram from the server: only a fallback attempt (§2.9)
    /// takes one. A SERVER_HELLO that verifies with the pinned key and
    /// carries the downgrade sentinel ends the MPGS/1 attempt before any
    /// CHALLENGE_RESP and brings back the HELLO2 resends; anything else goes
    /// to the MPGS/1 attempt.
    pub(crate) fn handle_v1_datagram(
        &mut self,
        now: Instant,
        hdr: &crate::mpgs1::wire::Header,
        datagram: &mut [u8],
        cfg: &EndpointConfig,
        room: crate::budget::Room,
    ) -> Result<(), DropReason> {
        self.input(now);
        let Phase::Hello(h) = &mut self.phase else { return Err(DropReason::Unexpected) };
        let Some(v1) = h.v1.as_mut() else { return Err(DropReason::Unexpected) };
        if hdr.ty == crate::mpgs1::wire::MsgType::ServerHello && has_sentinel(hdr, datagram, &h.pinned) {
            h.v1 = None;
            h.downgrade = true;
            h.next_send = now;
            return Ok(());
        }
        let r = v1.handle_datagram(now, hdr, datagram, cfg, room);
        self.after_v1();
        r
    }

    /// After any input to a fallback attempt: a failed one fails this
    /// attempt with its reason.
    fn after_v1(&mut self) {
        let Phase::Hello(h) = &mut self.phase else { return };
        let Some(v1) = h.v1.as_mut() else { return };
        if !v1.is_closed() {
            return;
        }
        let reason = v1
            .events()
            .iter()
            .find_map(|e| match e {
                Event::ConnectFailed { reason, .. } => Some(*reason),
                _ => None,
            })
            .unwrap_or(ConnectFailure::TimedOut);
        self.phase = Phase::Failed;
        self.refresh();
        self.events.push_back(Event::ConnectFailed { conn: self.id, reason });
        self.drain();
    }

    /// A fallback attempt that completed its MPGS/1 handshake, with every
    /// message accepted so far handed to it in send order (they get the
    /// same ids: both versions number a connection's messages from 0). The
    /// endpoint's slot then holds it instead of this connection.
    pub(crate) fn take_fallback(&mut self) -> Option<crate::mpgs1::Connection> {
        let Phase::Hello(h) = &mut self.phase else { return None };
        if !h.v1.as_ref().is_some_and(|v1| v1.is_connected()) {
            return None;
        }
        let mut v1 = *h.v1.take()?;
        self.phase = Phase::Failed;
        self.refresh();
        v1.set_outcome_reports(self.reports);
        while let Some((channel, data, o)) = self.early.pop_front() {
            let id = o.id;
            // Only channels 0–2 reach a fallback: the endpoint maps
            // configured ones by kind (an MPGS/1 peer has no channels).
            let delivery = match channel {
                CH_UNRELIABLE => Delivery::Unreliable,
                CH_BEST_EFFORT => Delivery::BestEffort,
                _ => Delivery::Reliable,
            };
            let options = SendOptions { report: Some(o.report), ..SendOptions::new(delivery) };
            // The MPGS/1 queue has the same limits, which these messages
            // already met here, so it accepts each under the same id.
            if v1.send(&data, options).ok() != Some(id) && o.report {
                v1.events().push_back(Event::Lost { conn: self.id, id, reason: LossReason::ConnectionClosed });
            }
        }
        let mut ours = core::mem::take(&mut self.events);
        ours.append(v1.events());
        *v1.events() = ours;
        Some(v1)
    }

    fn on_long(&mut self, now: Instant, datagram: &[u8]) -> Result<(), DropReason> {
        let Phase::Hello(h) = &mut self.phase else { return Err(DropReason::Unexpected) };
        let bad = |e: HandshakeError| match e {
            HandshakeError::Malformed => DropReason::Malformed,
            HandshakeError::BadSignature | HandshakeError::UnknownRoot | HandshakeError::BadKey => {
                DropReason::AuthFailed
            }
            _ => DropReason::Unexpected,
        };
        // Invariant: `handle_datagram` routes only non-empty datagrams here.
        let ty = LongType::from_first_byte(datagram[0]);
        if ty.is_some() {
            // An MPGS/2 server is there (or someone on the path): no fallback.
            h.replied = true;
            h.fallback_at = None;
        }
        match ty {
            Some(LongType::HelloRetry) => {
                let Hello { hs, rng, .. } = &mut **h;
                hs.on_retry(datagram, rng).map_err(bad)?;
                // The cookie variant goes out now, on a fresh schedule (its
                // own RTT sample, Karn's rule).
                h.next_send = now;
                h.interval = HELLO_RESEND_FIRST;
                h.sends = 0;
                Ok(())
            }
            Some(LongType::Reject) => {
                let reason = h.hs.on_reject(datagram).map_err(bad)?;
                self.phase = Phase::Failed;
                self.events
                    .push_back(Event::ConnectFailed { conn: self.id, reason: ConnectFailure::Rejected(reason.code()) });
                Ok(())
            }
            Some(LongType::ServerHello) => {
                let est = match h.hs.on_server_hello(datagram, core::slice::from_ref(&h.pinned)) {
                    Ok(est) => est,
                    Err(e) => {
                        if matches!(
                            e,
                            HandshakeError::BadSignature | HandshakeError::UnknownRoot | HandshakeError::BadKey
                        ) {
                            h.bad_signature = true;
                        }
                        return Err(bad(e));
                    }
                };
                let sample = (h.sends == 1).then(|| now.saturating_duration_since(h.first_sent));
                self.server_key = Some(h.pinned.clone());
                // A fallback attempt still handshaking is abandoned silently.
                h.v1 = None;
                let mut c = conn::Connection::new(Side::Client, est, self.conn_config.clone(), now);
                if let Some(rtt) = sample {
                    c.handshake_rtt(now, rtt);
                }
                // The key confirmation has until the connect deadline to get
                // through, as the handshake had (§2.5).
                c.hold_open_until(h.deadline);
                c.ping();
                self.conn = Inner::Present(c);
                self.phase = Phase::Open;
                self.connected = true;
                self.events.push_back(Event::Connected { conn: self.id });
                self.endpoint_events.push_back(EndpointEvent::HandshakeCompleted);
                while let Some((channel, data, o)) = self.early.pop_front() {
                    self.submit(channel, data, o);
                }
                Ok(())
            }
            None => Err(DropReason::Malformed),
        }
    }

    /// A short header, in the pending phase or (`open`) once open.
    fn on_short(
        &mut self,
        now: Instant,
        datagram: &mut [u8],
        cfg: &EndpointConfig,
        room: Room,
        open: bool,
    ) -> Result<(), DropReason> {
        let Some(c) = self.conn.get_mut() else { return Err(DropReason::Unexpected) };
        c.set_recv_blocked(self.undrained > cfg.recv_queue_bytes);
        // The room the endpoint's budgets leave, within the per-connection cap.
        let own = self.reassembly;
        let left = room.left(own).min(cfg.max_reassembly_bytes.saturating_sub(own));
        let arrival = c.handle_datagram_within(now, datagram, u64::try_from(left).unwrap_or(u64::MAX));
        self.reassembly = conn_reassembly(c);
        let opened = arrival.opened();
        if opened {
            self.metrics.on_received(now, datagram.len());
        }
        if open {
            // The datagram may have closed it.
            self.state = open_state(c);
        } else if opened && let Phase::Pending(p) = &self.phase {
            // Key confirmation (§2.1): the first packet that opens.
            let sample = (p.sends == 1).then(|| now.saturating_duration_since(p.first_sent));
            if let Some(rtt) = sample {
                c.handshake_rtt(now, rtt);
            }
            self.phase = Phase::Open;
            self.state = open_state(c);
            self.connected = true;
            self.events.push_back(Event::Connected { conn: self.id });
            self.endpoint_events.push_back(EndpointEvent::HandshakeCompleted);
        }
        // Otherwise still pending: `Connecting`, whatever the connection did.
        match arrival {
            Arrival::Opened | Arrival::Ignored => Ok(()),
            Arrival::BudgetRefused => {
                // Unrecorded, so unacknowledged: the peer sends its frames again.
                self.endpoint_events.push_back(EndpointEvent::ReassemblyBudgetRefused);
                Err(DropReason::Rate)
            }
            Arrival::RecvRefused => {
                // The same, until the application drains its events (§4.6).
                self.metrics.recv_queue_refused += 1;
                Err(DropReason::Rate)
            }
            Arrival::Unopened(OpenError::Replay(_)) => Err(DropReason::Replay),
            Arrival::Unopened(OpenError::Malformed(_)) => Err(DropReason::Malformed),
            Arrival::Unopened(_) => Err(DropReason::AuthFailed),
        }
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.input(now);
        match &mut self.phase {
            Phase::Hello(h) if now >= h.deadline => {
                let reason = if h.downgrade {
                    ConnectFailure::DowngradeDetected
                } else if h.bad_signature {
                    ConnectFailure::WrongServerKey
                } else {
                    ConnectFailure::TimedOut
                };
                self.phase = Phase::Failed;
                self.fail_early();
                self.events.push_back(Event::ConnectFailed { conn: self.id, reason });
            }
            Phase::Hello(h) if h.v1.is_some() => {
                if let Some(v1) = h.v1.as_mut() {
                    v1.handle_timeout(now);
                }
                self.after_v1();
            }
            Phase::Pending(p) if now >= p.expires => {
                // Never confirmed: forgotten silently (the application never
                // heard of it).
                self.phase = Phase::Failed;
                self.conn = Inner::Absent;
            }
            Phase::Open => {
                if let Some(c) = self.conn.get_mut() {
                    c.handle_timeout(now);
                }
                self.drain();
            }
            _ => {}
        }
        self.refresh();
    }

    pub(crate) fn next_transmit(&self, now: Instant, _cfg: &EndpointConfig) -> Option<Instant> {
        let t = match &self.phase {
            Phase::Hello(h) => match (&h.v1, h.fallback_at) {
                (Some(v1), _) => v1.next_transmit(now, _cfg),
                // The MPGS/1 fallback attempt starts in `poll_transmit`.
                (None, Some(at)) => Some(h.next_send.min(at)),
                (None, None) => Some(h.next_send),
            },
            Phase::Pending(p) => p.due.then_some(now),
            Phase::Open => self.conn.get().and_then(|c| c.next_transmit(now)),
            Phase::Failed => None,
        }?;
        // `poll_transmit` found nothing at `idle_at`: what was due by then
        // cannot be sent before an input changes something.
        match self.idle_at {
            Some(idle) if t <= idle => None,
            _ => Some(t),
        }
    }

    /// The earliest of the timers `handle_timeout` acts on and a future
    /// transmit time (as MPGS/1 does): after `handle_timeout(t)` every one
    /// of them is later than `t`, so no timer is retried blindly.
    pub(crate) fn poll_timeout(&mut self, now: Instant, next_transmit: Option<Instant>) -> Option<Instant> {
        let timer = match &mut self.phase {
            // An MPGS/1 fallback attempt has its own timers; the hello
            // resends and the fallback instant are transmit times.
            Phase::Hello(h) => match h.v1.as_mut() {
                Some(v1) => Some(v1.poll_timeout(now, next_transmit).map_or(h.deadline, |t| t.min(h.deadline))),
                None => Some(h.deadline),
            },
            Phase::Pending(p) => Some(p.expires),
            Phase::Open => self.conn.get().and_then(conn::Connection::poll_timeout),
            Phase::Failed => None,
        };
        let transmit = next_transmit.filter(|&t| t > now);
        crate::time::earliest(timer, transmit)
    }

    pub(crate) fn poll_transmit(
        &mut self,
        now: Instant,
        buf: &mut [u8; MAX_DATAGRAM],
        _cfg: &EndpointConfig,
    ) -> Option<usize> {
        if now > self.now {
            self.now = now;
        }
        if let Phase::Hello(h) = &mut self.phase
            && h.v1.is_none()
            && h.fallback_at.is_some_and(|at| now >= at)
        {
            // 1 s without any MPGS/2 reply: MPGS/1 from now on (§2.9).
            h.fallback_at = None;
            let auth = crate::state::ServerAuth::Pinned(h.pinned.clone());
            let v1 = crate::mpgs1::Connection::client(self.id, self.remote, now, _cfg, h.rng.fork(), auth);
            h.v1 = Some(Box::new(v1));
        }
        let len = match &mut self.phase {
            Phase::Hello(h) if h.v1.is_some() => {
                let n = h.v1.as_mut().and_then(|v1| v1.poll_transmit(now, buf, _cfg));
                self.after_v1();
                n
            }
            Phase::Hello(h) if now >= h.next_send => {
                let hello = h.hs.hello();
                buf[..hello.len()].copy_from_slice(hello);
                if h.sends == 0 {
                    h.first_sent = now;
                }
                h.sends += 1;
                h.next_send = now + h.interval;
                h.interval = (h.interval * 2).min(HELLO_RESEND_MAX);
                Some(hello.len())
            }
            Phase::Pending(p) if p.due => {
                p.due = false;
                if p.sends == 0 {
                    p.first_sent = now;
                }
                p.sends += 1;
                buf[..p.reply.len()].copy_from_slice(&p.reply);
                buf[p.reply.len()..SERVER_HELLO_LEN].fill(0);
                Some(SERVER_HELLO_LEN)
            }
            Phase::Open => {
                let c = self.conn.get_mut()?;
                let n = c.poll_transmit(now, &mut buf[..]);
                // Assembly may end the connection (its keys exhausted).
                self.state = open_state(c);
                // Sending processes no ACK: the RTT is unchanged.
                self.drain_sent();
                n
            }
            _ => None,
        };
        match len {
            Some(n) => {
                self.metrics.on_sent(now, n);
            }
            None => self.idle_at = Some(now),
        }
        len
    }

    pub(crate) fn poll_final(
        &mut self,
        _now: Instant,
        _buf: &mut [u8; MAX_DATAGRAM],
        _cfg: &EndpointConfig,
    ) -> Option<usize> {
        // CLOSE goes out, and is repeated, during the closing period (§6.4).
        None
    }

    /// Whether a message of `len` bytes on `channel` would be accepted now,
    /// without side effects: the checks `send` makes before it queues. The
    /// channel's index on success.
    pub(crate) fn can_send(&self, channel: u8, len: usize, explicit: bool) -> Result<u8, SendError> {
        let ci = self.admit(channel, len, explicit)?;
        if let Some(max) = self.max_message_size(channel)
            && len > max
        {
            return Err(SendError::TooLarge { max });
        }
        Ok(ci)
    }

    /// [`can_send`](Self::can_send) but for the size, which the connection
    /// checks again when it queues (`send` asks it once, there).
    fn admit(&self, channel: u8, len: usize, explicit: bool) -> Result<u8, SendError> {
        match self.state() {
            ConnectionState::Connecting | ConnectionState::Connected => {}
            _ if explicit => return Err(SendError::NotConnected),
            _ => return Err(SendError::Closing),
        }
        let ci = *self.chan_at.get(usize::from(channel)).ok_or(SendError::UnknownChannel { channel })?;
        let s = self.chan.get(usize::from(ci)).ok_or(SendError::UnknownChannel { channel })?;
        if self.pending_messages() >= self.queue_messages {
            return Err(SendError::QueueFull { channel, queued: self.pending_messages(), limit: self.queue_messages });
        }
        if self.pending_bytes + len > self.queue_bytes {
            return Err(SendError::QueueFull { channel, queued: self.pending_bytes, limit: self.queue_bytes });
        }
        if s.queued + len > s.queue_limit {
            return Err(SendError::QueueFull { channel, queued: s.queued, limit: s.queue_limit });
        }
        Ok(ci)
    }

    pub(crate) fn send(&mut self, data: &[u8], options: SendOptions) -> Result<MessageId, SendError> {
        let channel = options.channel();
        let explicit = options.channel.is_some();
        // The size is checked by the connection as it queues (`TooLarge`
        // with the limit `can_send` names); before the keys exist there is
        // no peer limit yet (the endpoint checked its own).
        let ci = match self.admit(channel, data.len(), explicit) {
            Ok(ci) => ci,
            Err(e) => {
                if let SendError::QueueFull { limit, .. } = e {
                    self.note_full(channel, limit);
                }
                return Err(e);
            }
        };
        let s = &self.chan[usize::from(ci)];
        let default = if channel <= CH_RELIABLE_ID { self.reports } else { s.receipts };
        let report = options.report.unwrap_or(default);
        let id = MessageId(self.next_id);
        let o = Outstanding { id, len: data.len(), report, chan: ci, sent: self.now };
        if let Some(c) = self.conn.get_mut() {
            // Refused here with a typed error, as MPGS/1 refuses, never
            // accepted and then reported Lost.
            let mut buf = c.buffer_for(channel, data.len());
            buf.extend_from_slice(data);
            let receipt = c.try_send(self.now, channel, buf).map_err(|e| match e {
                conn::SendRefused::TooLarge { max } => {
                    SendError::TooLarge { max: usize::try_from(max).unwrap_or(usize::MAX) }
                }
                conn::SendRefused::Closed if explicit => SendError::NotConnected,
                conn::SendRefused::Closed => SendError::Closing,
                conn::SendRefused::UnknownChannel => SendError::UnknownChannel { channel },
            })?;
            self.outstanding.insert(receipt, o);
        } else {
            // Client before its keys: kept in order until they exist. The
            // peer's limits are unknown yet; a message above them is then
            // reported Lost (the endpoint's `max_message_size` was checked).
            self.early.push_back((channel, data.to_vec(), o));
        }
        self.next_id += 1;
        self.pending_bytes += data.len();
        let s = &mut self.chan[usize::from(ci)];
        s.queued += data.len();
        s.m.sent += 1;
        self.metrics.messages_sent += 1;
        self.idle_at = None;
        // Queuing changes neither the RTT nor the flow counters: only the
        // events need moving.
        self.drain_events();
        Ok(id)
    }

    /// A send on `channel` was refused by the limit `limit`: remember it,
    /// for `Writable`.
    fn note_full(&mut self, channel: u8, limit: usize) {
        let Some(&ci) = self.chan_at.get(usize::from(channel)) else { return };
        let Some(s) = self.chan.get_mut(usize::from(ci)) else { return };
        s.m.refused_full += 1;
        if limit == s.queue_limit {
            s.full = true;
        } else {
            self.conn_full |= 1 << (channel % 64);
        }
    }

    /// Hands message `o` to the connection; a refusal is reported `Lost`.
    fn submit(&mut self, channel: u8, data: Vec<u8>, o: Outstanding) {
        let receipt = self.conn.get_mut().map(|c| c.try_send(self.now, channel, data));
        match receipt {
            Some(Ok(r)) => self.outstanding.insert(r, o),
            _ => self.finish(o, Some(LossReason::ConnectionClosed)),
        }
    }

    /// Message `o` is decided: delivered (`None`) or lost for a reason.
    fn finish(&mut self, o: Outstanding, lost: Option<LossReason>) {
        self.pending_bytes = self.pending_bytes.saturating_sub(o.len);
        if lost.is_none() {
            self.metrics.messages_acked += 1;
        } else {
            self.metrics.messages_lost += 1;
        }
        // A channel below half its queue limit after a refusal.
        let mut reopened = false;
        if let Some(s) = self.chan.get_mut(usize::from(o.chan)) {
            s.queued = s.queued.saturating_sub(o.len);
            match lost {
                None => {
                    s.m.delivered += 1;
                    let d = self.now.saturating_duration_since(o.sent);
                    s.delays.get_or_insert_with(DelayHistogram::new).record(d);
                }
                Some(LossReason::PacketLost) => s.m.lost_packet += 1,
                Some(LossReason::Expired) => s.m.lost_expired += 1,
                Some(LossReason::Superseded) => s.m.lost_superseded += 1,
                Some(_) => s.m.lost_closed += 1,
            }
            reopened = s.full && s.queued < s.queue_limit / 2;
        }
        // The state is asked only when a limit was hit (rare), not for
        // every decided message: `Writable` only while connected. Computed,
        // not the cached field: messages are decided in the middle of an
        // input (a timeout that closes the connection), before the cache
        // is brought up to date for the endpoint.
        let open = (reopened || self.conn_full != 0) && self.current_state() == ConnectionState::Connected;
        if reopened && open {
            let s = &mut self.chan[usize::from(o.chan)];
            s.full = false;
            self.events.push_back(Event::Writable { conn: self.id, channel: s.id });
        }
        if o.report {
            self.events.push_back(match lost {
                None => Event::Delivered { conn: self.id, id: o.id },
                Some(reason) => Event::Lost { conn: self.id, id: o.id, reason },
            });
        }
        if self.conn_full != 0
            && open
            && self.pending_messages() < self.queue_messages / 2
            && self.pending_bytes < self.queue_bytes / 2
        {
            let mut mask = core::mem::take(&mut self.conn_full);
            while mask != 0 {
                let channel = mask.trailing_zeros() as u8;
                mask &= mask - 1;
                self.events.push_back(Event::Writable { conn: self.id, channel });
            }
        }
    }

    pub(crate) fn disconnect(&mut self, now: Instant, _cfg: &EndpointConfig) {
        self.input(now);
        match &self.phase {
            Phase::Hello(_) => {
                self.phase = Phase::Failed;
                self.fail_early();
                self.events.push_back(Event::ConnectFailed { conn: self.id, reason: ConnectFailure::Cancelled });
            }
            Phase::Pending(_) => {
                self.phase = Phase::Failed;
                self.conn = Inner::Absent;
            }
            Phase::Open => {
                if let Some(c) = self.conn.get_mut() {
                    c.close(now, conn::close_code::NORMAL);
                }
                self.drain();
            }
            Phase::Failed => {}
        }
        self.refresh();
    }

    /// Messages accepted before the keys existed, on a failed attempt.
    fn fail_early(&mut self) {
        while let Some((_, _, o)) = self.early.pop_front() {
            self.finish(o, Some(LossReason::ConnectionClosed));
        }
    }

    /// After an input: moves the connection's events to the crate's and
    /// refreshes the RTT metrics (an ACK may have brought a sample).
    fn drain(&mut self) {
        self.drain_events();
        if let Some(c) = self.conn.get() {
            let (srtt, rttvar, latest, has) = c.rtt();
            if has {
                self.metrics.srtt = Some(Duration::from_micros(srtt));
                self.metrics.rttvar = Duration::from_micros(rttvar);
                self.metrics.latest_rtt = Some(Duration::from_micros(latest));
            }
        }
    }

    /// After a datagram was assembled: moves the events and refreshes the
    /// flow metric, which only packet assembly changes (a message waiting
    /// for a window is counted there).
    fn drain_sent(&mut self) {
        self.drain_events();
        if let Some(c) = self.conn.get() {
            self.metrics.flow_blocked = c.flow_blocked();
        }
    }

    /// Moves the connection's events to the crate's. Called after every
    /// input and send, which mostly leave nothing to move: that check is
    /// inlined, the move is not.
    #[inline]
    fn drain_events(&mut self) {
        if matches!(self.phase, Phase::Failed) || self.conn.get().is_some_and(conn::Connection::has_events) {
            self.move_events();
        }
    }

    #[inline(never)]
    fn move_events(&mut self) {
        if let Phase::Failed = self.phase {
            self.fail_early();
        }
        // One event at a time, straight from the connection: no list.
        while let Some(e) = self.conn.get_mut().and_then(conn::Connection::poll_event) {
            match e {
                ConnEvent::Message { channel, data } => {
                    self.metrics.messages_received += 1;
                    self.undrained = self.undrained.saturating_add(data.len());
                    self.events.push_back(Event::Message { conn: self.id, channel, payload: data });
                }
                ConnEvent::Delivered(r) => {
                    if let Some(o) = self.outstanding.remove(r) {
                        self.finish(o, None);
                    }
                }
                ConnEvent::Lost(r, reason) => {
                    if let Some(o) = self.outstanding.remove(r) {
                        self.finish(o, Some(reason));
                    }
                }
                ConnEvent::Closed(reason) => {
                    if self.connected {
                        let reason = match reason {
                            CloseReason::Local(conn::close_code::NORMAL) => DisconnectReason::Local,
                            CloseReason::IdleTimeout => DisconnectReason::TimedOut,
                            CloseReason::Peer(1) => DisconnectReason::Shutdown,
                            CloseReason::StatelessReset => DisconnectReason::Reset,
                            // The peer closed, reset, or broke the protocol.
                            _ => DisconnectReason::Peer,
                        };
                        self.events.push_back(Event::Disconnected { conn: self.id, reason });
                    }
                }
            }
        }
    }
}
