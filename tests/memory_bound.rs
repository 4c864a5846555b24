//! Memory bounds under a hostile peer, measured with a counting allocator
//! (`peak_alloc`, a `#[global_allocator]` shim around the system allocator:
//! no unsafe code of ours). This file is its own test binary with a single
//! test, so nothing else allocates while it measures.
//!
//! A hand-written hostile client (the public wire and crypto API) completes
//! a real handshake with a server endpoint, then holds the most reassembly
//! state it can (every reassembly slot, the whole byte budget, maximal
//! fragment counts, never completing one) and never acknowledges anything
//! while the server's application fills the send queue until `QueueFull`.
//! The peak heap use must stay within `EndpointConfig::memory_bounds()`,
//! and everything is released when the connection ends. A second phase
//! measures pending handshakes; a third does the same over MPGS/2 with
//! channels (a hand-driven client filling every channel's receive state,
//! the server's application filling every channel's queue, and connections
//! that break the channel rules closed with nothing delivered).

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::net::SocketAddr;

use mpgameserver::_internal::wire::handshake::{self, CHALLENGE_RESP_LEN, CLIENT_HELLO_FIXED_LEN};
use mpgameserver::_internal::wire::{Direction, FragmentHeader, HEADER_LEN, Header, MsgType};
use mpgameserver::_internal::{EphemeralKey, PacketKey, derive_packet_key};
use mpgameserver::{
    Delivery, Duration, Endpoint, EndpointConfig, Event, Instant, MAX_DATAGRAM, RateLimit, Rng, Seed, SendError,
    ServerKey,
};
use peak_alloc::PeakAlloc;

#[path = "common/forge.rs"]
mod forge;
use forge::write_datagram;

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

const SERVER: &str = "10.0.0.1:4000";

fn mib(b: usize) -> String {
    format!("{:.2} MiB", b as f64 / (1024.0 * 1024.0))
}

/// The hostile client: builds its datagrams in one reused buffer, so it
/// allocates nothing while the server is measured.
struct Peer {
    addr: SocketAddr,
    key: Option<PacketKey>,
    seq: u16,
    out: Vec<u8>,
}

impl Peer {
    fn new(addr: SocketAddr) -> Peer {
        Peer { addr, key: None, seq: 0, out: Vec::with_capacity(MAX_DATAGRAM) }
    }

    /// Builds a datagram of `msgs` (CRC mode without a key), acknowledging
    /// nothing (`ack = 0`).
    fn datagram(&mut self, now: Instant, msgs: &[(u16, MsgType, &[u8])]) -> &mut [u8] {
        self.seq = self.seq.wrapping_add(1).max(1);
        write_datagram(&mut self.out, self.key.as_ref(), now, self.seq, msgs);
        &mut self.out
    }

    fn send(&mut self, server: &mut Endpoint, now: Instant, msgs: &[(u16, MsgType, &[u8])]) {
        let addr = self.addr;
        let d = self.datagram(now, msgs);
        server.handle_datagram(now, addr, d);
    }

    /// A real handshake through the public API; returns the server's id of
    /// the connection.
    fn handshake(&mut self, server: &mut Endpoint, now: Instant, seed: u64) -> mpgameserver::ConnectionId {
        let eph = EphemeralKey::generate(&mut Rng::new(Seed::from_u64(seed)));
        let pad = vec![0x5A; server.config().sizes().hello_padding];
        let mut body = vec![0; CLIENT_HELLO_FIXED_LEN + pad.len()];
        let n = handshake::emit_client_hello(&mut body, &eph.public_spki(), &pad).unwrap();
        self.send(server, now, &[(1, MsgType::ClientHello, &body[..n])]);
        let mut buf = [0u8; MAX_DATAGRAM];
        let t = server.poll_transmit(now, &mut buf).expect("a SERVER_HELLO");
        let hdr = Header::parse(&buf[..t.len], Direction::ToClient).unwrap();
        let end = mpgameserver::_internal::protect::open_crc(&hdr, &buf[..t.len]).expect("CRC trailer");
        let msg = mpgameserver::_internal::wire::frame::parse_payload(hdr.ty, hdr.count, &buf[HEADER_LEN..end])
            .unwrap()
            .next()
            .unwrap();
        let sh = handshake::parse_server_hello(msg.data).unwrap();
        let blob = handshake::parse_server_blob(sh.blob).unwrap();
        let shared = eph.agree(blob.ephemeral_spki).unwrap();
        self.key = Some(PacketKey::new(&derive_packet_key(&shared, &blob.salt)));
        let mut challenge = [0u8; CHALLENGE_RESP_LEN];
        handshake::emit_challenge_resp(&mut challenge, blob.token);
        self.send(server, now, &[(2, MsgType::ChallengeResp, &challenge)]);
        loop {
            match server.poll_event() {
                Some(Event::Connected { conn }) => return conn,
                Some(_) => {}
                None => panic!("handshake did not complete"),
            }
        }
    }
}

