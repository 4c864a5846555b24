//! MPGS/2 through the public `Endpoint` API over the simulator (MPGS2.md
//! §2, §8 stage 1): the handshake, `Reliable` exactly once and in send
//! order under impairments, MPGS/1 and MPGS/2 clients on one server port,
//! tampered hellos, the cookie round trip, and a spoofed HELLO2 flood. Each
//! scenario runs twice and must produce the same trace digest.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use mpgameserver::_internal::protect::crc32;
use mpgameserver::{
    ConnectFailure, ConnectionId, CookiePolicy, Delivery, DropReason, Duration, EndpointConfig, Event, ProtocolVersion,
};
use mpgameserver_sim::{LinkConfig, NodeId, Sim, assert_deterministic};

use crate::{number_of, numbered, server_key};

/// Connects `client` to `server` over MPGS/2.
pub(crate) fn connect_v2(sim: &mut Sim, client: NodeId, server: NodeId) -> ConnectionId {
    let addr = sim.addr(server);
    let key = sim.server_key(server).unwrap().clone();
    sim.with_endpoint(client, |ep, now| ep.connect_with(now, addr, key, ProtocolVersion::V2)).unwrap()
}

/// Connects `client` to `server` over MPGS/1, explicitly.
fn connect_v1(sim: &mut Sim, client: NodeId, server: NodeId) -> ConnectionId {
    let addr = sim.addr(server);
    let key = sim.server_key(server).unwrap().clone();
    sim.with_endpoint(client, |ep, now| ep.connect_with(now, addr, key, ProtocolVersion::V1)).unwrap()
}

/// The server's connection ids, in the order they connected.
pub(crate) fn server_conns(sim: &Sim, server: NodeId) -> Vec<ConnectionId> {
    sim.events(server)
        .iter()
        .filter_map(|e| if let Event::Connected { conn } = e { Some(*conn) } else { None })
        .collect()
}

/// Numbers of the numbered messages `node` received, in arrival order.
pub(crate) fn arrivals(sim: &Sim, node: NodeId) -> Vec<u32> {
    sim.messages(node).into_iter().map(number_of).collect()
}

/// Reliable messages both ways over `link` with MPGS/2; checks exactly once
/// and in send order, one outcome per message, and returns the digest.
pub(crate) fn reliable_run(seed: u64, link: LinkConfig, count: u32) -> Sim {
    let mut sim = Sim::new(seed);
    sim.set_default_link(link);
    let server = sim.add_server(EndpointConfig::default(), server_key(seed)).unwrap();
    let client = sim.add_client(EndpointConfig::default()).unwrap();
    let c = connect_v2(&mut sim, client, server);
    let up =
        |sim: &Sim| sim.events(client).contains(&Event::Connected { conn: c }) && !server_conns(sim, server).is_empty();
    assert!(sim.run_until(up, Duration::from_secs(30)), "seed {seed}: no MPGS/2 handshake: {:?}", sim.events(client));
    let s = server_conns(&sim, server)[0];
    assert_eq!(sim.endpoint(client).connection(c).unwrap().version(), ProtocolVersion::V2);
    assert_eq!(sim.endpoint(server).connection(s).unwrap().version(), ProtocolVersion::V2);
    for n in 0..count {
        let size = [0usize, 20, 500, 1300, 4000][n as usize % 5];
        sim.send(client, c, &numbered(n, size), Delivery::Reliable).unwrap();
        sim.send(server, s, &numbered(n, size / 2), Delivery::Reliable).unwrap();
        sim.run_for(Duration::from_micros(16_667));
    }
    let done =
        |sim: &Sim| arrivals(sim, server).len() >= count as usize && arrivals(sim, client).len() >= count as usize;
    assert!(sim.run_until(done, Duration::from_secs(60)), "seed {seed}: not all delivered");
    sim.run_for(Duration::from_secs(3));
    let want: Vec<u32> = (0..count).collect();
    assert_eq!(arrivals(&sim, server), want, "seed {seed}: client → server");
    assert_eq!(arrivals(&sim, client), want, "seed {seed}: server → client");
    for node in [client, server] {
        let mut outcomes: BTreeMap<u64, u32> = BTreeMap::new();
        for e in sim.events(node) {
            if let Event::Delivered { id, .. } | Event::Lost { id, .. } = e {
                *outcomes.entry(id.0).or_default() += 1;
            }
        }
        assert_eq!(outcomes.len(), count as usize, "seed {seed}: one outcome per message");
        assert!(outcomes.values().all(|&n| n == 1), "seed {seed}: exactly one outcome each");
    }
    sim
}

