//! Idle connections, keep-alives, handshake and connection timeouts, all in
//! virtual time: a 30-second timeout costs milliseconds.
//!
//! These scenarios test MPGS/1 (its wire, timers and PROTOCOL.md rules): their clients speak it explicitly (`crate::v1`).

use mpgameserver::_internal::wire::MsgType;
use mpgameserver::{DisconnectReason, Duration, EndpointConfig, Event, Instant};
use mpgameserver_sim::{LinkConfig, Sim, TraceKind};

use crate::{Pair, lifecycle_events, server_key};

#[test]
fn an_idle_connection_lives_on_keep_alives_for_ten_virtual_minutes() {
    let mut pair = Pair::new(31, LinkConfig::wifi(), crate::v1(EndpointConfig::default()));
    let start = pair.sim.now();
    pair.sim.run_for(Duration::from_secs(600));
    assert_eq!(pair.sim.now(), start + Duration::from_secs(600));
    for node in [pair.client, pair.server] {
        assert_eq!(lifecycle_events(&pair.sim, node).len(), 1, "only Connected: {:?}", pair.sim.events(node));
    }
    assert!(pair.sim.endpoint(pair.client).connection(pair.c).is_some());
    // The keep-alive interval is 0.1 s: about ten a second each way.
    let sent = pair.sim.stats().datagrams_sent;
    assert!((10_000..13_000).contains(&sent), "{sent}");
    // And they are keep-alives (only the handshake precedes them).
    let keep_alives =
        pair.sim.trace().entries().filter(|e| e.kind == TraceKind::Send && e.msg_type == Some(MsgType::KeepAlive));
    assert!(keep_alives.count() as u64 > sent * 9 / 10);
}

#[test]
fn keep_alives_go_out_at_the_keep_alive_interval() {
    let mut cfg = crate::v1(EndpointConfig::default());
    cfg.keep_alive_interval = Duration::from_millis(250);
    let mut pair = Pair::new(32, LinkConfig::lan(), cfg);
    let from = pair.sim.now() + Duration::from_secs(1);
    pair.sim.run_for(Duration::from_secs(11));
    let client_addr = pair.sim.addr(pair.client);
    let times: Vec<Instant> = pair
        .sim
        .trace()
        .entries()
        .filter(|e| e.kind == TraceKind::Send && e.from == client_addr && e.at >= from)
        .map(|e| e.at)
        .collect();
    // Ten seconds at one per 250 ms.
    assert!((39..=41).contains(&times.len()), "{}", times.len());
    for w in times.windows(2) {
        let gap = w[1] - w[0];
        assert!(gap <= Duration::from_millis(250) + Duration::from_millis(20), "{gap:?}");
    }
}

#[test]
fn a_silent_peer_times_out_after_a_30_s_connection_timeout() {
    let mut cfg = crate::v1(EndpointConfig::default());
    cfg.connection_timeout = Duration::from_secs(30);
    let mut pair = Pair::new(33, LinkConfig::default().latency(Duration::from_millis(10)), cfg);
    pair.sim.run_for(Duration::from_secs(1));
    // The cable is cut: both sides stop hearing each other.
    pair.sim.partition(&[pair.client], &[pair.server]);
    let cut = pair.sim.now();
    pair.sim.run_for(Duration::from_secs(60));
    for (node, conn) in [(pair.client, pair.c), (pair.server, pair.s)] {
        let ends: Vec<(Instant, &Event)> = pair
            .sim
            .event_times(node)
            .iter()
            .copied()
            .zip(pair.sim.events(node))
            .filter(|(_, e)| matches!(e, Event::Disconnected { .. }))
            .collect();
        assert_eq!(ends.len(), 1, "{:?}", pair.sim.events(node));
        assert_eq!(*ends[0].1, Event::Disconnected { conn, reason: DisconnectReason::TimedOut });
        // 30 s after the last datagram heard, which was just before the cut.
        let after = ends[0].0 - cut;
        assert!(after > Duration::from_millis(29_800) && after <= Duration::from_secs(30), "{after:?}");
        assert!(pair.sim.endpoint(node).connection(conn).is_none());
    }
    assert_eq!(pair.sim.endpoint(pair.server).connection_count(), 0);
    // Healing changes nothing now: the sessions are gone.
    pair.sim.heal();
    pair.sim.run_for(Duration::from_secs(5));
    assert_eq!(lifecycle_events(&pair.sim, pair.client).len(), 2);
}

