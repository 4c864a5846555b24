//! # mpgameserver
//!
//! A secure UDP protocol core for multiplayer games, wire-compatible with
//! [MpGameServer](https://pypi.org/project/mpgameserver/) 0.2.4 (the
//! "MPGS/1" protocol): P-256 ECDH with an ECDSA-signed server hello,
//! HKDF-SHA256, AES-128-GCM on every datagram after the handshake, acks on
//! every datagram, three delivery modes, fragmentation of large messages and
//! coalescing of small ones.
//!
//! This crate is **sans-IO**: an [`Endpoint`] consumes `(time, bytes)` and
//! produces datagrams and [`Event`]s. It never touches a socket, a clock or
//! OS randomness, so the same inputs and [`Seed`] give byte-identical
//! output. The `mpgameserver-drivers` crate runs it over real sockets;
//! `mpgameserver-sim` runs it over a simulated lossy network.
//!
//! ## The run loop
//!
//! 1. Feed one input: [`Endpoint::handle_datagram`] or
//!    [`Endpoint::handle_timeout`].
//! 2. Drain [`Endpoint::poll_transmit`] and send each datagram.
//! 3. Drain [`Endpoint::poll_event`].
//! 4. Wait until [`Endpoint::poll_timeout`], a datagram, or your next game
//!    tick, and repeat.
//!
//! Here a client and a server are wired together by hand, with a
//! `VecDeque` standing in for the network:
//!
//! ```
//! use std::collections::VecDeque;
//! use std::net::SocketAddr;
//! use mpgameserver::{Delivery, Endpoint, EndpointConfig, Event, Instant, Seed, ServerKey, MAX_DATAGRAM};
//!
//! let server_addr: SocketAddr = "127.0.0.1:4000".parse().unwrap();
//! let client_addr: SocketAddr = "127.0.0.1:5000".parse().unwrap();
//!
//! // The server's long-term root key; clients pin its public half.
//! let root = ServerKey::generate(&mut mpgameserver::Rng::new(Seed::from_u64(1)));
//! let pinned = root.public_key();
//!
//! let mut server = Endpoint::server(EndpointConfig::default(), root, Seed::from_u64(2)).unwrap();
//! let mut client = Endpoint::client(EndpointConfig::default(), Seed::from_u64(3)).unwrap();
//!
//! let mut now = Instant::ZERO;
//! let conn = client.connect(now, server_addr, pinned).unwrap();
//! client.send(conn, b"hello, server", Delivery::Reliable).unwrap(); // waits for the handshake
//!
//! let mut wire: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)> = VecDeque::new(); // (from, to, bytes)
//! let mut buf = [0u8; MAX_DATAGRAM];
//! let mut server_got = Vec::new();
//! let mut client_delivered = false;
//! for _ in 0..100 {
//!     // 2. Drain transmits into the "network".
//!     while let Some(t) = client.poll_transmit(now, &mut buf) {
//!         wire.push_back((client_addr, t.destination, buf[..t.len].to_vec()));
//!     }
//!     while let Some(t) = server.poll_transmit(now, &mut buf) {
//!         wire.push_back((server_addr, t.destination, buf[..t.len].to_vec()));
//!     }
//!     // 1. Deliver every datagram in flight.
//!     while let Some((from, to, mut bytes)) = wire.pop_front() {
//!         let ep = if to == server_addr { &mut server } else { &mut client };
//!         ep.handle_datagram(now, from, &mut bytes);
//!     }
//!     // 3. Drain events.
//!     while let Some(ev) = server.poll_event() {
//!         if let Event::Message { conn, payload, .. } = ev {
//!             server_got.push(payload.clone());
//!             server.send(conn, b"hello, client", Delivery::Reliable).unwrap();
//!         }
//!     }
//!     while let Some(ev) = client.poll_event() {
//!         if let Event::Delivered { .. } = ev {
//!             client_delivered = true;
//!         }
//!     }
//!     // 4. Advance time to the next timer (or by a 60 Hz frame) and run timers.
//!     now = now + mpgameserver::Duration::from_micros(16_667);
//!     client.handle_timeout(now);
//!     server.handle_timeout(now);
//! }
//! assert_eq!(server_got, vec![b"hello, server".to_vec()]);
//! assert!(client_delivered);
//! ```
//!
//! ## Errors
//!
//! Bytes from the network never produce an error or a panic: a malformed,
//! forged, replayed or unexpected datagram is dropped and counted in
//! [`EndpointStats`] under a [`DropReason`]. Local misuse returns a small
//! error enum per operation ([`SendError`], [`ConnectError`],
//! [`ConfigError`], [`KeyError`]) whose message says what to do.
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

