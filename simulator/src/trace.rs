//! The record of everything that happened to every datagram, and its
//! digest.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;

use mpgameserver::_internal::wire::MsgType;
use mpgameserver::Instant;
use sha2::{Digest, Sha256};

/// Why the simulated network dropped a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropCause {
    /// The link's loss model.
    Loss,
    /// The two nodes are partitioned.
    Partition,
    /// Larger than the link's MTU.
    Mtu,
    /// The bandwidth cap's queue was full.
    QueueFull,
    /// Scripted with [`crate::Sim::drop_next`].
    Scripted,
    /// No node has the destination address.
    NoRoute,
}

impl DropCause {
    /// Every cause, in counter order.
    pub const ALL: [DropCause; 6] = [
        DropCause::Loss,
        DropCause::Partition,
        DropCause::Mtu,
        DropCause::QueueFull,
        DropCause::Scripted,
        DropCause::NoRoute,
    ];

    /// A short lowercase name.
    pub const fn name(self) -> &'static str {
        match self {
            DropCause::Loss => "loss",
            DropCause::Partition => "partition",
            DropCause::Mtu => "mtu",
            DropCause::QueueFull => "queue_full",
            DropCause::Scripted => "scripted",
            DropCause::NoRoute => "no_route",
        }
    }
}

/// What happened to a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceKind {
    /// An endpoint emitted it (`poll_transmit`).
    Send,
    /// The network dropped it.
    Drop(DropCause),
    /// It reached its destination (`handle_datagram`).
    Deliver,
    /// The network scheduled a second copy.
    Duplicate,
    /// The network flipped this many bits in a copy.
    Corrupt {
        /// Bits flipped (1 to 3).
        bits: u8,
    },
    /// Held back on a held link.
    Hold,
    /// Released from a held link.
    Release,
    /// Raw bytes put on the network by [`crate::Sim::inject`].
    Inject,
    /// A captured datagram put on the network again by [`crate::Sim::replay`].
    Replay,
}

impl TraceKind {
    fn code(self) -> [u8; 2] {
        match self {
            TraceKind::Send => [1, 0],
            TraceKind::Drop(c) => [2, c as u8],
            TraceKind::Deliver => [3, 0],
            TraceKind::Duplicate => [4, 0],
            TraceKind::Corrupt { bits } => [5, bits],
            TraceKind::Hold => [6, 0],
            TraceKind::Release => [7, 0],
            TraceKind::Inject => [8, 0],
            TraceKind::Replay => [9, 0],
        }
    }
}

impl fmt::Display for TraceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceKind::Send => f.pad("send"),
            TraceKind::Drop(c) => f.pad(&format!("drop({})", c.name())),
            TraceKind::Deliver => f.pad("deliver"),
            TraceKind::Duplicate => f.pad("duplicate"),
            TraceKind::Corrupt { bits } => f.pad(&format!("corrupt({bits} bits)")),
            TraceKind::Hold => f.pad("hold"),
            TraceKind::Release => f.pad("release"),
            TraceKind::Inject => f.pad("inject"),
            TraceKind::Replay => f.pad("replay"),
        }
    }
}

/// One line of the trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceEntry {
    /// Virtual time.
    pub at: Instant,
    /// The datagram's id: every datagram an endpoint emits, injects or
    /// replays gets the next one; a duplicate keeps its original's.
    pub id: u64,
    /// What happened.
    pub kind: TraceKind,
    /// Source address.
    pub from: SocketAddr,
    /// Destination address.
    pub to: SocketAddr,
    /// Length in bytes.
    pub len: usize,
    /// The header's packet type, when the datagram starts with an MPGS/1
    /// magic and a valid type.
    pub msg_type: Option<MsgType>,
}

impl TraceEntry {
    /// Length of [`TraceEntry::encode`]'s output.
    const ENCODED_LEN: usize = 8 + 8 + 2 + 2 * 19 + 8 + 1;

    /// A fixed-size canonical encoding, for the digest.
    fn encode(&self) -> [u8; TraceEntry::ENCODED_LEN] {
        let mut out = [0u8; TraceEntry::ENCODED_LEN];
        out[0..8].copy_from_slice(&self.at.as_micros().to_be_bytes());
        out[8..16].copy_from_slice(&self.id.to_be_bytes());
        out[16..18].copy_from_slice(&self.kind.code());
        for (k, a) in [self.from, self.to].into_iter().enumerate() {
            let at = 18 + 19 * k;
            match a {
                SocketAddr::V4(v4) => {
                    out[at] = 4;
                    out[at + 1..at + 5].copy_from_slice(&v4.ip().octets());
                }
                SocketAddr::V6(v6) => {
                    out[at] = 6;
                    out[at + 1..at + 17].copy_from_slice(&v6.ip().octets());
                }
            }
            out[at + 17..at + 19].copy_from_slice(&a.port().to_be_bytes());
        }
        out[56..64].copy_from_slice(&(self.len as u64).to_be_bytes());
        out[64] = self.msg_type.map_or(0xFF, MsgType::to_u8);
        out
    }
}

