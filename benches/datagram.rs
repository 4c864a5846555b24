//! The per-datagram cost of the core against raw AES-128-GCM.
//!
//! * `raw/seal+open/{100,1200}`: seal then open one payload in place, the
//!   floor any encrypted protocol pays.
//! * `core/send-to-event/{100,1200}` (MPGS/1) and `core/v2-send-to-event/{100,1200}`
//!   (MPGS/2): client `send` → `poll_transmit` → server `handle_datagram` →
//!   `poll_event`, one message per datagram, with the server's acks fed
//!   back every 16 (MPGS/1) or 8 (MPGS/2) datagrams so the connection
//!   stays in steady state. `core/v2ch-send-to-event/{100,1200}`: the same
//!   over MPGS/2 with four active channels (channel 0 and three configured
//!   unreliable ones of two priorities and weights 1–3, in turn), against
//!   one: the cost of the channel scheduler.
//! * `handshake/{v1,v2}-honest`: the server's CPU for one honest client
//!   hello, from `handle_datagram` to its answer leaving `poll_transmit`
//!   (ECDH and signature), each on a fresh server endpoint (set up outside
//!   the timing).
//! * `handshake/v2-spoofed-cookie`: the server's CPU for one HELLO2 from a
//!   source it has not validated answered with a HELLO_RETRY cookie
//!   (`CookiePolicy::Always`), a new source address each time: what a
//!   flood of spoofed hellos costs.
//!
//! Compare them in one run: `cargo bench --bench datagram`.
#![allow(clippy::unwrap_used)] // a benchmark that cannot set up should stop loudly

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::BatchSize;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mpgameserver::_internal::PacketKey;
use mpgameserver::{
    CookiePolicy, Duration, Endpoint, EndpointConfig, Instant, MAX_DATAGRAM, ProtocolVersion, Rng, Seed, ServerKey,
};

#[path = "support/pair.rs"]
mod pair;

use pair::{CLIENT, Pair, SERVER, V2_UNFRAGMENTED};

const SIZES: [usize; 2] = [100, 1200];

fn raw(c: &mut Criterion) {
    let mut g = c.benchmark_group("raw");
    let key = PacketKey::new(&[7u8; 16]);
    let header = [0x42u8; 20];
    for size in SIZES {
        let mut payload = vec![0xA5u8; size];
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::new("seal+open", size), &size, |b, _| {
            b.iter(|| {
                let tag = key.seal(black_box(&header), &mut payload);
                key.open(&header, &mut payload, &tag).unwrap();
                black_box(&payload);
            })
        });
    }
    g.finish();
}

fn core_path(c: &mut Criterion) {
    let mut g = c.benchmark_group("core");
    let cases = [
        ("send-to-event", ProtocolVersion::V1, false),
        ("v2-send-to-event", ProtocolVersion::V2, false),
        ("v2ch-send-to-event", ProtocolVersion::V2, true),
    ];
    for (name, protocol, four_channels) in cases {
        for size in SIZES {
            // MPGS/2 at 1200: a message that fills a 1,200 B datagram
            // (MPGS/1 sends 1,200 B of message in a 1,238 B datagram).
            let len = if protocol == ProtocolVersion::V2 { size.min(V2_UNFRAGMENTED) } else { size };
            let msg = vec![0x5Au8; len];
            let mut pair = Pair::new(protocol, four_channels);
            g.throughput(Throughput::Elements(1));
            g.bench_with_input(BenchmarkId::new(name, size), &size, |b, _| b.iter(|| pair.one(&msg)));
        }
    }
    g.finish();
}

/// A fresh server (its cookie policy `policy`) and one client's first datagram to it.
fn hello(protocol: ProtocolVersion, policy: CookiePolicy, seed: u64) -> (Endpoint, Vec<u8>) {
    let mut cfg = EndpointConfig::default();
    cfg.cookie_policy = policy;
    let root = ServerKey::generate(&mut Rng::new(Seed::from_u64(1)));
    let pinned = root.public_key();
    let server = Endpoint::server(cfg.clone(), root, Seed::from_u64(seed)).unwrap();
    let mut client = Endpoint::client(cfg, Seed::from_u64(seed + 1)).unwrap();
    client.connect_with(Instant::ZERO, SERVER, pinned, protocol).unwrap();
    let mut buf = [0u8; MAX_DATAGRAM];
    let t = client.poll_transmit(Instant::ZERO, &mut buf).expect("the client hello");
    (server, buf[..t.len].to_vec())
}

fn handshakes(c: &mut Criterion) {
    let mut g = c.benchmark_group("handshake");
    g.throughput(Throughput::Elements(1));
    for (name, protocol) in [("v1-honest", ProtocolVersion::V1), ("v2-honest", ProtocolVersion::V2)] {
        let mut seed = 10;
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    seed += 2;
                    hello(protocol, CookiePolicy::Never, seed)
                },
                |(mut server, mut datagram)| {
                    let mut out = [0u8; MAX_DATAGRAM];
                    server.handle_datagram(Instant::ZERO, CLIENT, &mut datagram);
                    let t = server.poll_transmit(Instant::ZERO, &mut out).expect("the server's answer");
                    black_box(&out[..t.len]);
                    server
                },
                BatchSize::PerIteration,
            )
        });
    }
    // One server for the whole run: a flood from ever new sources.
    let (mut server, hello2) = hello(ProtocolVersion::V2, CookiePolicy::Always, 100);
    let mut out = [0u8; MAX_DATAGRAM];
    let mut datagram = hello2.clone();
    let (mut n, mut now) = (0u32, Instant::ZERO);
    g.bench_function("v2-spoofed-cookie", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            if n.is_multiple_of(1024) {
                now += Duration::from_millis(1);
            }
            let ip = std::net::Ipv4Addr::from(0x0A00_0000 | (n & 0x00FF_FFFF));
            let from = SocketAddr::V4(std::net::SocketAddrV4::new(ip, 40_000));
            datagram.copy_from_slice(&hello2);
            server.handle_datagram(now, from, &mut datagram);
            let t = server.poll_transmit(now, &mut out).expect("a HELLO_RETRY");
            black_box(&out[..t.len]);
        })
    });
    g.finish();
    let s = server.stats();
    assert_eq!(s.v2_handshakes_started, 0, "a spoofed hello must cost no ECDH: {s:?}");
    // A `cargo bench FILTER` that skips this bench leaves the flood unsent.
    assert!(n == 0 || s.v2_hello_retries > 0, "the flood was answered with cookies: {s:?}");
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(std::time::Duration::from_secs(1)).measurement_time(std::time::Duration::from_secs(3));
    targets = raw, core_path, handshakes
}
criterion_main!(benches);
