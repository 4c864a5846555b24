//! One connection: the handshake in either role (PROTOCOL.md §10), the
//! receive pipeline of §15, timers (§12), disconnect (§13), and datagram
//! assembly. The [`crate::Endpoint`] routes datagrams here by address.

mod pacer;
mod reassembly;
mod send;

pub(crate) use reassembly::ENTRY_SIZE;
pub(crate) use send::{MAX_UNITS, MESSAGE_SIZE, SENT_PACKET_SIZE, UNIT_SIZE};

/// Heap bytes of a server's pending-handshake state (boxed).
pub(crate) const SERVER_PENDING_SIZE: usize = core::mem::size_of::<ServerPending>();

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::net::{IpAddr, SocketAddr};

use crate::admission::{Admission, HelloAnswer};
use crate::config::{EndpointConfig, MAX_DATAGRAM, Sizes};
use crate::crypto::{self, EphemeralKey, PacketKey, PublicKey};
use crate::event::{ConnectFailure, ConnectionId, Delivery, DisconnectReason, Event, MessageId};
use crate::rng::Rng;
use crate::seq::{Counter, Insert, MessageWindow, PacketWindow};
use crate::stats::{ConnectionMetrics, DropReason, EndpointStats};
use crate::time::{Duration, Instant};
use crate::wire::handshake::{self, CHALLENGE_RESP_LEN};
use crate::wire::{self, CRC_LEN, Direction, HEADER_LEN, Header, MsgType, PayloadWriter, SPKI_LEN, TAG_LEN};

use pacer::Pacer;
use reassembly::Reassembler;
use send::{Outcome, SendState, Timing};

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
/// Largest SERVER_HELLO message data: 231 fixed bytes and a ≤ 72-byte signature.
pub(crate) const SERVER_HELLO_MAX: usize = handshake::SERVER_HELLO_FIXED_LEN + crypto::MAX_SIGNATURE_LEN;

/// Which side of the handshake a connection is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// This endpoint connected to a server.
    Client,
    /// This endpoint accepted a client.
    Server,
}

/// The public state of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Handshake in progress.
    Connecting,
    /// Messages flow.
    Connected,
    /// `disconnect` was called; waiting for the peer's acknowledgement.
    Closing,
    /// Over; the handle is about to be released.
    Closed,
}

/// How the client authenticates the server's SERVER_HELLO (§15 rule 12).
#[derive(Clone, Debug)]
pub(crate) enum ServerAuth {
    Pinned(PublicKey),
    /// Trust whatever root key the SERVER_HELLO carries. Authenticates
    /// nothing; only through `connect_trust_on_first_use`.
    TrustOnFirstUse,
}

/// See [`Connection::state_key`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct StateKey(core::mem::Discriminant<State>, bool);

#[cfg_attr(feature = "_fuzzing", derive(Clone))]
enum State {
    ClientHello(Box<ClientHello>),
    /// A SERVER_HELLO was accepted; CHALLENGE_RESP repeats until the server
    /// confirms. The hello state is kept: if no confirmation comes within
    /// the handshake timeout the server may have forgotten us, and the client
    /// goes back to repeating its CLIENT_HELLO (still accepting a
    /// confirmation under the current key).
    ClientChallenge(Box<ClientHello>),
    ServerPending(Box<ServerPending>),
    Established,
    Closing,
    Closed,
}

#[cfg_attr(feature = "_fuzzing", derive(Clone))]
struct ClientHello {
    ephemeral: EphemeralKey,
    auth: ServerAuth,
    msgseq: u16,
    /// The CHALLENGE_RESP's msgseq, reserved with the hello's before any
    /// application message can be queued: the send queue numbers its
    /// messages consecutively, so a msgseq taken later would collide with one.
    challenge_msgseq: u16,
    /// The CLIENT_HELLO message data; every copy is identical (rule 8).
    body: Vec<u8>,
    /// A SERVER_HELLO failed signature verification (reported on timeout).
    bad_signature: bool,
    /// The SERVER_HELLO being answered, once one was accepted.
    accepted: Option<Accepted>,
}

/// The SERVER_HELLO a client answers, and its CHALLENGE_RESP.
#[cfg_attr(feature = "_fuzzing", derive(Clone))]
struct Accepted {
    /// Its message data, to tell a repeat (rule 9) from a new session.
    server_hello: heapless::Vec<u8, SERVER_HELLO_MAX>,
    challenge: [u8; CHALLENGE_RESP_LEN],
    /// When it (or an identical repeat) last arrived.
    at: Instant,
}

#[cfg_attr(feature = "_fuzzing", derive(Clone))]
struct ServerPending {
    /// The client's ephemeral key, to recognise its repeated hellos (rule 9).
    client_key: [u8; SPKI_LEN],
    msgseq: u16,
    reply: heapless::Vec<u8, SERVER_HELLO_MAX>,
    reply_due: bool,
    /// Bytes received from the (unverified) address so far, every datagram
    /// routed here included.
    rx_bytes: u32,
    /// Bytes sent to it: never more than `rx_bytes` (anti-amplification).
    tx_bytes: u32,
}

impl ServerPending {
    /// The SERVER_HELLO datagram's size.
    fn reply_datagram_len(&self) -> usize {
        HEADER_LEN + 2 + self.reply.len() + CRC_LEN
    }

    /// Whether one more SERVER_HELLO stays within the bytes received.
    fn reply_allowed(&self) -> bool {
        u64::from(self.tx_bytes) + self.reply_datagram_len() as u64 <= u64::from(self.rx_bytes)
    }
}

