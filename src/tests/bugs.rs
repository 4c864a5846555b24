//! Regressions for the reference bugs of PROTOCOL.md §16 that concern our
//! side, one test per bug, named after it. Bugs 5 and 13 are not here: bug 5
//! is the reference client's API (`UdpClient.send` defaults, `NameError`s in
//! its setters) and bug 13 its server loop blocking when idle; neither is
//! part of this core nor visible on the wire, so there is nothing of ours to
//! regress.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use super::forge::*;
use super::harness::*;
use crate::keys::EphemeralKey;
use crate::mpgs1::protect::PacketKey;
use crate::mpgs1::wire::fragment::{self, FragmentHeader};
use crate::mpgs1::wire::{CRC_LEN, Direction, HEADER_LEN, Header, MsgType, TAG_LEN, handshake};
use crate::{ConnectionId, Delivery, DropReason, Duration, EndpointConfig, Event, Instant, MAX_DATAGRAM, Rng, Seed};

/// Every message (msgseq, type, data) of the AEAD datagrams from `from` to
/// `to` in the wire log, decoded with `key`.
fn messages_on_wire(net: &Net, key: &PacketKey, from: usize, to: usize) -> Vec<(u16, MsgType, Vec<u8>)> {
    net.wire_log
        .iter()
        .filter(|d| d.from == addr(from) && d.to == addr(to))
        .filter(|d| !matches!(d.header().ty, MsgType::ClientHello | MsgType::ServerHello))
        .flat_map(|d| decode(key, d).1)
        .collect()
}

/// The fragment chunk lengths of each fragmented message (by frag_id) sent
/// from `from` to `to`, in index order, each copy counted once.
fn fragment_layout(net: &Net, key: &PacketKey, from: usize, to: usize) -> BTreeMap<u16, Vec<usize>> {
    let mut chunks: BTreeMap<u16, BTreeMap<u16, (u16, usize)>> = BTreeMap::new();
    for (_, ty, data) in messages_on_wire(net, key, from, to) {
        if ty != MsgType::AppFragment {
            continue;
        }
        let (h, chunk) = FragmentHeader::parse(&data).unwrap();
        assert!(h.is_valid(8192), "{h:?}");
        chunks.entry(h.frag_id).or_default().insert(h.index, (h.count, chunk.len()));
    }
    chunks
        .into_iter()
        .map(|(id, by_index)| {
            let count = by_index.values().next().unwrap().0;
            assert!(by_index.values().all(|&(c, _)| c == count));
            assert_eq!(by_index.len(), usize::from(count), "every index seen");
            (id, by_index.into_values().map(|(_, len)| len).collect())
        })
        .collect()
}

/// Sends every size in `sizes` both ways (reliable) and checks each
/// arrives exactly once, intact, and is reported delivered.
fn round_trip_sizes(net: &mut Net, c: ConnectionId, s: ConnectionId, sizes: &[usize]) {
    let mut ids = Vec::new();
    for (i, &n) in sizes.iter().enumerate() {
        let tag = i as u8;
        ids.push((1, net.eps[1].send(c, &payload(n, tag), Delivery::Reliable).unwrap()));
        ids.push((SERVER, net.eps[SERVER].send(s, &payload(n, tag ^ 0x80), Delivery::Reliable).unwrap()));
    }
    net.run_for(Duration::from_secs(3));
    let want =
        |flip: u8| -> Vec<Vec<u8>> { sizes.iter().enumerate().map(|(i, &n)| payload(n, i as u8 ^ flip)).collect() };
    assert_eq!(net.messages(SERVER), want(0));
    assert_eq!(net.messages(1), want(0x80));
    for (ep, id) in ids {
        let conn = if ep == SERVER { s } else { c };
        assert!(net.events[ep].contains(&Event::Delivered { conn, id }), "{}", describe(&net.events[ep]));
    }
}

#[test]
fn bug_01_messages_of_1433_and_1434_bytes_are_delivered() {
    let (mut net, c, s) = Net::pair(EndpointConfig::default());
    round_trip_sizes(&mut net, c, s, &[1432, 1433, 1434]);
    let key = net.key_of(1, c);
    // 1432 goes whole in a full-size datagram; 1433 and 1434 are fragmented.
    for (from, to) in [(1, SERVER), (SERVER, 1)] {
        let whole: BTreeMap<u16, usize> = messages_on_wire(&net, &key, from, to)
            .into_iter()
            .filter(|m| m.1 == MsgType::App)
            .map(|m| (m.0, m.2.len()))
            .collect();
        assert_eq!(whole.into_values().collect::<Vec<_>>(), [1432]);
        let layout: Vec<Vec<usize>> = fragment_layout(&net, &key, from, to).into_values().collect();
        assert_eq!(layout, [alloc::vec![1024, 409], alloc::vec![1024, 410]]);
    }
    assert!(net.wire_log.iter().any(|d| d.bytes.len() == 1470));
    assert!(net.wire_log.iter().all(|d| d.bytes.len() <= 1470));
}

