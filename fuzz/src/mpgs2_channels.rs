//! Channels between two real MPGS/2 connections (`mpgs2::conn::Connection`,
//! after a fixed real handshake), both sending on every kind (MPGS2.md
//! §4.3–§4.6: unreliable, unreliable-sequenced, reliable-unordered,
//! reliable-ordered, the three `Delivery` channels, priorities, weights,
//! promotion), over a network the fuzz input drives: which datagram is
//! delivered, dropped, duplicated, reordered or corrupted (hostile input
//! under the fuzzing build's identity cipher), when time jumps,
//! and hostile packets sealed with the sender's keys carrying fuzzed
//! MESSAGE and FRAGMENT frames (any kind, channel, id, offset, length).
//!
//! Checked throughout: no panic, at most one `Closed` per side, at most one
//! outcome per receipt, no message after a close. Without hostile packets:
//! no message is delivered twice, every delivered message is one that was
//! sent on that channel (or promoted to it), ordered channels deliver a
//! prefix of the send order, sequenced ones rising numbers; and after the
//! network is run out cleanly, every reliable message has arrived, in order
//! where ordered, and every receipt has had exactly one outcome, `Delivered`
//! only for messages the peer received (or, sequenced, superseded there by a
//! newer one).

use std::collections::{BTreeMap, BTreeSet};

use mpgameserver::_internal::mpgs2::buf::Writer;
use mpgameserver::_internal::mpgs2::conn::{ConnConfig, ConnEvent, Connection};
use mpgameserver::_internal::mpgs2::frame::Frame;
use mpgameserver::_internal::mpgs2::protect::Protection;
use mpgameserver::_internal::mpgs2::{CID_LEN, MIN_UDP_PAYLOAD, Side};
use mpgameserver::{ChannelConfig, ChannelKind, Duration, Instant, LossReason, Oversize};

use crate::mpgs2_conn::{conn_config, snapshot, trace};

const SEQ: u8 = 3;
const UNORD: u8 = 4;
const ORD: u8 = 5;
const UNREL: u8 = 6;
/// Channels the harness sends on, by input byte.
const CHANNELS: [u8; 7] = [0, 1, 2, SEQ, UNORD, ORD, UNREL];
const MAX_OPS: usize = 400;
/// Datagrams in flight per direction.
const MAX_WIRE: usize = 256;
/// Bytes the application may queue per side in one input.
const APP_BYTES: usize = 1 << 20;

fn config() -> ConnConfig {
    let mut cfg = conn_config();
    cfg.channels.extend([
        ChannelConfig::new(SEQ, ChannelKind::UnreliableSequenced).with_priority(0),
        ChannelConfig::new(UNORD, ChannelKind::ReliableUnordered).with_priority(1).with_weight(3),
        ChannelConfig::new(ORD, ChannelKind::ReliableOrdered).with_priority(1),
        ChannelConfig::new(UNREL, ChannelKind::Unreliable).with_priority(2).with_oversize(Oversize::PromoteTo(UNORD)),
    ]);
    cfg
}

fn kind(ch: u8) -> ChannelKind {
    match ch {
        0 | UNREL => ChannelKind::Unreliable,
        SEQ => ChannelKind::UnreliableSequenced,
        1 | UNORD => ChannelKind::ReliableUnordered,
        _ => ChannelKind::ReliableOrdered,
    }
}

struct Input<'a> {
    d: &'a [u8],
}

impl<'a> Input<'a> {
    fn u8(&mut self) -> u8 {
        let Some((&b, rest)) = self.d.split_first() else { return 0 };
        self.d = rest;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.d.split_at(n.min(self.d.len()));
        self.d = b;
        a
    }
}

/// One side: its connection and what its application saw.
struct End {
    conn: Connection,
    /// Receipt → (channel, number, length).
    sent: BTreeMap<u64, (u8, u32, usize)>,
    /// Receipt → outcome (true: delivered).
    outcomes: BTreeMap<u64, bool>,
    /// (channel, number) of each message received, in order.
    got: Vec<(u8, u32)>,
    /// Numbers sent on each channel, in send order (ordered-channel checks).
    sent_on: [Vec<u32>; 8],
    /// Messages received so far on each channel.
    got_on: [usize; 8],
    /// Numbers received, for the duplicate check.
    seen: BTreeSet<u32>,
    /// The newest number received on the sequenced channel.
    last_seq: Option<u32>,
    closed: bool,
    app_bytes: usize,
}

