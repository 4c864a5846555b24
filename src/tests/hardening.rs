//! Hostile-network hardening (issue 6): one test per admission limit (hello
//! rate limits, per-address and per-prefix limits, eviction of the oldest
//! pending handshake, the connection cap), the shared SERVER_HELLO key, the
//! anti-amplification rule, the endpoint-wide reassembly budget and the
//! block list, all over the virtual-time harness.

use alloc::vec;
use alloc::vec::Vec;
use core::net::{IpAddr, SocketAddr};

use super::forge::*;
use super::harness::*;
use crate::config::RateLimit;
use crate::keys::EphemeralKey;
use crate::mpgs1::protect::PacketKey;
use crate::mpgs1::wire::handshake::{self, CLIENT_HELLO_FIXED_LEN};
use crate::mpgs1::wire::{Direction, HEADER_LEN, MsgType};
use crate::{ConnectionId, Delivery, DisconnectReason, DropReason, Duration, EndpointConfig, Event, IpNet, Rng, Seed};

/// A valid CLIENT_HELLO datagram (seq 1, msgseq 1) with the ephemeral key
/// of `seed`, padded for `cfg`'s MTU.
fn hello(seed: u64, cfg: &EndpointConfig) -> Vec<u8> {
    let key = EphemeralKey::generate(&mut Rng::new(Seed::from_u64(seed)));
    hello_with_key(&key.public_spki(), cfg)
}

fn hello_with_key(spki: &[u8; 91], cfg: &EndpointConfig) -> Vec<u8> {
    let pad = vec![0x5A; cfg.sizes().hello_padding];
    let mut body = vec![0; CLIENT_HELLO_FIXED_LEN + pad.len()];
    let n = handshake::emit_client_hello(&mut body, spki, &pad).unwrap();
    craft(None, Direction::ToServer, 0, 1, 0, 0, &[(1, MsgType::ClientHello, &body[..n])])
}

/// Distinct spoofed IPv4 addresses, spread over many /24s.
fn spoofed(i: u32) -> SocketAddr {
    let x = i.wrapping_mul(2_654_435_761) ^ 0x5bd1_e995;
    SocketAddr::from(([100, (x >> 16) as u8, (x >> 8) as u8, x as u8], 1024 + (i % 60_000) as u16))
}

/// Delivers `bytes` to the server from `from`, now, and flushes.
fn to_server(net: &mut Net, from: SocketAddr, bytes: &[u8]) {
    let mut b = bytes.to_vec();
    net.eps[SERVER].handle_datagram(net.now, from, &mut b);
    net.flush();
}

/// Datagrams and bytes the server has emitted to `to`.
fn sent_to(net: &Net, to: SocketAddr) -> (usize, usize) {
    let v: Vec<_> = net.wire_log.iter().filter(|d| d.from == addr(SERVER) && d.to == to).collect();
    (v.len(), v.iter().map(|d| d.bytes.len()).sum())
}

/// A configuration whose hello limits are all off but `f`'s.
fn open_cfg(f: impl FnOnce(&mut EndpointConfig)) -> EndpointConfig {
    let mut cfg = EndpointConfig {
        hello_rate: RateLimit::UNLIMITED,
        hello_rate_per_ip: RateLimit::UNLIMITED,
        hello_rate_per_prefix: RateLimit::UNLIMITED,
        max_pending_per_ip: usize::MAX,
        max_pending_per_prefix: usize::MAX,
        ..EndpointConfig::default()
    };
    f(&mut cfg);
    cfg
}

/// Connects clients 1 and 2 and checks that both are up.
fn connect_two(net: &mut Net) -> (ConnectionId, ConnectionId) {
    let a = net.connect(1);
    let b = net.connect(2);
    net.run_for(Duration::from_millis(100));
    assert!(net.events[1].contains(&Event::Connected { conn: a }));
    assert!(net.events[2].contains(&Event::Connected { conn: b }));
    (a, b)
}

/// The data of fragment 1 of `count` of message `frag_id`, with a 1,000-byte chunk.
fn first_fragment(frag_id: u16, count: u16) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [frag_id, 1, count] {
        v.extend_from_slice(&x.to_be_bytes());
    }
    v.extend_from_slice(&[9u8; 1000]);
    v
}

#[test]
fn hello_rate_limit_is_endpoint_wide() {
    let cfg = open_cfg(|c| c.hello_rate = RateLimit::new(10, 5));
    let mut net = Net::new(cfg.clone(), 0, 1);
    let hellos: Vec<Vec<u8>> = (0..8).map(|i| hello(100 + i, &cfg)).collect();
    for (i, h) in hellos.iter().enumerate() {
        to_server(&mut net, spoofed(i as u32), h);
    }
    let st = net.eps[SERVER].stats().clone();
    assert_eq!((st.hellos_accepted, st.hellos_refused_rate), (5, 3), "a burst of 5");
    assert_eq!(st.dropped(DropReason::Rate), 3);
    assert_eq!(net.eps[SERVER].pending_handshakes(), 5);
    // Refused hellos cost nothing: no reply, no key exchange.
    assert_eq!(sent_to(&net, spoofed(7)).0, 0);
    // One token per 100 ms.
    net.now += Duration::from_millis(99);
    to_server(&mut net, spoofed(5), &hellos[5]);
    assert_eq!(net.eps[SERVER].stats().hellos_accepted, 5);
    net.now += Duration::from_millis(1);
    to_server(&mut net, spoofed(5), &hellos[5]);
    assert_eq!(net.eps[SERVER].stats().hellos_accepted, 6);
}

