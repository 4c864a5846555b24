//! The simulator: endpoints on virtual addresses ("nodes"), one-way links
//! between them, a min-heap of datagrams in flight, a heap of endpoint
//! timers, and the virtual clock.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use mpgameserver::{
    ConfigError, ConnectError, ConnectionId, Delivery, Duration, Endpoint, EndpointConfig, Event, Instant,
    MAX_DATAGRAM, MessageId, PublicKey, Seed, SendError, ServerKey, UnknownConnection,
};

use crate::link::{Link, LinkConfig};
use crate::rng::{mix, splitmix64};
use crate::trace::{DropCause, Trace, TraceEntry, TraceKind, msg_type_of};

/// A node of the simulation: one endpoint on one virtual address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(u32);

impl NodeId {
    /// The node's index, in the order nodes were added (from 0).
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node#{}", self.0)
    }
}

/// A datagram as it was put on the network (see [`Sim::capture`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// Its id in the trace.
    pub id: u64,
    /// Source address.
    pub from: SocketAddr,
    /// Destination address.
    pub to: SocketAddr,
    /// Its bytes, as the sender emitted them.
    pub bytes: Vec<u8>,
    /// When it was sent.
    pub sent_at: Instant,
}

impl Datagram {
    /// The header's packet type, if the bytes look like an MPGS/1 datagram.
    pub fn msg_type(&self) -> Option<mpgameserver::_internal::wire::MsgType> {
        msg_type_of(&self.bytes)
    }
}

/// Counters of the simulated network.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SimStats {
    /// Steps taken (distinct instants processed).
    pub steps: u64,
    /// Datagrams endpoints emitted.
    pub datagrams_sent: u64,
    /// Datagrams handed to an endpoint (duplicates, injections and replays
    /// included).
    pub datagrams_delivered: u64,
    /// Copies added by duplication.
    pub duplicated: u64,
    /// Copies with flipped bits.
    pub corrupted: u64,
    /// Datagrams held on a held link.
    pub held: u64,
    /// Datagrams released from a held link.
    pub released: u64,
    /// Raw datagrams injected.
    pub injected: u64,
    /// Captured datagrams replayed.
    pub replayed: u64,
    /// `handle_timeout` calls.
    pub timeouts: u64,
    /// Times the progress property was checked (once per `handle_timeout`).
    pub progress_checks: u64,
    dropped: [u64; 6],
}

impl SimStats {
    /// Datagrams dropped for `cause`.
    pub fn dropped(&self, cause: DropCause) -> u64 {
        self.dropped[cause as usize]
    }

    /// Datagrams dropped for any cause.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }
}

impl fmt::Display for SimStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sent {}, delivered {}, duplicated {}, corrupted {}, dropped {}",
            self.datagrams_sent,
            self.datagrams_delivered,
            self.duplicated,
            self.corrupted,
            self.dropped_total()
        )?;
        let mut first = true;
        for c in DropCause::ALL {
            if self.dropped(c) > 0 {
                write!(f, "{}{}={}", if first { " (" } else { ", " }, c.name(), self.dropped(c))?;
                first = false;
            }
        }
        if !first {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// Why a node could not be added.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SimError {
    /// The endpoint configuration is invalid.
    Config(ConfigError),
    /// Another node already has this address.
    AddressInUse(SocketAddr),
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::Config(e) => write!(f, "invalid endpoint configuration: {e}"),
            SimError::AddressInUse(a) => write!(f, "address {a} is already used by another node: choose another"),
        }
    }
}

impl std::error::Error for SimError {}

impl From<ConfigError> for SimError {
    fn from(e: ConfigError) -> SimError {
        SimError::Config(e)
    }
}

/// Game logic run on a node's events as they are drained: it may call
/// commands (`send`, `disconnect`, ...) on the endpoint, whose datagrams
/// the simulator then drains. Arguments: the endpoint, the current virtual
/// time, the event.
pub type Handler = Box<dyn FnMut(&mut Endpoint, Instant, &Event)>;

type CaptureFilter = Box<dyn FnMut(&Datagram) -> bool>;

struct Node {
    addr: SocketAddr,
    ep: Endpoint,
    /// The root public key of a node added with `add_server`.
    server_key: Option<PublicKey>,
    events: Vec<Event>,
    event_times: Vec<Instant>,
    record: bool,
    handler: Option<Handler>,
    /// When the simulator will call `handle_timeout` next (the endpoint's
    /// `poll_timeout`, or the next frame if sooner).
    timer: Option<Instant>,
    frame: Option<Duration>,
    next_frame: Instant,
    /// Changed through `endpoint_mut`: drain before the next step.
    dirty: bool,
    /// Had an input since `timer` was computed.
    timer_stale: bool,
}