#[test]
fn bug_02_messages_whose_reference_tail_is_1427_bytes_are_delivered() {
    let (mut net, c, s) = Net::pair(EndpointConfig::default());
    let sizes: Vec<usize> = (1..=4).map(|k| 1024 * k + 1427).collect();
    assert_eq!(sizes, [2451, 3475, 4499, 5523]);
    round_trip_sizes(&mut net, c, s, &sizes);
    let key = net.key_of(1, c);
    for (from, to) in [(1, SERVER), (SERVER, 1)] {
        let layout: Vec<Vec<usize>> = fragment_layout(&net, &key, from, to).into_values().collect();
        assert_eq!(layout.len(), 4);
        for (k, chunks) in (1..=4).zip(&layout) {
            // k + 1 full chunks and a 403-byte tail, never a 1427-byte one.
            let mut want = alloc::vec![1024; k + 1];
            want.push(403);
            assert_eq!(chunks, &want);
        }
    }
    // The split itself never produces a tail the reference cannot send.
    for len in 1433..40_000 {
        let n = fragment::fragment_count(len, 1434);
        let tail = fragment::fragment_range(len, 1434, n - 1).len();
        assert!((403..=1426).contains(&tail), "{len}: {tail}");
    }
}

#[test]
fn bug_03_headerless_fragment_retransmits_never_deliver_garbage() {
    // A reference-style sender, forged with the session key: fragments 1
    // and 3 of a 3-fragment message with their headers, then fragment 2
    // "retransmitted" without its header under a new msgseq.
    let (mut net, c, _s) = Net::pair(EndpointConfig::default());
    let key = net.key_of(1, c);
    let mut msg = payload(3000, 9);
    // Make fragment 2's raw chunk start like a plausible header: frag_id 5,
    // index 1 of 2.
    msg[1024..1030].copy_from_slice(&[0, 5, 0, 1, 0, 2]);
    let frag = |index: u16, range: core::ops::Range<usize>| {
        let mut d = Vec::new();
        d.extend_from_slice(&[0, 9, 0, index as u8, 0, 3]);
        d.extend_from_slice(&msg[range]);
        d
    };
    let mut seq = silence_client(&mut net, 1);
    // Forges the next datagram from the (silenced) client; no message is a keep-alive.
    let mut forge = |net: &mut Net, msgs: &[(u16, MsgType, &[u8])]| {
        seq = crate::mpgs1::seq::next(seq);
        let d = forge_to_server(net, &key, 1, seq, msgs);
        net.deliver_now(&d);
    };
    // A fragment, or (empty data) a keep-alive.
    let mut send = |net: &mut Net, msgseq: u16, data: &[u8]| {
        if data.is_empty() { forge(net, &[]) } else { forge(net, &[(msgseq, MsgType::AppFragment, data)]) }
    };
    let t0 = net.now;
    let before = drops(&net.eps[SERVER]);
    send(&mut net, 100, &frag(1, 0..1024));
    send(&mut net, 102, &frag(3, 2048..3000));
    // Header-less copies of fragment 2 (new msgseqs beyond every range).
    send(&mut net, 103, &msg[1024..2048]); // parses as (5, 1 of 2): a bogus reassembly
    let mut zero_id = msg[1024..2048].to_vec();
    zero_id[..2].copy_from_slice(&[0, 0]);
    send(&mut net, 104, &zero_id); // frag_id 0: invalid
    let mut huge = msg[1024..2048].to_vec();
    huge[..6].copy_from_slice(&[0, 7, 0, 1, 0x20, 0x00]);
    send(&mut net, 105, &huge); // 1 of 8192 fragments: too large
    let stats = net.eps[SERVER].stats().clone();
    assert_eq!(stats.fragments_dropped, 2);
    assert!(drop_delta(before, drops(&net.eps[SERVER])).is_empty(), "valid datagrams");
    assert!(net.messages(SERVER).is_empty(), "no garbage delivered");
    // The genuine fragment 2 (with its header) still completes the message.
    send(&mut net, 101, &frag(2, 1024..2048));
    assert_eq!(net.messages(SERVER), [msg]);
    // The bogus reassembly (2 fragments: 2 s, raised to the connection's
    // 6 s floor) expires 6 s after its only fragment. Forged keep-alives
    // hold the session meanwhile.
    for _ in 0..5 {
        net.run_for(Duration::from_secs(1));
        send(&mut net, 0, &[]);
    }
    net.run_for(t0 + Duration::from_secs(6) - net.now - Duration::from_millis(1));
    assert_eq!(net.eps[SERVER].stats().reassemblies_expired, 0);
    net.run_for(Duration::from_millis(1));
    assert_eq!(net.eps[SERVER].stats().reassemblies_expired, 1);
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.eps[SERVER].stats().reassemblies_expired, 1);
    assert_eq!(net.messages(SERVER).len(), 1);

    // Our own retransmitted fragments keep their header and msgseq.
    let (mut net, c, _s) = Net::pair(EndpointConfig::default());
    let key = net.key_of(1, c);
    let mut lose = 2;
    net.set_filter(move |d| {
        if d.from == addr(1) && d.header().ty == MsgType::AppFragment && lose > 0 {
            lose -= 1;
            Verdict::Drop
        } else {
            Verdict::Deliver
        }
    });
    let msg = payload(3000, 3);
    net.eps[1].send(c, &msg, Delivery::Reliable).unwrap();
    net.run_for(Duration::from_secs(2));
    assert_eq!(net.messages(SERVER), core::slice::from_ref(&msg));
    let copies: Vec<(u16, Vec<u8>)> = messages_on_wire(&net, &key, 1, SERVER)
        .into_iter()
        .filter(|m| m.1 == MsgType::AppFragment)
        .map(|m| (m.0, m.2))
        .collect();
    assert!(copies.len() >= 5, "3 fragments and at least 2 retransmits");
    let m1 = copies.iter().map(|c| c.0).min().unwrap();
    for (msgseq, data) in &copies {
        let (h, chunk) = FragmentHeader::parse(data).unwrap();
        let i = usize::from(msgseq - m1);
        assert_eq!((h.index, h.count), (i as u16 + 1, 3), "msgseq {msgseq}");
        assert_eq!(chunk, &msg[fragment::fragment_range(3000, 1434, i)]);
    }
}

