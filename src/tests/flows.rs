//! Whole-connection flows: handshake, exchange, delivery reports, timeouts,
//! disconnects, determinism.

use alloc::vec::Vec;

use super::harness::*;
use crate::{ConnectFailure, ConnectionState, Delivery, DisconnectReason, Duration, EndpointConfig, Event, MessageId};

fn outcomes(events: &[Event]) -> Vec<(MessageId, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Delivered { id, .. } => Some((*id, true)),
            Event::Lost { id, .. } => Some((*id, false)),
            _ => None,
        })
        .collect()
}

#[test]
fn handshake_and_echo_both_ways() {
    let (mut net, c, s) = Net::pair(EndpointConfig::default());
    assert_eq!(net.eps[1].connection(c).unwrap().state(), ConnectionState::Connected);
    assert_eq!(net.eps[SERVER].connection_count(), 1);
    let id = net.eps[1].send(c, b"ping", Delivery::Reliable).unwrap();
    net.eps[SERVER].send(s, b"pong", Delivery::Unreliable).unwrap();
    net.run_for(Duration::from_millis(300));
    assert_eq!(net.messages(SERVER), [b"ping".to_vec()]);
    assert_eq!(net.messages(1), [b"pong".to_vec()]);
    assert_eq!(outcomes(&net.events[1]), [(id, true)]);
    assert_eq!(outcomes(&net.events[SERVER]).len(), 1);
    let m = net.eps[1].connection(c).unwrap().metrics();
    assert!(m.srtt.is_some(), "{m:?}");
    assert_eq!(net.eps[SERVER].stats().dropped_total(), 0, "{}", net.eps[SERVER].stats());
    assert_eq!(net.eps[1].stats().dropped_total(), 0, "{}", net.eps[1].stats());
}

#[test]
fn handshake_wire_sizes_match_section_9() {
    let (net, _, _) = Net::pair(EndpointConfig::default());
    let sizes: Vec<(bool, usize)> = net.wire_log.iter().take(4).map(|d| (d.from == addr(1), d.bytes.len())).collect();
    assert_eq!(sizes[0], (true, 1438), "CLIENT_HELLO");
    assert!(!sizes[1].0 && (300..=329).contains(&sizes[1].1), "SERVER_HELLO {sizes:?}");
    assert_eq!(sizes[2], (true, 49), "CHALLENGE_RESP");
    assert_eq!(sizes[3], (false, 36), "KEEP_ALIVE confirming the session");
}

#[test]
fn reliable_messages_survive_heavy_loss_exactly_once() {
    let (mut net, c, _) = Net::pair(EndpointConfig::default());
    let mut rng = TestRng::new(99);
    net.set_filter(move |_| if rng.chance(0.3) { Verdict::Drop } else { Verdict::Deliver });
    let sizes = [0usize, 1, 100, 1432, 1433, 3000, 20_000];
    let mut ids = Vec::new();
    for (i, &n) in sizes.iter().enumerate() {
        ids.push(net.eps[1].send(c, &payload(n, i as u8), Delivery::Reliable).unwrap());
    }
    net.run_for(Duration::from_secs(20));
    let mut got = net.messages(SERVER);
    got.sort();
    let mut want: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, &n)| payload(n, i as u8)).collect();
    want.sort();
    assert_eq!(got, want);
    let mut o = outcomes(&net.events[1]);
    o.sort();
    assert_eq!(o, ids.iter().map(|&id| (id, true)).collect::<Vec<_>>());
}

#[test]
fn connect_times_out_without_a_server() {
    let mut net = Net::new(EndpointConfig::default(), 1, 3);
    net.set_filter(|_| Verdict::Drop);
    let c = net.connect(1);
    net.run_for(Duration::from_secs(6));
    assert_eq!(net.events[1], [Event::ConnectFailed { conn: c, reason: ConnectFailure::TimedOut }]);
    assert!(net.eps[1].connection(c).is_none());
    // Hellos repeat every 0.25 s within the 5 s connect timeout.
    let hellos = net.wire_log.iter().filter(|d| d.from == addr(1)).count();
    assert_eq!(hellos, 20, "{hellos}");
}

#[test]
fn silence_times_out_both_sides() {
    let (mut net, c, s) = Net::pair(EndpointConfig::default());
    net.set_filter(|_| Verdict::Drop);
    net.run_for(Duration::from_secs(6));
    assert!(net.events[1].contains(&Event::Disconnected { conn: c, reason: DisconnectReason::TimedOut }));
    assert!(net.events[SERVER].contains(&Event::Disconnected { conn: s, reason: DisconnectReason::TimedOut }));
    assert_eq!(net.eps[SERVER].connection_count(), 0);
}

