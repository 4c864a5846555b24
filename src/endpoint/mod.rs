//! The endpoint: owns every connection of one socket, classifies each
//! datagram by its version ([`crate::version`]) and routes it to a
//! connection (MPGS/1: by address), admits new clients through the shared
//! admission gate, and collects the connections' output.
//!
//! * `table.rs`: the connection table (generation-checked ids) and routes.
//! * `schedule.rs`: the ready queue and the timer heap.
//! * `accept.rs`: a new MPGS/1 client's way through the admission gate.

mod accept;
mod accept2;
mod schedule;
mod table;

pub(crate) use table::SLOT_SIZE;

use alloc::collections::VecDeque;
use core::net::SocketAddr;

use crate::admission::Admission;
use crate::blocklist::{BlockList, IpNet};
use crate::budget::{Budget, Room};
use crate::config::{ConfigError, EndpointConfig, MAX_DATAGRAM, Sizes};
use crate::error::{ConnectError, SendError, UnknownConnection};
use crate::event::{ConnectionId, Delivery, Event, MessageId, SendOptions};
use crate::keys::{PublicKey, ServerKey};
use crate::mpgs1;
use crate::mpgs1::hello_key::HelloKey;
use crate::mpgs2;
use crate::rng::{Rng, Seed};
use crate::session::{Connection, Decoded, Proto, Session};
use crate::state::{ConnectionState, ProtocolVersion, Role, ServerAuth};
use crate::stats::{DropReason, EndpointStats};
use crate::time::Instant;
use crate::version::{self, Version};
use schedule::Scheduler;
use table::Table;

/// Size of the largest final datagram kept for sending after its
/// connection is gone (a DISCONNECT: 20 + 2 + 16 bytes), or of a stateless
/// MPGS/2 reply (HELLO_RETRY 39 B, REJECT 20 B, stateless reset ≤ 43 B).
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

