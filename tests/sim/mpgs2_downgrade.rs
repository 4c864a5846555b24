//! MPGS/2 downgrade protection through the public API over the simulator
//! (MPGS2.md §2.9): the sentinel in the MPGS/1 SERVER_HELLO salt of a server
//! that speaks MPGS/2, the opt-in fallback to MPGS/1, and
//! `DowngradeDetected` when something on the path drops MPGS/2 hellos. Each
//! scenario runs twice and must produce the same trace digest.

use std::net::SocketAddr;

use mpgameserver::{ConnectFailure, ConnectionId, Delivery, Duration, EndpointConfig, Event, ProtocolVersion};
use mpgameserver_sim::{LinkConfig, NodeId, Sim, assert_deterministic};

use crate::server_key;

/// The sentinel a server with MPGS/2 writes into MPGS/1 SERVER_HELLO salts.
const SENTINEL: &[u8; 8] = b"MPGS/2\x00\x01";

/// Whether `d` is a HELLO2 (an MPGS/1 CLIENT_HELLO frame of 1200 B whose
/// version field, datagram bytes 120–122, says 2).
fn is_hello2(d: &[u8]) -> bool {
    d.len() == 1200 && d[0] == b'F' && d[120..123] == [0, 3, 2]
}

fn config(fallback: bool) -> EndpointConfig {
    let mut c = EndpointConfig::default();
    c.allow_v1_fallback = fallback;
    c
}

fn server_config(mpgs2: bool) -> EndpointConfig {
    let mut c = EndpointConfig::default();
    c.accept_mpgs2 = mpgs2;
    c
}

/// A server (`server_cfg`) and a client (`client_cfg`) over 10 ms links;
/// the client connects over MPGS/2. With `middlebox`, the client → server
/// path is cut and captured first, for [`run_dropping_hello2`].
fn setup(
    seed: u64,
    server_cfg: EndpointConfig,
    client_cfg: EndpointConfig,
    middlebox: bool,
) -> (Sim, NodeId, NodeId, ConnectionId) {
    let mut sim = Sim::new(seed);
    sim.set_default_link(LinkConfig::default().latency(Duration::from_millis(10)));
    let server = sim.add_server(server_cfg, server_key(seed)).unwrap();
    let client = sim.add_client(client_cfg).unwrap();
    if middlebox {
        let (c_addr, s_addr): (SocketAddr, SocketAddr) = (sim.addr(client), sim.addr(server));
        sim.partition_one_way(client, server);
        sim.capture(move |d| d.from == c_addr && d.to == s_addr);
    }
    let addr = sim.addr(server);
    let key = sim.server_key(server).unwrap().clone();
    let c = sim.with_endpoint(client, |ep, now| ep.connect_with(now, addr, key, ProtocolVersion::V2)).unwrap();
    (sim, server, client, c)
}

/// Runs `d` with a middlebox on the client → server path (set up by
/// [`setup`]) that drops every HELLO2 and forwards everything else (10 ms
/// later); returns when the HELLO2s it dropped were sent.
fn run_dropping_hello2(sim: &mut Sim, client: NodeId, server: NodeId, d: Duration) -> Vec<mpgameserver::Instant> {
    let (c_addr, s_addr): (SocketAddr, SocketAddr) = (sim.addr(client), sim.addr(server));
    let end = sim.now() + d;
    let mut dropped = Vec::new();
    while sim.now() < end {
        sim.run_for(Duration::from_millis(1));
        for dg in sim.take_captured() {
            if is_hello2(&dg.bytes) {
                dropped.push(dg.sent_at);
            } else {
                sim.inject(c_addr, s_addr, dg.bytes, Duration::from_millis(10));
            }
        }
    }
    sim.stop_capture();
    sim.heal();
    dropped
}

fn failure(sim: &Sim, client: NodeId, c: ConnectionId) -> Option<ConnectFailure> {
    sim.events(client).iter().find_map(|e| match e {
        Event::ConnectFailed { conn, reason } if *conn == c => Some(*reason),
        _ => None,
    })
}

/// The MPGS/1 SERVER_HELLO a default (or MPGS/2-off) server sends to an
/// MPGS/1 client, as captured.
fn mpgs1_server_hello(seed: u64, mpgs2: bool) -> Vec<u8> {
    let mut sim = Sim::new(seed);
    sim.set_default_link(LinkConfig::default().latency(Duration::from_millis(10)));
    let server = sim.add_server(server_config(mpgs2), server_key(seed)).unwrap();
    let client = sim.add_client(EndpointConfig::default()).unwrap();
    let (c_addr, s_addr) = (sim.addr(client), sim.addr(server));
    sim.capture(move |d| d.from == s_addr && d.to == c_addr);
    let addr = sim.addr(server);
    let key = sim.server_key(server).unwrap().clone();
    let c = sim.with_endpoint(client, |ep, now| ep.connect_with(now, addr, key, ProtocolVersion::V1)).unwrap();
    assert!(sim.run_until(|s| s.events(client).contains(&Event::Connected { conn: c }), Duration::from_secs(5)));
    let first = sim.captured()[0].clone();
    assert_eq!(first.msg_type(), Some(mpgameserver::_internal::wire::MsgType::ServerHello));
    first.bytes
}

