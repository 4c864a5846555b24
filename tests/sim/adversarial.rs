//! Adversarial traffic against established sessions: replays (at once,
//! after the window, after the 16-bit sequence number wraps), forged and
//! replayed hellos, CRC-only datagrams spoofed from a client's address,
//! and garbage from everywhere. Nothing is delivered twice, and the
//! sessions carry on as if nothing happened.
//!
//! These scenarios test MPGS/1 (its wire, timers and PROTOCOL.md rules): their clients speak it explicitly (`crate::v1`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use mpgameserver::_internal::wire::MsgType;
use mpgameserver::{Delivery, DropReason, Duration, EndpointConfig, Event};
use mpgameserver_sim::{Datagram, LinkConfig, Sim};
use quickcheck::{Arbitrary, Gen};

use crate::{Pair, lifecycle_events, numbered, received_numbers, server_key};

/// Both sides send one numbered Reliable message per 60 Hz frame for
/// `frames` frames (the client from 0, the server from 1,000,000, each
/// continuing from `pair`'s earlier calls), calling `attack` before each
/// frame.
struct Session {
    pair: Pair,
    sent: u32,
}

impl Session {
    fn new(seed: u64) -> Session {
        Session { pair: Pair::simple(seed), sent: 0 }
    }

    fn with(pair: Pair) -> Session {
        Session { pair, sent: 0 }
    }

    fn run(&mut self, frames: u32, mut attack: impl FnMut(&mut Pair, u32)) {
        for f in 0..frames {
            attack(&mut self.pair, f);
            let n = self.sent;
            let (client, server, c, s) = (self.pair.client, self.pair.server, self.pair.c, self.pair.s);
            self.pair.sim.send(client, c, &numbered(n, 8), Delivery::Reliable).unwrap();
            self.pair.sim.send(server, s, &numbered(1_000_000 + n, 8), Delivery::Reliable).unwrap();
            self.sent += 1;
            self.pair.sim.run_for(Duration::from_micros(16_667));
        }
    }

    /// Every message arrived exactly once, both ways, and the session is
    /// the one it was: one `Connected` each side, nothing else.
    fn assert_unharmed(&mut self) {
        self.pair.sim.run_for(Duration::from_secs(2));
        let (client, server) = (self.pair.client, self.pair.server);
        let up = received_numbers(&self.pair.sim, server);
        let down = received_numbers(&self.pair.sim, client);
        let want_up: Vec<(u32, u32)> = (0..self.sent).map(|n| (n, 1)).collect();
        let want_down: Vec<(u32, u32)> = (0..self.sent).map(|n| (1_000_000 + n, 1)).collect();
        assert_eq!(up.into_iter().collect::<Vec<_>>(), want_up, "client to server: each message exactly once");
        assert_eq!(down.into_iter().collect::<Vec<_>>(), want_down, "server to client: each message exactly once");
        for node in [client, server] {
            assert_eq!(lifecycle_events(&self.pair.sim, node).len(), 1, "{:?}", lifecycle_events(&self.pair.sim, node));
        }
        assert_eq!(self.pair.sim.conn_of(server, client), Some(self.pair.s));
        assert_eq!(self.pair.sim.endpoint(server).connection_count(), 1);
    }
}

/// The packet sequence number in a datagram's header.
fn seq_of(d: &Datagram) -> u16 {
    u16::from_be_bytes([d.bytes[8], d.bytes[9]])
}

fn is_aead(d: &Datagram) -> bool {
    !matches!(d.msg_type(), Some(MsgType::ClientHello | MsgType::ServerHello))
}

fn replays(sim: &Sim, node: mpgameserver_sim::NodeId) -> u64 {
    sim.endpoint(node).stats().dropped(DropReason::Replay)
}

#[test]
fn immediate_replays_are_dropped() {
    let mut session = Session::new(61);
    let latency = Duration::from_millis(10);
    session.pair.sim.capture(is_aead);
    let mut replayed = 0u64;
    session.run(300, |pair, f| {
        // Every datagram of the last frame again: some land just before
        // their original, some just after, some at the same instant.
        for d in pair.sim.take_captured() {
            let delay = [Duration::ZERO, latency, latency + Duration::from_micros(1)][f as usize % 3];
            pair.sim.replay(&d, delay.saturating_sub(pair.sim.now() - d.sent_at));
            replayed += 1;
        }
    });
    session.pair.sim.stop_capture();
    session.assert_unharmed();
    let (c, s) = (session.pair.client, session.pair.server);
    assert!(replayed > 500, "{replayed}");
    // Every copy beyond the first of each datagram counted as a replay.
    assert_eq!(replays(&session.pair.sim, c) + replays(&session.pair.sim, s), replayed);
}

