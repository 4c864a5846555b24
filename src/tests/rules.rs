//! The behaviour rules of PROTOCOL.md §15, one test per rule (rules 1–6,
//! 10 and 13–17 here). Each test observes the rule on the wire or at the
//! peer, so it fails if the rule is broken.
//!
//! Forged datagrams (rules 6, 10, 13, 17) are built with the session key and
//! take over the client's next packet sequence numbers ([`Forger`]); the
//! client is idle (keep-alives only) while they are injected, so the server
//! acknowledging a forged seq cannot confirm anything the client sent. Rule
//! 14, whose client is busy, instead rewrites one of the client's own
//! datagrams, keeping its header values.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

use super::harness::*;
use crate::mpgs1::protect::PacketKey;
use crate::mpgs1::seq;
use crate::mpgs1::wire::{Direction, HEADER_LEN, Header, MsgType};
use crate::{
    ConnectionId, Delivery, DropReason, Duration, EndpointConfig, Event, Instant, MAX_DATAGRAM, MessageId, SendError,
};

// ----- helpers -------------------------------------------------------------

/// A decoded datagram: when it was emitted, its header and its messages.
type Decoded = (Instant, Header, Vec<(u16, MsgType, Vec<u8>)>);

/// The default configuration without pacing.
fn unpaced() -> EndpointConfig {
    EndpointConfig { send_interval: Duration::ZERO, ..EndpointConfig::default() }
}

/// Whether `d` is AEAD-protected (everything but the two hellos, §3).
fn is_aead(d: &Datagram) -> bool {
    !matches!(d.header().ty, MsgType::ClientHello | MsgType::ServerHello)
}

/// The AEAD datagrams endpoint `ep` emitted, from `wire_log[start..]`, decoded.
fn decoded_from(net: &Net, key: &PacketKey, ep: usize, start: usize) -> Vec<Decoded> {
    net.wire_log[start..]
        .iter()
        .filter(|d| d.from == addr(ep) && is_aead(d))
        .map(|d| {
            let (h, m) = decode(key, d);
            (d.sent, h, m)
        })
        .collect()
}

/// APP_FRAGMENT data: the 6-byte header (§8) and a chunk.
fn frag(frag_id: u16, index: u16, count: u16, chunk: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(6 + chunk.len());
    for x in [frag_id, index, count] {
        v.extend_from_slice(&x.to_be_bytes());
    }
    v.extend_from_slice(chunk);
    v
}

/// `(frag_id, index, count)` of APP_FRAGMENT data.
fn frag_header(data: &[u8]) -> (u16, u16, u16) {
    let f = |i: usize| u16::from_be_bytes([data[i], data[i + 1]]);
    (f(0), f(2), f(4))
}

/// Whether a header's `ack`/`ack_bits` acknowledge packet `seq` (§7.3).
fn acks(h: &Header, seq: u16) -> bool {
    let d = seq::diff(h.ack, seq);
    d == 0 || (1..=32).contains(&d) && h.ack_bits & (0x8000_0000u32 >> (d - 1)) != 0
}

/// Our sender's split (§8 "Our sender"), written from the spec: the chunk
/// lengths, or one entry for a message sent unfragmented.
fn spec_split(len: usize, max_payload: usize) -> Vec<usize> {
    let (max_single, tail_max) = (max_payload - 2, max_payload - 8);
    if len <= max_single {
        return vec![len];
    }
    let chunk = tail_max.min(1024);
    let (mut out, mut rest) = (Vec::new(), len);
    while rest > tail_max {
        out.push(chunk);
        rest -= chunk;
    }
    out.push(rest);
    out
}

/// `len` bytes that start with `tag` (big-endian) and are otherwise patterned.
fn tagged(tag: u32, len: usize) -> Vec<u8> {
    let mut v = payload(len, tag as u8);
    let t = tag.to_be_bytes();
    let n = len.min(4);
    v[..n].copy_from_slice(&t[..n]);
    v
}

fn server_messages_with(net: &Net, data: &[u8]) -> usize {
    net.messages(SERVER).iter().filter(|m| *m == data).count()
}

/// Forges client → server datagrams under the session key.
///
/// Each forged datagram takes the client's next packet sequence number; the
/// filter it installs drops the client's own datagram that later carries a
/// taken number, so the server never sees one number twice (which would
/// count as a replay).
struct Forger {
    key: PacketKey,
    origin: u64,
    taken: Rc<RefCell<Vec<u16>>>,
}

impl Forger {
    fn new(net: &mut Net, c: ConnectionId) -> Forger {
        let taken = Rc::new(RefCell::new(Vec::<u16>::new()));
        let t = Rc::clone(&taken);
        net.set_filter(move |d| {
            if d.from == addr(1) && t.borrow().contains(&d.header().seq) { Verdict::Drop } else { Verdict::Deliver }
        });
        Forger { key: net.key_of(1, c), origin: net.eps[1].config().unix_time_origin, taken }
    }

    /// The `ctime` the client would write now.
    fn ctime(&self, net: &Net) -> u32 {
        (self.origin + net.now.as_secs()) as u32
    }

    fn take_seq(&self, net: &Net) -> u16 {
        let genuine = net.wire_log.iter().rev().find(|d| d.from == addr(1)).map_or(0, |d| d.header().seq);
        let forged = self.taken.borrow().last().copied().unwrap_or(0);
        let newest = if seq::diff(forged, genuine) > 0 { forged } else { genuine };
        let s = seq::next(newest);
        self.taken.borrow_mut().push(s);
        s
    }

    /// A datagram with a fresh packet seq, `ack = 0` (so it confirms none of
    /// the server's packets) and the given `ctime`. Returns it and its seq.
    fn forge_at(&self, net: &Net, ctime: u32, msgs: &[(u16, MsgType, &[u8])]) -> (u16, Datagram) {
        let s = self.take_seq(net);
        let bytes = craft(Some(&self.key), Direction::ToServer, ctime, s, 0, 0, msgs);
        let d = Datagram { from: addr(1), to: addr(SERVER), bytes, sent: net.now };
        (s, d)
    }

