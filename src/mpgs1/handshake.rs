//! The MPGS/1 handshake in both roles (PROTOCOL.md §10): the states a
//! connection goes through before it is established, a client's
//! CLIENT_HELLO and its answer to a SERVER_HELLO, a server's pending entry
//! and its answer to a repeated hello, and the checks a CLIENT_HELLO from an
//! unknown address passes before the endpoint's admission gate.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::net::SocketAddr;

use super::Connection;
use super::hello_key::HelloAnswer;
use super::protect::{self, OpenError, PacketKey, derive_packet_key};
use super::seq::{Insert, MessageWindow, PacketWindow};
use super::timers::Timer;
use super::wire::handshake::{self, CHALLENGE_RESP_LEN};
use super::wire::{CRC_LEN, HEADER_LEN, Header, Message};
use crate::config::EndpointConfig;
use crate::event::ConnectionId;
use crate::keys::{EphemeralKey, MAX_SIGNATURE_LEN, PublicKey, SPKI_LEN};
use crate::rng::Rng;
use crate::state::{Role, ServerAuth};
use crate::stats::DropReason;
use crate::stats::EndpointEvent;
use crate::time::Instant;

/// Largest SERVER_HELLO message data: 231 fixed bytes and a ≤ 72-byte signature.
pub(crate) const SERVER_HELLO_MAX: usize = handshake::SERVER_HELLO_FIXED_LEN + MAX_SIGNATURE_LEN;

/// Heap bytes of a server's pending-handshake state (boxed).
pub(crate) const SERVER_PENDING_SIZE: usize = core::mem::size_of::<ServerPending>();

#[cfg_attr(feature = "_fuzzing", derive(Clone))]
pub(super) enum State {
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
pub(super) struct ClientHello {
    ephemeral: EphemeralKey,
    auth: ServerAuth,
    pub(super) msgseq: u16,
    /// The CHALLENGE_RESP's msgseq, reserved with the hello's before any
    /// application message can be queued: the send queue numbers its
    /// messages consecutively, so a msgseq taken later would collide with one.
    pub(super) challenge_msgseq: u16,
    /// The CLIENT_HELLO message data; every copy is identical (rule 8).
    pub(super) body: Vec<u8>,
    /// A SERVER_HELLO failed signature verification (reported on timeout).
    pub(super) bad_signature: bool,
    /// The SERVER_HELLO being answered, once one was accepted.
    pub(super) accepted: Option<Accepted>,
}

/// The SERVER_HELLO a client answers, and its CHALLENGE_RESP.
#[cfg_attr(feature = "_fuzzing", derive(Clone))]
pub(super) struct Accepted {
    /// Its message data, to tell a repeat (rule 9) from a new session.
    server_hello: heapless::Vec<u8, SERVER_HELLO_MAX>,
    pub(super) challenge: [u8; CHALLENGE_RESP_LEN],
    /// When it (or an identical repeat) last arrived.
    pub(super) at: Instant,
}

#[cfg_attr(feature = "_fuzzing", derive(Clone))]
pub(super) struct ServerPending {
    /// The client's ephemeral key, to recognise its repeated hellos (rule 9).
    client_key: [u8; SPKI_LEN],
    pub(super) msgseq: u16,
    pub(super) reply: heapless::Vec<u8, SERVER_HELLO_MAX>,
    pub(super) reply_due: bool,
    /// Bytes received from the (unverified) address so far, every datagram
    /// routed here included.
    pub(super) rx_bytes: u32,
    /// Bytes sent to it: never more than `rx_bytes` (anti-amplification).
    pub(super) tx_bytes: u32,
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

/// A CLIENT_HELLO from an unknown address that passed its own checks
/// (§10.1, §10.2): CRC, framing, padding and version.
pub(crate) struct Hello<'d> {
    /// Its packet sequence number and msgseq (the server's windows start there).
    pub(crate) seq: u16,
    pub(crate) msgseq: u16,
    /// The datagram's length (the anti-amplification credit).
    pub(crate) len: usize,
    /// The client's ephemeral key, not validated yet.
    pub(crate) key_spki: &'d [u8],
}

/// Checks a CLIENT_HELLO datagram (header `hdr`) from an unknown address.
/// Nothing about the sender is checked here: that is admission's part.
pub(crate) fn parse_client_hello<'d>(
    hdr: &Header,
    datagram: &'d [u8],
    hello_padding: usize,
) -> Result<Hello<'d>, DropReason> {
    let msg = crc_message(hdr, datagram)?;
    let hello = handshake::parse_client_hello(msg.data, hello_padding).map_err(|_| DropReason::Malformed)?;
    if hello.version != handshake::PROTOCOL_VERSION {
        return Err(DropReason::Malformed);
    }
    Ok(Hello { seq: hdr.seq, msgseq: msg.msgseq, len: datagram.len(), key_spki: hello.key_spki })
}

