//! The per-datagram cost of the core against raw AES-128-GCM.
//!
//! * `raw/seal+open/{100,1200}`: seal then open one payload in place, the
//!   floor any encrypted protocol pays.
//! * `core/send-to-event/{100,1200}`: client `send` → `poll_transmit` →
//!   server `handle_datagram` → `poll_event`, one message per datagram,
//!   with the server's acks fed back every 16 datagrams so the connection
//!   stays in steady state.
//!
//! Compare the two in one run: `cargo bench --bench datagram`.
#![allow(clippy::unwrap_used)] // a benchmark that cannot set up should stop loudly

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mpgameserver::_internal::PacketKey;
use mpgameserver::{
    ConnectionId, Delivery, Duration, Endpoint, EndpointConfig, Event, Instant, MAX_DATAGRAM, Rng, Seed, ServerKey,
};

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

struct Pair {
    client: Endpoint,
    server: Endpoint,
    conn: ConnectionId,
    now: Instant,
    buf: Box<[u8; MAX_DATAGRAM]>,
    sent: u64,
}

const CLIENT: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 5000));
const SERVER: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 4000));

impl Pair {
    fn new() -> Pair {
        let mut cfg = EndpointConfig::default();
        cfg.send_interval = Duration::ZERO;
        let root = ServerKey::generate(&mut Rng::new(Seed::from_u64(1)));
        let pinned = root.public_key();
        let server = Endpoint::server(cfg.clone(), root, Seed::from_u64(2)).unwrap();
        let mut client = Endpoint::client(cfg, Seed::from_u64(3)).unwrap();
        let now = Instant::ZERO;
        let conn = client.connect(now, SERVER, pinned).unwrap();
        let mut p = Pair { client, server, conn, now, buf: Box::new([0; MAX_DATAGRAM]), sent: 0 };
        for _ in 0..10 {
            p.exchange();
            p.now += Duration::from_millis(1);
        }
        assert!(matches!(p.client.poll_event(), Some(Event::Connected { .. })));
        while p.server.poll_event().is_some() {}
        p
    }

    /// Moves every pending datagram both ways.
    fn exchange(&mut self) {
        let (client_addr, server_addr) = (CLIENT, SERVER);
        while let Some(t) = self.client.poll_transmit(self.now, &mut self.buf) {
            self.server.handle_datagram(self.now, client_addr, &mut self.buf[..t.len]);
        }
        while let Some(t) = self.server.poll_transmit(self.now, &mut self.buf) {
            self.client.handle_datagram(self.now, server_addr, &mut self.buf[..t.len]);
        }
    }

    /// One message through the core path.
    fn one(&mut self, msg: &[u8]) {
        let client_addr = CLIENT;
        // 2,000 datagrams per virtual second: within a connection's sequence
        // budget (16,000 per connection_timeout + 2 s, plus a 16,000 burst).
        self.now += Duration::from_micros(500);
        self.client.send(self.conn, msg, Delivery::Unreliable).unwrap();
        let t = self.client.poll_transmit(self.now, &mut self.buf).expect("a datagram is due");
        self.server.handle_datagram(self.now, client_addr, &mut self.buf[..t.len]);
        match self.server.poll_event() {
            Some(Event::Message { payload, .. }) => {
                black_box(payload);
            }
            other => panic!("expected the message, got {other:?}"),
        }
        self.sent += 1;
        if self.sent.is_multiple_of(16) {
            // Acks back to the client, and its Delivered events.
            let server_addr = SERVER;
            while let Some(t) = self.server.poll_transmit(self.now, &mut self.buf) {
                self.client.handle_datagram(self.now, server_addr, &mut self.buf[..t.len]);
            }
            while self.client.poll_event().is_some() {}
        }
    }
}

fn core_path(c: &mut Criterion) {
    let mut g = c.benchmark_group("core");
    for size in SIZES {
        let msg = vec![0x5Au8; size];
        let mut pair = Pair::new();
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::new("send-to-event", size), &size, |b, _| b.iter(|| pair.one(&msg)));
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(std::time::Duration::from_secs(1)).measurement_time(std::time::Duration::from_secs(3));
    targets = raw, core_path
}
criterion_main!(benches);