#[test]
fn replays_after_the_window_are_dropped() {
    let mut session = Session::new(62);
    session.pair.sim.capture(is_aead);
    session.run(60, |_, _| {});
    let old = session.pair.sim.take_captured();
    session.pair.sim.stop_capture();
    session.run(180, |_, _| {}); // three seconds: far past the 32-packet window
    let before = replays(&session.pair.sim, session.pair.client) + replays(&session.pair.sim, session.pair.server);
    for d in &old {
        session.pair.sim.replay(d, Duration::ZERO);
    }
    session.run(60, |_, _| {});
    session.assert_unharmed();
    let after = replays(&session.pair.sim, session.pair.client) + replays(&session.pair.sim, session.pair.server);
    assert_eq!(after - before, old.len() as u64, "every old datagram was refused as a replay");
}

#[test]
fn replays_after_the_sequence_number_wraps_are_dropped() {
    // The client sends one small message per 60 Hz frame, one datagram
    // each, for more than 65,535 datagrams: its packet (and message)
    // sequence numbers wrap. Datagrams captured at the start are then
    // replayed just when their sequence numbers look new again: only their
    // authenticated ctime, 18 minutes old, gives them away (§15 rule 17).
    let mut pair = Pair::new(63, LinkConfig::lan(), crate::v1(EndpointConfig::default()));
    let (client, server, c) = (pair.client, pair.server, pair.c);
    let client_addr = pair.sim.addr(client);
    pair.sim.set_trace_capacity(1000);
    pair.sim.capture(move |d| d.from == client_addr && is_aead(d));
    let frame = Duration::from_micros(16_667);
    let mut early: Vec<Datagram> = Vec::new();
    let mut latest_seq = 0u16;
    let mut wrapped = false;
    let mut sent = 0u32;
    let mut replayed = 0;
    while replayed == 0 {
        pair.sim.send(client, c, &numbered(sent, 0), Delivery::Unreliable).unwrap();
        sent += 1;
        pair.sim.run_for(frame);
        for d in pair.sim.take_captured() {
            let seq = seq_of(&d);
            wrapped |= seq < latest_seq;
            latest_seq = seq;
            if early.len() < 100 && !wrapped {
                early.push(d);
            }
        }
        // Once wrapped, and 10 datagrams before the first captured one:
        // the captured ones are "new" to the packet window.
        if wrapped && (1..=20).contains(&seq_of(&early[0]).wrapping_sub(latest_seq)) {
            for d in &early {
                pair.sim.replay(d, Duration::ZERO);
                replayed += 1;
            }
        }
        assert!(sent < 70_000, "the sequence numbers never came round");
    }
    pair.sim.stop_capture();
    let before = replays(&pair.sim, server);
    pair.sim.run_for(Duration::from_secs(1));
    assert_eq!(replays(&pair.sim, server) - before, replayed, "{}", pair.sim.endpoint(server).stats());
    let got = received_numbers(&pair.sim, server);
    assert!(got.values().all(|&k| k == 1), "nothing delivered twice");
    assert!(got.len() as u32 > sent - sent / 100, "{} of {sent}", got.len());
    let datagrams = pair.sim.endpoint(client).stats().datagrams_sent;
    assert!(datagrams > 65_535, "{datagrams} datagrams for {sent} messages");
    eprintln!("{datagrams} datagrams for {sent} messages, at {}", pair.sim.now());
    assert_eq!(lifecycle_events(&pair.sim, server).len(), 1);
    assert_eq!(lifecycle_events(&pair.sim, client).len(), 1);
}

/// A pair that captured its own handshake (both hellos).
fn pair_capturing_hellos(seed: u64) -> (Pair, Vec<Datagram>) {
    let mut sim = Sim::new(seed);
    sim.set_default_link(LinkConfig::default().latency(Duration::from_millis(10)));
    let server = sim.add_server(EndpointConfig::default(), server_key(seed)).unwrap();
    let client = sim.add_client(crate::v1(EndpointConfig::default())).unwrap();
    sim.capture(|d| !is_aead(d));
    let c = sim.connect(client, server).unwrap();
    assert!(sim.run_until(|s| s.events(client).contains(&Event::Connected { conn: c }), Duration::from_secs(5)));
    sim.stop_capture();
    let hellos = sim.take_captured();
    let s = sim.conn_of(server, client).unwrap();
    (Pair { sim, server, client, c, s }, hellos)
}

