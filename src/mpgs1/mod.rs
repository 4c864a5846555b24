//! MPGS/1, the wire protocol of MpGameServer 0.2.4 (PROTOCOL.md), frozen:
//! nothing here may change a byte on the wire or the time it is sent (the
//! golden traces in `tests/sim/golden.rs` pin it).
//!
//! One concept per file, data flowing down the list:
//!
//! * [`wire`]: the datagram header, message framing, fragments and
//!   handshake bodies; [`seq`]: the 16-bit sequence ring and its windows.
//! * [`protect`]: the one owner of sealing and opening a datagram (CRC or
//!   AES-GCM), the packet key and its derivation.
//! * [`hello_key`]: a server's SERVER_HELLO key, shared by the hellos of a
//!   short period; `handshake`: both roles of the handshake (§10).
//! * `receive`: the receive pipeline of §15; `send`: the send queue, acks
//!   and loss; `reassembly`: fragmented messages; `transmit`: building
//!   datagrams; `timers`: the timer table and what fires; `pacer`: token
//!   buckets.
//!
//! A [`Connection`] never borrows its endpoint: it takes a budget [`Room`]
//! by value with an input, returns why it dropped a datagram, and queues
//! application events and [`EndpointEvent`]s that the endpoint drains after
//! each call.

mod handshake;
pub mod hello_key;
mod pacer;
pub mod protect;
mod reassembly;
mod receive;
mod send;
pub mod seq;
mod timers;
mod transmit;
pub mod wire;

use alloc::collections::VecDeque;
use core::net::SocketAddr;

pub(crate) use handshake::{SERVER_PENDING_SIZE, crc_message, parse_client_hello};
pub(crate) use reassembly::ENTRY_SIZE;
pub(crate) use send::{MAX_UNITS, MESSAGE_SIZE, OUTCOME_SIZE, SENT_PACKET_SIZE, UNIT_SIZE};

use crate::config::EndpointConfig;
use crate::event::{ConnectFailure, ConnectionId, Delivery, DisconnectReason, Event, MessageId, SendOptions};
use crate::keys::PublicKey;
use crate::state::{ConnectionState, Role};
use crate::stats::ConnectionMetrics;
use crate::stats::EndpointEvent;
use crate::time::{Duration, Instant};
use crate::timer::TimerTable;
use protect::PacketKey;
use seq::{Counter, MessageWindow, PacketWindow};
use wire::{Direction, MsgType};

use handshake::State;
use pacer::Pacer;
use reassembly::Reassembler;
use send::{Outcome, SendState, Timing};
use timers::Timer;

/// Acknowledge at once after this many datagrams that carried messages,
/// without waiting for `max_ack_delay`.
const ACK_EVERY: u32 = 4;
/// Sequence budget: a connection sends at most `2 · SEQ_BURST` datagrams in
/// any window of `connection_timeout + 2 s` (a `SEQ_BURST`-deep bucket
/// refilled by `SEQ_BURST` per window). Rule 17 bounds a replay's age by
/// `ctime` to `connection_timeout + 1 s`; within that age the packet
/// sequence must not move half the 65535 ring (32767, less the 32-packet
/// window), or a replayed old datagram would look new again. It also keeps
/// the AEAD nonce `magic ‖ ctime ‖ seq ‖ ack` unique: far fewer than 65535
/// datagrams per `ctime` second.
const SEQ_BURST: u32 = 16_000;

/// One MPGS/1 peer's session. The endpoint drives it through
/// the `Session` interface of `session.rs`.
#[cfg_attr(feature = "_fuzzing", derive(Clone))]
pub(crate) struct Connection {
    id: ConnectionId,
    role: Role,
    remote: SocketAddr,
    state: State,
    key: Option<PacketKey>,
    token: u32,
    server_key: Option<PublicKey>,
    connected: bool,
    /// Whether messages sent without an explicit choice get
    /// `Delivered`/`Lost` events (see `Endpoint::set_outcome_reports`).
    reports: bool,
    /// Bytes of a datagram's payload at most (from the MTU).
    max_payload: usize,
    /// Bytes of padding a CLIENT_HELLO carries.
    hello_padding: usize,
    timers: TimerTable<Timer, { Timer::COUNT }>,
    handshake_resend_at: Instant,
    last_recv: Instant,
    last_send: Instant,
    packet_seq: Counter,
    recv_packets: PacketWindow,
    recv_messages: MessageWindow,
    newest_ctime: Option<u32>,
    /// When the oldest unacknowledged message-carrying datagram arrived.
    ack_owed_since: Option<Instant>,
    unacked_eliciting: u32,
    send: SendState,
    reassembly: Reassembler,
    pacer: Pacer,
    /// The sequence budget (see [`SEQ_BURST`]).
    seq_budget: Pacer,
    metrics: ConnectionMetrics,
    /// Retransmission timing, recomputed on every RTT sample.
    timing: Timing,
    /// A DISCONNECT reply to send as this connection's last datagram.
    final_disconnect: bool,
    /// Application events, drained by the endpoint after every call.
    events: VecDeque<Event>,
    /// What the endpoint must count, drained likewise.
    endpoint_events: VecDeque<EndpointEvent>,
}