/// What a connection needs from its endpoint while handling an input.
pub(crate) struct Ctx<'a> {
    pub(crate) cfg: &'a EndpointConfig,
    pub(crate) sizes: &'a Sizes,
    pub(crate) events: &'a mut VecDeque<Event>,
    pub(crate) stats: &'a mut EndpointStats,
    pub(crate) id: ConnectionId,
    /// Reassembly bytes buffered by every connection of the endpoint.
    pub(crate) reassembly_total: &'a mut usize,
    /// Per-address accounting (connections, reassembly bytes).
    pub(crate) admission: &'a mut Admission,
    pub(crate) now: Instant,
}

impl Ctx<'_> {
    /// Reassembly bytes a connection from `ip` may still take: what is left
    /// of the endpoint-wide budget and of its address's.
    fn reassembly_room(&self, ip: IpAddr) -> usize {
        let total = self.cfg.max_reassembly_bytes_total.saturating_sub(*self.reassembly_total);
        total.min(self.admission.reassembly_room(ip, self.cfg))
    }

    /// Keeps both totals in step with one connection's change.
    fn reassembly_changed(&mut self, ip: IpAddr, before: usize, after: usize) {
        *self.reassembly_total = self.reassembly_total.saturating_sub(before).saturating_add(after);
        self.admission.reassembly_changed(self.now, ip, before, after, self.cfg);
    }
}

/// One peer's session. Obtain a reference with
/// [`crate::Endpoint::connection`]; the endpoint drives it.
#[cfg_attr(feature = "_fuzzing", derive(Clone))]
pub struct Connection {
    role: Role,
    remote: SocketAddr,
    state: State,
    key: Option<PacketKey>,
    token: u32,
    server_key: Option<PublicKey>,
    connected: bool,
    handshake_deadline: Instant,
    handshake_resend_at: Instant,
    linger_deadline: Instant,
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
    pub(crate) final_disconnect: bool,
    pub(crate) in_ready_queue: bool,
    /// Changed since the endpoint last settled it.
    pub(crate) dirty: bool,
    /// `next_transmit` as of the last settle (valid while not dirty).
    pub(crate) transmit_at: Option<Instant>,
    /// `timeout` is stale.
    pub(crate) timer_dirty: bool,
    pub(crate) timeout: Option<Instant>,
    /// Whether messages sent without an explicit choice get
    /// `Delivered`/`Lost` events (see `Endpoint::set_outcome_reports`).
    pub(crate) reports: bool,
}

impl Connection {
    fn new(role: Role, remote: SocketAddr, now: Instant, cfg: &EndpointConfig, state: State) -> Connection {
        let sizes = cfg.sizes();
        Connection {
            role,
            remote,
            state,
            key: None,
            token: 0,
            server_key: None,
            connected: false,
            handshake_deadline: now + if role == Role::Client { cfg.connect_timeout } else { cfg.handshake_timeout },
            handshake_resend_at: now,
            linger_deadline: Instant::MAX,
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
            in_ready_queue: false,
            dirty: false,
            transmit_at: None,
            timer_dirty: false,
            timeout: None,
            reports: true,
        }
    }

    /// A client connection: its first CLIENT_HELLO goes out at once.
    pub(crate) fn client(
        remote: SocketAddr,
        now: Instant,
        cfg: &EndpointConfig,
        mut rng: Rng,
        auth: ServerAuth,
    ) -> Connection {
        let sizes = cfg.sizes();
        let ephemeral = EphemeralKey::generate(&mut rng);
        let mut padding = alloc::vec![0u8; sizes.hello_padding];
        rng.fill(&mut padding);
        let mut body = alloc::vec![0u8; handshake::CLIENT_HELLO_FIXED_LEN + sizes.hello_padding];
        let n = handshake::emit_client_hello(&mut body, &ephemeral.public_spki(), &padding)
            .expect("the body buffer is sized for the fixed fields plus the padding");
        body.truncate(n);
        let mut conn = Connection::new(
            Role::Client,
            remote,
            now,
            cfg,
            State::Closed, // replaced below, once the msgseqs are reserved
        );
        let msgseq = conn.send.take_msgseq();
        let challenge_msgseq = conn.send.take_msgseq();
        conn.state = State::ClientHello(Box::new(ClientHello {
            ephemeral,
            auth,
            msgseq,
            challenge_msgseq,
            body,
            bad_signature: false,
            accepted: None,
        }));
        conn
    }