#[test]
fn a_forged_client_hello_from_an_established_address_is_ignored() {
    let (pair, _) = pair_capturing_hellos(64);
    let mut session = Session::with(pair);
    // A genuine CLIENT_HELLO with another key: from a second client that
    // never reaches the server.
    let intruder = session.pair.sim.add_client(crate::v1(EndpointConfig::default())).unwrap();
    let server = session.pair.server;
    session.pair.sim.partition(&[intruder], &[server]);
    session.pair.sim.capture(|d| d.msg_type() == Some(MsgType::ClientHello));
    session.pair.sim.connect(intruder, server).unwrap();
    let hello = session.pair.sim.take_captured().remove(0);
    session.pair.sim.stop_capture();
    // Sent again and again from the established client's address.
    let (client_addr, server_addr) = (session.pair.sim.addr(session.pair.client), session.pair.sim.addr(server));
    let before = session.pair.sim.endpoint(server).stats().dropped(DropReason::Unexpected);
    let mark = session.pair.sim.trace().total();
    session.run(120, |pair, f| {
        if f % 4 == 0 {
            pair.sim.inject(client_addr, server_addr, hello.bytes.clone(), Duration::ZERO);
        }
    });
    session.assert_unharmed();
    let unexpected = session.pair.sim.endpoint(server).stats().dropped(DropReason::Unexpected) - before;
    assert_eq!(unexpected, 30);
    // The server never answered with a SERVER_HELLO.
    let later = session.pair.sim.trace().entries().rev().take((session.pair.sim.trace().total() - mark) as usize);
    assert!(later.filter(|e| e.from == server_addr).all(|e| e.msg_type != Some(MsgType::ServerHello)));
}

#[test]
fn a_replayed_server_hello_to_an_established_client_is_ignored() {
    let (pair, hellos) = pair_capturing_hellos(65);
    let server_hello = hellos.iter().find(|d| d.msg_type() == Some(MsgType::ServerHello)).unwrap().clone();
    let mut session = Session::with(pair);
    let client = session.pair.client;
    let before = session.pair.sim.endpoint(client).stats().dropped(DropReason::Unexpected);
    session.run(120, |pair, f| {
        if f % 10 == 0 {
            pair.sim.replay(&server_hello, Duration::ZERO);
        }
    });
    session.assert_unharmed();
    assert_eq!(session.pair.sim.endpoint(client).stats().dropped(DropReason::Unexpected) - before, 12);
}

/// A CRC-protected (unencrypted) datagram to the server with one message.
fn crc_datagram(ctime: u32, seq: u16, ack: u16, msgseq: u16, ty: MsgType, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    crate::forge::seal_into(&mut out, crate::forge::to_server(ctime, seq, ack, !0), None, &[(msgseq, ty, data)]);
    out
}

#[test]
fn crc_only_datagrams_spoofed_from_an_established_client_are_dropped() {
    let mut session = Session::new(66);
    let (client_addr, server_addr) =
        (session.pair.sim.addr(session.pair.client), session.pair.sim.addr(session.pair.server));
    let server = session.pair.server;
    let before = session.pair.sim.endpoint(server).stats().dropped_total();
    let mut g = Gen::from_size_and_seed(50, 66);
    let mut injected = 0;
    session.run(240, |pair, f| {
        // Plausible headers (current ctime, sequence numbers just ahead),
        // every message type, a correct CRC: a DISCONNECT, an APP message,
        // a CHALLENGE_RESP, a fragment, a keep-alive...
        let ty = [
            MsgType::Disconnect,
            MsgType::App,
            MsgType::ChallengeResp,
            MsgType::AppFragment,
            MsgType::KeepAlive,
            MsgType::Unknown,
        ][f as usize % 6];
        let ctime = pair.sim.now().as_secs() as u32;
        let seq = (f as u16).wrapping_mul(7).wrapping_add(u16::arbitrary(&mut g) % 64) | 1;
        let data: Vec<u8> = if ty == MsgType::App { b"spoofed".to_vec() } else { Vec::arbitrary(&mut g) };
        let bytes = crc_datagram(ctime, seq, u16::arbitrary(&mut g), seq, ty, &data);
        pair.sim.inject(client_addr, server_addr, bytes, Duration::ZERO);
        injected += 1;
    });
    session.assert_unharmed();
    assert!(!session.pair.sim.messages(server).contains(&&b"spoofed"[..]));
    assert_eq!(session.pair.sim.endpoint(server).stats().dropped_total() - before, injected);
}

/// A random address, IPv4 or IPv6.
fn random_addr(g: &mut Gen) -> SocketAddr {
    let ip = if bool::arbitrary(g) {
        IpAddr::V4(Ipv4Addr::from(u32::arbitrary(g)))
    } else {
        IpAddr::V6(Ipv6Addr::from(u128::arbitrary(g)))
    };
    SocketAddr::new(ip, u16::arbitrary(g))
}

