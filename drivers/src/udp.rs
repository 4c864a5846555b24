//! Batched datagram I/O on a non-blocking std `UdpSocket`, with fixed
//! buffer pools: nothing allocates once a batch exists.
//!
//! On Linux a [`RecvBatch`] fills up to [`BATCH`] buffers with one
//! `recvmmsg(2)` (through `nix`) and a [`SendBatch`] hands up to [`BATCH`]
//! queued datagrams to one `sendmmsg(2)` (through `rustix`), so a busy
//! server pays one system call per batch instead of one per datagram. A
//! run of full datagrams to one destination (a large message, a bulk
//! transfer) leaves as one buffer with UDP segmentation offload (GSO, Linux
//! 4.18+, through `nix`): the kernel routes it once and cuts it into the
//! same datagrams on the wire; where GSO is refused, the batch falls back
//! to `sendmmsg` for good.
//! Elsewhere both fall back to a loop of `recv_from` / `send_to` with the
//! same interface and the same buffers.
//!
//! The drivers use these for every socket; they are public as building
//! blocks for a custom loop (the workspace's load generator uses them for
//! its raw UDP + AES-GCM baseline server).
//!
//! ```
//! use std::net::UdpSocket;
//! use mpgameserver_drivers::udp::{RecvBatch, SendBatch};
//!
//! # fn main() -> std::io::Result<()> {
//! let a = UdpSocket::bind("127.0.0.1:0")?;
//! let b = UdpSocket::bind("127.0.0.1:0")?;
//! b.set_nonblocking(true)?;
//! let (mut rx, mut tx) = (RecvBatch::new(), SendBatch::new());
//! for i in 0..3u8 {
//!     let buf = tx.buf_mut().expect("room in the batch");
//!     buf[0] = i;
//!     tx.push(b.local_addr()?, 1);
//! }
//! let sent = tx.send(&a, |e, to| eprintln!("send to {to} failed: {e}"));
//! assert_eq!((sent.sent, sent.blocked), (3, false));
//! let mut got = Vec::new();
//! while got.len() < 3 {
//!     match rx.recv(&b) {
//!         Ok(n) => got.extend((0..n).map(|i| rx.get_mut(i).1[0])),
//!         Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::yield_now(),
//!         Err(e) => return Err(e),
//!     }
//! }
//! assert_eq!(got, [0, 1, 2]);
//! # Ok(())
//! # }
//! ```

use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};

use mpgameserver::MAX_DATAGRAM;

/// Datagrams per batch (per system call on Linux).
pub const BATCH: usize = 32;

/// Most datagrams in one GSO send (the kernel's `UDP_MAX_SEGMENTS`).
#[cfg(target_os = "linux")]
const GSO_MAX_SEGMENTS: usize = 64;

/// Most bytes in one GSO send: the UDP length field's limit, less the
/// headers.
#[cfg(target_os = "linux")]
const GSO_MAX_BYTES: usize = 65_000;

/// Whether a GSO send failed because segmentation offload is not available
/// (an old kernel, a device without checksum offload, an IPsec route), not
/// because of the datagrams or the socket.
#[cfg(target_os = "linux")]
fn gso_refused(e: &io::Error) -> bool {
    use rustix::io::Errno;
    e.raw_os_error().is_some_and(|code| {
        [Errno::INVAL, Errno::IO, Errno::NOPROTOOPT, Errno::OPNOTSUPP].iter().any(|errno| errno.raw_os_error() == code)
    })
}

/// Receive buffer length: one byte more than the core ever accepts, so a
/// longer datagram is recognised (and dropped) instead of being truncated.
pub const RECV_LEN: usize = MAX_DATAGRAM + 1;

const UNSPECIFIED: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

/// Up to [`BATCH`] received datagrams and their sources, in a fixed pool of
/// buffers.
pub struct RecvBatch {
    bufs: Box<[[u8; RECV_LEN]; BATCH]>,
    meta: [(usize, SocketAddr); BATCH],
    len: usize,
    /// An error met after some datagrams were received (fallback path),
    /// reported by the next call.
    #[cfg(not(target_os = "linux"))]
    deferred: Option<io::Error>,
}

