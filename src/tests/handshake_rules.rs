//! The handshake and robustness rules of PROTOCOL.md §15: rules 7, 8, 9,
//! 11, 12, 18 and 19, one test per rule, named after it.

use alloc::vec::Vec;
use core::net::SocketAddr;

use super::forge::*;
use super::harness::*;
use crate::mpgs1::wire::{Direction, Header, MsgType};
use crate::{
    ConnectFailure, Delivery, DisconnectReason, DropReason, Duration, EndpointConfig, Event, Instant, Rng, Seed,
    ServerKey,
};

/// An address no endpoint of the harness uses.
fn stranger() -> SocketAddr {
    addr(99)
}

fn is_type(d: &Datagram, from: SocketAddr, ty: MsgType) -> bool {
    d.from == from && d.header().ty == ty
}

/// Delivers `d` now and checks that exactly one datagram was dropped at
/// endpoint `at`, for `reason`, with no event and nothing sent in reply.
fn expect_drop(net: &mut Net, at: usize, d: Datagram, reason: DropReason, what: &str) {
    let before = drops(&net.eps[at]);
    let events = (net.events[SERVER].len(), net.events[at].len());
    let log = net.wire_log.len();
    net.deliver_now(&d);
    assert_eq!(drop_delta(before, drops(&net.eps[at])), [(reason, 1)], "{what}");
    assert_eq!((net.events[SERVER].len(), net.events[at].len()), events, "{what}: no event");
    assert_eq!(net.wire_log.len(), log, "{what}: nothing sent in reply");
}

/// [`expect_drop`] for `bytes` from `from` to endpoint `at`.
fn expect_drop_from(net: &mut Net, at: usize, from: SocketAddr, bytes: Vec<u8>, reason: DropReason, what: &str) {
    let d = dgram(net, from, addr(at), bytes);
    expect_drop(net, at, d, reason, what);
}

/// Sends one message each way and checks both arrive within 0.5 s.
fn exchange(net: &mut Net, client: usize, c: crate::ConnectionId, s: crate::ConnectionId, tag: u8) {
    let (up, down) = (payload(40, tag), payload(50, tag));
    let before = (net.messages(SERVER).len(), net.messages(client).len());
    net.eps[client].send(c, &up, Delivery::Reliable).unwrap();
    net.eps[SERVER].send(s, &down, Delivery::Reliable).unwrap();
    net.run_for(Duration::from_millis(500));
    assert_eq!(net.messages(SERVER)[before.0..], [up]);
    assert_eq!(net.messages(client)[before.1..], [down]);
}