    fn forge(&self, net: &Net, msgs: &[(u16, MsgType, &[u8])]) -> (u16, Datagram) {
        self.forge_at(net, self.ctime(net), msgs)
    }

    /// Forges and delivers at once; returns the seq used.
    fn inject(&self, net: &mut Net, msgs: &[(u16, MsgType, &[u8])]) -> u16 {
        let (s, d) = self.forge(net, msgs);
        net.deliver_now(&d);
        s
    }
}

// ----- rule 1 --------------------------------------------------------------

/// Follows consecutive values of one counter on the wire.
#[derive(Default)]
struct RingTrack {
    last: Option<u16>,
    wrapped: bool,
}

impl RingTrack {
    /// Each value must be `next(previous)` (so never 0).
    fn step(&mut self, v: u16, what: &str) {
        assert_ne!(v, 0, "{what} 0 on the wire");
        if let Some(prev) = self.last {
            assert_eq!(v, seq::next(prev), "{what} after {prev}");
            self.wrapped |= prev == u16::MAX && v == 1;
        }
        self.last = Some(v);
    }
}

#[test]
fn rule_01_seq_msgseq_and_frag_id_are_never_zero_across_the_wrap() {
    // MTU 400 (the smallest, so the cheapest datagrams): a message of
    // max_single + 1 = 333 bytes is two fragments of 326 + 7 bytes, sent in
    // two datagrams. 65 540 such messages use frag_ids up to 65535 and then
    // 1, ~131 000 msgseqs and ~131 000 client datagrams: frag_id wraps once,
    // packet seq and msgseq twice.
    let cfg = EndpointConfig { mtu: 400, ..unpaced() };
    let (mut net, c, _) = Net::pair(cfg);
    let key = net.key_of(1, c);
    let len = net.eps[1].config().sizes().max_single + 1;
    const MESSAGES: u32 = 65_540;
    const BATCH: u32 = 800;

    let mut client_seq = RingTrack::default();
    let mut server_seq = RingTrack::default();
    // The fragment seen first of each frag_id: (index, msgseq).
    let mut half: BTreeMap<u16, (u16, u16)> = BTreeMap::new();
    let (mut saw_msgseq_65535, mut msgseq_wrapped) = (false, false);
    let (mut saw_frag_id_65535, mut frag_id_wrapped) = (false, false);
    let mut received = vec![false; MESSAGES as usize];
    let (mut sent, mut drains) = (0u32, 0);
    loop {
        let mut acked = true;
        if sent < MESSAGES {
            let n = BATCH.min(MESSAGES - sent);
            for i in sent..sent + n {
                net.eps[1].send(c, &tagged(i, len), Delivery::Unreliable).expect("queued");
            }
            sent += n;
            acked = net
                .run_until(Duration::from_secs(30), |n| n.eps[1].connection(c).expect("alive").pending_messages() == 0);
        } else {
            drains += 1;
            assert!(drains <= 10, "messages missing at the server");
            net.run_for(Duration::from_millis(100));
        }
        for d in &net.wire_log {
            let h = d.header();
            let client = d.from == addr(1);
            if client {
                client_seq.step(h.seq, "client seq");
            } else {
                server_seq.step(h.seq, "server seq");
            }
            if !is_aead(d) {
                // A hello (CRC only): its one message is msgseq 1.
                let payload = &d.bytes[HEADER_LEN..HEADER_LEN + usize::from(h.length)];
                let mut msgs = crate::mpgs1::wire::frame::parse_payload(h.ty, h.count, payload).expect("hello framing");
                assert_eq!(msgs.next().map(|m| m.msgseq), Some(1));
                continue;
            }
            if h.count == 0 {
                continue;
            }
            let (_, msgs) = decode(&key, d);
            if !client {
                assert!(msgs.iter().all(|m| m.0 != 0), "server msgseq 0");
                continue;
            }
            for (msgseq, ty, data) in msgs {
                assert_ne!(msgseq, 0, "client msgseq 0");
                saw_msgseq_65535 |= msgseq == u16::MAX;
                msgseq_wrapped |= saw_msgseq_65535 && msgseq == 1;
                if ty == MsgType::ChallengeResp {
                    continue;
                }
                assert_eq!(ty, MsgType::AppFragment);
                let (frag_id, index, count) = frag_header(&data);
                assert_ne!(frag_id, 0, "frag_id 0 on the wire");
                saw_frag_id_65535 |= frag_id == u16::MAX;
                frag_id_wrapped |= saw_frag_id_65535 && frag_id == 1;
                assert_eq!(count, 2);
                // Unreliable: each fragment goes out once. The two of a
                // message have consecutive msgseqs on the ring (§8).
                match half.remove(&frag_id) {
                    None => {
                        half.insert(frag_id, (index, msgseq));
                    }
                    Some((other, other_msgseq)) => {
                        assert_eq!(index + other, 3, "frag_id {frag_id}: indexes {other} and {index}");
                        let (m1, m2) = if index == 1 { (msgseq, other_msgseq) } else { (other_msgseq, msgseq) };
                        assert_eq!(m2, seq::next(m1), "msgseqs of frag_id {frag_id}");
                    }
                }
            }
        }
        // Checked: drop it to keep memory flat.
        net.wire_log.clear();
        assert!(acked, "batch ending at {sent} not acknowledged");
        for e in net.take_events(SERVER) {
            if let Event::Message { payload: p, .. } = e {
                let i = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
                assert_eq!(p, tagged(i, len), "message {i} intact");
                assert!(!received[i as usize], "message {i} twice");
                received[i as usize] = true;
            }
        }
        if sent == MESSAGES && received.iter().all(|&r| r) {
            break;
        }
    }
    assert!(client_seq.wrapped, "client packet seq did not wrap");
    assert!(frag_id_wrapped, "frag_id did not wrap");
    assert!(half.is_empty(), "fragments without their pair: {half:?}");
    assert!(msgseq_wrapped, "msgseq did not wrap");
}

