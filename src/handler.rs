//! One game-logic interface for every way of running an endpoint: the
//! [`EventHandler`] trait and the [`Context`] its callbacks get.
//!
//! The blocking and smol drivers (`mpgameserver-drivers`) run a handler over
//! a real socket and clock; the simulator (`mpgameserver-sim`,
//! `Sim::run_handler`) runs the very same handler type at a tick rate in
//! virtual time over a lossy network. Game logic written once is tested
//! deterministically and shipped unchanged.
//!
//! A runner owns the endpoint and calls, in this order: `starting`; then,
//! as events are drained, `connect`, `handle_message`, `delivered`/`lost`,
//! `disconnect` (or `connect_failed` on a client), interleaved with
//! `update(dt)` at the tick rate; `shutdown` last. [`dispatch`] maps one
//! [`Event`] to its callback, for runners of your own.

use alloc::vec::Vec;

use crate::blocklist::IpNet;
use crate::endpoint::Endpoint;
use crate::error::{SendError, UnknownConnection};
use crate::event::SendOptions;
use crate::event::{ConnectFailure, ConnectionId, DisconnectReason, Event, MessageId};
use crate::sending::Broadcast;
use crate::session::Connection;
use crate::stats::EndpointStats;
use crate::time::{Duration, Instant};

/// Application callbacks: the shape of MpGameServer's `EventHandler`, in
/// Rust form, for servers and clients alike.
///
/// Every method gets a [`Context`] to send, broadcast, disconnect or ban.
/// Only [`handle_message`](EventHandler::handle_message) is required.
///
/// On a server, `connect`/`disconnect` are its clients; on a client, the
/// server (and `connect_failed` reports a failed attempt).
///
/// # Determinism
///
/// In the simulator, the same seed gives the same run only if the handler is
/// deterministic too: iterate `BTreeMap`s or `Vec`s, never a `HashMap`
/// (its order is random per process); take time from [`Context::now`] and
/// `dt`, never the wall clock; seed any randomness from a fixed seed.
///
/// ```
/// use mpgameserver::{ConnectionId, Context, Delivery, Duration, EventHandler};
///
/// /// Relays every message to the other clients; says "tick" to all each tick.
/// struct Relay;
///
/// impl EventHandler for Relay {
///     fn handle_message(&mut self, ctx: &mut Context<'_>, from: ConnectionId, payload: Vec<u8>) {
///         let _ = ctx.broadcast_except(from, &payload, Delivery::Reliable);
///     }
///
///     fn update(&mut self, ctx: &mut Context<'_>, _dt: Duration) {
///         for conn in ctx.connections() {
///             let _ = ctx.send(conn, b"tick", Delivery::Unreliable.unreported());
///         }
///     }
/// }
/// ```
pub trait EventHandler {
    /// The runner is about to start (before any other callback).
    fn starting(&mut self, ctx: &mut Context<'_>) {
        let _ = ctx;
    }

    /// A connection completed its handshake.
    fn connect(&mut self, ctx: &mut Context<'_>, conn: ConnectionId) {
        let _ = (ctx, conn);
    }

    /// A client's connection attempt failed; the handle is dead.
    fn connect_failed(&mut self, ctx: &mut Context<'_>, conn: ConnectionId, reason: ConnectFailure) {
        let _ = (ctx, conn, reason);
    }

    /// A connection ended. Its handle is dead: [`Context::connection`]
    /// returns `None` for it.
    fn disconnect(&mut self, ctx: &mut Context<'_>, conn: ConnectionId, reason: DisconnectReason) {
        let _ = (ctx, conn, reason);
    }

    /// One tick; `dt` is the time since the previous one (or since
    /// `starting`).
    fn update(&mut self, ctx: &mut Context<'_>, dt: Duration) {
        let _ = (ctx, dt);
    }

