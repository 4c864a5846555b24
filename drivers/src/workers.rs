//! All cores: one UDP port served by N worker threads, each with its own
//! socket, endpoint and event handler.
//!
//! On Linux every worker binds the same address with `SO_REUSEPORT`, and
//! the kernel spreads the datagrams over the sockets by a hash of the
//! 4-tuple (source address and port, destination address and port): every
//! datagram of one client reaches the same worker for as long as the set of
//! sockets does not change, which [`Workers`] guarantees (all are bound
//! before it starts and stay open until every worker has stopped). Clients
//! are spread evenly on average, not exactly; one busy client stays on one
//! core. Elsewhere (no load-balancing `SO_REUSEPORT`), [`Workers`] falls back
//! to one worker on one socket, whatever was asked.
//!
//! What becomes per worker: each endpoint has its own configuration, so
//! every limit of [`EndpointConfig`](mpgameserver::EndpointConfig) applies
//! per worker: `max_connections`, `hello_rate`, the per-address and
//! per-prefix limits (one address's connections from different ports may
//! land on different workers), the reassembly budgets. Multiply by the
//! number of workers for the server's totals, or divide the limits before
//! binding ([`WorkersConfig::per_worker_limits`]). The block list is per
//! endpoint too: a `ban` from one worker's handler blocks the address on
//! that worker only.
//!
//! Each worker runs its own handler (made by the factory given to
//! [`Workers::run`]); state the whole game shares goes behind an
//! `Arc<Mutex<…>>` (or a channel to a game thread), which the handlers
//! lock briefly in their callbacks. Connection handles are per worker: a
//! `ConnectionId` from worker 0 means nothing to worker 1.
//!
//! ```no_run
//! use mpgameserver::{ConnectionId, Delivery, ServerKey};
//! use mpgameserver_drivers::workers::{Workers, WorkersConfig};
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
//! let mut workers = Workers::bind(WorkersConfig::default(), "0.0.0.0:5000", key)?;
//! let stop = workers.stop_handle(); // stops every worker
//! workers.run(|_worker| Echo);
//! # Ok(())
//! # }
//! ```

use std::io;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};

use mpgameserver::{Endpoint, RateLimit, ServerKey};

use crate::blocking::wait_socket;
use crate::config::{ServerConfig, StartError};
use crate::io::DriverStats;
use crate::server::{EventHandler, ServerCore, Step, StopHandle};

/// Settings of a [`Workers`] server.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkersConfig {
    /// Each worker's settings (limits apply per worker).
    pub server: ServerConfig,
    /// Worker threads (default: the available parallelism). Forced to 1
    /// where `SO_REUSEPORT` does not spread datagrams (not Linux).
    pub workers: usize,
}

impl WorkersConfig {
    /// `server` for each of `workers` workers.
    pub fn new(server: ServerConfig, workers: usize) -> WorkersConfig {
        WorkersConfig { server, workers }
    }

    /// Divides the endpoint-wide limits by the number of workers (rounding
    /// up), so that the server as a whole keeps the configured totals:
    /// `max_connections`, `max_pending_handshakes`, `hello_rate` and the
    /// total reassembly budget. Per-address and per-prefix limits stay as
    /// they are: one address's connections spread over the workers only
    /// when they come from several ports.
    pub fn per_worker_limits(mut self) -> WorkersConfig {
        let n = self.workers.max(1);
        let e = &mut self.server.endpoint;
        e.max_connections = e.max_connections.div_ceil(n);
        e.max_pending_handshakes = e.max_pending_handshakes.div_ceil(n);
        e.max_pending_per_ip = e.max_pending_per_ip.min(e.max_pending_handshakes);
        e.max_pending_per_prefix = e.max_pending_per_prefix.min(e.max_pending_handshakes);
        e.max_connections_per_ip = e.max_connections_per_ip.min(e.max_connections);
        let per_worker = |r: u32| if r == u32::MAX { r } else { r.div_ceil(n as u32).max(1) };
        e.hello_rate = RateLimit::new(per_worker(e.hello_rate.per_second), per_worker(e.hello_rate.burst));
        e.max_reassembly_bytes_total = e.max_reassembly_bytes_total.div_ceil(n);
        e.max_reassembly_bytes_per_ip = e.max_reassembly_bytes_per_ip.min(e.max_reassembly_bytes_total);
        self
    }
}