// ----- rule 2 --------------------------------------------------------------

#[test]
fn rule_02_datagrams_stay_within_max_size_and_255_messages() {
    // 300 empty messages queued at once: 286 would fit the 1434-byte
    // payload (5 bytes each), but a datagram carries at most 255.
    let (mut net, c, _) = Net::pair(EndpointConfig::default());
    let key = net.key_of(1, c);
    let start = net.wire_log.len();
    for _ in 0..300 {
        net.eps[1].send(c, &[], Delivery::Reliable).expect("queued");
    }
    net.run_for(Duration::from_millis(500));
    assert_eq!(net.messages(SERVER).len(), 300);
    let data: Vec<Decoded> = decoded_from(&net, &key, 1, start).into_iter().filter(|d| d.1.count > 0).collect();
    assert_eq!(data[0].1.count, 255, "first data datagram");
    assert_eq!(usize::from(data[0].1.length), 255 * 5);
    // The other 45 follow (as the send window of rule 16 allows).
    let total: usize = data.iter().map(|d| d.2.len()).sum();
    assert_eq!(total, 300);

    // Big and small messages both ways, with loss so that retransmissions
    // and new messages share datagrams, at MTU 1500 and 576.
    fn sizes_hold(mtu: u16) {
        let cfg = EndpointConfig { mtu, ..EndpointConfig::default() };
        let sizes = cfg.sizes();
        let (mut net, c, s) = Net::pair(cfg);
        let mut rng = TestRng::new(u64::from(mtu));
        net.set_filter(move |_| if rng.chance(0.2) { Verdict::Drop } else { Verdict::Deliver });
        let single = sizes.max_single;
        let lens = [0, 1, single - 1, single, single + 1, single + 2, 5000, 20_000];
        let mut want = Vec::new();
        for (i, &n) in lens.iter().enumerate() {
            for (ep, conn) in [(1, c), (SERVER, s)] {
                let p = tagged(i as u32, n);
                net.eps[ep].send(conn, &p, Delivery::Reliable).expect("queued");
                if ep == 1 {
                    want.push(p);
                }
            }
            for j in 0..40u32 {
                net.eps[1].send(c, &tagged(1000 + j, 4), Delivery::Reliable).expect("queued");
                want.push(tagged(1000 + j, 4));
            }
        }
        net.run_for(Duration::from_secs(20));
        let mut got = net.messages(SERVER);
        got.sort();
        want.sort();
        assert_eq!(got.len(), want.len(), "mtu {mtu}");
        assert!(got == want, "mtu {mtu}: messages delivered byte-exact");
        assert_eq!(net.messages(1).len(), lens.len());
        for d in &net.wire_log {
            let h = d.header();
            assert!(d.bytes.len() <= sizes.max_datagram, "mtu {mtu}: {} B datagram", d.bytes.len());
            if is_aead(d) {
                assert!(usize::from(h.length) <= sizes.max_payload, "mtu {mtu}");
                assert!(d.bytes.len() <= sizes.max_payload + 36, "mtu {mtu}");
            }
        }
    }
    sizes_hold(1500);
    sizes_hold(576);
}

// ----- rule 3 --------------------------------------------------------------

#[test]
fn rule_03_every_size_up_to_the_maximum_is_sent_with_the_spec_split() {
    let (mut net, c, _) = Net::pair(EndpointConfig::default());
    let key = net.key_of(1, c);
    let max_payload = net.eps[1].config().sizes().max_payload;
    let start = net.wire_log.len();
    let lens = [0usize, 1, 1431, 1432, 1433, 1434, 1435, 2450, 2451, 2452, 3475, 4499, 100_000, 1 << 20];
    let msgs: Vec<Vec<u8>> = lens.iter().enumerate().map(|(i, &n)| payload(n, i as u8)).collect();
    for m in &msgs {
        net.eps[1].send(c, m, Delivery::Reliable).expect("accepted");
    }
    assert_eq!(
        net.eps[1].send(c, &vec![0; (1 << 20) + 1], Delivery::Reliable),
        Err(SendError::TooLarge { max: 1 << 20 })
    );
    assert!(net.run_until(Duration::from_secs(60), |n| n.messages(SERVER).len() == lens.len()));
    let mut got = net.messages(SERVER);
    got.sort();
    let mut want = msgs.clone();
    want.sort();
    assert!(got == want, "every size delivered byte-exact");

    // On the wire: unfragmented up to 1432 bytes, the §8 split above. (The
    // sizes are distinct, so sorted lists compare message by message.)
    let mut singles = BTreeMap::new();
    let mut chunks: BTreeMap<u16, (u16, BTreeMap<u16, usize>)> = BTreeMap::new();
    for (_, _, m) in decoded_from(&net, &key, 1, start) {
        for (msgseq, ty, data) in m {
            match ty {
                MsgType::App => {
                    singles.insert(msgseq, data.len());
                }
                MsgType::AppFragment => {
                    let (id, index, count) = frag_header(&data);
                    let entry = chunks.entry(id).or_insert((count, BTreeMap::new()));
                    assert_eq!(entry.0, count, "frag_id {id}: one count");
                    entry.1.insert(index, data.len() - 6);
                }
                _ => {}
            }
        }
    }
    let mut got_singles: Vec<usize> = singles.into_values().collect();
    got_singles.sort();
    let want_singles: Vec<usize> = lens.iter().copied().filter(|&n| n <= 1432).collect();
    assert_eq!(got_singles, want_singles);
    let mut got_frags: Vec<Vec<usize>> = chunks
        .values()
        .map(|(count, m)| {
            assert!(m.keys().copied().eq(1..=*count), "indexes 1..=count");
            m.values().copied().collect()
        })
        .collect();
    got_frags.sort_by_key(|v| v.iter().sum::<usize>());
    let want_frags: Vec<Vec<usize>> = lens.iter().filter(|&&n| n > 1432).map(|&n| spec_split(n, max_payload)).collect();
    assert_eq!(got_frags, want_frags);
    assert_eq!(spec_split(2451, max_payload), [1024, 1024, 403]);
    assert_eq!(spec_split(1433, max_payload), [1024, 409]);

    // At the 8 MiB limit: 8192 fragments, delivered byte-exact.
    let cfg = EndpointConfig { max_message_size: 8 << 20, max_reassembly_bytes: 8 << 20, ..unpaced() };
    let (mut net, c, _) = Net::pair(cfg);
    let key = net.key_of(1, c);
    let start = net.wire_log.len();
    let big = payload(8 << 20, 0xA5);
    assert_eq!(
        net.eps[1].send(c, &vec![0; (8 << 20) + 1], Delivery::Reliable),
        Err(SendError::TooLarge { max: 8 << 20 })
    );
    net.eps[1].send(c, &big, Delivery::Reliable).expect("an 8 MiB message is accepted");
    assert!(net.run_until(Duration::from_secs(120), |n| !n.messages(SERVER).is_empty()));
    assert!(net.messages(SERVER) == [big], "8 MiB delivered byte-exact");
    let counts: BTreeSet<u16> = decoded_from(&net, &key, 1, start)
        .iter()
        .flat_map(|d| d.2.iter())
        .filter(|m| m.1 == MsgType::AppFragment)
        .map(|m| frag_header(&m.2).2)
        .collect();
    assert_eq!(counts, BTreeSet::from([8192]));
}

