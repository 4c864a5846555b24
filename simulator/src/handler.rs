//! Running game logic written as an [`EventHandler`] (the trait the socket
//! drivers run) on a node of the simulation, ticking at a fixed rate in
//! virtual time: [`Sim::run_handler`], [`Sim::stop_handler`].

use std::cell::{Ref, RefCell, RefMut};
use std::collections::BTreeSet;
use std::fmt;
use std::rc::Rc;

use mpgameserver::{ConnectionId, Context, DisconnectReason, Duration, Endpoint, Event, EventHandler, Instant};

use crate::sim::{NodeId, Sim};

/// Highest tick rate [`Sim::run_handler`] accepts (one tick per
/// millisecond of virtual time).
pub const MAX_TICK_HZ: u32 = 1000;

/// A tick rate of zero or above [`MAX_TICK_HZ`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TickRateError {
    /// The rate asked for.
    pub hz: u32,
}

impl fmt::Display for TickRateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tick rate {} Hz is out of range: use 1 to {MAX_TICK_HZ} ticks per second", self.hz)
    }
}

impl std::error::Error for TickRateError {}

struct Shared<H> {
    handler: H,
    /// Connections the handler was told `connect` and not yet `disconnect`.
    live: BTreeSet<ConnectionId>,
    last_update: Instant,
    ticks: u64,
    stop_requested: bool,
    finished: bool,
}

impl<H: EventHandler> Shared<H> {
    /// Runs `f` with a context over `ep`, noting a stop request.
    fn call(&mut self, ep: &mut Endpoint, now: Instant, f: impl FnOnce(&mut H, &mut Context<'_>)) {
        if self.finished {
            return;
        }
        let mut ctx = Context::new(ep, now);
        f(&mut self.handler, &mut ctx);
        self.stop_requested |= ctx.stop_requested();
    }

    fn on_event(&mut self, ep: &mut Endpoint, now: Instant, event: &Event) {
        match *event {
            Event::Connected { conn } if !self.finished => {
                self.live.insert(conn);
            }
            // Exactly once per connection the handler knows, also after `stop_handler`.
            Event::Disconnected { conn, .. } if !self.live.remove(&conn) => return,
            _ => {}
        }
        self.call(ep, now, |h, ctx| mpgameserver::dispatch(h, ctx, event.clone()));
    }

    fn on_tick(&mut self, ep: &mut Endpoint, now: Instant) {
        let dt = now - self.last_update;
        self.last_update = now;
        self.ticks += 1;
        self.call(ep, now, |h, ctx| h.update(ctx, dt));
    }
}

/// The handler [`Sim::run_handler`] runs, to look at between runs (its
/// game state, what it received) and to stop it.
///
/// The simulator calls the handler while it runs; a borrow held across a
/// `run_*` call panics there, so borrow, read, and drop the borrow.
pub struct HandlerRef<H> {
    node: NodeId,
    shared: Rc<RefCell<Shared<H>>>,
}

impl<H> HandlerRef<H> {
    /// The node it runs on.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// The handler, to read.
    pub fn borrow(&self) -> Ref<'_, H> {
        Ref::map(self.shared.borrow(), |s| &s.handler)
    }

    /// The handler, to change (an input from the test, for instance). What
    /// it sends must go through [`Sim::with_endpoint`].
    pub fn borrow_mut(&self) -> RefMut<'_, H> {
        RefMut::map(self.shared.borrow_mut(), |s| &mut s.handler)
    }

    /// `update` calls so far.
    pub fn ticks(&self) -> u64 {
        self.shared.borrow().ticks
    }

    /// Whether the handler called [`Context::stop`]; stop it with
    /// [`Sim::stop_handler`].
    pub fn stop_requested(&self) -> bool {
        self.shared.borrow().stop_requested
    }

    /// Connections the handler was told `connect` and not yet `disconnect`.
    pub fn live_connections(&self) -> Vec<ConnectionId> {
        self.shared.borrow().live.iter().copied().collect()
    }
}

impl<H> fmt::Debug for HandlerRef<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.shared.borrow();
        f.debug_struct("HandlerRef")
            .field("node", &self.node)
            .field("ticks", &s.ticks)
            .field("live", &s.live.len())
            .finish_non_exhaustive()
    }
}