impl Default for WorkersConfig {
    fn default() -> Self {
        WorkersConfig { server: ServerConfig::default(), workers: default_workers() }
    }
}

/// The available parallelism (1 if unknown).
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Whether this platform spreads one port over several sockets
/// (`SO_REUSEPORT` with load balancing: Linux).
pub const REUSEPORT: bool = cfg!(target_os = "linux");

/// One port served by several blocking servers, one per thread. See the
/// [module documentation](self).
pub struct Workers {
    workers: Vec<(ServerCore, UdpSocket)>,
    stop: StopHandle,
    addr: SocketAddr,
}

impl Workers {
    /// Binds `addr` (port 0 picks one free port for every worker) for
    /// `config.workers` workers, each with its own endpoint using `key`.
    pub fn bind(config: WorkersConfig, addr: impl ToSocketAddrs, key: ServerKey) -> Result<Workers, StartError> {
        let unresolved = |error| StartError::Bind { addr: None, error };
        let addr = addr.to_socket_addrs().map_err(unresolved)?.next();
        let addr = addr.ok_or_else(|| unresolved(io::Error::new(io::ErrorKind::InvalidInput, "no address to bind")))?;
        let n = if REUSEPORT { config.workers.max(1) } else { 1 };
        if n < config.workers {
            tracing::warn!(asked = config.workers, "SO_REUSEPORT load balancing is Linux-only: running one worker");
        }
        let sockets = bind_sockets(addr, n)?;
        let local = sockets[0].local_addr().map_err(|error| StartError::Bind { addr: Some(addr), error })?;
        let mut workers: Vec<(ServerCore, UdpSocket)> = Vec::with_capacity(n);
        let mut stop: Option<StopHandle> = None;
        for (i, socket) in sockets.into_iter().enumerate() {
            // Workers share the root key, hence the MPGS/2 reset base: each
            // needs its own endpoint id, so none holds another's stateless
            // reset tokens (MPGS2.md §6.4).
            let mut server = config.server.clone();
            server.endpoint.endpoint_id = server.endpoint.endpoint_id.wrapping_add(i as u64);
            let core = ServerCore::new(server, key.clone())?;
            let core = match &stop {
                Some(stop) => core.with_stop(stop.clone()),
                None => {
                    stop = Some(core.stop_handle());
                    core
                }
            };
            workers.push((core, socket));
        }
        let stop = stop.unwrap_or_else(|| unreachable!("bind_sockets returns at least one socket"));
        Ok(Workers { workers, stop, addr: local })
    }

    /// The bound address (with the actual port).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many workers will run.
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// Always false: there is at least one worker.
    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// A handle that stops every worker (each disconnects its clients,
    /// reports them to its handler, calls `shutdown` and returns).
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Serves the metrics of every worker, summed, over HTTP on `addr`; see
    /// [`crate::metrics`]. Call it before [`run`](Workers::run).
    #[cfg(feature = "metrics")]
    pub fn serve_metrics(
        &mut self,
        addr: impl ToSocketAddrs,
    ) -> Result<crate::metrics::MetricsServer, crate::metrics::MetricsError> {
        crate::metrics::serve(self.workers.iter_mut().map(|(core, _)| core), addr)
    }

    /// Runs every worker on its own thread, with the handler
    /// `make_handler(worker_index)`, until stopped; returns the handlers
    /// (in worker order) once every worker has finished.
    pub fn run<H, F>(&mut self, mut make_handler: F) -> Vec<H>
    where
        H: EventHandler + Send,
        F: FnMut(usize) -> H,
    {
        let handlers: Vec<H> = (0..self.workers.len()).map(&mut make_handler).collect();
        std::thread::scope(|scope| {
            let threads: Vec<_> = self
                .workers
                .iter_mut()
                .zip(handlers)
                .enumerate()
                .map(|(i, ((core, socket), mut handler))| {
                    std::thread::Builder::new()
                        .name(format!("mpgs-worker-{i}"))
                        .spawn_scoped(scope, move || {
                            run_worker(core, socket, &mut handler);
                            handler
                        })
                        // Spawning fails only when the system is out of threads or memory.
                        .expect("cannot spawn a worker thread")
                })
                .collect();
            threads
                .into_iter()
                // A handler's panic ends its worker; re-raise it here rather than lose it.
                .map(|t| t.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
                .collect()
        })
    }

    /// Worker `i`'s endpoint (connections, metrics, counters).
    pub fn endpoint(&self, i: usize) -> Option<&Endpoint> {
        self.workers.get(i).map(|(core, _)| &core.ep)
    }

    /// Worker `i`'s socket counters.
    pub fn driver_stats(&self, i: usize) -> Option<DriverStats> {
        self.workers.get(i).map(|(core, _)| core.io.stats)
    }
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers").field("addr", &self.addr).field("workers", &self.workers.len()).finish()
    }
}

