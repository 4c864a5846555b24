//! Sending beyond one message on one connection: broadcasts to every
//! connection ([`Endpoint::broadcast`], [`Endpoint::broadcast_except`]),
//! and channels ([`Endpoint::send_on`], [`Endpoint::can_send`] and the
//! per-channel queries, MPGS2.md §4.3–§4.6).

use alloc::vec::Vec;

use crate::channel::ChannelMetrics;
use crate::endpoint::Endpoint;
use crate::error::SendError;
use crate::event::{ConnectionId, MessageId, SendOptions};
use crate::{ConnectionState, ProtocolVersion};

/// What a broadcast did: how many connections took the message, and which
/// refused it and why (a full send queue, most likely).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Broadcast {
    /// Connections that queued the message.
    pub sent: usize,
    /// Connections that refused it, with the reason. Empty (and not
    /// allocated) when every one took it.
    pub failed: Vec<(ConnectionId, SendError)>,
}

impl Broadcast {
    /// Whether every connection queued the message.
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty()
    }
}

impl Endpoint {
    /// Queues `data` on channel `channel` of `conn` (MPGS2.md §4.3): 0–2
    /// are the [`Delivery`](crate::Delivery) channels, 3–63 the ones in
    /// [`EndpointConfig::channels`](crate::EndpointConfig::channels). Its
    /// outcome is an event if the channel's `receipts` say so; choose per
    /// send with [`send_with`](Endpoint::send_with) and
    /// [`SendOptions::on_channel`]`(ch).reported()`.
    ///
    /// Errors: `TooLarge { max }` (see [`max_message_size`](Endpoint::max_message_size)),
    /// `QueueFull { channel, queued, limit }` (an [`Event::Writable`](crate::Event::Writable)
    /// follows once the queue is below half), `UnknownChannel`,
    /// `NotConnected`, `UnknownConnection`, and over MPGS/1, which has
    /// unreliable and reliable-unordered delivery only, `PeerSpeaksMpgs1` for
    /// sequenced and ordered channels.
    pub fn send_on(&mut self, conn: ConnectionId, channel: u8, data: &[u8]) -> Result<MessageId, SendError> {
        self.send_with(conn, data, SendOptions::on_channel(channel))
    }

    /// Whether [`send_on`](Endpoint::send_on)`(conn, channel, bytes)` with
    /// `len` bytes would be accepted now, with no side effect: `Ok(())` or
    /// the error it would return.
    pub fn can_send(&self, conn: ConnectionId, channel: u8, len: usize) -> Result<(), SendError> {
        let max = self.config().max_message_size;
        if len > max {
            return Err(SendError::TooLarge { max });
        }
        let c = self.connection(conn).ok_or(SendError::UnknownConnection)?;
        let options = crate::channel::resolve(self.config(), c, SendOptions::on_channel(channel))?;
        match c.v2() {
            Some(v2) => v2.can_send(channel, len, true).map(|_| ()),
            None => c.v1_can_send(len, options),
        }
    }

    /// Channel `channel`'s counters on `conn` (MPGS/2; `None` over MPGS/1,
    /// for an unknown channel or connection).
    pub fn channel_metrics(&self, conn: ConnectionId, channel: u8) -> Option<ChannelMetrics> {
        self.connection(conn)?.v2()?.channel_metrics(channel)
    }

    /// The largest message `send_on(conn, channel, ..)` accepts now:
    /// `max_message_size(ch)` of MPGS2.md §4.5 (the smallest of ours and the
    /// peer's limits; for an unreliable channel that refuses oversize
    /// messages, `max_unrel_fragments × fragment_payload`). Over MPGS/1, and
    /// on an MPGS/2 client before its handshake, the configured
    /// `max_message_size`. `None` for an unknown connection or channel.
    pub fn max_message_size(&self, conn: ConnectionId, channel: u8) -> Option<usize> {
        let c = self.connection(conn)?;
        self.config().channel(channel)?;
        let max = self.config().max_message_size;
        Some(match c.v2() {
            Some(v2) => v2.max_message_size(channel).unwrap_or(max).min(max),
            None => max,
        })
    }

    /// The largest message that leaves as one frame in one datagram on
    /// `conn` now: `max_unfragmented(ch)` of MPGS2.md §4.5, at least
    /// [`GUARANTEED_UNFRAGMENTED`](crate::channel::GUARANTEED_UNFRAGMENTED)
    /// over MPGS/2; MPGS/1's `Sizes::max_single`.
    pub fn max_unfragmented(&self, conn: ConnectionId) -> Option<usize> {
        let c = self.connection(conn)?;
        Some(match (c.version(), c.v2()) {
            (ProtocolVersion::V2, Some(v2)) => v2.max_unfragmented().unwrap_or(crate::channel::GUARANTEED_UNFRAGMENTED),
            _ => self.config().sizes().max_single,
        })
    }

    /// Sends `data` to every established connection (a server's clients, a
    /// client's servers) with `options` (a [`Delivery`](crate::Delivery), or
    /// [`Delivery::unreported`](crate::Delivery::unreported) for a per-tick snapshot).
    ///
    /// A message larger than `max_message_size` is refused before anything
    /// is queued ([`SendError::TooLarge`]). Otherwise each connection is
    /// tried: those whose queue is full are listed in
    /// [`Broadcast::failed`], the others queue it.
    pub fn broadcast(&mut self, data: &[u8], options: impl Into<SendOptions>) -> Result<Broadcast, SendError> {
        self.broadcast_filtered(data, options.into(), None)
    }

    /// Like [`broadcast`](Endpoint::broadcast), to every connection but
    /// `except` (relaying one player's action to the others).
    pub fn broadcast_except(
        &mut self,
        except: ConnectionId,
        data: &[u8],
        options: impl Into<SendOptions>,
    ) -> Result<Broadcast, SendError> {
        self.broadcast_filtered(data, options.into(), Some(except))
    }

    fn broadcast_filtered(
        &mut self,
        data: &[u8],
        options: SendOptions,
        except: Option<ConnectionId>,
    ) -> Result<Broadcast, SendError> {
        let max = self.config().max_message_size;
        if data.len() > max {
            return Err(SendError::TooLarge { max });
        }
        // A snapshot of the targets: sending changes the endpoint.
        let targets: Vec<ConnectionId> = self
            .connections()
            .filter(|&c| {
                Some(c) != except && self.connection(c).is_some_and(|c| c.state() == ConnectionState::Connected)
            })
            .collect();
        let mut report = Broadcast::default();
        for conn in targets {
            match self.send_with(conn, data, options) {
                Ok(_) => report.sent += 1,
                Err(e) => report.failed.push((conn, e)),
            }
        }
        Ok(report)
    }
}
