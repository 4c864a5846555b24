//! The async driver (feature `smol`): the same server and client over
//! `async_io::Async<UdpSocket>` and `async_io::Timer`, for `smol::block_on`,
//! `smol::spawn` or any executor with async-io's reactor.
//!
//! ```no_run
//! use mpgameserver::{Delivery, Duration, Event, PublicKey};
//! use mpgameserver_drivers::smol::Client;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! smol::block_on(async {
//!     let key = PublicKey::read_pem_file("root.pub")?;
//!     let server = "127.0.0.1:5000".parse()?;
//!     let mut client = Client::connect(server, key, Duration::from_secs(5)).await?;
//!     client.send(b"hello", Delivery::Reliable)?;
//!     while let Some(event) = client.next_event().await {
//!         if let Event::Message { payload, .. } = event {
//!             println!("{}", String::from_utf8_lossy(&payload));
//!             break;
//!         }
//!     }
//!     client.disconnect(Duration::from_secs(1)).await;
//!     Ok(())
//! })
//! # }
//! ```

use std::io;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};

use async_io::{Async, Timer};
use futures_lite::future;
use mpgameserver::{
    Connection, Delivery, Duration, Endpoint, Event, Instant, MessageId, PublicKey, SendError, ServerKey,
};

use crate::client::{ClientCore, DisconnectOutcome};
use crate::clock::Clock;
use crate::config::{ClientConfig, ConnectError, ServerConfig, StartError};
use crate::io::{self as dio, DriverStats, Io};
use crate::server::{EventHandler, ServerCore, Step, StopHandle};

/// Longest single wait; the loops re-check their state at least this often.
const MAX_WAIT: Duration = Duration::from_secs(1);

/// A server over `Async<UdpSocket>`. The same loop and [`EventHandler`] as
/// [`blocking::Server`](crate::blocking::Server), as a future.
pub struct Server {
    core: ServerCore,
    socket: Async<UdpSocket>,
    timer: Timer,
}

impl Server {
    /// Binds `addr` (IPv4 or IPv6; port 0 picks a free port) with the
    /// default [`ServerConfig`].
    pub fn bind(addr: impl ToSocketAddrs, key: ServerKey) -> Result<Server, StartError> {
        Server::bind_with(ServerConfig::default(), addr, key)
    }

    /// Binds `addr` with `config`.
    pub fn bind_with(config: ServerConfig, addr: impl ToSocketAddrs, key: ServerKey) -> Result<Server, StartError> {
        let socket = register(dio::bind_to(addr)?)?;
        let core = ServerCore::new(config, key)?;
        Ok(Server { core, socket, timer: Timer::never() })
    }

    /// The bound address (with the actual port).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.get_ref().local_addr()
    }

    /// A handle that stops [`run`](Server::run) from any thread or task.
    pub fn stop_handle(&self) -> StopHandle {
        self.core.stop_handle()
    }

    /// Runs the server until it is stopped; see
    /// [`blocking::Server::run`](crate::blocking::Server::run).
    pub async fn run(&mut self, handler: &mut impl EventHandler) {
        self.core.start(self.socket.get_ref(), handler);
        while self.core.step(self.socket.get_ref(), handler) == Step::Wait {
            let deadline = self.core.deadline();
            wait_socket(&self.socket, &mut self.timer, &mut self.core.io, &self.core.clock, deadline).await;
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

    /// Serves this server's metrics over HTTP on `addr` (on its own thread);
    /// see [`blocking::Server::serve_metrics`](crate::blocking::Server::serve_metrics).
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
        f.debug_struct("Server")
            .field("socket", self.socket.get_ref())
            .field("endpoint", &self.core.ep)
            .finish_non_exhaustive()
    }
}

/// A client over `Async<UdpSocket>`. Await [`next_event`](Client::next_event)
/// to wait for what the server sends; [`send`](Client::send) queues.
pub struct Client {
    core: ClientCore,
    socket: Async<UdpSocket>,
    timer: Timer,
}

impl Client {
    /// Connects with the default [`ClientConfig`]; see
    /// [`blocking::Client::connect`](crate::blocking::Client::connect).
    pub async fn connect(server: SocketAddr, server_key: PublicKey, timeout: Duration) -> Result<Client, ConnectError> {
        Client::connect_with(ClientConfig::default(), server, server_key, timeout).await
    }

    /// Like [`connect`](Client::connect), with `config`.
    pub async fn connect_with(
        config: ClientConfig,
        server: SocketAddr,
        server_key: PublicKey,
        timeout: Duration,
    ) -> Result<Client, ConnectError> {
        let (core, socket) = ClientCore::start(config, server, server_key, timeout)?;
        let socket = register(socket)?;
        let mut client = Client { core, socket, timer: Timer::never() };
        let hard = client.core.connect_deadline(client.core.clock.now());
        loop {
            client.core.pump(client.socket.get_ref());
            if let Some(result) = client.core.connect_result() {
                result?;
                tracing::debug!(%server, "connected");
                return Ok(client);
            }
            if client.core.clock.now() >= hard {
                return Err(ConnectError::TimedOut { server, timeout });
            }
            client.wait(hard).await;
        }
    }