// ----- rule 4 --------------------------------------------------------------

#[test]
fn rule_04_retransmitted_fragment_is_byte_identical() {
    let (mut net, c, _) = Net::pair(EndpointConfig::default());
    let key = net.key_of(1, c);
    let start = net.wire_log.len();
    // Drop the first datagram that carries fragment index 2.
    let dropped = Rc::new(Cell::new(false));
    let (k, flag) = (key.clone(), Rc::clone(&dropped));
    net.set_filter(move |d| {
        if d.from != addr(1) || !is_aead(d) || flag.get() {
            return Verdict::Deliver;
        }
        let (_, msgs) = decode(&k, d);
        if msgs.iter().any(|m| m.1 == MsgType::AppFragment && frag_header(&m.2).1 == 2) {
            flag.set(true);
            return Verdict::Drop;
        }
        Verdict::Deliver
    });
    let msg = payload(5000, 4);
    let id = net.eps[1].send(c, &msg, Delivery::Reliable).expect("queued");
    net.run_for(Duration::from_secs(3));
    assert!(dropped.get());
    assert!(net.messages(SERVER) == [msg.clone()], "delivered once, intact");
    let delivered = net.events[1].iter().filter(|e| matches!(e, Event::Delivered { id: i, .. } if *i == id)).count();
    assert_eq!(delivered, 1);

    // Every copy of a fragment msgseq carries the same data, header included.
    let mut copies: BTreeMap<u16, Vec<Vec<u8>>> = BTreeMap::new();
    for (_, _, m) in decoded_from(&net, &key, 1, start) {
        for (msgseq, ty, data) in m {
            if ty == MsgType::AppFragment {
                copies.entry(msgseq).or_default().push(data);
            }
        }
    }
    assert_eq!(copies.len(), 5, "5000 B = 4 × 1024 + 904");
    let m1 = *copies.keys().next().expect("fragments");
    let frag_id = frag_header(&copies[&m1][0]).0;
    for (i, (&msgseq, all)) in copies.iter().enumerate() {
        assert_eq!(msgseq, seq::forward(m1, i as u32), "consecutive msgseqs");
        assert!(all.iter().all(|d| *d == all[0]), "copies of {msgseq} differ");
        assert_eq!(frag_header(&all[0]), (frag_id, i as u16 + 1, 5));
    }
    let second = &copies[&seq::next(m1)];
    assert!(second.len() >= 2, "fragment 2 was retransmitted");
    assert_eq!(second[0][6..], msg[1024..2048]);
}

// ----- rule 5 --------------------------------------------------------------

/// One sending side of the rule 5 exchange.
struct Side {
    ep: usize,
    conn: ConnectionId,
    sent: BTreeMap<MessageId, (Delivery, Vec<u8>)>,
    outcomes: BTreeMap<MessageId, Vec<bool>>,
    /// Messages this side received, with how often.
    received: BTreeMap<Vec<u8>, usize>,
    cursor: usize,
}

/// Folds the events since the last call into both sides; every `Delivered`
/// must name a message the peer has already received.
fn absorb(net: &Net, sides: &mut [Side; 2]) {
    let mut outcomes = Vec::new();
    for (k, side) in sides.iter_mut().enumerate() {
        for e in &net.events[side.ep][side.cursor..] {
            match e {
                Event::Message { payload: p, .. } => *side.received.entry(p.clone()).or_default() += 1,
                Event::Delivered { conn, id } => outcomes.push((k, *conn, *id, true)),
                Event::Lost { conn, id, .. } => outcomes.push((k, *conn, *id, false)),
                other => panic!("unexpected {other:?}"),
            }
        }
        side.cursor = net.events[side.ep].len();
    }
    for (k, conn, id, delivered) in outcomes {
        assert_eq!(conn, sides[k].conn);
        let (mode, data) = sides[k].sent.get(&id).expect("outcome of a sent id").clone();
        if delivered {
            assert!(
                sides[1 - k].received.contains_key(&data),
                "{mode:?} message {id:?} reported delivered before the peer had it"
            );
        }
        sides[k].outcomes.entry(id).or_default().push(delivered);
    }
}

