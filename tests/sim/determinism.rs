//! Determinism: the same seed gives the same run, bit for bit; another seed
//! gives another run.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;

use mpgameserver::{Delivery, Duration, EndpointConfig, Event, MessageId};
use mpgameserver_sim::{LinkConfig, Preset, Sim};

use crate::{outcomes, payload, server_key};

/// What a run produced.
struct Run {
    digest: [u8; 32],
    /// Every datagram put on the wire: (from, to, bytes).
    wire: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    /// Every event of every node, as text.
    events: Vec<String>,
    /// Echoes the clients got back, per client.
    echoes: Vec<Vec<Vec<u8>>>,
    /// Outcome reports per client and message.
    outcomes: Vec<BTreeMap<MessageId, (u32, u32)>>,
    lost_on_wire: u64,
}

/// An echo server and three clients (one on IPv6) over `link`; each client
/// sends messages of several sizes in every mode; one disconnects early.
/// Everything derives from `seed`.
fn game(seed: u64, link: LinkConfig) -> Run {
    let mut sim = Sim::new(seed);
    sim.set_default_link(link);
    let server = sim.add_server(EndpointConfig::default(), server_key(seed)).unwrap();
    sim.set_handler(server, |ep, _, ev| {
        if let Event::Message { conn, payload, .. } = ev {
            ep.send(*conn, payload, Delivery::Reliable).unwrap();
        }
    });
    let mut clients = vec![sim.add_client(EndpointConfig::default()).unwrap()];
    clients.push(sim.add_client(EndpointConfig::default()).unwrap());
    sim.use_ipv6(true);
    clients.push(sim.add_client(EndpointConfig::default()).unwrap());
    let wire = Rc::new(RefCell::new(Vec::new()));
    let w = wire.clone();
    sim.capture(move |d| {
        w.borrow_mut().push((d.from, d.to, d.bytes.clone()));
        false
    });
    let conns: Vec<_> = clients.iter().map(|&c| sim.connect(c, server).unwrap()).collect();
    for round in 0..6u32 {
        for (k, (&client, &conn)) in clients.iter().zip(&conns).enumerate() {
            let size = [0, 1, 500, 1433, 5000, 20_000][round as usize];
            let mode = [Delivery::Reliable, Delivery::Unreliable, Delivery::BestEffort][(round as usize + k) % 3];
            let _ = sim.send(client, conn, &payload(size, round * 10 + k as u32), mode);
        }
        sim.run_for(Duration::from_millis(100));
        if round == 3 {
            sim.disconnect(clients[0], conns[0]).unwrap();
        }
    }
    sim.run_for(Duration::from_secs(8));
    let mut events = Vec::new();
    for node in std::iter::once(server).chain(clients.iter().copied()) {
        for (t, e) in sim.event_times(node).iter().zip(sim.events(node)) {
            events.push(format!("{} {node} {e:?}", t));
        }
    }
    let echoes = clients.iter().map(|&c| sim.messages(c).into_iter().map(<[u8]>::to_vec).collect()).collect();
    let outcomes = clients.iter().map(|&c| outcomes(sim.events(c))).collect();
    let lost_on_wire = sim.stats().dropped_total();
    let digest = sim.digest();
    drop(sim);
    let wire = Rc::try_unwrap(wire).unwrap().into_inner();
    Run { digest, wire, events, echoes, outcomes, lost_on_wire }
}

#[test]
fn same_seed_same_digest_different_seed_different_digest() {
    let a = game(7, LinkConfig::mobile_lossy());
    let b = game(7, LinkConfig::mobile_lossy());
    let c = game(8, LinkConfig::mobile_lossy());
    assert!(a.lost_on_wire > 0, "the network dropped nothing; the test would prove little");
    assert_eq!(a.digest, b.digest);
    assert_eq!(a.wire.len(), b.wire.len());
    for (k, (x, y)) in a.wire.iter().zip(&b.wire).enumerate() {
        assert_eq!(x, y, "datagram #{k} differs between two runs with the same seed");
    }
    assert_eq!(a.events, b.events);
    assert_ne!(a.digest, c.digest, "a different seed gave the same trace");
    assert_ne!(a.wire, c.wire, "a different seed gave the same datagrams");
    // The runs did their job: every message got exactly one outcome, and
    // the Reliable messages of the clients that stayed came back.
    for run in [&a, &c] {
        for per_client in &run.outcomes {
            for (id, (delivered, lost)) in per_client {
                assert_eq!(delivered + lost, 1, "message {id:?}: {delivered} Delivered, {lost} Lost");
            }
        }
        for k in 1..3 {
            let reliable: Vec<usize> = (0..6).filter(|r| (r + k) % 3 == 0).collect();
            for r in reliable {
                let want = payload([0, 1, 500, 1433, 5000, 20_000][r], r as u32 * 10 + k as u32);
                assert!(run.echoes[k].contains(&want), "client {k}: echo of round {r} missing");
            }
        }
    }
}

#[test]
fn every_preset_is_deterministic() {
    for preset in Preset::ALL {
        let a = game(11, preset.config());
        let b = game(11, preset.config());
        let c = game(12, preset.config());
        assert_eq!(a.digest, b.digest, "{preset}");
        assert_eq!(a.events, b.events, "{preset}");
        assert_ne!(a.digest, c.digest, "{preset}");
    }
}

#[test]
fn the_seed_reaches_the_endpoints_and_the_links() {
    // Endpoint seeds derive from the master seed and the node index.
    assert_eq!(Sim::new(1).endpoint_seed(0), Sim::new(1).endpoint_seed(0));
    assert_ne!(Sim::new(1).endpoint_seed(0), Sim::new(2).endpoint_seed(0));
    assert_ne!(Sim::new(1).endpoint_seed(0), Sim::new(1).endpoint_seed(1));
    // Over a perfect link the network adds no randomness, yet two seeds
    // still give different bytes: the endpoints' keys and padding differ.
    let a = game(21, LinkConfig::perfect());
    let b = game(22, LinkConfig::perfect());
    assert_ne!(a.wire[0].2, b.wire[0].2);
    // And the digest covers the bytes, not only the events: the same
    // events in the same order with other bytes give another digest.
    assert_eq!(a.events, b.events);
    assert_ne!(a.digest, b.digest);
}