impl RecvBatch {
    /// An empty batch with its buffers allocated.
    pub fn new() -> RecvBatch {
        RecvBatch {
            bufs: Box::new([[0; RECV_LEN]; BATCH]),
            meta: [(0, UNSPECIFIED); BATCH],
            len: 0,
            #[cfg(not(target_os = "linux"))]
            deferred: None,
        }
    }

    /// Receives the datagrams waiting on the non-blocking `socket`, up to
    /// [`BATCH`], replacing the previous batch. Returns how many arrived;
    /// `WouldBlock` when none is waiting. A datagram longer than
    /// `MAX_DATAGRAM` shows with length [`RECV_LEN`] (its tail cut off).
    pub fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        self.len = 0;
        self.len = self.recv_inner(socket)?;
        Ok(self.len)
    }

    /// How many datagrams the last [`recv`](RecvBatch::recv) received.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the last `recv` received nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Datagram `i` of the batch (`i < len()`): its source and bytes.
    ///
    /// # Panics
    ///
    /// If `i >= len()`.
    pub fn get_mut(&mut self, i: usize) -> (SocketAddr, &mut [u8]) {
        assert!(i < self.len, "datagram {i} of a batch of {}", self.len);
        let (len, from) = self.meta[i];
        (from, &mut self.bufs[i][..len])
    }

    #[cfg(target_os = "linux")]
    fn recv_inner(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        use std::cell::RefCell;
        use std::io::IoSliceMut;
        use std::os::fd::AsRawFd;

        use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};

        thread_local! {
            // The kernel's message headers for recvmmsg, built once per
            // thread: `MultiHeaders` holds raw pointers (it is not `Send`),
            // so it cannot live in the batch, which moves between threads.
            static HEADERS: RefCell<Option<MultiHeaders<SockaddrStorage>>> = const { RefCell::new(None) };
        }
        HEADERS.with(|cell| {
            let mut cell = cell.borrow_mut();
            let headers = cell.get_or_insert_with(|| MultiHeaders::preallocate(BATCH, None));
            let mut bufs = self.bufs.iter_mut();
            let mut iovs: [[IoSliceMut<'_>; 1]; BATCH] =
                std::array::from_fn(|_| [IoSliceMut::new(bufs.next().expect("BATCH buffers for BATCH slices"))]);
            // EINTR comes back as `Interrupted`, which callers retry.
            let received = recvmmsg(socket.as_raw_fd(), headers, iovs.iter_mut(), MsgFlags::MSG_DONTWAIT, None)
                .map_err(io::Error::from)?;
            let mut n = 0;
            for msg in received {
                // A source that is not IPv4/IPv6 cannot happen on a UDP/IP socket.
                let from = msg.address.as_ref().and_then(to_socket_addr).unwrap_or(UNSPECIFIED);
                self.meta[n] = (msg.bytes.min(RECV_LEN), from);
                n += 1;
            }
            Ok(n)
        })
    }

    #[cfg(not(target_os = "linux"))]
    fn recv_inner(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        if let Some(e) = self.deferred.take() {
            return Err(e);
        }
        let mut n = 0;
        while n < BATCH {
            match socket.recv_from(&mut self.bufs[n]) {
                Ok((len, from)) => {
                    self.meta[n] = (len, from);
                    n += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if n == 0 => return Err(e),
                Err(e) => {
                    if e.kind() != io::ErrorKind::WouldBlock {
                        self.deferred = Some(e);
                    }
                    break;
                }
            }
        }
        Ok(n)
    }
}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch::new()
    }
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch").field("len", &self.len).finish_non_exhaustive()
    }
}

#[cfg(target_os = "linux")]
fn to_socket_addr(a: &nix::sys::socket::SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

/// What one [`SendBatch::send`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Sent {
    /// Datagrams the socket accepted.
    pub sent: usize,
    /// Datagrams dropped on an error other than a full send buffer.
    pub failed: usize,
    /// The socket's send buffer is full: the rest stay queued until it is
    /// writable again.
    pub blocked: bool,
}