#[test]
fn keep_alives_hold_an_idle_connection() {
    let (mut net, c, s) = Net::pair(EndpointConfig::default());
    net.run_for(Duration::from_secs(60));
    assert_eq!(net.eps[1].connection(c).unwrap().state(), ConnectionState::Connected);
    assert!(net.eps[SERVER].connection(s).is_some());
    // About 10 keep-alives a second each way.
    let n = net.wire_log.iter().filter(|d| d.from == addr(1)).count();
    assert!((550..=700).contains(&n), "{n}");
}

#[test]
fn client_disconnect_is_seen_once_by_both_sides() {
    let (mut net, c, s) = Net::pair(EndpointConfig::default());
    let now = net.now;
    net.eps[1].disconnect(now, c).unwrap();
    net.run_for(Duration::from_secs(2));
    let client_ends: Vec<_> = net.events[1].iter().filter(|e| matches!(e, Event::Disconnected { .. })).collect();
    assert_eq!(client_ends, [&Event::Disconnected { conn: c, reason: DisconnectReason::Local }]);
    let server_ends: Vec<_> = net.events[SERVER].iter().filter(|e| matches!(e, Event::Disconnected { .. })).collect();
    assert_eq!(server_ends, [&Event::Disconnected { conn: s, reason: DisconnectReason::Peer }]);
    assert!(net.eps[1].connection(c).is_none() && net.eps[SERVER].connection(s).is_none());
    assert_eq!(net.eps[1].send(c, b"x", Delivery::Reliable), Err(crate::SendError::UnknownConnection));
    // The client closed on the server's reply, well before the 1 s linger.
    assert!(net.eps[SERVER].stats().dropped_total() == 0, "{}", net.eps[SERVER].stats());
}

#[test]
fn server_disconnect_is_seen_once_by_both_sides() {
    let (mut net, c, s) = Net::pair(EndpointConfig::default());
    let id = net.eps[SERVER].send(s, b"bye soon", Delivery::Reliable).unwrap();
    let now = net.now;
    net.eps[SERVER].disconnect(now, s).unwrap();
    net.run_for(Duration::from_secs(2));
    assert!(net.events[SERVER].contains(&Event::Disconnected { conn: s, reason: DisconnectReason::Local }));
    assert!(
        net.events[SERVER].contains(&Event::Lost { conn: s, id, reason: crate::LossReason::ConnectionClosed }),
        "unsent message reported lost"
    );
    assert!(net.events[1].contains(&Event::Disconnected { conn: c, reason: DisconnectReason::Peer }));
    assert_eq!(net.events[1].iter().filter(|e| matches!(e, Event::Disconnected { .. })).count(), 1);
}

#[test]
fn disconnect_linger_ends_without_an_ack() {
    let (mut net, c, _) = Net::pair(EndpointConfig::default());
    net.set_filter(|_| Verdict::Drop);
    net.take_events(1);
    let now = net.now;
    net.eps[1].disconnect(now, c).unwrap();
    let t0 = net.now;
    assert!(net.run_until(Duration::from_secs(3), |n| !n.events[1].is_empty()));
    assert_eq!(net.events[1], [Event::Disconnected { conn: c, reason: DisconnectReason::Local }]);
    assert_eq!(net.now - t0, Duration::from_secs(1));
}

#[test]
fn queued_messages_of_a_failed_connect_are_lost_once() {
    let mut net = Net::new(EndpointConfig::default(), 1, 5);
    net.set_filter(|_| Verdict::Drop);
    let c = net.connect(1);
    let a = net.eps[1].send(c, b"a", Delivery::Reliable).unwrap();
    let b = net.eps[1].send(c, &payload(5000, 1), Delivery::Unreliable).unwrap();
    net.run_for(Duration::from_secs(6));
    assert_eq!(
        net.events[1],
        [
            Event::Lost { conn: c, id: a, reason: crate::LossReason::ConnectionClosed },
            Event::Lost { conn: c, id: b, reason: crate::LossReason::ConnectionClosed },
            Event::ConnectFailed { conn: c, reason: ConnectFailure::TimedOut }
        ]
    );
}

#[test]
fn same_seed_same_bytes_different_seed_different_bytes() {
    fn run(seed: u64) -> Vec<Vec<u8>> {
        let mut net = Net::new(EndpointConfig::default(), 2, seed);
        let mut rng = TestRng::new(seed);
        net.set_filter(move |_| if rng.chance(0.1) { Verdict::Drop } else { Verdict::Deliver });
        let c1 = net.connect(1);
        let c2 = net.connect(2);
        net.run_for(Duration::from_millis(500));
        for i in 0..20u8 {
            net.eps[1].send(c1, &payload(100 * usize::from(i), i), Delivery::Reliable).unwrap();
            net.eps[2].send(c2, &payload(3000, i), Delivery::BestEffort).unwrap();
            net.run_for(Duration::from_millis(50));
        }
        net.run_for(Duration::from_secs(3));
        net.wire_log.into_iter().map(|d| d.bytes).collect()
    }
    let a = run(11);
    assert!(a.len() > 100);
    assert_eq!(a, run(11));
    assert_ne!(a, run(12));
}

