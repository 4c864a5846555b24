//! An MPGS/2 connection (`mpgs2::conn::Connection`) after a fixed real
//! handshake, on either side, fed a sequence of operations decoded from the
//! fuzz input: packets sealed by the peer's own packet protection (with the
//! `_fuzzing` identity cipher) carrying raw bytes or well-formed frames of
//! every §3.4 type, packets with a hand-made header (any key phase, packet
//! number encoding, reserved bits, tag), unsealed junk, replays, stateless
//! resets, time jumps, and the application's `send`, `close` and reset-token
//! calls.
//!
//! The harness plays the peer: it opens everything the connection sends
//! (which must open, and hold only well-formed frames allowed from that
//! side) and can acknowledge it. Checked throughout: no panic, at most one
//! `Closed`, no message after it, at most one `Delivered`/`Lost` per
//! receipt, bounded memory (counted by the fuzz crate's allocator), and no
//! busy timer. At the end the connection is closed and run out: it must end,
//! and every receipt must have had exactly one outcome.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::OnceLock;

use mpgameserver::_internal::mpgs2::buf::Writer;
use mpgameserver::_internal::mpgs2::conn::{ConnConfig, ConnEvent, Connection};
use mpgameserver::_internal::mpgs2::cookie::CookieKeys;
use mpgameserver::_internal::mpgs2::frame::{AckFrame, ChannelKind, Frame, Frames};
use mpgameserver::_internal::mpgs2::handshake::{
    ClientHandshake, ClientOffer, Established, ServerAnswer, ServerPolicy, server_answer,
};
use mpgameserver::_internal::mpgs2::keys::FUZZING_TAG;
use mpgameserver::_internal::mpgs2::packet::MIN_SHORT_PACKET;
use mpgameserver::_internal::mpgs2::protect::Protection;
use mpgameserver::_internal::mpgs2::reset::{TOKEN_LEN, emit_reset};
use mpgameserver::_internal::mpgs2::tlv::TransportParams;
use mpgameserver::_internal::mpgs2::{CID_LEN, MIN_UDP_PAYLOAD, Side, TAG_LEN};
use mpgameserver::{Duration, Instant, Rng, Seed, ServerKey};

use crate::heap;

const SERVER_CID: [u8; CID_LEN] = [0x5C; CID_LEN];
/// Largest message either side accepts; small, so the fuzzer reaches it.
const MAX_MESSAGE: u32 = 64 * 1024;
const RECV_WINDOW: u32 = 128 * 1024;
const CONN_WINDOW: u32 = 256 * 1024;
/// What the application may queue in one input.
const APP_BYTES: usize = 512 * 1024;
/// Heap the connection may hold beyond what the application queued: its
/// receive windows (reliable 256 KiB, unreliable reassembly 256 KiB), the
/// recovery record, the ack state, the bookkeeping of up to 8,192 message
/// ids per channel, and the harness's own few kilobytes.
const HEAP_SLACK: isize = 8 << 20;
/// Operations per input.
const MAX_OPS: usize = 256;
/// Transmits drained after one operation before the harness calls it a loop.
const MAX_TRANSMITS: usize = 4096;
const FILL: [u8; MIN_UDP_PAYLOAD] = [0x5A; MIN_UDP_PAYLOAD];

pub(crate) fn conn_config() -> ConnConfig {
    ConnConfig {
        max_ack_delay: Duration::from_millis(10),
        max_message_size: u64::from(MAX_MESSAGE),
        recv_window: u64::from(RECV_WINDOW),
        conn_recv_window: u64::from(CONN_WINDOW),
        idle_timeout_ms: 5_000,
        ..ConnConfig::default()
    }
}

fn params() -> TransportParams {
    TransportParams {
        idle_timeout_ms: Some(5_000),
        max_message_size: Some(MAX_MESSAGE),
        recv_window: Some(RECV_WINDOW),
        conn_recv_window: Some(CONN_WINDOW),
        max_unrel_fragments: Some(8),
        ..TransportParams::DEFAULTS
    }
}

