//! The blocking driver: a std `UdpSocket` (IPv4 or IPv6) and one thread.
//!
//! The socket is non-blocking and the driver waits for it with `poll(2)`
//! (`WSAPoll` on Windows), whose timeout is precise to the microsecond: a
//! socket read timeout is rounded to the kernel's scheduler tick (4 ms on
//! many Linux kernels), which would turn a 60 Hz tick into about 40 Hz.
//!
//! ```no_run
//! use mpgameserver::{ConnectionId, Delivery, ServerKey};
//! use mpgameserver_drivers::blocking::Server;
//! use mpgameserver_drivers::{EventHandler, ServerContext};
//!
//! struct Echo;
//!
//! impl EventHandler for Echo {
//!     fn handle_message(&mut self, ctx: &mut ServerContext<'_>, conn: ConnectionId, payload: Vec<u8>) {
//!         let _ = ctx.send(conn, &payload, Delivery::Reliable);
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let key = ServerKey::read_pem_file("root.key")?;
//! let mut server = Server::bind("0.0.0.0:5000", key)?;
//! server.run(&mut Echo); // until a StopHandle (server.stop_handle()) or ctx.stop() stops it
//! # Ok(())
//! # }
//! ```

use std::io;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};

use mpgameserver::{
    Connection, Delivery, Duration, Endpoint, Event, Instant, MessageId, PublicKey, SendError, ServerKey,
};
use rustix::event::{PollFd, PollFlags, Timespec};

use crate::client::{ClientCore, DisconnectOutcome};
use crate::config::{ClientConfig, ConnectError, ServerConfig, StartError};
use crate::io::{self as dio, DriverStats, Io};
use crate::server::{EventHandler, ServerCore, Step, StopHandle};

/// Longest single wait; the loops re-check their state at least this often.
const MAX_WAIT: Duration = Duration::from_secs(1);

/// A server on a std `UdpSocket`, running its tick loop on the calling
/// thread. See [`EventHandler`] for what it calls and when.
///
/// Each pass of the loop waits for a datagram, the endpoint's next timer or
/// the next tick; then it feeds every waiting datagram to the endpoint,
/// runs the timers, sends what is due (as many datagrams per connection as
/// the pacing allows), hands the events to the handler, and runs `update`
/// when a tick is due.
pub struct Server {
    core: ServerCore,
    socket: UdpSocket,
}

impl Server {
    /// Binds `addr` (IPv4 or IPv6; port 0 picks a free port) with the
    /// default [`ServerConfig`]. `key` is the root key whose public half
    /// clients pin.
    pub fn bind(addr: impl ToSocketAddrs, key: ServerKey) -> Result<Server, StartError> {
        Server::bind_with(ServerConfig::default(), addr, key)
    }

    /// Binds `addr` with `config`.
    pub fn bind_with(config: ServerConfig, addr: impl ToSocketAddrs, key: ServerKey) -> Result<Server, StartError> {
        let socket = dio::bind_to(addr)?;
        let core = ServerCore::new(config, key)?;
        Ok(Server { core, socket })
    }

    /// The bound address (with the actual port).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// A handle that stops [`run`](Server::run) from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        self.core.stop_handle()
    }

    /// Runs the server until it is stopped (by a [`StopHandle`] or
    /// [`ServerContext::stop`](crate::ServerContext::stop)); then every live
    /// client is disconnected and reported to `handler.disconnect`, and
    /// `handler.shutdown` runs. Socket errors are counted and logged, never
    /// returned. A stopped server does not run again.
    pub fn run(&mut self, handler: &mut impl EventHandler) {
        self.core.start(&self.socket, handler);
        while self.core.step(&self.socket, handler) == Step::Wait {
            let wait = self.core.deadline() - self.core.clock.now();
            wait_socket(&self.socket, &mut self.core.io, wait);
        }
    }

    /// The endpoint (connections, metrics, counters).
    pub fn endpoint(&self) -> &Endpoint {
        &self.core.ep
    }

    /// The driver's socket counters.
    pub fn driver_stats(&self) -> DriverStats {
        self.core.io.stats
    }

    /// Serves this server's metrics over HTTP on `addr` (keep it on
    /// loopback, e.g. `"127.0.0.1:9100"`): see [`crate::metrics`]. Call it
    /// before [`run`](Server::run); the endpoint serves until the returned
    /// handle is dropped.
    #[cfg(feature = "metrics")]
    pub fn serve_metrics(
        &mut self,
        addr: impl ToSocketAddrs,
    ) -> Result<crate::metrics::MetricsServer, crate::metrics::MetricsError> {
        crate::metrics::serve(std::iter::once(&mut self.core), addr)
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("socket", &self.socket).field("endpoint", &self.core.ep).finish_non_exhaustive()
    }
}

/// A client on a std `UdpSocket`. Nothing runs in the background: call
/// [`update`](Client::update) (each frame) or
/// [`update_wait`](Client::update_wait), then drain
/// [`poll_event`](Client::poll_event).
pub struct Client {
    core: ClientCore,
    socket: UdpSocket,
}

impl Client {
    /// Connects to the server at `server`, which must sign its handshake
    /// with the root key whose public half is `server_key` (its `.pub`
    /// file), with the default [`ClientConfig`]. Blocks until the server
    /// has confirmed the session or `timeout` has passed.
    ///
    /// A server that does not answer gives [`ConnectError::TimedOut`]; one
    /// whose signature does not verify with `server_key` gives
    /// [`ConnectError::WrongServerKey`] (also at the timeout: a forged
    /// answer must not abort a genuine attempt).
    pub fn connect(server: SocketAddr, server_key: PublicKey, timeout: Duration) -> Result<Client, ConnectError> {
        Client::connect_with(ClientConfig::default(), server, server_key, timeout)
    }