/// An outage longer than `1 + 0.5·count` s in the middle of a fragmented
/// Reliable message: the receiver must still deliver it. (With a lifetime
/// counted from the first fragment, the reassembly expired while every
/// fragment ended up acknowledged, and the sender reported a message
/// `Delivered` that the application never received.)
#[test]
fn fragmented_message_survives_an_outage_longer_than_the_reassembly_formula() {
    let (mut net, c, _) = Net::pair(EndpointConfig::default());
    let start = net.now;
    let mut big_seen = 0u32;
    // Let the first large datagram (fragment 1) through, then drop large
    // client datagrams (fragment 2 and its resends) for 2.6 s; keep-alives pass.
    net.set_filter(move |d| {
        if d.from == addr(1) && d.bytes.len() > 900 {
            big_seen += 1;
            if big_seen > 1 && d.sent < start + Duration::from_millis(2600) {
                return Verdict::Drop;
            }
        }
        Verdict::Deliver
    });
    let msg = payload(2000, 42);
    let id = net.eps[1].send(c, &msg, Delivery::Reliable).unwrap();
    net.run_for(Duration::from_secs(5));
    let got = net.messages(SERVER);
    assert!(got == [msg.clone()], "server got {} messages, want the 2000-byte one", got.len());
    assert!(net.events[1].contains(&Event::Delivered { conn: c, id }), "{:?}", net.events[1]);
    assert_eq!(net.eps[SERVER].stats().reassemblies_expired, 0);
}

/// Concurrent handshakes count against `max_connections`: with a cap of 1,
/// two clients connecting at once end with exactly one connection.
#[test]
fn max_connections_counts_pending_handshakes() {
    let cfg = EndpointConfig { max_connections: 1, ..EndpointConfig::default() };
    let mut net = Net::new(cfg, 2, 21);
    let a = net.connect(1);
    let b = net.connect(2);
    net.run_for(Duration::from_secs(6));
    assert_eq!(net.eps[SERVER].connection_count(), 1);
    let connected =
        [(1, a), (2, b)].iter().filter(|&&(ep, id)| net.events[ep].contains(&Event::Connected { conn: id })).count();
    assert_eq!(connected, 1, "{:?} / {:?}", net.events[1], net.events[2]);
    assert!(net.eps[SERVER].stats().dropped(crate::DropReason::Rate) > 0);
}

/// A message queued on a server's pending handshake (reachable through
/// `connection_by_addr`) is reported lost when the handshake never completes.
#[test]
fn message_on_an_abandoned_pending_handshake_is_lost() {
    let mut net = Net::new(EndpointConfig::default(), 1, 22);
    // The server's answers never arrive: its handshake stays pending.
    net.set_filter(|d| if d.from == addr(SERVER) { Verdict::Drop } else { Verdict::Deliver });
    net.connect(1);
    net.run_for(Duration::from_millis(100));
    let pending = net.eps[SERVER].connection_by_addr(addr(1)).expect("pending handshake");
    let id = net.eps[SERVER].send(pending, b"early", Delivery::Reliable).unwrap();
    // The client repeats its hello until its 5 s connect timeout; the entry
    // expires 2 s (handshake timeout) after the last repeat.
    net.run_for(Duration::from_secs(8));
    assert!(net.eps[SERVER].connection(pending).is_none());
    assert_eq!(net.events[SERVER], [Event::Lost { conn: pending, id, reason: crate::LossReason::ConnectionClosed }]);
}

#[test]
fn timer_heap_agrees_with_a_scan_through_churn() {
    // Many connections whose timers move with every datagram, clients that
    // leave and come back (slots and generations reused), and silences
    // that let timers fire: the heap's earliest live timer is always the
    // minimum over every connection, and stale entries stay bounded.
    let clients = 24;
    let mut net = Net::new(EndpointConfig::default(), clients, 11);
    let mut conns: Vec<_> = (1..=clients).map(|i| net.connect(i)).collect();
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut rand = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    for round in 0..400u32 {
        let i = 1 + rand(clients as u64) as usize;
        match rand(10) {
            0 => {
                let _ = net.eps[i].disconnect(net.now, conns[i - 1]);
            }
            1 if net.eps[i].connection(conns[i - 1]).is_none() => conns[i - 1] = net.connect(i),
            _ => {
                let _ = net.eps[i].send(conns[i - 1], &round.to_le_bytes(), Delivery::Reliable);
            }
        }
        let pause = if rand(20) == 0 { 2_000 } else { rand(30) };
        let limit = net.now + Duration::from_millis(pause);
        while net.step(limit) {
            let server = &mut net.eps[SERVER];
            let earliest = server.poll_timeout();
            let (scan, heap_len) = server.timer_scan();
            assert_eq!(earliest, scan, "round {round} at {}", net.now);
            assert!(heap_len <= 2 * (clients + 1) + 64, "{heap_len} timer entries");
        }
    }
}
