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