/// Verifies a CRC-mode datagram and returns its single message.
pub(crate) fn crc_message<'d>(hdr: &Header, datagram: &'d [u8]) -> Result<Message<'d>, DropReason> {
    let end = protect::open_crc(hdr, datagram).map_err(|e| match e {
        OpenError::BadCrc => DropReason::BadCrc,
        OpenError::Malformed | OpenError::AuthFailed => DropReason::Malformed,
    })?;
    let mut msgs = super::wire::frame::parse_payload(hdr.ty, hdr.count, &datagram[HEADER_LEN..end])
        .map_err(|_| DropReason::Malformed)?;
    match (hdr.count, msgs.next()) {
        (1, Some(m)) if m.ty == hdr.ty => Ok(m),
        _ => Err(DropReason::Malformed),
    }
}

impl Connection {
    /// A client connection: its first CLIENT_HELLO goes out at once.
    pub(crate) fn client(
        id: ConnectionId,
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
            // Invariant: the buffer is sized for the fixed fields plus the padding.
            .expect("the body buffer is sized for the fixed fields plus the padding");
        body.truncate(n);
        let mut conn = Connection::new(
            id,
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

    /// A server connection for a valid CLIENT_HELLO `hello` from a client
    /// whose (validated) ephemeral key is `peer`: derives the session key
    /// with the server's ephemeral key and this client's salt, and prepares
    /// its SERVER_HELLO.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn server(
        id: ConnectionId,
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
        let mut conn = Connection::new(id, Role::Server, remote, now, cfg, State::Closed);
        conn.key = Some(PacketKey::new(&derive_packet_key(&shared, &answer.salt)));
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

    /// A SERVER_HELLO while the client handshakes: a repeat of the one being
    /// answered (the server still has us pending), or a first or new one (a
    /// new server session, after the server forgot an earlier one), which
    /// must be signed by the server's root key.
    pub(super) fn on_server_hello(
        &mut self,
        now: Instant,
        hdr: &Header,
        datagram: &[u8],
        cfg: &EndpointConfig,
    ) -> Result<(), DropReason> {
        let (State::ClientHello(hello) | State::ClientChallenge(hello)) = &mut self.state else {
            return Err(DropReason::Unexpected);
        };
        let msg = crc_message(hdr, datagram)?;
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
        self.key = Some(PacketKey::new(&derive_packet_key(&shared, &blob.salt)));
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

    /// A CLIENT_HELLO again while the server's entry is pending.
    pub(super) fn on_repeated_hello(
        &mut self,
        now: Instant,
        hdr: &Header,
        datagram: &[u8],
        cfg: &EndpointConfig,
    ) -> Result<(), DropReason> {
        let hello_padding = self.hello_padding;
        let State::ServerPending(pending) = &mut self.state else {
            return Err(DropReason::Unexpected);
        };
        let msg = crc_message(hdr, datagram)?;
        // A repeat must be padded like a first hello (§10.2): an unpadded
        // one would make the SERVER_HELLO larger than the request.
        let hello = handshake::parse_client_hello(msg.data, hello_padding).map_err(|_| DropReason::Malformed)?;
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
            self.endpoint_events.push_back(EndpointEvent::AmplificationLimited);
        }
        // The client is still trying: time the pending entry from its
        // latest hello, so a SERVER_HELLO that gets through late leaves the
        // CHALLENGE_RESP the whole handshake timeout to follow.
        self.timers.set(Timer::Handshake, Some(now + cfg.handshake_timeout));
        Ok(())
    }

    /// Counts the bytes of a datagram from a pending client's address
    /// (anti-amplification: whatever arrives, valid or not, is what we may
    /// send back before the address is verified).
    pub(super) fn credit_pending(&mut self, len: usize) {
        if let State::ServerPending(p) = &mut self.state {
            p.rx_bytes = p.rx_bytes.saturating_add(u32::try_from(len).unwrap_or(u32::MAX));
        }
    }

    /// Whether the SERVER_HELLO went out, for the transmit path.
    pub(super) fn sent_server_hello(&mut self, len: usize) {
        if let State::ServerPending(p) = &mut self.state {
            p.tx_bytes = p.tx_bytes.saturating_add(u32::try_from(len).unwrap_or(u32::MAX));
            debug_assert!(p.tx_bytes <= p.rx_bytes, "anti-amplification");
        }
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