impl fmt::Display for TraceEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ty = self.msg_type.map_or_else(|| "?".to_string(), |t| format!("{t:?}"));
        write!(
            f,
            "{:>14} #{:<7} {:<18} {} -> {} {:>5} B {}",
            self.at.to_string(),
            self.id,
            self.kind,
            self.from,
            self.to,
            self.len,
            ty
        )
    }
}

/// The packet type of an MPGS/1 datagram, if it looks like one.
pub(crate) fn msg_type_of(bytes: &[u8]) -> Option<MsgType> {
    if bytes.len() < 20 || !(bytes.starts_with(b"FSOS") || bytes.starts_with(b"FSOC")) {
        return None;
    }
    MsgType::from_u8(bytes[12])
}

/// The trace: the most recent entries (all of them up to the capacity) and
/// a SHA-256 digest of every entry ever recorded, including the bytes of
/// every datagram put on the network.
pub struct Trace {
    entries: VecDeque<TraceEntry>,
    capacity: usize,
    total: u64,
    hasher: Sha256,
    /// Bytes not hashed yet: hashing in large chunks is much cheaper.
    pending: Vec<u8>,
}

impl Trace {
    /// Default number of entries kept.
    pub const DEFAULT_CAPACITY: usize = 100_000;
    /// Bytes buffered before they go through the hash.
    const CHUNK: usize = 16 * 1024;

    pub(crate) fn new() -> Trace {
        Trace {
            entries: VecDeque::new(),
            capacity: Trace::DEFAULT_CAPACITY,
            total: 0,
            hasher: Sha256::new(),
            pending: Vec::with_capacity(Trace::CHUNK + 4096),
        }
    }

    pub(crate) fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
        while self.entries.len() > capacity {
            self.entries.pop_front();
        }
    }

    /// Records an entry; `bytes` (the datagram's contents) go into the
    /// digest too.
    pub(crate) fn record(&mut self, entry: TraceEntry, bytes: Option<&[u8]>) {
        self.pending.extend_from_slice(&entry.encode());
        if let Some(b) = bytes {
            self.pending.extend_from_slice(b);
        }
        if self.pending.len() >= Trace::CHUNK {
            self.hasher.update(&self.pending);
            self.pending.clear();
        }
        self.total += 1;
        if self.capacity > 0 {
            if self.entries.len() == self.capacity {
                self.entries.pop_front();
            }
            self.entries.push_back(entry);
        }
    }

    /// The entries kept, oldest first.
    pub fn entries(&self) -> impl ExactSizeIterator<Item = &TraceEntry> + DoubleEndedIterator {
        self.entries.iter()
    }

    /// Entries recorded since the start, kept or not.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// How many entries are kept at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// SHA-256 over every entry recorded so far (kept or not) and the bytes
    /// of every datagram sent, injected, replayed or corrupted.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = self.hasher.clone();
        h.update(&self.pending);
        h.finalize().into()
    }

    /// The last `n` entries kept, one per line.
    pub fn tail(&self, n: usize) -> String {
        let skip = self.entries.len().saturating_sub(n);
        let mut s = String::new();
        for e in self.entries.iter().skip(skip) {
            s.push_str(&e.to_string());
            s.push('\n');
        }
        s
    }
}

impl fmt::Debug for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trace").field("total", &self.total).field("kept", &self.entries.len()).finish_non_exhaustive()
    }
}

/// A digest as 64 lowercase hex digits.
pub fn hex(digest: &[u8; 32]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u64) -> TraceEntry {
        let a: SocketAddr = "[fd00::1]:4000".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:5000".parse().unwrap();
        TraceEntry {
            at: Instant::from_micros(id * 7),
            id,
            kind: TraceKind::Send,
            from: a,
            to: b,
            len: 100,
            msg_type: None,
        }
    }

    #[test]
    fn the_digest_hashes_every_entry_and_byte_whatever_the_chunking() {
        let mut t = Trace::new();
        t.set_capacity(5);
        let mut all = Vec::new();
        for id in 0..1000 {
            let bytes = [id as u8; 100];
            t.record(entry(id), Some(&bytes));
            all.extend_from_slice(&entry(id).encode());
            all.extend_from_slice(&bytes);
        }
        let direct: [u8; 32] = Sha256::digest(&all).into();
        assert_eq!(t.digest(), direct);
        assert_eq!((t.total(), t.entries().len()), (1000, 5));
        assert_eq!(t.entries().next().map(|e| e.id), Some(995));
        // One more entry, or one other byte, changes it.
        let mut u = Trace::new();
        for id in 0..1000 {
            let mut bytes = [id as u8; 100];
            bytes[99] ^= u8::from(id == 500);
            u.record(entry(id), Some(&bytes));
        }
        assert_ne!(u.digest(), direct);
        assert_eq!(hex(&direct).len(), 64);
        assert!(entry(3).to_string().contains("[fd00::1]:4000 -> 10.0.0.2:5000"));
    }
}
