//! Hostile-network scenarios (issue 6): a flood of spoofed CLIENT_HELLOs
//! while a hundred clients play, a peer that never acknowledges, and a peer
//! that sends maximal garbage fragments. The hostile peers are written by
//! hand against the public wire and crypto API and talk to the server
//! through the simulator's `inject` and `capture`.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;

use mpgameserver::_internal::wire::handshake::{self, CHALLENGE_RESP_LEN, CLIENT_HELLO_FIXED_LEN};
use mpgameserver::_internal::wire::{Direction, FragmentHeader, HEADER_LEN, Header, MsgType};
use mpgameserver::_internal::{EphemeralKey, PacketKey, derive_packet_key};
use mpgameserver::{
    ConnectionId, Delivery, DropReason, Duration, EndpointConfig, Event, Instant, Rng, Seed, SendError,
};
use mpgameserver_sim::{LinkConfig, NodeId, Sim};

use crate::forge::write_datagram;
use crate::{outcomes, server_key};

/// A datagram to the server (see `write_datagram`).
fn datagram(key: Option<&PacketKey>, now: Instant, seq: u16, msgs: &[(u16, MsgType, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    write_datagram(&mut out, key, now, seq, msgs);
    out
}

/// A valid CLIENT_HELLO datagram for `spki`.
fn hello(spki: &[u8; 91]) -> Vec<u8> {
    let pad = vec![0x5A; EndpointConfig::default().sizes().hello_padding];
    let mut body = vec![0; CLIENT_HELLO_FIXED_LEN + pad.len()];
    let n = handshake::emit_client_hello(&mut body, spki, &pad).unwrap();
    datagram(None, Instant::ZERO, 1, &[(1, MsgType::ClientHello, &body[..n])])
}

/// A client that is not an endpoint: it completes a real handshake by hand,
/// then sends whatever the test wants and acknowledges nothing.
struct Hostile {
    addr: SocketAddr,
    server: NodeId,
    key: PacketKey,
    seq: u16,
    /// The server's connection to it.
    conn: ConnectionId,
}

impl Hostile {
    fn connect(sim: &mut Sim, server: NodeId, addr: SocketAddr) -> Hostile {
        let to = sim.addr(server);
        sim.capture(move |d| d.to == addr);
        let eph = EphemeralKey::generate(&mut Rng::new(Seed::from_u64(66)));
        sim.inject(addr, to, hello(&eph.public_spki()), Duration::from_millis(5));
        sim.run_for(Duration::from_millis(20));
        let sh = sim.take_captured().into_iter().next().expect("a SERVER_HELLO");
        let hdr = Header::parse(&sh.bytes, Direction::ToClient).unwrap();
        let end = mpgameserver::_internal::protect::open_crc(&hdr, &sh.bytes).expect("CRC trailer");
        let msg = mpgameserver::_internal::wire::frame::parse_payload(hdr.ty, hdr.count, &sh.bytes[HEADER_LEN..end])
            .unwrap()
            .next()
            .unwrap();
        let blob = handshake::parse_server_blob(handshake::parse_server_hello(msg.data).unwrap().blob).unwrap();
        let shared = eph.agree(blob.ephemeral_spki).unwrap();
        let key = PacketKey::new(&derive_packet_key(&shared, &blob.salt));
        let mut challenge = [0u8; CHALLENGE_RESP_LEN];
        handshake::emit_challenge_resp(&mut challenge, blob.token);
        let d = datagram(Some(&key), sim.now(), 2, &[(2, MsgType::ChallengeResp, &challenge)]);
        sim.inject(addr, to, d, Duration::from_millis(5));
        sim.run_for(Duration::from_millis(20));
        let conn = sim.endpoint(server).connection_by_addr(addr).expect("established");
        assert!(sim.endpoint(server).connection(conn).unwrap().state() == mpgameserver::ConnectionState::Connected);
        Hostile { addr, server, key, seq: 2, conn }
    }

    /// Sends `msgs` in one authenticated datagram that acknowledges nothing.
    fn send(&mut self, sim: &mut Sim, msgs: &[(u16, MsgType, &[u8])]) {
        self.seq = self.seq.wrapping_add(1).max(1);
        let d = datagram(Some(&self.key), sim.now(), self.seq, msgs);
        let to = sim.addr(self.server);
        sim.inject(self.addr, to, d, Duration::from_millis(5));
    }
}

/// 100,000 spoofed CLIENT_HELLOs from random addresses over ten seconds
/// (10,000/s, twenty times the default hello budget) while 100 clients
/// play at 60 Hz: every client stays connected and every Reliable message
/// is delivered, once.
#[test]
fn flood_of_spoofed_hellos_while_a_hundred_clients_play() {
    const CLIENTS: usize = 100;
    let mut sim = Sim::new(600);
    sim.set_default_link(LinkConfig::default().latency(Duration::from_millis(15)).loss(0.01));
    let server = sim.add_server(EndpointConfig::default(), server_key(600)).unwrap();
    sim.record_events(server, false);
    let received = Rc::new(RefCell::new(std::collections::BTreeMap::<(ConnectionId, u32), u32>::new()));
    let r = received.clone();
    sim.set_handler(server, move |_, _, ev| {
        if let Event::Message { conn, payload, .. } = ev {
            *r.borrow_mut().entry((*conn, u32::from_be_bytes(payload[..4].try_into().unwrap()))).or_default() += 1;
        }
    });
    let clients: Vec<(NodeId, ConnectionId)> = (0..CLIENTS)
        .map(|_| {
            let c = sim.add_client(EndpointConfig::default()).unwrap();
            let conn = sim.connect(c, server).unwrap();
            (c, conn)
        })
        .collect();
    assert!(sim.run_until(|s| s.endpoint(server).connection_count() == CLIENTS, Duration::from_secs(10)));
    let before = sim.endpoint(server).stats().clone();

    // The flood: a pool of valid client keys (each hello a real P-256 key,
    // so every accepted one costs the server an ECDH), plus truncated and
    // corrupted copies, each from a fresh random address.
    let keys: Vec<[u8; 91]> =
        (0..500u64).map(|i| EphemeralKey::generate(&mut Rng::new(Seed::from_u64(10_000 + i))).public_spki()).collect();
    let to = sim.addr(server);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut sent = 0u32;
    for frame in 0..600u32 {
        // 167 hellos per 60 Hz frame: 100,200 in ten seconds.
        for _ in 0..167 {
            let r = next();
            let from = SocketAddr::from((((r >> 32) as u32).to_be_bytes(), (r >> 16) as u16 | 1024));
            let mut d = hello(&keys[(r % 500) as usize]);
            let at = (r >> 8) as usize % d.len();
            match r % 16 {
                0 => d.truncate(at),
                1 => d[at] ^= 0x40,
                _ => {}
            }
            sim.inject(from, to, d, Duration::from_micros(r % 16_000));
        }
        for &(c, conn) in &clients {
            let mut m = frame.to_be_bytes().to_vec();
            m.extend_from_slice(&[7; 20]);
            sim.send(c, conn, &m, Delivery::Reliable).unwrap();
        }
        sent += 1;
        sim.run_for(Duration::from_micros(16_667));
        assert!(sim.endpoint(server).pending_handshakes() <= EndpointConfig::default().max_pending_handshakes);
    }
    sim.run_for(Duration::from_secs(3));
    let st = sim.endpoint(server).stats().clone();
    eprintln!("flood: {st}");

    // Every client stayed connected; every message was delivered, once.
    assert_eq!(sim.endpoint(server).connection_count(), CLIENTS);
    let received = received.borrow();
    for &(c, conn) in &clients {
        let events = sim.events(c);
        assert!(!events.iter().any(|e| matches!(e, Event::Disconnected { .. } | Event::ConnectFailed { .. })));
        let o = outcomes(events);
        assert_eq!(o.len(), sent as usize, "client {c:?}");
        assert!(o.values().all(|&v| v == (1, 0)), "client {c:?}: every message Delivered, none Lost");
        let s = sim.conn_of(server, c).unwrap();
        for n in 0..sent {
            assert_eq!(received.get(&(s, n)), Some(&1), "client {c:?} message {n}");
        }
        let _ = conn;
    }
    // The hello budget held: at most the default rate (500/s, burst 100)
    // was processed; everything else cost a CRC and a parse at most.
    let accepted = st.hellos_accepted - before.hellos_accepted;
    assert!(accepted <= 100 + 500 * 11, "{accepted} accepted");
    assert!(st.hellos_refused_rate - before.hellos_refused_rate > 50_000, "{st}");
    assert!(st.dropped(DropReason::Malformed) + st.dropped(DropReason::BadCrc) > 5_000, "{st}");
    assert!(st.server_hello_keys - before.server_hello_keys <= accepted / 8 + 120, "{st}");
}

/// A peer that completes the handshake, then acknowledges nothing while it
/// keeps the connection alive: the server's send state stays within its
/// bounds, `QueueFull` and `Lost` reach the application, and everything is
/// released when the peer goes quiet.
#[test]
fn peer_that_never_acknowledges() {
    let cfg = EndpointConfig::default();
    let mut sim = Sim::new(601);
    sim.set_default_link(LinkConfig::default().latency(Duration::from_millis(10)));
    let server = sim.add_server(cfg.clone(), server_key(601)).unwrap();
    let mut peer = Hostile::connect(&mut sim, server, "192.0.2.66:5000".parse().unwrap());
    let conn = peer.conn;
    sim.capture(|_| false); // stop keeping the server's datagrams to it

    // The application sends BestEffort messages (each Lost after the ack
    // timeout) and Reliable ones until the queue is full.
    let mut best_effort = Vec::new();
    for i in 0..50u32 {
        best_effort.push(sim.send(server, conn, &i.to_be_bytes(), Delivery::BestEffort).unwrap());
    }
    let big = vec![1u8; 100_000];
    let full = loop {
        match sim.send(server, conn, &big, Delivery::Reliable) {
            Ok(_) => {}
            Err(e) => break e,
        }
    };
    assert!(matches!(full, SendError::QueueFull { .. }), "{full:?}");
    let queued = sim.endpoint(server).connection(conn).unwrap().pending_messages();
    assert!(queued <= cfg.send_queue_messages);
    assert!((queued - best_effort.len()) * big.len() <= cfg.send_queue_bytes);
    for _ in 0..300 {
        peer.send(&mut sim, &[]); // a KEEP_ALIVE acknowledging nothing
        sim.run_for(Duration::from_millis(100));
        let c = sim.endpoint(server).connection(conn).expect("kept alive");
        assert!(c.pending_messages() <= queued);
    }
    // Thirty seconds on: every BestEffort message was reported Lost, the
    // Reliable ones are still queued (they never give up), and the queue
    // is still full.
    let lost: Vec<_> = sim.events(server).iter().filter(|e| matches!(e, Event::Lost { .. })).collect();
    assert_eq!(lost.len(), best_effort.len());
    assert!(matches!(sim.send(server, conn, &big, Delivery::Reliable), Err(SendError::QueueFull { .. })));
    assert!(sim.endpoint(server).connection(conn).unwrap().metrics().messages_retransmitted > 100);
    // The peer goes quiet: the connection times out and every queued
    // message is reported Lost, exactly once.
    sim.run_for(Duration::from_secs(10));
    assert!(sim.endpoint(server).connection(conn).is_none());
    let o = outcomes(sim.events(server));
    assert_eq!(o.len(), queued);
    assert!(o.values().all(|&v| v == (0, 1)));
    assert!(
        sim.events(server).contains(&Event::Disconnected { conn, reason: mpgameserver::DisconnectReason::TimedOut })
    );
}

/// A peer that sends maximal garbage fragments (the largest counts and
/// chunks, random identities, never a complete message, plus invalid
/// headers) as fast as the link allows for 20 s: reassembly stays within
/// its bounds, nothing is delivered, and the state is released by expiry.
#[test]
fn peer_that_sends_maximal_garbage_fragments() {
    let cfg = EndpointConfig::default();
    let mut sim = Sim::new(602);
    sim.set_default_link(LinkConfig::default().latency(Duration::from_millis(10)));
    let server = sim.add_server(cfg.clone(), server_key(602)).unwrap();
    let mut peer = Hostile::connect(&mut sim, server, "192.0.2.67:5000".parse().unwrap());
    let conn = peer.conn;
    sim.capture(|_| false);
    let mut x: u64 = 0xD1B5_4A32_D192_ED03;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut chunk = vec![0u8; 1426];
    let mut max_bytes = 0;
    let mut msgseq: u16 = 100;
    for step in 0..20_000u32 {
        let r = next();
        let count = match r % 4 {
            0 => 8192,
            1 => 1024,
            2 => (r >> 8) as u16 % 8192 + 3,
            _ => (r >> 8) as u16, // often above max_fragments: invalid
        };
        // Only the first or the last fragment of a message of three or
        // more: nothing can ever complete.
        let index = match (r >> 24) % 5 {
            0 => 0,         // invalid
            1 => count + 1, // invalid
            2 | 3 => 1,
            _ => count,
        };
        let frag_id = (r >> 32) as u16 % 64; // 0 is invalid
        let len = if r % 7 == 0 { 0 } else { 1 + (r >> 40) as usize % 1420 };
        let mut data = vec![0u8; 6];
        FragmentHeader { frag_id, index, count }.emit((&mut data[..6]).try_into().unwrap());
        chunk[..len].fill((r >> 48) as u8);
        data.extend_from_slice(&chunk[..len]);
        msgseq = msgseq.wrapping_add(1 + (r >> 56) as u16 % 3).max(1);
        peer.send(&mut sim, &[(msgseq, MsgType::AppFragment, &data)]);
        if step % 4 == 3 {
            sim.run_for(Duration::from_millis(4));
        }
        let ep = sim.endpoint(server);
        max_bytes = max_bytes.max(ep.reassembly_bytes());
        assert!(ep.reassembly_bytes() <= cfg.max_reassembly_bytes);
    }
    let st = sim.endpoint(server).stats().clone();
    eprintln!("garbage fragments: peak {max_bytes} B buffered; {st}");
    assert!(sim.endpoint(server).connection(conn).is_some(), "the peer is still connected");
    assert!(!sim.events(server).iter().any(|e| matches!(e, Event::Message { .. })), "no garbage delivered");
    assert!(max_bytes > cfg.max_reassembly_bytes / 2, "the peer did reach the byte bound: {max_bytes}");
    assert!(st.fragments_dropped > 1_000 && st.dropped(DropReason::Rate) > 100, "{st}");
    // The peer goes quiet: the connection closes and its state is released.
    sim.run_for(Duration::from_secs(10));
    assert!(sim.endpoint(server).connection(conn).is_none());
    assert_eq!(sim.endpoint(server).reassembly_bytes(), 0);
}