/// Both ends of one real handshake (fixed seeds), cloned per input.
pub(crate) struct Snapshot {
    pub(crate) client: Established,
    pub(crate) server: Established,
}

pub(crate) fn snapshot() -> &'static Snapshot {
    static SNAP: OnceLock<Snapshot> = OnceLock::new();
    SNAP.get_or_init(|| {
        let mut rng = Rng::new(Seed::from_u64(0x1111));
        let root = ServerKey::generate(&mut rng);
        let cookies = CookieKeys::new(Instant::ZERO, &mut rng);
        let offer = ClientOffer { protocol_id: 9, versions: &[2], suites: &[1], recv_cid: None, params: params() };
        let client = ClientHandshake::new(&offer, &mut rng).expect("the offer fits a HELLO2");
        let policy =
            ServerPolicy { protocol_id: 9, versions: &[2], suites: &[1], params: params(), require_cookie: false };
        let from: SocketAddr = "192.0.2.1:9".parse().expect("address");
        let answer = server_answer(Instant::ZERO, &policy, &root, &cookies, from, client.hello(), SERVER_CID, &mut rng);
        let Ok(ServerAnswer::Accept { server_hello, established, .. }) = answer else {
            panic!("the fixed handshake is accepted: {answer:?}")
        };
        let c = client.on_server_hello(&server_hello, &[root.public_key()]).expect("the fixed hello verifies");
        Snapshot { client: c, server: established }
    })
}

/// Whether to print each operation and event (`MPGS2_TRACE=1`, when
/// replaying an input with the smoke test's `FUZZ_REPLAY`).
pub(crate) fn trace() -> bool {
    static TRACE: OnceLock<bool> = OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("MPGS2_TRACE").is_some())
}

/// The fuzz input as a stream; reads past the end give zeros.
struct Input<'a> {
    d: &'a [u8],
}

impl<'a> Input<'a> {
    fn is_empty(&self) -> bool {
        self.d.is_empty()
    }
    fn u8(&mut self) -> u8 {
        let Some((&b, rest)) = self.d.split_first() else { return 0 };
        self.d = rest;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn arr<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0u8; N];
        a.iter_mut().for_each(|b| *b = self.u8());
        a
    }
    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.d.split_at(n.min(self.d.len()));
        self.d = b;
        a
    }
}

/// The harness: the connection under test and what the peer knows.
struct Harness {
    side: Side,
    conn: Connection,
    /// The peer's packet protection (the other end of the same keys).
    peer: Protection,
    /// Connection id length the connection expects on packets to it, and
    /// the id itself.
    dcid: Option<[u8; CID_LEN]>,
    now: Instant,
    /// PNs of the connection's packets that the peer opened (newest 4,096).
    received: BTreeSet<u64>,
    /// Largest of the peer's PNs the connection has acknowledged.
    peer_acked: Option<u64>,
    /// Outcomes seen per receipt.
    receipts: BTreeMap<u64, u8>,
    closes: u32,
    app_bytes: usize,
    last_sealed: Vec<u8>,
    /// The last RESET_TOKEN the peer sent (the connection is a client).
    token: Option<[u8; TOKEN_LEN]>,
    /// Next message id per channel, for well-formed sequences.
    next_id: [u16; 64],
    heap0: isize,
    rng: Rng,
    /// Whether a hand-made packet (a PN of the input's choosing) was fed.
    forged_pn: bool,
}