    /// Without waiting: feeds every datagram waiting on the socket to the
    /// endpoint, runs its timers and sends what is due.
    pub fn update(&mut self) {
        self.core.pump(self.socket.get_ref());
    }

    /// The next event, waiting for one: `Message`, `Delivered`, `Lost`, or
    /// `Disconnected`; `None` once the connection has ended and every event
    /// was taken. Messages queued by [`send`](Client::send) leave while it
    /// waits. Cancelling it (in a `select`/`or`) loses nothing.
    pub async fn next_event(&mut self) -> Option<Event> {
        loop {
            self.core.pump(self.socket.get_ref());
            if let Some(event) = self.core.poll_event() {
                return Some(event);
            }
            if self.core.is_closed() {
                return None;
            }
            let limit = self.core.clock.now() + MAX_WAIT;
            self.wait(limit).await;
        }
    }

    /// The next event already received, without waiting.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.core.poll_event()
    }

    /// Runs client-side game logic written as an [`EventHandler`]; see
    /// [`blocking::Client::dispatch`](crate::blocking::Client::dispatch).
    pub fn dispatch(&mut self, handler: &mut impl EventHandler) {
        self.core.dispatch(self.socket.get_ref(), handler);
    }

    /// Calls `handler.update(dt)` and sends what it queued; see
    /// [`blocking::Client::tick`](crate::blocking::Client::tick).
    pub fn tick(&mut self, handler: &mut impl EventHandler, dt: Duration) {
        self.core.tick(self.socket.get_ref(), handler, dt);
    }

    /// Queues a message to the server; it leaves at the next `update` or
    /// while `next_event` waits.
    pub fn send(&mut self, data: &[u8], delivery: Delivery) -> Result<MessageId, SendError> {
        self.core.send(data, delivery)
    }

    /// Closes the connection gracefully and waits up to `wait` for the
    /// server's acknowledgement; see
    /// [`blocking::Client::disconnect`](crate::blocking::Client::disconnect).
    pub async fn disconnect(&mut self, wait: Duration) -> DisconnectOutcome {
        let Some(started) = self.core.begin_disconnect() else {
            return DisconnectOutcome::AlreadyClosed;
        };
        let end = started + wait;
        loop {
            self.core.pump(self.socket.get_ref());
            if let Some(outcome) = self.core.disconnect_outcome() {
                return outcome;
            }
            if self.core.clock.now() >= end {
                return DisconnectOutcome::Unconfirmed;
            }
            self.wait(end).await;
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
        self.socket.get_ref().local_addr()
    }

    /// The server's address.
    pub fn server_addr(&self) -> SocketAddr {
        self.core.server
    }

    /// The client's clock (the time base of its endpoint).
    pub fn now(&self) -> Instant {
        self.core.clock.now()
    }

    /// Waits for the socket, the endpoint's next timer, or `limit`.
    async fn wait(&mut self, limit: Instant) {
        let deadline = self.core.deadline(limit);
        wait_socket(&self.socket, &mut self.timer, &mut self.core.io, &self.core.clock, deadline).await;
    }
}

impl Drop for Client {
    /// A client dropped while connected tells the server with one
    /// DISCONNECT datagram (not waiting for an answer).
    fn drop(&mut self) {
        if self.core.is_connected() && self.core.begin_disconnect().is_some() {
            self.core.pump(self.socket.get_ref());
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.core.server)
            .field("socket", self.socket.get_ref())
            .field("connected", &self.core.is_connected())
            .finish_non_exhaustive()
    }
}

fn register(socket: UdpSocket) -> Result<Async<UdpSocket>, StartError> {
    let addr = socket.local_addr().ok();
    Async::new(socket).map_err(|error| StartError::Bind { addr, error })
}

/// Waits until the socket is readable (or writable, when a datagram waits
/// to be sent) or `deadline` (capped at `MAX_WAIT` from now). Errors are
/// counted, never returned.
async fn wait_socket(socket: &Async<UdpSocket>, timer: &mut Timer, io: &mut Io, clock: &Clock, deadline: Instant) {
    let deadline = deadline.min(clock.now() + MAX_WAIT);
    timer.set_at(clock.to_std(deadline));
    let blocked = io.blocked();
    let ready = async {
        if blocked { future::or(socket.writable(), socket.readable()).await } else { socket.readable().await }
    };
    let woke = future::or(ready, async {
        (&mut *timer).await;
        Ok(())
    })
    .await;
    if let Err(e) = woke {
        io.wait_error(&e);
        // Do not spin on a persistent failure.
        Timer::after(std::time::Duration::from_millis(1)).await;
    }
}