#[test]
fn rule_07_hello_from_established_address_is_dropped_and_changes_nothing() {
    let mut net = Net::new(EndpointConfig::default(), 2, 21);
    // Client 2 only provides a genuine hello with another ephemeral key.
    net.set_filter(|d| if d.from == addr(2) { Verdict::Drop } else { Verdict::Deliver });
    let c = net.connect(1);
    net.connect(2);
    net.run_for(Duration::from_millis(300));
    let s = net.server_conn_of(1).expect("handshake completed");
    assert!(net.events[1].contains(&Event::Connected { conn: c }));
    let own = net.wire_log.iter().find(|d| d.from == addr(1)).unwrap().clone();
    let other = net.wire_log.iter().find(|d| d.from == addr(2)).unwrap().clone();
    let (_, _, own_ty, own_body) = crc_message(&own);
    let (_, _, _, other_body) = crc_message(&other);
    assert_eq!(own_ty, MsgType::ClientHello);
    assert_ne!(own_body, other_body, "two ephemeral keys");
    // The reference re-keys when a hello's seqs fall outside its windows:
    // also try copies with far-away packet and message sequence numbers.
    let resequenced =
        |body: &[u8], seq: u16| craft(None, Direction::ToServer, 0, seq, 0, 0, &[(seq, MsgType::ClientHello, body)]);
    let hellos =
        [own.bytes.clone(), other.bytes.clone(), resequenced(&own_body, 30_000), resequenced(&other_body, 40_000)];
    let key = net.key_of(SERVER, s);
    let server_events = net.events[SERVER].clone();
    let before = drops(&net.eps[SERVER]);
    let log = net.wire_log.len();
    for bytes in &hellos {
        expect_drop_from(
            &mut net,
            SERVER,
            addr(1),
            bytes.clone(),
            DropReason::Unexpected,
            "hello from an established address",
        );
        assert_eq!(net.eps[SERVER].connection_count(), 1);
        assert_eq!(net.server_conn_of(1), Some(s));
    }
    assert_eq!(drop_delta(before, drops(&net.eps[SERVER])), [(DropReason::Unexpected, 4)]);
    // The session is undisturbed: same key, messages both ways, no event
    // but the messages and their reports.
    exchange(&mut net, 1, c, s, 1);
    for d in sent_between(&net, log, addr(SERVER), addr(1)) {
        assert_ne!(d.header().ty, MsgType::ServerHello, "no new handshake");
        decode(&key, &d); // still the original session key
    }
    assert!(
        net.events[SERVER][server_events.len()..]
            .iter()
            .all(|e| matches!(e, Event::Message { .. } | Event::Delivered { .. })),
        "{}",
        describe(&net.events[SERVER])
    );

    // Hellos do not refresh timers: with only hellos arriving from the
    // client's address, the connection times out after connection_timeout.
    net.set_filter(|d| if d.from == addr(1) || d.from == addr(2) { Verdict::Drop } else { Verdict::Deliver });
    let t0 = net.now;
    let before = drops(&net.eps[SERVER]);
    let mut sent = 0;
    let timed_out =
        |n: &Net| n.events[SERVER].contains(&Event::Disconnected { conn: s, reason: DisconnectReason::TimedOut });
    loop {
        assert!(net.now < t0 + Duration::from_secs(6), "hellos kept the connection alive");
        for bytes in &hellos {
            net.deliver_now(&dgram(&net, addr(1), addr(SERVER), bytes.clone()));
            sent += 1;
        }
        if net.run_until(Duration::from_millis(250), timed_out) {
            break;
        }
    }
    // The last genuine datagram arrived between 0.1 s before and 10 ms after t0.
    let waited = net.now - t0;
    assert!((Duration::from_millis(4_900)..=Duration::from_millis(5_010)).contains(&waited), "{waited:?}");
    assert_eq!(drop_delta(before, drops(&net.eps[SERVER])), [(DropReason::Unexpected, sent)]);
}