/// Runs one input.
pub fn mpgs2_conn(data: &[u8]) {
    let Some((&sel, ops)) = data.split_first() else {
        return;
    };
    let snap = snapshot();
    let side = if sel & 1 == 0 { Side::Server } else { Side::Client };
    let (mine, theirs) = match side {
        Side::Server => (&snap.server, &snap.client),
        Side::Client => (&snap.client, &snap.server),
    };
    // The peer's view of connection ids: a client writes the server's id; a
    // server writes the client's (zero-length here).
    let (peer_dcid, peer_cid_len, dcid) = match side {
        Side::Server => (Some(mine.server_cid), mine.client_cid.map_or(0, |_| CID_LEN), Some(mine.server_cid)),
        Side::Client => (mine.client_cid, CID_LEN, mine.client_cid),
    };
    let heap0 = heap::live();
    let start = Instant::from_secs(1);
    let mut h = Harness {
        side,
        conn: Connection::new(side, mine.clone(), conn_config(), start),
        peer: Protection::new(theirs.schedule.clone().into_protection(), peer_dcid, peer_cid_len),
        dcid,
        now: start,
        received: BTreeSet::new(),
        peer_acked: None,
        receipts: BTreeMap::new(),
        closes: 0,
        app_bytes: 0,
        last_sealed: Vec::new(),
        token: None,
        next_id: [0; 64],
        heap0,
        rng: Rng::new(Seed::from_u64(u64::from(sel))),
        forged_pn: false,
    };
    let mut inp = Input { d: ops };
    for _ in 0..MAX_OPS {
        if inp.is_empty() {
            break;
        }
        h.op(&mut inp);
        h.pump();
    }
    h.finish();
}

impl Harness {
    fn op(&mut self, inp: &mut Input<'_>) {
        let op = inp.u8() % 14;
        if trace() {
            eprintln!("{:?} op {op} at {:?}: {:?}", self.side, self.now, self.conn);
        }
        match op {
            0 => {
                // Raw bytes as the frames of a sealed packet.
                let n = usize::from(inp.u16()) % 1150;
                let payload = inp.bytes(n).to_vec();
                self.sealed(&payload);
            }
            1 => {
                // Well-formed frames.
                let mut payload = vec![0u8; 1150];
                let mut w = Writer::new(&mut payload);
                for _ in 0..inp.u8() % 8 + 1 {
                    if !self.frame(inp, &mut w) {
                        break;
                    }
                }
                let n = w.len();
                payload.truncate(n);
                self.sealed(&payload);
            }
            2 => self.hand_made(inp),
            3 => {
                // Unsealed junk.
                let n = usize::from(inp.u16()) % 1500;
                let mut d = inp.bytes(n).to_vec();
                self.conn.handle_datagram(self.now, &mut d);
            }
            4 => {
                // A replay of the last sealed packet: dropped.
                let mut d = self.last_sealed.clone();
                self.conn.handle_datagram(self.now, &mut d);
            }
            5 => {
                let b = u64::from(inp.u8());
                self.now += Duration::from_millis(b * b);
                self.timers();
            }
            6 => {
                if let Some(t) = self.conn.poll_timeout() {
                    self.now = self.now.max(t);
                }
                self.timers();
            }
            7 | 8 => {
                // The application sends (channel 3 is not a Delivery channel).
                let ch = inp.u8() % 4;
                let len = (usize::from(inp.u16()) % (MAX_MESSAGE as usize + 2)).min(APP_BYTES - self.app_bytes);
                self.app_bytes += len;
                if let Some(r) = self.conn.send(self.now, ch, vec![ch; len]) {
                    assert!(self.receipts.insert(r, 0).is_none(), "receipt {r} issued twice");
                    assert!(ch < 3, "a message on channel {ch} was accepted");
                }
            }
            9 => self.conn.close(self.now, inp.u16()),
            10 => {
                let t = inp.arr();
                match self.side {
                    Side::Client => self.conn.set_reset_token(t),
                    Side::Server => self.conn.send_reset_token(t),
                }
                self.token = Some(t);
            }
            11 => {
                // A stateless reset with the last token (or any), of any length.
                let t = self.token.unwrap_or_else(|| inp.arr());
                let mut out = [0u8; 64];
                let trigger = usize::from(inp.u8() % 64);
                if let Some(n) = emit_reset(trigger, &t, &mut self.rng, &mut out) {
                    self.conn.handle_datagram(self.now, &mut out[..n]);
                }
            }
            12 => {
                // Acknowledge everything received so far.
                let mut payload = vec![0u8; 1150];
                let mut w = Writer::new(&mut payload);
                self.ack_received(u32::MAX, 0, &mut w);
                let n = w.len();
                payload.truncate(n);
                self.sealed(&payload);
            }
            _ => self.fragment_train(inp),
        }
    }

