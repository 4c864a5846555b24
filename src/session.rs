//! A connection of any protocol version: the closed enum over versions the
//! endpoint drives (no `dyn`), and the internal interface, [`Session`], that
//! every version implements. A new version adds a variant to [`Proto`] and
//! an `impl Session` in its own module tree (`src/mpgs2/` next).
//!
//! Connections answer the endpoint with values: `handle_datagram` returns
//! why it dropped a datagram, the reassembly budget arrives as a [`Room`]
//! by value, and events and counters wait in queues the endpoint drains
//! after every call ([`Session::events`],
//! [`Session::endpoint_events`]).

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use core::net::SocketAddr;

use crate::budget::Room;
use crate::config::{EndpointConfig, MAX_DATAGRAM};
use crate::error::SendError;
use crate::event::{Event, MessageId, SendOptions};
use crate::keys::PublicKey;
use crate::mpgs1;
use crate::mpgs2;
pub use crate::state::{ConnectionState, ProtocolVersion, Role};
use crate::stats::{ConnectionMetrics, DropReason, EndpointEvent};
use crate::time::Instant;

/// A datagram's header, decoded by the endpoint's route for its version.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Decoded {
    /// An MPGS/1 header.
    V1(mpgs1::wire::Header),
    /// An MPGS/2 datagram (short or long header), parsed by the connection.
    V2,
}

/// What every protocol version implements for the endpoint. Inputs take
/// `now`; outputs are drained until `None`.
pub(crate) trait Session {
    /// The peer's address.
    fn remote(&self) -> SocketAddr;
    /// This side's role.
    fn role(&self) -> Role;
    /// The public state.
    fn state(&self) -> ConnectionState;
    /// Whether the handshake completed (so the application knows it).
    fn is_connected(&self) -> bool;
    /// Whether it is over (the endpoint releases it).
    fn is_closed(&self) -> bool;
    /// Bytes held for reassembly (the endpoint books them).
    fn reassembly_bytes(&self) -> usize;

    /// A datagram routed to this connection. Returns why it was dropped.
    fn handle_datagram(
        &mut self,
        now: Instant,
        decoded: &Decoded,
        datagram: &mut [u8],
        cfg: &EndpointConfig,
        room: Room,
    ) -> Result<(), DropReason>;
    /// Runs the timers due at `now`.
    fn handle_timeout(&mut self, now: Instant);
    /// When the next datagram is due (`<= now`: now).
    fn next_transmit(&self, now: Instant, cfg: &EndpointConfig) -> Option<Instant>;
    /// The earliest timer, or transmission not due yet.
    fn poll_timeout(&mut self, now: Instant, next_transmit: Option<Instant>) -> Option<Instant>;
    /// Writes the next datagram; its length.
    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8; MAX_DATAGRAM], cfg: &EndpointConfig) -> Option<usize>;
    /// The datagram to send once the connection has closed, if any.
    fn poll_final(&mut self, now: Instant, buf: &mut [u8; MAX_DATAGRAM], cfg: &EndpointConfig) -> Option<usize>;
    /// Queues an application message; `options.report` (else the
    /// connection's default) says whether its outcome becomes an event.
    fn send(&mut self, data: &[u8], options: SendOptions) -> Result<MessageId, SendError>;
    /// The default for sends that do not choose whether their outcome is
    /// reported.
    fn set_outcome_reports(&mut self, on: bool);
    /// Starts a graceful close.
    fn disconnect(&mut self, now: Instant, cfg: &EndpointConfig);
    /// The application events queued since the endpoint last took them
    /// (the endpoint moves them all at once).
    fn events(&mut self) -> &mut VecDeque<Event>;
    /// The endpoint counter changes queued since the endpoint last took them.
    fn endpoint_events(&mut self) -> &mut VecDeque<EndpointEvent>;
}

/// The protocol versions.
#[cfg_attr(feature = "_fuzzing", derive(Clone))]
#[allow(clippy::large_enum_variant, reason = "MPGS/1 inline is the hot path; MPGS/2 is boxed on purpose")]
pub(crate) enum Proto {
    /// MPGS/1.
    V1(mpgs1::Connection),
    /// MPGS/2 (boxed: a table slot holds its connection inline, and most
    /// slots of a busy server may hold MPGS/1 ones).
    V2(Box<mpgs2::session::Connection>),
}

