//! The endpoint: owns every connection of one socket, routes datagrams to
//! them by address, admits new clients, and collects their output.

use alloc::collections::{BTreeMap, BinaryHeap, VecDeque};
use alloc::vec::Vec;
use core::cmp::Reverse;
use core::net::SocketAddr;

use crate::admission::{Admission, HelloKey, Refusal};
use crate::blocklist::{BlockList, IpNet};
use crate::config::{ConfigError, EndpointConfig, MAX_DATAGRAM, Sizes};
use crate::connection::{Connection, ConnectionState, Ctx, ServerAuth};
use crate::crypto::{self, PublicKey, ServerKey};
use crate::error::{ConnectError, SendError, UnknownConnection};
use crate::event::{ConnectionId, Delivery, Event, MessageId};
use crate::rng::{Rng, Seed};
use crate::sending::SendOptions;
use crate::stats::{DropReason, EndpointStats};
use crate::time::Instant;
use crate::wire::{self, Direction, Header, MsgType, SPKI_LEN};

/// Size of the largest final datagram kept for sending after its
/// connection is gone (a DISCONNECT: 20 + 2 + 16 bytes).
const FINAL_DATAGRAM_MAX: usize = 64;

/// A datagram to send: [`Endpoint::poll_transmit`] wrote its `len` bytes at
/// the start of the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub destination: SocketAddr,
    /// How many bytes of the buffer to send.
    pub len: usize,
}

/// Bytes of one slot of the connection table (the connection lives inline).
pub(crate) const SLOT_SIZE: usize = core::mem::size_of::<Slot>();

#[cfg_attr(feature = "_fuzzing", derive(Clone))]
struct Slot {
    generation: u32,
    conn: Option<Connection>,
    /// The timer of this slot's live entry in `Endpoint::timers`.
    queued: Option<Instant>,
}

/// A MPGS/1 endpoint: a server that accepts clients, or a client that
/// connects to servers. It is a pure state machine (sans-IO): it never
/// touches a socket or a clock.
///
/// # Run loop
///
/// 1. Feed one input: [`handle_datagram`](Endpoint::handle_datagram) for a
///    received datagram, [`handle_timeout`](Endpoint::handle_timeout) when the
///    time from `poll_timeout` (or a game tick) has come.
/// 2. Drain [`poll_transmit`](Endpoint::poll_transmit) until `None`, sending
///    each datagram.
/// 3. Drain [`poll_event`](Endpoint::poll_event) until `None`.
/// 4. Wait for a datagram, the instant of
///    [`poll_timeout`](Endpoint::poll_timeout), or the next game tick; repeat.
///
/// Commands ([`send`](Endpoint::send), [`connect`](Endpoint::connect),
/// [`disconnect`](Endpoint::disconnect)) may come at any point; drain
/// `poll_transmit` after them too. Draining late only adds latency; it never
/// changes correctness. An early or spurious `handle_timeout` does nothing,
/// so a fixed-rate game loop may call it every frame. After
/// `handle_timeout(t)`, `poll_timeout()` is `None` or later than `t`.
///
/// `now` never needs to be monotonic: an instant earlier than one already
/// seen is treated as the latest one seen.
#[cfg_attr(feature = "_fuzzing", derive(Clone))]
pub struct Endpoint {
    cfg: EndpointConfig,
    sizes: Sizes,
    server_key: Option<ServerKey>,
    rng: Rng,
    slots: Vec<Slot>,
    /// Released slots, reused oldest first so a slot's generation wraps as
    /// late as possible.
    free: VecDeque<u32>,
    by_addr: BTreeMap<SocketAddr, u32>,
    ready: VecDeque<ConnectionId>,
    /// Connections changed since their readiness and timer were last settled.
    dirty: Vec<ConnectionId>,
    /// Connections whose cached timer is stale (settled only when read).
    timer_dirty: Vec<ConnectionId>,
    /// Every connection's timer, earliest first, as `(when, slot, generation)`.
    /// Lazy deletion: an entry is live only while its slot (same
    /// generation) still has `queued == Some(when)`; stale ones are dropped
    /// when they surface, or all at once when they outnumber the live ones.
    timers: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    /// Scratch list of the connections due in `handle_timeout`.
    due: Vec<ConnectionId>,
    events: VecDeque<Event>,
    finals: VecDeque<(SocketAddr, heapless::Vec<u8, FINAL_DATAGRAM_MAX>)>,
    stats: EndpointStats,
    blocklist: BlockList,
    now: Instant,
    pending: usize,
    established: usize,
    /// Hello rate limits, per-source pending counts, eviction order.
    pub(crate) admission: Admission,
    /// The SERVER_HELLO key of the current `server_hello_reuse` period.
    pub(crate) hello_key: Option<HelloKey>,
    /// Reassembly bytes buffered by all connections together.
    reassembly_total: usize,
}