impl Sim {
    /// Runs `handler` on `node` as a socket driver would, in virtual time:
    /// `starting` now; each event of the node's endpoint as it is drained
    /// (`connect`, `handle_message`, `delivered`, `lost`, `disconnect`,
    /// `connect_failed`); and `update(dt)` every `1/tick_hz` seconds, after
    /// the node's `handle_timeout` (the frame interval is set to the tick).
    ///
    /// Works for servers and clients alike: on a client node, call
    /// [`Sim::connect`] afterwards (or connect from `starting` through
    /// [`Context::endpoint_mut`]). It replaces the node's [`Handler`](crate::Handler); events
    /// are still recorded. The returned [`HandlerRef`] reads the handler
    /// between runs.
    ///
    /// ```
    /// use mpgameserver::{ConnectionId, Context, Delivery, Duration, EndpointConfig, EventHandler, Rng, Seed, ServerKey};
    /// use mpgameserver_sim::{LinkConfig, Sim};
    ///
    /// /// A server that counts its ticks and tells every client about each.
    /// #[derive(Default)]
    /// struct Server { ticks: u32 }
    /// impl EventHandler for Server {
    ///     fn update(&mut self, ctx: &mut Context<'_>, _dt: Duration) {
    ///         self.ticks += 1;
    ///         let _ = ctx.broadcast(&self.ticks.to_le_bytes(), Delivery::Unreliable.unreported());
    ///     }
    ///     fn handle_message(&mut self, _: &mut Context<'_>, _: ConnectionId, _: Vec<u8>) {}
    /// }
    ///
    /// /// A client that keeps the newest tick it heard of.
    /// #[derive(Default)]
    /// struct Client { newest: u32 }
    /// impl EventHandler for Client {
    ///     fn handle_message(&mut self, _: &mut Context<'_>, _: ConnectionId, payload: Vec<u8>) {
    ///         let tick = u32::from_le_bytes(payload.try_into().unwrap_or_default());
    ///         self.newest = self.newest.max(tick);
    ///     }
    /// }
    ///
    /// let mut sim = Sim::new(7);
    /// sim.set_default_link(LinkConfig::wifi());
    /// let key = ServerKey::generate(&mut Rng::new(Seed::from_u64(1)));
    /// let server = sim.add_server(EndpointConfig::default(), key).unwrap();
    /// let client = sim.add_client(EndpointConfig::default()).unwrap();
    /// let s = sim.run_handler(server, Server::default(), 30).unwrap();
    /// let c = sim.run_handler(client, Client::default(), 60).unwrap();
    /// sim.connect(client, server).unwrap();
    /// sim.run_for(Duration::from_secs(2));
    /// assert_eq!(s.ticks(), 60);
    /// assert!(c.borrow().newest > 50);
    /// sim.stop_handler(&s, Duration::from_secs(1));
    /// ```
    pub fn run_handler<H: EventHandler + 'static>(
        &mut self,
        node: NodeId,
        handler: H,
        tick_hz: u32,
    ) -> Result<HandlerRef<H>, TickRateError> {
        if tick_hz == 0 || tick_hz > MAX_TICK_HZ {
            return Err(TickRateError { hz: tick_hz });
        }
        let period = Duration::from_micros(1_000_000 / u64::from(tick_hz));
        let now = self.now();
        let shared = Rc::new(RefCell::new(Shared {
            handler,
            live: BTreeSet::new(),
            last_update: now,
            ticks: 0,
            stop_requested: false,
            finished: false,
        }));
        let events = shared.clone();
        self.set_handler(node, move |ep, now, event| events.borrow_mut().on_event(ep, now, event));
        let ticks = shared.clone();
        self.set_frame_hook(node, Some(Box::new(move |ep, now| ticks.borrow_mut().on_tick(ep, now))));
        self.set_frame_interval(node, Some(period));
        self.with_endpoint(node, |ep, now| shared.borrow_mut().call(ep, now, |h, ctx| h.starting(ctx)));
        Ok(HandlerRef { node, shared })
    }

    /// Stops a handler as a driver stops its server: disconnects every
    /// connection of its node, runs the simulation until each is reported
    /// to `disconnect` or `linger` of virtual time passes (the rest are
    /// reported with [`DisconnectReason::Local`]), then calls `shutdown`.
    /// The node keeps running without the handler.
    pub fn stop_handler<H: EventHandler + 'static>(&mut self, handler: &HandlerRef<H>, linger: Duration) {
        let node = handler.node;
        let conns: Vec<ConnectionId> = self.endpoint(node).connections().collect();
        for conn in conns {
            let _ = self.disconnect(node, conn);
        }
        let shared = handler.shared.clone();
        self.run_until(|_| shared.borrow().live.is_empty(), linger);
        self.with_endpoint(node, |ep, now| {
            let mut s = shared.borrow_mut();
            let live = std::mem::take(&mut s.live);
            s.call(ep, now, |h, ctx| {
                for conn in live {
                    h.disconnect(ctx, conn, DisconnectReason::Local);
                }
                h.shutdown(ctx);
            });
            s.finished = true;
        });
        self.clear_handler(node);
        self.set_frame_hook(node, None);
        self.set_frame_interval(node, None);
    }
}
