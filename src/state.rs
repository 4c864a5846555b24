//! The version-independent state of a connection: its role, its public
//! state, and how a client authenticates its server.

use crate::keys::PublicKey;

/// Which side of the handshake a connection is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// This endpoint connected to a server.
    Client,
    /// This endpoint accepted a client.
    Server,
}

/// The public state of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Handshake in progress.
    Connecting,
    /// Messages flow.
    Connected,
    /// `disconnect` was called; waiting for the peer's acknowledgement.
    Closing,
    /// Over; the handle is about to be released.
    Closed,
}

/// How a client authenticates the server's handshake (PROTOCOL.md §15 rule 12).
#[derive(Clone, Debug)]
pub(crate) enum ServerAuth {
    Pinned(PublicKey),
    /// Trust whatever root key the server presents. Authenticates nothing;
    /// only through `connect_trust_on_first_use`.
    TrustOnFirstUse,
}

/// The protocol a connection speaks, and which one a client connects with
/// ([`crate::EndpointConfig::protocol`], [`crate::Endpoint::connect_with`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProtocolVersion {
    /// MPGS/1, the Python MpGameServer 0.2.4 wire protocol (PROTOCOL.md).
    #[default]
    V1,
    /// MPGS/2, the crate's native protocol (docs/MPGS2.md, preview): per
    /// direction keys, 64-bit packet numbers, congestion control, ordered
    /// `Reliable` delivery. Servers of this crate accept it on the MPGS/1
    /// port; the Python reference does not speak it.
    V2,
}

impl ProtocolVersion {
    /// `v1` or `v2` (what `Display` writes and `FromStr` reads).
    pub const fn name(self) -> &'static str {
        match self {
            ProtocolVersion::V1 => "v1",
            ProtocolVersion::V2 => "v2",
        }
    }
}

impl core::fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// A string that names no [`ProtocolVersion`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseProtocolError;

impl core::fmt::Display for ParseProtocolError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("unknown protocol: use v1 or v2")
    }
}

impl core::error::Error for ParseProtocolError {}

impl core::str::FromStr for ProtocolVersion {
    type Err = ParseProtocolError;

    /// Parses `v1` or `v2` (for command lines).
    fn from_str(s: &str) -> Result<ProtocolVersion, ParseProtocolError> {
        match s {
            "v1" => Ok(ProtocolVersion::V1),
            "v2" => Ok(ProtocolVersion::V2),
            _ => Err(ParseProtocolError),
        }
    }
}