#[test]
fn random_garbage_from_random_addresses_changes_nothing() {
    let mut session = Session::new(67);
    let (client, server) = (session.pair.client, session.pair.server);
    let (client_addr, server_addr) = (session.pair.sim.addr(client), session.pair.sim.addr(server));
    let mut g = Gen::from_size_and_seed(200, 67);
    let mut to_server = 0u64;
    let mut to_client = 0u64;
    let before = (
        session.pair.sim.endpoint(server).stats().dropped_total(),
        session.pair.sim.endpoint(client).stats().dropped_total(),
    );
    session.run(300, |pair, _| {
        for _ in 0..10 {
            // Random bytes or MPGS/1-shaped datagrams (valid headers and
            // CRCs, hello-shaped bodies); from anywhere, or spoofed from the
            // other endpoint's address.
            let bytes =
                if bool::arbitrary(&mut g) { Vec::<u8>::arbitrary(&mut g) } else { crate::junk::framed(&mut g) };
            let to_srv = bool::arbitrary(&mut g);
            let from = match u8::arbitrary(&mut g) % 4 {
                0 if to_srv => client_addr,
                0 => server_addr,
                _ => random_addr(&mut g),
            };
            let to = if to_srv { server_addr } else { client_addr };
            if to_srv {
                to_server += 1
            } else {
                to_client += 1
            }
            pair.sim.inject(from, to, bytes, Duration::from_micros(u64::from(u16::arbitrary(&mut g) % 16_000)));
        }
    });
    session.assert_unharmed();
    let after = (
        session.pair.sim.endpoint(server).stats().dropped_total(),
        session.pair.sim.endpoint(client).stats().dropped_total(),
    );
    // Every garbage datagram was dropped and counted; the session's own
    // traffic was not.
    assert_eq!(after.0 - before.0, to_server, "{}", session.pair.sim.endpoint(server).stats());
    assert_eq!(after.1 - before.1, to_client, "{}", session.pair.sim.endpoint(client).stats());
    assert!(
        session
            .pair
            .sim
            .events(server)
            .iter()
            .all(|e| matches!(e, Event::Connected { .. } | Event::Message { .. } | Event::Delivered { .. }))
    );
}

#[test]
fn replays_after_a_fast_sequence_wrap_are_dropped() {
    // As above, but with pacing disabled (send_interval = 0, a documented
    // setting) and full-size messages offered as fast as the sender takes
    // them. Unchecked, such a sender wrapped its 16-bit packet sequence in
    // about 3.5 s, inside rule 17's ctime tolerance (connection_timeout +
    // 1 s), and replayed old datagrams were delivered again. The sender's
    // sequence budget (at most 32,000 datagrams per connection_timeout +
    // 2 s) now makes a wrap take longer than the tolerance, so by the time
    // the sequence numbers come round, the old datagrams' ctime gives them away.
    let mut cfg = crate::v1(EndpointConfig::default());
    cfg.send_interval = Duration::ZERO;
    let mut pair = Pair::new(68, LinkConfig::lan(), cfg);
    let (client, server, c) = (pair.client, pair.server, pair.c);
    let client_addr = pair.sim.addr(client);
    pair.sim.set_trace_capacity(1000);
    pair.sim.capture(move |d| d.from == client_addr && is_aead(d));
    let mut early: Vec<Datagram> = Vec::new();
    let mut latest_seq = 0u16;
    let mut wrapped = false;
    let mut sent = 0u32;
    let mut replayed = 0;
    while replayed == 0 {
        for _ in 0..40 {
            if pair.sim.send(client, c, &numbered(sent, 1400), Delivery::Unreliable).is_ok() {
                sent += 1;
            }
        }
        pair.sim.run_for(Duration::from_millis(10));
        for d in pair.sim.take_captured() {
            let seq = seq_of(&d);
            wrapped |= seq < latest_seq;
            latest_seq = seq;
            if early.len() < 300 && !wrapped {
                early.push(d);
            }
        }
        if wrapped {
            // The early datagrams whose sequence numbers are now just ahead.
            for d in early.iter().filter(|d| (1..=1000).contains(&seq_of(d).wrapping_sub(latest_seq))) {
                pair.sim.replay(d, Duration::ZERO);
                replayed += 1;
            }
        }
        assert!(sent < 100_000, "the sequence numbers never came round");
    }
    let age = pair.sim.now() - early[0].sent_at;
    pair.sim.run_for(Duration::from_secs(1));
    let got = received_numbers(&pair.sim, server);
    let twice = got.values().filter(|&&k| k > 1).count();
    assert_eq!(twice, 0, "{twice} of {replayed} datagrams replayed {age:?} later were delivered again");
}