    /// Seals `payload` (a PING if empty) with the peer's protection and
    /// feeds it.
    fn sealed(&mut self, payload: &[u8]) {
        let payload = if payload.is_empty() { &[0x01][..] } else { payload };
        let mut buf = [0u8; MIN_UDP_PAYLOAD];
        let begun = match self.peer.begin(self.peer_acked, &mut buf) {
            Ok(b) => b,
            Err(_) => match self.peer.begin(None, &mut buf) {
                Ok(b) => b,
                Err(_) => return,
            },
        };
        let n = payload.len().min(begun.max_payload);
        buf[begun.header_len..begun.header_len + n].copy_from_slice(&payload[..n]);
        let Ok(len) = self.peer.finish(begun, &mut buf, n) else { return };
        self.last_sealed = buf[..len].to_vec();
        self.conn.handle_datagram(self.now, &mut buf[..len]);
    }

    /// Runs the timers due now, as a driver does: while `poll_timeout` is
    /// not in the future, `handle_timeout` and drain. One timer may expose
    /// another already due (loss detection, then the PTO, as RFC 9002 A.9
    /// re-arms), but the loop must settle: a timer that stays due after
    /// handling would make a driver spin.
    fn timers(&mut self) {
        for _ in 0..8 {
            self.conn.handle_timeout(self.now);
            self.pump();
            if self.conn.poll_timeout().is_none_or(|t| t > self.now) {
                return;
            }
        }
        panic!("timer still due at {:?} after 8 rounds of handle_timeout({:?})", self.conn.poll_timeout(), self.now);
    }

    /// A packet with a header from the input: key phase, PN length and
    /// bytes, reserved bits, and either the identity tag or another.
    fn hand_made(&mut self, inp: &mut Input<'_>) {
        let flags = inp.u8();
        let pn_len = (flags & 3) + 1;
        let mut d = vec![0x80 | (flags & 0x3F)];
        if let Some(c) = self.dcid {
            d.extend_from_slice(&c);
        }
        d.extend_from_slice(inp.bytes(usize::from(pn_len)));
        let n = usize::from(inp.u8());
        d.extend_from_slice(inp.bytes(n));
        if flags & 0x40 == 0 {
            self.forged_pn = true;
            d.extend_from_slice(&FUZZING_TAG);
        } else {
            d.extend_from_slice(&inp.arr::<TAG_LEN>());
        }
        self.conn.handle_datagram(self.now, &mut d);
    }

