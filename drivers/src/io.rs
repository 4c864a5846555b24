//! What every driver does with its socket, whatever waits for it: receive
//! every waiting datagram into the endpoint, and the shared flush (drain the
//! transmits onto the socket, then the events). The socket is a
//! non-blocking std `UdpSocket` in both drivers; only the waiting differs
//! (`poll(2)` in `blocking`, the async-io reactor in `smol`).
//!
//! Socket errors never reach the core and never stop a loop: they are
//! counted in [`DriverStats`] and logged (at most once per power of two of
//! their count, so a broken network cannot flood the log).

use std::io;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};

use mpgameserver::{Endpoint, Event, Instant, MAX_DATAGRAM, Transmit};

use crate::clock::Clock;
use crate::config::StartError;

/// Receive buffer: one byte more than the core ever accepts, so a longer
/// datagram is recognised (and dropped) instead of being truncated.
const RECV_LEN: usize = MAX_DATAGRAM + 1;

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
    /// Times the socket's send buffer was full; the datagram was kept and
    /// sent once the socket was writable again.
    pub send_blocked: u64,
    /// Received datagrams longer than `MAX_DATAGRAM`, dropped unread.
    pub oversized: u64,
    /// Failures of the wait for the socket (`poll`), retried.
    pub wait_errors: u64,
}

/// Whether the flush left a datagram waiting for the socket to become
/// writable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flushed {
    /// Every due datagram went out.
    Done,
    /// The socket's send buffer is full; one datagram waits in the driver.
    Blocked,
}

/// A driver's reusable buffers and counters: no allocation per datagram.
pub(crate) struct Io {
    rx: Box<[u8; RECV_LEN]>,
    tx: Box<[u8; MAX_DATAGRAM]>,
    /// A datagram written by `poll_transmit` that the socket refused for
    /// now (its bytes are in `tx`).
    pending: Option<Transmit>,
    pub(crate) stats: DriverStats,
}

impl Io {
    pub(crate) fn new() -> Io {
        Io {
            rx: Box::new([0; RECV_LEN]),
            tx: Box::new([0; MAX_DATAGRAM]),
            pending: None,
            stats: DriverStats::default(),
        }
    }

    /// Whether a datagram waits for the socket to become writable.
    pub(crate) fn blocked(&self) -> bool {
        self.pending.is_some()
    }

    /// Feeds every datagram waiting on the socket (up to a batch) to the
    /// endpoint. Returns how many were fed.
    pub(crate) fn drain(&mut self, socket: &UdpSocket, ep: &mut Endpoint, clock: &Clock) -> usize {
        let mut fed = 0;
        let mut attempts = 0;
        while attempts < DRAIN_BATCH {
            attempts += 1;
            match socket.recv_from(&mut self.rx[..]) {
                Ok((len, from)) => {
                    self.stats.datagrams_received += 1;
                    if len > MAX_DATAGRAM {
                        self.stats.oversized += 1;
                        tracing::debug!(%from, len, "dropped an oversized datagram");
                        continue;
                    }
                    ep.handle_datagram(clock.now(), from, &mut self.rx[..len]);
                    fed += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.recv_error(&e);
                    if !is_peer_report(&e) {
                        break; // something unusual: let the loop breathe before retrying
                    }
                }
            }
        }
        fed
    }

    /// Sends every datagram the endpoint has due at `now`. On a full send
    /// buffer, keeps the datagram and returns [`Flushed::Blocked`].
    pub(crate) fn transmit(&mut self, socket: &UdpSocket, ep: &mut Endpoint, now: Instant) -> Flushed {
        loop {
            let t = match self.pending.take() {
                Some(t) => t,
                None => match ep.poll_transmit(now, &mut self.tx) {
                    Some(t) => t,
                    None => return Flushed::Done,
                },
            };
            match send_to(socket, &self.tx[..t.len], t.destination) {
                Ok(()) => self.stats.datagrams_sent += 1,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.pending = Some(t);
                    self.stats.send_blocked += 1;
                    return Flushed::Blocked;
                }
                Err(e) => self.send_error(&e, t.destination),
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

    fn send_error(&mut self, e: &io::Error, to: SocketAddr) {
        self.stats.send_errors += 1;
        let count = self.stats.send_errors;
        if count.is_power_of_two() {
            tracing::warn!(error = %e, %to, count, "send failed; datagram dropped");
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

fn send_to(socket: &UdpSocket, bytes: &[u8], to: SocketAddr) -> io::Result<()> {
    loop {
        match socket.send_to(bytes, to) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return r.map(drop),
        }
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

/// Resolves `addr` (its first address) and binds a non-blocking UDP socket.
pub(crate) fn bind_to(addr: impl ToSocketAddrs) -> Result<UdpSocket, StartError> {
    let unresolved = |error| StartError::Bind { addr: None, error };
    let addr = addr.to_socket_addrs().map_err(unresolved)?.next();
    let addr = addr.ok_or_else(|| unresolved(io::Error::new(io::ErrorKind::InvalidInput, "no address to bind")))?;
    bind(addr)
}