    /// A message from a peer.
    fn handle_message(&mut self, ctx: &mut Context<'_>, conn: ConnectionId, payload: Vec<u8>);

    /// Message `id` sent to `conn` was acknowledged (not called for
    /// messages sent [unreported](crate::Delivery::unreported)).
    fn delivered(&mut self, ctx: &mut Context<'_>, conn: ConnectionId, id: MessageId) {
        let _ = (ctx, conn, id);
    }

    /// Message `id` sent to `conn` will not be delivered (or its delivery
    /// cannot be confirmed). Not called for unreported messages.
    fn lost(&mut self, ctx: &mut Context<'_>, conn: ConnectionId, id: MessageId) {
        let _ = (ctx, conn, id);
    }

    /// Channel `channel` of `conn`, whose queue refused a send, has
    /// drained below half its limit (MPGS2.md §4.6): send again.
    fn writable(&mut self, ctx: &mut Context<'_>, conn: ConnectionId, channel: u8) {
        let _ = (ctx, conn, channel);
    }

    /// The runner has stopped: every connection was reported to
    /// `disconnect`.
    fn shutdown(&mut self, ctx: &mut Context<'_>) {
        let _ = ctx;
    }
}

impl<H: EventHandler + ?Sized> EventHandler for &mut H {
    fn starting(&mut self, ctx: &mut Context<'_>) {
        (**self).starting(ctx);
    }
    fn connect(&mut self, ctx: &mut Context<'_>, conn: ConnectionId) {
        (**self).connect(ctx, conn);
    }
    fn connect_failed(&mut self, ctx: &mut Context<'_>, conn: ConnectionId, reason: ConnectFailure) {
        (**self).connect_failed(ctx, conn, reason);
    }
    fn disconnect(&mut self, ctx: &mut Context<'_>, conn: ConnectionId, reason: DisconnectReason) {
        (**self).disconnect(ctx, conn, reason);
    }
    fn update(&mut self, ctx: &mut Context<'_>, dt: Duration) {
        (**self).update(ctx, dt);
    }
    fn handle_message(&mut self, ctx: &mut Context<'_>, conn: ConnectionId, payload: Vec<u8>) {
        (**self).handle_message(ctx, conn, payload);
    }
    fn delivered(&mut self, ctx: &mut Context<'_>, conn: ConnectionId, id: MessageId) {
        (**self).delivered(ctx, conn, id);
    }
    fn lost(&mut self, ctx: &mut Context<'_>, conn: ConnectionId, id: MessageId) {
        (**self).lost(ctx, conn, id);
    }
    fn writable(&mut self, ctx: &mut Context<'_>, conn: ConnectionId, channel: u8) {
        (**self).writable(ctx, conn, channel);
    }
    fn shutdown(&mut self, ctx: &mut Context<'_>) {
        (**self).shutdown(ctx);
    }
}

/// Hands one event to its [`EventHandler`] callback.
pub fn dispatch<H: EventHandler + ?Sized>(handler: &mut H, ctx: &mut Context<'_>, event: Event) {
    match event {
        Event::Connected { conn } => handler.connect(ctx, conn),
        Event::ConnectFailed { conn, reason } => handler.connect_failed(ctx, conn, reason),
        Event::Message { conn, payload, .. } => handler.handle_message(ctx, conn, payload),
        Event::Delivered { conn, id } => handler.delivered(ctx, conn, id),
        Event::Lost { conn, id, .. } => handler.lost(ctx, conn, id),
        Event::Writable { conn, channel } => handler.writable(ctx, conn, channel),
        Event::Disconnected { conn, reason } => handler.disconnect(ctx, conn, reason),
    }
}

/// What a handler can do from its callbacks: an [`Endpoint`] at the
/// runner's current time, and a stop request.
///
/// Runners create one per callback (or per batch of events) with
/// [`Context::new`], and read [`stop_requested`](Context::stop_requested)
/// afterwards. Commands take effect when the callback returns and the
/// runner drains the endpoint.
pub struct Context<'a> {
    ep: &'a mut Endpoint,
    now: Instant,
    stop: bool,
}

/// The name the drivers have always used for [`Context`].
pub type ServerContext<'a> = Context<'a>;

impl<'a> Context<'a> {
    /// A context over `ep` at time `now` (for runners: drivers, the
    /// simulator, your own loop or test).
    pub fn new(ep: &'a mut Endpoint, now: Instant) -> Context<'a> {
        Context { ep, now, stop: false }
    }

    /// The runner's current time (virtual in the simulator).
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Queues a message on `conn`; it leaves when the callback returns.
    /// `options` is a [`Delivery`](crate::Delivery), or
    /// [`Delivery::unreported`](crate::Delivery::unreported) to skip its
    /// `delivered`/`lost` callback.
    pub fn send(
        &mut self,
        conn: ConnectionId,
        data: &[u8],
        options: impl Into<SendOptions>,
    ) -> Result<MessageId, SendError> {
        self.ep.send_with(conn, data, options)
    }

    /// Queues a message on channel `channel` of `conn`; see [`Endpoint::send_on`].
    pub fn send_on(&mut self, conn: ConnectionId, channel: u8, data: &[u8]) -> Result<MessageId, SendError> {
        self.ep.send_on(conn, channel, data)
    }

    /// Sends `data` to every connection; see [`Endpoint::broadcast`].
    pub fn broadcast(&mut self, data: &[u8], options: impl Into<SendOptions>) -> Result<Broadcast, SendError> {
        self.ep.broadcast(data, options)
    }

    /// Sends `data` to every connection but `except`; see
    /// [`Endpoint::broadcast_except`].
    pub fn broadcast_except(
        &mut self,
        except: ConnectionId,
        data: &[u8],
        options: impl Into<SendOptions>,
    ) -> Result<Broadcast, SendError> {
        self.ep.broadcast_except(except, data, options)
    }

    /// Turns `delivered`/`lost` callbacks on or off for messages sent on
    /// `conn` from now on; see [`Endpoint::set_outcome_reports`].
    pub fn set_outcome_reports(&mut self, conn: ConnectionId, on: bool) -> Result<(), UnknownConnection> {
        self.ep.set_outcome_reports(conn, on)
    }

    /// Closes a connection gracefully; `disconnect` follows once the peer
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

    /// Every connection (a server's clients, a client's servers), in a
    /// stable order. The list is a copy, so the loop body may send:
    /// `for c in ctx.connections() { ctx.send(c, ..) }` compiles.
    pub fn connections(&self) -> alloc::vec::IntoIter<ConnectionId> {
        self.ep.connections().collect::<Vec<_>>().into_iter()
    }

    /// Established connections.
    pub fn connection_count(&self) -> usize {
        self.ep.connection_count()
    }

    /// Endpoint counters (datagrams dropped by reason, handshakes, ...).
    pub fn stats(&self) -> &EndpointStats {
        self.ep.stats()
    }

    /// The endpoint itself, read-only.
    pub fn endpoint(&self) -> &Endpoint {
        self.ep
    }

    /// The endpoint itself, for commands the context does not wrap.
    pub fn endpoint_mut(&mut self) -> &mut Endpoint {
        self.ep
    }

    /// Asks the runner to stop: it disconnects every connection, reports
    /// each one to `disconnect`, calls `shutdown` and returns.
    pub fn stop(&mut self) {
        self.stop = true;
    }

    /// Whether [`stop`](Context::stop) was called on this context (for
    /// runners).
    pub fn stop_requested(&self) -> bool {
        self.stop
    }
}

impl core::fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Context").field("now", &self.now).field("stop", &self.stop).finish_non_exhaustive()
    }
}
