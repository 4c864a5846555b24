//! Building MPGS/1 datagrams: when a connection next wants to send, what
//! goes in the next datagram for each state, and assembling it (header,
//! payload, then the CRC or AEAD trailer through [`protect::seal`]).

use super::handshake::State;
use super::protect;
use super::wire::{HEADER_LEN, Header, MsgType, PayloadWriter};
use super::{ACK_EVERY, Connection};
use crate::config::{EndpointConfig, MAX_DATAGRAM};
use crate::time::Instant;

impl Connection {
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

    /// Writes the next datagram into `buf`; returns its length. The endpoint
    /// calls it only when [`Connection::next_transmit`] said now.
    pub(crate) fn poll_transmit(
        &mut self,
        now: Instant,
        buf: &mut [u8; MAX_DATAGRAM],
        cfg: &EndpointConfig,
    ) -> Option<usize> {
        let len = match &mut self.state {
            State::ClientHello(_) => {
                let len = self.write_client_hello(now, buf, cfg);
                self.handshake_resend_at = now + cfg.handshake_retransmit_interval;
                len
            }
            State::ClientChallenge(hello) => {
                self.handshake_resend_at = now + cfg.handshake_retransmit_interval;
                // Invariant: the client enters `ClientChallenge` only with an accepted SERVER_HELLO.
                let acc = hello.accepted.as_ref().expect("a challenging client has accepted a SERVER_HELLO");
                if now >= acc.at + cfg.handshake_timeout {
                    // No confirmation for a whole handshake timeout: the
                    // server may have forgotten us. Repeat the hello.
                    self.write_client_hello(now, buf, cfg)
                } else {
                    let (body, msgseq) = (acc.challenge, hello.challenge_msgseq);
                    self.write_datagram(now, buf, cfg, true, |w, _| {
                        let _ = w.push(msgseq, MsgType::ChallengeResp, &body);
                    })
                }
            }
            State::ServerPending(p) => {
                p.reply_due = false;
                let (msgseq, reply) = (p.msgseq, p.reply.clone());
                let len = self.write_datagram(now, buf, cfg, false, |w, _| {
                    let _ = w.push(msgseq, MsgType::ServerHello, &reply);
                });
                self.sent_server_hello(len);
                len
            }
            State::Established | State::Closing => {
                let timing = self.timing;
                let flight_ok = self.send.flight_allows(self.packet_seq.peek());
                let mut filled = (0, 0);
                let len = self.write_datagram(now, buf, cfg, true, |w, c| {
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

    /// A client's CLIENT_HELLO, identical in every copy (rule 8).
    fn write_client_hello(&mut self, now: Instant, buf: &mut [u8; MAX_DATAGRAM], cfg: &EndpointConfig) -> usize {
        let (State::ClientHello(hello) | State::ClientChallenge(hello)) = &mut self.state else {
            return 0; // only called in the client's hello states
        };
        let (msgseq, body) = (hello.msgseq, core::mem::take(&mut hello.body));
        let len = self.write_datagram(now, buf, cfg, false, |w, _| {
            let _ = w.push(msgseq, MsgType::ClientHello, &body);
        });
        if let State::ClientHello(hello) | State::ClientChallenge(hello) = &mut self.state {
            hello.body = body;
        }
        len
    }

    /// The last datagram of a connection closed by the peer's DISCONNECT:
    /// our own DISCONNECT, which also acknowledges theirs (§13).
    pub(crate) fn poll_final(
        &mut self,
        now: Instant,
        buf: &mut [u8; MAX_DATAGRAM],
        cfg: &EndpointConfig,
    ) -> Option<usize> {
        if !core::mem::take(&mut self.final_disconnect) || self.key.is_none() {
            return None;
        }
        let msgseq = self.send.take_msgseq();
        Some(self.write_datagram(now, buf, cfg, true, |w, _| {
            let _ = w.push(msgseq, MsgType::Disconnect, &[]);
        }))
    }

    /// Assembles one datagram: the payload `fill` writes, then header and
    /// trailer through [`protect::seal`]. `fill` gets the connection, whose
    /// packet sequence number for this datagram is already taken.
    fn write_datagram(
        &mut self,
        now: Instant,
        buf: &mut [u8; MAX_DATAGRAM],
        cfg: &EndpointConfig,
        aead: bool,
        fill: impl FnOnce(&mut PayloadWriter<'_>, &mut Connection),
    ) -> usize {
        let max_payload = self.max_payload;
        let seq = self.packet_seq.advance();
        let mut w = PayloadWriter::new(&mut buf[HEADER_LEN..HEADER_LEN + max_payload], max_payload);
        fill(&mut w, self);
        let (length, count, ty) = w.finish();
        let hdr = Header {
            dir: self.direction(),
            ctime: ctime(now, cfg),
            seq,
            ack: self.recv_packets.newest(),
            ty,
            length: 0, // set by `seal`
            count,
            ack_bits: self.recv_packets.ack_bits(),
        };
        // Invariant: only the handshake's CRC datagrams are written before the key is derived.
        let key = aead.then(|| self.key.as_ref().expect("AEAD datagrams are only written once the key is derived"));
        let total = protect::seal(buf, hdr, length, key);
        let lost = self.send.on_datagram_sent(seq);
        self.report_outcomes();
        self.metrics.datagrams_lost += lost;
        // Every datagram carries the ack.
        self.ack_owed_since = None;
        self.unacked_eliciting = 0;
        self.last_send = now;
        self.seq_budget.on_sent(now);
        self.metrics.on_sent(now, total);
        total
    }
}

/// The header's `ctime`: 32 bits of Unix seconds from the injected origin
/// (it wraps in 2106).
fn ctime(now: Instant, cfg: &EndpointConfig) -> u32 {
    cfg.unix_time_origin.wrapping_add(now.as_secs()) as u32
}