#[test]
fn per_address_pending_and_rate_limits() {
    // Pending handshakes per IP address: ports do not help an attacker.
    let cfg = open_cfg(|c| c.max_pending_per_ip = 3);
    let mut net = Net::new(cfg.clone(), 0, 2);
    let ip: IpAddr = [192, 0, 2, 7].into();
    for port in 0..5u16 {
        to_server(&mut net, SocketAddr::new(ip, 5000 + port), &hello(200 + u64::from(port), &cfg));
    }
    let st = net.eps[SERVER].stats().clone();
    assert_eq!((st.hellos_accepted, st.hellos_refused_source), (3, 2));
    // Another address of the same /24 is not affected.
    to_server(&mut net, SocketAddr::from(([192, 0, 2, 8], 5000)), &hello(299, &cfg));
    assert_eq!(net.eps[SERVER].stats().hellos_accepted, 4);
    // Once they expire, the address may try again.
    net.run_for(cfg.handshake_timeout + Duration::from_millis(1));
    assert_eq!(net.eps[SERVER].pending_handshakes(), 0);
    to_server(&mut net, SocketAddr::new(ip, 6000), &hello(205, &cfg));
    assert_eq!(net.eps[SERVER].stats().hellos_accepted, 5);

    // The hello rate per IP address: 2/s, burst 2.
    let cfg = open_cfg(|c| c.hello_rate_per_ip = RateLimit::new(2, 2));
    let mut net = Net::new(cfg.clone(), 0, 3);
    for port in 0..4u16 {
        to_server(&mut net, SocketAddr::new(ip, 5000 + port), &hello(300 + u64::from(port), &cfg));
    }
    assert_eq!(net.eps[SERVER].stats().hellos_accepted, 2);
    assert_eq!(net.eps[SERVER].stats().hellos_refused_source, 2);
    net.now += Duration::from_millis(500);
    to_server(&mut net, SocketAddr::new(ip, 5003), &hello(303, &cfg));
    assert_eq!(net.eps[SERVER].stats().hellos_accepted, 3);
}

#[test]
fn per_prefix_limits_ipv4_and_ipv6() {
    fn try_from(net: &mut Net, a: &str, seed: u64) -> bool {
        let before = net.eps[SERVER].stats().hellos_accepted;
        let h = hello(seed, net.eps[SERVER].config());
        to_server(net, a.parse().unwrap(), &h);
        net.eps[SERVER].stats().hellos_accepted > before
    }
    // Pending handshakes per prefix: two at most, whatever the host. An
    // IPv4-mapped IPv6 source is in its IPv4 prefix.
    let mut net = Net::new(open_cfg(|c| c.max_pending_per_prefix = 2), 0, 4);
    assert!(try_from(&mut net, "198.51.100.1:1000", 401));
    assert!(try_from(&mut net, "[::ffff:198.51.100.2]:1000", 402));
    assert!(!try_from(&mut net, "198.51.100.3:1000", 403));
    assert!(try_from(&mut net, "198.51.101.3:1000", 404), "the next /24 is another prefix");
    assert!(try_from(&mut net, "[2001:db8:0:1::1]:1000", 405));
    assert!(try_from(&mut net, "[2001:db8:0:1:ffff::2]:1000", 406));
    assert!(!try_from(&mut net, "[2001:db8:0:1::3]:1000", 407));
    assert!(try_from(&mut net, "[2001:db8:0:2::3]:1000", 408), "the next /64 is another prefix");
    assert_eq!(net.eps[SERVER].stats().hellos_refused_source, 2);
    // They free their places when they end.
    net.run_for(Duration::from_millis(2_100));
    assert!(try_from(&mut net, "198.51.100.4:1000", 409));

    // The hello rate per prefix: a burst of 3, then 1/s; prefixes of other
    // lengths when configured.
    let cfg = open_cfg(|c| {
        c.hello_rate_per_prefix = RateLimit::new(1, 3);
        c.hello_prefix_v6 = 48;
    });
    let mut net = Net::new(cfg, 0, 5);
    for (i, a) in ["[2001:db8:7:1::1]:1", "[2001:db8:7:2::1]:1", "[2001:db8:7:3::1]:1"].iter().enumerate() {
        assert!(try_from(&mut net, a, 410 + i as u64));
    }
    assert!(!try_from(&mut net, "[2001:db8:7:4::1]:1", 413));
    assert!(try_from(&mut net, "[2001:db8:8::1]:1", 414), "another /48");
    net.now += Duration::from_secs(1);
    assert!(try_from(&mut net, "[2001:db8:7:4::1]:1", 415));
    assert!(!try_from(&mut net, "[2001:db8:7:5::1]:1", 416));
    assert_eq!(net.eps[SERVER].stats().hellos_refused_source, 2);
}