/// A lossy, duplicating network for rule 5: each datagram's fate is a
/// function of its identity (direction, seq, ctime, length), so it does not
/// depend on how many datagrams went before.
fn fate(seed: u64, d: &Datagram) -> Verdict {
    let h = d.header();
    let id =
        u64::from(h.seq) << 8 ^ u64::from(h.ctime) << 32 ^ (d.bytes.len() as u64) << 40 ^ u64::from(d.from == addr(1));
    let mut rng = TestRng::new(seed ^ id);
    rng.next();
    if rng.chance(0.3) {
        Verdict::Drop
    } else if rng.chance(0.15) {
        Verdict::Duplicate
    } else {
        Verdict::Deliver
    }
}

#[test]
fn rule_05_each_message_outcome_is_signalled_exactly_once() {
    let (mut net, c, s) = Net::pair(EndpointConfig::default());
    net.take_events(1);
    net.take_events(SERVER);
    net.set_filter(|d| fate(5, d));
    let side = |ep, conn| Side {
        ep,
        conn,
        sent: BTreeMap::new(),
        outcomes: BTreeMap::new(),
        received: BTreeMap::new(),
        cursor: 0,
    };
    let mut sides = [side(1, c), side(SERVER, s)];
    let lens = [4usize, 100, 1432, 1433, 3000, 5000];
    let modes = [Delivery::Unreliable, Delivery::BestEffort, Delivery::Reliable];
    for i in 0..72u32 {
        for (k, side) in sides.iter_mut().enumerate() {
            let mode = modes[(i as usize / lens.len()) % modes.len()];
            let data = tagged((k as u32) << 16 | i, lens[i as usize % lens.len()]);
            let id = net.eps[side.ep].send(side.conn, &data, mode).expect("queued");
            side.sent.insert(id, (mode, data));
        }
        let until = net.now + Duration::from_millis(40);
        while net.step(until) {
            absorb(&net, &mut sides);
        }
    }
    let until = net.now + Duration::from_secs(30);
    while net.step(until) {
        absorb(&net, &mut sides);
    }
    absorb(&net, &mut sides);
    let mut lost = 0;
    for side in &sides {
        assert_eq!(net.eps[side.ep].connection(side.conn).expect("alive").pending_messages(), 0);
        for (id, (mode, _)) in &side.sent {
            let o = side.outcomes.get(id).map_or(&[][..], |v| &v[..]);
            assert_eq!(o.len(), 1, "{mode:?} message {id:?}: outcomes {o:?}");
            if *mode == Delivery::Reliable {
                assert_eq!(o, [true], "reliable message {id:?} lost");
            }
            lost += usize::from(!o[0]);
        }
        assert!(side.outcomes.keys().all(|id| side.sent.contains_key(id)));
        // Duplication on the wire never duplicates a message.
        assert!(side.received.values().all(|&n| n == 1), "a message arrived twice");
    }
    for (k, side) in sides.iter().enumerate() {
        for (mode, data) in side.sent.values() {
            if *mode == Delivery::Reliable {
                assert!(sides[1 - k].received.contains_key(data), "reliable message missing");
            }
        }
    }
    // 30 % loss: some unreliable or best-effort message was lost (so both
    // outcomes were exercised).
    assert!(lost > 0);
}

// ----- rule 6 --------------------------------------------------------------

#[test]
fn rule_06_packets_and_messages_older_than_the_windows_are_replays() {
    let (mut net, c, _) = Net::pair(EndpointConfig::default());
    let key = net.key_of(1, c);
    let replays = |net: &Net| net.eps[SERVER].stats().dropped(DropReason::Replay);
    net.eps[1].send(c, b"first", Delivery::Reliable).expect("queued");
    assert!(net.run_until(Duration::from_secs(1), |n| n.messages(SERVER).len() == 1));
    let captured = net
        .wire_log
        .iter()
        .find(|d| d.from == addr(1) && is_aead(d) && decode(&key, d).1.iter().any(|m| m.2 == b"first"))
        .cloned()
        .expect("captured");
    let cap = captured.header();

    // Replayed at once: a duplicate packet.
    assert_eq!(replays(&net), 0);
    net.deliver_now(&captured);
    assert_eq!(replays(&net), 1);
    assert_eq!(net.messages(SERVER).len(), 1);

    // Replayed after more than 32 newer packets (well within the ctime
    // limit of rule 17): stale for the packet window.
    for i in 0..40u8 {
        net.eps[1].send(c, &[i], Delivery::Unreliable).expect("queued");
        net.run_for(Duration::from_millis(30));
    }
    let newest = net.wire_log.iter().rev().find(|d| d.from == addr(1)).map(Datagram::header).expect("client traffic");
    assert!(seq::diff(newest.seq, cap.seq) > 32);
    assert!(newest.ctime - cap.ctime < 6);
    net.deliver_now(&captured);
    assert_eq!(replays(&net), 2, "{}", net.eps[SERVER].stats());
    assert_eq!(net.messages(SERVER).len(), 41);
    assert_eq!(server_messages_with(&net, b"first"), 1);

    // A message more than 1024 msgseqs behind the newest, in a fresh
    // packet: rejected, although the packet is accepted.
    for _ in 0..1100 {
        net.eps[1].send(c, b"m", Delivery::Unreliable).expect("queued");
    }
    assert!(net.run_until(Duration::from_secs(5), |n| n.eps[1].connection(c).expect("alive").pending_messages() == 0));
    net.run_for(Duration::from_millis(50));
    assert_eq!(server_messages_with(&net, b"m"), 1100);
    let newest_msgseq =
        decoded_from(&net, &key, 1, 0).iter().flat_map(|d| d.2.iter().map(|m| m.0)).max().expect("messages");
    let f = Forger::new(&mut net, c);
    let before = replays(&net);
    // 1025 behind: one past the 1024-entry window. That msgseq was used
    // (the reference would deliver it again).
    f.inject(&mut net, &[(seq::back(newest_msgseq, 1025), MsgType::App, b"stale")]);
    assert_eq!(server_messages_with(&net, b"stale"), 0);
    // The same forgery with a msgseq inside the window is delivered.
    f.inject(&mut net, &[(seq::next(newest_msgseq), MsgType::App, b"fresh")]);
    assert_eq!(server_messages_with(&net, b"fresh"), 1);
    assert_eq!(replays(&net), before);
}