#[test]
fn v2_handshake_and_reliable_in_order_on_a_clean_link() {
    let link = LinkConfig::default().latency(Duration::from_millis(20));
    let a = reliable_run(1, link.clone(), 40);
    let b = reliable_run(1, link, 40);
    assert_eq!(a.digest(), b.digest());
}

#[test]
fn v2_reliable_exactly_once_in_order_under_loss_dup_reorder() {
    for seed in 0..24u64 {
        let loss = [0.0, 0.05, 0.15, 0.3][seed as usize % 4];
        let link = LinkConfig::default()
            .latency(Duration::from_millis(15 + seed % 40))
            .jitter(Duration::from_millis(seed % 3 * 5))
            .loss(loss)
            .duplicate(if seed % 2 == 0 { 0.1 } else { 0.0 })
            .reorder(if seed % 3 == 0 { 0.2 } else { 0.0 }, Duration::from_millis(30))
            .corrupt(if seed % 5 == 0 { 0.02 } else { 0.0 });
        let digest = assert_deterministic(seed, |s| reliable_run(s, link.clone(), 25));
        assert_ne!(digest, [0; 32]);
    }
}

/// The HELLO2 a fresh MPGS/2 attempt of `client` sends first (captured
/// while the path to the server is cut), and the sim, for tampering.
pub(crate) fn captured_hello(seed: u64) -> (Sim, NodeId, NodeId, ConnectionId, Vec<u8>) {
    let mut sim = Sim::new(seed);
    sim.set_default_link(LinkConfig::default().latency(Duration::from_millis(10)));
    let server = sim.add_server(EndpointConfig::default(), server_key(seed)).unwrap();
    let client = sim.add_client(EndpointConfig::default()).unwrap();
    let (c_addr, s_addr) = (sim.addr(client), sim.addr(server));
    sim.capture(move |d| d.from == c_addr && d.to == s_addr);
    sim.partition_one_way(client, server);
    let c = connect_v2(&mut sim, client, server);
    sim.run_for(Duration::from_millis(5));
    let hello = sim.captured()[0].bytes.clone();
    assert_eq!(hello.len(), 1200);
    (sim, client, server, c, hello)
}

/// A datagram of the client's MPGS/1 frame with byte `i` flipped and the
/// CRC fixed, so only the MPGS/2 checks can catch it.
pub(crate) fn flip_hello(hello: &[u8], i: usize) -> Vec<u8> {
    let mut h = hello.to_vec();
    h[i] ^= 0x01;
    let crc = crc32(&h[..1196]);
    h[1196..].copy_from_slice(&crc.to_be_bytes());
    h
}

pub(crate) fn tampered_hello_run(seed: u64, i: usize) -> Sim {
    let (mut sim, client, server, c, hello) = captured_hello(seed);
    let (c_addr, s_addr) = (sim.addr(client), sim.addr(server));
    sim.stop_capture();
    sim.inject(c_addr, s_addr, flip_hello(&hello, i), Duration::from_millis(10));
    sim.run_for(Duration::from_secs(6));
    let failed = sim.events(client).iter().any(|e| matches!(e, Event::ConnectFailed { conn, .. } if *conn == c));
    assert!(failed, "byte {i}: the attempt must fail: {:?}", sim.events(client));
    assert!(server_conns(&sim, server).is_empty(), "byte {i}: no server connection");
    if i >= 22 + 600 {
        // Padding parses: the server answers, and its signature over the
        // tampered transcript fails at the client.
        assert!(
            sim.events(client).contains(&Event::ConnectFailed { conn: c, reason: ConnectFailure::WrongServerKey }),
            "byte {i}: {:?}",
            sim.events(client)
        );
        assert_eq!(sim.endpoint(server).stats().v2_handshakes_started, 1);
    }
    sim
}