#[test]
fn full_pending_table_evicts_oldest_so_new_clients_get_in() {
    let cfg = open_cfg(|c| c.max_pending_handshakes = 16);
    let mut net = Net::new(cfg.clone(), 1, 5);
    // A flood fills the table and keeps every entry alive by repeating its
    // hello (repeats cost the server no key exchange), while new ones keep
    // coming: 8 per 100 ms.
    let repeat = |h: &[u8], seq: u16| super::forge::reseal_crc(h, seq);
    let mut flood: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
    let mut next = 0u32;
    let mut fresh = |n: u32, flood: &mut Vec<(SocketAddr, Vec<u8>)>, net: &mut Net| {
        for _ in 0..n {
            let h = hello(500 + u64::from(next), &cfg);
            to_server(net, spoofed(next), &h);
            flood.push((spoofed(next), h));
            next += 1;
        }
    };
    fresh(40, &mut flood, &mut net);
    assert_eq!(net.eps[SERVER].pending_handshakes(), 16);
    assert_eq!(net.eps[SERVER].stats().handshakes_evicted, 24);
    let c = net.connect(1);
    for round in 0..20u16 {
        fresh(8, &mut flood, &mut net);
        for (a, h) in &flood[flood.len() - 16..] {
            to_server(&mut net, *a, &repeat(h, 2 + round));
        }
        assert!(net.eps[SERVER].pending_handshakes() <= 16);
        net.run_for(Duration::from_millis(100));
    }
    assert!(net.events[1].contains(&Event::Connected { conn: c }), "{:?}", net.events[1]);
    assert_eq!(net.eps[SERVER].connection_count(), 1);
    assert!(net.eps[SERVER].stats().handshakes_evicted >= 24 + 150);
}

#[test]
fn repeated_hellos_do_not_move_a_handshake_back_in_the_eviction_order() {
    // Eviction goes by when a handshake started: repeating its hello keeps
    // it alive (rule 9) but does not protect it from eviction, or a flood
    // could pin its entries in the table by repeating them.
    let cfg = open_cfg(|c| c.max_pending_handshakes = 3);
    let mut net = Net::new(cfg.clone(), 0, 17);
    let hellos: Vec<Vec<u8>> = (0..4).map(|i| hello(700 + i, &cfg)).collect();
    for (i, h) in hellos.iter().take(3).enumerate() {
        to_server(&mut net, spoofed(i as u32), h);
    }
    // The oldest repeats its hello (a new packet seq, same key).
    let again = super::forge::reseal_crc(&hellos[0], 2);
    let answered = sent_to(&net, spoofed(0)).0;
    to_server(&mut net, spoofed(0), &again);
    assert_eq!(sent_to(&net, spoofed(0)).0, answered + 1, "the repeat was answered");
    // A fourth handshake evicts the first, not the second.
    to_server(&mut net, spoofed(3), &hellos[3]);
    let ep = &net.eps[SERVER];
    assert_eq!(ep.stats().handshakes_evicted, 1);
    assert!(ep.connection_by_addr(spoofed(0)).is_none(), "the oldest went");
    assert!((1..4).all(|i| ep.connection_by_addr(spoofed(i)).is_some()));
}

#[test]
fn replayed_client_hello_from_spoofed_addresses_is_cheap_and_harmless() {
    // H2: one captured CLIENT_HELLO replayed from many spoofed addresses.
    let cfg = EndpointConfig::default();
    let mut net = Net::new(cfg.clone(), 1, 6);
    let c = net.connect(1);
    net.flush();
    let captured = net.wire_log.iter().find(|d| d.from == addr(1)).unwrap().bytes.clone();
    net.run_until(Duration::from_millis(15), |_| false);
    let keys_before = net.eps[SERVER].stats().server_hello_keys;
    assert_eq!(keys_before, 1);
    // 2,000 replays over one second, from 2,000 addresses.
    for i in 0..2000u32 {
        to_server(&mut net, spoofed(i), &captured);
        if i % 2 == 1 {
            net.run_for(Duration::from_millis(1));
        }
    }
    let st = net.eps[SERVER].stats().clone();
    // Only the first replay after each key period is answered (with a new
    // server key); the rest are refused as replays before any cryptography.
    assert!(st.server_hello_keys <= keys_before + 11, "{st}");
    assert!(st.hellos_accepted <= 12, "{st}");
    assert!(st.dropped(DropReason::Replay) >= 1988, "{st}");
    assert!(net.events[1].contains(&Event::Connected { conn: c }), "the real client is unaffected");
    assert_eq!(net.eps[SERVER].connection_count(), 1);
}

/// The packet keys of two connections differ: a datagram sealed under one
/// does not open under the other.
fn same_key(a: &PacketKey, b: &PacketKey) -> bool {
    let head = [7u8; HEADER_LEN];
    let mut p = *b"probe";
    let tag = a.seal(&head, &mut p);
    b.open(&head, &mut p, &tag).is_ok()
}

/// `p − y` over P-256's field prime: the y-coordinate of `−P`.
fn negate_y(spki: &[u8; 91]) -> [u8; 91] {
    const P: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    ];
    let mut out = *spki;
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = i16::from(P[i]) - i16::from(spki[59 + i]) - borrow;
        out[59 + i] = d.rem_euclid(256) as u8;
        borrow = i16::from(d < 0);
    }
    out
}