    /// Writes one well-formed frame chosen by the input; `false` when it
    /// does not fit.
    fn frame(&mut self, inp: &mut Input<'_>, w: &mut Writer<'_>) -> bool {
        let close_reason = [b'x'; 64];
        let f = match inp.u8() % 13 {
            0 => Frame::Ping,
            1 => Frame::Padding { len: usize::from(inp.u8() % 32) + 1 },
            2 => return self.ack_received(inp.u32(), inp.u8(), w),
            3 => {
                // An ACK of arbitrary PNs (mostly unsent: a violation).
                let largest = u64::from(inp.u16());
                let first = u64::from(inp.u8()).min(largest);
                Frame::Ack(AckFrame { largest, ack_delay: 1, first_range: first, range_count: 0, ranges_raw: &[] })
            }
            4 => Frame::Close { code: inp.u16(), reason: &close_reason[..usize::from(inp.u8() % 65)] },
            5 => Frame::KeyUpdate,
            6 => Frame::PathChallenge(inp.arr()),
            7 => Frame::PathResponse(inp.arr()),
            8 => Frame::Auth(inp.arr()),
            9 => {
                let t = inp.arr();
                if self.side == Side::Client {
                    self.token = Some(t);
                }
                Frame::ResetToken(t)
            }
            10 | 11 => {
                let (kind, channel, id) = self.message_head(inp);
                let len = usize::from(inp.u16()) % 1200;
                let data = &FILL[..len.min(w.remaining().saturating_sub(8))];
                let id = (kind != ChannelKind::Unreliable).then_some(id);
                Frame::Message { kind, channel, id, data }
            }
            _ => {
                let (kind, channel, id) = self.message_head(inp);
                let total_len = u64::from(inp.u32() % (MAX_MESSAGE + 4096)).max(1);
                let offset = u64::from(inp.u32()) % total_len;
                let len = (u64::from(inp.u16()) % 1200).clamp(1, total_len - offset);
                let room = w.remaining().saturating_sub(24) as u64;
                let len = len.min(room).max(1) as usize;
                Frame::Fragment { kind, channel, id, total_len, offset, data: &FILL[..len] }
            }
        };
        f.emit(w).is_ok()
    }

    /// Kind, channel and id of a MESSAGE or FRAGMENT: mostly the next id of
    /// a low channel, sometimes anything.
    fn message_head(&mut self, inp: &mut Input<'_>) -> (ChannelKind, u8, u16) {
        let b = inp.u8();
        let kind = ChannelKind::from_code(b & 3).expect("two bits");
        let channel = if b & 0x80 == 0 { (b >> 2) & 3 } else { (b >> 2) & 63 };
        let id = if b & 0x40 == 0 {
            let c = usize::from(channel);
            self.next_id[c] = self.next_id[c].wrapping_add(1);
            self.next_id[c].wrapping_sub(1)
        } else {
            inp.u16()
        };
        (kind, channel, id)
    }

    /// An ACK of the connection's packets that the peer received, with the
    /// runs whose bit in `mask` is clear left out (the first is always in).
    fn ack_received(&mut self, mask: u32, delay: u8, w: &mut Writer<'_>) -> bool {
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for &pn in self.received.iter().rev() {
            if let Some((lo, _)) = runs.last_mut()
                && *lo == pn + 1
            {
                *lo = pn;
            } else if runs.len() == 32 {
                break;
            } else {
                runs.push((pn, pn));
            }
        }
        let runs: Vec<_> = runs.into_iter().enumerate().filter(|(i, _)| *i == 0 || mask & (1 << i) != 0).collect();
        let Some(&(_, (lo0, hi0))) = runs.first() else { return true };
        let mut raw = [0u8; 31 * 16];
        let mut rw = Writer::new(&mut raw);
        let mut prev = lo0;
        for &(_, (lo, hi)) in &runs[1..] {
            // Runs are disjoint and descending, separated by at least one PN.
            let ok = rw.put_varint(prev - hi - 2).and_then(|()| rw.put_varint(hi - lo));
            assert!(ok.is_ok(), "31 ranges of two varints fit");
            prev = lo;
        }
        let n = rw.len();
        let a = AckFrame {
            largest: hi0,
            ack_delay: u64::from(delay),
            first_range: hi0 - lo0,
            range_count: (runs.len() - 1) as u8,
            ranges_raw: &raw[..n],
        };
        Frame::Ack(a).emit(w).is_ok()
    }