#[test]
fn a_tampered_hello2_byte_fails_the_handshake() {
    // The SPKI point, the TLV block (protocol id, client random, lists,
    // parameters) and the random padding: every byte is in the transcript.
    for i in [22 + 40, 22 + 100, 22 + 106, 22 + 115, 22 + 140, 22 + 600, 1195] {
        assert_deterministic(i as u64, |s| tampered_hello_run(s, i));
    }
}

pub(crate) fn tampered_server_hello_run(seed: u64, i: usize) -> Sim {
    let mut sim = Sim::new(seed);
    sim.set_default_link(LinkConfig::default().latency(Duration::from_millis(10)));
    let server = sim.add_server(EndpointConfig::default(), server_key(seed)).unwrap();
    let client = sim.add_client(EndpointConfig::default()).unwrap();
    let (c_addr, s_addr) = (sim.addr(client), sim.addr(server));
    sim.capture(move |d| d.from == s_addr && d.to == c_addr);
    sim.partition_one_way(server, client);
    let c = connect_v2(&mut sim, client, server);
    sim.run_for(Duration::from_millis(100));
    let mut reply = sim.captured()[0].bytes.clone();
    assert_eq!((reply.len(), reply[0]), (1200, 0xC1));
    reply[i] ^= 0x01;
    sim.stop_capture();
    sim.inject(s_addr, c_addr, reply, Duration::from_millis(1));
    sim.run_for(Duration::from_secs(6));
    let failed = sim.events(client).iter().find_map(|e| {
        if let Event::ConnectFailed { conn, reason } = e { (*conn == c).then_some(*reason) } else { None }
    });
    assert!(failed.is_some(), "byte {i}: the attempt must fail: {:?}", sim.events(client));
    assert!(sim.events(client).iter().all(|e| !matches!(e, Event::Connected { .. })));
    sim
}

#[test]
fn a_tampered_server_hello_byte_fails_the_handshake() {
    // Version, suite, echo, server random, key, TLVs, signature, padding.
    for i in [1, 2, 5, 20, 40, 80, 105, 120, 160, 200, 1199] {
        assert_deterministic(i as u64, |s| tampered_server_hello_run(s, i));
    }
}

fn cookie_run(seed: u64) -> Sim {
    let mut cfg = EndpointConfig::default();
    cfg.cookie_policy = CookiePolicy::Always;
    let mut sim = Sim::new(seed);
    sim.set_default_link(LinkConfig::default().latency(Duration::from_millis(25)).loss(0.1));
    let server = sim.add_server(cfg, server_key(seed)).unwrap();
    let client = sim.add_client(EndpointConfig::default()).unwrap();
    let c = connect_v2(&mut sim, client, server);
    let up = |sim: &Sim| sim.events(client).contains(&Event::Connected { conn: c });
    assert!(sim.run_until(up, Duration::from_secs(6)), "seed {seed}: {:?}", sim.events(client));
    sim.send(client, c, &numbered(7, 10), Delivery::Reliable).unwrap();
    sim.run_for(Duration::from_secs(2));
    assert_eq!(arrivals(&sim, server), vec![7]);
    let st = sim.endpoint(server).stats();
    assert!(st.v2_hello_retries >= 1, "a cookie was demanded");
    assert_eq!(st.v2_handshakes_started, 1, "one ECDH for one client");
    sim
}

#[test]
fn a_cookie_demanding_server_still_connects_an_honest_client() {
    for seed in 0..8 {
        assert_deterministic(seed, cookie_run);
    }
}