#[test]
fn rule_08_client_repeats_handshake_messages_and_waits_for_confirmation() {
    let cfg = EndpointConfig::default();
    let ms = Duration::from_millis;

    // (a) The first three CLIENT_HELLOs are lost.
    let mut net = Net::new(cfg.clone(), 1, 31);
    let mut lose = 3;
    net.set_filter(move |d| {
        if is_type(d, addr(1), MsgType::ClientHello) && lose > 0 {
            lose -= 1;
            Verdict::Drop
        } else {
            Verdict::Deliver
        }
    });
    let c = net.connect(1);
    // Queued at once; it must wait for the handshake.
    let early = net.eps[1].send(c, b"early", Delivery::Reliable).unwrap();
    let connected = |n: &Net| n.events[1].contains(&Event::Connected { conn: c });
    assert!(net.run_until(Duration::from_secs(5), connected));
    let connected_at = net.now;
    let key = net.key_of(1, c);
    let hellos: Vec<Datagram> =
        net.wire_log.iter().filter(|d| is_type(d, addr(1), MsgType::ClientHello)).cloned().collect();
    let times: Vec<u64> = hellos.iter().map(|d| d.sent.as_micros()).collect();
    assert_eq!(times, [0, 250_000, 500_000, 750_000], "a copy every 0.25 s");
    let (_, _, _, body) = crc_message(&hellos[0]);
    for (i, h) in hellos.iter().enumerate() {
        let (hdr, msgseq, ty, data) = crc_message(h);
        assert_eq!((msgseq, ty), (1, MsgType::ClientHello), "copy {i}");
        assert_eq!(data, body, "copy {i}: same body and ephemeral key");
        assert_eq!(hdr.seq, i as u16 + 1, "copy {i}: a new packet seq");
        assert_eq!(h.bytes.len(), 1438);
    }
    // Before Connected the client sent the handshake and nothing else.
    let mut challenges = 0;
    for d in net.wire_log.iter().filter(|d| d.from == addr(1) && d.sent < connected_at) {
        match d.header().ty {
            MsgType::ClientHello => {}
            MsgType::ChallengeResp => {
                let (_, msgs) = decode(&key, d);
                assert_eq!(msgs.len(), 1, "the challenge travels alone");
                assert_eq!((msgs[0].0, msgs[0].1), (2, MsgType::ChallengeResp));
                challenges += 1;
            }
            ty => panic!("client sent {ty:?} before Connected"),
        }
    }
    assert_eq!(challenges, 1);
    // Connected comes with the server's first authenticated datagram, not
    // with the SERVER_HELLO (one round trip earlier).
    let hello_arrival =
        net.wire_log.iter().find(|d| is_type(d, addr(SERVER), MsgType::ServerHello)).unwrap().sent + net.latency;
    assert!(connected_at >= hello_arrival + net.latency * 2);
    let confirmation =
        net.wire_log.iter().find(|d| d.from == addr(SERVER) && d.header().ty != MsgType::ServerHello).unwrap();
    assert_eq!(confirmation.sent + net.latency, connected_at);
    assert_eq!(net.events[1], [Event::Connected { conn: c }], "nothing before Connected");
    // The early message goes out now; a message queued while it is still
    // in flight must not reuse the challenge's msgseq.
    let later = net.eps[1].send(c, b"later", Delivery::Reliable).unwrap();
    net.run_for(ms(500));
    assert_eq!(net.messages(SERVER), [b"early".to_vec(), b"later".to_vec()]);
    for id in [early, later] {
        assert!(net.events[1].contains(&Event::Delivered { conn: c, id }));
    }

    // (b) The first two CHALLENGE_RESPs are lost.
    let mut net = Net::new(cfg.clone(), 1, 32);
    let mut lose = 2;
    net.set_filter(move |d| {
        if is_type(d, addr(1), MsgType::ChallengeResp) && lose > 0 {
            lose -= 1;
            Verdict::Drop
        } else {
            Verdict::Deliver
        }
    });
    let c = net.connect(1);
    let connected = |n: &Net| n.events[1].contains(&Event::Connected { conn: c });
    assert!(net.run_until(Duration::from_secs(5), connected));
    let connected_at = net.now;
    let key = net.key_of(1, c);
    let challenges: Vec<Datagram> =
        net.wire_log.iter().filter(|d| is_type(d, addr(1), MsgType::ChallengeResp)).cloned().collect();
    assert_eq!(challenges.len(), 3);
    let (_, first) = decode(&key, &challenges[0]);
    assert_eq!(first.len(), 1);
    assert_eq!((first[0].0, first[0].1), (2, MsgType::ChallengeResp));
    for (i, d) in challenges.iter().enumerate() {
        assert_eq!(d.sent, challenges[0].sent + ms(250) * i as u32);
        assert_eq!(d.bytes.len(), 49);
        let (hdr, msgs) = decode(&key, d);
        assert_eq!(msgs, first, "copy {i}: same msgseq and body");
        assert_eq!(hdr.seq, i as u16 + 2, "copy {i}: a new packet seq");
    }
    // Confirmed by the server's reply to the third copy.
    assert_eq!(connected_at, challenges[2].sent + net.latency * 2);
    assert_eq!(net.events[SERVER].iter().filter(|e| matches!(e, Event::Connected { .. })).count(), 1);

    // (c) No authenticated server datagram ever arrives: CHALLENGE_RESP
    // copies every 0.25 s, then failure at the 5 s connect timeout.
    let mut net = Net::new(cfg, 1, 33);
    net.set_filter(|d| {
        if d.from == addr(SERVER) && d.header().ty != MsgType::ServerHello { Verdict::Drop } else { Verdict::Deliver }
    });
    let c = net.connect(1);
    let early = net.eps[1].send(c, b"early", Delivery::Reliable).unwrap();
    let failed = |n: &Net| n.events[1].iter().any(|e| matches!(e, Event::ConnectFailed { .. }));
    assert!(net.run_until(Duration::from_secs(6), failed));
    assert_eq!(net.now, Instant::from_secs(5));
    assert_eq!(
        net.events[1],
        [
            Event::Lost { conn: c, id: early, reason: crate::LossReason::ConnectionClosed },
            Event::ConnectFailed { conn: c, reason: ConnectFailure::TimedOut }
        ]
    );
    // The server did confirm (and is still up); decode with its key.
    let s = net.server_conn_of(1).expect("server side established");
    let key = net.key_of(SERVER, s);
    net.run_for(Duration::from_secs(1));
    let sent: Vec<&Datagram> = net.wire_log.iter().filter(|d| d.from == addr(1)).collect();
    assert_eq!(sent[0].header().ty, MsgType::ClientHello);
    let later = &sent[1..];
    assert_eq!(later.len(), 20, "a copy every 0.25 s from 0.02 s until the 5 s connect timeout");
    for (i, d) in later.iter().enumerate() {
        assert_eq!(d.sent, later[0].sent + ms(250) * i as u32);
    }
    // CHALLENGE_RESP copies for a handshake timeout (2 s) after the
    // SERVER_HELLO, then — the server may have forgotten us — copies of the
    // identical CLIENT_HELLO.
    let (challenges, hellos) = later.split_at(8);
    for d in challenges {
        let (_, msgs) = decode(&key, d);
        assert_eq!(msgs.len(), 1);
        assert_eq!((msgs[0].0, msgs[0].1), (2, MsgType::ChallengeResp));
    }
    let (_, _, _, first_hello) = crc_message(sent[0]);
    for d in hellos {
        let (_, msgseq, ty, data) = crc_message(d);
        assert_eq!((msgseq, ty, &data), (1, MsgType::ClientHello, &first_hello));
    }
    assert!(challenges.last().unwrap().sent < Instant::from_secs(5));
    assert!(net.messages(SERVER).is_empty());
}