// ----- rule 10 -------------------------------------------------------------

#[test]
fn rule_10_reassembly_state_is_bounded() {
    let (mut net, c, _) = Net::pair(EndpointConfig::default());
    let f = Forger::new(&mut net, c);
    let rate = |net: &Net| net.eps[SERVER].stats().dropped(DropReason::Rate);
    let frags_dropped = |net: &Net| net.eps[SERVER].stats().fragments_dropped;
    let chunk = [7u8; 100];

    // 16 concurrent reassemblies (count 4; msgseq ranges 100.., 10 apart).
    for i in 0..16u16 {
        f.inject(&mut net, &[(100 + 10 * i, MsgType::AppFragment, &frag(1000 + i, 1, 4, &chunk))]);
    }
    assert_eq!((rate(&net), frags_dropped(&net)), (0, 0));

    // The datagram opening a 17th is refused whole, and not acknowledged.
    let f17 = frag(1016, 1, 4, &chunk);
    let msgs17: [(u16, MsgType, &[u8]); 2] = [(260, MsgType::AppFragment, &f17), (265, MsgType::App, b"seventeen")];
    let (s17, d17) = f.forge(&net, &msgs17);
    let mark = net.wire_log.len();
    net.deliver_now(&d17);
    assert_eq!(rate(&net), 1);
    assert_eq!(server_messages_with(&net, b"seventeen"), 0);
    net.run_for(Duration::from_millis(300));
    let server_hdrs: Vec<Header> =
        net.wire_log[mark..].iter().filter(|d| d.from == addr(SERVER)).map(Datagram::header).collect();
    assert!(!server_hdrs.is_empty());
    assert!(server_hdrs.iter().all(|h| !acks(h, s17)), "refused datagram acked");

    // Completing one frees a slot: the same datagram is then accepted.
    let tail = [9u8; 50];
    for (msgseq, index, data) in [(101, 2, &chunk[..]), (102, 3, &chunk[..]), (103, 4, &tail[..])] {
        f.inject(&mut net, &[(msgseq, MsgType::AppFragment, &frag(1000, index, 4, data))]);
    }
    let whole = [&chunk[..], &chunk[..], &chunk[..], &tail[..]].concat();
    assert_eq!(server_messages_with(&net, &whole), 1);
    net.deliver_now(&d17);
    assert_eq!(server_messages_with(&net, b"seventeen"), 1);
    assert_eq!(rate(&net), 1);

    // Fragments failing the §8 validation or the size limit are dropped;
    // their datagram is accepted.
    let big = [1u8; 1024];
    let bad = [
        frag(2000, 1, 8193, &chunk), // count > max_fragments
        frag(2001, 1, 1100, &big),   // at least 1099 × 1024 + 1 B > 1 MiB
        frag(0, 1, 4, &chunk),       // frag_id 0
        frag(2002, 0, 4, &chunk),    // index 0
        frag(2003, 5, 4, &chunk),    // index > count
        frag(2004, 1, 1, &chunk),    // count 1
        frag(2005, 1, 4, &[]),       // empty chunk
    ];
    let msgs: Vec<(u16, MsgType, &[u8])> =
        bad.iter().enumerate().map(|(i, d)| (5000 + 2000 * i as u16, MsgType::AppFragment, &d[..])).collect();
    f.inject(&mut net, &msgs[..2]);
    f.inject(&mut net, &msgs[2..]);
    assert_eq!(frags_dropped(&net), bad.len() as u64);
    assert_eq!(rate(&net), 1);
    f.inject(&mut net, &[(20_000, MsgType::App, b"after")]);
    assert_eq!(server_messages_with(&net, b"after"), 1);

    // Memory: 4 MiB of buffers per connection. Four first fragments that
    // claim 1023 further 1 KiB chunks each reserve 4 × 1 047 552 B; one more
    // claiming 9 KiB does not fit, a 100-byte one does.
    let (mut net, c, _) = Net::pair(EndpointConfig::default());
    let f = Forger::new(&mut net, c);
    for i in 0..4u16 {
        f.inject(&mut net, &[(100 + 1100 * i, MsgType::AppFragment, &frag(500 + i, 1, 1024, &big))]);
    }
    assert_eq!(rate(&net), 0);
    f.inject(&mut net, &[(5000, MsgType::AppFragment, &frag(504, 1, 10, &big))]);
    assert_eq!(rate(&net), 1, "over the byte budget");
    f.inject(&mut net, &[(5100, MsgType::AppFragment, &frag(505, 1, 2, &chunk))]);
    f.inject(&mut net, &[(5101, MsgType::AppFragment, &frag(505, 2, 2, &tail))]);
    assert_eq!(rate(&net), 1);
    assert_eq!(server_messages_with(&net, &[&chunk[..], &tail[..]].concat()), 1);
}

// ----- rule 13 -------------------------------------------------------------