fn rejected_run(seed: u64) -> Sim {
    let mut cfg = EndpointConfig::default();
    cfg.max_connections = 1;
    let mut sim = Sim::new(seed);
    sim.set_default_link(LinkConfig::default().latency(Duration::from_millis(10)));
    let server = sim.add_server(cfg, server_key(seed)).unwrap();
    let first = sim.add_client(EndpointConfig::default()).unwrap();
    let second = sim.add_client(EndpointConfig::default()).unwrap();
    connect_v2(&mut sim, first, server);
    sim.run_for(Duration::from_secs(1));
    let c = connect_v2(&mut sim, second, server);
    sim.run_for(Duration::from_secs(1));
    assert!(
        sim.events(second).contains(&Event::ConnectFailed { conn: c, reason: ConnectFailure::Rejected(1) }),
        "{:?}",
        sim.events(second)
    );
    sim
}

#[test]
fn a_full_server_rejects_with_a_reason() {
    assert_deterministic(3, rejected_run);
}

fn other_game_run(seed: u64) -> Sim {
    let mut sim = Sim::new(seed);
    let mut cfg = EndpointConfig::default();
    cfg.protocol_id = 99;
    let server = sim.add_server(cfg, server_key(seed)).unwrap();
    let client = sim.add_client(EndpointConfig::default()).unwrap();
    let c = connect_v2(&mut sim, client, server);
    sim.run_for(Duration::from_secs(6));
    assert!(sim.events(client).contains(&Event::ConnectFailed { conn: c, reason: ConnectFailure::TimedOut }));
    assert!(sim.endpoint(server).stats().dropped(DropReason::ProtocolId) >= 5);
    assert_eq!(sim.endpoint(server).stats().datagrams_sent, 0, "another game's hellos get nothing");
    sim
}

#[test]
fn another_games_hellos_are_dropped_silently() {
    assert_deterministic(4, other_game_run);
}

fn shared_port_run(seed: u64) -> Sim {
    let mut sim = Sim::new(seed);
    sim.set_default_link(LinkConfig::default().latency(Duration::from_millis(20)).loss(0.1).duplicate(0.05));
    let server = sim.add_server(EndpointConfig::default(), server_key(seed)).unwrap();
    let mut clients = Vec::new();
    for k in 0..6 {
        let node = sim.add_client(EndpointConfig::default()).unwrap();
        let conn = if k % 2 == 0 { connect_v1(&mut sim, node, server) } else { connect_v2(&mut sim, node, server) };
        clients.push((node, conn, k % 2 == 1));
    }
    let all_up = |sim: &Sim| {
        clients.iter().all(|&(n, c, _)| sim.events(n).contains(&Event::Connected { conn: c }))
            && server_conns(sim, server).len() == clients.len()
    };
    assert!(sim.run_until(all_up, Duration::from_secs(20)), "seed {seed}: not all connected");
    for n in 0..30u32 {
        for &(node, conn, _) in &clients {
            sim.send(node, conn, &numbered(n, 100 + n as usize * 30), Delivery::Reliable).unwrap();
        }
        sim.run_for(Duration::from_micros(16_667));
    }
    sim.run_for(Duration::from_secs(10));
    let server_ep = sim.endpoint(server);
    let mut v2 = 0;
    for s in server_conns(&sim, server) {
        if server_ep.connection(s).unwrap().version() == ProtocolVersion::V2 {
            v2 += 1;
        }
    }
    assert_eq!(v2, 3, "three MPGS/2 connections on the MPGS/1 port");
    let mut got: BTreeMap<ConnectionId, Vec<u32>> = BTreeMap::new();
    for e in sim.events(server) {
        if let Event::Message { conn, payload, .. } = e {
            got.entry(*conn).or_default().push(number_of(payload));
        }
    }
    for s in server_conns(&sim, server) {
        let mut nums = got.remove(&s).unwrap_or_default();
        if server_ep.connection(s).unwrap().version() == ProtocolVersion::V1 {
            nums.sort_unstable(); // MPGS/1 has no order
        }
        assert_eq!(nums, (0..30).collect::<Vec<_>>(), "seed {seed}: {s}");
    }
    // A HELLO2 from an MPGS/1 client's address is dropped and never answered.
    let (_, _, hello) = {
        let (sim2, _, _, _, h) = captured_hello(seed);
        (sim2, (), h)
    };
    let v1_addr = sim.addr(clients[0].0);
    let s_addr = sim.addr(server);
    let before = sim.endpoint(server).stats().dropped(DropReason::Mpgs1Address);
    sim.capture(move |d| d.from == s_addr && d.to == v1_addr && d.bytes[0] != b'F');
    sim.inject(v1_addr, s_addr, hello, Duration::ZERO);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.endpoint(server).stats().dropped(DropReason::Mpgs1Address), before + 1);
    assert!(sim.captured().is_empty(), "nothing MPGS/2 to an MPGS/1 client");
    sim
}