/// Up to [`BATCH`] datagrams queued for sending, in a fixed pool of
/// buffers: write one into [`buf_mut`](SendBatch::buf_mut), commit it with
/// [`push`](SendBatch::push), and [`send`](SendBatch::send) the lot.
pub struct SendBatch {
    bufs: Box<[[u8; MAX_DATAGRAM]; BATCH]>,
    meta: [(usize, SocketAddr); BATCH],
    /// Queued datagrams are `head..tail`.
    head: usize,
    tail: usize,
    /// Linux: whether runs go out with UDP segmentation offload; cleared
    /// for good when the kernel or the route refuses it.
    #[cfg(target_os = "linux")]
    gso: bool,
}

impl SendBatch {
    /// An empty queue with its buffers allocated.
    pub fn new() -> SendBatch {
        SendBatch {
            bufs: Box::new([[0; MAX_DATAGRAM]; BATCH]),
            meta: [(0, UNSPECIFIED); BATCH],
            head: 0,
            tail: 0,
            #[cfg(target_os = "linux")]
            gso: true,
        }
    }

    /// Datagrams queued and not sent yet.
    pub fn len(&self) -> usize {
        self.tail - self.head
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.head == self.tail
    }

    /// The buffer of the next datagram, or `None` when the batch is full
    /// ([`send`](SendBatch::send) it first). Its contents are whatever was
    /// there before.
    pub fn buf_mut(&mut self) -> Option<&mut [u8; MAX_DATAGRAM]> {
        if self.head == self.tail {
            self.head = 0;
            self.tail = 0;
        }
        self.bufs.get_mut(self.tail)
    }

    /// Queues the first `len` bytes of the buffer last returned by
    /// [`buf_mut`](SendBatch::buf_mut), for `to`.
    ///
    /// # Panics
    ///
    /// If the batch is full or `len > MAX_DATAGRAM`.
    pub fn push(&mut self, to: SocketAddr, len: usize) {
        assert!(self.tail < BATCH && len <= MAX_DATAGRAM, "push without room in the batch");
        self.meta[self.tail] = (len, to);
        self.tail += 1;
    }

    /// Sends the queued datagrams in order until the queue is empty or the
    /// socket's send buffer is full. A datagram refused for another reason
    /// is dropped and reported to `on_error`.
    pub fn send(&mut self, socket: &UdpSocket, mut on_error: impl FnMut(&io::Error, SocketAddr)) -> Sent {
        let mut out = Sent::default();
        while self.head < self.tail {
            match self.send_some(socket) {
                Ok(n) => {
                    self.head += n;
                    out.sent += n;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    out.blocked = true;
                    break;
                }
                Err(e) => {
                    // The error belongs to the first datagram of the call.
                    on_error(&e, self.meta[self.head].1);
                    self.head += 1;
                    out.failed += 1;
                }
            }
        }
        out
    }

    /// Sends from `head`; `Ok(n)` with `n ≥ 1`, or the first datagram's error.
    ///
    /// A run of datagrams to one destination, all of one length but the
    /// last (which may be shorter), leaves in one `sendmsg` with UDP
    /// segmentation offload (GSO, Linux 4.18+): the kernel builds and routes
    /// one large buffer and cuts it into the same datagrams on the wire (or
    /// the NIC does), instead of walking its UDP/IP path once per datagram.
    /// The other datagrams leave together in one `sendmmsg`.
    #[cfg(target_os = "linux")]
    fn send_some(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        let run = if self.gso { self.run_at(self.head) } else { 1 };
        if run >= 2 {
            match self.send_run(socket, run) {
                Err(e) if gso_refused(&e) => {
                    // Not on this kernel or route (no checksum offload, IPsec):
                    // every datagram alone from now on.
                    self.gso = false;
                    tracing::debug!(error = %e, "UDP segmentation offload refused; sending datagrams one by one");
                }
                result => return result,
            }
        }
        // Up to the next run.
        let mut end = self.head + 1;
        while end < self.tail && (!self.gso || self.run_at(end) < 2) {
            end += 1;
        }
        self.send_each(socket, end)
    }