    /// Like [`connect`](Client::connect), with `config`.
    pub fn connect_with(
        config: ClientConfig,
        server: SocketAddr,
        server_key: PublicKey,
        timeout: Duration,
    ) -> Result<Client, ConnectError> {
        let (mut core, socket) = ClientCore::start(config, server, server_key, timeout)?;
        let hard = core.connect_deadline(core.clock.now());
        loop {
            core.pump(&socket);
            if let Some(result) = core.connect_result() {
                result?;
                tracing::debug!(%server, "connected");
                return Ok(Client { core, socket });
            }
            let now = core.clock.now();
            if now >= hard {
                return Err(ConnectError::TimedOut { server, timeout });
            }
            let wait = core.deadline(hard) - now;
            wait_socket(&socket, &mut core.io, wait);
        }
    }

    /// Without blocking: feeds every datagram waiting on the socket to the
    /// endpoint, runs its timers and sends what is due (including messages
    /// queued by [`send`](Client::send)). Call it every frame.
    pub fn update(&mut self) {
        self.core.pump(&self.socket);
    }

    /// Like [`update`](Client::update), but when no event is waiting, first
    /// waits up to `max_wait` for a datagram (or the endpoint's next timer).
    pub fn update_wait(&mut self, max_wait: Duration) {
        self.core.pump(&self.socket);
        if self.core.has_events() {
            return;
        }
        let now = self.core.clock.now();
        let wait = self.core.deadline(now + max_wait) - now;
        wait_socket(&self.socket, &mut self.core.io, wait);
        self.core.pump(&self.socket);
    }

    /// The next event: `Message`, `Delivered`, `Lost`, or `Disconnected`
    /// (the connection has ended; the client is closed).
    pub fn poll_event(&mut self) -> Option<Event> {
        self.core.poll_event()
    }

    /// Runs client-side game logic written as an [`EventHandler`] (the
    /// trait servers and the simulator run): like [`update`](Client::update),
    /// then `connect` once, then every waiting event to its callback (they
    /// do not reach [`poll_event`](Client::poll_event)); what the handler
    /// sends leaves before it returns. Call it every frame.
    pub fn dispatch(&mut self, handler: &mut impl EventHandler) {
        self.core.dispatch(&self.socket, handler);
    }

    /// Calls `handler.update(dt)` (one tick of client-side logic) and sends
    /// what it queued.
    pub fn tick(&mut self, handler: &mut impl EventHandler, dt: Duration) {
        self.core.tick(&self.socket, handler, dt);
    }

    /// Queues a message to the server; the next `update` sends it.
    pub fn send(&mut self, data: &[u8], delivery: Delivery) -> Result<MessageId, SendError> {
        self.core.send(data, delivery)
    }

    /// Closes the connection gracefully and waits up to `wait` for the
    /// server's acknowledgement. Messages not sent yet are reported `Lost`;
    /// other events that arrive meanwhile stay queued for `poll_event`.
    pub fn disconnect(&mut self, wait: Duration) -> DisconnectOutcome {
        let Some(started) = self.core.begin_disconnect() else {
            return DisconnectOutcome::AlreadyClosed;
        };
        let end = started + wait;
        loop {
            self.core.pump(&self.socket);
            if let Some(outcome) = self.core.disconnect_outcome() {
                return outcome;
            }
            let now = self.core.clock.now();
            if now >= end {
                return DisconnectOutcome::Unconfirmed;
            }
            let wait = self.core.deadline(end) - now;
            wait_socket(&self.socket, &mut self.core.io, wait);
        }
    }

    /// Whether the session is up (false once it has ended).
    pub fn is_connected(&self) -> bool {
        self.core.is_connected()
    }

    /// The connection (state, metrics) while it lives.
    pub fn connection(&self) -> Option<&Connection> {
        self.core.connection()
    }

    /// The endpoint (counters of dropped datagrams by reason, ...).
    pub fn endpoint(&self) -> &Endpoint {
        &self.core.ep
    }

    /// The driver's socket counters.
    pub fn driver_stats(&self) -> DriverStats {
        self.core.io.stats
    }

    /// The local address of the socket.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The server's address.
    pub fn server_addr(&self) -> SocketAddr {
        self.core.server
    }

    /// The client's clock (the time base of its endpoint).
    pub fn now(&self) -> Instant {
        self.core.clock.now()
    }
}

impl Drop for Client {
    /// A client dropped while connected tells the server with one
    /// DISCONNECT datagram (not waiting for an answer), so the server need
    /// not time it out.
    fn drop(&mut self) {
        if self.core.is_connected() && self.core.begin_disconnect().is_some() {
            self.core.pump(&self.socket);
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.core.server)
            .field("socket", &self.socket)
            .field("connected", &self.core.is_connected())
            .finish_non_exhaustive()
    }
}

/// Waits until the socket is readable (or writable, when a datagram waits
/// to be sent) or `timeout` passes. Errors are counted, never returned.
pub(crate) fn wait_socket(socket: &UdpSocket, io: &mut Io, timeout: Duration) {
    let mut flags = PollFlags::IN;
    if io.blocked() {
        flags |= PollFlags::OUT;
    }
    let mut fds = [PollFd::new(socket, flags)];
    let timeout = timeout.min(MAX_WAIT);
    let ts = Timespec::try_from(timeout).unwrap_or(Timespec { tv_sec: 1, tv_nsec: 0 });
    match rustix::event::poll(&mut fds, Some(&ts)) {
        Ok(_) => {}
        Err(rustix::io::Errno::INTR) => {}
        Err(e) => {
            io.wait_error(&e.into());
            // Do not spin on a persistent failure.
            std::thread::sleep(timeout.min(Duration::from_millis(1)));
        }
    }
}