#[test]
fn mpgs1_and_mpgs2_clients_share_one_server_port_under_loss() {
    for seed in [1, 2, 3] {
        assert_deterministic(seed, shared_port_run);
    }
}

/// Spoofed HELLO2s from `spoofed` random sources at 2,000/s while `honest`
/// clients connect; `policy` as configured.
fn flood_run(seed: u64, policy: CookiePolicy) -> Sim {
    let mut cfg = EndpointConfig::default();
    cfg.cookie_policy = policy;
    let mut sim = Sim::new(seed);
    sim.set_default_link(LinkConfig::default().latency(Duration::from_millis(20)));
    let server = sim.add_server(cfg, server_key(seed)).unwrap();
    let s_addr = sim.addr(server);
    // Genuine hellos to replay from spoofed sources.
    let hellos: Vec<Vec<u8>> = (0..4).map(|k| captured_hello(seed * 100 + k).4).collect();
    let spoofed = |k: u64| -> SocketAddr {
        let x = (k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32;
        SocketAddr::from(([10, (x >> 16) as u8, (x >> 8) as u8, x as u8 | 1], 1024 + (k % 50_000) as u16))
    };
    sim.capture(move |d| d.from == s_addr);
    let mut sent_to: BTreeMap<SocketAddr, u64> = BTreeMap::new();
    let mut k = 0u64;
    let mut flood = |sim: &mut Sim, ms: u64, sent_to: &mut BTreeMap<SocketAddr, u64>| {
        for _ in 0..ms {
            for _ in 0..2 {
                let from = spoofed(k);
                let h = hellos[(k % 4) as usize].clone();
                *sent_to.entry(from).or_default() += h.len() as u64;
                sim.inject(from, s_addr, h, Duration::ZERO);
                k += 1;
            }
            sim.run_for(Duration::from_millis(1));
        }
    };
    flood(&mut sim, 1000, &mut sent_to);
    let ecdh_before = sim.endpoint(server).stats().v2_handshakes_started;
    let mut honest = Vec::new();
    for _ in 0..3 {
        let node = sim.add_client(EndpointConfig::default()).unwrap();
        honest.push((node, connect_v2(&mut sim, node, server)));
    }
    flood(&mut sim, 1500, &mut sent_to);
    for &(node, c) in &honest {
        assert!(sim.events(node).contains(&Event::Connected { conn: c }), "seed {seed}: honest client under flood");
    }
    let st = sim.endpoint(server).stats();
    assert!(st.v2_hello_retries > 2000, "the flood was answered with cookies: {st}");
    assert_eq!(st.v2_handshakes_started - ecdh_before, honest.len() as u64, "ECDH only for honest clients");
    if policy == CookiePolicy::Always {
        assert_eq!(st.v2_handshakes_started, honest.len() as u64);
    }
    let mut out: BTreeMap<SocketAddr, u64> = BTreeMap::new();
    for d in sim.captured() {
        *out.entry(d.to).or_default() += d.bytes.len() as u64;
    }
    for (addr, bytes_in) in &sent_to {
        let bytes_out = out.get(addr).copied().unwrap_or(0);
        assert!(bytes_out <= *bytes_in, "seed {seed}: {addr} got {bytes_out} B for {bytes_in} B");
    }
    sim
}

#[test]
fn a_spoofed_hello2_flood_costs_no_ecdh_and_no_amplification() {
    assert_deterministic(5, |s| flood_run(s, CookiePolicy::UnderLoad));
    assert_deterministic(6, |s| flood_run(s, CookiePolicy::Always));
}