#[test]
fn bug_04_bursts_of_copies_are_delivered_once_and_every_packet_acked() {
    let (mut net, c, s) = Net::pair(EndpointConfig::default());
    let key = net.key_of(1, c);
    let last = silence_client(&mut net, 1);
    let mut seq = last;
    let mut burst = Vec::new();
    for _ in 0..5 {
        seq = crate::mpgs1::seq::next(seq);
        burst.push(forge_to_server(&net, &key, 1, seq, &[(200, MsgType::App, b"dup")]));
    }
    seq = crate::mpgs1::seq::next(seq);
    burst.push(forge_to_server(&net, &key, 1, seq, &[(201, MsgType::App, b"other"), (200, MsgType::App, b"dup")]));
    let replayed = burst[2].clone();
    burst.push(replayed); // one packet twice
    let log = net.wire_log.len();
    let t0 = net.now;
    let before = drops(&net.eps[SERVER]);
    for d in &burst {
        net.deliver_now(d);
    }
    assert_eq!(net.messages(SERVER), [b"dup".to_vec(), b"other".to_vec()]);
    assert_eq!(
        drop_delta(before, drops(&net.eps[SERVER])),
        [(DropReason::Replay, 1)],
        "only the repeated packet is a duplicate"
    );
    let m = net.eps[SERVER].connection(s).unwrap().metrics();
    assert_eq!(m.duplicate_messages, 5);
    // Every packet is acknowledged promptly: the server acks at once after
    // a few message-carrying datagrams (mid-burst), and the pacer lets the
    // next ack out within one send interval.
    net.run_for(Duration::from_millis(100));
    let acks: Vec<Header> = sent_between(&net, log, addr(SERVER), addr(1))
        .into_iter()
        .filter(|d| d.sent - t0 <= Duration::from_millis(17))
        .map(|d| d.header())
        .collect();
    assert!(!acks.is_empty());
    let acked = |x: u16| {
        acks.iter().any(|h| {
            let d = crate::mpgs1::seq::diff(h.ack, x);
            d == 0 || ((1..=32).contains(&d) && h.ack_bits & (0x8000_0000 >> (d - 1)) != 0)
        })
    };
    let mut x = last;
    while x != seq {
        x = crate::mpgs1::seq::next(x);
        assert!(acked(x), "packet {x} not acked: {acks:?}");
    }
    let h = acks.last().unwrap();
    assert_eq!(h.ack, seq);
    assert_eq!(h.ack_bits & 0xF800_0000, 0xF800_0000, "{:08X}", h.ack_bits);
}

