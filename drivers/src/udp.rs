//! Batched datagram I/O on a non-blocking std `UdpSocket`, with fixed
//! buffer pools: nothing allocates once a batch exists.
//!
//! On Linux a [`RecvBatch`] fills up to [`BATCH`] buffers with one
//! `recvmmsg(2)` (through `nix`) and a [`SendBatch`] hands up to [`BATCH`]
//! queued datagrams to one `sendmmsg(2)` (through `rustix`), so a busy
//! server pays one system call per batch instead of one per datagram.
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
}

impl SendBatch {
    /// An empty queue with its buffers allocated.
    pub fn new() -> SendBatch {
        SendBatch { bufs: Box::new([[0; MAX_DATAGRAM]; BATCH]), meta: [(0, UNSPECIFIED); BATCH], head: 0, tail: 0 }
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
    #[cfg(target_os = "linux")]
    fn send_some(&self, socket: &UdpSocket) -> io::Result<usize> {
        use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny, sendmmsg};
        use std::io::IoSlice;

        let (bufs, meta) = (&self.bufs[self.head..self.tail], &self.meta[self.head..self.tail]);
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
    fn send_some(&self, socket: &UdpSocket) -> io::Result<usize> {
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
