//! Handshakes under loss, timeouts when nobody answers, address families,
//! presets.
//!
//! These scenarios test MPGS/1 (its wire, timers and PROTOCOL.md rules): their clients speak it explicitly (`crate::v1`).

use std::net::SocketAddr;

use mpgameserver::{ConnectFailure, Delivery, Duration, EndpointConfig, Event, Instant};
use mpgameserver_sim::{DropCause, LinkConfig, Preset, Sim};

use crate::{lifecycle_events, outcomes, server_key};

/// Connects one client over a 20 ms link losing `loss` of the datagrams
/// each way; returns when the client and the server saw `Connected`, if
/// they did within `cfg.connect_timeout` (and checks nothing else happened).
fn connect_under_loss(seed: u64, loss: f64, cfg: &EndpointConfig) -> Option<(Instant, Instant)> {
    let mut sim = Sim::new(seed);
    sim.set_default_link(LinkConfig::default().latency(Duration::from_millis(20)).loss(loss));
    let server = sim.add_server(cfg.clone(), server_key(seed)).unwrap();
    let client = sim.add_client(cfg.clone()).unwrap();
    let c = sim.connect(client, server).unwrap();
    sim.run_for(cfg.connect_timeout + Duration::from_millis(500));
    let at = |node| {
        let i = sim.events(node).iter().position(|e| matches!(e, Event::Connected { .. }))?;
        Some(sim.event_times(node)[i])
    };
    let (client_at, server_at) = (at(client)?, at(server)?);
    assert_eq!(lifecycle_events(&sim, client), [Event::Connected { conn: c }], "seed {seed}");
    assert_eq!(lifecycle_events(&sim, server).len(), 1, "seed {seed}");
    assert_eq!(sim.endpoint(server).connection_count(), 1);
    if loss > 0.0 {
        assert!(sim.stats().dropped(DropCause::Loss) > 0 || client_at < Instant::from_millis(100));
    }
    Some((client_at, server_at))
}

#[test]
fn handshake_completes_under_0_10_30_and_50_percent_loss() {
    let default = crate::v1(EndpointConfig::default());
    for loss in [0.0, 0.1, 0.3] {
        let mut slowest = Instant::ZERO;
        for seed in 0..25 {
            let Some((c, s)) = connect_under_loss(seed, loss, &default) else {
                panic!("no handshake within the connect timeout at {loss} loss, seed {seed}");
            };
            slowest = slowest.max(c).max(s);
        }
        if loss == 0.0 {
            // Two round trips of 40 ms: hello/answer, challenge/confirmation.
            assert_eq!(slowest, Instant::from_millis(80));
        }
    }
    // At 50 % each way, each of the two round trips succeeds with
    // probability 1/4 per 250 ms try, so the handshake takes 2 s on
    // average and longer than the default 5 s connect timeout about once
    // in fifty. Give the client 10 s and the server's pending entry 5 s.
    let mut cfg = crate::v1(EndpointConfig::default());
    cfg.connect_timeout = Duration::from_secs(10);
    cfg.handshake_timeout = Duration::from_secs(5);
    let mut times = Vec::new();
    for seed in 0..25 {
        let Some((c, _)) = connect_under_loss(seed, 0.5, &cfg) else {
            panic!("no handshake within the connect timeout at 50 % loss, seed {seed}");
        };
        times.push(c);
    }
    assert!(times.iter().any(|&t| t > Instant::from_secs(1)), "the loss slowed some handshakes: {times:?}");
}