#[test]
fn bug_06_no_reply_to_forgotten_peers_and_nothing_unparseable_sent() {
    let cfg = EndpointConfig::default();
    let mut net = Net::new(cfg, 2, 66);
    let c1 = net.connect(1);
    let c2 = net.connect(2);
    net.run_for(Duration::from_millis(300));
    let s1 = net.server_conn_of(1).unwrap();
    let s2 = net.server_conn_of(2).unwrap();
    let keys = [None, Some(net.key_of(1, c1)), Some(net.key_of(2, c2))];
    // Busy traffic under 10 % loss: all sizes, all modes, both ways.
    let mut rng = TestRng::new(6);
    net.set_filter(move |_| if rng.chance(0.1) { Verdict::Drop } else { Verdict::Deliver });
    let modes = [Delivery::Reliable, Delivery::BestEffort, Delivery::Unreliable];
    for (i, n) in [0usize, 1, 100, 1432, 1433, 3000, 5000, 20].into_iter().enumerate() {
        let mode = modes[i % 3];
        net.eps[1].send(c1, &payload(n, 1), mode).unwrap();
        net.eps[2].send(c2, &payload(n, 2), mode).unwrap();
        net.eps[SERVER].send(s1, &payload(n, 3), mode).unwrap();
        net.eps[SERVER].send(s2, &payload(n, 4), mode).unwrap();
        net.run_for(Duration::from_millis(30));
    }
    net.run_for(Duration::from_secs(2));
    // Client 1 leaves; the server dismisses client 2.
    let now = net.now;
    net.eps[1].disconnect(now, c1).unwrap();
    net.eps[SERVER].disconnect(now, s2).unwrap();
    net.set_filter(|_| Verdict::Deliver);
    net.run_for(Duration::from_secs(3));
    assert_eq!(net.eps[SERVER].connection_count(), 0);
    assert!(net.eps[1].connection(c1).is_none() && net.eps[2].connection(c2).is_none());

    // Forgotten peers: AEAD traffic under the old keys gets no reply at all.
    let log = net.wire_log.len();
    let old: Vec<Datagram> = net
        .wire_log
        .iter()
        .filter(|d| d.to == addr(SERVER) && d.header().ty != MsgType::ClientHello)
        .cloned()
        .collect();
    let before = drops(&net.eps[SERVER]);
    let mut forged = 0;
    for client in [1, 2] {
        let key = keys[client].as_ref().unwrap();
        for (i, ty) in [MsgType::App, MsgType::Disconnect, MsgType::ChallengeResp].into_iter().enumerate() {
            let seq = 40_000 + i as u16;
            let d = forge_to_server(&net, key, client, seq, &[(seq, ty, b"")]);
            net.deliver_now(&d);
            forged += 1;
        }
        let keep_alive = craft(Some(key), Direction::ToServer, ctime_now(&net), 40_010, 0, 0, &[]);
        net.deliver_now(&dgram(&net, addr(client), addr(SERVER), keep_alive));
        forged += 1;
    }
    for d in &old {
        net.deliver_now(&dgram(&net, d.from, d.to, d.bytes.clone()));
        forged += 1;
    }
    assert_eq!(drop_delta(before, drops(&net.eps[SERVER])), [(DropReason::UnknownPeer, forged)]);
    // The same at the clients, whose connections are gone too.
    for client in [1, 2] {
        let key = keys[client].as_ref().unwrap();
        let d = craft(Some(key), Direction::ToClient, ctime_now(&net), 40_000, 0, 0, &[(40_000, MsgType::App, b"x")]);
        let before = drops(&net.eps[client]);
        net.deliver_now(&dgram(&net, addr(SERVER), addr(client), d));
        assert_eq!(drop_delta(before, drops(&net.eps[client])), [(DropReason::UnknownPeer, 1)]);
    }
    net.run_for(Duration::from_secs(2));
    assert_eq!(net.wire_log.len(), log, "no reply to anything");

    // Every datagram we emitted parses as a reference peer parses it.
    let padding = EndpointConfig::default().sizes().hello_padding;
    let mut kinds = BTreeMap::new();
    for d in &net.wire_log {
        let client = if d.from == addr(SERVER) {
            net.addrs.iter().position(|&a| a == d.to).unwrap()
        } else {
            net.addrs.iter().position(|&a| a == d.from).unwrap()
        };
        let dir = if d.from == addr(SERVER) { Direction::ToClient } else { Direction::ToServer };
        let hdr = Header::parse(&d.bytes, dir).expect("header parses");
        assert!(d.bytes.len() <= 1472 && hdr.seq != 0);
        *kinds.entry(hdr.ty as u8).or_insert(0) += 1;
        match hdr.ty {
            MsgType::ClientHello | MsgType::ServerHello => {
                assert_eq!(hdr.ty == MsgType::ServerHello, dir == Direction::ToClient);
                let (_, msgseq, ty, data) = crc_message(d);
                assert!(msgseq != 0 && ty == hdr.ty);
                if ty == MsgType::ClientHello {
                    handshake::parse_client_hello(&data, padding).unwrap();
                } else {
                    handshake::parse_server_hello(&data).unwrap();
                }
                assert_eq!(d.bytes.len(), HEADER_LEN + usize::from(hdr.length) + CRC_LEN);
            }
            _ => {
                assert_eq!(d.bytes.len(), HEADER_LEN + usize::from(hdr.length) + TAG_LEN);
                let (_, msgs) = decode(keys[client].as_ref().unwrap(), d);
                assert_eq!(msgs.len(), usize::from(hdr.count));
                assert_eq!(hdr.count == 0, hdr.ty == MsgType::KeepAlive);
                if let Some(first) = msgs.first() {
                    assert_eq!(first.1, hdr.ty);
                }
                for (msgseq, ty, data) in msgs {
                    assert_ne!(msgseq, 0);
                    match ty {
                        MsgType::ChallengeResp => {
                            assert_eq!(dir, Direction::ToServer);
                            handshake::parse_challenge_resp(&data).unwrap();
                        }
                        MsgType::Disconnect => assert!(data.is_empty()),
                        MsgType::App => {}
                        MsgType::AppFragment => {
                            let (h, chunk) = FragmentHeader::parse(&data).unwrap();
                            assert!(h.is_valid(8192) && !chunk.is_empty() && chunk.len() <= 1426);
                        }
                        ty => panic!("sent a {ty:?} message"),
                    }
                }
            }
        }
    }
    // The run covered every kind of datagram we send.
    assert_eq!(kinds.keys().copied().collect::<Vec<u8>>(), [1, 2, 3, 4, 5, 6, 7]);
}

