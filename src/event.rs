//! What the endpoint tells the application: [`Event`]s and the handles they
//! carry.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::fmt;

/// A handle to one connection of an [`crate::Endpoint`].
///
/// It is a slot index plus a generation: once a connection is gone, its
/// handle never refers to a later connection that reuses the slot.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnectionId {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl ConnectionId {
    /// The slot index (stable for the life of the connection; reused later).
    pub const fn index(self) -> u32 {
        self.index
    }
}

impl fmt::Debug for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}.{}", self.index, self.generation)
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Identifies a message sent on one connection, for its `Delivered` or
/// `Lost` report. Ids increase by one per `send` on that connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId(pub u64);

/// How hard the endpoint tries to deliver a message.
///
/// What every mode guarantees:
///
/// * **Integrity and authenticity**: a message is delivered whole (its
///   fragments reassembled) and exactly as sent, or not at all.
/// * **At most once**: the receiver drops duplicate copies (retransmissions,
///   network duplicates, replays), so no message reaches the application
///   twice.
/// * **No order**: messages reach the peer's application in the order their
///   datagrams arrive, which is not the send order when the network reorders
///   or a lost message is resent after later ones. MPGS/1 has no ordered
///   channel; number your messages and hold back the early ones if you need
///   send order (`mpgameserver_game::HoldBack`). Ordered channels come with
///   MPGS/2.
/// * **One report**: exactly one `Delivered` or `Lost` event per message
///   (none when sent [`unreported`](Delivery::unreported)).
///
/// | Mode | Delivered to the peer | `Lost` when |
/// |---|---|---|
/// | `Unreliable` | at most once; one copy is sent | its datagram is not acknowledged within the ack timeout |
/// | `BestEffort` | at most once; copies are repeated until one is acknowledged | no copy is acknowledged within the ack timeout |
/// | `Reliable` | exactly once while the connection lives | the connection closes first |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Delivery {
    /// Sent once: delivered at most once, or never. `Delivered` if the
    /// datagram carrying it is acknowledged, `Lost` if not within the ack
    /// timeout (it may still have arrived: only the acknowledgement was
    /// lost). For state that the next tick replaces (positions, inputs sent
    /// redundantly). (The reference's `NONE`.)
    Unreliable,
    /// Repeated while unacknowledged, until one copy is acknowledged or the
    /// ack timeout passes since the first copy: delivered at most once,
    /// likely even on a lossy link. (The reference's `BEST_EFFORT`.)
    BestEffort,
    /// Retransmitted until acknowledged: delivered exactly once unless the
    /// connection closes first (then `Lost`), in no particular order
    /// relative to other messages. (The reference's `RETRY_ON_TIMEOUT`.)
    #[default]
    Reliable,
}

impl Delivery {
    /// Every mode.
    pub const ALL: [Delivery; 3] = [Delivery::Unreliable, Delivery::BestEffort, Delivery::Reliable];

    /// The mode's name: `unreliable`, `best-effort` or `reliable` (what
    /// `Display` writes and `FromStr` reads).
    pub const fn name(self) -> &'static str {
        match self {
            Delivery::Unreliable => "unreliable",
            Delivery::BestEffort => "best-effort",
            Delivery::Reliable => "reliable",
        }
    }
}

impl fmt::Display for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A string that names no [`Delivery`] mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseDeliveryError;

impl fmt::Display for ParseDeliveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown delivery mode: use unreliable, best-effort or reliable")
    }
}

impl core::error::Error for ParseDeliveryError {}

impl core::str::FromStr for Delivery {
    type Err = ParseDeliveryError;

    /// Parses `unreliable`, `best-effort` or `reliable` (for command lines
    /// and configuration files).
    fn from_str(s: &str) -> Result<Delivery, ParseDeliveryError> {
        Delivery::ALL.into_iter().find(|d| d.name() == s).ok_or(ParseDeliveryError)
    }
}

/// Why a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// This side called `disconnect`.
    Local,
    /// The peer sent DISCONNECT.
    Peer,
    /// Nothing authenticated arrived from the peer for the connection timeout.
    TimedOut,
    /// The server is shutting down. A server driver reports it for the
    /// connections it closes while stopping. Over MPGS/1 a client sees
    /// [`DisconnectReason::Peer`] instead: its DISCONNECT carries no reason.
    Shutdown,
    /// MPGS/2: the server answered with a stateless reset (MPGS2.md §6.4):
    /// it no longer knows the connection, usually because it restarted.
    /// Connect again.
    Reset,
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DisconnectReason::Local => "closed locally",
            DisconnectReason::Peer => "closed by the peer",
            DisconnectReason::TimedOut => "timed out: nothing received from the peer",
            DisconnectReason::Shutdown => "the server shut down",
            DisconnectReason::Reset => {
                "the server reset the connection (stateless reset: it restarted or lost the connection); connect again"
            }
        })
    }
}

