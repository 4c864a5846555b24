//! The loadgen workload in memory, for instruction and cache counts of the
//! server alone: `CLIENTS` clients each send one unreliable 100 B message
//! per 60 Hz tick, the server echoes every message back `Reliable` (as
//! `echo_server` does), and every endpoint runs its timers, for `TICKS`
//! virtual ticks after all have connected.
//!
//! `cargo run --release --example server_loop -- v2 1000 120`
//!
//! Everything the server endpoint does is under one function,
//! `server_work`, so `valgrind --tool=callgrind --toggle-collect='*server_work*'`
//! counts the server and nothing of the clients. Run it at two tick counts:
//! the difference of the totals over the difference of the messages is the
//! server's cost per message in steady state, free of the machine's load
//! (`--cache-sim=yes` adds the cache misses of a connection table that no
//! longer fits in cache, which a per-pair loop never shows).
#![allow(clippy::unwrap_used)] // a profiling loop that cannot set up should stop loudly

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use mpgameserver::{
    ConnectionId, Delivery, Duration, Endpoint, EndpointConfig, Event, Instant, MAX_DATAGRAM, ProtocolVersion,
    RateLimit, Rng, Seed, ServerKey,
};

const SERVER: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 4000));
const TICK: Duration = Duration::from_micros(16_667);

struct Client {
    ep: Endpoint,
    addr: SocketAddr,
    conn: ConnectionId,
}

/// Datagrams in flight one way: (to or from, bytes).
type Wire = Vec<(SocketAddr, Vec<u8>)>;

/// One server step: the datagrams that arrived since the last, each
/// followed by its events (every message echoed `Reliable`), then the due
/// timers, then every datagram the server has to send.
#[inline(never)]
fn server_work(
    server: &mut Endpoint,
    now: Instant,
    inbound: &mut Wire,
    outbound: &mut Wire,
    buf: &mut [u8; MAX_DATAGRAM],
) {
    for (from, datagram) in inbound.iter_mut() {
        server.handle_datagram(now, *from, datagram);
        while let Some(event) = server.poll_event() {
            if let Event::Message { conn, payload, .. } = event {
                server.send(conn, &payload, Delivery::Reliable).unwrap();
            }
        }
    }
    inbound.clear();
    if server.poll_timeout().is_some_and(|t| t <= now) {
        server.handle_timeout(now);
        while let Some(event) = server.poll_event() {
            black_box(event);
        }
    }
    while let Some(t) = server.poll_transmit(now, buf) {
        outbound.push((t.destination, buf[..t.len].to_vec()));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: server_loop v1|v2 CLIENTS TICKS";
    let (protocol, clients, ticks) = match &args[1..] {
        [w, c, t] => (
            match w.as_str() {
                "v1" => ProtocolVersion::V1,
                "v2" => ProtocolVersion::V2,
                _ => panic!("{usage}"),
            },
            c.parse::<u32>().expect(usage),
            t.parse::<u64>().expect(usage),
        ),
        _ => panic!("{usage}"),
    };
    let mut cfg = EndpointConfig::default();
    // As `echo_server --no-source-limits`: every client is one source.
    cfg.hello_rate = RateLimit::UNLIMITED;
    cfg.hello_rate_per_ip = RateLimit::UNLIMITED;
    cfg.hello_rate_per_prefix = RateLimit::UNLIMITED;
    cfg.v2_hello_rate_per_source = RateLimit::UNLIMITED;
    cfg.v2_ecdh_rate = RateLimit::UNLIMITED;
    cfg.max_connections = cfg.max_connections.max(clients as usize);
    cfg.max_pending_handshakes = cfg.max_pending_handshakes.max(clients as usize);
    cfg.max_pending_per_ip = cfg.max_pending_handshakes;
    cfg.max_pending_per_prefix = cfg.max_pending_handshakes;
    cfg.max_connections_per_ip = cfg.max_connections;
    let root = ServerKey::generate(&mut Rng::new(Seed::from_u64(1)));
    let pinned = root.public_key();
    let mut server = Endpoint::server(cfg.clone(), root, Seed::from_u64(2)).unwrap();
    let mut now = Instant::ZERO;
    let mut all: Vec<Client> = (0..clients)
        .map(|i| {
            let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 1, (i >> 8) as u8, i as u8), 5000));
            let mut ep = Endpoint::client(cfg.clone(), Seed::from_u64(1000 + u64::from(i))).unwrap();
            let conn = ep.connect_with(now, SERVER, pinned.clone(), protocol).unwrap();
            Client { ep, addr, conn }
        })
        .collect();
    let index = |addr: SocketAddr| match addr {
        SocketAddr::V4(a) => {
            let o = a.ip().octets();
            usize::from(o[2]) << 8 | usize::from(o[3])
        }
        SocketAddr::V6(_) => unreachable!("clients are IPv4"),
    };
    let (mut inbound, mut outbound): (Wire, Wire) = (Vec::new(), Vec::new());
    let mut buf = Box::new([0u8; MAX_DATAGRAM]);
    let msg = [0x5Au8; 100];
    let mut connected = 0u32;
    let mut echoes = 0u64;
    // Up to 20 ticks to connect, then the measured ones.
    let mut tick = 0u64;
    while tick < ticks {
        let steady = connected == clients;
        for c in &mut all {
            if steady {
                c.ep.send(c.conn, &msg, Delivery::Unreliable).unwrap();
            }
            if c.ep.poll_timeout().is_some_and(|t| t <= now) {
                c.ep.handle_timeout(now);
            }
            while let Some(t) = c.ep.poll_transmit(now, &mut buf) {
                inbound.push((c.addr, buf[..t.len].to_vec()));
            }
        }
        server_work(&mut server, now, &mut inbound, &mut outbound, &mut buf);
        for (to, mut datagram) in outbound.drain(..) {
            let c = &mut all[index(to)];
            c.ep.handle_datagram(now, SERVER, &mut datagram);
            while let Some(event) = c.ep.poll_event() {
                match event {
                    Event::Connected { .. } => connected += 1,
                    Event::Message { .. } => echoes += 1,
                    Event::Disconnected { conn, reason } => panic!("client {conn} disconnected: {reason}"),
                    _ => {}
                }
            }
        }
        now += TICK;
        if steady {
            tick += 1;
        } else if tick == 0 && now > Instant::ZERO + TICK * 20 {
            panic!("only {connected} of {clients} clients connected in 20 ticks");
        }
    }
    println!("{clients} clients × {ticks} ticks over {protocol}: {echoes} echoes, server {}", server.stats());
}