#[test]
fn rule_13_reassembly_expires_by_injected_time_on_its_own() {
    let (mut net, c, s) = Net::pair(EndpointConfig::default());
    let f = Forger::new(&mut net, c);
    let expired = |net: &Net| net.eps[SERVER].stats().reassemblies_expired;
    let chunk = [5u8; 100];

    // A reassembly expires max(1 + 0.5·count s, connection_timeout +
    // ack_timeout = 6 s) after the last fragment that made progress.
    // count 4: 3 s, raised to the 6 s floor.
    let t0 = net.now;
    f.inject(&mut net, &[(100, MsgType::AppFragment, &frag(77, 1, 4, &chunk))]);
    net.run_for(Duration::from_millis(500));
    // count 20, half a second later: 1 + 10 = 11 s.
    let t1 = net.now;
    f.inject(&mut net, &[(200, MsgType::AppFragment, &frag(78, 1, 20, &chunk))]);
    net.run_for(Duration::from_millis(1500));
    // Progress on the first restarts its lifetime: now t0 + 2 + 6 s.
    let t2 = net.now;
    f.inject(&mut net, &[(101, MsgType::AppFragment, &frag(77, 2, 4, &chunk))]);
    assert_eq!(expired(&net), 0);
    assert!(net.run_until(Duration::from_secs(20), |n| expired(n) == 1));
    assert_eq!(net.now, t2 + Duration::from_secs(6));
    assert!(net.now > t0 + Duration::from_secs(6), "progress extended the first one's lifetime");
    assert!(net.run_until(Duration::from_secs(20), |n| expired(n) == 2));
    assert_eq!(net.now, t1 + Duration::from_secs(11));
    // Keep-alives kept the connection up meanwhile.
    assert!(net.eps[SERVER].connection(s).is_some());

    // The state is gone: the remaining fragments do not complete a message.
    for (msgseq, index) in [(102, 3), (103, 4)] {
        f.inject(&mut net, &[(msgseq, MsgType::AppFragment, &frag(77, index, 4, &chunk))]);
    }
    assert!(net.messages(SERVER).is_empty());
}

// ----- rule 14 -------------------------------------------------------------

#[test]
fn rule_14_inconsistent_fragments_in_a_reassembly_range_are_dropped() {
    let (mut net, c, _) = Net::pair(EndpointConfig::default());
    let key = net.key_of(1, c);
    let msg = payload(5000, 14);
    // Phase 0: only fragment 1 of the message gets through. Phase 1: the
    // next datagram with a later fragment is replaced by one with the same
    // header values that carries inconsistent fragments first, then the
    // original messages. Phase 2: everything passes.
    let phase = Rc::new(Cell::new(0u8));
    let outbox: Rc<RefCell<Vec<Datagram>>> = Rc::new(RefCell::new(Vec::new()));
    let (k, ph, out) = (key.clone(), Rc::clone(&phase), Rc::clone(&outbox));
    net.set_filter(move |d| {
        if d.from != addr(1) || !is_aead(d) || ph.get() == 2 {
            return Verdict::Deliver;
        }
        let (h, msgs) = decode(&k, d);
        let Some(later) = msgs.iter().find(|m| m.1 == MsgType::AppFragment && frag_header(&m.2).1 >= 2) else {
            return Verdict::Deliver;
        };
        if ph.get() == 1 {
            let (frag_id, index, count) = frag_header(&later.2);
            let m1 = seq::back(later.0, u32::from(index - 1));
            let at = |i: u32| seq::forward(m1, i);
            let junk = [
                // Right header, but a non-final chunk of another size.
                (at(1), frag(frag_id, 2, count, &[1; 16])),
                // Another frag_id.
                (at(2), frag(frag_id.wrapping_add(1), 3, count, &[2; 16])),
                // Another count.
                (at(3), frag(frag_id, 4, count + 1, &[3; 16])),
                // An index that does not match the position.
                (at(4), frag(frag_id, 4, count, &[4; 16])),
            ];
            let mut all: Vec<(u16, MsgType, &[u8])> =
                junk.iter().map(|(s, j)| (*s, MsgType::AppFragment, &j[..])).collect();
            all.extend(msgs.iter().map(|m| (m.0, m.1, &m.2[..])));
            let bytes = craft(Some(&k), Direction::ToServer, h.ctime, h.seq, h.ack, h.ack_bits, &all);
            out.borrow_mut().push(Datagram { bytes, ..d.clone() });
            ph.set(2);
        }
        Verdict::Drop
    });
    net.eps[1].send(c, &msg, Delivery::Reliable).expect("queued");
    net.run_for(Duration::from_millis(400));
    assert!(net.messages(SERVER).is_empty());
    assert_eq!(net.eps[SERVER].stats().fragments_dropped, 0);

    phase.set(1);
    let until = net.now + Duration::from_secs(3);
    while net.step(until) {
        for d in outbox.borrow_mut().drain(..) {
            net.inject(d);
        }
    }
    assert_eq!(phase.get(), 2, "a datagram was rewritten");
    assert_eq!(net.eps[SERVER].stats().fragments_dropped, 4);
    assert!(net.messages(SERVER) == [msg], "the genuine message completes intact, once");
}

// ----- rule 15 -------------------------------------------------------------

#[test]
fn rule_15_ctime_is_the_injected_origin_plus_injected_time() {
    const ORIGIN: u64 = 1_600_000_000;
    let cfg = EndpointConfig { unix_time_origin: ORIGIN, ..unpaced() };
    let (mut net, c, s) = Net::pair(cfg);
    for i in 0..37u8 {
        net.eps[1].send(c, &[i], Delivery::Reliable).expect("queued");
        net.eps[SERVER].send(s, &[i], Delivery::Unreliable).expect("queued");
        net.run_for(Duration::from_millis(100));
    }
    assert!(net.now >= Instant::from_secs(3));
    let mut newest = [0u32; 2];
    for d in &net.wire_log {
        let ctime = d.header().ctime;
        assert_eq!(u64::from(ctime), ORIGIN + d.sent.as_secs(), "sent at {}", d.sent);
        let k = usize::from(d.from == addr(1));
        assert!(ctime >= newest[k]);
        newest[k] = ctime;
    }

    // An earlier `now` is clamped to the latest one seen: ctime stays.
    let latest = net.now;
    net.eps[1].handle_timeout(Instant::ZERO);
    net.eps[1].send(c, b"late", Delivery::Unreliable).expect("queued");
    let mut buf = [0u8; MAX_DATAGRAM];
    let t = net.eps[1].poll_transmit(Instant::from_millis(500), &mut buf).expect("due at once");
    let d = Datagram { from: addr(1), to: t.destination, bytes: buf[..t.len].to_vec(), sent: latest };
    assert_eq!(u64::from(d.header().ctime), ORIGIN + latest.as_secs());
    net.inject(d);
    net.run_for(Duration::from_millis(100));
    assert_eq!(server_messages_with(&net, b"late"), 1);
}