/// The blocking server's loop on one worker.
fn run_worker(core: &mut ServerCore, socket: &UdpSocket, handler: &mut impl EventHandler) {
    core.start(socket, handler);
    while core.step(socket, handler) == Step::Wait {
        let wait = core.deadline() - core.clock.now();
        wait_socket(socket, &mut core.io, wait);
    }
}

/// `n` non-blocking sockets on `addr` (the first one's port for the rest
/// when `addr` has port 0), with `SO_REUSEPORT` when `n > 1`.
fn bind_sockets(addr: SocketAddr, n: usize) -> Result<Vec<UdpSocket>, StartError> {
    if n <= 1 {
        return Ok(vec![crate::io::bind_to(addr)?]);
    }
    #[cfg(target_os = "linux")]
    {
        let mut sockets = Vec::with_capacity(n);
        let mut at = addr;
        for _ in 0..n {
            let socket = bind_reuseport(at).map_err(|error| StartError::Bind { addr: Some(at), error })?;
            if at.port() == 0 {
                at = socket.local_addr().map_err(|error| StartError::Bind { addr: Some(at), error })?;
            }
            match crate::udp::grow_recv_buffer(&socket, crate::io::SERVER_RECV_BUFFER) {
                Ok(size) => tracing::debug!(size, "worker receive buffer"),
                Err(e) => tracing::debug!(error = %e, "could not size the receive buffer"),
            }
            sockets.push(socket);
        }
        Ok(sockets)
    }
    #[cfg(not(target_os = "linux"))]
    unreachable!("more than one worker only where SO_REUSEPORT spreads datagrams")
}

#[cfg(target_os = "linux")]
fn bind_reuseport(addr: SocketAddr) -> io::Result<UdpSocket> {
    use rustix::net::{AddressFamily, SocketType, ipproto, sockopt};
    let family = if addr.is_ipv4() { AddressFamily::INET } else { AddressFamily::INET6 };
    let fd = rustix::net::socket(family, SocketType::DGRAM, Some(ipproto::UDP))?;
    sockopt::set_socket_reuseport(&fd, true)?;
    rustix::net::bind(&fd, &addr)?;
    let socket = UdpSocket::from(fd);
    socket.set_nonblocking(true)?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_worker_limits_divide_the_endpoint_wide_ones() {
        let config = WorkersConfig::new(ServerConfig::default(), 3).per_worker_limits();
        let (whole, e) = (ServerConfig::default().endpoint, &config.server.endpoint);
        assert_eq!(e.max_connections, whole.max_connections.div_ceil(3));
        assert_eq!(e.max_pending_handshakes, whole.max_pending_handshakes.div_ceil(3));
        assert_eq!(e.hello_rate.per_second, whole.hello_rate.per_second.div_ceil(3));
        assert_eq!(e.max_connections_per_ip, whole.max_connections_per_ip.min(e.max_connections));
        assert_eq!(e.hello_rate_per_ip, whole.hello_rate_per_ip);
        // Unlimited stays unlimited.
        let mut server = ServerConfig::default();
        server.endpoint.hello_rate = RateLimit::UNLIMITED;
        let config = WorkersConfig::new(server, 2).per_worker_limits();
        assert_eq!(config.server.endpoint.hello_rate, RateLimit::UNLIMITED);
    }

    #[test]
    fn workers_share_one_port_and_one_stop() {
        let key = ServerKey::generate(&mut mpgameserver::Rng::new(crate::os_seed().unwrap()));
        let workers = Workers::bind(WorkersConfig::new(ServerConfig::default(), 2), "127.0.0.1:0", key).unwrap();
        assert_eq!(workers.len(), if REUSEPORT { 2 } else { 1 });
        assert_ne!(workers.local_addr().port(), 0);
        for (_, socket) in &workers.workers {
            assert_eq!(socket.local_addr().unwrap(), workers.local_addr());
        }
        workers.stop_handle().stop();
        assert!(workers.workers.iter().all(|(core, _)| core.stop_handle().is_stopped()));
    }
}