    /// A whole message as FRAGMENT frames in successive packets, in order
    /// or backwards.
    fn fragment_train(&mut self, inp: &mut Input<'_>) {
        let (kind, channel, id) = self.message_head(inp);
        let total = usize::from(inp.u16()) % (MAX_MESSAGE as usize + 1) + 1;
        let backwards = inp.u8() & 1 == 1;
        let mut offsets: Vec<usize> = (0..total).step_by(1100).collect();
        if backwards {
            offsets.reverse();
        }
        for off in offsets {
            let f = Frame::Fragment {
                kind,
                channel,
                id,
                total_len: total as u64,
                offset: off as u64,
                data: &FILL[..(total - off).min(1100)],
            };
            let mut payload = vec![0u8; 1150];
            let mut w = Writer::new(&mut payload);
            f.emit(&mut w).expect("a 1100-byte fragment fits 1150 bytes");
            let n = w.len();
            payload.truncate(n);
            self.sealed(&payload);
            self.pump();
        }
    }

    /// Drains transmits (which the peer opens and checks) and events, and
    /// checks the invariants.
    fn pump(&mut self) {
        let mut buf = [0u8; 1500];
        let mut sent = 0;
        while let Some(n) = self.conn.poll_transmit(self.now, &mut buf) {
            sent += 1;
            assert!(sent <= MAX_TRANSMITS, "poll_transmit does not run dry");
            assert!((MIN_SHORT_PACKET..=MIN_UDP_PAYLOAD).contains(&n), "datagram of {n} bytes");
            let d = &mut buf[..n];
            let o = match self.peer.open(self.now, Duration::from_millis(300), d) {
                Ok(o) => o,
                Err(e) => panic!("the peer cannot open what the connection sent: {e:?}"),
            };
            self.received.insert(o.pn);
            if self.received.len() > 4096 {
                self.received.pop_first();
            }
            for f in Frames::new(&d[o.payload.clone()]) {
                let f = f.expect("the connection sends well-formed frames");
                assert!(f.allowed_from(self.side), "{:?} sent {f:?}", self.side);
                if let Frame::Ack(a) = f {
                    self.peer_acked = self.peer_acked.max(Some(a.largest));
                    assert!(
                        self.forged_pn || a.largest < self.peer.next_pn(),
                        "the connection acked a PN the peer never sent"
                    );
                }
            }
        }
        while let Some(e) = self.conn.poll_event() {
            if trace() {
                match &e {
                    ConnEvent::Message { channel, data } => eprintln!("  message on {channel}: {} B", data.len()),
                    e => eprintln!("  event {e:?}"),
                }
            }
            match e {
                ConnEvent::Closed(r) => {
                    self.closes += 1;
                    assert_eq!(self.closes, 1, "a second close: {r:?}");
                }
                ConnEvent::Message { channel, data } => {
                    assert_eq!(self.closes, 0, "a message after the close");
                    assert!(channel < 64);
                    assert!(data.len() <= MAX_MESSAGE as usize, "a message over max_message_size");
                }
                ConnEvent::Delivered(r) | ConnEvent::Lost(r, _) => {
                    let n = self.receipts.get_mut(&r).unwrap_or_else(|| panic!("outcome of unknown receipt {r}"));
                    *n += 1;
                    assert_eq!(*n, 1, "a second outcome for receipt {r}");
                }
            }
        }
        let held = heap::live() - self.heap0;
        let bound = HEAP_SLACK + 2 * self.app_bytes as isize;
        assert!(held <= bound, "the connection holds {held} bytes (bound {bound})");
    }

    /// Closes and runs the connection out: it ends, and every receipt has
    /// had exactly one outcome.
    fn finish(mut self) {
        self.conn.close(self.now, 0);
        self.pump();
        for _ in 0..64 {
            if self.conn.is_closed() {
                break;
            }
            let Some(t) = self.conn.poll_timeout() else { break };
            self.now = self.now.max(t);
            self.timers();
        }
        assert!(self.conn.is_closed(), "the connection did not end after close");
        assert_eq!(self.conn.poll_timeout(), None);
        assert_eq!(self.closes, 1);
        for (r, n) in &self.receipts {
            assert_eq!(*n, 1, "receipt {r} had {n} outcomes");
        }
    }
}