#[test]
fn bug_07_spoofed_hellos_cannot_kill_a_live_session() {
    let (mut net, c, s) = Net::pair(EndpointConfig::default());
    let mut rng = Rng::new(Seed::from_u64(77));
    let padding = EndpointConfig::default().sizes().hello_padding;
    let log = net.wire_log.len();
    let mut spoofed = 0u64;
    let mut sent = 0u8;
    let t0 = net.now;
    while net.now < t0 + Duration::from_secs(6) {
        // A fresh, valid hello with a new ephemeral key and far-off
        // sequence numbers, spoofed from the client's address.
        let key = EphemeralKey::generate(&mut rng);
        let mut pad = alloc::vec![0u8; padding];
        rng.fill(&mut pad);
        let mut body = alloc::vec![0u8; handshake::CLIENT_HELLO_FIXED_LEN + padding];
        handshake::emit_client_hello(&mut body, &key.public_spki(), &pad).unwrap();
        let seq = (rng.u32() % 65_535 + 1) as u16;
        let bytes = craft(None, Direction::ToServer, 0, seq, 0, 0, &[(seq, MsgType::ClientHello, &body)]);
        net.deliver_now(&dgram(&net, addr(1), addr(SERVER), bytes));
        spoofed += 1;
        if spoofed.is_multiple_of(4) {
            net.eps[1].send(c, &[sent], Delivery::Reliable).unwrap();
            net.eps[SERVER].send(s, &[sent], Delivery::Reliable).unwrap();
            sent += 1;
        }
        net.run_for(Duration::from_millis(50));
    }
    net.run_for(Duration::from_millis(500));
    assert_eq!(drop_delta([0; DropReason::ALL.len()], drops(&net.eps[SERVER])), [(DropReason::Unexpected, spoofed)]);
    let want: Vec<Vec<u8>> = (0..sent).map(|i| alloc::vec![i]).collect();
    assert_eq!(net.messages(SERVER), want);
    assert_eq!(net.messages(1), want);
    assert_eq!(net.server_conn_of(1), Some(s));
    for ep in [SERVER, 1] {
        let ends =
            net.events[ep].iter().filter(|e| matches!(e, Event::Connected { .. } | Event::Disconnected { .. })).count();
        assert_eq!(ends, 1, "only the original Connected: {}", describe(&net.events[ep]));
    }
    // No SERVER_HELLO in answer, and the client never sends a hello again.
    for d in &net.wire_log[log..] {
        assert!(!matches!(d.header().ty, MsgType::ServerHello | MsgType::ClientHello));
    }
}