    /// How many datagrams from `i` form one GSO run (1: none): the same
    /// destination, the length of the first, the last possibly shorter,
    /// within the kernel's bounds (64 segments, a 64 KiB buffer).
    #[cfg(target_os = "linux")]
    fn run_at(&self, i: usize) -> usize {
        let (seg, to) = self.meta[i];
        let (mut n, mut bytes) = (1, seg);
        while i + n < self.tail && n < GSO_MAX_SEGMENTS {
            let (len, next_to) = self.meta[i + n];
            if next_to != to || len > seg || bytes + len > GSO_MAX_BYTES {
                break;
            }
            n += 1;
            bytes += len;
            if len < seg {
                break; // a shorter datagram ends the run
            }
        }
        n
    }

    /// Sends the run of `n` datagrams from `head` as one message with a
    /// `UDP_SEGMENT` control message; `Ok(n)` or the error.
    #[cfg(target_os = "linux")]
    fn send_run(&self, socket: &UdpSocket, n: usize) -> io::Result<usize> {
        use std::cell::RefCell;
        use std::io::IoSlice;
        use std::os::fd::AsRawFd;

        use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};

        thread_local! {
            // One message header with room for the control message, built
            // once per thread (it holds raw pointers: see RecvBatch).
            static HEADERS: RefCell<Option<MultiHeaders<SockaddrStorage>>> = const { RefCell::new(None) };
        }
        let (seg, to) = self.meta[self.head];
        let iovs: [IoSlice<'_>; BATCH] = std::array::from_fn(|k| {
            let i = self.head + k;
            IoSlice::new(if k < n { &self.bufs[i][..self.meta[i].0] } else { &[] })
        });
        // seg ≤ MAX_DATAGRAM, so it fits a u16.
        let seg = seg as u16;
        HEADERS.with(|cell| {
            let mut cell = cell.borrow_mut();
            let headers = cell.get_or_insert_with(|| MultiHeaders::preallocate(1, Some(nix::cmsg_space!(u16))));
            let cmsgs = [ControlMessage::UdpGsoSegments(&seg)];
            let addrs = [Some(SockaddrStorage::from(to))];
            let sent = sendmmsg(socket.as_raw_fd(), headers, &[&iovs[..n]], addrs, cmsgs, MsgFlags::empty())
                .map_err(io::Error::from)?
                .count();
            if sent == 0 { Err(io::Error::from(io::ErrorKind::WouldBlock)) } else { Ok(n) }
        })
    }

    /// Sends datagrams `head..end` in one `sendmmsg`; `Ok(k)` with `k ≥ 1`,
    /// or the first datagram's error.
    #[cfg(target_os = "linux")]
    fn send_each(&self, socket: &UdpSocket, end: usize) -> io::Result<usize> {
        use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny, sendmmsg};
        use std::io::IoSlice;

        let (bufs, meta) = (&self.bufs[self.head..end], &self.meta[self.head..end]);
        let n = meta.len();
        let addrs: [SocketAddrAny; BATCH] = std::array::from_fn(|i| SocketAddrAny::from(meta[i.min(n - 1)].1));
        let iovs: [[IoSlice<'_>; 1]; BATCH] =
            std::array::from_fn(|i| [IoSlice::new(if i < n { &bufs[i][..meta[i].0] } else { &[] })]);
        let mut controls: [SendAncillaryBuffer<'_, '_, '_>; BATCH] = std::array::from_fn(|_| Default::default());
        let mut controls = controls.iter_mut();
        let mut msgs: [MMsgHdr<'_>; BATCH] = std::array::from_fn(|i| {
            MMsgHdr::new_with_addr(&addrs[i], &iovs[i], controls.next().expect("BATCH controls for BATCH messages"))
        });
        match sendmmsg(socket, &mut msgs[..n], SendFlags::empty()) {
            Ok(0) => Err(io::Error::from(io::ErrorKind::WouldBlock)),
            Ok(sent) => Ok(sent),
            Err(e) => Err(e.into()),
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn send_some(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        let mut sent = 0;
        for i in self.head..self.tail {
            let (len, to) = self.meta[i];
            match socket.send_to(&self.bufs[i][..len], to) {
                Ok(_) => sent += 1,
                Err(e) if sent == 0 => return Err(e),
                // Reported by the next call, which starts with this datagram.
                Err(_) => break,
            }
        }
        Ok(sent)
    }
}

impl Default for SendBatch {
    fn default() -> Self {
        SendBatch::new()
    }
}

impl std::fmt::Debug for SendBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBatch").field("queued", &self.len()).finish_non_exhaustive()
    }
}