struct Net {
    ends: [End; 2],
    /// Datagrams in flight to side i.
    wire: [Vec<Vec<u8>>; 2],
    /// Hostile sealers: packets that side i's peer would send, sealed with
    /// its keys (PNs from their own counter: real packets they collide with
    /// are dropped as replays, which is loss).
    forger: [Protection; 2],
    now: Instant,
    next_number: u32,
    /// Number → (sending side, channel) of every message accepted for sending.
    origin: BTreeMap<u32, (usize, u8)>,
    hostile: bool,
}

/// Runs one input.
pub fn mpgs2_channels(data: &[u8]) {
    let snap = snapshot();
    let start = Instant::from_secs(1);
    let client = Connection::new(Side::Client, snap.client.clone(), config(), start);
    let server = Connection::new(Side::Server, snap.server.clone(), config(), start);
    let end = |conn| End {
        conn,
        sent: BTreeMap::new(),
        outcomes: BTreeMap::new(),
        got: Vec::new(),
        sent_on: Default::default(),
        got_on: [0; 8],
        seen: BTreeSet::new(),
        last_seq: None,
        closed: false,
        app_bytes: 0,
    };
    // forger[0] writes to the client as the server does; forger[1] to the
    // server as the client does.
    let to_client = Protection::new(snap.server.schedule.clone().into_protection(), snap.client.client_cid, CID_LEN);
    let to_server = Protection::new(
        snap.client.schedule.clone().into_protection(),
        Some(snap.server.server_cid),
        snap.server.client_cid.map_or(0, |_| CID_LEN),
    );
    let mut net = Net {
        ends: [end(client), end(server)],
        wire: [Vec::new(), Vec::new()],
        forger: [to_client, to_server],
        now: start,
        next_number: 0,
        origin: BTreeMap::new(),
        hostile: false,
    };
    let mut inp = Input { d: data };
    for _ in 0..MAX_OPS {
        if inp.d.is_empty() {
            break;
        }
        net.op(&mut inp);
        net.events();
    }
    net.run_out();
}

impl Net {
    fn op(&mut self, inp: &mut Input<'_>) {
        let op = inp.u8();
        let side = usize::from(op >> 7);
        match op & 0x7F {
            0..=39 => {
                let ch = CHANNELS[usize::from(inp.u8()) % CHANNELS.len()];
                let len = [0usize, 4, 40, 1160, 1170, 3000, 9000, 20_000][usize::from(inp.u8() % 8)];
                let len = len.max(4).min(APP_BYTES.saturating_sub(self.ends[side].app_bytes));
                if len < 4 {
                    return;
                }
                let n = self.next_number;
                self.next_number += 1;
                let mut msg = vec![ch; len];
                msg[..4].copy_from_slice(&n.to_be_bytes());
                let now = self.now;
                let e = &mut self.ends[side];
                if let Ok(r) = e.conn.try_send(now, ch, msg) {
                    e.app_bytes += len;
                    assert!(e.sent.insert(r, (ch, n, len)).is_none(), "receipt {r} issued twice");
                    e.sent_on[usize::from(ch)].push(n);
                    self.origin.insert(n, (side, ch));
                }
            }
            40..=59 => self.transmit(side),
            60..=79 => {
                // Deliver datagram k to `side` (any order: reordering).
                let w = &mut self.wire[side];
                if !w.is_empty() {
                    let k = usize::from(inp.u8()) % w.len();
                    let mut d = w.remove(k);
                    self.ends[side].conn.handle_datagram(self.now, &mut d);
                }
            }
            80..=87 => {
                let w = &mut self.wire[side];
                if !w.is_empty() {
                    let k = usize::from(inp.u8()) % w.len();
                    w.remove(k);
                }
            }
            88..=95 => {
                let w = &mut self.wire[side];
                if !w.is_empty() && w.len() < MAX_WIRE {
                    let k = usize::from(inp.u8()) % w.len();
                    let d = w[k].clone();
                    w.push(d);
                }
            }
            96..=103 => {
                // Corrupt one byte and deliver. The fuzzing build's identity
                // cipher does not detect it, so this counts as hostile input.
                self.hostile = true;
                let w = &mut self.wire[side];
                if !w.is_empty() {
                    let k = usize::from(inp.u8()) % w.len();
                    let mut d = w.remove(k);
                    let j = usize::from(inp.u16()) % d.len().max(1);
                    if let Some(b) = d.get_mut(j) {
                        *b ^= 1 << (inp.u8() % 8);
                    }
                    self.ends[side].conn.handle_datagram(self.now, &mut d);
                }
            }
            104..=119 => {
                let b = u64::from(inp.u8());
                self.now += Duration::from_millis(b * b / 16 + 1);
                self.timers();
            }
            _ => self.forge(side, inp),
        }
    }