/// Why a client's connection attempt failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectFailure {
    /// No valid SERVER_HELLO, or no confirmation of the handshake, within
    /// the connect timeout: the server is unreachable, not running, or
    /// uses another MTU.
    TimedOut,
    /// SERVER_HELLOs arrived but their signature did not verify with the
    /// pinned server key: the client pinned the wrong public key, or
    /// someone is impersonating the server.
    WrongServerKey,
    /// `disconnect` was called before the handshake completed.
    Cancelled,
    /// An MPGS/2 server refused the attempt with REJECT and this code
    /// (MPGS2.md §2.5): 1 full, 2–4 connect token refused, 5 no common
    /// version or suite, 6 busy; other codes are passed on as received.
    Rejected(u16),
    /// MPGS/2 with `allow_v1_fallback`: the client fell back to MPGS/1, the
    /// server's signed MPGS/1 SERVER_HELLO said it speaks MPGS/2 (MPGS2.md
    /// §2.9), and no MPGS/2 connection was made by the connect timeout.
    /// Something on the path drops MPGS/2 hellos (a downgrade attack or a
    /// broken middlebox).
    DowngradeDetected,
}

impl fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConnectFailure::TimedOut => {
                "no answer from the server within the connect timeout: check the address, that the server runs, and that both sides use the same MTU"
            }
            ConnectFailure::WrongServerKey => {
                "the server's signature did not verify with the pinned key: pin the server's current public key (its .pub file)"
            }
            ConnectFailure::Cancelled => "the connection attempt was cancelled by disconnect",
            ConnectFailure::Rejected(1) => "the server is full: try again later or another server",
            ConnectFailure::Rejected(2..=4) => "the server refused the connect token: get a fresh one",
            ConnectFailure::Rejected(5) => {
                "no common MPGS/2 version or cipher suite with the server: update the client or the server, or connect with ProtocolVersion::V1"
            }
            ConnectFailure::Rejected(6) => "the server is busy (handshake limits): retry after a short wait",
            ConnectFailure::Rejected(_) => "the server refused the connection attempt (REJECT with an unknown code)",
            ConnectFailure::DowngradeDetected => {
                "the server speaks MPGS/2 but its MPGS/2 replies never arrived (downgrade detected): check the path for something that drops MPGS/2 hellos, or connect with ProtocolVersion::V1 on purpose"
            }
        })
    }
}

/// Why a message was [`Event::Lost`] (MPGS2.md §4.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LossReason {
    /// A packet carrying it was lost (unreliable kinds, and MPGS/1 messages
    /// whose acknowledgement did not come within the ack timeout). It may
    /// still have arrived: only the acknowledgement may have been lost.
    PacketLost,
    /// Its TTL passed before it could leave.
    Expired,
    /// A newer message on its sequenced channel replaced it before it left.
    Superseded,
    /// The connection closed (or is closing) first.
    ConnectionClosed,
}

impl fmt::Display for LossReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LossReason::PacketLost => "a packet carrying it was lost",
            LossReason::Expired => "its TTL passed before it could be sent",
            LossReason::Superseded => "a newer message on its sequenced channel replaced it",
            LossReason::ConnectionClosed => "the connection closed first",
        })
    }
}

/// Something the application should know about. Drain with
/// [`crate::Endpoint::poll_event`].
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The handshake completed: messages can flow. On a server, a new
    /// client; on a client, the server confirmed the session.
    Connected {
        /// The connection.
        conn: ConnectionId,
    },
    /// A client's connection attempt failed; the handle is dead.
    ConnectFailed {
        /// The connection attempt.
        conn: ConnectionId,
        /// Why.
        reason: ConnectFailure,
    },
    /// An application message arrived (reassembled if it was fragmented).
    Message {
        /// The connection it arrived on.
        conn: ConnectionId,
        /// The channel it came on (MPGS2.md §4.3): 0–2 for the
        /// [`Delivery`] modes, 3–63 for the peer's configured channels;
        /// [`channel::MPGS1`](crate::channel::MPGS1) over MPGS/1, which does not
        /// say.
        channel: u8,
        /// Its bytes.
        payload: Vec<u8>,
    },
    /// Every byte of message `id` was acknowledged by the peer.
    Delivered {
        /// The connection.
        conn: ConnectionId,
        /// The id `send` returned.
        id: MessageId,
    },
    /// Message `id` will not be delivered (or its delivery cannot be
    /// confirmed): its mode gave up, or the connection closed first.
    Lost {
        /// The connection.
        conn: ConnectionId,
        /// The id `send` returned.
        id: MessageId,
        /// Why.
        reason: LossReason,
    },
    /// A channel whose queue refused a send
    /// ([`SendError::QueueFull`](crate::SendError::QueueFull)) has drained
    /// below half its limit: send again.
    Writable {
        /// The connection.
        conn: ConnectionId,
        /// The channel.
        channel: u8,
    },
    /// The connection ended; the handle is dead. Fires exactly once per
    /// connection that reached `Connected` (and for a local `disconnect` of
    /// one).
    Disconnected {
        /// The connection.
        conn: ConnectionId,
        /// Why.
        reason: DisconnectReason,
    },
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Connected { conn } => write!(f, "Connected({conn})"),
            Event::ConnectFailed { conn, reason } => write!(f, "ConnectFailed({conn}, {reason:?})"),
            Event::Message { conn, channel, payload } => {
                write!(f, "Message({conn}, channel {channel}, {} bytes)", payload.len())
            }
            Event::Delivered { conn, id } => write!(f, "Delivered({conn}, {})", id.0),
            Event::Lost { conn, id, reason } => write!(f, "Lost({conn}, {}, {reason:?})", id.0),
            Event::Writable { conn, channel } => write!(f, "Writable({conn}, channel {channel})"),
            Event::Disconnected { conn, reason } => write!(f, "Disconnected({conn}, {reason:?})"),
        }
    }
}

