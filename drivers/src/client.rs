//! What both client drivers share: the client loop minus the waiting
//! (`ClientCore`) and [`DisconnectOutcome`].

use std::collections::VecDeque;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

use mpgameserver::{
    ConnectFailure, Connection, ConnectionId, Context, Delivery, DisconnectReason, Duration, Endpoint, Event,
    EventHandler, Instant, MessageId, PublicKey, SendError,
};

use crate::clock::{Clock, os_seed};
use crate::config::{ClientConfig, ConnectError, StartError};
use crate::io::{self, Flushed, Io};

/// How a client's [`disconnect`](crate::blocking::Client::disconnect) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DisconnectOutcome {
    /// The server acknowledged the disconnect.
    Confirmed,
    /// No confirmation within the wait (or the endpoint's linger time): the
    /// connection is closed on this side; the server will time it out.
    Unconfirmed,
    /// The connection had already ended (the server closed it, or it timed
    /// out); the `Disconnected` event says why.
    AlreadyClosed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    Connecting,
    Connected,
    /// `disconnect` was called; waiting for the end of the connection.
    Closing,
    Failed(ConnectFailure),
    /// Closed; `confirmed` when a datagram from the server closed it after
    /// our disconnect (its acknowledgement or its own DISCONNECT).
    Closed {
        reason: DisconnectReason,
        confirmed: bool,
    },
}

/// The client loop without its waiting: both drivers wait for the socket
/// or [`ClientCore::deadline`], then call [`ClientCore::pump`].
pub(crate) struct ClientCore {
    pub(crate) ep: Endpoint,
    pub(crate) clock: Clock,
    pub(crate) io: Io,
    pub(crate) conn: ConnectionId,
    pub(crate) server: SocketAddr,
    pub(crate) state: State,
    pub(crate) timeout: Duration,
    events: VecDeque<Event>,
    /// A handler run by `dispatch` was told `connect`.
    told_connect: bool,
}

impl ClientCore {
    /// Binds the socket and starts the handshake; the first CLIENT_HELLO
    /// leaves with the first `pump`.
    pub(crate) fn start(
        config: ClientConfig,
        server: SocketAddr,
        server_key: PublicKey,
        timeout: Duration,
    ) -> Result<(ClientCore, UdpSocket), ConnectError> {
        let local = config.bind.unwrap_or(match server {
            SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
        });
        let socket = io::bind(local)?;
        // A large message arrives as a burst of datagrams as fast as the
        // server's window and pacer allow (hundreds at once on a LAN or
        // loopback); the system default (about 200 KB on Linux, some 90
        // full datagrams) dropped part of every 1 MiB echo on loopback, and
        // each drop cut the server's congestion window. Best effort.
        match crate::udp::grow_recv_buffer(&socket, io::CLIENT_RECV_BUFFER) {
            Ok(size) => tracing::debug!(size, "client receive buffer"),
            Err(e) => tracing::debug!(error = %e, "could not size the receive buffer"),
        }
        let clock = Clock::new();
        let mut cfg = config.endpoint;
        cfg.unix_time_origin = clock.unix_time_origin();
        cfg.connect_timeout = timeout;
        let mut ep = Endpoint::client(cfg, os_seed().map_err(StartError::from)?).map_err(StartError::from)?;
        let now = clock.now();
        let conn = ep.connect(now, server, server_key).map_err(ConnectError::Refused)?;
        tracing::debug!(%server, local = ?socket.local_addr().ok(), "connecting");
        let core = ClientCore {
            ep,
            clock,
            io: Io::new(),
            conn,
            server,
            state: State::Connecting,
            timeout,
            events: VecDeque::new(),
            told_connect: false,
        };
        Ok((core, socket))
    }

    /// The connect attempt's result once known.
    pub(crate) fn connect_result(&self) -> Option<Result<(), ConnectError>> {
        let (server, timeout) = (self.server, self.timeout);
        match self.state {
            State::Connecting => None,
            State::Connected | State::Closing | State::Closed { .. } => Some(Ok(())),
            State::Failed(ConnectFailure::WrongServerKey) => Some(Err(ConnectError::WrongServerKey { server })),
            State::Failed(ConnectFailure::Rejected(code)) => Some(Err(ConnectError::Rejected { server, code })),
            State::Failed(ConnectFailure::DowngradeDetected) => Some(Err(ConnectError::DowngradeDetected { server })),
            State::Failed(_) => Some(Err(ConnectError::TimedOut { server, timeout })),
        }
    }