#[test]
fn bug_08_replayed_old_packets_and_messages_are_not_delivered_again() {
    let (mut net, c, s) = Net::pair(EndpointConfig::default());
    for i in 0..40u8 {
        net.eps[1].send(c, &[i], Delivery::Reliable).unwrap();
        net.eps[SERVER].send(s, &[i], Delivery::Reliable).unwrap();
        net.run_for(Duration::from_millis(50));
    }
    net.run_for(Duration::from_millis(500));
    let want: Vec<Vec<u8>> = (0..40u8).map(|i| alloc::vec![i]).collect();
    assert_eq!(net.messages(SERVER), want);
    assert_eq!(net.messages(1), want);
    let key = net.key_of(1, c);
    let last = silence_client(&mut net, 1);
    assert!(last > 50, "{last}");

    // Replay everything both ways: nothing is delivered again.
    let aead = |d: &&Datagram| !matches!(d.header().ty, MsgType::ClientHello | MsgType::ServerHello);
    let up: Vec<Datagram> = net
        .wire_log
        .iter()
        .filter(|d| d.from == addr(1))
        .filter(aead)
        .filter(|d| crate::mpgs1::seq::diff(d.header().seq, last) <= 0)
        .cloned()
        .collect();
    let arrived = |d: &&Datagram| d.sent + net.latency <= net.now;
    let down: Vec<Datagram> =
        net.wire_log.iter().filter(|d| d.from == addr(SERVER)).filter(aead).filter(arrived).cloned().collect();
    let before = (drops(&net.eps[SERVER]), drops(&net.eps[1]));
    for d in up.iter().chain(&down) {
        net.deliver_now(d);
    }
    assert_eq!(drop_delta(before.0, drops(&net.eps[SERVER])), [(DropReason::Replay, up.len() as u64)]);
    assert_eq!(drop_delta(before.1, drops(&net.eps[1])), [(DropReason::Replay, down.len() as u64)]);
    assert_eq!(net.messages(SERVER).len(), 40);
    assert_eq!(net.messages(1).len(), 40);

    // Forged: a packet seq 40 behind the newest (outside the 32-packet
    // window) with a message never seen, and messages around the
    // 1024-entry message window.
    let forge = |net: &mut Net, seq: u16, msgseq: u16, data: &[u8]| {
        let d = forge_to_server(net, &key, 1, seq, &[(msgseq, MsgType::App, data)]);
        net.deliver_now(&d);
    };
    let before = drops(&net.eps[SERVER]);
    forge(&mut net, last - 40, 30_000, b"stale packet");
    assert_eq!(drop_delta(before, drops(&net.eps[SERVER])), [(DropReason::Replay, 1)]);
    forge(&mut net, last + 1, 2_000, b"jump");
    forge(&mut net, last + 2, 2_000 - 1_025, b"older than the message window");
    forge(&mut net, last + 3, 2_000 - 1_024, b"oldest in the message window");
    forge(&mut net, last + 4, 2_000 - 300, b"older than the reference's window");
    forge(&mut net, last + 4, 2_001, b"duplicate packet");
    let got = net.messages(SERVER);
    assert_eq!(
        got[40..],
        [b"jump".to_vec(), b"oldest in the message window".to_vec(), b"older than the reference's window".to_vec()]
    );
    let m = net.eps[SERVER].connection(s).unwrap().metrics();
    assert!(m.duplicate_messages >= 1);
    assert_eq!(drop_delta(before, drops(&net.eps[SERVER])), [(DropReason::Replay, 2)]);
}

#[test]
fn bug_09_pending_handshakes_are_capped_and_never_half_open() {
    let cfg = EndpointConfig { max_pending_handshakes: 3, ..EndpointConfig::default() };
    // Four clients at once against a cap of three; the server's replies
    // are lost at first, so handshakes stay pending. The table never holds
    // more than three: the fourth hello evicts the oldest pending handshake
    // (before its reply went out) rather than being refused, so a table
    // filled by a flood cannot lock new clients out.
    let mut net = Net::new(cfg.clone(), 4, 91);
    net.set_filter(|d| if d.from == addr(SERVER) { Verdict::Drop } else { Verdict::Deliver });
    let conns: Vec<ConnectionId> = (1..=4).map(|i| net.connect(i)).collect();
    net.run_for(Duration::from_millis(100));
    assert_eq!(drop_delta([0; DropReason::ALL.len()], drops(&net.eps[SERVER])), []);
    assert_eq!(net.eps[SERVER].pending_handshakes(), 3);
    assert_eq!(net.eps[SERVER].stats().handshakes_evicted, 1);
    assert!(net.eps[SERVER].connection_by_addr(addr(1)).is_none(), "the oldest was evicted");
    let replied: Vec<usize> =
        (1..=4).map(|i| net.wire_log.iter().filter(|d| d.from == addr(SERVER) && d.to == addr(i)).count()).collect();
    assert_eq!(replied, [0, 1, 1, 1], "the evicted handshake's reply never goes out");
    // Once replies get through, every client gets in.
    net.set_filter(|_| Verdict::Deliver);
    net.run_for(Duration::from_secs(1));
    for (i, &c) in conns.iter().enumerate() {
        assert!(net.events[i + 1].contains(&Event::Connected { conn: c }), "client {}", i + 1);
    }
    assert_eq!(net.eps[SERVER].connection_count(), 4);

    // Every CHALLENGE_RESP lost: neither side ends up connected, and the
    // address is free for a new attempt.
    let mut net = Net::new(cfg, 1, 92);
    net.set_filter(|d| {
        if d.from == addr(1) && d.header().ty == MsgType::ChallengeResp { Verdict::Drop } else { Verdict::Deliver }
    });
    let c = net.connect(1);
    net.eps[1].send(c, b"never", Delivery::Reliable).unwrap();
    net.run_for(Duration::from_secs(6));
    assert!(!net.events[1].iter().any(|e| matches!(e, Event::Connected { .. })));
    assert!(net.events[1].iter().any(|e| matches!(e, Event::ConnectFailed { .. })));
    assert!(net.events[SERVER].is_empty(), "{}", describe(&net.events[SERVER]));
    assert_eq!(net.eps[SERVER].connection_count(), 0);
    assert!(
        net.wire_log
            .iter()
            .filter(|d| d.from == addr(1))
            .all(|d| matches!(d.header().ty, MsgType::ClientHello | MsgType::ChallengeResp)),
        "the client sent nothing as if connected"
    );
    net.set_filter(|_| Verdict::Deliver);
    let c = net.connect(1);
    assert!(net.run_until(Duration::from_secs(1), |n| n.events[1].contains(&Event::Connected { conn: c })));
}