#[test]
fn rule_09_repeated_hello_gets_the_same_server_hello_other_keys_wait() {
    let cfg = EndpointConfig::default();

    // (a) The first SERVER_HELLO is lost; the client's next hello recovers it.
    let mut net = Net::new(cfg.clone(), 1, 41);
    let mut lose = 1;
    net.set_filter(move |d| {
        if is_type(d, addr(SERVER), MsgType::ServerHello) && lose > 0 {
            lose -= 1;
            Verdict::Drop
        } else {
            Verdict::Deliver
        }
    });
    let c = net.connect(1);
    let connected = |n: &Net| n.events[1].contains(&Event::Connected { conn: c });
    assert!(net.run_until(Duration::from_secs(2), connected));
    assert!(
        net.now < Instant::from_millis(400),
        "recovered at the first repeat, not after the 2 s expiry: {}",
        net.now
    );
    let replies: Vec<_> =
        net.wire_log.iter().filter(|d| is_type(d, addr(SERVER), MsgType::ServerHello)).map(crc_message).collect();
    let hellos: Vec<_> =
        net.wire_log.iter().filter(|d| is_type(d, addr(1), MsgType::ClientHello)).map(crc_message).collect();
    assert_eq!((replies.len(), hellos.len()), (2, 2));
    assert_eq!((replies[0].1, replies[0].2), (replies[1].1, replies[1].2), "same msgseq");
    assert_eq!(replies[0].3, replies[1].3, "same SERVER_HELLO body");
    assert_eq!((replies[0].0.seq, replies[1].0.seq), (1, 2), "new datagrams");
    assert_eq!(replies[1].0.ack, hellos[1].0.seq, "acks the repeated hello");

    // (b) Driven by hand: every datagram on the wire is lost, and the
    // test delivers hellos to the server itself.
    let mut net = Net::new(cfg, 2, 42);
    net.set_filter(|_| Verdict::Drop);
    net.connect(1);
    net.connect(2);
    net.run_for(Duration::from_millis(300));
    let h1: Vec<Datagram> = net.wire_log.iter().filter(|d| d.from == addr(1)).cloned().collect();
    let h2 = net.wire_log.iter().find(|d| d.from == addr(2)).unwrap().clone();
    assert_eq!(h1.len(), 2);
    let replies = |n: &Net| -> Vec<(Header, u16, MsgType, Vec<u8>)> {
        n.wire_log.iter().filter(|d| is_type(d, addr(SERVER), MsgType::ServerHello)).map(crc_message).collect()
    };
    let as_client_1 = |n: &Net, d: &Datagram| dgram(n, addr(1), addr(SERVER), d.bytes.clone());
    let pending_since = net.now;
    net.deliver_now(&as_client_1(&net, &h1[0]));
    assert_eq!(replies(&net).len(), 1);
    // Another ephemeral key from the pending address: dropped, no reply.
    expect_drop_from(
        &mut net,
        SERVER,
        addr(1),
        h2.bytes.clone(),
        DropReason::Unexpected,
        "hello with another key while pending",
    );
    // The repeated hello (same key, new packet seq): the same SERVER_HELLO again.
    net.deliver_now(&as_client_1(&net, &h1[1]));
    let r = replies(&net);
    assert_eq!(r.len(), 2);
    assert_eq!((r[1].1, &r[1].3), (r[0].1, &r[0].3));
    assert_eq!((r[0].0.seq, r[1].0.seq), (1, 2));
    expect_drop_from(
        &mut net,
        SERVER,
        addr(1),
        h2.bytes.clone(),
        DropReason::Unexpected,
        "hello with another key while pending, again",
    );
    // Until the pending entry expires, that is.
    let expiry = pending_since + EndpointConfig::default().handshake_timeout;
    net.run_for(expiry - net.now - Duration::from_millis(1));
    expect_drop_from(
        &mut net,
        SERVER,
        addr(1),
        h2.bytes.clone(),
        DropReason::Unexpected,
        "1 ms before the pending entry expires",
    );
    net.run_for(Duration::from_millis(1));
    let before = drops(&net.eps[SERVER]);
    net.deliver_now(&as_client_1(&net, &h2));
    assert!(drop_delta(before, drops(&net.eps[SERVER])).is_empty());
    let r = replies(&net);
    assert_eq!(r.len(), 3, "a new handshake for the other key");
    assert_ne!(r[2].3, r[0].3);
}