/// Entries a connection's output queue keeps allocated once drained: a
/// burst (a datagram of 255 messages, an ack deciding hundreds) must not pin
/// its memory on every connection.
pub(crate) const QUEUE_KEEP: usize = 64;

/// Gives back what a drained queue grew beyond [`QUEUE_KEEP`].
#[inline]
pub(crate) fn shrink_drained<T>(queue: &mut VecDeque<T>) {
    if queue.capacity() > QUEUE_KEEP {
        queue.shrink_to(QUEUE_KEEP);
    }
}

/// How to send one message: its [`Delivery`] mode and whether its outcome
/// becomes a `Delivered`/`Lost` event.
///
/// A `Delivery` converts into options that keep the connection's default
/// (reported, unless [`Endpoint::set_outcome_reports`](crate::Endpoint::set_outcome_reports) turned it off), so
/// every method taking `impl Into<SendOptions>` also takes a plain
/// `Delivery`. [`Delivery::unreported`] opts one send out of its event: an
/// input stream at 60 Hz does not cost 60 events a second.
///
/// ```
/// use mpgameserver::{Delivery, SendOptions};
///
/// let quiet = Delivery::Unreliable.unreported();
/// assert_eq!(quiet.delivery, Delivery::Unreliable);
/// assert_eq!(quiet.report, Some(false));
/// assert_eq!(SendOptions::from(Delivery::Reliable).report, None);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct SendOptions {
    /// How hard to try.
    pub delivery: Delivery,
    /// `Some(true)`: a `Delivered` or `Lost` event follows; `Some(false)`:
    /// none (the connection's metrics still count it); `None`: the
    /// connection's default ([`Endpoint::set_outcome_reports`](crate::Endpoint::set_outcome_reports), on unless
    /// turned off) on channels 0–2, the channel's
    /// [`receipts`](crate::ChannelConfig::receipts) on configured ones.
    pub report: Option<bool>,
    /// `Some(ch)`: send on channel `ch` (MPGS2.md §4.3) and ignore
    /// `delivery`; `None`: the channel of `delivery` (0–2).
    pub channel: Option<u8>,
}

impl SendOptions {
    /// `delivery`, with the connection's default for reports.
    pub const fn new(delivery: Delivery) -> SendOptions {
        SendOptions { delivery, report: None, channel: None }
    }

    /// On channel `ch`, with the channel's default for receipts.
    pub const fn on_channel(ch: u8) -> SendOptions {
        SendOptions { delivery: Delivery::Reliable, report: None, channel: Some(ch) }
    }

    /// The channel these options send on.
    pub const fn channel(&self) -> u8 {
        match self.channel {
            Some(c) => c,
            None => self.delivery.channel(),
        }
    }

    /// The same, without a `Delivered`/`Lost` event for the message.
    pub const fn unreported(self) -> SendOptions {
        SendOptions { report: Some(false), ..self }
    }

    /// The same, with a `Delivered`/`Lost` event for the message even on a
    /// connection whose reports are off.
    pub const fn reported(self) -> SendOptions {
        SendOptions { report: Some(true), ..self }
    }
}

impl From<Delivery> for SendOptions {
    fn from(delivery: Delivery) -> SendOptions {
        SendOptions::new(delivery)
    }
}

impl Delivery {
    /// The MPGS/2 channel of this mode (MPGS2.md §4.3): 0, 1 or 2.
    pub const fn channel(self) -> u8 {
        match self {
            Delivery::Unreliable => crate::channel::UNRELIABLE,
            Delivery::BestEffort => crate::channel::BEST_EFFORT,
            Delivery::Reliable => crate::channel::RELIABLE,
        }
    }

    /// This mode without a `Delivered`/`Lost` event (fire and forget):
    /// `ep.send_with(conn, bytes, Delivery::Unreliable.unreported())`.
    pub const fn unreported(self) -> SendOptions {
        SendOptions::new(self).unreported()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_names_round_trip() {
        for d in Delivery::ALL {
            assert_eq!(alloc::format!("{d}").parse::<Delivery>(), Ok(d));
        }
        assert_eq!("best-effort".parse::<Delivery>(), Ok(Delivery::BestEffort));
        assert_eq!("Reliable".parse::<Delivery>(), Err(ParseDeliveryError));
        assert_eq!("".parse::<Delivery>(), Err(ParseDeliveryError));
    }
}
