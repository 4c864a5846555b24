//! Nodes: one endpoint on one virtual address each, and the commands and
//! event records through which a test drives them.

#[allow(clippy::wildcard_imports, reason = "one type split over files shares its imports")]
use super::*;

/// A node of the simulation: one endpoint on one virtual address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub(super) u32);

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

/// Game logic run on a node's events as they are drained: it may call
/// commands (`send`, `disconnect`, ...) on the endpoint, whose datagrams
/// the simulator then drains. Arguments: the endpoint, the current virtual
/// time, the event.
pub type Handler = Box<dyn FnMut(&mut Endpoint, Instant, &Event)>;

/// Game logic run at every frame of a node (see `Sim::run_handler`).
pub(crate) type FrameHook = Box<dyn FnMut(&mut Endpoint, Instant)>;

pub(super) struct Node {
    pub(super) addr: SocketAddr,
    pub(super) ep: Endpoint,
    /// The root public key of a node added with `add_server`.
    pub(super) server_key: Option<PublicKey>,
    pub(super) events: Vec<Event>,
    pub(super) event_times: Vec<Instant>,
    pub(super) record: bool,
    pub(super) handler: Option<Handler>,
    /// When the simulator will call `handle_timeout` next (the endpoint's
    /// `poll_timeout`, or the next frame if sooner).
    pub(super) timer: Option<Instant>,
    pub(super) frame: Option<Duration>,
    pub(super) next_frame: Instant,
    /// Called at every frame, after `handle_timeout` (a handler's tick).
    pub(super) on_frame: Option<FrameHook>,
    /// Changed through `endpoint_mut`: drain before the next step.
    pub(super) dirty: bool,
    /// Had an input since `timer` was computed.
    pub(super) timer_stale: bool,
}

impl Sim {
    // ----- nodes ---------------------------------------------------------

    /// Makes the automatic addresses of nodes added from now on IPv6
    /// (`[fd00::N]`) instead of IPv4 (`10.x.y.z`).
    pub fn use_ipv6(&mut self, on: bool) {
        self.ipv6 = on;
    }

    /// The automatic address of the node with index `index`: port 4000 for
    /// servers, 5000 for clients.
    pub(super) fn auto_addr(&self, index: usize, server: bool) -> SocketAddr {
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
            on_frame: None,
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

    /// The connection `at` has with node `peer`, if any: an MPGS/1
    /// connection (a server's pending handshakes included) by its address
    /// route, else a server's MPGS/2 connection (routed by connection id,
    /// so found among its connections by address; pending ones excluded).
    pub fn conn_of(&self, at: NodeId, peer: NodeId) -> Option<ConnectionId> {
        let ep = self.endpoint(at);
        let addr = self.addr(peer);
        ep.connection_by_addr(addr)
            .or_else(|| ep.connections().find(|&id| ep.connection(id).is_some_and(|c| c.remote() == addr)))
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

    /// Calls `hook` at every frame of the node (set with
    /// [`set_frame_interval`](Sim::set_frame_interval)), after its
    /// `handle_timeout`; `None` removes it.
    pub(crate) fn set_frame_hook(&mut self, node: NodeId, hook: Option<FrameHook>) {
        self.nodes[node.index()].on_frame = hook;
    }
}