/// A datagram in flight, ordered by arrival time, then by scheduling order.
struct InFlight {
    at: Instant,
    seq: u64,
    to: u32,
    id: u64,
    from: SocketAddr,
    bytes: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for InFlight {}

impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// What a link decided for a datagram.
enum Fate {
    Dropped(DropCause),
    Held,
    Pass(crate::link::Passage),
}

/// Default cap on steps per `run_*` call.
const DEFAULT_STEP_LIMIT: u64 = 20_000_000;
/// Default cap on deliveries and timeouts at one virtual instant.
const DEFAULT_INSTANT_LIMIT: u64 = 1_000_000;
/// Trace entries shown when the simulator panics.
const PANIC_TAIL: usize = 20;

/// A deterministic network of [`Endpoint`]s in virtual time.
///
/// Everything is a function of the seed given to [`Sim::new`]: the
/// endpoints' seeds, every loss, delay, duplicate and flipped bit. The
/// simulator never reads a clock and never sleeps: each [`step`](Sim::step)
/// jumps to the earliest datagram arrival or endpoint timer.
///
/// # How it drives endpoints
///
/// Exactly as the core's run-loop contract says. After every input
/// (`handle_datagram`, `handle_timeout`) and every command issued through
/// the simulator, it drains `poll_transmit` (putting each datagram on its
/// link), then `poll_event` (recording each event and passing it to the
/// node's [`Handler`], if any), and again while a handler produced output.
/// Before it chooses the next instant, it asks `poll_timeout` of every node
/// that had input since it last asked (once per step, not once per input:
/// a server's `poll_timeout` looks at every connection). After every
/// `handle_timeout(t)` it checks the progress property: `poll_timeout()` is
/// `None` or later than `t`, and panics otherwise. With
/// [`set_frame_interval`](Sim::set_frame_interval) a node also gets a
/// `handle_timeout` every frame, like a fixed-rate game loop.
///
/// # Limits
///
/// A run stops with a panic that shows the last trace entries when a
/// single `run_*` call takes more than 20 million steps, or when more than
/// a million deliveries and timeouts happen at one virtual instant (a
/// livelock); see [`Sim::set_step_limit`].
pub struct Sim {
    seed: u64,
    now: Instant,
    nodes: Vec<Node>,
    by_addr: BTreeMap<SocketAddr, NodeId>,
    ipv6: bool,
    default_link: LinkConfig,
    links: BTreeMap<(u32, u32), Link>,
    partitions: BTreeSet<(u32, u32)>,
    in_flight: BinaryHeap<Reverse<InFlight>>,
    timers: BinaryHeap<Reverse<(Instant, u32)>>,
    next_seq: u64,
    next_id: u64,
    trace: Trace,
    capture: Option<CaptureFilter>,
    captured: Vec<Datagram>,
    stats: SimStats,
    step_limit: u64,
    instant_limit: u64,
    run_steps: u64,
    busy_instant: Instant,
    busy_actions: u64,
    buf: Box<[u8; MAX_DATAGRAM]>,
    outbox: Vec<(SocketAddr, Vec<u8>)>,
    /// Nodes changed through `endpoint_mut`.
    dirty: Vec<u32>,
    /// Nodes whose timer is stale. Timers are read once per step, not once
    /// per input: a server with many connections pays for `poll_timeout`.
    stale: Vec<u32>,
}

impl Sim {
    /// An empty network at time zero. `seed` decides everything random.
    pub fn new(seed: u64) -> Sim {
        Sim {
            seed,
            now: Instant::ZERO,
            nodes: Vec::new(),
            by_addr: BTreeMap::new(),
            ipv6: false,
            default_link: LinkConfig::default(),
            links: BTreeMap::new(),
            partitions: BTreeSet::new(),
            in_flight: BinaryHeap::new(),
            timers: BinaryHeap::new(),
            next_seq: 0,
            next_id: 0,
            trace: Trace::new(),
            capture: None,
            captured: Vec::new(),
            stats: SimStats::default(),
            step_limit: DEFAULT_STEP_LIMIT,
            instant_limit: DEFAULT_INSTANT_LIMIT,
            run_steps: 0,
            busy_instant: Instant::ZERO,
            busy_actions: 0,
            buf: Box::new([0; MAX_DATAGRAM]),
            outbox: Vec::new(),
            dirty: Vec::new(),
            stale: Vec::new(),
        }
    }

    /// The master seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    // ----- nodes ---------------------------------------------------------

    /// Makes the automatic addresses of nodes added from now on IPv6
    /// (`[fd00::N]`) instead of IPv4 (`10.x.y.z`).
    pub fn use_ipv6(&mut self, on: bool) {
        self.ipv6 = on;
    }