#[test]
fn a_short_partition_does_not_end_a_connection() {
    let mut pair = Pair::new(34, LinkConfig::wifi(), crate::v1(EndpointConfig::default()));
    pair.sim.partition(&[pair.client], &[pair.server]);
    pair.sim.run_for(Duration::from_secs(4)); // under the 5 s connection timeout
    pair.sim.heal();
    pair.sim.run_for(Duration::from_secs(20));
    for node in [pair.client, pair.server] {
        assert_eq!(lifecycle_events(&pair.sim, node).len(), 1, "{:?}", pair.sim.events(node));
    }
}

#[test]
fn a_pending_handshake_is_forgotten_after_the_handshake_timeout() {
    // The client's CHALLENGE_RESP never arrives: the server keeps the
    // pending entry for handshake_timeout after the last hello, reports
    // nothing, and the client fails at its connect timeout.
    let mut sim = Sim::new(35);
    sim.set_default_link(LinkConfig::default().latency(Duration::from_millis(20)));
    let server = sim.add_server(EndpointConfig::default(), server_key(35)).unwrap();
    let client = sim.add_client(crate::v1(EndpointConfig::default())).unwrap();
    let c = sim.connect(client, server).unwrap();
    sim.run_for(Duration::from_millis(30)); // the hello arrived at 20 ms
    sim.partition_one_way(client, server);
    assert!(sim.conn_of(server, client).is_some(), "pending");
    let hello_at = Instant::from_millis(20);
    let handshake_timeout = EndpointConfig::default().handshake_timeout;
    sim.advance_to(hello_at + handshake_timeout - Duration::from_millis(1));
    assert!(sim.conn_of(server, client).is_some(), "still pending 1 ms before");
    sim.advance_to(hello_at + handshake_timeout);
    assert!(sim.conn_of(server, client).is_none(), "forgotten at the timeout");
    sim.run_for(Duration::from_secs(10));
    assert!(sim.events(server).is_empty(), "{:?}", sim.events(server));
    assert_eq!(
        lifecycle_events(&sim, client),
        [Event::ConnectFailed { conn: c, reason: mpgameserver::ConnectFailure::TimedOut }]
    );
    let failed_at = sim.event_times(client)[sim.events(client).len() - 1];
    assert_eq!(failed_at, Instant::ZERO + EndpointConfig::default().connect_timeout);
}

#[test]
fn a_sixty_hz_game_loop_calling_handle_timeout_every_frame_changes_nothing() {
    // The same session, once driven only by poll_timeout and once by a
    // 60 Hz loop that also calls handle_timeout every frame: the same
    // messages arrive and nobody times out.
    let run = |frames: bool| {
        let mut pair = Pair::new(36, LinkConfig::wifi(), crate::v1(EndpointConfig::default()));
        if frames {
            for node in [pair.client, pair.server] {
                pair.sim.set_frame_interval(node, Some(Duration::from_micros(16_667)));
            }
        }
        let client = pair.client;
        crate::send_numbered(&mut pair, client, 0, 100, mpgameserver::Delivery::Reliable);
        pair.sim.run_for(Duration::from_secs(20));
        (
            crate::received_numbers(&pair.sim, pair.server),
            lifecycle_events(&pair.sim, pair.client),
            pair.sim.stats().timeouts,
        )
    };
    let (plain, framed) = (run(false), run(true));
    assert_eq!(plain.0.len(), 100);
    assert_eq!(plain.0, framed.0);
    assert_eq!(plain.1.len(), 1);
    assert_eq!(plain.1, framed.1);
    assert!(framed.2 > plain.2 + 1000, "frames called handle_timeout: {} vs {}", framed.2, plain.2);
}
