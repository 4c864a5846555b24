//! Worst-case memory, derived from the configuration (SECURITY.md, "Memory
//! bounds"). `tests/memory_bound.rs` drives a server with a hostile peer
//! under a counting allocator and checks the figures.
//!
//! The bounds count heap bytes as the allocator hands them out, with the
//! growth slack of `Vec`/`VecDeque` (capacity up to twice the length).
//! They do not count the application's own copies: a delivered message
//! belongs to the application once `poll_event` returns it.

use core::mem::size_of;
use core::net::SocketAddr;

use crate::config::{EndpointConfig, RateLimit};
use crate::endpoint::SLOT_SIZE;
use crate::event::QUEUE_KEEP;
use crate::event::{ConnectionId, Event};
use crate::mpgs1::{ENTRY_SIZE, MAX_UNITS, MESSAGE_SIZE, SENT_PACKET_SIZE, SERVER_PENDING_SIZE, UNIT_SIZE};
use crate::stats::RATE_HISTORY_SECS;

/// Bytes of one second of a connection's rate history.
const RATE_BUCKET_SIZE: usize = 16;
/// Most messages in one datagram (§5).
const MAX_MESSAGES_PER_DATAGRAM: usize = 255;
/// Datagrams one connection may send within one `ctime` second (the AEAD
/// nonce budget).
const MAX_DATAGRAMS_PER_SECOND: usize = 65_000;
/// Room for a connection's entries in the endpoint's other per-connection
/// queues (timers and the like), with growth slack.
const QUEUE_SLACK: usize = 4 * 16 + 2 * 8;
/// What a connection's output queues (events, endpoint events, message
/// outcomes) keep between inputs: they shrink back to `QUEUE_KEEP` entries
/// once drained.
const OUTPUT_QUEUES: usize =
    QUEUE_KEEP * (size_of::<Event>() + size_of::<crate::stats::EndpointEvent>() + crate::mpgs1::OUTCOME_SIZE);
/// One admission source (a `BTreeMap` entry keyed by address or prefix).
const SOURCE_ENTRY_SIZE: usize = 64;
/// One entry of a `BTreeMap` keyed by address, with its node overhead.
const MAP_ENTRY_SIZE: usize = 2 * (size_of::<SocketAddr>() + size_of::<u32>()) + 16;

/// Worst-case heap bytes of an endpoint, from [`EndpointConfig::memory_bounds`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryBounds {
    /// One established connection whose peer holds the most reassembly
    /// state it can (`max_reassemblies` reassemblies, `max_reassembly_bytes`
    /// of chunks) and never acknowledges anything, while the application
    /// fills the send queue (`send_queue_bytes`, `send_queue_messages`).
    pub per_connection: usize,
    /// The part of `per_connection` the peer alone can make us hold:
    /// everything but the send queue, which only the application fills.
    pub per_connection_peer: usize,
    /// One pending handshake at a server, admission tables included.
    pub per_pending_handshake: usize,
    /// The whole endpoint: `max_connections` connections and
    /// `max_pending_handshakes` handshakes, with reassembly capped by
    /// `max_reassembly_bytes_total` across all connections.
    pub endpoint: usize,
    /// The part of `endpoint` hostile peers alone can make us hold (no
    /// send queues): what a server's memory must allow for.
    pub endpoint_peer: usize,
    /// One MPGS/2 connection: the peer's share (every reliable channel
    /// opened, the reassembly budget of one connection with each partial's
    /// bookkeeping, the sent-packet record full of acks and keep-alives it
    /// never acknowledges) plus the application's send queue and the frame
    /// records of a full in-flight window.
    pub per_v2_connection: usize,
    /// The part of `per_v2_connection` the peer alone can make us hold.
    pub per_v2_connection_peer: usize,
    /// One MPGS/2 pending handshake at a server: the boxed connection with
    /// its stored SERVER_HELLO, its pending-table entry and admission entry.
    pub per_v2_pending_handshake: usize,
}