/// One peer's session. Obtain a reference with
/// [`crate::Endpoint::connection`]; the endpoint drives it.
#[cfg_attr(feature = "_fuzzing", derive(Clone))]
pub struct Connection {
    proto: Proto,
}

/// Calls `$body` with `$c` bound to the version's connection.
macro_rules! with_proto {
    ($self:expr, $c:ident => $body:expr) => {
        match $self {
            Proto::V1($c) => $body,
            Proto::V2($c) => $body,
        }
    };
}

impl Connection {
    pub(crate) fn new(proto: Proto) -> Connection {
        Connection { proto }
    }

    /// The peer's address.
    pub fn remote(&self) -> SocketAddr {
        Session::remote(self)
    }

    /// The protocol this connection speaks.
    pub fn version(&self) -> ProtocolVersion {
        match &self.proto {
            Proto::V1(_) => ProtocolVersion::V1,
            Proto::V2(_) => ProtocolVersion::V2,
        }
    }

    /// The MPGS/2 connection, if it is one.
    pub(crate) fn v2_mut(&mut self) -> Option<&mut mpgs2::session::Connection> {
        match &mut self.proto {
            Proto::V2(c) => Some(&mut **c),
            Proto::V1(_) => None,
        }
    }

    /// The MPGS/2 connection, if it is one.
    pub(crate) fn v2(&self) -> Option<&mpgs2::session::Connection> {
        match &self.proto {
            Proto::V2(c) => Some(&**c),
            Proto::V1(_) => None,
        }
    }

    /// This side's role.
    pub fn role(&self) -> Role {
        Session::role(self)
    }

    /// The public state.
    pub fn state(&self) -> ConnectionState {
        Session::state(self)
    }

    /// The session token (the reference's public connection id), once the
    /// handshake has chosen it. Tokens are not guaranteed unique.
    pub fn token(&self) -> Option<u32> {
        with_proto!(&self.proto, c => c.token())
    }

    /// At a client: the server root key that signed the handshake.
    /// With trust on first use, pin this key for later connections.
    pub fn server_key(&self) -> Option<&PublicKey> {
        with_proto!(&self.proto, c => c.server_key())
    }

    /// Metrics: RTT, rates, message counters.
    pub fn metrics(&self) -> &ConnectionMetrics {
        with_proto!(&self.proto, c => c.metrics())
    }

    /// Messages accepted by `send` whose outcome is not known yet.
    pub fn pending_messages(&self) -> usize {
        with_proto!(&self.proto, c => c.pending_messages())
    }

    /// Bytes of the messages in the send queue (at most the configuration's
    /// `send_queue_bytes`): what is still to be sent or acknowledged.
    pub fn pending_bytes(&self) -> usize {
        with_proto!(&self.proto, c => c.pending_bytes())
    }

    /// Whether messages sent with the connection's default get a
    /// `Delivered` or `Lost` event (true unless
    /// [`crate::Endpoint::set_outcome_reports`] turned it off).
    pub fn reports_outcomes(&self) -> bool {
        with_proto!(&self.proto, c => c.reports_outcomes())
    }

    /// An MPGS/2 client whose MPGS/1 fallback attempt completed its
    /// handshake (MPGS2.md §2.9) becomes that MPGS/1 connection, under the
    /// same id and with the messages accepted so far.
    fn settle_fallback(&mut self) {
        if let Proto::V2(c) = &mut self.proto
            && let Some(v1) = c.take_fallback()
        {
            self.proto = Proto::V1(v1);
        }
    }

    /// MPGS/1: whether `send` would take `len` bytes with `options` now.
    pub(crate) fn v1_can_send(&self, len: usize, options: SendOptions) -> Result<(), SendError> {
        match &self.proto {
            Proto::V1(c) => c.can_send(len, options),
            Proto::V2(_) => Ok(()),
        }
    }