#[test]
fn rule_11_malformed_datagrams_are_dropped_and_counted_by_reason() {
    let mut net = Net::new(EndpointConfig::default(), 2, 51);
    // Client 2 stays in its handshake: the server's replies to it are lost.
    net.set_filter(|d| if d.to == addr(2) { Verdict::Drop } else { Verdict::Deliver });
    let c = net.connect(1);
    let c2 = net.connect(2);
    net.run_for(Duration::from_millis(300));
    let s = net.server_conn_of(1).expect("client 1 connected");
    let key = net.key_of(1, c);
    let valid = |net: &Net, seq: u16| forge_to_server(net, &key, 1, seq, &[(5000 + seq, MsgType::App, b"data")]);
    let mutate = |mut d: Datagram, f: &dyn Fn(&mut Vec<u8>)| {
        f(&mut d.bytes);
        d
    };
    use DropReason::*;

    // At the server, from the established client's address.
    let v = valid(&net, 1000);
    let cases: Vec<(Datagram, DropReason, &str)> = alloc::vec![
        (mutate(v.clone(), &|b| b.clear()), Malformed, "empty"),
        (mutate(v.clone(), &|b| b.truncate(19)), Malformed, "19 bytes"),
        (mutate(v.clone(), &|b| b[..4].copy_from_slice(b"XXXX")), Malformed, "bad magic"),
        (mutate(v.clone(), &|b| b[3] = b'T'), Malformed, "one magic byte off"),
        (
            dgram(&net, addr(1), addr(SERVER), craft(Some(&key), Direction::ToClient, 0, 1001, 0, 0, &[])),
            Malformed,
            "server-to-client magic"
        ),
        (mutate(v.clone(), &|b| b[12] = 8), Malformed, "type 8"),
        (mutate(v.clone(), &|b| b[12] = 255), Malformed, "type 255"),
        (
            mutate(v.clone(), &|b| {
                let len = u16::from_be_bytes([b[13], b[14]]) + 1;
                b[13..15].copy_from_slice(&len.to_be_bytes());
            }),
            Malformed,
            "length beyond the datagram"
        ),
        (mutate(v.clone(), &|b| b[13..15].copy_from_slice(&[0xFF, 0xFF])), Malformed, "length 65535"),
        (mutate(v.clone(), &|b| b[HEADER_PAYLOAD] ^= 1), AuthFailed, "ciphertext byte flipped"),
        (mutate(v.clone(), &|b| *b.last_mut().unwrap() ^= 0x80), AuthFailed, "tag byte flipped"),
        (mutate(v.clone(), &|b| b[17] ^= 1), AuthFailed, "ack_bits (AAD) changed"),
    ];
    for (d, reason, what) in cases {
        expect_drop(&mut net, SERVER, d, reason, what);
    }
    // Bad framing under a valid tag.
    let ctime = ctime_now(&net);
    let header = |count: u8| Header {
        dir: Direction::ToServer,
        ctime,
        seq: 1002,
        ack: 0,
        ty: MsgType::App,
        length: 0,
        count,
        ack_bits: 0,
    };
    let framings: [(u8, &[u8], &str); 5] = [
        (2, &[0, 50, 0, 100, 6, b'x'], "record overruns the payload"),
        (2, &[0, 1, 0, 100, 6, b'x', 0, 1, 0, 101, 6, b'y', 0], "bytes after the last record"),
        (2, &[0, 1, 0, 100, 6, b'x', 0, 1, 0, 101, 9, b'y'], "record type 9"),
        (3, &[0, 1, 0, 100, 6, b'x', 0, 1, 0, 101, 6, b'y'], "count 3, two records"),
        (1, &[0], "one message without its msgseq"),
    ];
    for (count, payload, what) in framings {
        let d = dgram(&net, addr(1), addr(SERVER), seal_raw(&key, header(count), payload));
        expect_drop(&mut net, SERVER, d, Malformed, what);
    }
    // From an unknown address: hellos with a bad CRC or body, anything else.
    let hello = net.wire_log.iter().find(|d| d.from == addr(2)).unwrap().clone();
    let (_, _, _, hello_body) = crc_message(&hello);
    let from_stranger = |net: &Net, bytes: Vec<u8>| dgram(net, stranger(), addr(SERVER), bytes);
    let mut bad_version = hello_body.clone();
    assert_eq!(bad_version[98..101], [0, 3, 1]);
    bad_version[100] = 2;
    let hello_with = |body: &[u8]| craft(None, Direction::ToServer, 0, 1, 0, 0, &[(1, MsgType::ClientHello, body)]);
    let cases: Vec<(Datagram, DropReason, &str)> = alloc::vec![
        (
            from_stranger(&net, mutate(hello.clone(), &|b| *b.last_mut().unwrap() ^= 1).bytes),
            BadCrc,
            "CRC trailer flipped"
        ),
        (from_stranger(&net, mutate(hello.clone(), &|b| b[500] ^= 1).bytes), BadCrc, "padding byte flipped"),
        (from_stranger(&net, hello_with(&[0xAB; 1412])), Malformed, "CRC-valid garbage hello"),
        (from_stranger(&net, hello_with(&[0x00, 0x82, 0x61, 0x62, 0x63])), Malformed, "test vector 4's body"),
        (from_stranger(&net, hello_with(&hello_body[..1300])), Malformed, "padding too short"),
        (from_stranger(&net, hello_with(&bad_version)), Malformed, "protocol version 2"),
        (from_stranger(&net, valid(&net, 1003).bytes), UnknownPeer, "AEAD datagram from an unknown address"),
        (from_stranger(&net, mutate(hello.clone(), &|b| b[12] = 9).bytes), Malformed, "hello with type 9"),
    ];
    for (d, reason, what) in cases {
        expect_drop(&mut net, SERVER, d, reason, what);
    }

    // At the established client.
    let last = net.wire_log.iter().rev().find(|d| d.from == addr(SERVER) && d.to == addr(1)).unwrap().clone();
    let to_client = |net: &Net, from: SocketAddr, bytes: Vec<u8>| dgram(net, from, addr(1), bytes);
    let cases: Vec<(Datagram, DropReason, &str)> = alloc::vec![
        (to_client(&net, addr(SERVER), v.bytes.clone()), Malformed, "client-to-server magic"),
        (to_client(&net, addr(SERVER), last.bytes[..12].to_vec()), Malformed, "12 bytes"),
        (to_client(&net, addr(SERVER), mutate(last.clone(), &|b| b[12] = 8).bytes), Malformed, "type 8"),
        (to_client(&net, addr(SERVER), mutate(last.clone(), &|b| b[20] ^= 4).bytes), AuthFailed, "byte flipped"),
        (to_client(&net, stranger(), last.bytes.clone()), UnknownPeer, "a genuine datagram from another address"),
    ];
    for (d, reason, what) in cases {
        expect_drop(&mut net, 1, d, reason, what);
    }

    // At the client still in its handshake (client 2).
    let sh = net
        .wire_log
        .iter()
        .find(|d| is_type(d, addr(SERVER), MsgType::ServerHello) && d.to == addr(2))
        .unwrap()
        .clone();
    let (_, _, _, sh_body) = crc_message(&sh);
    let server_hello_with =
        |body: &[u8]| craft(None, Direction::ToClient, 0, 1, 1, 0, &[(1, MsgType::ServerHello, body)]);
    let mut bad_tag = sh_body.clone();
    bad_tag[98..100].copy_from_slice(&[0, 7]); // the blob's tag: 14 → 7
    let cases: Vec<(Datagram, DropReason, &str)> = alloc::vec![
        (mutate(sh.clone(), &|b| *b.last_mut().unwrap() ^= 1), BadCrc, "SERVER_HELLO CRC flipped"),
        (
            dgram(&net, addr(SERVER), addr(2), server_hello_with(&[0x5A; 300])),
            Malformed,
            "CRC-valid garbage SERVER_HELLO"
        ),
        (dgram(&net, addr(SERVER), addr(2), server_hello_with(&bad_tag)), Malformed, "SERVER_HELLO with a bad tag"),
        (dgram(&net, addr(SERVER), addr(2), server_hello_with(&sh_body[..200])), Malformed, "truncated SERVER_HELLO"),
        (dgram(&net, stranger(), addr(2), sh.bytes.clone()), UnknownPeer, "SERVER_HELLO from another address"),
    ];
    for (d, reason, what) in cases {
        expect_drop(&mut net, 2, d, reason, what);
    }

    // Nothing was damaged: client 1's session works and client 2 completes.
    net.set_filter(|_| Verdict::Deliver);
    exchange(&mut net, 1, c, s, 7);
    assert!(net.run_until(Duration::from_secs(1), |n| { n.events[2].contains(&Event::Connected { conn: c2 }) }));
}