#[test]
fn a_server_hello_that_gets_through_late_still_completes_the_handshake() {
    // Regression: the server timed its pending handshake from the first
    // CLIENT_HELLO only, so when the SERVER_HELLO got through after 1.5 s
    // the client had 0.5 s left to get a CHALLENGE_RESP through, and then
    // retried for 3 s more against a server that had forgotten it.
    let mut sim = Sim::new(1);
    sim.set_default_link(LinkConfig::default().latency(Duration::from_millis(20)));
    let server = sim.add_server(EndpointConfig::default(), server_key(1)).unwrap();
    let client = sim.add_client(crate::v1(EndpointConfig::default())).unwrap();
    // The answers to the hellos of 0 to 1.25 s are lost; the one to the
    // hello of 1.5 s arrives at 1.54 s.
    sim.drop_next(server, client, 6);
    let c = sim.connect(client, server).unwrap();
    sim.run_for(Duration::from_millis(1530));
    // Then the CHALLENGE_RESPs of 1.54, 1.79, 2.04 and 2.29 s are lost.
    sim.drop_next(client, server, 4);
    sim.run_for(Duration::from_secs(5));
    assert_eq!(sim.stats().dropped(DropCause::Scripted), 10);
    assert!(
        sim.events(client).contains(&Event::Connected { conn: c }),
        "client: {:?}; server: {}\n{}",
        sim.events(client),
        sim.endpoint(server).stats(),
        sim.trace().tail(12)
    );
}

#[test]
fn a_client_recovers_when_the_server_forgot_its_pending_handshake() {
    // The SERVER_HELLO arrives at once, then every datagram of the client
    // for the next ~2.5 s is lost, so the server forgets the pending
    // handshake (handshake_timeout, 2 s after the last hello). With no
    // confirmation for a handshake timeout, the client goes back to its
    // CLIENT_HELLO, gets a new SERVER_HELLO (a new server session) and
    // completes within its connect timeout.
    let mut sim = Sim::new(2);
    sim.set_default_link(LinkConfig::default().latency(Duration::from_millis(20)));
    let server = sim.add_server(EndpointConfig::default(), server_key(2)).unwrap();
    let client = sim.add_client(crate::v1(EndpointConfig::default())).unwrap();
    let c = sim.connect(client, server).unwrap();
    sim.run_for(Duration::from_millis(30)); // the hello has arrived
    sim.drop_next(client, server, 10);
    sim.run_for(Duration::from_secs(6));
    assert!(sim.events(client).contains(&Event::Connected { conn: c }), "{:?}", sim.events(client));
    assert_eq!(sim.endpoint(server).stats().handshakes_completed, 1);
    assert_eq!(sim.endpoint(server).connection_count(), 1);
}

#[test]
fn connect_times_out_when_the_server_is_unreachable() {
    // Nobody at the address: every hello is dropped for lack of a route.
    let mut sim = Sim::new(3);
    let client = sim.add_client(crate::v1(EndpointConfig::default())).unwrap();
    let nowhere: SocketAddr = "10.9.9.9:4000".parse().unwrap();
    let c = sim.connect_to(client, nowhere, server_key(3).public_key()).unwrap();
    let queued = sim.send(client, c, b"never delivered", Delivery::Reliable).unwrap();
    assert!(sim.run_until(|s| !s.events(client).is_empty(), Duration::from_secs(60)));
    // Exactly at the connect timeout, in virtual time.
    assert_eq!(sim.now(), Instant::ZERO + EndpointConfig::default().connect_timeout);
    assert_eq!(lifecycle_events(&sim, client), [Event::ConnectFailed { conn: c, reason: ConnectFailure::TimedOut }]);
    sim.run_for(Duration::from_secs(30));
    assert_eq!(outcomes(sim.events(client)).get(&queued), Some(&(0, 1)), "the queued message is lost once");
    assert_eq!(lifecycle_events(&sim, client).len(), 1);
    assert!(sim.endpoint(client).connection(c).is_none());
    // The client repeated its hello every 250 ms until it gave up.
    assert_eq!(sim.stats().dropped(DropCause::NoRoute), 20);
    assert_eq!(sim.stats().datagrams_sent, 20);

    // A server that exists but is cut off behaves the same; so does one
    // whose answers are lost.
    for one_way in [false, true] {
        let mut sim = Sim::new(4);
        let server = sim.add_server(EndpointConfig::default(), server_key(4)).unwrap();
        let client = sim.add_client(crate::v1(EndpointConfig::default())).unwrap();
        if one_way {
            sim.partition_one_way(server, client);
        } else {
            sim.partition(&[server], &[client]);
        }
        let c = sim.connect(client, server).unwrap();
        sim.run_for(Duration::from_secs(10));
        assert_eq!(
            lifecycle_events(&sim, client),
            [Event::ConnectFailed { conn: c, reason: ConnectFailure::TimedOut }]
        );
        assert!(sim.events(server).is_empty(), "{:?}", sim.events(server));
        assert_eq!(sim.endpoint(server).connection_count(), 0);
        assert!(sim.stats().dropped(DropCause::Partition) > 0);
    }
}

