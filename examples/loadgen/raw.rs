//! The raw baseline: UDP + AES-128-GCM without the protocol. A request is
//! `header (20 B) ‖ payload sealed in place ‖ tag (16 B)`, the same framing
//! and per-datagram cryptography as an MPGS/1 datagram, with no handshake,
//! acks, sequence windows, fragments or pacing. The server opens each
//! request and seals it back to its sender: one open and one seal per
//! message, like an echo through the protocol.
//!
//! The key is a fixed constant: this measures cost, not security.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration as StdDuration;

use mpgameserver::_internal::PacketKey;
use mpgameserver::{Duration, MAX_DATAGRAM};
use mpgameserver_drivers::Clock;
use mpgameserver_drivers::udp::{BATCH, RecvBatch, SendBatch};
use rustix::event::{PollFd, PollFlags, Timespec};

/// Header length (the nonce is its first 12 bytes, the AAD all of it).
pub const HEADER: usize = 20;
/// Tag length.
pub const TAG: usize = 16;
/// Bytes a raw datagram adds to its payload.
pub const OVERHEAD: usize = HEADER + TAG;
/// The largest payload of one raw datagram.
pub const MAX_PAYLOAD: usize = MAX_DATAGRAM - OVERHEAD;

/// Direction bit in the first header byte: set on replies, so a reply
/// never reuses the nonce of its request.
const REPLY: u8 = 0x80;

/// The fixed baseline key.
pub fn key() -> PacketKey {
    PacketKey::new(b"mpgs-raw-bench!!")
}

/// Writes a request from `client` (its `counter`-th) carrying `payload`
/// into `buf`; returns its length.
pub fn seal_request(key: &PacketKey, client: u32, counter: u64, payload: &[u8], buf: &mut [u8]) -> usize {
    let mut header = [0u8; HEADER];
    header[0..4].copy_from_slice(&(client & 0x7FFF_FFFF).to_be_bytes());
    header[4..12].copy_from_slice(&counter.to_be_bytes());
    header[12..16].copy_from_slice(&(payload.len() as u32).to_be_bytes());
    let end = HEADER + payload.len();
    buf[..HEADER].copy_from_slice(&header);
    buf[HEADER..end].copy_from_slice(payload);
    let tag = key.seal(&header, &mut buf[HEADER..end]);
    buf[end..end + TAG].copy_from_slice(&tag);
    end + TAG
}

/// Opens a datagram in place; returns its payload, or `None` if it does
/// not authenticate.
pub fn open<'a>(key: &PacketKey, datagram: &'a mut [u8]) -> Option<&'a mut [u8]> {
    let len = datagram.len().checked_sub(OVERHEAD)?;
    let (header, rest) = datagram.split_at_mut(HEADER);
    let header: &[u8; HEADER] = (&*header).try_into().ok()?;
    let (payload, tag) = rest.split_at_mut(len);
    let tag: &[u8; TAG] = (&*tag).try_into().ok()?;
    key.open(header, payload, tag).ok()?;
    Some(payload)
}

/// Turns an opened request (in place) into its sealed reply.
fn seal_reply(key: &PacketKey, datagram: &mut [u8]) {
    let len = datagram.len() - OVERHEAD;
    let (header, rest) = datagram.split_at_mut(HEADER);
    header[0] |= REPLY;
    let header: &[u8; HEADER] = (&*header).try_into().expect("split at HEADER");
    let (payload, tag) = rest.split_at_mut(len);
    tag.copy_from_slice(&key.seal(header, payload));
}

/// Runs the raw echo server on `bind` for `duration` (or until killed),
/// with the drivers' batched I/O. Returns the number of replies sent.
pub fn serve(bind: SocketAddr, duration: Option<Duration>) -> io::Result<u64> {
    let socket = UdpSocket::bind(bind)?;
    socket.set_nonblocking(true)?;
    mpgameserver_drivers::udp::grow_recv_buffer(&socket, 4 << 20)?;
    let key = key();
    let clock = Clock::new();
    let end = duration.map(|d| clock.now() + d);
    let (mut rx, mut tx) = (RecvBatch::new(), SendBatch::new());
    let mut replies = 0u64;
    println!("raw UDP + AES-GCM echo server on {}", socket.local_addr()?);
    loop {
        if end.is_some_and(|e| clock.now() >= e) {
            return Ok(replies);
        }
        let mut flags = PollFlags::IN;
        if !tx.is_empty() {
            flags |= PollFlags::OUT;
        }
        let mut fds = [PollFd::new(&socket, flags)];
        let timeout = Timespec::try_from(StdDuration::from_millis(100)).expect("100 ms fits a timespec");
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        loop {
            if !tx.is_empty() && tx.send(&socket, |_, _| {}).blocked {
                break;
            }
            let n = match rx.recv(&socket) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => continue, // an ICMP report of an earlier send
            };
            for i in 0..n {
                let (from, datagram) = rx.get_mut(i);
                if datagram.len() > MAX_DATAGRAM || open(&key, datagram).is_none() {
                    continue;
                }
                let buf = tx.buf_mut().expect("the batch was sent before receiving another");
                buf[..datagram.len()].copy_from_slice(datagram);
                seal_reply(&key, &mut buf[..datagram.len()]);
                tx.push(from, datagram.len());
                replies += 1;
            }
            let sent = tx.send(&socket, |_, _| {});
            if sent.blocked || n < BATCH {
                break; // the socket is full, or was empty
            }
        }
    }
}
