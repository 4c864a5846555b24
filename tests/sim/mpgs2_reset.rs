//! MPGS/2 stateless reset through the public API over the simulator
//! (MPGS2.md §6.4): a server that restarts with the same key at the same
//! address answers its old clients' packets with stateless resets, so they
//! learn within one round trip that their connection is gone. Each scenario
//! runs twice and must produce the same trace digest.

use mpgameserver::{
    ConnectionId, Delivery, DisconnectReason, Duration, Endpoint, EndpointConfig, Event, Instant, ProtocolVersion,
    ResetBase,
};
use mpgameserver_sim::{LinkConfig, NodeId, Sim, assert_deterministic};

use crate::server_key;

/// One-way latency of the scenarios' links.
const ONE_WAY: Duration = Duration::from_millis(20);

/// A server with three MPGS/2 clients and one MPGS/1 client, all
/// connected; the server restarts (new endpoint, new seed, `restart_cfg`,
/// same root key, same address) at the returned instant, after which every
/// client sends one message at once.
fn restart(
    seed: u64,
    cfg: EndpointConfig,
    restart_cfg: EndpointConfig,
) -> (Sim, NodeId, Vec<(NodeId, ConnectionId)>, Instant) {
    let mut sim = Sim::new(seed);
    sim.set_default_link(LinkConfig::default().latency(ONE_WAY));
    let server = sim.add_server(cfg, server_key(seed)).unwrap();
    let mut clients = Vec::new();
    for k in 0..4 {
        let node = sim.add_client(EndpointConfig::default()).unwrap();
        let protocol = if k == 3 { ProtocolVersion::V1 } else { ProtocolVersion::V2 };
        let addr = sim.addr(server);
        let key = sim.server_key(server).unwrap().clone();
        let conn = sim.with_endpoint(node, |ep, now| ep.connect_with(now, addr, key, protocol)).unwrap();
        clients.push((node, conn));
    }
    let up = |sim: &Sim| {
        clients.iter().all(|&(n, c)| sim.events(n).contains(&Event::Connected { conn: c }))
            && sim.endpoint(server).connection_count() == clients.len()
    };
    assert!(sim.run_until(up, Duration::from_secs(10)), "seed {seed}: not all connected");
    sim.run_for(Duration::from_millis(500));
    let restarted = Endpoint::server(restart_cfg, server_key(seed), sim.endpoint_seed(100)).unwrap();
    *sim.endpoint_mut(server) = restarted;
    let at = sim.now();
    for &(node, conn) in &clients {
        sim.send(node, conn, b"still there?", Delivery::Reliable).unwrap();
    }
    (sim, server, clients, at)
}

/// When `node` reported `Disconnected` for `conn`, and why.
fn disconnected(sim: &Sim, node: NodeId, conn: ConnectionId) -> Vec<(Instant, DisconnectReason)> {
    sim.events(node)
        .iter()
        .zip(sim.event_times(node))
        .filter_map(|(e, &t)| match e {
            Event::Disconnected { conn: c, reason } if *c == conn => Some((t, *reason)),
            _ => None,
        })
        .collect()
}

fn restart_run(seed: u64) -> Sim {
    let (mut sim, server, clients, at) = restart(seed, EndpointConfig::default(), EndpointConfig::default());
    let s_addr = sim.addr(server);
    let v1_addr = sim.addr(clients[3].0);
    sim.capture(move |d| d.from == s_addr && d.to == v1_addr);
    let rtt = ONE_WAY * 2;
    sim.run_for(rtt + Duration::from_millis(5));
    for &(node, conn) in &clients[..3] {
        let seen = disconnected(&sim, node, conn);
        assert_eq!(seen.len(), 1, "seed {seed}: {node} noticed the restart once: {:?}", sim.events(node));
        let (t, reason) = seen[0];
        assert_eq!(reason, DisconnectReason::Reset, "seed {seed}: {node}");
        assert!(reason.to_string().contains("reset"), "{reason}");
        assert!(t <= at + rtt, "seed {seed}: {node} noticed after {:?}", t.saturating_duration_since(at));
        assert!(sim.endpoint(node).connection(conn).is_none(), "the connection is gone");
    }
    let stats = sim.endpoint(server).stats();
    assert_eq!(stats.v2_resets_sent, 3, "one reset per MPGS/2 client");
    assert_eq!(sim.endpoint(server).connection_count(), 0);
    // The MPGS/1 client gets nothing at all (MPGS/1 has no reset; §2.2:
    // no MPGS/2 datagram to an MPGS/1 peer).
    assert!(sim.captured().is_empty(), "seed {seed}: {:?}", sim.captured().len());
    assert!(disconnected(&sim, clients[3].0, clients[3].1).is_empty());
    // Every later packet of the dead connections would be answered at most
    // once a second per source; the clients sent none (they forgot it).
    sim.run_for(Duration::from_secs(2));
    assert_eq!(sim.endpoint(server).stats().v2_resets_sent, 3);
    sim
}

