//! Integration tests of the core through its public API, over the
//! deterministic network simulator `mpgameserver-sim` (one binary).
//!
//! Every test runs in virtual time: a 30-second timeout costs milliseconds.
//! Everything derives from fixed seeds, so a failure reproduces exactly.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod adversarial;
mod channels;
mod delivery;
mod determinism;
mod disconnect;
#[path = "../common/forge.rs"]
mod forge;
mod fragments;
mod golden;
mod handler;
mod handshake;
mod hostile;
mod junk;
mod keys;
mod mpgs2;
mod mpgs2_downgrade;
mod mpgs2_reset;
mod mpgs2_scen;
mod progress;
mod scale;
mod simulator;
mod timeouts;
mod v2limits;

use std::collections::BTreeMap;

use mpgameserver::{
    ConnectionId, Delivery, Duration, EndpointConfig, Event, MessageId, ProtocolVersion, Rng, Seed, ServerKey,
};
use mpgameserver_sim::{LinkConfig, NodeId, Sim};

/// A server root key from a small seed.
pub fn server_key(seed: u64) -> ServerKey {
    ServerKey::generate(&mut Rng::new(Seed::from_u64(seed)))
}

/// Patterned bytes of length `n`, distinct per `tag`.
pub fn payload(n: usize, tag: u32) -> Vec<u8> {
    let t = tag.to_be_bytes();
    (0..n).map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0] ^ t[i % 4]).collect()
}

/// A message tagged with its number: 4 bytes of `n`, then `extra` bytes.
pub fn numbered(n: u32, extra: usize) -> Vec<u8> {
    let mut v = n.to_be_bytes().to_vec();
    v.extend(payload(extra, n));
    v
}

/// The number of a message made by [`numbered`].
pub fn number_of(payload: &[u8]) -> u32 {
    u32::from_be_bytes(payload[..4].try_into().unwrap())
}

/// `cfg` with clients connecting over MPGS/1, explicitly: for the scenarios
/// that test MPGS/1 (its wire, timers and PROTOCOL.md rules) now that the
/// default is MPGS/2.
pub fn v1(mut cfg: EndpointConfig) -> EndpointConfig {
    cfg.protocol = ProtocolVersion::V1;
    cfg
}

/// A server and one client over `link` (both directions), connected.
pub struct Pair {
    /// The simulation.
    pub sim: Sim,
    /// The server node.
    pub server: NodeId,
    /// The client node.
    pub client: NodeId,
    /// The client's connection.
    pub c: ConnectionId,
    /// The server's connection.
    pub s: ConnectionId,
}

impl Pair {
    /// Connects a client to a server over `link`; panics if the handshake
    /// does not complete within 20 virtual seconds.
    ///
    /// The client speaks `cfg.protocol`; the scenarios written for MPGS/1
    /// (its wire, timers and PROTOCOL.md rules) pass [`v1`] configurations.
    pub fn new(seed: u64, link: LinkConfig, cfg: EndpointConfig) -> Pair {
        let mut sim = Sim::new(seed);
        sim.set_default_link(link);
        let server = sim.add_server(cfg.clone(), server_key(seed)).unwrap();
        let client = sim.add_client(cfg).unwrap();
        let c = sim.connect(client, server).unwrap();
        let connected = |sim: &Sim| {
            sim.events(client).contains(&Event::Connected { conn: c })
                && sim.events(server).iter().any(|e| matches!(e, Event::Connected { .. }))
        };
        assert!(sim.run_until(connected, Duration::from_secs(20)), "no handshake: {:?}", sim.events(client));
        let s = sim.conn_of(server, client).unwrap();
        Pair { sim, server, client, c, s }
    }

    /// An MPGS/1 pair over a perfect 10 ms link with the default
    /// configuration otherwise.
    pub fn simple(seed: u64) -> Pair {
        Pair::new(seed, LinkConfig::default().latency(Duration::from_millis(10)), v1(EndpointConfig::default()))
    }

    /// The connection of `node` (client or server) in this pair.
    pub fn conn(&self, node: NodeId) -> ConnectionId {
        if node == self.client { self.c } else { self.s }
    }

    /// The node at the other end from `node`.
    pub fn peer(&self, node: NodeId) -> NodeId {
        if node == self.client { self.server } else { self.client }
    }
}

/// Delivery reports per message id: (Delivered count, Lost count).
pub fn outcomes(events: &[Event]) -> BTreeMap<MessageId, (u32, u32)> {
    let mut m: BTreeMap<MessageId, (u32, u32)> = BTreeMap::new();
    for e in events {
        match e {
            Event::Delivered { id, .. } => m.entry(*id).or_default().0 += 1,
            Event::Lost { id, .. } => m.entry(*id).or_default().1 += 1,
            _ => {}
        }
    }
    m
}

/// How many events of `node` are `Connected`, `ConnectFailed` or
/// `Disconnected`.
pub fn lifecycle_events(sim: &Sim, node: NodeId) -> Vec<Event> {
    sim.events(node)
        .iter()
        .filter(|e| matches!(e, Event::Connected { .. } | Event::ConnectFailed { .. } | Event::Disconnected { .. }))
        .cloned()
        .collect()
}

/// Counts of each received numbered message at `node`.
pub fn received_numbers(sim: &Sim, node: NodeId) -> BTreeMap<u32, u32> {
    let mut m = BTreeMap::new();
    for p in sim.messages(node) {
        *m.entry(number_of(p)).or_insert(0) += 1;
    }
    m
}

/// Sends `count` numbered Reliable messages from `node`, one per 60 Hz
/// frame, numbers starting at `first`; returns their ids.
pub fn send_numbered(pair: &mut Pair, node: NodeId, first: u32, count: u32, mode: Delivery) -> Vec<MessageId> {
    let conn = pair.conn(node);
    let mut ids = Vec::new();
    for n in first..first + count {
        ids.push(pair.sim.send(node, conn, &numbered(n, 12), mode).unwrap());
        pair.sim.run_for(Duration::from_micros(16_667));
    }
    ids
}
