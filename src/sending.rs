//! Sending beyond one message on one connection: broadcasts to every
//! connection ([`Endpoint::broadcast`], [`Endpoint::broadcast_except`]).

use alloc::vec::Vec;

use crate::ConnectionState;
use crate::endpoint::Endpoint;
use crate::error::SendError;
use crate::event::{ConnectionId, SendOptions};

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
