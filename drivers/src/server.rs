//! What both server drivers share: the [`EventHandler`] trait, the
//! [`ServerContext`] its methods get, the [`StopHandle`], and the server loop
//! itself minus the waiting (`ServerCore`).

use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mpgameserver::{
    Connection, ConnectionId, Delivery, DisconnectReason, Duration, Endpoint, EndpointStats, Event, Instant, IpNet,
    MessageId, SendError, ServerKey, UnknownConnection,
};

use crate::clock::{Clock, os_seed};
use crate::config::{ServerConfig, StartError};
use crate::counters::EventCounts;
use crate::io::{Flushed, Io};

/// Application callbacks of a server: the shape of MpGameServer's
/// `EventHandler`, in Rust form.
///
/// Every method runs on the driver's thread (or task) and gets a
/// [`ServerContext`] to send, disconnect or ban. Connection events and
/// messages are handed over as soon as their datagrams arrive; `update`
/// runs at the configured tick rate, also when no client is connected.
///
/// Order: `starting`, then for each client `connect`, its messages and
/// delivery reports, and `disconnect` (exactly once, also when the server
/// stops), interleaved with `update`; `shutdown` last.
pub trait EventHandler {
    /// The server is about to start serving.
    fn starting(&mut self, ctx: &mut ServerContext<'_>) {
        let _ = ctx;
    }

    /// A client completed its handshake.
    fn connect(&mut self, ctx: &mut ServerContext<'_>, conn: ConnectionId) {
        let _ = (ctx, conn);
    }

    /// A client's connection ended. Its handle is dead:
    /// [`ServerContext::connection`] returns `None` for it.
    fn disconnect(&mut self, ctx: &mut ServerContext<'_>, conn: ConnectionId, reason: DisconnectReason) {
        let _ = (ctx, conn, reason);
    }

    /// One tick; `dt` is the time since the previous one (or since
    /// `starting`).
    fn update(&mut self, ctx: &mut ServerContext<'_>, dt: Duration) {
        let _ = (ctx, dt);
    }

    /// A message from a client.
    fn handle_message(&mut self, ctx: &mut ServerContext<'_>, conn: ConnectionId, payload: Vec<u8>);

    /// Message `id` sent to `conn` was acknowledged.
    fn delivered(&mut self, ctx: &mut ServerContext<'_>, conn: ConnectionId, id: MessageId) {
        let _ = (ctx, conn, id);
    }

    /// Message `id` sent to `conn` will not be delivered (or its delivery
    /// cannot be confirmed).
    fn lost(&mut self, ctx: &mut ServerContext<'_>, conn: ConnectionId, id: MessageId) {
        let _ = (ctx, conn, id);
    }

    /// The server has stopped: every client was told `disconnect`.
    fn shutdown(&mut self, ctx: &mut ServerContext<'_>) {
        let _ = ctx;
    }
}

/// What a handler can do from its callbacks.
pub struct ServerContext<'a> {
    ep: &'a mut Endpoint,
    now: Instant,
    stop: &'a AtomicBool,
}

impl<'a> ServerContext<'a> {
    fn new(ep: &'a mut Endpoint, now: Instant, stop: &'a AtomicBool) -> ServerContext<'a> {
        ServerContext { ep, now, stop }
    }

    /// The driver's current time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Queues a message to a client; it leaves when this callback returns.
    /// A `Delivered` or `Lost` report follows (see [`EventHandler::delivered`]).
    pub fn send(&mut self, conn: ConnectionId, data: &[u8], delivery: Delivery) -> Result<MessageId, SendError> {
        self.ep.send(conn, data, delivery)
    }

    /// Closes a client's connection gracefully; `disconnect` follows once it
    /// acknowledges (or after the linger time).
    pub fn disconnect(&mut self, conn: ConnectionId) -> Result<(), UnknownConnection> {
        self.ep.disconnect(self.now, conn)
    }

    /// Disconnects a client and blocks its IP address.
    pub fn ban(&mut self, conn: ConnectionId) -> Result<(), UnknownConnection> {
        self.ep.ban(self.now, conn)
    }

    /// Blocks an address or range (`"10.0.0.0/8".parse::<IpNet>()`); live
    /// connections from it stay until disconnected or banned. Returns false
    /// if it was already blocked.
    pub fn block(&mut self, net: impl Into<IpNet>) -> bool {
        self.ep.block(net)
    }

    /// Removes a range exactly as it was blocked. Returns false if absent.
    pub fn unblock(&mut self, net: impl Into<IpNet>) -> bool {
        self.ep.unblock(net)
    }

    /// A live connection: its address, state and metrics.
    pub fn connection(&self, conn: ConnectionId) -> Option<&Connection> {
        self.ep.connection(conn)
    }

    /// Every connected client.
    pub fn connections(&self) -> impl Iterator<Item = ConnectionId> + '_ {
        self.ep.connections()
    }

    /// Endpoint counters (datagrams dropped by reason, handshakes, ...).
    pub fn stats(&self) -> &EndpointStats {
        self.ep.stats()
    }

    /// The endpoint itself, read-only.
    pub fn endpoint(&self) -> &Endpoint {
        self.ep
    }

    /// Asks the server to stop: it disconnects every client, reports each
    /// one to `disconnect`, calls `shutdown` and returns from `run`.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Stops a running server from any thread: cheap to clone, `Send`.