#[test]
fn server_hello_key_reuse_keeps_session_keys_distinct() {
    let cfg = EndpointConfig::default();
    let mut net = Net::new(cfg.clone(), 2, 7);
    let a = net.connect(1);
    let _b = net.connect(2);
    net.run_for(Duration::from_millis(60));
    let st = net.eps[SERVER].stats().clone();
    assert_eq!((st.hellos_accepted, st.server_hello_keys), (2, 1), "one signed key for both");
    let (sa, sb) = (net.server_conn_of(1).unwrap(), net.server_conn_of(2).unwrap());
    let token = |ep: usize, c: ConnectionId| net.eps[ep].connection(c).unwrap().token();
    assert_ne!(token(SERVER, sa), token(SERVER, sb), "every client gets its own token");
    assert!(same_key(&net.key_of(1, a), &net.key_of(SERVER, sa)));
    assert!(!same_key(&net.key_of(SERVER, sa), &net.key_of(SERVER, sb)), "session keys are per client");

    // The negation of client 1's key shares its ECDH x-coordinate: from
    // another address, while the key is current, it is a replay.
    let spki: [u8; 91] = {
        let h = net.wire_log.iter().find(|d| d.from == addr(1)).unwrap();
        h.bytes[HEADER_LEN + 2 + 7..HEADER_LEN + 2 + 7 + 91].try_into().unwrap()
    };
    let neg = negate_y(&spki);
    assert!(crate::keys::peer_key(&neg).is_some(), "−P is a valid key");
    let before = net.eps[SERVER].stats().dropped(DropReason::Replay);
    // Client 1's key was answered 50 ms ago with the current server key.
    to_server(&mut net, spoofed(1), &hello_with_key(&neg, &cfg));
    to_server(&mut net, spoofed(2), &hello_with_key(&spki, &cfg));
    assert_eq!(net.eps[SERVER].stats().dropped(DropReason::Replay) - before, 2);
    // After the reuse period a fresh key answers it.
    net.run_for(Duration::from_millis(120));
    to_server(&mut net, spoofed(1), &hello_with_key(&neg, &cfg));
    assert_eq!(net.eps[SERVER].stats().server_hello_keys, 2);
    assert!(net.eps[SERVER].connection_by_addr(spoofed(1)).is_some());

    // With reuse off, every handshake signs its own key.
    let cfg = EndpointConfig { server_hello_reuse: Duration::ZERO, ..EndpointConfig::default() };
    let mut net = Net::new(cfg, 2, 8);
    net.connect(1);
    net.connect(2);
    net.run_for(Duration::from_millis(60));
    let st = net.eps[SERVER].stats();
    assert_eq!((st.hellos_accepted, st.server_hello_keys), (2, 2));
}

/// The SERVER_HELLO the server sent to `to`, parsed: (ephemeral key, salt, token).
fn server_hello_to(net: &Net, to: SocketAddr) -> ([u8; 91], [u8; 16], u32) {
    let d = net.wire_log.iter().find(|d| d.from == addr(SERVER) && d.to == to).expect("a SERVER_HELLO");
    let hdr = crate::mpgs1::wire::Header::parse(&d.bytes, Direction::ToClient).unwrap();
    let end = hdr.payload_end(d.bytes.len(), 4).unwrap();
    let msg =
        crate::mpgs1::wire::frame::parse_payload(hdr.ty, hdr.count, &d.bytes[HEADER_LEN..end]).unwrap().next().unwrap();
    let sh = handshake::parse_server_hello(msg.data).unwrap();
    let blob = handshake::parse_server_blob(sh.blob).unwrap();
    (blob.ephemeral_spki.try_into().unwrap(), blob.salt, blob.token)
}

#[test]
fn shared_server_key_does_not_let_a_blind_attacker_complete_a_spoofed_handshake() {
    // An attacker connects from its own address and so learns the shared
    // server ephemeral key. It then sends a hello of its own key "from" a
    // victim within the same period. Were the salt and token shared too, it
    // could derive that session's key and answer the challenge without ever
    // seeing the victim's traffic, and the server would then send the
    // victim keep-alives for as long as the attacker liked (reflection).
    let cfg = EndpointConfig::default();
    let mut net = Net::new(cfg.clone(), 1, 12);
    let a = net.connect(1);
    let up = net.run_until(Duration::from_millis(80), |n| n.events[1].contains(&Event::Connected { conn: a }));
    assert!(up, "connected within the key period");
    let (eph, salt, token) = server_hello_to(&net, addr(1));

    let victim = spoofed(9);
    let mine = EphemeralKey::generate(&mut Rng::new(Seed::from_u64(4242)));
    to_server(&mut net, victim, &hello_with_key(&mine.public_spki(), &cfg));
    let st = net.eps[SERVER].stats().clone();
    assert_eq!((st.hellos_accepted, st.server_hello_keys), (2, 1), "the server key is shared: {st}");
    let v = net.eps[SERVER].connection_by_addr(victim).expect("pending");
    let (eph_v, salt_v, token_v) = server_hello_to(&net, victim);
    assert_eq!(eph_v, eph, "same ephemeral key");
    assert_ne!(salt_v, salt, "a salt of its own");
    assert_ne!(token_v, token, "a token of its own");

    // The attacker's best guess: the key and token it knows.
    let shared = mine.agree(&eph).unwrap();
    let guess = PacketKey::new(&crate::mpgs1::protect::derive_packet_key(&shared, &salt));
    assert!(!same_key(&guess, &net.key_of(SERVER, v)), "the victim's session key is not derivable");
    let mut body = [0u8; handshake::CHALLENGE_RESP_LEN];
    handshake::emit_challenge_resp(&mut body, token);
    for seq in 2..6u16 {
        let d = craft(Some(&guess), Direction::ToServer, 0, seq, 1, 0, &[(2, MsgType::ChallengeResp, &body)]);
        to_server(&mut net, victim, &d);
    }
    assert_eq!(net.eps[SERVER].connection(v).unwrap().state(), crate::ConnectionState::Connecting);
    // It stays unverified, so it only ever receives SERVER_HELLOs, then expires.
    net.run_for(Duration::from_secs(6));
    assert!(net.eps[SERVER].connection_by_addr(victim).is_none());
    assert!(net.eps[SERVER].stats().dropped(DropReason::AuthFailed) >= 4);
}