    /// Every datagram `side` has now goes on the wire to its peer.
    fn transmit(&mut self, side: usize) {
        let mut buf = [0u8; 2048];
        for _ in 0..64 {
            let Some(n) = self.ends[side].conn.poll_transmit(self.now, &mut buf) else { break };
            if self.wire[1 - side].len() < MAX_WIRE {
                self.wire[1 - side].push(buf[..n].to_vec());
            }
        }
    }

    fn timers(&mut self) {
        for e in &mut self.ends {
            // Spurious and early calls do nothing; due timers run.
            e.conn.handle_timeout(self.now);
        }
    }

    /// A hostile packet to `side`: fuzzed MESSAGE and FRAGMENT frames.
    fn forge(&mut self, side: usize, inp: &mut Input<'_>) {
        self.hostile = true;
        let mut payload = vec![0u8; 1100];
        let mut w = Writer::new(&mut payload);
        for _ in 0..1 + inp.u8() % 4 {
            let k = ChannelKind::from_code(inp.u8() % 4).unwrap_or(ChannelKind::Unreliable);
            let channel = inp.u8() % 66;
            let id = inp.u16();
            let n = usize::from(inp.u8()) * 4;
            let data = inp.bytes(n);
            let f = if inp.u8() & 1 == 0 {
                Frame::Message { kind: k, channel, id: (k != ChannelKind::Unreliable).then_some(id), data }
            } else {
                let total_len = u64::from(inp.u16()) + data.len() as u64;
                let offset = u64::from(inp.u16()) % (total_len - data.len() as u64 + 1);
                Frame::Fragment { kind: k, channel, id, total_len, offset, data }
            };
            if f.emit(&mut w).is_err() {
                break;
            }
        }
        let len = w.len().max(1);
        let mut buf = [0u8; MIN_UDP_PAYLOAD];
        let Ok(begun) = self.forger[side].begin(None, &mut buf) else { return };
        let len = len.min(begun.max_payload);
        buf[begun.header_len..begun.header_len + len].copy_from_slice(&payload[..len]);
        if let Ok(n) = self.forger[side].finish(begun, &mut buf, len) {
            self.ends[side].conn.handle_datagram(self.now, &mut buf[..n]);
        }
    }