#[derive(Clone, Debug)]
pub struct StopHandle(Arc<AtomicBool>);

impl StopHandle {
    /// Asks the server to stop. It notices within one tick, disconnects
    /// every client (waiting up to the endpoint's `disconnect_linger` for
    /// their acknowledgements), reports each to the handler's `disconnect`
    /// with [`DisconnectReason::Shutdown`], calls `shutdown` and returns from
    /// `run`. Stopping is final.
    pub fn stop(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether a stop was requested.
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// The flag itself (set by signal handlers, shared by workers).
    #[cfg_attr(not(feature = "signals"), allow(dead_code))]
    pub(crate) fn flag(&self) -> &Arc<AtomicBool> {
        &self.0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    NotStarted,
    Running,
    Stopping { deadline: Instant },
    Finished,
}

/// What the driver's loop does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Wait (for a datagram, writability if blocked, or the deadline).
    Wait,
    /// The server has shut down.
    Finished,
}

/// The server loop without its waiting: both drivers wait for the socket
/// or [`ServerCore::deadline`], then call [`ServerCore::step`].
pub(crate) struct ServerCore {
    pub(crate) ep: Endpoint,
    pub(crate) clock: Clock,
    pub(crate) io: Io,
    /// Connections the handler was told about and not yet disconnected.
    live: BTreeSet<ConnectionId>,
    /// Scratch list for shutdown (reused).
    scratch: Vec<ConnectionId>,
    stop: StopHandle,
    period: Duration,
    next_tick: Instant,
    last_update: Instant,
    phase: Phase,
    linger: Duration,
    /// Event totals for the metrics export.
    pub(crate) counts: EventCounts,
    /// Answers the metrics endpoint's requests for a snapshot.
    #[cfg(feature = "metrics")]
    pub(crate) metrics: Option<crate::metrics::Reporter>,
}

impl ServerCore {
    pub(crate) fn new(config: ServerConfig, key: ServerKey) -> Result<ServerCore, StartError> {
        let period = config.tick_period()?;
        let clock = Clock::new();
        let mut cfg = config.endpoint;
        cfg.unix_time_origin = clock.unix_time_origin();
        let linger = cfg.disconnect_linger;
        let ep = Endpoint::server(cfg, key, os_seed()?)?;
        Ok(ServerCore {
            ep,
            clock,
            io: Io::new(),
            live: BTreeSet::new(),
            scratch: Vec::new(),
            stop: StopHandle(Arc::new(AtomicBool::new(false))),
            period,
            next_tick: Instant::ZERO,
            last_update: Instant::ZERO,
            phase: Phase::NotStarted,
            linger,
            counts: EventCounts::default(),
            #[cfg(feature = "metrics")]
            metrics: None,
        })
    }

    /// Shares `stop` with other servers (the workers of one port).
    pub(crate) fn with_stop(mut self, stop: StopHandle) -> ServerCore {
        self.stop = stop;
        self
    }

    pub(crate) fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Calls `starting` and begins ticking.
    pub(crate) fn start(&mut self, socket: &UdpSocket, handler: &mut impl EventHandler) {
        if self.phase != Phase::NotStarted {
            return;
        }
        let now = self.clock.now();
        handler.starting(&mut ServerContext::new(&mut self.ep, now, &self.stop.0));
        self.phase = Phase::Running;
        self.last_update = now;
        self.next_tick = now + self.period;
        self.flush(socket, handler, now);
        tracing::info!(tick_hz = 1_000_000 / self.period.as_micros().max(1), "server running");
    }

    /// Until when the driver may wait for the socket (the next tick, timer
    /// or the end of shutdown).
    pub(crate) fn deadline(&mut self) -> Instant {
        let timer = self.ep.poll_timeout().unwrap_or(Instant::MAX);
        match self.phase {
            Phase::Running => timer.min(self.next_tick),
            Phase::Stopping { deadline } => timer.min(deadline),
            Phase::NotStarted | Phase::Finished => Instant::ZERO,
        }
    }