#[test]
fn shared_server_key_is_erased_when_its_period_ends() {
    let cfg = EndpointConfig::default();
    let mut net = Net::new(cfg.clone(), 1, 13);
    net.connect(1);
    net.run_for(Duration::from_millis(20));
    assert!(net.eps[SERVER].hello_key.is_some());
    // poll_timeout wakes the server at the end of the period even when
    // nothing else is due then.
    let t = net.eps[SERVER].poll_timeout().unwrap();
    assert!(t <= net.now + cfg.server_hello_reuse);
    net.run_for(Duration::from_millis(100));
    assert!(net.eps[SERVER].hello_key.is_none(), "erased after 100 ms");
    let too_long = EndpointConfig { server_hello_reuse: Duration::from_secs(2), ..EndpointConfig::default() };
    let err = too_long.validate().unwrap_err();
    assert!(std::format!("{err}").contains("server_hello_reuse"), "{err}");
}

#[test]
fn max_connections_refuses_only_when_no_handshake_is_pending() {
    let cfg = EndpointConfig { max_connections: 2, ..EndpointConfig::default() };
    let mut net = Net::new(cfg.clone(), 3, 9);
    connect_two(&mut net);
    let c = net.connect(3);
    net.run_for(Duration::from_secs(6));
    assert!(net.events[3].iter().any(|e| matches!(e, Event::ConnectFailed { conn, .. } if *conn == c)));
    let st = net.eps[SERVER].stats();
    assert!(st.hellos_refused_full >= 10, "{st}");
    assert_eq!(st.hellos_accepted, 2, "no key exchange for a full server");
    assert_eq!(net.eps[SERVER].connection_count(), 2);
}

#[test]
fn at_the_connection_cap_a_pending_handshake_makes_room_for_a_new_client() {
    // One established client and one spoofed hello that will never finish
    // fill a cap of two: the next real client evicts the spoofed one.
    let cfg = EndpointConfig { max_connections: 2, ..EndpointConfig::default() };
    let mut net = Net::new(cfg.clone(), 2, 14);
    let a = net.connect(1);
    net.run_for(Duration::from_millis(100));
    assert!(net.events[1].contains(&Event::Connected { conn: a }));
    to_server(&mut net, spoofed(3), &hello(3000, &cfg));
    assert!(net.eps[SERVER].connection_by_addr(spoofed(3)).is_some(), "pending");
    let b = net.connect(2);
    net.run_for(Duration::from_millis(100));
    assert!(net.events[2].contains(&Event::Connected { conn: b }), "{}", describe(&net.events[2]));
    assert!(net.eps[SERVER].connection_by_addr(spoofed(3)).is_none(), "the pending handshake was evicted");
    let st = net.eps[SERVER].stats();
    assert_eq!((st.handshakes_evicted, st.hellos_refused_full), (1, 0), "{st}");
    assert_eq!(net.eps[SERVER].connection_count(), 2);
}

#[test]
fn server_never_sends_an_unverified_address_more_than_it_received() {
    let cfg = EndpointConfig::default();
    let mut net = Net::new(cfg.clone(), 0, 10);
    let victim = spoofed(77);
    let h = hello(1000, &cfg);
    to_server(&mut net, victim, &h);
    // Repeats of the hello (new packet seqs), full size and truncated
    // (unpadded), duplicates, junk and forged challenge datagrams, all "from"
    // the victim. Truncated repeats would each cost 128 B against a 328 B
    // reply; they are malformed (§10.2) and answered with nothing.
    let body_len = h.len() - HEADER_LEN - 2 - 4;
    let mut received = h.len();
    for seq in 2..200u16 {
        let short = seq % 3 == 0;
        let body = &h[HEADER_LEN + 2..HEADER_LEN + 2 + if short { 101 } else { body_len }];
        let d = craft(None, Direction::ToServer, 0, seq, 0, 0, &[(1, MsgType::ClientHello, body)]);
        received += d.len();
        to_server(&mut net, victim, &d);
        let junk = craft(None, Direction::ToServer, 0, seq, 0, 0, &[(2, MsgType::ChallengeResp, &[0u8; 30])]);
        received += junk.len();
        to_server(&mut net, victim, &junk);
        net.now += Duration::from_millis(5);
    }
    let (n, sent) = sent_to(&net, victim);
    assert!(sent <= received, "{sent} B sent for {received} B received");
    assert!(n > 100, "full-size repeats are answered (rule 9): {n}");
    assert!(sent * 100 / received < 25, "about 0.23 of what arrived: {sent} / {received}");
    assert_eq!(net.eps[SERVER].stats().amplification_limited, 0, "never needed with padded hellos");
    assert!(net.eps[SERVER].stats().dropped(DropReason::Malformed) >= 60);
}