    /// The automatic address of the node with index `index`: port 4000 for
    /// servers, 5000 for clients.
    fn auto_addr(&self, index: usize, server: bool) -> SocketAddr {
        let n = index as u32 + 1;
        let port = if server { 4000 } else { 5000 };
        let ip = if self.ipv6 {
            IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, (n >> 16) as u16, n as u16))
        } else {
            IpAddr::V4(Ipv4Addr::new(10, (n >> 16) as u8, (n >> 8) as u8, n as u8))
        };
        SocketAddr::new(ip, port)
    }

    /// The seed the simulator gives the endpoint of node `index` (derived
    /// from the master seed).
    pub fn endpoint_seed(&self, index: usize) -> Seed {
        let mut state = mix(&[self.seed, index as u64, 0x5EED]);
        let mut s = [0u8; 32];
        for chunk in s.chunks_mut(8) {
            chunk.copy_from_slice(&splitmix64(&mut state).to_le_bytes());
        }
        Seed(s)
    }

    /// Adds a server endpoint with root key `key` at an automatic address.
    /// Clients reach it with [`Sim::connect`].
    pub fn add_server(&mut self, cfg: EndpointConfig, key: ServerKey) -> Result<NodeId, SimError> {
        let addr = self.auto_addr(self.nodes.len(), true);
        self.add_server_at(addr, cfg, key)
    }

    /// Adds a server endpoint at `addr` (IPv4 or IPv6).
    pub fn add_server_at(&mut self, addr: SocketAddr, cfg: EndpointConfig, key: ServerKey) -> Result<NodeId, SimError> {
        let public = key.public_key();
        let ep = Endpoint::server(cfg, key, self.endpoint_seed(self.nodes.len()))?;
        let id = self.add_endpoint(addr, ep)?;
        self.nodes[id.index()].server_key = Some(public);
        Ok(id)
    }

    /// Adds a client endpoint at an automatic address.
    pub fn add_client(&mut self, cfg: EndpointConfig) -> Result<NodeId, SimError> {
        let addr = self.auto_addr(self.nodes.len(), false);
        self.add_client_at(addr, cfg)
    }

    /// Adds a client endpoint at `addr` (IPv4 or IPv6).
    pub fn add_client_at(&mut self, addr: SocketAddr, cfg: EndpointConfig) -> Result<NodeId, SimError> {
        let ep = Endpoint::client(cfg, self.endpoint_seed(self.nodes.len()))?;
        self.add_endpoint(addr, ep)
    }

    /// Adds an endpoint built by the caller (any seed, any role) at `addr`.
    pub fn add_endpoint(&mut self, addr: SocketAddr, ep: Endpoint) -> Result<NodeId, SimError> {
        if self.by_addr.contains_key(&addr) {
            return Err(SimError::AddressInUse(addr));
        }
        let id = NodeId(self.nodes.len() as u32);
        self.nodes.push(Node {
            addr,
            ep,
            server_key: None,
            events: Vec::new(),
            event_times: Vec::new(),
            record: true,
            handler: None,
            timer: None,
            frame: None,
            next_frame: Instant::ZERO,
            dirty: false,
            timer_stale: false,
        });
        self.by_addr.insert(addr, id);
        self.flush(id.0);
        Ok(id)
    }

    /// How many nodes there are.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The node's address.
    pub fn addr(&self, node: NodeId) -> SocketAddr {
        self.nodes[node.index()].addr
    }

    /// The node at `addr`, if any.
    pub fn node_at(&self, addr: SocketAddr) -> Option<NodeId> {
        self.by_addr.get(&addr).copied()
    }

    /// The root public key of a node added with `add_server`.
    pub fn server_key(&self, node: NodeId) -> Option<&PublicKey> {
        self.nodes[node.index()].server_key.as_ref()
    }

    /// The node's endpoint, to read.
    pub fn endpoint(&self, node: NodeId) -> &Endpoint {
        &self.nodes[node.index()].ep
    }

    /// The node's endpoint, to change. Whatever it queues is drained at the
    /// current time before the next step; prefer
    /// [`with_endpoint`](Sim::with_endpoint), which drains at once.
    pub fn endpoint_mut(&mut self, node: NodeId) -> &mut Endpoint {
        let n = &mut self.nodes[node.index()];
        if !n.dirty {
            n.dirty = true;
            self.dirty.push(node.0);
        }
        &mut n.ep
    }

    /// Runs `f` on the node's endpoint at the current time, then drains its
    /// datagrams and events (the run-loop contract for commands).
    pub fn with_endpoint<R>(&mut self, node: NodeId, f: impl FnOnce(&mut Endpoint, Instant) -> R) -> R {
        let r = f(&mut self.nodes[node.index()].ep, self.now);
        self.flush(node.0);
        r
    }

    /// Connects client node `client` to server node `server` (added with
    /// `add_server`), pinning the server's key. `Connected` or
    /// `ConnectFailed` follows in the client's events.
    ///
    /// # Panics
    ///
    /// If `server` was not added with [`Sim::add_server`] (use
    /// [`Sim::connect_to`] then).
    pub fn connect(&mut self, client: NodeId, server: NodeId) -> Result<ConnectionId, ConnectError> {
        let n = &self.nodes[server.index()];
        let key = n.server_key.clone().unwrap_or_else(|| panic!("{server} was not added with Sim::add_server"));
        let addr = n.addr;
        self.connect_to(client, addr, key)
    }

    /// Connects client node `client` to `addr`, pinning `key`.
    pub fn connect_to(
        &mut self,
        client: NodeId,
        addr: SocketAddr,
        key: PublicKey,
    ) -> Result<ConnectionId, ConnectError> {
        self.with_endpoint(client, |ep, now| ep.connect(now, addr, key))
    }

    /// Sends a message from `node` on `conn`.
    pub fn send(
        &mut self,
        node: NodeId,
        conn: ConnectionId,
        data: &[u8],
        delivery: Delivery,
    ) -> Result<MessageId, SendError> {
        self.with_endpoint(node, |ep, _| ep.send(conn, data, delivery))
    }

    /// Closes `conn` of `node` gracefully.
    pub fn disconnect(&mut self, node: NodeId, conn: ConnectionId) -> Result<(), UnknownConnection> {
        self.with_endpoint(node, |ep, now| ep.disconnect(now, conn))
    }

    /// The connection `at` has with node `peer` (a server's pending
    /// handshakes included), if any.
    pub fn conn_of(&self, at: NodeId, peer: NodeId) -> Option<ConnectionId> {
        self.endpoint(at).connection_by_addr(self.addr(peer))
    }

    /// Every event the node's endpoint produced, in order (unless recording
    /// is off).
    pub fn events(&self, node: NodeId) -> &[Event] {
        &self.nodes[node.index()].events
    }

    /// When each event of [`Sim::events`] was drained.
    pub fn event_times(&self, node: NodeId) -> &[Instant] {
        &self.nodes[node.index()].event_times
    }

    /// Takes the recorded events, leaving none.
    pub fn take_events(&mut self, node: NodeId) -> Vec<Event> {
        let n = &mut self.nodes[node.index()];
        n.event_times.clear();
        std::mem::take(&mut n.events)
    }

    /// The payloads of the recorded `Message` events, in order.
    pub fn messages(&self, node: NodeId) -> Vec<&[u8]> {
        self.events(node)
            .iter()
            .filter_map(|e| match e {
                Event::Message { payload, .. } => Some(payload.as_slice()),
                _ => None,
            })
            .collect()
    }

    /// How many recorded events of the node satisfy `pred`.
    pub fn count_events(&self, node: NodeId, pred: impl FnMut(&&Event) -> bool) -> usize {
        self.events(node).iter().filter(pred).count()
    }

    /// Turns recording of the node's events on (the default) or off; a
    /// handler still sees every event.
    pub fn record_events(&mut self, node: NodeId, on: bool) {
        self.nodes[node.index()].record = on;
    }

    /// Runs `handler` on every event of the node as it is drained (game
    /// logic: an echo server, a chat, ...). Events are still recorded.
    pub fn set_handler(&mut self, node: NodeId, handler: impl FnMut(&mut Endpoint, Instant, &Event) + 'static) {
        self.nodes[node.index()].handler = Some(Box::new(handler));
    }

    /// Removes the node's handler.
    pub fn clear_handler(&mut self, node: NodeId) {
        self.nodes[node.index()].handler = None;
    }

    /// Also calls the node's `handle_timeout` every `interval` (a game loop
    /// ticking at a fixed rate, which the core must tolerate), or stops
    /// doing so with `None`.
    pub fn set_frame_interval(&mut self, node: NodeId, interval: Option<Duration>) {
        let n = &mut self.nodes[node.index()];
        n.frame = interval.filter(|d| !d.is_zero());
        n.next_frame = self.now + interval.unwrap_or(Duration::ZERO);
        self.mark_stale(node.0);
    }

    // ----- links ---------------------------------------------------------

    /// The link from node `from` to node `to`, created with the default
    /// settings and its own random stream on first use.
    fn link_mut(&mut self, from: u32, to: u32) -> &mut Link {
        let (seed, cfg) = (self.seed, &self.default_link);
        self.links
            .entry((from, to))
            .or_insert_with(|| Link::new(cfg.clone(), false, mix(&[seed, u64::from(from), u64::from(to), 0x11CC])))
    }

    /// Sets the settings of every link not set with [`Sim::set_link`] or
    /// [`Sim::set_path`] (those set later included).
    pub fn set_default_link(&mut self, cfg: LinkConfig) {
        for link in self.links.values_mut().filter(|l| !l.custom) {
            link.cfg = cfg.clone();
        }
        self.default_link = cfg;
    }

    /// Sets the link from `from` to `to` (one direction).
    pub fn set_link(&mut self, from: NodeId, to: NodeId, cfg: LinkConfig) {
        let link = self.link_mut(from.0, to.0);
        link.cfg = cfg;
        link.custom = true;
    }

    /// Sets both directions between `a` and `b`.
    pub fn set_path(&mut self, a: NodeId, b: NodeId, cfg: LinkConfig) {
        self.set_link(a, b, cfg.clone());
        self.set_link(b, a, cfg);
    }

    /// The settings of the link from `from` to `to`.
    pub fn link_config(&self, from: NodeId, to: NodeId) -> &LinkConfig {
        self.links.get(&(from.0, to.0)).map_or(&self.default_link, |l| &l.cfg)
    }

    /// Cuts every path between a node of `a` and a node of `b`, both ways.
    /// Datagrams sent across the cut are dropped; those already in flight
    /// still arrive.
    pub fn partition(&mut self, a: &[NodeId], b: &[NodeId]) {
        for &x in a {
            for &y in b {
                self.partitions.insert((x.0, y.0));
                self.partitions.insert((y.0, x.0));
            }
        }
    }

    /// Cuts the link from `from` to `to` only.
    pub fn partition_one_way(&mut self, from: NodeId, to: NodeId) {
        self.partitions.insert((from.0, to.0));
    }

    /// Heals every partition.
    pub fn heal(&mut self) {
        self.partitions.clear();
    }

    /// Heals the partition between `a` and `b`, both ways.
    pub fn heal_between(&mut self, a: NodeId, b: NodeId) {
        self.partitions.remove(&(a.0, b.0));
        self.partitions.remove(&(b.0, a.0));
    }

    /// Whether the link from `from` to `to` is cut.
    pub fn is_partitioned(&self, from: NodeId, to: NodeId) -> bool {
        self.partitions.contains(&(from.0, to.0))
    }

    // ----- surgery -------------------------------------------------------

    /// Drops the next `n` datagrams sent from `from` to `to` (added to any
    /// already scheduled).
    pub fn drop_next(&mut self, from: NodeId, to: NodeId, n: u64) {
        self.link_mut(from.0, to.0).drop_next += n;
    }

    /// Holds every datagram sent from `from` to `to` until
    /// [`release`](Sim::release).
    pub fn hold(&mut self, from: NodeId, to: NodeId) {
        let link = self.link_mut(from.0, to.0);
        if link.held.is_none() {
            link.held = Some(Default::default());
        }
    }

    /// Releases a held link: the held datagrams arrive in order after the
    /// link's latency (no loss or other impairment), and new ones pass
    /// normally. Returns how many were held.
    pub fn release(&mut self, from: NodeId, to: NodeId) -> usize {
        let now = self.now;
        let from_addr = self.addr(from);
        let to_addr = self.addr(to);
        let link = self.link_mut(from.0, to.0);
        let Some(held) = link.held.take() else {
            return 0;
        };
        let arrivals: Vec<(Instant, u64, Vec<u8>)> =
            held.into_iter().map(|(id, bytes)| (link.release_arrival(now), id, bytes)).collect();
        let n = arrivals.len();
        for (at, id, bytes) in arrivals {
            self.record(id, TraceKind::Release, from_addr, to_addr, &bytes, false);
            self.stats.released += 1;
            self.schedule(at, to.0, id, from_addr, bytes);
        }
        n
    }

    /// Puts raw bytes on the network from any address (a spoofer, a
    /// stranger, garbage) to `to`, arriving after `delay`. No link applies.
    /// Returns the datagram's trace id.
    pub fn inject(&mut self, from: SocketAddr, to: SocketAddr, bytes: Vec<u8>, delay: Duration) -> u64 {
        self.stats.injected += 1;
        self.put(from, to, bytes, delay, TraceKind::Inject)
    }

    /// Puts a captured datagram on the network again, from its original
    /// source to its original destination, arriving after `delay`. Returns
    /// the copy's trace id.
    pub fn replay(&mut self, d: &Datagram, delay: Duration) -> u64 {
        self.stats.replayed += 1;
        self.put(d.from, d.to, d.bytes.clone(), delay, TraceKind::Replay)
    }

    fn put(&mut self, from: SocketAddr, to: SocketAddr, bytes: Vec<u8>, delay: Duration, kind: TraceKind) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.record(id, kind, from, to, &bytes, true);
        match self.node_at(to) {
            Some(node) => self.schedule(self.now + delay, node.0, id, from, bytes),
            None => self.drop_dgram(id, DropCause::NoRoute, from, to, &bytes),
        }
        id
    }

    /// Keeps a copy of every datagram endpoints send from now on for which
    /// `filter` returns true (see [`Sim::captured`], [`Sim::replay`]).
    /// Replaces any earlier filter.
    pub fn capture(&mut self, filter: impl FnMut(&Datagram) -> bool + 'static) {
        self.capture = Some(Box::new(filter));
    }

    /// Stops capturing (what was captured stays).
    pub fn stop_capture(&mut self) {
        self.capture = None;
    }

    /// The datagrams captured so far, in send order.
    pub fn captured(&self) -> &[Datagram] {
        &self.captured
    }

    /// Takes the captured datagrams, leaving none.
    pub fn take_captured(&mut self) -> Vec<Datagram> {
        std::mem::take(&mut self.captured)
    }

    // ----- trace and limits ----------------------------------------------

    /// The trace.
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// SHA-256 of the whole trace so far (see [`Trace::digest`]): equal for
    /// two runs exactly when (with overwhelming probability) every datagram
    /// event and every byte on the wire was the same.
    pub fn digest(&self) -> [u8; 32] {
        self.trace.digest()
    }

    /// Keeps at most `n` trace entries (the most recent; default
    /// [`Trace::DEFAULT_CAPACITY`]). The digest still covers every entry.
    pub fn set_trace_capacity(&mut self, n: usize) {
        self.trace.set_capacity(n);
    }

    /// Counters of the simulated network.
    pub fn stats(&self) -> &SimStats {
        &self.stats
    }

    /// Panics (showing the last trace entries) when one `run_*` call takes
    /// more than `max_steps` steps (default 20 million), or when more than
    /// `max_per_instant` deliveries and timeouts happen at one virtual
    /// instant (default a million).
    pub fn set_step_limit(&mut self, max_steps: u64, max_per_instant: u64) {
        self.step_limit = max_steps;
        self.instant_limit = max_per_instant;
    }

    // ----- running -------------------------------------------------------

    /// When the next datagram arrives or the next timer fires, if anything
    /// is scheduled.
    pub fn next_wakeup(&mut self) -> Option<Instant> {
        self.flush_dirty();
        self.refresh_timers();
        let delivery = self.in_flight.peek().map(|Reverse(d)| d.at);
        let timer = self.next_timer();
        match (delivery, timer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Processes the next instant at which anything happens, if it is not
    /// later than `limit`: every datagram arriving then (in arrival, then
    /// send order), then every timer due then. Returns false, with the
    /// clock moved to `limit`, when nothing is due by `limit`.
    pub fn step(&mut self, limit: Instant) -> bool {
        let Some(next) = self.next_wakeup().filter(|&t| t <= limit) else {
            if limit != Instant::MAX {
                self.now = self.now.max(limit);
            }
            return false;
        };
        self.now = self.now.max(next);
        self.stats.steps += 1;
        self.run_steps += 1;
        if self.run_steps > self.step_limit {
            self.fail(&format!(
                "livelock? more than {} steps in one run call (raise it with Sim::set_step_limit if the run is legitimately this long)",
                self.step_limit
            ));
        }
        while self.in_flight.peek().is_some_and(|Reverse(d)| d.at <= self.now) {
            let Some(Reverse(d)) = self.in_flight.pop() else { break };
            self.deliver(d);
        }
        self.refresh_timers();
        while let Some(n) = self.pop_due_timer() {
            self.fire(n);
        }
        true
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        self.advance_to(self.now + d);
    }

    /// Runs until the clock reaches `t`.
    pub fn advance_to(&mut self, t: Instant) {
        self.run_steps = 0;
        while self.step(t) {}
    }

    /// Runs until `cond` holds (checked before every step) or `limit` of
    /// virtual time passes; returns whether it held.
    pub fn run_until(&mut self, mut cond: impl FnMut(&Sim) -> bool, limit: Duration) -> bool {
        self.run_steps = 0;
        let deadline = self.now + limit;
        loop {
            self.flush_dirty();
            if cond(self) {
                return true;
            }
            if !self.step(deadline) {
                return cond(self);
            }
        }
    }

    // ----- internals -----------------------------------------------------

    fn fail(&self, what: &str) -> ! {
        panic!(
            "mpgameserver-sim (seed {}): {what} at {}. Last {PANIC_TAIL} trace entries:\n{}",
            self.seed,
            self.now,
            self.trace.tail(PANIC_TAIL)
        );
    }

    fn count_action(&mut self) {
        if self.busy_instant != self.now {
            self.busy_instant = self.now;
            self.busy_actions = 0;
        }
        self.busy_actions += 1;
        if self.busy_actions > self.instant_limit {
            self.fail(&format!(
                "livelock: more than {} deliveries and timeouts at one instant without time advancing",
                self.instant_limit
            ));
        }
    }

    fn record(&mut self, id: u64, kind: TraceKind, from: SocketAddr, to: SocketAddr, bytes: &[u8], hash: bool) {
        let entry = TraceEntry { at: self.now, id, kind, from, to, len: bytes.len(), msg_type: msg_type_of(bytes) };
        self.trace.record(entry, hash.then_some(bytes));
    }

    fn drop_dgram(&mut self, id: u64, cause: DropCause, from: SocketAddr, to: SocketAddr, bytes: &[u8]) {
        self.stats.dropped[cause as usize] += 1;
        self.record(id, TraceKind::Drop(cause), from, to, bytes, false);
    }

    fn schedule(&mut self, at: Instant, to: u32, id: u64, from: SocketAddr, bytes: Vec<u8>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.in_flight.push(Reverse(InFlight { at, seq, to, id, from, bytes }));
    }

    fn flush_dirty(&mut self) {
        while let Some(n) = self.dirty.pop() {
            if self.nodes[n as usize].dirty {
                self.flush(n);
            }
        }
    }

    /// Drains the node's datagrams, then its events (running its handler),
    /// until both are empty; then reschedules its timer.
    fn flush(&mut self, n: u32) {
        let now = self.now;
        let mut out = std::mem::take(&mut self.outbox);
        loop {
            let node = &mut self.nodes[n as usize];
            node.dirty = false;
            while let Some(t) = node.ep.poll_transmit(now, &mut self.buf) {
                out.push((t.destination, self.buf[..t.len].to_vec()));
            }
            let mut handled = false;
            while let Some(event) = node.ep.poll_event() {
                if let Some(h) = node.handler.as_mut() {
                    h(&mut node.ep, now, &event);
                    handled = true;
                }
                if node.record {
                    node.events.push(event);
                    node.event_times.push(now);
                }
            }
            for (to, bytes) in out.drain(..) {
                self.route(n, to, bytes);
            }
            if !handled {
                break;
            }
        }
        self.outbox = out;
        self.mark_stale(n);
    }

    /// Puts a datagram from node `from` on the link to `to`.
    fn route(&mut self, from: u32, to: SocketAddr, mut bytes: Vec<u8>) {
        let id = self.next_id;
        self.next_id += 1;
        let from_addr = self.nodes[from as usize].addr;
        self.stats.datagrams_sent += 1;
        self.record(id, TraceKind::Send, from_addr, to, &bytes, true);
        if let Some(filter) = self.capture.as_mut() {
            let d = Datagram { id, from: from_addr, to, bytes, sent_at: self.now };
            if filter(&d) {
                self.captured.push(d.clone());
            }
            bytes = d.bytes;
        }
        let Some(dest) = self.node_at(to) else {
            return self.drop_dgram(id, DropCause::NoRoute, from_addr, to, &bytes);
        };
        let now = self.now;
        let partitioned = self.partitions.contains(&(from, dest.0));
        let link = self.link_mut(from, dest.0);
        let fate = if partitioned {
            Fate::Dropped(DropCause::Partition)
        } else if link.drop_next > 0 {
            link.drop_next -= 1;
            Fate::Dropped(DropCause::Scripted)
        } else if link.too_large(bytes.len()) {
            Fate::Dropped(DropCause::Mtu)
        } else if link.held.is_some() {
            Fate::Held
        } else if link.lose() {
            Fate::Dropped(DropCause::Loss)
        } else {
            match link.pass(now, bytes.len()) {
                Some(p) => Fate::Pass(p),
                None => Fate::Dropped(DropCause::QueueFull),
            }
        };
        match fate {
            Fate::Dropped(cause) => self.drop_dgram(id, cause, from_addr, to, &bytes),
            Fate::Held => {
                self.stats.held += 1;
                self.record(id, TraceKind::Hold, from_addr, to, &bytes, false);
                if let Some(held) = self.link_mut(from, dest.0).held.as_mut() {
                    held.push_back((id, bytes));
                }
            }
            Fate::Pass(p) => {
                if let Some((at, corrupt)) = p.duplicate {
                    let mut copy = bytes.clone();
                    self.stats.duplicated += 1;
                    self.record(id, TraceKind::Duplicate, from_addr, to, &copy, false);
                    if corrupt {
                        self.corrupt(from, dest.0, id, to, &mut copy);
                    }
                    self.schedule(at, dest.0, id, from_addr, copy);
                }
                if p.corrupt {
                    self.corrupt(from, dest.0, id, to, &mut bytes);
                }
                self.schedule(p.arrive, dest.0, id, from_addr, bytes);
            }
        }
    }

    fn corrupt(&mut self, from: u32, to: u32, id: u64, to_addr: SocketAddr, bytes: &mut [u8]) {
        let bits = self.link_mut(from, to).flip_bits(bytes);
        if bits > 0 {
            self.stats.corrupted += 1;
            let from_addr = self.nodes[from as usize].addr;
            self.record(id, TraceKind::Corrupt { bits }, from_addr, to_addr, bytes, true);
        }
    }

    fn deliver(&mut self, mut d: InFlight) {
        self.count_action();
        let to_addr = self.nodes[d.to as usize].addr;
        self.record(d.id, TraceKind::Deliver, d.from, to_addr, &d.bytes, false);
        self.stats.datagrams_delivered += 1;
        let now = self.now;
        self.nodes[d.to as usize].ep.handle_datagram(now, d.from, &mut d.bytes);
        self.flush(d.to);
    }

    /// Calls the node's `handle_timeout` and checks the progress property.
    fn fire(&mut self, n: u32) {
        self.count_action();
        self.stats.timeouts += 1;
        let now = self.now;
        let node = &mut self.nodes[n as usize];
        node.timer = None;
        if let Some(frame) = node.frame {
            while node.next_frame <= now {
                node.next_frame += frame;
            }
        }
        node.ep.handle_timeout(now);
        // Read before draining: the property is about handle_timeout alone.
        let next = node.ep.poll_timeout();
        self.stats.progress_checks += 1;
        if let Some(t) = next.filter(|&t| t <= now) {
            let addr = self.nodes[n as usize].addr;
            self.fail(&format!(
                "progress violated: after handle_timeout({now}) the endpoint of node#{n} ({addr}) returned poll_timeout() = {t}, not None or later"
            ));
        }
        self.flush(n);
    }

    fn mark_stale(&mut self, n: u32) {
        let node = &mut self.nodes[n as usize];
        if !node.timer_stale {
            node.timer_stale = true;
            self.stale.push(n);
        }
    }

    /// Recomputes the stale timers, in node order.
    fn refresh_timers(&mut self) {
        if self.stale.is_empty() {
            return;
        }
        let mut stale = std::mem::take(&mut self.stale);
        stale.sort_unstable();
        for &n in &stale {
            self.schedule_timer(n);
        }
        stale.clear();
        self.stale = stale;
    }

    /// Recomputes the node's timer and queues it if it changed.
    fn schedule_timer(&mut self, n: u32) {
        let node = &mut self.nodes[n as usize];
        node.timer_stale = false;
        let mut t = node.ep.poll_timeout();
        if node.frame.is_some() {
            t = Some(t.map_or(node.next_frame, |t| t.min(node.next_frame)));
        }
        if t != node.timer {
            node.timer = t;
            if let Some(t) = t {
                self.timers.push(Reverse((t, n)));
                if self.timers.len() > 4 * self.nodes.len() + 1024 {
                    self.compact_timers();
                }
            }
        }
    }

    /// Drops stale timer entries.
    fn compact_timers(&mut self) {
        self.timers = self.nodes.iter().enumerate().filter_map(|(i, n)| Some(Reverse((n.timer?, i as u32)))).collect();
    }

    /// The earliest live timer, discarding stale heap entries.
    fn next_timer(&mut self) -> Option<Instant> {
        while let Some(&Reverse((t, n))) = self.timers.peek() {
            if self.nodes[n as usize].timer == Some(t) {
                return Some(t);
            }
            self.timers.pop();
        }
        None
    }

    fn pop_due_timer(&mut self) -> Option<u32> {
        let t = self.next_timer()?;
        if t > self.now {
            return None;
        }
        self.timers.pop().map(|Reverse((_, n))| n)
    }
}

impl fmt::Debug for Sim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sim")
            .field("seed", &self.seed)
            .field("now", &self.now)
            .field("nodes", &self.nodes.len())
            .field("in_flight", &self.in_flight.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simultaneous_arrivals_leave_in_send_order() {
        let addr: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let mut heap = BinaryHeap::new();
        let at = Instant::from_millis(5);
        for (seq, t) in [(0, at), (1, Instant::from_millis(1)), (2, at), (3, at), (4, Instant::from_millis(9))] {
            heap.push(Reverse(InFlight { at: t, seq, to: 0, id: seq, from: addr, bytes: Vec::new() }));
        }
        let order: Vec<u64> = std::iter::from_fn(|| heap.pop().map(|Reverse(d)| d.seq)).collect();
        assert_eq!(order, [1, 0, 2, 3, 4]);
    }

    #[test]
    fn auto_addresses_are_distinct_in_both_families() {
        let mut sim = Sim::new(1);
        let v4: Vec<SocketAddr> = (0..300).map(|i| sim.auto_addr(i, i % 2 == 0)).collect();
        sim.use_ipv6(true);
        let v6: Vec<SocketAddr> = (0..300).map(|i| sim.auto_addr(i, false)).collect();
        let all: BTreeSet<SocketAddr> = v4.iter().chain(&v6).copied().collect();
        assert_eq!(all.len(), 600);
        assert!(v4.iter().all(SocketAddr::is_ipv4) && v6.iter().all(SocketAddr::is_ipv6));
    }
}