impl Connection {
    fn new(
        id: ConnectionId,
        role: Role,
        remote: SocketAddr,
        now: Instant,
        cfg: &EndpointConfig,
        state: State,
    ) -> Connection {
        let sizes = cfg.sizes();
        let mut timers = TimerTable::new();
        let handshake = if role == Role::Client { cfg.connect_timeout } else { cfg.handshake_timeout };
        timers.set(Timer::Handshake, Some(now + handshake));
        Connection {
            id,
            role,
            remote,
            state,
            key: None,
            token: 0,
            server_key: None,
            connected: false,
            reports: true,
            max_payload: sizes.max_payload,
            hello_padding: sizes.hello_padding,
            timers,
            handshake_resend_at: now,
            last_recv: now,
            last_send: now,
            packet_seq: Counter::new(),
            recv_packets: PacketWindow::new(32),
            recv_messages: MessageWindow::new(cfg.message_window),
            newest_ctime: None,
            ack_owed_since: None,
            unacked_eliciting: 0,
            send: SendState::new(sizes.max_payload, cfg.send_window, cfg.send_queue_messages, cfg.send_queue_bytes),
            reassembly: Reassembler::new(reassembly::Limits {
                max_fragments: cfg.max_fragments,
                min_lifetime: cfg.connection_timeout + cfg.ack_timeout,
                max_reassemblies: cfg.max_reassemblies,
                max_bytes: cfg.max_reassembly_bytes,
                max_message_size: cfg.max_message_size,
            }),
            pacer: Pacer::new(cfg.send_interval, cfg.send_burst, now),
            seq_budget: Pacer::new((cfg.connection_timeout + Duration::from_secs(2)) / SEQ_BURST, SEQ_BURST, now),
            metrics: ConnectionMetrics::default(),
            timing: Timing { rto: cfg.retransmit_interval.min(cfg.ack_timeout), ack_timeout: cfg.ack_timeout },
            final_disconnect: false,
            events: VecDeque::new(),
            endpoint_events: VecDeque::new(),
        }
    }

    // ----- getters -------------------------------------------------------

    pub(crate) fn remote(&self) -> SocketAddr {
        self.remote
    }

    pub(crate) fn role(&self) -> Role {
        self.role
    }

    pub(crate) fn state(&self) -> ConnectionState {
        match self.state {
            State::ClientHello(_) | State::ClientChallenge(_) | State::ServerPending(_) => ConnectionState::Connecting,
            State::Established => ConnectionState::Connected,
            State::Closing => ConnectionState::Closing,
            State::Closed => ConnectionState::Closed,
        }
    }

    pub(crate) fn token(&self) -> Option<u32> {
        (self.token != 0).then_some(self.token)
    }

    pub(crate) fn server_key(&self) -> Option<&PublicKey> {
        self.server_key.as_ref()
    }

    pub(crate) fn metrics(&self) -> &ConnectionMetrics {
        &self.metrics
    }

    pub(crate) fn pending_messages(&self) -> usize {
        self.send.queued_messages()
    }

    pub(crate) fn pending_bytes(&self) -> usize {
        self.send.queued_bytes()
    }

    pub(crate) fn reports_outcomes(&self) -> bool {
        self.reports
    }

    pub(crate) fn set_outcome_reports(&mut self, on: bool) {
        self.reports = on;
    }

    /// The session key, for tests that decode captured datagrams.
    #[cfg(test)]
    pub(crate) fn packet_key(&self) -> Option<&PacketKey> {
        self.key.as_ref()
    }

    #[inline]
    pub(crate) fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Whether the handshake has completed (so the application knows it).
    pub(crate) fn is_connected(&self) -> bool {
        self.connected
    }

    /// Bytes this connection holds for reassembly (the endpoint books them).
    pub(crate) fn reassembly_bytes(&self) -> usize {
        self.reassembly.buffered_bytes()
    }

    /// The application events queued since the endpoint last took them.
    #[inline]
    pub(crate) fn events(&mut self) -> &mut VecDeque<Event> {
        &mut self.events
    }

    /// What the endpoint must count, queued since it last took it.
    #[inline]
    pub(crate) fn endpoint_events(&mut self) -> &mut VecDeque<EndpointEvent> {
        &mut self.endpoint_events
    }

    fn direction(&self) -> Direction {
        match self.role {
            Role::Client => Direction::ToServer,
            Role::Server => Direction::ToClient,
        }
    }

