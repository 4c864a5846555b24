//! Graceful disconnect from either side; `Disconnected` exactly once.

use mpgameserver::{Delivery, DisconnectReason, Duration, EndpointConfig, Event, SendError};
use mpgameserver_sim::{LinkConfig, NodeId};

use crate::{Pair, lifecycle_events, outcomes, received_numbers, send_numbered};

/// The `Disconnected` events of `node`.
fn disconnects(pair: &Pair, node: NodeId) -> Vec<Event> {
    pair.sim.events(node).iter().filter(|e| matches!(e, Event::Disconnected { .. })).cloned().collect()
}

/// `closer` sends messages, disconnects, and both sides see exactly one
/// `Disconnected`; every message gets exactly one outcome.
fn graceful(seed: u64, link: LinkConfig, closer_is_client: bool) {
    // MPGS/1's DISCONNECT handshake (PROTOCOL.md §13).
    let mut pair = Pair::new(seed, link, crate::v1(EndpointConfig::default()));
    let closer = if closer_is_client { pair.client } else { pair.server };
    let other = pair.peer(closer);
    let ids = send_numbered(&mut pair, closer, 0, 30, Delivery::Reliable);
    pair.sim.run_for(Duration::from_secs(2));
    // A message still in flight when it closes is Lost, or Delivered if acked first.
    let late = pair.sim.send(closer, pair.conn(closer), b"late", Delivery::Reliable).unwrap();
    pair.sim.disconnect(closer, pair.conn(closer)).unwrap();
    assert_eq!(pair.sim.send(closer, pair.conn(closer), b"after", Delivery::Reliable), Err(SendError::Closing));
    pair.sim.run_for(Duration::from_secs(10));

    assert_eq!(
        disconnects(&pair, closer),
        [Event::Disconnected { conn: pair.conn(closer), reason: DisconnectReason::Local }]
    );
    // The peer hears the DISCONNECT (or, if every copy was lost, times out).
    let seen = disconnects(&pair, other);
    assert_eq!(seen.len(), 1, "{:?}", pair.sim.events(other));
    assert!(matches!(seen[0], Event::Disconnected { reason: DisconnectReason::Peer | DisconnectReason::TimedOut, .. }));
    for node in [closer, other] {
        assert_eq!(lifecycle_events(&pair.sim, node).len(), 2, "Connected and Disconnected only");
        assert!(pair.sim.endpoint(node).connection(pair.conn(node)).is_none());
    }
    let reports = outcomes(pair.sim.events(closer));
    for id in ids.iter().chain([&late]) {
        let (d, l) = reports[id];
        assert_eq!(d + l, 1, "{id:?}");
    }
    assert!(ids.iter().all(|id| reports[id] == (1, 0)), "the 30 early messages were all delivered");
    assert!(received_numbers(&pair.sim, other).values().all(|&k| k == 1));
    // Quiet afterwards: nothing more is sent by either side.
    let sent = pair.sim.stats().datagrams_sent;
    pair.sim.run_for(Duration::from_secs(30));
    assert_eq!(pair.sim.stats().datagrams_sent, sent);
}

#[test]
fn client_disconnect_is_seen_once_by_both_sides() {
    graceful(41, LinkConfig::default().latency(Duration::from_millis(15)), true);
    graceful(42, LinkConfig::wifi(), true);
    graceful(43, LinkConfig::mobile_lossy(), true);
}

#[test]
fn server_disconnect_is_seen_once_by_both_sides() {
    graceful(44, LinkConfig::default().latency(Duration::from_millis(15)), false);
    graceful(45, LinkConfig::wifi(), false);
    graceful(46, LinkConfig::mobile_lossy(), false);
}

#[test]
fn a_clean_disconnect_reaches_the_peer_as_peer() {
    let mut pair = Pair::simple(47);
    pair.sim.disconnect(pair.client, pair.c).unwrap();
    pair.sim.run_for(Duration::from_secs(2));
    assert_eq!(
        disconnects(&pair, pair.client),
        [Event::Disconnected { conn: pair.c, reason: DisconnectReason::Local }]
    );
    assert_eq!(disconnects(&pair, pair.server), [Event::Disconnected { conn: pair.s, reason: DisconnectReason::Peer }]);
    // The client's Disconnected came once the server acknowledged: one round trip.
    let i = pair.sim.events(pair.client).iter().position(|e| matches!(e, Event::Disconnected { .. })).unwrap();
    assert!(pair.sim.event_times(pair.client)[i] - pair.sim.event_times(pair.client)[0] < Duration::from_millis(100));
}

#[test]
fn disconnect_into_a_partition_ends_after_the_linger_and_the_peer_times_out() {
    let mut pair = Pair::simple(48);
    pair.sim.partition(&[pair.client], &[pair.server]);
    let t = pair.sim.now();
    pair.sim.disconnect(pair.server, pair.s).unwrap();
    pair.sim.run_for(Duration::from_secs(10));
    let server_end = pair.sim.events(pair.server).iter().position(|e| matches!(e, Event::Disconnected { .. })).unwrap();
    let linger = EndpointConfig::default().disconnect_linger;
    assert_eq!(pair.sim.event_times(pair.server)[server_end] - t, linger, "no ack: the linger ends it");
    assert_eq!(
        disconnects(&pair, pair.server),
        [Event::Disconnected { conn: pair.s, reason: DisconnectReason::Local }]
    );
    assert_eq!(
        disconnects(&pair, pair.client),
        [Event::Disconnected { conn: pair.c, reason: DisconnectReason::TimedOut }]
    );
}

#[test]
fn both_sides_disconnecting_at_once_still_gives_one_event_each() {
    for seed in 0..5 {
        let mut pair = Pair::new(50 + seed, LinkConfig::wifi(), EndpointConfig::default());
        pair.sim.disconnect(pair.client, pair.c).unwrap();
        pair.sim.disconnect(pair.server, pair.s).unwrap();
        pair.sim.run_for(Duration::from_secs(10));
        for node in [pair.client, pair.server] {
            let d = disconnects(&pair, node);
            assert_eq!(d.len(), 1, "seed {seed}: {:?}", pair.sim.events(node));
        }
        // Disconnecting again is an error, not a second event.
        assert!(pair.sim.disconnect(pair.client, pair.c).is_err());
    }
}