impl Endpoint {
    /// A server endpoint signing its handshakes with `key` (the long-term
    /// root key whose public half clients pin).
    ///
    /// `seed` must come from a secure source in production (the drivers use
    /// the OS); fixed seeds are for tests and simulations.
    pub fn server(cfg: EndpointConfig, key: ServerKey, seed: Seed) -> Result<Endpoint, ConfigError> {
        Endpoint::new(cfg, Some(key), seed)
    }

    /// A client endpoint. Connect with [`Endpoint::connect`].
    pub fn client(cfg: EndpointConfig, seed: Seed) -> Result<Endpoint, ConfigError> {
        Endpoint::new(cfg, None, seed)
    }

    fn new(cfg: EndpointConfig, server_key: Option<ServerKey>, seed: Seed) -> Result<Endpoint, ConfigError> {
        cfg.validate()?;
        Ok(Endpoint {
            sizes: cfg.sizes(),
            cfg,
            server_key,
            rng: Rng::new(seed),
            slots: Vec::new(),
            free: VecDeque::new(),
            by_addr: BTreeMap::new(),
            ready: VecDeque::new(),
            dirty: Vec::new(),
            timer_dirty: Vec::new(),
            timers: BinaryHeap::new(),
            due: Vec::new(),
            events: VecDeque::new(),
            finals: VecDeque::new(),
            stats: EndpointStats::default(),
            blocklist: BlockList::default(),
            now: Instant::ZERO,
            pending: 0,
            established: 0,
            admission: Admission::default(),
            hello_key: None,
            reassembly_total: 0,
        })
    }

    /// Whether this is a server endpoint.
    pub fn is_server(&self) -> bool {
        self.server_key.is_some()
    }

    /// The configuration.
    pub fn config(&self) -> &EndpointConfig {
        &self.cfg
    }

    /// Endpoint-wide counters, including dropped datagrams by reason.
    pub fn stats(&self) -> &EndpointStats {
        &self.stats
    }

    /// The counters, for the crate's layers above the endpoint (typed messages).
    #[cfg_attr(not(feature = "serde"), allow(dead_code))]
    pub(crate) fn stats_mut(&mut self) -> &mut EndpointStats {
        &mut self.stats
    }

    /// The connection with the peer at `addr`, if any (a server's pending
    /// handshakes included).
    pub fn connection_by_addr(&self, addr: SocketAddr) -> Option<ConnectionId> {
        let &index = self.by_addr.get(&addr)?;
        Some(ConnectionId { index, generation: self.slots[index as usize].generation })
    }

    /// A live connection, or `None` once it has closed.
    pub fn connection(&self, id: ConnectionId) -> Option<&Connection> {
        self.slots.get(id.index as usize).filter(|s| s.generation == id.generation).and_then(|s| s.conn.as_ref())
    }