#[test]
fn live_sessions_are_unaffected_by_a_hello_flood() {
    let mut net = Net::new(EndpointConfig::default(), 3, 11);
    let conns: Vec<ConnectionId> = (1..=3).map(|i| net.connect(i)).collect();
    net.run_for(Duration::from_millis(100));
    let keys: Vec<Vec<u8>> = (0..64).map(|i| hello(2000 + i, &net.eps[SERVER].config().clone())).collect();
    let mut sent = 0;
    for round in 0..200u32 {
        // 200 hellos per 10 ms (20,000/s) from random addresses: fresh
        // keys, replays, and junk.
        for k in 0..200u32 {
            let i = round * 200 + k;
            let d = &keys[(i % 64) as usize];
            to_server(&mut net, spoofed(i), if k % 7 == 0 { &d[..300] } else { d });
        }
        for (j, &c) in conns.iter().enumerate() {
            net.eps[j + 1].send(c, &round.to_be_bytes(), Delivery::Reliable).unwrap();
            sent += 1;
        }
        net.run_for(Duration::from_millis(10));
        assert!(net.eps[SERVER].pending_handshakes() <= net.eps[SERVER].config().max_pending_handshakes);
    }
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.messages(SERVER).len(), sent);
    assert_eq!(net.eps[SERVER].connection_count(), 3);
    let st = net.eps[SERVER].stats();
    assert!(st.hellos_refused_rate > 0 && st.hellos_accepted < 1_200, "{st}");
    assert!(st.server_hello_keys < 100, "{st}");
    for i in 1..=3 {
        assert!(!net.events[i].iter().any(|e| matches!(e, Event::Disconnected { .. })));
    }
    // Source tracking stays bounded and drains once the flood stops.
    assert!(net.eps[SERVER].admission().sources() <= 2 * (1024 + 1_200));
    net.run_for(Duration::from_secs(5));
    to_server(&mut net, spoofed(1), &keys[1]);
    assert!(net.eps[SERVER].admission().sources() <= 2 + 2 * net.eps[SERVER].pending_handshakes());
}

#[test]
fn endpoint_wide_reassembly_budget() {
    // Per connection 100 kB; all together 150 kB.
    let cfg = EndpointConfig {
        max_message_size: 100_000,
        max_reassembly_bytes: 100_000,
        max_reassembly_bytes_total: 150_000,
        ..EndpointConfig::default()
    };
    let mut net = Net::new(cfg, 2, 12);
    let c1 = net.connect(1);
    let c2 = net.connect(2);
    net.run_for(Duration::from_millis(100));
    let s2 = net.server_conn_of(2).unwrap();
    let (k1, k2) = (net.key_of(1, c1), net.key_of(2, c2));
    let seq1 = silence_client(&mut net, 1);
    let seq2 = silence_client_too(&mut net, 2);
    // Client 1 opens a reassembly of 90 fragments (90,000 B buffered).
    let d = forge_to_server(&net, &k1, 1, seq1 + 1, &[(500, MsgType::AppFragment, &first_fragment(1, 90))]);
    net.deliver_now(&d);
    assert_eq!(net.eps[SERVER].reassembly_bytes(), 89_000, "89 chunks of 1,000 B are reserved");
    // Client 2's 90 kB message fits its own budget but not what is left
    // endpoint-wide: refused unacknowledged, counted.
    let d = forge_to_server(&net, &k2, 2, seq2 + 1, &[(500, MsgType::AppFragment, &first_fragment(1, 90))]);
    net.deliver_now(&d);
    let st = net.eps[SERVER].stats();
    assert_eq!((st.reassembly_budget_refusals, st.dropped(DropReason::Rate)), (1, 1));
    // A 50 kB one fits.
    let d = forge_to_server(&net, &k2, 2, seq2 + 2, &[(600, MsgType::AppFragment, &first_fragment(2, 50))]);
    net.deliver_now(&d);
    assert_eq!(net.eps[SERVER].reassembly_bytes(), 138_000);
    // A second 50 kB one fits client 2's budget, not the endpoint's.
    let second = forge_to_server(&net, &k2, 2, seq2 + 3, &[(700, MsgType::AppFragment, &first_fragment(3, 50))]);
    net.deliver_now(&second);
    assert_eq!(net.eps[SERVER].stats().reassembly_budget_refusals, 2);
    // Closing client 1's connection releases its bytes: then it fits.
    let s1 = net.server_conn_of(1).unwrap();
    net.eps[SERVER].disconnect(net.now, s1).unwrap();
    net.run_for(Duration::from_secs(2));
    assert!(net.eps[SERVER].connection(s1).is_none());
    assert_eq!(net.eps[SERVER].reassembly_bytes(), 49_000);
    let d = forge_to_server(&net, &k2, 2, seq2 + 4, &[(700, MsgType::AppFragment, &first_fragment(3, 50))]);
    net.deliver_now(&d);
    assert_eq!(net.eps[SERVER].reassembly_bytes(), 98_000);
    assert_eq!(net.eps[SERVER].stats().reassembly_budget_refusals, 2);
    assert!(net.eps[SERVER].connection(s2).is_some());
    // Expiry releases them too (the lifetime is at least the connection
    // timeout plus the ack timeout), and so does the timeout of the silenced
    // connection.
    net.run_for(Duration::from_secs(60));
    assert_eq!(net.eps[SERVER].reassembly_bytes(), 0);
}

