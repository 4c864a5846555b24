//! What every driver does with its socket, whatever waits for it: receive
//! every waiting datagram into the endpoint, and the shared flush (drain the
//! transmits onto the socket, then the events). The socket is a
//! non-blocking std `UdpSocket` in both drivers; only the waiting differs
//! (`poll(2)` in `blocking`, the async-io reactor in `smol`). Datagrams
//! move in batches through fixed buffer pools (`udp.rs`: `recvmmsg` and
//! `sendmmsg` on Linux).
//!
//! Socket errors never reach the core and never stop a loop: they are
//! counted in [`DriverStats`] and logged (at most once per power of two of
//! their count, so a broken network cannot flood the log).

use std::io;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};

use mpgameserver::{Endpoint, Event, Instant, MAX_DATAGRAM};

use crate::clock::Clock;
use crate::config::StartError;
use crate::udp::{BATCH, RecvBatch, SendBatch};

/// Datagrams received per wake-up before the loop runs its timers, ticks and
/// transmits again: a flood cannot starve the rest of the loop.
const DRAIN_BATCH: usize = 256;

/// Counters of what a driver met on its socket. Endpoint counters (datagrams
/// dropped by reason, handshakes) are in `Endpoint::stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DriverStats {
    /// Datagrams received from the socket (including oversized ones).
    pub datagrams_received: u64,
    /// Datagrams the socket accepted for sending.
    pub datagrams_sent: u64,
    /// Receive errors, ignored. Mostly ICMP "port unreachable" reports of
    /// an earlier send (`ConnectionRefused`/`ConnectionReset`), which are
    /// common when a peer goes away.
    pub recv_errors: u64,
    /// Send errors other than a full send buffer; the datagram is dropped
    /// (the protocol's retransmissions recover Reliable messages).
    pub send_errors: u64,
    /// Times the socket's send buffer was full; the unsent datagrams were
    /// kept and sent once the socket was writable again.
    pub send_blocked: u64,
    /// Received datagrams longer than `MAX_DATAGRAM`, dropped unread.
    pub oversized: u64,
    /// Failures of the wait for the socket (`poll`), retried.
    pub wait_errors: u64,
}

/// Whether the flush left datagrams waiting for the socket to become
/// writable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flushed {
    /// Every due datagram went out.
    Done,
    /// The socket's send buffer is full; datagrams (at most a batch) wait in
    /// the driver.
    Blocked,
}

/// A driver's reusable buffers and counters: no allocation per datagram.
/// Datagrams go in and out in batches ([`RecvBatch`], [`SendBatch`]):
/// `recvmmsg`/`sendmmsg` on Linux.
pub(crate) struct Io {
    rx: RecvBatch,
    /// Datagrams written by `poll_transmit` and not sent yet (some may wait
    /// for the socket to become writable).
    tx: SendBatch,
    pub(crate) stats: DriverStats,
}

impl Io {
    pub(crate) fn new() -> Io {
        Io { rx: RecvBatch::new(), tx: SendBatch::new(), stats: DriverStats::default() }
    }

    /// Whether datagrams wait for the socket to become writable.
    pub(crate) fn blocked(&self) -> bool {
        !self.tx.is_empty()
    }

