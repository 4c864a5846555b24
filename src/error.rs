//! Errors for local misuse, one small enum per operation. Bytes from the
//! network never produce an error: they are dropped and counted in
//! [`crate::EndpointStats`].

use core::fmt;

/// Why [`crate::Endpoint::send`] refused a message. Nothing was queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// The message is larger than the configured maximum.
    TooLarge {
        /// The configured `max_message_size`.
        max: usize,
    },
    /// The connection's send queue is full (messages or bytes).
    QueueFull,
    /// No such connection (it closed, or the handle is from another endpoint).
    UnknownConnection,
    /// The connection is closing after `disconnect`.
    Closing,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::TooLarge { max } => write!(
                f,
                "message too large: the maximum is {max} bytes (EndpointConfig::max_message_size, up to 8 MiB); split it or raise the limit on both peers"
            ),
            SendError::QueueFull => f.write_str(
                "send queue full: the peer is not acknowledging fast enough; wait for Delivered/Lost events before sending more, or raise EndpointConfig::send_queue_messages/send_queue_bytes",
            ),
            SendError::UnknownConnection => f.write_str(
                "unknown connection: it has closed (see the Disconnected event) or the handle belongs to another endpoint",
            ),
            SendError::Closing => {
                f.write_str("the connection is closing after disconnect: no new messages are accepted")
            }
        }
    }
}

impl core::error::Error for SendError {}

/// Why [`crate::Endpoint::connect`] refused to start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectError {
    /// The endpoint is a server; create a client endpoint with
    /// [`crate::Endpoint::client`] to connect.
    NotAClient,
    /// There is already a connection to that address from this endpoint.
    AlreadyConnected,
    /// The address is on this endpoint's block list.
    Blocked,
    /// MPGS/2: the offer this configuration makes (versions, suites,
    /// protocol id and transport parameters) does not fit a 1200-byte
    /// HELLO2 (MPGS2.md §2.3).
    OfferTooLarge,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConnectError::NotAClient => {
                "this endpoint is a server: create a client endpoint with Endpoint::client to connect"
            }
            ConnectError::AlreadyConnected => {
                "already connected (or connecting) to that address: disconnect first, or reuse the existing connection"
            }
            ConnectError::Blocked => "that address is on the block list: unblock it first",
            ConnectError::OfferTooLarge => {
                "the MPGS/2 hello cannot carry this configuration's offer: lower the transport parameters, or connect with ProtocolVersion::V1"
            }
        })
    }
}

impl core::error::Error for ConnectError {}

/// The connection handle does not name a live connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownConnection;

impl fmt::Display for UnknownConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown connection: it has already closed, or the handle belongs to another endpoint")
    }
}

impl core::error::Error for UnknownConnection {}