    /// A bound on the whole connect wait, in case the endpoint never
    /// reports: the timeout plus a margin.
    pub(crate) fn connect_deadline(&self, started: Instant) -> Instant {
        started + self.timeout + Duration::from_millis(500)
    }

    /// Until when the driver may wait for the socket: the endpoint's next
    /// timer, capped by `limit`.
    pub(crate) fn deadline(&mut self, limit: Instant) -> Instant {
        self.ep.poll_timeout().map_or(limit, |t| t.min(limit))
    }

    /// One pass: receive every waiting datagram, run the timers, flush.
    pub(crate) fn pump(&mut self, socket: &UdpSocket) -> Flushed {
        self.io.drain(socket, &mut self.ep, &self.clock);
        let now = self.clock.now();
        // Events caused by datagrams first: a close now is a confirmation.
        let ClientCore { ep, io, state, events, .. } = self;
        let first = io.flush(socket, ep, now, |_, ev| on_event(state, events, ev, true));
        ep.handle_timeout(now);
        let second = io.flush(socket, ep, now, |_, ev| on_event(state, events, ev, false));
        if first == Flushed::Blocked || second == Flushed::Blocked { Flushed::Blocked } else { Flushed::Done }
    }

    /// Runs client-side game logic: pumps, tells `handler` about the
    /// session (`connect` once) and every waiting event, then pumps again
    /// so what it sent leaves.
    pub(crate) fn dispatch(&mut self, socket: &UdpSocket, handler: &mut impl EventHandler) {
        self.pump(socket);
        let now = self.clock.now();
        let mut ctx = Context::new(&mut self.ep, now);
        if !self.told_connect && self.state != State::Connecting && !matches!(self.state, State::Failed(_)) {
            self.told_connect = true;
            handler.connect(&mut ctx, self.conn);
        }
        while let Some(event) = self.events.pop_front() {
            mpgameserver::dispatch(handler, &mut ctx, event);
        }
        self.pump(socket);
    }

    /// Runs `handler.update(dt)` with a context, then pumps.
    pub(crate) fn tick(&mut self, socket: &UdpSocket, handler: &mut impl EventHandler, dt: Duration) {
        let now = self.clock.now();
        handler.update(&mut Context::new(&mut self.ep, now), dt);
        self.pump(socket);
    }

    pub(crate) fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub(crate) fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    pub(crate) fn send(&mut self, data: &[u8], delivery: Delivery) -> Result<MessageId, SendError> {
        self.ep.send(self.conn, data, delivery)
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    pub(crate) fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed { .. } | State::Failed(_))
    }

    pub(crate) fn connection(&self) -> Option<&Connection> {
        self.ep.connection(self.conn)
    }

    /// Starts a graceful disconnect (once); returns when, or `None` if the
    /// connection has already ended.
    pub(crate) fn begin_disconnect(&mut self) -> Option<Instant> {
        if self.is_closed() {
            return None;
        }
        let now = self.clock.now();
        if self.state != State::Closing {
            let _ = self.ep.disconnect(now, self.conn);
            self.state = State::Closing;
        }
        Some(now)
    }

    /// The outcome once the connection has closed, else `None`.
    pub(crate) fn disconnect_outcome(&self) -> Option<DisconnectOutcome> {
        match self.state {
            State::Closed { confirmed: true, .. } => Some(DisconnectOutcome::Confirmed),
            State::Closed { .. } | State::Failed(_) => Some(DisconnectOutcome::Unconfirmed),
            _ => None,
        }
    }
}

fn on_event(state: &mut State, events: &mut VecDeque<Event>, event: Event, from_datagram: bool) {
    match event {
        Event::Connected { .. } => *state = State::Connected,
        Event::ConnectFailed { reason, .. } => *state = State::Failed(reason),
        Event::Disconnected { reason, .. } => {
            let confirmed = from_datagram && reason == DisconnectReason::Local;
            *state = State::Closed { reason, confirmed };
            events.push_back(event);
        }
        _ => events.push_back(event),
    }
}
