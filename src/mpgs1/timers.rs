//! MPGS/1 timers (PROTOCOL.md §12, §13) in a table indexed by [`Timer`],
//! and what each does when it fires. `Handshake`, `Idle` and `Linger` are
//! armed where their events happen; the three that follow the send queue
//! and reassembly are copied from them before the table is read.

use super::Connection;
use super::handshake::State;
use crate::config::EndpointConfig;
use crate::event::{ConnectFailure, DisconnectReason};
use crate::stats::EndpointEvent;
use crate::time::Instant;
use crate::timer::TimerKind;

/// The timers of one MPGS/1 connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Timer {
    /// The handshake gives up (client: `connect_timeout`; server: the
    /// pending entry expires `handshake_timeout` after the latest hello).
    Handshake,
    /// No datagram from the peer for `connection_timeout`.
    Idle,
    /// A local close stops waiting for the peer's acknowledgement.
    Linger,
    /// The oldest unacknowledged datagram is declared lost.
    PacketTimeout,
    /// A best-effort message reaches its deadline.
    BestEffort,
    /// A reassembly in progress expires.
    Reassembly,
}

impl Timer {
    /// How many timers there are.
    pub(crate) const COUNT: usize = 6;
}

impl TimerKind for Timer {
    const ALL: &'static [Timer] =
        &[Timer::Handshake, Timer::Idle, Timer::Linger, Timer::PacketTimeout, Timer::BestEffort, Timer::Reassembly];

    #[inline]
    fn index(self) -> usize {
        self as usize
    }
}

impl Connection {
    /// A datagram from the peer was accepted on an established (or closing)
    /// connection: the handshake is over and the idle timer restarts.
    pub(super) fn on_idle_reset(&mut self, now: Instant, cfg: &EndpointConfig) {
        self.timers.set(Timer::Handshake, None);
        self.timers.set(Timer::Idle, Some(now + cfg.connection_timeout));
    }

    /// Copies the deadlines the send queue and reassembly keep into the table.
    fn sync_timers(&mut self) {
        let (packet, best_effort, reassembly) = match self.state {
            State::Established | State::Closing => (
                self.send.next_packet_timeout(self.timing),
                self.send.next_best_effort_deadline(self.timing),
                self.reassembly.next_expiry(),
            ),
            _ => (None, None, None),
        };
        self.timers.set(Timer::PacketTimeout, packet);
        self.timers.set(Timer::BestEffort, best_effort);
        self.timers.set(Timer::Reassembly, reassembly);
    }

    /// The earliest instant this connection needs the endpoint's attention:
    /// a timer, or a transmission that cannot happen yet (`next_transmit`).
    /// Transmissions due now are not timers (the endpoint queues the
    /// connection instead).
    pub(crate) fn poll_timeout(&mut self, now: Instant, next_transmit: Option<Instant>) -> Option<Instant> {
        self.sync_timers();
        let transmit = next_transmit.filter(|&t| t > now);
        crate::time::earliest(self.timers.next(), transmit)
    }

    /// Runs every timer that is due at `now`. Early or spurious calls do nothing.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.sync_timers();
        let handshake_over = self.timers.expired(Timer::Handshake, now);
        match self.state {
            State::ClientHello(ref h) => {
                if handshake_over {
                    let reason =
                        if h.bad_signature { ConnectFailure::WrongServerKey } else { ConnectFailure::TimedOut };
                    self.fail(reason);
                }
                return;
            }
            State::ClientChallenge(_) => {
                if handshake_over {
                    self.fail(ConnectFailure::TimedOut);
                }
                return;
            }
            State::ServerPending(_) => {
                if handshake_over {
                    self.close_silently();
                }
                return;
            }
            State::Closed => return,
            State::Established | State::Closing => {}
        }
        let closing = matches!(self.state, State::Closing);
        if self.timers.expired(Timer::Idle, now) {
            self.close(if closing { DisconnectReason::Local } else { DisconnectReason::TimedOut });
            return;
        }
        if closing && self.timers.expired(Timer::Linger, now) {
            self.close(DisconnectReason::Local);
            return;
        }
        let timing = self.timing;
        if self.timers.expired(Timer::PacketTimeout, now) {
            let lost = self.send.detect_timeouts(now, timing);
            self.report_outcomes();
            self.metrics.datagrams_lost += lost;
        }
        if self.timers.expired(Timer::BestEffort, now) {
            self.send.expire_best_effort(now, timing);
            self.report_outcomes();
        }
        if self.timers.expired(Timer::Reassembly, now) {
            let expired = self.reassembly.expire(now) as u64;
            self.endpoint_events.push_back(EndpointEvent::ReassembliesExpired(expired));
        }
    }
}