#[test]
fn bug_10_sixty_hz_caller_sends_about_sixty_datagrams_a_second() {
    let (mut net, c, s) = Net::pair(EndpointConfig::default());
    // 1000-byte messages: one per datagram; far more than 3 s worth.
    for i in 0..400 {
        net.eps[SERVER].send(s, &payload(1000, i as u8), Delivery::Unreliable).unwrap();
    }
    // From here a game loop drives both endpoints by hand: handle_timeout
    // at 60 Hz with ±2 ms jitter, zero latency, every datagram delivered.
    let mut rng = TestRng::new(10);
    let mut buf = [0u8; MAX_DATAGRAM];
    let base = net.now + Duration::from_millis(1);
    let mut per_tick = Vec::new();
    for k in 0..180u64 {
        let jitter = (rng.next() % 4001) as i64 - 2000;
        let t = Instant::from_micros((base.as_micros() as i64 + k as i64 * 16_667 + jitter) as u64);
        net.eps[SERVER].handle_timeout(t);
        net.eps[1].handle_timeout(t);
        let mut sent = 0;
        loop {
            let mut moved = false;
            while let Some(tx) = net.eps[SERVER].poll_transmit(t, &mut buf) {
                assert_eq!(tx.destination, addr(1));
                sent += 1;
                net.eps[1].handle_datagram(t, addr(SERVER), &mut buf[..tx.len].to_vec());
                moved = true;
            }
            while let Some(tx) = net.eps[1].poll_transmit(t, &mut buf) {
                net.eps[SERVER].handle_datagram(t, addr(1), &mut buf[..tx.len].to_vec());
                moved = true;
            }
            if !moved {
                break;
            }
        }
        while net.eps[1].poll_event().is_some() {}
        while net.eps[SERVER].poll_event().is_some() {}
        per_tick.push(sent);
    }
    let total: usize = per_tick.iter().sum();
    let idle = per_tick.iter().filter(|&&n| n == 0).count();
    // 180 ticks in 3 s: about 60 datagrams/s, not the reference's 30.
    assert!((171..=182).contains(&total), "{total} datagrams: {per_tick:?}");
    assert!(idle <= 9, "{idle} ticks without a datagram: {per_tick:?}");
    assert!(per_tick.iter().all(|&n| n <= 2), "{per_tick:?}");
    assert!(net.eps[1].connection(c).unwrap().metrics().messages_received >= 170);
}