#[test]
fn a_restarted_server_is_noticed_within_one_rtt_by_stateless_reset() {
    for seed in [1, 2] {
        assert_deterministic(seed, restart_run);
    }
}

#[test]
fn a_configured_reset_base_survives_a_restart_and_a_different_one_does_not_match() {
    let base = |b: u8| {
        let mut c = EndpointConfig::default();
        c.reset_base = Some(ResetBase([b; 32]));
        c
    };
    // Same configured base after the restart: resets recognised.
    let (mut sim, server, clients, _) = restart(5, base(7), base(7));
    sim.run_for(Duration::from_millis(100));
    for &(node, conn) in &clients[..3] {
        assert_eq!(disconnected(&sim, node, conn).first().map(|d| d.1), Some(DisconnectReason::Reset));
    }
    assert_eq!(sim.endpoint(server).stats().v2_resets_sent, 3);
    // Another base (or endpoint id): the resets are not the clients' tokens,
    // so they are ignored, and the clients time out instead.
    let mut other = base(7);
    other.endpoint_id = 1;
    let (mut sim, server, clients, _) = restart(5, base(7), other);
    sim.run_for(Duration::from_millis(100));
    assert_eq!(sim.endpoint(server).stats().v2_resets_sent, 3);
    for &(node, conn) in &clients[..3] {
        assert!(disconnected(&sim, node, conn).is_empty(), "a foreign reset is ignored");
    }
    sim.run_for(Duration::from_secs(10));
    for &(node, conn) in &clients[..3] {
        assert_eq!(disconnected(&sim, node, conn).first().map(|d| d.1), Some(DisconnectReason::TimedOut));
    }
}

#[test]
fn a_server_without_mpgs2_sends_no_reset() {
    let mut off = EndpointConfig::default();
    off.accept_mpgs2 = false;
    let (mut sim, server, clients, _) = restart(6, EndpointConfig::default(), off);
    sim.run_for(Duration::from_millis(200));
    assert_eq!(sim.endpoint(server).stats().v2_resets_sent, 0);
    for &(node, conn) in &clients[..3] {
        assert!(disconnected(&sim, node, conn).is_empty());
    }
}

#[test]
fn resets_are_smaller_than_their_trigger_and_rate_limited_per_source() {
    let (mut sim, server, clients, _) = restart(8, EndpointConfig::default(), EndpointConfig::default());
    sim.run_for(Duration::from_millis(100));
    let s_addr = sim.addr(server);
    let _ = clients;
    let c_addr: std::net::SocketAddr = "10.9.9.9:7000".parse().unwrap();
    sim.capture(move |d| d.from == s_addr && d.to == c_addr);
    // Short packets for an unknown id from one source: 21 bytes (too small
    // to answer with anything smaller than 21), then 100 of 60 bytes in
    // 100 ms: one reset, of 43 bytes.
    let mut pkt = vec![0x80u8; 21];
    pkt[1..9].copy_from_slice(&[0xAB; 8]);
    sim.inject(c_addr, s_addr, pkt.clone(), Duration::ZERO);
    sim.run_for(Duration::from_millis(10));
    assert!(sim.captured().is_empty(), "no answer to a 21-byte trigger");
    pkt.resize(60, 0x55);
    for _ in 0..100 {
        sim.inject(c_addr, s_addr, pkt.clone(), Duration::ZERO);
        sim.run_for(Duration::from_millis(1));
    }
    let got = sim.take_captured();
    assert_eq!(got.len(), 1, "1 reset per second per source");
    for d in &got {
        assert_eq!(d.bytes.len(), 43);
        assert_eq!(d.bytes[0] & 0xC0, 0x80, "looks like a short header");
    }
    assert_eq!(sim.endpoint(server).stats().v2_resets_withheld, 100);
}