/// An endpoint: a server that accepts clients, or a client that
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
    table: Table,
    schedule: Scheduler,
    events: VecDeque<Event>,
    finals: VecDeque<(SocketAddr, heapless::Vec<u8, FINAL_DATAGRAM_MAX>)>,
    stats: EndpointStats,
    blocklist: BlockList,
    now: Instant,
    pending: usize,
    established: usize,
    /// Hello rate limits, per-source counts, eviction order.
    pub(crate) admission: Admission,
    /// The MPGS/1 SERVER_HELLO key of the current `server_hello_reuse` period.
    pub(crate) hello_key: Option<HelloKey>,
    /// Reassembly bytes buffered by all connections together.
    budget: Budget,
    /// MPGS/2: its random stream, and a server's admission state.
    v2: accept2::V2State,
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
        let v2 = accept2::V2State::new(accept2::v2_rng(&seed));
        Ok(Endpoint {
            sizes: cfg.sizes(),
            cfg,
            server_key,
            rng: Rng::new(seed),
            table: Table::default(),
            schedule: Scheduler::default(),
            events: VecDeque::new(),
            finals: VecDeque::new(),
            stats: EndpointStats::default(),
            blocklist: BlockList::default(),
            now: Instant::ZERO,
            pending: 0,
            established: 0,
            admission: Admission::default(),
            hello_key: None,
            budget: Budget::default(),
            v2,
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
        self.table.by_addr(addr)
    }

    /// A live connection, or `None` once it has closed.
    pub fn connection(&self, id: ConnectionId) -> Option<&Connection> {
        self.table.get(id)
    }

    /// Every live connection that has completed its handshake or is a
    /// client's attempt (a server's pending handshakes are not listed), in
    /// slot order.
    pub fn connections(&self) -> impl Iterator<Item = ConnectionId> + '_ {
        self.table.iter().filter_map(|(id, c)| (c.is_connected() || Session::role(c) == Role::Client).then_some(id))
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

    /// A server's handshakes in progress (hello answered, not confirmed
    /// yet), MPGS/1 and MPGS/2 together.
    pub fn pending_handshakes(&self) -> usize {
        self.pending + self.v2.pending.len()
    }

    /// Bytes all connections hold for reassembling fragmented messages
    /// (at most `max_reassembly_bytes_total`).
    pub fn reassembly_bytes(&self) -> usize {
        self.budget.held()
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
    /// handshake with the root key whose public half is `server_key`, over
    /// the configuration's [`EndpointConfig::protocol`] (MPGS/2 unless
    /// changed; a Python reference server needs [`ProtocolVersion::V1`]).
    ///
    /// `Connected` or `ConnectFailed` follows. Messages may be sent at once;
    /// they wait for the handshake.
    pub fn connect(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        server_key: PublicKey,
    ) -> Result<ConnectionId, ConnectError> {
        self.connect_with(now, addr, server_key, self.cfg.protocol)
    }

    /// Like [`connect`](Endpoint::connect), over `protocol`.
    /// [`ProtocolVersion::V2`] reaches servers of this crate only (the
    /// Python reference never answers it; the attempt then times out).
    pub fn connect_with(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        server_key: PublicKey,
        protocol: ProtocolVersion,
    ) -> Result<ConnectionId, ConnectError> {
        match protocol {
            ProtocolVersion::V2 => self.start_connect_v2(now, addr, server_key),
            _ => self.start_connect(now, addr, ServerAuth::Pinned(server_key)),
        }
    }

    /// Like [`connect`](Endpoint::connect), but trusts whatever root key
    /// the server presents (§15 rule 12), always over MPGS/1 (MPGS/2 has no
    /// trust on first use). **This authenticates nothing**: an
    /// attacker on the path can impersonate the server. Use it only to
    /// fetch a key to pin (see [`Connection::server_key`]) on a trusted
    /// network.
    pub fn connect_trust_on_first_use(&mut self, now: Instant, addr: SocketAddr) -> Result<ConnectionId, ConnectError> {
        self.start_connect(now, addr, ServerAuth::TrustOnFirstUse)
    }

    /// The checks every connect makes, whatever the version; the clamped time.
    fn connect_checks(&mut self, now: Instant, addr: SocketAddr) -> Result<Instant, ConnectError> {
        let now = self.clamp(now);
        if self.is_server() {
            return Err(ConnectError::NotAClient);
        }
        if self.blocklist.contains(addr.ip()) {
            return Err(ConnectError::Blocked);
        }
        if self.table.by_addr(addr).is_some() {
            return Err(ConnectError::AlreadyConnected);
        }
        Ok(now)
    }

    fn start_connect(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        auth: ServerAuth,
    ) -> Result<ConnectionId, ConnectError> {
        let now = self.connect_checks(now, addr)?;
        let id = self.table.vacant();
        let conn = mpgs1::Connection::client(id, addr, now, &self.cfg, self.rng.fork(), auth);
        let id = self.table.insert(addr, Connection::new(Proto::V1(conn)));
        self.touch(id, now);
        Ok(id)
    }

    fn start_connect_v2(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        server_key: PublicKey,
    ) -> Result<ConnectionId, ConnectError> {
        let now = self.connect_checks(now, addr)?;
        let id = self.table.vacant();
        let rng = self.v2.rng.fork();
        let conn = mpgs2::session::Connection::client(id, addr, now, &self.cfg, rng, server_key)?;
        let id = self.table.insert(addr, Connection::new(Proto::V2(alloc::boxed::Box::new(conn))));
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
        let mut options = options.into();
        if data.len() > self.cfg.max_message_size {
            return Err(SendError::TooLarge { max: self.cfg.max_message_size });
        }
        let now = self.now;
        let c = self.table.get_mut(conn).ok_or(SendError::UnknownConnection)?;
        if options.channel.is_some() {
            options = crate::channel::resolve(&self.cfg, c, options)?;
        }
        let id = Session::send(c, data, options)?;
        self.touch(conn, now);
        Ok(id)
    }

    /// Whether messages sent on `conn` from now on, without an explicit
    /// [`SendOptions::report`], get a `Delivered` or `Lost` event (on by
    /// default). Turn it off for a connection that only streams
    /// fire-and-forget data; its metrics still count every outcome.
    pub fn set_outcome_reports(&mut self, conn: ConnectionId, on: bool) -> Result<(), UnknownConnection> {
        Session::set_outcome_reports(self.table.get_mut(conn).ok_or(UnknownConnection)?, on);
        Ok(())
    }

    /// Closes `conn` gracefully: unsent messages are lost, a DISCONNECT goes
    /// out, and `Disconnected` (or, during a client's handshake,
    /// `ConnectFailed`) follows once the peer acknowledges or the linger
    /// time passes.
    pub fn disconnect(&mut self, now: Instant, conn: ConnectionId) -> Result<(), UnknownConnection> {
        let now = self.clamp(now);
        self.with_conn(conn, |c, cfg, _| c.disconnect(now, cfg)).ok_or(UnknownConnection)?;
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
        match version::classify(datagram) {
            Some(Version::Mpgs1) => self.handle_mpgs1(now, from, datagram),
            Some(Version::Mpgs2Short) => self.handle_mpgs2_short(now, from, datagram),
            Some(Version::Mpgs2Long) => self.handle_mpgs2_long(now, from, datagram),
            None => self.stats.drop(DropReason::Malformed),
        }
    }

    /// An MPGS/2 short header: at a server routed by its connection id, at
    /// a client by the server's address.
    fn handle_mpgs2_short(&mut self, now: Instant, from: SocketAddr, datagram: &mut [u8]) {
        let id = if self.is_server() {
            let Some(cid) = datagram.get(1..1 + mpgs2::CID_LEN) else {
                self.stats.drop(DropReason::Malformed);
                return;
            };
            // Invariant: the slice is CID_LEN bytes long.
            let cid: [u8; mpgs2::CID_LEN] = cid.try_into().expect("CID_LEN bytes");
            if self.table.has_addr_routes() && self.table.by_addr(from).is_some() {
                // Never answer, nor adopt, an address with a live MPGS/1
                // connection (§2.2, §6.2).
                self.stats.drop(DropReason::Mpgs1Address);
                return;
            }
            if !self.cfg.accept_mpgs2 {
                // MPGS/2 is off: no connection to route to, no reset.
                self.stats.drop(DropReason::UnknownPeer);
                return;
            }
            let id = self.table.by_cid(&cid);
            if id.is_none() {
                // Perhaps ours before a restart: tell the peer (§6.4).
                self.stateless_reset(now, from, &cid, datagram.len());
            }
            id
        } else {
            self.table.by_addr(from)
        };
        let Some(id) = id else {
            self.stats.drop(DropReason::UnknownPeer);
            return;
        };
        self.route_v2(now, id, datagram);
    }

    /// An MPGS/2 long header: server replies to a client's HELLO2. A server
    /// drops them (§2.2).
    fn handle_mpgs2_long(&mut self, now: Instant, from: SocketAddr, datagram: &mut [u8]) {
        if self.is_server() {
            self.stats.drop(DropReason::Unexpected);
            return;
        }
        match self.table.by_addr(from) {
            Some(id) => self.route_v2(now, id, datagram),
            None => self.stats.drop(DropReason::UnknownPeer),
        }
    }

    fn route_v2(&mut self, now: Instant, id: ConnectionId, datagram: &mut [u8]) {
        let Some((r, change)) =
            self.with_conn_keyed(id, |c, cfg, room| c.handle_datagram(now, &Decoded::V2, datagram, cfg, room))
        else {
            return;
        };
        if let Err(reason) = r {
            self.stats.drop(reason);
        }
        match change {
            // Nothing about its state changed: it cannot have closed, and
            // no handshake was confirmed; only its schedule is stale.
            None => self.touch_open(id),
            Some(was_connected) => {
                if !was_connected && self.is_server() && self.table.get(id).is_some_and(Session::is_connected) {
                    self.v2_confirmed(id, now);
                }
                self.touch(id, now);
            }
        }
    }

    /// MPGS/1's route: by the sender's address; a CLIENT_HELLO from an
    /// unknown address goes to the admission gate.
    fn handle_mpgs1(&mut self, now: Instant, from: SocketAddr, datagram: &mut [u8]) {
        let expect = if self.is_server() { mpgs1::wire::Direction::ToServer } else { mpgs1::wire::Direction::ToClient };
        let Ok(hdr) = mpgs1::wire::Header::parse(datagram, expect) else {
            self.stats.drop(DropReason::Malformed);
            return;
        };
        if self.is_server()
            && self.cfg.accept_mpgs2
            && hdr.ty == mpgs1::wire::MsgType::ClientHello
            && mpgs2::hello::is_hello2(datagram)
        {
            // MPGS/2's hello in MPGS/1's frame (§2.2): decided before any
            // MPGS/1 address state is read or changed.
            if let Err(reason) = self.accept_mpgs2(now, from, datagram) {
                self.stats.drop(reason);
            }
            return;
        }
        match self.table.by_addr(from) {
            Some(id) => {
                let decoded = Decoded::V1(hdr);
                if let Some(Err(reason)) =
                    self.with_conn(id, |c, cfg, room| c.handle_datagram(now, &decoded, datagram, cfg, room))
                {
                    self.stats.drop(reason);
                }
                self.touch(id, now);
            }
            None if self.is_server() && hdr.ty == mpgs1::wire::MsgType::ClientHello => {
                if let Err(reason) = self.accept_mpgs1(now, from, &hdr, datagram) {
                    self.stats.drop(reason);
                }
            }
            None => self.stats.drop(DropReason::UnknownPeer),
        }
    }

    /// Runs the timers due at `now`: retransmissions, keep-alives, timeouts.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clamp(now);
        if self.hello_key.as_ref().is_some_and(|k| now >= k.expires) {
            // Forward secrecy: the shared ephemeral key lives no longer than
            // its period (the sessions it made have their own keys).
            self.hello_key = None;
        }
        self.schedule.settle_timers(&mut self.table, now, &self.cfg);
        let due = self.schedule.take_due(&mut self.table, now);
        for &id in &due {
            self.with_conn(id, |c, _, _| c.handle_timeout(now));
            self.touch(id, now);
        }
        self.schedule.done(due);
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
        self.schedule.settle(&mut self.table, now, &self.cfg);
        while let Some((id, due)) = self.schedule.pop_ready(&mut self.table, now) {
            let (sent, changed) = if due {
                match self.with_conn_keyed(id, |c, cfg, _| Some((c.poll_transmit(now, buf, cfg)?, Session::remote(c))))
                {
                    Some((sent, change)) => (sent, change.is_some()),
                    None => (None, true),
                }
            } else {
                (None, true)
            };
            if changed {
                self.touch(id, now);
            } else {
                self.touch_open(id);
            }
            if let Some((len, destination)) = sent {
                if self.is_server()
                    && self.table.has_addr_routes()
                    && self.table.get(id).is_some_and(|c| c.version() == ProtocolVersion::V2)
                    && self.table.by_addr(destination).is_some_and(|v1| v1 != id)
                {
                    // An MPGS/1 connection took this address since (§2.2).
                    self.stats.v2_suppressed_to_mpgs1 += 1;
                    continue;
                }
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
        let event = self.events.pop_front()?;
        // MPGS/2 bounds what the application leaves undrained (§4.6).
        if let Event::Message { conn, payload, .. } = &event
            && let Some(c) = self.table.get_mut(*conn).and_then(Connection::v2_mut)
        {
            c.drained(payload.len());
        }
        Some(event)
    }

    /// When to call [`handle_timeout`](Endpoint::handle_timeout) next, if
    /// any timer is armed. Datagrams ready to send now are not timers: drain
    /// [`poll_transmit`](Endpoint::poll_transmit) after every input.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.schedule.settle_timers(&mut self.table, self.now, &self.cfg);
        // The shared server ephemeral key is erased when its period ends.
        let erase = self.hello_key.as_ref().map(|k| k.expires);
        crate::time::earliest(self.schedule.next_timer(&self.table), erase)
    }

    // ----- internals -----------------------------------------------------

    fn clamp(&mut self, now: Instant) -> Instant {
        if now > self.now {
            self.now = now;
        }
        self.now
    }

    /// Runs `f` on a live connection, then takes what it reports: its
    /// events, its counters, its change in reassembly bytes, and its state
    /// change (the endpoint's connection counts and admission).
    fn with_conn<R>(
        &mut self,
        id: ConnectionId,
        f: impl FnOnce(&mut Connection, &EndpointConfig, Room) -> R,
    ) -> Option<R> {
        self.with_conn_keyed(id, f).map(|(r, _)| r)
    }

    /// [`Endpoint::with_conn`], also telling whether the connection's
    /// public state changed: `Some(was_connected)` when it did, `None` when
    /// not (the per-datagram case, which then needs no further look).
    #[inline]
    fn with_conn_keyed<R>(
        &mut self,
        id: ConnectionId,
        f: impl FnOnce(&mut Connection, &EndpointConfig, Room) -> R,
    ) -> Option<(R, Option<bool>)> {
        let conn = self.table.get_mut(id)?;
        // The public state and whether the handshake completed: unchanged,
        // no count to update.
        let key = |c: &Connection| (Session::state(c), c.is_connected());
        let before = key(conn);
        let bytes_before = conn.reassembly_bytes();
        // The reassembly room the budgets leave it beside every other
        // connection. When nobody else holds reassembly bytes (the usual
        // case) the address budget is whole, and no lookup is needed.
        let address = if self.budget.held() == bytes_before {
            self.cfg.max_reassembly_bytes_per_ip
        } else {
            self.admission.reassembly_room(conn.remote().ip(), bytes_before, &self.cfg)
        };
        let room = Room::new(self.budget.beside(self.cfg.max_reassembly_bytes_total, bytes_before), address);
        let r = f(conn, &self.cfg, room);
        let events = conn.events();
        if !events.is_empty() {
            if self.events.is_empty() {
                // The usual case (the application drains events after every
                // input): the queues trade buffers, no event is moved.
                core::mem::swap(&mut self.events, events);
            } else {
                self.events.append(events);
            }
            crate::event::shrink_drained(events);
        }
        let counted = conn.endpoint_events();
        if !counted.is_empty() {
            for event in counted.drain(..) {
                self.stats.count(event);
            }
            crate::event::shrink_drained(counted);
        }
        let bytes_after = conn.reassembly_bytes();
        if bytes_after != bytes_before {
            self.budget.changed(bytes_before, bytes_after);
            self.admission.reassembly_changed(self.now, conn.remote().ip(), bytes_before, bytes_after, &self.cfg);
        }
        let after = key(conn);
        if after == before {
            return Some((r, None));
        }
        let server = Session::role(conn) == Role::Server;
        // MPGS/2 pending entries are counted by their own table (accept2.rs).
        let v1 = conn.version() == ProtocolVersion::V1;
        let pending = |s: (ConnectionState, bool)| v1 && server && s.0 == ConnectionState::Connecting;
        let live = |s: (ConnectionState, bool)| s.1 && s.0 != ConnectionState::Closed;
        self.pending = self.pending + usize::from(pending(after)) - usize::from(pending(before));
        self.established = self.established + usize::from(live(after)) - usize::from(live(before));
        if pending(before) && !pending(after) {
            self.admission.release(self.now, conn.remote().ip(), &self.cfg);
        }
        if server && live(before) != live(after) {
            self.admission.connection(self.now, conn.remote().ip(), live(after), &self.cfg);
        }
        Some((r, Some(before.1)))
    }

    /// After any input to `id`: releases it at once if it closed (queuing
    /// its final datagram), otherwise marks it for settling.
    fn touch(&mut self, id: ConnectionId, now: Instant) {
        let Some(slot) = self.table.slot_mut(id) else {
            return;
        };
        if slot.conn.as_ref().is_some_and(Session::is_closed) {
            self.release_closed(id, now);
        } else {
            self.schedule.touch(id, &mut slot.sched);
        }
    }

    /// [`Endpoint::touch`] for a connection whose state did not change
    /// since it was last touched open: only its schedule is marked.
    #[inline]
    fn touch_open(&mut self, id: ConnectionId) {
        if let Some(slot) = self.table.slot_mut(id) {
            self.schedule.touch(id, &mut slot.sched);
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
        if let Some(len) = self.with_conn(id, |c, cfg, _| c.poll_final(now, &mut buf, cfg)).flatten()
            && let Ok(bytes) = heapless::Vec::from_slice(&buf[..len])
        {
            self.finals.push_back((remote, bytes));
        }
        self.release(id);
    }

    /// The earliest timer by a scan of every connection and the shared
    /// hello key's erasure (what the timer heap replaces), and the heap's
    /// length; for tests, after `poll_timeout`.
    #[cfg(test)]
    pub(crate) fn timer_scan(&self) -> (Option<Instant>, usize) {
        let conns = self.table.slots.iter().filter(|s| s.conn.is_some()).filter_map(|s| s.sched.timeout);
        let erase = self.hello_key.as_ref().map(|k| k.expires);
        (conns.chain(erase).min(), self.schedule.heap_len())
    }

    fn release(&mut self, id: ConnectionId) {
        if let Some(conn) = self.table.release(id) {
            self.v2_released(&conn);
            let bytes = conn.reassembly_bytes();
            self.budget.changed(bytes, 0);
            self.admission.reassembly_changed(self.now, conn.remote().ip(), bytes, 0, &self.cfg);
        }
    }
}

impl core::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Endpoint")
            .field("server", &self.is_server())
            .field("connections", &self.table.routes())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}