impl EndpointConfig {
    /// Worst-case heap memory per connection, per pending handshake and for
    /// the endpoint, derived from these limits. See SECURITY.md.
    pub fn memory_bounds(&self) -> MemoryBounds {
        let sat = |a: usize, b: usize| a.saturating_mul(b);
        // Table slot (the connection lives inline, the table may be twice
        // as long as needed), rate history, address map entry, its share of
        // its address's admission entry, and a place in each of the
        // endpoint's work queues.
        let fixed = 2 * SLOT_SIZE
            + RATE_HISTORY_SECS * RATE_BUCKET_SIZE
            + MAP_ENTRY_SIZE
            + SOURCE_ENTRY_SIZE
            + 2 * 3 * size_of::<ConnectionId>()
            + QUEUE_SLACK
            + OUTPUT_QUEUES;
        // Reassembly bookkeeping: entries and received-bitmaps.
        let bitmap = usize::from(self.max_fragments).div_ceil(64) * 8;
        let reassembly_books = sat(2 * self.max_reassemblies, ENTRY_SIZE + bitmap);
        let reassembly_bytes = self.max_reassembly_bytes.min(self.max_reassembly_bytes_total);
        // Send side. Unfragmented messages share a byte arena that keeps a
        // dead prefix of less than its live part and never shrinks its
        // capacity (at most twice its longest length): 4 × the queue bytes.
        // Fragmented ones have exact buffers inside the same byte budget.
        let arena = sat(4, self.send_queue_bytes).saturating_add(8 * 1024);
        let messages = sat(2 * self.send_queue_messages, MESSAGE_SIZE);
        let units = 2 * MAX_UNITS * UNIT_SIZE;
        // Datagrams remembered until acknowledged or declared lost (after
        // `ack_timeout`), each with the units it carried.
        let per_timeout = if self.send_interval.is_zero() {
            MAX_DATAGRAMS_PER_SECOND * (self.ack_timeout.as_secs() as usize + 1)
        } else {
            let n = self.ack_timeout.as_micros() / self.send_interval.as_micros().max(1);
            usize::try_from(n).unwrap_or(usize::MAX).saturating_add(self.send_burst as usize)
        }
        .saturating_add(64);
        let in_flight = sat(2 * per_timeout, SENT_PACKET_SIZE + MAX_MESSAGES_PER_DATAGRAM * size_of::<u64>());
        // The outcome events of a closing connection wait in the endpoint's
        // event queue until the application drains them.
        let events = sat(2 * self.send_queue_messages, size_of::<Event>());
        let send =
            arena.saturating_add(messages).saturating_add(units).saturating_add(in_flight).saturating_add(events);

        let peer = fixed + reassembly_books + reassembly_bytes;
        let per_connection = peer.saturating_add(send);
        // A pending handshake: the connection's fixed part, its boxed
        // handshake state, two admission sources and its eviction-order slot.
        let per_pending_handshake = fixed + SERVER_PENDING_SIZE + 2 * SOURCE_ENTRY_SIZE + 2 * size_of::<ConnectionId>();
        // Admission sources whose handshake ended but whose buckets have
        // not refilled yet: two per accepted hello within the longest
        // refill time plus the sweep interval (about 200 KB at the defaults).
        let refill = |l: RateLimit| l.interval_micros().saturating_mul(u64::from(l.burst));
        let window = refill(self.hello_rate_per_ip).max(refill(self.hello_rate_per_prefix)).saturating_add(1_000_000);
        let hellos = u64::from(self.hello_rate.burst)
            .saturating_add(u64::from(self.hello_rate.per_second).saturating_mul(window) / 1_000_000);
        let idle_sources = usize::try_from(hellos.saturating_mul(2)).unwrap_or(usize::MAX);
        let admission = sat(idle_sources, SOURCE_ENTRY_SIZE);
        let endpoint = sat(self.max_connections, fixed + reassembly_books)
            .saturating_add(admission)
            .saturating_add(sat(self.max_connections, send))
            .saturating_add(self.max_reassembly_bytes_total)
            .saturating_add(sat(self.max_pending_handshakes, per_pending_handshake));
        let endpoint_peer = sat(self.max_connections, fixed + reassembly_books)
            .saturating_add(admission)
            .saturating_add(self.max_reassembly_bytes_total)
            .saturating_add(sat(self.max_pending_handshakes, per_pending_handshake));
        // MPGS/2 (MPGS2.md §4.1–§4.6). The record of sent packets holds at
        // most a quarter more than MAX_INFLIGHT_PACKETS (acks and probes may
        // overdraw), each with up to 64 frame records when the application
        // fills them, 2 (an ACK, a RESET_TOKEN) when only the peer does.
        use crate::mpgs2::{conn as c2, recovery as r2, session as s2};
        let sent = r2::MAX_INFLIGHT_PACKETS + r2::MAX_INFLIGHT_PACKETS / 4 + 1;
        // Every sending channel: the three `Delivery` ones and the configured.
        let channels = (3 + self.channels.len()) * s2::CHANNEL_SIZE;
        let v2_fixed = 2 * SLOT_SIZE
            + s2::CONNECTION_SIZE
            + MAP_ENTRY_SIZE
            + SOURCE_ENTRY_SIZE
            + QUEUE_SLACK
            + OUTPUT_QUEUES
            + channels;
        let v2_peer = v2_fixed
            + 2 * sent * r2::SENT_ENTRY_SIZE
            + 2 * sent * 2 * c2::RECORD_SIZE
            + usize::from(crate::mpgs2::frame::MAX_CHANNELS) * c2::RX_CHANNEL_SIZE
            + reassembly_bytes;
        let v2_send = arena
            .saturating_add(sat(self.send_queue_messages, s2::MESSAGE_OVERHEAD))
            .saturating_add((3 + self.channels.len()) * s2::CHANNEL_SPARE_SIZE)
            .saturating_add(sat(2 * sent * c2::RECORDS_PER_PACKET, c2::RECORD_SIZE))
            .saturating_add(events);
        let per_v2_connection = v2_peer.saturating_add(v2_send);
        let per_v2_pending_handshake =
            v2_fixed + 2 * (size_of::<s2::PendingKey>() + size_of::<ConnectionId>()) + 2 * SOURCE_ENTRY_SIZE;
        // The endpoint totals take the larger of the two versions per slot.
        let endpoint = endpoint.saturating_add(sat(
            self.max_connections,
            per_v2_connection.saturating_sub(reassembly_bytes).saturating_sub(fixed + reassembly_books + send),
        ));
        let endpoint_peer = endpoint_peer.saturating_add(sat(
            self.max_connections,
            v2_peer.saturating_sub(reassembly_bytes).saturating_sub(fixed + reassembly_books),
        ));
        MemoryBounds {
            per_connection,
            per_connection_peer: peer,
            per_pending_handshake,
            endpoint,
            endpoint_peer,
            per_v2_connection,
            per_v2_connection_peer: v2_peer,
            per_v2_pending_handshake,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_figures() {
        let b = EndpointConfig::default().memory_bounds();
        // The peer's share is the reassembly budget plus bookkeeping.
        assert!(b.per_connection_peer > 4 << 20 && b.per_connection_peer < (4 << 20) + (64 << 10), "{b:?}");
        assert!(b.per_pending_handshake < 16 << 10, "{b:?}");
        assert!(b.per_connection > b.per_connection_peer + (16 << 20));
        // MPGS/2: the reassembly budget, 64 reliable channels and the sent
        // record; the pending handshake stays small.
        assert!(b.per_v2_connection_peer > 4 << 20 && b.per_v2_connection_peer < 6 << 20, "{b:?}");
        assert!(b.per_v2_pending_handshake < 32 << 10, "{b:?}");
        assert!(b.endpoint_peer >= 4096 * (b.per_v2_connection_peer - (4 << 20)), "{b:?}");
        std::eprintln!("{b:?}");
    }
}