// ----- rule 16 -------------------------------------------------------------

#[test]
fn rule_16_unacknowledged_messages_stay_within_the_send_window() {
    let cfg = EndpointConfig { send_queue_messages: 1000, ..EndpointConfig::default() };
    let (mut net, c, _) = Net::pair(cfg);
    let key = net.key_of(1, c);
    let latency = net.latency;
    let blocked = Rc::new(Cell::new(true));
    let b = Rc::clone(&blocked);
    net.set_filter(move |d| if d.from == addr(1) && b.get() { Verdict::Drop } else { Verdict::Deliver });
    let start = net.wire_log.len();
    let ids: Vec<MessageId> =
        (0..1000u32).map(|i| net.eps[1].send(c, &i.to_be_bytes(), Delivery::Reliable).expect("queued")).collect();
    assert!(matches!(
        net.eps[1].send(c, b"one too many", Delivery::Reliable),
        Err(SendError::QueueFull { channel: 2, .. })
    ));
    net.run_for(Duration::from_secs(2));
    let unblocked_at = net.now;
    blocked.set(false);
    assert!(net.run_until(Duration::from_secs(30), |n| n.messages(SERVER).len() >= 1000));
    net.run_for(Duration::from_secs(1));

    let mut got = net.messages(SERVER);
    got.sort();
    let want: Vec<Vec<u8>> = (0..1000u32).map(|i| i.to_be_bytes().to_vec()).collect();
    assert!(got == want, "all 1000 delivered exactly once");
    let delivered: BTreeSet<MessageId> = net.events[1]
        .iter()
        .filter_map(|e| match e {
            Event::Delivered { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(delivered, ids.iter().copied().collect());

    // Message i has msgseq m0 + i.
    let client = decoded_from(&net, &key, 1, start);
    let mut m0 = None;
    for (_, _, m) in &client {
        for (msgseq, _, data) in m {
            let i = u32::from_be_bytes(data[..4].try_into().expect("4 bytes"));
            let first = seq::back(*msgseq, i);
            assert_eq!(*m0.get_or_insert(first), first);
        }
    }
    let m0 = m0.expect("messages sent");

    // While blocked nothing is acknowledged: msgseqs stay within m0 + 255.
    let blocked_max = client
        .iter()
        .filter(|d| d.0 < unblocked_at)
        .flat_map(|d| d.2.iter().map(|m| seq::diff(m.0, m0)))
        .max()
        .expect("sent while blocked");
    assert_eq!(blocked_max, 255, "the whole 256-entry window is used, no more");

    // Throughout: replay what the client knew (server datagrams arrive one
    // latency after they leave, before the client sends at that instant)
    // and check each transmitted msgseq against the oldest unacknowledged.
    let server = decoded_from(&net, &key, SERVER, start);
    let mut timeline: Vec<(Instant, u8, usize)> = server
        .iter()
        .enumerate()
        .map(|(i, d)| (d.0 + latency, 0, i))
        .chain(client.iter().enumerate().map(|(i, d)| (d.0, 1, i)))
        .collect();
    timeline.sort();
    let mut carried: Vec<(u16, Vec<u16>)> = Vec::new();
    let mut acked = vec![false; 1000];
    let mut oldest = 0usize;
    for (_, kind, i) in timeline {
        if kind == 0 {
            let h = &server[i].1;
            for (pkt, msgseqs) in &carried {
                if acks(h, *pkt) {
                    for &m in msgseqs {
                        acked[seq::diff(m, m0) as usize] = true;
                    }
                }
            }
            while oldest < 1000 && acked[oldest] {
                oldest += 1;
            }
        } else {
            let (_, h, m) = &client[i];
            let msgseqs: Vec<u16> = m.iter().map(|x| x.0).collect();
            for &m in &msgseqs {
                assert!(
                    seq::diff(m, seq::forward(m0, oldest as u32)) <= 255,
                    "msgseq {m} sent while message {oldest} awaits its ack"
                );
            }
            carried.push((h.seq, msgseqs));
        }
    }
    assert_eq!(oldest, 1000);
}

// ----- rule 17 -------------------------------------------------------------

#[test]
fn rule_17_ctime_far_older_than_the_newest_is_a_replay() {
    let cfg = EndpointConfig { unix_time_origin: 1_700_000_000, ..EndpointConfig::default() };
    let limit = cfg.connection_timeout.as_secs() as u32 + 1;
    let (mut net, c, _) = Net::pair(cfg);
    net.run_for(Duration::from_secs(9));
    let f = Forger::new(&mut net, c);
    let newest =
        net.wire_log.iter().rev().find(|d| d.from == addr(1)).map(|d| d.header().ctime).expect("client traffic");
    assert!(newest >= 1_700_000_008);
    let replays = |net: &Net| net.eps[SERVER].stats().dropped(DropReason::Replay);

    // connection_timeout + 2 s older: a replay, fresh seq and msgseq or not.
    let (_, d) = f.forge_at(&net, newest - (limit + 1), &[(100, MsgType::App, b"too old")]);
    net.deliver_now(&d);
    assert_eq!(replays(&net), 1);
    assert_eq!(server_messages_with(&net, b"too old"), 0);

    // Exactly connection_timeout + 1 s older, and 1 s older: accepted.
    let (_, d) = f.forge_at(&net, newest - limit, &[(101, MsgType::App, b"at the limit")]);
    net.deliver_now(&d);
    let (_, d) = f.forge_at(&net, newest - 1, &[(102, MsgType::App, b"one second")]);
    net.deliver_now(&d);
    assert_eq!(replays(&net), 1);
    assert_eq!(server_messages_with(&net, b"at the limit"), 1);
    assert_eq!(server_messages_with(&net, b"one second"), 1);
}