/// Offset of the first payload byte.
const HEADER_PAYLOAD: usize = crate::mpgs1::wire::HEADER_LEN;

#[test]
fn rule_12_server_key_is_pinned_unless_trust_on_first_use_is_explicit() {
    let cfg = EndpointConfig::default();

    // Pinned to the wrong key: every SERVER_HELLO fails verification.
    let mut net = Net::new(cfg.clone(), 1, 61);
    let wrong = ServerKey::generate(&mut Rng::new(Seed::from_u64(0xBAD))).public_key();
    assert_ne!(wrong, net.pinned);
    let (now, srv) = (net.now, net.addrs[SERVER]);
    let c = net.eps[1].connect(now, srv, wrong).unwrap();
    let done = |n: &Net| !n.events[1].is_empty();
    assert!(net.run_until(Duration::from_secs(6), done));
    assert_eq!(net.now, Instant::from_secs(5), "at the connect timeout");
    assert_eq!(net.events[1], [Event::ConnectFailed { conn: c, reason: ConnectFailure::WrongServerKey }]);
    assert!(net.eps[1].connection(c).is_none());
    net.run_for(Duration::from_secs(1));
    let sent: Vec<&Datagram> = net.wire_log.iter().filter(|d| d.from == addr(1)).collect();
    assert_eq!(sent.len(), 20, "hellos only, every 0.25 s for 5 s");
    assert!(sent.iter().all(|d| d.header().ty == MsgType::ClientHello));
    let server_hellos = net.wire_log.iter().filter(|d| is_type(d, addr(SERVER), MsgType::ServerHello)).count();
    assert!(server_hellos >= 10, "{server_hellos}");
    assert_eq!(
        drop_delta([0; DropReason::ALL.len()], drops(&net.eps[1])),
        [(DropReason::AuthFailed, server_hellos as u64)],
        "every SERVER_HELLO counted as failing its signature"
    );
    assert!(net.events[SERVER].is_empty());
    assert_eq!(net.eps[SERVER].connection_count(), 0);

    // Trust on first use, by its own name: connects to whatever key the
    // server presents, and reports that key for pinning.
    let mut net = Net::new(cfg.clone(), 1, 62);
    let (now, srv) = (net.now, net.addrs[SERVER]);
    let c = net.eps[1].connect_trust_on_first_use(now, srv).unwrap();
    let connected = |n: &Net| n.events[1].contains(&Event::Connected { conn: c });
    assert!(net.run_until(Duration::from_secs(1), connected));
    assert_eq!(net.eps[1].connection(c).unwrap().server_key(), Some(&net.pinned));
    // And with the right pinned key, the same key is reported.
    let (net, c, _) = Net::pair(cfg);
    assert_eq!(net.eps[1].connection(c).unwrap().server_key(), Some(&net.pinned));
}

