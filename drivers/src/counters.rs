//! Endpoint-wide event counters a server driver keeps as events pass
//! through its flush: connection metrics vanish with their connection, so
//! totals that must only grow (what a Prometheus counter is) are counted
//! here. Read through the metrics export (feature `metrics`).

use mpgameserver::{DisconnectReason, Event};

/// Counts of the events a server's flush handed on (or dropped because the
/// server was stopping).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) struct EventCounts {
    /// Messages delivered to the application (`Message` events).
    pub(crate) messages_received: u64,
    /// Messages the peer acknowledged (`Delivered`).
    pub(crate) messages_delivered: u64,
    /// Messages reported `Lost`.
    pub(crate) messages_lost: u64,
    /// `Disconnected` events by reason: local, peer, timed out, shutdown, other.
    pub(crate) disconnected: [u64; 5],
}

impl EventCounts {
    /// Reasons in the order of `disconnected`, with their label names.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) const DISCONNECT_REASONS: [&'static str; 5] = ["local", "peer", "timed_out", "shutdown", "other"];

    pub(crate) fn on_event(&mut self, event: &Event) {
        match event {
            Event::Message { .. } => self.messages_received += 1,
            Event::Delivered { .. } => self.messages_delivered += 1,
            Event::Lost { .. } => self.messages_lost += 1,
            Event::Disconnected { reason, .. } => self.on_disconnect(*reason),
            _ => {}
        }
    }

    /// Counts a disconnect the driver reports itself (at the end of a shutdown).
    pub(crate) fn on_disconnect(&mut self, reason: DisconnectReason) {
        let i = match reason {
            DisconnectReason::Local => 0,
            DisconnectReason::Peer => 1,
            DisconnectReason::TimedOut => 2,
            DisconnectReason::Shutdown => 3,
            _ => 4,
        };
        self.disconnected[i] += 1;
    }
}
