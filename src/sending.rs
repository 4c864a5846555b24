//! Sending beyond one message on one connection: [`SendOptions`] (a
//! [`Delivery`] plus whether its outcome is reported) and broadcasts to
//! every connection ([`Endpoint::broadcast`], [`Endpoint::broadcast_except`]).

use alloc::vec::Vec;

use crate::ConnectionState;
use crate::endpoint::Endpoint;
use crate::error::SendError;
use crate::event::{ConnectionId, Delivery};

/// How to send one message: its [`Delivery`] mode and whether its outcome
/// becomes a `Delivered`/`Lost` event.
///
/// A `Delivery` converts into options that keep the connection's default
/// (reported, unless [`Endpoint::set_outcome_reports`] turned it off), so
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
    /// connection's default ([`Endpoint::set_outcome_reports`], on unless
    /// turned off).
    pub report: Option<bool>,
}

impl SendOptions {
    /// `delivery`, with the connection's default for reports.
    pub const fn new(delivery: Delivery) -> SendOptions {
        SendOptions { delivery, report: None }
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
    /// This mode without a `Delivered`/`Lost` event (fire and forget):
    /// `ep.send_with(conn, bytes, Delivery::Unreliable.unreported())`.
    pub const fn unreported(self) -> SendOptions {
        SendOptions::new(self).unreported()
    }
}

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
    /// Sends `data` to every established connection (a server's clients, a
    /// client's servers) with `options` (a [`Delivery`], or
    /// [`Delivery::unreported`] for a per-tick snapshot).
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
