//! MPGS/2 bounds and backpressure through the public `Endpoint` API
//! (MPGS2.md §2.8, §4.3, §4.6): `max_connections_per_ip` counts both
//! versions together, and `send` refuses with the same typed errors as over
//! MPGS/1.

use std::net::SocketAddr;

use mpgameserver::{
    ConnectFailure, ConnectionId, Delivery, Duration, EndpointConfig, Event, ProtocolVersion, SendError,
};
use mpgameserver_sim::{LinkConfig, NodeId, Sim, assert_deterministic};

use crate::server_key;

fn connect(sim: &mut Sim, client: NodeId, server: NodeId, v: ProtocolVersion) -> ConnectionId {
    let (addr, key) = (sim.addr(server), sim.server_key(server).unwrap().clone());
    sim.with_endpoint(client, |ep, now| ep.connect_with(now, addr, key, v)).unwrap()
}

fn connected(sim: &Sim, client: NodeId, c: ConnectionId) -> bool {
    sim.events(client).contains(&Event::Connected { conn: c })
}

/// The server's newest connection (from its `Connected` events).
fn newest_server_conn(sim: &Sim, server: NodeId) -> ConnectionId {
    sim.events(server)
        .iter()
        .rev()
        .find_map(|e| if let Event::Connected { conn } = e { Some(*conn) } else { None })
        .expect("a connection")
}

fn per_ip_run(seed: u64) -> Sim {
    let mut cfg = EndpointConfig::default();
    cfg.max_connections_per_ip = 2;
    let mut sim = Sim::new(seed);
    sim.set_default_link(LinkConfig::default().latency(Duration::from_millis(10)));
    let server = sim.add_server(cfg, server_key(seed)).unwrap();
    let at = |port: u16| -> SocketAddr { SocketAddr::from(([10, 9, 0, 1], port)) };
    let clients: Vec<NodeId> =
        (0..4).map(|i| sim.add_client_at(at(1000 + i), EndpointConfig::default()).unwrap()).collect();
    let other = sim.add_client_at(SocketAddr::from(([10, 9, 0, 2], 1000)), EndpointConfig::default()).unwrap();
    // One MPGS/1 and one MPGS/2 connection from 10.9.0.1: the cap of 2.
    let a = connect(&mut sim, clients[0], server, ProtocolVersion::V1);
    sim.run_for(Duration::from_secs(1));
    let b = connect(&mut sim, clients[1], server, ProtocolVersion::V2);
    sim.run_for(Duration::from_secs(1));
    assert!(connected(&sim, clients[0], a) && connected(&sim, clients[1], b));
    // A third over MPGS/2 is refused with REJECT 1 (after the cookie round
    // trip that an unvalidated hello over the cap must make).
    let c = connect(&mut sim, clients[2], server, ProtocolVersion::V2);
    sim.run_for(Duration::from_secs(1));
    assert!(
        sim.events(clients[2]).contains(&Event::ConnectFailed { conn: c, reason: ConnectFailure::Rejected(1) }),
        "{:?}",
        sim.events(clients[2])
    );
    let st = sim.endpoint(server).stats();
    assert_eq!(st.v2_hellos_per_ip, 1, "{st}");
    assert!(st.v2_hello_retries >= 1, "a cookie was demanded first: {st}");
    // A third over MPGS/1 is refused too: MPGS/1 counts the MPGS/2 connection.
    let d = connect(&mut sim, clients[3], server, ProtocolVersion::V1);
    sim.run_for(Duration::from_secs(12));
    assert!(!connected(&sim, clients[3], d), "{:?}", sim.events(clients[3]));
    assert!(sim.endpoint(server).stats().hellos_refused_source >= 1);
    // Another address is not affected.
    let e = connect(&mut sim, other, server, ProtocolVersion::V2);
    sim.run_for(Duration::from_secs(1));
    assert!(connected(&sim, other, e), "{:?}", sim.events(other));
    // Once the MPGS/2 connection from 10.9.0.1 leaves, a new one fits again.
    sim.disconnect(clients[1], b).unwrap();
    sim.run_for(Duration::from_secs(2));
    let f = connect(&mut sim, clients[2], server, ProtocolVersion::V2);
    sim.run_for(Duration::from_secs(1));
    assert!(connected(&sim, clients[2], f), "{:?}", sim.events(clients[2]));
    sim
}

#[test]
fn max_connections_per_ip_counts_both_versions_together() {
    assert_deterministic(41, per_ip_run);
}

/// `send` refuses with the same `SendError` variants over both versions:
/// `TooLarge { max }` (the endpoint's limit, and over MPGS/2 also the
/// peer's advertised one), `QueueFull`, `Closing`, `UnknownConnection`.
#[test]
fn send_errors_are_typed_the_same_over_both_versions() {
    for v in [ProtocolVersion::V1, ProtocolVersion::V2] {
        let mut scfg = EndpointConfig::default();
        scfg.send_queue_messages = 8;
        let mut ccfg = EndpointConfig::default();
        ccfg.max_message_size = 100_000;
        let mut sim = Sim::new(42);
        sim.set_default_link(LinkConfig::default().latency(Duration::from_millis(10)));
        let server = sim.add_server(scfg.clone(), server_key(42)).unwrap();
        let client = sim.add_client(ccfg).unwrap();
        let c = connect(&mut sim, client, server, v);
        sim.run_for(Duration::from_secs(1));
        assert!(connected(&sim, client, c), "{v:?}");
        let s = newest_server_conn(&sim, server);
        let ep = sim.endpoint_mut(server);
        let big = vec![0u8; scfg.max_message_size + 1];
        assert_eq!(ep.send(s, &big, Delivery::Reliable), Err(SendError::TooLarge { max: scfg.max_message_size }));
        let r = ep.send(s, &[0u8; 200_000], Delivery::Reliable);
        match v {
            // MPGS/2 knows the client's limit (§2.3 max_message_size) and
            // refuses at once; MPGS/1 has no such parameter.
            ProtocolVersion::V2 => assert_eq!(r, Err(SendError::TooLarge { max: 100_000 })),
            _ => assert!(r.is_ok(), "{r:?}"),
        }
        let err = loop {
            if let Err(e) = ep.send(s, b"x", Delivery::Reliable) {
                break e;
            }
        };
        assert!(matches!(err, SendError::QueueFull { .. }), "{v:?}");
        assert!(err.to_string().contains("send_queue_messages"));
        // Nothing was reported Lost for the refused messages.
        sim.run_for(Duration::from_secs(1));
        assert_eq!(sim.count_events(server, |e| matches!(e, Event::Lost { .. })), 0, "{v:?}");
        sim.disconnect(server, s).unwrap();
        let r = sim.send(server, s, b"late", Delivery::Reliable);
        assert!(matches!(r, Err(SendError::Closing | SendError::UnknownConnection)), "{v:?}: {r:?}");
        sim.run_for(Duration::from_secs(5));
        assert_eq!(sim.send(server, s, b"later", Delivery::Reliable), Err(SendError::UnknownConnection), "{v:?}");
    }
}