#[test]
fn rule_18_client_never_rekeys_on_a_late_server_hello() {
    let mut net = Net::new(EndpointConfig::default(), 2, 81);
    let c = net.connect(1);
    net.run_for(Duration::from_millis(200));
    let s = net.server_conn_of(1).expect("connected");
    // A SERVER_HELLO of another handshake (to client 2), signed by the same root key.
    net.set_filter(|d| if d.to == addr(2) { Verdict::Drop } else { Verdict::Deliver });
    net.connect(2);
    net.run_for(Duration::from_millis(100));
    let mine = net
        .wire_log
        .iter()
        .find(|d| is_type(d, addr(SERVER), MsgType::ServerHello) && d.to == addr(1))
        .unwrap()
        .clone();
    let foreign = net
        .wire_log
        .iter()
        .find(|d| is_type(d, addr(SERVER), MsgType::ServerHello) && d.to == addr(2))
        .unwrap()
        .clone();
    let (hdr, msgseq, _, body) = crc_message(&mine);
    let resequenced = craft(
        None,
        Direction::ToClient,
        hdr.ctime,
        hdr.seq.wrapping_add(20_000),
        hdr.ack,
        0,
        &[(msgseq.wrapping_add(20_000), MsgType::ServerHello, &body)],
    );
    let key = net.key_of(1, c);
    let log = net.wire_log.len();
    for (bytes, what) in [
        (mine.bytes.clone(), "exact replay"),
        (resequenced, "replay with fresh sequence numbers"),
        (foreign.bytes.clone(), "another handshake's SERVER_HELLO"),
    ] {
        expect_drop_from(&mut net, 1, addr(SERVER), bytes, DropReason::Unexpected, what);
    }
    // Same session key both ways, and messages keep flowing.
    exchange(&mut net, 1, c, s, 3);
    exchange(&mut net, 1, c, s, 4);
    let mut checked = 0;
    for d in net.wire_log[log..].iter().filter(|d| d.from == addr(1) || d.to == addr(1)) {
        assert_ne!(d.header().ty, MsgType::ChallengeResp, "no new handshake");
        decode(&key, d);
        checked += 1;
    }
    assert!(checked > 10, "{checked}");
    assert!(!net.events[1].iter().any(|e| matches!(e, Event::Disconnected { .. })), "{}", describe(&net.events[1]));
}