    /// Feeds every datagram waiting on the socket (up to a batch) to the
    /// endpoint. Returns how many were fed.
    pub(crate) fn drain(&mut self, socket: &UdpSocket, ep: &mut Endpoint, clock: &Clock) -> usize {
        let mut fed = 0;
        let mut received = 0;
        while received < DRAIN_BATCH {
            match self.rx.recv(socket) {
                Ok(n) => {
                    received += n;
                    self.stats.datagrams_received += n as u64;
                    // One clock reading per batch: they arrived together.
                    let now = clock.now();
                    for i in 0..n {
                        let (from, bytes) = self.rx.get_mut(i);
                        if bytes.len() > MAX_DATAGRAM {
                            self.stats.oversized += 1;
                            tracing::debug!(%from, "dropped an oversized datagram");
                            continue;
                        }
                        ep.handle_datagram(now, from, bytes);
                        fed += 1;
                    }
                    if n < BATCH {
                        break; // the socket is empty
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    received += 1;
                    self.recv_error(&e);
                    if !is_peer_report(&e) {
                        break; // something unusual: let the loop breathe before retrying
                    }
                }
            }
        }
        fed
    }

    /// Sends every datagram the endpoint has due at `now`, in batches. On a
    /// full send buffer, keeps the unsent datagrams and returns
    /// [`Flushed::Blocked`].
    pub(crate) fn transmit(&mut self, socket: &UdpSocket, ep: &mut Endpoint, now: Instant) -> Flushed {
        loop {
            let mut polled_all = false;
            while let Some(buf) = self.tx.buf_mut() {
                match ep.poll_transmit(now, buf) {
                    Some(t) => self.tx.push(t.destination, t.len),
                    None => {
                        polled_all = true;
                        break;
                    }
                }
            }
            if self.tx.is_empty() {
                return Flushed::Done;
            }
            let Io { tx, stats, .. } = self;
            let sent = tx.send(socket, |e, to| send_error(stats, e, to));
            self.stats.datagrams_sent += sent.sent as u64;
            if sent.blocked {
                self.stats.send_blocked += 1;
                return Flushed::Blocked;
            }
            if polled_all {
                return Flushed::Done;
            }
        }
    }

    /// The shared flush: drain the transmits, then the events (handing each
    /// to `on_event`, which may issue commands), and again while events
    /// come, so replies leave in the same pass. Events are drained even
    /// when the socket is full.
    pub(crate) fn flush(
        &mut self,
        socket: &UdpSocket,
        ep: &mut Endpoint,
        now: Instant,
        mut on_event: impl FnMut(&mut Endpoint, Event),
    ) -> Flushed {
        loop {
            let flushed = self.transmit(socket, ep, now);
            let mut any = false;
            while let Some(event) = ep.poll_event() {
                any = true;
                on_event(ep, event);
            }
            if !any || flushed == Flushed::Blocked {
                return flushed;
            }
        }
    }

    pub(crate) fn recv_error(&mut self, e: &io::Error) {
        self.stats.recv_errors += 1;
        let count = self.stats.recv_errors;
        if count.is_power_of_two() {
            if is_peer_report(e) {
                tracing::debug!(error = %e, count, "receive error (a peer's ICMP report), ignored");
            } else {
                tracing::warn!(error = %e, count, "receive error, ignored");
            }
        }
    }

    pub(crate) fn wait_error(&mut self, e: &io::Error) {
        self.stats.wait_errors += 1;
        let count = self.stats.wait_errors;
        if count.is_power_of_two() {
            tracing::warn!(error = %e, count, "waiting for the socket failed; retrying");
        }
    }
}

fn send_error(stats: &mut DriverStats, e: &io::Error, to: SocketAddr) {
    stats.send_errors += 1;
    let count = stats.send_errors;
    if count.is_power_of_two() {
        tracing::warn!(error = %e, %to, count, "send failed; datagram dropped");
    }
}

/// An error that only reports something a peer did (an ICMP "port
/// unreachable" for an earlier send), not a problem of our socket.
fn is_peer_report(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset)
}

/// Binds a non-blocking UDP socket.
pub(crate) fn bind(addr: SocketAddr) -> Result<UdpSocket, StartError> {
    let open = || {
        let socket = UdpSocket::bind(addr)?;
        socket.set_nonblocking(true)?;
        Ok(socket)
    };
    open().map_err(|error| StartError::Bind { addr: Some(addr), error })
}

/// Resolves `addr` (its first address) and binds a non-blocking UDP socket
/// for a server, with a large receive buffer.
pub(crate) fn bind_to(addr: impl ToSocketAddrs) -> Result<UdpSocket, StartError> {
    let unresolved = |error| StartError::Bind { addr: None, error };
    let addr = addr.to_socket_addrs().map_err(unresolved)?.next();
    let addr = addr.ok_or_else(|| unresolved(io::Error::new(io::ErrorKind::InvalidInput, "no address to bind")))?;
    let socket = bind(addr)?;
    // A server's socket holds what arrives from every client while the loop
    // computes; the system default (about 200 KB on Linux, some 200
    // datagrams of 100 bytes) overflows in a millisecond at 200,000
    // datagrams per second. Best effort: capped by the system's maximum.
    match crate::udp::grow_recv_buffer(&socket, SERVER_RECV_BUFFER) {
        Ok(size) => tracing::debug!(size, "server receive buffer"),
        Err(e) => tracing::debug!(error = %e, "could not size the receive buffer"),
    }
    Ok(socket)
}

/// Receive buffer a server socket asks for, in bytes.
pub(crate) const SERVER_RECV_BUFFER: usize = 4 << 20;

/// Receive buffer a client socket asks for, in bytes: room for a burst of
/// one MPGS/2 connection window (`conn_recv_window`, 4 MiB) of datagrams.
pub(crate) const CLIENT_RECV_BUFFER: usize = 4 << 20;
