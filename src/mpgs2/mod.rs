//! MPGS/2, the crate's native protocol (docs/MPGS2.md): the pure building
//! blocks of stage 1 (§8).
//!
//! Everything here is sans-IO and deterministic: wire formats parse and emit
//! over caller-owned buffers without allocating, time is an argument, and
//! every random value is passed in by the caller (who draws it from the
//! endpoint's seeded [`crate::Rng`]). No input from the network panics: every
//! parser returns a [`WireError`] that the caller drops and counts.
//!
//! * [`varint`], [`buf`]: QUIC variable-length integers (shortest form
//!   enforced) and the bounded reader/writer.
//! * [`tlv`]: the TLV block and transport parameters (§2.3).
//! * [`hello`]: HELLO2 inside the MPGS/1 CLIENT_HELLO frame, HELLO_RETRY,
//!   REJECT and SERVER_HELLO (§2.3, §2.5).
//! * [`packet`]: first-byte classification, the short header, packet-number
//!   truncation and recovery (§3.1, §3.2).
//! * [`frame`]: every frame type of §3.4.
//! * [`keys`]: transcript hash, signature input, key schedule with
//!   per-direction [`keys::KeyPair`]s, key update, exporter, and the
//!   AES-GCM key of one direction and generation (§2.6, §2.7, §3.3, §6.3).
//! * [`cookie`], [`reset`], [`replay`]: the stateless cookie (§2.4), the
//!   stateless reset token (§6.4), and the replay window (§3.2).
//! * [`ranges`], [`ack`], [`rtt`], [`recovery`], [`cc`], [`pacer`]: ack
//!   ranges and timing, RTT, loss detection and PTO (§4.1, RFC 9002), and
//!   NewReno congestion control with pacing (§5).
//! * [`send`], [`recv`]: the channel machinery of §4.3–§4.5 (reliable send
//!   by byte offset with retransmission by frame, unreliable fragment
//!   groups, reassembly, id and flow windows).
//! * [`protect`], [`handshake`]: the owner of short-packet sealing and
//!   opening, and the handshake as pure functions over bytes.
//! * [`conn`]: a connection after the handshake, as a `handle_*`/`poll_*`
//!   state machine over all of the above, tested two-sided in memory.
//! * `session`: the handshake phases around `conn` behind the endpoint's
//!   `Session` interface, and the mapping onto the crate's events.

// The endpoint drives MPGS/2 through `session` (src/session.rs, the
// endpoint's `accept2.rs`); parts of later stages (key updates initiated
// here, the exporter, connect tokens) are built and tested but not yet
// called from the endpoint.
#![cfg_attr(not(test), allow(dead_code))]

pub mod ack;
pub mod buf;
pub mod cc;
pub mod channels;
pub mod conn;
pub mod cookie;
pub mod frame;
pub mod handshake;
pub mod hello;
pub mod keys;
pub mod pacer;
pub mod packet;
pub mod protect;
pub mod ranges;
pub mod recovery;
pub mod recv;
pub mod replay;
pub mod reset;
pub mod rtt;
pub mod send;
pub(crate) mod session;
pub mod tlv;
pub mod varint;

#[cfg(test)]
mod vectors;

use core::fmt;

/// The MPGS/2 version number (§2.3, §2.9).
pub const VERSION: u8 = 2;
/// What a server with MPGS/2 enabled writes into the last 8 bytes of the
/// salt of every MPGS/1 SERVER_HELLO (§2.9): "MPGS/2", 0, 1.
pub const DOWNGRADE_SENTINEL: [u8; 8] = *b"MPGS/2\x00\x01";
/// The smallest UDP payload every MPGS/2 path carries, proven both ways by
/// the handshake (§4.5).
pub const MIN_UDP_PAYLOAD: usize = 1200;
/// Length of a server connection id (§3.1).
pub const CID_LEN: usize = 8;
/// Length of the AES-GCM tag (§3.1).
pub const TAG_LEN: usize = 16;
/// Length of `client_random` and `server_random` (§2.3, §2.5).
pub const RANDOM_LEN: usize = 16;
/// Packet numbers stay below 2^62, the varint range (§3.2).
pub const MAX_PN: u64 = (1 << 62) - 1;

/// Why MPGS/2 bytes could not be parsed, or could not be written.
///
/// On the receive path every variant means "drop and count" (for a hello or
/// header) or "close with PROTOCOL_VIOLATION" (for a frame inside an
/// authenticated packet, §3.4); the caller decides which.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// The input ended before a field, or an output buffer is too small.
    Truncated,
    /// A varint in a longer form than its value needs (§1: receivers treat
    /// it as malformed, so parse and emit are exact inverses).
    NonMinimalVarint,
    /// A type byte this version does not know (a TLV below 0x80, a frame
    /// type, a long-header type).
    UnknownType,
    /// TLVs out of ascending order or repeated (§2.3).
    TlvOrder,
    /// A required TLV is missing (§2.3, §2.5).
    MissingField,
    /// A length or value outside what the specification allows.
    BadValue,
    /// Reserved header bits set (§3.1).
    ReservedBits,
    /// Bytes left over where the format ends, or non-zero padding.
    TrailingBytes,
    /// The MPGS/1 frame around a HELLO2 is wrong (header fields, CRC, size).
    BadFrame,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WireError::Truncated => "truncated input or output buffer too small",
            WireError::NonMinimalVarint => "varint not in its shortest form",
            WireError::UnknownType => "unknown type",
            WireError::TlvOrder => "TLVs out of order or repeated",
            WireError::MissingField => "a required field is missing",
            WireError::BadValue => "field value or length out of range",
            WireError::ReservedBits => "reserved header bits set",
            WireError::TrailingBytes => "unexpected trailing bytes or non-zero padding",
            WireError::BadFrame => "malformed MPGS/1 frame around a HELLO2",
        })
    }
}

impl core::error::Error for WireError {}

/// Which end of a connection an endpoint is; frames have directions (§3.4)
/// and keys are named by direction (§2.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The end that sent HELLO2.
    Client,
    /// The end that sent SERVER_HELLO.
    Server,
}

impl Side {
    /// The other end.
    pub const fn peer(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use alloc::string::String;
    use alloc::vec::Vec;

    /// Decodes lower-case or upper-case hex; panics on bad input (tests only).
    pub fn hex(s: &str) -> Vec<u8> {
        assert!(s.len().is_multiple_of(2), "odd hex length");
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit")).collect()
    }

    /// Lower-case hex of `b`.
    pub fn to_hex(b: &[u8]) -> String {
        use core::fmt::Write;
        let mut s = String::with_capacity(b.len() * 2);
        for x in b {
            write!(s, "{x:02x}").expect("write to String");
        }
        s
    }
}
