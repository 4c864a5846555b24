//! The MPGS/1 receive pipeline (PROTOCOL.md §15): which datagram a state
//! accepts, and for the AEAD path, in order: open, replay by `ctime`,
//! framing, the handshake's confirmation, reassembly room, the packet
//! window, acks, then each message to the application.

use super::handshake::State;
use super::protect::{self, OpenError};
use super::reassembly;
use super::seq::Insert;
use super::wire::{self, HEADER_LEN, Header, MsgType, TAG_LEN};
use super::{ACK_EVERY, Connection};
use crate::budget::Room;
use crate::config::EndpointConfig;
use crate::event::{DisconnectReason, Event};
use crate::stats::DropReason;
use crate::stats::EndpointEvent;
use crate::time::Instant;

impl Connection {
    /// Handles a datagram from this connection's address whose header
    /// parsed. Returns why it was dropped, if it was.
    pub(crate) fn handle_datagram(
        &mut self,
        now: Instant,
        hdr: &Header,
        datagram: &mut [u8],
        cfg: &EndpointConfig,
        room: Room,
    ) -> Result<(), DropReason> {
        use MsgType::*;
        // Anti-amplification: whatever arrives from a pending client's
        // address, valid or not, is what we may send back.
        self.credit_pending(datagram.len());
        match (&self.state, hdr.ty) {
            (State::ClientHello(_) | State::ClientChallenge(_), ServerHello) => {
                self.on_server_hello(now, hdr, datagram, cfg)
            }
            (State::ClientHello(_), _) => Err(DropReason::Unexpected),
            // After the handshake, a SERVER_HELLO never re-keys (rule 18).
            (State::Established | State::Closing, ServerHello) => Err(DropReason::Unexpected),
            (State::ServerPending(_), ClientHello) => self.on_repeated_hello(now, hdr, datagram, cfg),
            (State::ServerPending(_), ChallengeResp) => self.on_protected(now, hdr, datagram, cfg, room),
            (State::ServerPending(_), _) => Err(DropReason::Unexpected),
            // CRC-only datagrams never touch an established session (rules 7, 19).
            (_, Unknown | ClientHello) => Err(DropReason::Unexpected),
            (State::Closed, _) => Err(DropReason::UnknownPeer),
            _ => self.on_protected(now, hdr, datagram, cfg, room),
        }
    }

    /// The AEAD path: everything after the hellos (§15 receive pipeline).
    fn on_protected(
        &mut self,
        now: Instant,
        hdr: &Header,
        datagram: &mut [u8],
        cfg: &EndpointConfig,
        room: Room,
    ) -> Result<(), DropReason> {
        let key = self.key.as_ref().ok_or(DropReason::Unexpected)?;
        let end = protect::open(hdr, datagram, Some(key)).map_err(|e| match e {
            OpenError::AuthFailed => DropReason::AuthFailed,
            OpenError::Malformed | OpenError::BadCrc => DropReason::Malformed,
        })?;
        let payload: &[u8] = &datagram[HEADER_LEN..end];

        // Rule 17: ctime far older than the newest seen is a replay.
        if let Some(newest) = self.newest_ctime {
            let behind = newest.wrapping_sub(hdr.ctime) as i32;
            let limit = cfg.connection_timeout.as_secs().saturating_add(1);
            if behind > 0 && behind as u64 > limit {
                return Err(DropReason::Replay);
            }
        }
        let messages = wire::frame::parse_payload(hdr.ty, hdr.count, payload).map_err(|_| DropReason::Malformed)?;

        if let State::ServerPending(_) = self.state {
            // Only a CHALLENGE_RESP with the right token completes the handshake.
            let first = messages.clone().next().ok_or(DropReason::Malformed)?;
            let token = wire::handshake::parse_challenge_resp(first.data).map_err(|_| DropReason::Malformed)?;
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
            && self.reassembly.would_run_out_of_room(fragments.clone(), room.left(self.reassembly.buffered_bytes()))
        {
            if !self.reassembly.would_run_out_of_room(fragments, usize::MAX) {
                // Only the endpoint-wide or the address's budget is short.
                self.endpoint_events.push_back(EndpointEvent::ReassemblyBudgetRefused);
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
                self.on_connected();
                // Confirm at once: the client waits for this (rule 8).
                self.unacked_eliciting = ACK_EVERY;
            }
            State::ClientChallenge(_) => self.on_connected(),
            _ => {}
        }
        self.on_idle_reset(now, cfg);

        let rtt = self.send.on_ack(hdr.ack, hdr.ack_bits, now);
        let disconnect_acked = self.report_outcomes();
        if let Some(rtt) = rtt {
            self.on_rtt(rtt, cfg);
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
                    self.events.push_back(Event::Message {
                        conn: self.id,
                        channel: crate::channel::MPGS1,
                        payload: m.data.to_vec(),
                    });
                }
                MsgType::AppFragment => {
                    let left = room.left(self.reassembly.buffered_bytes());
                    match self.reassembly.on_fragment(now, m.msgseq, m.data, left) {
                        reassembly::Outcome::Complete(payload) => {
                            self.metrics.messages_received += 1;
                            self.events.push_back(Event::Message {
                                conn: self.id,
                                channel: crate::channel::MPGS1,
                                payload,
                            });
                        }
                        reassembly::Outcome::Dropped(_) => {
                            self.endpoint_events.push_back(EndpointEvent::FragmentDropped);
                            // Its msgseq stays unrecorded: a dropped fragment must
                            // not make the genuine one with that msgseq a
                            // duplicate (rule 14).
                            continue;
                        }
                        reassembly::Outcome::Pending | reassembly::Outcome::Duplicate => {}
                    }
                }
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
            self.close(reason);
        } else if disconnect_acked {
            self.close(DisconnectReason::Local);
        }
        Ok(())
    }

    /// The handshake completed: the application learns of it.
    fn on_connected(&mut self) {
        self.state = State::Established;
        self.connected = true;
        self.endpoint_events.push_back(EndpointEvent::HandshakeCompleted);
        self.events.push_back(Event::Connected { conn: self.id });
    }
}