fn drain(server: &mut Endpoint, now: Instant, buf: &mut [u8; MAX_DATAGRAM]) -> (usize, usize) {
    let mut sent = 0;
    while server.poll_transmit(now, buf).is_some() {
        sent += 1;
    }
    let mut lost = 0;
    while let Some(e) = server.poll_event() {
        if matches!(e, Event::Lost { .. }) {
            lost += 1;
        }
    }
    (sent, lost)
}

/// Fragment data: header and a chunk of `len` bytes, in `out`.
fn fragment(out: &mut Vec<u8>, frag_id: u16, index: u16, count: u16, len: usize) {
    out.clear();
    let mut h = [0u8; 6];
    FragmentHeader { frag_id, index, count }.emit(&mut h);
    out.extend_from_slice(&h);
    out.resize(6 + len, 0xEE);
}

#[test]
fn hostile_peer_memory_stays_within_the_documented_bounds() {
    let cfg = EndpointConfig::default();
    let bounds = cfg.memory_bounds();
    let root = ServerKey::generate(&mut Rng::new(Seed::from_u64(1)));
    let mut server = Endpoint::server(cfg.clone(), root.clone(), Seed::from_u64(2)).unwrap();
    let mut peer = Peer::new("192.0.2.66:5000".parse().unwrap());
    let mut buf = [0u8; MAX_DATAGRAM];
    let mut frag = Vec::with_capacity(2048);
    let app_data = vec![0xABu8; cfg.max_message_size];
    let mut now = Instant::from_secs(100);

    let base = ALLOC.current_usage();
    ALLOC.reset_peak_usage();
    let conn = peer.handshake(&mut server, now, 3);
    drain(&mut server, now, &mut buf);
    let fixed = ALLOC.current_usage() - base;

    // ---- the peer's share: maximal reassembly state --------------------
    // Four reassemblies of 1,024 fragments of 1,024 B: the first fragment
    // of each reserves 1,023 KiB, 4,092 KiB in all (the 4 MiB budget).
    let mut msgseq: u16 = 1000;
    for id in 1..=4u16 {
        fragment(&mut frag, id, 1, 1024, 1024);
        peer.send(&mut server, now, &[(msgseq, MsgType::AppFragment, &frag)]);
        msgseq += 1100;
    }
    // The other twelve slots with the largest fragment count (8,192: the
    // biggest bitmaps), holding one byte each.
    for id in 5..=16u16 {
        fragment(&mut frag, id, 8192, 8192, 1);
        peer.send(&mut server, now, &[(msgseq, MsgType::AppFragment, &frag)]);
        msgseq += 1;
    }
    drain(&mut server, now, &mut buf);
    assert_eq!(server.reassembly_bytes(), 4 * 1023 * 1024 + 12);
    // More of the same is refused: no 17th reassembly, no byte beyond 4 MiB.
    let refused_before = server.stats().dropped(mpgameserver::DropReason::Rate);
    fragment(&mut frag, 17, 1, 1024, 1024);
    peer.send(&mut server, now, &[(msgseq, MsgType::AppFragment, &frag)]);
    assert_eq!(server.stats().dropped(mpgameserver::DropReason::Rate), refused_before + 1);
    // Maximal fragments for the open reassemblies (filling their buffers,
    // never completing them) and garbage fragments, over 30 s; the peer
    // acknowledges nothing but keeps the connection alive.
    let mut garbage: u16 = 0;
    for step in 0..3000u32 {
        now += Duration::from_millis(10);
        let id = (step % 4) as u16 + 1;
        let index = (step / 4 % 1022) as u16 + 2;
        fragment(&mut frag, id, index, 1024, 1024);
        let m = 1000 + (id - 1) * 1100 + index - 1;
        peer.send(&mut server, now, &[(m, MsgType::AppFragment, &frag)]);
        garbage = garbage.wrapping_add(7919);
        fragment(&mut frag, garbage, garbage % 9000, garbage % 8500, usize::from(garbage % 1400));
        peer.send(&mut server, now, &[(msgseq.wrapping_add(garbage % 900), MsgType::AppFragment, &frag)]);
        server.handle_timeout(now);
        drain(&mut server, now, &mut buf);
    }
    assert!(server.connection(conn).is_some());
    let peak_peer = ALLOC.peak_usage() - base;

    // ---- the application's share: a send queue nobody acknowledges -----
    let mut queued = 0usize;
    let full = loop {
        // Large (fragmented, own buffers) messages, then small ones (the
        // shared arena) until a bound is hit.
        let n = if queued + 2 * cfg.max_message_size <= cfg.send_queue_bytes { cfg.max_message_size } else { 1000 };
        match server.send(conn, &app_data[..n], Delivery::Reliable) {
            Ok(_) => queued += n,
            Err(e) => break e,
        }
    };
    assert!(matches!(full, SendError::QueueFull { .. }), "the bound surfaces to the application: {full:?}");
    for _ in 0..2000 {
        now += Duration::from_millis(10);
        peer.send(&mut server, now, &[]);
        server.handle_timeout(now);
        drain(&mut server, now, &mut buf);
    }
    assert!(server.connection(conn).is_some());
    let peak = ALLOC.peak_usage() - base;

    // ---- the peer goes silent: everything is released -------------------
    let mut lost = 0;
    for _ in 0..100 {
        now += Duration::from_millis(100);
        server.handle_timeout(now);
        lost += drain(&mut server, now, &mut buf).1;
    }
    assert!(server.connection(conn).is_none());
    assert!(lost > 0, "the queued messages are reported Lost");
    assert_eq!(server.reassembly_bytes(), 0);
    let after = ALLOC.current_usage().saturating_sub(base);

    eprintln!(
        "per connection: fixed {} B; hostile peer peak {} (bound {}); with a full send queue {} (bound {}); after close {} B",
        fixed,
        mib(peak_peer),
        mib(bounds.per_connection_peer),
        mib(peak),
        mib(bounds.per_connection),
        after
    );
    assert!(peak_peer <= bounds.per_connection_peer, "{peak_peer} > {}", bounds.per_connection_peer);
    assert!(peak <= bounds.per_connection, "{peak} > {}", bounds.per_connection);
    // What stays is capacity the endpoint keeps for reuse: its connection
    // table and the event queue that held the Lost events.
    assert!(after <= 256 * 1024, "{after} B left after the connection ended");

    // ---- pending handshakes ---------------------------------------------
    drop(server);
    let mut cfg = EndpointConfig::default();
    cfg.hello_rate = RateLimit::UNLIMITED;
    const N: usize = 256;
    let hellos: Vec<(SocketAddr, Vec<u8>)> = (0..N)
        .map(|i| {
            let mut p = Peer::new(SocketAddr::from(([100, 64, i as u8, 1], 7000)));
            let eph = EphemeralKey::generate(&mut Rng::new(Seed::from_u64(1000 + i as u64)));
            let pad = vec![0x5A; cfg.sizes().hello_padding];
            let mut body = vec![0; CLIENT_HELLO_FIXED_LEN + pad.len()];
            let n = handshake::emit_client_hello(&mut body, &eph.public_spki(), &pad).unwrap();
            let d = p.datagram(now, &[(1, MsgType::ClientHello, &body[..n])]).to_vec();
            (p.addr, d)
        })
        .collect();
    let mut hellos = hellos;
    let mut server = Endpoint::server(cfg.clone(), root, Seed::from_u64(4)).unwrap();
    // A first handshake allocates the tables' first nodes and the SERVER_HELLO key.
    let (a, d) = &mut hellos[0];
    server.handle_datagram(now, *a, d);
    drain(&mut server, now, &mut buf);
    let base = ALLOC.current_usage();
    ALLOC.reset_peak_usage();
    for (a, d) in &mut hellos[1..] {
        server.handle_datagram(now, *a, d);
        drain(&mut server, now, &mut buf);
    }
    assert_eq!(server.pending_handshakes(), N);
    let per_pending = (ALLOC.peak_usage() - base) / (N - 1);
    eprintln!(
        "per pending handshake: {} B measured (bound {} B); server hello keys signed: {}",
        per_pending,
        bounds.per_pending_handshake,
        server.stats().server_hello_keys
    );
    assert!(per_pending <= bounds.per_pending_handshake, "{per_pending} > {}", bounds.per_pending_handshake);
    let _ = SERVER;
    drop(server);
    mpgs2_hostile_peer_with_channels();
}

