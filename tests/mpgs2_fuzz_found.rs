//! Bugs the `endpoint_v2` fuzz target found (fuzz/regressions/endpoint_v2/),
//! reproduced through the public API with real cryptography.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::collections::BTreeMap;
use std::net::SocketAddr;

use mpgameserver::{
    ConnectFailure, ConnectionId, Delivery, Duration, Endpoint, EndpointConfig, Event, Instant, MAX_DATAGRAM,
    MessageId, ProtocolVersion, Rng, Seed, ServerKey,
};

const SERVER: &str = "10.0.0.1:4000";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn config() -> EndpointConfig {
    let mut cfg = EndpointConfig::default();
    cfg.protocol = ProtocolVersion::V2;
    cfg
}

/// A server with `cfg` and the public key its clients pin.
fn server(cfg: EndpointConfig) -> (Endpoint, mpgameserver::PublicKey) {
    let root = ServerKey::generate(&mut Rng::new(Seed::from_u64(1)));
    let pinned = root.public_key();
    (Endpoint::server(cfg, root, Seed::from_u64(2)).unwrap(), pinned)
}

/// Queues one message of each mode on `conn` (connecting: they wait for the
/// keys).
fn queue_each_mode(ep: &mut Endpoint, conn: ConnectionId) -> Vec<MessageId> {
    [Delivery::Unreliable, Delivery::BestEffort, Delivery::Reliable]
        .into_iter()
        .map(|d| ep.send(conn, &[7; 100], d).unwrap())
        .collect()
}

/// Outcomes per message of `conn` and how its attempt failed.
fn outcomes(ep: &mut Endpoint, conn: ConnectionId) -> (BTreeMap<MessageId, u32>, Option<ConnectFailure>) {
    let (mut lost, mut failed) = (BTreeMap::new(), None);
    while let Some(e) = ep.poll_event() {
        match e {
            Event::Lost { conn: c, id, .. } if c == conn => *lost.entry(id).or_insert(0) += 1,
            Event::Delivered { conn: c, id } if c == conn => panic!("{id:?} delivered without a connection"),
            Event::ConnectFailed { conn: c, reason } if c == conn => {
                assert!(failed.is_none(), "ConnectFailed twice");
                failed = Some(reason);
            }
            _ => {}
        }
    }
    (lost, failed)
}

/// A V2 connect that times out with messages queued reports each of them
/// `Lost` exactly once (MPGS/1 always did; MPGS/2 reported nothing, so the
/// promise of exactly one `Delivered` or `Lost` per message broke).
#[test]
fn v2_connect_timeout_reports_queued_messages_lost() {
    let mut client = Endpoint::client(config(), Seed::from_u64(3)).unwrap();
    let key = ServerKey::generate(&mut Rng::new(Seed::from_u64(1))).public_key();
    let mut now = Instant::from_secs(10);
    let conn = client.connect_with(now, addr(SERVER), key, ProtocolVersion::V2).unwrap();
    let ids = queue_each_mode(&mut client, conn);
    let mut buf = [0u8; MAX_DATAGRAM];
    let end = now + client.config().connect_timeout + Duration::from_secs(1);
    while now < end {
        // Nobody answers.
        while client.poll_transmit(now, &mut buf).is_some() {}
        now = client.poll_timeout().unwrap_or(end).max(now + Duration::from_millis(1));
        client.handle_timeout(now);
    }
    let (lost, failed) = outcomes(&mut client, conn);
    assert_eq!(failed, Some(ConnectFailure::TimedOut));
    assert_eq!(lost, ids.iter().map(|&id| (id, 1)).collect());
    assert_eq!(client.connection_count(), 0);
}