    /// Every live connection that has completed its handshake or is a
    /// client's attempt (a server's pending handshakes are not listed), in
    /// slot order.
    pub fn connections(&self) -> impl Iterator<Item = ConnectionId> + '_ {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            let c = s.conn.as_ref()?;
            let listed = c.is_connected() || c.role() == crate::Role::Client;
            listed.then_some(ConnectionId { index: i as u32, generation: s.generation })
        })
    }

    /// Established connections (a server's clients, a client's servers).
    pub fn connection_count(&self) -> usize {
        self.established
    }

    /// The admission state, for tests.
    #[cfg(test)]
    pub(crate) fn admission(&self) -> &Admission {
        &self.admission
    }

    /// A server's handshakes in progress (CLIENT_HELLO answered, no
    /// CHALLENGE_RESP yet).
    pub fn pending_handshakes(&self) -> usize {
        self.pending
    }

    /// Bytes all connections hold for reassembling fragmented messages
    /// (at most `max_reassembly_bytes_total`).
    pub fn reassembly_bytes(&self) -> usize {
        self.reassembly_total
    }

    /// The block list.
    pub fn block_list(&self) -> &BlockList {
        &self.blocklist
    }

    /// Blocks an address or range: its datagrams are dropped (and counted)
    /// from now on. Live connections from it are not closed; use
    /// [`Endpoint::ban`] for that. Returns false if it was already blocked.
    pub fn block(&mut self, net: impl Into<IpNet>) -> bool {
        self.blocklist.add(net.into())
    }

    /// Removes a range exactly as it was added. Returns false if absent.
    pub fn unblock(&mut self, net: impl Into<IpNet>) -> bool {
        self.blocklist.remove(net.into())
    }

    /// Disconnects `conn` and blocks its IP address.
    pub fn ban(&mut self, now: Instant, conn: ConnectionId) -> Result<(), UnknownConnection> {
        let ip = self.connection(conn).ok_or(UnknownConnection)?.remote().ip();
        self.disconnect(now, conn)?;
        self.blocklist.add(IpNet::host(ip));
        Ok(())
    }

    // ----- commands ------------------------------------------------------

    /// Starts connecting to the server at `addr`, which must sign its
    /// handshake with the root key whose public half is `server_key`.
    ///
    /// `Connected` or `ConnectFailed` follows. Messages may be sent at once;
    /// they wait for the handshake.
    pub fn connect(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        server_key: PublicKey,
    ) -> Result<ConnectionId, ConnectError> {
        self.start_connect(now, addr, ServerAuth::Pinned(server_key))
    }

    /// Like [`connect`](Endpoint::connect), but trusts whatever root key
    /// the server presents (§15 rule 12). **This authenticates nothing**: an
    /// attacker on the path can impersonate the server. Use it only to
    /// fetch a key to pin (see [`Connection::server_key`]) on a trusted
    /// network.
    pub fn connect_trust_on_first_use(&mut self, now: Instant, addr: SocketAddr) -> Result<ConnectionId, ConnectError> {
        self.start_connect(now, addr, ServerAuth::TrustOnFirstUse)
    }

    fn start_connect(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        auth: ServerAuth,
    ) -> Result<ConnectionId, ConnectError> {
        let now = self.clamp(now);
        if self.is_server() {
            return Err(ConnectError::NotAClient);
        }
        if self.blocklist.contains(addr.ip()) {
            return Err(ConnectError::Blocked);
        }
        if self.by_addr.contains_key(&addr) {
            return Err(ConnectError::AlreadyConnected);
        }
        let conn = Connection::client(addr, now, &self.cfg, self.rng.fork(), auth);
        let id = self.insert(addr, conn);
        self.touch(id, now);
        Ok(id)
    }

    /// Queues a message for `conn`. Any size from 0 bytes to the configured
    /// `max_message_size` is accepted; large ones are fragmented.
    ///
    /// Exactly one `Delivered` or `Lost` event follows for the returned id.
    pub fn send(&mut self, conn: ConnectionId, data: &[u8], delivery: Delivery) -> Result<MessageId, SendError> {
        self.send_with(conn, data, delivery)
    }

    /// Like [`send`](Endpoint::send), with [`SendOptions`]: a [`Delivery`]
    /// converts into them, and [`Delivery::unreported`] sends without a
    /// `Delivered`/`Lost` event (a stream of inputs or snapshots).
    pub fn send_with(
        &mut self,
        conn: ConnectionId,
        data: &[u8],
        options: impl Into<SendOptions>,
    ) -> Result<MessageId, SendError> {
        let options = options.into();
        if data.len() > self.cfg.max_message_size {
            return Err(SendError::TooLarge { max: self.cfg.max_message_size });
        }
        let now = self.now;
        let c = self.conn_mut(conn).ok_or(SendError::UnknownConnection)?;
        let report = options.report.unwrap_or(c.reports);
        let id = c.send(data, options.delivery, report)?;
        self.touch(conn, now);
        Ok(id)
    }

    /// Whether messages sent on `conn` from now on, without an explicit
    /// [`SendOptions::report`], get a `Delivered` or `Lost` event (on by
    /// default). Turn it off for a connection that only streams
    /// fire-and-forget data; its metrics still count every outcome.
    pub fn set_outcome_reports(&mut self, conn: ConnectionId, on: bool) -> Result<(), UnknownConnection> {
        self.conn_mut(conn).ok_or(UnknownConnection)?.reports = on;
        Ok(())
    }

    /// Closes `conn` gracefully: unsent messages are lost, a DISCONNECT goes
    /// out, and `Disconnected` (or, during a client's handshake,
    /// `ConnectFailed`) follows once the peer acknowledges or the linger
    /// time passes.
    pub fn disconnect(&mut self, now: Instant, conn: ConnectionId) -> Result<(), UnknownConnection> {
        let now = self.clamp(now);
        self.with_conn(conn, |c, ctx| c.disconnect(now, ctx)).ok_or(UnknownConnection)?;
        self.touch(conn, now);
        Ok(())
    }

    // ----- inputs --------------------------------------------------------

    /// Handles one received datagram. It is decrypted in place, so its
    /// contents are unspecified afterwards. Bad input is dropped and counted
    /// in [`Endpoint::stats`], never an error.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &mut [u8]) {
        let now = self.clamp(now);
        self.stats.datagrams_received += 1;
        self.stats.bytes_received += datagram.len() as u64;
        if self.blocklist.contains(from.ip()) {
            self.stats.drop(DropReason::Blocked);
            return;
        }
        let expect = if self.is_server() { Direction::ToServer } else { Direction::ToClient };
        let Ok(hdr) = Header::parse(datagram, expect) else {
            self.stats.drop(DropReason::Malformed);
            return;
        };
        match self.by_addr.get(&from) {
            Some(&index) => {
                let id = ConnectionId { index, generation: self.slots[index as usize].generation };
                self.with_conn(id, |c, ctx| c.handle_datagram(now, &hdr, datagram, ctx));
                self.touch(id, now);
            }
            None if self.is_server() && hdr.ty == MsgType::ClientHello => {
                if let Err(reason) = self.accept(now, from, &hdr, datagram) {
                    self.stats.drop(reason);
                }
            }
            None => self.stats.drop(DropReason::UnknownPeer),
        }
    }

    /// A CLIENT_HELLO from an unknown address (§10.1, §10.2; admission in
    /// `admission.rs`). Everything that can refuse it runs before any
    /// cryptography: the hello's own checks, the rate and source limits, the
    /// connection cap, the client key's validity and the replay check.
    fn accept(&mut self, now: Instant, from: SocketAddr, hdr: &Header, datagram: &[u8]) -> Result<(), DropReason> {
        let msg = Connection::open_crc(hdr, datagram)?;
        let hello = wire::handshake::parse_client_hello(msg.data, self.sizes.hello_padding)
            .map_err(|_| DropReason::Malformed)?;
        if hello.version != wire::handshake::PROTOCOL_VERSION {
            return Err(DropReason::Malformed);
        }
        if let Err(refusal) = self.admission.check(now, from.ip(), &self.cfg) {
            match refusal {
                Refusal::Rate => self.stats.hellos_refused_rate += 1,
                Refusal::Source => self.stats.hellos_refused_source += 1,
            }
            return Err(DropReason::Rate);
        }
        if self.established >= self.cfg.max_connections {
            self.stats.hellos_refused_full += 1;
            return Err(DropReason::Rate);
        }
        let client_key: [u8; SPKI_LEN] = hello.key_spki.try_into().map_err(|_| DropReason::Malformed)?;
        let (peer, x) = crypto::peer_key(&client_key).ok_or(DropReason::Malformed)?;
        let reuse = self.hello_key.as_ref().filter(|k| k.usable(now));
        if reuse.is_some_and(|k| k.answered(&x)) {
            // The same client key (or its negation) from another address
            // while the server key that answered it is current: a replayed
            // hello. Answering it would give two connections one session key.
            return Err(DropReason::Replay);
        }
        let fresh = reuse.is_none();
        if self.server_key.is_none() {
            return Err(DropReason::UnknownPeer);
        }
        // Make room: the oldest pending handshake goes first.
        while self.pending >= self.cfg.max_pending_handshakes
            || self.established + self.pending >= self.cfg.max_connections
        {
            if !self.evict_oldest_pending(now) {
                self.stats.hellos_refused_full += 1;
                return Err(DropReason::Rate);
            }
        }
        let root = self.server_key.as_ref().ok_or(DropReason::UnknownPeer)?;
        if fresh {
            self.hello_key = Some(HelloKey::generate(now, &mut self.rng, self.cfg.server_hello_reuse));
            self.stats.server_hello_keys += 1;
        }
        let key = self.hello_key.as_mut().ok_or(DropReason::UnknownPeer)?;
        let answer = key.answer(x, &mut self.rng, root).ok_or(DropReason::Malformed)?;
        let conn = Connection::server(
            from,
            now,
            &self.cfg,
            &key.ephemeral,
            answer,
            client_key,
            &peer,
            (hdr.seq, msg.msgseq, datagram.len()),
        );
        self.pending += 1;
        let id = self.insert(from, conn);
        self.admission.admit(now, from.ip(), id, &self.cfg);
        self.stats.hellos_accepted += 1;
        self.touch(id, now);
        let slots = &self.slots;
        self.admission.compact(self.pending, |id| is_pending(slots, id));
        Ok(())
    }

    /// Closes the oldest pending handshake silently; false if none is pending.
    fn evict_oldest_pending(&mut self, now: Instant) -> bool {
        let slots = &self.slots;
        let Some(id) = self.admission.oldest_pending(|id| is_pending(slots, id)) else {
            return false;
        };
        self.with_conn(id, |c, ctx| c.disconnect(now, ctx));
        self.touch(id, now);
        self.stats.handshakes_evicted += 1;
        true
    }

    /// Runs the timers due at `now`: retransmissions, keep-alives, timeouts.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clamp(now);
        if self.hello_key.as_ref().is_some_and(|k| now >= k.expires) {
            // Forward secrecy: the shared ephemeral key lives no longer than
            // its period (the sessions it made have their own keys).
            self.hello_key = None;
        }
        self.settle_timers(now);
        // Every due connection, then in slot order (as a scan would).
        let mut due = core::mem::take(&mut self.due);
        while let Some(&Reverse((when, index, generation))) = self.timers.peek() {
            if when > now {
                break;
            }
            self.timers.pop();
            let slot = &mut self.slots[index as usize];
            if slot.generation == generation && slot.queued == Some(when) {
                slot.queued = None;
                due.push(ConnectionId { index, generation });
            }
        }
        due.sort_unstable_by_key(|id| id.index);
        for &id in &due {
            self.with_conn(id, |c, ctx| c.handle_timeout(now, ctx));
            self.touch(id, now);
        }
        due.clear();
        self.due = due;
    }

    // ----- outputs -------------------------------------------------------

    /// Writes the next datagram to send into `buf`, or returns `None` when
    /// nothing is due now. Connections take turns, one datagram each.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8; MAX_DATAGRAM]) -> Option<Transmit> {
        let now = self.clamp(now);
        if let Some((destination, bytes)) = self.finals.pop_front() {
            buf[..bytes.len()].copy_from_slice(&bytes);
            return Some(self.sent(destination, bytes.len()));
        }
        self.settle(now);
        while let Some(id) = self.ready.pop_front() {
            let Some(conn) = self.conn_mut(id) else {
                continue;
            };
            conn.in_ready_queue = false;
            let destination = conn.remote();
            let len = self.with_conn(id, |c, ctx| c.poll_transmit(now, buf, ctx)).flatten();
            self.touch(id, now);
            if let Some(len) = len {
                return Some(self.sent(destination, len));
            }
        }
        None
    }

    fn sent(&mut self, destination: SocketAddr, len: usize) -> Transmit {
        self.stats.datagrams_sent += 1;
        self.stats.bytes_sent += len as u64;
        Transmit { destination, len }
    }

    /// The next event for the application, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When to call [`handle_timeout`](Endpoint::handle_timeout) next, if
    /// any timer is armed. Datagrams ready to send now are not timers: drain
    /// [`poll_transmit`](Endpoint::poll_transmit) after every input.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.settle_timers(self.now);
        // The shared server ephemeral key is erased when its period ends.
        let erase = self.hello_key.as_ref().map(|k| k.expires);
        while let Some(&Reverse((when, index, generation))) = self.timers.peek() {
            let slot = &self.slots[index as usize];
            if slot.generation == generation && slot.queued == Some(when) {
                return Some(erase.map_or(when, |e| e.min(when)));
            }
            self.timers.pop();
        }
        erase
    }

    // ----- internals -----------------------------------------------------

    fn clamp(&mut self, now: Instant) -> Instant {
        if now > self.now {
            self.now = now;
        }
        self.now
    }

    fn insert(&mut self, addr: SocketAddr, conn: Connection) -> ConnectionId {
        let index = match self.free.pop_front() {
            Some(i) => {
                let slot = &mut self.slots[i as usize];
                slot.conn = Some(conn);
                slot.queued = None;
                i
            }
            None => {
                self.slots.push(Slot { generation: 0, conn: Some(conn), queued: None });
                (self.slots.len() - 1) as u32
            }
        };
        self.by_addr.insert(addr, index);
        ConnectionId { index, generation: self.slots[index as usize].generation }
    }

    fn conn_mut(&mut self, id: ConnectionId) -> Option<&mut Connection> {
        live_conn(&mut self.slots, id)
    }

    /// Runs `f` on a live connection with its context, keeping the
    /// endpoint's connection counts in step with its state.
    fn with_conn<R>(&mut self, id: ConnectionId, f: impl FnOnce(&mut Connection, &mut Ctx<'_>) -> R) -> Option<R> {
        let conn = live_conn(&mut self.slots, id)?;
        // The public state is a function of this cheap key: an unchanged key
        // means no count to update.
        let key = conn.state_key();
        let before = (conn.state(), conn.is_connected());
        let mut ctx = Ctx {
            cfg: &self.cfg,
            sizes: &self.sizes,
            events: &mut self.events,
            stats: &mut self.stats,
            id,
            reassembly_total: &mut self.reassembly_total,
            admission: &mut self.admission,
            now: self.now,
        };
        let r = f(conn, &mut ctx);
        if conn.state_key() == key {
            return Some(r);
        }
        let after = (conn.state(), conn.is_connected());
        let server = conn.role() == crate::Role::Server;
        let pending = |s: (ConnectionState, bool)| server && s.0 == ConnectionState::Connecting;
        let live = |s: (ConnectionState, bool)| s.1 && s.0 != ConnectionState::Closed;
        self.pending = self.pending + usize::from(pending(after)) - usize::from(pending(before));
        self.established = self.established + usize::from(live(after)) - usize::from(live(before));
        if pending(before) && !pending(after) {
            self.admission.release(self.now, conn.remote().ip(), &self.cfg);
        }
        if server && live(before) != live(after) {
            self.admission.connection(self.now, conn.remote().ip(), live(after), &self.cfg);
        }
        Some(r)
    }

    /// After any input to `id`: releases it at once if it closed (queuing
    /// its final datagram), otherwise marks it for [`Endpoint::settle`].
    fn touch(&mut self, id: ConnectionId, now: Instant) {
        let Some(conn) = live_conn(&mut self.slots, id) else {
            return;
        };
        if conn.is_closed() {
            self.release_closed(id, now);
        } else {
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(id);
            }
            if !conn.timer_dirty {
                conn.timer_dirty = true;
                self.timer_dirty.push(id);
            }
        }
    }

    /// The closed branch of [`Endpoint::touch`], kept out of line: it needs
    /// a datagram buffer on the stack, which every other call would pay
    /// for in its frame.
    #[cold]
    #[inline(never)]
    fn release_closed(&mut self, id: ConnectionId, now: Instant) {
        let Some(remote) = self.connection(id).map(Connection::remote) else {
            return;
        };
        let mut buf = [0u8; MAX_DATAGRAM];
        if let Some(len) = self.with_conn(id, |c, ctx| c.poll_final(now, &mut buf, ctx)).flatten()
            && let Ok(bytes) = heapless::Vec::from_slice(&buf[..len])
        {
            self.finals.push_back((remote, bytes));
        }
        self.release(id);
    }

    /// Settles every changed connection: queues it for transmission if a
    /// datagram is due, and caches its transmit time. Done lazily, so a
    /// burst of inputs costs one evaluation per connection.
    fn settle(&mut self, now: Instant) {
        for k in 0..self.dirty.len() {
            let id = self.dirty[k];
            let Some(conn) = live_conn(&mut self.slots, id) else {
                continue;
            };
            conn.dirty = false;
            let transmit = conn.next_transmit(now, &self.cfg);
            conn.transmit_at = transmit;
            if !conn.in_ready_queue && transmit.is_some_and(|t| t <= now) {
                conn.in_ready_queue = true;
                self.ready.push_back(id);
            }
        }
        self.dirty.clear();
    }

    /// Settles, then recomputes the cached timer of every connection whose
    /// timer is stale, and queues the changed ones in the timer heap. Only
    /// `poll_timeout` and `handle_timeout` read timers, so the per-datagram
    /// path never pays for this; they cost O(log n) per changed connection
    /// instead of a scan of every connection.
    fn settle_timers(&mut self, now: Instant) {
        self.settle(now);
        for k in 0..self.timer_dirty.len() {
            let id = self.timer_dirty[k];
            let Some(conn) = live_conn(&mut self.slots, id) else {
                continue;
            };
            conn.timer_dirty = false;
            // A transmit time cached by an earlier settle may have come due
            // since (a caller ticking `handle_timeout` without reading
            // `poll_timeout`): queue it now, since `poll_timeout` below only
            // keeps transmit times still in the future as timers.
            if !conn.in_ready_queue && conn.transmit_at.is_some_and(|t| t <= now) {
                conn.in_ready_queue = true;
                self.ready.push_back(id);
            }
            conn.timeout = conn.poll_timeout(now, conn.transmit_at, &self.cfg);
            let slot = &mut self.slots[id.index as usize];
            let timeout = slot.conn.as_ref().and_then(|c| c.timeout);
            if slot.queued != timeout {
                slot.queued = timeout;
                if let Some(when) = timeout {
                    self.timers.push(Reverse((when, id.index, id.generation)));
                }
            }
        }
        self.timer_dirty.clear();
        if self.timers.len() > 2 * self.slots.len() + 64 {
            // Mostly stale entries: rebuild from the live ones (in place).
            let mut entries = core::mem::take(&mut self.timers).into_vec();
            entries.clear();
            entries.extend(self.slots.iter().enumerate().filter_map(|(i, s)| {
                s.conn.as_ref()?;
                Some(Reverse((s.queued?, i as u32, s.generation)))
            }));
            self.timers = BinaryHeap::from(entries);
        }
    }

    /// The earliest timer by a scan of every connection and the shared
    /// hello key's erasure (what the timer
    /// heap replaces), and the heap's length; for tests, after `poll_timeout`.
    #[cfg(test)]
    pub(crate) fn timer_scan(&self) -> (Option<Instant>, usize) {
        let conns = self.slots.iter().filter_map(|s| s.conn.as_ref()?.timeout);
        let erase = self.hello_key.as_ref().map(|k| k.expires);
        (conns.chain(erase).min(), self.timers.len())
    }

    fn release(&mut self, id: ConnectionId) {
        let slot = &mut self.slots[id.index as usize];
        if let Some(conn) = slot.conn.take() {
            self.reassembly_total = self.reassembly_total.saturating_sub(conn.reassembly_bytes());
            self.admission.reassembly_changed(self.now, conn.remote().ip(), conn.reassembly_bytes(), 0, &self.cfg);
            if self.by_addr.get(&conn.remote()) == Some(&id.index) {
                self.by_addr.remove(&conn.remote());
            }
        }
        slot.generation = slot.generation.wrapping_add(1);
        slot.queued = None;
        self.free.push_back(id.index);
    }
}

/// Whether `id` is a live server handshake still pending.
fn is_pending(slots: &[Slot], id: ConnectionId) -> bool {
    slots
        .get(id.index as usize)
        .filter(|s| s.generation == id.generation)
        .and_then(|s| s.conn.as_ref())
        .is_some_and(|c| c.role() == crate::Role::Server && c.state() == ConnectionState::Connecting)
}

impl core::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Endpoint")
            .field("server", &self.is_server())
            .field("connections", &self.by_addr.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// The live connection `id` names in `slots`, if its generation still matches.
fn live_conn(slots: &mut [Slot], id: ConnectionId) -> Option<&mut Connection> {
    slots.get_mut(id.index as usize).filter(|s| s.generation == id.generation).and_then(|s| s.conn.as_mut())
}