#[test]
fn the_sentinel_is_in_the_salt_only_when_mpgs2_is_on() {
    for seed in [1, 2, 3] {
        let on = mpgs1_server_hello(seed, true);
        let off = mpgs1_server_hello(seed, false);
        let at = on.windows(8).position(|w| w == SENTINEL);
        assert!(at.is_some(), "seed {seed}: a server with MPGS/2 writes the sentinel");
        assert!(off.windows(8).all(|w| w != SENTINEL), "seed {seed}: an MPGS/1-only server does not");
        // The salt is drawn as before and its last 8 bytes overwritten: its
        // first 8 bytes are those of the MPGS/1-only server's hello (the
        // signature differs, as it covers the salt).
        let at = at.unwrap();
        // (The 20-byte header differs in its length field: the DER
        // signature's length varies.)
        assert_eq!(on[20..at], off[20..at], "seed {seed}: bytes up to the sentinel");
        assert_ne!(on[at..at + 8], off[at..at + 8]);
    }
}

fn downgrade_run(seed: u64) -> Sim {
    let (mut sim, server, client, c) = setup(seed, server_config(true), config(true), true);
    let dropped = run_dropping_hello2(&mut sim, client, server, Duration::from_secs(6));
    assert_eq!(failure(&sim, client, c), Some(ConnectFailure::DowngradeDetected), "{:?}", sim.events(client));
    assert!(sim.events(client).iter().all(|e| !matches!(e, Event::Connected { .. })));
    let stats = sim.endpoint(server).stats();
    assert!(stats.hellos_accepted >= 1, "the fallback reached the server over MPGS/1");
    assert_eq!(sim.endpoint(server).connection_count(), 0, "the MPGS/1 handshake was abandoned");
    // HELLO2s before the fallback (1 s), then again after the sentinel.
    let start = mpgameserver::Instant::ZERO;
    assert!(dropped.iter().any(|&t| t < start + Duration::from_secs(1)));
    assert!(dropped.iter().any(|&t| t > start + Duration::from_millis(1100)), "HELLO2 resumed: {dropped:?}");
    sim
}

#[test]
fn a_fallback_that_meets_the_sentinel_returns_to_mpgs2_and_reports_a_downgrade() {
    for seed in [1, 2] {
        assert_deterministic(seed, downgrade_run);
    }
}

fn fallback_run(seed: u64) -> Sim {
    let (mut sim, server, client, c) = setup(seed, server_config(false), config(true), false);
    // Messages accepted before the handshake go over whatever it ends with.
    let early: Vec<_> =
        (0..3u8).map(|n| sim.send(client, c, &[n; 100], Delivery::Reliable).unwrap()).collect::<Vec<_>>();
    assert!(sim.run_until(|s| s.events(client).contains(&Event::Connected { conn: c }), Duration::from_secs(5)));
    let conn = sim.endpoint(client).connection(c).unwrap();
    assert_eq!(conn.version(), ProtocolVersion::V1, "fell back to MPGS/1");
    let t =
        sim.event_times(client)[sim.events(client).iter().position(|e| *e == Event::Connected { conn: c }).unwrap()];
    assert!(t >= mpgameserver::Instant::ZERO + Duration::from_secs(1), "not before 1 s without an MPGS/2 reply");
    sim.run_for(Duration::from_secs(2));
    for id in early {
        assert!(sim.events(client).contains(&Event::Delivered { conn: c, id }), "{id:?}: {:?}", sim.events(client));
    }
    let got: Vec<Vec<u8>> = sim.messages(server).into_iter().map(<[u8]>::to_vec).collect();
    assert_eq!(got, (0..3u8).map(|n| vec![n; 100]).collect::<Vec<_>>());
    sim
}

#[test]
fn an_opted_in_client_falls_back_to_an_mpgs1_only_server_after_one_second() {
    for seed in [1, 2] {
        assert_deterministic(seed, fallback_run);
    }
}

#[test]
fn without_the_opt_in_there_is_no_fallback() {
    let (mut sim, server, client, c) = setup(4, server_config(false), config(false), false);
    let (c_addr, s_addr) = (sim.addr(client), sim.addr(server));
    sim.capture(move |d| d.from == c_addr && d.to == s_addr);
    sim.run_for(Duration::from_secs(6));
    assert_eq!(failure(&sim, client, c), Some(ConnectFailure::TimedOut));
    assert!(sim.captured().iter().all(|d| is_hello2(&d.bytes)), "HELLO2s only, never an MPGS/1 hello");
    // With the path dropping HELLO2s and no opt-in: a plain timeout too.
    let (mut sim, server, client, c) = setup(5, server_config(true), config(false), true);
    run_dropping_hello2(&mut sim, client, server, Duration::from_secs(6));
    assert_eq!(failure(&sim, client, c), Some(ConnectFailure::TimedOut));
}

#[test]
fn an_opted_in_client_of_an_mpgs2_server_never_sends_mpgs1() {
    let (mut sim, server, client, c) = setup(6, server_config(true), config(true), false);
    let (c_addr, s_addr) = (sim.addr(client), sim.addr(server));
    sim.capture(move |d| d.from == c_addr && d.to == s_addr && d.bytes[0] == b'F');
    assert!(sim.run_until(|s| s.events(client).contains(&Event::Connected { conn: c }), Duration::from_secs(5)));
    sim.run_for(Duration::from_secs(3));
    assert_eq!(sim.endpoint(client).connection(c).unwrap().version(), ProtocolVersion::V2);
    assert!(sim.captured().iter().all(|d| is_hello2(&d.bytes)));
}