// The private `_fuzzing` feature replaces AES-GCM by an identity "cipher".
// It must never reach a real build, not even through `--all-features`:
// cargo-fuzz sets `--cfg fuzzing`, and fuzz/.cargo/config.toml does for the
// fuzz crate's own tests.
#[cfg(all(feature = "_fuzzing", not(fuzzing)))]
compile_error!(
    "the `_fuzzing` feature of mpgameserver disables all encryption and is only for the fuzz targets in fuzz/ \
     (built with `--cfg fuzzing`); do not enable it, and do not build with `--all-features`"
);

extern crate alloc;
#[cfg(any(test, feature = "std"))]
extern crate std;

mod admission;
mod blocklist;
mod budget;
pub mod channel;
mod config;
mod endpoint;
mod error;
mod event;
mod handler;
mod keys;
mod memory;
mod mpgs1;
mod mpgs2;
mod rng;
mod sending;
mod session;
mod state;
mod stats;
mod time;
mod timer;
#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
pub mod typed;
mod version;

#[cfg(test)]
mod tests;

pub use blocklist::{BlockList, IpNet, IpNetParseError};
pub use channel::{ChannelConfig, ChannelKind, ChannelMetrics, Oversize};
pub use config::{
    ConfigError, CookiePolicy, EndpointConfig, MAX_DATAGRAM, MAX_MESSAGE_SIZE_LIMIT, MAX_MTU, MIN_MTU, RateLimit,
    ResetBase, Sizes,
};
pub use endpoint::{Endpoint, Transmit};
pub use error::{ConnectError, SendError, UnknownConnection};
pub use event::SendOptions;
pub use event::{
    ConnectFailure, ConnectionId, Delivery, DisconnectReason, Event, LossReason, MessageId, ParseDeliveryError,
};
pub use handler::{Context, EventHandler, ServerContext, dispatch};
pub use keys::{KeyError, PublicKey, ServerKey, Zeroizing};
pub use memory::MemoryBounds;
pub use rng::{Rng, Seed};
pub use sending::Broadcast;
pub use session::Connection;
pub use state::{ConnectionState, ParseProtocolError, ProtocolVersion, Role};
pub use stats::{ConnectionMetrics, DropReason, EndpointStats, RATE_HISTORY_SECS, Rates};
pub use time::{Duration, Instant};

/// **Not public API**: MPGS/1 internals for this repository's own tests,
/// fuzz targets, simulator and load generator, which forge and inspect
/// datagrams. Anything here may change in any release.
#[doc(hidden)]
pub mod _internal {
    pub use crate::keys::{EphemeralKey, SPKI_LEN, SPKI_P256_PREFIX};
    #[cfg(feature = "_fuzzing")]
    pub use crate::mpgs1::protect::FUZZING_TAG;
    pub use crate::mpgs1::protect::{self, PacketKey, crc32, derive_packet_key};
    pub use crate::mpgs1::{seq, wire};

    /// MPGS/2's pure modules (not yet wired into the endpoint), for the fuzz
    /// targets.
    pub mod mpgs2 {
        pub use crate::mpgs2::{
            CID_LEN, MAX_PN, MIN_UDP_PAYLOAD, RANDOM_LEN, Side, TAG_LEN, VERSION, WireError, ack, buf, cc, channels,
            conn, cookie, frame, handshake, hello, keys, pacer, packet, protect, ranges, recovery, recv, replay, reset,
            rtt, send, tlv, varint,
        };
    }
}