    /// The MPGS/1 session key, for tests that decode captured datagrams.
    #[cfg(test)]
    pub(crate) fn packet_key(&self) -> Option<&mpgs1::protect::PacketKey> {
        match &self.proto {
            Proto::V1(c) => c.packet_key(),
            Proto::V2(_) => None,
        }
    }
}

impl Session for Connection {
    #[inline]
    fn remote(&self) -> SocketAddr {
        with_proto!(&self.proto, c => c.remote())
    }
    #[inline]
    fn role(&self) -> Role {
        with_proto!(&self.proto, c => c.role())
    }
    #[inline]
    fn state(&self) -> ConnectionState {
        with_proto!(&self.proto, c => c.state())
    }
    #[inline]
    fn is_connected(&self) -> bool {
        with_proto!(&self.proto, c => c.is_connected())
    }
    #[inline]
    fn is_closed(&self) -> bool {
        with_proto!(&self.proto, c => c.is_closed())
    }
    #[inline]
    fn reassembly_bytes(&self) -> usize {
        with_proto!(&self.proto, c => c.reassembly_bytes())
    }
    #[inline]
    fn handle_datagram(
        &mut self,
        now: Instant,
        decoded: &Decoded,
        datagram: &mut [u8],
        cfg: &EndpointConfig,
        room: Room,
    ) -> Result<(), DropReason> {
        match (&mut self.proto, decoded) {
            (Proto::V1(c), Decoded::V1(hdr)) => c.handle_datagram(now, hdr, datagram, cfg, room),
            (Proto::V2(c), Decoded::V2) => c.handle_datagram(now, datagram, cfg, room),
            // An MPGS/2 client's fallback attempt (MPGS2.md §2.9).
            (Proto::V2(c), Decoded::V1(hdr)) => {
                let r = c.handle_v1_datagram(now, hdr, datagram, cfg, room);
                self.settle_fallback();
                r
            }
            // The other version's datagram from this connection's address.
            (Proto::V1(_), Decoded::V2) => Err(DropReason::Unexpected),
        }
    }
    #[inline]
    fn handle_timeout(&mut self, now: Instant) {
        with_proto!(&mut self.proto, c => c.handle_timeout(now));
        self.settle_fallback();
    }
    #[inline]
    fn next_transmit(&self, now: Instant, cfg: &EndpointConfig) -> Option<Instant> {
        with_proto!(&self.proto, c => c.next_transmit(now, cfg))
    }
    #[inline]
    fn poll_timeout(&mut self, now: Instant, next_transmit: Option<Instant>) -> Option<Instant> {
        with_proto!(&mut self.proto, c => c.poll_timeout(now, next_transmit))
    }
    #[inline]
    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8; MAX_DATAGRAM], cfg: &EndpointConfig) -> Option<usize> {
        with_proto!(&mut self.proto, c => c.poll_transmit(now, buf, cfg))
    }
    #[inline]
    fn poll_final(&mut self, now: Instant, buf: &mut [u8; MAX_DATAGRAM], cfg: &EndpointConfig) -> Option<usize> {
        with_proto!(&mut self.proto, c => c.poll_final(now, buf, cfg))
    }
    #[inline]
    fn send(&mut self, data: &[u8], options: SendOptions) -> Result<MessageId, SendError> {
        with_proto!(&mut self.proto, c => c.send(data, options))
    }
    #[inline]
    fn set_outcome_reports(&mut self, on: bool) {
        with_proto!(&mut self.proto, c => c.set_outcome_reports(on))
    }
    #[inline]
    fn disconnect(&mut self, now: Instant, cfg: &EndpointConfig) {
        with_proto!(&mut self.proto, c => c.disconnect(now, cfg))
    }
    #[inline]
    fn events(&mut self) -> &mut VecDeque<Event> {
        with_proto!(&mut self.proto, c => c.events())
    }
    #[inline]
    fn endpoint_events(&mut self) -> &mut VecDeque<EndpointEvent> {
        with_proto!(&mut self.proto, c => c.endpoint_events())
    }
}

impl core::fmt::Debug for Connection {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        with_proto!(&self.proto, c => core::fmt::Debug::fmt(c, f))
    }
}