/// Asks the kernel for a receive buffer of at least `bytes` on `socket`
/// (capped by the system's maximum, `net.core.rmem_max` on Linux). A busy
/// server needs room for the datagrams that arrive while it computes.
/// Best effort: returns the size in effect.
pub fn grow_recv_buffer(socket: &UdpSocket, bytes: usize) -> io::Result<usize> {
    use rustix::net::sockopt;
    let current = sockopt::socket_recv_buffer_size(socket)?;
    if current < bytes {
        // Refusals (above the cap on some systems) leave the current size.
        let _ = sockopt::set_socket_recv_buffer_size(socket, bytes);
    }
    Ok(sockopt::socket_recv_buffer_size(socket)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(tx: &mut SendBatch, to: SocketAddr, len: usize, tag: u8) {
        let buf = tx.buf_mut().expect("room in the batch");
        buf[..len].fill(tag);
        tx.push(to, len);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn runs_are_one_destination_one_length_the_last_shorter() {
        let a: SocketAddr = "127.0.0.1:1000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2000".parse().unwrap();
        let mut tx = SendBatch::new();
        // 0: an ack alone; 1-4: a run ending with a shorter datagram; 5-6:
        // a run broken by the destination; 7: longer than the run before.
        for (to, len) in [(a, 60), (a, 1200), (a, 1200), (a, 1200), (a, 700), (a, 1200), (b, 1200), (b, 1300)] {
            queue(&mut tx, to, len, 0);
        }
        let runs: Vec<usize> = (0..tx.tail).map(|i| tx.run_at(i)).collect();
        assert_eq!(runs, [1, 4, 3, 2, 1, 1, 1, 1]);
        // The bounds: 64 segments and 65,000 bytes.
        let mut tx = SendBatch::new();
        for _ in 0..BATCH {
            queue(&mut tx, a, 2048, 0);
        }
        assert_eq!(tx.run_at(0), 31, "31 × 2,048 B fit 65,000 B, 32 do not");
        let mut tx = SendBatch::new();
        for _ in 0..BATCH {
            queue(&mut tx, a, 10, 0);
        }
        assert_eq!(tx.run_at(0), BATCH);
        assert!(gso_refused(&io::Error::from_raw_os_error(rustix::io::Errno::IO.raw_os_error())));
        assert!(!gso_refused(&io::Error::from(io::ErrorKind::WouldBlock)));
    }

    /// Whatever the kernel offers (GSO or not), a batch of runs and single
    /// datagrams arrives as the same datagrams, in order, byte for byte.
    #[test]
    fn runs_arrive_as_separate_datagrams() {
        let rx_socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx_socket.set_nonblocking(true).unwrap();
        let to = rx_socket.local_addr().unwrap();
        let tx_socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let lens = [60, 1200, 1200, 1200, 1200, 431, 1200, 1200, 90];
        let mut tx = SendBatch::new();
        for (i, &len) in lens.iter().enumerate() {
            queue(&mut tx, to, len, i as u8);
        }
        let sent = tx.send(&tx_socket, |e, to| panic!("send to {to} failed: {e}"));
        assert_eq!((sent.sent, sent.failed, sent.blocked), (lens.len(), 0, false));
        assert!(tx.is_empty());
        let mut rx = RecvBatch::new();
        let mut got = Vec::new();
        let clock = crate::clock::Clock::new();
        let deadline = clock.now() + mpgameserver::Duration::from_secs(5);
        while got.len() < lens.len() && clock.now() < deadline {
            match rx.recv(&rx_socket) {
                Ok(n) => {
                    for i in 0..n {
                        let (from, bytes) = rx.get_mut(i);
                        assert_eq!(from, tx_socket.local_addr().unwrap());
                        got.push((bytes.len(), bytes.to_vec()));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("receive failed: {e}"),
            }
        }
        assert_eq!(got.len(), lens.len(), "every datagram arrives on loopback");
        for (i, (len, bytes)) in got.iter().enumerate() {
            assert_eq!(*len, lens[i], "datagram {i}");
            assert!(bytes.iter().all(|&b| b == i as u8), "datagram {i} holds its own bytes");
        }
    }
}