#[test]
fn rule_19_crc_only_datagrams_never_touch_an_established_session() {
    let (mut net, _c, s) = Net::pair(EndpointConfig::default());
    let last = silence_client(&mut net, 1);
    // The server has a reliable message in flight that only the client's
    // (now blocked) acks could confirm.
    let id = net.eps[SERVER].send(s, b"needs an ack", Delivery::Reliable).unwrap();
    net.run_for(Duration::from_millis(50));
    let newest_server_seq = newest_seq(net.wire_log.iter().filter(|d| d.from == addr(SERVER)));
    let t0 = net.now;
    let log = net.wire_log.len();
    let before = drops(&net.eps[SERVER]);
    let (hello_body, sh_body) = {
        let h = net.wire_log.iter().find(|d| d.from == addr(1)).unwrap();
        let sh = net.wire_log.iter().find(|d| d.from == addr(SERVER)).unwrap();
        (crc_message(h).3, crc_message(sh).3)
    };
    let mut forged = 0u64;
    let mut next_seq = last;
    let timed_out =
        |n: &Net| n.events[SERVER].contains(&Event::Disconnected { conn: s, reason: DisconnectReason::TimedOut });
    loop {
        assert!(net.now < t0 + Duration::from_secs(6), "CRC-only datagrams kept the connection alive");
        for (ty, body) in [
            (MsgType::Unknown, &b"zero"[..]),
            (MsgType::ClientHello, &hello_body[..]),
            (MsgType::ServerHello, &sh_body[..]),
        ] {
            next_seq = crate::mpgs1::seq::next(next_seq);
            // Acks everything the server sent, and claims a new packet seq.
            let bytes = craft(
                None,
                Direction::ToServer,
                ctime_now(&net),
                next_seq,
                newest_server_seq,
                u32::MAX,
                &[(next_seq, ty, body)],
            );
            assert_eq!(crate::mpgs1::wire::Header::parse(&bytes, Direction::ToServer).unwrap().ty, ty);
            net.deliver_now(&dgram(&net, addr(1), addr(SERVER), bytes));
            forged += 1;
        }
        if net.run_until(Duration::from_millis(250), timed_out) {
            break;
        }
    }
    let waited = net.now - t0;
    assert!(
        (Duration::from_millis(4_800)..=Duration::from_millis(4_970)).contains(&waited),
        "timed out after {waited:?} of forged traffic"
    );
    assert_eq!(drop_delta(before, drops(&net.eps[SERVER])), [(DropReason::Unexpected, forged)]);
    // No ack or window effect: the server kept acknowledging the last
    // genuine packet, and its message was never confirmed.
    let server_acks: Vec<u16> = sent_between(&net, log, addr(SERVER), addr(1)).iter().map(|d| d.header().ack).collect();
    assert!(server_acks.len() > 20, "{}", server_acks.len());
    assert!(server_acks.iter().all(|&a| a == last), "{server_acks:?} vs {last}");
    assert!(!net.events[SERVER].contains(&Event::Delivered { conn: s, id }));
    assert!(net.events[SERVER].contains(&Event::Lost { conn: s, id, reason: crate::LossReason::ConnectionClosed }));
}