#[test]
fn bug_11_wrong_challenge_token_is_rejected_cleanly() {
    let mut net = Net::new(EndpointConfig::default(), 2, 111);
    // Both clients get their SERVER_HELLO, but their CHALLENGE_RESPs are lost.
    net.set_filter(|d| {
        if d.header().ty == MsgType::ChallengeResp && d.from != addr(SERVER) { Verdict::Drop } else { Verdict::Deliver }
    });
    let c1 = net.connect(1);
    let c2 = net.connect(2);
    net.run_for(Duration::from_millis(100));
    let pending_since = Instant::from_millis(10); // when the hellos arrived
    let wrong_challenge = |net: &Net, i: usize, c: ConnectionId, seq: u16| {
        let token = net.eps[i].connection(c).unwrap().token().unwrap();
        let mut body = [0u8; handshake::CHALLENGE_RESP_LEN];
        handshake::emit_challenge_resp(&mut body, token ^ 1);
        forge_to_server(net, &net.key_of(i, c), i, seq, &[(2, MsgType::ChallengeResp, &body)])
    };
    // A wrong token under the right key: dropped as an authentication failure.
    for i in [1, 2] {
        let c = [c1, c2][i - 1];
        let d = wrong_challenge(&net, i, c, 2);
        let before = drops(&net.eps[SERVER]);
        let log = net.wire_log.len();
        net.deliver_now(&d);
        assert_eq!(drop_delta(before, drops(&net.eps[SERVER])), [(DropReason::AuthFailed, 1)]);
        assert_eq!(net.wire_log.len(), log, "no answer");
    }
    assert!(net.events[SERVER].is_empty());
    // Client 2's first genuine CHALLENGE_RESP (the same packet seq as the
    // forged one) still completes the handshake.
    let genuine =
        net.wire_log.iter().find(|d| d.from == addr(2) && d.header().ty == MsgType::ChallengeResp).unwrap().clone();
    assert_eq!(genuine.header().seq, 2);
    net.deliver_now(&genuine);
    assert_eq!(net.events[SERVER].len(), 1, "{}", describe(&net.events[SERVER]));
    net.run_for(Duration::from_millis(50));
    assert!(net.events[2].contains(&Event::Connected { conn: c2 }));
    assert_eq!(net.eps[SERVER].connection_count(), 1);
    // Client 1's pending entry expires at the handshake timeout: a wrong
    // token 1 ms before is still an authentication failure, 1 ms after it
    // comes from an unknown address.
    let expiry = pending_since + EndpointConfig::default().handshake_timeout;
    net.run_for(expiry - net.now - Duration::from_millis(1));
    let d = wrong_challenge(&net, 1, c1, 3);
    let before = drops(&net.eps[SERVER]);
    net.deliver_now(&d);
    assert_eq!(drop_delta(before, drops(&net.eps[SERVER])), [(DropReason::AuthFailed, 1)]);
    net.run_for(Duration::from_millis(1));
    let d = wrong_challenge(&net, 1, c1, 4);
    let before = drops(&net.eps[SERVER]);
    net.deliver_now(&d);
    assert_eq!(drop_delta(before, drops(&net.eps[SERVER])), [(DropReason::UnknownPeer, 1)]);
    assert_eq!(net.events[SERVER].len(), 1, "{}", describe(&net.events[SERVER]));
}

#[test]
fn bug_12_reassembly_expires_by_injected_time() {
    let (mut net, c, _s) = Net::pair(EndpointConfig::default());
    let key = net.key_of(1, c);
    let last = silence_client(&mut net, 1);
    let msg = payload(3000, 12);
    let frag = |index: u16| {
        let r = fragment::fragment_range(3000, 1434, usize::from(index) - 1);
        let mut d = alloc::vec![0, 1, 0, index as u8, 0, 3];
        d.extend_from_slice(&msg[r]);
        d
    };
    let d = forge_to_server(&net, &key, 1, last + 1, &[(500, MsgType::AppFragment, &frag(1))]);
    net.deliver_now(&d);
    let t0 = net.now;
    let mut seq = last + 2;
    // Forged keep-alives every second hold the session (the real client is
    // silenced); nothing else arrives. The reassembly's lifetime is
    // max(1 + 0.5·3 s, connection_timeout + ack_timeout) = 6 s.
    let deadline = t0 + Duration::from_secs(6);
    let expired = |n: &Net| n.eps[SERVER].stats().reassemblies_expired;
    for _ in 0..5 {
        net.run_for(Duration::from_secs(1));
        let ka = forge_to_server(&net, &key, 1, seq, &[]);
        seq += 1;
        net.deliver_now(&ka);
        assert_eq!(expired(&net), 0, "at {}", net.now);
    }
    // Expiry is a timer: it runs at the deadline with no fragment arriving.
    assert!(net.eps[SERVER].poll_timeout().unwrap() <= deadline);
    assert!(net.run_until(Duration::from_secs(3), |n| expired(n) == 1));
    assert_eq!(net.now, deadline);
    // The stale fragment is gone: the rest of the message cannot complete it.
    for index in [2u16, 3] {
        let d = forge_to_server(&net, &key, 1, seq, &[(500 + index - 1, MsgType::AppFragment, &frag(index))]);
        seq += 1;
        net.deliver_now(&d);
    }
    assert!(net.messages(SERVER).is_empty());
    // A caller that polls late still expires what is due, in one call.
    let ka = forge_to_server(&net, &key, 1, seq, &[]);
    net.eps[SERVER].handle_timeout(net.now + Duration::from_secs(4));
    net.deliver_now(&ka);
    net.eps[SERVER].handle_timeout(net.now + Duration::from_secs(6));
    assert_eq!(expired(&net), 2);
    assert!(net.messages(SERVER).is_empty());
}