    /// Takes both sides' events and checks what holds at every step.
    fn events(&mut self) {
        for i in 0..2 {
            while let Some(ev) = self.ends[i].conn.poll_event() {
                if trace() {
                    eprintln!("side {i} at {:?}: {ev:?}", self.now);
                }
                if let (false, ConnEvent::Message { channel, data }) = (self.hostile, &ev) {
                    self.check_message(i, *channel, data);
                }
                let e = &mut self.ends[i];
                match ev {
                    ConnEvent::Closed(_) => {
                        assert!(!e.closed, "a second Closed");
                        e.closed = true;
                    }
                    ConnEvent::Message { channel, data } => {
                        assert!(!e.closed, "a message after Closed");
                        let n = data.get(..4).map_or(u32::MAX, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                        e.got.push((channel, n));
                    }
                    ConnEvent::Delivered(r) | ConnEvent::Lost(r, _) => {
                        let delivered = matches!(ev, ConnEvent::Delivered(_));
                        assert!(e.sent.contains_key(&r), "an outcome for unknown receipt {r}");
                        assert!(e.outcomes.insert(r, delivered).is_none(), "a second outcome for receipt {r}");
                        if let ConnEvent::Lost(_, reason) = ev {
                            let ch = e.sent[&r].0;
                            let ok = match reason {
                                LossReason::Superseded => ch == SEQ,
                                LossReason::PacketLost => !kind(ch).is_reliable(),
                                LossReason::Expired => ch != ORD && ch != 2,
                                _ => true,
                            };
                            assert!(ok, "Lost({reason:?}) on channel {ch}");
                        }
                    }
                }
            }
        }
    }

    /// One message side `rx` received, checked against what its peer sent
    /// and what `rx` received before (without hostile input, at the moment
    /// it is delivered): sent by the peer on that channel (or promoted to
    /// it), never twice, ordered channels in send order, sequenced ones in
    /// rising numbers.
    fn check_message(&mut self, rx: usize, ch: u8, data: &[u8]) {
        let n = data.get(..4).map_or(u32::MAX, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        let &(from_side, from) = self.origin.get(&n).unwrap_or_else(|| panic!("message {n} on {ch} was never sent"));
        assert_eq!(from_side, 1 - rx, "message {n} on {ch} came back to its sender");
        let promoted = (from == 0 && ch == 1) || (from == UNREL && ch == UNORD);
        assert!(from == ch || promoted, "message {n} sent on {from} arrived on {ch}");
        let [a, b] = &mut self.ends;
        let (e, peer) = if rx == 0 { (a, &*b) } else { (b, &*a) };
        let sent_on = &peer.sent_on;
        assert!(e.seen.insert(n), "message {n} delivered twice");
        let k = usize::from(ch);
        if ch == 2 || ch == ORD {
            let want = sent_on[k].get(e.got_on[k]).copied();
            assert_eq!(want, Some(n), "channel {ch}: message {} received is {n}", e.got_on[k]);
        } else if ch == SEQ {
            assert!(e.last_seq.is_none_or(|m| m < n), "channel {ch} out of order: {n} after {:?}", e.last_seq);
            e.last_seq = Some(n);
        }
        e.got_on[k] += 1;
    }

    /// After a clean run-out: everything reliable arrived (ordered channels
    /// the whole send sequence) and every receipt has exactly one outcome.
    fn check_complete(&self) {
        for i in 0..2 {
            let (rx, tx) = (&self.ends[i], &self.ends[1 - i]);
            for ch in [2, ORD] {
                let k = usize::from(ch);
                assert_eq!(rx.got_on[k], tx.sent_on[k].len(), "channel {ch} after a clean run-out");
            }
            let got: BTreeSet<u32> = rx.got.iter().map(|m| m.1).collect();
            let newest_seq = rx.got.iter().filter(|m| m.0 == SEQ).map(|m| m.1).max();
            for (r, &(ch, n, len)) in &tx.sent {
                let outcome = tx.outcomes.get(r).copied();
                assert!(outcome.is_some(), "receipt {r} (message {n} on {ch}) has no outcome");
                if outcome == Some(true) {
                    // Unreliable outcomes follow the carrying packets
                    // (§4.6): a fragment group whose fragments arrive
                    // further apart than the receiver's partial timeout
                    // is acknowledged but never complete.
                    let group = !kind(ch).is_reliable() && len > 1165;
                    let ok = got.contains(&n) || (ch == SEQ && newest_seq.is_some_and(|m| m > n)) || group;
                    assert!(ok, "message {n} on {ch} Delivered but never received");
                }
                if ch == ORD || ch == 2 || ch == UNORD {
                    assert!(got.contains(&n), "reliable message {n} on {ch} never arrived");
                }
            }
        }
    }

    /// Without hostile packets and closes: a clean network until nothing is
    /// left, then everything must have arrived and been decided.
    fn run_out(mut self) {
        if self.hostile || self.ends.iter().any(|e| e.closed) {
            return;
        }
        let deadline = self.now + Duration::from_secs(120);
        for _ in 0..100_000 {
            self.transmit(0);
            self.transmit(1);
            for side in 0..2 {
                for mut d in std::mem::take(&mut self.wire[side]) {
                    self.ends[side].conn.handle_datagram(self.now, &mut d);
                }
            }
            self.events();
            let decided = self.ends.iter().all(|e| e.outcomes.len() == e.sent.len());
            if decided && self.wire.iter().all(Vec::is_empty) {
                break;
            }
            let next = self.ends.iter().filter_map(|e| e.conn.poll_timeout()).min();
            let soon = self.now + Duration::from_millis(5);
            self.now = next.map_or(soon, |t| t.min(soon)).max(self.now + Duration::from_micros(100));
            assert!(self.now < deadline, "not run out within 120 s");
            self.timers();
        }
        if self.ends.iter().any(|e| e.closed) {
            return; // an idle timeout during a long input
        }
        self.check_complete();
    }
}