    /// One pass: receive every waiting datagram, run the timers, flush,
    /// tick if due, and handle a stop request.
    pub(crate) fn step(&mut self, socket: &UdpSocket, handler: &mut impl EventHandler) -> Step {
        match self.phase {
            Phase::NotStarted => self.start(socket, handler),
            Phase::Finished => return Step::Finished,
            Phase::Running | Phase::Stopping { .. } => {}
        }
        self.io.drain(socket, &mut self.ep, &self.clock);
        let now = self.clock.now();
        self.ep.handle_timeout(now);
        self.flush(socket, handler, now);

        match self.phase {
            Phase::Running if self.stop.is_stopped() => self.begin_shutdown(socket, handler, now),
            Phase::Running if now >= self.next_tick => {
                let dt = now - self.last_update;
                self.last_update = now;
                self.next_tick += self.period;
                if self.next_tick <= now {
                    // Far behind (a slow handler or a suspended process): skip
                    // the missed ticks instead of running them back to back.
                    self.next_tick = now + self.period;
                }
                handler.update(&mut ServerContext::new(&mut self.ep, now, &self.stop.0), dt);
                self.flush(socket, handler, now);
            }
            _ => {}
        }
        if let Phase::Stopping { deadline } = self.phase
            && (self.live.is_empty() || now >= deadline)
        {
            self.finish(socket, handler, now);
            return Step::Finished;
        }
        #[cfg(feature = "metrics")]
        self.report_metrics(now, false);
        Step::Wait
    }

    /// Disconnects every client; `step` finishes once each is reported.
    fn begin_shutdown(&mut self, socket: &UdpSocket, handler: &mut impl EventHandler, now: Instant) {
        tracing::info!(clients = self.live.len(), "server stopping");
        self.scratch.clear();
        self.scratch.extend(self.ep.connections());
        for &conn in &self.scratch {
            let _ = self.ep.disconnect(now, conn);
        }
        // The core closes each connection at its acknowledgement or after the
        // linger time; the margin covers a late tick.
        self.phase = Phase::Stopping { deadline: now + self.linger + self.period * 2 };
        self.flush(socket, handler, now);
    }

    fn finish(&mut self, socket: &UdpSocket, handler: &mut impl EventHandler, now: Instant) {
        let live = std::mem::take(&mut self.live);
        let mut ctx = ServerContext::new(&mut self.ep, now, &self.stop.0);
        for conn in live {
            self.counts.on_disconnect(DisconnectReason::Shutdown);
            handler.disconnect(&mut ctx, conn, DisconnectReason::Shutdown);
        }
        handler.shutdown(&mut ctx);
        self.phase = Phase::Finished;
        // Last datagrams (DISCONNECT replies), best effort.
        let _ = self.io.transmit(socket, &mut self.ep, now);
        // The final figures, for the last scrape.
        #[cfg(feature = "metrics")]
        self.report_metrics(now, true);
        tracing::info!("server stopped");
    }

    /// The shared flush, dispatching events to the handler.
    fn flush(&mut self, socket: &UdpSocket, handler: &mut impl EventHandler, now: Instant) -> Flushed {
        let ServerCore { ep, io, live, stop, phase, counts, .. } = self;
        let stopping = matches!(phase, Phase::Stopping { .. });
        io.flush(socket, ep, now, |ep, mut event| {
            let mut ctx = ServerContext::new(ep, now, &stop.0);
            if let Event::Disconnected { reason: reason @ DisconnectReason::Local, .. } = &mut event
                && stopping
            {
                // The shutdown closed it (or, rarely, the handler did just before the stop).
                *reason = DisconnectReason::Shutdown;
            }
            counts.on_event(&event);
            match event {
                Event::Connected { conn } if stopping => {
                    // Too late: close it without telling the handler.
                    let _ = ctx.ep.disconnect(now, conn);
                }
                Event::Connected { conn } => {
                    live.insert(conn);
                    handler.connect(&mut ctx, conn);
                }
                // Only connections the handler was told about (not those refused while stopping).
                Event::Disconnected { conn, reason } if live.remove(&conn) => {
                    handler.disconnect(&mut ctx, conn, reason);
                }
                Event::Message { conn, payload } if live.contains(&conn) => {
                    handler.handle_message(&mut ctx, conn, payload);
                }
                Event::Delivered { conn, id } if live.contains(&conn) => handler.delivered(&mut ctx, conn, id),
                Event::Lost { conn, id } if live.contains(&conn) => handler.lost(&mut ctx, conn, id),
                _ => {}
            }
        })
    }
}