/// MPGS/2 (MPGS2.md §4.3–§4.6): a hand-driven client completes a real
/// handshake, then fills every channel's receive state it can (reliable
/// partials on all 64 channels up to the windows and the reassembly budget,
/// unreliable partials, out-of-window ids and frames of the wrong kind on
/// a second connection) and never acknowledges anything, while the server's
/// application fills the queues of every configured channel until
/// `QueueFull`. The peak stays within `memory_bounds().per_v2_connection`
/// (the peer's part within `per_v2_connection_peer`) and nothing is
/// delivered twice.
fn mpgs2_hostile_peer_with_channels() {
    use mpgameserver::_internal::mpgs2::buf::Writer;
    use mpgameserver::_internal::mpgs2::frame::{ChannelKind as K, Frame};
    use mpgameserver::_internal::mpgs2::handshake::{ClientHandshake, ClientOffer};
    use mpgameserver::_internal::mpgs2::protect::Protection;
    use mpgameserver::_internal::mpgs2::tlv::TransportParams;
    use mpgameserver::{ChannelConfig, ChannelKind};

    let mut cfg = EndpointConfig::default();
    cfg.channels = (3..=10u8)
        .map(|id| {
            let kind = [ChannelKind::Unreliable, ChannelKind::UnreliableSequenced, ChannelKind::ReliableUnordered]
                [usize::from(id % 4).min(2)];
            let kind = if id % 4 == 3 { ChannelKind::ReliableOrdered } else { kind };
            ChannelConfig::new(id, kind).with_priority(id % 8).with_queue_limit(1 << 20)
        })
        .collect();
    cfg.validate().unwrap();
    let bounds = cfg.memory_bounds();
    let root = ServerKey::generate(&mut Rng::new(Seed::from_u64(21)));
    let mut server = Endpoint::server(cfg.clone(), root.clone(), Seed::from_u64(22)).unwrap();
    let mut buf = [0u8; MAX_DATAGRAM];
    let mut now = Instant::from_secs(500);
    let mut payload = vec![0u8; 1200];
    let mut sealed = vec![0u8; 1200];
    let data = vec![0x42u8; 1000];

    // A real MPGS/2 handshake by hand, returning the client's sealer.
    let handshake = |server: &mut Endpoint, now: Instant, addr: SocketAddr, seed: u64| -> Protection {
        let mut buf = [0u8; MAX_DATAGRAM];
        let mut rng = Rng::new(Seed::from_u64(seed));
        let offer = ClientOffer {
            protocol_id: 0,
            versions: &[2],
            suites: &[1],
            recv_cid: None,
            params: TransportParams::DEFAULTS,
        };
        let hs = ClientHandshake::new(&offer, &mut rng).unwrap();
        let mut hello = hs.hello().to_vec();
        server.handle_datagram(now, addr, &mut hello);
        let t = server.poll_transmit(now, &mut buf).expect("SERVER_HELLO");
        let est = hs.on_server_hello(&buf[..t.len], &[root.public_key()]).expect("verifies");
        drain(server, now, &mut buf);
        Protection::new(est.schedule.into_protection(), Some(est.server_cid), 0)
    };
    // Seals `frames` as the client's next packet and feeds it.
    let mut feed = |server: &mut Endpoint, prot: &mut Protection, now, addr, frames: &[Frame<'_>]| {
        let mut w = Writer::new(&mut payload);
        for f in frames {
            if f.emit(&mut w).is_err() {
                break;
            }
        }
        let n = w.len().max(1);
        if w.is_empty() {
            payload[0] = 0x01; // PING
        }
        let b = prot.begin(None, &mut sealed).unwrap();
        sealed[b.header_len..b.header_len + n].copy_from_slice(&payload[..n]);
        let len = prot.finish(b, &mut sealed, n).unwrap();
        server.handle_datagram(now, addr, &mut sealed[..len]);
    };

    let addr: SocketAddr = "192.0.2.77:5000".parse().unwrap();
    let base = ALLOC.current_usage();
    ALLOC.reset_peak_usage();
    let mut prot = handshake(&mut server, now, addr, 23);
    feed(&mut server, &mut prot, now, addr, &[Frame::Ping]);
    let conn = connected(&mut server, now, &mut buf).expect("connected");
    assert!(server.connection(conn).is_some_and(|c| c.version() == mpgameserver::ProtocolVersion::V2));

    // ---- the peer's share -------------------------------------------------
    // Channels 0–61: reliable partials above E (ids 1..), 60 KB each with one
    // 1,000-byte piece, until the reassembly budget refuses them
    // (unacknowledged, counted); 62–63: unreliable partials (the oldest goes
    // first beyond 256 KiB).
    let mut messages = 0usize;
    for round in 0..40u16 {
        for ch in 0..62u8 {
            let kind = if ch % 2 == 0 { K::ReliableOrdered } else { K::ReliableUnordered };
            let f = Frame::Fragment { kind, channel: ch, id: 1 + round, total_len: 60_000, offset: 0, data: &data };
            feed(&mut server, &mut prot, now, addr, &[f]);
        }
        for k in 0..8u16 {
            let (kind, channel) = if k % 2 == 0 { (K::Unreliable, 62) } else { (K::UnreliableSequenced, 63) };
            let f = Frame::Fragment { kind, channel, id: round * 8 + k, total_len: 18_000, offset: 0, data: &data };
            feed(&mut server, &mut prot, now, addr, &[f]);
        }
        now += Duration::from_millis(5);
        server.handle_timeout(now);
        messages += drain_messages(&mut server, now, &mut buf);
    }
    assert!(server.connection(conn).is_some(), "a peer within the windows is not closed");
    assert_eq!(messages, 0, "nothing is complete, nothing delivered");
    assert!(server.reassembly_bytes() <= cfg.max_reassembly_bytes);
    assert!(server.stats().dropped(mpgameserver::DropReason::Rate) > 0, "the budget refused the rest");
    let peak_peer = ALLOC.peak_usage() - base;

    // ---- the application's share: every channel's queue, never acked ------
    for ch in 0..=10u8 {
        let len = if ch == 0 || ch % 4 == 3 || ch % 4 == 0 { 1000 } else { 4000 };
        loop {
            match server.send_on(conn, ch, &app_bytes(len)) {
                Ok(_) => {}
                Err(SendError::QueueFull { .. }) => break,
                Err(e) => panic!("channel {ch}: {e}"),
            }
        }
    }
    for _ in 0..300 {
        now += Duration::from_millis(10);
        feed(&mut server, &mut prot, now, addr, &[Frame::Ping]);
        server.handle_timeout(now);
        drain(&mut server, now, &mut buf);
    }
    assert!(server.connection(conn).is_some());
    let peak = ALLOC.peak_usage() - base;

    // ---- connections that break the rules: closed, nothing delivered -------
    let cases: [&[Frame<'_>]; 3] = [
        &[Frame::Message { kind: K::ReliableOrdered, channel: 5, id: Some(9000), data: b"far" }],
        &[Frame::Message { kind: K::ReliableUnordered, channel: 6, id: Some(20_000), data: b"far" }],
        &[
            Frame::Message { kind: K::ReliableOrdered, channel: 7, id: Some(0), data: b"one" },
            Frame::Message { kind: K::Unreliable, channel: 7, id: None, data: b"wrong kind" },
        ],
    ];
    for (i, frames) in cases.iter().enumerate() {
        let a = SocketAddr::from(([192, 0, 2, 80 + i as u8], 5000));
        let mut p = handshake(&mut server, now, a, 30 + i as u64);
        feed(&mut server, &mut p, now, a, &[Frame::Ping]);
        let c = connected(&mut server, now, &mut buf).expect("connected");
        feed(&mut server, &mut p, now, a, frames);
        let got = drain_messages(&mut server, now, &mut buf);
        assert_eq!(got, 0, "case {i}: a packet that breaks the rules delivers nothing");
        assert!(
            server.connection(c).is_none_or(|c| c.state() != mpgameserver::ConnectionState::Connected),
            "case {i}: closed"
        );
    }

    eprintln!(
        "MPGS/2 with {} channels: hostile peer peak {} (bound {}); with full channel queues {} (bound {})",
        3 + cfg.channels.len(),
        mib(peak_peer),
        mib(bounds.per_v2_connection_peer),
        mib(peak),
        mib(bounds.per_v2_connection)
    );
    assert!(peak_peer <= bounds.per_v2_connection_peer, "{peak_peer} > {}", bounds.per_v2_connection_peer);
    assert!(peak <= bounds.per_v2_connection, "{peak} > {}", bounds.per_v2_connection);
}

/// Like `drain`; the connection a `Connected` event names.
fn connected(server: &mut Endpoint, now: Instant, buf: &mut [u8; MAX_DATAGRAM]) -> Option<mpgameserver::ConnectionId> {
    while server.poll_transmit(now, buf).is_some() {}
    let mut c = None;
    while let Some(e) = server.poll_event() {
        if let Event::Connected { conn } = e {
            c = Some(conn);
        }
    }
    c
}

/// Like `drain`; the number of messages delivered.
fn drain_messages(server: &mut Endpoint, now: Instant, buf: &mut [u8; MAX_DATAGRAM]) -> usize {
    while server.poll_transmit(now, buf).is_some() {}
    let mut n = 0;
    while let Some(e) = server.poll_event() {
        n += usize::from(matches!(e, Event::Message { .. }));
    }
    n
}

fn app_bytes(len: usize) -> Vec<u8> {
    vec![0xC3; len]
}