#[test]
fn a_wrong_pinned_key_fails_with_wrong_server_key() {
    let mut sim = Sim::new(5);
    let server = sim.add_server(EndpointConfig::default(), server_key(5)).unwrap();
    let client = sim.add_client(crate::v1(EndpointConfig::default())).unwrap();
    let c = sim.connect_to(client, sim.addr(server), server_key(6).public_key()).unwrap();
    sim.run_for(Duration::from_secs(6));
    assert_eq!(
        lifecycle_events(&sim, client),
        [Event::ConnectFailed { conn: c, reason: ConnectFailure::WrongServerKey }]
    );
    assert!(sim.endpoint(client).stats().dropped(mpgameserver::DropReason::AuthFailed) > 0);
    assert_eq!(sim.endpoint(server).connection_count(), 0);
}

#[test]
fn handshake_and_echo_over_ipv6_and_over_every_preset() {
    // IPv6 automatic addresses, and explicit IPv4 and IPv6 addresses mixed
    // on one server.
    let mut sim = Sim::new(6);
    sim.use_ipv6(true);
    let server = sim.add_server(EndpointConfig::default(), server_key(6)).unwrap();
    assert!(sim.addr(server).is_ipv6());
    let c6 = sim.add_client(crate::v1(EndpointConfig::default())).unwrap();
    let c4 = sim.add_client_at("192.0.2.7:6000".parse().unwrap(), crate::v1(EndpointConfig::default())).unwrap();
    let c6b = sim.add_client_at("[2001:db8::1]:6000".parse().unwrap(), crate::v1(EndpointConfig::default())).unwrap();
    sim.set_default_link(LinkConfig::wifi());
    sim.set_handler(server, |ep, _, ev| {
        if let Event::Message { conn, payload, .. } = ev {
            ep.send(*conn, payload, Delivery::Reliable).unwrap();
        }
    });
    for (i, &client) in [c6, c4, c6b].iter().enumerate() {
        let c = sim.connect(client, server).unwrap();
        sim.send(client, c, &[i as u8; 100], Delivery::Reliable).unwrap();
    }
    assert!(sim.run_until(|s| [c6, c4, c6b].iter().all(|&c| s.messages(c).len() == 1), Duration::from_secs(10)));
    for (i, &client) in [c6, c4, c6b].iter().enumerate() {
        assert_eq!(sim.messages(client), [&[i as u8; 100][..]]);
        let remote = sim.endpoint(server).connection(sim.conn_of(server, client).unwrap()).unwrap().remote();
        assert_eq!(remote, sim.addr(client));
    }

    // Every preset: connect, then 20 Reliable messages each way, exactly once.
    for preset in Preset::ALL {
        let mut pair = crate::Pair::new(7, preset.config(), crate::v1(EndpointConfig::default()));
        let (client, server) = (pair.client, pair.server);
        crate::send_numbered(&mut pair, client, 0, 20, Delivery::Reliable);
        crate::send_numbered(&mut pair, server, 100, 20, Delivery::Reliable);
        let done = |s: &Sim| s.messages(server).len() >= 20 && s.messages(client).len() >= 20;
        assert!(pair.sim.run_until(done, Duration::from_secs(30)), "{preset}");
        pair.sim.run_for(Duration::from_secs(2));
        let up: Vec<u32> = crate::received_numbers(&pair.sim, server).into_iter().map(|(n, k)| n * 10 + k).collect();
        assert_eq!(up, (0..20).map(|n| n * 10 + 1).collect::<Vec<_>>(), "{preset}: each message once");
        assert_eq!(crate::received_numbers(&pair.sim, client).len(), 20, "{preset}");
    }
}