/// Like `silence_client`, but keeps the filters already installed.
fn silence_client_too(net: &mut Net, client: usize) -> u16 {
    let from = addr(client);
    let delivered = net.wire_log.len();
    let mut previous = net.filter.take();
    net.set_filter(move |d| {
        if d.from == from && d.to == addr(SERVER) {
            return Verdict::Drop;
        }
        previous.as_mut().map_or(Verdict::Deliver, |f| f(d))
    });
    net.run_for(Duration::from_millis(50));
    newest_seq(net.wire_log[..delivered].iter().filter(|d| d.from == from))
}

#[test]
fn block_list_cidr_v4_v6_at_run_time_and_ban() {
    let mut net = Net::new(EndpointConfig::default(), 3, 13);
    net.addrs[2] = "[2001:db8::2]:4002".parse().unwrap();
    net.addrs[3] = "[2001:db8:1::3]:4003".parse().unwrap();
    let conns: Vec<ConnectionId> = (1..=3).map(|i| net.connect(i)).collect();
    net.run_for(Duration::from_millis(100));
    assert_eq!(net.eps[SERVER].connection_count(), 3);

    // An IPv6 /48 blocks client 2 but not client 3 (another /48).
    let v6: IpNet = "2001:db8::/48".parse().unwrap();
    assert!(net.eps[SERVER].block(v6));
    let before = net.eps[SERVER].stats().dropped(DropReason::Blocked);
    for (j, &c) in conns.iter().enumerate() {
        net.eps[j + 1].send(c, b"after the block", Delivery::Reliable).unwrap();
    }
    net.run_for(Duration::from_millis(300));
    let got = |net: &Net| net.messages(SERVER).iter().filter(|m| m.as_slice() == b"after the block").count();
    assert_eq!(got(&net), 2, "clients 1 and 3 only");
    assert!(net.eps[SERVER].stats().dropped(DropReason::Blocked) > before);
    // Removed at run time: client 2's retransmission gets through.
    assert!(net.eps[SERVER].unblock(v6));
    assert!(!net.eps[SERVER].unblock(v6));
    net.run_for(Duration::from_millis(1500));
    assert_eq!(got(&net), 3);

    // An IPv4 /8 covering client 1: its hellos are blocked too, before any
    // cryptography, and a blocked client cannot reconnect.
    let v4: IpNet = "127.0.0.0/8".parse().unwrap();
    net.eps[SERVER].block(v4);
    let accepted = net.eps[SERVER].stats().hellos_accepted;
    let h = hello(3000, net.eps[SERVER].config());
    to_server(&mut net, "127.9.9.9:1".parse().unwrap(), &h);
    assert_eq!(net.eps[SERVER].stats().hellos_accepted, accepted);
    net.eps[SERVER].unblock(v4);

    // `ban`: disconnects client 3 (the peer hears it) and blocks its address.
    let s3 = net.server_conn_of(3).unwrap();
    net.eps[SERVER].ban(net.now, s3).unwrap();
    net.run_for(Duration::from_millis(1500));
    assert!(net.eps[SERVER].connection(s3).is_none());
    assert!(net.events[3].contains(&Event::Disconnected { conn: conns[2], reason: DisconnectReason::Peer }));
    assert!(net.eps[SERVER].block_list().iter().any(|n| n.contains(net.addrs[3].ip())));
    let c = net.connect(3);
    net.run_for(Duration::from_secs(6));
    assert!(net.events[3].iter().any(|e| matches!(e, Event::ConnectFailed { conn, .. } if *conn == c)));
    assert_eq!(net.eps[SERVER].connection_count(), 2);
    // Unbanned, it connects again.
    assert!(net.eps[SERVER].unblock(IpNet::host(net.addrs[3].ip())));
    let c = net.connect(3);
    net.run_for(Duration::from_millis(200));
    assert!(net.events[3].contains(&Event::Connected { conn: c }));
}