    /// A server connection for a valid CLIENT_HELLO of `hello_len` bytes
    /// from a client whose (validated) ephemeral key is `peer`: derives the
    /// session key with the server's ephemeral key and this client's salt,
    /// and prepares its SERVER_HELLO.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn server(
        remote: SocketAddr,
        now: Instant,
        cfg: &EndpointConfig,
        ephemeral: &EphemeralKey,
        answer: HelloAnswer,
        client_key: [u8; SPKI_LEN],
        peer: &p256::PublicKey,
        hello: (u16, u16, usize),
    ) -> Connection {
        let (hello_seq, hello_msgseq, hello_len) = hello;
        let shared = ephemeral.agree_with(peer);
        let mut conn = Connection::new(Role::Server, remote, now, cfg, State::Closed);
        conn.key = Some(PacketKey::new(&crypto::derive_packet_key(&shared, &answer.salt)));
        conn.token = answer.token;
        conn.recv_packets.insert(hello_seq);
        conn.recv_messages.insert(hello_msgseq);
        let msgseq = conn.send.take_msgseq();
        let mut pending = ServerPending {
            client_key,
            msgseq,
            reply: answer.reply,
            reply_due: false,
            rx_bytes: u32::try_from(hello_len).unwrap_or(u32::MAX),
            tx_bytes: 0,
        };
        // Always true for a valid hello (≥ 338 bytes against ≤ 329); checked
        // anyway, as every SERVER_HELLO is.
        pending.reply_due = pending.reply_allowed();
        conn.state = State::ServerPending(Box::new(pending));
        conn
    }

    /// The peer's address.
    pub fn remote(&self) -> SocketAddr {
        self.remote
    }

    /// This side's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The public state.
    pub fn state(&self) -> ConnectionState {
        match self.state {
            State::ClientHello(_) | State::ClientChallenge(_) | State::ServerPending(_) => ConnectionState::Connecting,
            State::Established => ConnectionState::Connected,
            State::Closing => ConnectionState::Closing,
            State::Closed => ConnectionState::Closed,
        }
    }

    /// A cheap summary of the state for change detection: equal keys mean
    /// equal [`Connection::state`] and [`Connection::is_connected`].
    #[inline]
    pub(crate) fn state_key(&self) -> StateKey {
        StateKey(core::mem::discriminant(&self.state), self.connected)
    }

    /// The session token (the reference's public connection id), once the
    /// handshake has chosen it. Tokens are not guaranteed unique.
    pub fn token(&self) -> Option<u32> {
        (self.token != 0).then_some(self.token)
    }

    /// At a client: the server root key that signed the SERVER_HELLO.
    /// With trust on first use, pin this key for later connections.
    pub fn server_key(&self) -> Option<&PublicKey> {
        self.server_key.as_ref()
    }

    /// Metrics: RTT, rates, message counters.
    pub fn metrics(&self) -> &ConnectionMetrics {
        &self.metrics
    }

    /// Messages accepted by `send` whose outcome is not known yet.
    pub fn pending_messages(&self) -> usize {
        self.send.queued_messages()
    }

    /// Bytes of the messages in the send queue (at most the configuration's
    /// `send_queue_bytes`): what is still to be sent or acknowledged.
    pub fn pending_bytes(&self) -> usize {
        self.send.queued_bytes()
    }

    /// The session key, for tests that decode captured datagrams.
    #[cfg(test)]
    pub(crate) fn packet_key(&self) -> Option<&PacketKey> {
        self.key.as_ref()
    }

    pub(crate) fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Whether the handshake has completed (so the application knows it).
    pub(crate) fn is_connected(&self) -> bool {
        self.connected
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

    /// Whether messages sent with the connection's default get a
    /// `Delivered` or `Lost` event (true unless
    /// [`crate::Endpoint::set_outcome_reports`] turned it off).
    pub fn reports_outcomes(&self) -> bool {
        self.reports
    }

    // ----- commands ------------------------------------------------------

    /// Queues an application message; its outcome is an event if `report`.
    pub(crate) fn send(
        &mut self,
        data: &[u8],
        delivery: Delivery,
        report: bool,
    ) -> Result<MessageId, crate::SendError> {
        match self.state {
            State::Closing | State::Closed => return Err(crate::SendError::Closing),
            _ => {}
        }
        if !self.send.has_room(data.len()) {
            return Err(crate::SendError::QueueFull);
        }
        self.metrics.messages_sent += 1;
        Ok(self.send.push(data, delivery, MsgType::App, report))
    }

    /// Starts a graceful close (§13).
    pub(crate) fn disconnect(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        match self.state {
            State::ClientHello(_) | State::ClientChallenge(_) => {
                self.fail(ConnectFailure::Cancelled, ctx);
            }
            State::ServerPending(_) => self.close_silently(ctx),
            State::Established => {
                let (events, metrics, id) = (&mut *ctx.events, &mut self.metrics, ctx.id);
                self.send.drop_unsent(&mut |o| report(events, metrics, id, o));
                self.send.push(&[], Delivery::Reliable, MsgType::Disconnect, false);
                self.state = State::Closing;
                self.linger_deadline = now + ctx.cfg.disconnect_linger;
            }
            State::Closing | State::Closed => {}
        }
    }

    // ----- input ---------------------------------------------------------

    /// Handles a datagram from this connection's address whose header
    /// parsed. Drops (and counts) anything the state does not accept.
    pub(crate) fn handle_datagram(&mut self, now: Instant, hdr: &Header, datagram: &mut [u8], ctx: &mut Ctx<'_>) {
        use MsgType::*;
        if let State::ServerPending(p) = &mut self.state {
            // Anti-amplification: whatever arrives from the address, valid
            // or not, is what we may send back before it is verified.
            p.rx_bytes = p.rx_bytes.saturating_add(u32::try_from(datagram.len()).unwrap_or(u32::MAX));
        }
        let result = match (&self.state, hdr.ty) {
            (State::ClientHello(_) | State::ClientChallenge(_), ServerHello) => {
                self.on_server_hello(now, hdr, datagram, ctx.cfg)
            }
            (State::ClientHello(_), _) => Err(DropReason::Unexpected),
            // After the handshake, a SERVER_HELLO never re-keys (rule 18).
            (State::Established | State::Closing, ServerHello) => Err(DropReason::Unexpected),
            (State::ServerPending(_), ClientHello) => self.on_repeated_hello(now, hdr, datagram, ctx),
            (State::ServerPending(_), ChallengeResp) => self.on_protected(now, hdr, datagram, ctx),
            (State::ServerPending(_), _) => Err(DropReason::Unexpected),
            // CRC-only datagrams never touch an established session (rules 7, 19).
            (_, Unknown | ClientHello) => Err(DropReason::Unexpected),
            (State::Closed, _) => Err(DropReason::UnknownPeer),
            _ => self.on_protected(now, hdr, datagram, ctx),
        };
        if let Err(reason) = result {
            ctx.stats.drop(reason);
        }
    }

    /// Verifies a CRC-mode datagram and returns its single message.
    pub(crate) fn open_crc<'d>(hdr: &Header, datagram: &'d [u8]) -> Result<wire::frame::Message<'d>, DropReason> {
        let end = hdr.payload_end(datagram.len(), CRC_LEN).map_err(|_| DropReason::Malformed)?;
        let trailer = datagram.get(end..end + CRC_LEN).ok_or(DropReason::Malformed)?;
        let expected = u32::from_be_bytes(trailer.try_into().map_err(|_| DropReason::Malformed)?);
        if crypto::crc32(&datagram[..end]) != expected {
            return Err(DropReason::BadCrc);
        }
        let mut msgs = wire::frame::parse_payload(hdr.ty, hdr.count, &datagram[HEADER_LEN..end])
            .map_err(|_| DropReason::Malformed)?;
        match (hdr.count, msgs.next()) {
            (1, Some(m)) if m.ty == hdr.ty => Ok(m),
            _ => Err(DropReason::Malformed),
        }
    }

    /// A SERVER_HELLO while the client handshakes: a repeat of the one being
    /// answered (the server still has us pending), or a first or new one (a
    /// new server session, after the server forgot an earlier one), which
    /// must be signed by the server's root key.
    fn on_server_hello(
        &mut self,
        now: Instant,
        hdr: &Header,
        datagram: &[u8],
        cfg: &EndpointConfig,
    ) -> Result<(), DropReason> {
        let (State::ClientHello(hello) | State::ClientChallenge(hello)) = &mut self.state else {
            return Err(DropReason::Unexpected);
        };
        let msg = Self::open_crc(hdr, datagram)?;
        if let Some(acc) = &mut hello.accepted
            && acc.server_hello.as_slice() == msg.data
        {
            if self.recv_packets.insert(hdr.seq) != Insert::Accepted {
                return Err(DropReason::Replay);
            }
            acc.at = now;
            self.last_recv = now;
            self.metrics.on_received(now, datagram.len());
            if let State::ClientHello(_) = self.state {
                self.handshake_resend_at = now;
                self.enter_challenge();
            }
            return Ok(());
        }
        let sh = handshake::parse_server_hello(msg.data).map_err(|_| DropReason::Malformed)?;
        let root = match &hello.auth {
            ServerAuth::Pinned(key) => key.clone(),
            ServerAuth::TrustOnFirstUse => PublicKey::from_spki_der(sh.root_spki).map_err(|_| DropReason::Malformed)?,
        };
        if !root.verify(sh.blob, sh.signature) {
            hello.bad_signature = true;
            return Err(DropReason::AuthFailed);
        }
        let blob = handshake::parse_server_blob(sh.blob).map_err(|_| DropReason::Malformed)?;
        let shared = hello.ephemeral.agree(blob.ephemeral_spki).ok_or(DropReason::Malformed)?;
        let server_hello = heapless::Vec::from_slice(msg.data).map_err(|_| DropReason::Malformed)?;
        let mut challenge = [0u8; CHALLENGE_RESP_LEN];
        handshake::emit_challenge_resp(&mut challenge, blob.token);
        hello.accepted = Some(Accepted { server_hello, challenge, at: now });
        self.key = Some(PacketKey::new(&crypto::derive_packet_key(&shared, &blob.salt)));
        self.token = blob.token;
        self.server_key = Some(root);
        // A new server session numbers its datagrams from 1 again.
        self.recv_packets = PacketWindow::new(32);
        self.recv_messages = MessageWindow::new(cfg.message_window);
        self.newest_ctime = None;
        self.recv_packets.insert(hdr.seq);
        self.recv_messages.insert(msg.msgseq);
        self.last_recv = now;
        self.metrics.on_received(now, datagram.len());
        self.handshake_resend_at = now;
        self.enter_challenge();
        Ok(())
    }

    /// A client that accepted a SERVER_HELLO answers it (from `ClientHello`;
    /// already there otherwise).
    fn enter_challenge(&mut self) {
        if let State::ClientHello(_) = self.state {
            let State::ClientHello(hello) = core::mem::replace(&mut self.state, State::Closed) else {
                unreachable!("matched just above");
            };
            self.state = State::ClientChallenge(hello);
        }
    }

    fn on_repeated_hello(
        &mut self,
        now: Instant,
        hdr: &Header,
        datagram: &[u8],
        ctx: &mut Ctx<'_>,
    ) -> Result<(), DropReason> {
        let cfg = ctx.cfg;
        let State::ServerPending(pending) = &mut self.state else {
            return Err(DropReason::Unexpected);
        };
        let msg = Self::open_crc(hdr, datagram)?;
        // A repeat must be padded like a first hello (§10.2): an unpadded
        // one would make the SERVER_HELLO larger than the request.
        let hello =
            handshake::parse_client_hello(msg.data, ctx.sizes.hello_padding).map_err(|_| DropReason::Malformed)?;
        if hello.key_spki != pending.client_key {
            // Another handshake from the same address: wait for this one to expire.
            return Err(DropReason::Unexpected);
        }
        if self.recv_packets.insert(hdr.seq) != Insert::Accepted {
            return Err(DropReason::Replay);
        }
        if pending.reply_allowed() {
            pending.reply_due = true;
        } else {
            ctx.stats.amplification_limited += 1;
        }
        // The client is still trying: time the pending entry from its
        // latest hello, so a SERVER_HELLO that gets through late leaves the
        // CHALLENGE_RESP the whole handshake timeout to follow.
        self.handshake_deadline = now + cfg.handshake_timeout;
        Ok(())
    }

    /// The AEAD path: everything after the hellos (§15 receive pipeline).
    fn on_protected(
        &mut self,
        now: Instant,
        hdr: &Header,
        datagram: &mut [u8],
        ctx: &mut Ctx<'_>,
    ) -> Result<(), DropReason> {
        let key = self.key.as_ref().ok_or(DropReason::Unexpected)?;
        let end = hdr.payload_end(datagram.len(), TAG_LEN).map_err(|_| DropReason::Malformed)?;
        let (head, rest) = datagram.split_at_mut(HEADER_LEN);
        let head: &[u8; HEADER_LEN] = (&*head).try_into().map_err(|_| DropReason::Malformed)?;
        let (payload, rest) = rest.split_at_mut(end - HEADER_LEN);
        let tag: &[u8; TAG_LEN] = rest.get(..TAG_LEN).and_then(|t| t.try_into().ok()).ok_or(DropReason::Malformed)?;
        key.open(head, payload, tag).map_err(|_| DropReason::AuthFailed)?;
        let payload: &[u8] = payload;

        // Rule 17: ctime far older than the newest seen is a replay.
        if let Some(newest) = self.newest_ctime {
            let behind = newest.wrapping_sub(hdr.ctime) as i32;
            let limit = ctx.cfg.connection_timeout.as_secs().saturating_add(1);
            if behind > 0 && behind as u64 > limit {
                return Err(DropReason::Replay);
            }
        }
        let messages = wire::frame::parse_payload(hdr.ty, hdr.count, payload).map_err(|_| DropReason::Malformed)?;

        if let State::ServerPending(_) = self.state {
            // Only a CHALLENGE_RESP with the right token completes the handshake.
            let first = messages.clone().next().ok_or(DropReason::Malformed)?;
            let token = handshake::parse_challenge_resp(first.data).map_err(|_| DropReason::Malformed)?;
            if first.ty != MsgType::ChallengeResp || token != self.token {
                return Err(DropReason::AuthFailed);
            }
        }
        // Refuse (unacknowledged) a datagram whose fragments could not be stored.
        let fragments = messages
            .clone()
            .filter(|m| m.ty == MsgType::AppFragment && self.recv_messages.check(m.msgseq) == Insert::Accepted)
            .map(|m| (m.msgseq, m.data));
        if fragments.clone().next().is_some()
            && self.reassembly.would_run_out_of_room(fragments.clone(), ctx.reassembly_room(self.remote.ip()))
        {
            if !self.reassembly.would_run_out_of_room(fragments, usize::MAX) {
                // Only the endpoint-wide or the address's budget is short.
                ctx.stats.reassembly_budget_refusals += 1;
            }
            return Err(DropReason::Rate);
        }
        match self.recv_packets.insert(hdr.seq) {
            Insert::Accepted => {}
            Insert::Duplicate | Insert::Stale => return Err(DropReason::Replay),
        }
        if self.newest_ctime.is_none_or(|n| (hdr.ctime.wrapping_sub(n) as i32) > 0) {
            self.newest_ctime = Some(hdr.ctime);
        }
        self.last_recv = now;
        self.metrics.on_received(now, end + TAG_LEN);
        match self.state {
            State::ServerPending(_) => {
                self.state = State::Established;
                self.on_connected(ctx);
                // Confirm at once: the client waits for this (rule 8).
                self.unacked_eliciting = ACK_EVERY;
            }
            State::ClientChallenge(_) => {
                self.state = State::Established;
                self.on_connected(ctx);
            }
            _ => {}
        }

        let (events, metrics, id) = (&mut *ctx.events, &mut self.metrics, ctx.id);
        let mut disconnect_acked = false;
        let rtt = self.send.on_ack(hdr.ack, hdr.ack_bits, now, &mut |o| {
            disconnect_acked |= o == Outcome::DisconnectAcked;
            report(events, metrics, id, o);
        });
        if let Some(rtt) = rtt {
            self.on_rtt(rtt, ctx.cfg);
        }

        let mut peer_disconnect = false;
        for m in messages {
            // Only a fragment can still be refused after the window accepts
            // it; its msgseq is recorded once reassembly has taken it.
            let fragment = m.ty == MsgType::AppFragment;
            let verdict =
                if fragment { self.recv_messages.check(m.msgseq) } else { self.recv_messages.insert(m.msgseq) };
            if verdict != Insert::Accepted {
                self.metrics.duplicate_messages += 1;
                continue;
            }
            match m.ty {
                MsgType::App => {
                    self.metrics.messages_received += 1;
                    ctx.events.push_back(Event::Message { conn: ctx.id, payload: m.data.to_vec() });
                }
                MsgType::AppFragment => match self.fragment(now, m.msgseq, m.data, ctx) {
                    reassembly::Outcome::Complete(payload) => {
                        self.metrics.messages_received += 1;
                        ctx.events.push_back(Event::Message { conn: ctx.id, payload });
                    }
                    reassembly::Outcome::Dropped(_) => {
                        ctx.stats.fragments_dropped += 1;
                        // Its msgseq stays unrecorded: a dropped fragment must
                        // not make the genuine one with that msgseq a
                        // duplicate (rule 14).
                        continue;
                    }
                    reassembly::Outcome::Pending | reassembly::Outcome::Duplicate => {}
                },
                MsgType::Disconnect => peer_disconnect = true,
                // Handshake messages after the handshake, KEEP_ALIVE messages
                // with data, UNKNOWN: ignored.
                _ => {}
            }
            if fragment {
                self.recv_messages.insert(m.msgseq);
            }
        }
        if hdr.count > 0 {
            self.ack_owed_since.get_or_insert(now);
            self.unacked_eliciting += 1;
        }
        if peer_disconnect {
            let was_closing = matches!(self.state, State::Closing);
            self.final_disconnect = !was_closing;
            let reason = if was_closing { DisconnectReason::Local } else { DisconnectReason::Peer };
            self.close(reason, ctx);
        } else if disconnect_acked {
            self.close(DisconnectReason::Local, ctx);
        }
        Ok(())
    }

    /// Hands a fragment to reassembly within the endpoint-wide budget, and
    /// keeps the endpoint's total in step.
    fn fragment(&mut self, now: Instant, msgseq: u16, data: &[u8], ctx: &mut Ctx<'_>) -> reassembly::Outcome {
        let room = ctx.reassembly_room(self.remote.ip());
        let before = self.reassembly.buffered_bytes();
        let outcome = self.reassembly.on_fragment(now, msgseq, data, room);
        let after = self.reassembly.buffered_bytes();
        ctx.reassembly_changed(self.remote.ip(), before, after);
        outcome
    }

    /// Bytes this connection holds for reassembly (the endpoint releases
    /// them from its total when the connection goes).
    pub(crate) fn reassembly_bytes(&self) -> usize {
        self.reassembly.buffered_bytes()
    }

    fn on_connected(&mut self, ctx: &mut Ctx<'_>) {
        self.connected = true;
        ctx.stats.handshakes_completed += 1;
        ctx.events.push_back(Event::Connected { conn: ctx.id });
    }

    // ----- timers --------------------------------------------------------

    /// Runs every timer that is due at `now`. Early or spurious calls do nothing.
    pub(crate) fn handle_timeout(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        match self.state {
            State::ClientHello(ref h) => {
                if now >= self.handshake_deadline {
                    let reason =
                        if h.bad_signature { ConnectFailure::WrongServerKey } else { ConnectFailure::TimedOut };
                    self.fail(reason, ctx);
                }
                return;
            }
            State::ClientChallenge(_) => {
                if now >= self.handshake_deadline {
                    self.fail(ConnectFailure::TimedOut, ctx);
                }
                return;
            }
            State::ServerPending(_) => {
                if now >= self.handshake_deadline {
                    self.close_silently(ctx);
                }
                return;
            }
            State::Closed => return,
            State::Established | State::Closing => {}
        }
        if now >= self.last_recv + ctx.cfg.connection_timeout {
            let reason =
                if matches!(self.state, State::Closing) { DisconnectReason::Local } else { DisconnectReason::TimedOut };
            self.close(reason, ctx);
            return;
        }
        if matches!(self.state, State::Closing) && now >= self.linger_deadline {
            self.close(DisconnectReason::Local, ctx);
            return;
        }
        let timing = self.timing;
        let (events, metrics, id) = (&mut *ctx.events, &mut self.metrics, ctx.id);
        let lost = self.send.detect_timeouts(now, timing, &mut |o| report(events, metrics, id, o));
        self.send.expire_best_effort(now, timing, &mut |o| report(events, metrics, id, o));
        self.metrics.datagrams_lost += lost;
        let before = self.reassembly.buffered_bytes();
        ctx.stats.reassemblies_expired += self.reassembly.expire(now) as u64;
        ctx.reassembly_changed(self.remote.ip(), before, self.reassembly.buffered_bytes());
    }

    /// The earliest instant at which [`Connection::handle_timeout`] has work.
    fn next_deadline(&self, cfg: &EndpointConfig) -> Option<Instant> {
        match self.state {
            State::ClientHello(_) | State::ClientChallenge(_) | State::ServerPending(_) => {
                Some(self.handshake_deadline)
            }
            State::Closed => None,
            State::Established | State::Closing => {
                let timing = self.timing;
                let mut t = self.last_recv + cfg.connection_timeout;
                if matches!(self.state, State::Closing) {
                    t = t.min(self.linger_deadline);
                }
                for x in [
                    self.send.next_packet_timeout(timing),
                    self.send.next_best_effort_deadline(timing),
                    self.reassembly.next_expiry(),
                ]
                .into_iter()
                .flatten()
                {
                    t = t.min(x);
                }
                Some(t)
            }
        }
    }

    /// When this connection next wants to put a datagram on the wire
    /// (`<= now` means now).
    pub(crate) fn next_transmit(&self, now: Instant, cfg: &EndpointConfig) -> Option<Instant> {
        match &self.state {
            State::ClientHello(_) | State::ClientChallenge(_) => Some(self.handshake_resend_at),
            State::ServerPending(p) => p.reply_due.then_some(now),
            State::Closed => None,
            State::Established | State::Closing => {
                let timing = self.timing;
                let flight_ok = self.send.flight_allows(self.packet_seq.peek());
                let mut want: Option<Instant> = None;
                let mut consider = |t: Instant| want = Some(want.map_or(t, |w: Instant| w.min(t)));
                if flight_ok {
                    if self.send.has_due(now, timing) {
                        // Nothing below could make it earlier than `now`,
                        // and the pacers never answer before `now`.
                        return Some(now.max(self.pacer.ready_at(now)).max(self.seq_budget.ready_at(now)));
                    } else if let Some(t) = self.send.next_resend_time(timing) {
                        consider(t);
                    }
                }
                if let Some(since) = self.ack_owed_since {
                    consider(if self.unacked_eliciting >= ACK_EVERY { now } else { since + cfg.max_ack_delay });
                }
                if matches!(self.state, State::Established) {
                    consider(self.last_send + cfg.keep_alive_interval);
                }
                Some(want?.max(self.pacer.ready_at(now)).max(self.seq_budget.ready_at(now)))
            }
        }
    }

    /// The earliest instant this connection needs the endpoint's attention:
    /// a timer, or a transmission that cannot happen yet. Transmissions due
    /// now are not timers (the endpoint queues the connection instead).
    pub(crate) fn poll_timeout(
        &self,
        now: Instant,
        next_transmit: Option<Instant>,
        cfg: &EndpointConfig,
    ) -> Option<Instant> {
        let transmit = next_transmit.filter(|&t| t > now);
        match (self.next_deadline(cfg), transmit) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn ctime(now: Instant, cfg: &EndpointConfig) -> u32 {
        // The header field is 32 bits of Unix seconds; it wraps in 2106.
        cfg.unix_time_origin.wrapping_add(now.as_secs()) as u32
    }

    // ----- output --------------------------------------------------------

    /// Writes the next datagram into `buf` if one is due; returns its length.
    pub(crate) fn poll_transmit(
        &mut self,
        now: Instant,
        buf: &mut [u8; MAX_DATAGRAM],
        ctx: &mut Ctx<'_>,
    ) -> Option<usize> {
        // The endpoint settled this connection at `now` or earlier and
        // nothing changed since; being due only becomes truer with time.
        debug_assert!(!self.dirty);
        if self.transmit_at.is_none_or(|t| t > now) {
            return None;
        }
        let len = match &mut self.state {
            State::ClientHello(hello) => {
                let (msgseq, body) = (hello.msgseq, core::mem::take(&mut hello.body));
                let len = self.write_datagram(now, buf, ctx, false, |w, _| {
                    let _ = w.push(msgseq, MsgType::ClientHello, &body);
                });
                if let State::ClientHello(hello) = &mut self.state {
                    hello.body = body;
                }
                self.handshake_resend_at = now + ctx.cfg.handshake_retransmit_interval;
                len
            }
            State::ClientChallenge(hello) => {
                self.handshake_resend_at = now + ctx.cfg.handshake_retransmit_interval;
                let acc = hello.accepted.as_ref().expect("a challenging client has accepted a SERVER_HELLO");
                if now >= acc.at + ctx.cfg.handshake_timeout {
                    // No confirmation for a whole handshake timeout: the
                    // server may have forgotten us. Repeat the hello.
                    let (msgseq, body) = (hello.msgseq, core::mem::take(&mut hello.body));
                    let len = self.write_datagram(now, buf, ctx, false, |w, _| {
                        let _ = w.push(msgseq, MsgType::ClientHello, &body);
                    });
                    if let State::ClientChallenge(hello) = &mut self.state {
                        hello.body = body;
                    }
                    len
                } else {
                    let (body, msgseq) = (acc.challenge, hello.challenge_msgseq);
                    self.write_datagram(now, buf, ctx, true, |w, _| {
                        let _ = w.push(msgseq, MsgType::ChallengeResp, &body);
                    })
                }
            }
            State::ServerPending(p) => {
                p.reply_due = false;
                let (msgseq, reply) = (p.msgseq, p.reply.clone());
                let len = self.write_datagram(now, buf, ctx, false, |w, _| {
                    let _ = w.push(msgseq, MsgType::ServerHello, &reply);
                });
                if let State::ServerPending(p) = &mut self.state {
                    p.tx_bytes = p.tx_bytes.saturating_add(u32::try_from(len).unwrap_or(u32::MAX));
                    debug_assert!(p.tx_bytes <= p.rx_bytes, "anti-amplification");
                }
                len
            }
            State::Established | State::Closing => {
                let timing = self.timing;
                let flight_ok = self.send.flight_allows(self.packet_seq.peek());
                let mut filled = (0, 0);
                let len = self.write_datagram(now, buf, ctx, true, |w, c| {
                    if flight_ok {
                        filled = c.send.fill(w, now, timing, c.packet_seq.last());
                    }
                });
                self.metrics.messages_retransmitted += filled.1 as u64;
                self.pacer.on_sent(now);
                len
            }
            State::Closed => return None,
        };
        Some(len)
    }

    /// The last datagram of a connection closed by the peer's DISCONNECT:
    /// our own DISCONNECT, which also acknowledges theirs (§13).
    pub(crate) fn poll_final(
        &mut self,
        now: Instant,
        buf: &mut [u8; MAX_DATAGRAM],
        ctx: &mut Ctx<'_>,
    ) -> Option<usize> {
        if !core::mem::take(&mut self.final_disconnect) || self.key.is_none() {
            return None;
        }
        let msgseq = self.send.take_msgseq();
        Some(self.write_datagram(now, buf, ctx, true, |w, _| {
            let _ = w.push(msgseq, MsgType::Disconnect, &[]);
        }))
    }

    /// Assembles one datagram: header, the payload `fill` writes, and the
    /// CRC or AEAD trailer. `fill` gets the connection, whose packet
    /// sequence number for this datagram is already taken.
    fn write_datagram(
        &mut self,
        now: Instant,
        buf: &mut [u8; MAX_DATAGRAM],
        ctx: &mut Ctx<'_>,
        aead: bool,
        fill: impl FnOnce(&mut PayloadWriter<'_>, &mut Connection),
    ) -> usize {
        let max_payload = ctx.sizes.max_payload;
        let seq = self.packet_seq.advance();
        let (head, rest) = buf.split_at_mut(HEADER_LEN);
        let mut w = PayloadWriter::new(&mut rest[..max_payload], max_payload);
        fill(&mut w, self);
        let (length, count, ty) = w.finish();
        let hdr = Header {
            dir: self.direction(),
            ctime: Self::ctime(now, ctx.cfg),
            seq,
            ack: self.recv_packets.newest(),
            ty,
            length: length as u16,
            count,
            ack_bits: self.recv_packets.ack_bits(),
        };
        let head: &mut [u8; HEADER_LEN] = head.try_into().expect("split at HEADER_LEN");
        hdr.emit(head);
        let total = if aead {
            let key = self.key.as_ref().expect("AEAD datagrams are only written once the key is derived");
            let tag = key.seal(head, &mut rest[..length]);
            rest[length..length + TAG_LEN].copy_from_slice(&tag);
            HEADER_LEN + length + TAG_LEN
        } else {
            let crc = crypto::crc32(&buf[..HEADER_LEN + length]);
            buf[HEADER_LEN + length..HEADER_LEN + length + CRC_LEN].copy_from_slice(&crc.to_be_bytes());
            HEADER_LEN + length + CRC_LEN
        };
        let (events, metrics, id) = (&mut *ctx.events, &mut self.metrics, ctx.id);
        let lost = self.send.on_datagram_sent(seq, &mut |o| report(events, metrics, id, o));
        self.metrics.datagrams_lost += lost;
        // Every datagram carries the ack.
        self.ack_owed_since = None;
        self.unacked_eliciting = 0;
        self.last_send = now;
        self.seq_budget.on_sent(now);
        self.metrics.on_sent(now, total);
        total
    }

    // ----- endings -------------------------------------------------------

    /// Ends an established (or closing) connection: every undecided message
    /// is lost, and `Disconnected` fires.
    fn close(&mut self, reason: DisconnectReason, ctx: &mut Ctx<'_>) {
        let (events, metrics, id) = (&mut *ctx.events, &mut self.metrics, ctx.id);
        self.send.abandon(&mut |o| report(events, metrics, id, o));
        self.state = State::Closed;
        if self.connected {
            ctx.events.push_back(Event::Disconnected { conn: ctx.id, reason });
        }
    }

    /// A client's handshake failed: queued messages are lost, then `ConnectFailed`.
    fn fail(&mut self, reason: ConnectFailure, ctx: &mut Ctx<'_>) {
        let (events, metrics, id) = (&mut *ctx.events, &mut self.metrics, ctx.id);
        self.send.abandon(&mut |o| report(events, metrics, id, o));
        self.state = State::Closed;
        ctx.events.push_back(Event::ConnectFailed { conn: ctx.id, reason });
    }

    /// A server's pending handshake ends unseen by the application; any
    /// message already queued on it is lost.
    fn close_silently(&mut self, ctx: &mut Ctx<'_>) {
        let (events, metrics, id) = (&mut *ctx.events, &mut self.metrics, ctx.id);
        self.send.abandon(&mut |o| report(events, metrics, id, o));
        self.state = State::Closed;
    }
}

/// Turns a message outcome into its event and counters.
fn report(events: &mut VecDeque<Event>, metrics: &mut ConnectionMetrics, conn: ConnectionId, outcome: Outcome) {
    match outcome {
        Outcome::Delivered(id) => {
            metrics.messages_acked += 1;
            events.push_back(Event::Delivered { conn, id });
        }
        Outcome::Lost(id) => {
            metrics.messages_lost += 1;
            events.push_back(Event::Lost { conn, id });
        }
        Outcome::Unreported { delivered: true } => metrics.messages_acked += 1,
        Outcome::Unreported { delivered: false } => metrics.messages_lost += 1,
        Outcome::DisconnectAcked => {}
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

#[cfg(test)]
mod amplification_tests {
    use super::*;

    #[test]
    fn a_server_hello_is_withheld_until_enough_bytes_arrived() {
        let mut reply = heapless::Vec::<u8, SERVER_HELLO_MAX>::new();
        reply.resize(300, 0).unwrap();
        let mut p =
            ServerPending { client_key: [0; SPKI_LEN], msgseq: 1, reply, reply_due: false, rx_bytes: 200, tx_bytes: 0 };
        let len = p.reply_datagram_len() as u32;
        assert_eq!(len, 300 + (HEADER_LEN + 2 + CRC_LEN) as u32);
        assert!(!p.reply_allowed(), "200 B received cannot pay for a {len} B reply");
        p.rx_bytes = len;
        assert!(p.reply_allowed(), "exactly the bytes received");
        p.tx_bytes = len;
        p.rx_bytes = 2 * len - 1;
        assert!(!p.reply_allowed(), "the second reply needs twice the bytes");
        p.rx_bytes = 2 * len;
        assert!(p.reply_allowed());
    }
}
