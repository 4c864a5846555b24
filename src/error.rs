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
    /// A send queue is full: the channel's `queue_limit` (bytes), or the
    /// connection-wide `send_queue_bytes` or `send_queue_messages`. `queued`
    /// and `limit` are in the unit of the limit that refused (bytes, or
    /// messages for `send_queue_messages` and MPGS/1's in-flight units).
    /// [`Event::Writable`](crate::Event::Writable) follows when it has
    /// drained below half.
    QueueFull {
        /// The channel the message was for.
        channel: u8,
        /// What is queued now.
        queued: usize,
        /// The limit.
        limit: usize,
    },
    /// No such connection (it closed, or the handle is from another endpoint).
    UnknownConnection,
    /// The connection is closing after `disconnect`.
    Closing,
    /// The channel is neither 0–2 nor in [`EndpointConfig::channels`](crate::EndpointConfig::channels).
    UnknownChannel {
        /// The channel asked for.
        channel: u8,
    },
    /// The connection is closing or closed: channel sends need an open one.
    NotConnected,
    /// The peer speaks MPGS/1, which has no channel of this kind (MPGS/1
    /// carries unreliable and reliable-unordered messages only).
    PeerSpeaksMpgs1 {
        /// The channel.
        channel: u8,
        /// Its kind.
        kind: crate::ChannelKind,
    },
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::TooLarge { max } => write!(
                f,
                "message too large: the maximum is {max} bytes (EndpointConfig::max_message_size, up to 8 MiB); split it or raise the limit on both peers"
            ),
            SendError::QueueFull { channel, queued, limit } => write!(
                f,
                "send queue full on channel {channel} ({queued} queued, limit {limit}): the peer is not acknowledging fast enough; wait for the Writable event (or Delivered/Lost) before sending more, or raise ChannelConfig::queue_limit or EndpointConfig::send_queue_messages/send_queue_bytes",
            ),
            SendError::UnknownConnection => f.write_str(
                "unknown connection: it has closed (see the Disconnected event) or the handle belongs to another endpoint",
            ),
            SendError::Closing => {
                f.write_str("the connection is closing after disconnect: no new messages are accepted")
            }
            SendError::UnknownChannel { channel } => write!(
                f,
                "unknown channel {channel}: use 0–2 (the Delivery modes) or add a ChannelConfig with this id to EndpointConfig::channels"
            ),
            SendError::NotConnected => {
                f.write_str("the connection is closing or closed: wait for Connected on a new connection before sending")
            }
            SendError::PeerSpeaksMpgs1 { channel, kind } => write!(
                f,
                "channel {channel} is {kind:?}, which MPGS/1 cannot carry, and this peer speaks MPGS/1: send on an unreliable or reliable-unordered channel, or connect over MPGS/2"
            ),
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