#[test]
fn per_address_reassembly_budget_keeps_one_host_from_taking_the_endpoints() {
    // Both clients share 127.0.0.1. Per connection 100 kB, per address
    // 120 kB, endpoint-wide plenty.
    let cfg = EndpointConfig {
        max_message_size: 100_000,
        max_reassembly_bytes: 100_000,
        max_reassembly_bytes_per_ip: 120_000,
        ..EndpointConfig::default()
    };
    let mut net = Net::new(cfg.clone(), 2, 15);
    let c1 = net.connect(1);
    let c2 = net.connect(2);
    net.run_for(Duration::from_millis(100));
    let (k1, k2) = (net.key_of(1, c1), net.key_of(2, c2));
    let seq1 = silence_client(&mut net, 1);
    let seq2 = silence_client_too(&mut net, 2);
    let ip = addr(1).ip();
    let d = forge_to_server(&net, &k1, 1, seq1 + 1, &[(500, MsgType::AppFragment, &first_fragment(1, 90))]);
    net.deliver_now(&d);
    assert_eq!(net.eps[SERVER].admission.host(ip, &cfg), (2, 89_000), "two connections, 89 kB held");
    // Client 2 is within its own budget and the endpoint's, not its address's.
    let d = forge_to_server(&net, &k2, 2, seq2 + 1, &[(500, MsgType::AppFragment, &first_fragment(1, 90))]);
    net.deliver_now(&d);
    let st = net.eps[SERVER].stats();
    assert_eq!((st.reassembly_budget_refusals, st.dropped(DropReason::Rate)), (1, 1), "{st}");
    assert_eq!(net.eps[SERVER].reassembly_bytes(), 89_000);
    // Another address would still have its whole budget.
    let other: IpAddr = "192.0.2.9".parse().unwrap();
    assert_eq!(net.eps[SERVER].admission.reassembly_room(other, 0, &cfg), 120_000);
    // Closing client 1 gives the address its budget back.
    let s1 = net.server_conn_of(1).unwrap();
    net.eps[SERVER].disconnect(net.now, s1).unwrap();
    net.run_for(Duration::from_secs(2));
    assert_eq!(net.eps[SERVER].admission.host(ip, &cfg), (1, 0));
    let d = forge_to_server(&net, &k2, 2, seq2 + 2, &[(500, MsgType::AppFragment, &first_fragment(1, 90))]);
    net.deliver_now(&d);
    assert_eq!(net.eps[SERVER].admission.host(ip, &cfg), (1, 89_000));
    // Expiry and the silenced connection's timeout release everything, and
    // the address is forgotten.
    net.run_for(Duration::from_secs(60));
    assert_eq!(net.eps[SERVER].reassembly_bytes(), 0);
    assert_eq!(net.eps[SERVER].admission.host(ip, &cfg), (0, 0));
    assert_eq!(net.eps[SERVER].admission.sources(), 0);
}

#[test]
fn connections_per_address_are_capped() {
    // Three clients on 127.0.0.1 against a cap of two.
    let cfg = EndpointConfig { max_connections_per_ip: 2, ..EndpointConfig::default() };
    let mut net = Net::new(cfg.clone(), 3, 16);
    let (a, _) = connect_two(&mut net);
    let c = net.connect(3);
    net.run_for(Duration::from_millis(600));
    assert!(!net.events[3].contains(&Event::Connected { conn: c }));
    assert!(net.eps[SERVER].stats().hellos_refused_source >= 2, "{}", net.eps[SERVER].stats());
    assert_eq!(net.eps[SERVER].admission.host(addr(1).ip(), &cfg).0, 2);
    // One leaves: the third gets in on its next hello.
    net.eps[1].disconnect(net.now, a).unwrap();
    net.run_for(Duration::from_secs(2));
    assert!(net.events[3].contains(&Event::Connected { conn: c }), "{}", describe(&net.events[3]));
    assert_eq!(net.eps[SERVER].connection_count(), 2);
    assert_eq!(net.eps[SERVER].admission.host(addr(1).ip(), &cfg).0, 2);
}

#[test]
fn admission_sources_stay_within_their_memory_bound() {
    // A flood from ever new addresses: the sources of ended handshakes live
    // until their buckets refill, which `memory_bounds` counts as
    // 2 · (burst + rate · (longest refill + 1 s sweep)) entries.
    let cfg =
        EndpointConfig { hello_rate: RateLimit::new(200, 50), max_pending_handshakes: 64, ..EndpointConfig::default() };
    let mut net = Net::new(cfg.clone(), 0, 18);
    let keys: Vec<Vec<u8>> = (0..64).map(|i| hello(900 + i, &cfg)).collect();
    // Refill: per address 16 / 8 per s = 2 s, per prefix 200 / 100 per s = 2 s.
    let bound = 2 * (50 + 200 * 3) + 2 * cfg.max_pending_handshakes;
    let mut peak = 0;
    for i in 0..4000u32 {
        to_server(&mut net, spoofed(i), &keys[i as usize % keys.len()]);
        net.now += Duration::from_millis(1);
        if i % 50 == 0 {
            net.eps[SERVER].handle_timeout(net.now);
        }
        peak = peak.max(net.eps[SERVER].admission.sources());
    }
    assert!(net.eps[SERVER].stats().hellos_accepted > 600, "{}", net.eps[SERVER].stats());
    assert!(peak <= bound, "{peak} sources, bound {bound}");
    // The bound assumes every bucket drained to the bottom; single hellos
    // from ever new addresses leave far fewer (about 140 here), but at least
    // the pending table's worth.
    assert!(peak >= cfg.max_pending_handshakes, "{peak}");
    // Quiet for longer than the refill time and the handshake timeout: all gone.
    net.run_for(Duration::from_secs(5));
    to_server(&mut net, spoofed(99_999), &keys[0]);
    net.now += Duration::from_secs(3);
    net.eps[SERVER].handle_timeout(net.now);
    to_server(&mut net, spoofed(99_998), &keys[1]);
    assert!(net.eps[SERVER].admission.sources() <= 4, "{}", net.eps[SERVER].admission.sources());
}