    /// Feeds an RTT sample and recomputes the retransmission timeout:
    /// `srtt + 4·rttvar + max_ack_delay`, within `retransmit_interval..=ack_timeout`.
    fn on_rtt(&mut self, rtt: core::time::Duration, cfg: &EndpointConfig) {
        self.metrics.on_rtt(rtt);
        let srtt = self.metrics.srtt.unwrap_or(rtt);
        let rto = srtt + self.metrics.rttvar * 4 + cfg.max_ack_delay;
        self.timing =
            Timing { rto: rto.max(cfg.retransmit_interval).min(cfg.ack_timeout), ack_timeout: cfg.ack_timeout };
    }

    /// Turns the send state's message outcomes into events and counters;
    /// returns whether our DISCONNECT was acknowledged among them.
    #[inline]
    fn report_outcomes(&mut self) -> bool {
        if self.send.has_outcomes() { self.report_queued_outcomes() } else { false }
    }

    fn report_queued_outcomes(&mut self) -> bool {
        let mut disconnect_acked = false;
        while let Some(outcome) = self.send.poll_outcome() {
            match outcome {
                Outcome::Delivered(id) => {
                    self.metrics.messages_acked += 1;
                    self.events.push_back(Event::Delivered { conn: self.id, id });
                }
                Outcome::Lost(id) => {
                    self.metrics.messages_lost += 1;
                    let reason = if self.send.is_closing() {
                        crate::LossReason::ConnectionClosed
                    } else {
                        crate::LossReason::PacketLost
                    };
                    self.events.push_back(Event::Lost { conn: self.id, id, reason });
                }
                Outcome::Unreported { delivered: true } => self.metrics.messages_acked += 1,
                Outcome::Unreported { delivered: false } => self.metrics.messages_lost += 1,
                Outcome::DisconnectAcked => disconnect_acked = true,
            }
        }
        self.send.shrink_outcomes();
        disconnect_acked
    }

    // ----- commands ------------------------------------------------------

    /// Whether [`send`](Self::send) would take `len` bytes now (no side effect).
    pub(crate) fn can_send(&self, len: usize, options: SendOptions) -> Result<(), crate::SendError> {
        match self.state {
            State::Closing | State::Closed => return Err(crate::SendError::NotConnected),
            _ => {}
        }
        if !self.send.has_room(len) {
            let (queued, limit) = self.send.full_figures(len);
            return Err(crate::SendError::QueueFull { channel: options.delivery.channel(), queued, limit });
        }
        Ok(())
    }

    /// Queues an application message; its outcome is an event if
    /// `options.report` (else the connection's default) says so.
    pub(crate) fn send(&mut self, data: &[u8], options: SendOptions) -> Result<MessageId, crate::SendError> {
        match self.state {
            State::Closing | State::Closed => return Err(crate::SendError::Closing),
            _ => {}
        }
        if !self.send.has_room(data.len()) {
            let (queued, limit) = self.send.full_figures(data.len());
            return Err(crate::SendError::QueueFull { channel: options.delivery.channel(), queued, limit });
        }
        self.metrics.messages_sent += 1;
        let report = options.report.unwrap_or(self.reports);
        Ok(self.send.push(data, options.delivery, MsgType::App, report))
    }

    /// Starts a graceful close (§13).
    pub(crate) fn disconnect(&mut self, now: Instant, cfg: &EndpointConfig) {
        match self.state {
            State::ClientHello(_) | State::ClientChallenge(_) => {
                self.fail(ConnectFailure::Cancelled);
            }
            State::ServerPending(_) => self.close_silently(),
            State::Established => {
                self.report_outcomes();
                self.send.drop_unsent();
                self.report_outcomes();
                self.send.push(&[], Delivery::Reliable, MsgType::Disconnect, false);
                self.state = State::Closing;
                self.timers.set(Timer::Linger, Some(now + cfg.disconnect_linger));
            }
            State::Closing | State::Closed => {}
        }
    }

    // ----- endings -------------------------------------------------------

    /// Ends an established (or closing) connection: every undecided message
    /// is lost, and `Disconnected` fires.
    fn close(&mut self, reason: DisconnectReason) {
        self.report_outcomes();
        self.send.abandon();
        self.report_outcomes();
        self.enter_closed();
        if self.connected {
            self.events.push_back(Event::Disconnected { conn: self.id, reason });
        }
    }

    /// A client's handshake failed: queued messages are lost, then `ConnectFailed`.
    fn fail(&mut self, reason: ConnectFailure) {
        self.report_outcomes();
        self.send.abandon();
        self.report_outcomes();
        self.enter_closed();
        self.events.push_back(Event::ConnectFailed { conn: self.id, reason });
    }

    /// A server's pending handshake ends unseen by the application; any
    /// message already queued on it is lost.
    fn close_silently(&mut self) {
        self.report_outcomes();
        self.send.abandon();
        self.report_outcomes();
        self.enter_closed();
    }

    fn enter_closed(&mut self) {
        self.state = State::Closed;
        self.timers.stop_all();
    }
}

impl core::fmt::Debug for Connection {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Connection")
            .field("role", &self.role)
            .field("remote", &self.remote)
            .field("state", &self.state())
            .field("metrics", &self.metrics)
            .finish_non_exhaustive()
    }
}