/// Likewise when the server refuses the attempt with REJECT (here FULL).
/// (This path already reported them: the session drains its queued
/// messages when a datagram fails it; the test keeps it that way.)
#[test]
fn v2_reject_reports_queued_messages_lost() {
    let mut cfg = config();
    cfg.max_connections = 1;
    let (mut server, pinned) = server(cfg);
    let mut clients = [
        (Endpoint::client(config(), Seed::from_u64(3)).unwrap(), addr("10.0.0.2:5000")),
        (Endpoint::client(config(), Seed::from_u64(4)).unwrap(), addr("10.0.0.3:5000")),
    ];
    let mut now = Instant::from_secs(10);
    let first = clients[0].0.connect_with(now, addr(SERVER), pinned.clone(), ProtocolVersion::V2).unwrap();
    let pump = |server: &mut Endpoint, clients: &mut [(Endpoint, SocketAddr); 2], now: Instant| {
        let mut buf = [0u8; MAX_DATAGRAM];
        for (c, a) in clients.iter_mut() {
            while let Some(t) = c.poll_transmit(now, &mut buf) {
                server.handle_datagram(now, *a, &mut buf[..t.len]);
            }
        }
        while let Some(t) = server.poll_transmit(now, &mut buf) {
            let (c, _) = clients.iter_mut().find(|(_, a)| *a == t.destination).unwrap();
            c.handle_datagram(now, addr(SERVER), &mut buf[..t.len]);
        }
    };
    for _ in 0..20 {
        pump(&mut server, &mut clients, now);
        now += Duration::from_millis(5);
    }
    assert!(clients[0].0.connection(first).unwrap().state() == mpgameserver::ConnectionState::Connected);
    let conn = clients[1].0.connect_with(now, addr(SERVER), pinned, ProtocolVersion::V2).unwrap();
    let ids = queue_each_mode(&mut clients[1].0, conn);
    for _ in 0..20 {
        pump(&mut server, &mut clients, now);
        now += Duration::from_millis(5);
    }
    let (lost, failed) = outcomes(&mut clients[1].0, conn);
    assert_eq!(failed, Some(ConnectFailure::Rejected(1)));
    assert_eq!(lost, ids.iter().map(|&id| (id, 1)).collect());
}

/// A connection that times out while its send queue is full reports every
/// queued message `Lost` and `Disconnected`, and never `Writable`: the
/// queue drains because the connection closed, not because it can take
/// more. (Found by `endpoint_v2` under debug assertions in a change that
/// cached the connection's state: the losses were decided while the cache
/// still said `Connected`, and a `Writable` followed.)
#[test]
fn v2_timeout_with_a_full_queue_reports_no_writable() {
    let mut cfg = config();
    cfg.send_queue_messages = 4;
    let (mut server, pinned) = server(cfg.clone());
    let mut client = Endpoint::client(cfg, Seed::from_u64(3)).unwrap();
    let me = addr("10.0.0.2:5000");
    let mut now = Instant::from_secs(10);
    let conn = client.connect_with(now, addr(SERVER), pinned, ProtocolVersion::V2).unwrap();
    let mut buf = [0u8; MAX_DATAGRAM];
    for _ in 0..20 {
        while let Some(t) = client.poll_transmit(now, &mut buf) {
            server.handle_datagram(now, me, &mut buf[..t.len]);
        }
        while let Some(t) = server.poll_transmit(now, &mut buf) {
            client.handle_datagram(now, addr(SERVER), &mut buf[..t.len]);
        }
        now += Duration::from_millis(5);
    }
    assert!(client.connection(conn).unwrap().state() == mpgameserver::ConnectionState::Connected);
    while client.poll_event().is_some() {}
    // The server is gone from here on: fill the queue until it refuses.
    let mut ids = Vec::new();
    loop {
        match client.send(conn, &[7; 100], Delivery::Reliable) {
            Ok(id) => ids.push(id),
            Err(mpgameserver::SendError::QueueFull { .. }) => break,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(ids.len(), 4);
    let (mut lost, mut writable, mut disconnected) = (BTreeMap::new(), 0, 0);
    let end = now + Duration::from_secs(30);
    while now < end {
        while client.poll_transmit(now, &mut buf).is_some() {}
        if client.poll_timeout().is_some_and(|t| t <= now) {
            client.handle_timeout(now);
        }
        while let Some(e) = client.poll_event() {
            match e {
                Event::Lost { id, .. } => *lost.entry(id).or_insert(0) += 1,
                Event::Writable { .. } => writable += 1,
                Event::Disconnected { .. } => disconnected += 1,
                _ => {}
            }
        }
        now += Duration::from_millis(50);
    }
    assert_eq!(disconnected, 1, "the silent server times the connection out");
    assert_eq!(lost, ids.iter().map(|&id| (id, 1)).collect(), "every queued message Lost once");
    assert_eq!(writable, 0, "a closed connection is not writable");
}
